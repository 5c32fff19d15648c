//! Chaos scenarios that need whole `ace serve` processes: replicas on one JetStream stream
//! (three `nats-server` processes on loopback), paused with SIGSTOP and resumed.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ace_client as client;
use ace_client::TokioNet;
use hyper::Method;
use serde_json::json;

use crate::common::nats::{Cluster, IDENTITY};
use crate::common::subscriber;
use crate::process::ServeProcess;

/// The lease the replicas run with: short, so a test sees several takeovers quickly.
const LEASE: &str = "2s";

/// Starts replica `name` on `data`, on `stream` of `cluster` (ready: some replica leads).
async fn replica(cluster: &Cluster, stream: &str, data: &Path, name: &str) -> ServeProcess {
    let mut flags = crate::durability::jetstream_flags(cluster, stream);
    flags.extend(["--replica-name", name, "--replica-lease", LEASE].map(String::from));
    crate::durability::serve(data, &flags).await
}

async fn call(
    server: &ServeProcess,
    method: Method,
    url: &str,
    body: Option<serde_json::Value>,
) -> client::Response {
    client::request(
        &TokioNet,
        method,
        url,
        &[("authorization", &server.authorization())],
        body.map(|b| b.to_string().into_bytes()),
        None,
        Duration::from_secs(20),
    )
    .await
    .unwrap_or_else(|e| panic!("{url}: {e}"))
}

async fn leads(server: &ServeProcess) -> bool {
    let url = format!("{}/metrics", server.ports.admin_url());
    let Ok(r) = client::request(
        &TokioNet,
        Method::GET,
        &url,
        &[("authorization", &server.authorization())],
        None,
        None,
        Duration::from_secs(2),
    )
    .await
    else {
        return false;
    };
    String::from_utf8_lossy(&r.body)
        .lines()
        .any(|l| l.trim() == "ace_replica_leading 1")
}

/// Through `server`: activates `shop` in `prod` and subscribes `endpoint` to its
/// `order.created` events (at most 2 pushes at once, 3 s push timeout).
async fn activate_and_subscribe(server: &ServeProcess, endpoint: &str) {
    let admin = server.ports.admin_url();
    let activation = json!({"kind": "EventActivation", "metadata": {"name": "shop"},
        "spec": {"sourceId": "shop"}});
    let subscription = json!({"kind": "Subscription", "metadata": {"name": "orders"}, "spec": {
        "endpoint": endpoint, "include_subscription_name_header": false,
        "max_inflight": 2, "push_request_timeout_ms": 3000, "event_type": "order.created",
        "event_type_version": "v1", "source_id": "shop"}});
    for (path, doc) in [
        ("eventactivations/shop", activation),
        ("subscriptions/orders", subscription),
    ] {
        let url = format!("{admin}/v1/namespaces/prod/{path}");
        let r = call(server, Method::PUT, &url, Some(doc)).await;
        assert_eq!(r.status / 100, 2, "{}", String::from_utf8_lossy(&r.body));
    }
}

/// Publishes an `order.created` event from `shop` on `server`: the status and event id.
async fn publish(server: &ServeProcess, n: &str) -> (u16, String) {
    let body = json!({"event-type": "order.created", "event-type-version": "v1",
        "event-time": "2018-10-16T15:00:00Z", "data": {"n": n}});
    let r = client::request(
        &TokioNet,
        Method::POST,
        &server.ports.publish_url(),
        &[("source-id", "shop"), ("content-type", "application/json")],
        Some(body.to_string().into_bytes()),
        None,
        Duration::from_secs(20),
    )
    .await
    .unwrap_or_else(|e| panic!("publish: {e}"));
    let id = r.json()["event-id"].as_str().unwrap_or_default().to_owned();
    (r.status, id)
}

