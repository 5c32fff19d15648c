//! Behaviour of the bus, driven through its own interface with a hand-stepped clock.

use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{Value, json};

use super::state::ReadyQueue;
use super::*;
use crate::effects::Effects;
use crate::record::Record;
use crate::rng::{Seed, SeededRng};
use crate::time::Timestamp;

const T0: u64 = 1_700_000_000_000;

struct Harness {
    bus: EventBus,
    rng: SeededRng,
    records: VecDeque<Record>,
    log: Vec<Record>,
    now: Timestamp,
    /// Backlog reads answered.
    reads: usize,
}

/// The answer a store holding `log` gives to `read`.
fn page_from(log: &[Record], read: &BacklogRead) -> BacklogPage {
    BacklogPage::from_log(read, log)
}

fn spec(endpoint: &str) -> SubscriptionSpec {
    SubscriptionSpec {
        endpoint: endpoint.to_owned(),
        include_subscription_name_header: true,
        max_inflight: 400,
        push_request_timeout_ms: 2000,
        event_type: "order.created".to_owned(),
        event_type_version: "v1".to_owned(),
        source_id: "ec-default".to_owned(),
    }
}

fn event_body(id: Option<&str>) -> Vec<u8> {
    let mut e = json!({
        "event-type": "order.created", "event-type-version": "v1",
        "event-time": "2018-11-02T22:08:41+00:00", "data": {"orderCode": "4caad296"}
    });
    if let Some(id) = id {
        e["event-id"] = json!(id);
    }
    e.to_string().into_bytes()
}

impl Harness {
    fn new() -> Self {
        Harness::with_config(BusConfig::default())
    }

    fn with_config(config: BusConfig) -> Self {
        Harness {
            bus: EventBus::new(&config),
            rng: SeededRng::new(Seed::from(1)),
            records: VecDeque::new(),
            log: Vec::new(),
            now: Timestamp::from_unix_millis(T0),
            reads: 0,
        }
    }

    /// Runs `f` as the shell runs an input: then the records are durable, and the backlog
    /// reads are answered from them, as the store would.
    fn run<R>(&mut self, f: impl FnOnce(&mut EventBus, &mut Effects<'_>) -> R) -> R {
        let mut fx = Effects {
            now: self.now,
            rng: &mut self.rng,
            records: &mut self.records,
        };
        let r = f(&mut self.bus, &mut fx);
        self.log.extend(self.records.drain(..));
        self.serve_reads();
        r
    }

    /// Answers the bus's backlog reads from the log, until it asks for nothing more.
    fn serve_reads(&mut self) {
        while let Some(read) = self.bus.poll_backlog_read() {
            self.reads += 1;
            let page = page_from(&self.log, &read);
            let mut fx = Effects {
                now: self.now,
                rng: &mut self.rng,
                records: &mut self.records,
            };
            self.bus.handle_backlog(&mut fx, page);
            self.log.extend(self.records.drain(..));
        }
    }

    fn req(&mut self, request: BusRequest) -> BusReply {
        self.run(|bus, fx| bus.handle(fx, request))
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now.saturating_add(Duration::from_millis(ms));
        self.run(|bus, fx| bus.handle_timeout(fx));
    }

    fn activate(&mut self, ns: &str, name: &str) {
        self.run(|bus, fx| bus.create_activation(fx, ns, name, "ec-default", "Orders"));
    }

    fn deactivate(&mut self, ns: &str, name: &str) {
        self.run(|bus, fx| bus.delete_activation(fx, ns, name));
    }

    fn subscribe(&mut self, ns: &str, name: &str, spec: SubscriptionSpec) -> BusReply {
        self.req(BusRequest::ApplySubscription {
            namespace: ns.to_owned(),
            name: name.to_owned(),
            spec,
        })
    }

    fn publish(&mut self, id: Option<&str>) -> BusReply {
        self.run(|bus, fx| {
            bus.publish_from_gateway(
                fx,
                "ec-default",
                GatewayEvent {
                    body: event_body(id),
                    headers: vec![],
                },
            )
        })
    }

    fn deliveries(&mut self) -> Vec<Delivery> {
        std::iter::from_fn(|| self.bus.poll_delivery()).collect()
    }

    fn outcome(&mut self, d: &Delivery, result: DeliveryResult) {
        let outcome = DeliveryOutcome {
            delivery: d.id,
            result,
        };
        self.run(|bus, fx| bus.handle_delivery_outcome(fx, outcome));
    }

    /// Every delivery of `d` answered 200, taken in one turn as the shell takes every
    /// outcome waiting (their records are drained once, after all of them).
    fn acknowledge_in_one_turn(&mut self, d: &[Delivery]) {
        self.run(|bus, fx| {
            for d in d {
                let outcome = DeliveryOutcome {
                    delivery: d.id,
                    result: DeliveryResult::Status(200),
                };
                bus.handle_delivery_outcome(fx, outcome);
            }
        });
    }

    fn delete(&mut self, name: &str) -> BusReply {
        self.req(BusRequest::DeleteSubscription {
            namespace: "prod".into(),
            name: name.into(),
        })
    }

    fn replay_all(&mut self, name: &str) -> BusReply {
        self.req(BusRequest::ReplayDeadLetters {
            namespace: "prod".into(),
            name: name.into(),
            selection: ReplaySelection::All,
        })
    }

    fn stats(&self, name: &str) -> DeliveryStats {
        self.bus
            .subscription_stats("prod", name)
            .expect("subscription exists")
    }

    fn replayed(&self) -> EventBus {
        let mut bus = EventBus::new(self.bus.config());
        for r in &self.log {
            if let Record::Bus(r) = r {
                bus.apply(r);
            }
        }
        bus
    }
}

/// A harness whose events are owed for `secs` seconds.
fn with_retention(secs: u64) -> Harness {
    Harness::with_config(BusConfig {
        retention: Duration::from_secs(secs),
        ..BusConfig::default()
    })
}

fn ready() -> Harness {
    let mut h = Harness::new();
    h.activate("prod", "svc");
    h.subscribe("prod", "sub", spec("http://sub.prod:8080/"));
    h
}

fn uuid(n: u32) -> String {
    format!("{n:08x}-0000-4000-8000-000000000000")
}

// --- Publishing --------------------------------------------------------------------------

fn publish_api(method: &str, header: Option<&str>, body: &[u8]) -> BusReply {
    let mut h = Harness::with_config(BusConfig {
        max_event_bytes: 300,
        ..BusConfig::default()
    });
    h.req(BusRequest::Publish {
        method: method.to_owned(),
        source_id_header: header.map(str::to_owned),
        body: body.to_vec(),
        headers: vec![],
    })
}

const OK_TIME: &str = "2018-11-02T22:08:41+00:00";

fn body_with(overrides: Value, remove: &[&str]) -> Vec<u8> {
    let mut e = json!({
        "source-id": "ec-default", "event-type": "order.created", "event-type-version": "v1",
        "event-id": "4ea567cf-812b-49d9-a4b2-cb5ddf464094", "event-time": OK_TIME, "data": {"a": 1}
    });
    for (k, v) in overrides.as_object().cloned().unwrap_or_default() {
        e[k] = v;
    }
    for k in remove {
        e.as_object_mut().map(|o| o.remove(*k));
    }
    e.to_string().into_bytes()
}

#[test]
fn publish_api_checks_in_kymas_order_with_exact_bodies() {
    use PublishError as E;
    type Case<'a> = (
        &'a str,
        &'a str,
        Option<&'a str>,
        Vec<u8>,
        Option<PublishError>,
    );
    let cases: Vec<Case> = vec![
        (
            "get is a bad request",
            "GET",
            None,
            body_with(json!({}), &[]),
            Some(E::BadRequest),
        ),
        (
            "put is a bad request",
            "PUT",
            None,
            vec![],
            Some(E::BadRequest),
        ),
        (
            "over the size limit",
            "POST",
            None,
            vec![b' '; 301],
            Some(E::RequestBodyTooLarge),
        ),
        (
            "empty body",
            "POST",
            None,
            vec![],
            Some(E::BadPayloadSyntax),
        ),
        (
            "not json",
            "POST",
            None,
            b"{".to_vec(),
            Some(E::BadPayloadSyntax),
        ),
        (
            "array",
            "POST",
            None,
            b"[]".to_vec(),
            Some(E::BadPayloadSyntax),
        ),
        (
            "wrong field type",
            "POST",
            None,
            body_with(json!({"event-type": 5}), &[]),
            Some(E::BadPayloadSyntax),
        ),
        (
            "no source",
            "POST",
            None,
            body_with(json!({}), &["source-id"]),
            Some(E::MissingSourceId),
        ),
        (
            "empty source, no header",
            "POST",
            None,
            body_with(json!({"source-id": ""}), &[]),
            Some(E::MissingSourceId),
        ),
        (
            "source from header",
            "POST",
            Some("ec-default"),
            body_with(json!({}), &["source-id"]),
            None,
        ),
        (
            "payload source wins over a bad header",
            "POST",
            Some("1bad"),
            body_with(json!({}), &[]),
            None,
        ),
        (
            "bad source header",
            "POST",
            Some("1bad"),
            body_with(json!({}), &["source-id"]),
            Some(E::InvalidSourceIdHeader),
        ),
        (
            "missing type before missing version",
            "POST",
            None,
            body_with(json!({}), &["event-type", "event-type-version"]),
            Some(E::MissingField("event-type")),
        ),
        (
            "missing version",
            "POST",
            None,
            body_with(json!({}), &["event-type-version"]),
            Some(E::MissingField("event-type-version")),
        ),
        (
            "missing time",
            "POST",
            None,
            body_with(json!({}), &["event-time"]),
            Some(E::MissingField("event-time")),
        ),
        (
            "missing data",
            "POST",
            None,
            body_with(json!({}), &["data"]),
            Some(E::MissingField("data")),
        ),
        (
            "null data",
            "POST",
            None,
            body_with(json!({"data": null}), &[]),
            Some(E::MissingField("data")),
        ),
        (
            "empty string data",
            "POST",
            None,
            body_with(json!({"data": ""}), &[]),
            Some(E::MissingField("data")),
        ),
        (
            "zero data",
            "POST",
            None,
            body_with(json!({"data": 0}), &[]),
            None,
        ),
        (
            "false data",
            "POST",
            None,
            body_with(json!({"data": false}), &[]),
            None,
        ),
        (
            "empty object data",
            "POST",
            None,
            body_with(json!({"data": {}}), &[]),
            None,
        ),
        (
            "missing data before invalid source",
            "POST",
            None,
            body_with(json!({"source-id": "1x"}), &["data"]),
            Some(E::MissingField("data")),
        ),
        (
            "source with a dot",
            "POST",
            None,
            body_with(json!({"source-id": "stage.commerce.kyma.local"}), &[]),
            None,
        ),
        (
            "source starting with a digit",
            "POST",
            None,
            body_with(json!({"source-id": "1source"}), &[]),
            Some(E::InvalidField("source-id")),
        ),
        (
            "source with two separators",
            "POST",
            None,
            body_with(json!({"source-id": "a..b"}), &[]),
            Some(E::InvalidField("source-id")),
        ),
        (
            "source ending with a separator",
            "POST",
            None,
            body_with(json!({"source-id": "ab-"}), &[]),
            Some(E::InvalidField("source-id")),
        ),
        (
            "type with underscore",
            "POST",
            None,
            body_with(json!({"event-type": "order_created"}), &[]),
            None,
        ),
        (
            "type with a space",
            "POST",
            None,
            body_with(json!({"event-type": "order created"}), &[]),
            Some(E::InvalidField("event-type")),
        ),
        (
            "version with a dot",
            "POST",
            None,
            body_with(json!({"event-type-version": "v1.0"}), &[]),
            Some(E::InvalidField("event-type-version")),
        ),
        (
            "time without offset",
            "POST",
            None,
            body_with(json!({"event-time": "2018-11-02T22:08:41"}), &[]),
            Some(E::InvalidField("event-time")),
        ),
        (
            "time with fraction and Z",
            "POST",
            None,
            body_with(json!({"event-time": "2018-11-02T22:08:41.123Z"}), &[]),
            None,
        ),
        (
            "time in lower case",
            "POST",
            None,
            body_with(json!({"event-time": "2018-11-02t22:08:41z"}), &[]),
            Some(E::InvalidField("event-time")),
        ),
        (
            "id not a uuid",
            "POST",
            None,
            body_with(json!({"event-id": "42"}), &[]),
            Some(E::InvalidField("event-id")),
        ),
        (
            "id in upper case",
            "POST",
            None,
            body_with(
                json!({"event-id": "4EA567CF-812B-49D9-A4B2-CB5DDF464094"}),
                &[],
            ),
            None,
        ),
        (
            "empty id is generated",
            "POST",
            None,
            body_with(json!({"event-id": ""}), &[]),
            None,
        ),
        (
            "invalid type before invalid version",
            "POST",
            None,
            body_with(json!({"event-type": "-", "event-type-version": "."}), &[]),
            Some(E::InvalidField("event-type")),
        ),
        (
            "unknown fields are ignored",
            "POST",
            None,
            body_with(json!({"extra": [1]}), &[]),
            None,
        ),
    ];
    let mut bodies = serde_json::Map::new();
    for (name, method, header, body, expected) in cases {
        let reply = publish_api(method, header, &body);
        match expected {
            None => assert_eq!(reply.status(), 200, "{name}: {reply:?}"),
            Some(e) => {
                assert_eq!(reply, BusReply::PublishRefused(e.clone()), "{name}");
                assert_eq!(reply.status(), e.status(), "{name}");
                bodies.insert(name.to_owned(), reply.body().unwrap_or(Value::Null));
            }
        }
    }
    insta::assert_json_snapshot!("publish_api_errors", bodies);
}

