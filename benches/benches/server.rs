//! The real server (`ace serve` on loopback, ECDSA P-256 CA and server key, redb store in a
//! temporary directory), driven over TCP by clients in the same process.
//!
//! Group `server_mtls`: TLS 1.3 handshakes with a client certificate obtained through the real
//! onboarding flow, against the gateway listener. "full" uses a client configuration with
//! resumption disabled, so every iteration is a full handshake; "resumed" keeps the client's
//! session store across iterations, and setup and every iteration assert that they resume.
//! Each iteration opens a TCP connection and does the handshake; the `_handshake` variants then
//! close (close_notify) and read to the server's end of the connection, so the server has
//! verified the client's certificate and `Finished` before the iteration ends; the
//! `_get_services` variants send one `GET /{re}/v1/metadata/services` (`Connection: close`)
//! instead and read the whole response. Baseline: a plain TCP connection and one HTTP/1.1
//! request to the admin listener's `/healthz`.
//!
//! Group `server_certificates`: client certificates issued through the HTTP API with CSRs
//! prepared up front, 16 concurrent clients so the store's group commit can batch the durable
//! writes; each client has its own remote environment (`bench-*`), as an RE has one live token
//! at a time. "onboarding" is `POST tokens` (internal API) → `GET info?token=` → `POST
//! client-certs` (external API, HTTPS); "client_certs_only" does the token and info calls before
//! the clock starts and times only `POST client-certs`. Baseline: the server's own work per
//! certificate in-process (decode the body, parse and verify the CSR, sign the certificate).
//!
//! Throughput is in handshakes or certificates (`Throughput::Elements(1)` per iteration).
//! Clients and server share the machine: the server runs on its own runtime (threads
//! `ace-server`), the clients on another (`bench-client`). After each benchmark that ran at
//! least 1,000 elements, the CPU time per element of the server threads and of the rest of the
//! process (from `/proc/self`, warm-up included) is printed to stderr as `cpu <name>: ...`,
//! with the rate the server's share makes per core; the issuance benchmarks also print the
//! store's group commits (`store <name>: ...`, from `/metrics`).

mod common;

use common::{DRIVER_THREAD, cpu_times, now_ms, subject};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ace_client::Clock;
use ace_client::net::{Net, TokioNet};
use ace_client::{self as client, TlsOptions};
use ace_model::Timestamp;
use ace_model::connector::{IssuedCertificate, decode_csr_body};
use ace_model::rng::CertSerial;
use ace_server::pki::{self, Ca, KeyKind};
use ace_server::{ServeOptions, Server};
use base64::Engine as _;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hyper::Method;
use rustls::client::Resumption;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, HandshakeKind, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;
use tokio_rustls::TlsConnector;

/// The remote environment the gateway client onboards to (and the baseline's CSR subject).
const RE: &str = "ec-default";
/// Concurrent clients in the `_16_concurrent` variants.
const CONCURRENCY: usize = 16;
/// Distinct prepared CSRs (each with its own key) the in-process baseline signs round robin.
const PREPARED_CSRS: usize = 64;
const TIMEOUT: Duration = Duration::from_secs(30);
/// Name of the server runtime's threads (workers and blocking pool); the driver has a thread
/// of its own ([`DRIVER_THREAD`]).
const SERVER_THREADS: &str = "ace-server";

/// CPU time per element over all of a benchmark's timed runs (warm-up included): the
/// server's threads, and the rest of the process (the clients).
#[derive(Debug, Default)]
struct ServerCpu {
    server: std::cell::Cell<Duration>,
    process: std::cell::Cell<Duration>,
    elements: std::cell::Cell<u64>,
}

