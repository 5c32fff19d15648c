//! The seeds' "Trigger a lambda with events" flow through the whole model: register a service
//! with events, map and provision it (which activates its events in the namespace), subscribe,
//! publish through the gateway, deliver, acknowledge.

use std::time::Duration;

use crate::common::*;
use ace_model::bus::subscription::SubscriptionSpec;
use ace_model::bus::{BusReply, BusRequest, DeliveryOutcome, DeliveryResult, GatewayEvent};
use ace_model::{AdminRequest, GatewayCall, Reply, Request};
use serde_json::json;

fn subscription(re: &str) -> SubscriptionSpec {
    SubscriptionSpec {
        endpoint: "http://my-lambda.production:8080/".into(),
        include_subscription_name_header: true,
        max_inflight: 400,
        push_request_timeout_ms: 2000,
        event_type: "exampleEvent".into(),
        event_type_version: "v1".into(),
        source_id: re.into(),
    }
}

fn seed_event() -> Vec<u8> {
    json!({
        "event-type": "exampleEvent",
        "event-type-version": "v1",
        "event-id": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa",
        "event-time": "2018-10-16T15:00:00Z",
        "data": "some data"
    })
    .to_string()
    .into_bytes()
}

#[test]
fn provisioning_activates_events_and_a_published_event_reaches_the_subscriber() {
    let mut h = Harness::new(31);
    h.apply_re("ec-default");
    let cert = h.onboard("ec-default");
    let id = h
        .gateway(
            "ec-default",
            Some(&cert),
            GatewayCall::CreateService {
                body: service_body("identifier", "s"),
            },
        )
        .body()
        .unwrap_or_default()["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    h.send(Request::Admin(AdminRequest::ApplyMapping {
        namespace: "production".into(),
        re: "ec-default".into(),
    }));
    let sub = h.send(Request::Bus(BusRequest::ApplySubscription {
        namespace: "production".into(),
        name: "lambda-my-lambda-exampleevent-v1".into(),
        spec: subscription("ec-default"),
    }));
    assert_eq!(sub.status(), 201, "{:?}", sub.body());
    let condition = |h: &Harness| {
        h.model
            .state()
            .bus()
            .subscription_condition("production", "lambda-my-lambda-exampleevent-v1")
            .map(|c| c.activated)
    };
    assert_eq!(condition(&h), Some(false), "no activation yet");

    // An event before activation is never delivered to the subscription.
    let early = h.gateway(
        "ec-default",
        Some(&cert),
        GatewayCall::PublishEvent(GatewayEvent {
            body: seed_event(),
            headers: vec![],
        }),
    );
    assert_eq!(early.status(), 200);
    assert!(h.model.poll_delivery().is_none());

    let provisioned = h.send(Request::Admin(AdminRequest::Provision {
        namespace: "production".into(),
        name: "my-service-instance-name".into(),
        class: format!("re-ec-default-{id}"),
    }));
    assert_eq!(provisioned.status(), 201);
    assert_eq!(
        condition(&h),
        Some(true),
        "provisioning a service with events activates them"
    );
    assert!(
        h.model.poll_delivery().is_none(),
        "the early event stays undelivered"
    );

    let published = h.gateway(
        "ec-default",
        Some(&cert),
        GatewayCall::PublishEvent(GatewayEvent {
            body: seed_event(),
            headers: vec![
                ("x-b3-traceid".into(), "abc".into()),
                ("authorization".into(), "secret".into()),
            ],
        }),
    );
    assert!(
        matches!(published, Reply::Bus(BusReply::Published { .. })),
        "{published:?}"
    );
    assert_eq!(
        published.body(),
        Some(json!({"event-id": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"}))
    );
    assert!(
        h.log.iter().any(|r| matches!(r, ace_model::Record::Bus(_))),
        "accepting an event writes a record"
    );

    let delivery = h
        .model
        .poll_delivery()
        .unwrap_or_else(|| panic!("no delivery"));
    assert_eq!(&*delivery.endpoint, "http://my-lambda.production:8080/");
    assert_eq!(delivery.body(), "\"some data\"");
    let headers: Vec<(String, String)> = delivery
        .headers()
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    for expected in [
        ("Content-Type", "application/json"),
        ("KYMA-Source-ID", "ec-default"),
        ("KYMA-Event-Type", "exampleEvent"),
        ("KYMA-Event-Type-Version", "v1"),
        ("KYMA-Event-ID", "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"),
        ("KYMA-Event-Time", "2018-10-16T15:00:00Z"),
        ("Kyma-Subscription", "lambda-my-lambda-exampleevent-v1"),
        ("x-b3-traceid", "abc"),
    ] {
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == expected.0 && v == expected.1),
            "missing {expected:?} in {headers:?}"
        );
    }
    assert!(
        !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization")),
        "only trace headers pass"
    );

    // A 500 is retried; the retry is delivered and acknowledged.
    h.model.handle_delivery_outcome(
        h.now,
        DeliveryOutcome {
            delivery: delivery.id,
            result: DeliveryResult::Status(500),
        },
    );
    assert!(
        h.model.poll_delivery().is_none(),
        "the retry waits for its backoff"
    );
    let retry_at = h
        .model
        .poll_timeout()
        .unwrap_or_else(|| panic!("no retry timer"));
    assert!(retry_at > h.now);
    h.now = retry_at;
    h.model.handle_timeout(h.now);
    let retry = h
        .model
        .poll_delivery()
        .unwrap_or_else(|| panic!("no retry"));
    assert_eq!(retry.attempt, 2);
    h.model.handle_delivery_outcome(
        h.now,
        DeliveryOutcome {
            delivery: retry.id,
            result: DeliveryResult::Status(200),
        },
    );
    let stats = h
        .model
        .state()
        .bus()
        .subscription_stats("production", "lambda-my-lambda-exampleevent-v1")
        .unwrap_or_else(|| panic!("no stats"));
    assert_eq!((stats.delivered, stats.pending), (1, 0));

    // Deprovisioning removes the activation again.
    h.send(Request::Admin(AdminRequest::Deprovision {
        namespace: "production".into(),
        name: "my-service-instance-name".into(),
    }));
    assert_eq!(condition(&h), Some(false));
    h.advance(Duration::from_secs(1));
}

