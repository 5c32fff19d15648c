//! Refusals of the Kubernetes resource API, as `kind: Status` bodies with the reasons
//! Kubernetes uses (kubectl prints their messages and picks its wording by the reason).

use serde_json::{Value, json};

use super::KindInfo;

/// A refusal, rendered as a `Status`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KubeError {
    /// HTTP status.
    pub code: u16,
    /// `reason`: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, ...
    pub reason: String,
    /// `message`, as kubectl prints it.
    pub message: String,
    /// `details`, if any.
    pub details: Option<Value>,
}

impl KubeError {
    /// A refusal with no details.
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        KubeError {
            code,
            reason: reason.to_owned(),
            message: message.into(),
            details: None,
        }
    }

    /// 404 for a resource of `info` named `name`.
    pub fn not_found(info: &KindInfo, name: &str) -> Self {
        KubeError {
            details: Some(details(info, name)),
            ..KubeError::new(
                404,
                "NotFound",
                format!("{}.{} \"{name}\" not found", info.plural, info.group),
            )
        }
    }

    /// 409 for a create of a name that is taken.
    pub fn already_exists(info: &KindInfo, name: &str) -> Self {
        KubeError {
            details: Some(details(info, name)),
            ..KubeError::new(
                409,
                "AlreadyExists",
                format!("{}.{} \"{name}\" already exists", info.plural, info.group),
            )
        }
    }

    /// 409 for a write against a `resourceVersion` that is no longer current.
    pub fn conflict(info: &KindInfo, name: &str) -> Self {
        KubeError {
            details: Some(details(info, name)),
            ..KubeError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been \
                     modified; please apply your changes to the latest version and try again",
                    info.plural, info.group
                ),
            )
        }
    }

    /// 422 for a resource that breaks a rule: `field` and what is wrong with it.
    pub fn invalid(info: &KindInfo, name: &str, field: &str, problem: &str) -> Self {
        let mut d = details(info, name);
        d["kind"] = json!(info.kind);
        d["causes"] = json!([{"reason": "FieldValueInvalid", "field": field, "message": problem}]);
        KubeError {
            details: Some(d),
            ..KubeError::new(
                422,
                "Invalid",
                format!(
                    "{}.{} \"{name}\" is invalid: {field}: {problem}",
                    info.kind, info.group
                ),
            )
        }
    }

    /// 400 for a body that cannot be read.
    pub fn bad_request(message: impl Into<String>) -> Self {
        KubeError::new(400, "BadRequest", message)
    }

    /// 404 for a path that names nothing.
    pub fn no_such_path() -> Self {
        KubeError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 405 for a verb a resource does not take (read-only kinds).
    pub fn method_not_allowed(what: &str) -> Self {
        KubeError::new(
            405,
            "MethodNotAllowed",
            format!(
                "the server does not allow this method on the requested resource ({what} is read-only)"
            ),
        )
    }

    /// 415 for a patch type ACE does not take.
    pub fn unsupported_patch(content_type: &str) -> Self {
        KubeError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted \
                 media types include: application/merge-patch+json, application/apply-patch+yaml"
            ),
        )
    }

    /// The `Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

fn details(info: &KindInfo, name: &str) -> Value {
    json!({"name": name, "group": info.group, "kind": info.plural})
}

/// The `Status` of a successful delete.
pub fn deleted(info: &KindInfo, name: &str, uid: &str) -> Value {
    let mut d = details(info, name);
    d["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": d,
    })
}
