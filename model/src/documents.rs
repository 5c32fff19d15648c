//! Resource documents, as the admin API receives them: JSON bodies checked and turned into
//! typed requests, or refused with a 400 whose message says what is wrong. The document
//! must be an object; `kind`, `metadata` and `metadata.name` may be left out but, when given,
//! must have the right type and agree with the path; unknown fields are ignored, as
//! Kubernetes does.

use serde_json::{Map, Value};

use crate::bus::subscription::{ActivationSpec, SubscriptionSpec};
use crate::bus::{BusRequest, ReplaySelection};
use crate::error::CommonError;
use crate::model::{AdminRequest, Request};

/// What a document describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DocumentKind {
    /// A RemoteEnvironment (cluster-wide).
    RemoteEnvironment,
    /// A ServiceInstance: a provisioned service class.
    ServiceInstance,
    /// A ServiceBinding of an instance.
    ServiceBinding,
    /// An EventActivation.
    EventActivation,
    /// A Subscription.
    Subscription,
    /// The body of a dead-letter replay (`{}` or `{"eventId": ...}`; empty is all).
    DeadLetterReplay,
}

impl DocumentKind {
    /// The kind's name, as in `kind:`.
    pub fn name(self) -> &'static str {
        match self {
            DocumentKind::RemoteEnvironment => "RemoteEnvironment",
            DocumentKind::ServiceInstance => "ServiceInstance",
            DocumentKind::ServiceBinding => "ServiceBinding",
            DocumentKind::EventActivation => "EventActivation",
            DocumentKind::Subscription => "Subscription",
            DocumentKind::DeadLetterReplay => "replay",
        }
    }
}

fn invalid(message: impl Into<String>) -> CommonError {
    CommonError::new(400, message)
}

/// The request `body` describes, a document of `kind` for the path's `namespace` and `name`
/// (for a replay: the subscription's).
pub fn request(
    kind: DocumentKind,
    namespace: &str,
    name: &str,
    body: &[u8],
) -> Result<Request, CommonError> {
    let (namespace, name) = (namespace.to_owned(), name.to_owned());
    if kind == DocumentKind::DeadLetterReplay {
        let event_id = replay_event_id(body).map_err(invalid)?;
        return Ok(Request::Bus(BusRequest::ReplayDeadLetters {
            namespace,
            name,
            selection: event_id.map_or(ReplaySelection::All, ReplaySelection::EventId),
        }));
    }
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("The body is not valid JSON: {e}")))?;
    let kind_name = kind.name();
    Ok(match kind {
        DocumentKind::RemoteEnvironment => {
            Request::Admin(remote_environment_from(&name, &doc).map_err(invalid)?)
        }
        DocumentKind::ServiceInstance => {
            let spec = resource_spec(&doc, kind_name, &name, false)
                .map_err(invalid)?
                .or(doc.as_object());
            let class = ["serviceClassExternalName", "serviceClassName", "class"]
                .iter()
                .find_map(|k| spec.and_then(|s| s.get(*k)).and_then(Value::as_str))
                .ok_or_else(|| invalid("spec.serviceClassExternalName is required."))?;
            Request::Admin(AdminRequest::Provision {
                namespace,
                name,
                class: class.to_owned(),
            })
        }
        DocumentKind::ServiceBinding => {
            resource_spec(&doc, kind_name, &name, false).map_err(invalid)?;
            let instance = doc
                .pointer("/spec/instanceRef/name")
                .or_else(|| doc.get("instance"))
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("spec.instanceRef.name is required."))?;
            Request::Admin(AdminRequest::Bind {
                namespace,
                name,
                instance: instance.to_owned(),
            })
        }
        DocumentKind::EventActivation => {
            let spec = required_spec(&doc, kind_name, &name)?;
            let source_id = spec
                .get("sourceId")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("spec.sourceId is required and must be a string."))?;
            let display_name = optional_str(&spec, "displayName", "spec.displayName")
                .map_err(invalid)?
                .unwrap_or_default();
            Request::Bus(BusRequest::ApplyActivation {
                namespace,
                name,
                spec: ActivationSpec {
                    source_id: source_id.to_owned(),
                    display_name: display_name.to_owned(),
                },
            })
        }
        DocumentKind::Subscription => {
            let spec = required_spec(&doc, kind_name, &name)?;
            let spec: SubscriptionSpec = serde_json::from_value(Value::Object(spec))
                .map_err(|e| invalid(format!("The Subscription's spec is invalid: {e}.")))?;
            Request::Bus(BusRequest::ApplySubscription {
                namespace,
                name,
                spec,
            })
        }
        DocumentKind::DeadLetterReplay => unreachable!("handled above"),
    })
}

