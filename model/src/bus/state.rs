//! The Event Bus's state: activations, subscriptions with what each is owed, the events in
//! memory; how each record changes it ([`EventBus::apply`]) and the records that rebuild it
//! ([`EventBus::snapshot`]).
//!
//! # Memory independent of the backlog
//!
//! What a subscription owes is a compressed set of sequence numbers ([`SeqSet`]), whatever
//! its size. Only a *window* of its owed events is loaded, with the event's metadata and
//! where it is in the delivery cycle: the oldest ones, at most `backlog_window` (or
//! `max_inflight`, if larger). The rest stays in the store. When the window runs low, the bus
//! asks the shell to read the next owed events ([`BacklogRead`], in order of sequence
//! number) and takes them in with [`EventBus::handle_backlog`]. An event accepted while
//! everything owed is loaded and the window has room enters the window at once, so a
//! subscriber that keeps up never waits for a read.
//!
//! Retention needs no per-event timer either: an arrival index maps expiry times (rounded up
//! to 1/1024 of the retention) to the last event that expires then, and once such a time has
//! passed every subscription dead-letters what it still owes up to that event, loaded or
//! not, in one record ([`BusRecord::EventsDeadLettered`]). Replayed dead letters, whose
//! retention restarts,
//! are kept in groups by their new expiry.

use std::collections::{BTreeMap, BTreeSet, VecDeque, btree_map};
use std::sync::Arc;
use std::time::Duration;

use crate::bugs::Bugs;
use crate::effects::Effects;
use crate::record::Record;
use crate::time::Timestamp;

use super::*;

/// An event in memory: in the window of at least one subscription.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Cached {
    pub(super) event: Arc<Event>,
    /// Windows holding it.
    pub(super) refs: usize,
}

/// Internal handle of a subscription: a re-created subscription of the same name gets a new
/// one, so stale timers and outcomes of the old one never touch it.
pub(super) type SubId = u64;

/// Identifies one [`BacklogRead`] until its [`BacklogPage`] comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

/// The bus asks the shell for the metadata of owed events that are not in memory: the
/// store's copy of each event's acceptance, by sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BacklogRead {
    /// This read.
    pub id: ReadId,
    /// The subscription whose window it fills.
    pub subscription: Arc<ResourceKey>,
    /// The events, in order.
    pub seqs: Vec<u64>,
}

/// An accepted event read back from the store.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Its sequence number.
    pub seq: u64,
    /// When it was accepted.
    pub at: Timestamp,
    /// The event (its body stays in the store: `body_stored`).
    pub event: Arc<Event>,
}

/// The answer to a [`BacklogRead`]: every event it asked for that the store has.
#[derive(Clone, Debug, PartialEq)]
pub struct BacklogPage {
    /// The read.
    pub id: ReadId,
    /// The events.
    pub events: Vec<StoredEvent>,
}

impl BacklogPage {
    /// The answer a store holding `log` gives to `read`: the events it accepted that the
    /// read asks for, without their bodies (a store keeps them apart). For tests and tools
    /// that keep records in memory.
    pub fn from_log<'a>(read: &BacklogRead, log: impl IntoIterator<Item = &'a Record>) -> Self {
        let events = log
            .into_iter()
            .filter_map(|r| match r {
                Record::Bus(BusRecord::EventAccepted { seq, at, event, .. })
                    if read.seqs.contains(seq) =>
                {
                    Some(StoredEvent {
                        seq: *seq,
                        at: *at,
                        event: Arc::new(event.without_body()),
                    })
                }
                _ => None,
            })
            .collect();
        BacklogPage {
            id: read.id,
            events,
        }
    }
}

/// Why a subscription backs off as a whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BackoffReason {
    /// Its endpoint refused or broke connections.
    ConnectionFailed,
    /// Its endpoint did not answer within the push timeout.
    Timeout,
}

impl BackoffReason {
    /// The name in the status and on `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackoffReason::ConnectionFailed => "connection-failed",
            BackoffReason::Timeout => "timeout",
        }
    }
}

/// A subscription whose endpoint cannot be reached: it sends one push at a time (a probe),
/// spaced by the retry policy, until one is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Backoff {
    pub(super) since: Timestamp,
    pub(super) reason: BackoffReason,
    /// Failed probes, counting the failure that started the backoff.
    pub(super) failures: u32,
    /// When the next probe may start.
    pub(super) probe_at: Timestamp,
    /// The probe in flight.
    pub(super) probe: Option<DeliveryId>,
}