fn gateway_body(overrides: Value, remove: &[&str]) -> Vec<u8> {
    let mut e = json!({
        "event-type": "order.created", "event-type-version": "v1",
        "event-id": "4ea567cf-812b-49d9-a4b2-cb5ddf464094", "event-time": OK_TIME, "data": {"a": 1}
    });
    for (k, v) in overrides.as_object().cloned().unwrap_or_default() {
        e[k] = v;
    }
    for k in remove {
        e.as_object_mut().map(|o| o.remove(*k));
    }
    e.to_string().into_bytes()
}

#[test]
fn event_service_checks_in_kymas_order_and_relays_publish_errors() {
    use EventServiceError as E;
    let cases: Vec<(&str, &str, Vec<u8>, Option<u16>)> = vec![
        ("empty body", "ec-default", vec![], Some(400)),
        ("not json", "ec-default", b"{\"a\"".to_vec(), Some(400)),
        (
            "wrong field type",
            "ec-default",
            gateway_body(json!({"data": 1, "event-time": 7}), &[]),
            Some(400),
        ),
        (
            "over the size limit",
            "ec-default",
            vec![b' '; 301],
            Some(413),
        ),
        (
            "missing type",
            "ec-default",
            gateway_body(json!({}), &["event-type"]),
            Some(400),
        ),
        (
            "missing version",
            "ec-default",
            gateway_body(json!({}), &["event-type-version"]),
            Some(400),
        ),
        (
            "version without alphanumerics",
            "ec-default",
            gateway_body(json!({"event-type-version": "._"}), &[]),
            Some(400),
        ),
        (
            "missing time",
            "ec-default",
            gateway_body(json!({}), &["event-time"]),
            Some(400),
        ),
        (
            "invalid time",
            "ec-default",
            gateway_body(json!({"event-time": "yesterday"}), &[]),
            Some(400),
        ),
        (
            "invalid id",
            "ec-default",
            gateway_body(json!({"event-id": "not-a-uuid"}), &[]),
            Some(400),
        ),
        (
            "missing data",
            "ec-default",
            gateway_body(json!({}), &["data"]),
            Some(400),
        ),
        (
            "null data",
            "ec-default",
            gateway_body(json!({"data": null}), &[]),
            Some(400),
        ),
        (
            "empty string data",
            "ec-default",
            gateway_body(json!({"data": ""}), &[]),
            Some(400),
        ),
        (
            "missing time before invalid id",
            "ec-default",
            gateway_body(json!({"event-id": "x"}), &["event-time"]),
            Some(400),
        ),
        ("valid", "ec-default", gateway_body(json!({}), &[]), None),
        (
            "no id",
            "ec-default",
            gateway_body(json!({}), &["event-id"]),
            None,
        ),
        (
            "data zero",
            "ec-default",
            gateway_body(json!({"data": 0}), &[]),
            None,
        ),
        (
            "publish refuses the type pattern",
            "ec-default",
            gateway_body(json!({"event-type": "order created"}), &[]),
            Some(400),
        ),
        (
            "publish refuses the anchored version",
            "ec-default",
            gateway_body(json!({"event-type-version": "v1.0"}), &[]),
            Some(400),
        ),
        (
            "publish refuses an RE starting with a digit",
            "1re",
            gateway_body(json!({}), &[]),
            Some(400),
        ),
    ];
    let mut bodies = serde_json::Map::new();
    for (name, re, body, expected) in cases {
        let mut h = Harness::with_config(BusConfig {
            max_event_bytes: 300,
            ..BusConfig::default()
        });
        let reply = h.run(|bus, fx| {
            bus.publish_from_gateway(
                fx,
                re,
                GatewayEvent {
                    body,
                    headers: vec![],
                },
            )
        });
        match expected {
            None => assert_eq!(reply.status(), 200, "{name}: {reply:?}"),
            Some(status) => {
                assert!(matches!(reply, BusReply::EventServiceRefused(_)), "{name}");
                assert_eq!(reply.status(), status, "{name}");
                let mut body = reply.body().unwrap_or(Value::Null);
                // The decoder's text is serde's, not Go's; keep the snapshot about the shape.
                if name == "not json" || name == "wrong field type" {
                    assert!(body["moreInfo"].is_string(), "{name}");
                    body["moreInfo"] = json!("<decoder error>");
                }
                bodies.insert(name.to_owned(), body);
            }
        }
    }
    let _ = E::RequestBodyTooLarge;
    insta::assert_json_snapshot!("event_service_errors", bodies);
}

