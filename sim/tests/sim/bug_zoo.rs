//! The simulation's checkers have teeth: a pinned seed per bug passes clean, and fails with
//! that bug of the zoo switched on, for the guarantee the bug breaks.

#![cfg(feature = "bug-zoo")]

use ace_model::bugs::Bug;

/// A seed that catches `bug` (the first in a sweep of seeds 1..=50), and the start of the
/// violation it must cause.
fn caught_by(bug: Bug) -> (u64, &'static str) {
    match bug {
        Bug::TokenReusable => (1, "a used configuration URL works once"),
        Bug::TokenTtlIgnored => (1, "a CSR URL expires with its token"),
        Bug::CnNotChecked => (1, "a certificate for RE ec does not open RE other"),
        Bug::DeletedReAccepted => (1, "a certificate of a deleted RE does not open"),
        Bug::IdentifierNotUnique => (1, "a second service with the same identifier is refused"),
        Bug::SecretReturned => (1, "a service's OAuth credentials are masked"),
        // A crash while an acknowledged event is not yet on disk.
        Bug::AckBeforeDurable => (8, "at-least-once"),
        // A subscriber answering 5xx to its first requests.
        Bug::NoRetryOn5xx => (3, "at-least-once"),
        Bug::LossOnSubscriptionUpdate => (1, "at-least-once"),
        Bug::DeliverInactive => (1, "activation"),
        Bug::MaxInflightIgnored => (1, "max_inflight"),
        Bug::TokenCachedForever => (1, "proxy"),
        Bug::ProxyEgressOpen => (1, "the proxy never reaches ACE's own surfaces"),
        Bug::BacklogWindowForgets => (1, "at-least-once"),
    }
}

#[test]
fn a_pinned_seed_catches_every_bug_of_the_zoo() {
    let mut clean = std::collections::BTreeMap::new();
    for bug in Bug::ALL {
        let (seed, guarantee) = caught_by(bug);
        let passes = *clean.entry(seed).or_insert_with(|| {
            let report = ace_sim::world::run(seed).unwrap_or_else(|e| panic!("{e}"));
            report.violations.is_empty()
        });
        assert!(passes, "seed {seed} fails without a bug");
        let report = ace_sim::world::run_with(seed, bug.into()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            report.violations.iter().any(|v| v.starts_with(guarantee)),
            "{bug} at seed {seed}: expected a violation of {guarantee:?}, got {:?}",
            report.violations
        );
    }
}
