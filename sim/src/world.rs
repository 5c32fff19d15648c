//! One simulated world, decided by one seed.
//!
//! Hosts: `ace` (the real `ace serve`, on a [`SimDisk`] that survives its crashes); two
//! external solutions, `solution-1` (RE `ec`) and `solution-2` (RE `shop`), that onboard
//! through the token → info → CSR flow over mutual TLS and publish events through the
//! gateway; an `operator` that creates the REs, activations and subscriptions and keeps
//! changing resources while traffic flows; subscribers `sub-a` and `sub-b` (each may
//! misbehave with its first requests: 5xx, late answers, resets, requests never answered);
//! `api`, an OAuth server and a registered API for the proxy.
//!
//! The seed picks the faults ([`Faults`]): a safety phase runs under them, then everything
//! heals and every event answered 200 must reach every activated subscription that matches
//! it (at least once; duplicates are counted, not failures). Once the faults have healed, a
//! contract phase tries to break the other documented guarantees: a used configuration or
//! CSR URL and an expired one are refused, a certificate opens neither another RE nor its RE
//! created again, service identifiers are unique and OAuth secrets masked, the proxy never
//! sends an OAuth token past its `expires_in`, and an update of a subscription keeps the
//! events it is owed. Throughout, nothing may be pushed to a subscription without an
//! EventActivation, no subscriber may hold more than its subscription's `max_inflight`, and a
//! registry read must reflect every acknowledged write.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use ace_client::{self as client, Clock, TlsOptions};
use ace_model::bugs::Bugs;
use ace_model::connector::Subject;
use ace_server::ServeOptions;
use ace_server::driver::Placement;
use ace_server::pki;
use base64::Engine as _;
use hyper::Method;
use serde_json::{Value, json};

use crate::disk::{DiskNote, SimDisk};
pub use crate::faults::{Clog, Faults, Loss, Misbehaviour, Partition};
use crate::net::TurmoilNet;
use crate::oracle::{Call, Mirror};
use crate::timeline::{Entry, Kind};

/// External solutions, each with its own RE.
pub const SOLUTIONS: usize = 2;
/// Events each solution publishes in the safety phase (a multiple of 4: the second solution
/// publishes in bursts of four).
pub const EVENTS: usize = 12;
/// Events the contract phase publishes (from `solution-1`), besides those.
pub const CONTRACT_EVENTS: usize = 3;
/// The `max_inflight` of subscription `orders` (the others: see [`SUBSCRIPTIONS`]).
pub const MAX_INFLIGHT: usize = 3;
/// Connector tokens live this long in the world (the contract phase waits it out).
pub const TOKEN_TTL: Duration = Duration::from_secs(2);
/// The subscriptions' push deadline.
const PUSH_TIMEOUT_MS: u64 = 1000;
/// The `expires_in` of the world's OAuth tokens, in seconds: short-lived, so the proxy must
/// fetch one for every call (it keeps a token until 10 s before it expires).
const OAUTH_EXPIRES_IN: u64 = 2;
const STEP_TIMEOUT: Duration = Duration::from_secs(3);

/// The REs of the solutions, by solution.
const RES: [&str; SOLUTIONS] = ["ec", "shop"];

/// A subscription of the world.
#[derive(Clone, Copy, Debug)]
pub struct Sub {
    /// Its name (unique in the world; the subscribers tell them apart by it).
    pub name: &'static str,
    /// Its namespace.
    pub namespace: &'static str,
    /// Where it pushes.
    pub endpoint: &'static str,
    /// Its `max_inflight`.
    pub max_inflight: usize,
    /// The RE whose events it takes.
    pub source: &'static str,
    /// Whether its namespace has an EventActivation for `source`.
    pub activated: bool,
}

/// The world's subscriptions: two namespaces take `ec`'s events, one `shop`'s, and one
/// namespace without an activation must get nothing.
pub const SUBSCRIPTIONS: [Sub; 4] = [
    Sub {
        name: "orders",
        namespace: "prod",
        endpoint: "http://sub-a:9000/",
        max_inflight: MAX_INFLIGHT,
        source: "ec",
        activated: true,
    },
    Sub {
        name: "audit",
        namespace: "stage",
        endpoint: "http://sub-b:9000/",
        max_inflight: 1,
        source: "ec",
        activated: true,
    },
    Sub {
        name: "shop",
        namespace: "prod",
        endpoint: "http://sub-b:9000/",
        max_inflight: 2,
        source: "shop",
        activated: true,
    },
    Sub {
        name: "dark",
        namespace: "dark",
        endpoint: "http://sub-b:9000/",
        max_inflight: 1,
        source: "ec",
        activated: false,
    },
];

/// Rare paths: sometimes-assertions that a large sweep must reach at least once, or its
/// worlds are not exercising what they claim to.
pub const RARE: [(&str, &str); 14] = [
    (
        "publish-retried",
        "a publish went unanswered or refused and was sent again",
    ),
    (
        "onboarding-restarted",
        "the token → info → CSR flow failed midway and started again",
    ),
    (
        "token-expired-mid-onboarding",
        "a CSR sent after its token's TTL was refused",
    ),
    (
        "push-retried-after-failure",
        "an event a subscriber failed (5xx, reset, late, unanswered) reached it again",
    ),
    (
        "duplicate-delivery",
        "a subscriber answered 200 to the same event twice",
    ),
    (
        "delivered-after-crash",
        "an event accepted before a crash first reached a subscriber after it",
    ),
    (
        "unsynced-write-lost",
        "a crash lost a write the disk had not synced",
    ),
    (
        "unsynced-write-kept",
        "a write being synced at a crash survived it",
    ),
    ("group-commit", "one sync made several events durable"),
    (
        "max-inflight-reached",
        "a subscriber held exactly max_inflight (> 1) pushes of one subscription",
    ),
    (
        "push-to-updated-endpoint",
        "a push reached the endpoint a subscription was changed to under traffic",
    ),
    (
        "registry-write-retried",
        "an operator's write went unanswered and was sent again",
    ),
    (
        "model-states-forked",
        "a registry write's answer was lost and the oracle followed both possible states",
    ),
    (
        "oauth-token-refetched",
        "the proxy fetched a new OAuth token once the last had expired",
    ),
];

