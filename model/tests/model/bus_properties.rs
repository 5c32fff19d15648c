//! Properties of the Event Bus under random interleavings of publishes, subscription and
//! activation changes, delivery outcomes, time steps and restarts.
//!
//! The test keeps its own view of the world (which subscriptions exist, which are activated,
//! what they match) and computes from it which subscriptions each accepted event is due; the
//! bus's deliveries are checked against that with the [`DeliveryLedger`] after every step.
//! A final phase answers every delivery with 2xx and lets time run: every due event of a
//! subscription that still exists and is activated must then be acknowledged, or have been
//! dead-lettered after the retention.

use std::collections::BTreeMap;
use std::time::Duration;

use ace_model::bus::ledger::DeliveryLedger;
use ace_model::bus::{
    ActivationSpec, BacklogPage, BacklogRead, BusConfig, BusRecord, BusRequest, DeadLetterReason,
    Delivery, DeliveryOutcome, DeliveryResult, ResourceKey, RetryPolicy, SubscriptionSpec,
};
use ace_model::{Config, Model, Record, Request, Timestamp};
use proptest::prelude::*;

const NAMESPACES: [&str; 2] = ["prod", "dev"];
const SOURCES: [&str; 2] = ["ec-default", "ec-other"];
const TYPES: [&str; 2] = ["order.created", "order.shipped"];
const VERSIONS: [&str; 2] = ["v1", "v2"];
const RETENTION: Duration = Duration::from_secs(60);
const MAX_BACKOFF: Duration = Duration::from_secs(4);

#[derive(Clone, Debug)]
enum Op {
    Publish {
        source: usize,
        event_type: usize,
        version: usize,
        client_id: bool,
    },
    ApplySubscription {
        ns: usize,
        name: usize,
        source: usize,
        event_type: usize,
        version: usize,
        max_inflight: i64,
        timeout_ms: i64,
        endpoint: usize,
    },
    DeleteSubscription {
        ns: usize,
        name: usize,
    },
    Activate {
        ns: usize,
        name: usize,
        source: usize,
    },
    Deactivate {
        ns: usize,
        name: usize,
    },
    Outcome {
        pick: usize,
        result: u8,
    },
    /// Several outcomes in one turn, as the shell takes every outcome waiting (their
    /// acknowledgements join into one record per subscription).
    Outcomes {
        picks: Vec<(usize, u8)>,
    },
    Advance {
        ms: u64,
    },
    Restart,
    /// The store answers one of the backlog reads waiting.
    AnswerRead {
        pick: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..2usize, 0..2usize, 0..2usize, any::<bool>()).prop_map(
            |(source, event_type, version, client_id)| Op::Publish { source, event_type, version, client_id }
        ),
        2 => (0..2usize, 0..3usize, 0..2usize, 0..2usize, 0..2usize, 1..4i64, 0..3000i64, 0..2usize)
            .prop_map(|(ns, name, source, event_type, version, max_inflight, timeout_ms, endpoint)| {
                Op::ApplySubscription { ns, name, source, event_type, version, max_inflight, timeout_ms, endpoint }
            }),
        1 => (0..2usize, 0..3usize).prop_map(|(ns, name)| Op::DeleteSubscription { ns, name }),
        2 => (0..2usize, 0..2usize, 0..2usize).prop_map(|(ns, name, source)| Op::Activate { ns, name, source }),
        1 => (0..2usize, 0..2usize).prop_map(|(ns, name)| Op::Deactivate { ns, name }),
        8 => (any::<usize>(), 0..4u8).prop_map(|(pick, result)| Op::Outcome { pick, result }),
        3 => proptest::collection::vec((any::<usize>(), 0..4u8), 2..8)
            .prop_map(|picks| Op::Outcomes { picks }),
        3 => (0..8000u64).prop_map(|ms| Op::Advance { ms }),
        1 => Just(Op::Restart),
        4 => any::<usize>().prop_map(|pick| Op::AnswerRead { pick }),
    ]
}

