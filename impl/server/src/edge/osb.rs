//! The Open Service Broker API (v2.x) for one namespace, at `/broker/{namespace}/v2/...` on
//! the admin listener: the catalog of the namespace's service classes, provisioning and
//! binding. It translates OSB calls into the model's admin requests, and the model's answers
//! into OSB's shapes (its own error body, 410 for deleting what is gone).

use ace_model::error::{ClientError, CommonError};
use ace_model::limits::BodyKind;
use ace_model::{AdminRequest, Reply, Request, RequestError};
use bytes::Bytes;
use hyper::Method;
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::App;
use super::reply::{self, Response, from_reply};

/// The lowest OSB API version ACE speaks.
pub const MIN_VERSION: (u32, u32) = (2, 0);

fn osb(status: u16, body: &Value) -> Response {
    reply::respond(
        status,
        Some("application/json"),
        Bytes::from(body.to_string()),
    )
}

fn osb_error(status: u16, error: &str, description: String) -> Response {
    osb(
        status,
        &json!({ "error": error, "description": description }),
    )
}

/// Whether an `X-Broker-API-Version` value is `2.minor` with `minor` at least
/// [`MIN_VERSION`]'s (OSB: "2.14"; both parts decimal digits only).
fn version_ok(value: Option<&str>) -> bool {
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    match value.and_then(|v| v.split_once('.')) {
        Some((major, minor)) if digits(major) && digits(minor) => {
            // Digits that do not fit a u64 are a number larger than any minimum.
            major == MIN_VERSION.0.to_string()
                && minor
                    .parse::<u64>()
                    .map_or(true, |m| m >= u64::from(MIN_VERSION.1))
        }
        _ => false,
    }
}

/// The catalog entry of a service class, in OSB's shape.
fn service_of(class: &Value) -> Value {
    json!({
        "id": class["id"],
        "name": class["externalName"],
        "description": class["description"],
        "bindable": class["bindable"],
        "metadata": class["metadata"],
        "plans": [{
            "id": class["plans"][0]["id"],
            "name": "default",
            "description": "The registered API and events of this service",
            "free": true,
        }],
    })
}

/// Handles `/broker/{namespace}/v2/<rest>`.
pub async fn route(
    app: &App,
    namespace: &str,
    rest: &[&str],
    req: hyper::Request<Incoming>,
) -> Response {
    let method = req.method().clone();
    let known = matches!(
        (rest, &method),
        (["catalog"], &Method::GET)
            | (["service_instances", _], &Method::PUT | &Method::DELETE)
            | (
                ["service_instances", _, "service_bindings", _],
                &Method::PUT | &Method::DELETE
            )
    );
    let version = req
        .headers()
        .get("x-broker-api-version")
        .and_then(|v| v.to_str().ok());
    if known && !version_ok(version) {
        return osb_error(
            412,
            "PreconditionFailed",
            "X-Broker-API-Version 2.x (at least 2.0) is required.".into(),
        );
    }
    let request = match (rest, &method) {
        (["catalog"], &Method::GET) => {
            return match app
                .ask(Request::Admin(AdminRequest::Catalog {
                    namespace: namespace.to_owned(),
                }))
                .await
            {
                Ok(Reply::Resource { body, .. }) => {
                    let services: Vec<Value> = body
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(service_of)
                        .collect();
                    osb(200, &json!({ "services": services }))
                }
                Ok(reply) => from_reply(&reply),
                Err(e) => reply::unavailable(e),
            };
        }
        (["service_instances", instance], &Method::PUT) => {
            let body = match app.read(req, BodyKind::Command).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let doc: Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    return osb_error(
                        400,
                        "BadRequest",
                        format!("The body is not valid JSON: {e}"),
                    );
                }
            };
            let Some(service_id) = doc.get("service_id").and_then(Value::as_str) else {
                return osb_error(400, "BadRequest", "service_id is required.".into());
            };
            AdminRequest::Provision {
                namespace: namespace.to_owned(),
                name: (*instance).to_owned(),
                class: service_id.to_owned(),
            }
        }
        (["service_instances", instance], &Method::DELETE) => AdminRequest::Deprovision {
            namespace: namespace.to_owned(),
            name: (*instance).to_owned(),
        },
        (["service_instances", instance, "service_bindings", binding], &Method::PUT) => {
            AdminRequest::Bind {
                namespace: namespace.to_owned(),
                name: (*binding).to_owned(),
                instance: (*instance).to_owned(),
            }
        }
        (["service_instances", _, "service_bindings", binding], &Method::DELETE) => {
            AdminRequest::Unbind {
                namespace: namespace.to_owned(),
                name: (*binding).to_owned(),
            }
        }
        (
            ["catalog"]
            | ["service_instances", _]
            | ["service_instances", _, "service_bindings", _],
            _,
        ) => {
            return reply::error(&CommonError::method_not_allowed());
        }
        _ => return reply::error(&CommonError::route_not_found()),
    };
    let deleting = matches!(
        request,
        AdminRequest::Deprovision { .. } | AdminRequest::Unbind { .. }
    );
    match app.ask(Request::Admin(request)).await {
        Ok(Reply::Resource { status, body }) => match body.get("credentials") {
            Some(credentials) => osb(status, &json!({ "credentials": credentials })),
            None => osb(status, &json!({})),
        },
        Ok(Reply::NoContent) => osb(200, &json!({})),
        // OSB: deleting what does not exist is 410 Gone.
        Ok(Reply::Error(e)) if deleting && e.status() == 404 => osb(410, &json!({})),
        Ok(Reply::Error(e)) => {
            let status = e.status();
            let message = e.body()["error"].as_str().unwrap_or_default().to_owned();
            let kind = match (status, &e) {
                (409, _) => "Conflict",
                (404, RequestError::Admin(_)) => "NotFound",
                _ => "BadRequest",
            };
            osb_error(if status == 404 { 400 } else { status }, kind, message)
        }
        Ok(reply) => from_reply(&reply),
        Err(e) => reply::unavailable(e),
    }
}

#[cfg(test)]
mod tests {
    use super::version_ok;

    #[test]
    fn the_version_header_must_be_two_point_something() {
        for ok in [
            "2.0",
            "2.14",
            "2.100",
            "2.079076104897",
            "2.99999999999999999999999",
        ] {
            assert!(version_ok(Some(ok)), "{ok}");
        }
        for bad in [
            None,
            Some(""),
            Some("2"),
            Some("2."),
            Some(".14"),
            Some("1.14"),
            Some("3.0"),
            Some("2.x"),
            Some("2.+1"),
            Some("2.14.1"),
            Some("02.14"),
            Some("99999999999999999999999.1"),
            Some(" 2.14"),
        ] {
            assert!(!version_ok(bad), "{bad:?}");
        }
    }
}
