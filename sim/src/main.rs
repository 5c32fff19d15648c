//! `ace-sim`: runs seeded simulated worlds of the real `ace serve`.

#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;

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
    },
    /// Run seeds 1..=N one after another and summarize.
    Sweep {
        /// How many seeds.
        #[arg(long, default_value_t = 100)]
        seeds: u64,
    },
}

fn main() -> ExitCode {
    let mut out = std::io::stdout().lock();
    match Cli::parse().command {
        Command::Run { seed, trace } => {
            let _ = writeln!(out, "seed={seed}");
            match ace_sim::world::run(seed) {
                Ok(report) => {
                    let _ = writeln!(out, "faults: {:?}", report.faults);
                    if trace {
                        for line in &report.trace {
                            let _ = writeln!(out, "{line}");
                        }
                    }
                    let _ = writeln!(
                        out,
                        "accepted={} duplicates={}",
                        report.accepted, report.duplicates
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
                            "seed={seed} trace={} FAILED; replay with: cargo run -p ace-sim --release -- run --seed {seed} --trace",
                            report.trace_hash
                        );
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "{e}\nreplay with: cargo run -p ace-sim --release -- run --seed {seed} --trace"
                    );
                    ExitCode::FAILURE
                }
            }
        }
        Command::Sweep { seeds } => {
            let mut failed = Vec::new();
            let mut faults = [0usize; 4];
            for seed in 1..=seeds {
                match ace_sim::world::run(seed) {
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
                "seeds run: {seeds}; faults: latency {}, failing subscriber {}, partition {}, crash {}; failures: {:?}",
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
