//! The simulation's checkers have teeth: a pinned seed per bug passes clean, and fails with
//! that bug of the zoo switched on, for the guarantee the bug breaks.

#![cfg(feature = "bug-zoo")]

use ace_model::bugs::{Bug, Bugs};

/// A seed that catches `bug`, on how many replicas (1: the single node; the first failing
/// seed of a sweep of seeds 1..=50, or 1..=100 for the replicas' bugs, unless said), and the
/// start of the violation it must cause.
fn caught_by(bug: Bug) -> (u64, usize, &'static str) {
    match bug {
        Bug::TokenReusable => (1, 1, "a used configuration URL works once"),
        Bug::TokenTtlIgnored => (1, 1, "a CSR URL expires with its token"),
        Bug::CnNotChecked => (1, 1, "a certificate for RE ec does not open RE other"),
        Bug::DeletedReAccepted => (1, 1, "a certificate of a deleted RE does not open"),
        Bug::IdentifierNotUnique => (1, 1, "a second service with the same identifier is refused"),
        Bug::SecretReturned => (1, 1, "a service's OAuth credentials are masked"),
        // A crash while an acknowledged event is not yet on disk.
        Bug::AckBeforeDurable => (8, 1, "at-least-once"),
        // A subscriber answering 5xx to its first requests.
        Bug::NoRetryOn5xx => (3, 1, "at-least-once"),
        Bug::LossOnSubscriptionUpdate => (1, 1, "at-least-once"),
        Bug::DeliverInactive => (1, 1, "activation"),
        Bug::MaxInflightIgnored => (1, 1, "max_inflight"),
        Bug::TokenCachedForever => (1, 1, "proxy"),
        Bug::ProxyEgressOpen => (1, 1, "the proxy never reaches ACE's own surfaces"),
        Bug::BacklogWindowForgets => (1, 1, "at-least-once"),
        Bug::PeerEgressOpen => (1, 2, "the proxy never reaches another replica's surfaces"),
        // A replica restarted while the leader still kept answers to its earlier ids: a
        // publish answered with an earlier request's 404.
        Bug::ForwardIdsReused => (3, 2, "every answer equals the model's prediction"),
        // A publish answered with the answer to the other replica's request, once the first
        // leader has become a follower. (On three replicas, two followers forwarding at once,
        // seed 1 fails first, but by running into the liveness limit: 300 simulated seconds.)
        Bug::ForwardIdsShared => (3, 2, "every answer equals the model's prediction"),
        // A leader crashing mid-append, after its answers went out: events it confirmed are
        // lost.
        Bug::AckBeforeQuorum => (34, 2, "at-least-once"),
        // A leader cut off the log appends after another took over: the log forks, and the
        // replicas reading it stop making progress.
        Bug::UnguardedAppend => (5, 2, "liveness"),
        // A leader cut off the log answers a read from its stale state after another took
        // over.
        Bug::LeaseOutlived => (5, 3, "every answer equals the model's prediction"),
    }
}

#[test]
fn a_pinned_seed_catches_every_bug_of_the_zoo() {
    let mut clean = std::collections::BTreeMap::new();
    for bug in Bug::ALL {
        let (seed, replicas, guarantee) = caught_by(bug);
        assert_eq!(
            replicas > 1,
            bug.area() == "replicas",
            "{bug}: the replicas' bugs, and only they, need replicas"
        );
        let passes = *clean.entry((seed, replicas)).or_insert_with(|| {
            let report = ace_sim::world::run_deployment(seed, Bugs::NONE, replicas)
                .unwrap_or_else(|e| panic!("{e}"));
            report.violations.is_empty()
        });
        assert!(passes, "seed {seed} on {replicas} fails without a bug");
        let report = ace_sim::world::run_deployment(seed, bug.into(), replicas)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            report.violations.iter().any(|v| v.starts_with(guarantee)),
            "{bug} at seed {seed} on {replicas}: expected a violation of {guarantee:?}, got {:?}",
            report.violations
        );
    }
}