fn config() -> Config {
    Config {
        bus: BusConfig {
            retention: RETENTION,
            retry: RetryPolicy::Backoff {
                initial: Duration::from_millis(500),
                max: MAX_BACKOFF,
            },
            // A small window: the backlog beyond it is read back from the store often.
            backlog_window: 2,
            ..BusConfig::default()
        },
        ..Config::default()
    }
}

struct World {
    model: Model,
    seed: u64,
    restarts: u64,
    now: Timestamp,
    log: Vec<Record>,
    ledger: DeliveryLedger,
    subscriptions: BTreeMap<ResourceKey, SubscriptionSpec>,
    activations: BTreeMap<ResourceKey, String>,
    /// Outstanding deliveries, with the ledger's id of each.
    outstanding: Vec<(u64, Delivery)>,
    next_ledger_id: u64,
    next_event: u64,
    /// Event id and acceptance time, by the bus's sequence number.
    accepted: BTreeMap<u64, (String, Timestamp)>,
    /// Backlog reads the store has not answered yet.
    reads: Vec<BacklogRead>,
    /// When the final phase began: from then on an activated subscription gets everything
    /// within the longest backoff, so a later dead letter means it was stuck.
    healing_since: Option<Timestamp>,
}

impl World {
    fn new(seed: u64) -> Self {
        World {
            model: Model::new(config(), seed.into()),
            seed,
            restarts: 0,
            now: Timestamp::from_unix_millis(1_700_000_000_000),
            log: Vec::new(),
            ledger: DeliveryLedger::new(),
            subscriptions: BTreeMap::new(),
            activations: BTreeMap::new(),
            outstanding: Vec::new(),
            next_ledger_id: 0,
            next_event: 0,
            accepted: BTreeMap::new(),
            reads: Vec::new(),
            healing_since: None,
        }
    }

    fn activated(&self, key: &ResourceKey) -> bool {
        self.subscriptions.get(key).is_some_and(|spec| {
            self.activations
                .iter()
                .any(|(k, source)| k.namespace == key.namespace && *source == spec.source_id)
        })
    }

    fn refresh_activation(&mut self) {
        let keys: Vec<ResourceKey> = self.subscriptions.keys().cloned().collect();
        for key in keys {
            let active = self.activated(&key);
            self.ledger.set_active(&key, active);
        }
    }

    fn request(&mut self, request: BusRequest) -> ace_model::Reply {
        let reply = self.model.handle_request(self.now, Request::Bus(request));
        self.settle();
        reply
    }

    /// Drains records and deliveries, and handles a due timer (e.g. right after a replay).
    fn settle(&mut self) {
        loop {
            self.drain();
            match self.model.poll_timeout() {
                Some(t) if t <= self.now => self.model.handle_timeout(self.now),
                _ => break,
            }
        }
    }

    fn drain(&mut self) {
        while let Some(record) = self.model.poll_record() {
            match &record {
                Record::Bus(BusRecord::EventAccepted { seq, at, event, .. }) => {
                    self.accepted.insert(*seq, (event.event_id.clone(), *at));
                }
                Record::Bus(BusRecord::EventsDeadLettered {
                    subscription,
                    seqs,
                    reason,
                }) => {
                    assert_eq!(*reason, DeadLetterReason::Retention, "no limit is reached");
                    for seq in seqs.iter() {
                        let (id, at) = self.accepted[&seq].clone();
                        assert!(
                            self.now >= at.saturating_add(RETENTION),
                            "dead-lettered before the retention"
                        );
                        if let Some(since) = self.healing_since
                            && self.activated(subscription)
                        {
                            assert!(
                                self.now <= since.saturating_add(MAX_BACKOFF),
                                "{subscription} was stuck: event {id} dead-lettered while healthy"
                            );
                        }
                        self.ledger.dead_lettered(&id, subscription);
                    }
                }
                _ => {}
            }
            self.log.push(record);
        }
        // Backlog reads wait for the store, which answers them when an `AnswerRead` step
        // says so (and every one when healing): the bus goes on meanwhile.
        while let Some(read) = self.model.poll_backlog_read() {
            self.reads.push(read);
        }
        while let Some(delivery) = self.model.poll_delivery() {
            let id = self.next_ledger_id;
            self.next_ledger_id += 1;
            self.ledger
                .started(id, &delivery.event.event_id, &delivery.subscription);
            self.outstanding.push((id, delivery));
        }
    }

