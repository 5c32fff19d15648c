//! The simulation's checkers have teeth: with a bug of the zoo they catch, seed 2 (a failing
//! subscriber and a crash) fails, and it passes without the bug.

#![cfg(feature = "bug-zoo")]

use ace_model::bugs::Bug;

#[test]
fn seed_2_catches_the_event_bugs_the_checkers_cover() {
    let clean = ace_sim::world::run(2).unwrap_or_else(|e| panic!("{e}"));
    assert!(clean.violations.is_empty(), "{:?}", clean.violations);
    for (bug, guarantee) in [
        (Bug::AckBeforeDurable, "at-least-once"),
        (Bug::NoRetryOn5xx, "at-least-once"),
        (Bug::MaxInflightIgnored, "max_inflight"),
    ] {
        let report = ace_sim::world::run_with(2, bug.into()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            report.violations.iter().any(|v| v.starts_with(guarantee)),
            "{bug}: {:?}",
            report.violations
        );
    }
}
