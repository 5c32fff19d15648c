//! One simulated world, decided by one seed: `ace serve` on host `ace`, an external solution
//! on host `solution` (operator steps, onboarding, publishing), a subscriber on host
//! `subscriber`. The seed picks which faults are on (swarm testing) and when they strike; a
//! safety phase runs under faults, then everything heals and every event answered 200 must
//! reach the subscriber (at least once; duplicates are counted, not failures).
//!
//! Once the faults have healed, a contract phase tries to break the other documented
//! guarantees: a used configuration or CSR URL and an expired one are refused, a certificate
//! opens neither another RE nor its RE created again, service identifiers are unique and OAuth
//! secrets masked, the proxy never sends an OAuth token past its `expires_in` (the API and its
//! token server run on the subscriber's host), nothing is pushed to a subscription without an
//! EventActivation, and an update of a subscription keeps the events it is owed.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ace::client::{self, TlsOptions};
use ace::driver::Clock;
use ace::pki::{self, KeyKind};
use ace::serve::{self, ServeOptions};
use ace::store::MemoryStore;
use ace_model::bugs::Bugs;
use ace_model::connector::Subject;
use base64::Engine as _;
use hyper::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::net::TurmoilNet;

/// Events the solution publishes.
pub const EVENTS: usize = 12;
/// The subscription's `max_inflight`.
pub const MAX_INFLIGHT: usize = 3;

/// The faults a seed switched on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Message latency range, in milliseconds.
    pub latency_ms: (u64, u64),
    /// The subscriber answers 500 to this many first requests.
    pub subscriber_failures: usize,
    /// ACE and the subscriber are partitioned from `.0` for `.1` (simulated time).
    pub partition: Option<(Duration, Duration)>,
    /// ACE crashes and restarts (memory lost, store kept) at this time.
    pub crash_at: Option<Duration>,
}

/// splitmix64: the seed's decisions, independent of every other generator.
fn mix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Faults {
    /// The faults of `seed`: each is on with probability one half.
    pub fn of(seed: u64) -> Faults {
        let mut s = seed;
        let mut coin = || mix(&mut s).is_multiple_of(2);
        let (slow, fails, partition, crash) = (coin(), coin(), coin(), coin());
        let mut pick = |lo: u64, hi: u64| lo + mix(&mut s) % (hi - lo + 1);
        Faults {
            latency_ms: if slow { (1, pick(5, 50)) } else { (1, 2) },
            subscriber_failures: if fails { pick(1, 6) as usize } else { 0 },
            // The workload runs from about 0.2 s to 1.5 s of simulated time: strike within it.
            partition: partition.then(|| {
                (
                    Duration::from_millis(pick(200, 1200)),
                    Duration::from_millis(pick(200, 2000)),
                )
            }),
            crash_at: crash.then(|| Duration::from_millis(pick(250, 1400))),
        }
    }
}

impl Faults {
    /// When the last fault has struck and healed (simulated time); a restarted server may
    /// still be starting.
    pub fn healed_by(&self) -> Duration {
        let partition = self.partition.map(|(at, len)| at + len);
        partition
            .into_iter()
            .chain(self.crash_at)
            .max()
            .unwrap_or_default()
    }
}

/// What a run saw.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Its faults.
    pub faults: Faults,
    /// SHA-256 of the trace: the same seed gives the same hash.
    pub trace_hash: String,
    /// The trace: one line per observed step, in simulated order.
    pub trace: Vec<String>,
    /// Events answered 200.
    pub accepted: usize,
    /// Deliveries beyond the first per event (at-least-once allows them).
    pub duplicates: usize,
    /// Broken guarantees; empty when the run passed.
    pub violations: Vec<String>,
    /// HTTP exchanges the world's clients started (ACE's pushes and proxy calls included).
    pub exchanges: usize,
}

#[derive(Default)]
struct Shared {
    trace: Mutex<Vec<String>>,
    accepted: Mutex<BTreeSet<String>>,
    received: Mutex<BTreeMap<String, usize>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    requests: AtomicUsize,
    /// Pushes for subscriptions other than `prod/orders` (none is activated), by name.
    stray: Mutex<Vec<String>>,
    /// OAuth tokens the token server issued, with when (simulated time).
    oauth_tokens: Mutex<BTreeMap<String, Duration>>,
    /// Broken guarantees seen during the run (the rest are found at its end).
    violations: Mutex<Vec<String>>,
}

