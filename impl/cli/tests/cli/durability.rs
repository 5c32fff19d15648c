//! A `kill -9` during a stream of writes loses no write that was answered 2xx: a real
//! `ace serve` process, concurrent writers, SIGKILL mid-stream, restart, read back.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU16;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::process::ServeProcess;

use ace_client as client;
use ace_client::TokioNet;
use hyper::Method;
use serde_json::json;

/// `ace serve` on `data` with the `store` flags (none: the embedded store), ready (started
/// again on other ports if one was taken meanwhile).
pub(crate) async fn serve(data: &Path, store: &[String]) -> ServeProcess {
    let data = data.to_owned();
    let mut args: Vec<String> = ["--retry-initial", "100ms", "--retry-max", "300ms"]
        .map(String::from)
        .to_vec();
    args.extend_from_slice(store);
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        ServeProcess::start(&data, &args)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Writes from 8 concurrent clients until the server dies; returns the names answered 2xx.
async fn write_until_killed(
    server: &mut ServeProcess,
    round: usize,
    run_for: Duration,
) -> Vec<String> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..8 {
        let admin = server.ports.admin_url();
        let authorization = server.authorization();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let name = format!("r{round}-w{w}-{i}");
                let doc = json!({"kind": "RemoteEnvironment", "metadata": {"name": name}, "spec": {"description": "durable"}}).to_string();
                let url = format!("{admin}/v1/remoteenvironments/{name}");
                match client::request(&TokioNet, Method::PUT, &url, &[("authorization", &authorization)], Some(doc.into_bytes()), None, Duration::from_secs(5)).await {
                    Ok(r) if (200..300).contains(&r.status) => acknowledged.push(name),
                    _ => break, // the server is gone
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(run_for).await;
    server.kill_9();
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for w in writers {
        acknowledged.extend(w.await.unwrap_or_default());
    }
    acknowledged
}

async fn names(server: &ServeProcess) -> std::collections::BTreeSet<String> {
    let r = client::request(
        &TokioNet,
        Method::GET,
        &format!("{}/v1/remoteenvironments", server.ports.admin_url()),
        &[("authorization", &server.authorization())],
        None,
        None,
        Duration::from_secs(10),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    r.json()
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|re| {
            re.pointer("/metadata/name")
                .and_then(|n| n.as_str())
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_write() {
    kill_9_rounds(&[], Duration::from_millis(700), |_, _| {}).await;
}

/// The same on a three-node JetStream cluster, where each round also kills (`kill -9`) one
/// NATS node while the writes go on (the stream leader, a third of the time), and starts it
/// again after. Rounds are longer: writes wait while a new leader is elected.
#[cfg(feature = "jetstream")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_ace_or_of_a_nats_node_loses_no_acknowledged_write_on_jetstream() {
    use std::sync::Mutex;
    let cluster = Arc::new(Mutex::new(crate::common::nats::Cluster::start(3)));
    let store = cluster
        .lock()
        .map(|c| jetstream_flags(&c, "KILL"))
        .unwrap_or_else(|e| panic!("{e}"));
    let mut killer = None;
    kill_9_rounds(&store, Duration::from_millis(2500), |round, after| {
        let node = round % 3;
        if after {
            if let Some(k) = killer.take() {
                let _ = std::thread::JoinHandle::join(k);
            }
            if let Ok(mut c) = cluster.lock() {
                c.restart(node);
            }
        } else {
            let cluster = cluster.clone();
            killer = Some(std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(400));
                if let Ok(mut c) = cluster.lock() {
                    c.kill(node);
                }
            }));
        }
    })
    .await;
}

#[cfg(feature = "jetstream")]
pub(crate) fn jetstream_flags(cluster: &crate::common::nats::Cluster, stream: &str) -> Vec<String> {
    [
        "--store",
        "jetstream",
        "--nats",
        &cluster.urls().join(","),
        "--nats-stream",
        stream,
    ]
    .map(String::from)
    .to_vec()
}

/// Rounds of writes each ended by a `kill -9` of the server; `around(round, after)` runs
/// before (`false`) and after (`true`) each round's writes.
async fn kill_9_rounds(store: &[String], run_for: Duration, mut around: impl FnMut(usize, bool)) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    let mut acknowledged = Vec::new();
    let mut server = serve(&data, store).await;
    // Several rounds, so that a kill lands in the middle of a group commit more than once.
    for round in 0..3 {
        around(round, false);
        let written = write_until_killed(&mut server, round, run_for).await;
        around(round, true);
        assert!(
            written.len() > 20,
            "round {round}: too little progress to mean anything: {}",
            written.len()
        );
        acknowledged.extend(written);
        server = serve(&data, store).await;
        let present = names(&server).await;
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|n| !present.contains(*n))
            .collect();
        assert!(
            lost.is_empty(),
            "after round {round}, {} of {} acknowledged writes were lost, e.g. {:?}",
            lost.len(),
            acknowledged.len(),
            &lost[..lost.len().min(5)]
        );
    }
}

