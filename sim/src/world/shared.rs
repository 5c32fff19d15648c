//! What the world's hosts share: the timeline, the accepted events, what each subscriber
//! received, the rare paths taken and the violations found.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::timeline::{Entry, Kind};

use super::*;

/// An event answered 200.
#[derive(Clone, Debug)]
pub(super) struct Accepted {
    pub(super) re: &'static str,
    /// When its first publish was sent.
    pub(super) sent: Duration,
    /// When it was answered 200.
    pub(super) at: Duration,
}

/// An activation, by (namespace, source), gone from one time to another.
pub(super) type Gap = ((&'static str, &'static str), Duration, Duration);

#[derive(Default)]
pub(super) struct Shared {
    pub(super) entries: Mutex<Vec<Entry>>,
    pub(super) accepted: Mutex<BTreeMap<String, Accepted>>,
    /// 200s by (subscription, event id): how many, and when the first.
    pub(super) received: Mutex<BTreeMap<(String, String), (usize, Duration)>>,
    /// Pushes a subscriber failed, by (subscription, event id).
    pub(super) failed: Mutex<BTreeSet<(String, String)>>,
    /// Pushes each subscription has at its subscriber now, and the most ever.
    pub(super) in_flight: Mutex<BTreeMap<String, (usize, usize)>>,
    /// Requests each subscriber host has had.
    pub(super) requests: Mutex<BTreeMap<&'static str, usize>>,
    /// Pushes for subscriptions whose namespace has no activation.
    pub(super) stray: Mutex<Vec<String>>,
    /// OAuth tokens the token server issued, with when (simulated time).
    pub(super) oauth_tokens: Mutex<BTreeMap<String, Duration>>,
    pub(super) rare: Mutex<BTreeMap<&'static str, usize>>,
    /// Broken guarantees seen during the run (the rest are found at its end).
    pub(super) violations: Mutex<Vec<String>>,
    pub(super) operator_done: AtomicBool,
    /// When the operator's creation of each activation, by (namespace, source), and each
    /// subscription was acknowledged: an event is owed to a subscription only if it was first
    /// sent after both.
    pub(super) acknowledged: Mutex<BTreeMap<(&'static str, &'static str), Duration>>,
    /// Times an activation, by (namespace, source), was gone: from its deletion's first
    /// send to its re-creation's acknowledgement.
    pub(super) gaps: Mutex<Vec<Gap>>,
    /// The admin API's `Authorization` header (the seed decides the token).
    pub(super) admin_authorization: String,
    /// The network as the world's clients see it (`ace` is any replica).
    pub(super) net: crate::net::DeploymentNet,
    /// The replicas' hosts (none: the single `ace`).
    pub(super) replicas: Vec<&'static str>,
    /// When the replicated faults have healed (zero for a single node): the contract phase
    /// waits for it as for the single-node faults.
    pub(super) replicated_healed_by: Duration,
}

impl Shared {
    pub(super) fn push(&self, entry: Entry) {
        if let Ok(mut t) = self.entries.lock() {
            t.push(entry);
        }
    }

    pub(super) fn entry(&self, host: &str, peer: Option<&str>, what: String, kind: Kind) {
        self.push(Entry {
            at: turmoil::sim_elapsed().unwrap_or_default(),
            host: host.to_owned(),
            peer: peer.map(str::to_owned),
            what,
            kind,
        });
    }

    pub(super) fn note(&self, host: &str, what: String) {
        self.entry(host, None, what, Kind::Note);
    }

    pub(super) fn violation(&self, what: String) {
        self.entry("checker", None, what.clone(), Kind::Violation);
        if let Ok(mut v) = self.violations.lock() {
            v.push(what);
        }
    }

    pub(super) fn rare(&self, path: &'static str) {
        debug_assert!(
            RARE.iter()
                .chain(REPLICATED_RARE.iter())
                .any(|(name, _)| *name == path),
            "{path}"
        );
        if let Ok(mut r) = self.rare.lock() {
            *r.entry(path).or_default() += 1;
        }
    }

    pub(super) fn accept(&self, id: String, re: &'static str, sent: Duration) {
        let at = turmoil::sim_elapsed().unwrap_or_default();
        if let Ok(mut a) = self.accepted.lock() {
            a.entry(id).or_insert(Accepted { re, sent, at });
        }
    }

    /// The operator's creation of `key` was acknowledged now.
    pub(super) fn acknowledged(&self, key: (&'static str, &'static str)) {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        if let Ok(mut a) = self.acknowledged.lock() {
            a.entry(key).or_insert(now);
        }
    }

    /// The deliveries owed: (subscription, event id) for every accepted event and every
    /// activated subscription that takes its RE's events.
    pub(super) fn owed(&self) -> BTreeSet<(String, String)> {
        let accepted = self.accepted.lock().map(|a| a.clone()).unwrap_or_default();
        let acknowledged = self
            .acknowledged
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default();
        let mut owed = BTreeSet::new();
        for sub in SUBSCRIPTIONS.iter().filter(|s| s.activated) {
            let (Some(activated), Some(subscribed)) = (
                acknowledged.get(&(sub.namespace, sub.source)),
                acknowledged.get(&("subscription", sub.name)),
            ) else {
                continue;
            };
            let gaps = self.gaps.lock().map(|g| g.clone()).unwrap_or_default();
            for (id, a) in &accepted {
                // Published, from first send to answer, wholly while the subscription and
                // its activation existed.
                let in_gap = gaps.iter().any(|(key, from, to)| {
                    *key == (sub.namespace, sub.source) && a.sent < *to && a.at > *from
                });
                if a.re == sub.source && a.sent > *activated.max(subscribed) && !in_gap {
                    owed.insert((sub.name.to_owned(), id.clone()));
                }
            }
        }
        owed
    }

    /// Whether every delivery owed has been made.
    pub(super) fn all_received(&self) -> bool {
        let received = self.received.lock().map(|r| r.clone()).unwrap_or_default();
        self.owed().iter().all(|k| received.contains_key(k))
    }
}

thread_local! {
    /// HTTP exchanges of the world running on this thread: requests its clients sent and
    /// requests its subscriber and API hosts served (ACE's pushes and proxy calls).
    pub(super) static EXCHANGES: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

pub(super) fn count_exchange() {
    EXCHANGES.with(|n| n.set(n.get() + 1));
}