impl Shared {
    fn violation(&self, what: String) {
        self.note("checker", format!("VIOLATION {what}"));
        if let Ok(mut v) = self.violations.lock() {
            v.push(what);
        }
    }

    fn accept(&self, id: String) {
        if let Ok(mut a) = self.accepted.lock() {
            a.insert(id);
        }
    }

    /// Whether every accepted event has reached `prod/orders`.
    fn all_received(&self) -> bool {
        let accepted = self.accepted.lock().map(|a| a.clone()).unwrap_or_default();
        let received = self.received.lock().map(|r| r.clone()).unwrap_or_default();
        accepted.iter().all(|id| received.contains_key(id))
    }

    fn note(&self, host: &str, what: String) {
        self.note_at(turmoil::sim_elapsed().unwrap_or_default(), host, what);
    }

    fn note_at(&self, at: Duration, host: &str, what: String) {
        let at = at.as_millis();
        if let Ok(mut t) = self.trace.lock() {
            t.push(format!("{at:>7}ms {host:<10} {what}"));
        }
    }
}

/// `ace serve`'s options on host `ace` of a simulated world: every surface on its usual port,
/// the server certificate for the host name `ace`, fast retries.
pub fn options(dir: &std::path::Path) -> ServeOptions {
    let mut opts = ServeOptions {
        data_dir: dir.to_owned(),
        hosts: vec!["ace".into()],
        connector_internal_addr: "0.0.0.0:8080".into(),
        connector_external_addr: "0.0.0.0:8443".into(),
        gateway_addr: "0.0.0.0:8444".into(),
        admin_addr: "0.0.0.0:8081".into(),
        publish_addr: "0.0.0.0:8082".into(),
        proxy_addr: "0.0.0.0:8090".into(),
        ..ServeOptions::default()
    };
    opts.bus.retry = ace_model::bus::RetryPolicy::Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };
    opts.token_ttl = TOKEN_TTL;
    opts
}

/// Connector tokens live this long in the world (the contract phase waits it out).
pub const TOKEN_TTL: Duration = Duration::from_secs(2);
/// Events the contract phase publishes, besides [`EVENTS`].
pub const CONTRACT_EVENTS: usize = 3;
/// The `expires_in` of the world's OAuth tokens, in seconds: short-lived, so the proxy must
/// fetch one for every call (it keeps a token until 10 s before it expires).
const OAUTH_EXPIRES_IN: u64 = 2;

const STEP_TIMEOUT: Duration = Duration::from_secs(3);

