//! The Event Service and the Event Bus: publishing, activation, subscriptions, at-least-once
//! push delivery (reference §3, §4 and §6.3, seed `event-bus.txt`).
//!
//! # What is durable
//!
//! Activations, subscriptions (spec and `events-activated` condition), and for every accepted
//! event the subscriptions still owed it ([`BusRecord::EventAccepted`] names them;
//! [`BusRecord::DeliveryAcknowledged`] and [`BusRecord::DeadLettered`] settle them). An event
//! is answered 200 only after its record is queued, and the shell makes records durable before
//! it releases replies, so an accepted event survives a crash.
//!
//! What is not durable: which deliveries are in flight, retry timers and attempt counts. After
//! [`EventBus::apply`]-ing the records of a previous process, every owed delivery is startable
//! at once: [`EventBus::poll_timeout`] answers [`Timestamp::EPOCH`] ("now") and the next
//! [`EventBus::handle_timeout`] starts them.
//!
//! # Delivery
//!
//! An accepted event is owed to every subscription that matches its (source, type, version)
//! and is activated at that moment. Per subscription, owed events start in order of
//! acceptance, never more than `max_inflight` at once; a 2xx acknowledges, anything else
//! (another status, a timeout, a connection error, a passed deadline) schedules a retry by the
//! [`RetryPolicy`]. An event still owed after the retention is dead-lettered for that
//! subscription: listed, counted, and replayable. A deactivated subscription keeps its owed
//! events paused; an update keeps them and applies the new spec to later attempts; a deletion
//! drops them, counted.

pub mod delivery;
pub mod endpoint;
pub mod ledger;
pub mod publish;
pub mod subscription;

use std::collections::{BTreeMap, BTreeSet, VecDeque, btree_map};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use delivery::{Delivery, DeliveryId, DeliveryOutcome, DeliveryResult, RetryPolicy};
pub use publish::{Event, EventServiceError, PublishError};
pub use subscription::{
    ActivatedCondition, ActivationSpec, DeliveryStats, ResourceError, ResourceKey, SubscriptionSpec,
};

use crate::bugs::{Bugs, bug_on};
use crate::effects::Effects;
use crate::record::Record;
use crate::time::Timestamp;

/// Configuration of the Event Service and the Event Bus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BusConfig {
    /// Largest event body accepted, in bytes; larger ones get 413 `request_body_too_large`
    /// (Kyma from 2019-03: 65536).
    pub max_event_bytes: usize,
    /// Most bytes of event bodies held in memory; the bodies of events beyond it (and of every
    /// event after a restart) are read back from the store when they are pushed, so memory
    /// stays bounded whatever the backlog.
    pub max_resident_body_bytes: usize,
    /// How long an accepted event stays owed to a subscription before it is dead-lettered
    /// (Kyma: NATS Streaming `maxAge` 24 h).
    #[serde(with = "delivery::millis", rename = "retention_ms")]
    pub retention: Duration,
    /// The delivery timeout of a subscription whose `push_request_timeout_ms` is 0 (the CRD
    /// comment says 1000 ms; Kyma 0.5 applied none, ACE always applies one so that a stalled
    /// subscriber cannot hold a slot forever).
    #[serde(with = "delivery::millis", rename = "default_push_timeout_ms")]
    pub default_push_timeout: Duration,
    /// When failed deliveries are retried.
    pub retry: RetryPolicy,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            max_event_bytes: 64 * 1024,
            max_resident_body_bytes: 64 * 1024 * 1024,
            retention: Duration::from_secs(24 * 3600),
            default_push_timeout: Duration::from_millis(1000),
            retry: RetryPolicy::default(),
        }
    }
}

