//! A dead subscriber and a large backlog, measured on a real `ace serve` process: what an
//! operator sees when one subscription's endpoint refuses every connection while events keep
//! coming.
//!
//! For each scenario (one subscription owing 100 K, 1 M, 5 M events; ten subscriptions owing
//! 100 K each), the benchmark starts `ace serve` (redb store in a temporary directory under
//! `target/`), creates the subscriptions with an endpoint on a loopback port nothing listens
//! on, publishes the events through the publish API from 64 keep-alive connections, and then
//! reports, from `/proc/<pid>`:
//!
//! - `rss`: resident memory once the backlog is in, after 5 s idle;
//! - `idle cpu`: CPU time over 10 s with nothing published, as a share of one core (the dead
//!   endpoint's probes are all that runs);
//! - `ready after kill -9`: from starting the killed server again to `/readyz` answering
//!   200, and the resident memory 5 s later;
//! - `drain`: a subscriber answering 200 at once starts on the dead port; events per second
//!   until nothing is pending, against `live`, the rate at which the same server pushed the
//!   first 20 K events of a fresh subscription with its subscriber up (publish and push
//!   overlapping).
//!
//! The binary is `ACE_BIN` or else `target/release/ace` (`cargo build --release -p ace`).
//! `ACE_BACKLOG_SCENARIOS` picks scenarios by name (`100k,1m,5m,10x100k`; default all). Run
//! as a test (`cargo test --benches`), it runs one scenario of 2 000 events on the debug
//! build, to show that it works.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One scenario: its name, events published, subscriptions owed each.
struct Scenario {
    name: &'static str,
    events: u64,
    subscriptions: usize,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "100k",
        events: 100_000,
        subscriptions: 1,
    },
    Scenario {
        name: "1m",
        events: 1_000_000,
        subscriptions: 1,
    },
    Scenario {
        name: "5m",
        events: 5_000_000,
        subscriptions: 1,
    },
    Scenario {
        name: "10x100k",
        events: 100_000,
        subscriptions: 10,
    },
];

const PUBLISHERS: usize = 64;
/// Events of the live figure.
const LIVE_EVENTS: u64 = 20_000;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running `ace serve` and how to reach it.
struct Ace {
    bin: std::path::PathBuf,
    data: std::path::PathBuf,
    ports: [u16; 6],
    child: Child,
}

