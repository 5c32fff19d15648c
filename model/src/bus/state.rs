//! The Event Bus's state: activations, subscriptions with what each is owed, stored events;
//! how each record changes it ([`EventBus::apply`]) and the records that rebuild it
//! ([`EventBus::snapshot`]).

use std::collections::{BTreeMap, BTreeSet, VecDeque, btree_map};
use std::sync::Arc;
use std::time::Duration;

use crate::bugs::Bugs;
use crate::effects::Effects;
use crate::record::Record;
use crate::time::Timestamp;

use super::*;

/// An accepted event still owed to (or dead-lettered for) some subscription.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct StoredEvent {
    pub(super) event: Arc<Event>,
    pub(super) accepted_at: Timestamp,
    /// Subscriptions that still owe it or hold it as a dead letter.
    pub(super) refs: usize,
}

/// Internal handle of a subscription: a re-created subscription of the same name gets a new
/// one, so stale timers and outcomes of the old one never touch it.
pub(super) type SubId = u64;

#[derive(Clone, Debug)]
pub(super) struct Subscription {
    /// Shared with every record and delivery that names it.
    pub(super) key: Arc<ResourceKey>,
    pub(super) spec: SubscriptionSpec,
    /// `spec.endpoint`, shared with every delivery.
    pub(super) endpoint: Arc<str>,
    pub(super) condition: ActivatedCondition,
    /// Owed events, by sequence number (see [`Owed`]).
    pub(super) pending: BTreeMap<u64, Owed>,
    /// Durable: dead letters.
    pub(super) dead: BTreeSet<u64>,
    /// Durable: acknowledged events.
    pub(super) delivered: u64,
    /// Volatile: owed events ready to start ([`Stage::Ready`]), in order.
    pub(super) ready: ReadyQueue,
    /// Volatile: attempts in flight, counting those in `settled_in_flight`.
    pub(super) in_flight: usize,
    /// Volatile: attempts in flight for events no longer owed (dead-lettered since they
    /// started), by event. Should such an event be owed again (replayed), it is in flight.
    pub(super) settled_in_flight: BTreeMap<u64, DeliveryId>,
    /// Volatile: failed attempts scheduled again.
    pub(super) retried: u64,
    /// Volatile: listed in [`EventBus::dirty`].
    pub(super) dirty: bool,
    /// Volatile: after a restart, no delivery starts before this time (see
    /// [`EventBus::hold_after_restart`]).
    pub(super) held_until: Option<Timestamp>,
}

/// What a subscription keeps of an event it owes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Owed {
    /// Durable: when it is dead-lettered.
    pub(super) expires: Timestamp,
    /// Volatile: attempts so far (0 until the first starts, and again after a replay).
    pub(super) attempts: u32,
    /// Volatile: where it is in the delivery cycle.
    pub(super) stage: Stage,
}

/// The owed events of a subscription that are ready to start, in order of sequence number.
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
}

/// Where an owed event is in the delivery cycle. Kept with the event so that settling it
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
    pub(super) fn durable_eq(&self, other: &Self) -> bool {
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

    pub(super) fn stats(&self) -> DeliveryStats {
        DeliveryStats {
            pending: self.pending.len() as u64,
            in_flight: self.in_flight as u64,
            delivered: self.delivered,
            retried: self.retried,
            dead_lettered: self.dead.len() as u64,
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
    pub(super) events: BTreeMap<u64, StoredEvent>,
    pub(super) next_seq: u64,
    pub(super) dropped: u64,
    // Volatile.
    pub(super) next_sub_id: SubId,
    pub(super) next_delivery_id: u64,
    pub(super) in_flight: BTreeMap<DeliveryId, InFlight>,
    pub(super) deadlines: BTreeSet<(Timestamp, DeliveryId)>,
    pub(super) retries: BTreeSet<(Timestamp, SubId, u64)>,
    pub(super) expiries: BTreeSet<(Timestamp, SubId, u64)>,
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
    pub(super) outbox: VecDeque<Delivery>,
    /// Scratch: the subscriptions due the event being accepted.
    pub(super) accepted_ids: Vec<SubId>,
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
            egress: crate::egress::EgressPolicy::default(),
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

    /// An event no longer owed to (nor dead-lettered for) one subscription.
    pub(super) fn release(&mut self, seq: u64) {
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
    pub(super) fn settle(&mut self, id: SubId, seq: u64) -> bool {
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
    pub(super) fn owe(&mut self, id: SubId, seq: u64, expires: Timestamp) {
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
    pub(super) fn acknowledge(&mut self, id: SubId, seq: u64) {
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
}

/// Lists subscription `id` in `dirty` for the next [`EventBus::pump`], unless it is already.
pub(super) fn mark_dirty(dirty: &mut Vec<SubId>, id: SubId, sub: &mut Subscription) {
    if !sub.dirty {
        sub.dirty = true;
        dirty.push(id);
    }
}