/// Consecutive failures to reach an endpoint (refused or broken connections, timeouts) after
/// which its subscription backs off as a whole.
pub const BACKOFF_AFTER: u32 = 3;

#[derive(Clone, Debug)]
pub(super) struct Subscription {
    /// Shared with every record and delivery that names it.
    pub(super) key: Arc<ResourceKey>,
    pub(super) spec: SubscriptionSpec,
    /// `spec.endpoint`, shared with every delivery.
    pub(super) endpoint: Arc<str>,
    pub(super) condition: ActivatedCondition,
    /// Durable: every event it owes, loaded or not.
    pub(super) owed: SeqSet,
    /// Durable: its dead letters.
    pub(super) dead: SeqSet,
    /// Durable: owed events whose retention a replay restarted, by their expiry (in order;
    /// disjoint; each a subset of `owed`).
    pub(super) replayed: Vec<(Timestamp, SeqSet)>,
    /// Durable: acknowledged events.
    pub(super) delivered: u64,
    /// Durable: owed events dead-lettered over the backlog limit.
    pub(super) over_limit: u64,
    /// Durable: dead letters discarded over the dead-letter limit.
    pub(super) discarded: u64,
    /// Volatile: the loaded owed events (see the module documentation).
    pub(super) window: BTreeMap<u64, Owed>,
    /// Volatile: every owed event below it is in `window`, in `behind` or being read; none
    /// from it on is loaded.
    pub(super) frontier: u64,
    /// Volatile: owed events below `frontier` that are not loaded (replayed dead letters).
    pub(super) behind: SeqSet,
    /// Volatile: the read under way, with the events it asked for.
    pub(super) reading: Option<(ReadId, Vec<u64>)>,
    /// Volatile: loaded events ready to start ([`Stage::Ready`]), in order.
    pub(super) ready: ReadyQueue,
    /// Volatile: attempts in flight, counting those in `settled_in_flight`.
    pub(super) in_flight: usize,
    /// Volatile: attempts in flight for events no longer in the window (dead-lettered since
    /// they started), by event. Should such an event be owed again (replayed), it is in
    /// flight.
    pub(super) settled_in_flight: BTreeMap<u64, DeliveryId>,
    /// Volatile: failed attempts scheduled again.
    pub(super) retried: u64,
    /// Volatile: listed in [`EventBus::dirty`].
    pub(super) dirty: bool,
    /// Volatile: after a restart, no delivery starts before this time (see
    /// [`EventBus::hold_after_restart`]).
    pub(super) held_until: Option<Timestamp>,
    /// Volatile: the endpoint cannot be reached.
    pub(super) backoff: Option<Backoff>,
    /// Volatile: attempts in a row that could not reach the endpoint.
    pub(super) unreachable: u32,
}

/// Where a loaded owed event is in the delivery cycle.
#[derive(Clone, Copy, Debug)]
pub(super) struct Owed {
    /// Attempts so far (0 until the first starts, and again after a replay or a reload).
    pub(super) attempts: u32,
    pub(super) stage: Stage,
}

/// The loaded events of a subscription that are ready to start, in order of sequence number.
///
/// A sorted `VecDeque` rather than a `BTreeSet`: nearly every event enters at the back (it is
/// the newest) and leaves from the front, both in constant time. Events that become ready
/// again (retries, replayed dead letters) are older than most of the queue, so they go in
/// near the front, and `VecDeque::insert` moves the shorter side.
#[derive(Clone, Debug, Default)]
pub(super) struct ReadyQueue(pub(super) VecDeque<u64>);

impl ReadyQueue {
    pub(super) fn insert(&mut self, seq: u64) {
        if self.0.back().is_none_or(|&last| last < seq) {
            self.0.push_back(seq);
        } else if let Err(at) = self.0.binary_search(&seq) {
            self.0.insert(at, seq);
        }
    }

    pub(super) fn remove(&mut self, seq: u64) {
        if let Ok(at) = self.0.binary_search(&seq) {
            self.0.remove(at);
        }
    }

    pub(super) fn pop_first(&mut self) -> Option<u64> {
        self.0.pop_front()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Where a loaded event is in the delivery cycle. Kept with the event so that settling it
/// touches only the one index it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stage {
    /// In the subscription's `ready`, to start when a slot is free.
    Ready,
    /// Failed; to be retried at this time (in [`EventBus::retries`]).
    Waiting(Timestamp),
    /// This attempt is in flight.
    InFlight(DeliveryId),
}

impl Subscription {
    fn new(key: Arc<ResourceKey>, spec: &SubscriptionSpec, condition: ActivatedCondition) -> Self {
        Subscription {
            key,
            spec: spec.clone(),
            endpoint: Arc::from(spec.endpoint.as_str()),
            condition,
            owed: SeqSet::new(),
            dead: SeqSet::new(),
            replayed: Vec::new(),
            delivered: 0,
            over_limit: 0,
            discarded: 0,
            window: BTreeMap::new(),
            frontier: 0,
            behind: SeqSet::new(),
            reading: None,
            ready: ReadyQueue::default(),
            in_flight: 0,
            settled_in_flight: BTreeMap::new(),
            retried: 0,
            dirty: false,
            held_until: None,
            backoff: None,
            unreachable: 0,
        }
    }

