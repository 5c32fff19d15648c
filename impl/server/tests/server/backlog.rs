//! A dead subscriber and a large backlog: the window of owed events moves through the store,
//! the subscription backs off as a whole while its endpoint refuses connections, the limits
//! say what they did, and a full store refuses publishes with 507.

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use crate::common::subscriber::{self, eventually};
use crate::common::{TestServer, fast_retries, start_with};

/// A loopback port nothing listens on (bound, then closed).
async fn dead_port() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
}

/// The value of the first sample of `metric` (with `labels` in its label set) on `/metrics`.
async fn metric(t: &TestServer, metric: &str, labels: &str) -> Option<f64> {
    let text = t
        .send(Method::GET, &t.admin("/metrics"), None, None)
        .await
        .text();
    text.lines()
        .filter(|l| l.starts_with(metric) && l.contains(labels))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

async fn publish_n(t: &TestServer, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let (status, id) = t.publish("ec", "order.created", json!({"n": i})).await;
        assert_eq!(status, 200);
        ids.push(id);
    }
    ids
}

fn delivered_ids(s: &subscriber::Subscriber) -> std::collections::BTreeSet<String> {
    s.delivered_ids().into_iter().collect()
}

#[tokio::test]
async fn a_dead_endpoint_costs_a_probe_at_a_time_and_the_backlog_drains_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = fast_retries(dir.path());
    opts.bus.backlog_window = 8;
    let t = start_with(opts).await;
    let port = dead_port().await;
    t.activate("prod", "ec").await;
    t.subscribe("prod", "orders", &format!("http://{port}/"), "ec", 4, 500)
        .await;
    let ids = publish_n(&t, 200).await;
    let mut status = Value::Null;
    for _ in 0..100 {
        status = t.subscription("prod", "orders").await;
        if !status["status"]["delivery"]["backoff"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivery = &status["status"]["delivery"];
    assert_eq!(
        delivery["backoff"]["reason"],
        json!("connection-failed"),
        "{status}"
    );
    assert_eq!(delivery["pending"], json!(200));
    assert_eq!(
        metric(
            &t,
            "ace_subscription_backoff",
            "reason=\"connection-failed\""
        )
        .await,
        Some(1.0)
    );
    // While it backs off: one probe at a time, spaced by the retry policy (100-400 ms here),
    // not a retry per owed event.
    let before = metric(&t, "ace_deliveries_started_total", "")
        .await
        .unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = metric(&t, "ace_deliveries_started_total", "")
        .await
        .unwrap_or(0.0);
    assert!(
        after - before <= 12.0,
        "{} attempts in 2 s against a dead endpoint",
        after - before
    );
    // The endpoint comes back: the probe succeeds, the backoff ends, everything arrives,
    // read back from the store through a window of 8.
    let sub = subscriber::start_on(&port.to_string(), subscriber::always(200)).await;
    assert!(
        eventually(Duration::from_secs(20), || delivered_ids(&sub).len() == 200).await,
        "{} of 200 delivered",
        delivered_ids(&sub).len()
    );
    assert_eq!(
        delivered_ids(&sub),
        ids.iter()
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
    );
    let status = t.subscription("prod", "orders").await;
    assert!(
        status["status"]["delivery"]["backoff"].is_null(),
        "{status}"
    );
    assert!(
        metric(&t, "ace_backlog_events_read_total", "")
            .await
            .unwrap_or(0.0)
            >= 190.0
    );
    assert_eq!(metric(&t, "ace_store_event_bytes", "").await, Some(0.0));
}

#[tokio::test]
async fn a_backlog_survives_a_restart_and_is_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = fast_retries(dir.path());
    opts.bus.backlog_window = 4;
    let port = dead_port().await;
    let ids = {
        let t = start_with(opts.clone()).await;
        t.activate("prod", "ec").await;
        t.subscribe("prod", "orders", &format!("http://{port}/"), "ec", 1, 500)
            .await;
        let ids = publish_n(&t, 60).await;
        t.server.stop().await;
        ids
    };
    let sub = subscriber::start_on(&port.to_string(), subscriber::always(200)).await;
    let t = start_with(opts).await;
    assert!(
        eventually(Duration::from_secs(20), || delivered_ids(&sub).len() == 60).await,
        "{} of 60 delivered after the restart",
        delivered_ids(&sub).len()
    );
    // With max_inflight 1, in order of acceptance.
    let mut first_seen = Vec::new();
    for id in sub.delivered_ids() {
        if !first_seen.contains(&id) {
            first_seen.push(id);
        }
    }
    assert_eq!(first_seen, ids);
    drop(t);
}

