//! The Event Service and the publish API (reference §3, §4.1), with the model predicting the
//! validation answers.

use hyper::Method;
use serde_json::{Value, json};

use crate::check;
use crate::check::{Check, CheckResult};
use crate::context::{Ctx, event};
use crate::oracle::Oracle;

/// The checks of this area.
pub fn checks() -> Vec<Check> {
    vec![
        check!(
            "events.gateway.accepted",
            Events,
            Must,
            "seed event-bus; reference §3.4",
            "POST /{re}/v1/events with a valid event answers 200 {\"event-id\"}: the client's id, or a generated UUID.",
            [Resources],
            gateway_accepted
        ),
        check!(
            "events.gateway.validation",
            Events,
            Must,
            "reference §3.3",
            "Invalid events on the gateway get 400 with the body the model predicts, checks in the documented order.",
            [Resources],
            gateway_validation
        ),
        check!(
            "events.publish.validation",
            Events,
            Must,
            "reference §4.1",
            "Invalid events on the publish API get the status and body the model predicts.",
            [Publish],
            publish_validation
        ),
        check!(
            "events.publish.source-id",
            Events,
            Must,
            "reference §4.1",
            "The publish API takes the source from the Source-Id header; a source-id in the payload wins.",
            [Publish],
            publish_source
        ),
        check!(
            "events.size-limit",
            Events,
            Should,
            "reference §7 (Kyma 0.5 had no limit)",
            "An event over 64 KiB gets 413 request_body_too_large.",
            [Resources],
            size_limit
        ),
    ]
}

async fn gateway_accepted(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let id = cx.onboard(&re).await?;
    let path = format!("/{re}/v1/events");
    let r = cx
        .gateway_call(
            &id,
            Method::POST,
            &path,
            Some(&event(json!({"orderCode": "1"}))),
        )
        .await?;
    r.expect_status(200, "accepted")?;
    let generated = r.json()["event-id"].as_str().unwrap_or_default().to_owned();
    if generated.len() != 36 {
        return Err(r.fail("200 {\"event-id\": \"<uuid>\"}".into()));
    }
    let mut with_id = event(json!("x"));
    with_id["event-id"] = json!("31109198-4d69-4ae0-972d-76117f3748c8");
    cx.gateway_call(&id, Method::POST, &path, Some(&with_id))
        .await?
        .expect(
            200,
            &json!({"event-id": "31109198-4d69-4ae0-972d-76117f3748c8"}),
            "the client's id",
        )?;
    Ok(())
}

/// Invalid events for the validation matrices.
pub fn invalid_events() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases: Vec<(&'static str, Vec<u8>)> =
        vec![("empty body", Vec::new()), ("not JSON", b"{".to_vec())];
    let mut with = |what: &'static str, f: &dyn Fn(&mut Value)| {
        let mut v = event(json!({"a": 1}));
        f(&mut v);
        cases.push((what, v.to_string().into_bytes()));
    };
    with("no event-type", &|v| {
        v.as_object_mut().map(|o| o.remove("event-type"));
    });
    with("empty version", &|v| v["event-type-version"] = json!(""));
    with("bad version", &|v| v["event-type-version"] = json!("v-1!"));
    with("no time", &|v| {
        v.as_object_mut().map(|o| o.remove("event-time"));
    });
    with("bad time", &|v| v["event-time"] = json!("yesterday"));
    with("bad id", &|v| v["event-id"] = json!("not-a-uuid"));
    with("null data", &|v| v["data"] = Value::Null);
    with("empty string data", &|v| v["data"] = json!(""));
    with("bad event-type", &|v| {
        v["event-type"] = json!("order..created")
    });
    with("wrong type", &|v| v["event-time"] = json!(5));
    cases
}

async fn gateway_validation(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let id = cx.onboard(&re).await?;
    let mut oracle = Oracle::new(&re, crate::target::first_url(&cx.target.gateway));
    let path = format!("/{re}/v1/events");
    for (what, body) in invalid_events() {
        let got = cx
            .gateway_raw(&id, Method::POST, &path, Some(&body))
            .await?;
        got.expect_predicted(oracle.gateway_event(&body), what)?;
    }
    Ok(())
}

