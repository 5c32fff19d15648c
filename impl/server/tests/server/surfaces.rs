//! `ace serve` over loopback: every status and body of reference §1 and §2, certificate
//! isolation, restarts and limits.

use crate::common::*;
use ace_model::Timestamp;
use ace_server::pki::{self, Ca, KeyKind};
use base64::Engine as _;
use hyper::Method;
use serde_json::json;

fn err(code: u16, msg: &str) -> serde_json::Value {
    json!({"code": code, "error": msg})
}

#[tokio::test]
async fn tokens_info_and_one_time_urls() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    s.apply_re("ec-default").await;
    let r = s
        .send(
            Method::POST,
            &s.internal("/v1/remoteenvironments/ec-default/tokens"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 201);
    let body = r.json();
    let token = body["token"].as_str().unwrap_or_default();
    assert_eq!(token.len(), 88);
    let url = body["url"].as_str().unwrap_or_default().to_owned();
    assert_eq!(
        url,
        s.external(&format!(
            "/v1/remoteenvironments/ec-default/info?token={token}"
        ))
    );

    let info = s.send(Method::GET, &url, None, None).await;
    assert_eq!(info.status, 200);
    assert_eq!(
        info.json()["certificate"]["subject"],
        "OU=OrgUnit,O=Organization,L=Waldorf,ST=Waldorf,C=DE,CN=ec-default"
    );
    assert_eq!(
        info.json()["api"]["metadataUrl"],
        json!(s.gateway("/ec-default/v1/metadata/services"))
    );
    let again = s.send(Method::GET, &url, None, None).await;
    assert_eq!(
        (again.status, again.json()),
        (403, err(403, "Invalid token."))
    );
    assert_eq!(
        again.headers["content-type"],
        "application/json;charset=UTF-8"
    );

    let missing = s
        .send(
            Method::GET,
            &s.external("/v1/remoteenvironments/ec-default/info"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (missing.status, missing.json()),
        (403, err(403, "Token not provided."))
    );
    let unknown = s
        .send(
            Method::POST,
            &s.internal("/v1/remoteenvironments/nope/tokens"),
            None,
            None,
        )
        .await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn client_certs_returns_the_client_and_ca_chain() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    s.apply_re("ec").await;
    let (r, _key) = s.submit_csr("ec", &subject("ec"), KeyKind::EcdsaP256).await;
    assert_eq!(r.status, 201, "{}", r.text());
    let chain = pki::certs_from_pem(&chain_of(&r.json())).unwrap_or_default();
    assert_eq!(chain.len(), 2, "client certificate, then the CA");
    assert_eq!(
        chain[1].as_ref(),
        pki::certs_from_pem(&s.server.ca_pem).unwrap_or_default()[0].as_ref()
    );
    let peer = pki::peer_identity(&chain[0]).unwrap_or_else(|| panic!("unreadable certificate"));
    assert_eq!(peer.common_name.as_deref(), Some("ec"));
}

#[tokio::test]
async fn rsa_2048_csrs_like_the_seeds_openssl_are_accepted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    s.apply_re("ec").await;
    let (r, _key) = s.submit_csr("ec", &subject("ec"), KeyKind::Rsa2048).await;
    assert_eq!(r.status, 201, "{}", r.text());
}

