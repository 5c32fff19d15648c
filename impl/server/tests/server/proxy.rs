//! The proxy to registered APIs, against wiremock as the OAuth server and the target API.

use std::time::Duration;

use crate::common::*;
use ace_client as client;
use ace_client::TokioNet;
use hyper::Method;
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct World {
    s: TestServer,
    target: MockServer,
    oauth: MockServer,
    gateway_url: String,
    key: String,
}

/// An RE with a service whose API is `target` (OAuth at `oauth` if `with_oauth`), mapped,
/// provisioned and bound in `production`.
async fn world(dir: &std::path::Path, with_oauth: bool, proxy_timeout: Duration) -> World {
    world_with_target(dir, with_oauth, proxy_timeout, None).await
}

async fn world_with_target(
    dir: &std::path::Path,
    with_oauth: bool,
    proxy_timeout: Duration,
    target_url: Option<String>,
) -> World {
    let mut opts = options(dir);
    opts.proxy_timeout = proxy_timeout;
    world_from(opts, with_oauth, target_url).await
}

/// The world of [`world_with_target`], served with `opts`.
async fn world_from(
    opts: ace_server::ServeOptions,
    with_oauth: bool,
    target_url: Option<String>,
) -> World {
    let s = start_with(opts).await;
    let (target, oauth) = (MockServer::start().await, MockServer::start().await);
    s.apply_re("ec").await;
    let me = s.onboard("ec").await;
    let target_url = target_url.unwrap_or_else(|| format!("{}/v1/orders?tenant=t1", target.uri()));
    let mut api = json!({ "targetUrl": target_url });
    if with_oauth {
        api["credentials"] = json!({"oauth": {"url": format!("{}/token", oauth.uri()), "clientId": "client-1", "clientSecret": "s3cr3t"}});
    }
    let body =
        json!({"provider": "p", "name": "orders", "description": "d", "api": api}).to_string();
    let r = s
        .send(
            Method::POST,
            &s.gateway("/ec/v1/metadata/services"),
            Some(body.as_bytes()),
            Some(&me),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
    s.send(
        Method::PUT,
        &s.admin("/v1/namespaces/production/environmentmappings/ec"),
        None,
        None,
    )
    .await;
    let inst = json!({"spec": {"serviceClassName": format!("re-ec-{id}")}}).to_string();
    s.send(
        Method::PUT,
        &s.admin("/v1/namespaces/production/serviceinstances/orders"),
        Some(inst.as_bytes()),
        None,
    )
    .await;
    let binding = json!({"spec": {"instanceRef": {"name": "orders"}}}).to_string();
    let r = s
        .send(
            Method::PUT,
            &s.admin("/v1/namespaces/production/servicebindings/lambda"),
            Some(binding.as_bytes()),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let creds = r.json()["credentials"].clone();
    World {
        gateway_url: creds["GATEWAY_URL"].as_str().unwrap_or_default().to_owned(),
        key: creds["ACCESS_KEY"].as_str().unwrap_or_default().to_owned(),
        s,
        target,
        oauth,
    }
}

async fn call(url: &str, headers: &[(&str, &str)], body: Option<&str>) -> client::Response {
    let m = if body.is_some() {
        Method::POST
    } else {
        Method::GET
    };
    client::request(
        &TokioNet,
        m,
        url,
        headers,
        body.map(|b| b.as_bytes().to_vec()),
        None,
        TIMEOUT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

fn token_reply(token: &str, expires_in: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(
        json!({"access_token": token, "token_type": "bearer", "expires_in": expires_in}),
    )
}

#[tokio::test]
async fn the_token_is_fetched_once_and_reused_and_the_call_is_forwarded() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let w = world(dir.path(), true, Duration::from_secs(5)).await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains("client_id=client-1"))
        .respond_with(token_reply("tok-1", json!(3600)))
        .expect(1)
        .mount(&w.oauth)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/orders/uuid"))
        .and(query_param("tenant", "t1"))
        .and(query_param("x", "1"))
        .and(header("authorization", "Bearer tok-1"))
        .and(header("x-custom", "kept"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_string("created")
                .insert_header("x-reply", "yes"),
        )
        .expect(2)
        .mount(&w.target)
        .await;
    for _ in 0..2 {
        let r = call(
            &format!("{}/uuid?x=1", w.gateway_url),
            &[("ace-binding-key", &w.key), ("x-custom", "kept")],
            Some("payload"),
        )
        .await;
        assert_eq!((r.status, r.text().as_str()), (201, "created"));
        assert_eq!(r.headers["x-reply"], "yes");
    }
}

/// An API with OAuth gets the proxy's token only: an `Authorization` the caller sent is
/// replaced, never sent beside it.
#[tokio::test]
async fn the_proxys_token_replaces_the_callers_authorization() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let w = world(dir.path(), true, Duration::from_secs(5)).await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token_reply("tok-1", json!(3600)))
        .mount(&w.oauth)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&w.target)
        .await;
    let r = call(
        &format!("{}/uuid", w.gateway_url),
        &[
            ("ace-binding-key", &w.key),
            ("authorization", "Basic Y2FsbGVyOnB3"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let received = w.target.received_requests().await.unwrap_or_default();
    assert_eq!(received.len(), 1);
    let sent: Vec<_> = received[0]
        .headers
        .get_all("authorization")
        .iter()
        .collect();
    assert_eq!(
        sent,
        ["Bearer tok-1"],
        "only the proxy's token reaches the API"
    );
}

#[tokio::test]
async fn hop_by_hop_headers_and_the_binding_key_are_not_forwarded() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let w = world(dir.path(), false, Duration::from_secs(5)).await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("connection", "x-reply-hop")
                .insert_header("x-reply-hop", "hidden")
                .insert_header("x-reply", "shown"),
        )
        .mount(&w.target)
        .await;
    let r = call(
        &format!("{}/uuid", w.gateway_url),
        &[
            ("ace-binding-key", &w.key),
            ("connection", "x-hop, keep-alive"),
            ("x-hop", "hidden"),
            ("keep-alive", "timeout=5"),
            ("x-custom", "kept"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.headers["x-reply"], "shown");
    assert!(r.headers.get("x-reply-hop").is_none(), "{:?}", r.headers);
    let received = w.target.received_requests().await.unwrap_or_default();
    let [forwarded] = received.as_slice() else {
        panic!("the target got {} requests", received.len());
    };
    assert_eq!(forwarded.headers["x-custom"], "kept");
    for name in ["ace-binding-key", "x-hop", "keep-alive"] {
        assert!(
            !forwarded.headers.contains_key(name),
            "{name} reached the target: {:?}",
            forwarded.headers
        );
    }
}

#[tokio::test]
async fn an_expired_token_is_fetched_again() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let w = world(dir.path(), true, Duration::from_secs(5)).await;
    // 11 s of life minus the 10 s margin: reused for one second.
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token_reply("short", json!(11)))
        .expect(2)
        .mount(&w.oauth)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&w.target)
        .await;
    let headers = [("ace-binding-key", w.key.as_str())];
    assert_eq!(call(&w.gateway_url, &headers, None).await.status, 200);
    assert_eq!(call(&w.gateway_url, &headers, None).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(call(&w.gateway_url, &headers, None).await.status, 200);
}

#[tokio::test]
async fn a_403_refreshes_the_token_and_the_retried_response_is_returned() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let w = world(dir.path(), true, Duration::from_secs(5)).await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token_reply("stale", json!(3600)))
        .up_to_n_times(1)
        .mount(&w.oauth)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token_reply("fresh", json!(3600)))
        .mount(&w.oauth)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer stale"))
        .respond_with(ResponseTemplate::new(403))
        .expect(1)
        .mount(&w.target)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer fresh"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(2)
        .mount(&w.target)
        .await;
    let r = call(&w.gateway_url, &[("ace-binding-key", &w.key)], None).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "ok"),
        "Kyma returned the stale 403 here"
    );
    // The next call carries the fresh token at once: the stale one is never sent again.
    let r = call(&w.gateway_url, &[("ace-binding-key", &w.key)], None).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"));
    w.target.verify().await;
}

