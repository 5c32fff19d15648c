//! The driver: the one task that owns the model.
//!
//! Requests arrive on a channel. The driver takes every request waiting (a batch), hands each
//! to the model, appends all the batch's records to the store with one sync (group commit),
//! puts the proxy's new decisions in force, and only then releases the replies; then it
//! answers the model's backlog reads from the store (the owed events beyond what each
//! subscription keeps in memory), sends the deliveries the model started out on its
//! deliveries channel and takes their outcomes back on its outcomes channel. It never touches
//! an event's body: the push workers read bodies themselves. After each append it tells the
//! model whether the store is over its space budget. If the store fails, or lost an event the
//! model still owes, the driver stops: the model's state would be ahead of the log, so no
//! further reply may be sent (fail-stop).
//!
//! A replica of a deployment on a shared log ([`spawn_replica`]) leads or follows, as its
//! lease says ([`follow`]): while it follows it applies what the leader appends and forwards
//! every request to the leader; when it takes the lead it catches up, claims the log (so the
//! previous leader's next append is fenced) and takes the state over as a restarted server
//! does; when it loses the lead (the lease lapsed, or an append was fenced) it rebuilds its
//! state from the log and follows again.

mod follow;

use std::sync::Arc;

use ace_client::Clock;
use ace_model::bus::{BacklogPage, Delivery, DeliveryOutcome};
use ace_model::proxy::ProxyTable;
use ace_model::{Model, Reply, Request, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::Metrics;
use crate::store::{EventReader, Store, StoreError};

pub use follow::{Forward, Lease, ReplicaPorts};

/// The model's time: the clock's Unix time as a [`Timestamp`].
pub fn now(clock: &Clock) -> Timestamp {
    Timestamp::from_unix_millis(clock.unix_millis())
}

struct Job {
    request: Request,
    reply: oneshot::Sender<Reply>,
    /// Forwarded by another replica: answered only while this one leads.
    forwarded: bool,
}

/// A cheap handle for sending requests to the driver.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Job>,
}

/// The driver has stopped (the store failed or the server is shutting down).
#[derive(Debug)]
pub struct Stopped;

impl Handle {
    /// Sends a request and waits for its reply, which comes only after its records are durable.
    pub async fn call(&self, request: Request) -> Result<Reply, Stopped> {
        self.send(request, false).await
    }

    /// Sends a request another replica forwarded. It is decided only while this replica
    /// leads; otherwise the answer is [`Stopped`], and nothing was decided (the sender tries
    /// again, at the leader).
    pub async fn call_forwarded(&self, request: Request) -> Result<Reply, Stopped> {
        self.send(request, true).await
    }

    async fn send(&self, request: Request, forwarded: bool) -> Result<Reply, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job {
                request,
                reply: tx,
                forwarded,
            })
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

/// Most requests handled in one batch (one sync).
pub const MAX_BATCH: usize = 512;

/// Compact the log once it holds this many records more than the last snapshot did.
pub const COMPACT_AFTER: u64 = 50_000;

/// Where delivery outcomes go back to the driver.
pub type OutcomeSender = mpsc::UnboundedSender<DeliveryOutcome>;

/// The proxy's decisions as of the last durable change (see [`ace_model::proxy::ProxyTable`]).
pub type ProxyTables = watch::Receiver<Arc<ProxyTable>>;

/// What the driver sends out, and where what it takes in comes from, besides requests.
#[derive(Debug)]
pub struct Ports {
    /// Deliveries to start, in the order the model started them.
    pub deliveries: mpsc::UnboundedReceiver<Delivery>,
    /// Where each delivery's outcome goes back.
    pub outcomes: OutcomeSender,
    /// The proxy's decisions.
    pub proxy_tables: ProxyTables,
}

/// How much the store may hold: the bytes of accepted events kept apart (metadata and
/// bodies). At the budget, publishes are refused with 507 until the store is below 95 % of
/// it again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StorageBudget {
    /// The budget, in bytes.
    pub max_bytes: u64,
}

