//! The contract phase: once the faults have healed, tries to break the documented
//! guarantees the safety phase does not reach.

use std::sync::atomic::Ordering;
use std::time::Duration;

use hyper::Method;
use serde_json::json;

use super::*;

/// The connector's answers a contract check compares.
/// In a replicated world, waits until every replica has applied the log as far as the others
/// (a write one replica acknowledged reaches the others soon after) and checks that they
/// agree on the state there; a single node has nothing to wait for.
pub(super) async fn settle(actor: &Actor, when: &str) {
    let replicas = actor.shared.replicas.clone();
    if replicas.is_empty() {
        return;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut seen = Vec::new();
        for replica in &replicas {
            let url = format!("http://{replica}:8081/v1/state");
            if let Ok(r) = actor.send(Method::GET, &url, None, None).await
                && r.status == 200
            {
                let state = r.json();
                seen.push((
                    state["applied"].as_u64().unwrap_or_default(),
                    state["sha256"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
        let position = seen.first().map(|(p, _)| *p);
        if seen.len() == replicas.len() && seen.iter().all(|(p, _)| Some(*p) == position) {
            if seen.iter().any(|(_, sha)| *sha != seen[0].1) {
                actor.shared.violation(format!(
                    "replica convergence ({when}): at log position {} the replicas' states differ: {seen:?}",
                    position.unwrap_or_default()
                ));
            }
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            actor.shared.violation(format!(
                "replication ({when}): the replicas did not reach one log position within 10 s: {seen:?}"
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Takes the rare path of a stale read refused if some replica gave up its lead because its
/// lease lapsed by its own clock (as its metrics say).
async fn lapses(actor: &Actor) {
    for replica in actor.shared.replicas.clone() {
        let url = format!("http://{replica}:8081/metrics");
        let Ok(r) = actor.send(Method::GET, &url, None, None).await else {
            continue;
        };
        let lapsed = String::from_utf8_lossy(&r.body).lines().any(|l| {
            l.strip_prefix("ace_replica_lapses_total ")
                .and_then(|n| n.trim().parse::<f64>().ok())
                .is_some_and(|n| n > 0.0)
        });
        if lapsed {
            actor.shared.rare("stale-read-refused");
        }
    }
}

pub(super) fn expect(shared: &Shared, what: &str, got: u16, want: u16) {
    shared.note("solution-1", format!("contract: {what} -> {got}"));
    if got != want {
        shared.violation(format!("{what}: answered {got}, expected {want}"));
    }
}

/// The documented guarantees beyond delivery, checked after the faults have healed, each by
/// trying to break it: a configuration URL works once; a token expires; a certificate opens
/// only its RE, and only while the RE lives; identifiers are unique in an RE and secrets are
/// masked; the proxy never sends an expired OAuth token and never reaches ACE's own surfaces;
/// an update of a subscription keeps what it is owed. The two checks that wait (token expiry, OAuth token expiry) share their
/// wait with the others.
pub(super) async fn contract_phase(
    actor: &Actor,
    anonymous: &tokio_rustls::TlsConnector,
    me: &tokio_rustls::TlsConnector,
    csr: &str,
) {
    let shared = &actor.shared;
    // Only once the faults have healed (the caller waits for that) and the operator is done:
    // a lost answer to a retried write would make the checks below see their own retries.
    while !shared.operator_done.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    actor
        .until(&[200], Method::GET, "http://ace:8081/readyz", None, None)
        .await;
    actor.note("contract phase");

    // Tokens: an onboarding, its URLs used again, and a fresh token checked once it has
    // expired (below).
    let tokens = "http://ace:8080/v1/remoteenvironments/ec/tokens";
    let token = actor.answer(Method::POST, tokens, None, None).await.json();
    let url = token["url"].as_str().unwrap_or_default();
    let info = actor.answer(Method::GET, url, None, Some(anonymous)).await;
    expect(shared, "info for a configuration URL", info.status, 200);
    let csr_url = info.json()["csrUrl"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let csr = json!({ "csr": csr });
    let r = actor
        .answer(Method::POST, &csr_url, Some(&csr), Some(anonymous))
        .await;
    expect(shared, "a certificate for a CSR", r.status, 201);
    let r = actor.answer(Method::GET, url, None, Some(anonymous)).await;
    expect(shared, "a used configuration URL works once", r.status, 403);
    let r = actor
        .answer(Method::POST, &csr_url, Some(&csr), Some(anonymous))
        .await;
    expect(shared, "a used CSR URL works once", r.status, 403);
    let token = actor.answer(Method::POST, tokens, None, None).await.json();
    let token_expired = tokio::time::Instant::now() + TOKEN_TTL + Duration::from_millis(500);

    // Certificates: another RE.
    let other = json!({"kind": "RemoteEnvironment", "metadata": {"name": "other"}, "spec": {"description": "another"}});
    actor
        .answer(
            Method::PUT,
            "http://ace:8081/v1/remoteenvironments/other",
            Some(&other),
            None,
        )
        .await;
    let r = actor
        .answer(
            Method::GET,
            "https://ace:8444/other/v1/metadata/services",
            None,
            Some(me),
        )
        .await;
    expect(
        shared,
        "a certificate for RE ec does not open RE other",
        r.status,
        403,
    );

    // Metadata.
    let service = json!({"provider": "sim", "name": "orders-api", "description": "Orders",
        "identifier": "orders-api",
        "api": {"targetUrl": "http://api:9100/api",
                "credentials": {"oauth": {"url": "http://api:9100/token",
                                          "clientId": "client", "clientSecret": "s3cr3t"}}}});
    let services = "https://ace:8444/ec/v1/metadata/services";
    let r = actor
        .answer(Method::POST, services, Some(&service), Some(me))
        .await;
    expect(shared, "a service is registered", r.status, 200);
    let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
    let r = actor
        .answer(Method::POST, services, Some(&service), Some(me))
        .await;
    expect(
        shared,
        "a second service with the same identifier is refused",
        r.status,
        409,
    );
    let r = actor
        .answer(Method::GET, &format!("{services}/{id}"), None, Some(me))
        .await;
    let oauth = &r.json()["api"]["credentials"]["oauth"];
    let shown = (&oauth["clientId"], &oauth["clientSecret"]);
    actor.note(format!(
        "contract: a service's OAuth credentials when read -> clientId {}, clientSecret {}",
        shown.0, shown.1
    ));
    if shown != (&json!("********"), &json!("********")) {
        shared.violation(format!(
            "a service's OAuth credentials are masked when read: clientId {} and clientSecret {} were shown",
            shown.0, shown.1
        ));
    }

    // Proxy: the service bound in prod, called now and again once its token has expired.
    let mut key = String::new();
    for (path, doc) in [
        ("environmentmappings/ec", json!({})),
        (
            "serviceinstances/orders-api",
            json!({"spec": {"serviceClassName": format!("re-ec-{id}")}}),
        ),
        (
            "servicebindings/lambda",
            json!({"spec": {"instanceRef": {"name": "orders-api"}}}),
        ),
    ] {
        let url = format!("http://ace:8081/v1/namespaces/prod/{path}");
        let r = actor.answer(Method::PUT, &url, Some(&doc), None).await;
        if let Some(k) = r.json()["credentials"]["ACCESS_KEY"].as_str() {
            k.clone_into(&mut key);
        }
    }
    let call_proxy = || async {
        settle(actor, "before a call through the proxy").await;
        let status = through_proxy(actor, Method::GET, "ace", &id, "/orders", &key).await;
        expect(shared, "a call through the proxy", status, 200);
    };
    call_proxy().await;
    let oauth_expired =
        tokio::time::Instant::now() + Duration::from_millis(OAUTH_EXPIRES_IN * 1000 + 500);

    // Egress: a service whose API is ACE's own connector internal API, by the host's name
    // (accepted when registered: a name is judged on what it resolves to), bound in prod and
    // called to hand out a token of RE shop. The proxy must refuse the call.
    let own = json!({"provider": "p", "name": "own", "description": "ACE's own tokens",
        "api": {"targetUrl": "http://ace:8080"}});
    let r = actor
        .answer(Method::POST, services, Some(&own), Some(me))
        .await;
    expect(
        shared,
        "a service named by a host name is registered",
        r.status,
        200,
    );
    let own_id = r.json()["id"].as_str().unwrap_or_default().to_owned();
    let mut own_key = String::new();
    for (path, doc) in [
        (
            "serviceinstances/own-api",
            json!({"spec": {"serviceClassName": format!("re-ec-{own_id}")}}),
        ),
        (
            "servicebindings/own-lambda",
            json!({"spec": {"instanceRef": {"name": "own-api"}}}),
        ),
    ] {
        let url = format!("http://ace:8081/v1/namespaces/prod/{path}");
        let r = actor.answer(Method::PUT, &url, Some(&doc), None).await;
        if let Some(k) = r.json()["credentials"]["ACCESS_KEY"].as_str() {
            k.clone_into(&mut own_key);
        }
    }
    settle(actor, "before a call to ACE's own surface").await;
    let path = "/v1/remoteenvironments/shop/tokens";
    let status = through_proxy(actor, Method::POST, "ace", &own_id, path, &own_key).await;
    expect(
        shared,
        "the proxy never reaches ACE's own surfaces: a call to its connector internal API",
        status,
        403,
    );

    replicated_checks(actor, me, &id).await;

    // Events: an update with events owed.
    publish(actor, me, 0, EVENTS).await;
    let orders = &SUBSCRIPTIONS[0];
    let url = subscription_url(orders);
    // Nobody listens on 9002: the next events stay owed until the endpoint is changed back.
    actor
        .answer(
            Method::PUT,
            &url,
            Some(&subscription(orders, "http://sub-a:9002/")),
            None,
        )
        .await;
    publish(actor, me, 0, EVENTS + 1).await;
    publish(actor, me, 0, EVENTS + 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    actor
        .answer(
            Method::PUT,
            &url,
            Some(&subscription(orders, orders.endpoint)),
            None,
        )
        .await;
    actor.note("contract: subscription updated");
    wait_for_deliveries(shared, Duration::from_secs(30)).await;

    // The waits.
    tokio::time::sleep_until(token_expired).await;
    let expired = token["url"].as_str().unwrap_or_default();
    let r = actor
        .answer(Method::GET, expired, None, Some(anonymous))
        .await;
    expect(
        shared,
        "a configuration URL expires after its TTL",
        r.status,
        403,
    );
    tokio::time::sleep_until(oauth_expired).await;
    call_proxy().await;

    // Certificates: the RE deleted and created again (last: it revokes the certificate).
    actor
        .answer(
            Method::DELETE,
            "http://ace:8081/v1/remoteenvironments/ec",
            None,
            None,
        )
        .await;
    actor
        .answer(
            Method::PUT,
            "http://ace:8081/v1/remoteenvironments/ec",
            Some(&re_resource("ec")),
            None,
        )
        .await;
    settle(actor, "after the RE was created again").await;
    lapses(actor).await;
    let r = actor.answer(Method::GET, services, None, Some(me)).await;
    expect(
        shared,
        "a certificate of a deleted RE does not open the RE created again",
        r.status,
        403,
    );
}

/// What only a deployment of replicas can break, each replica addressed by its own name:
/// read-your-writes on the replica that answered (a binding created through a replica opens
/// that replica's proxy at once: a follower answers a forwarded write only once it applied
/// it), and no replica's proxy reaching another replica's surfaces.
async fn replicated_checks(actor: &Actor, me: &tokio_rustls::TlsConnector, id: &str) {
    let shared = &actor.shared;
    let replicas = shared.replicas.clone();
    if replicas.len() < 2 {
        return;
    }
    let bind = |name: String, instance: &'static str, via: &'static str| async move {
        let url = format!("http://{via}:8081/v1/namespaces/prod/servicebindings/{name}");
        let doc = json!({"spec": {"instanceRef": {"name": instance}}});
        let r = actor.answer(Method::PUT, &url, Some(&doc), None).await;
        r.json()["credentials"]["ACCESS_KEY"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    for (i, replica) in replicas.iter().copied().enumerate() {
        let key = bind(format!("read-your-writes-{i}"), "orders-api", replica).await;
        let status = through_proxy(actor, Method::GET, replica, id, "/orders", &key).await;
        expect(
            shared,
            &format!(
                "read-your-writes: a binding created through {replica} opens its proxy at once"
            ),
            status,
            200,
        );
    }

    // A service whose API is another replica's connector internal API.
    let (from, to) = (replicas[0], replicas[1]);
    let peer = json!({"provider": "p", "name": "peer", "description": "another replica's tokens",
        "api": {"targetUrl": format!("http://{to}:8080")}});
    let r = actor
        .answer(
            Method::POST,
            "https://ace:8444/ec/v1/metadata/services",
            Some(&peer),
            Some(me),
        )
        .await;
    let peer_id = r.json()["id"].as_str().unwrap_or_default().to_owned();
    let url = "http://ace:8081/v1/namespaces/prod/serviceinstances/peer-api";
    let doc = json!({"spec": {"serviceClassName": format!("re-ec-{peer_id}")}});
    actor.answer(Method::PUT, url, Some(&doc), None).await;
    let key = bind("peer-lambda".into(), "peer-api", "ace").await;
    settle(actor, "before a call to another replica's surface").await;
    let path = "/v1/remoteenvironments/shop/tokens";
    let status = through_proxy(actor, Method::POST, from, &peer_id, path, &key).await;
    expect(
        shared,
        &format!(
            "the proxy never reaches another replica's surfaces: {from}'s proxy to {to}'s connector internal API"
        ),
        status,
        403,
    );
}

/// The status of a call through `via`'s proxy (`ace`: any replica) to service `id`'s API at
/// `path`, with binding key `key` (0 when nothing answered).
async fn through_proxy(
    actor: &Actor,
    method: Method,
    via: &str,
    id: &str,
    path: &str,
    key: &str,
) -> u16 {
    actor
        .send_with(
            method,
            &format!("http://{via}:8090/re-ec-{id}{path}"),
            &[("ace-binding-key", key)],
            None,
            None,
        )
        .await
        .map_or(0, |r| r.status)
}
