//! Delivery: starting pushes (in order, up to `max_inflight`), their outcomes, retries with
//! backoff, retention and dead letters, the hold after a restart.

use std::sync::Arc;

use crate::bugs::bug_on;
use crate::effects::Effects;
use crate::record::Record;
use crate::time::Timestamp;

use super::state::*;
use super::*;

impl EventBus {
    /// Handles timers due at `fx.now`: delivery deadlines (counted as timeouts), retries,
    /// retention expiries (dead letters); then starts what can start.
    pub fn handle_timeout(&mut self, fx: &mut Effects<'_>) {
        let now = fx.now;
        while let Some(&(until, id)) = self.holds.first()
            && until <= now
        {
            self.holds.pop_first();
            if let Some(sub) = self.subscriptions.get_mut(&id) {
                sub.held_until = None;
                mark_dirty(&mut self.dirty, id, sub);
            }
        }
        while let Some(&(deadline, id)) = self.deadlines.first()
            && deadline <= now
        {
            self.deadlines.pop_first();
            self.finish(fx, id, false);
        }
        while let Some(&(at, id, seq)) = self.retries.first()
            && at <= now
        {
            self.retries.pop_first();
            if let Some(sub) = self.subscriptions.get_mut(&id)
                && let Some(owed) = sub.pending.get_mut(&seq)
                && owed.stage == Stage::Waiting(at)
            {
                owed.stage = Stage::Ready;
                sub.ready.insert(seq);
                mark_dirty(&mut self.dirty, id, sub);
            }
        }
        while let Some(&(expires, id, seq)) = self.expiries.first()
            && expires <= now
        {
            self.expiries.pop_first();
            let Some(sub) = self.subscriptions.get(&id) else {
                continue;
            };
            if sub.pending.get(&seq).map(|owed| owed.expires) != Some(expires) {
                continue;
            }
            let key = Arc::clone(&sub.key);
            self.commit(
                fx,
                BusRecord::DeadLettered {
                    seq,
                    subscription: key,
                },
            );
        }
        self.pump(now);
    }

    /// Handles the outcome of a delivery. An outcome of an attempt that already timed out,
    /// or that the bus does not know, is ignored.
    pub fn handle_delivery_outcome(&mut self, fx: &mut Effects<'_>, outcome: DeliveryOutcome) {
        let acknowledged = outcome.acknowledges()
            || (bug_on!(self.bugs, NoRetryOn5xx)
                && matches!(outcome.result, DeliveryResult::Status(500..=599)));
        self.finish(fx, outcome.delivery, acknowledged);
        self.pump(fx.now);
    }

    /// Ends attempt `id`: acknowledged, or to be retried.
    pub(super) fn finish(&mut self, fx: &mut Effects<'_>, id: DeliveryId, acknowledged: bool) {
        let Some(f) = self.in_flight.remove(&id) else {
            return;
        };
        self.deadlines.remove(&(f.deadline, id));
        let Some(sub) = self.subscriptions.get_mut(&f.sub) else {
            return;
        };
        sub.in_flight -= 1;
        mark_dirty(&mut self.dirty, f.sub, sub);
        let Some(owed) = sub.pending.get_mut(&f.seq) else {
            // Dead-lettered since the attempt started.
            sub.settled_in_flight.remove(&f.seq);
            return;
        };
        if acknowledged {
            // Committed with the id at hand (see `apply`).
            let key = Arc::clone(&sub.key);
            self.acknowledge(f.sub, f.seq);
            fx.push_record(Record::Bus(BusRecord::DeliveryAcknowledged {
                seq: f.seq,
                subscription: key,
            }));
        } else if owed.stage == Stage::InFlight(id) {
            // An event owed again since this attempt started (a replayed dead letter) has no
            // attempts yet: this failure is its first.
            let failures = owed.attempts.max(1);
            let at = self
                .config
                .retry
                .retry_at(fx.rng, f.started, fx.now, failures);
            owed.stage = Stage::Waiting(at);
            sub.retried += 1;
            self.retries.insert((at, f.sub, f.seq));
        }
    }

