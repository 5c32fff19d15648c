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
    let admin = leader.ports.admin_url();
    let activation = json!({"kind": "EventActivation", "metadata": {"name": "shop"},
        "spec": {"sourceId": "shop"}});
    let r = call(
        leader,
        Method::PUT,
        &format!("{admin}/v1/namespaces/prod/eventactivations/shop"),
        Some(activation),
    )
    .await;
    assert_eq!(r.status / 100, 2, "{}", String::from_utf8_lossy(&r.body));
    let subscription = json!({"kind": "Subscription", "metadata": {"name": "orders"}, "spec": {
        "endpoint": subscriber.url(), "include_subscription_name_header": false,
        "max_inflight": 2, "push_request_timeout_ms": 3000, "event_type": "order.created",
        "event_type_version": "v1", "source_id": "shop"}});
    let r = call(
        leader,
        Method::PUT,
        &format!("{admin}/v1/namespaces/prod/subscriptions/orders"),
        Some(subscription),
    )
    .await;
    assert_eq!(r.status / 100, 2, "{}", String::from_utf8_lossy(&r.body));
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
