//! Replicated worlds: two or three replicas of ACE on the JetStream stand-in, reached in
//! turn under the name `ace`, under the single-node faults plus leader crashes, stream
//! leader moves and replicas cut off the log.

use ace_model::bugs::Bugs;
use ace_sim::world::{CONTRACT_EVENTS, EVENTS, SOLUTIONS, run_deployment};

/// Regressions, each a replicated world that once failed:
/// - (3, 2): a replica restarted under its name forwarded requests with the ids it had used
///   before its crash, and the leader answered them with the old answers (a publish got a
///   delete's 404);
/// - (143, 2): a replica restarted during a stream leader election gave up replaying the log
///   instead of waiting for the new leader;
/// - (5184, 3): a follower cut off the log kept sending again a deletion of an activation
///   whose caller had given up, and the leader decided it after the caller had created the
///   activation again: no later event reached the namespace.
const PINNED: [(u64, usize); 3] = [(3, 2), (143, 2), (5184, 3)];

#[test]
fn replicated_worlds_keep_every_checked_guarantee() {
    let fresh = (1..=3).map(|s| (s, 2)).chain((4..=5).map(|s| (s, 3)));
    for (seed, replicas) in fresh.chain(PINNED) {
        let report = run_deployment(seed, Bugs::NONE, replicas).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            report.violations.is_empty(),
            "seed={seed} replicas={replicas}: {:?}\nreplay with: cargo run -p ace-sim --release -- run --seed {seed} --replicas {replicas} --trace",
            report.violations,
        );
        assert_eq!(
            report.accepted,
            SOLUTIONS * EVENTS + CONTRACT_EVENTS,
            "seed={seed}: every event is eventually accepted"
        );
        let trace = report.trace();
        assert!(
            trace
                .iter()
                .any(|l| l.contains("ace-1 leads") || l.contains("ace-2 leads")),
            "the trace says which replica leads"
        );
    }
}

/// The same seed gives the same trace, on this thread and another. Seed 6 on two replicas
/// wakes several tasks waiting on one `watch` channel at once: with tokio's runtimes
/// unseeded, half of its runs took another order and another trace.
#[test]
fn a_replicated_world_repeats_from_its_seed() {
    if !ace_sim::world::SEEDED_RUNTIMES {
        panic!("built without --cfg tokio_unstable (RUSTFLAGS overrides .cargo/config.toml)");
    }
    let run = || {
        run_deployment(6, Bugs::NONE, 2)
            .unwrap_or_else(|e| panic!("{e}"))
            .trace_hash()
    };
    let mut hashes: Vec<_> = (0..3).map(|_| run()).collect();
    // On another thread too.
    let other = std::thread::spawn(run)
        .join()
        .unwrap_or_else(|_| panic!("the world on another thread panicked"));
    hashes.push(other);
    assert!(
        hashes.iter().all(|h| *h == hashes[0]),
        "seed 6 on two replicas gave the traces {hashes:?}"
    );
}

#[test]
fn a_world_has_at_most_three_replicas() {
    let refused = run_deployment(1, Bugs::NONE, 4).map(|r| r.seed);
    assert!(refused.is_err_and(|e| e.contains("at most 3")));
}
