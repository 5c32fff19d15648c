//! The Application Connector's behaviour, request by request, through the whole model.

use std::time::Duration;

use crate::common::*;
use ace_model::connector::{ConnectorError, CsrSubmission, GatewayError};
use ace_model::registry::MetadataError;
use ace_model::{AdminRequest, GatewayCall, Model, Reply, Request, RequestError};
use serde_json::json;

fn connector_error(reply: &Reply) -> Option<&ConnectorError> {
    match reply.error() {
        Some(RequestError::Connector(e)) => Some(e),
        _ => None,
    }
}

fn gateway_error(reply: &Reply) -> Option<&GatewayError> {
    match reply.error() {
        Some(RequestError::Gateway(e)) => Some(e),
        _ => None,
    }
}

#[test]
fn token_reply_carries_the_configuration_url() {
    let mut h = Harness::new(1);
    h.apply_re("ec-default");
    let Reply::Token(t) = h.send(Request::CreateToken {
        re: "ec-default".into(),
    }) else {
        panic!()
    };
    assert_eq!(t.token.len(), 88);
    assert_eq!(
        t.url,
        format!(
            "https://connector-service.kyma.local/v1/remoteenvironments/ec-default/info?token={}",
            t.token
        )
    );
}

#[test]
fn tokens_are_refused_for_unknown_remote_environments() {
    let mut h = Harness::new(1);
    let reply = h.send(Request::CreateToken { re: "nope".into() });
    assert_eq!(reply.status(), 404);
    assert!(h.log.is_empty(), "a refusal changes nothing");
}

#[test]
fn config_url_works_only_once() {
    let mut h = Harness::new(2);
    h.apply_re("ec");
    let token = h.token("ec").unwrap_or_default();
    assert_eq!(h.info("ec", &token).status(), 200);
    let again = h.info("ec", &token);
    assert_eq!(connector_error(&again), Some(&ConnectorError::InvalidToken));
    assert_eq!(
        again.body(),
        Some(json!({"code": 403, "error": "Invalid token."}))
    );
}

#[test]
fn a_new_token_replaces_the_old_one() {
    let mut h = Harness::new(3);
    h.apply_re("ec");
    let first = h.token("ec").unwrap_or_default();
    let second = h.token("ec").unwrap_or_default();
    assert_eq!(h.info("ec", &first).status(), 403);
    assert_eq!(h.info("ec", &second).status(), 200);
}

#[test]
fn missing_or_empty_token_is_not_provided() {
    let mut h = Harness::new(3);
    h.apply_re("ec");
    for token in [None, Some(String::new())] {
        let reply = h.send(Request::Info {
            re: "ec".into(),
            token,
        });
        assert_eq!(
            connector_error(&reply),
            Some(&ConnectorError::TokenNotProvided)
        );
    }
}

#[test]
fn a_token_is_valid_only_for_its_remote_environment() {
    let mut h = Harness::new(4);
    h.apply_re("a");
    h.apply_re("b");
    let token_a = h.token("a").unwrap_or_default();
    h.token("b");
    assert_eq!(h.info("b", &token_a).status(), 403);
    assert_eq!(h.info("a", &token_a).status(), 200);
}

#[test]
fn tokens_expire_after_their_ttl() {
    let mut h = Harness::new(5);
    h.apply_re("ec");
    let token = h.token("ec").unwrap_or_default();
    h.advance(h.model.config().connector.token_ttl);
    assert_eq!(
        connector_error(&h.info("ec", &token)),
        Some(&ConnectorError::InvalidToken)
    );
}

