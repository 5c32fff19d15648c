//! `ace-sim` as a user runs it.

use std::process::Command;

fn ace_sim(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ace-sim"))
        .args(args)
        .output()
        .expect("ace-sim runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn run_prints_the_seed_first_and_ends_with_its_trace_hash_and_can_write_the_timeline() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let out = dir.path().to_str().expect("a UTF-8 path");
    let (ok, stdout) = ace_sim(&["run", "--seed", "4", "--timeline", "--out", out]);
    assert!(ok, "{stdout}");
    assert!(stdout.starts_with("seed=4\n"), "{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("seed=4 trace=") && last.ends_with(" ok"),
        "{last}"
    );
    let text = std::fs::read_to_string(dir.path().join("seed-4.txt")).expect("text timeline");
    assert!(text.contains("replay: cargo run -p ace-sim --release -- run --seed 4"));
    assert!(
        text.contains("-> ace        POST /ec/v1/events -> 200"),
        "{text}"
    );
    let html = std::fs::read_to_string(dir.path().join("seed-4.html")).expect("HTML timeline");
    assert!(html.contains("<svg") && html.contains(">sub-a</text>"));
}

#[test]
fn a_sweep_summarizes_faults_and_rare_paths_and_fails_when_asked_about_untaken_ones() {
    let (ok, stdout) = ace_sim(&["sweep", "--seeds", "2", "--jobs", "2"]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains("seeds run: 2 (of 1..2)"), "{stdout}");
    assert!(stdout.contains("failures: 0 []"), "{stdout}");
    for (path, _) in ace_sim::world::RARE {
        assert!(stdout.contains(path), "{path} in {stdout}");
    }
    // Two worlds cannot take every rare path: a sweep that requires them fails.
    let (ok, stdout) = ace_sim(&["sweep", "--seeds", "2", "--require-rare"]);
    assert!(!ok, "{stdout}");
    assert!(stdout.contains("rare paths never taken:"), "{stdout}");
}

#[test]
fn a_replicated_sweep_names_its_replicas_and_their_rare_paths_and_replays_them() {
    let (ok, stdout) = ace_sim(&["sweep", "--seeds", "2", "--replicas", "2", "--jobs", "2"]);
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("seeds run: 2 (of 1..2); bugs: none; 2 replicas"),
        "{stdout}"
    );
    for (path, _) in ace_sim::world::REPLICATED_RARE {
        assert!(stdout.contains(path), "{path} in {stdout}");
    }
    // The local disk's paths are no replicated world's.
    assert!(!stdout.contains("unsynced-write-lost"), "{stdout}");
    let (ok, stdout) = ace_sim(&["run", "--seed", "3", "--replicas", "2", "--trace"]);
    assert!(ok, "{stdout}");
    assert!(stdout.contains(" leads"), "{stdout}");
    let (ok, stdout) = ace_sim(&["run", "--seed", "3", "--replicas", "4"]);
    assert!(!ok && stdout.is_empty(), "{stdout}");
}

/// A sweep cut into shards, each writing its summary, and the merge of the summaries: the
/// same worlds as the whole sweep, each run once; a missing or repeated shard is refused.
#[test]
fn sharded_sweeps_merge_into_the_whole_sweep() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = |name: &str| dir.path().join(name).to_str().expect("UTF-8").to_owned();
    let (a, b) = (file("a.json"), file("b.json"));
    for (shard, summary) in [("1/2", &a), ("2/2", &b)] {
        let (ok, stdout) = ace_sim(&[
            "sweep",
            "--seeds",
            "3",
            "--from",
            "5",
            "--jobs",
            "2",
            "--shard",
            shard,
            "--summary",
            summary,
        ]);
        assert!(ok, "{stdout}");
    }
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&a).expect("summary")).expect("JSON");
    assert_eq!(
        (first["worlds"].as_u64(), first["shards"].clone()),
        (Some(2), serde_json::json!([1]))
    );
    let merged = file("all.json");
    let (ok, stdout) = ace_sim(&["merge", &a, &b, "--summary", &merged]);
    assert!(ok, "{stdout}");
    assert!(
        stdout.contains("seeds run: 3 (of 5..7); shards [1, 2] of 2"),
        "{stdout}"
    );
    assert!(stdout.contains("failures: 0 []"), "{stdout}");
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged).expect("merged")).expect("JSON");
    assert_eq!(all["worlds"], 3);
    let (ok, stdout) = ace_sim(&["merge", &a]);
    assert!(
        !ok && stdout.contains("shards missing: [2] of 2"),
        "{stdout}"
    );
    let (ok, _) = ace_sim(&["merge", &a, &a]);
    assert!(!ok, "a shard given twice is refused");
}

#[test]
fn bugs_cannot_be_injected_without_the_feature() {
    if cfg!(feature = "bug-zoo") {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ace-sim"))
        .args(["run", "--seed", "1", "--bug", "token-reusable"])
        .output()
        .expect("ace-sim runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("built without the bug zoo"));
}