impl ServerCpu {
    /// Runs `timed` (which does `n` elements), adding the CPU time used meanwhile.
    fn measure(&self, n: u64, timed: impl FnOnce() -> Duration) -> Duration {
        let (server, process) = cpu_times(&[SERVER_THREADS, DRIVER_THREAD]);
        let wall = timed();
        let (server_after, process_after) = cpu_times(&[SERVER_THREADS, DRIVER_THREAD]);
        self.server
            .set(self.server.get() + server_after.saturating_sub(server));
        self.process
            .set(self.process.get() + process_after.saturating_sub(process));
        self.elements.set(self.elements.get() + n);
        wall
    }

    /// Prints the server's CPU time per element, the rate that makes per core, and the
    /// clients' CPU time per element.
    fn report(&self, name: &str) {
        let n = self.elements.get();
        if n < 1000 || self.server.get().is_zero() {
            return;
        }
        let n32 = u32::try_from(n).unwrap_or(u32::MAX);
        let server = self.server.get() / n32;
        let clients = self.process.get().saturating_sub(self.server.get()) / n32;
        eprintln!(
            "cpu {name}: server {:.0} µs per element ({:.0}/s per core), clients {:.0} µs, over {n}",
            server.as_secs_f64() * 1e6,
            1.0 / server.as_secs_f64(),
            clients.as_secs_f64() * 1e6,
        );
    }
}

/// A `client-certs` body for `re` and a fresh ECDSA P-256 key, and the key.
fn csr_body(re: &str) -> (Vec<u8>, rcgen::KeyPair) {
    let key = pki::generate_key(KeyKind::EcdsaP256).expect("key");
    let csr = pki::make_csr(&key, &subject(re)).expect("csr");
    let body = serde_json::json!({"csr": base64::engine::general_purpose::STANDARD.encode(csr)})
        .to_string()
        .into_bytes();
    (body, key)
}

/// The store's group commits so far, from the admin listener's `/metrics`.
#[derive(Clone, Copy, Debug, Default)]
struct StoreStats {
    syncs: f64,
    records: f64,
    sync_seconds: f64,
    /// Wall time of the timed runs these were counted in.
    wall: Duration,
}

impl StoreStats {
    fn parse(text: &str) -> StoreStats {
        let value = |name: &str| {
            text.lines()
                .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .filter_map(|v| v.trim().parse::<f64>().ok())
                .next()
                .unwrap_or(0.0)
        };
        StoreStats {
            syncs: value("ace_store_syncs_total"),
            records: value("ace_records_appended_total"),
            sync_seconds: value("ace_store_sync_seconds_sum"),
            wall: Duration::ZERO,
        }
    }

    /// Adds the commits between `before` and `after`, made during `wall`.
    fn add(&mut self, before: StoreStats, after: StoreStats, wall: Duration) {
        self.syncs += after.syncs - before.syncs;
        self.records += after.records - before.records;
        self.sync_seconds += after.sync_seconds - before.sync_seconds;
        self.wall += wall;
    }

    /// Prints records per commit, time per commit and the share of the time spent committing.
    fn report(&self, name: &str) {
        if self.records < 1000.0 || self.wall.is_zero() {
            return;
        }
        eprintln!(
            "store {name}: {:.0} commits of {:.1} records on average, {:.2} ms each (append and sync); committing {:.0} % of the time",
            self.syncs,
            self.records / self.syncs,
            self.sync_seconds / self.syncs * 1e3,
            self.sync_seconds / self.wall.as_secs_f64() * 100.0
        );
    }
}