    pub(super) fn durable_eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.spec == other.spec
            && self.condition == other.condition
            && self.owed == other.owed
            && self.dead == other.dead
            && self.replayed == other.replayed
            && self.delivered == other.delivered
            && self.over_limit == other.over_limit
            && self.discarded == other.discarded
    }

    pub(super) fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            pending: self.owed.len(),
            in_flight: self.in_flight as u64,
            delivered: self.delivered,
            retried: self.retried,
            dead_lettered: self.dead.len(),
            over_limit: self.over_limit,
            discarded: self.discarded,
            backoff: self.backoff.map(|b| BackoffStatus {
                since: b.since,
                reason: b.reason,
                failures: b.failures,
                next_probe: b.probe.is_none().then_some(b.probe_at),
            }),
        }
    }

    pub(super) fn timeout(&self, config: &BusConfig) -> Duration {
        match u64::try_from(self.spec.push_request_timeout_ms) {
            Ok(0) | Err(_) => config.default_push_timeout,
            Ok(ms) => Duration::from_millis(ms),
        }
    }

    pub(super) fn max_inflight(&self) -> usize {
        usize::try_from(self.spec.max_inflight).unwrap_or(1).max(1)
    }

    /// Most events loaded at once.
    pub(super) fn window_capacity(&self, config: &BusConfig) -> usize {
        config.backlog_window.max(self.max_inflight())
    }

    /// Whether every owed event is loaded (none is waiting in the store).
    pub(super) fn fully_loaded(&self) -> bool {
        self.reading.is_none()
            && self.behind.is_empty()
            && self.owed.max().is_none_or(|last| last < self.frontier)
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) struct InFlight {
    pub(super) sub: SubId,
    pub(super) seq: u64,
    pub(super) started: Timestamp,
    pub(super) deadline: Timestamp,
}

/// The Event Bus state machine.
///
/// Driven like the rest of the model (see [`crate::Model`]): `handle*` / `publish_from_gateway`
/// / `create_activation` / `delete_activation` with the input's [`Effects`], then
/// [`EventBus::poll_backlog_read`] (answered with [`EventBus::handle_backlog`]),
/// [`EventBus::poll_delivery`] until `None` and [`EventBus::poll_timeout`]. A delivery counts
/// as in flight from the moment `poll_delivery` can return it until its outcome or its
/// deadline, whichever comes first.
#[derive(Clone, Debug)]
pub struct EventBus {
    pub(super) config: BusConfig,
    /// Deliberately wrong behaviours that are on (none unless built with `bug-zoo`).
    pub(crate) bugs: Bugs,
    /// Which endpoints the egress policy lets pushes reach (checked when a subscription is
    /// applied, on what its endpoint shows).
    pub(crate) egress: crate::egress::EgressPolicy,
    // Durable.
    pub(super) activations: BTreeMap<ResourceKey, ActivationSpec>,
    pub(super) subscription_ids: BTreeMap<ResourceKey, SubId>,
    pub(super) subscriptions: BTreeMap<SubId, Subscription>,
    pub(super) next_seq: u64,
    pub(super) dropped: u64,
    /// When events expire: expiry time → the last event that expires then.
    pub(super) arrivals: BTreeMap<Timestamp, u64>,
    // Volatile.
    /// The loaded events, by sequence number.
    pub(super) events: BTreeMap<u64, Cached>,
    pub(super) next_sub_id: SubId,
    pub(super) next_delivery_id: u64,
    pub(super) next_read_id: u64,
    pub(super) in_flight: BTreeMap<DeliveryId, InFlight>,
    pub(super) deadlines: BTreeSet<(Timestamp, DeliveryId)>,
    pub(super) retries: BTreeSet<(Timestamp, SubId, u64)>,
    /// Subscriptions backing off, by when they may probe next.
    pub(super) probes: BTreeSet<(Timestamp, SubId)>,
    /// Subscriptions that may be able to start deliveries, each listed once (its `dirty`
    /// flag says whether it is). A list rather than an ordered set: it is filled and emptied
    /// for every event; [`EventBus::pump`] sorts it.
    pub(super) dirty: Vec<SubId>,
    /// Bytes of event bodies held in `events` (derived from them).
    pub(super) resident_body_bytes: usize,
    /// Set by [`EventBus::hold_after_restart`]; the next pump holds every subscription.
    pub(super) restarted: bool,
    /// When held subscriptions may start delivering again.
    pub(super) holds: BTreeSet<(Timestamp, SubId)>,
    /// The store is over its space budget: publishes are refused.
    pub(super) storage_full: bool,
    pub(super) outbox: VecDeque<Delivery>,
    pub(super) reads: VecDeque<BacklogRead>,
    /// Scratch: the subscriptions due the event being accepted.
    pub(super) accepted_ids: Vec<SubId>,
}

