//! `ace-sim`: runs seeded simulated worlds of the real `ace serve`.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ace_sim::timeline::{self, Header};
use ace_sim::world::Report;
use indicatif::{ProgressBar, ProgressStyle};

use ace_model::bugs::{Bug, Bugs};
use clap::{Parser, Subcommand};

/// Deterministic simulation of ACE: the real server in a turmoil world, with faults chosen by
/// a seed and the documented guarantees checked.
#[derive(Debug, Parser)]
#[command(name = "ace-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one world. Prints the seed first, the trace with `--trace`, and ends with
    /// `seed=N trace=<hash> ok` (or the broken guarantees, the replay command, the timeline
    /// files, and a non-zero exit).
    Run {
        /// The seed: it decides the faults and every random choice.
        #[arg(long)]
        seed: u64,
        /// Print the trace (per host: requests and outcomes, pushes, faults, in simulated
        /// order).
        #[arg(long)]
        trace: bool,
        /// Write the timeline (text and HTML sequence diagram) even if the run passes.
        #[arg(long)]
        timeline: bool,
        /// Where timelines are written, as `seed-N.txt` and `seed-N.html`.
        #[arg(long, value_name = "DIR", default_value = "target/ace-sim")]
        out: PathBuf,
        /// Switch a bug of the zoo on in the server (repeat for several; see `ace-sim bugs`).
        /// Needs a build with `--features bug-zoo`.
        #[arg(long = "bug", value_name = "NAME")]
        bugs: Vec<Bug>,
    },
    /// Run many seeds in parallel and summarize: failures with their replay commands, how
    /// often each kind of fault was on, how often each rare path was taken.
    Sweep {
        /// How many seeds.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
        /// The first seed (the sweep runs `from..from+seeds`).
        #[arg(long, default_value_t = 1)]
        from: u64,
        /// Worlds run at once (default: one per CPU).
        #[arg(long)]
        jobs: Option<usize>,
        /// Fail the sweep if some rare path was never taken (use with a large sweep).
        #[arg(long)]
        require_rare: bool,
        /// Where the timelines of failed seeds are written.
        #[arg(long, value_name = "DIR", default_value = "target/ace-sim")]
        out: PathBuf,
        /// Switch a bug of the zoo on in the server (repeat for several; see `ace-sim bugs`).
        /// Needs a build with `--features bug-zoo`.
        #[arg(long = "bug", value_name = "NAME")]
        bugs: Vec<Bug>,
    },
    /// List the bug zoo: deliberately wrong behaviours the server can be run with, to prove
    /// that the checks catch them.
    Bugs,
}

