//! The HTTP edges: one router per surface. They translate HTTP into model requests and model
//! replies into HTTP; every decision is the model's.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use ace_model::bus::publish::{EventServiceError, PublishError};
use ace_model::bus::subscription::{ActivationSpec, SubscriptionSpec};
use ace_model::bus::{BusReply, BusRequest};
use ace_model::connector::{self, PeerCertificate};
use ace_model::error::{ClientError, CommonError};
use ace_model::{AdminRequest, GatewayCall, Reply, Request};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::driver::{Handle, Stopped};
use crate::metrics::{Metrics, SubscriptionFigures};
use crate::pki::Ca;
use crate::specs;

/// A response as ACE sends it.
pub type Response = hyper::Response<Body>;

/// A response body: whole (everything ACE answers itself) or streamed (a proxied response).
pub type Body = http_body_util::combinators::BoxBody<Bytes, hyper::Error>;

/// A whole body.
pub fn full(bytes: Bytes) -> Body {
    use http_body_util::BodyExt as _;
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// Which listener a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Surface {
    /// Connector internal API (plain HTTP, loopback).
    ConnectorInternal,
    /// Connector external API (HTTPS).
    ConnectorExternal,
    /// Gateway (HTTPS with client certificates).
    Gateway,
    /// Admin API, metrics and health (plain HTTP, loopback).
    Admin,
    /// Event Bus publish API and its status (plain HTTP, loopback).
    Publish,
    /// The proxy to registered APIs (plain HTTP, loopback).
    Proxy,
}

impl Surface {
    /// The label used in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Surface::ConnectorInternal => "connector_internal",
            Surface::ConnectorExternal => "connector_external",
            Surface::Gateway => "gateway",
            Surface::Admin => "admin",
            Surface::Publish => "publish",
            Surface::Proxy => "proxy",
        }
    }
}

