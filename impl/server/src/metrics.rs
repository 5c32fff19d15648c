//! Prometheus metrics, served on the admin listener at `/metrics`.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a served request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Which listener: `connector_internal`, `connector_external`, `gateway`, `admin`.
    pub surface: &'static str,
    /// HTTP status.
    pub status: u16,
}

/// Labels of a connection the egress policy refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EgressLabels {
    /// What the connection was for: `proxy`, `oauth` or `push`.
    pub purpose: &'static str,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    egress_refused: Family<EgressLabels, Counter>,
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    records: Counter,
    syncs: Counter,
    sync_seconds: Histogram,
    connections_refused: Counter,
    deliveries_started: Counter,
    subscription: Family<SubscriptionLabels, Gauge>,
    backoff: Family<BackoffLabels, Gauge>,
    backlog_reads: Counter,
    backlog_events_read: Counter,
    stored_bytes: Gauge,
    store_full: Gauge,
    replica: ReplicaMetrics,
}

/// A replica's figures (a deployment on a shared log; zero for a single server).
#[derive(Debug, Default)]
struct ReplicaMetrics {
    leading: Gauge,
    applied: Gauge,
    lag: Gauge,
    conflicts: Counter,
    takeovers: Counter,
    lapses: Counter,
    forwarded: Counter,
}

/// Labels of a subscription backing off.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackoffLabels {
    /// Namespace.
    pub namespace: String,
    /// Subscription name.
    pub subscription: String,
    /// `connection-failed` or `timeout`.
    pub reason: &'static str,
}

/// One subscription's delivery figures, as `/metrics` shows them.
#[derive(Clone, Debug)]
pub struct SubscriptionFigures {
    /// Namespace.
    pub namespace: String,
    /// Subscription name.
    pub name: String,
    /// `(figure, value)` for pending, in flight, delivered, retried, dead-lettered,
    /// dead-lettered over the backlog limit and dead letters discarded.
    pub figures: [(&'static str, u64); 7],
    /// Why it is backing off, if it is.
    pub backoff: Option<&'static str>,
}

/// Labels of a subscription's delivery figures.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SubscriptionLabels {
    /// Namespace.
    pub namespace: String,
    /// Subscription name.
    pub subscription: String,
    /// `pending`, `in_flight`, `delivered`, `retried`, `dead_lettered`,
    /// `dead_lettered_over_limit` or `dead_letters_discarded`.
    pub figure: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let records = Counter::default();
        let syncs = Counter::default();
        let sync_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let connections_refused = Counter::default();
        let deliveries_started = Counter::default();
        let subscription = Family::<SubscriptionLabels, Gauge>::default();
        let egress_refused = Family::<EgressLabels, Counter>::default();
        let backoff = Family::<BackoffLabels, Gauge>::default();
        let backlog_reads = Counter::default();
        let backlog_events_read = Counter::default();
        let stored_bytes = Gauge::default();
        let store_full = Gauge::default();
        let replica = ReplicaMetrics::default();
        let mut registry = Registry::with_prefix("ace");
        registry.register(
            "replica_leading",
            "1 while this replica leads the deployment (decides and pushes), 0 while it follows",
            replica.leading.clone(),
        );
        registry.register(
            "replica_applied_sequence",
            "The log sequence (stream sequence on JetStream) this replica's state is at",
            replica.applied.clone(),
        );
        registry.register(
            "replica_lag",
            "Log messages appended by the leader that this follower has not applied yet",
            replica.lag.clone(),
        );
        registry.register(
            "replica_conflicts",
            "Appends refused because another replica had written to the log (fenced)",
            replica.conflicts.clone(),
        );
        registry.register(
            "replica_takeovers",
            "Times this replica took the lead",
            replica.takeovers.clone(),
        );
        registry.register(
            "replica_lapses",
            "Times this replica stopped leading because its lease lapsed by its own clock before \
             it heard of another leader (from then on it answers nothing from its state, which \
             another leader may have made stale)",
            replica.lapses.clone(),
        );
        registry.register(
            "replica_forwarded",
            "Requests this follower forwarded to the leader",
            replica.forwarded.clone(),
        );
        registry.register(
            "subscription_backoff",
            "1 for each subscription backing off as a whole (its endpoint cannot be reached), by reason",
            backoff.clone(),
        );
        registry.register(
            "backlog_reads",
            "Reads of owed events from the store, as subscriptions' windows move through a backlog",
            backlog_reads.clone(),
        );
        registry.register(
            "backlog_events_read",
            "Owed events read back from the store",
            backlog_events_read.clone(),
        );
        registry.register(
            "store_event_bytes",
            "Bytes of accepted events the store keeps (metadata and bodies): what the disk budget limits",
            stored_bytes.clone(),
        );
        registry.register(
            "store_full",
            "1 while the store is over its disk budget and publishes are refused with 507",
            store_full.clone(),
        );
        registry.register(
            "egress_refused",
            "Connections on someone else's behalf the egress policy refused, by purpose",
            egress_refused.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests served, by surface and status",
            requests.clone(),
        );
        registry.register(
            "records_appended",
            "Durable records appended to the store",
            records.clone(),
        );
        registry.register(
            "store_syncs",
            "Group commits (one sync each)",
            syncs.clone(),
        );
        registry.register(
            "store_sync_seconds",
            "Time to append and sync one batch",
            sync_seconds.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused because the connection cap was reached",
            connections_refused.clone(),
        );
        registry.register(
            "deliveries_started",
            "Delivery attempts started (push)",
            deliveries_started.clone(),
        );
        registry.register(
            "subscription_deliveries",
            "Per subscription: events pending, in flight, delivered, retried (since start) and dead-lettered",
            subscription.clone(),
        );
        Metrics {
            egress_refused,
            registry: Mutex::new(registry),
            requests,
            records,
            syncs,
            sync_seconds,
            connections_refused,
            deliveries_started,
            subscription,
            backoff,
            backlog_reads,
            backlog_events_read,
            stored_bytes,
            store_full,
            replica,
        }
    }
}