thread_local! {
    /// HTTP exchanges of the world running on this thread: requests its clients sent and
    /// requests its subscriber and API hosts served (ACE's pushes and proxy calls).
    static EXCHANGES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn count_exchange() {
    EXCHANGES.with(|n| n.set(n.get() + 1));
}

async fn send(
    method: Method,
    url: &str,
    body: Option<&Value>,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<client::Response, String> {
    count_exchange();
    let body = body.map(|b| b.to_string().into_bytes());
    client::request(
        &TurmoilNet,
        method,
        url,
        &[("content-type", "application/json")],
        body,
        tls,
        STEP_TIMEOUT,
    )
    .await
    .map_err(|e| e.to_string())
}

/// Retries `f` until it gives a status in `ok` (faults may be striking).
async fn until<F, Fut>(what: &str, ok: &[u16], mut f: F) -> client::Response
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<client::Response, String>>,
{
    // Failed attempts are part of life under faults; only outcomes are traced.
    let _ = what;
    loop {
        if let Ok(r) = f().await
            && ok.contains(&r.status)
        {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One request held by the subscriber, counted out when it is dropped.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn subscriber(
    shared: Arc<Shared>,
    failures: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = turmoil::net::TcpListener::bind("0.0.0.0:9000").await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    count_exchange();
                    async move {
                        let subscription = req
                            .headers()
                            .get("kyma-subscription")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("?")
                            .to_owned();
                        if subscription != "orders" {
                            shared.note("subscriber", format!("push for {subscription}"));
                            if let Ok(mut s) = shared.stray.lock() {
                                s.push(subscription);
                            }
                            return Ok::<_, Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::new()),
                            ));
                        }
                        let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        shared.max_in_flight.fetch_max(now, Ordering::SeqCst);
                        // Counted out however the request ends: a peer that dies mid-request
                        // makes hyper drop this future before it finishes.
                        let _held = InFlight(shared.clone());
                        let n = shared.requests.fetch_add(1, Ordering::SeqCst);
                        let id = req
                            .headers()
                            .get("kyma-event-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("?")
                            .to_owned();
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let status = if n < failures { 500 } else { 200 };
                        if status == 200
                            && let Ok(mut r) = shared.received.lock()
                        {
                            *r.entry(id.clone()).or_default() += 1;
                        }
                        shared.note("subscriber", format!("push {id} -> {status}"));
                        let mut resp =
                            hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                        *resp.status_mut() =
                            hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
                        Ok::<_, Infallible>(resp)
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A registered API and its OAuth server, on the subscriber's host: `POST /token` issues
/// `tok-N` with `expires_in` [`OAUTH_EXPIRES_IN`]; any other request is the API, which checks
/// that the proxy's bearer token has not expired.
async fn api(shared: Arc<Shared>) -> Result<(), Box<dyn std::error::Error>> {
    let listener = turmoil::net::TcpListener::bind("0.0.0.0:9100").await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |req: hyper::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    count_exchange();
                    async move {
                        let now = turmoil::sim_elapsed().unwrap_or_default();
                        let body = if req.uri().path() == "/token" {
                            let token = match shared.oauth_tokens.lock() {
                                Ok(mut tokens) => {
                                    let token = format!("tok-{}", tokens.len() + 1);
                                    tokens.insert(token.clone(), now);
                                    token
                                }
                                Err(_) => "tok-?".to_owned(),
                            };
                            shared.note("api", format!("issued {token}"));
                            json!({"access_token": token, "token_type": "bearer",
                                   "expires_in": OAUTH_EXPIRES_IN})
                            .to_string()
                        } else {
                            let token = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.strip_prefix("Bearer "))
                                .unwrap_or_default()
                                .to_owned();
                            let issued = shared
                                .oauth_tokens
                                .lock()
                                .ok()
                                .and_then(|t| t.get(&token).copied());
                            shared.note("api", format!("call with {token}"));
                            match issued {
                                None => shared.violation(format!(
                                    "proxy: the API was called with {token:?}, which the OAuth server never issued"
                                )),
                                Some(at)
                                    if now >= at + Duration::from_secs(OAUTH_EXPIRES_IN) =>
                                {
                                    shared.violation(format!(
                                        "proxy: the API was called with {token}, expired {}ms before",
                                        (now - at - Duration::from_secs(OAUTH_EXPIRES_IN))
                                            .as_millis()
                                    ))
                                }
                                Some(_) => {}
                            }
                            "{}".to_owned()
                        };
                        Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(body),
                        )))
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Sends until the server answers at all (the faults have healed when this is used).
async fn answer(
    method: Method,
    url: &str,
    body: Option<&Value>,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> client::Response {
    loop {
        if let Ok(r) = send(method.clone(), url, body, tls).await {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes event `i` through the gateway until it is answered 200.
async fn publish(shared: &Shared, me: &tokio_rustls::TlsConnector, i: usize) {
    let id = format!("00000000-0000-4000-8000-{i:012x}");
    let event = json!({"event-type": "order.created", "event-type-version": "v1", "event-id": id,
                       "event-time": "2018-10-16T15:00:00Z", "data": {"n": i}});
    until("publish", &[200], || {
        send(
            Method::POST,
            "https://ace:8444/ec/v1/events",
            Some(&event),
            Some(me),
        )
    })
    .await;
    shared.note("solution", format!("accepted {id}"));
    shared.accept(id);
}

/// Waits (at most `limit`) until every accepted event has reached `prod/orders`.
async fn wait_for_deliveries(shared: &Shared, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !shared.all_received() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The documented guarantees beyond delivery, checked after the faults have healed, each by
/// trying to break it: a configuration URL works once; a token expires; a certificate opens
/// only its RE, and only while the RE lives; identifiers are unique in an RE and secrets are
/// masked; the proxy never sends an expired OAuth token; nothing is pushed to a subscription
/// that is not activated; an update of a subscription keeps what it is owed. The two checks
/// that wait (token expiry, OAuth token expiry) share their wait with the others.
async fn contract_phase(
    shared: &Shared,
    anonymous: &tokio_rustls::TlsConnector,
    me: &tokio_rustls::TlsConnector,
    csr: &str,
    healed_by: Duration,
) {
    // Only once the faults have healed: a lost answer to a retried write would make the
    // checks below see their own retries.
    let elapsed = turmoil::sim_elapsed().unwrap_or_default();
    tokio::time::sleep(healed_by.saturating_sub(elapsed)).await;
    until("health", &[200], || {
        send(Method::GET, "http://ace:8081/readyz", None, None)
    })
    .await;
    shared.note("solution", "contract phase".into());
    let expect = |what: &str, got: u16, want: u16| {
        shared.note("solution", format!("contract: {what} -> {got}"));
        if got != want {
            shared.violation(format!("{what}: answered {got}, expected {want}"));
        }
    };

    // Tokens: an onboarding, its URLs used again, and a fresh token checked once it has
    // expired (below).
    let tokens = "http://ace:8080/v1/remoteenvironments/ec/tokens";
    let token = answer(Method::POST, tokens, None, None).await.json();
    let url = token["url"].as_str().unwrap_or_default();
    let info = answer(Method::GET, url, None, Some(anonymous)).await;
    expect("info for a configuration URL", info.status, 200);
    let csr_url = info.json()["csrUrl"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let csr = json!({ "csr": csr });
    let r = answer(Method::POST, &csr_url, Some(&csr), Some(anonymous)).await;
    expect("a certificate for a CSR", r.status, 201);
    let r = answer(Method::GET, url, None, Some(anonymous)).await;
    expect("a used configuration URL works once", r.status, 403);
    let r = answer(Method::POST, &csr_url, Some(&csr), Some(anonymous)).await;
    expect("a used CSR URL works once", r.status, 403);
    let token = answer(Method::POST, tokens, None, None).await.json();
    let token_expired = tokio::time::Instant::now() + TOKEN_TTL + Duration::from_millis(500);

    // Certificates: another RE.
    let other = json!({"kind": "RemoteEnvironment", "metadata": {"name": "other"}, "spec": {"description": "another"}});
    answer(
        Method::PUT,
        "http://ace:8081/v1/remoteenvironments/other",
        Some(&other),
        None,
    )
    .await;
    let r = answer(
        Method::GET,
        "https://ace:8444/other/v1/metadata/services",
        None,
        Some(me),
    )
    .await;
    expect(
        "a certificate for RE ec does not open RE other",
        r.status,
        403,
    );

    // Metadata.
    let service = json!({"provider": "sim", "name": "orders-api", "description": "Orders",
        "identifier": "orders-api",
        "api": {"targetUrl": "http://subscriber:9100/api",
                "credentials": {"oauth": {"url": "http://subscriber:9100/token",
                                          "clientId": "client", "clientSecret": "s3cr3t"}}}});
    let services = "https://ace:8444/ec/v1/metadata/services";
    let r = answer(Method::POST, services, Some(&service), Some(me)).await;
    expect("a service is registered", r.status, 200);
    let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
    let r = answer(Method::POST, services, Some(&service), Some(me)).await;
    expect(
        "a second service with the same identifier is refused",
        r.status,
        409,
    );
    let r = answer(Method::GET, &format!("{services}/{id}"), None, Some(me)).await;
    let oauth = &r.json()["api"]["credentials"]["oauth"];
    let shown = (&oauth["clientId"], &oauth["clientSecret"]);
    shared.note(
        "solution",
        format!(
            "contract: a service's OAuth credentials when read -> clientId {}, clientSecret {}",
            shown.0, shown.1
        ),
    );
    if shown != (&json!("********"), &json!("********")) {
        shared.violation(format!(
            "a service's OAuth credentials are masked when read: clientId {} and clientSecret {} were shown",
            shown.0, shown.1
        ));
    }

    // Proxy: the service bound in prod, called now and again once its token has expired.
    let mut key = String::new();
    for (path, doc) in [
        ("environmentmappings/ec", json!({})),
        (
            "serviceinstances/orders-api",
            json!({"spec": {"serviceClassName": format!("re-ec-{id}")}}),
        ),
        (
            "servicebindings/lambda",
            json!({"spec": {"instanceRef": {"name": "orders-api"}}}),
        ),
    ] {
        let url = format!("http://ace:8081/v1/namespaces/prod/{path}");
        let r = answer(Method::PUT, &url, Some(&doc), None).await;
        if let Some(k) = r.json()["credentials"]["ACCESS_KEY"].as_str() {
            k.clone_into(&mut key);
        }
    }
    let call_proxy = || async {
        count_exchange();
        let r = client::request(
            &TurmoilNet,
            Method::GET,
            &format!("http://ace:8090/re-ec-{id}/orders"),
            &[("ace-binding-key", key.as_str())],
            None,
            None,
            STEP_TIMEOUT,
        )
        .await;
        expect("a call through the proxy", r.map_or(0, |r| r.status), 200);
    };
    call_proxy().await;
    let oauth_expired =
        tokio::time::Instant::now() + Duration::from_millis(OAUTH_EXPIRES_IN * 1000 + 500);

    // Events: a subscription without an activation, and an update with events owed.
    let dark = json!({"kind": "Subscription", "metadata": {"name": "dark"}, "spec": {
        "endpoint": "http://subscriber:9000/", "include_subscription_name_header": true, "max_inflight": 1,
        "push_request_timeout_ms": 1000, "event_type": "order.created", "event_type_version": "v1", "source_id": "ec"}});
    answer(
        Method::PUT,
        "http://ace:8081/v1/namespaces/dark/subscriptions/dark",
        Some(&dark),
        None,
    )
    .await;
    publish(shared, me, EVENTS).await;
    let orders = |endpoint: &str| {
        json!({"kind": "Subscription", "metadata": {"name": "orders"}, "spec": {
            "endpoint": endpoint, "include_subscription_name_header": true, "max_inflight": MAX_INFLIGHT,
            "push_request_timeout_ms": 1000, "event_type": "order.created", "event_type_version": "v1", "source_id": "ec"}})
    };
    let url = "http://ace:8081/v1/namespaces/prod/subscriptions/orders";
    // Nobody listens on 9001: the next events stay owed until the endpoint is changed back.
    answer(
        Method::PUT,
        url,
        Some(&orders("http://subscriber:9001/")),
        None,
    )
    .await;
    publish(shared, me, EVENTS + 1).await;
    publish(shared, me, EVENTS + 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    answer(
        Method::PUT,
        url,
        Some(&orders("http://subscriber:9000/")),
        None,
    )
    .await;
    shared.note("solution", "contract: subscription updated".into());
    wait_for_deliveries(shared, Duration::from_secs(30)).await;

    // The waits.
    tokio::time::sleep_until(token_expired).await;
    let expired = token["url"].as_str().unwrap_or_default();
    let r = answer(Method::GET, expired, None, Some(anonymous)).await;
    expect("a configuration URL expires after its TTL", r.status, 403);
    tokio::time::sleep_until(oauth_expired).await;
    call_proxy().await;

    // Certificates: the RE deleted and created again (last: it revokes the certificate).
    let re = json!({"kind": "RemoteEnvironment", "metadata": {"name": "ec"}, "spec": {"description": "simulated"}});
    answer(
        Method::DELETE,
        "http://ace:8081/v1/remoteenvironments/ec",
        None,
        None,
    )
    .await;
    answer(
        Method::PUT,
        "http://ace:8081/v1/remoteenvironments/ec",
        Some(&re),
        None,
    )
    .await;
    let r = answer(Method::GET, services, None, Some(me)).await;
    expect(
        "a certificate of a deleted RE does not open the RE created again",
        r.status,
        403,
    );
}

async fn solution(
    shared: Arc<Shared>,
    ca_path: std::path::PathBuf,
    healed_by: Duration,
) -> Result<(), Box<dyn std::error::Error>> {
    until("health", &[200], || {
        send(Method::GET, "http://ace:8081/healthz", None, None)
    })
    .await;
    // The operator's steps.
    let re = json!({"kind": "RemoteEnvironment", "metadata": {"name": "ec"}, "spec": {"description": "simulated"}});
    until("re", &[200, 201], || {
        send(
            Method::PUT,
            "http://ace:8081/v1/remoteenvironments/ec",
            Some(&re),
            None,
        )
    })
    .await;
    let ea =
        json!({"kind": "EventActivation", "metadata": {"name": "ec"}, "spec": {"sourceId": "ec"}});
    until("ea", &[200, 201], || {
        send(
            Method::PUT,
            "http://ace:8081/v1/namespaces/prod/eventactivations/ec",
            Some(&ea),
            None,
        )
    })
    .await;
    let sub = json!({"kind": "Subscription", "metadata": {"name": "orders"}, "spec": {
        "endpoint": "http://subscriber:9000/", "include_subscription_name_header": true, "max_inflight": MAX_INFLIGHT,
        "push_request_timeout_ms": 1000, "event_type": "order.created", "event_type_version": "v1", "source_id": "ec"}});
    until("subscription", &[200, 201], || {
        send(
            Method::PUT,
            "http://ace:8081/v1/namespaces/prod/subscriptions/orders",
            Some(&sub),
            None,
        )
    })
    .await;
    shared.note("solution", "resources applied".into());

    // Onboarding: token, info, CSR, certificate.
    let ca = std::fs::read_to_string(&ca_path)?;
    let roots = pki::certs_from_pem(&ca)?;
    let anonymous = client::tls_connector(&TlsOptions {
        roots: roots.clone(),
        ..TlsOptions::default()
    })?;
    let key = pki::generate_key(KeyKind::EcdsaP256)?;
    let subject = Subject {
        common_name: Some("ec".into()),
        country: Some("DE".into()),
        organization: Some("Organization".into()),
        organizational_unit: Some("OrgUnit".into()),
        locality: Some("Waldorf".into()),
        province: Some("Waldorf".into()),
    };
    let csr = base64::engine::general_purpose::STANDARD.encode(pki::make_csr(&key, &subject)?);
    let crt = loop {
        // A fault can strike between the steps; the flow starts again with a new token.
        let token = until("token", &[201], || {
            send(
                Method::POST,
                "http://ace:8080/v1/remoteenvironments/ec/tokens",
                None,
                None,
            )
        })
        .await
        .json();
        let Some(url) = token["url"].as_str() else {
            continue;
        };
        let Ok(info) = send(Method::GET, url, None, Some(&anonymous)).await else {
            continue;
        };
        let Some(csr_url) = info.json()["csrUrl"].as_str().map(str::to_owned) else {
            continue;
        };
        match send(
            Method::POST,
            &csr_url,
            Some(&json!({ "csr": csr })),
            Some(&anonymous),
        )
        .await
        {
            Ok(r) if r.status == 201 => break r.json(),
            _ => continue,
        }
    };
    let chain = base64::engine::general_purpose::STANDARD
        .decode(crt["crt"].as_str().unwrap_or_default())?;
    let chain = pki::certs_from_pem(&String::from_utf8_lossy(&chain))?;
    let me = client::tls_connector(&TlsOptions {
        roots,
        identity: Some((chain, pki::key_from_pem(&key.serialize_pem())?)),
        insecure: false,
    })?;
    shared.note("solution", "onboarded".into());

    // Publishing, each event until it is answered 200 (the same event-id on a retry).
    for i in 0..EVENTS {
        publish(&shared, &me, i).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    // Liveness: by now the faults have healed (see `run`); wait for every accepted event.
    wait_for_deliveries(&shared, Duration::from_secs(60)).await;
    contract_phase(&shared, &anonymous, &me, &csr, healed_by).await;
    shared.note("solution", "done".into());
    Ok(())
}

/// Runs the world of `seed` and checks it.
pub fn run(seed: u64) -> Result<Report, String> {
    run_with(seed, Bugs::NONE)
}

/// Runs the world of `seed` with the server's `bugs` switched on, and checks it.
pub fn run_with(seed: u64, bugs: Bugs) -> Result<Report, String> {
    let faults = Faults::of(seed);
    EXCHANGES.with(|n| n.set(0));
    let shared = Arc::new(Shared::default());
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().to_owned();
    let ca_path = data.join("ca.crt");
    let store = MemoryStore::default();
    let start = SystemTime::now();
    let unix_ms = start
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(start)
        .simulation_duration(Duration::from_secs(300))
        .min_message_latency(Duration::from_millis(faults.latency_ms.0))
        .max_message_latency(Duration::from_millis(faults.latency_ms.1))
        .build();

    sim.host("ace", move || {
        let (data, store) = (data.clone(), store.clone());
        async move {
            // After a crash the host starts again here: memory is gone, the store is kept, and
            // the new process reads the wall clock again.
            let elapsed = turmoil::sim_elapsed().unwrap_or_default();
            let unix_ms = unix_ms + u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            let mut opts = options(&data);
            opts.bugs = bugs;
            let _server =
                serve::start_with_store(TurmoilNet, opts, Clock::new(unix_ms), seed.into(), store)
                    .await
                    .map_err(|e| e.to_string())?;
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    let sub_shared = shared.clone();
    let failures = faults.subscriber_failures;
    sim.host("subscriber", move || {
        let shared = sub_shared.clone();
        async move {
            let api_shared = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = api(api_shared.clone()).await {
                    api_shared.note("api", format!("stopped: {e}"));
                }
            });
            subscriber(shared, failures).await
        }
    });
    let sol_shared = shared.clone();
    sim.client(
        "solution",
        solution(sol_shared, ca_path, faults.healed_by()),
    );

    let (mut partitioned, mut healed, mut crashed) = (false, false, false);
    loop {
        let elapsed = sim.elapsed();
        if let Some((at, len)) = faults.partition {
            if !partitioned && elapsed >= at {
                sim.partition("ace", "subscriber");
                shared.note_at(elapsed, "faults", "partition ace | subscriber".into());
                partitioned = true;
            }
            if partitioned && !healed && elapsed >= at + len {
                sim.repair("ace", "subscriber");
                shared.note_at(elapsed, "faults", "repair ace | subscriber".into());
                healed = true;
            }
        }
        if let Some(at) = faults.crash_at
            && !crashed
            && elapsed >= at
        {
            sim.bounce("ace");
            shared.note_at(elapsed, "faults", "crash and restart ace".into());
            crashed = true;
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => return Err(format!("seed={seed}: the simulation failed: {e}")),
        }
    }

    let trace = shared.trace.lock().map(|t| t.clone()).unwrap_or_default();
    let accepted = shared
        .accepted
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    let received = shared
        .received
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    let mut violations = Vec::new();
    for id in &accepted {
        if !received.contains_key(id) {
            violations.push(format!(
                "at-least-once: event {id} was answered 200 but never delivered"
            ));
        }
    }
    let stray = shared.stray.lock().map(|s| s.len()).unwrap_or_default();
    if stray > 0 {
        violations.push(format!(
            "activation: {stray} pushes went to subscription dark/dark, whose namespace has no EventActivation for ec"
        ));
    }
    violations.extend(
        shared
            .violations
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default(),
    );
    let max = shared.max_in_flight.load(Ordering::SeqCst);
    if max > MAX_INFLIGHT {
        violations.push(format!(
            "max_inflight: the subscriber held {max} pushes at once, the limit is {MAX_INFLIGHT}"
        ));
    }
    let duplicates = received.values().map(|n| n.saturating_sub(1)).sum();
    let mut hasher = Sha256::new();
    for line in &trace {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    let trace_hash = hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Report {
        seed,
        faults,
        trace_hash,
        trace,
        accepted: accepted.len(),
        duplicates,
        violations,
        exchanges: EXCHANGES.with(std::cell::Cell::get),
    })
}
