//! The Event Service and the Event Bus: publishing, activation, subscriptions, at-least-once
//! push delivery (reference §3, §4 and §6.3, seed `event-bus.txt`).
//!
//! # What is durable
//!
//! Activations, subscriptions (spec and `events-activated` condition), and for every accepted
//! event the subscriptions still owed it ([`BusRecord::EventAccepted`] names them;
//! [`BusRecord::DeliveryAcknowledged`], [`BusRecord::DeliveriesAcknowledged`] and
//! [`BusRecord::EventsDeadLettered`] settle them). An
//! event is answered 200 only after its record is queued, and the shell makes records
//! durable before it releases replies, so an accepted event survives a crash.
//!
//! What is not durable: which deliveries are in flight, retry timers and attempt counts,
//! which owed events are loaded, backoffs. After [`EventBus::apply`]-ing the records of a
//! previous process, every owed delivery is startable at once: [`EventBus::poll_timeout`]
//! answers [`Timestamp::EPOCH`] ("now") and the next [`EventBus::handle_timeout`] starts them.
//!
//! # Memory independent of the backlog
//!
//! What a subscription owes is a compressed set of sequence numbers ([`SeqSet`]); only a
//! window of it is loaded (the `state` module says how), and the shell reads the rest from its store as the
//! window moves ([`EventBus::poll_backlog_read`], [`EventBus::handle_backlog`]). A snapshot
//! carries the sets, not a record per event.
//!
//! # Delivery
//!
//! An accepted event is owed to every subscription that matches its (source, type, version)
//! and is activated at that moment. Per subscription, owed events start in order of
//! acceptance, never more than `max_inflight` at once; a 2xx acknowledges, anything else
//! (another status, a timeout, a connection error, a passed deadline) schedules a retry by the
//! [`RetryPolicy`]. After [`BACKOFF_AFTER`] attempts in a row that could not reach the
//! endpoint (refused or broken connections, timeouts), the subscription backs off as a whole:
//! one push at a time (a probe), spaced by the retry policy, until one is answered. An event
//! still owed after the retention is dead-lettered for that subscription: listed, counted,
//! and replayable. Over `max_backlog_events` the oldest owed events are dead-lettered early,
//! counted; over `max_dead_letters` the oldest dead letters are discarded, counted. A
//! deactivated subscription keeps its owed events paused; an update keeps them and applies the
//! new spec to later attempts; a deletion drops them, counted. While the shell says the store
//! is full ([`EventBus::handle_storage`]), publishes are refused with 507.

pub mod delivery;
pub mod endpoint;
pub mod ledger;
pub mod publish;
pub mod seqset;
pub mod subscription;

mod accept;
mod api;
mod dispatch;
mod record;
mod resources;
mod state;

pub use api::{BusConfig, BusReply, BusRequest, DeadLetterRef, GatewayEvent, ReplaySelection};
pub use delivery::{Delivery, DeliveryId, DeliveryOutcome, DeliveryResult, RetryPolicy};
pub use publish::{Event, EventServiceError, PublishError};
pub use record::{BusRecord, DeadLetterReason};
pub use seqset::SeqSet;
pub use state::{
    BACKOFF_AFTER, BacklogPage, BacklogRead, BackoffReason, EventBus, ReadId, StoredEvent,
};
pub use subscription::{
    ActivatedCondition, ActivationSpec, BackoffStatus, DeliveryStats, ResourceError, ResourceKey,
    SubscriptionSpec,
};

#[cfg(test)]
mod tests;
