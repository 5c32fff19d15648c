//! A server on loopback with ephemeral ports, and clients that onboard through the real flow.

#![allow(dead_code)]

#[cfg(feature = "jetstream")]
pub mod nats;
pub mod subscriber;

use std::path::Path;
use std::time::Duration;

use ace_client::{self as client, Clock, Response, TlsOptions, TokioNet};
use ace_model::connector::Subject;
use ace_server::pki::{self, KeyKind};
use ace_server::{ServeOptions, Server};
use base64::Engine as _;
use hyper::Method;
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;

/// The wall clock, as `ace serve` reads it at start (clients verify against real time too).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A server on loopback ports whose subscribers and registered APIs may be on loopback too
/// (the tests' own): private egress is allowed, knowingly. ACE's own listeners stay refused.
pub fn options(dir: &Path) -> ServeOptions {
    let mut opts = ServeOptions::loopback(dir);
    opts.egress.allow_private = true;
    opts
}

/// A TLS connector for `options`, checking certificates at the wall clock's time (as the
/// server started by [`start_with`] issues them).
pub fn tls_connector(
    options: &TlsOptions,
) -> Result<tokio_rustls::TlsConnector, ace_client::TlsError> {
    client::tls_connector(options, Clock::new(now_ms()))
}

pub struct TestServer {
    pub server: Server,
    pub anonymous: TlsConnector,
}

pub async fn start(dir: &Path) -> TestServer {
    start_with(options(dir)).await
}