/// Every route ACE serves: surface, method, path template (as in the OpenAPI files).
/// `impl/tests/specs.rs` checks this table against `specs/` and against a live server.
pub const ROUTES: &[(Surface, &str, &str)] = &[
    (
        Surface::ConnectorInternal,
        "POST",
        "/v1/remoteenvironments/{reName}/tokens",
    ),
    (Surface::ConnectorInternal, "GET", "/v1/api.yaml"),
    (
        Surface::ConnectorExternal,
        "GET",
        "/v1/remoteenvironments/{reName}/info",
    ),
    (
        Surface::ConnectorExternal,
        "POST",
        "/v1/remoteenvironments/{reName}/client-certs",
    ),
    (Surface::ConnectorExternal, "GET", "/v1"),
    (Surface::ConnectorExternal, "GET", "/v1/api.yaml"),
    (Surface::Gateway, "GET", "/v1/health"),
    (Surface::Gateway, "GET", "/{reName}/v1/metadata"),
    (Surface::Gateway, "POST", "/{reName}/v1/metadata"),
    (Surface::Gateway, "PUT", "/{reName}/v1/metadata"),
    (Surface::Gateway, "DELETE", "/{reName}/v1/metadata"),
    (Surface::Gateway, "PATCH", "/{reName}/v1/metadata"),
    (Surface::Gateway, "GET", "/{reName}/v1/metadata/api.yaml"),
    (Surface::Gateway, "GET", "/{reName}/v1/metadata/services"),
    (Surface::Gateway, "POST", "/{reName}/v1/metadata/services"),
    (
        Surface::Gateway,
        "GET",
        "/{reName}/v1/metadata/services/{serviceId}",
    ),
    (
        Surface::Gateway,
        "PUT",
        "/{reName}/v1/metadata/services/{serviceId}",
    ),
    (
        Surface::Gateway,
        "DELETE",
        "/{reName}/v1/metadata/services/{serviceId}",
    ),
    (Surface::Gateway, "POST", "/{reName}/v1/events"),
    (Surface::Admin, "GET", "/healthz"),
    (Surface::Admin, "GET", "/readyz"),
    (Surface::Admin, "GET", "/metrics"),
    (Surface::Admin, "GET", "/v1/api.yaml"),
    (Surface::Admin, "GET", "/v1/remoteenvironments"),
    (Surface::Admin, "GET", "/v1/remoteenvironments/{name}"),
    (Surface::Admin, "PUT", "/v1/remoteenvironments/{name}"),
    (Surface::Admin, "DELETE", "/v1/remoteenvironments/{name}"),
    (Surface::Admin, "GET", "/v1/environmentmappings"),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/environmentmappings",
    ),
    (
        Surface::Admin,
        "PUT",
        "/v1/namespaces/{namespace}/environmentmappings/{name}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/v1/namespaces/{namespace}/environmentmappings/{name}",
    ),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/serviceclasses",
    ),
    (
        Surface::Admin,
        "PUT",
        "/v1/namespaces/{namespace}/serviceinstances/{name}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/v1/namespaces/{namespace}/serviceinstances/{name}",
    ),
    (Surface::Admin, "GET", "/v1/eventactivations"),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/eventactivations",
    ),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/eventactivations/{name}",
    ),
    (
        Surface::Admin,
        "PUT",
        "/v1/namespaces/{namespace}/eventactivations/{name}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/v1/namespaces/{namespace}/eventactivations/{name}",
    ),
    (Surface::Admin, "GET", "/v1/subscriptions"),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/subscriptions",
    ),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/subscriptions/{name}",
    ),
    (
        Surface::Admin,
        "PUT",
        "/v1/namespaces/{namespace}/subscriptions/{name}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/v1/namespaces/{namespace}/subscriptions/{name}",
    ),
    (Surface::Admin, "GET", "/v1/deadletters"),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/deadletters",
    ),
    (
        Surface::Admin,
        "POST",
        "/v1/namespaces/{namespace}/subscriptions/{name}/replay",
    ),
    (Surface::Publish, "GET", "/v1/events"),
    (Surface::Publish, "POST", "/v1/events"),
    (Surface::Publish, "PUT", "/v1/events"),
    (Surface::Publish, "DELETE", "/v1/events"),
    (Surface::Publish, "PATCH", "/v1/events"),
    (Surface::Publish, "GET", "/v1/status/live"),
    (Surface::Publish, "GET", "/v1/status/ready"),
    (
        Surface::Admin,
        "PUT",
        "/v1/namespaces/{namespace}/servicebindings/{name}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/v1/namespaces/{namespace}/servicebindings/{name}",
    ),
    (Surface::Admin, "GET", "/broker/{namespace}/v2/catalog"),
    (
        Surface::Admin,
        "PUT",
        "/broker/{namespace}/v2/service_instances/{instance}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/broker/{namespace}/v2/service_instances/{instance}",
    ),
    (
        Surface::Admin,
        "PUT",
        "/broker/{namespace}/v2/service_instances/{instance}/service_bindings/{binding}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/broker/{namespace}/v2/service_instances/{instance}/service_bindings/{binding}",
    ),
];

/// Whether `path` matches `template` (`{...}` matches one non-empty segment).
pub fn matches_template(template: &str, path: &str) -> bool {
    let (t, p) = (segments(template), segments(path));
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

/// The methods [`ROUTES`] serves for `path` on `surface`, for the `Allow` header of a 405.
pub fn allowed_methods(surface: Surface, path: &str) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = ROUTES
        .iter()
        .filter(|(s, _, t)| *s == surface && matches_template(t, path))
        .map(|(_, m, _)| *m)
        .collect();
    methods.dedup();
    methods
}

/// Limits that protect the server from its clients.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest request body on the connector and admin APIs.
    pub max_body_bytes: usize,
    /// Largest request body on the metadata API (API specs can be large).
    pub max_metadata_body_bytes: usize,
    /// Time allowed to read a request body.
    pub body_timeout: Duration,
    /// Largest event (the Event Bus's limit, answered with its own 413 body).
    pub max_event_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            max_metadata_body_bytes: 4 * 1024 * 1024,
            body_timeout: Duration::from_secs(30),
            max_event_bytes: 64 * 1024,
        }
    }
}

/// What the routers share.
#[derive(Debug)]
pub struct App {
    /// The driver.
    pub driver: Handle,
    /// The CA that signs client certificates.
    pub ca: Arc<Ca>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Limits.
    pub limits: Limits,
    /// The proxy to registered APIs.
    pub proxy: Option<crate::proxy::Proxy>,
    /// The proxy's decisions, as the driver publishes them.
    pub proxy_tables: crate::driver::ProxyTables,
}

const AC_JSON: &str = "application/json;charset=UTF-8";

