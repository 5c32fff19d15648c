//! Deliveries: the HTTP POSTs the shell performs for the bus, their outcomes, and the retry
//! policy (reference §4.2).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::publish::Event;
use super::subscription::ResourceKey;
use crate::rng::SeededRng;
use crate::time::Timestamp;

/// Identifies one attempt of one delivery, from [`super::EventBus::poll_delivery`] to its
/// [`DeliveryOutcome`]. Unique within a process; a restarted bus starts again, and the
/// shell abandons the deliveries of the previous process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeliveryId(pub u64);

/// The header naming the subscription, when `include_subscription_name_header` is set
/// (the chart's `--subscription_name_header`).
pub const SUBSCRIPTION_NAME_HEADER: &str = "Kyma-Subscription";

/// An HTTP POST the shell performs: `POST endpoint` with [`Delivery::headers`] and
/// [`Delivery::body`], aborted at `deadline` (the bus then counts it as timed out).
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    /// This attempt.
    pub id: DeliveryId,
    /// The event's sequence number: the key of its body in the store when
    /// `event.body_stored` (the body is then not in memory).
    pub seq: u64,
    /// The subscription it is for (shared with the bus, which hands out one per delivery).
    pub subscription: Arc<ResourceKey>,
    /// 1 for the first attempt of this event to this subscription in this process.
    pub attempt: u32,
    /// `spec.endpoint` when the attempt started (shared with the bus, like `subscription`).
    pub endpoint: Arc<str>,
    /// `spec.include_subscription_name_header` when the attempt started.
    pub include_subscription_name_header: bool,
    /// When the shell must give up waiting: start + `push_request_timeout_ms` (0 means the
    /// configured default, 1000 ms, as the CRD comment says; Kyma 0.5 applied no timeout).
    pub deadline: Timestamp,
    /// The event.
    pub event: Arc<Event>,
}

impl Delivery {
    /// The body: the JSON encoding of the event's `data` alone. Empty when
    /// `event.body_stored`: the shell then reads the body from the store by [`Delivery::seq`].
    pub fn body(&self) -> &str {
        &self.event.data
    }

    /// The headers, in this order: `Content-Type: application/json`, `KYMA-Source-ID`,
    /// `KYMA-Event-Type`, `KYMA-Event-Type-Version`, `KYMA-Event-ID`, `KYMA-Event-Time`,
    /// then `Kyma-Subscription: <metadata.name>` if asked for, then the event's trace headers.
    /// Names and values borrow from the delivery.
    pub fn headers(&self) -> Vec<(&str, &str)> {
        let e = &*self.event;
        let mut headers = Vec::with_capacity(7 + e.trace_headers.len());
        headers.extend([
            ("Content-Type", "application/json"),
            ("KYMA-Source-ID", e.source_id.as_str()),
            ("KYMA-Event-Type", e.event_type.as_str()),
            ("KYMA-Event-Type-Version", e.event_type_version.as_str()),
            ("KYMA-Event-ID", e.event_id.as_str()),
            ("KYMA-Event-Time", e.event_time.as_str()),
        ]);
        if self.include_subscription_name_header {
            headers.push((SUBSCRIPTION_NAME_HEADER, self.subscription.name.as_str()));
        }
        headers.extend(
            e.trace_headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
        headers
    }
}

/// How a delivery ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryResult {
    /// The subscriber answered with this status; 2xx acknowledges.
    Status(u16),
    /// No answer before the deadline.
    Timeout,
    /// The connection failed (refused, reset, TLS error, ...).
    ConnectionError,
}

/// The outcome of a [`Delivery`], fed back with [`super::EventBus::handle_delivery_outcome`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The attempt.
    pub delivery: DeliveryId,
    /// How it ended.
    pub result: DeliveryResult,
}

impl DeliveryOutcome {
    /// Whether it acknowledges the event (a 2xx answer).
    pub fn acknowledges(&self) -> bool {
        matches!(self.result, DeliveryResult::Status(s) if (200..300).contains(&s))
    }
}

/// When a failed delivery is tried again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum RetryPolicy {
    /// Kyma 0.5: NATS Streaming redelivers `ack_wait` after the attempt started (30 s),
    /// forever until the retention.
    Kyma {
        /// The fixed wait, from the start of the failed attempt.
        #[serde(with = "millis", rename = "ack_wait_ms")]
        ack_wait: Duration,
    },
    /// ACE's default: exponential backoff with jitter. After the n-th failure the wait is
    /// `min(initial × 2^(n−1), max)`, of which the upper half is random ("equal jitter"),
    /// drawn from the model's seeded generator.
    Backoff {
        /// The wait after the first failure.
        #[serde(with = "millis", rename = "initial_ms")]
        initial: Duration,
        /// The longest wait.
        #[serde(with = "millis", rename = "max_ms")]
        max: Duration,
    },
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// When to try again after failure number `failures` (1 for the first) of an attempt
    /// started at `started`, the failure being known at `now`.
    pub fn retry_at(
        &self,
        rng: &mut SeededRng,
        started: Timestamp,
        now: Timestamp,
        failures: u32,
    ) -> Timestamp {
        match self {
            RetryPolicy::Kyma { ack_wait } => started.saturating_add(*ack_wait).max(now),
            RetryPolicy::Backoff { initial, max } => {
                let initial_ms = u64::try_from(initial.as_millis()).unwrap_or(u64::MAX);
                let max_ms = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
                let shift = failures.saturating_sub(1).min(63);
                let wait = initial_ms.saturating_mul(1u64 << shift).min(max_ms);
                let half = wait / 2;
                let jittered = wait - half + rng.below(half + 1);
                now.saturating_add(Duration::from_millis(jittered))
            }
        }
    }
}

/// `Duration` as whole milliseconds.
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Seed;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let policy = RetryPolicy::default();
        let mut rng = SeededRng::new(Seed::from(1));
        let t0 = Timestamp::from_unix_millis(1_000_000);
        for (failures, lo, hi) in [
            (1, 500, 1000),
            (2, 1000, 2000),
            (3, 2000, 4000),
            (10, 30_000, 60_000),
            (40, 30_000, 60_000),
        ] {
            for _ in 0..50 {
                let at = policy.retry_at(&mut rng, t0, t0, failures);
                let wait = at.as_unix_millis() - t0.as_unix_millis();
                assert!(
                    (lo..=hi).contains(&wait),
                    "failures {failures}: wait {wait}"
                );
            }
        }
    }

    #[test]
    fn kyma_policy_redelivers_a_fixed_ack_wait_after_the_start() {
        let policy = RetryPolicy::Kyma {
            ack_wait: Duration::from_secs(30),
        };
        let mut rng = SeededRng::new(Seed::from(1));
        let start = Timestamp::from_unix_millis(10_000);
        let failed = Timestamp::from_unix_millis(11_000);
        assert_eq!(
            policy.retry_at(&mut rng, start, failed, 3),
            Timestamp::from_unix_millis(40_000)
        );
        let late = Timestamp::from_unix_millis(50_000);
        assert_eq!(policy.retry_at(&mut rng, start, late, 1), late);
    }
}