    /// Outstanding delivery `pick` ends with `result` (0: 200, 1: 500, 2: timeout, else a
    /// connection error); its records are not drained yet.
    fn outcome(&mut self, pick: usize, result: u8) {
        if self.outstanding.is_empty() {
            return;
        }
        let (id, delivery) = self.outstanding.remove(pick % self.outstanding.len());
        let result = match result {
            0 => DeliveryResult::Status(200),
            1 => DeliveryResult::Status(500),
            2 => DeliveryResult::Timeout,
            _ => DeliveryResult::ConnectionError,
        };
        self.ledger
            .finished(id, matches!(result, DeliveryResult::Status(200)));
        self.model.handle_delivery_outcome(
            self.now,
            DeliveryOutcome {
                delivery: delivery.id,
                result,
            },
        );
    }

    /// The store answers read `pick` of those waiting, with what it was given.
    fn answer_read(&mut self, pick: usize) {
        if self.reads.is_empty() {
            return;
        }
        let read = self.reads.remove(pick % self.reads.len());
        let page = BacklogPage::from_log(&read, &self.log);
        self.model.handle_backlog(self.now, page);
        self.settle();
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::AnswerRead { pick } => self.answer_read(pick),
            Op::Publish {
                source,
                event_type,
                version,
                client_id,
            } => {
                self.next_event += 1;
                let mut body = serde_json::json!({
                    "source-id": SOURCES[source], "event-type": TYPES[event_type],
                    "event-type-version": VERSIONS[version],
                    "event-time": "2018-11-02T22:08:41Z", "data": {"n": self.next_event},
                });
                if client_id {
                    body["event-id"] = format!(
                        "{:08x}-0000-4000-8000-{:012x}",
                        self.seed as u32, self.next_event
                    )
                    .into();
                }
                let due: Vec<ResourceKey> = self
                    .subscriptions
                    .iter()
                    .filter(|(k, s)| {
                        self.activated(k)
                            && s.matches(SOURCES[source], TYPES[event_type], VERSIONS[version])
                    })
                    .map(|(k, _)| k.clone())
                    .collect();
                // The ledger must know the event is due before its deliveries start.
                let reply = self.model.handle_request(
                    self.now,
                    Request::Bus(BusRequest::Publish {
                        method: "POST".into(),
                        source_id_header: None,
                        body: body.to_string().into_bytes(),
                        headers: vec![],
                    }),
                );
                assert_eq!(reply.status(), 200, "{:?}", reply.body());
                let id = reply
                    .body()
                    .and_then(|b| b["event-id"].as_str().map(str::to_owned))
                    .expect("an event id");
                self.ledger.accepted(&id, &due);
                self.settle();
            }
            Op::ApplySubscription {
                ns,
                name,
                source,
                event_type,
                version,
                max_inflight,
                timeout_ms,
                endpoint,
            } => {
                let key = ResourceKey::new(NAMESPACES[ns], format!("sub-{name}"));
                let spec = SubscriptionSpec {
                    endpoint: format!("http://subscriber-{endpoint}.{}:8080/", key.namespace),
                    include_subscription_name_header: endpoint == 0,
                    max_inflight,
                    push_request_timeout_ms: timeout_ms,
                    event_type: TYPES[event_type].into(),
                    event_type_version: VERSIONS[version].into(),
                    source_id: SOURCES[source].into(),
                };
                self.subscriptions.insert(key.clone(), spec.clone());
                self.ledger
                    .set_max_inflight(&key, usize::try_from(max_inflight).unwrap_or(1));
                self.refresh_activation();
                let reply = self.request(BusRequest::ApplySubscription {
                    namespace: key.namespace,
                    name: key.name,
                    spec,
                });
                assert!(matches!(reply.status(), 200 | 201));
            }
            Op::DeleteSubscription { ns, name } => {
                let key = ResourceKey::new(NAMESPACES[ns], format!("sub-{name}"));
                if self.subscriptions.remove(&key).is_some() {
                    self.ledger.withdrawn(&key);
                }
                self.request(BusRequest::DeleteSubscription {
                    namespace: key.namespace,
                    name: key.name,
                });
            }
            Op::Activate { ns, name, source } => {
                let key = ResourceKey::new(NAMESPACES[ns], format!("ea-{name}"));
                self.activations.insert(key.clone(), SOURCES[source].into());
                self.refresh_activation();
                self.request(BusRequest::ApplyActivation {
                    namespace: key.namespace,
                    name: key.name,
                    spec: ActivationSpec {
                        source_id: SOURCES[source].into(),
                        display_name: "events".into(),
                    },
                });
            }
            Op::Deactivate { ns, name } => {
                let key = ResourceKey::new(NAMESPACES[ns], format!("ea-{name}"));
                self.activations.remove(&key);
                self.refresh_activation();
                self.request(BusRequest::DeleteActivation {
                    namespace: key.namespace,
                    name: key.name,
                });
            }
            Op::Outcome { pick, result } => {
                self.outcome(pick, result);
                self.settle();
            }
            Op::Outcomes { ref picks } => {
                for &(pick, result) in picks {
                    self.outcome(pick, result);
                }
                self.settle();
            }
            Op::Advance { ms } => {
                self.advance_to(self.now.saturating_add(Duration::from_millis(ms)))
            }
            Op::Restart => {
                // Reads of the old process are never answered.
                self.reads.clear();
                for (id, _) in std::mem::take(&mut self.outstanding) {
                    self.ledger.finished(id, false);
                }
                self.restarts += 1;
                let restored = Model::replay(
                    config(),
                    (self.seed ^ self.restarts.rotate_left(32)).into(),
                    self.log.clone(),
                );
                assert!(
                    restored.state() == self.model.state(),
                    "replay rebuilds the state"
                );
                self.model = restored;
                self.settle();
            }
        }
    }

    /// Moves time to `t`: the shell aborts deliveries at their deadline, then the bus
    /// handles its timers.
    fn advance_to(&mut self, t: Timestamp) {
        self.now = t;
        let now = self.now;
        let (late, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.outstanding)
            .into_iter()
            .partition(|(_, d)| d.deadline <= now);
        self.outstanding = kept;
        for (id, _) in late {
            self.ledger.finished(id, false);
        }
        self.model.handle_timeout(self.now);
        self.settle();
    }

    fn check_safety(&self) {
        assert!(
            self.ledger.violations().is_empty(),
            "violations: {:?}",
            self.ledger.violations()
        );
    }

    /// Every subscriber answers 2xx and time runs until the bus has nothing left to do.
    fn heal(&mut self) {
        self.healing_since = Some(self.now);
        for _ in 0..100_000 {
            if !self.reads.is_empty() {
                self.answer_read(0);
                continue;
            }
            if let Some((id, delivery)) = self.outstanding.pop() {
                self.ledger.finished(id, true);
                self.model.handle_delivery_outcome(
                    self.now,
                    DeliveryOutcome {
                        delivery: delivery.id,
                        result: DeliveryResult::Status(200),
                    },
                );
                self.settle();
                self.check_safety();
                continue;
            }
            match self.model.poll_timeout() {
                Some(t) => {
                    let t = t.max(self.now);
                    self.advance_to(t);
                    self.check_safety();
                }
                None => return,
            }
        }
        panic!("the bus never became idle");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn deliveries_are_safe_at_every_step_and_complete_once_healed(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut world = World::new(seed);
        for op in &ops {
            world.step(op);
            world.check_safety();
        }
        world.heal();
        let owed = |k: &ResourceKey| world.activated(k);
        if let Err(incomplete) = world.ledger.check_complete(true, owed) {
            panic!("not delivered: {:?}", incomplete.missing);
        }
        // Acknowledged events are forgotten: only dead letters and what paused subscriptions
        // are owed stay stored.
        // Every record's stored form is serde's own JSON for it.
        for record in world.log.iter().chain(&world.model.snapshot()) {
            let json = record.to_json().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let serde = serde_json::to_vec(record).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(String::from_utf8_lossy(&json), String::from_utf8_lossy(&serde));
            // And it reads back as serde reads it.
            let read = Record::from_json(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let by_serde: Record =
                serde_json::from_slice(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&read, &by_serde);
            prop_assert_eq!(&read, record);
        }
        let restored = Model::replay(config(), seed.into(), world.log.clone());
        prop_assert!(restored.state() == world.model.state());
        // What replicas compare: the same records applied, the same digest.
        prop_assert_eq!(restored.state_digest(), world.model.state_digest());
        let mut from_snapshot = Model::replay(config(), seed.into(), world.model.snapshot());
        prop_assert!(from_snapshot.state() == world.model.state());
        prop_assert_eq!(from_snapshot.state_digest(), world.model.state_digest());
        prop_assert!(from_snapshot.poll_delivery().is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The shell takes every outcome waiting in one turn, and their acknowledgements join
    /// into one record per subscription. Whatever the order of the outcomes and their mix
    /// with failures, the joined records replay to the same state, and the store is told to
    /// forget each event once.
    #[test]
    fn outcomes_taken_in_one_turn_replay_to_the_same_state(
        seed in any::<u64>(),
        subs in 1..4usize,
        events in 1..24usize,
        turns in proptest::collection::vec(
            proptest::collection::vec((any::<usize>(), 0..2u8), 1..12),
            1..30,
        ),
    ) {
        let mut world = World::new(seed);
        world.step(&Op::Activate { ns: 0, name: 0, source: 0 });
        for name in 0..subs {
            world.step(&Op::ApplySubscription {
                ns: 0,
                name,
                source: 0,
                event_type: 0,
                version: 0,
                max_inflight: 3,
                timeout_ms: 1000,
                endpoint: name % 2,
            });
        }
        for _ in 0..events {
            world.step(&Op::Publish { source: 0, event_type: 0, version: 0, client_id: true });
        }
        for picks in &turns {
            world.step(&Op::Outcomes { picks: picks.clone() });
            world.check_safety();
        }
        world.heal();
        let restored = Model::replay(config(), seed.into(), world.log.clone());
        prop_assert!(restored.state() == world.model.state());
        prop_assert_eq!(restored.state_digest(), world.model.state_digest());
        let mut released: BTreeMap<u64, usize> = BTreeMap::new();
        for record in &world.log {
            let seqs: Vec<u64> = match record {
                Record::Bus(BusRecord::DeliveryAcknowledged { seq, released: true, .. }) => {
                    vec![*seq]
                }
                Record::Bus(BusRecord::DeliveriesAcknowledged { released, .. }) => {
                    released.iter().collect()
                }
                _ => Vec::new(),
            };
            for seq in seqs {
                *released.entry(seq).or_default() += 1;
            }
        }
        prop_assert!(released.values().all(|n| *n == 1), "released more than once: {released:?}");
        prop_assert_eq!(released.len(), events, "every event delivered everywhere is released");
    }
}

#[test]
fn a_steady_stream_of_acknowledged_events_leaves_nothing_stored() {
    let mut world = World::new(3);
    world.step(&Op::Activate {
        ns: 0,
        name: 0,
        source: 0,
    });
    world.step(&Op::ApplySubscription {
        ns: 0,
        name: 0,
        source: 0,
        event_type: 0,
        version: 0,
        max_inflight: 2,
        timeout_ms: 1000,
        endpoint: 0,
    });
    for _ in 0..1000 {
        world.step(&Op::Publish {
            source: 0,
            event_type: 0,
            version: 0,
            client_id: true,
        });
        world.heal();
    }
    assert_eq!(world.model.state().bus().loaded_events(), 0);
    assert_eq!(
        world
            .model
            .state()
            .bus()
            .subscription_stats("prod", "sub-0")
            .map(|s| s.delivered),
        Some(1000)
    );
    world.check_safety();
}
