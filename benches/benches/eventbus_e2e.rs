//! The Event Bus end to end on loopback: N publishers, each with one keep-alive mTLS
//! connection (client certificate from the real onboarding flow) to the gateway of `ace serve`
//! (redb store in a temporary directory, so every accepted event is fsynced), which pushes
//! every event to a local hyper subscriber answering 200.
//!
//! Each publisher sends `POST /{re}/v1/events` (a 120-byte event of type `order.created` v1)
//! and waits for its 200 before sending the next. An iteration is one event: the clock
//! stops once every publish of the measurement is acknowledged AND every subscription's
//! endpoint has received every event (a measurement whose deliveries do not all arrive within
//! `DRAIN_LIMIT` panics). Throughput is in events (`Throughput::Elements(1)` per iteration),
//! so it is the rate the whole path sustains, deliveries included.
//!
//! `ACE_BENCH_DATA_PARENT=/dev/shm` puts the server's data directory on a tmpfs, where an
//! fsync costs next to nothing; by default it is in the system's temporary directory.
//!
//! Scenarios: one subscription and 16 publishers; ten subscriptions (same source and event
//! type, each with its own path on the subscriber) and 16 publishers; one subscription and
//! 64 publishers. Each scenario has its own remote environment (and so its own client
//! certificate and subscriptions) on one server.
//!
//! Baselines, in the same run and with the same publisher counts: the same two HTTP hops
//! without ACE. The publishers connect the same way (TLS 1.3, ECDSA P-256 server certificate
//! from an rcgen CA, client certificates verified) to a trivial hyper forwarder, which POSTs
//! each body to the subscriber over a pooled HTTP client and answers 200 once the subscriber
//! has answered.
//!
//! Ceilings, in the same run: the same forwarder made durable and nothing else
//! (`ceiling_durable_forwarder_*`). It answers 200 once the body is in a log file, appended
//! by a group commit (every body waiting as one frame of ACE's own journal: one `pwrite` and
//! one `fdatasync` into a preallocated file), and pushes the body afterwards. It shows what
//! the durability ACE promises costs on this disk by itself, with no model, store format or
//! subscriptions; its runtime's threads are named `durable-fwd`.
//!
//! The server (or forwarder), the subscriber and the publishers each run on their own tokio
//! runtime; the runtime of the system under test has threads named `ace-server` (ACE's
//! driver has a thread of its own, `ace-driver`), `forwarder` or `durable-fwd`. After each
//! benchmark, to stderr: `latency <name>: p50=… p99=…` (publish request to response, over
//! every publish of the benchmark, warm-up included), `cpu <name>:` (CPU time per event of the
//! system under test and of the rest of the process, from `/proc/self`), `subscriber <name>:`
//! (connections the subscriber accepted), and for ACE `store <name>:` (records per group
//! commit, from `/metrics`).
//!
//! `ACE_BENCH_ROUNDS=R` replaces criterion's measurements with R paired rounds: every system
//! in turn for about a second each, round after round, with each ratio taken to the same
//! round's baseline and the median, lowest and highest ratio printed (`paired/mod.rs`), then
//! ACE's one-subscription rate as a share of the durable forwarder's, round by round.

mod common;
mod paired;

use common::{DRIVER_THREAD, cpu_times, now_ms, subject};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ace_client::Clock;
use ace_client::net::{Listener, Net, TokioNet};
use ace_client::{self as client, TlsOptions};
use ace_model::Timestamp;
use ace_model::connector::{IssuedCertificate, decode_csr_body};
use ace_model::rng::CertSerial;
use ace_server::pki::{self, Ca, KeyKind};
use ace_server::store::journal::Journal;
use ace_server::{ServeOptions, Server};
use base64::Engine as _;
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore};
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio_rustls::{TlsAcceptor, TlsConnector};

