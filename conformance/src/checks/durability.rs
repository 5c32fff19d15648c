//! Acknowledged writes survive a restart (seed event-bus: events are stored before they are
//! acknowledged; reference §4.1). These checks run only when the target can be restarted.

use std::time::Duration;

use hyper::Method;
use serde_json::json;

use crate::check;
use crate::check::{Check, CheckResult, Failure};
use crate::context::{Ctx, event};
use crate::endpoint::Plan;

/// The checks of this area.
pub fn checks() -> Vec<Check> {
    vec![
        check!(
            "durability.registry",
            Durability,
            Must,
            "reference §2.4",
            "A registered service and an issued certificate still work after a restart.",
            [Resources, Restart],
            registry
        ),
        check!(
            "durability.event",
            Durability,
            Must,
            "seed event-bus; reference §4.1, §4.2",
            "An event answered 200 and not yet delivered is delivered after a restart.",
            [Resources, Publish, Restart],
            event_survives
        ),
    ]
}

async fn restart(cx: &Ctx) -> CheckResult {
    let r = cx
        .restart
        .as_ref()
        .ok_or_else(|| Failure::setup("the target cannot be restarted"))?;
    r.restart().await.map_err(|e| Failure::new("a restart", e))
}

async fn registry(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let id = cx.onboard(&re).await?;
    let body = crate::checks::metadata::service(Some("durable"));
    let r = cx
        .gateway_call(
            &id,
            Method::POST,
            &format!("/{re}/v1/metadata/services"),
            Some(&body),
        )
        .await?;
    r.expect_status(200, "registered")?;
    let sid = r.json()["id"].as_str().unwrap_or_default().to_owned();
    restart(cx).await?;
    cx.gateway_call(
        &id,
        Method::GET,
        &format!("/{re}/v1/metadata/services/{sid}"),
        None,
    )
    .await?
    .expect_status(200, "the service and the certificate after the restart")?;
    Ok(())
}

async fn event_survives(cx: &Ctx) -> CheckResult {
    let (ns, source, mailbox) = (cx.name("ns"), cx.name("src"), cx.name("box"));
    // Pushes are held longer than the subscription's timeout, so nothing is settled before
    // the restart.
    cx.endpoint.open(
        &mailbox,
        Plan {
            delay: Duration::from_secs(5),
            ..Plan::default()
        },
    );
    cx.activate(&ns, &source).await?;
    cx.subscribe(&ns, &cx.name("sub"), &source, &mailbox, 1, 1000)
        .await?;
    let r = cx.publish(&source, &event(json!("durable"))).await?;
    r.expect_status(200, "published")?;
    let id = r.json()["event-id"].as_str().unwrap_or_default().to_owned();
    restart(cx).await?;
    cx.endpoint.open(&mailbox, Plan::default());
    let m = cx
        .endpoint
        .wait_for(&mailbox, cx.target.delivery_timeout(), |m| {
            m.delivered()
                .any(|p| p.header("kyma-event-id") == Some(id.as_str()))
        })
        .await;
    if m.delivered()
        .any(|p| p.header("kyma-event-id") == Some(id.as_str()))
    {
        Ok(())
    } else {
        Err(Failure {
            expected: format!("event {id} pushed again after the restart"),
            actual: format!("{} pushes after the restart", m.pushes.len()),
            reproduce: vec![
                r.curl.clone(),
                "# restart the deployment, then watch the subscriber".into(),
            ],
        })
    }
}