#[test]
fn gateway_events_take_the_re_as_source_and_answer_their_id() {
    let mut h = ready();
    let reply = h.publish(Some(&uuid(7)));
    assert_eq!(reply.body(), Some(json!({"event-id": uuid(7)})));
    let d = h.deliveries();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].event.source_id, "ec-default");
}

#[test]
fn a_missing_event_id_is_a_generated_uuid_v4() {
    let mut h = ready();
    let reply = h.publish(None);
    let id = reply
        .body()
        .and_then(|b| b["event-id"].as_str().map(str::to_owned));
    let id = id.expect("an event id");
    assert!(publish::is_valid_event_id(&id));
    assert_eq!(&id[14..15], "4");
}

#[test]
fn an_event_is_answered_only_after_its_record_is_queued() {
    let mut h = ready();
    let before = h.log.len();
    let reply = h.publish(None);
    assert_eq!(reply.status(), 200);
    assert!(matches!(
        h.log[before..],
        [Record::Bus(BusRecord::EventAccepted { .. })]
    ));
}

#[test]
fn a_refused_event_leaves_no_record() {
    let mut h = ready();
    let before = h.log.len();
    let reply = h.run(|bus, fx| {
        bus.publish_from_gateway(
            fx,
            "ec-default",
            GatewayEvent {
                body: vec![],
                headers: vec![],
            },
        )
    });
    assert_eq!(reply.status(), 400);
    assert_eq!(h.log.len(), before);
    assert!(h.deliveries().is_empty());
}

// --- Activation and subscriptions ---------------------------------------------------------

#[test]
fn subscription_constraints_are_400_naming_the_field() {
    type Change = Box<dyn Fn(&mut SubscriptionSpec)>;
    let cases: Vec<(&str, Change)> = vec![
        ("ftp endpoint", Box::new(|s| s.endpoint = "ftp://x".into())),
        ("bare scheme", Box::new(|s| s.endpoint = "http://".into())),
        (
            "long endpoint",
            Box::new(|s| s.endpoint = format!("http://{}", "a".repeat(510))),
        ),
        ("zero max_inflight", Box::new(|s| s.max_inflight = 0)),
        ("401 max_inflight", Box::new(|s| s.max_inflight = 401)),
        (
            "negative timeout",
            Box::new(|s| s.push_request_timeout_ms = -1),
        ),
        (
            "5001 timeout",
            Box::new(|s| s.push_request_timeout_ms = 5001),
        ),
        ("empty type", Box::new(|s| s.event_type = String::new())),
        (
            "bad type",
            Box::new(|s| s.event_type = "order created".into()),
        ),
        (
            "empty version",
            Box::new(|s| s.event_type_version = String::new()),
        ),
        (
            "bad version",
            Box::new(|s| s.event_type_version = "v-1".into()),
        ),
        ("empty source", Box::new(|s| s.source_id = String::new())),
    ];
    let mut bodies = serde_json::Map::new();
    for (name, change) in cases {
        let mut h = Harness::new();
        let mut s = spec("http://sub.prod:8080/");
        change(&mut s);
        let reply = h.subscribe("prod", "sub", s);
        assert_eq!(reply.status(), 400, "{name}");
        bodies.insert(name.to_owned(), reply.body().unwrap_or(Value::Null));
        assert!(h.log.is_empty(), "{name}");
    }
    let mut h = Harness::new();
    for (ns, name) in [("Prod", "sub"), ("prod", "sub_1"), ("", "sub")] {
        let reply = h.subscribe(ns, name, spec("http://x/"));
        assert_eq!(reply.status(), 400);
        bodies.insert(
            format!("name {ns:?}/{name:?}"),
            reply.body().unwrap_or(Value::Null),
        );
    }
    let ok = spec("https://x");
    assert_eq!(h.subscribe("prod", "sub", ok).status(), 201);
    insta::assert_json_snapshot!("subscription_errors", bodies);
}

/// Names are checked as Kubernetes checks a custom resource's: an EventActivation named
/// after its source id (dots) is taken, as is a dotted Subscription name; a namespace must
/// still be a label, and a name with an empty or dashed part between dots is refused.
#[test]
fn activation_and_subscription_names_are_dns1123_subdomains() {
    let mut h = Harness::new();
    let activate = |h: &mut Harness, ns: &str, name: &str| {
        h.req(BusRequest::ApplyActivation {
            namespace: ns.into(),
            name: name.into(),
            spec: ActivationSpec {
                source_id: "stage.commerce.kyma.local".into(),
                display_name: "Stage".into(),
            },
        })
    };
    assert_eq!(
        activate(&mut h, "prod", "stage.commerce.kyma.local").status(),
        201
    );
    assert_eq!(
        h.subscribe("prod", "orders.v1", spec("https://x")).status(),
        201
    );
    for (ns, name, says) in [
        ("prod", "a..b", "a DNS-1123 subdomain must start and end"),
        ("prod", "-a.b", "a DNS-1123 subdomain must start and end"),
        ("prod", "Stage.x", "a DNS-1123 subdomain must consist of"),
        ("prod.eu", "ok", "a DNS-1123 label must consist of"),
    ] {
        let reply = activate(&mut h, ns, name);
        assert_eq!(reply.status(), 400, "{ns}/{name}");
        let body = reply.body().unwrap_or(Value::Null).to_string();
        assert!(body.contains(says), "{ns}/{name}: {body}");
    }
}

