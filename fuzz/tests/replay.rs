//! Every committed input of every fuzz target, run through its harness on stable: the seeds
//! (`seeds/<target>/`), which show the harnesses reach the deep paths, and the regressions
//! (`regressions/<target>/`), inputs that once failed a harness and were fixed.

use std::path::{Path, PathBuf};

fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        files.extend(entries.map(|e| e.expect("directory entry").path()));
    }
    files.sort();
    files
}

/// Runs every input of `target`; returns each file's name with what its harness returned.
fn replay<T>(target: &str, harness: fn(&[u8]) -> T) -> Vec<(String, T)> {
    inputs(target)
        .into_iter()
        .map(|file| {
            let data = std::fs::read(&file).expect("read an input");
            eprintln!("{}", file.display());
            let name = file.file_name().expect("a file name").to_string_lossy();
            (name.into_owned(), harness(&data))
        })
        .collect()
}

/// What the seed named `name` gave.
fn seed<T: Clone>(results: &[(String, T)], name: &str) -> T {
    results
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, r)| r.clone())
        .unwrap_or_else(|| panic!("no seed {name}"))
}

#[test]
fn csr_inputs() {
    let results = replay("csr", ace_fuzz::csr);
    // The seeds reach the CA's signature: the walkthrough's body, and DER of each key kind the
    // policy takes.
    for name in ["body-seed-walkthrough", "der-ec", "der-ec384", "der-rsa"] {
        assert_eq!(seed(&results, name), Some(201), "{name}");
    }
    // A 1024-bit RSA key for another CN is refused by the policy.
    assert_eq!(seed(&results, "der-rsa1k"), Some(400));
}

#[test]
fn journal_inputs() {
    let results = replay("journal", ace_fuzz::journal);
    assert_eq!(seed(&results, "two-frames"), Some(2));
    // A torn frame ends the journal; a frame of an older generation after it is not read.
    assert_eq!(seed(&results, "torn-tail-older-generation"), Some(1));
    assert_eq!(seed(&results, "records-missing"), None);
    // A frame whose records the store already has is passed over.
    assert_eq!(seed(&results, "stale-frame"), Some(0));
}

/// A frame header whose length says 4 GiB (a damaged header) ends the journal without the
/// payload being allocated: the seed runs in a child process whose address space is limited to
/// 1 GiB (`ulimit -v`), where allocating it would abort the process.
#[test]
fn a_damaged_frame_length_is_not_allocated() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/journal/damaged-length");
    if std::env::var_os("ACE_FUZZ_LIMITED").is_some() {
        let data = std::fs::read(file).expect("read the seed");
        assert_eq!(ace_fuzz::journal(&data), Some(1));
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -v 1048576 && exec "$0" --exact a_damaged_frame_length_is_not_allocated"#)
        .arg(exe)
        .env("ACE_FUZZ_LIMITED", "1")
        .status()
        .expect("run the test binary");
    assert!(status.success(), "the limited run failed: {status}");
}

#[test]
fn gateway_inputs() {
    let results = replay("gateway", ace_fuzz::gateway);
    for (name, status) in [
        ("register", 200),
        ("update", 200),
        ("publish", 200),
        ("get-unknown", 404),
        ("list", 200),
    ] {
        assert_eq!(seed(&results, name), Some(status), "{name}");
    }
}
