//! Push delivery (seed event-bus; reference §4.2–§4.4): body and headers, retries,
//! max_inflight, activation, namespaces, subscription changes.

use std::time::Duration;

use hyper::Method;
use serde_json::json;

use crate::check;
use crate::check::{Check, CheckResult, Failure};
use crate::context::{Ctx, event, subscription};
use crate::endpoint::{Mailbox, Plan};

/// The checks of this area.
pub fn checks() -> Vec<Check> {
    vec![
        check!(
            "delivery.lambda-flow",
            Delivery,
            Must,
            "seed event-bus \"Trigger a lambda with events\"; reference §4.2",
            "An event published through the gateway reaches an activated subscriber as the JSON of its data, with KYMA-Source-ID (the RE), KYMA-Event-Type, -Version, -ID and -Time.",
            [Resources],
            lambda_flow
        ),
        check!(
            "delivery.subscription-header",
            Delivery,
            Must,
            "reference §4.2",
            "With include_subscription_name_header a push carries Kyma-Subscription: <subscription name>.",
            [Resources, Publish],
            subscription_header
        ),
        check!(
            "delivery.retry-after-5xx",
            Delivery,
            Must,
            "seed event-bus; reference §4.2",
            "A push answered 5xx is retried until the subscriber answers 2xx.",
            [Resources, Publish],
            retry_after_5xx
        ),
        check!(
            "delivery.retry-after-timeout",
            Delivery,
            Must,
            "reference §4.2",
            "A push not answered within push_request_timeout_ms is retried.",
            [Resources, Publish],
            retry_after_timeout
        ),
        check!(
            "delivery.max-inflight",
            Delivery,
            Must,
            "reference §4.2, §4.5",
            "A subscriber never holds more than max_inflight pushes of one subscription at once (Kyma: per push replica).",
            [Resources, Publish],
            max_inflight
        ),
        check!(
            "delivery.requires-activation",
            Delivery,
            Must,
            "seed event-bus; reference §4.3, §4.4",
            "Nothing is pushed to a subscription whose namespace has no EventActivation for the source.",
            [Resources, Publish],
            requires_activation
        ),
        check!(
            "delivery.namespaces",
            Delivery,
            Must,
            "reference §4.2",
            "Subscriptions of the same name in two activated namespaces both receive every event.",
            [Resources, Publish],
            namespaces
        ),
        check!(
            "delivery.activation-removed",
            Delivery,
            Must,
            "reference §4.4",
            "After the EventActivation is deleted, new events are not pushed to the namespace's subscriptions.",
            [Resources, Publish],
            activation_removed
        ),
        check!(
            "delivery.subscription-update",
            Delivery,
            Should,
            "reference §4.3 (Kyma could lose events on an update)",
            "Updating a subscription's endpoint loses no pending event: each reaches the new endpoint.",
            [Resources, Publish],
            subscription_update
        ),
        check!(
            "delivery.backlog-beyond-memory",
            Delivery,
            Must,
            "seed event-bus (at-least-once); issue: a dead subscriber must not take ACE down",
            "Every event of a backlog larger than what the deployment keeps in memory (ACE: --backlog-window) reaches the subscriber once it answers again.",
            [Resources, Publish],
            backlog_beyond_memory
        ),
        check!(
            "delivery.backlog-limit",
            Delivery,
            Must,
            "reference §4.2 (Kyma 0.5 kept a channel's events until maxAge, whatever one subscriber owed); ACE's backlog limit, docs/serve.md",
            "Beyond the deployment's backlog limit a subscription's oldest owed events become dead letters, counted in its status (deadLetteredOverLimit) and listed, never dropped silently; the newer ones are still delivered.",
            [Resources, Publish, BacklogLimit],
            backlog_limit
        ),
        check!(
            "delivery.endpoint-is-a-url",
            Delivery,
            Should,
            "reference §4.5 (Kyma's CRD only asked for ^(https?)://.+$)",
            "A Subscription whose endpoint matches the CRD's pattern but is not a URL (http://[) is refused when applied, instead of failing every push.",
            [Resources],
            endpoint_is_a_url
        ),
    ]
}

async fn endpoint_is_a_url(cx: &Ctx) -> CheckResult {
    let (ns, name) = (cx.name("ns"), cx.name("sub"));
    let doc = subscription(&ns, &name, &cx.name("src"), "http://[", 1, 1000);
    let resources = cx.resources()?;
    let applied = resources.apply(&doc).await;
    if applied.is_ok() {
        let _ = resources.delete("Subscription", Some(&ns), &name).await;
    }
    match (applied, cx.kyma()) {
        (Err(_), false) | (Ok(_), true) => Ok(()),
        (Ok(_), false) => Err(Failure::new(
            "the Subscription refused",
            "it was accepted with the endpoint http://[",
        )),
        (Err(e), true) => Err(Failure::new(
            "Kyma 0.5: the Subscription accepted (the CRD's pattern holds)",
            e,
        )),
    }
}

