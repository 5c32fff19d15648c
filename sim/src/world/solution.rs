//! The external solutions: onboarding, the registry, publishing.

use std::time::Duration;

use ace_client::{self as client, TlsOptions};
use ace_model::connector::Subject;
use ace_server::pki;
use base64::Engine as _;
use hyper::Method;
use serde_json::json;

pub use crate::faults::Faults;
use crate::oracle::Call;

use super::*;

/// The subject of RE `re`'s certificate.
pub(super) fn subject(re: &str) -> Subject {
    ace_model::config::SubjectTemplate::default().subject_for(re)
}

/// A solution's registry calls under faults, every answer checked against the model: its
/// service registered (a lost answer may have registered it: then 409), listed, read,
/// updated; an invalid one refused; a second one registered and deleted, then gone; an
/// invalid event refused.
pub(super) async fn registry(actor: &Actor, me: &tokio_rustls::TlsConnector, re: &str) {
    let services = format!("https://ace:8444/{re}/v1/metadata/services");
    let service = |identifier: &str, description: &str| {
        json!({"provider": "sim", "name": format!("{re} {identifier}"), "description": description,
               "identifier": identifier, "labels": {"re": re},
               "api": {"targetUrl": "http://api:9100/api",
                       "credentials": {"oauth": {"url": "http://api:9100/token",
                                                 "clientId": "client", "clientSecret": "s3cr3t"}}},
               "events": {"spec": {"asyncapi": "1.0.0", "topics": {"order.created.v1": {}}}}})
    };
    let create = |identifier: &str| {
        let body = service(identifier, "created");
        let call = Call::Create {
            identifier: identifier.to_owned(),
            body: body.to_string().into_bytes(),
        };
        (call, body)
    };
    let by_id = |identifier: &str| {
        let id = actor
            .mirror
            .as_ref()
            .and_then(|m| m.lock().ok()?.server_id(identifier).map(str::to_owned))
            .unwrap_or_default();
        format!("{services}/{id}")
    };
    let post = Method::POST;
    for identifier in ["events", "scratch"] {
        let (call, body) = create(identifier);
        actor
            .checked_until(&[200, 409], call, post.clone(), &services, Some(&body), me)
            .await;
    }
    // The list shows the ids a lost answer hid.
    actor
        .checked_until(&[200], Call::List, Method::GET, &services, None, me)
        .await;
    let invalid = json!({"name": "no provider", "description": "invalid", "events": {"spec": {}}});
    let call = Call::Create {
        identifier: String::new(),
        body: invalid.to_string().into_bytes(),
    };
    actor
        .checked_until(&[400], call, post.clone(), &services, Some(&invalid), me)
        .await;
    let updated = service("events", "updated");
    let call = Call::Update("events".into(), updated.to_string().into_bytes());
    let url = by_id("events");
    actor
        .checked_until(&[200], call, Method::PUT, &url, Some(&updated), me)
        .await;
    actor
        .checked_until(
            &[200],
            Call::Get("events".into()),
            Method::GET,
            &url,
            None,
            me,
        )
        .await;
    let url = by_id("scratch");
    let call = Call::Delete("scratch".into());
    actor
        .checked_until(&[204, 404], call, Method::DELETE, &url, None, me)
        .await;
    let call = Call::Get("scratch".into());
    actor
        .checked_until(&[404], call, Method::GET, &url, None, me)
        .await;
    let event =
        json!({"event-type-version": "v1", "event-time": "2018-10-16T15:00:00Z", "data": {}});
    let call = Call::Publish(event.to_string().into_bytes());
    let events = format!("https://ace:8444/{re}/v1/events");
    actor
        .checked_until(&[400], call, post, &events, Some(&event), me)
        .await;
}

