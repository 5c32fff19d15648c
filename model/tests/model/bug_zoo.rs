//! The bug zoo in the model: each bug changes what the model decides, and with no bug the
//! documented behaviour holds. A bugged model is still deterministic: its records replay to
//! the same state.
//!
//! `ack-before-durable` lives in the driver; `impl/server/tests/server/bug_zoo.rs` shows it.

#![cfg(feature = "bug-zoo")]

use std::time::Duration;

use crate::common::{Harness, START, csr_token_of, good_csr, service_body};
use ace_model::bugs::{Bug, Bugs};
use ace_model::bus::{
    ActivationSpec, BusConfig, BusRequest, Delivery, DeliveryOutcome, DeliveryResult,
    DeliveryStats, SubscriptionSpec,
};
use ace_model::proxy::{TokenCache, TokenCachePolicy};
use ace_model::{Config, GatewayCall, Model, Reply, Request};

fn harness(bugs: Bugs) -> Harness {
    Harness::with_config(
        Config {
            bugs,
            ..Config::default()
        },
        7,
    )
}

/// What `scenario` observes with no bug and with `bug` on; every bugged run must also replay.
fn with_and_without<T>(bug: Bug, scenario: impl Fn(&mut Harness) -> T) -> (T, T) {
    let mut clean = harness(Bugs::NONE);
    let normal = scenario(&mut clean);
    let mut bugged = harness(bug.into());
    let wrong = scenario(&mut bugged);
    assert_eq!(
        bugged.replayed().state(),
        bugged.model.state(),
        "{bug}: the records of a bugged model replay to the same state"
    );
    (normal, wrong)
}

fn status(reply: &Reply) -> u16 {
    reply.status()
}

// Tokens.

#[test]
fn token_reusable_lets_a_used_configuration_url_work_again() {
    let (normal, wrong) = with_and_without(Bug::TokenReusable, |h| {
        h.apply_re("ec");
        let token = h.token("ec").expect("token");
        assert_eq!(status(&h.info("ec", &token)), 200);
        let again = status(&h.info("ec", &token));
        // And after the whole onboarding with a fresh URL.
        let token = h.token("ec").expect("token");
        let Reply::Info(info) = h.info("ec", &token) else {
            panic!("info refused")
        };
        let csr_token = csr_token_of(&info.csr_url);
        assert_eq!(
            status(&h.client_certs("ec", &csr_token, good_csr("ec"))),
            201
        );
        let after_certificate = status(&h.info("ec", &token));
        let csr_again = status(&h.client_certs("ec", &csr_token, good_csr("ec")));
        (again, after_certificate, csr_again)
    });
    assert_eq!(normal, (403, 403, 403));
    assert_eq!(wrong, (200, 200, 201));
}

#[test]
fn token_ttl_ignored_accepts_expired_tokens() {
    let (normal, wrong) = with_and_without(Bug::TokenTtlIgnored, |h| {
        h.apply_re("ec");
        let ttl = h.model.config().connector.token_ttl;
        let token = h.token("ec").expect("token");
        h.advance(ttl + Duration::from_secs(1));
        let info = h.info("ec", &token);
        let csr_token = match &info {
            Reply::Info(info) => csr_token_of(&info.csr_url),
            _ => {
                // The clean model refused: take a fresh token's CSR URL.
                let token = h.token("ec").expect("token");
                let Reply::Info(info) = h.info("ec", &token) else {
                    panic!("info refused")
                };
                csr_token_of(&info.csr_url)
            }
        };
        h.advance(ttl + Duration::from_secs(1));
        let certs = status(&h.client_certs("ec", &csr_token, good_csr("ec")));
        (status(&info), certs)
    });
    assert_eq!(normal, (403, 403));
    assert_eq!(wrong, (200, 201));
}

// Certificates.

#[test]
fn cn_not_checked_opens_another_remote_environment() {
    let (normal, wrong) = with_and_without(Bug::CnNotChecked, |h| {
        h.apply_re("ec-a");
        h.apply_re("ec-b");
        let cert_a = h.onboard("ec-a");
        let own = status(&h.gateway("ec-a", Some(&cert_a), GatewayCall::ListServices));
        let other = status(&h.gateway("ec-b", Some(&cert_a), GatewayCall::ListServices));
        (own, other)
    });
    assert_eq!(normal, (200, 403));
    assert_eq!(wrong, (200, 200));
}

#[test]
fn deleted_re_accepted_keeps_old_certificates_valid() {
    let (normal, wrong) = with_and_without(Bug::DeletedReAccepted, |h| {
        h.apply_re("ec");
        let cert = h.onboard("ec");
        h.delete_re("ec");
        let deleted = status(&h.gateway("ec", Some(&cert), GatewayCall::ListServices));
        h.apply_re("ec");
        let recreated = status(&h.gateway("ec", Some(&cert), GatewayCall::ListServices));
        (deleted, recreated)
    });
    assert_eq!(normal, (403, 403));
    // Past the gateway, a deleted RE is not found by the Metadata Service.
    assert_eq!(wrong, (404, 200));
}

// Metadata.