/// A namespace with `source` activated and a subscription pushing to a fresh mailbox.
struct Setup {
    ns: String,
    source: String,
    mailbox: String,
    sub: String,
}

async fn setup(cx: &Ctx, plan: Plan, max_inflight: u32, timeout_ms: u32) -> Result<Setup, Failure> {
    let s = Setup {
        ns: cx.name("ns"),
        source: cx.name("src"),
        mailbox: cx.name("box"),
        sub: cx.name("sub"),
    };
    cx.endpoint.open(&s.mailbox, plan);
    cx.activate(&s.ns, &s.source).await?;
    cx.subscribe(
        &s.ns,
        &s.sub,
        &s.source,
        &s.mailbox,
        max_inflight,
        timeout_ms,
    )
    .await?;
    Ok(s)
}

async fn publish_n(cx: &Ctx, source: &str, n: usize) -> Result<Vec<String>, Failure> {
    let mut ids = Vec::new();
    for i in 0..n {
        let r = cx.publish(source, &event(json!({"n": i}))).await?;
        r.expect_status(200, "published")?;
        ids.push(r.json()["event-id"].as_str().unwrap_or_default().to_owned());
    }
    Ok(ids)
}

fn delivered_ids(m: &Mailbox) -> Vec<String> {
    let mut ids: Vec<String> = m
        .delivered()
        .map(|r| r.header("kyma-event-id").unwrap_or_default().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

fn missing(m: &Mailbox, ids: &[String], what: &str) -> Failure {
    Failure::new(
        format!("{what}: {} events delivered: {ids:?}", ids.len()),
        format!(
            "{} pushes ({} answered 2xx), ids {:?}",
            m.pushes.len(),
            m.delivered().count(),
            delivered_ids(m)
        ),
    )
}

async fn expect_all(
    cx: &Ctx,
    mailbox: &str,
    ids: &[String],
    what: &str,
) -> Result<Mailbox, Failure> {
    let want: Vec<String> = {
        let mut w = ids.to_vec();
        w.sort();
        w
    };
    let m = cx
        .endpoint
        .wait_for(mailbox, cx.target.delivery_timeout(), |m| {
            want.iter().all(|id| delivered_ids(m).contains(id))
        })
        .await;
    if want.iter().all(|id| delivered_ids(&m).contains(id)) {
        Ok(m)
    } else {
        Err(missing(&m, ids, what))
    }
}

async fn expect_nothing(cx: &Ctx, mailbox: &str, what: &str) -> CheckResult {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = cx.endpoint.mailbox(mailbox);
    if m.pushes.is_empty() {
        Ok(())
    } else {
        Err(Failure::new(
            format!("no push: {what}"),
            format!("{} pushes, ids {:?}", m.pushes.len(), delivered_ids(&m)),
        ))
    }
}

async fn lambda_flow(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let id = cx.onboard(&re).await?;
    let (ns, mailbox) = (cx.name("ns"), cx.name("box"));
    cx.endpoint.open(&mailbox, Plan::default());
    cx.map(&ns, &re).await?;
    cx.activate(&ns, &re).await?;
    cx.subscribe(&ns, &cx.name("lambda"), &re, &mailbox, 1, 1000)
        .await?;
    let sent = json!({"orderCode": "76272727"});
    let mut ev = event(sent.clone());
    ev["event-id"] = json!("d4a1e0a4-0c4c-4f9e-8f3e-7d2f1b0e5a11");
    cx.gateway_call(&id, Method::POST, &format!("/{re}/v1/events"), Some(&ev))
        .await?
        .expect_status(200, "published")?;
    let m = expect_all(
        cx,
        &mailbox,
        &["d4a1e0a4-0c4c-4f9e-8f3e-7d2f1b0e5a11".into()],
        "the lambda's event",
    )
    .await?;
    let Some(push) = m.delivered().next() else {
        return Err(missing(&m, &[], "one push"));
    };
    let body: serde_json::Value = serde_json::from_slice(&push.body).unwrap_or_default();
    let headers = [
        ("kyma-source-id", re.as_str()),
        ("kyma-event-type", "order.created"),
        ("kyma-event-type-version", "v1"),
        ("kyma-event-id", "d4a1e0a4-0c4c-4f9e-8f3e-7d2f1b0e5a11"),
        ("kyma-event-time", "2018-11-02T22:08:41+00:00"),
    ];
    let content_type_ok = push
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"));
    if body != sent || !content_type_ok || headers.iter().any(|(k, v)| push.header(k) != Some(v)) {
        return Err(Failure::new(
            format!(
                "POST with body {sent} and headers {headers:?}, Content-Type: application/json"
            ),
            format!(
                "body {} and headers {:?}",
                String::from_utf8_lossy(&push.body),
                push.headers
            ),
        ));
    }
    Ok(())
}

async fn subscription_header(cx: &Ctx) -> CheckResult {
    let s = setup(cx, Plan::default(), 1, 1000).await?;
    let ids = publish_n(cx, &s.source, 1).await?;
    let m = expect_all(cx, &s.mailbox, &ids, "the event").await?;
    let names: Vec<_> = m
        .pushes
        .iter()
        .map(|p| p.header("kyma-subscription").unwrap_or_default().to_owned())
        .collect();
    if names.iter().any(|n| *n != s.sub) {
        return Err(Failure::new(
            format!("Kyma-Subscription: {}", s.sub),
            format!("{names:?}"),
        ));
    }
    Ok(())
}

async fn retry_after_5xx(cx: &Ctx) -> CheckResult {
    let plan = Plan {
        fail_first: 2,
        fail_status: 503,
        ..Plan::default()
    };
    let s = setup(cx, plan, 1, 1000).await?;
    let ids = publish_n(cx, &s.source, 1).await?;
    let m = expect_all(cx, &s.mailbox, &ids, "delivered after two 503s").await?;
    if m.pushes.len() < 3 {
        return Err(missing(&m, &ids, "three attempts"));
    }
    Ok(())
}

async fn retry_after_timeout(cx: &Ctx) -> CheckResult {
    let plan = Plan {
        first_delay: Duration::from_millis(1500),
        ..Plan::default()
    };
    let s = setup(cx, plan, 1, 300).await?;
    let ids = publish_n(cx, &s.source, 1).await?;
    expect_all(cx, &s.mailbox, &ids, "delivered after a timeout").await?;
    let m = cx
        .endpoint
        .wait_for(&s.mailbox, Duration::from_secs(3), |m| m.pushes.len() >= 2)
        .await;
    if m.pushes.len() < 2 {
        return Err(missing(
            &m,
            &ids,
            "a second attempt after the first timed out",
        ));
    }
    Ok(())
}

async fn max_inflight(cx: &Ctx) -> CheckResult {
    let plan = Plan {
        delay: Duration::from_millis(150),
        ..Plan::default()
    };
    let s = setup(cx, plan, 2, 2000).await?;
    let ids = publish_n(cx, &s.source, 8).await?;
    let m = expect_all(cx, &s.mailbox, &ids, "all eight delivered").await?;
    let limit = if cx.kyma() { 4 } else { 2 };
    if m.max_in_flight > limit {
        return Err(Failure::new(
            format!("at most {limit} pushes at once"),
            format!("{} at once", m.max_in_flight),
        ));
    }
    Ok(())
}

async fn requires_activation(cx: &Ctx) -> CheckResult {
    let (ns, source, mailbox) = (cx.name("ns"), cx.name("src"), cx.name("box"));
    cx.endpoint.open(&mailbox, Plan::default());
    cx.subscribe(&ns, &cx.name("sub"), &source, &mailbox, 1, 1000)
        .await?;
    let other_ns = cx.name("ns");
    cx.activate(&other_ns, &source).await?;
    publish_n(cx, &source, 2).await?;
    expect_nothing(
        cx,
        &mailbox,
        "the namespace has no activation (another namespace has)",
    )
    .await?;
    cx.activate(&ns, &source).await?;
    let ids = publish_n(cx, &source, 1).await?;
    expect_all(cx, &mailbox, &ids, "delivered once activated").await?;
    Ok(())
}

async fn namespaces(cx: &Ctx) -> CheckResult {
    let source = cx.name("src");
    let name = cx.name("sub");
    let mut boxes = Vec::new();
    for _ in 0..2 {
        let (ns, mailbox) = (cx.name("ns"), cx.name("box"));
        cx.endpoint.open(&mailbox, Plan::default());
        cx.activate(&ns, &source).await?;
        cx.apply(subscription(
            &ns,
            &name,
            &source,
            &cx.endpoint.push_url(&mailbox),
            1,
            1000,
        ))
        .await?;
        boxes.push(mailbox);
    }
    let ids = publish_n(cx, &source, 2).await?;
    for mailbox in &boxes {
        expect_all(cx, mailbox, &ids, "both namespaces").await?;
    }
    Ok(())
}

async fn activation_removed(cx: &Ctx) -> CheckResult {
    let s = setup(cx, Plan::default(), 1, 1000).await?;
    let ids = publish_n(cx, &s.source, 1).await?;
    expect_all(cx, &s.mailbox, &ids, "delivered while activated").await?;
    cx.delete("EventActivation", Some(&s.ns), &s.source).await?;
    let before = cx.endpoint.mailbox(&s.mailbox).pushes.len();
    publish_n(cx, &s.source, 2).await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = cx.endpoint.mailbox(&s.mailbox);
    if m.pushes.len() > before {
        return Err(Failure::new(
            "no push after the activation was deleted",
            format!("{} more pushes", m.pushes.len() - before),
        ));
    }
    Ok(())
}

async fn subscription_update(cx: &Ctx) -> CheckResult {
    let plan = Plan {
        fail_first: usize::MAX,
        ..Plan::default()
    };
    let s = setup(cx, plan, 4, 1000).await?;
    let ids = publish_n(cx, &s.source, 3).await?;
    let old = cx
        .endpoint
        .wait_for(&s.mailbox, cx.target.delivery_timeout(), |m| {
            m.pushes.len() >= 3
        })
        .await;
    if old.pushes.len() < 3 {
        return Err(missing(
            &old,
            &ids,
            "three attempts at the failing endpoint",
        ));
    }
    let new_box = cx.name("box");
    cx.endpoint.open(&new_box, Plan::default());
    cx.apply(subscription(
        &s.ns,
        &s.sub,
        &s.source,
        &cx.endpoint.push_url(&new_box),
        4,
        1000,
    ))
    .await?;
    expect_all(
        cx,
        &new_box,
        &ids,
        "every pending event at the new endpoint",
    )
    .await?;
    Ok(())
}

/// Events the backlog check publishes while its subscriber fails every push.
pub const BACKLOG_EVENTS: usize = 40;

async fn backlog_beyond_memory(cx: &Ctx) -> CheckResult {
    // The subscriber answers 503 to the first pushes: a backlog builds up, then drains.
    let plan = Plan {
        fail_first: BACKLOG_EVENTS,
        fail_status: 503,
        ..Plan::default()
    };
    let s = setup(cx, plan, 4, 1000).await?;
    let ids = publish_n(cx, &s.source, BACKLOG_EVENTS).await?;
    expect_all(cx, &s.mailbox, &ids, "every event of the backlog").await?;
    Ok(())
}

async fn backlog_limit(cx: &Ctx) -> CheckResult {
    let Some(limit) = cx.target.max_backlog_events else {
        return Err(Failure::new("a backlog limit", "none given"));
    };
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let over = 3;
    // A subscriber that fails every push until the check is done.
    let plan = Plan {
        fail_first: usize::MAX,
        fail_status: 503,
        ..Plan::default()
    };
    let s = setup(cx, plan, 1, 1000).await?;
    let ids = publish_n(cx, &s.source, limit + over).await?;
    let resources = cx.resources()?;
    let status = resources
        .get("Subscription", Some(&s.ns), &s.sub)
        .await
        .map_err(|e| Failure::new("the Subscription", e))?
        .unwrap_or_default();
    let delivery = &status["status"]["delivery"];
    let counted = delivery["deadLetteredOverLimit"].as_u64().unwrap_or(0);
    let pending = delivery["pending"].as_u64().unwrap_or(u64::MAX);
    let step = (limit / 1024) as u64;
    if counted < over as u64 || counted > over as u64 + step || pending > limit as u64 {
        return Err(Failure::new(
            format!(
                "status.delivery.deadLetteredOverLimit {over} (or up to {step} more) and pending at most {limit}"
            ),
            format!("status.delivery {delivery}"),
        ));
    }
    let listed = resources
        .dead_letters(&s.ns)
        .await
        .map_err(|e| Failure::new("the namespace's dead letters", e))?;
    let listed: Vec<&str> = listed
        .as_array()
        .map(|a| a.iter().filter_map(|d| d["event-id"].as_str()).collect())
        .unwrap_or_default();
    let oldest = &ids[..over];
    if !oldest.iter().all(|id| listed.contains(&id.as_str())) {
        return Err(Failure::new(
            format!("the oldest {over} events listed as dead letters: {oldest:?}"),
            format!("dead letters {listed:?}"),
        ));
    }
    Ok(())
}
