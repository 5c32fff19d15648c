//! `ace-sim`: runs seeded simulated worlds of the real `ace serve`.

#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ace_sim::sweep::{Failure, Shard, Summary};
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
        /// ACE's replicas: 1, the single node on its local disk; 2 or 3, replicas on a
        /// simulated JetStream, reached in turn under the name `ace`.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3))]
        replicas: u64,
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
        /// ACE's replicas in each world (see `run --replicas`).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=3))]
        replicas: u64,
        /// Worlds run at once (default: one per CPU).
        #[arg(long)]
        jobs: Option<usize>,
        /// Fail the sweep if some rare path was never taken (use with a large sweep; on
        /// replicas, the replicated rare paths).
        #[arg(long)]
        require_rare: bool,
        /// Where the timelines of failed seeds are written.
        #[arg(long, value_name = "DIR", default_value = "target/ace-sim")]
        out: PathBuf,
        /// Switch a bug of the zoo on in the server (repeat for several; see `ace-sim bugs`).
        /// Needs a build with `--features bug-zoo`.
        #[arg(long = "bug", value_name = "NAME")]
        bugs: Vec<Bug>,
        /// Run only shard I of N of the sweep (seeds `from + k` with `k % N == I - 1`), for
        /// sweeps spread over machines: a CI matrix or a batch of jobs each runs one shard with
        /// the same `--seeds` and `--from`, and `ace-sim merge` adds up their summaries.
        #[arg(long, value_name = "I/N", value_parser = Shard::parse, default_value = "1/1")]
        shard: Shard,
        /// Write the summary as JSON to FILE too (failures with replay commands, faults,
        /// rare paths), for `ace-sim merge`.
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
    },
    /// Add up the JSON summaries of a sweep's shards (`sweep --shard I/N --summary FILE`) and
    /// print the whole sweep's summary. Fails on a failed world, on a shard given twice or
    /// missing, on summaries of different sweeps, and with `--require-rare` on a rare path no
    /// shard took.
    Merge {
        /// The shards' summaries.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Fail if some rare path was never taken in the whole sweep (on replicas, the
        /// replicated rare paths).
        #[arg(long)]
        require_rare: bool,
        /// Write the merged summary as JSON to FILE too.
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
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

/// The command that replays `seed` with `bugs` on `replicas` replicas.
fn replay(seed: u64, bugs: Bugs, replicas: usize) -> String {
    let (features, flags) = bug_flags(bugs);
    let replicas = if replicas > 1 {
        format!(" --replicas {replicas}")
    } else {
        String::new()
    };
    format!(
        "cargo run -p ace-sim --release{features} -- run --seed {seed}{replicas} --trace{flags}"
    )
}

/// Writes the timeline of `report`; returns a line naming the files (or why they are not).
fn write_timeline(out: &Path, report: &Report, bugs: Bugs) -> String {
    let replay = replay(report.seed, bugs, report.replicas);
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

/// Says so when this build cannot repeat a replicated world (see
/// [`ace_sim::world::SEEDED_RUNTIMES`]).
fn warn_if_unseeded(replicas: usize) {
    if replicas > 1 && !ace_sim::world::SEEDED_RUNTIMES {
        eprintln!(
            "warning: this build's tokio runtimes are not seeded (built without --cfg tokio_unstable, as RUSTFLAGS overrides the workspace's .cargo/config.toml): a replicated world may not repeat from its seed"
        );
    }
}

fn run(seed: u64, replicas: usize, trace: bool, always: bool, out: &Path, bugs: Bugs) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "seed={seed}");
    if !bugs.is_empty() {
        let _ = writeln!(stdout, "bugs: {bugs}");
    }
    warn_if_unseeded(replicas);
    let report = match ace_sim::world::run_deployment(seed, bugs, replicas) {
        Ok(report) => report,
        Err(e) => {
            let _ = writeln!(stdout, "{e}\nreplay with: {}", replay(seed, bugs, replicas));
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
            replay(seed, bugs, replicas)
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

/// Where a sweep runs and what it reports.
struct SweepPlan<'a> {
    seeds: Range<u64>,
    replicas: usize,
    shard: Shard,
    jobs: usize,
    require_rare: bool,
    out: &'a Path,
    summary: Option<&'a Path>,
}

fn sweep(plan: &SweepPlan<'_>, bugs: Bugs) -> ExitCode {
    let SweepPlan {
        seeds, shard, jobs, ..
    } = plan;
    let total = seeds
        .clone()
        .filter(|s| shard.takes(seeds.start, *s))
        .count() as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} worlds, {elapsed} ({eta} left) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    warn_if_unseeded(plan.replicas);
    let next = AtomicU64::new(seeds.start);
    let failures = AtomicU64::new(0);
    let outcomes: Mutex<BTreeMap<u64, Outcome>> = Mutex::new(BTreeMap::new());
    std::thread::scope(|scope| {
        for _ in 0..(*jobs).max(1) {
            scope.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::SeqCst);
                    if seed >= seeds.end {
                        break;
                    }
                    if !shard.takes(seeds.start, seed) {
                        continue;
                    }
                    let outcome = match ace_sim::world::run_deployment(seed, bugs, plan.replicas) {
                        Ok(r) if r.violations.is_empty() => Outcome::Passed(r),
                        Ok(r) => {
                            let files = write_timeline(plan.out, &r, bugs);
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
    let mut summary = Summary::new(
        seeds.start,
        seeds.end - seeds.start,
        *shard,
        bugs.iter().map(|b| b.name().to_owned()).collect(),
        plan.replicas as u64,
    );
    let mut timelines = Vec::new();
    for (seed, outcome) in &outcomes {
        summary.worlds += 1;
        let report = match outcome {
            Outcome::Passed(r) => r,
            Outcome::Failed(r, files) => {
                summary.failures.push(Failure {
                    seed: *seed,
                    broke: false,
                    what: r.violations.join("; "),
                    replay: replay(*seed, bugs, plan.replicas),
                });
                timelines.push(format!("seed={seed} {files}"));
                r
            }
            Outcome::Broke(e) => {
                summary.failures.push(Failure {
                    seed: *seed,
                    broke: true,
                    what: e.clone(),
                    replay: replay(*seed, bugs, plan.replicas),
                });
                continue;
            }
        };
        for kind in report.faults.kinds() {
            *summary.faults.entry(kind.to_owned()).or_default() += 1;
        }
        for (path, n) in &report.rare {
            *summary.rare.entry((*path).to_owned()).or_default() += u64::from(*n > 0);
        }
    }
    let mut stdout = std::io::stdout().lock();
    let _ = write!(stdout, "{}", summary.render());
    for line in &timelines {
        let _ = writeln!(stdout, "{line}");
    }
    finish(&summary, plan.require_rare, plan.summary)
}

/// Writes `summary` to `file` if asked, says what is wrong with it, and gives the exit code:
/// failure on a failed world, or a rare path never taken when `require_rare`.
fn finish(summary: &Summary, require_rare: bool, file: Option<&Path>) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    let mut ok = summary.failures.is_empty();
    if let Some(file) = file {
        let written = serde_json::to_string_pretty(summary)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(file, json + "\n").map_err(|e| e.to_string()));
        match written {
            Ok(()) => {
                let _ = writeln!(stdout, "summary written to {}", file.display());
            }
            Err(e) => {
                let _ = writeln!(stdout, "summary not written to {}: {e}", file.display());
                ok = false;
            }
        }
    }
    let never = summary.never_taken();
    if require_rare && !never.is_empty() {
        let _ = writeln!(stdout, "rare paths never taken: {}", never.join(", "));
        ok = false;
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `ace-sim merge`: the summaries in `files`, added up.
fn merge(files: &[PathBuf], require_rare: bool, out: Option<&Path>) -> ExitCode {
    let mut stderr = std::io::stderr().lock();
    let mut parts = Vec::new();
    for file in files {
        let read = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str::<Summary>(&text).map_err(|e| e.to_string()));
        match read {
            Ok(summary) => parts.push(summary),
            Err(e) => {
                let _ = writeln!(stderr, "ace-sim merge: {}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let summary = match Summary::merge(parts) {
        Ok(summary) => summary,
        Err(e) => {
            let _ = writeln!(stderr, "ace-sim merge: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = write!(std::io::stdout().lock(), "{}", summary.render());
    let missing = summary.missing_shards();
    if !missing.is_empty() {
        let _ = writeln!(
            std::io::stdout().lock(),
            "shards missing: {missing:?} of {}",
            summary.shard_count
        );
        let _ = finish(&summary, require_rare, out);
        return ExitCode::FAILURE;
    }
    finish(&summary, require_rare, out)
}

fn main() -> ExitCode {
    let command = Cli::parse().command;
    let bugs = match &command {
        Command::Run { bugs, .. } | Command::Sweep { bugs, .. } => bug_set(bugs),
        Command::Bugs | Command::Merge { .. } => Ok(Bugs::NONE),
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
            replicas,
            trace,
            timeline,
            out,
            ..
        } => run(seed, replicas as usize, trace, timeline, &out, bugs),
        Command::Sweep {
            seeds,
            from,
            jobs,
            require_rare,
            out,
            shard,
            summary,
            replicas,
            ..
        } => {
            let jobs =
                jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from));
            let plan = SweepPlan {
                seeds: from..from.saturating_add(seeds),
                replicas: replicas as usize,
                shard,
                jobs,
                require_rare,
                out: &out,
                summary: summary.as_deref(),
            };
            sweep(&plan, bugs)
        }
        Command::Merge {
            files,
            require_rare,
            summary,
        } => merge(&files, require_rare, summary.as_deref()),
    }
}
