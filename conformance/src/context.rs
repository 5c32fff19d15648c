//! What every check gets: the target's URLs and TLS roots, the suite's endpoint, the
//! resource adapter, and helpers that do the documented flows and keep a `curl` line of each
//! call for the report.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hyper::Method;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;

use crate::check::Failure;
use crate::endpoint::Endpoint;
use crate::profile::Profile;
use crate::target::{Resources, Restart, Target, remote_environment};
use ace_client::{Clock, Response, TlsOptions, TokioNet};

/// Time allowed to one request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A client identity: the certificate chain the connector issued and its key.
#[derive(Clone)]
pub struct Identity {
    /// The RE it was issued for.
    pub re: String,
    /// The chain as issued (PEM).
    pub chain_pem: String,
    /// The key (PKCS#8 PEM).
    pub key_pem: String,
    connector: TlsConnector,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("re", &self.re)
            .finish_non_exhaustive()
    }
}

/// What `info` hands a solution for its CSR.
#[derive(Clone, Debug)]
pub struct CsrStep {
    /// `csrUrl`, with the token.
    pub csr_url: String,
    /// `certificate.subject`.
    pub subject: String,
}

/// A call and its answer.
#[derive(Clone, Debug)]
pub struct Exchange {
    /// The call as a `curl` command line.
    pub curl: String,
    /// The answer.
    pub response: Response,
}

impl Exchange {
    /// Status.
    pub fn status(&self) -> u16 {
        self.response.status
    }

    /// Body as JSON.
    pub fn json(&self) -> Value {
        self.response.json()
    }

    /// Fails unless the status is `want`.
    pub fn expect_status(&self, want: u16, what: &str) -> Result<&Self, Failure> {
        if self.status() == want {
            Ok(self)
        } else {
            Err(self.fail(format!("{what}: status {want}")))
        }
    }

    /// Fails unless the status is `status` and the JSON body equals `body`.
    pub fn expect(&self, status: u16, body: &Value, what: &str) -> Result<&Self, Failure> {
        if self.status() == status && &self.json() == body {
            Ok(self)
        } else {
            Err(self.fail(format!("{what}: {status} {body}")))
        }
    }

    /// Fails unless this is the answer the model predicts: its status, and its body unless the
    /// model accepted (an accepted call's body holds ids the target generates).
    pub fn expect_predicted(
        &self,
        (status, body): (u16, Option<Value>),
        what: &str,
    ) -> Result<&Self, Failure> {
        if status == 200 {
            self.expect_status(200, &format!("{what}: accepted as the model predicts"))
        } else {
            self.expect(
                status,
                &body.unwrap_or(Value::Null),
                &format!("{what}: as the model predicts"),
            )
        }
    }

    /// A failure showing this exchange as the actual result.
    pub fn fail(&self, expected: String) -> Failure {
        Failure {
            expected,
            actual: format!("{} {}", self.status(), self.response.text()),
            reproduce: vec![self.curl.clone()],
        }
    }
}

/// A resource the run applied: kind, namespace, name.
type Applied = (String, Option<String>, String);

/// The context of one run.
pub struct Ctx {
    /// The target.
    pub target: Target,
    /// The suite's endpoint.
    pub endpoint: Endpoint,
    /// The resource adapter, if the target has one.
    pub resources: Option<Box<dyn Resources>>,
    /// The restarter, if the target has one.
    pub restart: Option<Box<dyn Restart>>,
    /// Which behaviour is expected where Kyma 0.5 and ACE differ.
    pub profile: Profile,
    /// Generated sequences in the model-based phase.
    pub model_cases: u32,
    roots: Vec<CertificateDer<'static>>,
    anonymous: TlsConnector,
    /// The suite's time: the OS clock read once, advanced by `tokio::time`.
    clock: Clock,
    run: String,
    counter: AtomicU64,
    cleanup: Arc<Mutex<Vec<Applied>>>,
    /// Whose turn it is among several URLs of a surface.
    turn: crate::target::RoundRobin,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx")
            .field("target", &self.target)
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

fn fail_setup(e: impl std::fmt::Display) -> Failure {
    Failure::setup(e)
}

impl Ctx {
    /// A context for `target`.
    pub fn new(
        target: Target,
        endpoint: Endpoint,
        resources: Option<Box<dyn Resources>>,
        restart: Option<Box<dyn Restart>>,
        profile: Profile,
    ) -> Result<Ctx, String> {
        let roots = target.roots()?;
        let clock = Clock::from_system_time();
        let anonymous = ace_client::tls_connector(
            &TlsOptions {
                roots: roots.clone(),
                insecure: target.insecure,
                identity: None,
            },
            clock,
        )
        .map_err(|e| e.to_string())?;
        let run = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        Ok(Ctx {
            target,
            endpoint,
            resources,
            restart,
            profile,
            model_cases: 12,
            roots,
            anonymous,
            clock,
            run,
            counter: AtomicU64::new(0),
            cleanup: Arc::default(),
            turn: crate::target::RoundRobin::default(),
        })
    }