#[test]
fn identifier_not_unique_registers_a_duplicate_identifier() {
    let (normal, wrong) = with_and_without(Bug::IdentifierNotUnique, |h| {
        h.apply_re("ec");
        let cert = h.onboard("ec");
        let mut create = || {
            let body = service_body("orders-v1", "secret");
            status(&h.gateway("ec", Some(&cert), GatewayCall::CreateService { body }))
        };
        (create(), create())
    });
    assert_eq!(normal, (200, 409));
    assert_eq!(wrong, (200, 200));
}

#[test]
fn secret_returned_shows_the_oauth_credentials() {
    let (normal, wrong) = with_and_without(Bug::SecretReturned, |h| {
        h.apply_re("ec");
        let cert = h.onboard("ec");
        let body = service_body("orders-v1", "s3cr3t");
        let Reply::ServiceCreated { id } =
            h.gateway("ec", Some(&cert), GatewayCall::CreateService { body })
        else {
            panic!("not created")
        };
        let reply = h.gateway("ec", Some(&cert), GatewayCall::GetService { id });
        let body = reply.body().expect("a body");
        let oauth = &body["api"]["credentials"]["oauth"];
        (
            reply.status(),
            oauth["clientId"].clone(),
            oauth["clientSecret"].clone(),
        )
    });
    assert_eq!(normal, (200, "********".into(), "********".into()));
    assert_eq!(wrong, (200, "client-id".into(), "s3cr3t".into()));
}

// Events.

/// A bus with subscription `prod/orders` (`max_inflight` as given) for source `ec`, activated
/// or not; deliveries are collected in `out`.
struct Bus {
    h: Harness,
    out: Vec<Delivery>,
}

impl Bus {
    fn new(bugs: Bugs, activated: bool, max_inflight: i64) -> Bus {
        Bus::with(harness(bugs), activated, max_inflight)
    }

    fn with(h: Harness, activated: bool, max_inflight: i64) -> Bus {
        let mut bus = Bus { h, out: Vec::new() };
        if activated {
            bus.request(BusRequest::ApplyActivation {
                namespace: "prod".into(),
                name: "ec".into(),
                spec: ActivationSpec {
                    source_id: "ec".into(),
                    display_name: "ec".into(),
                },
            });
        }
        bus.subscribe("http://subscriber/a", max_inflight);
        bus
    }

    fn subscribe(&mut self, endpoint: &str, max_inflight: i64) -> u16 {
        self.request(BusRequest::ApplySubscription {
            namespace: "prod".into(),
            name: "orders".into(),
            spec: SubscriptionSpec {
                endpoint: endpoint.into(),
                include_subscription_name_header: false,
                max_inflight,
                push_request_timeout_ms: 1000,
                event_type: "order.created".into(),
                event_type_version: "v1".into(),
                source_id: "ec".into(),
            },
        })
    }

    fn request(&mut self, request: BusRequest) -> u16 {
        let status = self.h.send(Request::Bus(request)).status();
        self.settle();
        status
    }

    fn settle(&mut self) {
        loop {
            while let Some(r) = self.h.model.poll_record() {
                self.h.log.push(r);
            }
            self.h.serve_reads();
            while let Some(d) = self.h.model.poll_delivery() {
                self.out.push(d);
            }
            match self.h.model.poll_timeout() {
                Some(t) if t <= self.h.now => self.h.model.handle_timeout(self.h.now),
                _ => break,
            }
        }
    }

    fn publish(&mut self, n: u32) {
        let body = serde_json::json!({
            "source-id": "ec", "event-type": "order.created", "event-type-version": "v1",
            "event-time": "2018-11-02T22:08:41Z", "data": {"n": n},
        });
        let status = self.request(BusRequest::Publish {
            method: "POST".into(),
            source_id_header: None,
            body: body.to_string().into_bytes(),
            headers: vec![],
        });
        assert_eq!(status, 200);
    }

    fn answer(&mut self, delivery: &Delivery, result: DeliveryResult) {
        let now = self.h.now;
        self.h.model.handle_delivery_outcome(
            now,
            DeliveryOutcome {
                delivery: delivery.id,
                result,
            },
        );
        self.settle();
    }

    fn advance(&mut self, by: Duration) {
        self.h.advance(by);
        self.settle();
    }

    fn stats(&self) -> DeliveryStats {
        self.h
            .model
            .state()
            .bus()
            .subscription_stats("prod", "orders")
            .expect("the subscription")
    }

    fn replays(&self) {
        let replayed = Model::replay(self.h.model.config().clone(), 1.into(), self.h.log.clone());
        assert_eq!(replayed.state(), self.h.model.state());
    }
}

#[test]
fn no_retry_on_5xx_counts_a_500_as_delivered() {
    let run = |bugs: Bugs| {
        let mut bus = Bus::new(bugs, true, 1);
        bus.publish(1);
        let first = bus.out.pop().expect("a delivery");
        bus.answer(&first, DeliveryResult::Status(503));
        bus.advance(Duration::from_secs(10));
        let s = bus.stats();
        bus.replays();
        (s.delivered, s.pending, bus.out.len())
    };
    // Normally a 503 is retried: the event is pushed again and still owed.
    assert_eq!(run(Bugs::NONE), (0, 1, 1));
    assert_eq!(run(Bug::NoRetryOn5xx.into()), (1, 0, 0));
}

