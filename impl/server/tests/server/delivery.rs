//! At-least-once push delivery by `ace serve`: to a real local subscriber over HTTP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::common::subscriber::{self, always, eventually};
use crate::common::*;
use hyper::Method;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn an_event_published_through_the_gateway_reaches_the_subscriber_with_its_headers() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start_with(fast_retries(dir.path())).await;
    let sub = subscriber::start(always(200)).await;
    s.apply_re("ec-default").await;
    let me = s.onboard("ec-default").await;
    assert_eq!(s.activate("production", "ec-default").await.status, 201);
    assert_eq!(
        s.subscribe("production", "lambda", &sub.url(), "ec-default", 400, 2000)
            .await
            .status,
        201
    );
    let event = json!({"event-type": "order.created", "event-type-version": "v1", "event-id": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
                       "event-time": "2018-10-16T15:00:00Z", "data": {"orderCode": "4caad296"}});
    let r = s
        .send(
            Method::POST,
            &s.gateway("/ec-default/v1/events"),
            Some(event.to_string().as_bytes()),
            Some(&me),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            200,
            json!({"event-id": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"})
        )
    );
    assert!(
        eventually(WAIT, || sub.delivered().len() == 1).await,
        "not delivered"
    );
    let got = &sub.delivered()[0];
    assert_eq!(got.body, r#"{"orderCode":"4caad296"}"#);
    let h = |n: &str| {
        got.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(h("content-type"), "application/json");
    assert_eq!(h("kyma-source-id"), "ec-default");
    assert_eq!(h("kyma-event-type"), "order.created");
    assert_eq!(h("kyma-event-type-version"), "v1");
    assert_eq!(h("kyma-event-id"), "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa");
    assert_eq!(h("kyma-event-time"), "2018-10-16T15:00:00Z");
    assert_eq!(h("kyma-subscription"), "lambda");
    let status = s.subscription("production", "lambda").await;
    assert_eq!(status["status"]["conditions"][0]["status"], "True");
    assert!(
        eventually_status(
            &s,
            "production",
            "lambda",
            |v| v["status"]["delivery"]["delivered"] == 1
        )
        .await
    );
    let metrics = s
        .send(Method::GET, &s.admin("/metrics"), None, None)
        .await
        .text();
    assert!(metrics.contains(r#"ace_subscription_deliveries{namespace="production",subscription="lambda",figure="delivered"} 1"#), "{metrics}");
}

#[tokio::test]
async fn a_500_is_retried_until_a_2xx() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start_with(fast_retries(dir.path())).await;
    let sub = subscriber::start(Arc::new(|n| {
        (if n < 2 { 500 } else { 200 }, Duration::ZERO)
    }))
    .await;
    s.activate("ns", "shop").await;
    s.subscribe("ns", "orders", &sub.url(), "shop", 10, 1000)
        .await;
    assert_eq!(s.publish("shop", "order.created", json!("x")).await.0, 200);
    assert!(eventually(WAIT, || sub.delivered().len() == 1).await);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        sub.received().len(),
        3,
        "two failures, one success, nothing after the 2xx"
    );
    let status = s.subscription("ns", "orders").await;
    assert_eq!(status["status"]["delivery"]["delivered"], 1);
    assert_eq!(status["status"]["delivery"]["retried"], 2);
    assert_eq!(status["status"]["delivery"]["pending"], 0);
}

#[tokio::test]
async fn a_subscriber_slower_than_the_timeout_gets_the_event_again() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start_with(fast_retries(dir.path())).await;
    let sub = subscriber::start(Arc::new(|n| {
        (
            200,
            if n == 0 {
                Duration::from_millis(1500)
            } else {
                Duration::ZERO
            },
        )
    }))
    .await;
    s.activate("ns", "shop").await;
    s.subscribe("ns", "orders", &sub.url(), "shop", 10, 200)
        .await;
    s.publish("shop", "order.created", json!({"a": 1})).await;
    assert!(
        eventually(WAIT, || sub.received().len() >= 2).await,
        "the timed-out attempt is retried"
    );
    let status = eventually_status(&s, "ns", "orders", |v| {
        v["status"]["delivery"]["delivered"] == 1 && v["status"]["delivery"]["pending"] == 0
    })
    .await;
    assert!(status, "acknowledged by the second attempt");
}

#[tokio::test]
async fn a_subscriber_that_is_down_gets_the_event_once_it_is_up() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start_with(fast_retries(dir.path())).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    s.activate("ns", "shop").await;
    s.subscribe(
        "ns",
        "orders",
        &format!("http://127.0.0.1:{port}/"),
        "shop",
        10,
        500,
    )
    .await;
    s.publish("shop", "order.created", json!(1)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let sub = subscriber::start_on(&format!("127.0.0.1:{port}"), always(200)).await;
    assert!(
        eventually(WAIT, || sub.delivered().len() == 1).await,
        "delivered after the subscriber came up"
    );
}

#[tokio::test]
async fn max_inflight_is_never_exceeded_at_the_subscriber() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start_with(fast_retries(dir.path())).await;
    let sub = subscriber::start(Arc::new(|_| (200, Duration::from_millis(100)))).await;
    s.activate("ns", "shop").await;
    s.subscribe("ns", "orders", &sub.url(), "shop", 2, 2000)
        .await;
    for i in 0..12 {
        assert_eq!(s.publish("shop", "order.created", json!(i)).await.0, 200);
    }
    assert!(
        eventually(WAIT, || sub.delivered().len() == 12).await,
        "all delivered: {}",
        sub.delivered().len()
    );
    assert_eq!(
        sub.max_concurrent.load(Ordering::SeqCst),
        2,
        "at most max_inflight at once, and the limit is used"
    );
}