/// What a run saw.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Its faults.
    pub faults: Faults,
    /// The trace: one entry per observed step, in simulated order.
    pub entries: Vec<Entry>,
    /// Events answered 200.
    pub accepted: usize,
    /// Deliveries beyond the first per event and subscription (at-least-once allows them).
    pub duplicates: usize,
    /// Broken guarantees; empty when the run passed.
    pub violations: Vec<String>,
    /// HTTP exchanges the world's clients started (ACE's pushes and proxy calls included).
    pub exchanges: usize,
    /// How often each rare path of [`RARE`] was taken.
    pub rare: BTreeMap<&'static str, usize>,
}

impl Report {
    /// The hash of the trace: the same seed gives the same hash.
    pub fn trace_hash(&self) -> String {
        crate::timeline::hash(&self.entries)
    }

    /// The trace as lines of text.
    pub fn trace(&self) -> Vec<String> {
        self.entries.iter().map(ToString::to_string).collect()
    }
}

/// An event answered 200.
#[derive(Clone, Debug)]
struct Accepted {
    re: &'static str,
    /// When its first publish was sent.
    sent: Duration,
    /// When it was answered 200.
    at: Duration,
}

/// An activation, by (namespace, source), gone from one time to another.
type Gap = ((&'static str, &'static str), Duration, Duration);

#[derive(Default)]
struct Shared {
    entries: Mutex<Vec<Entry>>,
    accepted: Mutex<BTreeMap<String, Accepted>>,
    /// 200s by (subscription, event id): how many, and when the first.
    received: Mutex<BTreeMap<(String, String), (usize, Duration)>>,
    /// Pushes a subscriber failed, by (subscription, event id).
    failed: Mutex<BTreeSet<(String, String)>>,
    /// Pushes each subscription has at its subscriber now, and the most ever.
    in_flight: Mutex<BTreeMap<String, (usize, usize)>>,
    /// Requests each subscriber host has had.
    requests: Mutex<BTreeMap<&'static str, usize>>,
    /// Pushes for subscriptions whose namespace has no activation.
    stray: Mutex<Vec<String>>,
    /// OAuth tokens the token server issued, with when (simulated time).
    oauth_tokens: Mutex<BTreeMap<String, Duration>>,
    rare: Mutex<BTreeMap<&'static str, usize>>,
    /// Broken guarantees seen during the run (the rest are found at its end).
    violations: Mutex<Vec<String>>,
    operator_done: AtomicBool,
    /// When the operator's creation of each activation, by (namespace, source), and each
    /// subscription was acknowledged: an event is owed to a subscription only if it was first
    /// sent after both.
    acknowledged: Mutex<BTreeMap<(&'static str, &'static str), Duration>>,
    /// Times an activation, by (namespace, source), was gone: from its deletion's first
    /// send to its re-creation's acknowledgement.
    gaps: Mutex<Vec<Gap>>,
}

impl Shared {
    fn push(&self, entry: Entry) {
        if let Ok(mut t) = self.entries.lock() {
            t.push(entry);
        }
    }

    fn entry(&self, host: &str, peer: Option<&str>, what: String, kind: Kind) {
        self.push(Entry {
            at: turmoil::sim_elapsed().unwrap_or_default(),
            host: host.to_owned(),
            peer: peer.map(str::to_owned),
            what,
            kind,
        });
    }

    fn note(&self, host: &str, what: String) {
        self.entry(host, None, what, Kind::Note);
    }

    fn violation(&self, what: String) {
        self.entry("checker", None, what.clone(), Kind::Violation);
        if let Ok(mut v) = self.violations.lock() {
            v.push(what);
        }
    }

    fn rare(&self, path: &'static str) {
        debug_assert!(RARE.iter().any(|(name, _)| *name == path), "{path}");
        if let Ok(mut r) = self.rare.lock() {
            *r.entry(path).or_default() += 1;
        }
    }

    fn accept(&self, id: String, re: &'static str, sent: Duration) {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        if let Ok(mut a) = self.accepted.lock() {
            a.entry(id).or_insert(Accepted { re, sent, at });
        }
    }

    /// The operator's creation of `key` was acknowledged now.
    fn acknowledged(&self, key: (&'static str, &'static str)) {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        if let Ok(mut a) = self.acknowledged.lock() {
            a.entry(key).or_insert(now);
        }
    }

    /// The deliveries owed: (subscription, event id) for every accepted event and every
    /// activated subscription that takes its RE's events.
    fn owed(&self) -> BTreeSet<(String, String)> {
        let accepted = self.accepted.lock().map(|a| a.clone()).unwrap_or_default();
        let acknowledged = self
            .acknowledged
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        let mut owed = BTreeSet::new();
        for sub in SUBSCRIPTIONS.iter().filter(|s| s.activated) {
            let (Some(activated), Some(subscribed)) = (
                acknowledged.get(&(sub.namespace, sub.source)),
                acknowledged.get(&("subscription", sub.name)),
            ) else {
                continue;
            };
            let gaps = self.gaps.lock().map(|g| g.clone()).unwrap_or_default();
            for (id, a) in &accepted {
                // Published, from first send to answer, wholly while the subscription and
                // its activation existed.
                let in_gap = gaps.iter().any(|(key, from, to)| {
                    *key == (sub.namespace, sub.source) && a.sent < *to && a.at > *from
                });
                if a.re == sub.source && a.sent > *activated.max(subscribed) && !in_gap {
                    owed.insert((sub.name.to_owned(), id.clone()));
                }
            }
        }
        owed
    }

    /// Whether every delivery owed has been made.
    fn all_received(&self) -> bool {
        let received = self.received.lock().map(|r| r.clone()).unwrap_or_default();
        self.owed().iter().all(|k| received.contains_key(k))
    }
}

thread_local! {
    /// HTTP exchanges of the world running on this thread: requests its clients sent and
    /// requests its subscriber and API hosts served (ACE's pushes and proxy calls).
    static EXCHANGES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

fn count_exchange() {
    EXCHANGES.with(|n| n.set(n.get() + 1));
}

/// The Unix time (milliseconds) at which the world of `seed` starts: a moment of 2026 the
/// seed picks, so that nothing in a world depends on the date it runs on.
pub fn epoch_of(seed: u64) -> u64 {
    const START_OF_2026: u64 = 1_767_225_600_000;
    let mut s = seed ^ 0xe90c;
    START_OF_2026 + (crate::faults::mix(&mut s) % (365 * 86_400)) * 1000
}

/// 32 bytes the seed decides, for the key or seed of `purpose`.
pub fn seed_bytes(seed: u64, purpose: u64) -> [u8; 32] {
    let mut s = seed ^ purpose.wrapping_mul(0x5851_f42d_4c95_7f2d);
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&crate::faults::mix(&mut s).to_le_bytes());
    }
    out
}