impl Ace {
    fn start(bin: &std::path::Path, data: &std::path::Path, ports: [u16; 6]) -> Ace {
        let addr = |p: u16| format!("127.0.0.1:{p}");
        let child = Command::new(bin)
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(["--connector-internal-addr", &addr(ports[0])])
            .args(["--connector-external-addr", &addr(ports[1])])
            .args(["--gateway-addr", &addr(ports[2])])
            .args(["--admin-addr", &addr(ports[3])])
            .args(["--publish-addr", &addr(ports[4])])
            .args(["--proxy-addr", &addr(ports[5])])
            .args(["--kube-addr", "127.0.0.1:0"])
            // The subscribers are on loopback; the admin API is called without a token:
            // both knowingly, for a benchmark on one machine.
            .args(["--allow-private-egress", "--no-admin-auth"])
            .args([
                "--max-backlog-events",
                "10000000",
                "--max-store-bytes",
                "40GiB",
            ])
            .args(["--max-connections", "4096"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ace serve starts");
        Ace {
            bin: bin.to_owned(),
            data: data.to_owned(),
            ports,
            child,
        }
    }

    fn admin(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ports[3])
    }

    fn publish(&self) -> String {
        format!("http://127.0.0.1:{}/v1/events", self.ports[4])
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) {
        self.kill();
        *self = Ace::start(&self.bin.clone(), &self.data.clone(), self.ports);
    }
}

impl Drop for Ace {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident memory of `pid`, in MB.
fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time (user and system) of `pid` so far.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let Some(close) = stat.rfind(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Duration::from_millis((field(11) + field(12)) * 10)
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(PUBLISHERS)
        .build_http()
}

async fn call(
    client: &HttpClient,
    method: Method,
    url: &str,
    body: Option<String>,
) -> (u16, String) {
    let req = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .header("source-id", "bench")
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .expect("a request");
    match client.request(req).await {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        Err(e) => (0, e.to_string()),
    }
}

async fn wait_ready(client: &HttpClient, ace: &Ace) -> Duration {
    let start = Instant::now();
    loop {
        if call(client, Method::GET, &ace.admin("/readyz"), None)
            .await
            .0
            == 200
        {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(600), "never ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn put(client: &HttpClient, url: &str, doc: serde_json::Value) {
    let (status, body) = call(client, Method::PUT, url, Some(doc.to_string())).await;
    assert!(status < 300, "PUT {url}: {status} {body}");
}

async fn subscribe(client: &HttpClient, ace: &Ace, name: &str, endpoint: &str) {
    let doc = serde_json::json!({"kind": "Subscription", "metadata": {"name": name, "namespace": "bench"}, "spec": {
        "endpoint": endpoint, "include_subscription_name_header": false, "max_inflight": 400,
        "push_request_timeout_ms": 1000, "event_type": "order.created", "event_type_version": "v1", "source_id": "bench"}});
    put(
        client,
        &ace.admin(&format!("/v1/namespaces/bench/subscriptions/{name}")),
        doc,
    )
    .await;
}

/// Publishes `n` events of 250 bytes from [`PUBLISHERS`] connections.
async fn publish(client: &HttpClient, ace: &Ace, n: u64) {
    let next = Arc::new(AtomicU64::new(0));
    let body = format!(
        r#"{{"event-type":"order.created","event-type-version":"v1","event-time":"2018-10-16T15:00:00Z","data":{{"pad":"{}"}}}}"#,
        "x".repeat(120)
    );
    let mut tasks = Vec::new();
    for _ in 0..PUBLISHERS {
        let (client, url, next, body) = (client.clone(), ace.publish(), next.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let (status, text) = call(&client, Method::POST, &url, Some(body.clone())).await;
                assert_eq!(status, 200, "{text}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("a publisher");
    }
}

/// A delivery figure summed over the subscriptions, from `/metrics`.
async fn figure(client: &HttpClient, ace: &Ace, figure: &str) -> u64 {
    let (_, text) = call(client, Method::GET, &ace.admin("/metrics"), None).await;
    text.lines()
        .filter(|l| {
            l.starts_with("ace_subscription_deliveries")
                && l.contains(&format!("figure=\"{figure}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// A subscriber answering 200 at once, counting what it receives.
async fn subscriber(addr: SocketAddr) -> Arc<AtomicU64> {
    let received = Arc::new(AtomicU64::new(0));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("the subscriber's port");
    let count = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let count = count.clone();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let count = count.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            count.fetch_add(1, Ordering::Relaxed);
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    received
}

/// How long the measurements wait: the resident memory is read `settle` after the load ends
/// (and after a restart), the idle CPU over `idle`.
struct Waits {
    settle: Duration,
    idle: Duration,
}

async fn run(bin: &std::path::Path, s: &Scenario, waits: &Waits) -> String {
    let parent = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&parent).expect("the data parent");
    let dir = tempfile::tempdir_in(parent).expect("a data directory");
    let ports = [
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    ];
    let mut ace = Ace::start(bin, dir.path(), ports);
    let http = client();
    wait_ready(&http, &ace).await;
    if let Some(stderr) = ace.child.stderr.take() {
        // Kept drained, so that the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    }
    put(&http, &ace.admin("/v1/namespaces/bench/eventactivations/bench"),
        serde_json::json!({"kind": "EventActivation", "metadata": {"name": "bench", "namespace": "bench"}, "spec": {"sourceId": "bench", "displayName": "bench"}})).await;
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("an address");
    for i in 0..s.subscriptions {
        subscribe(
            &http,
            &ace,
            &format!("dead-{i}"),
            &format!("http://{dead}/{i}"),
        )
        .await;
    }
    let start = Instant::now();
    publish(&http, &ace, s.events).await;
    let ingest = s.events as f64 / start.elapsed().as_secs_f64();
    tokio::time::sleep(waits.settle).await;
    let rss = rss_mb(ace.pid());
    let before = cpu(ace.pid());
    tokio::time::sleep(waits.idle).await;
    let idle = (cpu(ace.pid()) - before).as_secs_f64() / waits.idle.as_secs_f64() * 100.0;
    let owed = figure(&http, &ace, "pending").await;
    assert_eq!(owed, s.events * s.subscriptions as u64, "every event owed");

    ace.restart();
    if let Some(stderr) = ace.child.stderr.take() {
        std::thread::spawn(move || for _ in BufReader::new(stderr).lines() {});
    }
    let ready = wait_ready(&http, &ace).await;
    tokio::time::sleep(waits.settle).await;
    let rss_restarted = rss_mb(ace.pid());

    let received = subscriber(dead).await;
    let start = Instant::now();
    loop {
        let pending = figure(&http, &ace, "pending").await;
        if pending == 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3600),
            "{pending} never drained"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drain = owed as f64 / start.elapsed().as_secs_f64();
    assert!(received.load(Ordering::Relaxed) >= owed);

    // The live figure: a fresh subscription whose subscriber is up.
    let live_addr: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("an address");
    let live_received = subscriber(live_addr).await;
    for i in 0..s.subscriptions {
        let url = ace.admin(&format!("/v1/namespaces/bench/subscriptions/dead-{i}"));
        assert_eq!(call(&http, Method::DELETE, &url, None).await.0, 204);
    }
    let live_events = LIVE_EVENTS.min(s.events);
    subscribe(&http, &ace, "live", &format!("http://{live_addr}/")).await;
    let start = Instant::now();
    publish(&http, &ace, live_events).await;
    while live_received.load(Ordering::Relaxed) < live_events {
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the live subscriber never got everything"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let live = live_events as f64 / start.elapsed().as_secs_f64();
    format!(
        "| {} | {} | {:.0} MB | {:.1} % | {:.2} s | {:.0} MB | {:.0} /s | {:.0} /s | {:.0} /s |",
        s.name,
        s.events * s.subscriptions as u64,
        rss,
        idle,
        ready.as_secs_f64(),
        rss_restarted,
        ingest,
        drain,
        live,
    )
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin = std::env::var_os("ACE_BIN").map_or_else(
        || {
            root.join(if bench {
                "target/release/ace"
            } else {
                "target/debug/ace"
            })
        },
        std::path::PathBuf::from,
    );
    if !bin.exists() {
        eprintln!(
            "backlog: {} not built; skipped (cargo build {}-p ace)",
            bin.display(),
            if bench { "--release " } else { "" }
        );
        return;
    }
    let wanted = std::env::var("ACE_BACKLOG_SCENARIOS").unwrap_or_default();
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    eprintln!(
        "| scenario | owed | rss | idle cpu | ready after kill -9 | rss after restart | ingest | drain | live |"
    );
    eprintln!("|---|---|---|---|---|---|---|---|---|");
    if !bench {
        let smoke = Scenario {
            name: "smoke",
            events: 2_000,
            subscriptions: 2,
        };
        let waits = Waits {
            settle: Duration::from_millis(200),
            idle: Duration::from_millis(500),
        };
        eprintln!("{}", rt.block_on(run(&bin, &smoke, &waits)));
        return;
    }
    let waits = Waits {
        settle: Duration::from_secs(5),
        idle: Duration::from_secs(10),
    };
    for s in SCENARIOS
        .iter()
        .filter(|s| wanted.is_empty() || wanted.split(',').any(|w| w == s.name))
    {
        eprintln!("{}", rt.block_on(run(&bin, s, &waits)));
    }
}