#[test]
fn info_describes_the_csr_and_the_api_urls() {
    let mut h = Harness::new(6);
    h.apply_re("ec-default");
    let token = h.token("ec-default").unwrap_or_default();
    let reply = h.info("ec-default", &token);
    let body = reply.body().unwrap_or_default();
    let csr_url = body["csrUrl"].as_str().unwrap_or_default();
    assert!(csr_url.starts_with(
        "https://connector-service.kyma.local/v1/remoteenvironments/ec-default/client-certs?token="
    ));
    assert_ne!(csr_token_of(csr_url), token, "info issues a new token");
    assert_eq!(
        body["api"],
        json!({
            "metadataUrl": "https://gateway.kyma.local/ec-default/v1/metadata/services",
            "eventsUrl": "https://gateway.kyma.local/ec-default/v1/events",
            "certificatesUrl": "https://connector-service.kyma.local/v1/remoteenvironments/ec-default",
        })
    );
    assert_eq!(
        body["certificate"],
        json!({
            "subject": "OU=OrgUnit,O=Organization,L=Waldorf,ST=Waldorf,C=DE,CN=ec-default",
            "extensions": "",
            "key-algorithm": "rsa2048",
        })
    );
}

#[test]
fn client_certs_consumes_the_token_only_on_success() {
    let mut h = Harness::new(7);
    h.apply_re("ec");
    let token = h.token("ec").unwrap_or_default();
    let Reply::Info(info) = h.info("ec", &token) else {
        panic!()
    };
    let csr_token = csr_token_of(&info.csr_url);
    // Failures keep the token: the client can fix its CSR and retry.
    let bad = h.client_certs("ec", &csr_token, good_csr("other"));
    assert_eq!(
        connector_error(&bad),
        Some(&ConnectorError::InvalidCommonName)
    );
    let garbled = h.client_certs("ec", &csr_token, CsrSubmission::MalformedBody("eof".into()));
    assert_eq!(
        garbled.status(),
        400,
        "Kyma answered 500 here; ACE answers 400"
    );
    let Reply::Certificate(cert) = h.client_certs("ec", &csr_token, good_csr("ec")) else {
        panic!()
    };
    assert_eq!(cert.re, "ec");
    assert_eq!(
        cert.not_after.saturating_duration_since(cert.not_before),
        Duration::from_secs(365 * 24 * 3600)
    );
    // Success consumes it.
    assert_eq!(
        h.client_certs("ec", &csr_token, good_csr("ec")).status(),
        403
    );
}

#[test]
fn token_is_checked_before_the_csr() {
    let mut h = Harness::new(8);
    h.apply_re("ec");
    let reply = h.client_certs("ec", "forged", CsrSubmission::BadBase64);
    assert_eq!(connector_error(&reply), Some(&ConnectorError::InvalidToken));
}

#[test]
fn serials_are_unique() {
    let mut h = Harness::new(9);
    h.apply_re("ec");
    let a = h.onboard("ec");
    let b = h.onboard("ec");
    assert_ne!(a.serial, b.serial);
}

#[test]
fn a_certificate_opens_its_remote_environment_only() {
    let mut h = Harness::new(10);
    h.apply_re("a");
    h.apply_re("b");
    let cert_a = h.onboard("a");
    assert_eq!(
        h.gateway("a", Some(&cert_a), GatewayCall::ListServices)
            .status(),
        200
    );
    let denied = h.gateway("b", Some(&cert_a), GatewayCall::ListServices);
    assert_eq!(
        gateway_error(&denied),
        Some(&GatewayError::WrongRemoteEnvironment("b".into()))
    );
    assert_eq!(denied.status(), 403);
    let anonymous = h.gateway("a", None, GatewayCall::ListServices);
    assert_eq!(
        gateway_error(&anonymous),
        Some(&GatewayError::NoCertificate)
    );
}

#[test]
fn deleting_a_remote_environment_revokes_its_certificates_even_if_recreated() {
    let mut h = Harness::new(11);
    h.apply_re("ec");
    let cert = h.onboard("ec");
    let token = h.token("ec").unwrap_or_default();
    assert_eq!(h.delete_re("ec").status(), 204);
    assert_eq!(
        h.gateway("ec", Some(&cert), GatewayCall::ListServices)
            .status(),
        403
    );
    assert_eq!(h.info("ec", &token).status(), 403, "its token died with it");
    h.apply_re("ec");
    let denied = h.gateway("ec", Some(&cert), GatewayCall::ListServices);
    assert_eq!(gateway_error(&denied), Some(&GatewayError::Revoked));
    let fresh = h.onboard("ec");
    assert_eq!(
        h.gateway("ec", Some(&fresh), GatewayCall::ListServices)
            .status(),
        200
    );
}

