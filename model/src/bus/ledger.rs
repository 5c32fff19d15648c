//! The delivery ledger: a checker of the Event Bus's delivery guarantees from plain
//! observations, independent of how the bus works inside.
//!
//! Whoever watches a bus feeds it: the model's own tests, the simulator, or a conformance
//! run that sees only HTTP (publish answers, requests at a subscriber endpoint, their
//! answers). Inputs are ids and names only:
//!
//! - [`DeliveryLedger::accepted`]: an event was accepted, and which subscriptions were due
//!   it (the matching, activated ones at that moment, computed by the observer);
//! - [`DeliveryLedger::set_max_inflight`] and [`DeliveryLedger::set_active`]: what each
//!   subscription allows;
//! - [`DeliveryLedger::started`] / [`DeliveryLedger::finished`]: a delivery went out / ended,
//!   acknowledged (2xx) or not;
//! - [`DeliveryLedger::dead_lettered`] and [`DeliveryLedger::withdrawn`]: an event given up
//!   after the retention, a subscription deleted (nothing owed to it any more).
//!
//! It reports safety violations as they happen ([`DeliveryLedger::violations`]: a delivery
//! to a subscription not due the event or not activated, `max_inflight` exceeded) and
//! liveness at the end ([`DeliveryLedger::check_complete`]: every due pair acknowledged, or
//! dead-lettered when allowed). Duplicates (a pair acknowledged more than once) are allowed
//! by at-least-once and counted.
//!
//! Events are identified by their `event-id` (the `KYMA-Event-ID` header a subscriber sees);
//! an observer that lets clients reuse ids must make them unique itself.

use std::collections::{BTreeMap, BTreeSet};

use super::subscription::ResourceKey;

/// What the ledger knows of one (event, subscription) pair that is due.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Due {
    attempts: u32,
    acknowledgements: u32,
    dead_lettered: bool,
}

/// A delivery the ledger saw start and not yet finish.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Open {
    event_id: String,
    subscription: ResourceKey,
}

/// A broken safety guarantee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// A delivery went to a subscription that was not due the event.
    NotDue {
        /// The event.
        event_id: String,
        /// The subscription.
        subscription: ResourceKey,
    },
    /// A delivery went to a subscription that was not activated.
    NotActivated {
        /// The event.
        event_id: String,
        /// The subscription.
        subscription: ResourceKey,
    },
    /// A delivery started while `max_inflight` were already in flight.
    MaxInflightExceeded {
        /// The subscription.
        subscription: ResourceKey,
        /// In flight, counting the new one.
        in_flight: usize,
        /// The limit.
        max_inflight: usize,
    },
    /// A delivery id was started twice without finishing, or finished without starting.
    UnknownDelivery {
        /// The delivery id.
        delivery: u64,
    },
}

/// What [`DeliveryLedger::check_complete`] found missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incomplete {
    /// Due pairs neither acknowledged nor (when allowed) dead-lettered.
    pub missing: Vec<(String, ResourceKey)>,
}

/// The checker. See the module documentation.
#[derive(Clone, Debug, Default)]
pub struct DeliveryLedger {
    due: BTreeMap<(String, ResourceKey), Due>,
    open: BTreeMap<u64, Open>,
    in_flight: BTreeMap<ResourceKey, usize>,
    max_inflight: BTreeMap<ResourceKey, usize>,
    inactive: BTreeSet<ResourceKey>,
    violations: Vec<Violation>,
    duplicates: u64,
    withdrawn: u64,
}

