//! `ace-sim`: runs seeded simulated worlds of the real `ace serve`.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

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
    /// `seed=N trace=<hash> ok` (or the broken guarantees, and a non-zero exit).
    Run {
        /// The seed: it decides the faults and every random choice.
        #[arg(long)]
        seed: u64,
        /// Print the trace (per host: outcomes, faults, deliveries, in simulated order).
        #[arg(long)]
        trace: bool,
        /// Switch a bug of the zoo on in the server (repeat for several; see `ace-sim bugs`).
        /// Needs a build with `--features bug-zoo`.
        #[arg(long = "bug", value_name = "NAME")]
        bugs: Vec<Bug>,
    },
    /// Run seeds 1..=N one after another and summarize.
    Sweep {
        /// How many seeds.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
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

fn main() -> ExitCode {
    let mut out = std::io::stdout().lock();
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
    let (features, flags) = bug_flags(bugs);
    match command {
        Command::Bugs => {
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
        Command::Run { seed, trace, .. } => {
            let _ = writeln!(out, "seed={seed}");
            if !bugs.is_empty() {
                let _ = writeln!(out, "bugs: {bugs}");
            }
            match ace_sim::world::run_with(seed, bugs) {
                Ok(report) => {
                    let _ = writeln!(out, "faults: {:?}", report.faults);
                    if trace {
                        for line in &report.trace {
                            let _ = writeln!(out, "{line}");
                        }
                    }
                    let _ = writeln!(
                        out,
                        "accepted={} duplicates={} exchanges={}",
                        report.accepted, report.duplicates, report.exchanges
                    );
                    if report.violations.is_empty() {
                        let _ = writeln!(out, "seed={seed} trace={} ok", report.trace_hash);
                        ExitCode::SUCCESS
                    } else {
                        for v in &report.violations {
                            let _ = writeln!(out, "VIOLATION {v}");
                        }
                        let _ = writeln!(
                            out,
                            "seed={seed} trace={} FAILED; replay with: cargo run -p ace-sim --release{features} -- run --seed {seed} --trace{flags}",
                            report.trace_hash
                        );
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "{e}\nreplay with: cargo run -p ace-sim --release{features} -- run --seed {seed} --trace{flags}"
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sweep { seeds, .. } => {
            let mut failed = Vec::new();
            let mut faults = [0usize; 4];
            for seed in 1..=seeds {
                match ace_sim::world::run_with(seed, bugs) {
                    Ok(r) => {
                        faults[0] += usize::from(r.faults.latency_ms.1 > 2);
                        faults[1] += usize::from(r.faults.subscriber_failures > 0);
                        faults[2] += usize::from(r.faults.partition.is_some());
                        faults[3] += usize::from(r.faults.crash_at.is_some());
                        if !r.violations.is_empty() {
                            failed.push(seed);
                        }
                    }
                    Err(_) => failed.push(seed),
                }
            }
            let _ = writeln!(
                out,
                "seeds run: {seeds}; bugs: {bugs}; faults: latency {}, failing subscriber {}, partition {}, crash {}; failures: {:?}",
                faults[0], faults[1], faults[2], faults[3], failed
            );
            if failed.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