/// The spec of a document that must have one.
fn required_spec(doc: &Value, kind: &str, name: &str) -> Result<Map<String, Value>, CommonError> {
    resource_spec(doc, kind, name, true)
        .map(|spec| spec.cloned().unwrap_or_default())
        .map_err(invalid)
}

/// The event a replay is limited to: the body's `eventId`, if the body (a JSON object, or
/// nothing at all) has one. A body that is not an object, or an `eventId` that is not a string,
/// is refused rather than taken as "every dead letter".
fn replay_event_id(body: &[u8]) -> Result<Option<String>, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(doc)) => Ok(optional_str(&doc, "eventId", "eventId")?.map(str::to_owned)),
        Ok(_) => Err("The body must be a JSON object.".into()),
        Err(e) => Err(format!("The body is not valid JSON: {e}")),
    }
}

/// Field `key` of `object` as text, `None` if absent or null; `what` names it in the error
/// when it is anything else.
fn optional_str<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Option<&'a str>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{what} must be a string.")),
    }
}

/// The `spec` of a resource document of `kind` for the path's `name`, if it has one; `spec`,
/// when given and not null (or when `required`), must be an object.
fn resource_spec<'a>(
    doc: &'a Value,
    kind: &str,
    name: &str,
    required: bool,
) -> Result<Option<&'a Map<String, Value>>, String> {
    let Value::Object(doc) = doc else {
        return Err(format!("A {kind} document must be a JSON object."));
    };
    match doc.get("kind") {
        None => {}
        Some(Value::String(k)) if k == kind => {}
        Some(Value::String(k)) => return Err(format!("Expected kind {kind}, got {k}.")),
        Some(_) => return Err("kind must be a string.".into()),
    }
    match doc.get("metadata") {
        None => {}
        Some(Value::Object(metadata)) => match metadata.get("name") {
            None => {}
            Some(Value::String(n)) if n == name => {}
            Some(Value::String(n)) => {
                return Err(format!(
                    "metadata.name {n} does not match the path's {name}."
                ));
            }
            Some(_) => return Err("metadata.name must be a string.".into()),
        },
        Some(_) => return Err("metadata must be an object.".into()),
    }
    match doc.get("spec") {
        Some(Value::Object(spec)) => Ok(Some(spec)),
        None | Some(Value::Null) if !required => Ok(None),
        _ => Err(format!("A {kind} needs a spec object.")),
    }
}

