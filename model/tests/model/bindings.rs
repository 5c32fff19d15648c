//! Bindings and the proxy's decision: only a live binding of a service opens it.

use crate::common::*;
use ace_model::proxy::ProxyError;
use ace_model::{AdminRequest, GatewayCall, Reply, Request, RequestError};
use serde_json::{Value, json};

fn create_service(h: &mut Harness, re: &str, body: Vec<u8>) -> String {
    let cert = h.onboard(re);
    h.gateway(re, Some(&cert), GatewayCall::CreateService { body })
        .body()
        .unwrap_or_default()["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn admin(h: &mut Harness, req: AdminRequest) -> Reply {
    h.send(Request::Admin(req))
}

fn proxy(h: &mut Harness, service: &str, key: Option<&str>) -> Reply {
    h.send(Request::Proxy {
        service: service.into(),
        binding_key: key.map(str::to_owned),
    })
}

fn proxy_error(reply: &Reply) -> Option<&ProxyError> {
    match reply.error() {
        Some(RequestError::Proxy(e)) => Some(e),
        _ => None,
    }
}

fn setup(h: &mut Harness) -> (String, String) {
    h.apply_re("ec");
    let id = create_service(h, "ec", service_body("", "secret"));
    admin(
        h,
        AdminRequest::ApplyMapping {
            namespace: "production".into(),
            re: "ec".into(),
        },
    );
    let r = admin(
        h,
        AdminRequest::Provision {
            namespace: "production".into(),
            name: "orders".into(),
            class: id.clone(),
        },
    );
    assert_eq!(r.status(), 201);
    (id.clone(), format!("re-ec-{id}"))
}

fn bind(h: &mut Harness, name: &str) -> Value {
    let r = admin(
        h,
        AdminRequest::Bind {
            namespace: "production".into(),
            name: name.into(),
            instance: "orders".into(),
        },
    );
    assert!(matches!(r.status(), 200 | 201), "{:?}", r.body());
    r.body().unwrap_or_default()
}

#[test]
fn a_binding_gives_the_gateway_url_and_a_key_that_opens_the_proxy() {
    let mut h = Harness::new(41);
    let (id, service) = setup(&mut h);
    let binding = bind(&mut h, "orders-binding");
    assert_eq!(
        binding["credentials"]["GATEWAY_URL"],
        json!(format!("http://127.0.0.1:8090/re-ec-{id}"))
    );
    let key = binding["credentials"]["ACCESS_KEY"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let Reply::Proxy(target) = proxy(&mut h, &service, Some(&key)) else {
        panic!("refused")
    };
    assert_eq!(target.target_url, "https://www.orders.com/v1/orders");
    assert_eq!(
        target.oauth.as_ref().map(|o| o.client_secret.expose()),
        Some("secret")
    );
    assert!(
        h.log
            .iter()
            .all(|r| !serde_json::to_string(r).unwrap_or_default().contains(&key)),
        "keys are stored as digests"
    );
}

#[test]
fn without_a_live_binding_the_proxy_answers_not_allowed() {
    let mut h = Harness::new(42);
    let (_, service) = setup(&mut h);
    assert_eq!(
        proxy_error(&proxy(&mut h, &service, None)),
        Some(&ProxyError::NotAllowed)
    );
    assert_eq!(
        proxy(&mut h, &service, Some("guess")).body(),
        Some(json!({"code": 403, "error": "Not allowed"}))
    );
    let key = bind(&mut h, "b")["credentials"]["ACCESS_KEY"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(matches!(
        proxy(&mut h, &service, Some(&key)),
        Reply::Proxy(_)
    ));
    assert_eq!(
        admin(
            &mut h,
            AdminRequest::Unbind {
                namespace: "production".into(),
                name: "b".into()
            }
        )
        .status(),
        204
    );
    assert_eq!(
        proxy_error(&proxy(&mut h, &service, Some(&key))),
        Some(&ProxyError::NotAllowed),
        "unbinding revokes the key"
    );
}

#[test]
fn binding_again_replaces_the_key() {
    let mut h = Harness::new(43);
    let (_, service) = setup(&mut h);
    let first = bind(&mut h, "b")["credentials"]["ACCESS_KEY"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let second = bind(&mut h, "b")["credentials"]["ACCESS_KEY"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_ne!(first, second);
    assert_eq!(
        proxy_error(&proxy(&mut h, &service, Some(&first))),
        Some(&ProxyError::NotAllowed)
    );
    assert!(matches!(
        proxy(&mut h, &service, Some(&second)),
        Reply::Proxy(_)
    ));
}

#[test]
fn a_key_opens_only_the_service_it_was_bound_to() {
    let mut h = Harness::new(44);
    let (_, service) = setup(&mut h);
    let other_id = create_service(&mut h, "ec", service_body("other", "s2"));
    let key = bind(&mut h, "b")["credentials"]["ACCESS_KEY"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(matches!(
        proxy(&mut h, &service, Some(&key)),
        Reply::Proxy(_)
    ));
    assert_eq!(
        proxy_error(&proxy(&mut h, &format!("re-ec-{other_id}"), Some(&key))),
        Some(&ProxyError::NotAllowed)
    );
}

#[test]
fn unknown_services_and_services_without_api_are_refused() {
    let mut h = Harness::new(45);
    let (_, _) = setup(&mut h);
    assert_eq!(proxy(&mut h, "re-ec-nope", Some("k")).status(), 404);
    let events_only =
        json!({"provider": "p", "name": "n", "description": "d", "events": {"spec": {}}})
            .to_string()
            .into_bytes();
    let id = create_service(&mut h, "ec", events_only);
    assert_eq!(
        proxy_error(&proxy(&mut h, &format!("re-ec-{id}"), Some("k"))),
        Some(&ProxyError::NoApi(id.clone()))
    );
    admin(
        &mut h,
        AdminRequest::Provision {
            namespace: "production".into(),
            name: "events".into(),
            class: id,
        },
    );
    let r = admin(
        &mut h,
        AdminRequest::Bind {
            namespace: "production".into(),
            name: "e".into(),
            instance: "events".into(),
        },
    );
    assert_eq!(r.status(), 400, "an events-only service is not bindable");
}

#[test]
fn deprovisioning_or_deleting_the_re_revokes_bindings_and_replay_keeps_them() {
    let mut h = Harness::new(46);
    let (_, service) = setup(&mut h);
    let key = bind(&mut h, "b")["credentials"]["ACCESS_KEY"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let replayed = h.replayed();
    assert_eq!(replayed.state(), h.model.state());
    assert!(
        replayed.state().proxy_target(&service, Some(&key)).is_ok(),
        "bindings survive a restart"
    );
    admin(
        &mut h,
        AdminRequest::Deprovision {
            namespace: "production".into(),
            name: "orders".into(),
        },
    );
    assert_eq!(
        proxy_error(&proxy(&mut h, &service, Some(&key))),
        Some(&ProxyError::NotAllowed)
    );
    let compacted =
        ace_model::Model::replay(h.model.config().clone(), 1.into(), h.model.snapshot());
    assert_eq!(compacted.state(), h.model.state());
}