const TIMEOUT: Duration = Duration::from_secs(30);
/// How long the deliveries of one measurement may lag behind its last acknowledged publish.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// The published event (no `event-id`: the server makes one).
const EVENT: &[u8] = br#"{"event-type":"order.created","event-type-version":"v1","event-time":"2026-11-21T10:00:00Z","data":{"orderCode":"4caad296"}}"#;
/// Subscriber paths `/0` .. `/{PATHS - 1}`, each with its own counter.
const PATHS: usize = 32;
/// The subscriber path the forwarder posts to.
const FORWARD_PATH: usize = PATHS - 1;
/// The subscriber path the durable forwarder posts to.
const DURABLE_FORWARD_PATH: usize = PATHS - 2;
const ACE_THREADS: &str = "ace-server";
/// Where the server's data directory is created instead of the system's temporary directory
/// (e.g. a tmpfs, to see what the store's fsync costs).
const DATA_DIR_ENV: &str = "ACE_BENCH_DATA_PARENT";
const FORWARDER_THREADS: &str = "forwarder";
const DURABLE_THREADS: &str = "durable-fwd";
/// Size of the durable forwarder's preallocated log file (written round and round).
const DURABLE_LOG_BYTES: u64 = 64 << 20;

fn runtime(name: &str) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

// ---------------------------------------------------------------------------------------
// The subscriber.

/// Pushes received per path, and a wake-up for whoever waits for them.
#[derive(Default)]
struct Counts {
    paths: [AtomicU64; PATHS],
    /// Connections the subscriber accepted.
    connections: AtomicU64,
    arrived: Notify,
}

impl Counts {
    fn get(&self, path: usize) -> u64 {
        self.paths[path].load(Ordering::SeqCst)
    }

    /// Waits until every path in `paths` has `targets` pushes; panics with what is missing
    /// after `DRAIN_LIMIT`.
    async fn wait_for(&self, paths: &[usize], targets: &[u64]) {
        let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
        loop {
            let missing: u64 = paths
                .iter()
                .zip(targets)
                .map(|(&p, &t)| t.saturating_sub(self.get(p)))
                .sum();
            if missing == 0 {
                return;
            }
            let arrived = self.arrived.notified();
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                let got: Vec<u64> = paths.iter().map(|&p| self.get(p)).collect();
                panic!(
                    "{missing} deliveries missing {DRAIN_LIMIT:?} after the last acknowledged publish: paths {paths:?} have {got:?}, want {targets:?}"
                );
            }
        }
    }
}