/// A multi-thread runtime (one worker per core) with the server running on it.
struct Fixture {
    server: Server,
    roots: Vec<CertificateDer<'static>>,
    anonymous: TlsConnector,
    /// The clients' runtime (threads `bench-client`).
    rt: Runtime,
    /// The server's runtime (threads `ace-server`, so its CPU time can be told apart).
    _server_rt: Runtime,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Fixture {
        let runtime = |name: &str| {
            tokio::runtime::Builder::new_multi_thread()
                .thread_name(name)
                .enable_all()
                .build()
                .expect("runtime")
        };
        let (rt, server_rt) = (runtime("bench-client"), runtime(SERVER_THREADS));
        let dir = tempfile::tempdir().expect("tempdir");
        // The subscribers and API targets are on loopback and the admin API is called
        // without a token: both opened knowingly, for a benchmark on one machine.
        let mut opts = ServeOptions::loopback(dir.path());
        opts.egress.allow_private = true;
        opts.admin_auth = ace_server::options::AdminAuth::Off;
        let server = server_rt
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
        let fixture = Fixture {
            server,
            roots,
            anonymous,
            rt,
            _server_rt: server_rt,
            _dir: dir,
        };
        fixture.rt.block_on(fixture.apply_re(RE));
        fixture
    }

    /// Creates remote environment `name` through the admin API.
    async fn apply_re(&self, name: &str) {
        let doc = serde_json::json!({"apiVersion": "applicationconnector.kyma-project.io/v1alpha1", "kind": "RemoteEnvironment", "metadata": {"name": name}, "spec": {"description": "bench"}});
        let url = format!("http://{}/v1/remoteenvironments/{name}", self.server.admin);
        let (status, _) = send(
            &self.anonymous,
            Method::PUT,
            &url,
            Some(doc.to_string().into_bytes()),
        )
        .await;
        assert!(status < 300, "PUT {url}: {status}");
    }

    /// The store's commit counters now.
    fn store_stats(&self) -> StoreStats {
        let url = format!("http://{}/metrics", self.server.admin);
        let text = self.rt.block_on(async {
            client::request(&TokioNet, Method::GET, &url, &[], None, None, TIMEOUT)
                .await
                .expect("metrics")
                .text()
        });
        StoreStats::parse(&text)
    }

    /// Runs `timed`, adding the store's commits meanwhile to `stats`.
    fn with_store_stats(
        &self,
        stats: &std::cell::Cell<StoreStats>,
        timed: impl FnOnce() -> Duration,
    ) -> Duration {
        let before = self.store_stats();
        let wall = timed();
        let mut sum = stats.get();
        sum.add(before, self.store_stats(), wall);
        stats.set(sum);
        wall
    }

    /// `pool` with at least `n` remote environments, each with a prepared `client-certs`
    /// body; the new ones are created concurrently.
    fn grow(self: &Arc<Self>, pool: &mut Arc<Vec<(String, Vec<u8>)>>, n: usize) {
        let have = pool.len();
        if have >= n {
            return;
        }
        let names: Arc<Vec<String>> = Arc::new((have..n).map(|i| format!("bench-{i}")).collect());
        let (fx, created) = (self.clone(), names.clone());
        self.concurrent((n - have) as u64, move |_, i| {
            let (fx, created) = (fx.clone(), created.clone());
            async move { fx.apply_re(&created[i]).await }
        });
        let mut grown = pool.as_ref().clone();
        grown.extend(names.iter().map(|re| (re.clone(), csr_body(re).0)));
        *pool = Arc::new(grown);
    }