#[tokio::test]
async fn subscriptions_of_the_same_name_in_two_namespaces_both_receive() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start_with(fast_retries(dir.path())).await;
    let (a, b) = (
        subscriber::start(always(200)).await,
        subscriber::start(always(200)).await,
    );
    for (ns, sub) in [("stage", &a), ("production", &b)] {
        s.activate(ns, "shop").await;
        s.subscribe(ns, "orders", &sub.url(), "shop", 10, 1000)
            .await;
    }
    s.publish("shop", "order.created", json!("both")).await;
    assert!(
        eventually(WAIT, || a.delivered().len() == 1
            && b.delivered().len() == 1)
        .await
    );
}

#[tokio::test]
async fn nothing_is_delivered_without_an_activation() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start_with(fast_retries(dir.path())).await;
    let sub = subscriber::start(always(200)).await;
    s.subscribe("ns", "orders", &sub.url(), "shop", 10, 1000)
        .await;
    assert_eq!(
        s.publish("shop", "order.created", json!("dark")).await.0,
        200
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(sub.received().is_empty());
    assert_eq!(
        s.subscription("ns", "orders").await["status"]["conditions"][0]["status"],
        "False"
    );
    // Activating later does not deliver what was published while inactive.
    s.activate("ns", "shop").await;
    s.publish("shop", "order.created", json!("lit")).await;
    assert!(eventually(WAIT, || sub.delivered().len() == 1).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sub.delivered()[0].body, r#""lit""#);
    assert_eq!(sub.received().len(), 1);
}

#[tokio::test]
async fn changing_the_endpoint_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start_with(fast_retries(dir.path())).await;
    let (broken, fixed) = (
        subscriber::start(always(503)).await,
        subscriber::start(always(200)).await,
    );
    s.activate("ns", "shop").await;
    s.subscribe("ns", "orders", &broken.url(), "shop", 5, 1000)
        .await;
    for i in 0..5 {
        s.publish("shop", "order.created", json!(i)).await;
    }
    assert!(eventually(WAIT, || broken.received().len() >= 5).await);
    assert_eq!(
        s.subscribe("ns", "orders", &fixed.url(), "shop", 5, 1000)
            .await
            .status,
        200,
        "an update"
    );
    for i in 5..8 {
        s.publish("shop", "order.created", json!(i)).await;
    }
    assert!(
        eventually(WAIT, || fixed.delivered().len() == 8).await,
        "got {}",
        fixed.delivered().len()
    );
    let mut bodies: Vec<String> = fixed.delivered().iter().map(|r| r.body.clone()).collect();
    bodies.sort();
    assert_eq!(bodies, (0..8).map(|i| i.to_string()).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_oversized_event_gets_413() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start_with(fast_retries(dir.path())).await;
    // Bodies well past the socket buffers: the client is still writing when the server has
    // decided, and must still read the 413 (the server drains refused bodies up to 1 MiB).
    for size in [70 * 1024, 512 * 1024, 900 * 1024] {
        let big = json!({"event-type": "order.created", "event-type-version": "v1", "event-time": "2018-10-16T15:00:00Z", "data": "x".repeat(size)}).to_string();
        let r = s
            .send(Method::POST, &s.publish_url(), Some(big.as_bytes()), None)
            .await;
        assert_eq!(r.status, 413);
        assert_eq!(r.json()["type"], "request_body_too_large");
    }
    s.apply_re("ec").await;
    let tls = s.onboard("ec").await;
    for round in 0..40 {
        let size = [70 * 1024, 300 * 1024, 900 * 1024][round % 3];
        let big = json!({"event-type": "order.created", "event-type-version": "v1", "event-time": "2018-10-16T15:00:00Z", "data": "x".repeat(size)}).to_string();
        let r = s
            .send(
                Method::POST,
                &s.gateway("/ec/v1/events"),
                Some(big.as_bytes()),
                Some(&tls),
            )
            .await;
        assert_eq!(r.status, 413, "{}", r.text());
    }
}

async fn eventually_status(
    s: &TestServer,
    ns: &str,
    name: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> bool {
    let start = tokio::time::Instant::now();
    while start.elapsed() < WAIT {
        if check(&s.subscription(ns, name).await) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn bodies_beyond_the_memory_budget_are_read_back_from_disk_and_delivered_intact() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = fast_retries(dir.path());
    opts.bus.max_resident_body_bytes = 64;
    let s = start_with(opts).await;
    let sub = subscriber::start(always(200)).await;
    s.activate("ns", "shop").await;
    s.subscribe("ns", "orders", &sub.url(), "shop", 4, 1000)
        .await;
    let mut sent = Vec::new();
    for i in 0..10 {
        let data = json!({"n": i, "padding": "x".repeat(40)});
        assert_eq!(
            s.publish("shop", "order.created", data.clone()).await.0,
            200
        );
        sent.push(data.to_string());
    }
    assert!(
        eventually(WAIT, || sub.delivered().len() == 10).await,
        "got {}",
        sub.delivered().len()
    );
    let mut got: Vec<String> = sub.delivered().into_iter().map(|r| r.body).collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent);
}

#[tokio::test]
async fn pushes_one_after_another_reuse_one_connection() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start_with(fast_retries(dir.path())).await;
    let sub = subscriber::start(always(200)).await;
    s.activate("ns", "shop").await;
    s.subscribe("ns", "orders", &sub.url(), "shop", 10, 1000)
        .await;
    for i in 0..10 {
        assert_eq!(s.publish("shop", "order.created", json!(i)).await.0, 200);
        assert!(eventually(WAIT, || sub.delivered().len() == i + 1).await);
    }
    assert_eq!(sub.connections.load(Ordering::SeqCst), 1);
}

/// A subscriber that answers every request 200 with keep-alive and then, 50 ms later,
/// closes the connection without saying so (as servers with a short idle timeout do).
/// Returns its URL and its counts of connections and requests.
async fn subscriber_closing_idle_connections() -> (String, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "http://{}/",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let (connections, requests) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (c, r) = (connections.clone(), requests.clone());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            c.fetch_add(1, Ordering::SeqCst);
            let r = r.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                // The whole request: headers, then `content-length` bytes of body.
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&got).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if got.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                r.fetch_add(1, Ordering::SeqCst);
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            });
        }
    });
    (url, connections, requests)
}