/// A local subscriber on `127.0.0.1`: answers every `POST /{n}` with 200 after reading the
/// body, counting per `n`.
fn start_subscriber(rt: &Runtime, counts: Arc<Counts>) -> std::net::SocketAddr {
    let listener = rt
        .block_on(TokioNet.bind("127.0.0.1:0"))
        .expect("subscriber bind");
    let addr = Listener::local_addr(&listener).expect("addr");
    rt.spawn(async move {
        loop {
            let Ok((stream, _)) = Listener::accept(&listener).await else {
                return;
            };
            counts.connections.fetch_add(1, Ordering::SeqCst);
            let counts = counts.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let counts = counts.clone();
                    async move {
                        let path: usize = req.uri().path()[1..].parse().unwrap_or(0);
                        let _ = req.into_body().collect().await;
                        if let Some(c) = counts.paths.get(path) {
                            c.fetch_add(1, Ordering::SeqCst);
                        }
                        counts.arrived.notify_one();
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------
// The baseline forwarder, and the durable forwarder.

/// Group commit for the durable forwarder: a thread appends every body waiting as one frame
/// of ACE's own journal (one `pwrite` and one `fdatasync` into a preallocated file), starting
/// the journal again when it is full, and then releases their senders.
#[derive(Clone)]
struct GroupLog {
    tx: std::sync::mpsc::Sender<(Bytes, tokio::sync::oneshot::Sender<()>)>,
}

impl GroupLog {
    fn start(dir: &std::path::Path) -> GroupLog {
        let (mut journal, _) =
            Journal::open(&dir.join("log"), 1, 0, DURABLE_LOG_BYTES).expect("log file");
        let (tx, rx) = std::sync::mpsc::channel::<(Bytes, tokio::sync::oneshot::Sender<()>)>();
        std::thread::Builder::new()
            .name(format!("{DURABLE_THREADS}-log"))
            .spawn(move || {
                let (mut key, mut buf, mut waiting) = (0u64, Vec::new(), Vec::new());
                while let Ok(first) = rx.recv() {
                    waiting.push(first);
                    waiting.extend(rx.try_iter());
                    buf.clear();
                    for (body, _) in &waiting {
                        buf.extend_from_slice(&(body.len() as u32).to_le_bytes());
                        buf.extend_from_slice(body);
                    }
                    if !journal.fits(buf.len()) {
                        journal.restart(journal.generation() + 1);
                    }
                    let count = waiting.len() as u64;
                    journal.append(key, count, &buf).expect("log write");
                    key += count;
                    for (_, done) in waiting.drain(..) {
                        let _ = done.send(());
                    }
                }
            })
            .expect("log thread");
        GroupLog { tx }
    }

    /// Returns once `body` is durable.
    async fn append(&self, body: Bytes) {
        let (done, durable) = tokio::sync::oneshot::channel();
        self.tx.send((body, done)).expect("log thread");
        durable.await.expect("log thread");
    }
}

/// A TLS listener with client certificates (verified against `ca`, as the gateway does)
/// that forwards every request body to `target` and answers 200 once it has answered 2xx.
/// With a `log`, it answers 200 once the body is durable there instead, and forwards it
/// afterwards (as ACE acknowledges and then pushes).
fn start_forwarder(
    rt: &Runtime,
    ca: &Ca,
    target: String,
    log: Option<GroupLog>,
) -> std::net::SocketAddr {
    let now = Timestamp::from_unix_millis(now_ms());
    let key = pki::generate_key(KeyKind::EcdsaP256).expect("key");
    let cert_pem = ca
        .issue_server(&["localhost".into(), "127.0.0.1".into()], &key, now)
        .expect("server certificate");
    let mut chain = pki::certs_from_pem(&cert_pem).expect("chain");
    chain.push(ca.cert_der().clone());
    let key = pki::key_from_pem(&key.serialize_pem()).expect("key");
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).expect("root");
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), ace_client::provider())
            .build()
            .expect("verifier");
    let mut config = rustls::ServerConfig::builder_with_provider(ace_client::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .expect("server config");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let listener = rt
        .block_on(TokioNet.bind("127.0.0.1:0"))
        .expect("forwarder bind");
    let addr = Listener::local_addr(&listener).expect("addr");
    let target: Arc<str> = target.into();
    rt.spawn(async move {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let pool: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .build(http);
        loop {
            let Ok((tcp, _)) = Listener::accept(&listener).await else {
                return;
            };
            let (acceptor, pool, target) = (acceptor.clone(), pool.clone(), target.clone());
            let log = log.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (pool, target, log) = (pool.clone(), target.clone(), log.clone());
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let push = Request::post(&*target)
                            .header("content-type", "application/json")
                            .body(Full::new(body.clone()))
                            .expect("request");
                        if let Some(log) = log {
                            log.append(body).await;
                            tokio::spawn(async move {
                                let r = pool.request(push).await.expect("push");
                                assert!(r.status().is_success(), "push: {}", r.status());
                                let _ = r.into_body().collect().await;
                            });
                            return Ok(Response::new(Full::new(Bytes::new())));
                        }
                        let status = match pool.request(push).await {
                            Ok(r) if r.status().is_success() => {
                                let _ = r.into_body().collect().await;
                                StatusCode::OK
                            }
                            _ => StatusCode::BAD_GATEWAY,
                        };
                        let mut resp = Response::new(Full::new(Bytes::new()));
                        *resp.status_mut() = status;
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

/// A client certificate chain (certificate, CA) and key signed by `ca`.
fn client_identity(ca: &Ca) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = pki::generate_key(KeyKind::EcdsaP256).expect("key");
    let csr = pki::make_csr(&key, &subject("baseline")).expect("csr");
    let body = serde_json::json!({"csr": base64::engine::general_purpose::STANDARD.encode(csr)});
    let der = decode_csr_body(body.to_string().as_bytes()).expect("CSR");
    let now = Timestamp::from_unix_millis(now_ms());
    let issued = IssuedCertificate {
        serial: CertSerial::from_bytes(&[1]),
        re: "baseline".into(),
        incarnation: 1,
        subject: subject("baseline"),
        not_before: now,
        not_after: Timestamp::from_unix_millis(now.as_unix_millis() + 86_400_000),
    };
    let pem = ca.sign_client(&der, &issued).expect("sign");
    let mut chain = pki::certs_from_pem(&pem).expect("client certificate");
    chain.push(ca.cert_der().clone());
    (chain, pki::key_from_pem(&key.serialize_pem()).expect("key"))
}

/// A TLS client presenting `identity` and trusting `roots`.
fn connector(
    roots: &[CertificateDer<'static>],
    identity: &(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
) -> TlsConnector {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).expect("root");
    }
    let mut config = ClientConfig::builder_with_provider(ace_client::provider())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(store)
        .with_client_auth_cert(identity.0.clone(), identity.1.clone_key())
        .expect("client certificate");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}

// ---------------------------------------------------------------------------------------
// Publishers.

type Sender = SendRequest<Full<Bytes>>;

/// A keep-alive HTTP/1.1 connection over mTLS to `addr`, its driver spawned on the current
/// runtime.
async fn connect(tls: &TlsConnector, addr: std::net::SocketAddr) -> Sender {
    let tcp = TokioNet.connect(&addr.to_string()).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let stream = tls.connect(name, tcp).await.expect("handshake");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP handshake");
    tokio::spawn(conn);
    sender
}

/// What a benchmark publishes to.
#[derive(Clone)]
struct Case {
    name: &'static str,
    /// ACE's gateway or the forwarder.
    target: std::net::SocketAddr,
    tls: TlsConnector,
    /// The publish request's path.
    path: String,
    /// The subscriber paths every event must reach.
    paths: Vec<usize>,
    publishers: usize,
    /// Name of the system under test's runtime threads.
    threads: &'static str,
}

impl Case {
    /// Prefixes of the system under test's thread names: its runtime's, and ACE's driver.
    fn system_threads(&self) -> Vec<&'static str> {
        if self.threads == ACE_THREADS {
            vec![ACE_THREADS, DRIVER_THREAD]
        } else {
            vec![self.threads]
        }
    }
}

/// One system under test with its publishers' connections, and everything measured.
struct Scenario {
    case: Case,
    senders: Mutex<Vec<Sender>>,
    /// Publish latencies, µs.
    latencies: Mutex<Vec<u32>>,
    /// Events, CPU time of the system under test and of the whole process.
    cpu: Mutex<(u64, Duration, Duration)>,
    /// Wall time of the publishing alone and of the whole measurements (drain included).
    publish_wall: Mutex<(Duration, Duration)>,
}

impl Scenario {
    fn new(rt: &Runtime, case: Case) -> Scenario {
        let senders = rt.block_on(async {
            let mut v = Vec::with_capacity(case.publishers);
            for _ in 0..case.publishers {
                v.push(connect(&case.tls, case.target).await);
            }
            v
        });
        Scenario {
            case,
            senders: Mutex::new(senders),
            latencies: Mutex::default(),
            cpu: Mutex::default(),
            publish_wall: Mutex::default(),
        }
    }

    /// Publishes `n` events over the publishers' connections and waits until the
    /// subscriber has them all; returns the wall time.
    fn run(&self, rt: &Runtime, counts: &Arc<Counts>, n: u64) -> Duration {
        let mut senders = std::mem::take(&mut *self.senders.lock().expect("lock"));
        // Connections the server closed meanwhile (idle limit) are opened again untimed.
        rt.block_on(async {
            for s in &mut senders {
                if s.is_closed() {
                    *s = connect(&self.case.tls, self.case.target).await;
                }
            }
        });
        let targets: Vec<u64> = self.case.paths.iter().map(|&p| counts.get(p) + n).collect();
        let (cpu_before, process_before) = cpu_times(&self.case.system_threads());
        let next = Arc::new(AtomicUsize::new(0));
        let (wall, publish_wall, returned) = rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = senders
                .into_iter()
                .map(|mut sender| {
                    let next = next.clone();
                    let uri = self.case.path.clone();
                    tokio::spawn(async move {
                        let mut lat = Vec::new();
                        while next.fetch_add(1, Ordering::Relaxed) < n as usize {
                            let req = Request::post(uri.as_str())
                                .header("host", "localhost")
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from_static(EVENT)))
                                .expect("request");
                            let sent = Instant::now();
                            sender.ready().await.expect("connection");
                            let resp = sender.send_request(req).await.expect("publish");
                            let status = resp.status();
                            let body = resp.into_body().collect().await.expect("body");
                            assert_eq!(status, 200, "publish: {:?}", body.to_bytes());
                            lat.push(sent.elapsed().as_micros() as u32);
                        }
                        (sender, lat)
                    })
                })
                .collect();
            let mut returned = Vec::with_capacity(tasks.len());
            for t in tasks {
                returned.push(t.await.expect("publisher"));
            }
            let published = start.elapsed();
            counts.wait_for(&self.case.paths, &targets).await;
            (start.elapsed(), published, returned)
        });
        let (cpu_after, process_after) = cpu_times(&self.case.system_threads());
        let mut all = self.latencies.lock().expect("lock");
        let mut senders = self.senders.lock().expect("lock");
        for (s, lat) in returned {
            senders.push(s);
            all.extend(lat);
        }
        let mut cpu = self.cpu.lock().expect("lock");
        cpu.0 += n;
        cpu.1 += cpu_after.saturating_sub(cpu_before);
        cpu.2 += process_after.saturating_sub(process_before);
        let mut w = self.publish_wall.lock().expect("lock");
        w.0 += publish_wall;
        w.1 += wall;
        wall
    }

    /// Prints latency percentiles, CPU per event and how long the deliveries lagged.
    fn report(&self) {
        let name = self.case.name;
        let mut lat = std::mem::take(&mut *self.latencies.lock().expect("lock"));
        if lat.is_empty() {
            return;
        }
        lat.sort_unstable();
        let pct = |p: f64| lat[((lat.len() - 1) as f64 * p).round() as usize];
        eprintln!(
            "latency {name}: p50={} µs p99={} µs max={} µs over {} publishes",
            pct(0.50),
            pct(0.99),
            pct(1.0),
            lat.len()
        );
        let (n, cpu, process) = *self.cpu.lock().expect("lock");
        let (published, wall) = *self.publish_wall.lock().expect("lock");
        if n >= 1000 && !cpu.is_zero() {
            let per = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
            eprintln!(
                "cpu {name}: {} {:.1} µs per event, rest of the process {:.1} µs, over {n} events; publishing took {:.1} % of the measured time, waiting for the last deliveries the rest",
                self.case.system_threads().join(" and "),
                per(cpu),
                per(process.saturating_sub(cpu)),
                published.as_secs_f64() / wall.as_secs_f64() * 100.0,
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// ACE.

/// The store's group commits, from `/metrics`.
fn store_counters(rt: &Runtime, admin: std::net::SocketAddr) -> (f64, f64, f64) {
    let url = format!("http://{admin}/metrics");
    let text = rt.block_on(async {
        client::request(&TokioNet, Method::GET, &url, &[], None, None, TIMEOUT)
            .await
            .expect("metrics")
            .text()
    });
    let value = |name: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .filter_map(|v| v.trim().parse::<f64>().ok())
            .next()
            .unwrap_or(0.0)
    };
    (
        value("ace_store_syncs_total"),
        value("ace_records_appended_total"),
        value("ace_store_sync_seconds_sum"),
    )
}

struct Ace {
    server: Server,
    anonymous: TlsConnector,
    roots: Vec<CertificateDer<'static>>,
    _rt: Runtime,
    _dir: tempfile::TempDir,
}

impl Ace {
    fn start() -> Ace {
        let rt = runtime(ACE_THREADS);
        let dir = match std::env::var_os(DATA_DIR_ENV) {
            Some(parent) => tempfile::tempdir_in(parent),
            None => tempfile::tempdir(),
        }
        .expect("tempdir");
        // The subscribers and API targets are on loopback and the admin API is called
        // without a token: both opened knowingly, for a benchmark on one machine.
        let mut opts = ServeOptions::loopback(dir.path());
        opts.egress.allow_private = true;
        opts.admin_auth = ace_server::options::AdminAuth::Off;
        let server = rt
            .block_on(ace_server::start(
                TokioNet,
                opts,
                Clock::new(now_ms()),
                7.into(),
            ))
            .expect("server start");
        let roots = pki::certs_from_pem(&server.ca_pem).expect("CA");
        let anonymous = client::tls_connector(
            &TlsOptions {
                roots: roots.clone(),
                ..TlsOptions::default()
            },
            Clock::from_system_time(),
        )
        .expect("connector");
        Ace {
            server,
            anonymous,
            roots,
            _rt: rt,
            _dir: dir,
        }
    }

    async fn send(&self, method: Method, url: &str, body: serde_json::Value) -> serde_json::Value {
        let r = client::request(
            &TokioNet,
            method,
            url,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
            Some(&self.anonymous),
            TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
        assert!(r.status < 300, "{url}: {} {}", r.status, r.text());
        r.json()
    }

    /// Remote environment `re`, activated in namespace `bench`, with one subscription per
    /// subscriber path in `paths`; returns a TLS client holding a certificate for `re`
    /// obtained through token → info → client-certs.
    async fn prepare(
        &self,
        re: &str,
        subscriber: std::net::SocketAddr,
        paths: &[usize],
    ) -> TlsConnector {
        let admin = self.server.admin;
        let doc = serde_json::json!({"apiVersion": "applicationconnector.kyma-project.io/v1alpha1", "kind": "RemoteEnvironment", "metadata": {"name": re}, "spec": {"description": "bench"}});
        self.send(
            Method::PUT,
            &format!("http://{admin}/v1/remoteenvironments/{re}"),
            doc,
        )
        .await;
        let doc = serde_json::json!({"kind": "EventActivation", "metadata": {"name": re, "namespace": "bench"}, "spec": {"sourceId": re, "displayName": re}});
        self.send(
            Method::PUT,
            &format!("http://{admin}/v1/namespaces/bench/eventactivations/{re}"),
            doc,
        )
        .await;
        for p in paths {
            let name = format!("{re}-{p}");
            let doc = serde_json::json!({"kind": "Subscription", "metadata": {"name": name, "namespace": "bench"}, "spec": {
                "endpoint": format!("http://{subscriber}/{p}"), "include_subscription_name_header": true, "max_inflight": 400,
                "push_request_timeout_ms": 5000, "event_type": "order.created", "event_type_version": "v1", "source_id": re}});
            self.send(
                Method::PUT,
                &format!("http://{admin}/v1/namespaces/bench/subscriptions/{name}"),
                doc,
            )
            .await;
        }
        // Onboarding.
        let internal = self.server.connector_internal;
        let token = self
            .send(
                Method::POST,
                &format!("http://{internal}/v1/remoteenvironments/{re}/tokens"),
                serde_json::json!({}),
            )
            .await["token"]
            .as_str()
            .expect("token")
            .to_owned();
        let external = self.server.connector_external.port();
        let info = client::request(
            &TokioNet,
            Method::GET,
            &format!("https://127.0.0.1:{external}/v1/remoteenvironments/{re}/info?token={token}"),
            &[],
            None,
            Some(&self.anonymous),
            TIMEOUT,
        )
        .await
        .expect("info")
        .json();
        let csr_url = info["csrUrl"]
            .as_str()
            .expect("csrUrl")
            .replace("https://localhost:", "https://127.0.0.1:");
        let key = pki::generate_key(KeyKind::EcdsaP256).expect("key");
        let csr = pki::make_csr(&key, &subject(re)).expect("csr");
        let body =
            serde_json::json!({"csr": base64::engine::general_purpose::STANDARD.encode(csr)});
        let reply = self.send(Method::POST, &csr_url, body).await;
        let crt = base64::engine::general_purpose::STANDARD
            .decode(reply["crt"].as_str().expect("crt"))
            .expect("base64");
        let chain = pki::certs_from_pem(&String::from_utf8(crt).expect("PEM")).expect("chain");
        let key = pki::key_from_pem(&key.serialize_pem()).expect("key");
        connector(&self.roots, &(chain, key))
    }
}

// ---------------------------------------------------------------------------------------

fn eventbus_e2e(c: &mut Criterion) {
    let clients = runtime("bench-client");
    let subscriber_rt = runtime("subscriber");
    let counts = Arc::new(Counts::default());
    let subscriber = start_subscriber(&subscriber_rt, counts.clone());

    // The baseline: a forwarder with its own CA.
    let forwarder_rt = runtime(FORWARDER_THREADS);
    let ca = Ca::generate(
        pki::generate_key(KeyKind::EcdsaP256).expect("key"),
        Timestamp::from_unix_millis(now_ms()),
    )
    .expect("CA");
    let forwarder = start_forwarder(
        &forwarder_rt,
        &ca,
        format!("http://{subscriber}/{FORWARD_PATH}"),
        None,
    );
    // The ceiling for a durable server: the forwarder, answering once each body is durable.
    let durable_rt = runtime(DURABLE_THREADS);
    let durable_dir = match std::env::var_os(DATA_DIR_ENV) {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .expect("tempdir");
    let durable = start_forwarder(
        &durable_rt,
        &ca,
        format!("http://{subscriber}/{DURABLE_FORWARD_PATH}"),
        Some(GroupLog::start(durable_dir.path())),
    );
    let baseline_tls = connector(&[ca.cert_der().clone()], &client_identity(&ca));

    let ace = Ace::start();
    let one = clients.block_on(ace.prepare("bench-one", subscriber, &[0]));
    let ten_paths: Vec<usize> = (1..=10).collect();
    let ten = clients.block_on(ace.prepare("bench-ten", subscriber, &ten_paths));

    let mut group = c.benchmark_group("eventbus_e2e");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);

    let ace_case = |name, tls: &TlsConnector, re: &str, paths: &[usize], publishers| Case {
        name,
        target: ace.server.gateway,
        tls: tls.clone(),
        path: format!("/{re}/v1/events"),
        paths: paths.to_vec(),
        publishers,
        threads: ACE_THREADS,
    };
    // The two forwarders, told apart by address, subscriber path and thread names.
    let forwarder_case = |name, durable_one: bool, publishers| Case {
        name,
        target: if durable_one { durable } else { forwarder },
        tls: baseline_tls.clone(),
        path: "/v1/events".into(),
        paths: vec![if durable_one {
            DURABLE_FORWARD_PATH
        } else {
            FORWARD_PATH
        }],
        publishers,
        threads: if durable_one {
            DURABLE_THREADS
        } else {
            FORWARDER_THREADS
        },
    };
    let baseline_case = |name, publishers| forwarder_case(name, false, publishers);
    let durable_case = |name, publishers| forwarder_case(name, true, publishers);
    let cases = [
        baseline_case("baseline_forwarder_16_publishers", 16),
        durable_case("ceiling_durable_forwarder_16_publishers", 16),
        ace_case(
            "ace_1_subscription_16_publishers",
            &one,
            "bench-one",
            &[0],
            16,
        ),
        ace_case(
            "ace_10_subscriptions_16_publishers",
            &ten,
            "bench-ten",
            &ten_paths,
            16,
        ),
        baseline_case("baseline_forwarder_64_publishers", 64),
        durable_case("ceiling_durable_forwarder_64_publishers", 64),
        ace_case(
            "ace_1_subscription_64_publishers",
            &one,
            "bench-one",
            &[0],
            64,
        ),
    ];
    if let Some(rounds) = paired::rounds() {
        // Interleaved rounds instead of criterion, per publisher count (baseline first).
        for publishers in [16, 64] {
            let scenarios: Vec<Scenario> = cases
                .iter()
                .filter(|c| c.publishers == publishers)
                .map(|c| Scenario::new(&clients, c.clone()))
                .collect();
            let mut systems: Vec<paired::System<'_>> = scenarios
                .iter()
                .map(|s| paired::System {
                    name: s.case.name,
                    run: Box::new(|n| s.run(&clients, &counts, n)),
                })
                .collect();
            let label = format!("{publishers}_publishers");
            let rates = paired::run(&label, rounds, &mut systems, 0.5);
            // The issue's yardstick: ACE against the same work made durable and nothing else.
            let names: Vec<&str> = scenarios.iter().map(|s| s.case.name).collect();
            paired::print_ratio(
                &label,
                &names,
                &rates,
                &format!("ace_1_subscription_{publishers}_publishers"),
                &format!("ceiling_durable_forwarder_{publishers}_publishers"),
                0.9,
            );
            for s in &scenarios {
                s.report();
            }
        }
        drop(ace);
        return;
    }
    for case in cases {
        let (name, is_ace) = (case.name, case.threads == ACE_THREADS);
        let scenario = Scenario::new(&clients, case);
        let connections = counts.connections.load(Ordering::SeqCst);
        let store_before = is_ace.then(|| store_counters(&clients, ace.server.admin));
        group.bench_function(name, |b| {
            b.iter_custom(|n| scenario.run(&clients, &counts, n));
        });
        scenario.report();
        eprintln!(
            "subscriber {name}: {} connections opened to it",
            counts.connections.load(Ordering::SeqCst) - connections
        );
        if let Some((syncs, records, secs)) = store_before {
            let (s, r, t) = store_counters(&clients, ace.server.admin);
            let (syncs, records, secs) = (s - syncs, r - records, t - secs);
            if records >= 1000.0 {
                let (_, measured) = *scenario.publish_wall.lock().expect("lock");
                eprintln!(
                    "store {name}: {syncs:.0} commits of {:.1} records on average, {:.2} ms each (append and sync); committing {:.0} % of the measured time",
                    records / syncs,
                    secs / syncs * 1e3,
                    secs / measured.as_secs_f64() * 100.0
                );
            }
        }
    }
    group.finish();
    drop(ace);
}

criterion_group!(benches, eventbus_e2e);
criterion_main!(benches);