#[test]
fn expired_certificates_are_refused() {
    let mut h = Harness::new(12);
    h.apply_re("ec");
    let cert = h.onboard("ec");
    h.advance(h.model.config().connector.certificate_validity);
    let denied = h.gateway("ec", Some(&cert), GatewayCall::ListServices);
    assert_eq!(gateway_error(&denied), Some(&GatewayError::Expired));
}

#[test]
fn remote_environment_names_must_be_dns1123_labels() {
    let mut h = Harness::new(13);
    let reply = h.apply_re("system_prod");
    assert_eq!(reply.status(), 400);
    let msg = reply.body().unwrap_or_default()["error"].to_string();
    assert!(
        msg.contains("system_prod") && msg.contains("DNS-1123"),
        "{msg}"
    );
    assert!(h.log.is_empty());
}

#[test]
fn access_label_is_forced_to_the_name_and_apply_is_idempotent() {
    let mut h = Harness::new(14);
    assert_eq!(h.apply_re("ec").status(), 201);
    let records = h.log.len();
    let again = h.apply_re("ec");
    assert_eq!(again.status(), 200);
    assert_eq!(h.log.len(), records, "an unchanged apply writes nothing");
    assert_eq!(
        again.body().unwrap_or_default()["spec"]["accessLabel"],
        "ec"
    );
}

#[test]
fn metadata_crud_follows_kyma_semantics() {
    let mut h = Harness::new(15);
    h.apply_re("ec");
    let cert = h.onboard("ec");
    let created = h.gateway(
        "ec",
        Some(&cert),
        GatewayCall::CreateService {
            body: service_body("orders", "s3cr3t"),
        },
    );
    assert_eq!(created.status(), 200, "create answers 200, not 201");
    let id = created.body().unwrap_or_default()["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(id.len(), 36);

    let dup = h.gateway(
        "ec",
        Some(&cert),
        GatewayCall::CreateService {
            body: service_body("orders", "x"),
        },
    );
    assert_eq!(dup.status(), 409);
    assert_eq!(
        dup.body(),
        Some(json!({"code": 409, "error": "Service with Identifier orders already exists"}))
    );

    let details = h.gateway(
        "ec",
        Some(&cert),
        GatewayCall::GetService { id: id.clone() },
    );
    let body = details.body().unwrap_or_default();
    assert_eq!(
        body["api"]["credentials"]["oauth"]["clientSecret"],
        "********"
    );
    assert_eq!(body["api"]["credentials"]["oauth"]["clientId"], "********");
    assert_eq!(body["labels"], json!({"connected-app": "ec"}));
    assert_eq!(body["identifier"], "orders");
    assert_eq!(body["api"]["spec"]["host"], "127.0.0.1:8090");

    // PUT keeps the stored identifier and answers the base fields only.
    let mut update: serde_json::Value =
        serde_json::from_slice(&service_body("renamed", "s")).unwrap_or_default();
    update["name"] = json!("orders v2");
    update.as_object_mut().map(|o| o.remove("api"));
    let updated = h.gateway(
        "ec",
        Some(&cert),
        GatewayCall::UpdateService {
            id: id.clone(),
            body: update.to_string().into_bytes(),
        },
    );
    assert_eq!(updated.status(), 200);
    assert_eq!(
        updated.body(),
        Some(
            json!({"provider": "myCompany", "name": "orders v2", "description": "This is some service",
                    "identifier": "orders", "labels": {"connected-app": "ec"}})
        )
    );
    let after = h
        .gateway(
            "ec",
            Some(&cert),
            GatewayCall::GetService { id: id.clone() },
        )
        .body()
        .unwrap_or_default();
    assert!(
        after.get("api").is_none(),
        "an update replaces the whole service"
    );

    let list = h
        .gateway("ec", Some(&cert), GatewayCall::ListServices)
        .body()
        .unwrap_or_default();
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["id"], json!(id));

    assert_eq!(
        h.gateway(
            "ec",
            Some(&cert),
            GatewayCall::DeleteService { id: id.clone() }
        )
        .status(),
        204
    );
    assert_eq!(
        h.gateway(
            "ec",
            Some(&cert),
            GatewayCall::DeleteService { id: id.clone() }
        )
        .status(),
        204,
        "delete is idempotent"
    );
    let gone = h.gateway(
        "ec",
        Some(&cert),
        GatewayCall::GetService { id: id.clone() },
    );
    assert_eq!(
        gone.error(),
        Some(&RequestError::Metadata(MetadataError::NotFound(id.clone())))
    );
}