    fn internal(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.connector_internal)
    }

    fn external(&self, path: &str) -> String {
        format!(
            "https://127.0.0.1:{}{path}",
            self.server.connector_external.port()
        )
    }

    /// Token and info for `re` (which has one live token at a time): the `csrUrl` to post a
    /// CSR to.
    async fn csr_url(&self, re: &str) -> String {
        let (status, body) = send(
            &self.anonymous,
            Method::POST,
            &self.internal(&format!("/v1/remoteenvironments/{re}/tokens")),
            None,
        )
        .await;
        assert_eq!(status, 201, "tokens");
        let token = body["token"].as_str().expect("token").to_owned();
        let (status, info) = send(
            &self.anonymous,
            Method::GET,
            &self.external(&format!("/v1/remoteenvironments/{re}/info?token={token}")),
            None,
        )
        .await;
        assert_eq!(status, 200, "info");
        // The same listener by address: no name lookup on the client side.
        info["csrUrl"]
            .as_str()
            .expect("csrUrl")
            .replace("https://localhost:", "https://127.0.0.1:")
    }

    /// `POST client-certs`; returns the `{"crt": ...}` reply.
    async fn client_certs(&self, csr_url: &str, body: &[u8]) -> serde_json::Value {
        let (status, reply) =
            send(&self.anonymous, Method::POST, csr_url, Some(body.to_vec())).await;
        assert_eq!(status, 201, "client-certs: {reply}");
        reply
    }

    /// A client certificate chain and key for `RE`, through the whole onboarding flow.
    fn onboard(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let (body, key) = csr_body(RE);
        let reply = self.rt.block_on(async {
            let url = self.csr_url(RE).await;
            self.client_certs(&url, &body).await
        });
        let crt = base64::engine::general_purpose::STANDARD
            .decode(reply["crt"].as_str().expect("crt"))
            .expect("base64");
        let chain = pki::certs_from_pem(&String::from_utf8(crt).expect("PEM")).expect("chain");
        let key = pki::key_from_pem(&key.serialize_pem()).expect("key");
        (chain, key)
    }

    /// A client configuration presenting `identity`, with or without resumption.
    fn client_config(
        &self,
        identity: &(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
        resumption: bool,
    ) -> TlsConnector {
        let mut roots = RootCertStore::empty();
        for r in &self.roots {
            roots.add(r.clone()).expect("root");
        }
        let mut config = ClientConfig::builder_with_provider(ace_client::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_client_auth_cert(identity.0.clone(), identity.1.clone_key())
            .expect("client certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if !resumption {
            config.resumption = Resumption::disabled();
        }
        TlsConnector::from(Arc::new(config))
    }

    /// Runs `op(task, i)` for `i` in `0..n` on `CONCURRENCY` tasks; returns the wall time.
    fn concurrent<F, Fut>(&self, n: u64, op: F) -> Duration
    where
        F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let op = Arc::new(op);
        let next = Arc::new(AtomicUsize::new(0));
        let n = n as usize;
        self.rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = (0..CONCURRENCY)
                .map(|task| {
                    let (op, next) = (op.clone(), next.clone());
                    tokio::spawn(async move {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= n {
                                break;
                            }
                            op(task, i).await;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("task");
            }
            start.elapsed()
        })
    }
}

/// One request through the crate's client; status and JSON body.
async fn send(
    tls: &TlsConnector,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
) -> (u16, serde_json::Value) {
    let headers: &[(&str, &str)] = if body.is_some() {
        &[("content-type", "application/json")]
    } else {
        &[]
    };
    let r = client::request(&TokioNet, method, url, headers, body, Some(tls), TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    (r.status, r.json())
}

/// Reads to the end of the stream; a peer that closes without close_notify counts as an end.
async fn read_to_end<R: tokio::io::AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) {
    match r.read_to_end(buf).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("read: {e}"),
    }
}

/// One mTLS connection to the gateway: the handshake and then either a close or one request
/// (`Connection: close`). Returns how the handshake went.
async fn gateway_connection(
    tls: &TlsConnector,
    gateway: &str,
    request: Option<&[u8]>,
) -> Option<HandshakeKind> {
    let tcp = TokioNet.connect(gateway).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut stream = tls.connect(name, tcp).await.expect("handshake");
    let kind = stream.get_ref().1.handshake_kind();
    let mut buf = Vec::with_capacity(512);
    match request {
        None => {
            // close_notify; the server answers with its own close once it has verified our
            // Finished, and the session tickets arrive on the way.
            stream.shutdown().await.expect("close");
            read_to_end(&mut stream, &mut buf).await;
        }
        Some(req) => {
            stream.write_all(req).await.expect("write");
            read_to_end(&mut stream, &mut buf).await;
            assert!(
                buf.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&buf)
            );
        }
    }
    kind
}

