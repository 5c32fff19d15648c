//! The operator: creates the REs, activations and subscriptions, and keeps changing them
//! under traffic, reading every acknowledged write back.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use super::*;

/// The Subscription resource of `sub`, pushing to `endpoint`.
pub(super) fn subscription(sub: &Sub, endpoint: &str) -> Value {
    json!({"kind": "Subscription", "metadata": {"name": sub.name}, "spec": {
        "endpoint": endpoint, "include_subscription_name_header": true,
        "max_inflight": sub.max_inflight, "push_request_timeout_ms": PUSH_TIMEOUT_MS,
        "event_type": "order.created", "event_type_version": "v1", "source_id": sub.source}})
}

pub(super) fn subscription_url(sub: &Sub) -> String {
    format!(
        "http://ace:8081/v1/namespaces/{}/subscriptions/{}",
        sub.namespace, sub.name
    )
}

pub(super) fn re_resource(name: &str) -> Value {
    json!({"kind": "RemoteEnvironment", "metadata": {"name": name}, "spec": {"description": "simulated"}})
}

/// The operator: creates the REs, activations and subscriptions, then, while the solutions
/// publish, moves subscription `orders` to its subscriber's other port and back, updates RE
/// `ec`, removes namespace stage's activation for a while, and creates and deletes an
/// environment mapping, reading each acknowledged write back.
pub(super) async fn operator(actor: Actor) -> Result<(), Box<dyn std::error::Error>> {
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