async fn put(server: &ServeProcess, url: String, doc: serde_json::Value) -> u16 {
    client::request(
        &TokioNet,
        Method::PUT,
        &url,
        &[("authorization", &server.authorization())],
        Some(doc.to_string().into_bytes()),
        None,
        Duration::from_secs(10),
    )
    .await
    .map(|r| r.status)
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_answered_200_are_delivered_after_a_kill_9() {
    events_after_kill_9(&[]).await;
}

#[cfg(feature = "jetstream")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_answered_200_are_delivered_after_a_kill_9_on_jetstream() {
    let cluster = crate::common::nats::Cluster::start(3);
    events_after_kill_9(&jetstream_flags(&cluster, "EVENTS")).await;
}

async fn events_after_kill_9(store: &[String]) {
    // The subscriber refuses everything until told otherwise, so every event is still owed
    // when the server is killed.
    let status = Arc::new(AtomicU16::new(503));
    let answer = status.clone();
    let sub = crate::common::subscriber::start(Arc::new(move |_| {
        (answer.load(Ordering::SeqCst), Duration::ZERO)
    }))
    .await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    let mut server = serve(&data, store).await;
    let ea = json!({"kind": "EventActivation", "metadata": {"name": "shop"}, "spec": {"sourceId": "shop"}});
    assert_eq!(
        put(
            &server,
            format!(
                "{}/v1/namespaces/ns/eventactivations/shop",
                server.ports.admin_url()
            ),
            ea
        )
        .await,
        201
    );
    let sub_doc = json!({"kind": "Subscription", "metadata": {"name": "orders"}, "spec": {
        "endpoint": sub.url(), "include_subscription_name_header": false, "max_inflight": 50,
        "push_request_timeout_ms": 1000, "event_type": "order.created", "event_type_version": "v1", "source_id": "shop"}});
    assert_eq!(
        put(
            &server,
            format!(
                "{}/v1/namespaces/ns/subscriptions/orders",
                server.ports.admin_url()
            ),
            sub_doc
        )
        .await,
        201
    );

    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for p in 0..4 {
        let (url, stop) = (server.ports.publish_url(), stop.clone());
        publishers.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            for i in 0.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let body = json!({"event-type": "order.created", "event-type-version": "v1", "event-time": "2018-10-16T15:00:00Z", "data": format!("p{p}-{i}")});
                match client::request(&TokioNet, Method::POST, &url, &[("source-id", "shop")], Some(body.to_string().into_bytes()), None, Duration::from_secs(5)).await {
                    Ok(r) if r.status == 200 => accepted.push(format!("\"p{p}-{i}\"")),
                    _ => break,
                }
            }
            accepted
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    server.kill_9();
    stop.store(true, Ordering::Relaxed);
    let mut accepted = Vec::new();
    for p in publishers {
        accepted.extend(p.await.unwrap_or_default());
    }
    assert!(
        accepted.len() > 20,
        "too little progress to mean anything: {}",
        accepted.len()
    );

    status.store(200, Ordering::SeqCst);
    let _restarted = serve(&data, store).await;
    let all_delivered = crate::common::subscriber::eventually(Duration::from_secs(30), || {
        let got: std::collections::BTreeSet<String> =
            sub.delivered().into_iter().map(|r| r.body).collect();
        accepted.iter().all(|a| got.contains(a))
    })
    .await;
    let got: std::collections::BTreeSet<String> =
        sub.delivered().into_iter().map(|r| r.body).collect();
    let missing: Vec<&String> = accepted.iter().filter(|a| !got.contains(*a)).collect();
    assert!(
        all_delivered,
        "{} of {} accepted events never arrived, e.g. {:?}",
        missing.len(),
        accepted.len(),
        &missing[..missing.len().min(5)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_server_with_its_store_closed_and_kill_9_does_not() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    let server = serve(&data, &[]).await;
    let url = format!("{}/v1/remoteenvironments/kept", server.ports.admin_url());
    let doc = json!({"kind": "RemoteEnvironment", "metadata": {"name": "kept"}});
    assert_eq!(put(&server, url, doc).await, 201);

    let (status, server) = tokio::task::spawn_blocking(move || {
        let mut server = server;
        (server.terminate(), server)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success(), "SIGTERM: {status}");
    assert!(server.log().contains("stopping"), "{}", server.log());
    assert!(
        !server.log().contains('\u{1b}'),
        "terminal colour codes in a log written to a file"
    );
    drop(server);

    let mut server = serve(&data, &[]).await;
    assert!(names(&server).await.contains("kept"));
    assert!(
        !server.log().contains(ace_server::store::NOT_CLOSED_CLEANLY),
        "the store was left open by SIGTERM:\n{}",
        server.log()
    );

    // The same check tells a kill -9 apart.
    server.kill_9();
    let server = serve(&data, &[]).await;
    assert!(names(&server).await.contains("kept"));
    assert!(
        server.log().contains(ace_server::store::NOT_CLOSED_CLEANLY),
        "no sign of the kill in the log:\n{}",
        server.log()
    );
}