async fn publish_validation(cx: &Ctx) -> CheckResult {
    let url = cx.publish_url("/v1/events")?;
    let mut oracle = Oracle::new("conformance", crate::target::first_url(&cx.target.gateway));
    let source = cx.name("src");
    let mut cases = invalid_events();
    cases.push(("bad source-id in payload", {
        let mut v = event(json!(1));
        v["source-id"] = json!("-bad-");
        v.to_string().into_bytes()
    }));
    for (what, body) in cases {
        let got = cx
            .call(
                Method::POST,
                &url,
                &[("content-type", "application/json"), ("source-id", &source)],
                Some(&body),
                None,
            )
            .await?;
        got.expect_predicted(oracle.publish(Some(&source), &body), what)?;
    }
    for (what, source_header) in [
        ("no source at all", None),
        ("bad Source-Id header", Some("9bad")),
    ] {
        let body = event(json!(1)).to_string().into_bytes();
        let mut headers = vec![("content-type", "application/json")];
        if let Some(s) = source_header {
            headers.push(("source-id", s));
        }
        let got = cx
            .call(Method::POST, &url, &headers, Some(&body), None)
            .await?;
        got.expect_predicted(oracle.publish(source_header, &body), what)?;
    }
    let got = cx.call(Method::GET, &url, &[], None, None).await?;
    got.expect_status(400, "a GET refused with 400 bad_request")?;
    Ok(())
}

async fn publish_source(cx: &Ctx) -> CheckResult {
    let ns = cx.name("ns");
    let header_source = cx.name("hdr");
    let payload_source = cx.name("pay");
    let header_box = cx.name("box");
    let payload_box = cx.name("box");
    cx.endpoint.open(&header_box, Default::default());
    cx.endpoint.open(&payload_box, Default::default());
    if cx.resources.is_some() {
        for (source, mailbox) in [
            (&header_source, &header_box),
            (&payload_source, &payload_box),
        ] {
            cx.activate(&ns, source).await?;
            cx.subscribe(&ns, &cx.name("sub"), source, mailbox, 1, 1000)
                .await?;
        }
    }
    cx.publish(&header_source, &event(json!("from-header")))
        .await?
        .expect_status(200, "published with the header")?;
    let mut both = event(json!("from-payload"));
    both["source-id"] = json!(payload_source);
    cx.publish(&header_source, &both)
        .await?
        .expect_status(200, "published with both")?;
    if cx.resources.is_none() {
        return Ok(());
    }
    let timeout = cx.target.delivery_timeout();
    let h = cx
        .endpoint
        .wait_for(&header_box, timeout, |m| m.delivered().count() >= 1)
        .await;
    let p = cx
        .endpoint
        .wait_for(&payload_box, timeout, |m| m.delivered().count() >= 1)
        .await;
    let sources = |m: &crate::endpoint::Mailbox| -> Vec<String> {
        m.pushes
            .iter()
            .map(|r| r.header("kyma-source-id").unwrap_or_default().to_owned())
            .collect()
    };
    if sources(&h).iter().any(|s| *s != header_source) || h.pushes.is_empty() {
        return Err(crate::check::Failure::new(
            format!("the header's source {header_source} on the first event"),
            format!("{:?}", sources(&h)),
        ));
    }
    if sources(&p) != vec![payload_source.clone()] {
        return Err(crate::check::Failure::new(
            format!("the payload's source {payload_source} on the second event"),
            format!("{:?}", sources(&p)),
        ));
    }
    Ok(())
}

async fn size_limit(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let id = cx.onboard(&re).await?;
    let big = event(json!("x".repeat(70 * 1024)));
    let r = cx
        .gateway_call(&id, Method::POST, &format!("/{re}/v1/events"), Some(&big))
        .await?;
    if cx.kyma() {
        r.expect_status(200, "Kyma 0.5: no limit")?;
        return Ok(());
    }
    r.expect_status(413, "too large")?;
    if r.json()["type"] != json!("request_body_too_large") {
        return Err(r.fail("413 {\"type\": \"request_body_too_large\", ...}".into()));
    }
    Ok(())
}
