//! The edge: listeners, and one router per surface. A router translates HTTP into a model
//! request and the model's reply back into HTTP; every decision (validation, limits, status
//! codes and bodies) is the model's.

pub mod admin;
pub mod auth;
pub mod body;
pub mod connector;
pub mod deadletters;
pub mod gateway;
pub mod kube;
pub mod listen;
pub mod osb;
pub mod proxy;
pub mod publish;
pub mod reply;
pub mod routes;
pub mod timed;
pub mod tls;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use ace_model::connector::PeerCertificate;
use ace_model::limits::BodyKind;
use ace_model::{Config, Reply, Request};
use bytes::Bytes;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::HeaderValue;

use crate::driver::{Handle, ProxyTables, Stopped};
use crate::metrics::Metrics;
use crate::outbound::forward::Forwarder;
use crate::pki::Ca;

/// How long a readiness probe waits for the driver.
const READY_WITHIN: Duration = Duration::from_secs(2);

pub use reply::Response;
pub use routes::{ROUTES, allowed_methods, matches_template};

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
    /// The Kubernetes resource API, for kubectl (HTTPS, bearer token, loopback).
    Kube,
}

impl Surface {
    /// Every surface, in the order of [`crate::ServeOptions::listen_addrs_mut`].
    pub const ALL: [Surface; 7] = [
        Surface::ConnectorInternal,
        Surface::ConnectorExternal,
        Surface::Gateway,
        Surface::Admin,
        Surface::Publish,
        Surface::Proxy,
        Surface::Kube,
    ];

    /// The label used in metrics and logs.
    pub fn name(self) -> &'static str {
        match self {
            Surface::ConnectorInternal => "connector_internal",
            Surface::ConnectorExternal => "connector_external",
            Surface::Gateway => "gateway",
            Surface::Admin => "admin",
            Surface::Publish => "publish",
            Surface::Proxy => "proxy",
            Surface::Kube => "kubernetes",
        }
    }
}

/// What the routers share.
#[derive(Debug)]
pub struct App {
    /// The driver.
    pub driver: Handle,
    /// The model's configuration (limits, URLs).
    pub config: Arc<Config>,
    /// The CA that signs client certificates.
    pub ca: Arc<Ca>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Time allowed to send a request body.
    pub body_timeout: Duration,
    /// The proxy's outbound half.
    pub forwarder: Forwarder,
    /// The proxy's decisions, as the driver publishes them.
    pub proxy_tables: ProxyTables,
    /// The admin listener's bearer token (`None`: no authentication).
    pub admin_token: Option<auth::AdminToken>,
    /// The store's reader of accepted events (dead letters' fields).
    pub events: Arc<dyn crate::store::EventReader>,
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
        // Shares the request's bytes: no copy of the path per request.
        let uri = req.uri().clone();
        let mut response = match surface {
            Surface::ConnectorInternal => connector::internal(self, req).await,
            Surface::ConnectorExternal => connector::external(self, req).await,
            Surface::Gateway => gateway::route(self, req, peer).await,
            Surface::Admin => admin::route(self, req).await,
            Surface::Publish => publish::route(self, req).await,
            Surface::Proxy => proxy::route(self, req).await,
            Surface::Kube => kube::serve(self, req).await,
        };
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Ok(allow) =
                HeaderValue::from_str(&allowed_methods(surface, uri.path()).join(", "))
        {
            response.headers_mut().insert(hyper::header::ALLOW, allow);
        }
        let status = response.status().as_u16();
        self.metrics.request(surface.name(), status);
        tracing::debug!(surface = surface.name(), %method, path = uri.path(), status, "request");
        Ok(response)
    }

    /// Sends `request` to the driver and returns the model's reply.
    pub async fn ask(&self, request: Request) -> Result<Reply, Stopped> {
        self.driver.call(request).await
    }

    /// Whether the server is ready, as the driver says within [`READY_WITHIN`]: a driver
    /// waiting that long on its log (a replica whose NATS servers are all gone) is not ready,
    /// and a probe gets its answer in time.
    pub async fn readiness(&self) -> Result<Reply, Stopped> {
        match tokio::time::timeout(READY_WITHIN, self.driver.call(Request::Readiness)).await {
            Ok(answer) => answer,
            Err(_) => Ok(Reply::Error(ace_model::RequestError::Common(
                ace_model::error::CommonError::new(
                    503,
                    "The server's log did not answer in time; it is not ready.",
                ),
            ))),
        }
    }

    /// Sends `request` to the driver and renders the model's reply.
    pub async fn call(&self, request: Request) -> Response {
        match self.driver.call(request).await {
            Ok(reply) => reply::from_reply(&reply),
            Err(e) => reply::unavailable(e),
        }
    }

    /// Reads the body of `req`, a body of `kind`, within the model's limit for it.
    pub async fn read(
        &self,
        req: hyper::Request<Incoming>,
        kind: BodyKind,
    ) -> Result<Bytes, Response> {
        body::read(req, &self.config, kind, self.body_timeout).await
    }
}