pub(crate) fn respond(status: u16, content_type: Option<&'static str>, body: Bytes) -> Response {
    let mut r = hyper::Response::new(full(body));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(ct) = content_type {
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    r
}

fn json(status: u16, content_type: &'static str, body: &Value) -> Response {
    respond(status, Some(content_type), Bytes::from(body.to_string()))
}

pub(crate) fn error(e: &CommonError) -> Response {
    json(e.code, AC_JSON, &e.to_json())
}

fn not_found() -> Response {
    error(&CommonError::route_not_found())
}

fn method_not_allowed() -> Response {
    error(&CommonError::method_not_allowed())
}

pub(crate) fn unavailable(_: Stopped) -> Response {
    error(&CommonError::new(503, "The server is shutting down."))
}

fn redirect(location: &str) -> Response {
    let mut r = respond(301, None, Bytes::new());
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

fn yaml(text: &'static str) -> Response {
    respond(
        200,
        Some("application/yaml"),
        Bytes::from_static(text.as_bytes()),
    )
}

/// The reply as HTTP (a certificate reply is signed first by [`App::certificate`]).
pub(crate) fn from_reply(reply: &Reply) -> Response {
    match reply {
        Reply::Redirect { location } => redirect(location),
        Reply::NoContent => respond(204, None, Bytes::new()),
        Reply::MetadataSpec => yaml(specs::GATEWAY),
        Reply::Error(e) => json(e.status(), AC_JSON, &e.body()),
        other => match other.body() {
            Some(body) => json(other.status(), "application/json", &body),
            None => respond(other.status(), None, Bytes::new()),
        },
    }
}

/// Reads a body of at most `limit` bytes within the body timeout; 413 if larger.
pub(crate) async fn read_body(
    req: hyper::Request<Incoming>,
    limit: usize,
    timeout: Duration,
) -> Result<Vec<u8>, Response> {
    read_body_or(req, limit, timeout, || {
        error(&CommonError::payload_too_large(limit))
    })
    .await
}

/// An event's body: over the Event Bus's limit, the bus's own 413 body (`too_large`).
async fn read_event(
    req: hyper::Request<Incoming>,
    limits: &Limits,
    too_large: impl FnOnce() -> Reply,
) -> Result<Vec<u8>, Response> {
    read_body_or(req, limits.max_event_bytes, limits.body_timeout, || {
        from_reply(&too_large())
    })
    .await
}

/// A refused body up to this size is read and discarded before the 413 is sent, so that a
/// client still writing it reads the answer instead of a reset connection; a larger one is
/// refused at once and the connection closed.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads and discards up to [`DRAIN_LIMIT`] bytes of `body` within `timeout`.
async fn drain(mut body: Incoming, timeout: Duration) {
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, discard).await;
}

/// Reads a body of at most `limit` bytes within the body timeout; `too_large()` if larger.
async fn read_body_or(
    req: hyper::Request<Incoming>,
    limit: usize,
    timeout: Duration,
    too_large: impl FnOnce() -> Response,
) -> Result<Vec<u8>, Response> {
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if let Some(len) = declared
        && len > limit
    {
        if len <= DRAIN_LIMIT {
            drain(req.into_body(), timeout).await;
        }
        return Err(too_large());
    }
    let mut body = req.into_body();
    match tokio::time::timeout(timeout, Limited::new(&mut body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes().to_vec()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            drain(body, timeout).await;
            Err(too_large())
        }
        Ok(Err(_)) => Err(error(&CommonError::new(
            400,
            "The request body could not be read.",
        ))),
        Err(_) => Err(error(&CommonError::new(
            408,
            "The request body was not received in time.",
        ))),
    }
}

/// The value of query parameter `name`, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
            .flatten();
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request's trace headers (reference §3.4), the only ones passed on with an event.
fn trace_headers(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    ace_model::bus::publish::TRACE_HEADERS
        .iter()
        .filter_map(|name| {
            Some((
                (*name).to_owned(),
                headers.get(*name)?.to_str().ok()?.to_owned(),
            ))
        })
        .collect()
}

fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}

