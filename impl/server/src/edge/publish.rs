//! The Event Bus publish API's router (reference §4.1): `/v1/events` and its status.

use ace_model::Request;
use ace_model::bus::BusRequest;
use ace_model::limits::BodyKind;
use hyper::Method;
use hyper::body::Incoming;

use super::App;
use super::body::trace_headers;
use super::reply::{Response, from_reply, method_not_allowed, not_found, text};
use super::routes::segments;

/// `/v1/events` (any method: the model answers Kyma's 400 for all but POST),
/// `/v1/status/live`, `/v1/status/ready`.
pub async fn route(app: &App, req: hyper::Request<Incoming>) -> Response {
    let path = req.uri().path().to_owned();
    match (segments(&path).as_slice(), req.method()) {
        (["v1", "events"], _) => {
            let method = req.method().as_str().to_owned();
            let source_id_header = req
                .headers()
                .get("source-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let headers = trace_headers(req.headers());
            let body = match app.read(req, BodyKind::PublishEvent).await {
                Ok(body) => body,
                Err(r) => return r,
            };
            app.call(Request::Bus(BusRequest::Publish {
                method,
                source_id_header,
                body: body.to_vec(),
                headers,
            }))
            .await
        }
        (["v1", "status", "live"], &Method::GET) => text(200, "live\n"),
        (["v1", "status", "ready"], &Method::GET) => match app.readiness().await {
            Ok(reply) => from_reply(&reply),
            Err(_) => text(502, "not ready\n"),
        },
        (["v1", "status", "live" | "ready"], _) => method_not_allowed(),
        _ => not_found(),
    }
}