/// Solution `index`: onboards to its RE, publishes [`EVENTS`] events, waits for their
/// deliveries; the first one then runs the contract phase.
pub(super) async fn solution(
    actor: Actor,
    index: usize,
    ca_path: std::path::PathBuf,
    faults: Faults,
    seed: u64,
) -> Result<(), Box<dyn std::error::Error>> {
    let clock = sim_clock(epoch_of(seed));
    let re = RES[index];
    let tokens = format!("http://ace:8080/v1/remoteenvironments/{re}/tokens");
    actor
        .until(&[200], Method::GET, "http://ace:8081/healthz", None, None)
        .await;

    // Onboarding: token, info, CSR, certificate.
    let ca = std::fs::read_to_string(&ca_path)?;
    let roots = pki::certs_from_pem(&ca)?;
    let anonymous = client::tls_connector(
        &TlsOptions {
            roots: roots.clone(),
            ..TlsOptions::default()
        },
        clock,
    )?;
    // The seed decides the key, and Ed25519 signs deterministically: the certificate ACE
    // issues is the same, byte for byte, for the same seed.
    let key = pki::ed25519_from_seed(&seed_bytes(seed, 100 + index as u64))?;
    let csr = base64::engine::general_purpose::STANDARD.encode(pki::make_csr(&key, &subject(re))?);
    let mut linger = faults.token_expiry && index == 0;
    let mut first = true;
    let crt = loop {
        if !first {
            actor.shared.rare("onboarding-restarted");
        }
        first = false;
        // The RE may not exist yet (the operator creates it), and a fault can strike between
        // the steps: the flow starts again with a new token.
        let (token, _) = actor.until(&[201], Method::POST, &tokens, None, None).await;
        let Some(url) = token.json()["url"].as_str().map(str::to_owned) else {
            continue;
        };
        let Ok(info) = actor.send(Method::GET, &url, None, Some(&anonymous)).await else {
            continue;
        };
        let Some(csr_url) = info.json()["csrUrl"].as_str().map(str::to_owned) else {
            continue;
        };
        let lingered = std::mem::take(&mut linger);
        if lingered {
            actor.note("waits past the token's TTL before sending the CSR");
            tokio::time::sleep(TOKEN_TTL + Duration::from_millis(300)).await;
        }
        let r = actor
            .send(
                Method::POST,
                &csr_url,
                Some(&json!({ "csr": csr })),
                Some(&anonymous),
            )
            .await;
        match r {
            Ok(r) if lingered => {
                if r.status == 403 {
                    actor.shared.rare("token-expired-mid-onboarding");
                } else {
                    actor.shared.violation(format!(
                        "a CSR URL expires with its token: a CSR sent after the TTL was answered {}",
                        r.status
                    ));
                }
            }
            Ok(r) if r.status == 201 => break r.json(),
            _ => {}
        }
    };
    let chain = base64::engine::general_purpose::STANDARD
        .decode(crt["crt"].as_str().unwrap_or_default())?;
    let digest = ace_model::hex::lower(&<sha2::Sha256 as sha2::Digest>::digest(&chain)[..16]);
    let chain = pki::certs_from_pem(&String::from_utf8_lossy(&chain))?;
    let me = client::tls_connector(
        &TlsOptions {
            roots,
            identity: Some((chain, pki::key_from_pem(&key.serialize_pem())?)),
            insecure: false,
        },
        clock,
    )?;
    actor.note(format!("onboarded: certificate chain sha256 {digest}"));
    registry(&actor, &me, re).await;

    // Publishing, each event until it is answered 200 (the same event-id on a retry): the
    // first solution one at a time, the second in bursts of four at once.
    if index == 0 {
        for i in 0..EVENTS {
            publish(&actor, &me, index, i).await;
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
    } else {
        for i in (0..EVENTS).step_by(4) {
            tokio::join!(
                publish(&actor, &me, index, i),
                publish(&actor, &me, index, i + 1),
                publish(&actor, &me, index, i + 2),
                publish(&actor, &me, index, i + 3),
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if index == 1
        && let Some(dead) = &faults.dead_subscriber
    {
        dead_subscriber_burst(&actor, &me, dead).await;
    }
    // Liveness: once the faults have healed, every delivery owed is made within a bound.
    sleep_until_elapsed(faults.healed_by().max(actor.shared.replicated_healed_by)).await;
    wait_for_deliveries(&actor.shared, Duration::from_secs(60)).await;
    if index == 1 && faults.dead_subscriber.is_some() && actor.shared.all_received() {
        actor.shared.rare("dead-subscriber-drained");
    }
    if index == 0 {
        contract_phase(&actor, &anonymous, &me, &csr).await;
    }
    if let Some(Ok(mirror)) = actor.mirror.as_ref().map(|m| m.lock()) {
        actor.note(format!(
            "{} answers equal the model's predictions (at most {} possible states at once)",
            mirror.compared, mirror.widest
        ));
        if mirror.widest > 1 {
            actor.shared.rare("model-states-forked");
        }
    }
    actor.note("done");
    Ok(())
}

/// While `dead.host` is down: publishes `dead.burst` events it is owed (four at a time), far
/// more than the server keeps loaded per subscription, then checks, on the admin API, that the
/// subscription owed them backs off as a whole.
async fn dead_subscriber_burst(
    actor: &Actor,
    me: &tokio_rustls::TlsConnector,
    dead: &crate::faults::DeadSubscriber,
) {
    sleep_until_elapsed(dead.at + Duration::from_millis(100)).await;
    actor.note(format!(
        "publishes {} events while {} is down",
        dead.burst, dead.host
    ));
    for i in (EVENTS..EVENTS + dead.burst).step_by(4) {
        tokio::join!(
            publish(actor, me, 1, i),
            publish(actor, me, 1, i + 1),
            publish(actor, me, 1, i + 2),
            publish(actor, me, 1, i + 3),
        );
    }
    // A few pushes must fail before the subscription backs off; look until it is back up.
    let url = format!("{ADMIN}v1/namespaces/prod/subscriptions/shop");
    while turmoil::sim_elapsed().unwrap_or_default() < dead.at + dead.len {
        if let Ok(r) = actor.send(Method::GET, &url, None, None).await
            && !r.json()["status"]["delivery"]["backoff"].is_null()
        {
            actor.shared.rare("subscription-backed-off");
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The event id of event `i` of solution `index`.
pub(super) fn event_id(index: usize, i: usize) -> String {
    format!("00000000-0000-4000-8{index:03x}-{i:012x}")
}

/// Publishes event `i` of a solution through the gateway until it is answered 200.
pub(super) async fn publish(
    actor: &Actor,
    me: &tokio_rustls::TlsConnector,
    index: usize,
    i: usize,
) {
    let re = RES[index];
    let id = event_id(index, i);
    let event = json!({"event-type": "order.created", "event-type-version": "v1", "event-id": id,
                       "event-time": "2018-10-16T15:00:00Z", "data": {"n": i}});
    let url = format!("https://ace:8444/{re}/v1/events");
    let sent = turmoil::sim_elapsed().unwrap_or_default();
    let call = Call::Publish(event.to_string().into_bytes());
    let (_, attempts) = actor
        .checked_until(&[200], call, Method::POST, &url, Some(&event), me)
        .await;
    if attempts > 1 {
        actor.shared.rare("publish-retried");
    }
    actor.shared.accept(id, re, sent);
}

/// Waits (at most `limit`) until every delivery owed has been made.
pub(super) async fn wait_for_deliveries(shared: &Shared, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !shared.all_received() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until simulated time `at`.
pub(super) async fn sleep_until_elapsed(at: Duration) {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default();
    tokio::time::sleep(at.saturating_sub(elapsed)).await;
}