#[test]
fn a_certificate_of_another_re_cannot_publish() {
    let mut h = Harness::new(32);
    h.apply_re("a");
    h.apply_re("b");
    let cert_a = h.onboard("a");
    let reply = h.gateway(
        "b",
        Some(&cert_a),
        GatewayCall::PublishEvent(GatewayEvent {
            body: seed_event(),
            headers: vec![],
        }),
    );
    assert_eq!(reply.status(), 403);
    assert!(
        h.log
            .iter()
            .all(|r| !matches!(r, ace_model::Record::Bus(_))),
        "nothing was accepted"
    );
}

#[test]
fn after_a_restart_deliveries_wait_for_the_push_timeout_of_attempts_left_behind() {
    let mut h = Harness::new(33);
    h.send(Request::Bus(BusRequest::ApplyActivation {
        namespace: "ns".into(),
        name: "shop".into(),
        spec: ace_model::bus::ActivationSpec {
            source_id: "shop".into(),
            display_name: "shop".into(),
        },
    }));
    let mut spec = subscription("shop");
    spec.push_request_timeout_ms = 2000;
    h.send(Request::Bus(BusRequest::ApplySubscription {
        namespace: "ns".into(),
        name: "orders".into(),
        spec,
    }));
    let publish = |h: &mut Harness| {
        h.send(Request::Bus(BusRequest::Publish {
            method: "POST".into(),
            source_id_header: Some("shop".into()),
            body: seed_event(),
            headers: vec![],
        }))
    };
    assert_eq!(publish(&mut h).status(), 200);
    assert!(
        h.model.poll_delivery().is_some(),
        "an attempt is in flight when the process dies"
    );

    // The restarted process cannot see that attempt: it waits out its timeout first.
    h.model = h.replayed();
    h.advance(Duration::from_millis(10));
    h.model.handle_timeout(h.now);
    assert!(
        h.model.poll_delivery().is_none(),
        "held right after the restart"
    );
    let resume = h.model.poll_timeout().unwrap_or_else(|| panic!("no timer"));
    assert_eq!(resume, h.now.saturating_add(Duration::from_millis(2000)));
    h.now = resume;
    h.model.handle_timeout(h.now);
    let again = h
        .model
        .poll_delivery()
        .unwrap_or_else(|| panic!("not redelivered"));
    assert_eq!(again.attempt, 1, "a fresh attempt count in the new process");
}

#[test]
fn bodies_beyond_the_memory_budget_are_left_to_the_store() {
    let mut config = ace_model::Config::default();
    config.bus.max_resident_body_bytes = 20;
    let mut h = Harness::with_config(config, 34);
    h.send(Request::Bus(BusRequest::ApplyActivation {
        namespace: "ns".into(),
        name: "shop".into(),
        spec: ace_model::bus::ActivationSpec {
            source_id: "shop".into(),
            display_name: "shop".into(),
        },
    }));
    h.send(Request::Bus(BusRequest::ApplySubscription {
        namespace: "ns".into(),
        name: "orders".into(),
        spec: subscription("shop"),
    }));
    let publish = |h: &mut Harness, data: &str| {
        let body = json!({"event-type": "exampleEvent", "event-type-version": "v1", "event-time": "2018-10-16T15:00:00Z", "data": data});
        h.send(Request::Bus(BusRequest::Publish {
            method: "POST".into(),
            source_id_header: Some("shop".into()),
            body: body.to_string().into_bytes(),
            headers: vec![],
        }))
    };
    assert_eq!(publish(&mut h, "small").status(), 200);
    assert_eq!(
        publish(&mut h, "a body larger than the budget").status(),
        200
    );
    let first = h
        .model
        .poll_delivery()
        .unwrap_or_else(|| panic!("no delivery"));
    let second = h
        .model
        .poll_delivery()
        .unwrap_or_else(|| panic!("no delivery"));
    assert!(!first.event.body_stored);
    assert_eq!(first.body(), r#""small""#);
    assert!(
        second.event.body_stored,
        "over the budget, only the store keeps the body"
    );
    assert_eq!(second.body(), "");
    assert_ne!(first.seq, second.seq);
    // The record still carries the body: the store, not the model, decides where it lives.
    let carried = h
        .log
        .iter()
        .filter_map(|r| serde_json::to_string(r).ok())
        .any(|t| t.contains("a body larger than the budget"));
    assert!(carried);
}