/// A token the target accepted for a while and then revoked: once refreshed, later calls carry
/// the new token, not the one the earlier calls were sent with.
#[tokio::test]
async fn a_refreshed_token_replaces_the_one_earlier_calls_carried() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let w = world(dir.path(), true, Duration::from_secs(5)).await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token_reply("first", json!(3600)))
        .up_to_n_times(1)
        .mount(&w.oauth)
        .await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token_reply("second", json!(3600)))
        .expect(1)
        .mount(&w.oauth)
        .await;
    // `first` works for two calls (fetched, then cached), then is revoked.
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer first"))
        .respond_with(ResponseTemplate::new(200).set_body_string("first"))
        .up_to_n_times(2)
        .mount(&w.target)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer first"))
        .respond_with(ResponseTemplate::new(403))
        .expect(1)
        .mount(&w.target)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer second"))
        .respond_with(ResponseTemplate::new(200).set_body_string("second"))
        .expect(3)
        .mount(&w.target)
        .await;
    let headers = [("ace-binding-key", w.key.as_str())];
    let mut bodies = Vec::new();
    for _ in 0..5 {
        let r = call(&w.gateway_url, &headers, None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        bodies.push(r.text());
    }
    assert_eq!(bodies, ["first", "first", "second", "second", "second"]);
    w.target.verify().await;
    w.oauth.verify().await;
}

