//! The proxy to registered APIs and the catalog (seed application-connector "Call a
//! registered external service", "Consume applications through the Service Catalog";
//! reference §5, §6.3, §6.4).

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};

use crate::check;
use crate::check::{Check, CheckResult, Failure};
use crate::context::{Ctx, Identity};
use crate::endpoint::Plan;
use crate::target::urls;

/// The checks of this area.
pub fn checks() -> Vec<Check> {
    vec![
        check!(
            "proxy.unbound-refused",
            Proxy,
            Must,
            "reference §5.7",
            "A caller without a live binding gets 403 from the proxy.",
            [Resources, Proxy],
            unbound_refused
        ),
        check!(
            "proxy.forwards",
            Proxy,
            Must,
            "seed application-connector \"Call a registered external service\"; reference §5.3, §5.4",
            "A bound caller reaches the registered targetUrl with the path joined, the query appended and Authorization: Bearer <OAuth token>.",
            [Resources, Proxy],
            forwards
        ),
        check!(
            "proxy.token-reused",
            Proxy,
            Must,
            "reference §5.4",
            "An OAuth token is fetched once and reused while it is valid.",
            [Resources, Proxy],
            token_reused
        ),
        check!(
            "proxy.token-expiry",
            Proxy,
            Must,
            "reference §5.4",
            "A cached OAuth token is not used after its expires_in (less the proxy's margin): a new one is fetched.",
            [Resources, Proxy],
            token_expiry
        ),
        check!(
            "proxy.access-token",
            Proxy,
            Must,
            "reference §5.4",
            "An Access-Token header replaces OAuth: its value reaches the target as Authorization, and no token is fetched.",
            [Resources, Proxy],
            access_token
        ),
        check!(
            "proxy.access-token-bearer",
            Proxy,
            Should,
            "seed application-connector; reference §5.4 (Kyma copied the value verbatim)",
            "An Access-Token without a scheme reaches the target as Authorization: Bearer <value>.",
            [Resources, Proxy],
            access_token_bearer
        ),
        check!(
            "proxy.retry-403",
            Proxy,
            Should,
            "reference §5.5 (Kyma returned the stale 403)",
            "When the target answers 403, the proxy fetches a new token, retries once and returns the retried response.",
            [Resources, Proxy],
            retry_403
        ),
        check!(
            "proxy.unbind",
            Proxy,
            Must,
            "reference §5.7, §6.4",
            "After unbinding, the binding's credential no longer opens the proxy.",
            [Resources, Proxy],
            unbind
        ),
        check!(
            "proxy.own-surfaces-refused",
            Proxy,
            Must,
            "seed application-connector \"one-to-one relationship between a connected solution and a RE\"; ACE's egress policy",
            "A registered API pointing at the deployment's own surfaces (its connector internal API, admin API, publish API) cannot be reached through the proxy: the registration is refused (400) or the call is (403).",
            [Resources, Proxy, EgressPolicy],
            own_surfaces_refused
        ),
        check!(
            "proxy.link-local-refused",
            Proxy,
            Must,
            "reference §5 (the proxy); ACE's egress policy: cloud metadata services live at 169.254.169.254",
            "A registered API on a link-local address cannot be reached through the proxy: the registration is refused (400) or the call is (403).",
            [Resources, Proxy, EgressPolicy],
            link_local_refused
        ),
        check!(
            "catalog.mapped-only",
            Catalog,
            Must,
            "seed application-connector \"Consume applications\"; reference §6.4",
            "A registered service is a class re-<re>-<id> only in namespaces mapped to its RE.",
            [Resources],
            mapped_only
        ),
        check!(
            "catalog.provision-activates",
            Catalog,
            Must,
            "reference §6.3",
            "Provisioning a service with events creates its EventActivation; deprovisioning removes it.",
            [Resources],
            provision_activates
        ),
    ]
}