/// Chaos scenario: the leading replica is paused (SIGSTOP) for three times its lease, with
/// pushes in flight. The other replica takes the lead and answers a publish made on it while
/// the leader is paused; the paused one, resumed, no longer leads (its lease lapsed by its
/// own clock, and the new leader's claim fenced its log), says so in its log, and forwards
/// what it is sent. Every acknowledged event is delivered, and at most the two replicas'
/// `max_inflight` pushes reach the subscriber at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_longer_than_its_lease_is_replaced_and_loses_nothing() {
    let cluster = Cluster::start(3);
    let dirs: Vec<tempfile::TempDir> = (0..2)
        .map(|_| tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let data: Vec<_> = dirs.iter().map(|d| d.path().join("data")).collect();
    let a = replica(&cluster, "PAUSE", &data[0], "a").await;
    for file in IDENTITY {
        std::fs::create_dir_all(&data[1]).unwrap_or_else(|e| panic!("{e}"));
        std::fs::copy(data[0].join(file), data[1].join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    let b = replica(&cluster, "PAUSE", &data[1], "b").await;
    let (leader, follower) = if leads(&a).await { (&a, &b) } else { (&b, &a) };
    assert!(leads(leader).await && !leads(follower).await, "one leader");

    // Every push is held 300 ms, so some are in flight when the leader stops.
    let subscriber = subscriber::start(Arc::new(|_| (200, Duration::from_millis(300)))).await;
    activate_and_subscribe(leader, &subscriber.url()).await;
    let mut ids = Vec::new();
    for n in 0..6 {
        let (status, id) = publish(leader, &n.to_string()).await;
        assert_eq!(status, 200, "publish {n}");
        ids.push(id);
    }

    leader.signal("STOP");
    let paused = Instant::now();
    let (status, id) = publish(follower, "while-paused").await;
    assert_eq!(status, 200, "the other replica takes the lead and answers");
    ids.push(id);
    eprintln!("a publish on the other replica took {:?}", paused.elapsed());
    assert!(leads(follower).await, "the other replica leads");
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(paused.elapsed())).await;
    leader.signal("CONT");

    // Resumed, the old leader follows.
    let deadline = Instant::now() + Duration::from_secs(10);
    while leads(leader).await {
        assert!(
            Instant::now() < deadline,
            "the resumed replica still leads 10 s after it was resumed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(leads(follower).await, "one leader: the one that took over");
    let log = leader.log();
    assert!(
        log.contains("lease lapsed") || log.contains("another replica holds the lease"),
        "the resumed replica's log says it lost the lead: {log}"
    );
    let (status, id) = publish(leader, "after-resume").await;
    assert_eq!(status, 200, "the resumed replica forwards");
    ids.push(id);

    subscriber::all_delivered(&subscriber, &ids).await;
    assert!(
        subscriber.max_concurrent() <= 2 + 2,
        "at most both replicas' max_inflight at once: {}",
        subscriber.max_concurrent()
    );
}

/// Two replicas' processes, started again (on new ports) when killed.
struct Deployment {
    cluster: Cluster,
    stream: &'static str,
    data: Vec<std::path::PathBuf>,
    names: [&'static str; 2],
    servers: Vec<Option<ServeProcess>>,
    /// Where each replica's publish API is now (`None` while it is down).
    publish: Arc<std::sync::Mutex<Vec<Option<String>>>>,
}

impl Deployment {
    async fn start(stream: &'static str, dir: &Path) -> Deployment {
        let cluster = Cluster::start(3);
        let data: Vec<_> = (0..2).map(|i| dir.join(format!("r{i}"))).collect();
        let mut d = Deployment {
            cluster,
            stream,
            data,
            names: ["a", "b"],
            servers: vec![None, None],
            publish: Arc::default(),
        };
        d.restart(0).await;
        std::fs::create_dir_all(&d.data[1]).unwrap_or_else(|e| panic!("{e}"));
        for file in crate::common::nats::IDENTITY {
            std::fs::copy(d.data[0].join(file), d.data[1].join(file))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
        }
        d.restart(1).await;
        d
    }

    async fn restart(&mut self, i: usize) {
        let server = replica(&self.cluster, self.stream, &self.data[i], self.names[i]).await;
        self.set_publish(i, Some(server.ports.publish_url()));
        self.servers[i] = Some(server);
    }

    fn set_publish(&self, i: usize, url: Option<String>) {
        if let Ok(mut p) = self.publish.lock() {
            p.resize(2, None);
            p[i] = url;
        }
    }

    fn kill_9(&mut self, i: usize) {
        self.set_publish(i, None);
        if let Some(mut s) = self.servers[i].take() {
            s.kill_9();
        }
    }

    fn get(&self, i: usize) -> &ServeProcess {
        self.servers[i]
            .as_ref()
            .unwrap_or_else(|| panic!("replica {i} is down"))
    }

    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for (i, s) in self.servers.iter().enumerate() {
                if let Some(s) = s
                    && leads(s).await
                {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no replica leads");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Publishes to the replicas in turn, every 20 ms, until `stop`: the ids answered 200.
/// Refusals (503, 507) and a replica that is down or paused are expected.
async fn publish_through_the_chaos(
    publish: Arc<std::sync::Mutex<Vec<Option<String>>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<String> {
    use std::sync::atomic::Ordering;
    let mut taken = Vec::new();
    let mut n = 0usize;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let url = publish
            .lock()
            .ok()
            .and_then(|p| p.get(n % 2).cloned().flatten());
        if let Some(url) = url {
            let body = json!({"event-type": "order.created", "event-type-version": "v1",
                "event-time": "2018-10-16T15:00:00Z", "data": {"n": n}});
            let answer = client::request(
                &TokioNet,
                Method::POST,
                &url,
                &[("source-id", "shop"), ("content-type", "application/json")],
                Some(body.to_string().into_bytes()),
                None,
                Duration::from_secs(3),
            )
            .await;
            if let Ok(r) = answer {
                match r.status {
                    200 => taken.push(r.json()["event-id"].as_str().unwrap_or_default().to_owned()),
                    503 | 507 => {}
                    other => panic!("publish {n}: {other} {}", String::from_utf8_lossy(&r.body)),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    taken
}

/// Asserts that both replicas reach the same log position with the same state digest.
async fn converge(d: &Deployment) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut states = Vec::new();
        for s in d.servers.iter().flatten() {
            let r = call(
                s,
                Method::GET,
                &format!("{}/v1/state", s.ports.admin_url()),
                None,
            )
            .await;
            let v = r.json();
            states.push((
                v["applied"].as_u64(),
                v["sha256"].as_str().map(str::to_owned),
            ));
        }
        if states.len() == 2 && states[0] == states[1] && states[0].1.is_some() {
            return;
        }
        if states.len() == 2 && states[0].0 == states[1].0 {
            assert_eq!(
                states[0].1, states[1].1,
                "a divergence at the same position"
            );
        }
        assert!(
            Instant::now() < deadline,
            "the replicas did not converge: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The chaos test, bounded in time: two replicas under a steady stream of publishes through
/// both, and one fault after another: `kill -9` of the NATS node leading the stream, of the
/// leading replica with pushes in flight, SIGSTOP of the leading replica past its lease, and
/// `kill -9` of every NATS node. After it, every publish answered 200 is delivered, at most
/// both replicas' `max_inflight` pushes reached the subscriber at once, the replicas have
/// the same state at the same log position, and the NATS nodes agree on the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_every_fault_in_turn_under_load_loses_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut d = Deployment::start("CHAOS", dir.path()).await;
    let leader = d.leader().await;
    let subscriber = subscriber::start(Arc::new(|_| (200, Duration::from_millis(5)))).await;
    activate_and_subscribe(d.get(leader), &subscriber.url()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(publish_through_the_chaos(
        Arc::clone(&d.publish),
        Arc::clone(&stop),
    ));
    let settle = || tokio::time::sleep(Duration::from_secs(2));
    settle().await;

    // The NATS node leading the stream.
    let node = d.cluster.stream_leader("CHAOS").await;
    d.cluster.kill(node);
    settle().await;
    d.cluster.restart(node);
    settle().await;

    // The leading replica, with pushes in flight.
    let leader = d.leader().await;
    d.kill_9(leader);
    settle().await;
    d.restart(leader).await;
    settle().await;

    // The leading replica paused for three leases.
    let leader = d.leader().await;
    d.get(leader).signal("STOP");
    tokio::time::sleep(Duration::from_secs(6)).await;
    d.get(leader).signal("CONT");
    settle().await;

    // Every NATS node.
    for i in 0..3 {
        d.cluster.kill(i);
    }
    settle().await;
    for i in 0..3 {
        d.cluster.restart(i);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;

    stop.store(true, Ordering::SeqCst);
    let ids = load.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(ids.len() > 50, "too few publishes taken: {}", ids.len());
    eprintln!("{} publishes taken through the chaos", ids.len());
    subscriber::all_delivered(&subscriber, &ids).await;
    assert!(
        subscriber.max_concurrent() <= 2 + 2,
        "at most both replicas' max_inflight at once: {}",
        subscriber.max_concurrent()
    );
    converge(&d).await;
    d.cluster.nodes_agree("CHAOS").await;
}