#[test]
fn subscription_resources_have_the_crd_shape_and_delivery_figures() {
    let mut h = ready();
    h.publish(None);
    let reply = h.req(BusRequest::GetSubscription {
        namespace: "prod".into(),
        name: "sub".into(),
    });
    assert_eq!(reply.status(), 200);
    insta::assert_json_snapshot!("subscription_resource", reply.body());
    let list = h.req(BusRequest::ListActivations { namespace: None });
    insta::assert_json_snapshot!("activation_list", list.body());
}

#[test]
fn apply_answers_201_then_200_and_unknown_resources_404() {
    let mut h = Harness::new();
    assert_eq!(h.subscribe("prod", "sub", spec("http://a/")).status(), 201);
    assert_eq!(h.subscribe("prod", "sub", spec("http://a/")).status(), 200);
    assert_eq!(h.subscribe("prod", "sub", spec("http://b/")).status(), 200);
    let missing = h.req(BusRequest::DeleteSubscription {
        namespace: "prod".into(),
        name: "nope".into(),
    });
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.body(),
        Some(json!({"code": 404, "error": "Subscription prod/nope not found."}))
    );
    let del = h.req(BusRequest::DeleteSubscription {
        namespace: "prod".into(),
        name: "sub".into(),
    });
    assert_eq!(del.status(), 204);
}

#[test]
fn a_subscription_is_activated_iff_an_activation_for_its_source_exists_in_its_namespace() {
    let mut h = Harness::new();
    h.subscribe("prod", "sub", spec("http://a/"));
    let cond = |h: &Harness| {
        h.bus
            .subscription_condition("prod", "sub")
            .map(|c| c.activated)
    };
    assert_eq!(cond(&h), Some(false));
    h.run(|bus, fx| bus.create_activation(fx, "other", "svc", "ec-default", "x"));
    assert_eq!(cond(&h), Some(false));
    h.run(|bus, fx| bus.create_activation(fx, "prod", "svc2", "another-re", "x"));
    assert_eq!(cond(&h), Some(false));
    h.activate("prod", "svc");
    assert_eq!(cond(&h), Some(true));
}

#[test]
fn the_transition_time_changes_only_when_the_status_changes() {
    let mut h = Harness::new();
    h.subscribe("prod", "sub", spec("http://a/"));
    let created = h.bus.subscription_condition("prod", "sub");
    h.now = h.now.saturating_add(Duration::from_secs(5));
    h.subscribe("prod", "sub", spec("http://b/"));
    assert_eq!(h.bus.subscription_condition("prod", "sub"), created);
    h.now = h.now.saturating_add(Duration::from_secs(5));
    h.activate("prod", "svc");
    let activated = h.bus.subscription_condition("prod", "sub").expect("exists");
    assert!(activated.activated);
    assert_eq!(activated.last_transition_time, h.now);
    h.now = h.now.saturating_add(Duration::from_secs(5));
    h.run(|bus, fx| bus.create_activation(fx, "prod", "svc2", "ec-default", "y"));
    assert_eq!(h.bus.subscription_condition("prod", "sub"), Some(activated));
}

#[test]
fn deleting_one_of_two_activations_for_a_source_keeps_the_subscription_activated() {
    let mut h = ready();
    h.run(|bus, fx| bus.create_activation(fx, "prod", "svc2", "ec-default", "y"));
    h.deactivate("prod", "svc");
    assert_eq!(
        h.bus
            .subscription_condition("prod", "sub")
            .map(|c| c.activated),
        Some(true)
    );
    h.deactivate("prod", "svc2");
    assert_eq!(
        h.bus
            .subscription_condition("prod", "sub")
            .map(|c| c.activated),
        Some(false)
    );
}

// --- Delivery -----------------------------------------------------------------------------

#[test]
fn a_delivery_posts_data_with_kymas_headers() {
    let mut h = ready();
    h.publish(Some(&uuid(1)));
    let d = h.deliveries();
    assert_eq!(d.len(), 1);
    let d = &d[0];
    assert_eq!(&*d.endpoint, "http://sub.prod:8080/");
    assert_eq!(d.body(), r#"{"orderCode":"4caad296"}"#);
    assert_eq!(d.attempt, 1);
    assert_eq!(
        d.deadline,
        h.now.saturating_add(Duration::from_millis(2000))
    );
    let headers = d.headers();
    let id = uuid(1);
    let expected: Vec<(&str, &str)> = vec![
        ("Content-Type", "application/json"),
        ("KYMA-Source-ID", "ec-default"),
        ("KYMA-Event-Type", "order.created"),
        ("KYMA-Event-Type-Version", "v1"),
        ("KYMA-Event-ID", id.as_str()),
        ("KYMA-Event-Time", OK_TIME),
        ("Kyma-Subscription", "sub"),
    ];
    assert_eq!(headers, expected);
}

#[test]
fn trace_headers_travel_from_the_publisher_to_deliveries() {
    let mut h = ready();
    h.run(|bus, fx| {
        bus.publish_from_gateway(
            fx,
            "ec-default",
            GatewayEvent {
                body: event_body(None),
                headers: vec![
                    ("X-B3-TraceId".into(), "abc".into()),
                    ("Authorization".into(), "secret".into()),
                ],
            },
        )
    });
    let d = h.deliveries();
    let headers = d[0].headers();
    assert!(headers.contains(&("x-b3-traceid", "abc")));
    assert!(!headers.iter().any(|(n, _)| *n == "Authorization"));
}

#[test]
fn a_zero_timeout_means_the_default_of_1000_ms_and_no_name_header_unless_asked() {
    let mut h = Harness::new();
    h.activate("prod", "svc");
    let mut s = spec("http://a/");
    s.push_request_timeout_ms = 0;
    s.include_subscription_name_header = false;
    h.subscribe("prod", "sub", s);
    h.publish(None);
    let d = h.deliveries();
    assert_eq!(
        d[0].deadline,
        h.now.saturating_add(Duration::from_millis(1000))
    );
    assert!(
        !d[0]
            .headers()
            .iter()
            .any(|(n, _)| *n == "Kyma-Subscription")
    );
}

#[test]
fn a_subscription_receives_only_matching_events_accepted_after_its_creation() {
    let mut h = Harness::new();
    h.activate("prod", "svc");
    h.publish(None);
    h.subscribe("prod", "sub", spec("http://a/"));
    let mut other = spec("http://b/");
    other.event_type_version = "v2".into();
    h.subscribe("prod", "other", other);
    assert!(h.deliveries().is_empty());
    h.publish(None);
    let d = h.deliveries();
    assert_eq!(d.len(), 1);
    assert_eq!(*d[0].subscription, ResourceKey::new("prod", "sub"));
}

#[test]
fn a_2xx_acknowledges_and_the_event_is_forgotten() {
    let mut h = ready();
    h.publish(None);
    let d = h.deliveries();
    h.outcome(&d[0], DeliveryResult::Status(204));
    assert_eq!(h.stats("sub").delivered, 1);
    assert_eq!(h.stats("sub").pending, 0);
    assert_eq!(h.bus.loaded_events(), 0);
    assert_eq!(h.bus.poll_timeout(), None);
    assert_eq!(settled_in_flight(&h.bus), 0);
}

#[test]
fn failures_are_retried_with_growing_backoff() {
    let mut h = ready();
    h.publish(None);
    let mut waits = Vec::new();
    for result in [
        DeliveryResult::Status(500),
        DeliveryResult::ConnectionError,
        DeliveryResult::Timeout,
        DeliveryResult::Status(302),
    ] {
        let d = h.deliveries();
        assert_eq!(d.len(), 1);
        h.outcome(&d[0], result);
        let next = h.bus.poll_timeout().expect("a retry is scheduled");
        let wait = next.as_unix_millis() - h.now.as_unix_millis();
        waits.push(wait);
        h.now = next;
        h.run(|bus, fx| bus.handle_timeout(fx));
    }
    assert!((500..=1000).contains(&waits[0]), "{waits:?}");
    assert!((1000..=2000).contains(&waits[1]), "{waits:?}");
    assert!((2000..=4000).contains(&waits[2]), "{waits:?}");
    assert!((4000..=8000).contains(&waits[3]), "{waits:?}");
    let d = h.deliveries();
    assert_eq!(d[0].attempt, 5);
    assert_eq!(h.stats("sub").retried, 4);
}

#[test]
fn the_kyma_policy_redelivers_30_seconds_after_the_attempt_started() {
    let mut h = Harness::with_config(BusConfig {
        retry: RetryPolicy::Kyma {
            ack_wait: Duration::from_secs(30),
        },
        ..BusConfig::default()
    });
    h.activate("prod", "svc");
    h.subscribe("prod", "sub", spec("http://a/"));
    h.publish(None);
    let start = h.now;
    let d = h.deliveries();
    h.now = h.now.saturating_add(Duration::from_millis(300));
    h.outcome(&d[0], DeliveryResult::Status(503));
    assert_eq!(
        h.bus.poll_timeout(),
        Some(start.saturating_add(Duration::from_secs(30)))
    );
}

#[test]
fn a_passed_deadline_counts_as_a_timeout_and_the_late_outcome_is_ignored() {
    let mut h = ready();
    h.publish(None);
    let d = h.deliveries();
    assert_eq!(h.bus.poll_timeout(), Some(d[0].deadline));
    h.advance(2000);
    assert_eq!(h.stats("sub").in_flight, 0);
    assert_eq!(h.stats("sub").retried, 1);
    h.outcome(&d[0], DeliveryResult::Status(200));
    assert_eq!(h.stats("sub").delivered, 0);
    assert_eq!(h.stats("sub").pending, 1);
}

#[test]
fn max_inflight_is_never_exceeded_and_waiting_events_start_in_order() {
    let mut h = Harness::new();
    h.activate("prod", "svc");
    let mut s = spec("http://a/");
    s.max_inflight = 2;
    h.subscribe("prod", "sub", s);
    for n in 0..5 {
        h.publish(Some(&uuid(n)));
    }
    let first = h.deliveries();
    assert_eq!(first.len(), 2);
    assert_eq!(first[0].event.event_id, uuid(0));
    assert_eq!(first[1].event.event_id, uuid(1));
    h.outcome(&first[1], DeliveryResult::Status(200));
    let next = h.deliveries();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].event.event_id, uuid(2));
    assert_eq!(h.stats("sub").in_flight, 2);
}