impl StorageBudget {
    /// Whether a store holding `bytes` is full, given whether it was.
    pub fn full(&self, bytes: u64, was_full: bool) -> bool {
        if was_full {
            bytes >= self.max_bytes / 20 * 19
        } else {
            bytes >= self.max_bytes
        }
    }
}

impl Default for StorageBudget {
    fn default() -> Self {
        StorageBudget { max_bytes: 4 << 30 }
    }
}

/// Where the driver runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// A thread of its own (named `ace-driver`, with a single-threaded runtime), where the
    /// store may do its disk I/O in place: the driver waits for every sync anyway, so blocking
    /// its thread delays nothing else. Everything else runs on the caller's runtime.
    #[default]
    Thread,
    /// A task on the caller's runtime; for a simulation, whose clock and scheduling must stay
    /// the simulation's.
    Task,
}

/// The running driver.
#[derive(Debug)]
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    done: oneshot::Receiver<Result<(), StoreError>>,
}

impl Running {
    /// Waits until the driver ends: with an error if the store failed, or `Ok` once every
    /// handle is dropped or the driver was stopped.
    pub async fn wait(&mut self) -> Result<(), StoreError> {
        (&mut self.done)
            .await
            .unwrap_or_else(|_| Err(StoreError::Io(std::io::Error::other("the driver panicked"))))
    }

    /// Stops the driver and waits until its store is closed (so that the same data directory
    /// can be opened again, as after a restart). Replies not yet released are never sent.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.wait().await;
    }
}

/// Starts the driver of `model` (already rebuilt from `store`), placed as `placement` says.
/// Returns the handle for requests, the driver's ports and the running driver.
pub fn spawn<S: Store>(
    placement: Placement,
    model: Model,
    store: S,
    clock: Clock,
    metrics: Arc<Metrics>,
    budget: StorageBudget,
) -> std::io::Result<(Handle, Ports, Running)> {
    spawn_inner(placement, model, store, clock, metrics, budget, None)
}

/// Starts the driver of a replica: `model` is rebuilt from `store` but not taken over; the
/// driver follows until `replica`'s lease says it leads.
pub fn spawn_replica<S: Store>(
    placement: Placement,
    model: Model,
    store: S,
    clock: Clock,
    metrics: Arc<Metrics>,
    budget: StorageBudget,
    replica: ReplicaPorts,
) -> std::io::Result<(Handle, Ports, Running)> {
    spawn_inner(
        placement,
        model,
        store,
        clock,
        metrics,
        budget,
        Some(replica),
    )
}

fn spawn_inner<S: Store>(
    placement: Placement,
    model: Model,
    store: S,
    clock: Clock,
    metrics: Arc<Metrics>,
    budget: StorageBudget,
    replica: Option<ReplicaPorts>,
) -> std::io::Result<(Handle, Ports, Running)> {
    let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
    let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
    let (delivery_tx, delivery_rx) = mpsc::unbounded_channel();
    let (tables_tx, tables) = watch::channel(Arc::new(ProxyTable::default()));
    let (stop, stopped) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    let driver = Driver {
        model,
        events: store.events(),
        store,
        budget,
        full: false,
        requests: rx,
        outcomes: outcome_rx,
        deliveries: delivery_tx,
        tables: tables_tx,
        clock,
        metrics,
        replica,
    };
    // Ends when the driver does, or at `stop`; either way the store is dropped (closed) before
    // `done` is told.
    let task = async move {
        let result = tokio::select! {
            biased;
            result = driver.run() => result,
            Ok(()) = stopped => Ok(()),
        };
        let _ = done_tx.send(result);
    };
    match placement {
        Placement::Task => drop(tokio::spawn(task)),
        Placement::Thread => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()?;
            std::thread::Builder::new()
                .name("ace-driver".into())
                .spawn(move || runtime.block_on(task))?;
        }
    }
    let ports = Ports {
        deliveries: delivery_rx,
        outcomes: outcome_tx,
        proxy_tables: tables,
    };
    let running = Running {
        stop: Some(stop),
        done,
    };
    Ok((Handle { tx }, ports, running))
}