/// The set of `names`, if this build can switch bugs on.
fn bug_set(names: &[Bug]) -> Result<Bugs, String> {
    #[cfg(feature = "bug-zoo")]
    {
        Ok(names.iter().copied().collect())
    }
    #[cfg(not(feature = "bug-zoo"))]
    {
        if names.is_empty() {
            Ok(Bugs::NONE)
        } else {
            Err(format!(
                "cannot inject {}: this ace-sim was built without the bug zoo; \
                 run it with `cargo run -p ace-sim --release --features bug-zoo -- ...`",
                names
                    .iter()
                    .map(|b| b.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

/// The flags that give the same bugs again, for replay commands.
fn bug_flags(bugs: Bugs) -> (String, String) {
    if bugs.is_empty() {
        return (String::new(), String::new());
    }
    let flags: String = bugs.iter().map(|b| format!(" --bug {b}")).collect();
    (" --features bug-zoo".to_owned(), flags)
}

/// The command that replays `seed` with `bugs`.
fn replay(seed: u64, bugs: Bugs) -> String {
    let (features, flags) = bug_flags(bugs);
    format!("cargo run -p ace-sim --release{features} -- run --seed {seed} --trace{flags}")
}

/// Writes the timeline of `report`; returns a line naming the files (or why they are not).
fn write_timeline(out: &Path, report: &Report, bugs: Bugs) -> String {
    let replay = replay(report.seed, bugs);
    let header = Header {
        seed: report.seed,
        faults: report.faults.to_string(),
        replay: &replay,
        violations: &report.violations,
    };
    match timeline::write(out, &header, &report.entries) {
        Ok((txt, html)) => format!("timeline: {} and {}", txt.display(), html.display()),
        Err(e) => format!("timeline not written to {}: {e}", out.display()),
    }
}

fn run(seed: u64, trace: bool, always: bool, out: &Path, bugs: Bugs) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "seed={seed}");
    if !bugs.is_empty() {
        let _ = writeln!(stdout, "bugs: {bugs}");
    }
    let report = match ace_sim::world::run_with(seed, bugs) {
        Ok(report) => report,
        Err(e) => {
            let _ = writeln!(stdout, "{e}\nreplay with: {}", replay(seed, bugs));
            return ExitCode::FAILURE;
        }
    };
    let _ = writeln!(stdout, "faults: {}", report.faults);
    if trace {
        for line in report.trace() {
            let _ = writeln!(stdout, "{line}");
        }
    }
    let _ = writeln!(
        stdout,
        "accepted={} duplicates={} exchanges={}",
        report.accepted, report.duplicates, report.exchanges
    );
    let ok = report.violations.is_empty();
    if !ok || always {
        let _ = writeln!(stdout, "{}", write_timeline(out, &report, bugs));
    }
    if ok {
        let _ = writeln!(stdout, "seed={seed} trace={} ok", report.trace_hash());
        ExitCode::SUCCESS
    } else {
        for v in &report.violations {
            let _ = writeln!(stdout, "VIOLATION {v}");
        }
        let _ = writeln!(
            stdout,
            "seed={seed} trace={} FAILED; replay with: {}",
            report.trace_hash(),
            replay(seed, bugs)
        );
        ExitCode::FAILURE
    }
}

/// What a sweep keeps of one world.
enum Outcome {
    Passed(Report),
    Failed(Report, String),
    Broke(String),
}

fn sweep(seeds: Range<u64>, jobs: usize, require_rare: bool, out: &Path, bugs: Bugs) -> ExitCode {
    let total = seeds.end - seeds.start;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} worlds, {elapsed} ({eta} left) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = AtomicU64::new(seeds.start);
    let failures = AtomicU64::new(0);
    let outcomes: Mutex<BTreeMap<u64, Outcome>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= seeds.end {
                        break;
                    }
                    let outcome = match ace_sim::world::run_with(seed, bugs) {
                        Ok(r) if r.violations.is_empty() => Outcome::Passed(r),
                        Ok(r) => {
                            let files = write_timeline(out, &r, bugs);
                            Outcome::Failed(r, files)
                        }
                        Err(e) => Outcome::Broke(e),
                    };
                    if !matches!(outcome, Outcome::Passed(_)) {
                        let n = failures.fetch_add(1, Ordering::SeqCst) + 1;
                        bar.set_message(format!("{n} failed"));
                    }
                    if let Ok(mut o) = outcomes.lock() {
                        o.insert(seed, outcome);
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    let outcomes = outcomes.into_inner().unwrap_or_default();
    let mut stdout = std::io::stdout().lock();
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let mut rare: BTreeMap<&str, u64> = ace_sim::world::RARE
        .iter()
        .map(|(name, _)| (*name, 0))
        .collect();
    let mut failed = Vec::new();
    for (seed, outcome) in &outcomes {
        let report = match outcome {
            Outcome::Passed(r) => r,
            Outcome::Failed(r, files) => {
                failed.push(*seed);
                let _ = writeln!(stdout, "seed={seed} FAILED: {}", r.violations.join("; "));
                let _ = writeln!(stdout, "  replay with: {}\n  {files}", replay(*seed, bugs));
                r
            }
            Outcome::Broke(e) => {
                failed.push(*seed);
                let _ = writeln!(
                    stdout,
                    "seed={seed} BROKE: {e}\n  replay with: {}",
                    replay(*seed, bugs)
                );
                continue;
            }
        };
        for kind in report.faults.kinds() {
            *faults.entry(kind).or_default() += 1;
        }
        for (path, n) in &report.rare {
            *rare.entry(path).or_default() += u64::from(*n > 0);
        }
    }
    let _ = writeln!(
        stdout,
        "seeds run: {total} ({}..{}); bugs: {bugs}",
        seeds.start,
        seeds.end - 1
    );
    let _ = writeln!(stdout, "faults (worlds with each on):");
    for (kind, n) in &faults {
        let _ = writeln!(stdout, "  {kind:<28} {n}");
    }
    let _ = writeln!(stdout, "rare paths (worlds that took each):");
    let mut never = Vec::new();
    for (path, description) in ace_sim::world::RARE {
        let n = rare.get(path).copied().unwrap_or(0);
        if n == 0 {
            never.push(path);
        }
        let mark = if n == 0 { "  NEVER TAKEN" } else { "" };
        let _ = writeln!(stdout, "  {path:<28} {n:>5}  {description}{mark}");
    }
    let _ = writeln!(stdout, "failures: {} {:?}", failed.len(), failed);
    if !failed.is_empty() || (require_rare && !never.is_empty()) {
        if require_rare && !never.is_empty() {
            let _ = writeln!(stdout, "rare paths never taken: {}", never.join(", "));
        }
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    let bugs = match &command {
        Command::Run { bugs, .. } | Command::Sweep { bugs, .. } => bug_set(bugs),
        Command::Bugs => Ok(Bugs::NONE),
    };
    let bugs = match bugs {
        Ok(bugs) => bugs,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "ace-sim: {e}");
            return ExitCode::FAILURE;
        }
    };
    match command {
        Command::Bugs => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{}\n",
                if cfg!(feature = "bug-zoo") {
                    "This build can inject these bugs (run/sweep --bug NAME):"
                } else {
                    "This build cannot inject bugs (build with --features bug-zoo to use --bug NAME):"
                }
            );
            for bug in Bug::ALL {
                let _ = writeln!(
                    out,
                    "{:<28} {:<13} {}",
                    bug.name(),
                    bug.area(),
                    bug.description()
                );
            }
            ExitCode::SUCCESS
        }
        Command::Run {
            seed,
            trace,
            timeline,
            out,
            ..
        } => run(seed, trace, timeline, &out, bugs),
        Command::Sweep {
            seeds,
            from,
            jobs,
            require_rare,
            out,
            ..
        } => {
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
            sweep(
                from..from.saturating_add(seeds),
                jobs,
                require_rare,
                &out,
                bugs,
            )
        }
    }
}