#[test]
fn deliver_inactive_pushes_without_an_event_activation() {
    let run = |bugs: Bugs| {
        let mut bus = Bus::new(bugs, false, 1);
        bus.publish(1);
        bus.replays();
        bus.out.len()
    };
    assert_eq!(run(Bugs::NONE), 0);
    assert_eq!(run(Bug::DeliverInactive.into()), 1);
}

#[test]
fn max_inflight_ignored_starts_every_push_at_once() {
    let run = |bugs: Bugs| {
        let mut bus = Bus::new(bugs, true, 2);
        for n in 0..5 {
            bus.publish(n);
        }
        bus.replays();
        (bus.out.len(), bus.stats().in_flight)
    };
    assert_eq!(run(Bugs::NONE), (2, 2));
    assert_eq!(run(Bug::MaxInflightIgnored.into()), (5, 5));
}

#[test]
fn loss_on_subscription_update_drops_pending_deliveries() {
    let run = |bugs: Bugs| {
        let mut bus = Bus::new(bugs, true, 1);
        for n in 0..3 {
            bus.publish(n);
        }
        assert_eq!(bus.stats().pending, 3);
        assert_eq!(bus.subscribe("http://subscriber/b", 1), 200);
        bus.advance(Duration::from_secs(5));
        bus.replays();
        (bus.stats().pending, bus.h.model.state().bus().dropped())
    };
    assert_eq!(run(Bugs::NONE), (3, 0));
    assert_eq!(run(Bug::LossOnSubscriptionUpdate.into()), (0, 3));
}

#[test]
fn backlog_window_forgets_skips_an_event_beyond_the_window() {
    let run = |bugs: Bugs| {
        let config = Config {
            bugs,
            bus: BusConfig {
                backlog_window: 4,
                ..BusConfig::default()
            },
            ..Config::default()
        };
        let mut bus = Bus::with(Harness::with_config(config, 7), true, 1);
        for n in 0..20 {
            bus.publish(n);
        }
        let mut delivered = 0;
        while let Some(d) = bus.out.pop() {
            delivered += 1;
            bus.answer(&d, DeliveryResult::Status(200));
        }
        bus.advance(Duration::from_secs(60));
        bus.replays();
        (delivered, bus.stats().pending)
    };
    // Normally all 20 are pushed, the 16 beyond the window read back from the store.
    assert_eq!(run(Bugs::NONE), (20, 0));
    let (delivered, pending) = run(Bug::BacklogWindowForgets.into());
    assert!(
        delivered < 20 && pending > 0,
        "{delivered} delivered, {pending} owed"
    );
}

// Proxy.

#[test]
fn token_cached_forever_never_refreshes_by_time() {
    let run = |bugs: Bugs| {
        let mut cache = TokenCache::new(TokenCachePolicy::default()).with_bugs(bugs);
        cache.insert("client", "tok", Some(60), START);
        cache.insert("short", "s", Some(1), START);
        let later = START.saturating_add(Duration::from_secs(24 * 3600));
        let kept = (
            cache.get("client", later).map(str::to_owned),
            cache.get("short", START).map(str::to_owned),
        );
        // A refusal by the target still drops it.
        cache.invalidate("client");
        (kept, cache.get("client", START).is_some())
    };
    assert_eq!(run(Bugs::NONE), ((None, None), false));
    assert_eq!(
        run(Bug::TokenCachedForever.into()),
        ((Some("tok".into()), Some("s".into())), false)
    );
}

#[test]
fn proxy_egress_open_registers_aces_own_surfaces_as_apis() {
    let (normal, wrong) = with_and_without(Bug::ProxyEgressOpen, |h| {
        h.apply_re("ec");
        let cert = h.onboard("ec");
        [
            "http://127.0.0.1:8080/",
            "http://169.254.169.254/latest",
            "http://localhost:8081/",
        ]
        .map(|url| {
            let body = serde_json::json!({"provider": "p", "name": "n", "description": "d",
                    "api": {"targetUrl": url}})
            .to_string()
            .into_bytes();
            status(&h.gateway("ec", Some(&cert), GatewayCall::CreateService { body }))
        })
    });
    assert_eq!(normal, [400, 400, 400]);
    assert_eq!(wrong, [200, 200, 200]);
}

// The set itself.

#[test]
fn every_bug_has_a_test_here_and_round_trips_its_name() {
    // One test per bug above (ack-before-durable in the shell's tests; the bugs of replicas
    // in the server's and the simulation's, as only a deployment of replicas has them).
    let here = Bug::ALL.iter().filter(|b| b.area() != "replicas").count();
    assert_eq!(here, 14);
    let all: Bugs = Bug::ALL.into_iter().collect();
    assert_eq!(all.len(), Bug::ALL.len());
    for bug in Bug::ALL {
        assert_eq!(bug.name().parse::<Bug>(), Ok(bug));
        assert!(all.has(bug));
        assert!(!Bugs::NONE.has(bug));
    }
}