/// Compares only the durable state, what [`EventBus::apply`] rebuilds from records:
/// activations, subscriptions (spec, condition, owed events, dead letters, replays, counters),
/// the arrival index and counters. What is loaded, in-flight deliveries, timers, attempt and
/// retry counts and internal handles are lost in a restart by design, so two buses that
/// differ only there are equal. [`crate::State`] derives `PartialEq` through this, and
/// `Model::replay(records).state() == model.state()` is the replay guarantee.
impl PartialEq for EventBus {
    fn eq(&self, other: &Self) -> bool {
        let subs = |bus: &EventBus| {
            bus.subscription_ids
                .values()
                .map(|id| bus.subscriptions.get(id).cloned())
                .collect::<Vec<_>>()
        };
        let (a, b) = (subs(self), subs(other));
        self.activations == other.activations
            && self.next_seq == other.next_seq
            && self.dropped == other.dropped
            && self.arrivals == other.arrivals
            && a.len() == b.len()
            && a.iter().zip(&b).all(|(x, y)| match (x, y) {
                (Some(x), Some(y)) => x.durable_eq(y),
                _ => false,
            })
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new(&BusConfig::default())
    }
}

impl EventBus {
    /// An empty bus.
    pub fn new(config: &BusConfig) -> Self {
        EventBus {
            config: config.clone(),
            bugs: Bugs::NONE,
            egress: crate::egress::EgressPolicy::default(),
            activations: BTreeMap::new(),
            subscription_ids: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            next_seq: 0,
            dropped: 0,
            arrivals: BTreeMap::new(),
            events: BTreeMap::new(),
            next_sub_id: 0,
            next_delivery_id: 0,
            next_read_id: 0,
            in_flight: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            retries: BTreeSet::new(),
            probes: BTreeSet::new(),
            dirty: Vec::new(),
            resident_body_bytes: 0,
            restarted: false,
            holds: BTreeSet::new(),
            storage_full: false,
            outbox: VecDeque::new(),
            reads: VecDeque::new(),
            accepted_ids: Vec::new(),
        }
    }

    pub(super) fn commit(&mut self, fx: &mut Effects<'_>, record: BusRecord) {
        self.apply(&record);
        fx.push_record(Record::Bus(record));
    }

    pub(super) fn sub_id(&self, key: &ResourceKey) -> SubId {
        *self
            .subscription_ids
            .get(key)
            .unwrap_or_else(|| panic!("record names subscription {key}, which does not exist"))
    }

    pub(super) fn is_activated(&self, namespace: &str, source_id: &str) -> bool {
        self.activations
            .iter()
            .any(|(k, a)| k.namespace == namespace && a.source_id == source_id)
    }