#[test]
fn put_validates_the_body_before_looking_up_the_id() {
    let mut h = Harness::new(16);
    h.apply_re("ec");
    let cert = h.onboard("ec");
    let bad = h.gateway(
        "ec",
        Some(&cert),
        GatewayCall::UpdateService {
            id: "nope".into(),
            body: b"{}".to_vec(),
        },
    );
    assert_eq!(bad.status(), 400);
    let unknown = h.gateway(
        "ec",
        Some(&cert),
        GatewayCall::UpdateService {
            id: "nope".into(),
            body: service_body("", "s"),
        },
    );
    assert_eq!(
        unknown.body(),
        Some(
            json!({"code": 404, "error": "Updating nope service failed, Service with ID nope not found"})
        )
    );
}

#[test]
fn metadata_root_redirects_to_the_spec() {
    let mut h = Harness::new(17);
    h.apply_re("ec");
    let cert = h.onboard("ec");
    let reply = h.gateway("ec", Some(&cert), GatewayCall::MetadataRoot);
    assert_eq!(reply.status(), 301);
    assert_eq!(
        reply,
        Reply::Redirect {
            location: "/ec/v1/metadata/api.yaml".into()
        }
    );
}

#[test]
fn catalog_shows_services_only_in_mapped_namespaces() {
    let mut h = Harness::new(18);
    h.apply_re("ec");
    let cert = h.onboard("ec");
    let id = h
        .gateway(
            "ec",
            Some(&cert),
            GatewayCall::CreateService {
                body: service_body("", "s"),
            },
        )
        .body()
        .unwrap_or_default()["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let catalog = |h: &mut Harness, ns: &str| {
        h.send(Request::Admin(AdminRequest::Catalog {
            namespace: ns.into(),
        }))
        .body()
        .unwrap_or_default()
    };
    assert_eq!(catalog(&mut h, "production"), json!([]));
    let mapped = h.send(Request::Admin(AdminRequest::ApplyMapping {
        namespace: "production".into(),
        re: "ec".into(),
    }));
    assert_eq!(mapped.status(), 201);
    let classes = catalog(&mut h, "production");
    assert_eq!(classes[0]["name"], json!(format!("re-ec-{id}")));
    assert_eq!(classes[0]["bindable"], json!(true));
    assert_eq!(classes[0]["plans"][0]["id"], json!(format!("{id}-plan")));
    assert_eq!(
        classes[0]["metadata"]["bindingLabels"],
        json!({ format!("re-ec-{id}"): "true" })
    );
    assert_eq!(catalog(&mut h, "stage"), json!([]));
    h.delete_re("ec");
    assert_eq!(
        catalog(&mut h, "production"),
        json!([]),
        "a deleted RE's classes disappear"
    );
}