/// A client's clock on a host of a simulated world that started at `epoch_ms`.
pub fn sim_clock(epoch_ms: u64) -> Clock {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default();
    Clock::new(epoch_ms + u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// `ace serve`'s options on host `ace` of the simulated world of `seed`: every surface on its
/// usual port, the server certificate for the host name `ace`, keys the seed decides, fast
/// retries.
pub fn options(dir: &std::path::Path, seed: u64) -> ServeOptions {
    let mut opts = ServeOptions {
        data_dir: dir.to_owned(),
        key_seed: Some(ace_model::Seed(seed_bytes(seed, 1))),
        hosts: vec!["ace".into()],
        connector_internal_addr: "0.0.0.0:8080".into(),
        connector_external_addr: "0.0.0.0:8443".into(),
        gateway_addr: "0.0.0.0:8444".into(),
        admin_addr: "0.0.0.0:8081".into(),
        publish_addr: "0.0.0.0:8082".into(),
        proxy_addr: "0.0.0.0:8090".into(),
        // Everything on the simulation's runtime, on its clock.
        driver: Placement::Task,
        ..ServeOptions::default()
    };
    opts.bus.retry = ace_model::bus::RetryPolicy::Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };
    opts.token_ttl = TOKEN_TTL;
    opts
}

/// A host of the world that sends requests, tracing each with its outcome; a solution's
/// answers from its RE are also checked against the model.
#[derive(Clone)]
struct Actor {
    shared: Arc<Shared>,
    name: &'static str,
    mirror: Option<Arc<Mutex<Mirror>>>,
}

/// The host of `url`, and its path with the query elided (it may hold a token).
fn host_and_path(url: &str) -> (&str, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.split(':').next().unwrap_or(authority);
    let path = match path.split_once('?') {
        Some((p, _)) => format!("{p}?…"),
        None => path.to_owned(),
    };
    (host, path)
}

impl Actor {
    fn note(&self, what: impl Into<String>) {
        self.shared.note(self.name, what.into());
    }

    async fn send_with(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<client::Response, String> {
        count_exchange();
        let bytes = body.map(|b| b.to_string().into_bytes());
        let r = client::request(
            &TurmoilNet,
            method.clone(),
            url,
            headers,
            bytes,
            tls,
            STEP_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string());
        let (host, path) = host_and_path(url);
        let outcome = match &r {
            Ok(r) if r.status >= 400 => {
                let body = r.json();
                let error = body["error"].as_str().unwrap_or_default();
                format!(
                    "{} {}",
                    r.status,
                    error.chars().take(80).collect::<String>()
                )
                .trim_end()
                .to_owned()
            }
            Ok(r) => r.status.to_string(),
            Err(e) => format!("failed: {e}"),
        };
        self.shared.entry(
            self.name,
            Some(host),
            format!("{method} {path} -> {outcome}"),
            Kind::Request,
        );
        r
    }

    async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<client::Response, String> {
        let json = [("content-type", "application/json")];
        self.send_with(method, url, &json, body, tls).await
    }

    /// Sends until the answer's status is in `ok` (faults may be striking); also returns how
    /// many attempts it took.
    async fn until(
        &self,
        ok: &[u16],
        method: Method,
        url: &str,
        body: Option<&Value>,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> (client::Response, usize) {
        retry(
            |status| ok.contains(&status),
            || async { self.send(method.clone(), url, body, tls).await.ok() },
        )
        .await
    }

    /// Sends until the server answers at all.
    async fn answer(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> client::Response {
        retry(
            |_| true,
            || async { self.send(method.clone(), url, body, tls).await.ok() },
        )
        .await
        .0
    }

    /// Sends `call` once and checks its answer (or its loss) against the model.
    async fn checked(
        &self,
        call: Call,
        method: Method,
        url: &str,
        body: Option<&Value>,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Option<client::Response> {
        let r = self.send(method, url, body, tls).await.ok();
        if let Some(mirror) = &self.mirror {
            let json = r
                .as_ref()
                .map(|r| (r.status, (!r.body.is_empty()).then(|| r.json())));
            let answer = json.as_ref().map(|(s, b)| (*s, b.as_ref()));
            let seen = mirror.lock().map(|mut m| m.observe(&call, answer));
            if let Ok(Err(violation)) = seen {
                self.shared.violation(violation);
            }
        }
        r
    }

    /// Sends `call` until it is answered with a status in `ok`, checking every answer.
    async fn checked_until(
        &self,
        ok: &[u16],
        call: Call,
        method: Method,
        url: &str,
        body: Option<&Value>,
        tls: &tokio_rustls::TlsConnector,
    ) -> (client::Response, usize) {
        retry(
            |status| ok.contains(&status),
            || self.checked(call.clone(), method.clone(), url, body, Some(tls)),
        )
        .await
    }

    /// An idempotent write by the operator, sent until acknowledged.
    async fn write(&self, method: Method, url: &str, body: Option<&Value>, ok: &[u16]) {
        let (_, attempts) = self.until(ok, method, url, body, None).await;
        if attempts > 1 {
            self.shared.rare("registry-write-retried");
        }
    }
}

/// Calls `attempt` every 100 ms until it gives an answer whose status `accept`s; returns the
/// answer and how many attempts it took.
async fn retry<F, Fut>(accept: impl Fn(u16) -> bool, mut attempt: F) -> (client::Response, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<client::Response>>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        if let Some(r) = attempt().await
            && accept(r.status)
        {
            return (r, attempts);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The subscription a push is for, by its `Kyma-Subscription` header.
fn subscription_of(req: &hyper::Request<hyper::body::Incoming>) -> String {
    req.headers()
        .get("kyma-subscription")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned()
}

/// One push held by a subscriber, counted out when it is dropped (however the request ends:
/// a peer that goes away mid-request makes hyper drop the handler).
struct InFlight(Arc<Shared>, String);

impl InFlight {
    fn new(shared: &Arc<Shared>, sub: &str) -> InFlight {
        let limit = SUBSCRIPTIONS
            .iter()
            .find(|s| s.name == sub)
            .map_or(1, |s| s.max_inflight);
        if let Ok(mut m) = shared.in_flight.lock() {
            let (now, max) = m.entry(sub.to_owned()).or_default();
            *now += 1;
            *max = (*max).max(*now);
            if *now == limit && limit > 1 {
                shared.rare("max-inflight-reached");
            }
        }
        InFlight(shared.clone(), sub.to_owned())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut m) = self.0.in_flight.lock()
            && let Some((now, _)) = m.get_mut(&self.1)
        {
            *now = now.saturating_sub(1);
        }
    }
}

/// What a subscriber does with one push.
async fn push(
    shared: Arc<Shared>,
    host: &'static str,
    port: u16,
    misbehaviour: Misbehaviour,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::io::Error> {
    let ok = || {
        Ok(hyper::Response::new(http_body_util::Full::new(
            bytes::Bytes::new(),
        )))
    };
    let sub = subscription_of(&req);
    let id = req
        .headers()
        .get("kyma-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned();
    let activated = SUBSCRIPTIONS.iter().any(|s| s.name == sub && s.activated);
    if !activated {
        shared.note(host, format!("push {id} for {sub}: not activated"));
        if let Ok(mut s) = shared.stray.lock() {
            s.push(sub);
        }
        return ok();
    }
    if port != 9000 {
        shared.rare("push-to-updated-endpoint");
    }
    let n = shared
        .requests
        .lock()
        .map(|mut r| {
            let n = r.entry(host).or_default();
            *n += 1;
            *n - 1
        })
        .unwrap_or(0);
    let key = (sub.clone(), id.clone());
    let fail = |how: &str| {
        shared.note(host, format!("push {id} for {sub} -> {how}"));
        if let Ok(mut f) = shared.failed.lock() {
            f.insert(key.clone());
        }
    };
    let misbehaving = n < misbehaviour.first();
    let status = match misbehaviour {
        Misbehaviour::Reset(_) if misbehaving => {
            fail("reset");
            return Err(std::io::Error::other("connection reset by the subscriber"));
        }
        Misbehaviour::Drop(_) if misbehaving => {
            fail("never answered");
            std::future::pending::<()>().await;
            return ok();
        }
        Misbehaviour::Late(_) if misbehaving => {
            // Not counted in flight: the server has given up on it before it ends.
            fail("answered late");
            tokio::time::sleep(Duration::from_millis(PUSH_TIMEOUT_MS + 200)).await;
            200
        }
        _ => {
            let _held = InFlight::new(&shared, &sub);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if misbehaving { 500 } else { 200 }
        }
    };
    if status == 200 {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        if let Ok(mut r) = shared.received.lock() {
            r.entry(key.clone()).or_insert((0, now)).0 += 1;
        }
        if shared.failed.lock().is_ok_and(|f| f.contains(&key)) {
            shared.rare("push-retried-after-failure");
        }
        shared.note(host, format!("push {id} for {sub} -> 200"));
        ok()
    } else {
        fail("500");
        let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
        *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        Ok(resp)
    }
}

/// A subscriber host: listens on `ports`, treats its first requests as `misbehaviour` says.
async fn subscriber(
    shared: Arc<Shared>,
    host: &'static str,
    ports: &'static [u16],
    misbehaviour: Misbehaviour,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut listeners = Vec::new();
    for port in ports {
        listeners.push((
            *port,
            turmoil::net::TcpListener::bind(format!("0.0.0.0:{port}")).await?,
        ));
    }
    let mut tasks = Vec::new();
    for (port, listener) in listeners {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        count_exchange();
                        push(shared.clone(), host, port, misbehaviour, req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}

/// A registered API and its OAuth server: `POST /token` issues `tok-N` with `expires_in`
/// [`OAUTH_EXPIRES_IN`]; any other request is the API, which checks that the proxy's bearer
/// token has not expired.
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
                            if token != "tok-1" {
                                shared.rare("oauth-token-refetched");
                            }
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

/// The Subscription resource of `sub`, pushing to `endpoint`.
fn subscription(sub: &Sub, endpoint: &str) -> Value {
    json!({"kind": "Subscription", "metadata": {"name": sub.name}, "spec": {
        "endpoint": endpoint, "include_subscription_name_header": true,
        "max_inflight": sub.max_inflight, "push_request_timeout_ms": PUSH_TIMEOUT_MS,
        "event_type": "order.created", "event_type_version": "v1", "source_id": sub.source}})
}

fn subscription_url(sub: &Sub) -> String {
    format!(
        "http://ace:8081/v1/namespaces/{}/subscriptions/{}",
        sub.namespace, sub.name
    )
}

fn re_resource(name: &str) -> Value {
    json!({"kind": "RemoteEnvironment", "metadata": {"name": name}, "spec": {"description": "simulated"}})
}

/// The operator: creates the REs, activations and subscriptions, then, while the solutions
/// publish, moves subscription `orders` to its subscriber's other port and back, updates RE
/// `ec`, removes namespace stage's activation for a while, and creates and deletes an
/// environment mapping, reading each acknowledged write back.
async fn operator(actor: Actor) -> Result<(), Box<dyn std::error::Error>> {
    let ok: &[u16] = &[200, 201];
    actor
        .until(&[200], Method::GET, "http://ace:8081/healthz", None, None)
        .await;
    for re in RES {
        let url = format!("http://ace:8081/v1/remoteenvironments/{re}");
        actor
            .write(Method::PUT, &url, Some(&re_resource(re)), ok)
            .await;
    }
    let activations: BTreeSet<(&str, &str)> = SUBSCRIPTIONS
        .iter()
        .filter(|s| s.activated)
        .map(|s| (s.namespace, s.source))
        .collect();
    for (namespace, source) in activations {
        let ea = json!({"kind": "EventActivation", "metadata": {"name": source}, "spec": {"sourceId": source}});
        let url = format!("http://ace:8081/v1/namespaces/{namespace}/eventactivations/{source}");
        actor.write(Method::PUT, &url, Some(&ea), ok).await;
        actor.shared.acknowledged((namespace, source));
    }
    for sub in &SUBSCRIPTIONS {
        let body = subscription(sub, sub.endpoint);
        actor
            .write(Method::PUT, &subscription_url(sub), Some(&body), ok)
            .await;
        actor.shared.acknowledged(("subscription", sub.name));
    }
    actor.note("resources applied");

    // Under traffic.
    let orders = &SUBSCRIPTIONS[0];
    let mapping = "http://ace:8081/v1/namespaces/ops/environmentmappings/ec";
    let mappings = "http://ace:8081/v1/namespaces/ops/environmentmappings";
    // Whether the namespace's mappings, read until answered, list the mapping.
    let listed = || async {
        let r = actor.answer(Method::GET, mappings, None, None).await;
        (r.status, r.json().as_array().map(Vec::len))
    };
    for round in 0..3 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let endpoint = if round % 2 == 0 {
            "http://sub-a:9001/"
        } else {
            orders.endpoint
        };
        let body = subscription(orders, endpoint);
        actor
            .write(Method::PUT, &subscription_url(orders), Some(&body), ok)
            .await;
        actor.note(format!("orders now pushes to {endpoint}"));
        // An update of an RE keeps its certificates valid.
        let mut re = re_resource("ec");
        re["spec"]["description"] = json!(format!("simulated, round {round}"));
        actor
            .write(
                Method::PUT,
                "http://ace:8081/v1/remoteenvironments/ec",
                Some(&re),
                ok,
            )
            .await;
        if round == 0 {
            // Namespace stage loses its activation for a while: what is owed to `audit`
            // waits, what is published meanwhile may not be owed.
            let url = "http://ace:8081/v1/namespaces/stage/eventactivations/ec";
            let from = turmoil::sim_elapsed().unwrap_or_default();
            actor
                .write(Method::DELETE, url, None, &[200, 204, 404])
                .await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            let ea = json!({"kind": "EventActivation", "metadata": {"name": "ec"}, "spec": {"sourceId": "ec"}});
            actor.write(Method::PUT, url, Some(&ea), ok).await;
            let to = turmoil::sim_elapsed().unwrap_or_default();
            if let Ok(mut gaps) = actor.shared.gaps.lock() {
                gaps.push((("stage", "ec"), from, to));
            }
            actor.note("stage's activation of ec removed and created again");
        }
        actor
            .write(Method::PUT, mapping, Some(&json!({})), ok)
            .await;
        let read = listed().await;
        if read != (200, Some(1)) {
            actor.shared.violation(format!(
                "a registry read reflects every acknowledged write: the mapping just created was not listed (status {}, {:?} mappings)",
                read.0, read.1
            ));
        }
        actor
            .write(Method::DELETE, mapping, None, &[200, 204, 404])
            .await;
        let read = listed().await;
        if read != (200, Some(0)) {
            actor.shared.violation(format!(
                "a registry read reflects every acknowledged write: the mapping just deleted was still listed (status {}, {:?} mappings)",
                read.0, read.1
            ));
        }
    }
    let body = subscription(orders, orders.endpoint);
    actor
        .write(Method::PUT, &subscription_url(orders), Some(&body), ok)
        .await;
    actor.note("done");
    actor.shared.operator_done.store(true, Ordering::SeqCst);
    Ok(())
}

/// The event id of event `i` of solution `index`.
fn event_id(index: usize, i: usize) -> String {
    format!("00000000-0000-4000-8{index:03x}-{i:012x}")
}

/// Publishes event `i` of a solution through the gateway until it is answered 200.
async fn publish(actor: &Actor, me: &tokio_rustls::TlsConnector, index: usize, i: usize) {
    let re = RES[index];
    let id = event_id(index, i);
    let event = json!({"event-type": "order.created", "event-type-version": "v1", "event-id": id,
                       "event-time": "2018-10-16T15:00:00Z", "data": {"n": i}});
    let url = format!("https://ace:8444/{re}/v1/events");
    let sent = turmoil::sim_elapsed().unwrap_or_default();
    let call = Call::Publish(event.to_string().into_bytes());
    let (_, attempts) = actor
        .checked_until(&[200], call, Method::POST, &url, Some(&event), me)
        .await;
    if attempts > 1 {
        actor.shared.rare("publish-retried");
    }
    actor.shared.accept(id, re, sent);
}

/// Waits (at most `limit`) until every delivery owed has been made.
async fn wait_for_deliveries(shared: &Shared, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !shared.all_received() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until simulated time `at`.
async fn sleep_until_elapsed(at: Duration) {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default();
    tokio::time::sleep(at.saturating_sub(elapsed)).await;
}

/// The connector's answers a contract check compares.
fn expect(shared: &Shared, what: &str, got: u16, want: u16) {
    shared.note("solution-1", format!("contract: {what} -> {got}"));
    if got != want {
        shared.violation(format!("{what}: answered {got}, expected {want}"));
    }
}

/// The documented guarantees beyond delivery, checked after the faults have healed, each by
/// trying to break it: a configuration URL works once; a token expires; a certificate opens
/// only its RE, and only while the RE lives; identifiers are unique in an RE and secrets are
/// masked; the proxy never sends an expired OAuth token; an update of a subscription keeps
/// what it is owed. The two checks that wait (token expiry, OAuth token expiry) share their
/// wait with the others.
async fn contract_phase(
    actor: &Actor,
    anonymous: &tokio_rustls::TlsConnector,
    me: &tokio_rustls::TlsConnector,
    csr: &str,
) {
    let shared = &actor.shared;
    // Only once the faults have healed (the caller waits for that) and the operator is done:
    // a lost answer to a retried write would make the checks below see their own retries.
    while !shared.operator_done.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    actor
        .until(&[200], Method::GET, "http://ace:8081/readyz", None, None)
        .await;
    actor.note("contract phase");

    // Tokens: an onboarding, its URLs used again, and a fresh token checked once it has
    // expired (below).
    let tokens = "http://ace:8080/v1/remoteenvironments/ec/tokens";
    let token = actor.answer(Method::POST, tokens, None, None).await.json();
    let url = token["url"].as_str().unwrap_or_default();
    let info = actor.answer(Method::GET, url, None, Some(anonymous)).await;
    expect(shared, "info for a configuration URL", info.status, 200);
    let csr_url = info.json()["csrUrl"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let csr = json!({ "csr": csr });
    let r = actor
        .answer(Method::POST, &csr_url, Some(&csr), Some(anonymous))
        .await;
    expect(shared, "a certificate for a CSR", r.status, 201);
    let r = actor.answer(Method::GET, url, None, Some(anonymous)).await;
    expect(shared, "a used configuration URL works once", r.status, 403);
    let r = actor
        .answer(Method::POST, &csr_url, Some(&csr), Some(anonymous))
        .await;
    expect(shared, "a used CSR URL works once", r.status, 403);
    let token = actor.answer(Method::POST, tokens, None, None).await.json();
    let token_expired = tokio::time::Instant::now() + TOKEN_TTL + Duration::from_millis(500);

    // Certificates: another RE.
    let other = json!({"kind": "RemoteEnvironment", "metadata": {"name": "other"}, "spec": {"description": "another"}});
    actor
        .answer(
            Method::PUT,
            "http://ace:8081/v1/remoteenvironments/other",
            Some(&other),
            None,
        )
        .await;
    let r = actor
        .answer(
            Method::GET,
            "https://ace:8444/other/v1/metadata/services",
            None,
            Some(me),
        )
        .await;
    expect(
        shared,
        "a certificate for RE ec does not open RE other",
        r.status,
        403,
    );

    // Metadata.
    let service = json!({"provider": "sim", "name": "orders-api", "description": "Orders",
        "identifier": "orders-api",
        "api": {"targetUrl": "http://api:9100/api",
                "credentials": {"oauth": {"url": "http://api:9100/token",
                                          "clientId": "client", "clientSecret": "s3cr3t"}}}});
    let services = "https://ace:8444/ec/v1/metadata/services";
    let r = actor
        .answer(Method::POST, services, Some(&service), Some(me))
        .await;
    expect(shared, "a service is registered", r.status, 200);
    let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
    let r = actor
        .answer(Method::POST, services, Some(&service), Some(me))
        .await;
    expect(
        shared,
        "a second service with the same identifier is refused",
        r.status,
        409,
    );
    let r = actor
        .answer(Method::GET, &format!("{services}/{id}"), None, Some(me))
        .await;
    let oauth = &r.json()["api"]["credentials"]["oauth"];
    let shown = (&oauth["clientId"], &oauth["clientSecret"]);
    actor.note(format!(
        "contract: a service's OAuth credentials when read -> clientId {}, clientSecret {}",
        shown.0, shown.1
    ));
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
        let r = actor.answer(Method::PUT, &url, Some(&doc), None).await;
        if let Some(k) = r.json()["credentials"]["ACCESS_KEY"].as_str() {
            k.clone_into(&mut key);
        }
    }
    let call_proxy = || async {
        let r = actor
            .send_with(
                Method::GET,
                &format!("http://ace:8090/re-ec-{id}/orders"),
                &[("ace-binding-key", key.as_str())],
                None,
                None,
            )
            .await;
        expect(
            shared,
            "a call through the proxy",
            r.map_or(0, |r| r.status),
            200,
        );
    };
    call_proxy().await;
    let oauth_expired =
        tokio::time::Instant::now() + Duration::from_millis(OAUTH_EXPIRES_IN * 1000 + 500);

    // Events: an update with events owed.
    publish(actor, me, 0, EVENTS).await;
    let orders = &SUBSCRIPTIONS[0];
    let url = subscription_url(orders);
    // Nobody listens on 9002: the next events stay owed until the endpoint is changed back.
    actor
        .answer(
            Method::PUT,
            &url,
            Some(&subscription(orders, "http://sub-a:9002/")),
            None,
        )
        .await;
    publish(actor, me, 0, EVENTS + 1).await;
    publish(actor, me, 0, EVENTS + 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    actor
        .answer(
            Method::PUT,
            &url,
            Some(&subscription(orders, orders.endpoint)),
            None,
        )
        .await;
    actor.note("contract: subscription updated");
    wait_for_deliveries(shared, Duration::from_secs(30)).await;

    // The waits.
    tokio::time::sleep_until(token_expired).await;
    let expired = token["url"].as_str().unwrap_or_default();
    let r = actor
        .answer(Method::GET, expired, None, Some(anonymous))
        .await;
    expect(
        shared,
        "a configuration URL expires after its TTL",
        r.status,
        403,
    );
    tokio::time::sleep_until(oauth_expired).await;
    call_proxy().await;

    // Certificates: the RE deleted and created again (last: it revokes the certificate).
    actor
        .answer(
            Method::DELETE,
            "http://ace:8081/v1/remoteenvironments/ec",
            None,
            None,
        )
        .await;
    actor
        .answer(
            Method::PUT,
            "http://ace:8081/v1/remoteenvironments/ec",
            Some(&re_resource("ec")),
            None,
        )
        .await;
    let r = actor.answer(Method::GET, services, None, Some(me)).await;
    expect(
        shared,
        "a certificate of a deleted RE does not open the RE created again",
        r.status,
        403,
    );
}

/// The subject of RE `re`'s certificate.
fn subject(re: &str) -> Subject {
    ace_model::config::SubjectTemplate::default().subject_for(re)
}

/// A solution's registry calls under faults, every answer checked against the model: its
/// service registered (a lost answer may have registered it: then 409), listed, read,
/// updated; an invalid one refused; a second one registered and deleted, then gone; an
/// invalid event refused.
async fn registry(actor: &Actor, me: &tokio_rustls::TlsConnector, re: &str) {
    let services = format!("https://ace:8444/{re}/v1/metadata/services");
    let service = |identifier: &str, description: &str| {
        json!({"provider": "sim", "name": format!("{re} {identifier}"), "description": description,
               "identifier": identifier, "labels": {"re": re},
               "api": {"targetUrl": "http://api:9100/api",
                       "credentials": {"oauth": {"url": "http://api:9100/token",
                                                 "clientId": "client", "clientSecret": "s3cr3t"}}},
               "events": {"spec": {"asyncapi": "1.0.0", "topics": {"order.created.v1": {}}}}})
    };
    let create = |identifier: &str| {
        let body = service(identifier, "created");
        let call = Call::Create {
            identifier: identifier.to_owned(),
            body: body.to_string().into_bytes(),
        };
        (call, body)
    };
    let by_id = |identifier: &str| {
        let id = actor
            .mirror
            .as_ref()
            .and_then(|m| m.lock().ok()?.server_id(identifier).map(str::to_owned))
            .unwrap_or_default();
        format!("{services}/{id}")
    };
    let post = Method::POST;
    for identifier in ["events", "scratch"] {
        let (call, body) = create(identifier);
        actor
            .checked_until(&[200, 409], call, post.clone(), &services, Some(&body), me)
            .await;
    }
    // The list shows the ids a lost answer hid.
    actor
        .checked_until(&[200], Call::List, Method::GET, &services, None, me)
        .await;
    let invalid = json!({"name": "no provider", "description": "invalid", "events": {"spec": {}}});
    let call = Call::Create {
        identifier: String::new(),
        body: invalid.to_string().into_bytes(),
    };
    actor
        .checked_until(&[400], call, post.clone(), &services, Some(&invalid), me)
        .await;
    let updated = service("events", "updated");
    let call = Call::Update("events".into(), updated.to_string().into_bytes());
    let url = by_id("events");
    actor
        .checked_until(&[200], call, Method::PUT, &url, Some(&updated), me)
        .await;
    actor
        .checked_until(
            &[200],
            Call::Get("events".into()),
            Method::GET,
            &url,
            None,
            me,
        )
        .await;
    let url = by_id("scratch");
    let call = Call::Delete("scratch".into());
    actor
        .checked_until(&[204, 404], call, Method::DELETE, &url, None, me)
        .await;
    let call = Call::Get("scratch".into());
    actor
        .checked_until(&[404], call, Method::GET, &url, None, me)
        .await;
    let event =
        json!({"event-type-version": "v1", "event-time": "2018-10-16T15:00:00Z", "data": {}});
    let call = Call::Publish(event.to_string().into_bytes());
    let events = format!("https://ace:8444/{re}/v1/events");
    actor
        .checked_until(&[400], call, post, &events, Some(&event), me)
        .await;
}

/// Solution `index`: onboards to its RE, publishes [`EVENTS`] events, waits for their
/// deliveries; the first one then runs the contract phase.
async fn solution(
    actor: Actor,
    index: usize,
    ca_path: std::path::PathBuf,
    faults: Faults,
    seed: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let clock = sim_clock(epoch_of(seed));
    let re = RES[index];
    let tokens = format!("http://ace:8080/v1/remoteenvironments/{re}/tokens");
    actor
        .until(&[200], Method::GET, "http://ace:8081/healthz", None, None)
        .await;

    // Onboarding: token, info, CSR, certificate.
    let ca = std::fs::read_to_string(&ca_path)?;
    let roots = pki::certs_from_pem(&ca)?;
    let anonymous = client::tls_connector(
        &TlsOptions {
            roots: roots.clone(),
            ..TlsOptions::default()
        },
        clock,
    )?;
    // The seed decides the key, and Ed25519 signs deterministically: the certificate ACE
    // issues is the same, byte for byte, for the same seed.
    let key = pki::ed25519_from_seed(&seed_bytes(seed, 100 + index as u64))?;
    let csr = base64::engine::general_purpose::STANDARD.encode(pki::make_csr(&key, &subject(re))?);
    let mut linger = faults.token_expiry && index == 0;
    let mut first = true;
    let crt = loop {
        if !first {
            actor.shared.rare("onboarding-restarted");
        }
        first = false;
        // The RE may not exist yet (the operator creates it), and a fault can strike between
        // the steps: the flow starts again with a new token.
        let (token, _) = actor.until(&[201], Method::POST, &tokens, None, None).await;
        let Some(url) = token.json()["url"].as_str().map(str::to_owned) else {
            continue;
        };
        let Ok(info) = actor.send(Method::GET, &url, None, Some(&anonymous)).await else {
            continue;
        };
        let Some(csr_url) = info.json()["csrUrl"].as_str().map(str::to_owned) else {
            continue;
        };
        let lingered = std::mem::take(&mut linger);
        if lingered {
            actor.note("waits past the token's TTL before sending the CSR");
            tokio::time::sleep(TOKEN_TTL + Duration::from_millis(300)).await;
        }
        let r = actor
            .send(
                Method::POST,
                &csr_url,
                Some(&json!({ "csr": csr })),
                Some(&anonymous),
            )
            .await;
        match r {
            Ok(r) if lingered => {
                if r.status == 403 {
                    actor.shared.rare("token-expired-mid-onboarding");
                } else {
                    actor.shared.violation(format!(
                        "a CSR URL expires with its token: a CSR sent after the TTL was answered {}",
                        r.status
                    ));
                }
            }
            Ok(r) if r.status == 201 => break r.json(),
            _ => {}
        }
    };
    let chain = base64::engine::general_purpose::STANDARD
        .decode(crt["crt"].as_str().unwrap_or_default())?;
    let digest = ace_model::hex::lower(&<sha2::Sha256 as sha2::Digest>::digest(&chain)[..16]);
    let chain = pki::certs_from_pem(&String::from_utf8_lossy(&chain))?;
    let me = client::tls_connector(
        &TlsOptions {
            roots,
            identity: Some((chain, pki::key_from_pem(&key.serialize_pem())?)),
            insecure: false,
        },
        clock,
    )?;
    actor.note(format!("onboarded: certificate chain sha256 {digest}"));
    registry(&actor, &me, re).await;

    // Publishing, each event until it is answered 200 (the same event-id on a retry): the
    // first solution one at a time, the second in bursts of four at once.
    if index == 0 {
        for i in 0..EVENTS {
            publish(&actor, &me, index, i).await;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    } else {
        for i in (0..EVENTS).step_by(4) {
            tokio::join!(
                publish(&actor, &me, index, i),
                publish(&actor, &me, index, i + 1),
                publish(&actor, &me, index, i + 2),
                publish(&actor, &me, index, i + 3),
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Liveness: once the faults have healed, every delivery owed is made within a bound.
    sleep_until_elapsed(faults.healed_by()).await;
    wait_for_deliveries(&actor.shared, Duration::from_secs(60)).await;
    if index == 0 {
        contract_phase(&actor, &anonymous, &me, &csr).await;
    }
    if let Some(Ok(mirror)) = actor.mirror.as_ref().map(|m| m.lock()) {
        actor.note(format!(
            "{} answers equal the model's predictions (at most {} possible states at once)",
            mirror.compared, mirror.widest
        ));
        if mirror.widest > 1 {
            actor.shared.rare("model-states-forked");
        }
    }
    actor.note("done");
    Ok(())
}

/// A fault's action at its time.
#[derive(Clone, Debug)]
enum Action {
    Partition(&'static str, Option<bool>),
    Repair(&'static str, Option<bool>),
    Hold(&'static str),
    Release(&'static str),
    Loss(f64),
    Crash,
}

/// The timed actions of `faults`, in order.
fn schedule(faults: &Faults) -> Vec<(Duration, Action)> {
    let mut plan = Vec::new();
    if let Some(p) = &faults.partition {
        plan.push((p.at, Action::Partition(p.peer, p.oneway)));
        plan.push((p.at + p.len, Action::Repair(p.peer, p.oneway)));
    }
    if let Some(c) = &faults.clog {
        for (i, peer) in c.peers.iter().enumerate() {
            plan.push((c.at, Action::Hold(peer)));
            plan.push((
                c.at + c.len + Duration::from_millis(50 * i as u64),
                Action::Release(peer),
            ));
        }
    }
    if let Some(l) = &faults.loss {
        plan.push((l.at, Action::Loss(l.rate)));
        plan.push((l.at + l.len, Action::Loss(0.0)));
    }
    for at in &faults.crashes {
        plan.push((*at, Action::Crash));
    }
    plan.sort_by_key(|(at, _)| *at);
    plan
}

fn strike(sim: &mut turmoil::Sim<'_>, action: &Action) -> String {
    match *action {
        Action::Partition(peer, None) => {
            sim.partition("ace", peer);
            format!("partition ace | {peer}")
        }
        Action::Repair(peer, None) => {
            sim.repair("ace", peer);
            format!("repair ace | {peer}")
        }
        Action::Partition(peer, Some(from_ace)) | Action::Repair(peer, Some(from_ace)) => {
            let (from, to) = if from_ace {
                ("ace", peer)
            } else {
                (peer, "ace")
            };
            if matches!(action, Action::Partition(..)) {
                sim.partition_oneway(from, to);
                format!("partition: {from} -> {to} lost")
            } else {
                sim.repair_oneway(from, to);
                format!("repair {from} -> {to}")
            }
        }
        Action::Hold(peer) => {
            sim.hold("ace", peer);
            format!("clog ace | {peer}")
        }
        Action::Release(peer) => {
            sim.release("ace", peer);
            format!("release ace | {peer}")
        }
        Action::Loss(rate) => {
            sim.set_fail_rate(rate);
            if rate > 0.0 {
                format!("links break at random ({rate} per link-ms)")
            } else {
                "links stop breaking".to_owned()
            }
        }
        Action::Crash => {
            sim.bounce("ace");
            "crash and restart ace (memory lost)".to_owned()
        }
    }
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
    let disk_shared = shared.clone();
    let disk = SimDisk::new(
        seed,
        faults.sync_ms,
        faults.lose_unsynced,
        Arc::new(move |note| match note {
            DiskNote::Synced { events, .. } => {
                if events > 1 {
                    disk_shared.rare("group-commit");
                }
            }
            DiskNote::Lost(n) => {
                disk_shared.rare("unsynced-write-lost");
                disk_shared.note(
                    "ace",
                    format!("restart: an unsynced write of {n} records was lost"),
                );
            }
            DiskNote::Kept(n) => {
                disk_shared.rare("unsynced-write-kept");
                disk_shared.note(
                    "ace",
                    format!("restart: an unsynced write of {n} records survived"),
                );
            }
        }),
    );
    let unix_ms = epoch_of(seed);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(unix_ms))
        .simulation_duration(Duration::from_secs(300))
        .min_message_latency(Duration::from_millis(faults.latency_ms.0))
        .max_message_latency(Duration::from_millis(faults.latency_ms.1))
        .repair_rate(0.1)
        .build();

    sim.host("ace", move || {
        let (data, disk) = (data.clone(), disk.clone());
        async move {
            // After a crash the host starts again here: memory is gone, the disk is kept (with
            // the fate of its unsynced write), and the new process reads the clock again.
            let disk = disk.restart().map_err(|e| e.to_string())?;
            let mut opts = options(&data, seed);
            opts.bugs = bugs;
            let _server = ace_server::start_with_store(
                TurmoilNet,
                opts,
                sim_clock(unix_ms),
                seed.into(),
                disk,
            )
            .await
            .map_err(|e| e.to_string())?;
            std::future::pending::<()>().await;
            Ok(())
        }
    });
    for (i, (host, ports)) in [("sub-a", &[9000, 9001][..]), ("sub-b", &[9000][..])]
        .into_iter()
        .enumerate()
    {
        let shared = shared.clone();
        let misbehaviour = faults.subscribers[i];
        sim.host(host, move || {
            subscriber(shared.clone(), host, ports, misbehaviour)
        });
    }
    let api_shared = shared.clone();
    sim.host("api", move || api(api_shared.clone()));
    let actor = |name, mirror: Option<Mirror>| Actor {
        shared: shared.clone(),
        name,
        mirror: mirror.map(|m| Arc::new(Mutex::new(m))),
    };
    sim.client("operator", operator(actor("operator", None)));
    for (index, name) in ["solution-1", "solution-2"].into_iter().enumerate() {
        let mirror = Mirror::new(RES[index], "https://ace:8444");
        sim.client(
            name,
            solution(
                actor(name, Some(mirror)),
                index,
                ca_path.clone(),
                faults.clone(),
                seed,
            ),
        );
    }

    let plan = schedule(&faults);
    let mut next = 0;
    loop {
        let elapsed = sim.elapsed();
        while let Some((at, action)) = plan.get(next)
            && elapsed >= *at
        {
            let what = strike(&mut sim, action);
            shared.push(Entry {
                at: elapsed,
                host: "faults".into(),
                peer: None,
                what,
                kind: Kind::Fault,
            });
            next += 1;
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                // A world that does not finish (a host stuck or failed) is a broken
                // guarantee like any other, with its timeline.
                shared.violation(format!("liveness: the world did not finish: {e}"));
                break;
            }
        }
    }
    Ok(check(seed, faults, &shared))
}

/// The checks at the end of a run, and its report.
fn check(seed: u64, faults: Faults, shared: &Shared) -> Report {
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
    for (sub, id) in shared.owed() {
        if !received.contains_key(&(sub.clone(), id.clone())) {
            violations.push(format!(
                "at-least-once: event {id} was answered 200 but never reached subscription {sub}"
            ));
        }
    }
    let stray = shared.stray.lock().map(|s| s.clone()).unwrap_or_default();
    if !stray.is_empty() {
        violations.push(format!(
            "activation: {} pushes went to {:?}, whose namespace has no EventActivation for their source",
            stray.len(),
            stray.iter().collect::<BTreeSet<_>>()
        ));
    }
    violations.extend(
        shared
            .violations
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default(),
    );
    let in_flight = shared
        .in_flight
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    for sub in &SUBSCRIPTIONS {
        let max = in_flight.get(sub.name).map_or(0, |(_, max)| *max);
        if max > sub.max_inflight {
            violations.push(format!(
                "max_inflight: subscription {} had {max} pushes at its subscriber at once, its limit is {}",
                sub.name, sub.max_inflight
            ));
        }
    }
    let mut rare = shared.rare.lock().map(|r| r.clone()).unwrap_or_default();
    let duplicates: usize = received.values().map(|(n, _)| n.saturating_sub(1)).sum();
    if duplicates > 0 {
        rare.insert("duplicate-delivery", duplicates);
    }
    let after_crash = received
        .iter()
        .filter(|((_, id), (_, first))| {
            accepted.get(id).is_some_and(|a| {
                faults
                    .crashes
                    .iter()
                    .any(|crash| a.at < *crash && *crash < *first)
            })
        })
        .count();
    if after_crash > 0 {
        rare.insert("delivered-after-crash", after_crash);
    }
    let entries = shared.entries.lock().map(|t| t.clone()).unwrap_or_default();
    Report {
        seed,
        faults,
        entries,
        accepted: accepted.len(),
        duplicates,
        violations,
        exchanges: EXCHANGES.with(std::cell::Cell::get),
        rare,
    }
}