    /// Recomputes the `events-activated` condition of the subscriptions of `namespace`.
    pub(super) fn revalidate(&mut self, namespace: &str, at: Timestamp) {
        let ids: Vec<SubId> = self
            .subscriptions
            .iter()
            .filter(|(_, s)| s.key.namespace == namespace)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.revalidate_one(id, at);
        }
    }

    pub(super) fn revalidate_one(&mut self, id: SubId, at: Timestamp) {
        let Some(sub) = self.subscriptions.get(&id) else {
            return;
        };
        let activated = self.is_activated(&sub.key.namespace, &sub.spec.source_id);
        if let Some(sub) = self.subscriptions.get_mut(&id)
            && sub.condition.activated != activated
        {
            sub.condition = ActivatedCondition {
                activated,
                last_transition_time: at,
            };
            mark_dirty(&mut self.dirty, id, sub);
        }
    }

    /// Whether a subscription other than `except` owes or holds event `seq`.
    pub(super) fn held_elsewhere(&self, except: SubId, seq: u64) -> bool {
        self.subscriptions
            .iter()
            .any(|(&id, s)| id != except && (s.owed.contains(seq) || s.dead.contains(seq)))
    }

    /// Those of `seqs` no subscription other than `except` owes or holds.
    pub(super) fn released(&self, except: SubId, seqs: &SeqSet) -> SeqSet {
        let mut out = seqs.clone();
        for (&id, s) in &self.subscriptions {
            if id != except && !out.is_empty() {
                out.remove_all(&s.owed);
                out.remove_all(&s.dead);
            }
        }
        out
    }

    /// Holds `event` in memory for one more window.
    fn cache(&mut self, seq: u64, event: &Arc<Event>) {
        match self.events.entry(seq) {
            btree_map::Entry::Occupied(mut cached) => cached.get_mut().refs += 1,
            btree_map::Entry::Vacant(slot) => {
                let resident = !event.body_stored
                    && self.resident_body_bytes + event.data.len()
                        <= self.config.max_resident_body_bytes;
                let event = if resident || event.body_stored {
                    self.resident_body_bytes += if resident { event.data.len() } else { 0 };
                    Arc::clone(event)
                } else {
                    // Over the budget: the body is read back from the store when it is pushed.
                    Arc::new(event.without_body())
                };
                slot.insert(Cached { event, refs: 1 });
            }
        }
    }

    /// One window fewer holds event `seq`.
    fn uncache(&mut self, seq: u64) {
        let btree_map::Entry::Occupied(mut cached) = self.events.entry(seq) else {
            panic!("loaded event {seq} is not in memory");
        };
        cached.get_mut().refs -= 1;
        if cached.get().refs == 0 {
            let event = cached.remove().event;
            if !event.body_stored {
                self.resident_body_bytes -= event.data.len();
            }
        }
    }

    /// Loads owed event `seq` into the window of `id`: startable at once, unless an attempt
    /// of it is still in flight (then its outcome counts).
    pub(super) fn load(&mut self, id: SubId, seq: u64, event: &Arc<Event>) {
        self.cache(seq, event);
        let sub = sub_of(&mut self.subscriptions, id);
        let stage = match sub.settled_in_flight.remove(&seq) {
            Some(delivery) => Stage::InFlight(delivery),
            None => {
                sub.ready.insert(seq);
                Stage::Ready
            }
        };
        sub.window.insert(seq, Owed { attempts: 0, stage });
        mark_dirty(&mut self.dirty, id, sub);
    }

    /// Takes `seqs` (owed or not) out of what `id` owes, with their timers and windows;
    /// returns how many were owed.
    pub(super) fn settle_all(&mut self, id: SubId, seqs: &SeqSet) -> u64 {
        let sub = sub_of(&mut self.subscriptions, id);
        let mut settled = seqs.clone();
        settled.intersect_with(&sub.owed);
        if settled.is_empty() {
            return 0;
        }
        sub.owed.remove_all(&settled);
        sub.behind.remove_all(&settled);
        for (_, group) in &mut sub.replayed {
            group.remove_all(&settled);
        }
        sub.replayed.retain(|(_, group)| !group.is_empty());
        // The loaded ones: fewer than the window, whatever `seqs` holds.
        let loaded: Vec<u64> = if settled.len() < sub.window.len() as u64 {
            settled
                .iter()
                .filter(|seq| sub.window.contains_key(seq))
                .collect()
        } else {
            sub.window
                .keys()
                .copied()
                .filter(|&seq| settled.contains(seq))
                .collect()
        };
        for seq in loaded {
            self.unload(id, seq);
        }
        settled.len()
    }

    /// Takes `seq` out of what `id` owes; returns whether it was owed.
    pub(super) fn settle(&mut self, id: SubId, seq: u64) -> bool {
        let sub = sub_of(&mut self.subscriptions, id);
        if !sub.owed.remove(seq) {
            return false;
        }
        sub.behind.remove(seq);
        if !sub.replayed.is_empty() {
            for (_, group) in &mut sub.replayed {
                group.remove(seq);
            }
            sub.replayed.retain(|(_, group)| !group.is_empty());
        }
        if sub.window.contains_key(&seq) {
            self.unload(id, seq);
        }
        true
    }

    /// Removes loaded event `seq` from the window of `id`, with its timers.
    fn unload(&mut self, id: SubId, seq: u64) {
        let sub = sub_of(&mut self.subscriptions, id);
        let Some(owed) = sub.window.remove(&seq) else {
            return;
        };
        match owed.stage {
            Stage::Ready => sub.ready.remove(seq),
            Stage::Waiting(at) => {
                self.retries.remove(&(at, id, seq));
            }
            // Unless this is the attempt's own acknowledgment (it has ended), it is still in
            // flight.
            Stage::InFlight(delivery) => {
                if self.in_flight.contains_key(&delivery) {
                    sub.settled_in_flight.insert(seq, delivery);
                }
            }
        }
        mark_dirty(&mut self.dirty, id, sub);
        self.uncache(seq);
    }

    /// When an event accepted at `at` expires: the retention later, rounded up to the
    /// arrival index's step (1/1024 of the retention, at least a millisecond).
    pub(super) fn expiry_of(&self, at: Timestamp) -> Timestamp {
        let retention = u64::try_from(self.config.retention.as_millis()).unwrap_or(u64::MAX);
        let step = (retention / 1024).max(1);
        let exact = at.as_unix_millis().saturating_add(retention);
        Timestamp::from_unix_millis(exact.div_ceil(step).saturating_mul(step))
    }

    /// The change an `EventAccepted` record makes: event `seq`, accepted at `at`, is owed to
    /// the subscriptions `ids` (those its record names).
    pub(super) fn store_event(
        &mut self,
        seq: u64,
        at: Timestamp,
        event: &Arc<Event>,
        ids: &[SubId],
    ) {
        self.next_seq = self.next_seq.max(seq + 1);
        if ids.is_empty() {
            return;
        }
        // With nothing owed, nothing can expire: the index starts again. (Accepting an event
        // looks at every subscription anyway.)
        if self.subscriptions.values().all(|s| s.owed.is_empty()) {
            self.arrivals.clear();
        }
        let expiry = self.expiry_of(at);
        let last = self.arrivals.entry(expiry).or_insert(seq);
        *last = (*last).max(seq);
        for &id in ids {
            let capacity = self.subscriptions[&id].window_capacity(&self.config);
            let sub = sub_of(&mut self.subscriptions, id);
            let loads = sub.fully_loaded() && sub.window.len() < capacity;
            sub.owed.insert(seq);
            if loads {
                sub.frontier = seq + 1;
                self.load(id, seq, event);
            }
        }
    }

    /// The change a `DeliveryAcknowledged` record makes: subscription `id` has event `seq`.
    pub(super) fn acknowledge(&mut self, id: SubId, seq: u64) {
        if self.settle(id, seq) {
            sub_of(&mut self.subscriptions, id).delivered += 1;
        }
    }

    /// Owed events of `id` become dead letters; returns how many were owed.
    pub(super) fn dead_letter(&mut self, id: SubId, seqs: &SeqSet) -> u64 {
        let mut dead = seqs.clone();
        dead.intersect_with(&self.subscriptions[&id].owed);
        let n = self.settle_all(id, &dead);
        sub_of(&mut self.subscriptions, id).dead.add_all(&dead);
        n
    }

    /// Dead letters of `id` are owed again, expiring at `expires`.
    pub(super) fn owe_again(&mut self, id: SubId, seqs: &SeqSet, expires: Timestamp) {
        let sub = sub_of(&mut self.subscriptions, id);
        let mut again = seqs.clone();
        again.intersect_with(&sub.dead);
        if again.is_empty() {
            return;
        }
        sub.dead.remove_all(&again);
        sub.owed.add_all(&again);
        // Those below the frontier wait in `behind` to be read again; the others are
        // beyond what was ever loaded.
        if let Some(last) = sub.frontier.checked_sub(1) {
            sub.behind.add_all(&again.through(last));
        }
        match sub.replayed.iter_mut().find(|(at, _)| *at == expires) {
            Some((_, group)) => group.add_all(&again),
            None => {
                sub.replayed.push((expires, again));
                sub.replayed.sort_by_key(|(at, _)| *at);
            }
        }
        mark_dirty(&mut self.dirty, id, sub);
    }

    /// What each subscription owes whose retention has passed at `now`: the events the
    /// arrival index says expired, except replayed ones, and the replayed ones whose fresh
    /// retention has passed.
    pub(super) fn expired(&self, now: Timestamp) -> Vec<(SubId, SeqSet)> {
        let through = self.arrivals.range(..=now).map(|(_, &last)| last).max();
        let mut out = Vec::new();
        for (&id, sub) in &self.subscriptions {
            let mut expired = match through {
                Some(last) => {
                    let mut expired = sub.owed.through(last);
                    for (_, group) in &sub.replayed {
                        expired.remove_all(group);
                    }
                    expired
                }
                None => SeqSet::new(),
            };
            for (at, group) in &sub.replayed {
                if *at <= now {
                    expired.add_all(group);
                }
            }
            if !expired.is_empty() {
                out.push((id, expired));
            }
        }
        out
    }

    /// Applies a record (while handling an input, or on replay).
    ///
    /// Records name subscriptions by key. The bus commits the records it writes for every
    /// event (`EventAccepted`, `DeliveryAcknowledged`) with the subscriptions' ids at hand:
    /// it makes the record's change with the same function as here ([`EventBus::store_event`],
    /// [`EventBus::acknowledge`]) and skips looking each key up again.
    pub fn apply(&mut self, record: &BusRecord) {
        match record {
            BusRecord::ActivationApplied {
                activation,
                spec,
                at,
            } => {
                self.activations.insert(activation.clone(), spec.clone());
                self.revalidate(&activation.namespace, *at);
            }
            BusRecord::ActivationDeleted { activation, at } => {
                self.activations.remove(activation);
                self.revalidate(&activation.namespace, *at);
            }
            BusRecord::SubscriptionApplied {
                subscription,
                spec,
                at,
            } => match self.subscription_ids.get(subscription) {
                Some(&id) => {
                    let sub = sub_of(&mut self.subscriptions, id);
                    if sub.spec.endpoint != spec.endpoint {
                        // A new endpoint is tried at once.
                        if let Some(b) = sub.backoff.take() {
                            self.probes.remove(&(b.probe_at, id));
                        }
                        let sub = sub_of(&mut self.subscriptions, id);
                        sub.unreachable = 0;
                    }
                    let sub = sub_of(&mut self.subscriptions, id);
                    sub.spec = spec.clone();
                    sub.endpoint = Arc::from(spec.endpoint.as_str());
                    if let Some(sub) = self.subscriptions.get_mut(&id) {
                        mark_dirty(&mut self.dirty, id, sub);
                    }
                    self.revalidate_one(id, *at);
                }
                None => {
                    let id = self.next_sub_id;
                    self.next_sub_id += 1;
                    let activated = self.is_activated(&subscription.namespace, &spec.source_id);
                    self.subscription_ids.insert(subscription.clone(), id);
                    let condition = ActivatedCondition {
                        activated,
                        last_transition_time: *at,
                    };
                    let mut sub =
                        Subscription::new(Arc::new(subscription.clone()), spec, condition);
                    // Nothing accepted so far is owed to it: the window starts at the next.
                    sub.frontier = self.next_seq;
                    self.subscriptions.insert(id, sub);
                }
            },
            BusRecord::SubscriptionDeleted { subscription, .. } => {
                let id = self.sub_id(subscription);
                self.subscription_ids.remove(subscription);
                let owed = self.subscriptions[&id].owed.clone();
                self.settle_all(id, &owed);
                let sub = self
                    .subscriptions
                    .remove(&id)
                    .unwrap_or_else(|| panic!("subscription {id} does not exist"));
                self.dropped += owed.len() + sub.dead.len();
                if let Some(b) = sub.backoff {
                    self.probes.remove(&(b.probe_at, id));
                }
                // Its in-flight attempts stay in `in_flight` until their outcome or deadline,
                // which then find no subscription and are ignored.
                self.dirty.retain(|&d| d != id);
            }
            BusRecord::EventAccepted {
                seq,
                at,
                event,
                deliveries,
            } => {
                let ids: Vec<SubId> = deliveries.iter().map(|key| self.sub_id(key)).collect();
                self.store_event(*seq, *at, event, &ids);
            }
            BusRecord::DeliveryAcknowledged {
                seq, subscription, ..
            } => {
                let id = self.sub_id(subscription);
                self.acknowledge(id, *seq);
            }
            BusRecord::DeliveriesAcknowledged {
                subscription, seqs, ..
            } => {
                let id = self.sub_id(subscription);
                for seq in seqs.iter() {
                    self.acknowledge(id, seq);
                }
            }
            BusRecord::EventsDeadLettered {
                subscription,
                seqs,
                reason,
            } => {
                let id = self.sub_id(subscription);
                let n = self.dead_letter(id, seqs);
                if *reason == DeadLetterReason::BacklogLimit {
                    sub_of(&mut self.subscriptions, id).over_limit += n;
                }
            }
            BusRecord::RetentionPassed { now } => {
                while let Some(entry) = self.arrivals.first_entry()
                    && *entry.key() <= *now
                {
                    entry.remove();
                }
            }
            BusRecord::DeadLettersDiscarded {
                subscription, seqs, ..
            } => {
                let id = self.sub_id(subscription);
                let sub = sub_of(&mut self.subscriptions, id);
                let mut gone = seqs.clone();
                gone.intersect_with(&sub.dead);
                sub.dead.remove_all(&gone);
                sub.discarded += gone.len();
            }
            BusRecord::DeadLettersReplayed {
                subscription,
                seqs,
                at,
            } => {
                let id = self.sub_id(subscription);
                let expires = self.expiry_of(*at);
                self.owe_again(id, seqs, expires);
            }
            BusRecord::SubscriptionBacklog {
                subscription,
                owed,
                dead,
                replayed,
            } => {
                let id = self.sub_id(subscription);
                let sub = sub_of(&mut self.subscriptions, id);
                sub.owed = owed.clone();
                sub.dead = dead.clone();
                sub.replayed = replayed.clone();
                // Nothing is loaded: the window fills from the store.
                sub.frontier = 0;
                if let Some(sub) = self.subscriptions.get_mut(&id) {
                    mark_dirty(&mut self.dirty, id, sub);
                }
            }
            BusRecord::Arrivals { expiries } => {
                for &(at, last) in expiries {
                    let entry = self.arrivals.entry(at).or_insert(last);
                    *entry = (*entry).max(last);
                }
            }
            BusRecord::DeadLettered { seq, subscription } => {
                let id = self.sub_id(subscription);
                self.dead_letter(id, &SeqSet::from_iter([*seq]));
            }
            BusRecord::DeadLetterReplayed {
                seq,
                subscription,
                at,
            } => {
                let id = self.sub_id(subscription);
                let expires = self.expiry_of(*at);
                self.owe_again(id, &SeqSet::from_iter([*seq]), expires);
            }
            BusRecord::Counters { next_seq, dropped } => {
                self.next_seq = self.next_seq.max(*next_seq);
                self.dropped = *dropped;
            }
            BusRecord::SubscriptionCounters {
                subscription,
                delivered,
                over_limit,
                discarded,
            } => {
                let id = self.sub_id(subscription);
                let sub = sub_of(&mut self.subscriptions, id);
                sub.delivered = *delivered;
                sub.over_limit = *over_limit;
                sub.discarded = *discarded;
            }
        }
    }

    /// The records that rebuild this state (see the `PartialEq` implementation for what
    /// that covers). Their size follows the number of subscriptions, not the backlog: what
    /// each owes is a compressed set, and the events stay in the store.
    pub fn snapshot(&self) -> Vec<BusRecord> {
        let mut out = vec![
            BusRecord::Counters {
                next_seq: self.next_seq,
                dropped: self.dropped,
            },
            BusRecord::Arrivals {
                expiries: self
                    .arrivals
                    .iter()
                    .map(|(&at, &last)| (at, last))
                    .collect(),
            },
        ];
        for (key, spec) in &self.activations {
            out.push(BusRecord::ActivationApplied {
                activation: key.clone(),
                spec: spec.clone(),
                at: Timestamp::EPOCH,
            });
        }
        for id in self.subscription_ids.values() {
            let sub = &self.subscriptions[id];
            // Replayed after the activations, a new subscription gets the same condition
            // status, and this transition time.
            out.push(BusRecord::SubscriptionApplied {
                subscription: ResourceKey::clone(&sub.key),
                spec: sub.spec.clone(),
                at: sub.condition.last_transition_time,
            });
            out.push(BusRecord::SubscriptionCounters {
                subscription: Arc::clone(&sub.key),
                delivered: sub.delivered,
                over_limit: sub.over_limit,
                discarded: sub.discarded,
            });
            if !(sub.owed.is_empty() && sub.dead.is_empty()) {
                out.push(BusRecord::SubscriptionBacklog {
                    subscription: Arc::clone(&sub.key),
                    owed: sub.owed.clone(),
                    dead: sub.dead.clone(),
                    replayed: sub.replayed.clone(),
                });
            }
        }
        out
    }
}

/// Subscription `id`, which exists. A function of the map rather than a method, so that the
/// bus's other fields stay available while it is borrowed.
pub(super) fn sub_of(subs: &mut BTreeMap<SubId, Subscription>, id: SubId) -> &mut Subscription {
    subs.get_mut(&id)
        .unwrap_or_else(|| panic!("subscription {id} does not exist"))
}

/// Lists subscription `id` in `dirty` for the next [`EventBus::pump`], unless it is already.
pub(super) fn mark_dirty(dirty: &mut Vec<SubId>, id: SubId, sub: &mut Subscription) {
    if !sub.dirty {
        sub.dirty = true;
        dirty.push(id);
    }
}