#[tokio::test]
async fn an_access_token_header_is_passed_as_bearer_and_no_token_is_fetched() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let w = world(dir.path(), true, Duration::from_secs(5)).await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token_reply("unused", json!(3600)))
        .expect(0)
        .mount(&w.oauth)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer user-token"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&w.target)
        .await;
    for given in ["user-token", "Bearer user-token"] {
        let r = call(
            &w.gateway_url,
            &[("ace-binding-key", &w.key), ("access-token", given)],
            None,
        )
        .await;
        assert_eq!(r.status, 200, "Access-Token {given:?}");
    }
}

#[tokio::test]
async fn callers_without_a_binding_key_are_not_allowed() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let w = world(dir.path(), false, Duration::from_secs(5)).await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200))
        .expect(0)
        .mount(&w.target)
        .await;
    for headers in [vec![], vec![("ace-binding-key", "guess")]] {
        let r = call(&w.gateway_url, &headers, None).await;
        assert_eq!(
            (r.status, r.json()),
            (403, json!({"code": 403, "error": "Not allowed"}))
        );
    }
    let r = call(
        &format!("http://{}/re-ec-unknown/x", w.s.server.proxy),
        &[("ace-binding-key", &w.key)],
        None,
    )
    .await;
    assert_eq!(r.status, 404);
    // Unbinding revokes the key.
    let r =
        w.s.send(
            Method::DELETE,
            &w.s.admin("/v1/namespaces/production/servicebindings/lambda"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        call(&w.gateway_url, &[("ace-binding-key", &w.key)], None)
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn oauth_and_target_failures_are_502_with_a_json_body() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let w = world(dir.path(), true, Duration::from_millis(500)).await;
    let headers = [("ace-binding-key", w.key.as_str())];
    // The OAuth server answers 500, then garbage, then a token document too large to be one
    // (valid JSON, padded: it is not read into memory).
    let padded = json!({"access_token": "t", "expires_in": 3600, "padding": "x".repeat(100_000)});
    for (reply, error) in [
        (
            ResponseTemplate::new(500),
            "incorrect response code '500' while getting token from",
        ),
        (
            ResponseTemplate::new(200).set_body_string("{"),
            "failed to unmarshal token response body",
        ),
        (
            ResponseTemplate::new(200).set_body_json(padded),
            "failed to read token response body",
        ),
    ] {
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(reply)
            .up_to_n_times(1)
            .mount(&w.oauth)
            .await;
        let r = call(&w.gateway_url, &headers, None).await;
        assert_eq!(r.status, 502, "{error}");
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap_or_default()
                .starts_with(error),
            "{}",
            r.text()
        );
    }
    // A token, but the target is too slow.
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(token_reply("t", json!(3600)))
        .mount(&w.oauth)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(2)))
        .mount(&w.target)
        .await;
    let r = call(&w.gateway_url, &headers, None).await;
    assert_eq!(r.status, 502);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no answer"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn an_unreachable_target_is_502() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let w = world_with_target(
        dir.path(),
        false,
        Duration::from_secs(2),
        Some(format!("http://{closed}/api")),
    )
    .await;
    let r = call(&w.gateway_url, &[("ace-binding-key", &w.key)], None).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["code"], 502);
}