/// A request to the Event Bus: the publish API, and the admin surface of activations,
/// subscriptions and dead letters.
#[derive(Clone, Debug, PartialEq)]
pub enum BusRequest {
    /// `/v1/events` on the publish API, any method.
    Publish {
        /// The HTTP method.
        method: String,
        /// The `Source-Id` header, if present.
        source_id_header: Option<String>,
        /// Raw body.
        body: Vec<u8>,
        /// Request headers the shell passes on (only trace headers are kept).
        headers: Vec<(String, String)>,
    },
    /// Create or update an EventActivation.
    ApplyActivation {
        /// `metadata.namespace`.
        namespace: String,
        /// `metadata.name`.
        name: String,
        /// `spec`.
        spec: ActivationSpec,
    },
    /// Delete an EventActivation.
    DeleteActivation {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Read one EventActivation.
    GetActivation {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Read the EventActivations of a namespace, or all.
    ListActivations {
        /// Only this namespace.
        namespace: Option<String>,
    },
    /// Create or update a Subscription.
    ApplySubscription {
        /// `metadata.namespace`.
        namespace: String,
        /// `metadata.name`.
        name: String,
        /// `spec`.
        spec: SubscriptionSpec,
    },
    /// Delete a Subscription, dropping what it is still owed.
    DeleteSubscription {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Read one Subscription.
    GetSubscription {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// Read the Subscriptions of a namespace, or all.
    ListSubscriptions {
        /// Only this namespace.
        namespace: Option<String>,
    },
    /// Read the dead letters of a namespace, or all.
    ListDeadLetters {
        /// Only this namespace.
        namespace: Option<String>,
    },
    /// The delivery figures of every subscription (for `/metrics`).
    DeliveryFigures,
    /// Queue dead letters of a subscription again, with a fresh retention.
    ReplayDeadLetters {
        /// Namespace.
        namespace: String,
        /// Subscription name.
        name: String,
        /// Only the dead letters of this event id; all of the subscription if `None`.
        event_id: Option<String>,
    },
}

/// An event sent by an external solution to `POST /{re}/v1/events`.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayEvent {
    /// Raw body.
    pub body: Vec<u8>,
    /// Request headers the shell passes on (only trace headers are kept).
    pub headers: Vec<(String, String)>,
}

/// The answer to a [`BusRequest`] or to an Event Service call.
#[derive(Clone, Debug, PartialEq)]
pub enum BusReply {
    /// `200 {"event-id": ...}`: the event is accepted (its record is queued).
    Published {
        /// The client's id or the generated one.
        event_id: String,
    },
    /// The publish API refused the event.
    PublishRefused(PublishError),
    /// The Event Service refused the event (or relays publish's refusal).
    EventServiceRefused(EventServiceError),
    /// An admin answer with its status (`200`, `201`) and body.
    Resource {
        /// The status.
        status: u16,
        /// The resource(s).
        body: Value,
    },
    /// `204`, empty body.
    NoContent,
    /// The admin surface refused the request.
    ResourceRefused(ResourceError),
    /// `200`: every subscription's delivery figures, by key.
    Figures(Vec<(ResourceKey, DeliveryStats)>),
}

impl BusReply {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            BusReply::Published { .. } => 200,
            BusReply::PublishRefused(e) => e.status(),
            BusReply::EventServiceRefused(e) => e.status(),
            BusReply::Resource { status, .. } => *status,
            BusReply::NoContent => 204,
            BusReply::ResourceRefused(e) => e.status(),
            BusReply::Figures(_) => 200,
        }
    }

    /// The JSON body, if any.
    pub fn body(&self) -> Option<Value> {
        match self {
            BusReply::Published { event_id } => Some(json!({ "event-id": event_id })),
            BusReply::PublishRefused(e) => Some(e.body()),
            BusReply::EventServiceRefused(e) => Some(e.body()),
            BusReply::Resource { body, .. } => Some(body.clone()),
            BusReply::NoContent => None,
            BusReply::ResourceRefused(e) => Some(e.body()),
            BusReply::Figures(figures) => Some(Value::Array(
                figures
                    .iter()
                    .map(|(key, stats)| json!({"namespace": key.namespace, "name": key.name, "delivery": stats}))
                    .collect(),
            )),
        }
    }
}

/// A durable change of the Event Bus.
///
/// The records written for every event (`EventAccepted`, `DeliveryAcknowledged`, ...) name
/// subscriptions by a shared key (`Arc<ResourceKey>`, the bus's own): one such record is
/// written per event and per delivery, and copying the key's two strings each time cost more
/// than the rest of the record. Serialized, it is the plain key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BusRecord {
    /// An EventActivation was created or changed at `at`.
    ActivationApplied {
        /// Its key.
        activation: ResourceKey,
        /// Its spec.
        spec: ActivationSpec,
        /// When (the transition time of the conditions it changes).
        at: Timestamp,
    },
    /// An EventActivation was deleted at `at`.
    ActivationDeleted {
        /// Its key.
        activation: ResourceKey,
        /// When.
        at: Timestamp,
    },
    /// A Subscription was created or changed at `at`.
    SubscriptionApplied {
        /// Its key.
        subscription: ResourceKey,
        /// Its spec.
        spec: SubscriptionSpec,
        /// When (for a new one, the transition time of its condition).
        at: Timestamp,
    },
    /// A Subscription was deleted, with everything it was still owed.
    SubscriptionDeleted {
        /// Its key.
        subscription: ResourceKey,
    },
    /// An event was accepted at `at`, owed to `deliveries`.
    EventAccepted {
        /// Its sequence number in this bus (unique, increasing).
        seq: u64,
        /// When.
        at: Timestamp,
        /// The event.
        event: Arc<Event>,
        /// The subscriptions due it: matching and activated at `at`.
        deliveries: Vec<Arc<ResourceKey>>,
    },
    /// A subscription acknowledged an event.
    DeliveryAcknowledged {
        /// The event's sequence number.
        seq: u64,
        /// The subscription.
        subscription: Arc<ResourceKey>,
    },
    /// An event owed to a subscription outlived the retention.
    DeadLettered {
        /// The event's sequence number.
        seq: u64,
        /// The subscription.
        subscription: Arc<ResourceKey>,
    },
    /// A dead letter was queued again at `at`, with a fresh retention.
    DeadLetterReplayed {
        /// The event's sequence number.
        seq: u64,
        /// The subscription.
        subscription: Arc<ResourceKey>,
        /// When.
        at: Timestamp,
    },
    /// Counters a snapshot carries over.
    Counters {
        /// The next sequence number is at least this.
        next_seq: u64,
        /// Owed events dropped by subscription deletions.
        dropped: u64,
    },
    /// A subscription's acknowledged count a snapshot carries over.
    SubscriptionCounters {
        /// The subscription.
        subscription: Arc<ResourceKey>,
        /// Events it acknowledged.
        delivered: u64,
    },
}

/// An accepted event still owed to (or dead-lettered for) some subscription.
#[derive(Clone, Debug, PartialEq)]
struct StoredEvent {
    event: Arc<Event>,
    accepted_at: Timestamp,
    /// Subscriptions that still owe it or hold it as a dead letter.
    refs: usize,
}

/// Internal handle of a subscription: a re-created subscription of the same name gets a new
/// one, so stale timers and outcomes of the old one never touch it.
type SubId = u64;

#[derive(Clone, Debug)]
struct Subscription {
    /// Shared with every record and delivery that names it.
    key: Arc<ResourceKey>,
    spec: SubscriptionSpec,
    /// `spec.endpoint`, shared with every delivery.
    endpoint: Arc<str>,
    condition: ActivatedCondition,
    /// Owed events, by sequence number (see [`Owed`]).
    pending: BTreeMap<u64, Owed>,
    /// Durable: dead letters.
    dead: BTreeSet<u64>,
    /// Durable: acknowledged events.
    delivered: u64,
    /// Volatile: owed events ready to start ([`Stage::Ready`]), in order.
    ready: ReadyQueue,
    /// Volatile: attempts in flight, counting those in `settled_in_flight`.
    in_flight: usize,
    /// Volatile: attempts in flight for events no longer owed (dead-lettered since they
    /// started), by event. Should such an event be owed again (replayed), it is in flight.
    settled_in_flight: BTreeMap<u64, DeliveryId>,
    /// Volatile: failed attempts scheduled again.
    retried: u64,
    /// Volatile: listed in [`EventBus::dirty`].
    dirty: bool,
    /// Volatile: after a restart, no delivery starts before this time (see
    /// [`EventBus::hold_after_restart`]).
    held_until: Option<Timestamp>,
}