pub async fn start_with(opts: ServeOptions) -> TestServer {
    let server = ace_server::start(TokioNet, opts, Clock::new(now_ms()), 7.into())
        .await
        .unwrap_or_else(|e| panic!("start: {e}"));
    let roots = pki::certs_from_pem(&server.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    let anonymous = tls_connector(&TlsOptions {
        roots,
        ..TlsOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    TestServer { server, anonymous }
}

pub const TIMEOUT: Duration = Duration::from_secs(20);

impl TestServer {
    pub fn internal(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.connector_internal)
    }
    pub fn external(&self, path: &str) -> String {
        format!(
            "https://localhost:{}{path}",
            self.server.connector_external.port()
        )
    }
    pub fn gateway(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.server.gateway.port())
    }
    pub fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.admin)
    }
    /// The Kubernetes resource API (HTTPS, the admin token).
    pub fn kube(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.server.kube.port())
    }

    /// The `Authorization` header the admin API wants.
    pub fn admin_authorization(&self) -> String {
        format!(
            "Bearer {}",
            self.server.admin_token.as_deref().unwrap_or_default()
        )
    }

    /// Sends a request; one to the admin API carries its bearer token.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
        tls: Option<&TlsConnector>,
    ) -> Response {
        let tls = tls.or(Some(&self.anonymous));
        let authorization = self.admin_authorization();
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        if url.starts_with(&self.admin("")) || url.starts_with(&self.kube("")) {
            headers.push(("authorization", &authorization));
        }
        client::request(
            &TokioNet,
            method,
            url,
            &headers,
            body.map(<[u8]>::to_vec),
            tls,
            TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    pub async fn apply_re(&self, name: &str) -> Response {
        let doc = json!({"apiVersion": "applicationconnector.kyma-project.io/v1alpha1", "kind": "RemoteEnvironment", "metadata": {"name": name}, "spec": {"description": "test"}});
        self.send(
            Method::PUT,
            &self.admin(&format!("/v1/remoteenvironments/{name}")),
            Some(doc.to_string().as_bytes()),
            None,
        )
        .await
    }

    pub async fn token(&self, re: &str) -> String {
        let r = self
            .send(
                Method::POST,
                &self.internal(&format!("/v1/remoteenvironments/{re}/tokens")),
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 201, "{}", r.text());
        r.json()["token"].as_str().unwrap_or_default().to_owned()
    }

    /// Token, info and a CSR with `subject`; returns the client-certs response and the key.
    pub async fn submit_csr(
        &self,
        re: &str,
        subject: &Subject,
        kind: KeyKind,
    ) -> (Response, rcgen::KeyPair) {
        let token = self.token(re).await;
        let info = self
            .send(
                Method::GET,
                &self.external(&format!("/v1/remoteenvironments/{re}/info?token={token}")),
                None,
                None,
            )
            .await;
        assert_eq!(info.status, 200, "{}", info.text());
        let csr_url = info.json()["csrUrl"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = pki::generate_key(kind).unwrap_or_else(|e| panic!("{e}"));
        let csr = pki::make_csr(&key, subject).unwrap_or_else(|e| panic!("{e}"));
        let body =
            json!({"csr": base64::engine::general_purpose::STANDARD.encode(csr)}).to_string();
        (
            self.send(Method::POST, &csr_url, Some(body.as_bytes()), None)
                .await,
            key,
        )
    }

    /// A client connector holding a certificate for `re`.
    pub async fn onboard(&self, re: &str) -> TlsConnector {
        let (r, key) = self.submit_csr(re, &subject(re), KeyKind::EcdsaP256).await;
        assert_eq!(r.status, 201, "{}", r.text());
        identity(&self.server.ca_pem, &r.json(), &key)
    }
}

impl TestServer {
    pub fn publish_url(&self) -> String {
        format!("http://{}/v1/events", self.server.publish)
    }

    /// Publishes through the publish API; returns the status and the event id.
    pub async fn publish(&self, source: &str, event_type: &str, data: Value) -> (u16, String) {
        let body = json!({"event-type": event_type, "event-type-version": "v1", "event-time": "2018-10-16T15:00:00Z", "data": data}).to_string();
        let r = client::request(
            &TokioNet,
            Method::POST,
            &self.publish_url(),
            &[("source-id", source), ("content-type", "application/json")],
            Some(body.into_bytes()),
            None,
            TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
        (
            r.status,
            r.json()["event-id"].as_str().unwrap_or_default().to_owned(),
        )
    }

    pub async fn activate(&self, namespace: &str, source: &str) -> Response {
        let doc = json!({"kind": "EventActivation", "metadata": {"name": source, "namespace": namespace}, "spec": {"sourceId": source, "displayName": source}});
        self.send(
            Method::PUT,
            &self.admin(&format!(
                "/v1/namespaces/{namespace}/eventactivations/{source}"
            )),
            Some(doc.to_string().as_bytes()),
            None,
        )
        .await
    }

    pub async fn subscribe(
        &self,
        namespace: &str,
        name: &str,
        endpoint: &str,
        source: &str,
        max_inflight: u32,
        timeout_ms: u32,
    ) -> Response {
        let doc = json!({"kind": "Subscription", "metadata": {"name": name, "namespace": namespace}, "spec": {
            "endpoint": endpoint, "include_subscription_name_header": true, "max_inflight": max_inflight,
            "push_request_timeout_ms": timeout_ms, "event_type": "order.created", "event_type_version": "v1", "source_id": source}});
        self.send(
            Method::PUT,
            &self.admin(&format!("/v1/namespaces/{namespace}/subscriptions/{name}")),
            Some(doc.to_string().as_bytes()),
            None,
        )
        .await
    }

    pub async fn subscription(&self, namespace: &str, name: &str) -> Value {
        self.send(
            Method::GET,
            &self.admin(&format!("/v1/namespaces/{namespace}/subscriptions/{name}")),
            None,
            None,
        )
        .await
        .json()
    }
}

/// A record of event `seq` (source `shop`, `order.created` v1) accepted with body `data`
/// for `subscription`, as the model logs it.
pub fn accepted(
    seq: u64,
    data: &str,
    subscription: &std::sync::Arc<ace_model::bus::ResourceKey>,
) -> ace_model::Record {
    ace_model::Record::Bus(ace_model::bus::BusRecord::EventAccepted {
        seq,
        at: ace_model::Timestamp::EPOCH,
        event: std::sync::Arc::new(ace_model::bus::Event {
            source_id: "shop".into(),
            event_type: "order.created".into(),
            event_type_version: "v1".into(),
            event_id: format!("id-{seq}"),
            event_time: "2018-10-16T15:00:00Z".into(),
            data: data.into(),
            trace_headers: Vec::new(),
            body_stored: false,
        }),
        deliveries: vec![std::sync::Arc::clone(subscription)],
    })
}

/// Options for delivery tests: fast retries.
pub fn fast_retries(dir: &Path) -> ServeOptions {
    let mut opts = options(dir);
    opts.bus.retry = ace_model::bus::RetryPolicy::Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(400),
    };
    opts
}

pub fn subject(cn: &str) -> Subject {
    ace_model::config::SubjectTemplate::default().subject_for(cn)
}

/// The chain in a `{"crt": ...}` reply.
pub fn chain_of(reply: &Value) -> String {
    let crt = reply["crt"].as_str().unwrap_or_default();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(crt)
            .unwrap_or_default(),
    )
    .unwrap_or_default()
}

pub fn identity(ca_pem: &str, reply: &Value, key: &rcgen::KeyPair) -> TlsConnector {
    let chain = pki::certs_from_pem(&chain_of(reply)).unwrap_or_else(|e| panic!("{e}"));
    let key = pki::key_from_pem(&key.serialize_pem()).unwrap_or_else(|e| panic!("{e}"));
    let roots = pki::certs_from_pem(ca_pem).unwrap_or_else(|e| panic!("{e}"));
    tls_connector(&TlsOptions {
        roots,
        identity: Some((chain, key)),
        insecure: false,
    })
    .unwrap_or_else(|e| panic!("{e}"))
}

pub fn service_body(identifier: &str) -> Vec<u8> {
    json!({
        "provider": "myCompany", "name": "my-service", "description": "This is some service", "identifier": identifier,
        "api": {"targetUrl": "https://www.orders.com/v1/orders",
                "credentials": {"oauth": {"url": "https://oauth.orders.com/token", "clientId": "client-1", "clientSecret": "very-secret"}}},
        "events": {"spec": {"asyncapi": "1.0.0"}}
    })
    .to_string()
    .into_bytes()
}

/// Calls the gateway with a certificate for RE `ec` signed by `ca` directly (not issued through
/// the connector), valid from `from_ms` to `to_ms` relative to now. The status, if the
/// gateway answered at all.
pub async fn gateway_status_with_certificate(
    s: &TestServer,
    ca: &pki::Ca,
    serial_byte: &str,
    from_ms: i64,
    to_ms: i64,
) -> Option<u16> {
    let at = |offset: i64| {
        ace_model::Timestamp::from_unix_millis(now_ms().saturating_add_signed(offset))
    };
    let key = pki::generate_key(KeyKind::EcdsaP256).unwrap_or_else(|e| panic!("{e}"));
    let csr = pki::make_csr(&key, &subject("ec")).unwrap_or_default();
    let der = pem::parse(&csr)
        .map(|p| p.into_contents())
        .unwrap_or_default();
    let issued = ace_model::connector::IssuedCertificate {
        serial: ace_model::rng::CertSerial(serial_byte.repeat(16)),
        re: "ec".into(),
        incarnation: 1,
        subject: subject("ec"),
        not_before: at(from_ms),
        not_after: at(to_ms),
    };
    let cert = ca
        .sign_client(&der, &issued)
        .unwrap_or_else(|e| panic!("{e}"));
    let tls = tls_connector(&TlsOptions {
        roots: pki::certs_from_pem(&s.server.ca_pem).unwrap_or_default(),
        identity: Some((
            pki::certs_from_pem(&cert).unwrap_or_default(),
            pki::key_from_pem(&key.serialize_pem()).unwrap_or_else(|e| panic!("{e}")),
        )),
        insecure: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    client::request(
        &TokioNet,
        Method::GET,
        &s.gateway("/ec/v1/metadata/services"),
        &[],
        None,
        Some(&tls),
        TIMEOUT,
    )
    .await
    .ok()
    .map(|r| r.status)
}