    /// A name unique to this run (DNS-1123), e.g. `cf1a2b3c-re-7`.
    pub fn name(&self, what: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("cf{}-{what}-{n}", self.run)
    }

    /// Whether the Kyma 0.5 profile is selected.
    pub fn kyma(&self) -> bool {
        self.profile == Profile::Kyma05
    }

    /// The resource adapter, or a failure saying there is none.
    pub fn resources(&self) -> Result<&dyn Resources, Failure> {
        self.resources
            .as_deref()
            .ok_or_else(|| fail_setup("the target has no resource adapter"))
    }

    /// Applies a manifest and remembers it for the clean-up.
    pub async fn apply(&self, doc: Value) -> Result<Value, Failure> {
        let reply = self.resources()?.apply(&doc).await.map_err(fail_setup)?;
        let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
        let ns = doc["metadata"]["namespace"].as_str().map(str::to_owned);
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if let Ok(mut c) = self.cleanup.lock()
            && !c
                .iter()
                .any(|(k, n, m)| *k == kind && *n == ns && *m == name)
        {
            c.push((kind, ns, name));
        }
        Ok(reply)
    }

    /// Deletes a resource.
    pub async fn delete(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), Failure> {
        self.resources()?
            .delete(kind, namespace, name)
            .await
            .map_err(fail_setup)
    }

    /// Removes everything the run applied, newest first (errors are ignored: the resources
    /// may be gone already).
    pub async fn clean_up(&self) {
        let items: Vec<_> = self
            .cleanup
            .lock()
            .map(|mut c| std::mem::take(&mut *c))
            .unwrap_or_default();
        if let Some(r) = &self.resources {
            for (kind, ns, name) in items.iter().rev() {
                let _ = r.delete(kind, ns.as_deref(), name).await;
            }
        }
    }

    /// Creates a RemoteEnvironment.
    pub async fn create_re(&self, name: &str) -> Result<(), Failure> {
        self.apply(remote_environment(name)).await.map(|_| ())
    }

    /// A fresh RE, created.
    pub async fn fresh_re(&self) -> Result<String, Failure> {
        let re = self.name("re");
        self.create_re(&re).await?;
        Ok(re)
    }

    /// `path` on one of `list`'s URLs, in turn (a target may list several replicas).
    fn url(&self, list: &str, path: &str) -> String {
        format!("{}{path}", self.turn.next(list))
    }

    /// A URL on the connector internal API.
    pub fn internal(&self, path: &str) -> String {
        self.url(&self.target.connector_internal, path)
    }

    /// A URL on the connector external API.
    pub fn external(&self, path: &str) -> String {
        self.url(&self.target.connector_external, path)
    }

    /// A URL on the gateway.
    pub fn gateway(&self, path: &str) -> String {
        self.url(&self.target.gateway, path)
    }

    /// A URL on the publish API, or a failure if the target has none.
    pub fn publish_url(&self, path: &str) -> Result<String, Failure> {
        let base = self
            .target
            .publish
            .as_deref()
            .ok_or_else(|| fail_setup("the target has no publish API"))?;
        Ok(self.url(base, path))
    }

    /// A URL on the proxy.
    pub fn proxy_url(&self, path: &str) -> Result<String, Failure> {
        let base = self
            .target
            .proxy
            .as_deref()
            .ok_or_else(|| fail_setup("the target has no proxy"))?;
        Ok(self.url(base, path))
    }

    /// Sends a request; `identity` is the client certificate to present.
    pub async fn call(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        identity: Option<&Identity>,
    ) -> Result<Exchange, Failure> {
        let curl = curl_line(&method, url, headers, body, identity, self.target.insecure);
        let tls = identity.map_or(&self.anonymous, |i| &i.connector);
        match ace_client::request(
            &TokioNet,
            method,
            url,
            headers,
            body.map(<[u8]>::to_vec),
            Some(tls),
            REQUEST_TIMEOUT,
        )
        .await
        {
            Ok(response) => Ok(Exchange { curl, response }),
            Err(e) => Err(Failure {
                expected: "an HTTP response".into(),
                actual: e.to_string(),
                reproduce: vec![curl],
            }),
        }
    }