#[test]
fn retention_dead_letters_what_is_still_undelivered_and_replay_requeues_it() {
    let mut h = with_retention(60);
    h.activate("prod", "svc");
    h.subscribe("prod", "sub", spec("http://a/"));
    h.publish(Some(&uuid(9)));
    for _ in 0..200 {
        for d in h.deliveries() {
            h.outcome(&d, DeliveryResult::Status(500));
        }
        let Some(next) = h.bus.poll_timeout() else {
            break;
        };
        h.now = next.max(h.now);
        h.run(|bus, fx| bus.handle_timeout(fx));
    }
    assert_eq!(h.stats("sub").dead_lettered, 1);
    assert_eq!(h.stats("sub").pending, 0);
    assert!(h.now >= Timestamp::from_unix_millis(T0 + 60_000));
    let list = h.req(BusRequest::ListDeadLetters {
        namespace: None,
        after: None,
        limit: 10,
    });
    assert_eq!(
        list.body(),
        Some(json!([{"namespace": "prod", "subscription": "sub", "seq": 0}]))
    );
    // The event id is resolved by the shell, which reads the events from the store.
    let replay = h.req(BusRequest::ReplayDeadLetters {
        namespace: "prod".into(),
        name: "sub".into(),
        selection: ReplaySelection::EventId(uuid(9)),
    });
    assert_eq!(
        replay,
        BusReply::ReplayNeedsEvents {
            subscription: ResourceKey::new("prod", "sub"),
            event_id: uuid(9),
            seqs: vec![0],
        }
    );
    let replay = h.req(BusRequest::ReplayDeadLetters {
        namespace: "prod".into(),
        name: "sub".into(),
        selection: ReplaySelection::Seqs(vec![0, 7]),
    });
    assert_eq!(replay.body(), Some(json!({"replayed": 1})));
    let d = h.deliveries();
    assert_eq!(d.len(), 1);
    h.outcome(&d[0], DeliveryResult::Status(200));
    assert_eq!(h.stats("sub").delivered, 1);
    assert_eq!(h.stats("sub").dead_lettered, 0);
    assert_eq!(h.bus.loaded_events(), 0);
}

/// Attempts in flight whose event was settled meanwhile, over all subscriptions: what
/// `settled_in_flight` holds.
fn settled_in_flight(bus: &EventBus) -> usize {
    bus.subscriptions
        .values()
        .map(|s| s.settled_in_flight.len())
        .sum()
}

#[test]
fn an_attempt_in_flight_at_the_retention_counts_until_its_outcome() {
    let mut h = with_retention(1);
    h.activate("prod", "svc");
    h.subscribe("prod", "sub", spec("http://a/"));
    h.publish(None);
    let d = h.deliveries();
    h.advance(1000);
    assert_eq!(h.stats("sub").dead_lettered, 1);
    assert_eq!(h.stats("sub").in_flight, 1);
    assert_eq!(settled_in_flight(&h.bus), 1);
    // Its late success acknowledges nothing: the event is a dead letter.
    h.outcome(&d[0], DeliveryResult::Status(200));
    assert_eq!(h.stats("sub").in_flight, 0);
    assert_eq!(h.stats("sub").delivered, 0);
    assert_eq!(h.stats("sub").dead_lettered, 1);
    assert_eq!(settled_in_flight(&h.bus), 0);
}

#[test]
fn a_dead_letter_replayed_while_its_attempt_is_in_flight_is_settled_by_that_attempt() {
    let mut h = with_retention(1);
    h.activate("prod", "svc");
    h.subscribe("prod", "sub", spec("http://a/"));
    h.publish(None);
    let d = h.deliveries();
    h.advance(1000);
    h.replay_all("sub");
    // No second attempt while the first is in flight.
    assert!(h.deliveries().is_empty());
    assert_eq!(h.stats("sub").pending, 1);
    assert_eq!(h.stats("sub").in_flight, 1);
    assert_eq!(settled_in_flight(&h.bus), 0);
    h.outcome(&d[0], DeliveryResult::Status(200));
    assert_eq!(h.stats("sub").delivered, 1);
    assert_eq!(h.stats("sub").pending, 0);
    assert_eq!(h.stats("sub").in_flight, 0);
    assert_eq!(h.bus.loaded_events(), 0);
    assert_eq!(settled_in_flight(&h.bus), 0);
    assert_eq!(h.bus.poll_timeout(), None);
}

#[test]
fn deactivation_pauses_pending_deliveries_and_reactivation_resumes_them() {
    let mut h = ready();
    h.publish(Some(&uuid(1)));
    let d = h.deliveries();
    h.deactivate("prod", "svc");
    h.outcome(&d[0], DeliveryResult::Status(500));
    h.publish(Some(&uuid(2)));
    h.advance(120_000);
    assert!(h.deliveries().is_empty());
    assert_eq!(h.stats("sub").pending, 1);
    h.activate("prod", "svc");
    let d = h.deliveries();
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].event.event_id, uuid(1));
}

#[test]
fn updating_a_subscription_keeps_pending_deliveries_with_the_new_spec() {
    let mut h = Harness::new();
    h.activate("prod", "svc");
    let mut s = spec("http://old/");
    s.max_inflight = 1;
    h.subscribe("prod", "sub", s.clone());
    h.publish(Some(&uuid(1)));
    h.publish(Some(&uuid(2)));
    let first = h.deliveries();
    assert_eq!(first.len(), 1);
    s.endpoint = "http://new/".into();
    s.max_inflight = 5;
    s.event_type = "order.shipped".into();
    h.subscribe("prod", "sub", s);
    let d = h.deliveries();
    assert_eq!(d.len(), 1);
    assert_eq!(&*d[0].endpoint, "http://new/");
    assert_eq!(d[0].event.event_id, uuid(2));
    h.publish(Some(&uuid(3)));
    assert!(
        h.deliveries().is_empty(),
        "the new triple no longer matches"
    );
    assert_eq!(h.stats("sub").pending, 2);
}

