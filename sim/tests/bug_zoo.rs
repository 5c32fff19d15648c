//! The simulation's checkers have teeth: seed 2 (a failing subscriber and a crash) passes
//! clean, and fails with each bug of the zoo, for the guarantee that bug breaks.

#![cfg(feature = "bug-zoo")]

use ace_model::bugs::Bug;

/// The start of the violation each bug must cause.
fn broken_guarantee(bug: Bug) -> &'static str {
    match bug {
        Bug::TokenReusable => "a used configuration URL works once",
        Bug::TokenTtlIgnored => "a configuration URL expires after its TTL",
        Bug::CnNotChecked => "a certificate for RE ec does not open RE other",
        Bug::DeletedReAccepted => "a certificate of a deleted RE does not open",
        Bug::IdentifierNotUnique => "a second service with the same identifier is refused",
        Bug::SecretReturned => "a service's OAuth credentials are masked",
        Bug::AckBeforeDurable | Bug::NoRetryOn5xx | Bug::LossOnSubscriptionUpdate => {
            "at-least-once"
        }
        Bug::DeliverInactive => "activation",
        Bug::MaxInflightIgnored => "max_inflight",
        Bug::TokenCachedForever => "proxy",
    }
}

#[test]
fn seed_2_catches_every_bug_of_the_zoo() {
    let clean = ace_sim::world::run(2).unwrap_or_else(|e| panic!("{e}"));
    assert!(clean.violations.is_empty(), "{:?}", clean.violations);
    for bug in Bug::ALL {
        let report = ace_sim::world::run_with(2, bug.into()).unwrap_or_else(|e| panic!("{e}"));
        let guarantee = broken_guarantee(bug);
        assert!(
            report.violations.iter().any(|v| v.starts_with(guarantee)),
            "{bug}: expected a violation of {guarantee:?}, got {:?}",
            report.violations
        );
    }
}