/// An apply of a RemoteEnvironment document (`metadata.name` must match the path).
fn remote_environment_from(name: &str, doc: &Value) -> Result<AdminRequest, String> {
    let empty = Map::new();
    let spec = resource_spec(doc, "RemoteEnvironment", name, false)?.unwrap_or(&empty);
    let description = optional_str(spec, "description", "spec.description")?
        .unwrap_or_default()
        .to_owned();
    let labels = match spec.get("labels") {
        None | Some(Value::Null) => Default::default(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| "spec.labels must map strings to strings.".to_owned())?,
    };
    let skip_verify = match spec.get("skipVerify") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("spec.skipVerify must be true or false.".into()),
    };
    Ok(AdminRequest::ApplyRemoteEnvironment {
        name: name.to_owned(),
        description,
        labels,
        skip_verify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn remote_environment_documents_are_checked() {
        let ok = json!({"kind": "RemoteEnvironment", "metadata": {"name": "ec"}, "spec": {"description": "d", "labels": {"a": "b"}}});
        assert!(matches!(
            remote_environment_from("ec", &ok),
            Ok(AdminRequest::ApplyRemoteEnvironment { .. })
        ));
        assert!(remote_environment_from("other", &ok).is_err());
        let bad = json!({"spec": {"labels": {"a": 1}}});
        assert!(remote_environment_from("ec", &bad).is_err());
    }

    #[test]
    fn a_replay_is_limited_to_a_string_event_id_and_refuses_anything_else() {
        assert_eq!(replay_event_id(b"{}"), Ok(None));
        assert_eq!(replay_event_id(b"  "), Ok(None));
        assert_eq!(replay_event_id(br#"{"eventId": null}"#), Ok(None));
        assert_eq!(
            replay_event_id(br#"{"eventId": "e1", "other": 1}"#),
            Ok(Some("e1".into()))
        );
        for (body, message) in [
            (&br#"{"eventId": {}}"#[..], "eventId must be a string."),
            (br#"{"eventId": 7}"#, "eventId must be a string."),
            (b"[]", "The body must be a JSON object."),
            (b"\"e1\"", "The body must be a JSON object."),
        ] {
            assert_eq!(replay_event_id(body), Err(message.to_owned()));
        }
        assert!(
            replay_event_id(b"{")
                .unwrap_err()
                .starts_with("The body is not valid JSON")
        );
    }

    #[test]
    fn resource_documents_must_be_objects_with_fields_of_the_right_type() {
        let spec = |doc: Value, required| {
            resource_spec(&doc, "Subscription", "s1", required).map(|s| s.cloned())
        };
        let given = json!({"endpoint": "http://x"});
        let full = json!({"kind": "Subscription", "metadata": {"name": "s1"}, "spec": given});
        assert_eq!(spec(full, true), Ok(given.as_object().cloned()));
        assert_eq!(spec(json!({}), false), Ok(None));
        assert_eq!(spec(json!({"extra": 1, "metadata": {}}), false), Ok(None));
        assert_eq!(spec(json!({"spec": null}), false), Ok(None));
        for (doc, required, message) in [
            (
                json!([null, null]),
                false,
                "A Subscription document must be a JSON object.",
            ),
            (
                json!("text"),
                false,
                "A Subscription document must be a JSON object.",
            ),
            (json!({"kind": 5}), false, "kind must be a string."),
            (
                json!({"kind": "Other"}),
                false,
                "Expected kind Subscription, got Other.",
            ),
            (
                json!({"metadata": []}),
                false,
                "metadata must be an object.",
            ),
            (
                json!({"metadata": {"name": 1}}),
                false,
                "metadata.name must be a string.",
            ),
            (
                json!({"metadata": {"name": "s2"}}),
                false,
                "metadata.name s2 does not match the path's s1.",
            ),
            (
                json!({"spec": "x"}),
                false,
                "A Subscription needs a spec object.",
            ),
            (json!({}), true, "A Subscription needs a spec object."),
            (
                json!({"spec": null}),
                true,
                "A Subscription needs a spec object.",
            ),
        ] {
            assert_eq!(
                spec(doc.clone(), required),
                Err(message.to_owned()),
                "{doc}"
            );
        }
    }

    #[test]
    fn documents_become_typed_requests_or_400s_with_the_field_named() {
        let req = |kind, body: &str| request(kind, "prod", "s1", body.as_bytes());
        assert!(matches!(
            req(
                DocumentKind::EventActivation,
                r#"{"spec": {"sourceId": "ec"}}"#
            ),
            Ok(Request::Bus(BusRequest::ApplyActivation { .. }))
        ));
        for (kind, body, message) in [
            (
                DocumentKind::EventActivation,
                r#"{"spec": {}}"#,
                "spec.sourceId is required and must be a string.",
            ),
            (
                DocumentKind::EventActivation,
                r#"{"spec": {"sourceId": "ec", "displayName": 1}}"#,
                "spec.displayName must be a string.",
            ),
            (
                DocumentKind::ServiceInstance,
                r#"{"spec": {}}"#,
                "spec.serviceClassExternalName is required.",
            ),
            (
                DocumentKind::ServiceBinding,
                r#"{"spec": {}}"#,
                "spec.instanceRef.name is required.",
            ),
            (
                DocumentKind::Subscription,
                "{",
                "The body is not valid JSON: EOF while parsing an object at line 1 column 1",
            ),
        ] {
            let got = req(kind, body).map(|_| ());
            assert_eq!(got, Err(CommonError::new(400, message)), "{kind:?} {body}");
        }
        let sub = req(DocumentKind::Subscription, r#"{"spec": {"endpoint": 5}}"#);
        assert!(
            sub.as_ref()
                .is_err_and(|e| e.error.starts_with("The Subscription's spec is invalid:")),
            "{sub:?}"
        );
    }
}