    /// `POST /v1/remoteenvironments/{re}/tokens`.
    pub async fn token(&self, re: &str) -> Result<Exchange, Failure> {
        self.call(
            Method::POST,
            &self.internal(&format!("/v1/remoteenvironments/{re}/tokens")),
            &[],
            None,
            None,
        )
        .await
    }

    /// A fresh configuration URL for `re`.
    pub async fn configuration_url(&self, re: &str) -> Result<String, Failure> {
        let t = self.token(re).await?;
        t.expect_status(201, "a token")?;
        t.json()["url"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| t.fail("a url in the token response".into()))
    }

    /// Token, info: the info body and the exchange.
    pub async fn info(&self, re: &str) -> Result<Exchange, Failure> {
        let url = self.configuration_url(re).await?;
        let info = self.call(Method::GET, &url, &[], None, None).await?;
        info.expect_status(200, "info")?;
        Ok(info)
    }

    /// Token and info for `re`: where to send a CSR and the subject it must carry.
    pub async fn csr_step(&self, re: &str) -> Result<CsrStep, Failure> {
        let body = self.info(re).await?.json();
        Ok(CsrStep {
            csr_url: body["csrUrl"].as_str().unwrap_or_default().to_owned(),
            subject: body["certificate"]["subject"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        })
    }

    /// Posts a `client-certs` body to the info's `csrUrl`.
    pub async fn post_csr(&self, csr_url: &str, body: &[u8]) -> Result<Exchange, Failure> {
        self.call(
            Method::POST,
            csr_url,
            &[("content-type", "application/json")],
            Some(body),
            None,
        )
        .await
    }

    /// Onboards `re` the documented way; returns the identity.
    pub async fn onboard(&self, re: &str) -> Result<Identity, Failure> {
        let step = self.csr_step(re).await?;
        let (csr_pem, key) = make_csr(&step.subject).map_err(fail_setup)?;
        let reply = self.post_csr(&step.csr_url, &csr_body(&csr_pem)).await?;
        reply.expect_status(201, "a certificate")?;
        self.identity_from(re, &reply.json(), &key)
    }

    /// The identity in a `{"crt": ...}` reply for the key that made the CSR.
    pub fn identity_from(
        &self,
        re: &str,
        reply: &Value,
        key: &rcgen::KeyPair,
    ) -> Result<Identity, Failure> {
        let chain_pem = decode_chain(reply).map_err(fail_setup)?;
        let chain: Vec<CertificateDer<'static>> = pem::parse_many(chain_pem.as_bytes())
            .map_err(fail_setup)?
            .into_iter()
            .map(|p| CertificateDer::from(p.into_contents()))
            .collect();
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let connector = ace_client::tls_connector(
            &TlsOptions {
                roots: self.roots.clone(),
                insecure: self.target.insecure,
                identity: Some((chain, key_der)),
            },
            self.clock,
        )
        .map_err(fail_setup)?;
        Ok(Identity {
            re: re.to_owned(),
            chain_pem,
            key_pem: key.serialize_pem(),
            connector,
        })
    }

    /// A call on the gateway with `identity`.
    pub async fn gateway_call(
        &self,
        identity: &Identity,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Exchange, Failure> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        self.gateway_raw(identity, method, path, bytes.as_deref())
            .await
    }

    /// [`Ctx::gateway_call`] with a body of any bytes (sent as `application/json`).
    pub async fn gateway_raw(
        &self,
        identity: &Identity,
        method: Method,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Exchange, Failure> {
        self.call(
            method,
            &self.gateway(path),
            &[("content-type", "application/json")],
            body,
            Some(identity),
        )
        .await
    }

    /// Publishes `event` through the publish API with `Source-Id: source`.
    pub async fn publish(&self, source: &str, event: &Value) -> Result<Exchange, Failure> {
        let url = self.publish_url("/v1/events")?;
        self.call(
            Method::POST,
            &url,
            &[("content-type", "application/json"), ("source-id", source)],
            Some(event.to_string().as_bytes()),
            None,
        )
        .await
    }

    /// Maps `namespace` to `re`.
    pub async fn map(&self, namespace: &str, re: &str) -> Result<(), Failure> {
        self.apply(json!({"apiVersion": "applicationconnector.kyma-project.io/v1alpha1", "kind": "EnvironmentMapping", "metadata": {"name": re, "namespace": namespace}}))
            .await
            .map(|_| ())
    }

    /// Activates `source` in `namespace`.
    pub async fn activate(&self, namespace: &str, source: &str) -> Result<(), Failure> {
        self.apply(json!({"apiVersion": "applicationconnector.kyma-project.io/v1alpha1", "kind": "EventActivation",
            "metadata": {"name": source, "namespace": namespace}, "spec": {"displayName": source, "sourceId": source}}))
            .await
            .map(|_| ())
    }

    /// Subscribes `mailbox` of the suite's endpoint to `order.created` v1 of `source`.
    pub async fn subscribe(
        &self,
        namespace: &str,
        name: &str,
        source: &str,
        mailbox: &str,
        max_inflight: u32,
        timeout_ms: u32,
    ) -> Result<(), Failure> {
        self.apply(subscription(
            namespace,
            name,
            source,
            &self.endpoint.push_url(mailbox),
            max_inflight,
            timeout_ms,
        ))
        .await
        .map(|_| ())
    }
}

/// A Subscription manifest for `order.created` v1.
pub fn subscription(
    namespace: &str,
    name: &str,
    source: &str,
    endpoint: &str,
    max_inflight: u32,
    timeout_ms: u32,
) -> Value {
    json!({"apiVersion": "eventing.kyma.cx/v1alpha1", "kind": "Subscription",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"endpoint": endpoint, "include_subscription_name_header": true, "max_inflight": max_inflight,
                 "push_request_timeout_ms": timeout_ms, "event_type": "order.created",
                 "event_type_version": "v1", "source_id": source}})
}

/// A valid event of type `order.created` v1 carrying `data`.
pub fn event(data: Value) -> Value {
    json!({"event-type": "order.created", "event-type-version": "v1",
           "event-time": "2018-11-02T22:08:41+00:00", "data": data})
}

/// Parses the info's subject (`OU=..,O=..,L=..,ST=..,C=..,CN=..`) into a distinguished name.
pub fn parse_subject(subject: &str) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    for part in subject.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            continue;
        };
        let ty = match k.trim() {
            "CN" => rcgen::DnType::CommonName,
            "C" => rcgen::DnType::CountryName,
            "O" => rcgen::DnType::OrganizationName,
            "OU" => rcgen::DnType::OrganizationalUnitName,
            "L" => rcgen::DnType::LocalityName,
            "ST" => rcgen::DnType::StateOrProvinceName,
            _ => continue,
        };
        dn.push(ty, v.trim());
    }
    dn
}

