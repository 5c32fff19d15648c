//! The checks at the end of a run, and its report.

use std::collections::BTreeSet;

pub use crate::faults::Faults;

use super::*;

/// The checks at the end of a run, and its report.
pub(super) fn check(seed: u64, faults: Faults, shared: &Shared) -> Report {
    let accepted = shared
        .accepted
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    let received = shared
        .received
        .lock()
        .map(|r| r.clone())
        .unwrap_or_default();
    let mut violations = Vec::new();
    for (sub, id) in shared.owed() {
        if !received.contains_key(&(sub.clone(), id.clone())) {
            violations.push(format!(
                "at-least-once: event {id} was answered 200 but never reached subscription {sub}"
            ));
        }
    }
    let stray = shared.stray.lock().map(|s| s.clone()).unwrap_or_default();
    if !stray.is_empty() {
        violations.push(format!(
            "activation: {} pushes went to {:?}, whose namespace has no EventActivation for their source",
            stray.len(),
            stray.iter().collect::<BTreeSet<_>>()
        ));
    }
    violations.extend(
        shared
            .violations
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default(),
    );
    let in_flight = shared
        .in_flight
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    for sub in &SUBSCRIPTIONS {
        let max = in_flight.get(sub.name).map_or(0, |(_, max)| *max);
        if max > sub.max_inflight {
            violations.push(format!(
                "max_inflight: subscription {} had {max} pushes at its subscriber at once, its limit is {}",
                sub.name, sub.max_inflight
            ));
        }
    }
    let mut rare = shared.rare.lock().map(|r| r.clone()).unwrap_or_default();
    let duplicates: usize = received.values().map(|(n, _)| n.saturating_sub(1)).sum();
    if duplicates > 0 {
        rare.insert("duplicate-delivery", duplicates);
    }
    let after_crash = received
        .iter()
        .filter(|((_, id), (_, first))| {
            accepted.get(id).is_some_and(|a| {
                faults
                    .crashes
                    .iter()
                    .any(|crash| a.at < *crash && *crash < *first)
            })
        })
        .count();
    if after_crash > 0 {
        rare.insert("delivered-after-crash", after_crash);
    }
    let entries = shared.entries.lock().map(|t| t.clone()).unwrap_or_default();
    Report {
        seed,
        replicas: shared.replicas.len().max(1),
        faults,
        entries,
        accepted: accepted.len(),
        duplicates,
        violations,
        exchanges: EXCHANGES.with(std::cell::Cell::get),
        rare,
    }
}
