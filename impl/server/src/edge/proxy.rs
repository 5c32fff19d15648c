//! The proxy's inbound half (reference §5): services and lambdas call
//! `<proxy>/re-<re>-<id>/<path>` (or send `Host: re-<re>-<id>...`) with their binding's
//! `Ace-Binding-Key`. The model's table decides whether the call gets through and where it
//! goes; [`crate::outbound::forward`] forwards it.

use ace_model::error::CommonError;
use ace_model::limits::BodyKind;
use ace_model::{Reply, RequestError};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use hyper::header::{CONTENT_LENGTH, HOST};

use super::App;
use super::reply::{Response, error, from_reply};
use crate::outbound::forward::{BINDING_KEY_HEADER, Call, ForwardError, Upstream};

/// Which service a request is for, and the rest of its path: the first path segment if it
/// is `re-...`, else the first label of the Host header (Kyma's access Services). Both are
/// borrowed from the request: nothing is copied before the call is allowed.
fn service_of(req: &hyper::Request<Incoming>) -> Option<(&str, &str)> {
    let path = req.uri().path();
    let trimmed = path.trim_start_matches('/');
    let first = trimmed.split_once('/').map_or(trimmed, |(f, _)| f);
    if first.starts_with("re-") {
        // The rest keeps its leading `/` (`/` when there is no rest).
        let rest = &trimmed[first.len()..];
        return Some((first, if rest.is_empty() { "/" } else { rest }));
    }
    let host = req.headers().get(HOST)?.to_str().ok()?;
    let label = host.split(['.', ':']).next()?;
    label.starts_with("re-").then_some((label, path))
}

/// Handles one call on the proxy.
pub async fn route(app: &App, req: hyper::Request<Incoming>) -> Response {
    let Some((service, path)) = service_of(&req) else {
        return error(&CommonError::route_not_found());
    };
    let binding_key = req
        .headers()
        .get(BINDING_KEY_HEADER)
        .and_then(|v| v.to_str().ok());
    // The model's decision, from the table the driver published after the last change (no
    // round trip through the driver per call).
    let decision = app.proxy_tables.borrow().decide(service, binding_key);
    let target = match decision {
        Ok(target) => target,
        Err(e) => return from_reply(&Reply::Error(RequestError::Proxy(e))),
    };
    let path = path.to_owned();
    // The caller's headers are moved into the call, not copied.
    let (parts, body) = req.into_parts();
    let body = if body.is_end_stream() {
        // No body (a GET, say): nothing to read, no timer to arm.
        Bytes::new()
    } else {
        let mut sized = hyper::Request::new(body);
        if let Some(length) = parts.headers.get(CONTENT_LENGTH) {
            sized.headers_mut().insert(CONTENT_LENGTH, length.clone());
        }
        match app.read(sized, BodyKind::Proxy).await {
            Ok(body) => body,
            Err(r) => return r,
        }
    };
    let call = Call {
        method: parts.method,
        path,
        query: parts.uri.query().map(str::to_owned),
        headers: parts.headers,
        body,
    };
    // The caller's connection's own upstream connection, which the listener put there.
    let upstream = parts.extensions.get::<Upstream>();
    match app.forwarder.forward(&target, call, upstream).await {
        Ok(response) => response.map(BodyExt::boxed),
        // The caller is not allowed to go there: a clear 403 naming the policy.
        Err(e @ ForwardError::Refused { .. }) => error(&CommonError::new(403, format!("{e}."))),
        Err(e) => error(&CommonError::new(502, e.to_string())),
    }
}