impl DeliveryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        DeliveryLedger::default()
    }

    /// `subscription` allows at most `max_inflight` deliveries at once (from now on).
    pub fn set_max_inflight(&mut self, subscription: &ResourceKey, max_inflight: usize) {
        self.max_inflight.insert(subscription.clone(), max_inflight);
    }

    /// `subscription` is activated or not (from now on).
    pub fn set_active(&mut self, subscription: &ResourceKey, active: bool) {
        if active {
            self.inactive.remove(subscription);
        } else {
            self.inactive.insert(subscription.clone());
        }
    }

    /// An event was accepted; `due` are the subscriptions that must get it.
    pub fn accepted<'a>(&mut self, event_id: &str, due: impl IntoIterator<Item = &'a ResourceKey>) {
        for subscription in due {
            self.due
                .entry((event_id.to_owned(), subscription.clone()))
                .or_default();
        }
    }

    /// A delivery of `event_id` to `subscription` started; `delivery` identifies it until
    /// [`DeliveryLedger::finished`].
    pub fn started(&mut self, delivery: u64, event_id: &str, subscription: &ResourceKey) {
        match self
            .due
            .get_mut(&(event_id.to_owned(), subscription.clone()))
        {
            Some(due) => due.attempts += 1,
            None => self.violations.push(Violation::NotDue {
                event_id: event_id.to_owned(),
                subscription: subscription.clone(),
            }),
        }
        if self.inactive.contains(subscription) {
            self.violations.push(Violation::NotActivated {
                event_id: event_id.to_owned(),
                subscription: subscription.clone(),
            });
        }
        let in_flight = self.in_flight.entry(subscription.clone()).or_default();
        *in_flight += 1;
        if let Some(&max) = self.max_inflight.get(subscription)
            && *in_flight > max
        {
            self.violations.push(Violation::MaxInflightExceeded {
                subscription: subscription.clone(),
                in_flight: *in_flight,
                max_inflight: max,
            });
        }
        let open = Open {
            event_id: event_id.to_owned(),
            subscription: subscription.clone(),
        };
        if self.open.insert(delivery, open).is_some() {
            self.violations
                .push(Violation::UnknownDelivery { delivery });
        }
    }

    /// A delivery ended: `acknowledged` when the subscriber answered 2xx (and the bus took
    /// it as an acknowledgement); otherwise it failed, timed out or was abandoned.
    pub fn finished(&mut self, delivery: u64, acknowledged: bool) {
        let Some(open) = self.open.remove(&delivery) else {
            self.violations
                .push(Violation::UnknownDelivery { delivery });
            return;
        };
        if let Some(n) = self.in_flight.get_mut(&open.subscription) {
            *n = n.saturating_sub(1);
        }
        if acknowledged && let Some(due) = self.due.get_mut(&(open.event_id, open.subscription)) {
            due.acknowledgements += 1;
            if due.acknowledgements > 1 {
                self.duplicates += 1;
            }
        }
    }

    /// The bus gave up `event_id` for `subscription` after its retention.
    pub fn dead_lettered(&mut self, event_id: &str, subscription: &ResourceKey) {
        if let Some(due) = self
            .due
            .get_mut(&(event_id.to_owned(), subscription.clone()))
        {
            due.dead_lettered = true;
        }
    }

    /// A dead-lettered event was queued again: it is owed once more.
    pub fn replayed(&mut self, event_id: &str, subscription: &ResourceKey) {
        if let Some(due) = self
            .due
            .get_mut(&(event_id.to_owned(), subscription.clone()))
        {
            due.dead_lettered = false;
        }
    }

    /// `subscription` was deleted: nothing accepted so far is owed to it any more.
    pub fn withdrawn(&mut self, subscription: &ResourceKey) {
        let before = self.due.len();
        self.due.retain(|(_, s), _| s != subscription);
        self.withdrawn += (before - self.due.len()) as u64;
    }

    /// Safety violations seen so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Acknowledgements beyond the first of a pair: allowed, counted.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Due pairs dropped because their subscription was deleted.
    pub fn withdrawn_count(&self) -> u64 {
        self.withdrawn
    }

    /// Due pairs, in all.
    pub fn due_count(&self) -> usize {
        self.due.len()
    }

    /// Deliveries started and not finished, for `subscription`.
    pub fn in_flight(&self, subscription: &ResourceKey) -> usize {
        self.in_flight.get(subscription).copied().unwrap_or(0)
    }

    /// At-least-once: every due pair of a subscription that `owed` accepts was acknowledged,
    /// or dead-lettered if `allow_dead_letters`.
    pub fn check_complete(
        &self,
        allow_dead_letters: bool,
        owed: impl Fn(&ResourceKey) -> bool,
    ) -> Result<(), Incomplete> {
        let missing: Vec<_> = self
            .due
            .iter()
            .filter(|((_, s), due)| {
                owed(s) && due.acknowledgements == 0 && !(allow_dead_letters && due.dead_lettered)
            })
            .map(|(k, _)| k.clone())
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(Incomplete { missing })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(name: &str) -> ResourceKey {
        ResourceKey::new("ns", name)
    }

    #[test]
    fn acknowledged_due_pairs_complete_and_duplicates_are_counted() {
        let mut l = DeliveryLedger::new();
        l.accepted("e1", [&sub("a"), &sub("b")]);
        l.started(1, "e1", &sub("a"));
        l.started(2, "e1", &sub("b"));
        l.finished(1, true);
        assert!(l.check_complete(false, |_| true).is_err());
        l.finished(2, true);
        l.started(3, "e1", &sub("a"));
        l.finished(3, true);
        assert_eq!(l.check_complete(false, |_| true), Ok(()));
        assert_eq!(l.duplicates(), 1);
        assert!(l.violations().is_empty());
    }

    #[test]
    fn delivery_to_a_subscription_not_due_is_a_violation() {
        let mut l = DeliveryLedger::new();
        l.accepted("e1", [&sub("a")]);
        l.started(1, "e1", &sub("b"));
        assert!(matches!(l.violations(), [Violation::NotDue { .. }]));
    }

    #[test]
    fn delivery_to_an_inactive_subscription_is_a_violation() {
        let mut l = DeliveryLedger::new();
        l.accepted("e1", [&sub("a")]);
        l.set_active(&sub("a"), false);
        l.started(1, "e1", &sub("a"));
        assert!(matches!(l.violations(), [Violation::NotActivated { .. }]));
    }

    #[test]
    fn exceeding_max_inflight_is_a_violation() {
        let mut l = DeliveryLedger::new();
        l.set_max_inflight(&sub("a"), 1);
        l.accepted("e1", [&sub("a")]);
        l.accepted("e2", [&sub("a")]);
        l.started(1, "e1", &sub("a"));
        l.finished(1, false);
        l.started(2, "e1", &sub("a"));
        assert!(l.violations().is_empty());
        l.started(3, "e2", &sub("a"));
        assert!(matches!(
            l.violations(),
            [Violation::MaxInflightExceeded {
                in_flight: 2,
                max_inflight: 1,
                ..
            }]
        ));
    }

    #[test]
    fn dead_letters_count_only_when_allowed_and_withdrawn_pairs_are_not_owed() {
        let mut l = DeliveryLedger::new();
        l.accepted("e1", [&sub("a"), &sub("b")]);
        l.dead_lettered("e1", &sub("a"));
        l.withdrawn(&sub("b"));
        assert_eq!(l.check_complete(true, |_| true), Ok(()));
        assert!(l.check_complete(false, |_| true).is_err());
        assert_eq!(l.withdrawn_count(), 1);
    }
}