#[tokio::test]
async fn bad_csrs_get_400_and_keep_the_token() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    s.apply_re("ec").await;
    let token = s.token("ec").await;
    let info = s
        .send(
            Method::GET,
            &s.external(&format!("/v1/remoteenvironments/ec/info?token={token}")),
            None,
            None,
        )
        .await;
    let csr_url = info.json()["csrUrl"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let key = pki::generate_key(KeyKind::EcdsaP256).unwrap_or_else(|e| panic!("{e}"));
    let wrong_cn = pki::make_csr(&key, &subject("intruder")).unwrap_or_default();
    let mut no_country = subject("ec");
    no_country.country = None;
    let no_country = pki::make_csr(&key, &no_country).unwrap_or_default();
    let cases: Vec<(String, &str)> = vec![
        ("{not json".into(), "Error while unmarshalling request body"),
        (json!({"csr": "!!!"}).to_string(), "There was an error while parsing the base64 content. An incorrect value was provided."),
        (json!({"csr": b64("no pem here")}).to_string(), "Error while decoding pem block."),
        (json!({"csr": b64("-----BEGIN CERTIFICATE REQUEST-----\nAQID\n-----END CERTIFICATE REQUEST-----\n")}).to_string(), "Error while parsing CSR:"),
        (json!({"csr": b64(&wrong_cn)}).to_string(), "CSR: Invalid CName provided."),
        (json!({"csr": b64(&no_country)}).to_string(), "CSR: No country provided."),
    ];
    for (body, message) in cases {
        let r = s
            .send(Method::POST, &csr_url, Some(body.as_bytes()), None)
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let got = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(
            got.starts_with(message),
            "{got:?} should start with {message:?}"
        );
    }
    // The token survived every failure.
    let good = pki::make_csr(&key, &subject("ec")).unwrap_or_default();
    let r = s
        .send(
            Method::POST,
            &csr_url,
            Some(json!({"csr": b64(&good)}).to_string().as_bytes()),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s
        .send(
            Method::POST,
            &csr_url,
            Some(json!({"csr": b64(&good)}).to_string().as_bytes()),
            None,
        )
        .await;
    assert_eq!((r.status, r.json()), (403, err(403, "Invalid token.")));
}

#[tokio::test]
async fn the_spec_is_served_and_v1_redirects_to_it() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    let r = s.send(Method::GET, &s.external("/v1"), None, None).await;
    assert_eq!(
        (r.status, r.headers["location"].to_str().unwrap_or_default()),
        (301, "/v1/api.yaml")
    );
    let r = s
        .send(Method::GET, &s.external("/v1/api.yaml"), None, None)
        .await;
    assert_eq!(r.status, 200);
    assert!(
        r.text()
            .contains("/v1/remoteenvironments/{reName}/client-certs")
    );
}

#[tokio::test]
async fn metadata_crud_over_mutual_tls() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    s.apply_re("ec").await;
    let me = s.onboard("ec").await;
    let services = s.gateway("/ec/v1/metadata/services");
    let created = s
        .send(
            Method::POST,
            &services,
            Some(&service_body("orders")),
            Some(&me),
        )
        .await;
    assert_eq!(created.status, 200, "{}", created.text());
    let id = created.json()["id"].as_str().unwrap_or_default().to_owned();
    let dup = s
        .send(
            Method::POST,
            &services,
            Some(&service_body("orders")),
            Some(&me),
        )
        .await;
    assert_eq!(
        (dup.status, dup.json()),
        (
            409,
            err(409, "Service with Identifier orders already exists")
        )
    );
    let one = s
        .send(Method::GET, &format!("{services}/{id}"), None, Some(&me))
        .await;
    assert_eq!(one.status, 200);
    assert!(!one.text().contains("very-secret"), "secrets are masked");
    assert_eq!(
        one.json()["api"]["credentials"]["oauth"]["clientSecret"],
        "********"
    );
    let invalid = s
        .send(Method::POST, &services, Some(b"{}"), Some(&me))
        .await;
    assert_eq!(invalid.status, 400);
    assert!(invalid.json()["error"].as_str().unwrap_or_default().starts_with("Failed to validate request body, Incorrect structure of service definition, Provider field cannot be empty."));
    let update = s
        .send(
            Method::PUT,
            &format!("{services}/{id}"),
            Some(&service_body("ignored")),
            Some(&me),
        )
        .await;
    assert_eq!(
        (update.status, update.json()["identifier"].clone()),
        (200, json!("orders"))
    );
    let unknown = s
        .send(Method::GET, &format!("{services}/nope"), None, Some(&me))
        .await;
    assert_eq!(
        (unknown.status, unknown.json()),
        (404, err(404, "Service with ID nope not found"))
    );
    let list = s.send(Method::GET, &services, None, Some(&me)).await;
    assert_eq!(list.json().as_array().map(Vec::len), Some(1));
    for _ in 0..2 {
        let deleted = s
            .send(Method::DELETE, &format!("{services}/{id}"), None, Some(&me))
            .await;
        assert_eq!((deleted.status, deleted.body.len()), (204, 0));
    }
    let root = s
        .send(Method::POST, &s.gateway("/ec/v1/metadata"), None, Some(&me))
        .await;
    assert_eq!(
        (
            root.status,
            root.headers["location"].to_str().unwrap_or_default()
        ),
        (301, "/ec/v1/metadata/api.yaml")
    );
    let spec = s
        .send(
            Method::GET,
            &s.gateway("/ec/v1/metadata/api.yaml"),
            None,
            Some(&me),
        )
        .await;
    assert_eq!(spec.status, 200);
    let health = s
        .send(Method::GET, &s.gateway("/v1/health"), None, None)
        .await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn certificates_open_only_their_remote_environment() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    s.apply_re("ec-a").await;
    s.apply_re("ec-b").await;
    let a = s.onboard("ec-a").await;
    let r = s
        .send(
            Method::GET,
            &s.gateway("/ec-b/v1/metadata/services"),
            None,
            Some(&a),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (
            403,
            err(
                403,
                "The client certificate does not belong to Remote Environment ec-b."
            )
        )
    );
    let anonymous = s
        .send(
            Method::GET,
            &s.gateway("/ec-a/v1/metadata/services"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (anonymous.status, anonymous.json()),
        (403, err(403, "A client certificate is required."))
    );
}

