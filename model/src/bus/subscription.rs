//! EventActivations and Subscriptions: their specs, the CRD constraints (reference §4.5,
//! §6.3) and their resources in the CRD shape.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::publish::{is_valid_name_token, is_valid_version};
use crate::error::CommonError;
use crate::names;
use crate::time::Timestamp;

/// `apiVersion` of a Subscription.
pub const SUBSCRIPTION_API_VERSION: &str = "eventing.kyma.cx/v1alpha1";
/// `apiVersion` of an EventActivation.
pub const ACTIVATION_API_VERSION: &str = "applicationconnector.kyma-project.io/v1alpha1";
/// The type of the Subscription condition the sub-validator maintains.
pub const EVENTS_ACTIVATED: &str = "events-activated";

/// A namespaced resource name: `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ResourceKey {
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.name`.
    pub name: String,
}

impl ResourceKey {
    /// The key of `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ResourceKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// `spec` of an EventActivation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationSpec {
    /// `spec.sourceId`: the RE whose events this namespace may receive.
    #[serde(rename = "sourceId")]
    pub source_id: String,
    /// `spec.displayName`.
    #[serde(rename = "displayName")]
    pub display_name: String,
}

/// `spec` of a Subscription (snake_case, as the CRD).
///
/// The integers are signed so that out-of-range values reach validation and get a clear
/// message instead of a decoding error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSpec {
    /// Where events are POSTed: `^(https?)://.+$`, at most 512 characters.
    pub endpoint: String,
    /// Whether deliveries carry `Kyma-Subscription: <metadata.name>`.
    pub include_subscription_name_header: bool,
    /// Most deliveries in flight at once, 1–400.
    pub max_inflight: i64,
    /// Delivery timeout in milliseconds, 0–5000; 0 means the configured default.
    pub push_request_timeout_ms: i64,
    /// Event type matched, `^[a-zA-Z]+([_\-\.]?[a-zA-Z0-9]+)*$`.
    pub event_type: String,
    /// Event type version matched, `^[a-zA-Z0-9]+$`.
    pub event_type_version: String,
    /// Source matched (the RE), at least one character.
    pub source_id: String,
}

impl SubscriptionSpec {
    /// The first CRD constraint this spec breaks, as a message naming the field.
    pub fn problem(&self) -> Option<String> {
        let endpoint_ok = (self.endpoint.starts_with("http://") && self.endpoint.len() > 7)
            || (self.endpoint.starts_with("https://") && self.endpoint.len() > 8);
        if !endpoint_ok {
            return Some(format!(
                "spec.endpoint {:?} must match ^(https?)://.+$",
                self.endpoint
            ));
        }
        if self.endpoint.chars().count() > 512 {
            return Some(format!(
                "spec.endpoint must be at most 512 characters, got {}",
                self.endpoint.chars().count()
            ));
        }
        if !(1..=400).contains(&self.max_inflight) {
            return Some(format!(
                "spec.max_inflight must be between 1 and 400, got {}",
                self.max_inflight
            ));
        }
        if !(0..=5000).contains(&self.push_request_timeout_ms) {
            return Some(format!(
                "spec.push_request_timeout_ms must be between 0 and 5000, got {}",
                self.push_request_timeout_ms
            ));
        }
        if self.event_type.is_empty() {
            return Some("spec.event_type must not be empty".to_owned());
        }
        if !is_valid_name_token(&self.event_type) {
            return Some(format!(
                "spec.event_type {:?} must match ^[a-zA-Z]+([_\\-\\.]?[a-zA-Z0-9]+)*$",
                self.event_type
            ));
        }
        if self.event_type_version.is_empty() {
            return Some("spec.event_type_version must not be empty".to_owned());
        }
        if !is_valid_version(&self.event_type_version) {
            return Some(format!(
                "spec.event_type_version {:?} must match ^[a-zA-Z0-9]+$",
                self.event_type_version
            ));
        }
        if self.source_id.is_empty() {
            return Some("spec.source_id must not be empty".to_owned());
        }
        // Kyma's CRD only asked for `^(https?)://.+$`, so an endpoint no request can be sent
        // to was taken and every event for it failed until dead-lettered. ACE refuses it,
        // once the CRD's own constraints (with Kyma's messages) hold.
        if let Err(e) = super::endpoint::Endpoint::parse(&self.endpoint) {
            return Some(format!(
                "spec.endpoint {:?} is not a URL events can be pushed to: {e}",
                self.endpoint
            ));
        }
        None
    }

    /// Whether an event of this source, type and version is for this subscription.
    pub fn matches(&self, source_id: &str, event_type: &str, event_type_version: &str) -> bool {
        self.source_id == source_id
            && self.event_type == event_type
            && self.event_type_version == event_type_version
    }
}

/// The `events-activated` condition (reference §4.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActivatedCondition {
    /// `status`: `"True"` or `"False"`.
    pub activated: bool,
    /// `last_transition_time`: when `status` last changed (or the subscription was created).
    pub last_transition_time: Timestamp,
}

impl ActivatedCondition {
    /// The condition as the CRD status shows it.
    pub fn to_json(self) -> Value {
        json!({
            "type": EVENTS_ACTIVATED,
            "status": if self.activated { "True" } else { "False" },
            "last_transition_time": self.last_transition_time.to_rfc3339(),
            "reason": "",
            "message": "",
        })
    }
}

