//! Delivery: starting pushes (in order, up to `max_inflight`), their outcomes, retries with
//! backoff, a subscription backing off as a whole while its endpoint cannot be reached,
//! retention and dead letters, the limits on a backlog, the window's reads from the store,
//! the hold after a restart.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::bugs::bug_on;
use crate::effects::Effects;
use crate::record::Record;
use crate::time::Timestamp;

use super::state::*;
use super::*;

/// How an attempt ended, as far as the bus is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ending {
    /// A 2xx: the event is delivered.
    Acknowledged,
    /// Another status: the endpoint is there, the event is retried.
    Answered,
    /// No answer before the deadline.
    TimedOut,
    /// No connection.
    Unreachable,
}

impl EventBus {
    /// Handles timers due at `fx.now`: delivery deadlines (counted as timeouts), retries,
    /// probes of subscriptions backing off, retention (dead letters); then starts what can
    /// start.
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
        while let Some(&(at, id)) = self.probes.first()
            && at <= now
        {
            self.probes.pop_first();
            if let Some(sub) = self.subscriptions.get_mut(&id) {
                mark_dirty(&mut self.dirty, id, sub);
            }
        }
        while let Some(&(deadline, id)) = self.deadlines.first()
            && deadline <= now
        {
            self.deadlines.pop_first();
            self.finish(fx, id, Ending::TimedOut);
        }
        while let Some(&(at, id, seq)) = self.retries.first()
            && at <= now
        {
            self.retries.pop_first();
            if let Some(sub) = self.subscriptions.get_mut(&id)
                && let Some(owed) = sub.window.get_mut(&seq)
                && owed.stage == Stage::Waiting(at)
            {
                owed.stage = Stage::Ready;
                sub.ready.insert(seq);
                mark_dirty(&mut self.dirty, id, sub);
            }
        }
        if self.next_expiry().is_some_and(|at| at <= now) {
            for (id, seqs) in self.expired(now) {
                self.commit_dead_letters(fx, id, seqs, DeadLetterReason::Retention);
            }
            if self.arrivals.keys().next().is_some_and(|&at| at <= now) {
                self.commit(fx, BusRecord::RetentionPassed { now });
            }
        }
        self.pump(now);
    }

    /// When owed events next expire: the arrival index's first time, or a group of replayed
    /// dead letters'.
    fn next_expiry(&self) -> Option<Timestamp> {
        let mut owed = false;
        let mut next = None;
        for s in self.subscriptions.values() {
            owed |= !s.owed.is_empty();
            if let Some((at, _)) = s.replayed.first() {
                next = next.min(Some(*at)).or(Some(*at));
            }
        }
        let arrivals = self.arrivals.keys().next().copied().filter(|_| owed);
        arrivals.into_iter().chain(next).min()
    }

    /// Handles the outcome of a delivery. An outcome of an attempt that already timed out,
    /// or that the bus does not know, is ignored.
    pub fn handle_delivery_outcome(&mut self, fx: &mut Effects<'_>, outcome: DeliveryOutcome) {
        let ending = match outcome.result {
            _ if outcome.acknowledges() => Ending::Acknowledged,
            DeliveryResult::Status(500..=599) if bug_on!(self.bugs, NoRetryOn5xx) => {
                Ending::Acknowledged
            }
            DeliveryResult::Status(_) => Ending::Answered,
            DeliveryResult::Timeout => Ending::TimedOut,
            DeliveryResult::ConnectionError => Ending::Unreachable,
        };
        self.finish(fx, outcome.delivery, ending);
        self.pump(fx.now);
    }

    /// Ends attempt `id`: acknowledged, or to be retried.
    pub(super) fn finish(&mut self, fx: &mut Effects<'_>, id: DeliveryId, ending: Ending) {
        let Some(f) = self.in_flight.remove(&id) else {
            return;
        };
        self.deadlines.remove(&(f.deadline, id));
        let Some(sub) = self.subscriptions.get_mut(&f.sub) else {
            return;
        };
        sub.in_flight -= 1;
        mark_dirty(&mut self.dirty, f.sub, sub);
        self.note_reachability(fx, f, id, ending);
        let acknowledged = ending == Ending::Acknowledged;
        let sub = sub_of(&mut self.subscriptions, f.sub);
        if !sub.window.contains_key(&f.seq) {
            // Dead-lettered since the attempt started: its outcome counts only if the event
            // was replayed meanwhile (and is not loaded yet).
            sub.settled_in_flight.remove(&f.seq);
            if acknowledged && sub.owed.contains(f.seq) {
                self.acknowledged(fx, f.sub, f.seq);
            }
            return;
        }
        if acknowledged {
            self.acknowledged(fx, f.sub, f.seq);
            return;
        }
        let backing_off = sub.backoff.is_some();
        let Some(owed) = sub.window.get_mut(&f.seq) else {
            return;
        };
        if owed.stage != Stage::InFlight(id) {
            return;
        }
        sub.retried += 1;
        if backing_off {
            // The subscription's probes decide when it is tried again.
            owed.stage = Stage::Ready;
            sub.ready.insert(f.seq);
        } else {
            // An event owed again since this attempt started (a replayed dead letter) has no
            // attempts yet: this failure is its first.
            let failures = owed.attempts.max(1);
            let at = self
                .config
                .retry
                .retry_at(fx.rng, f.started, fx.now, failures);
            owed.stage = Stage::Waiting(at);
            self.retries.insert((at, f.sub, f.seq));
        }
    }

    /// Subscription `f.sub` has event `f.seq`: committed with the id at hand (see `apply`).
    ///
    /// The acknowledgement joins a queued acknowledgement of the same subscription if there
    /// is one ([`join_acknowledgement`]): the acknowledgements one turn of the shell takes
    /// are stored as one record per subscription rather than one per delivery.
    fn acknowledged(&mut self, fx: &mut Effects<'_>, sub: SubId, seq: u64) {
        let released = !self.held_elsewhere(sub, seq);
        let key = Arc::clone(&self.subscriptions[&sub].key);
        self.acknowledge(sub, seq);
        if !join_acknowledgement(fx.records, seq, &key, released) {
            fx.push_record(Record::Bus(BusRecord::DeliveryAcknowledged {
                seq,
                subscription: key,
                released,
            }));
        }
    }

    /// What attempt `id` says about its endpoint: an answer ends a backoff; the
    /// [`BACKOFF_AFTER`]-th failure in a row to reach it starts one, and a failed probe
    /// pushes the next one further out.
    fn note_reachability(
        &mut self,
        fx: &mut Effects<'_>,
        f: InFlight,
        id: DeliveryId,
        ending: Ending,
    ) {
        let Some(sub) = self.subscriptions.get_mut(&f.sub) else {
            return;
        };
        let reason = match ending {
            Ending::Acknowledged | Ending::Answered => {
                sub.unreachable = 0;
                if let Some(b) = sub.backoff.take() {
                    self.probes.remove(&(b.probe_at, f.sub));
                }
                return;
            }
            Ending::TimedOut => BackoffReason::Timeout,
            Ending::Unreachable => BackoffReason::ConnectionFailed,
        };
        sub.unreachable = sub.unreachable.saturating_add(1);
        let failures = match &sub.backoff {
            Some(b) if b.probe == Some(id) => b.failures + 1,
            Some(_) => return,
            None if sub.unreachable >= BACKOFF_AFTER => 1,
            None => return,
        };
        let since = sub.backoff.map_or(fx.now, |b| b.since);
        let probe_at = self
            .config
            .retry
            .retry_at(fx.rng, f.started, fx.now, failures);
        sub_of(&mut self.subscriptions, f.sub).backoff = Some(Backoff {
            since,
            reason,
            failures,
            probe_at,
            probe: None,
        });
        self.probes.insert((probe_at, f.sub));
    }

    /// Starts every delivery that can start: owed events of activated subscriptions, in
    /// order, up to `max_inflight` each (one probe at a time while a subscription backs off);
    /// and asks for the next owed events of windows running low.
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
        for &id in &dirty {
            if let Some(sub) = self.subscriptions.get_mut(&id) {
                sub.dirty = false;
                self.start_deliveries(id, now);
                self.read_backlog(id);
            }
        }
        dirty.clear();
        // Pumping never marks a subscription dirty again.
        debug_assert!(self.dirty.is_empty());
        self.dirty = dirty;
    }

    /// Starts what subscription `id` can start now.
    fn start_deliveries(&mut self, id: SubId, now: Timestamp) {
        let deliver_inactive = bug_on!(self.bugs, DeliverInactive);
        let max_inflight_ignored = bug_on!(self.bugs, MaxInflightIgnored);
        let Some(sub) = self.subscriptions.get_mut(&id) else {
            return;
        };
        if !(sub.condition.activated || deliver_inactive)
            || sub.held_until.is_some_and(|until| now < until)
        {
            return;
        }
        let mut max = if max_inflight_ignored {
            usize::MAX
        } else {
            sub.max_inflight()
        };
        if let Some(b) = &sub.backoff {
            if b.probe.is_some() || now < b.probe_at {
                return;
            }
            max = max.min(sub.in_flight + 1);
        }
        let deadline = now.saturating_add(sub.timeout(&self.config));
        while sub.in_flight < max
            && let Some(seq) = sub.ready.pop_first()
        {
            let delivery = DeliveryId(self.next_delivery_id);
            self.next_delivery_id += 1;
            let owed = sub
                .window
                .get_mut(&seq)
                .unwrap_or_else(|| panic!("ready event {seq} is not loaded"));
            owed.attempts += 1;
            owed.stage = Stage::InFlight(delivery);
            let attempt = owed.attempts;
            sub.in_flight += 1;
            if let Some(b) = &mut sub.backoff {
                b.probe = Some(delivery);
                self.probes.remove(&(b.probe_at, id));
            }
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

    /// Asks for the next owed events of subscription `id` when its window runs low: half
    /// empty, or with nothing left to start.
    fn read_backlog(&mut self, id: SubId) {
        let forgets = bug_on!(self.bugs, BacklogWindowForgets);
        let Some(sub) = self.subscriptions.get_mut(&id) else {
            return;
        };
        let capacity = sub.window_capacity(&self.config);
        let loaded = sub.window.len();
        // One read at a time: the next is asked for once this one's page is in.
        if sub.reading.is_some()
            || sub.fully_loaded()
            || loaded >= capacity
            || (loaded > capacity / 2 && !sub.ready.is_empty())
        {
            return;
        }
        let room = (capacity - loaded) as u64;
        let earlier = sub.behind.first(room);
        sub.behind.remove_all(&earlier);
        let mut seqs: Vec<u64> = earlier.iter().collect();
        let later: Vec<u64> = sub
            .owed
            .range(sub.frontier..)
            .take(usize::try_from(room).unwrap_or(usize::MAX) - seqs.len())
            .collect();
        if let Some(&last) = later.last() {
            sub.frontier = last + 1;
            seqs.extend(later);
            if forgets && let Some(next) = sub.owed.range(sub.frontier..).next() {
                // The bug: the window moves one event too far; the next owed event is
                // neither loaded nor ever read.
                sub.frontier = next + 1;
            }
        }
        if seqs.is_empty() {
            return;
        }
        let read = ReadId(self.next_read_id);
        self.next_read_id += 1;
        sub.reading = Some((read, seqs.clone()));
        self.reads.push_back(BacklogRead {
            id: read,
            subscription: Arc::clone(&sub.key),
            seqs,
        });
    }

    /// The next read of owed events the bus needs from the store. Answer it with
    /// [`EventBus::handle_backlog`] once the records queued so far are durable.
    pub fn poll_backlog_read(&mut self) -> Option<BacklogRead> {
        self.reads.pop_front()
    }

    /// Takes in the events a [`BacklogRead`] asked for. An event the page lacks stays owed
    /// and is asked for again (the shell answers with every event its store has, and a store
    /// that lost an owed event is damaged: the shell stops).
    pub fn handle_backlog(&mut self, fx: &mut Effects<'_>, page: BacklogPage) {
        let Some((&id, _)) = self
            .subscriptions
            .iter()
            .find(|(_, s)| s.reading.as_ref().is_some_and(|(r, _)| *r == page.id))
        else {
            // The subscription was deleted meanwhile.
            return;
        };
        let sub = sub_of(&mut self.subscriptions, id);
        let Some((_, asked)) = sub.reading.take() else {
            return;
        };
        let mut found: BTreeMap<u64, Arc<Event>> =
            page.events.into_iter().map(|e| (e.seq, e.event)).collect();
        for seq in asked {
            let sub = &self.subscriptions[&id];
            if !sub.owed.contains(seq) || sub.window.contains_key(&seq) {
                continue;
            }
            match found.remove(&seq) {
                Some(event) => self.load(id, seq, &event),
                None => {
                    sub_of(&mut self.subscriptions, id).behind.insert(seq);
                }
            }
        }
        if let Some(sub) = self.subscriptions.get_mut(&id) {
            mark_dirty(&mut self.dirty, id, sub);
        }
        self.pump(fx.now);
    }

    /// Keeps the backlog of subscription `id` within the limit: over it, its oldest owed
    /// events are dead-lettered, down to 1/1024 of the limit below it (so that a subscription
    /// at its limit writes one such record per 1/1024 of the limit, not one per event).
    pub(super) fn limit_backlog(&mut self, fx: &mut Effects<'_>, id: SubId) {
        let owed = &self.subscriptions[&id].owed;
        let Some(seqs) = beyond(owed, self.config.max_backlog_events) else {
            return;
        };
        self.commit_dead_letters(fx, id, seqs, DeadLetterReason::BacklogLimit);
    }

    /// Dead-letters `seqs` of subscription `id` for `reason`, then keeps its dead letters
    /// within their limit.
    fn commit_dead_letters(
        &mut self,
        fx: &mut Effects<'_>,
        id: SubId,
        seqs: SeqSet,
        reason: DeadLetterReason,
    ) {
        let subscription = Arc::clone(&self.subscriptions[&id].key);
        self.commit(
            fx,
            BusRecord::EventsDeadLettered {
                subscription,
                seqs,
                reason,
            },
        );
        self.limit_dead_letters(fx, id);
    }

    /// Keeps the dead letters of subscription `id` within the limit: over it, the oldest are
    /// discarded, counted, down to 1/1024 of the limit below it.
    pub(super) fn limit_dead_letters(&mut self, fx: &mut Effects<'_>, id: SubId) {
        let dead = &self.subscriptions[&id].dead;
        let Some(seqs) = beyond(dead, self.config.max_dead_letters) else {
            return;
        };
        let released = self.released(id, &seqs);
        let subscription = Arc::clone(&self.subscriptions[&id].key);
        self.commit(
            fx,
            BusRecord::DeadLettersDiscarded {
                subscription,
                seqs,
                released,
            },
        );
    }

    /// The next deadline, if any: the earliest delivery deadline, retry, probe, retention
    /// expiry or end of a hold. [`Timestamp::EPOCH`] means "at once": deliveries are
    /// startable (after a replay) and [`EventBus::handle_timeout`] starts them.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        if !self.dirty.is_empty() {
            return Some(Timestamp::EPOCH);
        }
        [
            self.deadlines.first().map(|d| d.0),
            self.retries.first().map(|r| r.0),
            self.probes.first().map(|p| p.0),
            self.next_expiry(),
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

    /// Whether the store is over its space budget: while it is, publishes are refused with
    /// 507 rather than accepted and lost.
    pub fn handle_storage(&mut self, full: bool) {
        self.storage_full = full;
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

    /// Owed events and dead letters dropped because their subscription was deleted.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Accepted events in memory (loaded into some subscription's window).
    pub fn loaded_events(&self) -> usize {
        self.events.len()
    }

    /// The configuration.
    pub fn config(&self) -> &BusConfig {
        &self.config
    }
}

/// The oldest of `set` to let go when it holds more than `limit`: down to 1/1024 of the limit
/// below it, so that a set kept at its limit is trimmed once per 1/1024 of the limit rather
/// than once per event.
fn beyond(set: &SeqSet, limit: u64) -> Option<SeqSet> {
    (set.len() > limit).then(|| set.first(set.len() - limit + limit / 1024))
}

/// Queued records looked back over for an acknowledgement of the same subscription.
const ACK_LOOKBACK: usize = 32;

/// Adds the acknowledgement of `seq` by `subscription` to one of the same subscription among
/// the last [`ACK_LOOKBACK`] queued `records`, with only acknowledgements after it, which
/// becomes a [`BusRecord::DeliveriesAcknowledged`]; returns whether there was one to join.
/// Moving an acknowledgement before other subscriptions' acknowledgements changes nothing a
/// replay rebuilds: each only settles its own subscription's event.
fn join_acknowledgement(
    records: &mut VecDeque<Record>,
    seq: u64,
    subscription: &Arc<ResourceKey>,
    released: bool,
) -> bool {
    let same = |other: &Arc<ResourceKey>| Arc::ptr_eq(other, subscription) || other == subscription;
    for queued in records.iter_mut().rev().take(ACK_LOOKBACK) {
        let Record::Bus(bus) = queued else {
            return false;
        };
        match bus {
            BusRecord::DeliveryAcknowledged {
                seq: first,
                subscription: key,
                released: first_released,
            } if same(key) => {
                let mut gone = SeqSet::new();
                if *first_released {
                    gone.insert(*first);
                }
                if released {
                    gone.insert(seq);
                }
                *bus = BusRecord::DeliveriesAcknowledged {
                    subscription: Arc::clone(key),
                    seqs: SeqSet::from_iter([*first, seq]),
                    released: gone,
                };
                return true;
            }
            BusRecord::DeliveriesAcknowledged {
                subscription: key,
                seqs,
                released: gone,
            } if same(key) => {
                seqs.insert(seq);
                if released {
                    gone.insert(seq);
                }
                return true;
            }
            BusRecord::DeliveryAcknowledged { .. } | BusRecord::DeliveriesAcknowledged { .. } => {}
            _ => return false,
        }
    }
    false
}