/// The driver's state: the model, its log and its channels.
struct Driver<S> {
    model: Model,
    store: S,
    /// The store's reader of accepted events.
    events: Arc<dyn EventReader>,
    budget: StorageBudget,
    /// Whether the model was last told the store is full.
    full: bool,
    requests: mpsc::Receiver<Job>,
    outcomes: mpsc::UnboundedReceiver<DeliveryOutcome>,
    deliveries: mpsc::UnboundedSender<Delivery>,
    tables: watch::Sender<Arc<ProxyTable>>,
    clock: Clock,
    metrics: Arc<Metrics>,
    /// How this replica takes part in a deployment on a shared log (`None`: alone).
    replica: Option<ReplicaPorts>,
}

/// Why [`Driver::lead`] ended.
enum Led {
    /// Every handle was dropped.
    Stopped,
    /// This replica no longer leads.
    LostLead,
}

impl<S: Store> Driver<S> {
    async fn run(mut self) -> Result<(), StoreError> {
        let Some(mut replica) = self.replica.take() else {
            return self.lead(None).await.map(|_| ());
        };
        loop {
            if !self.follow(&mut replica).await? {
                return Ok(());
            }
            if !self.take_lead(&mut replica).await? {
                continue;
            }
            match self.lead(Some(&mut replica)).await? {
                Led::Stopped => return Ok(()),
                Led::LostLead => self.rebuild(&mut replica).await?,
            }
        }
    }

