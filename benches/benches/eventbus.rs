//! Event Bus model throughput: publish → deliver → acknowledge cycles through the pure model
//! (`ace_model::Model`), for one and for ten matching subscriptions.
//!
//! The baseline, measured in the same run, is the irreducible part: `serde_json` parsing the
//! same event body into a `Value`. The ratio of the two is what to compare across machines.
//! Also an accepted event's record encoded and decoded by serde's path and by ACE's.

use std::hint::black_box;

use ace_model::bus::{
    ActivationSpec, BusRecord, BusRequest, DeliveryId, DeliveryOutcome, DeliveryResult,
    SubscriptionSpec,
};
use ace_model::{Config, Model, Record, Request, Timestamp};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BODY: &str = r#"{"source-id":"ec-default","event-type":"order.created","event-type-version":"v1","event-time":"2018-11-02T22:08:41+00:00","data":{"orderCode":"4caad296-e0c5-491e-98ac-0ed118f9474e"}}"#;

fn model_with(subscriptions: usize) -> Model {
    let mut model = Model::new(Config::default(), 7.into());
    let now = Timestamp::from_unix_millis(1_700_000_000_000);
    model.handle_request(
        now,
        Request::Bus(BusRequest::ApplyActivation {
            namespace: "prod".into(),
            name: "orders".into(),
            spec: ActivationSpec {
                source_id: "ec-default".into(),
                display_name: "Orders".into(),
            },
        }),
    );
    for n in 0..subscriptions {
        let reply = model.handle_request(
            now,
            Request::Bus(BusRequest::ApplySubscription {
                namespace: "prod".into(),
                name: format!("sub-{n}"),
                spec: SubscriptionSpec {
                    endpoint: format!("http://subscriber-{n}.prod:8080/"),
                    include_subscription_name_header: true,
                    max_inflight: 400,
                    push_request_timeout_ms: 2000,
                    event_type: "order.created".into(),
                    event_type_version: "v1".into(),
                    source_id: "ec-default".into(),
                },
            }),
        );
        assert_eq!(reply.status(), 201);
    }
    while model.poll_record().is_some() {}
    model
}

/// One event through the model: publish, drain its record, start its deliveries (building
/// each request's headers and body as the shell would), acknowledge each with 204.
fn cycle(model: &mut Model, now: Timestamp, ids: &mut Vec<DeliveryId>) {
    let reply = model.handle_request(
        now,
        Request::Bus(BusRequest::Publish {
            method: "POST".into(),
            source_id_header: None,
            body: BODY.as_bytes().to_vec(),
            headers: Vec::new(),
        }),
    );
    debug_assert_eq!(reply.status(), 200);
    black_box(reply);
    while let Some(record) = model.poll_record() {
        black_box(record);
    }
    while let Some(delivery) = model.poll_delivery() {
        black_box(delivery.headers());
        black_box(delivery.body());
        ids.push(delivery.id);
    }
    for id in ids.drain(..) {
        model.handle_delivery_outcome(
            now,
            DeliveryOutcome {
                delivery: id,
                result: DeliveryResult::Status(204),
            },
        );
        while let Some(record) = model.poll_record() {
            black_box(record);
        }
    }
}

fn eventbus(c: &mut Criterion) {
    let mut group = c.benchmark_group("eventbus");
    group.throughput(Throughput::Elements(1));
    group.bench_function("baseline_serde_json_parse_event", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(BODY.as_bytes())))
    });
    // An accepted event's record as the store writes and reads it: serde's own path for an
    // internally tagged enum against ACE's (`Record::to_json`, `Record::from_json`).
    let mut model = model_with(1);
    model.handle_request(
        Timestamp::from_unix_millis(1_700_000_000_000),
        Request::Bus(BusRequest::Publish {
            method: "POST".into(),
            source_id_header: None,
            body: BODY.as_bytes().to_vec(),
            headers: Vec::new(),
        }),
    );
    let record = std::iter::from_fn(|| model.poll_record())
        .find(|r| matches!(r, Record::Bus(BusRecord::EventAccepted { .. })))
        .expect("an accepted event's record");
    let json = record.to_json().expect("encodes");
    assert_eq!(json, serde_json::to_vec(&record).expect("encodes"));
    group.bench_function("record_encode_serde", |b| {
        b.iter(|| serde_json::to_vec(black_box(&record)))
    });
    group.bench_function("record_encode_ace", |b| {
        b.iter(|| black_box(&record).to_json())
    });
    group.bench_function("record_decode_serde", |b| {
        b.iter(|| serde_json::from_slice::<Record>(black_box(&json)))
    });
    group.bench_function("record_decode_ace", |b| {
        b.iter(|| Record::from_json(black_box(&json)))
    });
    for subscriptions in [1usize, 10] {
        let mut model = model_with(subscriptions);
        let mut ids = Vec::with_capacity(subscriptions);
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        group.bench_function(
            format!("publish_deliver_ack_{subscriptions}_subscription"),
            |b| b.iter(|| cycle(&mut model, now, &mut ids)),
        );
        assert_eq!(model.state().bus().loaded_events(), 0);
    }
    group.finish();
}

criterion_group!(benches, eventbus);
criterion_main!(benches);
