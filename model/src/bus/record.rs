//! The Event Bus's durable records.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

use super::*;

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
