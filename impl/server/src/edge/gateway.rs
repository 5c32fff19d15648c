//! The gateway's router: the Metadata Service and the Event Service of one RE (reference §2,
//! §3), behind mutual TLS; the model decides whether the verified certificate opens the RE.

use ace_model::bus::GatewayEvent;
use ace_model::connector::PeerCertificate;
use ace_model::limits::BodyKind;
use ace_model::{GatewayCall, Request};
use bytes::Bytes;
use hyper::Method;
use hyper::body::Incoming;

use super::App;
use super::body::trace_headers;
use super::reply::{Response, method_not_allowed, not_found, respond};
use super::routes::segments;

/// `/{re}/v1/metadata/...`, `/{re}/v1/events`, `/v1/health`.
pub async fn route(
    app: &App,
    req: hyper::Request<Incoming>,
    peer: Option<PeerCertificate>,
) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let segs = segments(&path);
    if segs.as_slice() == ["v1", "health"] {
        return if method == Method::GET {
            respond(200, None, Bytes::new())
        } else {
            method_not_allowed()
        };
    }
    let (re, rest) = match segs.split_first() {
        Some((re, rest)) if !re.is_empty() && rest.first() == Some(&"v1") => {
            ((*re).to_owned(), &rest[1..])
        }
        _ => return not_found(),
    };
    let call = match (rest, &method) {
        (
            ["metadata"],
            &Method::GET | &Method::POST | &Method::PUT | &Method::DELETE | &Method::PATCH,
        ) => GatewayCall::MetadataRoot,
        (["metadata", "api.yaml"], &Method::GET) => GatewayCall::MetadataSpec,
        (["metadata", "services"], &Method::GET) => GatewayCall::ListServices,
        (["metadata", "services"], &Method::POST) => {
            match app.read(req, BodyKind::Metadata).await {
                Ok(body) => GatewayCall::CreateService {
                    body: body.to_vec(),
                },
                Err(r) => return r,
            }
        }
        (["metadata", "services", id], &Method::GET) => GatewayCall::GetService {
            id: (*id).to_owned(),
        },
        (["metadata", "services", id], &Method::PUT) => {
            let id = (*id).to_owned();
            match app.read(req, BodyKind::Metadata).await {
                Ok(body) => GatewayCall::UpdateService {
                    id,
                    body: body.to_vec(),
                },
                Err(r) => return r,
            }
        }
        (["metadata", "services", id], &Method::DELETE) => GatewayCall::DeleteService {
            id: (*id).to_owned(),
        },
        (
            ["metadata"]
            | ["metadata", "api.yaml"]
            | ["metadata", "services"]
            | ["metadata", "services", _],
            _,
        ) => return method_not_allowed(),
        (["events", ..], &Method::POST) => {
            let headers = trace_headers(req.headers());
            match app.read(req, BodyKind::GatewayEvent).await {
                Ok(body) => GatewayCall::PublishEvent(GatewayEvent {
                    body: body.to_vec(),
                    headers,
                }),
                Err(r) => return r,
            }
        }
        (["events", ..], _) => return method_not_allowed(),
        _ => return not_found(),
    };
    app.call(Request::Gateway { re, peer, call }).await
}