/// Why an admin request on an EventActivation or Subscription was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResourceError {
    /// A namespace is not a DNS-1123 label, or a name not a DNS-1123 subdomain.
    InvalidName {
        /// `namespace` or the kind.
        // `std::primitive::str`, not `str`: see `crate::wire::static_str`.
        #[serde(with = "crate::wire::static_str")]
        kind: &'static std::primitive::str,
        /// `label` or `subdomain`: what the name must be.
        #[serde(with = "crate::wire::static_str")]
        rule: &'static std::primitive::str,
        /// The name.
        name: String,
        /// Why.
        problem: String,
    },
    /// A spec breaks a CRD constraint.
    InvalidSpec {
        /// The kind.
        // `std::primitive::str`, not `str`: see `crate::wire::static_str`.
        #[serde(with = "crate::wire::static_str")]
        kind: &'static std::primitive::str,
        /// The message naming the field and the constraint.
        problem: String,
    },
    /// No such resource.
    NotFound {
        /// The kind.
        // `std::primitive::str`, not `str`: see `crate::wire::static_str`.
        #[serde(with = "crate::wire::static_str")]
        kind: &'static std::primitive::str,
        /// Its key.
        key: ResourceKey,
    },
}

impl ResourceError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ResourceError::NotFound { .. } => 404,
            _ => 400,
        }
    }

    /// The message of the `{code, error}` body.
    pub fn message(&self) -> String {
        match self {
            ResourceError::InvalidName {
                kind,
                rule,
                name,
                problem,
            } => format!("Invalid {kind} name {name:?}: a DNS-1123 {rule} {problem}."),
            ResourceError::InvalidSpec { kind, problem } => format!("Invalid {kind}: {problem}."),
            ResourceError::NotFound { kind, key } => format!("{kind} {key} not found."),
        }
    }

    /// The common `{code, error}` body.
    pub fn body(&self) -> Value {
        CommonError::new(self.status(), self.message()).to_json()
    }
}

/// Checks that `namespace` is a DNS-1123 label and `name` a DNS-1123 subdomain (as
/// Kubernetes checks a custom resource's name: an EventActivation may be named after its
/// source id, `stage.commerce.kyma.local`).
pub(crate) fn check_names(
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> Result<(), ResourceError> {
    let check = |kind: &'static str, rule: &'static str, value: &str, problem: Option<String>| {
        problem.map_or(Ok(()), |problem| {
            Err(ResourceError::InvalidName {
                kind,
                rule,
                name: value.to_owned(),
                problem,
            })
        })
    };
    check(
        "namespace",
        "label",
        namespace,
        names::dns1123_label_problem(namespace),
    )?;
    check(
        kind,
        "subdomain",
        name,
        names::dns1123_subdomain_problem(name),
    )?;
    Ok(())
}

/// An EventActivation in the CRD shape.
pub fn activation_resource(key: &ResourceKey, spec: &ActivationSpec) -> Value {
    json!({
        "apiVersion": ACTIVATION_API_VERSION,
        "kind": "EventActivation",
        "metadata": {"name": key.name, "namespace": key.namespace},
        "spec": {"displayName": spec.display_name, "sourceId": spec.source_id},
    })
}

/// Delivery figures of one subscription, shown in its status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryStats {
    /// Events due and not yet acknowledged or dead-lettered (in flight included).
    pub pending: u64,
    /// Deliveries started and not finished.
    #[serde(rename = "inFlight")]
    pub in_flight: u64,
    /// Events acknowledged with a 2xx.
    pub delivered: u64,
    /// Attempts that failed and were scheduled again (since the process started).
    pub retried: u64,
    /// Dead letters held (not replayed, not discarded).
    #[serde(rename = "deadLettered")]
    pub dead_lettered: u64,
    /// Owed events dead-lettered because the backlog was over its limit.
    #[serde(rename = "deadLetteredOverLimit")]
    pub over_limit: u64,
    /// Dead letters discarded because the subscription held more than its limit.
    #[serde(rename = "deadLettersDiscarded")]
    pub discarded: u64,
    /// Set while the endpoint cannot be reached and the subscription backs off as a whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffStatus>,
}

/// A subscription backing off: since when, why, and when it probes its endpoint next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffStatus {
    /// When it started.
    pub since: Timestamp,
    /// Why.
    pub reason: super::state::BackoffReason,
    /// Failed probes, counting the failure that started it.
    pub failures: u32,
    /// When the next probe starts; `None` while one is in flight.
    pub next_probe: Option<Timestamp>,
}

impl Serialize for BackoffStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        json!({
            "since": self.since.to_rfc3339(),
            "reason": self.reason.as_str(),
            "failures": self.failures,
            "nextProbe": self.next_probe.map(Timestamp::to_rfc3339),
        })
        .serialize(s)
    }
}

/// A Subscription in the CRD shape, with ACE's delivery figures in `status.delivery`.
pub fn subscription_resource(
    key: &ResourceKey,
    spec: &SubscriptionSpec,
    condition: ActivatedCondition,
    stats: DeliveryStats,
) -> Value {
    json!({
        "apiVersion": SUBSCRIPTION_API_VERSION,
        "kind": "Subscription",
        "metadata": {"name": key.name, "namespace": key.namespace},
        "spec": spec,
        "status": {
            "conditions": [condition.to_json()],
            "delivery": stats,
        },
    })
}