    /// Starts every delivery that can start: owed events of activated subscriptions, in
    /// order, up to `max_inflight` each.
    pub(super) fn pump(&mut self, now: Timestamp) {
        if self.restarted {
            self.restarted = false;
            for (&id, sub) in &mut self.subscriptions {
                let until = now.saturating_add(sub.timeout(&self.config));
                sub.held_until = Some(until);
                self.holds.insert((until, id));
            }
        }
        if self.dirty.is_empty() {
            return;
        }
        // Taken and given back, to keep its allocation.
        let mut dirty = std::mem::take(&mut self.dirty);
        dirty.sort_unstable();
        let deliver_inactive = bug_on!(self.bugs, DeliverInactive);
        let max_inflight_ignored = bug_on!(self.bugs, MaxInflightIgnored);
        for &id in &dirty {
            let Some(sub) = self.subscriptions.get_mut(&id) else {
                continue;
            };
            sub.dirty = false;
            if !(sub.condition.activated || deliver_inactive)
                || sub.held_until.is_some_and(|until| now < until)
            {
                continue;
            }
            let max = if max_inflight_ignored {
                usize::MAX
            } else {
                sub.max_inflight()
            };
            let deadline = now.saturating_add(sub.timeout(&self.config));
            while sub.in_flight < max
                && let Some(seq) = sub.ready.pop_first()
            {
                let delivery = DeliveryId(self.next_delivery_id);
                self.next_delivery_id += 1;
                let owed = sub
                    .pending
                    .get_mut(&seq)
                    .unwrap_or_else(|| panic!("ready event {seq} is not owed"));
                owed.attempts += 1;
                owed.stage = Stage::InFlight(delivery);
                let attempt = owed.attempts;
                sub.in_flight += 1;
                self.in_flight.insert(
                    delivery,
                    InFlight {
                        sub: id,
                        seq,
                        started: now,
                        deadline,
                    },
                );
                self.deadlines.insert((deadline, delivery));
                let event = &self.events[&seq].event;
                self.outbox.push_back(Delivery {
                    id: delivery,
                    seq,
                    subscription: Arc::clone(&sub.key),
                    attempt,
                    endpoint: Arc::clone(&sub.endpoint),
                    include_subscription_name_header: sub.spec.include_subscription_name_header,
                    deadline,
                    event: Arc::clone(event),
                });
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// The next deadline, if any: the earliest delivery deadline, retry or retention expiry.
    /// [`Timestamp::EPOCH`] means "at once": deliveries are startable (after a replay) and
    /// [`EventBus::handle_timeout`] starts them.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if !self.dirty.is_empty() {
            return Some(Timestamp::EPOCH);
        }
        [
            self.deadlines.first().map(|d| d.0),
            self.retries.first().map(|r| r.0),
            self.expiries.first().map(|e| e.0),
            self.holds.first().map(|h| h.0),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Called once after a restart ([`crate::Model::replay`]): the previous process may have
    /// left attempts running at subscribers, which this process cannot see. Each subscription
    /// existing now starts no delivery until its push timeout (the longest any such attempt
    /// was allowed) has passed since the first input after the restart, so `max_inflight` holds
    /// at the subscriber across a crash.
    pub fn hold_after_restart(&mut self) {
        self.restarted = true;
    }

    /// The next delivery to start, if any. It is in flight from now until its outcome or its
    /// deadline.
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.outbox.pop_front()
    }

    /// The delivery figures of a subscription.
    pub fn subscription_stats(&self, namespace: &str, name: &str) -> Option<DeliveryStats> {
        let id = self
            .subscription_ids
            .get(&ResourceKey::new(namespace, name))?;
        Some(self.subscriptions[id].stats())
    }

    /// The `events-activated` condition of a subscription.
    pub fn subscription_condition(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<ActivatedCondition> {
        let id = self
            .subscription_ids
            .get(&ResourceKey::new(namespace, name))?;
        Some(self.subscriptions[id].condition)
    }

    /// Owed events dropped because their subscription was deleted.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Accepted events still stored (owed to or dead-lettered for some subscription).
    pub fn stored_events(&self) -> usize {
        self.events.len()
    }

    /// The configuration.
    pub fn config(&self) -> &BusConfig {
        &self.config
    }
}