#[test]
fn deleting_a_subscription_drops_its_pending_deliveries_counted() {
    let mut h = ready();
    h.publish(None);
    h.publish(None);
    let d = h.deliveries();
    h.delete("sub");
    assert_eq!(h.bus.dropped(), 2);
    assert_eq!(h.bus.loaded_events(), 0);
    h.subscribe("prod", "sub", spec("http://a/"));
    h.outcome(&d[0], DeliveryResult::Status(200));
    assert_eq!(h.stats("sub").delivered, 0);
    assert!(h.deliveries().is_empty());
}

// --- Replay -------------------------------------------------------------------------------

#[test]
fn replay_rebuilds_the_durable_state_and_redelivers_what_was_unacknowledged() {
    let mut h = ready();
    for n in 0..3 {
        h.publish(Some(&uuid(n)));
    }
    let d = h.deliveries();
    h.outcome(&d[0], DeliveryResult::Status(200));
    h.outcome(&d[1], DeliveryResult::Status(500));
    let mut restored = h.replayed();
    assert_eq!(restored, h.bus);
    assert_eq!(restored.poll_delivery(), None);
    assert_eq!(restored.poll_timeout(), Some(Timestamp::EPOCH));
    let mut rng = SeededRng::new(Seed::from(2));
    let mut records = VecDeque::new();
    let mut fx = Effects {
        now: h.now,
        rng: &mut rng,
        records: &mut records,
    };
    restored.handle_timeout(&mut fx);
    let ids: Vec<String> = std::iter::from_fn(|| restored.poll_delivery())
        .map(|d| d.event.event_id.clone())
        .collect();
    assert_eq!(ids, vec![uuid(1), uuid(2)]);
}

#[test]
fn a_snapshot_rebuilds_the_same_durable_state() {
    let mut h = with_retention(10);
    h.activate("prod", "svc");
    h.subscribe("prod", "sub", spec("http://a/"));
    h.subscribe("prod", "gone", spec("http://a/"));
    h.publish(Some(&uuid(0)));
    h.delete("gone");
    h.advance(11_000);
    h.publish(Some(&uuid(1)));
    h.replay_all("sub");
    h.publish(Some(&uuid(2)));
    h.advance(1);
    for d in h.deliveries() {
        if d.event.event_id == uuid(2) {
            h.outcome(&d, DeliveryResult::Status(200));
        }
    }
    h.advance(5_000);
    let mut rebuilt = EventBus::new(h.bus.config());
    for r in h.bus.snapshot() {
        rebuilt.apply(&r);
    }
    assert_eq!(rebuilt, h.bus);
    assert_eq!(h.replayed(), h.bus);
}

#[test]
fn records_round_trip_through_json() {
    let mut h = ready();
    h.publish(None);
    let d = h.deliveries();
    h.outcome(&d[0], DeliveryResult::Status(200));
    for record in &h.log {
        let text = serde_json::to_string(record).expect("serializes");
        let back: Record = serde_json::from_str(&text).expect("deserializes");
        assert_eq!(&back, record, "{text}");
    }
}

#[test]
fn the_ready_queue_keeps_events_in_order_once_each() {
    let mut q = ReadyQueue::default();
    for seq in [5, 7, 9, 2, 8, 7, 1, 10] {
        q.insert(seq);
    }
    q.remove(8);
    q.remove(4);
    let order: Vec<u64> = std::iter::from_fn(|| q.pop_first()).collect();
    assert_eq!(order, [1, 2, 5, 7, 9, 10]);
}

// --- A backlog larger than memory ---------------------------------------------------------

fn windowed(window: usize, max_inflight: i64) -> Harness {
    let mut h = Harness::with_config(BusConfig {
        backlog_window: window,
        ..BusConfig::default()
    });
    h.activate("prod", "svc");
    let mut s = spec("http://a/");
    s.max_inflight = max_inflight;
    h.subscribe("prod", "sub", s);
    h
}

/// Answers every delivery started with `result` until the bus has nothing left to do or
/// `rounds` timer rounds have passed; returns the event ids delivered, in order.
fn drain(h: &mut Harness, result: DeliveryResult, rounds: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..rounds {
        let started = h.deliveries();
        for d in &started {
            seen.push(d.event.event_id.clone());
            h.outcome(d, result);
        }
        if started.is_empty() {
            let Some(next) = h.bus.poll_timeout() else {
                break;
            };
            h.now = next.max(h.now);
            h.run(|bus, fx| bus.handle_timeout(fx));
        }
    }
    seen
}

#[test]
fn only_a_window_of_the_backlog_is_in_memory_and_every_event_is_delivered_in_order() {
    let mut h = windowed(4, 2);
    for n in 0..40 {
        h.publish(Some(&uuid(n)));
        assert!(
            h.bus.loaded_events() <= 4,
            "{} loaded",
            h.bus.loaded_events()
        );
    }
    assert_eq!(h.stats("sub").pending, 40);
    let mut delivered = Vec::new();
    loop {
        let d = h.deliveries();
        if d.is_empty() {
            break;
        }
        for d in d {
            assert!(h.bus.loaded_events() <= 4);
            delivered.push(d.event.event_id.clone());
            h.outcome(&d, DeliveryResult::Status(200));
        }
    }
    assert_eq!(delivered, (0..40).map(uuid).collect::<Vec<_>>());
    assert_eq!(h.stats("sub").delivered, 40);
    assert_eq!(h.bus.loaded_events(), 0);
    assert!(
        h.reads >= 9,
        "{} reads for 36 events beyond the window",
        h.reads
    );
}

#[test]
fn a_subscriber_that_keeps_up_never_waits_for_a_read() {
    let mut h = windowed(4, 2);
    for n in 0..100 {
        h.publish(Some(&uuid(n)));
        for d in h.deliveries() {
            h.outcome(&d, DeliveryResult::Status(200));
        }
    }
    assert_eq!(h.stats("sub").delivered, 100);
    assert_eq!(h.reads, 0);
}

#[test]
fn the_window_survives_failures_and_retries_in_order_from_the_store() {
    let mut h = windowed(3, 1);
    for n in 0..12 {
        h.publish(Some(&uuid(n)));
    }
    // Every event fails once (a 503: the endpoint is there), then is acknowledged.
    let mut failed = std::collections::BTreeSet::new();
    let mut acknowledged = Vec::new();
    for _ in 0..500 {
        loop {
            let started = h.deliveries();
            if started.is_empty() {
                break;
            }
            for d in started {
                if failed.insert(d.event.event_id.clone()) {
                    h.outcome(&d, DeliveryResult::Status(503));
                } else {
                    acknowledged.push(d.event.event_id.clone());
                    h.outcome(&d, DeliveryResult::Status(200));
                }
            }
        }
        let Some(next) = h.bus.poll_timeout() else {
            break;
        };
        h.now = next.max(h.now);
        h.run(|bus, fx| bus.handle_timeout(fx));
    }
    assert_eq!(acknowledged.len(), 12);
    assert_eq!(h.stats("sub").pending, 0);
    assert_eq!(h.stats("sub").retried, 12);
}

