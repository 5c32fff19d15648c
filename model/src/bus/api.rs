//! The Event Bus's vocabulary: its configuration, the requests it takes and its answers.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::*;

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
    /// Owed events each subscription keeps loaded (at least its `max_inflight`); the rest
    /// of its backlog stays in the store and is read in order as deliveries settle.
    pub backlog_window: usize,
    /// Most events a subscription may owe; beyond it its oldest owed events are
    /// dead-lettered (reason `backlog-limit`, counted in `deadLetteredOverLimit`).
    pub max_backlog_events: u64,
    /// Most dead letters a subscription keeps; beyond it the oldest are discarded (counted
    /// in `deadLettersDiscarded`).
    pub max_dead_letters: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            max_event_bytes: 64 * 1024,
            max_resident_body_bytes: 64 * 1024 * 1024,
            retention: Duration::from_secs(24 * 3600),
            default_push_timeout: Duration::from_millis(1000),
            retry: RetryPolicy::default(),
            backlog_window: 2048,
            max_backlog_events: 1_000_000,
            max_dead_letters: 1_000_000,
        }
    }
}

/// A request to the Event Bus: the publish API, and the admin surface of activations,
/// subscriptions and dead letters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BusRequest {
    /// `/v1/events` on the publish API, any method.
    Publish {
        /// The HTTP method.
        method: String,
        /// The `Source-Id` header, if present.
        source_id_header: Option<String>,
        /// Raw body.
        #[serde(with = "crate::wire::base64_bytes")]
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
    /// Read dead letters of a namespace, or of all, in order of subscription and event.
    ListDeadLetters {
        /// Only this namespace.
        namespace: Option<String>,
        /// Only those after this one (the previous page's last).
        after: Option<DeadLetterRef>,
        /// At most this many.
        limit: usize,
    },
    /// The delivery figures of every subscription (for `/metrics`).
    DeliveryFigures,
    /// Queue dead letters of a subscription again, with a fresh retention.
    ReplayDeadLetters {
        /// Namespace.
        namespace: String,
        /// Subscription name.
        name: String,
        /// Which.
        selection: ReplaySelection,
    },
}

/// One dead letter: a subscription and an event's sequence number.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeadLetterRef {
    /// The subscription.
    pub subscription: ResourceKey,
    /// The event.
    pub seq: u64,
}

impl std::fmt::Display for DeadLetterRef {
    /// `namespace/name/seq`: the `continue` token of a listing.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.subscription.namespace, self.subscription.name, self.seq
        )
    }
}

impl std::str::FromStr for DeadLetterRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a dead-letter token (namespace/name/sequence)");
        let mut parts = s.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(ns), Some(name), Some(seq), None) if !ns.is_empty() && !name.is_empty() => {
                Ok(DeadLetterRef {
                    subscription: ResourceKey::new(ns, name),
                    seq: seq.parse().map_err(|_| bad())?,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// Which dead letters of a subscription a replay queues again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplaySelection {
    /// All of them.
    All,
    /// Those of this event id. The bus does not keep events' ids in memory: it answers
    /// [`BusReply::ReplayNeedsEvents`] and the shell, which reads the store, asks again with
    /// [`ReplaySelection::Seqs`].
    EventId(String),
    /// These events (those that are dead letters).
    Seqs(Vec<u64>),
}

/// An event sent by an external solution to `POST /{re}/v1/events`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GatewayEvent {
    /// Raw body.
    #[serde(with = "crate::wire::base64_bytes")]
    pub body: Vec<u8>,
    /// Request headers the shell passes on (only trace headers are kept).
    pub headers: Vec<(String, String)>,
}

/// The answer to a [`BusRequest`] or to an Event Service call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// `200`: every subscription's delivery figures, by key. (`DeliveryStats`' own
    /// `Serialize` is the status clients see, which cannot be read back: the channel between
    /// replicas carries the figures in full.)
    Figures(#[serde(with = "crate::wire::delivery_figures")] Vec<(ResourceKey, DeliveryStats)>),
    /// `200`: dead letters, in order; the shell adds each event's fields from the store.
    DeadLetters {
        /// The dead letters.
        entries: Vec<DeadLetterRef>,
        /// Where the next page starts, if there are more.
        more: Option<DeadLetterRef>,
    },
    /// A replay of the dead letters of one event id: the subscription's dead letters, for
    /// the shell to pick those of `event_id` from the store and ask again.
    ReplayNeedsEvents {
        /// The subscription.
        subscription: ResourceKey,
        /// The event id asked for.
        event_id: String,
        /// Its dead letters.
        seqs: Vec<u64>,
    },
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
            BusReply::Figures(_) | BusReply::DeadLetters { .. } => 200,
            // Never sent: the shell resolves it.
            BusReply::ReplayNeedsEvents { .. } => 500,
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
                    .map(|(key, stats)| {
                        json!({"namespace": key.namespace, "name": key.name, "delivery": stats})
                    })
                    .collect(),
            )),
            BusReply::DeadLetters { entries, .. } => Some(Value::Array(
                entries
                    .iter()
                    .map(|d| {
                        json!({
                            "namespace": d.subscription.namespace,
                            "subscription": d.subscription.name,
                            "seq": d.seq,
                        })
                    })
                    .collect(),
            )),
            BusReply::ReplayNeedsEvents { .. } => None,
        }
    }
}