/// A new ECDSA P-256 key and a CSR (PEM) for `subject`.
pub fn make_csr(subject: &str) -> Result<(String, rcgen::KeyPair), String> {
    make_csr_dn(parse_subject(subject))
}

/// A new key and a CSR (PEM) for `dn`.
pub fn make_csr_dn(dn: rcgen::DistinguishedName) -> Result<(String, rcgen::KeyPair), String> {
    let key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .and_then(|c| c.pem())
        .map_err(|e| e.to_string())?;
    Ok((csr, key))
}

/// `{"csr": base64(pem)}`.
pub fn csr_body(csr_pem: &str) -> Vec<u8> {
    json!({"csr": STANDARD.encode(csr_pem)})
        .to_string()
        .into_bytes()
}

/// The PEM chain in a `{"crt": ...}` reply.
pub fn decode_chain(reply: &Value) -> Result<String, String> {
    let crt = reply["crt"]
        .as_str()
        .ok_or_else(|| format!("no crt in {reply}"))?;
    let bytes = STANDARD
        .decode(crt)
        .map_err(|e| format!("crt is not base64: {e}"))?;
    String::from_utf8(bytes).map_err(|e| format!("crt is not PEM text: {e}"))
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `curl` command line of a call.
pub fn curl_line(
    method: &Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    identity: Option<&Identity>,
    insecure: bool,
) -> String {
    let mut line = format!("curl -sS -i -X {method}");
    if url.starts_with("https") {
        line.push_str(if insecure { " -k" } else { " --cacert ca.pem" });
    }
    if let Some(i) = identity {
        line.push_str(&format!(" --cert {0}.crt --key {0}.key", i.re));
    }
    for (k, v) in headers {
        line.push_str(&format!(" -H {}", shell_quote(&format!("{k}: {v}"))));
    }
    if let Some(b) = body {
        let text = String::from_utf8_lossy(b);
        let shown: String = if text.len() > 400 {
            format!("{}...", text.chars().take(400).collect::<String>())
        } else {
            text.into_owned()
        };
        line.push_str(&format!(" --data-binary {}", shell_quote(&shown)));
    }
    line.push(' ');
    line.push_str(&shell_quote(url));
    line
}
