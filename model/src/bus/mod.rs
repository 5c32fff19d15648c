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

mod accept;
mod api;
mod dispatch;
mod record;
mod resources;
mod state;

pub use api::{BusConfig, BusReply, BusRequest, GatewayEvent};
pub use delivery::{Delivery, DeliveryId, DeliveryOutcome, DeliveryResult, RetryPolicy};
pub use publish::{Event, EventServiceError, PublishError};
pub use record::BusRecord;
pub use state::EventBus;
pub use subscription::{
    ActivatedCondition, ActivationSpec, DeliveryStats, ResourceError, ResourceKey, SubscriptionSpec,
};

#[cfg(test)]
mod tests;