async fn broker(s: &TestServer, m: Method, path: &str, body: Option<Value>) -> client::Response {
    let url = s.admin(&format!("/broker/production/v2{path}"));
    let body = body.map(|b| b.to_string().into_bytes());
    let authorization = s.admin_authorization();
    client::request(
        &TokioNet,
        m,
        &url,
        &[
            ("x-broker-api-version", "2.14"),
            ("content-type", "application/json"),
            ("authorization", &authorization),
        ],
        body,
        None,
        TIMEOUT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn an_open_service_broker_platform_can_provision_bind_call_and_unbind() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    let target = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/uuid"))
        .respond_with(ResponseTemplate::new(200).set_body_string("d44cc373"))
        .mount(&target)
        .await;
    s.apply_re("ec").await;
    let me = s.onboard("ec").await;
    let service = json!({"provider": "p", "name": "httpbin", "description": "d", "api": {"targetUrl": format!("{}/api", target.uri())}}).to_string();
    s.send(
        Method::POST,
        &s.gateway("/ec/v1/metadata/services"),
        Some(service.as_bytes()),
        Some(&me),
    )
    .await;
    s.send(
        Method::PUT,
        &s.admin("/v1/namespaces/production/environmentmappings/ec"),
        None,
        None,
    )
    .await;

    let no_version = s
        .send(
            Method::GET,
            &s.admin("/broker/production/v2/catalog"),
            None,
            None,
        )
        .await;
    assert_eq!(no_version.status, 412);
    let catalog = broker(&s, Method::GET, "/catalog", None).await.json();
    let services = catalog["services"].as_array().cloned().unwrap_or_default();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0]["bindable"], true);
    let service_id = services[0]["id"].as_str().unwrap_or_default().to_owned();
    let plan_id = services[0]["plans"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();

    let instance = "8f7c0a3e-1b2d-4c5e-9f60-718293a4b5c6";
    let provisioned = broker(
        &s,
        Method::PUT,
        &format!("/service_instances/{instance}"),
        Some(json!({"service_id": service_id, "plan_id": plan_id})),
    )
    .await;
    assert_eq!(provisioned.status, 201, "{}", provisioned.text());
    let bound = broker(
        &s,
        Method::PUT,
        &format!("/service_instances/{instance}/service_bindings/b1"),
        Some(json!({"service_id": service_id, "plan_id": plan_id})),
    )
    .await;
    assert_eq!(bound.status, 201, "{}", bound.text());
    let creds = bound.json()["credentials"].clone();
    let (url, key) = (
        creds["GATEWAY_URL"].as_str().unwrap_or_default().to_owned(),
        creds["ACCESS_KEY"].as_str().unwrap_or_default().to_owned(),
    );

    let r = call(&format!("{url}/uuid"), &[("ace-binding-key", &key)], None).await;
    assert_eq!((r.status, r.text().as_str()), (200, "d44cc373"));

    let unbound = broker(
        &s,
        Method::DELETE,
        &format!("/service_instances/{instance}/service_bindings/b1"),
        None,
    )
    .await;
    assert_eq!(unbound.status, 200);
    assert_eq!(
        call(&format!("{url}/uuid"), &[("ace-binding-key", &key)], None)
            .await
            .status,
        403
    );
    let gone = broker(
        &s,
        Method::DELETE,
        &format!("/service_instances/{instance}/service_bindings/b1"),
        None,
    )
    .await;
    assert_eq!(gone.status, 410);
    assert_eq!(
        broker(
            &s,
            Method::DELETE,
            &format!("/service_instances/{instance}"),
            None
        )
        .await
        .status,
        200
    );
    assert_eq!(
        broker(
            &s,
            Method::DELETE,
            &format!("/service_instances/{instance}"),
            None
        )
        .await
        .status,
        410
    );
}