    /// Decides: takes requests, appends, replies, delivers; until every handle is dropped, or
    /// (a replica) the lead is lost.
    async fn lead(&mut self, mut replica: Option<&mut ReplicaPorts>) -> Result<Led, StoreError> {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut replies = Vec::with_capacity(MAX_BATCH);
        let mut digests = Vec::new();
        let mut records = Vec::new();
        let mut snapshot_len = self.store.len();
        #[cfg(feature = "bug-zoo")]
        let ack_before_durable = self
            .model
            .config()
            .bugs
            .has(ace_model::bugs::Bug::AckBeforeDurable);
        let bugs = self.model.config().bugs;
        let outlive = bugs.has(ace_model::bugs::Bug::LeaseOutlived);
        let ack_before_quorum = bugs.has(ace_model::bugs::Bug::AckBeforeQuorum);
        // With `ack-before-durable`: event records not yet written (see below).
        #[cfg(feature = "bug-zoo")]
        let mut held: Vec<ace_model::Record> = Vec::new();
        // The table of the state the driver starts from, and the store's fill.
        self.install_proxy_table();
        self.check_budget();
        loop {
            let deadline = self.model.poll_timeout();
            let clock = self.clock;
            let sleep = async move {
                match deadline {
                    Some(t) => {
                        let wait = t.saturating_duration_since(now(&clock));
                        tokio::time::sleep(wait).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let lease = replica.as_deref_mut().map(|r| &mut r.lease);
            tokio::select! {
                biased;
                () = follow::lease_lost(lease, outlive) => {
                    return Ok(self.lost_lead(replica.as_deref()));
                }
                Some(outcome) = self.outcomes.recv() => {
                    self.model.handle_delivery_outcome(now(&self.clock), outcome);
                }
                n = self.requests.recv_many(&mut batch, MAX_BATCH) => {
                    if n == 0 {
                        return Ok(Led::Stopped);
                    }
                }
                () = sleep => {
                    self.model.handle_timeout(now(&self.clock));
                }
            }
            // Whatever woke the driver, take everything else that is already waiting too, so
            // that acknowledgements and requests share one sync.
            while let Ok(outcome) = self.outcomes.try_recv() {
                self.model
                    .handle_delivery_outcome(now(&self.clock), outcome);
            }
            while batch.len() < MAX_BATCH {
                match self.requests.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            for job in batch.drain(..) {
                if let Request::StateDigest = job.request {
                    // Answered once this batch is durable, from the state at the log's end.
                    digests.push(job.reply);
                    continue;
                }
                let reply = self.model.handle_request(now(&self.clock), job.request);
                replies.push((reply, job.reply, job.forwarded));
            }
            while let Some(record) = self.model.poll_record() {
                records.push(record);
            }
            #[cfg(feature = "bug-zoo")]
            if ack_before_durable {
                let events_only = records.iter().all(|r| {
                    matches!(
                        r,
                        ace_model::Record::Bus(ace_model::bus::BusRecord::EventAccepted { .. })
                    )
                });
                if events_only {
                    // The bug: a batch of accepted events is answered at once, its records
                    // kept in memory until a write of another kind; a crash before then loses
                    // them.
                    held.append(&mut records);
                } else if !held.is_empty() {
                    held.append(&mut records);
                    records = std::mem::take(&mut held);
                }
            }
            if ack_before_quorum && replica.is_some() {
                // The bug: the answers go out before the log has their records.
                for (reply, tx, _) in replies.drain(..) {
                    let _ = tx.send(reply);
                }
            }
            if let Err(e) = self.append(&mut records, &mut snapshot_len).await {
                return self.append_failed(e, replica.is_some(), &mut replies);
            }
            if let Some(r) = replica.as_deref() {
                let applied = self.store.applied_seq();
                r.applied.send_replace(applied);
                self.metrics.set_applied(applied, applied);
            }
            // Before any reply of this batch is released, so an acknowledged unbind is in force.
            self.install_proxy_table();
            for tx in digests.drain(..) {
                let _ = tx.send(self.state_digest(true));
            }
            for (reply, tx, _) in replies.drain(..) {
                // The caller may have gone (client hung up); its change is durable regardless.
                let _ = tx.send(reply);
            }
            // Every record so far is durable: the events the model asks for are in the store.
            while let Some(read) = self.model.poll_backlog_read() {
                let asked = read.seqs.len();
                let events = self.events.accepted(read.seqs).await?;
                if events.len() < asked {
                    let e = StoreError::Corrupt(format!(
                        "{} of {asked} owed events of {} are missing from the store",
                        asked - events.len(),
                        read.subscription
                    ));
                    tracing::error!(error = %e, "stopping: an owed event cannot be delivered");
                    return Err(e);
                }
                self.metrics.backlog_read(events.len());
                self.model.handle_backlog(
                    now(&self.clock),
                    BacklogPage {
                        id: read.id,
                        events,
                    },
                );
                while let Some(record) = self.model.poll_record() {
                    records.push(record);
                }
                if let Err(e) = self.append(&mut records, &mut snapshot_len).await {
                    return self.append_failed(e, replica.is_some(), &mut replies);
                }
            }
            if let Some(r) = replica.as_deref()
                && !follow::still_leads(&r.lease, outlive)
            {
                return Ok(self.lost_lead(Some(r)));
            }
            while let Some(delivery) = self.model.poll_delivery() {
                self.metrics.delivery_started();
                // The push workers are gone only when the server stops.
                let _ = self.deliveries.send(delivery);
            }
        }
    }

    /// Gives the lead up: the lease names another, or it lapsed by this replica's clock.
    fn lost_lead(&self, replica: Option<&ReplicaPorts>) -> Led {
        if replica.is_some_and(|r| follow::named_leader(&r.lease)) {
            self.metrics.replica_lapse();
            tracing::warn!(
                "this replica's lease lapsed by its own clock: it no longer answers from its state; following"
            );
        } else {
            tracing::warn!("another replica holds the lease: following the new leader");
        }
        Led::LostLead
    }

    /// Appends `records` (if any) with one sync, compacts the log when it has grown enough
    /// since the last snapshot, and tells the model whether the store is now full.
    async fn append(
        &mut self,
        records: &mut Vec<ace_model::Record>,
        snapshot_len: &mut u64,
    ) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let n = records.len() as u64;
        let started = tokio::time::Instant::now();
        self.store.append(std::mem::take(records)).await?;
        self.metrics.record_sync(n, started.elapsed());
        if self.store.len() > *snapshot_len + COMPACT_AFTER {
            let snapshot = self.model.snapshot();
            *snapshot_len = snapshot.len() as u64;
            self.store.compact(snapshot).await?;
            tracing::info!(records = *snapshot_len, "compacted the log");
        }
        self.check_budget();
        Ok(())
    }

    /// What an append that failed ends: the server (fail-stop), or, for a replica whose log
    /// moved on without it or cannot be reached, its lead. Replies not yet sent are never sent
    /// as decided: a forwarded request's sender is told nothing was decided (it tries again);
    /// a local caller gets 503.
    fn append_failed(
        &mut self,
        e: StoreError,
        replicated: bool,
        replies: &mut Vec<(Reply, oneshot::Sender<Reply>, bool)>,
    ) -> Result<Led, StoreError> {
        let lost = replicated && matches!(e, StoreError::Fenced(_) | StoreError::Unavailable(_));
        if !lost {
            tracing::error!(error = %e, "storage failed; stopping so that no unrecorded change is acknowledged");
            return Err(e);
        }
        if matches!(e, StoreError::Fenced(_)) {
            self.metrics.replica_conflict();
        }
        tracing::warn!(error = %e, "this replica lost the lead while appending: nothing of its last batch is acknowledged; following again");
        for (_, tx, forwarded) in replies.drain(..) {
            if !forwarded {
                let _ = tx.send(follow::unavailable_reply(
                    "This replica lost the lead while deciding; nothing was recorded. Retry.",
                ));
            }
        }
        Ok(Led::LostLead)
    }

    /// `GET /v1/state`: where the state is in the log and its digest. Asked between batches,
    /// when everything the model decided is durable, so that replicas at the same position
    /// must give the same digest.
    fn state_digest(&self, leading: bool) -> Reply {
        Reply::Resource {
            status: 200,
            body: serde_json::json!({
                "applied": self.store.applied_seq(),
                "leading": leading,
                "sha256": self.model.state_digest(),
            }),
        }
    }

    /// Tells the model whether the store is over its budget, when that changes.
    fn check_budget(&mut self) {
        let bytes = self.store.stored_bytes();
        self.metrics.set_stored_bytes(bytes);
        let full = self.budget.full(bytes, self.full);
        if full != self.full {
            self.full = full;
            self.model.handle_storage(full);
            self.metrics.set_store_full(full);
            if full {
                tracing::warn!(
                    bytes,
                    budget = self.budget.max_bytes,
                    "the store is full: publishes are refused with 507 until subscribers catch up"
                );
            } else {
                tracing::info!(bytes, "the store has room again: publishes are accepted");
            }
        }
    }

    fn install_proxy_table(&mut self) {
        if let Some(table) = self.model.poll_proxy_table() {
            self.tables.send_replace(Arc::new(table));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Entry, MemoryStore, Position};
    use ace_model::{AdminRequest, Config, Record};
    use std::sync::Mutex;

    /// An append the test has to let through.
    struct Gate {
        records: Vec<Record>,
        open: oneshot::Sender<()>,
    }

    fn apply(name: &str) -> Request {
        Request::Admin(AdminRequest::ApplyRemoteEnvironment {
            name: name.into(),
            description: String::new(),
            labels: Default::default(),
            skip_verify: false,
        })
    }

    fn get(name: &str) -> Request {
        Request::Admin(AdminRequest::GetRemoteEnvironment { name: name.into() })
    }

    /// Whether `records` create the RemoteEnvironment `name`.
    fn creates(records: &[Record], name: &str) -> bool {
        let text = serde_json::to_string(records).unwrap_or_default();
        text.contains(&format!("\"{name}\""))
    }

    /// Lets the driver run until it waits for something.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    fn start() -> (Handle, mpsc::UnboundedReceiver<Gate>) {
        let (appends, gates) = mpsc::unbounded_channel();
        let (store, _watch) = TestStore::new(Some(appends), false);
        let (handle, _running) = spawn_with(Placement::Task, store);
        (handle, gates)
    }

    /// What a [`TestStore`] saw: for each append, the thread it ran on; and whether the store
    /// was closed.
    #[derive(Default)]
    struct Watch {
        appends: Mutex<Vec<Option<String>>>,
        closed: std::sync::atomic::AtomicBool,
    }

    /// A store in memory that notes where and how it is used and when it is closed. With
    /// `gates`, each append waits until the test opens its gate; with `fail`, appends fail.
    struct TestStore {
        inner: MemoryStore,
        gates: Option<mpsc::UnboundedSender<Gate>>,
        fail: bool,
        watch: Arc<Watch>,
    }

    impl TestStore {
        fn new(gates: Option<mpsc::UnboundedSender<Gate>>, fail: bool) -> (Self, Arc<Watch>) {
            let watch = Arc::new(Watch::default());
            let store = TestStore {
                inner: MemoryStore::default(),
                gates,
                fail,
                watch: watch.clone(),
            };
            (store, watch)
        }
    }

    impl Drop for TestStore {
        fn drop(&mut self) {
            self.watch
                .closed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Store for TestStore {
        async fn read(&mut self, from: Position, max: usize) -> Result<Vec<Entry>, StoreError> {
            self.inner.read(from, max).await
        }
        async fn append(&mut self, records: Vec<Record>) -> Result<Position, StoreError> {
            let thread = std::thread::current().name().map(String::from);
            if let Ok(mut appends) = self.watch.appends.lock() {
                appends.push(thread);
            }
            if self.fail {
                return Err(StoreError::Io(std::io::Error::other("disk gone")));
            }
            if let Some(gates) = &self.gates {
                let (open, opened) = oneshot::channel();
                let gate = Gate {
                    records: records.clone(),
                    open,
                };
                let closed = || StoreError::Io(std::io::Error::other("the test ended"));
                gates.send(gate).map_err(|_| closed())?;
                opened.await.map_err(|_| closed())?;
            }
            self.inner.append_now(records)
        }
        async fn compact(&mut self, snapshot: Vec<Record>) -> Result<Position, StoreError> {
            self.inner.compact_now(snapshot)
        }
        fn end(&self) -> Position {
            self.inner.end()
        }
        fn len(&self) -> u64 {
            self.inner.len()
        }
        async fn follow(&mut self, after: Position) -> Result<(), StoreError> {
            self.inner.follow(after).await
        }
        fn events(&self) -> Arc<dyn EventReader> {
            self.inner.events()
        }
        fn stored_bytes(&self) -> u64 {
            self.inner.stored_bytes()
        }
    }

    fn spawn_with(placement: Placement, store: TestStore) -> (Handle, Running) {
        let model = Model::new(Config::default(), 7.into());
        let Ok((handle, _ports, running)) = spawn(
            placement,
            model,
            store,
            Clock::new(1_700_000_000_000),
            Arc::new(Metrics::default()),
            StorageBudget::default(),
        ) else {
            panic!("the driver did not start")
        };
        (handle, running)
    }

    fn start_watched(placement: Placement, fail: bool) -> (Handle, Running, Arc<Watch>) {
        let (store, watch) = TestStore::new(None, fail);
        let (handle, running) = spawn_with(placement, store);
        (handle, running, watch)
    }

    fn appends(watch: &Watch) -> Vec<Option<String>> {
        watch.appends.lock().map(|a| a.clone()).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_driver_on_its_own_thread_appends_there_and_stop_closes_the_store() {
        let (handle, mut running, watch) = start_watched(Placement::Thread, false);
        assert_eq!(call(&handle, apply("one")).await.ok(), Some(201));
        assert_eq!(appends(&watch), vec![Some("ace-driver".into())]);
        assert!(!watch.closed.load(std::sync::atomic::Ordering::SeqCst));
        running.stop().await;
        assert!(
            watch.closed.load(std::sync::atomic::Ordering::SeqCst),
            "stop returned before the store was closed"
        );
        assert_eq!(call(&handle, get("one")).await.ok(), Some(0), "stopped");
    }

    #[tokio::test]
    async fn a_driver_task_appends_on_the_callers_runtime() {
        let (handle, mut running, watch) = start_watched(Placement::Task, false);
        assert_eq!(call(&handle, apply("one")).await.ok(), Some(201));
        let seen = appends(&watch);
        assert_eq!(seen.len(), 1);
        assert_ne!(seen[0].as_deref(), Some("ace-driver"));
        running.stop().await;
        assert!(watch.closed.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_driver_thread_whose_store_fails_stops_and_says_why() {
        let (handle, mut running, _watch) = start_watched(Placement::Thread, true);
        assert_eq!(call(&handle, apply("one")).await.ok(), Some(0), "no reply");
        let result = running.wait().await;
        assert!(
            result
                .as_ref()
                .is_err_and(|e| e.to_string().contains("disk gone")),
            "{result:?}"
        );
    }

    fn call(handle: &Handle, request: Request) -> tokio::task::JoinHandle<u16> {
        let handle = handle.clone();
        tokio::spawn(async move { handle.call(request).await.map_or(0, |reply| reply.status()) })
    }

    #[tokio::test]
    async fn requests_arriving_during_an_append_form_the_next_one_and_wait_for_it() {
        let (handle, mut gates) = start();
        let first = call(&handle, apply("one"));
        let Some(gate1) = gates.recv().await else {
            panic!("no append")
        };
        assert!(creates(&gate1.records, "one"));

        // While the first append is under way: a write, then a read that sees it.
        let second = call(&handle, apply("two"));
        settle().await;
        let read = call(&handle, get("two"));
        settle().await;
        assert!(gates.try_recv().is_err(), "one append at a time");
        assert!(
            !first.is_finished(),
            "replied before its records were durable"
        );
        assert!(!second.is_finished() && !read.is_finished());

        assert!(gate1.open.send(()).is_ok());
        assert_eq!(first.await.ok(), Some(201));
        let Some(gate2) = gates.recv().await else {
            panic!("the waiting batch was not appended")
        };
        assert!(creates(&gate2.records, "two"));
        assert!(!creates(&gate2.records, "one"));
        settle().await;
        assert!(
            !second.is_finished(),
            "replied before its records were durable"
        );
        assert!(
            !read.is_finished(),
            "a read that saw a change was answered before the change was durable"
        );

        assert!(gate2.open.send(()).is_ok());
        assert_eq!(second.await.ok(), Some(201));
        assert_eq!(read.await.ok(), Some(200));
    }

    #[tokio::test]
    async fn a_read_during_an_append_waits_for_it() {
        let (handle, mut gates) = start();
        let write = call(&handle, apply("one"));
        let Some(gate) = gates.recv().await else {
            panic!("no append")
        };
        let read = call(&handle, get("one"));
        settle().await;
        assert!(
            !read.is_finished(),
            "a read saw a change before the change was durable"
        );
        assert!(gate.open.send(()).is_ok());
        assert_eq!(write.await.ok(), Some(201));
        assert_eq!(read.await.ok(), Some(200));
        assert!(gates.try_recv().is_err(), "a read appends nothing");
    }
}