#[test]
fn a_snapshot_carries_the_backlog_as_sets_and_the_rebuilt_bus_reads_it_back_in_order() {
    let mut h = windowed(4, 400);
    for n in 0..30 {
        h.publish(Some(&uuid(n)));
    }
    let d = h.deliveries();
    h.outcome(&d[1], DeliveryResult::Status(200));
    let snapshot = h.bus.snapshot();
    assert!(
        snapshot
            .iter()
            .all(|r| !matches!(r, BusRecord::EventAccepted { .. })),
        "no record per event"
    );
    let mut rebuilt = Harness::with_config(h.bus.config().clone());
    rebuilt.log = h.log.clone();
    for r in &snapshot {
        rebuilt.bus.apply(r);
    }
    assert_eq!(rebuilt.bus, h.bus);
    assert_eq!(rebuilt.bus.loaded_events(), 0);
    rebuilt.now = h.now;
    rebuilt.run(|bus, fx| bus.handle_timeout(fx));
    let ids = drain(&mut rebuilt, DeliveryResult::Status(200), 100);
    let expected: Vec<String> = (0..30).filter(|&n| n != 1).map(uuid).collect();
    assert_eq!(ids, expected);
}

#[test]
fn retention_dead_letters_events_that_were_never_loaded_with_one_record() {
    let mut h = Harness::with_config(BusConfig {
        backlog_window: 2,
        retention: Duration::from_secs(60),
        ..BusConfig::default()
    });
    h.activate("prod", "svc");
    let mut s = spec("http://a/");
    s.max_inflight = 1;
    h.subscribe("prod", "sub", s);
    for n in 0..50 {
        h.publish(Some(&uuid(n)));
    }
    let reads = h.reads;
    h.log.clear();
    // Nothing is answered; the retention passes.
    h.advance(61_000);
    let expired: Vec<_> = h
        .log
        .iter()
        .filter(|r| matches!(r, Record::Bus(BusRecord::RetentionPassed { .. })))
        .collect();
    assert_eq!(expired.len(), 1);
    assert_eq!(h.stats("sub").dead_lettered, 50);
    assert_eq!(h.stats("sub").pending, 0);
    assert_eq!(h.reads, reads, "expiry reads nothing");
    assert_eq!(h.bus.loaded_events(), 0);
    assert_eq!(h.bus.poll_timeout(), None);
}

#[test]
fn a_replayed_dead_letter_gets_a_fresh_retention_and_a_new_event_its_own() {
    let mut h = with_retention(10);
    h.activate("prod", "svc");
    h.subscribe("prod", "sub", spec("http://a/"));
    h.publish(Some(&uuid(0)));
    h.deliveries();
    h.advance(10_000);
    assert_eq!(h.stats("sub").dead_lettered, 1);
    h.advance(5_000);
    h.replay_all("sub");
    h.publish(Some(&uuid(1)));
    h.advance(9_000);
    assert_eq!(h.stats("sub").pending, 2, "neither has expired yet");
    // Expiry times are rounded up to 1/1024 of the retention.
    h.advance(1_010);
    assert_eq!(h.stats("sub").pending, 0);
    assert_eq!(h.stats("sub").dead_lettered, 2);
    assert_eq!(h.replayed(), h.bus);
}

#[test]
fn over_the_backlog_limit_the_oldest_owed_events_are_dead_lettered_counted() {
    let mut h = Harness::with_config(BusConfig {
        max_backlog_events: 10,
        max_dead_letters: 6,
        ..BusConfig::default()
    });
    h.activate("prod", "svc");
    let mut s = spec("http://a/");
    s.max_inflight = 1;
    h.subscribe("prod", "sub", s);
    for n in 0..25 {
        h.publish(Some(&uuid(n)));
        assert!(h.stats("sub").pending <= 10);
    }
    let stats = h.stats("sub");
    assert_eq!(stats.pending, 10);
    assert_eq!(stats.over_limit, 15);
    // Of the 15, the 6 newest are kept as dead letters; the others were discarded, counted.
    assert_eq!(stats.dead_lettered, 6);
    assert_eq!(stats.discarded, 9);
    let list = h.req(BusRequest::ListDeadLetters {
        namespace: Some("prod".into()),
        after: None,
        limit: 100,
    });
    let BusReply::DeadLetters { entries, more } = list else {
        panic!("{list:?}")
    };
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [9, 10, 11, 12, 13, 14]
    );
    assert_eq!(more, None);
    let discarded = h.log.iter().find_map(|r| match r {
        Record::Bus(BusRecord::DeadLettersDiscarded { released, .. }) => Some(released.clone()),
        _ => None,
    });
    assert!(
        discarded.is_some_and(|r| r.contains(0)),
        "a discarded event no one holds is released to the store"
    );
    // The oldest owed event is the first still delivered.
    let d = h.deliveries();
    assert_eq!(
        d[0].event.event_id,
        uuid(0),
        "already in flight before the limit"
    );
    h.outcome(&d[0], DeliveryResult::Status(200));
    let d = h.deliveries();
    assert_eq!(d[0].event.event_id, uuid(15));
    assert_eq!(h.replayed(), h.bus);
}

#[test]
fn dead_letters_are_listed_in_pages() {
    let mut h = with_retention(1);
    h.activate("prod", "svc");
    h.subscribe("prod", "a", spec("http://a/"));
    h.subscribe("prod", "b", spec("http://b/"));
    for n in 0..3 {
        h.publish(Some(&uuid(n)));
    }
    h.advance(2_000);
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let reply = h.req(BusRequest::ListDeadLetters {
            namespace: None,
            after: after.clone(),
            limit: 4,
        });
        let BusReply::DeadLetters { entries, more } = reply else {
            panic!("{reply:?}")
        };
        seen.extend(
            entries
                .iter()
                .map(|e| format!("{}/{}", e.subscription.name, e.seq)),
        );
        match more {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, ["a/0", "a/1", "a/2", "b/0", "b/1", "b/2"]);
    let token: DeadLetterRef = "prod/a/2".parse().expect("a token");
    assert_eq!(token.to_string(), "prod/a/2");
    assert!("prod/a".parse::<DeadLetterRef>().is_err());
    assert!("prod/a/x".parse::<DeadLetterRef>().is_err());
}

#[test]
fn the_last_holder_of_an_event_releases_it_to_the_store() {
    let mut h = ready();
    h.subscribe("prod", "other", spec("http://b/"));
    h.publish(None);
    let d = h.deliveries();
    h.outcome(&d[0], DeliveryResult::Status(200));
    h.outcome(&d[1], DeliveryResult::Status(200));
    let released: Vec<bool> = h
        .log
        .iter()
        .filter_map(|r| match r {
            Record::Bus(BusRecord::DeliveryAcknowledged { released, .. }) => Some(*released),
            _ => None,
        })
        .collect();
    assert_eq!(released, [false, true]);
    h.publish(None);
    h.delete("sub");
    h.delete("other");
    let deleted: Vec<u64> = h
        .log
        .iter()
        .filter_map(|r| match r {
            Record::Bus(BusRecord::SubscriptionDeleted { released, .. }) => Some(released.len()),
            _ => None,
        })
        .collect();
    assert_eq!(deleted, [0, 1]);
}

#[test]
fn acknowledgements_of_one_turn_are_one_record_per_subscription() {
    let mut h = ready();
    h.subscribe("prod", "other", spec("http://b/"));
    for n in 0..3 {
        h.publish(Some(&uuid(n)));
    }
    let mut d = h.deliveries();
    assert_eq!(d.len(), 6);
    // The shell takes every outcome waiting in one turn, in whatever order they came.
    d.reverse();
    let before = h.log.len();
    h.acknowledge_in_one_turn(&d);
    let mut acks = Vec::new();
    for r in &h.log[before..] {
        match r {
            Record::Bus(BusRecord::DeliveriesAcknowledged {
                subscription,
                seqs,
                released,
            }) => acks.push((
                subscription.name.clone(),
                seqs.iter().collect::<Vec<_>>(),
                released.iter().collect::<Vec<_>>(),
            )),
            other => panic!("only joined acknowledgements expected, not {other:?}"),
        }
    }
    // Each event is released by the subscription whose acknowledgement came last: with the
    // outcomes reversed, "sub" (started first) acknowledged last.
    let mut by_name = acks.clone();
    by_name.sort();
    assert_eq!(
        by_name,
        [
            ("other".to_owned(), vec![0, 1, 2], vec![]),
            ("sub".to_owned(), vec![0, 1, 2], vec![0, 1, 2]),
        ]
    );
    assert_eq!(h.replayed(), h.bus);
    assert_eq!(h.stats("sub").delivered, 3);
    // The same after a record of another kind: the next acknowledgement starts a record.
    h.publish(Some(&uuid(3)));
    let d = h.deliveries();
    h.acknowledge_in_one_turn(&d);
    let singles = h
        .log
        .iter()
        .filter(|r| matches!(r, Record::Bus(BusRecord::DeliveryAcknowledged { .. })))
        .count();
    assert_eq!(
        singles, 2,
        "one acknowledgement per subscription stays a single record"
    );
    assert_eq!(h.replayed(), h.bus);
}