/// What a subscription keeps of an event it owes.
#[derive(Clone, Copy, Debug)]
struct Owed {
    /// Durable: when it is dead-lettered.
    expires: Timestamp,
    /// Volatile: attempts so far (0 until the first starts, and again after a replay).
    attempts: u32,
    /// Volatile: where it is in the delivery cycle.
    stage: Stage,
}

/// The owed events of a subscription that are ready to start, in order of sequence number.
///
/// A sorted `VecDeque` rather than a `BTreeSet`: nearly every event enters at the back (it is
/// the newest) and leaves from the front, both in constant time. Events that become ready
/// again (retries, replayed dead letters) are older than most of the queue, so they go in
/// near the front, and `VecDeque::insert` moves the shorter side.
#[derive(Clone, Debug, Default)]
struct ReadyQueue(VecDeque<u64>);

impl ReadyQueue {
    fn insert(&mut self, seq: u64) {
        if self.0.back().is_none_or(|&last| last < seq) {
            self.0.push_back(seq);
        } else if let Err(at) = self.0.binary_search(&seq) {
            self.0.insert(at, seq);
        }
    }

    fn remove(&mut self, seq: u64) {
        if let Ok(at) = self.0.binary_search(&seq) {
            self.0.remove(at);
        }
    }

    fn pop_first(&mut self) -> Option<u64> {
        self.0.pop_front()
    }
}

/// Where an owed event is in the delivery cycle. Kept with the event so that settling it
/// touches only the one index it is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// In the subscription's `ready`, to start when a slot is free.
    Ready,
    /// Failed; to be retried at this time (in [`EventBus::retries`]).
    Waiting(Timestamp),
    /// This attempt is in flight.
    InFlight(DeliveryId),
}

impl Subscription {
    fn durable_eq(&self, other: &Self) -> bool {
        self.key == other.key
            && self.spec == other.spec
            && self.condition == other.condition
            && self.pending.len() == other.pending.len()
            && self
                .pending
                .iter()
                .zip(&other.pending)
                .all(|((a, x), (b, y))| a == b && x.expires == y.expires)
            && self.dead == other.dead
            && self.delivered == other.delivered
    }

    fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            pending: self.pending.len() as u64,
            in_flight: self.in_flight as u64,
            delivered: self.delivered,
            retried: self.retried,
            dead_lettered: self.dead.len() as u64,
        }
    }

    fn timeout(&self, config: &BusConfig) -> Duration {
        match u64::try_from(self.spec.push_request_timeout_ms) {
            Ok(0) | Err(_) => config.default_push_timeout,
            Ok(ms) => Duration::from_millis(ms),
        }
    }

    fn max_inflight(&self) -> usize {
        usize::try_from(self.spec.max_inflight).unwrap_or(1).max(1)
    }
}

#[derive(Clone, Copy, Debug)]
struct InFlight {
    sub: SubId,
    seq: u64,
    started: Timestamp,
    deadline: Timestamp,
}

/// The Event Bus state machine.
///
/// Driven like the rest of the model (see [`crate::Model`]): `handle*` / `publish_from_gateway`
/// / `create_activation` / `delete_activation` with the input's [`Effects`], then
/// [`EventBus::poll_delivery`] until `None` and [`EventBus::poll_timeout`]. A delivery counts
/// as in flight from the moment `poll_delivery` can return it until its outcome or its
/// deadline, whichever comes first.
#[derive(Clone, Debug)]
pub struct EventBus {
    config: BusConfig,
    /// Deliberately wrong behaviours that are on (none unless built with `bug-zoo`).
    pub(crate) bugs: Bugs,
    // Durable.
    activations: BTreeMap<ResourceKey, ActivationSpec>,
    subscription_ids: BTreeMap<ResourceKey, SubId>,
    subscriptions: BTreeMap<SubId, Subscription>,
    events: BTreeMap<u64, StoredEvent>,
    next_seq: u64,
    dropped: u64,
    // Volatile.
    next_sub_id: SubId,
    next_delivery_id: u64,
    in_flight: BTreeMap<DeliveryId, InFlight>,
    deadlines: BTreeSet<(Timestamp, DeliveryId)>,
    retries: BTreeSet<(Timestamp, SubId, u64)>,
    expiries: BTreeSet<(Timestamp, SubId, u64)>,
    /// Subscriptions that may be able to start deliveries, each listed once (its `dirty`
    /// flag says whether it is). A list rather than an ordered set: it is filled and emptied
    /// for every event; [`EventBus::pump`] sorts it.
    dirty: Vec<SubId>,
    /// Bytes of event bodies held in `events` (derived from them).
    resident_body_bytes: usize,
    /// Set by [`EventBus::hold_after_restart`]; the next pump holds every subscription.
    restarted: bool,
    /// When held subscriptions may start delivering again.
    holds: BTreeSet<(Timestamp, SubId)>,
    outbox: VecDeque<Delivery>,
    /// Scratch: the subscriptions due the event being accepted.
    accepted_ids: Vec<SubId>,
}

