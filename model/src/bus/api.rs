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
                    .map(|(key, stats)| {
                        json!({"namespace": key.namespace, "name": key.name, "delivery": stats})
                    })
                    .collect(),
            )),
        }
    }
}