/// An HTTPS target whose certificate comes from a CA nobody trusts.
async fn untrusted_https_target() -> std::net::SocketAddr {
    use ace_server::pki::{Ca, KeyKind, generate_key};
    use hyper_util::rt::TokioIo;
    let now = ace_model::Timestamp::from_unix_millis(now_ms());
    let key = || generate_key(KeyKind::EcdsaP256).unwrap_or_else(|e| panic!("{e}"));
    let ca = Ca::generate(key(), now).unwrap_or_else(|e| panic!("{e}"));
    let key = key();
    let cert = ca
        .issue_server(&["localhost".into()], &key, now)
        .unwrap_or_else(|e| panic!("{e}"));
    let config = rustls::ServerConfig::builder_with_provider(ace_client::provider())
        .with_safe_default_protocol_versions()
        .map(|b| b.with_no_client_auth())
        .unwrap_or_else(|e| panic!("{e}"))
        .with_single_cert(
            ace_server::pki::certs_from_pem(&cert).unwrap_or_default(),
            ace_server::pki::key_from_pem(&key.serialize_pem()).unwrap_or_else(|e| panic!("{e}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"secure")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn skip_verify_on_the_re_lets_the_proxy_call_an_untrusted_https_api() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let addr = untrusted_https_target().await;
    let w = world_with_target(
        dir.path(),
        false,
        Duration::from_secs(5),
        Some(format!("https://localhost:{}/", addr.port())),
    )
    .await;
    let headers = [("ace-binding-key", w.key.as_str())];
    let r = call(&w.gateway_url, &headers, None).await;
    assert_eq!(r.status, 502, "verified by default: {}", r.text());
    let re = json!({"kind": "RemoteEnvironment", "metadata": {"name": "ec"}, "spec": {"description": "test", "skipVerify": true}}).to_string();
    assert_eq!(
        w.s.send(
            Method::PUT,
            &w.s.admin("/v1/remoteenvironments/ec"),
            Some(re.as_bytes()),
            None
        )
        .await
        .status,
        200
    );
    let r = call(&w.gateway_url, &headers, None).await;
    assert_eq!((r.status, r.text().as_str()), (200, "secure"));
}

/// The bug `token-cached-forever`: a token the OAuth server gave no life (`expires_in: 0`) is
/// fetched for every call, unless the cache ignores lifetimes.
#[cfg(feature = "bug-zoo")]
#[tokio::test]
async fn token_cached_forever_reuses_a_token_past_its_lifetime() {
    use ace_model::bugs::{Bug, Bugs};
    for (bugs, fetches) in [(Bugs::NONE, 2), (Bug::TokenCachedForever.into(), 1)] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut opts = options(dir.path());
        opts.bugs = bugs;
        let w = world_from(opts, true, None).await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(token_reply("tok", json!(0)))
            .expect(fetches)
            .mount(&w.oauth)
            .await;
        Mock::given(method("GET"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&w.target)
            .await;
        let headers = [("ace-binding-key", w.key.as_str())];
        for _ in 0..2 {
            assert_eq!(call(&w.gateway_url, &headers, None).await.status, 200);
        }
        w.oauth.verify().await;
    }
}

/// A plain HTTP target answering 200 `hello` and counting the connections it accepted; with
/// `one_call_each`, it closes every connection after its first response.
async fn counting_target(
    one_call_each: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use hyper_util::rt::TokioIo;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"hello")),
                    ))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(!one_call_each)
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

/// A world whose registered API is a [`counting_target`], and that target's count.
async fn world_with_counting_target(
    one_call_each: bool,
) -> (
    tempfile::TempDir,
    World,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (addr, accepted) = counting_target(one_call_each).await;
    let w = world_with_target(
        dir.path(),
        false,
        Duration::from_secs(5),
        Some(format!("http://{addr}/")),
    )
    .await;
    (dir, w, accepted)
}

/// A caller's keep-alive connection to the proxy at `url`, and the path to call on it.
async fn caller_connection(
    url: &str,
) -> (
    hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    String,
) {
    let uri: hyper::Uri = url.parse().unwrap_or_else(|e| panic!("{e}"));
    let authority = uri.authority().map(ToString::to_string).unwrap_or_default();
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(connection);
    (sender, format!("{}/uuid", uri.path().trim_end_matches('/')))
}

/// One call over a caller's connection: its status and body.
async fn call_over(
    caller: &mut hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    path: &str,
    key: &str,
) -> (u16, String) {
    use http_body_util::BodyExt;
    caller.ready().await.unwrap_or_else(|e| panic!("{e}"));
    let request = hyper::Request::get(path)
        .header("host", "localhost")
        .header("ace-binding-key", key)
        .body(http_body_util::Empty::new())
        .unwrap_or_else(|e| panic!("{e}"));
    let response = caller
        .send_request(request)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Each caller's connection forwards over an upstream connection of its own: two callers
/// taking turns use two upstream connections (a shared pool would reuse one), and more calls
/// open no more.
#[tokio::test]
async fn each_callers_connection_forwards_over_an_upstream_connection_of_its_own() {
    let (_dir, w, accepted) = world_with_counting_target(false).await;
    let (mut a, path) = caller_connection(&w.gateway_url).await;
    let (mut b, _) = caller_connection(&w.gateway_url).await;
    for _ in 0..3 {
        for caller in [&mut a, &mut b] {
            let reply = call_over(caller, &path, &w.key).await;
            assert_eq!(reply, (200, "hello".to_owned()));
        }
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// A target that closes its connection after every response: the caller's next call opens a
/// new one and still gets through.
#[tokio::test]
async fn an_upstream_connection_the_target_closed_is_opened_again() {
    let (_dir, w, accepted) = world_with_counting_target(true).await;
    let (mut caller, path) = caller_connection(&w.gateway_url).await;
    for _ in 0..3 {
        let reply = call_over(&mut caller, &path, &w.key).await;
        assert_eq!(reply, (200, "hello".to_owned()));
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
}