impl App {
    /// Routes one request of `surface`; `peer` is the verified client certificate, if any.
    pub async fn handle(
        &self,
        surface: Surface,
        peer: Option<PeerCertificate>,
        req: hyper::Request<Incoming>,
    ) -> Result<Response, Infallible> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let response = match surface {
            Surface::ConnectorInternal => self.connector_internal(req).await,
            Surface::ConnectorExternal => self.connector_external(req).await,
            Surface::Gateway => self.gateway(req, peer).await,
            Surface::Admin => self.admin(req).await,
            Surface::Publish => self.publish(req).await,
            Surface::Proxy => match &self.proxy {
                Some(proxy) => proxy.handle(self, req).await,
                None => not_found(),
            },
        };
        let mut response = response;
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Ok(allow) = HeaderValue::from_str(&allowed_methods(surface, &path).join(", "))
        {
            response.headers_mut().insert(hyper::header::ALLOW, allow);
        }
        let status = response.status().as_u16();
        self.metrics.request(surface.name(), status);
        tracing::debug!(surface = surface.name(), %method, path, status, "request");
        Ok(response)
    }

    pub(crate) async fn call_model(&self, request: Request) -> Result<Reply, Stopped> {
        self.driver.call(request).await
    }

    async fn call(&self, request: Request) -> Response {
        match self.driver.call(request).await {
            Ok(reply) => from_reply(&reply),
            Err(e) => unavailable(e),
        }
    }

    async fn connector_internal(&self, req: hyper::Request<Incoming>) -> Response {
        match segments(req.uri().path()).as_slice() {
            ["v1", "remoteenvironments", re, "tokens"] => {
                if req.method() != Method::POST {
                    return method_not_allowed();
                }
                self.call(Request::CreateToken {
                    re: (*re).to_owned(),
                })
                .await
            }
            ["v1", "api.yaml"] if req.method() == Method::GET => yaml(specs::CONNECTOR),
            ["v1", "api.yaml"] => method_not_allowed(),
            _ => not_found(),
        }
    }

    async fn connector_external(&self, req: hyper::Request<Incoming>) -> Response {
        let path = req.uri().path().to_owned();
        let token = query_param(req.uri().query(), "token");
        match segments(&path).as_slice() {
            ["v1"] if req.method() == Method::GET => redirect("/v1/api.yaml"),
            ["v1", "api.yaml"] if req.method() == Method::GET => yaml(specs::CONNECTOR),
            ["v1"] | ["v1", "api.yaml"] => method_not_allowed(),
            ["v1", "remoteenvironments", re, "info"] => {
                if req.method() != Method::GET {
                    return method_not_allowed();
                }
                self.call(Request::Info {
                    re: (*re).to_owned(),
                    token,
                })
                .await
            }
            ["v1", "remoteenvironments", re, "client-certs"] => {
                if req.method() != Method::POST {
                    return method_not_allowed();
                }
                let re = (*re).to_owned();
                let body = match read_body(
                    req,
                    self.limits.max_body_bytes,
                    self.limits.body_timeout,
                )
                .await
                {
                    Ok(b) => b,
                    Err(r) => return r,
                };
                let (der, csr) = match connector::decode_csr_body(&body) {
                    Ok(der) => {
                        let csr = crate::pki::inspect_csr(&der);
                        (der, csr)
                    }
                    Err(e) => (Vec::new(), e.into()),
                };
                match self
                    .driver
                    .call(Request::ClientCerts { re, token, csr })
                    .await
                {
                    Ok(Reply::Certificate(issued)) => self.certificate(&der, &issued),
                    Ok(reply) => from_reply(&reply),
                    Err(e) => unavailable(e),
                }
            }
            _ => not_found(),
        }
    }

    /// `201 {"crt": base64(client certificate PEM + CA certificate PEM)}`.
    fn certificate(&self, csr_der: &[u8], issued: &connector::IssuedCertificate) -> Response {
        match self.ca.sign_client(csr_der, issued) {
            Ok(client_pem) => {
                let chain = format!("{client_pem}{}", self.ca.cert_pem());
                let crt = base64::engine::general_purpose::STANDARD.encode(chain);
                json(201, "application/json", &serde_json::json!({ "crt": crt }))
            }
            Err(e) => {
                tracing::error!(error = %e, serial = issued.serial.0, "signing an accepted CSR failed");
                error(&CommonError::new(500, "Internal error."))
            }
        }
    }

    async fn gateway(
        &self,
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
                match read_body(
                    req,
                    self.limits.max_metadata_body_bytes,
                    self.limits.body_timeout,
                )
                .await
                {
                    Ok(body) => GatewayCall::CreateService { body },
                    Err(r) => return r,
                }
            }
            (["metadata", "services", id], &Method::GET) => GatewayCall::GetService {
                id: (*id).to_owned(),
            },
            (["metadata", "services", id], &Method::PUT) => {
                let id = (*id).to_owned();
                match read_body(
                    req,
                    self.limits.max_metadata_body_bytes,
                    self.limits.body_timeout,
                )
                .await
                {
                    Ok(body) => GatewayCall::UpdateService { id, body },
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
                let too_large = || {
                    Reply::Bus(BusReply::EventServiceRefused(
                        EventServiceError::RequestBodyTooLarge,
                    ))
                };
                match read_event(req, &self.limits, too_large).await {
                    Ok(body) => {
                        GatewayCall::PublishEvent(ace_model::bus::GatewayEvent { body, headers })
                    }
                    Err(r) => return r,
                }
            }
            (["events", ..], _) => return method_not_allowed(),
            _ => return not_found(),
        };
        self.call(Request::Gateway { re, peer, call }).await
    }

    async fn admin(&self, req: hyper::Request<Incoming>) -> Response {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let segs = segments(&path);
        let owned = |s: &&str| (*s).to_owned();
        let request = match (segs.as_slice(), &method) {
            (["healthz"], &Method::GET) => {
                return respond(200, Some("text/plain"), Bytes::from_static(b"ok\n"));
            }
            (["readyz"], &Method::GET) => {
                return match self
                    .driver
                    .call(Request::Admin(AdminRequest::ListMappings {
                        namespace: Some("-".into()),
                    }))
                    .await
                {
                    Ok(_) => respond(200, Some("text/plain"), Bytes::from_static(b"ready\n")),
                    Err(e) => unavailable(e),
                };
            }
            (["metrics"], &Method::GET) => {
                return respond(
                    200,
                    Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
                    Bytes::from(self.metrics_text().await),
                );
            }
            (["broker", ns, "v2", rest @ ..], _) => {
                let namespace = owned(ns);
                let rest: Vec<String> = rest.iter().map(|s| (*s).to_owned()).collect();
                let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
                return crate::osb::handle(self, &namespace, &rest, req).await;
            }
            (["v1", "api.yaml"], &Method::GET) => return yaml(specs::ADMIN),
            (["v1", "remoteenvironments"], &Method::GET) => AdminRequest::ListRemoteEnvironments,
            (["v1", "remoteenvironments", name], &Method::GET) => {
                AdminRequest::GetRemoteEnvironment { name: owned(name) }
            }
            (["v1", "remoteenvironments", name], &Method::DELETE) => {
                AdminRequest::DeleteRemoteEnvironment { name: owned(name) }
            }
            (["v1", "remoteenvironments", name], &Method::PUT) => {
                let name = owned(name);
                let doc = match self.json_body(req).await {
                    Ok(v) => v,
                    Err(r) => return r,
                };
                match remote_environment_from(&name, &doc) {
                    Ok(r) => r,
                    Err(msg) => return error(&CommonError::new(400, msg)),
                }
            }
            (["v1", "environmentmappings"], &Method::GET) => {
                AdminRequest::ListMappings { namespace: None }
            }
            (["v1", "namespaces", ns, "environmentmappings"], &Method::GET) => {
                AdminRequest::ListMappings {
                    namespace: Some(owned(ns)),
                }
            }
            (["v1", "namespaces", ns, "environmentmappings", re], &Method::PUT) => {
                AdminRequest::ApplyMapping {
                    namespace: owned(ns),
                    re: owned(re),
                }
            }
            (["v1", "namespaces", ns, "environmentmappings", re], &Method::DELETE) => {
                AdminRequest::DeleteMapping {
                    namespace: owned(ns),
                    re: owned(re),
                }
            }
            (["v1", "namespaces", ns, "serviceclasses"], &Method::GET) => AdminRequest::Catalog {
                namespace: owned(ns),
            },
            (["v1", "namespaces", ns, "serviceinstances", name], &Method::PUT) => {
                let (namespace, name) = (owned(ns), owned(name));
                let doc = match self.json_body(req).await {
                    Ok(v) => v,
                    Err(r) => return r,
                };
                let spec = match resource_spec(&doc, "ServiceInstance", &name, false) {
                    Ok(spec) => spec.or(doc.as_object()),
                    Err(msg) => return error(&CommonError::new(400, msg)),
                };
                let class = ["serviceClassExternalName", "serviceClassName", "class"]
                    .iter()
                    .find_map(|k| spec.and_then(|s| s.get(*k)).and_then(Value::as_str));
                match class {
                    Some(class) => AdminRequest::Provision {
                        namespace,
                        name,
                        class: class.to_owned(),
                    },
                    None => {
                        return error(&CommonError::new(
                            400,
                            "spec.serviceClassExternalName is required.",
                        ));
                    }
                }
            }
            (["v1", "namespaces", ns, "serviceinstances", name], &Method::DELETE) => {
                AdminRequest::Deprovision {
                    namespace: owned(ns),
                    name: owned(name),
                }
            }
            (["v1", "eventactivations"], &Method::GET) => {
                return self
                    .bus(BusRequest::ListActivations { namespace: None })
                    .await;
            }
            (["v1", "namespaces", ns, "eventactivations"], &Method::GET) => {
                return self
                    .bus(BusRequest::ListActivations {
                        namespace: Some(owned(ns)),
                    })
                    .await;
            }
            (["v1", "namespaces", ns, "eventactivations", name], &Method::GET) => {
                return self
                    .bus(BusRequest::GetActivation {
                        namespace: owned(ns),
                        name: owned(name),
                    })
                    .await;
            }
            (["v1", "namespaces", ns, "eventactivations", name], &Method::DELETE) => {
                return self
                    .bus(BusRequest::DeleteActivation {
                        namespace: owned(ns),
                        name: owned(name),
                    })
                    .await;
            }
            (["v1", "namespaces", ns, "eventactivations", name], &Method::PUT) => {
                let (namespace, name) = (owned(ns), owned(name));
                let spec = match self.spec_of(req, "EventActivation", &name).await {
                    Ok(spec) => spec,
                    Err(r) => return r,
                };
                let Some(source_id) = spec.get("sourceId").and_then(Value::as_str) else {
                    return error(&CommonError::new(
                        400,
                        "spec.sourceId is required and must be a string.",
                    ));
                };
                let display_name = match optional_str(&spec, "displayName", "spec.displayName") {
                    Ok(name) => name.unwrap_or_default(),
                    Err(msg) => return error(&CommonError::new(400, msg)),
                };
                let spec = ActivationSpec {
                    source_id: source_id.to_owned(),
                    display_name: display_name.to_owned(),
                };
                return self
                    .bus(BusRequest::ApplyActivation {
                        namespace,
                        name,
                        spec,
                    })
                    .await;
            }
            (["v1", "namespaces", ns, "servicebindings", name], &Method::PUT) => {
                let (namespace, name) = (owned(ns), owned(name));
                let doc = match self.json_body(req).await {
                    Ok(v) => v,
                    Err(r) => return r,
                };
                if let Err(msg) = resource_spec(&doc, "ServiceBinding", &name, false) {
                    return error(&CommonError::new(400, msg));
                }
                let instance = doc
                    .pointer("/spec/instanceRef/name")
                    .or_else(|| doc.get("instance"))
                    .and_then(Value::as_str);
                match instance {
                    Some(instance) => AdminRequest::Bind {
                        namespace,
                        name,
                        instance: instance.to_owned(),
                    },
                    None => {
                        return error(&CommonError::new(400, "spec.instanceRef.name is required."));
                    }
                }
            }
            (["v1", "namespaces", ns, "servicebindings", name], &Method::DELETE) => {
                AdminRequest::Unbind {
                    namespace: owned(ns),
                    name: owned(name),
                }
            }
            (["v1", "deadletters"], &Method::GET) => {
                return self
                    .bus(BusRequest::ListDeadLetters { namespace: None })
                    .await;
            }
            (["v1", "namespaces", ns, "deadletters"], &Method::GET) => {
                return self
                    .bus(BusRequest::ListDeadLetters {
                        namespace: Some(owned(ns)),
                    })
                    .await;
            }
            (["v1", "namespaces", ns, "subscriptions", name, "replay"], &Method::POST) => {
                let (namespace, name) = (owned(ns), owned(name));
                let body = match read_body(
                    req,
                    self.limits.max_body_bytes,
                    self.limits.body_timeout,
                )
                .await
                {
                    Ok(body) => body,
                    Err(r) => return r,
                };
                let event_id = match replay_event_id(&body) {
                    Ok(event_id) => event_id,
                    Err(msg) => return error(&CommonError::new(400, msg)),
                };
                return self
                    .bus(BusRequest::ReplayDeadLetters {
                        namespace,
                        name,
                        event_id,
                    })
                    .await;
            }
            (["v1", "subscriptions"], &Method::GET) => {
                return self
                    .bus(BusRequest::ListSubscriptions { namespace: None })
                    .await;
            }
            (["v1", "namespaces", ns, "subscriptions"], &Method::GET) => {
                return self
                    .bus(BusRequest::ListSubscriptions {
                        namespace: Some(owned(ns)),
                    })
                    .await;
            }
            (["v1", "namespaces", ns, "subscriptions", name], &Method::GET) => {
                return self
                    .bus(BusRequest::GetSubscription {
                        namespace: owned(ns),
                        name: owned(name),
                    })
                    .await;
            }
            (["v1", "namespaces", ns, "subscriptions", name], &Method::DELETE) => {
                return self
                    .bus(BusRequest::DeleteSubscription {
                        namespace: owned(ns),
                        name: owned(name),
                    })
                    .await;
            }
            (["v1", "namespaces", ns, "subscriptions", name], &Method::PUT) => {
                let (namespace, name) = (owned(ns), owned(name));
                let spec = match self.spec_of(req, "Subscription", &name).await {
                    Ok(spec) => spec,
                    Err(r) => return r,
                };
                let spec: SubscriptionSpec = match serde_json::from_value(Value::Object(spec)) {
                    Ok(spec) => spec,
                    Err(e) => {
                        return error(&CommonError::new(
                            400,
                            format!("The Subscription's spec is invalid: {e}."),
                        ));
                    }
                };
                // Kyma's CRD only asked for `^(https?)://.+$`, so an endpoint no request can be
                // sent to was taken and every event for it failed until dead-lettered. ACE
                // refuses it, once the CRD's own constraints (checked by the model, with Kyma's
                // messages) hold.
                if spec.problem().is_none()
                    && let Err(problem) = crate::push::check_endpoint(&spec.endpoint)
                {
                    return error(&CommonError::new(
                        400,
                        format!(
                            "Invalid Subscription: spec.endpoint {:?} is not a URL events can be \
                             pushed to: {problem}.",
                            spec.endpoint
                        ),
                    ));
                }
                return self
                    .bus(BusRequest::ApplySubscription {
                        namespace,
                        name,
                        spec,
                    })
                    .await;
            }
            _ if !allowed_methods(Surface::Admin, &path).is_empty() => {
                return method_not_allowed();
            }
            _ => return not_found(),
        };
        self.call(Request::Admin(request)).await
    }

    async fn publish(&self, req: hyper::Request<Incoming>) -> Response {
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
                let too_large =
                    || Reply::Bus(BusReply::PublishRefused(PublishError::RequestBodyTooLarge));
                let body = match read_event(req, &self.limits, too_large).await {
                    Ok(body) => body,
                    Err(r) => return r,
                };
                self.bus(BusRequest::Publish {
                    method,
                    source_id_header,
                    body,
                    headers,
                })
                .await
            }
            (["v1", "status", "live"], &Method::GET) => {
                respond(200, Some("text/plain"), Bytes::from_static(b"live\n"))
            }
            (["v1", "status", "ready"], &Method::GET) => {
                match self
                    .driver
                    .call(Request::Admin(AdminRequest::ListMappings {
                        namespace: Some("-".into()),
                    }))
                    .await
                {
                    Ok(_) => respond(200, Some("text/plain"), Bytes::from_static(b"ready\n")),
                    Err(_) => respond(502, Some("text/plain"), Bytes::from_static(b"not ready\n")),
                }
            }
            (["v1", "status", "live" | "ready"], _) => method_not_allowed(),
            _ => not_found(),
        }
    }

    /// Refreshes the per-subscription figures, then encodes every metric.
    async fn metrics_text(&self) -> String {
        if let Ok(Reply::Bus(BusReply::Resource { body, .. })) = self
            .driver
            .call(Request::Bus(BusRequest::ListSubscriptions {
                namespace: None,
            }))
            .await
        {
            let figures: Vec<SubscriptionFigures> = body
                .as_array()
                .into_iter()
                .flatten()
                .map(|sub| {
                    let text = |p: &str| {
                        sub.pointer(p)
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let n = |k: &str| {
                        sub.pointer(&format!("/status/delivery/{k}"))
                            .and_then(Value::as_i64)
                            .unwrap_or(0)
                    };
                    let values = [
                        ("pending", n("pending")),
                        ("in_flight", n("inFlight")),
                        ("delivered", n("delivered")),
                        ("retried", n("retried")),
                        ("dead_lettered", n("deadLettered")),
                    ];
                    SubscriptionFigures {
                        namespace: text("/metadata/namespace"),
                        name: text("/metadata/name"),
                        figures: values,
                    }
                })
                .collect();
            self.metrics.set_subscriptions(&figures);
        }
        self.metrics.encode()
    }

    async fn bus(&self, request: BusRequest) -> Response {
        self.call(Request::Bus(request)).await
    }

    /// The `spec` of a resource document of `kind` named `name` (the path's name).
    async fn spec_of(
        &self,
        req: hyper::Request<Incoming>,
        kind: &str,
        name: &str,
    ) -> Result<serde_json::Map<String, Value>, Response> {
        let doc = self.json_body(req).await?;
        match resource_spec(&doc, kind, name, true) {
            // Required: a document without a spec object is an error.
            Ok(spec) => Ok(spec.cloned().unwrap_or_default()),
            Err(msg) => Err(error(&CommonError::new(400, msg))),
        }
    }

    async fn json_body(&self, req: hyper::Request<Incoming>) -> Result<Value, Response> {
        let body = read_body(
            req,
            self.limits.max_metadata_body_bytes,
            self.limits.body_timeout,
        )
        .await?;
        serde_json::from_slice(&body).map_err(|e| {
            error(&CommonError::new(
                400,
                format!("The body is not valid JSON: {e}"),
            ))
        })
    }
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
    object: &'a serde_json::Map<String, Value>,
    key: &str,
    what: &str,
) -> Result<Option<&'a str>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(format!("{what} must be a string.")),
    }
}

