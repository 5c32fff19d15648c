//! The Event Bus's durable records.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

use super::*;

/// Why owed events were dead-lettered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeadLetterReason {
    /// They outlived the retention.
    Retention,
    /// The subscription's backlog was over its limit; these were the oldest.
    BacklogLimit,
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
        /// The events no subscription owes or holds any more: the store may forget them.
        #[serde(default)]
        released: SeqSet,
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
        /// No subscription owes or holds the event any more: the store may forget it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        released: bool,
    },
    /// A subscription acknowledged several events: the acknowledgements one turn of the bus
    /// decided, written as one record (see `EventBus::acknowledged`). Applying it
    /// is applying a `DeliveryAcknowledged` for each of `seqs`.
    DeliveriesAcknowledged {
        /// The subscription.
        subscription: Arc<ResourceKey>,
        /// The events it acknowledged.
        seqs: SeqSet,
        /// Of those, the events no subscription owes or holds any more: the store may forget
        /// them.
        #[serde(default, skip_serializing_if = "SeqSet::is_empty")]
        released: SeqSet,
    },
    /// Events owed to a subscription were dead-lettered, for `reason`.
    EventsDeadLettered {
        /// The subscription.
        subscription: Arc<ResourceKey>,
        /// The events (those still owed when the record is applied).
        seqs: SeqSet,
        /// Why.
        reason: DeadLetterReason,
    },
    /// The arrival index forgets the expiry times up to `now`: what they expired was
    /// dead-lettered by the [`BusRecord::EventsDeadLettered`] records before this one.
    RetentionPassed {
        /// When.
        now: Timestamp,
    },
    /// The oldest dead letters of a subscription were discarded, beyond its limit of dead
    /// letters.
    DeadLettersDiscarded {
        /// The subscription.
        subscription: Arc<ResourceKey>,
        /// The dead letters discarded.
        seqs: SeqSet,
        /// Those no subscription owes or holds any more: the store may forget them.
        released: SeqSet,
    },
    /// Dead letters of a subscription were queued again at `at`, with a fresh retention.
    DeadLettersReplayed {
        /// The subscription.
        subscription: Arc<ResourceKey>,
        /// The dead letters (those still dead letters when the record is applied).
        seqs: SeqSet,
        /// When.
        at: Timestamp,
    },
    /// What a subscription owes and holds, as a snapshot carries it over.
    SubscriptionBacklog {
        /// The subscription.
        subscription: Arc<ResourceKey>,
        /// The events it owes.
        owed: SeqSet,
        /// Its dead letters.
        dead: SeqSet,
        /// Owed events whose retention was restarted by a replay, with the new expiry.
        replayed: Vec<(Timestamp, SeqSet)>,
    },
    /// The arrival index a snapshot carries over: for each expiry time, the last event that
    /// expires then.
    Arrivals {
        /// `(expiry, last sequence number)`, in order.
        expiries: Vec<(Timestamp, u64)>,
    },
    /// An event owed to a subscription outlived the retention (written before
    /// [`BusRecord::RetentionPassed`]; still read).
    DeadLettered {
        /// The event's sequence number.
        seq: u64,
        /// The subscription.
        subscription: Arc<ResourceKey>,
    },
    /// A dead letter was queued again at `at`, with a fresh retention (written before
    /// [`BusRecord::DeadLettersReplayed`]; still read).
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
        /// Owed events it dead-lettered because its backlog was over the limit.
        #[serde(default)]
        over_limit: u64,
        /// Dead letters it discarded because it held too many.
        #[serde(default)]
        discarded: u64,
    },
}