/// A registered API behind the suite's endpoint, provisioned and bound in a namespace.
struct Bound {
    re: String,
    service_id: String,
    ns: String,
    mailbox: String,
    instance: String,
    binding: String,
    gateway_url: String,
    key: String,
}

async fn register_api(
    cx: &Ctx,
    re: &str,
    identity: &Identity,
    mailbox: &str,
    oauth: bool,
) -> Result<String, Failure> {
    let mut api = json!({"targetUrl": format!("{}/base?fixed=1", cx.endpoint.api_url(mailbox))});
    if oauth {
        api["credentials"] = json!({"oauth": {"url": cx.endpoint.oauth_url(mailbox), "clientId": mailbox, "clientSecret": "s3cret"}});
    }
    let body = json!({"provider": "conformance", "name": "orders", "description": "Orders API", "api": api,
        "events": {"spec": {"asyncapi": "1.0.0"}}});
    let r = cx
        .gateway_call(
            identity,
            Method::POST,
            &format!("/{re}/v1/metadata/services"),
            Some(&body),
        )
        .await?;
    r.expect_status(200, "registered")?;
    Ok(r.json()["id"].as_str().unwrap_or_default().to_owned())
}

async fn bound(cx: &Ctx, plan: Plan, oauth: bool) -> Result<Bound, Failure> {
    let re = cx.fresh_re().await?;
    let identity = cx.onboard(&re).await?;
    let mailbox = cx.name("api");
    cx.endpoint.open(&mailbox, plan);
    let service_id = register_api(cx, &re, &identity, &mailbox, oauth).await?;
    let ns = cx.name("ns");
    cx.map(&ns, &re).await?;
    let instance = cx.name("inst");
    cx.apply(json!({"apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ServiceInstance",
        "metadata": {"name": instance, "namespace": ns}, "spec": {"serviceClassExternalName": service_id}}))
        .await?;
    let binding = cx.name("bind");
    let reply = cx
        .apply(json!({"apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ServiceBinding",
            "metadata": {"name": binding, "namespace": ns}, "spec": {"instanceRef": {"name": instance}}}))
        .await?;
    let gateway_url = reply["credentials"]["GATEWAY_URL"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let key = reply["credentials"]["ACCESS_KEY"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if gateway_url.is_empty() || key.is_empty() {
        return Err(Failure::new(
            "a binding with credentials GATEWAY_URL and ACCESS_KEY",
            reply.to_string(),
        ));
    }
    Ok(Bound {
        re,
        service_id,
        ns,
        mailbox,
        instance,
        binding,
        gateway_url,
        key,
    })
}

/// [`bound`] with OAuth whose tokens live an hour.
async fn bound_oauth(cx: &Ctx, plan: Plan) -> Result<Bound, Failure> {
    bound(
        cx,
        Plan {
            expires_in: Some(3600),
            ..plan
        },
        true,
    )
    .await
}

/// The Authorization header of the first call that reached the target.
fn first_authorization(m: &crate::endpoint::Mailbox) -> &str {
    m.api_calls
        .first()
        .and_then(|c| c.header("authorization"))
        .unwrap_or_default()
}

async fn call(
    cx: &Ctx,
    b: &Bound,
    path: &str,
    extra: &[(&str, &str)],
) -> Result<crate::context::Exchange, Failure> {
    let mut headers = vec![("ace-binding-key", b.key.as_str())];
    headers.extend_from_slice(extra);
    cx.call(
        Method::GET,
        &format!("{}{path}", b.gateway_url),
        &headers,
        None,
        None,
    )
    .await
}

async fn unbound_refused(cx: &Ctx) -> CheckResult {
    let b = bound(cx, Plan::default(), false).await?;
    for key in [None, Some("not-a-binding-key")] {
        let headers: Vec<(&str, &str)> = key.map(|k| ("ace-binding-key", k)).into_iter().collect();
        cx.call(
            Method::GET,
            &format!("{}/orders", b.gateway_url),
            &headers,
            None,
            None,
        )
        .await?
        .expect_status(403, "refused")?;
    }
    if !cx.endpoint.mailbox(&b.mailbox).api_calls.is_empty() {
        return Err(Failure::new(
            "no call reaching the target",
            "the target was called",
        ));
    }
    Ok(())
}

async fn forwards(cx: &Ctx) -> CheckResult {
    let b = bound_oauth(cx, Plan::default()).await?;
    let r = call(cx, &b, "/orders/7?sort=asc", &[]).await?;
    r.expect_status(200, "the target's answer")?;
    let m = cx.endpoint.mailbox(&b.mailbox);
    let Some(seen) = m.api_calls.first() else {
        return Err(r.fail("a call at the target".into()));
    };
    let want_auth = format!("Bearer token-{}-1", b.mailbox);
    if seen.path != "/base/orders/7?fixed=1&sort=asc"
        || seen.header("authorization") != Some(want_auth.as_str())
    {
        return Err(Failure {
            expected: format!(
                "GET /base/orders/7?fixed=1&sort=asc with Authorization: {want_auth}"
            ),
            actual: format!(
                "{} {} with Authorization: {:?}",
                seen.method,
                seen.path,
                seen.header("authorization")
            ),
            reproduce: vec![r.curl.clone()],
        });
    }
    let form = String::from_utf8_lossy(&m.token_requests[0].body).into_owned();
    if !form.contains("grant_type=client_credentials")
        || !form.contains(&format!("client_id={}", b.mailbox))
    {
        return Err(Failure::new(
            "a client_credentials token request with client_id",
            form,
        ));
    }
    Ok(())
}

async fn token_reused(cx: &Ctx) -> CheckResult {
    let b = bound_oauth(cx, Plan::default()).await?;
    for _ in 0..3 {
        call(cx, &b, "/x", &[])
            .await?
            .expect_status(200, "forwarded")?;
    }
    let n = cx.endpoint.mailbox(&b.mailbox).token_requests.len();
    if n != 1 {
        return Err(Failure::new(
            "one token request for three calls",
            format!("{n}"),
        ));
    }
    Ok(())
}

async fn token_expiry(cx: &Ctx) -> CheckResult {
    let margin = cx
        .target
        .oauth_margin_seconds
        .unwrap_or(if cx.kyma() { 2 } else { 10 });
    let b = bound(
        cx,
        Plan {
            expires_in: Some(margin + 1),
            ..Plan::default()
        },
        true,
    )
    .await?;
    call(cx, &b, "/x", &[])
        .await?
        .expect_status(200, "forwarded")?;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    call(cx, &b, "/x", &[])
        .await?
        .expect_status(200, "forwarded")?;
    let n = cx.endpoint.mailbox(&b.mailbox).token_requests.len();
    if n != 2 {
        return Err(Failure::new(
            format!(
                "a new token after expires_in={} s less the {margin} s margin",
                margin + 1
            ),
            format!("{n} token requests"),
        ));
    }
    Ok(())
}

async fn access_token(cx: &Ctx) -> CheckResult {
    let b = bound_oauth(cx, Plan::default()).await?;
    call(cx, &b, "/x", &[("access-token", "Bearer given-token")])
        .await?
        .expect_status(200, "forwarded")?;
    let m = cx.endpoint.mailbox(&b.mailbox);
    let auth = first_authorization(&m);
    if auth != "Bearer given-token" || !m.token_requests.is_empty() {
        return Err(Failure::new(
            "Authorization: Bearer given-token and no token request",
            format!(
                "Authorization: {auth:?}, {} token requests",
                m.token_requests.len()
            ),
        ));
    }
    Ok(())
}

async fn access_token_bearer(cx: &Ctx) -> CheckResult {
    let b = bound(cx, Plan::default(), false).await?;
    call(cx, &b, "/x", &[("access-token", "bare-token")])
        .await?
        .expect_status(200, "forwarded")?;
    let m = cx.endpoint.mailbox(&b.mailbox);
    let auth = first_authorization(&m);
    let want = if cx.kyma() {
        "bare-token"
    } else {
        "Bearer bare-token"
    };
    if auth != want {
        return Err(Failure::new(
            format!("Authorization: {want}"),
            format!("{auth:?}"),
        ));
    }
    Ok(())
}

async fn retry_403(cx: &Ctx) -> CheckResult {
    let b = bound_oauth(
        cx,
        Plan {
            reject_first_token: true,
            ..Plan::default()
        },
    )
    .await?;
    let r = call(cx, &b, "/x", &[]).await?;
    let m = cx.endpoint.mailbox(&b.mailbox);
    if m.token_requests.len() != 2 {
        return Err(r.fail(format!(
            "two token requests, saw {}",
            m.token_requests.len()
        )));
    }
    r.expect_status(if cx.kyma() { 403 } else { 200 }, "the retried response")?;
    Ok(())
}

async fn unbind(cx: &Ctx) -> CheckResult {
    let b = bound(cx, Plan::default(), false).await?;
    call(cx, &b, "/x", &[]).await?.expect_status(200, "bound")?;
    cx.delete("ServiceBinding", Some(&b.ns), &b.binding).await?;
    call(cx, &b, "/x", &[])
        .await?
        .expect_status(403, "unbound")?;
    Ok(())
}

fn class_names(classes: &Value) -> Vec<String> {
    classes
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            c.get("name")
                .or_else(|| c.pointer("/metadata/name"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .collect()
}

async fn mapped_only(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let identity = cx.onboard(&re).await?;
    let mailbox = cx.name("api");
    cx.endpoint.open(&mailbox, Plan::default());
    let sid = register_api(cx, &re, &identity, &mailbox, false).await?;
    let (mapped, other) = (cx.name("ns"), cx.name("ns"));
    cx.map(&mapped, &re).await?;
    let resources = cx.resources()?;
    let seen = resources.catalog(&mapped).await.map_err(Failure::setup)?;
    let unseen = resources.catalog(&other).await.map_err(Failure::setup)?;
    let class = format!("re-{re}-{sid}");
    let in_mapped = class_names(&seen)
        .iter()
        .any(|n| n.starts_with(&class[..class.len().min(63)]) || *n == sid);
    let in_other = class_names(&unseen)
        .iter()
        .any(|n| n.starts_with(&class[..class.len().min(63)]) || *n == sid);
    if !in_mapped || in_other {
        return Err(Failure::new(
            format!("class {class} in {mapped} only"),
            format!(
                "{mapped}: {:?}; {other}: {:?}",
                class_names(&seen),
                class_names(&unseen)
            ),
        ));
    }
    Ok(())
}

async fn provision_activates(cx: &Ctx) -> CheckResult {
    let b = bound(cx, Plan::default(), false).await?;
    let resources = cx.resources()?;
    let activation = resources
        .get("EventActivation", Some(&b.ns), &b.service_id)
        .await
        .map_err(Failure::setup)?;
    let source = activation
        .as_ref()
        .and_then(|a| a.pointer("/spec/sourceId"))
        .and_then(Value::as_str);
    if source != Some(b.re.as_str()) {
        return Err(Failure::new(
            format!(
                "EventActivation {} (the service id) in {} with spec.sourceId {}",
                b.service_id, b.ns, b.re
            ),
            format!("{activation:?}"),
        ));
    }
    cx.delete("ServiceInstance", Some(&b.ns), &b.instance)
        .await?;
    let after = resources
        .get("EventActivation", Some(&b.ns), &b.service_id)
        .await
        .map_err(Failure::setup)?;
    if after.is_some() {
        return Err(Failure::new(
            format!(
                "no EventActivation {} in {} after deprovisioning",
                b.service_id, b.ns
            ),
            "it is still there",
        ));
    }
    Ok(())
}

/// Registers `target_url` as an API of a fresh RE and binds it: `Ok(None)` if the registration
/// was refused with 400, else the proxy's URL of the service and the binding's key.
async fn bound_to(cx: &Ctx, target_url: &str) -> Result<Option<(String, String)>, Failure> {
    let re = cx.fresh_re().await?;
    let identity = cx.onboard(&re).await?;
    let body = json!({"provider": "conformance", "name": "own", "description": "d",
        "api": {"targetUrl": target_url}});
    let r = cx
        .gateway_call(
            &identity,
            Method::POST,
            &format!("/{re}/v1/metadata/services"),
            Some(&body),
        )
        .await?;
    if r.response.status == 400 {
        return Ok(None);
    }
    r.expect_status(200, "registered or refused with 400")?;
    let service_id = r.json()["id"].as_str().unwrap_or_default().to_owned();
    let ns = cx.name("ns");
    cx.map(&ns, &re).await?;
    let instance = cx.name("inst");
    cx.apply(json!({"apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ServiceInstance",
        "metadata": {"name": instance, "namespace": ns}, "spec": {"serviceClassExternalName": service_id}}))
        .await?;
    let reply = cx
        .apply(json!({"apiVersion": "servicecatalog.k8s.io/v1beta1", "kind": "ServiceBinding",
            "metadata": {"name": cx.name("bind"), "namespace": ns}, "spec": {"instanceRef": {"name": instance}}}))
        .await?;
    let text = |k: &str| {
        reply["credentials"][k]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    Ok(Some((text("GATEWAY_URL"), text("ACCESS_KEY"))))
}

/// A call through the proxy to a target the deployment must not reach: 403.
async fn call_refused(cx: &Ctx, url: &str, key: &str, method: Method, what: &str) -> CheckResult {
    let r = cx
        .call(method, url, &[("ace-binding-key", key)], None, None)
        .await?;
    if r.response.status != 403 {
        return Err(r.fail(format!("403 for a call through the proxy to {what}")));
    }
    Ok(())
}

async fn own_surfaces_refused(cx: &Ctx) -> CheckResult {
    let victim = cx.fresh_re().await?;
    // The connector internal API hands out another RE's configuration URL: the attack the
    // policy exists for. The admin and publish APIs would change resources and publish events.
    // Every replica's, when the target lists several: one replica's proxy must not reach
    // another's surfaces either.
    let mut surfaces = Vec::new();
    let tokens = format!("/v1/remoteenvironments/{victim}/tokens");
    for base in urls(&cx.target.connector_internal) {
        surfaces.push((base, Method::POST, tokens.clone()));
    }
    for base in cx.target.admin.as_deref().map(urls).unwrap_or_default() {
        surfaces.push((base, Method::GET, "/v1/remoteenvironments".into()));
    }
    for base in cx.target.publish.as_deref().map(urls).unwrap_or_default() {
        surfaces.push((base, Method::POST, "/v1/events".into()));
    }
    for (base, method, path) in surfaces {
        if let Some((url, key)) = bound_to(cx, base).await? {
            // Through the proxy URL the binding gave, and through every proxy the target
            // lists (each replica's).
            let mut through = vec![url.clone()];
            if let Some(proxies) = cx.target.proxy.as_deref() {
                let service = url
                    .split_once("://")
                    .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
                    .unwrap_or_default();
                through.extend(urls(proxies).into_iter().map(|p| format!("{p}{service}")));
            }
            through.dedup();
            for url in through {
                call_refused(cx, &format!("{url}{path}"), &key, method.clone(), base).await?;
            }
        }
    }
    Ok(())
}

async fn link_local_refused(cx: &Ctx) -> CheckResult {
    let target = "http://169.254.169.254/latest/meta-data";
    match bound_to(cx, target).await? {
        None => Ok(()),
        Some((url, key)) => call_refused(cx, &format!("{url}/"), &key, Method::GET, target).await,
    }
}
