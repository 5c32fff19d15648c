//! Rendering answers: the model's replies as HTTP responses, and the few the edge sends
//! without asking the model (unknown routes, the server stopping, served files).

use ace_model::Reply;
use ace_model::error::{ClientError, CommonError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use serde_json::Value;

use crate::driver::Stopped;
use crate::specs;

/// A response as ACE sends it.
pub type Response = hyper::Response<Body>;

/// A response body: whole (everything ACE answers itself) or streamed (a proxied response).
pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// A whole body.
pub fn full(bytes: Bytes) -> Body {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// The content type of the Application Connector's JSON answers (as Kyma's Go services).
const AC_JSON: &str = "application/json;charset=UTF-8";

/// A response with `status`, an optional content type and `body`.
pub fn respond(status: u16, content_type: Option<&'static str>, body: Bytes) -> Response {
    let mut r = hyper::Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(ct) = content_type {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    r
}

/// A JSON response.
pub fn json(status: u16, content_type: &'static str, body: &Value) -> Response {
    respond(status, Some(content_type), Bytes::from(body.to_string()))
}

/// The common `{code, error}` body.
pub fn error(e: &CommonError) -> Response {
    json(e.code, AC_JSON, &e.to_json())
}

/// An unknown route.
pub fn not_found() -> Response {
    error(&CommonError::route_not_found())
}

/// A known route with another method (the caller adds `Allow`).
pub fn method_not_allowed() -> Response {
    error(&CommonError::method_not_allowed())
}

/// The driver has stopped: the server is going down.
pub fn unavailable(_: Stopped) -> Response {
    error(&CommonError::new(503, "The server is shutting down."))
}

/// A 301 to `location`.
pub fn redirect(location: &str) -> Response {
    let mut r = respond(301, None, Bytes::new());
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// A YAML file (an OpenAPI document).
pub fn yaml(text: &'static str) -> Response {
    respond(
        200,
        Some("application/yaml"),
        Bytes::from_static(text.as_bytes()),
    )
}

/// Plain text.
pub fn text(status: u16, body: &'static str) -> Response {
    respond(
        status,
        Some("text/plain"),
        Bytes::from_static(body.as_bytes()),
    )
}

/// The reply as HTTP (a certificate reply is signed first, by the connector's router).
pub fn from_reply(reply: &Reply) -> Response {
    match reply {
        Reply::Redirect { location } => redirect(location),
        Reply::NoContent => respond(204, None, Bytes::new()),
        Reply::MetadataSpec => yaml(specs::GATEWAY),
        Reply::Ready => text(200, "ready\n"),
        Reply::Error(e) => json(e.status(), AC_JSON, &e.body()),
        other => match other.body() {
            Some(body) => json(other.status(), "application/json", &body),
            None => respond(other.status(), None, Bytes::new()),
        },
    }
}