/// Compares only the durable state, what [`EventBus::apply`] rebuilds from records:
/// activations, subscriptions (spec, condition, owed events, dead letters, acknowledged
/// count), stored events and counters. In-flight deliveries, timers, attempt and retry counts
/// and internal handles are lost in a restart by design, so two buses that differ only there
/// are equal. [`crate::State`] derives `PartialEq` through this, and
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
            && self.events == other.events
            && self.next_seq == other.next_seq
            && self.dropped == other.dropped
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
            activations: BTreeMap::new(),
            subscription_ids: BTreeMap::new(),
            subscriptions: BTreeMap::new(),
            events: BTreeMap::new(),
            next_seq: 0,
            dropped: 0,
            next_sub_id: 0,
            next_delivery_id: 0,
            in_flight: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            retries: BTreeSet::new(),
            expiries: BTreeSet::new(),
            dirty: Vec::new(),
            resident_body_bytes: 0,
            restarted: false,
            holds: BTreeSet::new(),
            outbox: VecDeque::new(),
            accepted_ids: Vec::new(),
        }
    }

    fn commit(&mut self, fx: &mut Effects<'_>, record: BusRecord) {
        self.apply(&record);
        fx.push_record(Record::Bus(record));
    }

    fn sub_id(&self, key: &ResourceKey) -> SubId {
        *self
            .subscription_ids
            .get(key)
            .unwrap_or_else(|| panic!("record names subscription {key}, which does not exist"))
    }

    fn is_activated(&self, namespace: &str, source_id: &str) -> bool {
        self.activations
            .iter()
            .any(|(k, a)| k.namespace == namespace && a.source_id == source_id)
    }

    /// Recomputes the `events-activated` condition of the subscriptions of `namespace`.
    fn revalidate(&mut self, namespace: &str, at: Timestamp) {
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

    fn revalidate_one(&mut self, id: SubId, at: Timestamp) {
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

    /// An event no longer owed to (nor dead-lettered for) one subscription.
    fn release(&mut self, seq: u64) {
        let btree_map::Entry::Occupied(mut stored) = self.events.entry(seq) else {
            panic!("released event {seq} is not stored");
        };
        stored.get_mut().refs -= 1;
        if stored.get().refs == 0 {
            let event = stored.remove().event;
            if !event.body_stored {
                self.resident_body_bytes -= event.data.len();
            }
        }
    }

    /// Removes `seq` from what `id` owes, with its timers; returns whether it was owed.
    fn settle(&mut self, id: SubId, seq: u64) -> bool {
        let sub = self
            .subscriptions
            .get_mut(&id)
            .unwrap_or_else(|| panic!("subscription {id} does not exist"));
        let Some(owed) = sub.pending.remove(&seq) else {
            return false;
        };
        self.expiries.remove(&(owed.expires, id, seq));
        match owed.stage {
            Stage::Ready => {
                sub.ready.remove(seq);
            }
            Stage::Waiting(at) => {
                self.retries.remove(&(at, id, seq));
            }
            // Unless this is the attempt's own acknowledgment (it has ended), it is still in
            // flight.
            Stage::InFlight(delivery) if self.in_flight.contains_key(&delivery) => {
                sub.settled_in_flight.insert(seq, delivery);
            }
            Stage::InFlight(_) => {}
        }
        true
    }

    /// Makes `seq` owed by `id` until `expires`, startable at once (unless an attempt of it
    /// is still in flight: then its outcome counts).
    fn owe(&mut self, id: SubId, seq: u64, expires: Timestamp) {
        let sub = self
            .subscriptions
            .get_mut(&id)
            .unwrap_or_else(|| panic!("subscription {id} does not exist"));
        let stage = match sub.settled_in_flight.remove(&seq) {
            Some(delivery) => Stage::InFlight(delivery),
            None => {
                sub.ready.insert(seq);
                Stage::Ready
            }
        };
        sub.pending.insert(
            seq,
            Owed {
                expires,
                attempts: 0,
                stage,
            },
        );
        self.expiries.insert((expires, id, seq));
        mark_dirty(&mut self.dirty, id, sub);
    }

    /// The change an `EventAccepted` record makes: event `seq`, accepted at `at`, is owed to
    /// the subscriptions `ids` (those its record names).
    fn store_event(&mut self, seq: u64, at: Timestamp, event: &Arc<Event>, ids: &[SubId]) {
        self.next_seq = self.next_seq.max(seq + 1);
        if ids.is_empty() {
            return;
        }
        let resident = !event.body_stored
            && self.resident_body_bytes + event.data.len() <= self.config.max_resident_body_bytes;
        let event = if resident || event.body_stored {
            self.resident_body_bytes += if resident { event.data.len() } else { 0 };
            Arc::clone(event)
        } else {
            // Over the budget: the body is read back from the store when it is pushed.
            Arc::new(event.without_body())
        };
        let previous = self.events.insert(
            seq,
            StoredEvent {
                event,
                accepted_at: at,
                refs: ids.len(),
            },
        );
        assert!(previous.is_none(), "event {seq} accepted twice");
        let expires = at.saturating_add(self.config.retention);
        for &id in ids {
            self.owe(id, seq, expires);
        }
    }

    /// The change a `DeliveryAcknowledged` record makes: subscription `id` has event `seq`.
    fn acknowledge(&mut self, id: SubId, seq: u64) {
        if self.settle(id, seq) {
            if let Some(sub) = self.subscriptions.get_mut(&id) {
                sub.delivered += 1;
            }
            self.release(seq);
        }
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
                    if let Some(sub) = self.subscriptions.get_mut(&id) {
                        sub.spec = spec.clone();
                        sub.endpoint = Arc::from(spec.endpoint.as_str());
                        mark_dirty(&mut self.dirty, id, sub);
                    }
                    self.revalidate_one(id, *at);
                }
                None => {
                    let id = self.next_sub_id;
                    self.next_sub_id += 1;
                    let activated = self.is_activated(&subscription.namespace, &spec.source_id);
                    self.subscription_ids.insert(subscription.clone(), id);
                    self.subscriptions.insert(
                        id,
                        Subscription {
                            key: Arc::new(subscription.clone()),
                            spec: spec.clone(),
                            endpoint: Arc::from(spec.endpoint.as_str()),
                            condition: ActivatedCondition {
                                activated,
                                last_transition_time: *at,
                            },
                            pending: BTreeMap::new(),
                            dead: BTreeSet::new(),
                            delivered: 0,
                            ready: ReadyQueue::default(),
                            in_flight: 0,
                            settled_in_flight: BTreeMap::new(),
                            retried: 0,
                            dirty: false,
                            held_until: None,
                        },
                    );
                }
            },
            BusRecord::SubscriptionDeleted { subscription } => {
                let id = self.sub_id(subscription);
                self.subscription_ids.remove(subscription);
                let owed: Vec<u64> = self.subscriptions[&id].pending.keys().copied().collect();
                for seq in owed {
                    self.settle(id, seq);
                    self.release(seq);
                    self.dropped += 1;
                }
                let sub = self
                    .subscriptions
                    .remove(&id)
                    .unwrap_or_else(|| panic!("subscription {id} does not exist"));
                for seq in sub.dead {
                    self.release(seq);
                    self.dropped += 1;
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
            BusRecord::DeliveryAcknowledged { seq, subscription } => {
                let id = self.sub_id(subscription);
                self.acknowledge(id, *seq);
            }
            BusRecord::DeadLettered { seq, subscription } => {
                let id = self.sub_id(subscription);
                if self.settle(id, *seq)
                    && let Some(sub) = self.subscriptions.get_mut(&id)
                {
                    sub.dead.insert(*seq);
                }
            }
            BusRecord::DeadLetterReplayed {
                seq,
                subscription,
                at,
            } => {
                let id = self.sub_id(subscription);
                let was_dead = self
                    .subscriptions
                    .get_mut(&id)
                    .is_some_and(|s| s.dead.remove(seq));
                if was_dead {
                    self.owe(id, *seq, at.saturating_add(self.config.retention));
                }
            }
            BusRecord::Counters { next_seq, dropped } => {
                self.next_seq = self.next_seq.max(*next_seq);
                self.dropped = *dropped;
            }
            BusRecord::SubscriptionCounters {
                subscription,
                delivered,
            } => {
                let id = self.sub_id(subscription);
                if let Some(sub) = self.subscriptions.get_mut(&id) {
                    sub.delivered = *delivered;
                }
            }
        }
    }

    /// The records that rebuild this state (see the `PartialEq` implementation for what
    /// that covers).
    pub fn snapshot(&self) -> Vec<BusRecord> {
        let mut out = vec![BusRecord::Counters {
            next_seq: self.next_seq,
            dropped: self.dropped,
        }];
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
            });
        }
        for (seq, stored) in &self.events {
            let holders: Vec<&Subscription> = self
                .subscription_ids
                .values()
                .map(|id| &self.subscriptions[id])
                .filter(|s| s.pending.contains_key(seq) || s.dead.contains(seq))
                .collect();
            out.push(BusRecord::EventAccepted {
                seq: *seq,
                at: stored.accepted_at,
                event: Arc::clone(&stored.event),
                deliveries: holders.iter().map(|s| Arc::clone(&s.key)).collect(),
            });
            let normal_expiry = stored.accepted_at.saturating_add(self.config.retention);
            for sub in holders {
                let dead = BusRecord::DeadLettered {
                    seq: *seq,
                    subscription: Arc::clone(&sub.key),
                };
                match sub.pending.get(seq).map(|owed| owed.expires) {
                    None => out.push(dead),
                    Some(expires) if expires != normal_expiry => {
                        // A replayed dead letter: its retention restarted.
                        let at = Timestamp::from_unix_millis(
                            expires.as_unix_millis().saturating_sub(
                                u64::try_from(self.config.retention.as_millis())
                                    .unwrap_or(u64::MAX),
                            ),
                        );
                        out.push(dead);
                        out.push(BusRecord::DeadLetterReplayed {
                            seq: *seq,
                            subscription: Arc::clone(&sub.key),
                            at,
                        });
                    }
                    Some(_) => {}
                }
            }
        }
        out
    }

    /// Handles a request to the bus.
    pub fn handle(&mut self, fx: &mut Effects<'_>, request: BusRequest) -> BusReply {
        let reply = match request {
            BusRequest::Publish {
                method,
                source_id_header,
                body,
                headers,
            } => self.publish(fx, &method, source_id_header.as_deref(), &body, &headers),
            BusRequest::ApplyActivation {
                namespace,
                name,
                spec,
            } => self.apply_activation(fx, namespace, name, spec),
            BusRequest::DeleteActivation { namespace, name } => {
                let key = ResourceKey::new(namespace, name);
                if self.activations.contains_key(&key) {
                    let at = fx.now;
                    self.commit(
                        fx,
                        BusRecord::ActivationDeleted {
                            activation: key,
                            at,
                        },
                    );
                    BusReply::NoContent
                } else {
                    BusReply::ResourceRefused(ResourceError::NotFound {
                        kind: "EventActivation",
                        key,
                    })
                }
            }
            BusRequest::GetActivation { namespace, name } => {
                let key = ResourceKey::new(namespace, name);
                match self.activations.get(&key) {
                    Some(spec) => BusReply::Resource {
                        status: 200,
                        body: subscription::activation_resource(&key, spec),
                    },
                    None => BusReply::ResourceRefused(ResourceError::NotFound {
                        kind: "EventActivation",
                        key,
                    }),
                }
            }
            BusRequest::ListActivations { namespace } => BusReply::Resource {
                status: 200,
                body: self
                    .activations
                    .iter()
                    .filter(|(k, _)| namespace.as_ref().is_none_or(|n| *n == k.namespace))
                    .map(|(k, spec)| subscription::activation_resource(k, spec))
                    .collect(),
            },
            BusRequest::ApplySubscription {
                namespace,
                name,
                spec,
            } => self.apply_subscription(fx, namespace, name, spec),
            BusRequest::DeleteSubscription { namespace, name } => {
                let key = ResourceKey::new(namespace, name);
                if self.subscription_ids.contains_key(&key) {
                    self.commit(fx, BusRecord::SubscriptionDeleted { subscription: key });
                    BusReply::NoContent
                } else {
                    BusReply::ResourceRefused(ResourceError::NotFound {
                        kind: "Subscription",
                        key,
                    })
                }
            }
            BusRequest::GetSubscription { namespace, name } => {
                let key = ResourceKey::new(namespace, name);
                match self.subscription_resource(&key) {
                    Some(body) => BusReply::Resource { status: 200, body },
                    None => BusReply::ResourceRefused(ResourceError::NotFound {
                        kind: "Subscription",
                        key,
                    }),
                }
            }
            BusRequest::ListSubscriptions { namespace } => BusReply::Resource {
                status: 200,
                body: self
                    .subscription_ids
                    .keys()
                    .filter(|k| namespace.as_ref().is_none_or(|n| *n == k.namespace))
                    .filter_map(|k| self.subscription_resource(k))
                    .collect(),
            },
            BusRequest::DeliveryFigures => BusReply::Figures(
                self.subscription_ids
                    .iter()
                    .map(|(key, id)| (key.clone(), self.subscriptions[id].stats()))
                    .collect(),
            ),
            BusRequest::ListDeadLetters { namespace } => BusReply::Resource {
                status: 200,
                body: self.dead_letters(namespace.as_deref()),
            },
            BusRequest::ReplayDeadLetters {
                namespace,
                name,
                event_id,
            } => self.replay_dead_letters(fx, namespace, name, event_id),
        };
        self.pump(fx.now);
        reply
    }

    fn apply_activation(
        &mut self,
        fx: &mut Effects<'_>,
        namespace: String,
        name: String,
        spec: ActivationSpec,
    ) -> BusReply {
        if let Err(e) = subscription::check_names("EventActivation", &namespace, &name) {
            return BusReply::ResourceRefused(e);
        }
        if spec.source_id.is_empty() {
            return BusReply::ResourceRefused(ResourceError::InvalidSpec {
                kind: "EventActivation",
                problem: "spec.sourceId must not be empty".to_owned(),
            });
        }
        let key = ResourceKey::new(namespace, name);
        let status = match self.activations.get(&key) {
            Some(old) if *old == spec => 200,
            old => {
                let status = if old.is_some() { 200 } else { 201 };
                let at = fx.now;
                self.commit(
                    fx,
                    BusRecord::ActivationApplied {
                        activation: key.clone(),
                        spec: spec.clone(),
                        at,
                    },
                );
                status
            }
        };
        BusReply::Resource {
            status,
            body: subscription::activation_resource(&key, &spec),
        }
    }

    fn apply_subscription(
        &mut self,
        fx: &mut Effects<'_>,
        namespace: String,
        name: String,
        spec: SubscriptionSpec,
    ) -> BusReply {
        if let Err(e) = subscription::check_names("Subscription", &namespace, &name) {
            return BusReply::ResourceRefused(e);
        }
        if let Some(problem) = spec.problem() {
            return BusReply::ResourceRefused(ResourceError::InvalidSpec {
                kind: "Subscription",
                problem,
            });
        }
        let key = ResourceKey::new(namespace, name);
        let existing = self
            .subscription_ids
            .get(&key)
            .map(|id| &self.subscriptions[id].spec);
        let status = match existing {
            Some(old) if *old == spec => 200,
            old => {
                let status = if old.is_some() { 200 } else { 201 };
                let at = fx.now;
                if old.is_some() && bug_on!(self.bugs, LossOnSubscriptionUpdate) {
                    // Kyma 0.5 recreated an updated subscription: what it was owed is lost.
                    self.commit(
                        fx,
                        BusRecord::SubscriptionDeleted {
                            subscription: key.clone(),
                        },
                    );
                }
                self.commit(
                    fx,
                    BusRecord::SubscriptionApplied {
                        subscription: key.clone(),
                        spec,
                        at,
                    },
                );
                status
            }
        };
        let body = self.subscription_resource(&key).unwrap_or(Value::Null);
        BusReply::Resource { status, body }
    }

    fn subscription_resource(&self, key: &ResourceKey) -> Option<Value> {
        let sub = &self.subscriptions[self.subscription_ids.get(key)?];
        Some(subscription::subscription_resource(
            key,
            &sub.spec,
            sub.condition,
            sub.stats(),
        ))
    }

    fn dead_letters(&self, namespace: Option<&str>) -> Value {
        let mut out = Vec::new();
        for (key, id) in &self.subscription_ids {
            if namespace.is_some_and(|n| n != key.namespace) {
                continue;
            }
            for seq in &self.subscriptions[id].dead {
                let stored = &self.events[seq];
                let e = &stored.event;
                out.push(json!({
                    "namespace": key.namespace,
                    "subscription": key.name,
                    "event-id": e.event_id,
                    "source-id": e.source_id,
                    "event-type": e.event_type,
                    "event-type-version": e.event_type_version,
                    "event-time": e.event_time,
                    "accepted-at": stored.accepted_at.to_rfc3339(),
                }));
            }
        }
        Value::Array(out)
    }

    fn replay_dead_letters(
        &mut self,
        fx: &mut Effects<'_>,
        namespace: String,
        name: String,
        event_id: Option<String>,
    ) -> BusReply {
        let key = ResourceKey::new(namespace, name);
        let Some(&id) = self.subscription_ids.get(&key) else {
            return BusReply::ResourceRefused(ResourceError::NotFound {
                kind: "Subscription",
                key,
            });
        };
        let key = Arc::clone(&self.subscriptions[&id].key);
        let seqs: Vec<u64> = self.subscriptions[&id]
            .dead
            .iter()
            .copied()
            .filter(|seq| {
                event_id
                    .as_ref()
                    .is_none_or(|e| *e == self.events[seq].event.event_id)
            })
            .collect();
        for &seq in &seqs {
            let at = fx.now;
            self.commit(
                fx,
                BusRecord::DeadLetterReplayed {
                    seq,
                    subscription: Arc::clone(&key),
                    at,
                },
            );
        }
        BusReply::Resource {
            status: 200,
            body: json!({ "replayed": seqs.len() }),
        }
    }

    fn publish(
        &mut self,
        fx: &mut Effects<'_>,
        method: &str,
        source_id_header: Option<&str>,
        body: &[u8],
        headers: &[(String, String)],
    ) -> BusReply {
        if method != "POST" {
            return BusReply::PublishRefused(PublishError::BadRequest);
        }
        if body.len() > self.config.max_event_bytes {
            return BusReply::PublishRefused(PublishError::RequestBodyTooLarge);
        }
        let candidate = match publish::parse_publish(body, source_id_header)
            .and_then(|c| publish::validate_publish(&c).map(|()| c))
        {
            Ok(c) => c,
            Err(e) => return BusReply::PublishRefused(e),
        };
        self.accept(fx, candidate, headers)
    }

    /// Handles `POST /{re}/v1/events` from an authorized external solution of `re`: the
    /// Event Service's checks (reference §3.3), `source-id` = `re`, then the publish checks
    /// (§3.4, §4.1) whose refusal is relayed with its status.
    pub fn publish_from_gateway(
        &mut self,
        fx: &mut Effects<'_>,
        re: &str,
        event: GatewayEvent,
    ) -> BusReply {
        if event.body.len() > self.config.max_event_bytes {
            return BusReply::EventServiceRefused(EventServiceError::RequestBodyTooLarge);
        }
        let candidate = match publish::parse_gateway(&event.body, re) {
            Ok(c) => c,
            Err(e) => return BusReply::EventServiceRefused(e),
        };
        if let Err(e) = publish::validate_publish(&candidate) {
            return BusReply::EventServiceRefused(EventServiceError::Publish(e));
        }
        let reply = self.accept(fx, candidate, &event.headers);
        self.pump(fx.now);
        reply
    }

    /// Accepts a validated event: owed to every matching, activated subscription, durable
    /// (its record queued) before the reply.
    fn accept(
        &mut self,
        fx: &mut Effects<'_>,
        mut candidate: publish::Candidate,
        headers: &[(String, String)],
    ) -> BusReply {
        let event_id = if candidate.event_id.is_empty() {
            fx.rng.uuid_v4()
        } else {
            std::mem::take(&mut candidate.event_id)
        };
        let event = candidate.into_event(event_id.clone(), publish::trace_headers_of(headers));
        // The ids go into a list the bus keeps, to save an allocation per event.
        let mut ids = std::mem::take(&mut self.accepted_ids);
        ids.clear();
        let mut deliveries = Vec::new();
        let deliver_inactive = bug_on!(self.bugs, DeliverInactive);
        for (&id, s) in &self.subscriptions {
            if (s.condition.activated || deliver_inactive)
                && s.spec.matches(
                    &event.source_id,
                    &event.event_type,
                    &event.event_type_version,
                )
            {
                ids.push(id);
                deliveries.push(Arc::clone(&s.key));
            }
        }
        let (seq, at) = (self.next_seq, fx.now);
        // Committed with the ids at hand (see `apply`).
        self.store_event(seq, at, &event, &ids);
        self.accepted_ids = ids;
        fx.push_record(Record::Bus(BusRecord::EventAccepted {
            seq,
            at,
            event,
            deliveries,
        }));
        BusReply::Published { event_id }
    }

    /// Creates the EventActivation made by provisioning a service that has events
    /// (reference §6.3: named after the service id, `sourceId` = the RE).
    pub fn create_activation(
        &mut self,
        fx: &mut Effects<'_>,
        namespace: &str,
        name: &str,
        source_id: &str,
        display_name: &str,
    ) {
        let key = ResourceKey::new(namespace, name);
        let spec = ActivationSpec {
            source_id: source_id.to_owned(),
            display_name: display_name.to_owned(),
        };
        if self.activations.get(&key) != Some(&spec) {
            let at = fx.now;
            self.commit(
                fx,
                BusRecord::ActivationApplied {
                    activation: key,
                    spec,
                    at,
                },
            );
        }
        self.pump(fx.now);
    }

    /// Removes the EventActivation made by provisioning, on deprovisioning.
    pub fn delete_activation(&mut self, fx: &mut Effects<'_>, namespace: &str, name: &str) {
        let key = ResourceKey::new(namespace, name);
        if self.activations.contains_key(&key) {
            let at = fx.now;
            self.commit(
                fx,
                BusRecord::ActivationDeleted {
                    activation: key,
                    at,
                },
            );
        }
        self.pump(fx.now);
    }

    /// Handles timers due at `fx.now`: delivery deadlines (counted as timeouts), retries,
    /// retention expiries (dead letters); then starts what can start.
    pub fn handle_timeout(&mut self, fx: &mut Effects<'_>) {
        let now = fx.now;
        while let Some(&(until, id)) = self.holds.first()
            && until <= now
        {
            self.holds.pop_first();
            if let Some(sub) = self.subscriptions.get_mut(&id) {
                sub.held_until = None;
                mark_dirty(&mut self.dirty, id, sub);
            }
        }
        while let Some(&(deadline, id)) = self.deadlines.first()
            && deadline <= now
        {
            self.deadlines.pop_first();
            self.finish(fx, id, false);
        }
        while let Some(&(at, id, seq)) = self.retries.first()
            && at <= now
        {
            self.retries.pop_first();
            if let Some(sub) = self.subscriptions.get_mut(&id)
                && let Some(owed) = sub.pending.get_mut(&seq)
                && owed.stage == Stage::Waiting(at)
            {
                owed.stage = Stage::Ready;
                sub.ready.insert(seq);
                mark_dirty(&mut self.dirty, id, sub);
            }
        }
        while let Some(&(expires, id, seq)) = self.expiries.first()
            && expires <= now
        {
            self.expiries.pop_first();
            let Some(sub) = self.subscriptions.get(&id) else {
                continue;
            };
            if sub.pending.get(&seq).map(|owed| owed.expires) != Some(expires) {
                continue;
            }
            let key = Arc::clone(&sub.key);
            self.commit(
                fx,
                BusRecord::DeadLettered {
                    seq,
                    subscription: key,
                },
            );
        }
        self.pump(now);
    }

    /// Handles the outcome of a delivery. An outcome of an attempt that already timed out,
    /// or that the bus does not know, is ignored.
    pub fn handle_delivery_outcome(&mut self, fx: &mut Effects<'_>, outcome: DeliveryOutcome) {
        let acknowledged = outcome.acknowledges()
            || (bug_on!(self.bugs, NoRetryOn5xx)
                && matches!(outcome.result, DeliveryResult::Status(500..=599)));
        self.finish(fx, outcome.delivery, acknowledged);
        self.pump(fx.now);
    }

    /// Ends attempt `id`: acknowledged, or to be retried.
    fn finish(&mut self, fx: &mut Effects<'_>, id: DeliveryId, acknowledged: bool) {
        let Some(f) = self.in_flight.remove(&id) else {
            return;
        };
        self.deadlines.remove(&(f.deadline, id));
        let Some(sub) = self.subscriptions.get_mut(&f.sub) else {
            return;
        };
        sub.in_flight -= 1;
        mark_dirty(&mut self.dirty, f.sub, sub);
        let Some(owed) = sub.pending.get_mut(&f.seq) else {
            // Dead-lettered since the attempt started.
            sub.settled_in_flight.remove(&f.seq);
            return;
        };
        if acknowledged {
            // Committed with the id at hand (see `apply`).
            let key = Arc::clone(&sub.key);
            self.acknowledge(f.sub, f.seq);
            fx.push_record(Record::Bus(BusRecord::DeliveryAcknowledged {
                seq: f.seq,
                subscription: key,
            }));
        } else if owed.stage == Stage::InFlight(id) {
            // An event owed again since this attempt started (a replayed dead letter) has no
            // attempts yet: this failure is its first.
            let failures = owed.attempts.max(1);
            let at = self
                .config
                .retry
                .retry_at(fx.rng, f.started, fx.now, failures);
            owed.stage = Stage::Waiting(at);
            sub.retried += 1;
            self.retries.insert((at, f.sub, f.seq));
        }
    }

    /// Starts every delivery that can start: owed events of activated subscriptions, in
    /// order, up to `max_inflight` each.
    fn pump(&mut self, now: Timestamp) {
        if self.restarted {
            self.restarted = false;
            for (&id, sub) in &mut self.subscriptions {
                let until = now.saturating_add(sub.timeout(&self.config));
                sub.held_until = Some(until);
                self.holds.insert((until, id));
            }
        }
        if self.dirty.is_empty() {
            return;
        }
        // Taken and given back, to keep its allocation.
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        let deliver_inactive = bug_on!(self.bugs, DeliverInactive);
        let max_inflight_ignored = bug_on!(self.bugs, MaxInflightIgnored);
        for &id in &dirty {
            let Some(sub) = self.subscriptions.get_mut(&id) else {
                continue;
            };
            sub.dirty = false;
            if !(sub.condition.activated || deliver_inactive)
                || sub.held_until.is_some_and(|until| now < until)
            {
                continue;
            }
            let max = if max_inflight_ignored {
                usize::MAX
            } else {
                sub.max_inflight()
            };
            let deadline = now.saturating_add(sub.timeout(&self.config));
            while sub.in_flight < max
                && let Some(seq) = sub.ready.pop_first()
            {
                let delivery = DeliveryId(self.next_delivery_id);
                self.next_delivery_id += 1;
                let owed = sub
                    .pending
                    .get_mut(&seq)
                    .unwrap_or_else(|| panic!("ready event {seq} is not owed"));
                owed.attempts += 1;
                owed.stage = Stage::InFlight(delivery);
                let attempt = owed.attempts;
                sub.in_flight += 1;
                self.in_flight.insert(
                    delivery,
                    InFlight {
                        sub: id,
                        seq,
                        started: now,
                        deadline,
                    },
                );
                self.deadlines.insert((deadline, delivery));
                let event = &self.events[&seq].event;
                self.outbox.push_back(Delivery {
                    id: delivery,
                    seq,
                    subscription: Arc::clone(&sub.key),
                    attempt,
                    endpoint: Arc::clone(&sub.endpoint),
                    include_subscription_name_header: sub.spec.include_subscription_name_header,
                    deadline,
                    event: Arc::clone(event),
                });
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// The next deadline, if any: the earliest delivery deadline, retry or retention expiry.
    /// [`Timestamp::EPOCH`] means "at once": deliveries are startable (after a replay) and
    /// [`EventBus::handle_timeout`] starts them.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if !self.dirty.is_empty() {
            return Some(Timestamp::EPOCH);
        }
        [
            self.deadlines.first().map(|d| d.0),
            self.retries.first().map(|r| r.0),
            self.expiries.first().map(|e| e.0),
            self.holds.first().map(|h| h.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Called once after a restart ([`crate::Model::replay`]): the previous process may have
    /// left attempts running at subscribers, which this process cannot see. Each subscription
    /// existing now starts no delivery until its push timeout (the longest any such attempt
    /// was allowed) has passed since the first input after the restart, so `max_inflight` holds
    /// at the subscriber across a crash.
    pub fn hold_after_restart(&mut self) {
        self.restarted = true;
    }

    /// The next delivery to start, if any. It is in flight from now until its outcome or its
    /// deadline.
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.outbox.pop_front()
    }

    /// The delivery figures of a subscription.
    pub fn subscription_stats(&self, namespace: &str, name: &str) -> Option<DeliveryStats> {
        let id = self
            .subscription_ids
            .get(&ResourceKey::new(namespace, name))?;
        Some(self.subscriptions[id].stats())
    }

    /// The `events-activated` condition of a subscription.
    pub fn subscription_condition(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<ActivatedCondition> {
        let id = self
            .subscription_ids
            .get(&ResourceKey::new(namespace, name))?;
        Some(self.subscriptions[id].condition)
    }

    /// Owed events dropped because their subscription was deleted.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Accepted events still stored (owed to or dead-lettered for some subscription).
    pub fn stored_events(&self) -> usize {
        self.events.len()
    }

    /// The configuration.
    pub fn config(&self) -> &BusConfig {
        &self.config
    }
}

/// Lists subscription `id` in `dirty` for the next [`EventBus::pump`], unless it is already.
fn mark_dirty(dirty: &mut Vec<SubId>, id: SubId, sub: &mut Subscription) {
    if !sub.dirty {
        sub.dirty = true;
        dirty.push(id);
    }
}

#[cfg(test)]
mod tests;