/// The `spec` of a resource document of `kind` for the path's `name`, if it has one: the
/// document must be an object; `kind`, `metadata` and `metadata.name` may be left out but, when
/// given, must have the right type and agree with the path; `spec`, when given and not null (or
/// when `required`), must be an object. Unknown fields are ignored, as Kubernetes does.
fn resource_spec<'a>(
    doc: &'a Value,
    kind: &str,
    name: &str,
    required: bool,
) -> Result<Option<&'a serde_json::Map<String, Value>>, String> {
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
    let empty = serde_json::Map::new();
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

    #[test]
    fn query_params_are_found_and_percent_decoded() {
        assert_eq!(
            query_param(Some("token=abc=="), "token").as_deref(),
            Some("abc==")
        );
        assert_eq!(
            query_param(Some("a=1&token=x%3D%3D"), "token").as_deref(),
            Some("x==")
        );
        assert_eq!(query_param(Some("token="), "token").as_deref(), Some(""));
        assert_eq!(query_param(Some("tokens=1"), "token"), None);
        assert_eq!(query_param(None, "token"), None);
        assert_eq!(
            query_param(Some("token=%zz%"), "token").as_deref(),
            Some("%zz%")
        );
    }

    #[test]
    fn remote_environment_documents_are_checked() {
        let ok = serde_json::json!({"kind": "RemoteEnvironment", "metadata": {"name": "ec"}, "spec": {"description": "d", "labels": {"a": "b"}}});
        assert!(matches!(
            remote_environment_from("ec", &ok),
            Ok(AdminRequest::ApplyRemoteEnvironment { .. })
        ));
        assert!(remote_environment_from("other", &ok).is_err());
        let bad = serde_json::json!({"spec": {"labels": {"a": 1}}});
        assert!(remote_environment_from("ec", &bad).is_err());
    }

    #[test]
    fn a_replay_is_limited_to_a_string_event_id_and_refuses_anything_else() {
        assert_eq!(replay_event_id(b"{}"), Ok(None));
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
        use serde_json::json;
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
}
