//! The bug zoo in the shell: `ack-before-durable` lives in the driver, so it is shown on a
//! real server (the model's bugs are shown in `model/tests/bug_zoo.rs`, the proxy's token
//! cache in `tests/proxy.rs`).

#![cfg(feature = "bug-zoo")]

use crate::common::*;
use ace_model::bugs::{Bug, Bugs};
use serde_json::json;

/// Publishes one event that cannot be delivered (nobody listens at the endpoint), stops the
/// server in-process right after the 200, starts it again on the same data directory, and
/// returns how many events the subscription is still owed.
async fn owed_after_a_stop_right_after_the_200(bugs: Bugs) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = fast_retries(dir.path());
    opts.bugs = bugs;
    let s = start_with(opts.clone()).await;
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(s.activate("ns", "shop").await.status, 201);
    let endpoint = format!("http://{down}/");
    assert_eq!(
        s.subscribe("ns", "orders", &endpoint, "shop", 10, 500)
            .await
            .status,
        201
    );
    assert_eq!(s.publish("shop", "order.created", json!(1)).await.0, 200);
    s.server.stop().await;
    let s = start_with(opts).await;
    s.subscription("ns", "orders").await["status"]["delivery"]["pending"].clone()
}

#[tokio::test]
async fn ack_before_durable_loses_an_answered_event_in_a_stop() {
    assert_eq!(owed_after_a_stop_right_after_the_200(Bugs::NONE).await, 1);
    assert_eq!(
        owed_after_a_stop_right_after_the_200(Bug::AckBeforeDurable.into()).await,
        0
    );
}