#[tokio::test]
async fn a_connection_the_subscriber_closed_while_idle_costs_no_failed_attempt() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start_with(fast_retries(dir.path())).await;
    let (url, connections, requests) = subscriber_closing_idle_connections().await;
    s.activate("ns", "shop").await;
    s.subscribe("ns", "orders", &url, "shop", 10, 1000).await;
    for i in 0..3 {
        assert_eq!(s.publish("shop", "order.created", json!(i)).await.0, 200);
        assert!(eventually(WAIT, || requests.load(Ordering::SeqCst) == i + 1).await);
        // Long enough for the subscriber to have closed the connection.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        eventually_status(&s, "ns", "orders", |v| {
            v["status"]["delivery"]["delivered"] == 3
        })
        .await
    );
    let status = s.subscription("ns", "orders").await;
    assert_eq!(
        status["status"]["delivery"]["retried"], 0,
        "a push on a connection the subscriber had closed counted as a failure"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 3);
    assert_eq!(connections.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn the_host_header_is_the_endpoints_host_and_port_without_its_user_information() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start_with(fast_retries(dir.path())).await;
    let sub = subscriber::start(always(200)).await;
    s.activate("ns", "shop").await;
    let endpoint = format!("http://user:secret@{}/hook?x=1", sub.addr);
    s.subscribe("ns", "orders", &endpoint, "shop", 10, 1000)
        .await;
    assert_eq!(s.publish("shop", "order.created", json!(1)).await.0, 200);
    assert!(eventually(WAIT, || sub.delivered().len() == 1).await);
    let got = &sub.delivered()[0];
    assert_eq!(
        got.headers.get("host").and_then(|v| v.to_str().ok()),
        Some(sub.addr.to_string().as_str())
    );
    assert!(
        !format!("{:?}", got.headers).contains("secret"),
        "{:?}",
        got.headers
    );
}
