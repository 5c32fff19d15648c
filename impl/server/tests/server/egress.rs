//! The proxy is no way into ACE. The attack: the solution of RE `evil`, holding only its own
//! client certificate, registers ACE's own surfaces as its API (or as its OAuth server, or
//! as a subscription's endpoint); a namespace mapped to `evil` binds it; a call through the
//! proxy would then reach the admin API or another RE's tokens. The egress policy stops each
//! step it can see, at registration, and the rest when the proxy or a push connects.

use std::net::SocketAddr;

use ace_client as client;
use ace_client::TokioNet;
use hyper::Method;
use serde_json::{Value, json};

use crate::common::*;

/// Registers a service with `api` for RE `evil` and binds it in `production`: the proxy's
/// URL of the service and the binding's key; or the registration's refusal.
pub(crate) async fn bound(
    s: &TestServer,
    me: &tokio_rustls::TlsConnector,
    api: Value,
) -> Result<(String, String), client::Response> {
    let body =
        json!({"provider": "p", "name": "orders", "description": "d", "api": api}).to_string();
    let r = s
        .send(
            Method::POST,
            &s.gateway("/evil/v1/metadata/services"),
            Some(body.as_bytes()),
            Some(me),
        )
        .await;
    if r.status != 200 {
        return Err(r);
    }
    let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
    let put = |path: String, doc: Value| async move {
        let body = doc.to_string();
        s.send(Method::PUT, &s.admin(&path), Some(body.as_bytes()), None)
            .await
    };
    put(
        "/v1/namespaces/production/environmentmappings/evil".into(),
        json!({}),
    )
    .await;
    let instance = format!("orders-{}", &id[..8]);
    put(
        format!("/v1/namespaces/production/serviceinstances/{instance}"),
        json!({"spec": {"serviceClassName": format!("re-evil-{id}")}}),
    )
    .await;
    let r = put(
        format!("/v1/namespaces/production/servicebindings/{instance}"),
        json!({"spec": {"instanceRef": {"name": instance}}}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let creds = &r.json()["credentials"];
    Ok((
        creds["GATEWAY_URL"].as_str().unwrap_or_default().to_owned(),
        creds["ACCESS_KEY"].as_str().unwrap_or_default().to_owned(),
    ))
}

pub(crate) async fn through_proxy(method: Method, url: &str, key: &str) -> client::Response {
    client::request(
        &TokioNet,
        method,
        url,
        &[("ace-binding-key", key)],
        None,
        None,
        TIMEOUT,
    )
    .await
    .unwrap_or_else(|e| panic!("{url}: {e}"))
}

/// ACE's three plain-HTTP surfaces an attacker would aim at.
fn own_surfaces(s: &TestServer) -> [(&'static str, SocketAddr); 3] {
    [
        ("admin API", s.server.admin),
        ("connector internal API", s.server.connector_internal),
        ("publish API", s.server.publish),
    ]
}

#[tokio::test]
async fn registering_aces_own_surfaces_or_private_addresses_is_refused_with_a_400() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // The default policy: no private addresses.
    let s = start_with(ace_server::ServeOptions::loopback(dir.path())).await;
    s.apply_re("evil").await;
    let me = s.onboard("evil").await;
    let mut refused = Vec::new();
    for (_, addr) in own_surfaces(&s) {
        refused.push(json!({"targetUrl": format!("http://{addr}/v1/remoteenvironments")}));
        refused.push(json!({"targetUrl": format!("http://localhost:{}/", addr.port())}));
        refused.push(json!({"targetUrl": "https://www.orders.com/v1",
            "credentials": {"oauth": {"url": format!("http://{addr}/token"), "clientId": "c", "clientSecret": "s"}}}));
    }
    refused.push(json!({"targetUrl": "http://169.254.169.254/latest/meta-data/"}));
    refused.push(json!({"targetUrl": "http://10.0.0.1/"}));
    for api in refused {
        let r = bound(&s, &me, api.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("{api} was accepted"));
        assert_eq!(r.status, 400, "{api}: {}", r.text());
        let message = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            message.contains("refused by ACE's egress policy"),
            "{api}: {message}"
        );
    }
    // A subscription endpoint on ACE's own publish API is refused when applied.
    let sub = json!({"spec": {"endpoint": format!("http://{}/v1/events", s.server.publish), "include_subscription_name_header": false,
        "max_inflight": 1, "push_request_timeout_ms": 0, "event_type": "order.created", "event_type_version": "v1", "source_id": "evil"}});
    let r = s
        .send(
            Method::PUT,
            &s.admin("/v1/namespaces/production/subscriptions/loop"),
            Some(sub.to_string().as_bytes()),
            None,
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("egress policy"), "{}", r.text());
    // A public API registers as before.
    assert!(
        bound(&s, &me, json!({"targetUrl": "https://www.orders.com/v1"}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn through_the_proxy_aces_own_surfaces_are_refused_even_with_private_addresses_allowed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // Local development: private addresses allowed. A name (`localhost`) passes registration;
    // the proxy resolves it and refuses ACE's own listeners when it connects.
    let s = start(dir.path()).await;
    s.apply_re("evil").await;
    s.apply_re("victim").await;
    let me = s.onboard("evil").await;
    for (surface, addr) in own_surfaces(&s) {
        let target = format!("http://localhost:{}", addr.port());
        let (url, key) = bound(&s, &me, json!({"targetUrl": target}))
            .await
            .unwrap_or_else(|r| panic!("{surface}: {}", r.text()));
        for (method, path) in [
            (Method::GET, "/v1/remoteenvironments"),
            (Method::PUT, "/v1/remoteenvironments/pwned"),
            (Method::POST, "/v1/remoteenvironments/victim/tokens"),
            (Method::POST, "/v1/events"),
        ] {
            let r = through_proxy(method.clone(), &format!("{url}{path}"), &key).await;
            assert_eq!(r.status, 403, "{surface} {method} {path}: {}", r.text());
            let message = r.json()["error"].as_str().unwrap_or_default().to_owned();
            assert!(
                message.contains("egress policy") && message.contains("ACE's own listeners"),
                "{surface}: {message}"
            );
        }
        // Through an OAuth URL: the token request is refused before any call.
        let api = json!({"targetUrl": "http://127.0.0.1:9/", "credentials": {"oauth": {
            "url": format!("http://localhost:{}/token", addr.port()), "clientId": "c", "clientSecret": "s"}}});
        let (url, key) = bound(&s, &me, api)
            .await
            .unwrap_or_else(|r| panic!("{}", r.text()));
        let r = through_proxy(Method::GET, &format!("{url}/x"), &key).await;
        assert_eq!(r.status, 403, "{surface} as OAuth server: {}", r.text());
    }
    // Nothing reached the admin API: no RemoteEnvironment `pwned`.
    let r = s
        .send(
            Method::GET,
            &s.admin("/v1/remoteenvironments/pwned"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    let metrics = s
        .send(Method::GET, &s.admin("/metrics"), None, None)
        .await
        .text();
    for purpose in ["proxy", "oauth"] {
        assert!(
            metrics.lines().any(|l| l.starts_with(&format!(
                "ace_egress_refused_total{{purpose=\"{purpose}\"}}"
            ))),
            "{purpose}: {metrics}"
        );
    }
}

#[tokio::test]
async fn a_push_to_aces_own_publish_api_is_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    s.apply_re("evil").await;
    s.activate("production", "evil").await;
    let endpoint = format!("http://localhost:{}/v1/events", s.server.publish.port());
    let r = s
        .subscribe("production", "loop", &endpoint, "evil", 1, 0)
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let (status, _) = s.publish("evil", "order.created", json!({"n": 1})).await;
    assert_eq!(status, 200);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let metrics = s
            .send(Method::GET, &s.admin("/metrics"), None, None)
            .await
            .text();
        if metrics.contains("ace_egress_refused_total{purpose=\"push\"}") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no refused push was counted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sub = s
        .send(
            Method::GET,
            &s.admin("/v1/namespaces/production/subscriptions/loop"),
            None,
            None,
        )
        .await;
    assert_eq!(
        sub.json()["status"]["delivery"]["delivered"],
        0,
        "{}",
        sub.text()
    );
}

#[tokio::test]
async fn an_allowed_private_target_is_reached_and_aces_own_listeners_still_are_not() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = ace_server::ServeOptions::loopback(dir.path());
    opts.egress.allowed_networks = vec!["127.0.0.1/32".parse().unwrap_or_else(|e| panic!("{e}"))];
    let s = start_with(opts).await;
    s.apply_re("evil").await;
    let me = s.onboard("evil").await;
    let api = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(wiremock::ResponseTemplate::new(200).set_body_string("reached"))
        .mount(&api)
        .await;
    let (url, key) = bound(&s, &me, json!({"targetUrl": api.uri()}))
        .await
        .unwrap_or_else(|r| panic!("{}", r.text()));
    let r = through_proxy(Method::GET, &format!("{url}/anything"), &key).await;
    assert_eq!((r.status, r.text()), (200, "reached".to_owned()));
    let own = format!("http://{}/", s.server.admin);
    let r = bound(&s, &me, json!({"targetUrl": own}))
        .await
        .err()
        .unwrap_or_else(|| panic!("accepted"));
    assert_eq!(r.status, 400, "{}", r.text());
}

#[tokio::test]
async fn the_admin_api_wants_its_bearer_token_and_the_probes_do_not() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    let url = s.admin("/v1/remoteenvironments");
    let bare = |authorization: Option<&str>| {
        let url = url.clone();
        let authorization = authorization.map(str::to_owned);
        async move {
            let headers: Vec<(&str, &str)> = authorization
                .iter()
                .map(|a| ("authorization", a.as_str()))
                .collect();
            client::request(&TokioNet, Method::GET, &url, &headers, None, None, TIMEOUT)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        }
    };
    for authorization in [None, Some("Bearer wrong"), Some("Basic abc")] {
        let r = bare(authorization).await;
        assert_eq!(r.status, 401, "{authorization:?}");
        assert_eq!(r.json()["code"], 401);
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap_or_default()
                .contains("bearer token")
        );
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"ace-admin\"")
        );
    }
    assert_eq!(bare(Some(&s.admin_authorization())).await.status, 200);
    for probe in ["/healthz", "/readyz"] {
        let r = client::request(
            &TokioNet,
            Method::GET,
            &s.admin(probe),
            &[],
            None,
            None,
            TIMEOUT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status, 200, "{probe}");
    }
    // The token is kept for its owner only, and the same after a restart.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("admin.token"))
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        assert_eq!(mode & 0o777, 0o600);
    }
    let token = s.server.admin_token.clone();
    s.server.stop().await;
    let s = start(dir.path()).await;
    assert_eq!(s.server.admin_token, token);
}