impl Metrics {
    /// Whether this replica leads.
    pub fn set_leading(&self, leading: bool) {
        self.replica.leading.set(i64::from(leading));
    }

    /// The log sequence applied, and how far the log's end on the servers is beyond it.
    pub fn set_applied(&self, applied: u64, end: u64) {
        self.replica
            .applied
            .set(i64::try_from(applied).unwrap_or(i64::MAX));
        self.replica
            .lag
            .set(i64::try_from(end.saturating_sub(applied)).unwrap_or(i64::MAX));
    }

    /// Counts an append fenced by another replica's.
    pub fn replica_conflict(&self) {
        self.replica.conflicts.inc();
    }

    /// Counts a lead given up because the lease lapsed by this replica's clock.
    pub fn replica_lapse(&self) {
        self.replica.lapses.inc();
    }

    /// Counts a takeover.
    pub fn replica_takeover(&self) {
        self.replica.takeovers.inc();
    }

    /// Counts a request forwarded to the leader.
    pub fn replica_forwarded(&self) {
        self.replica.forwarded.inc();
    }

    /// Counts a served request.
    pub fn request(&self, surface: &'static str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels { surface, status })
            .inc();
    }

    /// Counts one group commit of `records` records that took `took`.
    pub fn record_sync(&self, records: u64, took: Duration) {
        self.records.inc_by(records);
        self.syncs.inc();
        self.sync_seconds.observe(took.as_secs_f64());
    }

    /// Counts a connection the egress policy refused (`proxy`, `oauth` or `push`).
    pub fn egress_refused(&self, purpose: &'static str) {
        self.egress_refused
            .get_or_create(&EgressLabels { purpose })
            .inc();
    }

    /// Counts a connection refused at the cap.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// Counts a started delivery attempt.
    pub fn delivery_started(&self) {
        self.deliveries_started.inc();
    }

    /// Counts a read of `events` owed events from the store.
    pub fn backlog_read(&self, events: usize) {
        self.backlog_reads.inc();
        self.backlog_events_read.inc_by(events as u64);
    }

    /// The bytes of events the store keeps.
    pub fn set_stored_bytes(&self, bytes: u64) {
        self.stored_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Whether the store is over its budget.
    pub fn set_store_full(&self, full: bool) {
        self.store_full.set(i64::from(full));
    }

    /// Replaces the per-subscription figures.
    pub fn set_subscriptions(&self, subscriptions: &[SubscriptionFigures]) {
        self.subscription.clear();
        self.backoff.clear();
        for s in subscriptions {
            if let Some(reason) = s.backoff {
                let labels = BackoffLabels {
                    namespace: s.namespace.clone(),
                    subscription: s.name.clone(),
                    reason,
                };
                self.backoff.get_or_create(&labels).set(1);
            }
            for (figure, value) in s.figures {
                let labels = SubscriptionLabels {
                    namespace: s.namespace.clone(),
                    subscription: s.name.clone(),
                    figure,
                };
                self.subscription
                    .get_or_create(&labels)
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            }
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}