/// One plain TCP connection and `GET /healthz` to the admin listener.
async fn plain_healthz(admin: &str) {
    let mut tcp = TokioNet.connect(admin).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = Vec::with_capacity(256);
    read_to_end(&mut tcp, &mut buf).await;
    assert!(buf.starts_with(b"HTTP/1.1 200"));
}

fn mtls(c: &mut Criterion) {
    let f = Arc::new(Fixture::start());
    let identity = f.onboard();
    let full = f.client_config(&identity, false);
    let resuming = f.client_config(&identity, true);
    let gateway = f.server.gateway.to_string();
    let admin = f.server.admin.to_string();
    let services = format!(
        "GET /{RE}/v1/metadata/services HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    let services = services.as_slice();

    // Setup checks: the full configuration never resumes, the resuming one does from its
    // second connection on.
    f.rt.block_on(async {
        for _ in 0..2 {
            let kind = gateway_connection(&full, &gateway, None).await;
            assert_eq!(kind, Some(HandshakeKind::Full));
        }
        let first = gateway_connection(&resuming, &gateway, None).await;
        assert_eq!(first, Some(HandshakeKind::Full));
        for req in [None, Some(services), None] {
            let kind = gateway_connection(&resuming, &gateway, req).await;
            assert_eq!(kind, Some(HandshakeKind::Resumed), "TLS 1.3 resumption");
        }
    });

    let mut group = c.benchmark_group("server_mtls");
    group.throughput(Throughput::Elements(1));

    // One connection after the other: `op` `n` times on the client runtime.
    let sequential = |meter: &ServerCpu, n: u64, op: &dyn Fn() -> Option<HandshakeKind>| {
        meter.measure(n, || {
            let start = Instant::now();
            for _ in 0..n {
                black_box(op());
            }
            start.elapsed()
        })
    };
    let plain = || {
        f.rt.block_on(plain_healthz(&admin));
        None
    };
    let full_close = || f.rt.block_on(gateway_connection(&full, &gateway, None));
    let full_get = || {
        f.rt.block_on(gateway_connection(&full, &gateway, Some(services)))
    };
    let resumed = |req| {
        let kind = f.rt.block_on(gateway_connection(&resuming, &gateway, req));
        assert_eq!(kind, Some(HandshakeKind::Resumed));
        kind
    };
    let resumed_close = || resumed(None);
    let resumed_get = || resumed(Some(services));
    let cases: [(&str, &dyn Fn() -> Option<HandshakeKind>); 5] = [
        ("baseline_tcp_http_admin_healthz", &plain),
        ("full_handshake", &full_close),
        ("full_handshake_get_services", &full_get),
        ("resumed_handshake", &resumed_close),
        ("resumed_handshake_get_services", &resumed_get),
    ];
    for (name, op) in cases {
        let meter = ServerCpu::default();
        group.bench_function(name, |b| b.iter_custom(|n| sequential(&meter, n, op)));
        meter.report(name);
    }

    let meter = ServerCpu::default();
    let name = "baseline_tcp_http_admin_healthz_16_concurrent";
    group.bench_function(name, |b| {
        b.iter_custom(|n| {
            let admin = admin.clone();
            meter.measure(n, || {
                f.concurrent(n, move |_, _| {
                    let admin = admin.clone();
                    async move { plain_healthz(&admin).await }
                })
            })
        })
    });
    meter.report(name);
    let meter = ServerCpu::default();
    let name = "full_handshake_16_concurrent";
    group.bench_function(name, |b| {
        b.iter_custom(|n| {
            let (full, gateway) = (full.clone(), gateway.clone());
            meter.measure(n, || {
                f.concurrent(n, move |_, _| {
                    let (full, gateway) = (full.clone(), gateway.clone());
                    async move {
                        gateway_connection(&full, &gateway, None).await;
                    }
                })
            })
        })
    });
    meter.report(name);
    group.finish();
}

/// What the server does per certificate besides HTTP, TLS and the store: decode the body,
/// parse and verify the CSR, sign the certificate.
fn sign_in_process(ca: &Ca, body: &[u8], serial: u64, now: Timestamp) -> String {
    let der = decode_csr_body(body).expect("body");
    let csr = pki::inspect_csr(&der);
    let issued = IssuedCertificate {
        serial: CertSerial::from_bytes(&serial.to_be_bytes()),
        re: RE.into(),
        incarnation: 1,
        subject: subject(RE),
        not_before: now,
        not_after: Timestamp::from_unix_millis(now.as_unix_millis() + 86_400_000),
    };
    black_box(csr);
    ca.sign_client(&der, &issued).expect("sign")
}

fn certificates(c: &mut Criterion) {
    let f = Arc::new(Fixture::start());
    // Remote environments `bench-*`, each with a prepared CSR for its subject.
    let mut pool = Arc::new(Vec::new());
    f.grow(&mut pool, CONCURRENCY);

    let mut group = c.benchmark_group("server_certificates");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);

    group.bench_function("baseline_decode_verify_sign_in_process", |b| {
        let now = Timestamp::from_unix_millis(now_ms());
        let ca =
            Ca::generate(pki::generate_key(KeyKind::EcdsaP256).expect("key"), now).expect("CA");
        let bodies: Vec<Vec<u8>> = (0..PREPARED_CSRS).map(|_| csr_body(RE).0).collect();
        let mut serial = 0u64;
        b.iter(|| {
            serial += 1;
            black_box(sign_in_process(
                &ca,
                &bodies[serial as usize % PREPARED_CSRS],
                serial,
                now,
            ))
        })
    });
    let meter = ServerCpu::default();
    let stats = std::cell::Cell::new(StoreStats::default());
    let name = "onboarding_token_info_csr_16_concurrent";
    group.bench_function(name, |b| {
        // Task `t` onboards to `bench-t` again and again.
        let pool = pool.clone();
        b.iter_custom(|n| {
            let (fx, pool) = (f.clone(), pool.clone());
            f.with_store_stats(&stats, || {
                meter.measure(n, || {
                    f.concurrent(n, move |task, _| {
                        let (fx, pool) = (fx.clone(), pool.clone());
                        async move {
                            let (re, body) = &pool[task];
                            let url = fx.csr_url(re).await;
                            black_box(fx.client_certs(&url, body).await);
                        }
                    })
                })
            })
        })
    });
    meter.report(name);
    stats.get().report(name);
    let meter = ServerCpu::default();
    let stats = std::cell::Cell::new(StoreStats::default());
    let name = "client_certs_only_16_concurrent";
    group.bench_function(name, |b| {
        b.iter_custom(|n| {
            // One remote environment per iteration; its token and info before the clock
            // starts.
            f.grow(&mut pool, n as usize);
            let urls = Arc::new(std::sync::Mutex::new(vec![String::new(); n as usize]));
            let (fx, out, items) = (f.clone(), urls.clone(), pool.clone());
            f.concurrent(n, move |_, i| {
                let (fx, out, items) = (fx.clone(), out.clone(), items.clone());
                async move {
                    let url = fx.csr_url(&items[i].0).await;
                    out.lock().expect("lock")[i] = url;
                }
            });
            let urls = Arc::new(std::mem::take(&mut *urls.lock().expect("lock")));
            let (fx, items) = (f.clone(), pool.clone());
            f.with_store_stats(&stats, || {
                meter.measure(n, || {
                    f.concurrent(n, move |_, i| {
                        let (fx, items, urls) = (fx.clone(), items.clone(), urls.clone());
                        async move {
                            black_box(fx.client_certs(&urls[i], &items[i].1).await);
                        }
                    })
                })
            })
        })
    });
    meter.report(name);
    stats.get().report(name);
    group.finish();
}

criterion_group!(benches, mtls, certificates);
criterion_main!(benches);