#[tokio::test]
async fn over_the_limit_the_oldest_are_dead_letters_listed_in_pages_and_replayed_by_id() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = fast_retries(dir.path());
    opts.bus.max_backlog_events = 10;
    let t = start_with(opts).await;
    let sub = subscriber::start(subscriber::always(503)).await;
    t.activate("prod", "ec").await;
    t.subscribe("prod", "orders", &sub.url(), "ec", 1, 500)
        .await;
    let ids = publish_n(&t, 15).await;
    let status = t.subscription("prod", "orders").await;
    let delivery = &status["status"]["delivery"];
    assert_eq!(delivery["deadLetteredOverLimit"], json!(5), "{status}");
    assert_eq!(delivery["deadLettered"], json!(5));
    assert_eq!(delivery["pending"], json!(10));
    // Listed in pages of two, oldest first, with their fields from the store.
    let mut listed = Vec::new();
    let mut url = t.admin("/v1/namespaces/prod/deadletters?limit=2");
    loop {
        let r = t.send(Method::GET, &url, None, None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        for d in r.json().as_array().cloned().unwrap_or_default() {
            assert_eq!(d["subscription"], json!("orders"));
            assert_eq!(d["source-id"], json!("ec"));
            assert!(d["accepted-at"].is_string(), "{d}");
            listed.push(d["event-id"].as_str().unwrap_or_default().to_owned());
        }
        match r.headers.get("ace-continue").and_then(|v| v.to_str().ok()) {
            Some(next) => {
                url = t.admin(&format!(
                    "/v1/namespaces/prod/deadletters?limit=2&continue={next}"
                ))
            }
            None => break,
        }
    }
    assert_eq!(listed, ids[..5]);
    for bad in ["limit=0", "limit=x", "continue=nope"] {
        let r = t
            .send(
                Method::GET,
                &t.admin(&format!("/v1/deadletters?{bad}")),
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        assert!(r.json()["error"].is_string(), "{bad}: {}", r.text());
    }
    // Replayed by event id: the store says which dead letter has it.
    let r = t
        .send(
            Method::POST,
            &t.admin("/v1/namespaces/prod/subscriptions/orders/replay"),
            Some(json!({"eventId": ids[2]}).to_string().as_bytes()),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"replayed": 1}));
}

#[tokio::test]
async fn a_full_store_refuses_publishes_with_507_until_subscribers_catch_up() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = fast_retries(dir.path());
    opts.max_store_bytes = 4000;
    full_store_refuses_with_507_until_subscribers_catch_up(opts).await;
}

/// With room for about 4000 bytes of events and a dead subscriber, publishes are taken until
/// it is spent, then refused with 507 (`insufficient_storage`); every event taken is
/// delivered once the subscriber comes back, and then publishes are taken again. Run on
/// every store.
pub(crate) async fn full_store_refuses_with_507_until_subscribers_catch_up(
    opts: ace_server::options::ServeOptions,
) {
    let t = start_with(opts).await;
    let port = dead_port().await;
    t.activate("prod", "ec").await;
    t.subscribe("prod", "orders", &format!("http://{port}/"), "ec", 4, 500)
        .await;
    let mut accepted = 0;
    let refused = loop {
        let (status, _) = t
            .publish("ec", "order.created", json!({"pad": "x".repeat(200)}))
            .await;
        if status != 200 {
            break status;
        }
        accepted += 1;
        assert!(accepted < 100, "the budget never filled");
    };
    assert_eq!(refused, 507);
    let body = json!({"event-type": "order.created", "event-type-version": "v1", "event-time": "2018-10-16T15:00:00Z", "data": {}}).to_string();
    let r = ace_client::request(
        &ace_client::TokioNet,
        Method::POST,
        &t.publish_url(),
        &[("source-id", "ec"), ("content-type", "application/json")],
        Some(body.into_bytes()),
        None,
        Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status, 507);
    assert_eq!(
        r.json()["type"],
        json!("insufficient_storage"),
        "{}",
        r.text()
    );
    assert_eq!(metric(&t, "ace_store_full", "").await, Some(1.0));
    // The subscriber comes back: what it takes leaves the store, and publishes are taken again.
    let sub = subscriber::start_on(&port.to_string(), subscriber::always(200)).await;
    assert!(
        eventually(Duration::from_secs(20), || delivered_ids(&sub).len()
            == accepted)
        .await,
        "{} of {accepted} delivered",
        delivered_ids(&sub).len()
    );
    let mut status = 0;
    for _ in 0..50 {
        status = t.publish("ec", "order.created", json!({})).await.0;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(metric(&t, "ace_store_full", "").await, Some(0.0));
}