#[tokio::test]
async fn a_deleted_remote_environment_refuses_its_certificates_even_when_recreated() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    s.apply_re("ec").await;
    let old = s.onboard("ec").await;
    let r = s
        .send(
            Method::DELETE,
            &s.admin("/v1/remoteenvironments/ec"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    s.apply_re("ec").await;
    let r = s
        .send(
            Method::GET,
            &s.gateway("/ec/v1/metadata/services"),
            None,
            Some(&old),
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (403, err(403, "The client certificate has been revoked."))
    );
    let fresh = s.onboard("ec").await;
    let r = s
        .send(
            Method::GET,
            &s.gateway("/ec/v1/metadata/services"),
            None,
            Some(&fresh),
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    s.apply_re("ec").await;
    // A certificate with the right CN and a plausible serial, signed by a stranger's CA.
    let key = pki::generate_key(KeyKind::EcdsaP256).unwrap_or_else(|e| panic!("{e}"));
    let rogue =
        Ca::generate(key, Timestamp::from_unix_millis(now_ms())).unwrap_or_else(|e| panic!("{e}"));
    let status = gateway_status_with_certificate(&s, &rogue, "11", -1000, 86_400_000).await;
    assert_eq!(status, None, "a foreign certificate must not get an answer");
}

#[tokio::test]
async fn unknown_routes_wrong_methods_and_large_bodies() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = options(dir.path());
    opts.limits.max_body_bytes = 1024;
    opts.limits.max_metadata_body_bytes = 2048;
    let s = start_with(opts).await;
    s.apply_re("ec").await;
    let me = s.onboard("ec").await;
    let r = s.send(Method::GET, &s.internal("/nope"), None, None).await;
    assert_eq!(
        (r.status, r.json()),
        (404, err(404, "Requested resource could not be found."))
    );
    let r = s
        .send(
            Method::GET,
            &s.internal("/v1/remoteenvironments/ec/tokens"),
            None,
            None,
        )
        .await;
    assert_eq!((r.status, r.json()), (405, err(405, "Method not allowed.")));
    let r = s
        .send(
            Method::DELETE,
            &s.external("/v1/remoteenvironments/ec/info"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 405);
    let big = vec![b'x'; 4096];
    let r = s
        .send(
            Method::POST,
            &s.external("/v1/remoteenvironments/ec/client-certs?token=t"),
            Some(&big),
            None,
        )
        .await;
    assert_eq!(r.status, 413);
    let r = s
        .send(
            Method::POST,
            &s.gateway("/ec/v1/metadata/services"),
            Some(&big),
            Some(&me),
        )
        .await;
    assert_eq!(r.status, 413);
    let r = s
        .send(
            Method::PATCH,
            &s.gateway("/ec/v1/metadata/services"),
            None,
            Some(&me),
        )
        .await;
    assert_eq!(r.status, 405);
    let r = s
        .send(
            Method::PUT,
            &s.admin("/v1/remoteenvironments/Bad_Name"),
            Some(b"{}"),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("DNS-1123")
    );
    let r = s
        .send(
            Method::PUT,
            &s.admin("/v1/remoteenvironments/ec"),
            Some(b"{"),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (me, id, ca) = {
        let s = start(dir.path()).await;
        s.apply_re("ec").await;
        let me = s.onboard("ec").await;
        let r = s
            .send(
                Method::POST,
                &s.gateway("/ec/v1/metadata/services"),
                Some(&service_body("x")),
                Some(&me),
            )
            .await;
        let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
        let ca = s.server.ca_pem.clone();
        s.server.stop().await;
        (me, id, ca)
    };
    let s = start(dir.path()).await;
    assert_eq!(s.server.ca_pem, ca, "the CA is kept");
    assert!(s.server.replayed > 0);
    let r = s
        .send(
            Method::GET,
            &s.gateway(&format!("/ec/v1/metadata/services/{id}")),
            None,
            Some(&me),
        )
        .await;
    assert_eq!(
        r.status,
        200,
        "the certificate and the service survive: {}",
        r.text()
    );
}

#[tokio::test]
async fn catalog_and_provisioning_through_the_admin_api() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    s.apply_re("ec").await;
    let me = s.onboard("ec").await;
    let r = s
        .send(
            Method::POST,
            &s.gateway("/ec/v1/metadata/services"),
            Some(&service_body("")),
            Some(&me),
        )
        .await;
    let id = r.json()["id"].as_str().unwrap_or_default().to_owned();
    let r = s
        .send(
            Method::PUT,
            &s.admin("/v1/namespaces/production/environmentmappings/ec"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 201);
    let classes = s
        .send(
            Method::GET,
            &s.admin("/v1/namespaces/production/serviceclasses"),
            None,
            None,
        )
        .await
        .json();
    assert_eq!(classes[0]["name"], json!(format!("re-ec-{id}")));
    let doc = json!({"spec": {"serviceClassName": format!("re-ec-{id}")}}).to_string();
    let r = s
        .send(
            Method::PUT,
            &s.admin("/v1/namespaces/production/serviceinstances/orders"),
            Some(doc.as_bytes()),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let r = s.send(Method::GET, &s.admin("/metrics"), None, None).await;
    assert!(
        r.text().contains("ace_records_appended_total"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn an_rsa_ca_can_be_chosen() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = options(dir.path());
    opts.ca_key = KeyKind::Rsa2048;
    let s = start_with(opts).await;
    assert!(
        std::fs::read_to_string(dir.path().join("ca.key"))
            .unwrap_or_default()
            .contains("BEGIN PRIVATE KEY")
    );
    s.apply_re("ec").await;
    let me = s.onboard("ec").await;
    let r = s
        .send(
            Method::GET,
            &s.gateway("/ec/v1/metadata/services"),
            None,
            Some(&me),
        )
        .await;
    assert_eq!(r.status, 200);
}

/// Admin documents of the wrong shape, found by schemathesis against `specs/admin.yaml`: each is
/// refused with 400 and its reason, and nothing is created or replayed.
#[tokio::test]
async fn admin_documents_of_the_wrong_shape_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    let put = |path: &'static str, body: &'static str| {
        let s = &s;
        async move {
            let r = s
                .send(Method::PUT, &s.admin(path), Some(body.as_bytes()), None)
                .await;
            (r.status, r.json())
        }
    };
    assert_eq!(
        put("/v1/remoteenvironments/ec", "[null, null]").await,
        (
            400,
            err(400, "A RemoteEnvironment document must be a JSON object.")
        )
    );
    assert_eq!(
        put("/v1/remoteenvironments/ec", r#"{"kind": 1}"#).await,
        (400, err(400, "kind must be a string."))
    );
    assert_eq!(
        put("/v1/remoteenvironments/ec", r#"{"spec": "text"}"#).await,
        (400, err(400, "A RemoteEnvironment needs a spec object."))
    );
    let r = s
        .send(
            Method::GET,
            &s.admin("/v1/remoteenvironments/ec"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 404, "nothing was created");

    assert_eq!(
        put(
            "/v1/namespaces/prod/eventactivations/ec",
            r#"{"spec": {"sourceId": "ec", "displayName": {}}}"#
        )
        .await,
        (400, err(400, "spec.displayName must be a string."))
    );
    let sub = |endpoint: &str| {
        json!({"spec": {"endpoint": endpoint, "include_subscription_name_header": false,
            "max_inflight": 1, "push_request_timeout_ms": 0, "event_type": "order.created",
            "event_type_version": "v1", "source_id": "ec"}})
        .to_string()
    };
    let r = s
        .send(
            Method::PUT,
            &s.admin("/v1/namespaces/prod/subscriptions/s1"),
            Some(sub("http://[").as_bytes()),
            None,
        )
        .await;
    assert_eq!(r.status, 400);
    let message = r.json()["error"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.starts_with(
            r#"Invalid Subscription: spec.endpoint "http://[" is not a URL events can be pushed to: "#
        ),
        "{message}"
    );
    // A subscription that matches Kyma's pattern but breaks another CRD constraint keeps the
    // model's message (Kyma's order).
    let r = s
        .send(
            Method::PUT,
            &s.admin("/v1/namespaces/prod/subscriptions/s1"),
            Some(sub("ftp://x").as_bytes()),
            None,
        )
        .await;
    assert_eq!(
        r.json()["error"],
        r#"Invalid Subscription: spec.endpoint "ftp://x" must match ^(https?)://.+$."#
    );
    let r = s
        .send(
            Method::GET,
            &s.admin("/v1/namespaces/prod/subscriptions/s1"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 404, "nothing was created");
    let r = s
        .send(
            Method::PUT,
            &s.admin("/v1/namespaces/prod/subscriptions/s1"),
            Some(sub("http://[::1]:9/events").as_bytes()),
            None,
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.json());

    let r = s
        .send(
            Method::POST,
            &s.admin("/v1/namespaces/prod/subscriptions/s1/replay"),
            Some(br#"{"eventId": {}}"#),
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.json()),
        (400, err(400, "eventId must be a string."))
    );

    let r = s
        .send(Method::TRACE, &s.admin("/v1/api.yaml"), None, None)
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers["allow"], "GET");
}

/// `GET /v1/state` (admin, authenticated): the log position and a digest of the state, which
/// changes with a write and not with a read.
#[tokio::test]
async fn the_state_digest_follows_the_log() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let t = start(dir.path()).await;
    let state = async || {
        let r = t.send(Method::GET, &t.admin("/v1/state"), None, None).await;
        assert_eq!(r.status, 200, "{}", r.text());
        let body = r.json();
        assert_eq!(
            body["leading"],
            json!(true),
            "a server alone decides: {body}"
        );
        (
            body["applied"].as_u64().unwrap_or_default(),
            body["sha256"].as_str().unwrap_or_default().to_owned(),
        )
    };
    let (_, first) = state().await;
    assert_eq!(first.len(), 64);
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()), "{first}");
    assert_eq!(state().await.1, first, "a read changes nothing");
    assert_eq!(t.apply_re("shop").await.status / 100, 2);
    let (_, second) = state().await;
    assert_ne!(second, first, "a write changes the state");

    let anonymous = ace_client::request(
        &ace_client::TokioNet,
        Method::GET,
        &t.admin("/v1/state"),
        &[],
        None,
        None,
        std::time::Duration::from_secs(5),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(anonymous.status, 401, "the admin token is required");
}