#[test]
fn provisioning_needs_a_mapping_and_deleting_the_re_deprovisions() {
    let mut h = Harness::new(19);
    h.apply_re("ec");
    let cert = h.onboard("ec");
    let id = h
        .gateway(
            "ec",
            Some(&cert),
            GatewayCall::CreateService {
                body: service_body("", "s"),
            },
        )
        .body()
        .unwrap_or_default()["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let provision = Request::Admin(AdminRequest::Provision {
        namespace: "production".into(),
        name: "orders".into(),
        class: format!("re-ec-{id}"),
    });
    assert_eq!(
        h.send(provision.clone()).status(),
        404,
        "no mapping, no class"
    );
    h.send(Request::Admin(AdminRequest::ApplyMapping {
        namespace: "production".into(),
        re: "ec".into(),
    }));
    assert_eq!(h.send(provision.clone()).status(), 201);
    assert_eq!(
        h.send(provision).status(),
        200,
        "provisioning again is idempotent"
    );
    h.delete_re("ec");
    let deprovision = Request::Admin(AdminRequest::Deprovision {
        namespace: "production".into(),
        name: "orders".into(),
    });
    assert_eq!(
        h.send(deprovision).status(),
        404,
        "the instance went with its RE"
    );
}

#[test]
fn replaying_the_records_rebuilds_the_same_state_and_snapshots_compact_it() {
    let mut h = Harness::new(20);
    h.apply_re("ec");
    let cert = h.onboard("ec");
    h.gateway(
        "ec",
        Some(&cert),
        GatewayCall::CreateService {
            body: service_body("x", "s"),
        },
    );
    h.token("ec");
    h.apply_re("gone");
    h.delete_re("gone");
    let replayed = h.replayed();
    assert_eq!(replayed.state(), h.model.state());
    let snapshot = h.model.snapshot();
    let compacted = Model::replay(h.model.config().clone(), 1.into(), snapshot);
    assert_eq!(compacted.state(), h.model.state());
    // The incarnation counter survives compaction: a re-created RE is a new incarnation.
    let mut h2 = Harness::new(21);
    h2.model = compacted;
    h2.apply_re("gone");
    assert!(
        h2.model
            .state()
            .remote_environment("gone")
            .map(|r| r.incarnation)
            > h.model
                .state()
                .remote_environment("ec")
                .map(|r| r.incarnation)
    );
}

#[test]
fn records_survive_serialization() {
    let mut h = Harness::new(22);
    h.apply_re("ec");
    let cert = h.onboard("ec");
    h.gateway(
        "ec",
        Some(&cert),
        GatewayCall::CreateService {
            body: service_body("x", "s3cr3t"),
        },
    );
    let live_token = h.token("ec").unwrap_or_default();
    let text: Vec<String> = h
        .log
        .iter()
        .map(|r| serde_json::to_string(r).unwrap_or_default())
        .collect();
    let back: Vec<ace_model::Record> = text
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect();
    assert_eq!(back, h.log);
    assert!(
        text.iter().all(|t| !t.contains(&live_token)),
        "tokens are stored as digests only"
    );
}

#[test]
fn what_the_model_generates_stays_unique_when_random_numbers_repeat_after_a_restart() {
    // A server restarted with the same seed (or restored from a snapshot) draws the same
    // random numbers again: the second RE's certificate would get the first one's serial,
    // take it over, and revoke it.
    let mut h = Harness::new(5);
    h.apply_re("shop");
    h.apply_re("ec");
    let shop = h.onboard("shop");
    let created = h.gateway(
        "shop",
        Some(&shop),
        GatewayCall::CreateService {
            body: service_body("a", "s"),
        },
    );
    let Reply::ServiceCreated { id: first } = created else {
        panic!("{created:?}")
    };
    h.model = Model::replay(h.model.config().clone(), 5.into(), h.log.clone());
    let ec = h.onboard("ec");
    assert_ne!(ec.serial, shop.serial, "a serial is never issued twice");
    let listed = h.gateway("shop", Some(&shop), GatewayCall::ListServices);
    assert_eq!(listed.status(), 200, "{listed:?}");
    let Reply::ServiceCreated { id: second } = h.gateway(
        "ec",
        Some(&ec),
        GatewayCall::CreateService {
            body: service_body("b", "s"),
        },
    ) else {
        panic!("refused")
    };
    assert_ne!(first, second, "a service id is never given twice");
}