#[test]
fn a_dead_endpoint_is_probed_one_push_at_a_time_and_an_answer_ends_the_backoff() {
    let mut h = windowed(64, 10);
    for n in 0..50 {
        h.publish(Some(&uuid(n)));
    }
    let first = h.deliveries();
    assert_eq!(first.len(), 10);
    for d in &first {
        h.outcome(d, DeliveryResult::ConnectionError);
    }
    // The first two failures freed slots before the third started the backoff.
    let refilled = h.deliveries();
    assert_eq!(refilled.len(), 2);
    for d in &refilled {
        h.outcome(d, DeliveryResult::ConnectionError);
    }
    let backoff = h.stats("sub").backoff.expect("backing off");
    assert_eq!(backoff.reason, BackoffReason::ConnectionFailed);
    let status = serde_json::to_value(h.stats("sub")).expect("serializes");
    assert_eq!(status["backoff"]["reason"], json!("connection-failed"));
    // An hour of a dead endpoint: probes only, spaced by the retry policy (at most 60 s).
    let mut attempts = 0;
    let start = h.now;
    while h.now < start.saturating_add(Duration::from_secs(3600)) {
        let d = h.deliveries();
        assert!(d.len() <= 1, "{} at once while backing off", d.len());
        for d in &d {
            attempts += 1;
            assert_eq!(h.stats("sub").in_flight, 1);
            h.outcome(d, DeliveryResult::ConnectionError);
        }
        let next = h.bus.poll_timeout().expect("a probe is scheduled");
        h.now = next.max(h.now);
        h.run(|bus, fx| bus.handle_timeout(fx));
    }
    assert!(
        (55..=200).contains(&attempts),
        "{attempts} probes in an hour"
    );
    assert_eq!(
        h.stats("sub").backoff.map(|b| b.failures),
        Some(attempts + 1)
    );
    // The endpoint answers again: the probe's 200 ends the backoff, and the rest flows.
    let ids = drain(&mut h, DeliveryResult::Status(200), 100);
    assert_eq!(ids.len(), 50);
    assert_eq!(h.stats("sub").backoff, None);
    assert_eq!(h.stats("sub").delivered, 50);
}

#[test]
fn timeouts_back_off_too_and_a_new_endpoint_is_tried_at_once() {
    let mut h = windowed(64, 5);
    for n in 0..10 {
        h.publish(Some(&uuid(n)));
    }
    assert_eq!(h.deliveries().len(), 5);
    h.advance(2_000);
    assert_eq!(
        h.stats("sub").backoff.map(|b| b.reason),
        Some(BackoffReason::Timeout)
    );
    assert!(h.deliveries().is_empty());
    let mut s = spec("http://fixed/");
    s.max_inflight = 5;
    h.subscribe("prod", "sub", s);
    assert_eq!(h.stats("sub").backoff, None);
    assert_eq!(h.deliveries().len(), 5);
}

#[test]
fn failures_with_an_answer_never_back_off() {
    let mut h = windowed(64, 5);
    for n in 0..10 {
        h.publish(Some(&uuid(n)));
    }
    for d in h.deliveries() {
        h.outcome(&d, DeliveryResult::Status(503));
    }
    assert_eq!(h.stats("sub").backoff, None);
}

#[test]
fn a_full_store_refuses_publishes_with_507_until_there_is_room() {
    let mut h = ready();
    h.bus.handle_storage(true);
    let reply = h.publish(None);
    assert_eq!(reply.status(), 507);
    assert_eq!(
        reply.body(),
        Some(
            json!({"status": 507, "type": "insufficient_storage", "message": publish::INSUFFICIENT_STORAGE_MESSAGE})
        )
    );
    let reply = h.req(BusRequest::Publish {
        method: "POST".into(),
        source_id_header: None,
        body: body_with(json!({}), &[]),
        headers: vec![],
    });
    assert_eq!(reply.status(), 507);
    assert_eq!(
        reply.body().map(|b| b["type"].clone()),
        Some(json!("insufficient_storage"))
    );
    // A bad event is still told what is wrong with it.
    let reply = h.req(BusRequest::Publish {
        method: "POST".into(),
        source_id_header: None,
        body: b"{".to_vec(),
        headers: vec![],
    });
    assert_eq!(reply.status(), 400);
    assert!(
        h.log
            .iter()
            .all(|r| !matches!(r, Record::Bus(BusRecord::EventAccepted { .. })))
    );
    h.bus.handle_storage(false);
    assert_eq!(h.publish(None).status(), 200);
}

#[test]
fn a_read_answered_after_its_subscription_was_deleted_is_ignored() {
    let mut h = windowed(2, 1);
    for n in 0..6 {
        h.publish(Some(&uuid(n)));
    }
    let d = h.deliveries();
    // Settle the window without answering the read the bus then asks for.
    let mut fx_records = VecDeque::new();
    let mut fx = Effects {
        now: h.now,
        rng: &mut h.rng,
        records: &mut fx_records,
    };
    h.bus.handle_delivery_outcome(
        &mut fx,
        DeliveryOutcome {
            delivery: d[0].id,
            result: DeliveryResult::Status(200),
        },
    );
    let read = h.bus.poll_backlog_read().expect("a read");
    h.delete("sub");
    let page = page_from(&h.log, &read);
    h.run(|bus, fx| bus.handle_backlog(fx, page));
    assert_eq!(h.bus.loaded_events(), 0);
}

#[test]
fn a_second_read_waits_for_the_first_page() {
    let mut h = windowed(2, 2);
    // Answer nothing automatically: run inputs directly.
    let mut fx_records = VecDeque::new();
    for n in 0..6 {
        let mut fx = Effects {
            now: h.now,
            rng: &mut h.rng,
            records: &mut fx_records,
        };
        h.bus.publish_from_gateway(
            &mut fx,
            "ec-default",
            GatewayEvent {
                body: event_body(Some(&uuid(n))),
                headers: vec![],
            },
        );
    }
    h.log.extend(fx_records.drain(..));
    let mut seen = Vec::new();
    let mut pending_reads = Vec::new();
    for _ in 0..50 {
        while let Some(read) = h.bus.poll_backlog_read() {
            pending_reads.push(read);
        }
        let d: Vec<Delivery> = std::iter::from_fn(|| h.bus.poll_delivery()).collect();
        for d in &d {
            seen.push(d.event.event_id.clone());
            let mut fx = Effects {
                now: h.now,
                rng: &mut h.rng,
                records: &mut fx_records,
            };
            h.bus.handle_delivery_outcome(
                &mut fx,
                DeliveryOutcome {
                    delivery: d.id,
                    result: DeliveryResult::Status(200),
                },
            );
            h.log.extend(fx_records.drain(..));
            while let Some(read) = h.bus.poll_backlog_read() {
                pending_reads.push(read);
            }
        }
        // The store answers the oldest read only when nothing else happens.
        if d.is_empty() && !pending_reads.is_empty() {
            let read = pending_reads.remove(0);
            let page = page_from(&h.log, &read);
            let mut fx = Effects {
                now: h.now,
                rng: &mut h.rng,
                records: &mut fx_records,
            };
            h.bus.handle_backlog(&mut fx, page);
        }
    }
    assert_eq!(seen, (0..6).map(uuid).collect::<Vec<_>>());
}
