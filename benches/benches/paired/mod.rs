//! Paired rounds: the systems of one benchmark measured in turn, round after round, so that
//! each ratio compares measurements taken seconds apart.
//!
//! Criterion measures one benchmark after the other, a few seconds each, so a ratio between
//! two of them compares minutes apart; on a shared machine the baseline alone moves by a
//! third within the hour. With `ACE_BENCH_ROUNDS=R` set, the end-to-end benchmarks skip
//! criterion and run each system for about `ACE_BENCH_SLICE_MS` (default 1,000) in turn, R
//! rounds over, and print every round's rates, each ratio to the same round's baseline, and
//! the median, lowest and highest ratio over the rounds.

use std::time::Duration;

/// Environment variable holding the number of rounds; unset means criterion runs as usual.
const ROUNDS_ENV: &str = "ACE_BENCH_ROUNDS";
/// Environment variable holding each system's measuring time per round, in milliseconds.
const SLICE_ENV: &str = "ACE_BENCH_SLICE_MS";
/// Events or calls of the first, calibrating measurement of each system.
const CALIBRATION: u64 = 2_000;

/// The number of rounds asked for, if any.
pub fn rounds() -> Option<usize> {
    let v = std::env::var(ROUNDS_ENV).ok()?;
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Some(n),
        _ => panic!("{ROUNDS_ENV} must be a positive number of rounds, not {v:?}"),
    }
}

fn slice() -> Duration {
    let ms = std::env::var(SLICE_ENV).map_or(1_000, |v| {
        v.parse::<u64>()
            .unwrap_or_else(|_| panic!("{SLICE_ENV} must be milliseconds, not {v:?}"))
    });
    Duration::from_millis(ms.max(1))
}

/// One system of a paired measurement: `run(n)` does `n` operations and returns their wall time.
pub struct System<'a> {
    pub name: &'a str,
    pub run: Box<dyn FnMut(u64) -> Duration + 'a>,
}

impl std::fmt::Debug for System<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("System").field("name", &self.name).finish()
    }
}

/// The median, lowest and highest of `v` (not empty).
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let mid = s.len() / 2;
    let median = if s.len() % 2 == 1 {
        s[mid]
    } else {
        (s[mid - 1] + s[mid]) / 2.0
    };
    (median, s[0], s[s.len() - 1])
}

/// Runs `systems` in turn for `rounds` rounds; the first is the baseline every ratio is to.
/// Prints each round's rates and ratios, their median, lowest and highest, and in how many
/// rounds each ratio reached `bar`, to stderr. Returns every system's rate per round.
pub fn run(label: &str, rounds: usize, systems: &mut [System<'_>], bar: f64) -> Vec<Vec<f64>> {
    let slice = slice();
    // Calibrate: how many operations fill a slice, system by system, on a warm system: the
    // first run opens connections and fills caches, and a slow first run used to leave a
    // system with rounds of the smallest size, where its fixed costs per round weigh most.
    let sizes: Vec<u64> = systems
        .iter_mut()
        .map(|s| {
            (s.run)(CALIBRATION);
            let took = (s.run)(CALIBRATION);
            let rate = CALIBRATION as f64 / took.as_secs_f64().max(1e-9);
            (rate * slice.as_secs_f64()).max(CALIBRATION as f64) as u64
        })
        .collect();
    let per_round: Vec<String> = systems
        .iter()
        .zip(&sizes)
        .map(|(s, n)| format!("{} {n}", s.name))
        .collect();
    eprintln!(
        "paired {label}: operations per round: {}",
        per_round.join(", ")
    );
    let mut rates = vec![Vec::with_capacity(rounds); systems.len()];
    for round in 1..=rounds {
        let mut line = format!("paired {label} round {round}:");
        for (i, s) in systems.iter_mut().enumerate() {
            let took = (s.run)(sizes[i]);
            let rate = sizes[i] as f64 / took.as_secs_f64().max(1e-9);
            rates[i].push(rate);
            line += &format!(" {} {:.1} K", s.name, rate / 1e3);
            if i > 0 {
                line += &format!(" ({:.2})", rate / rates[0][round - 1]);
            }
            line += ";";
        }
        eprintln!("{}", line.trim_end_matches(';'));
    }
    for (i, s) in systems.iter().enumerate().skip(1) {
        let ratios: Vec<f64> = rates[i].iter().zip(&rates[0]).map(|(a, b)| a / b).collect();
        let (median, low, high) = spread(&ratios);
        let (rate, _, _) = spread(&rates[i]);
        eprintln!(
            "paired {label} {}: median {:.1} K/s; ratio to {} median {median:.2}, lowest {low:.2}, highest {high:.2}, at least {bar} in {} of {rounds} rounds",
            s.name,
            rate / 1e3,
            systems[0].name,
            ratios.iter().filter(|r| **r >= bar).count(),
        );
    }
    rates
}

/// Prints the ratio of system `of`'s rate to system `to`'s, round by round (`rates` as
/// [`run`] returns them, `names` in the same order): its median, lowest and highest, and in
/// how many rounds it reached `bar`.
pub fn print_ratio(label: &str, names: &[&str], rates: &[Vec<f64>], of: &str, to: &str, bar: f64) {
    let index = |name: &str| {
        names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("no system {name} in {label}"))
    };
    let (a, b) = (&rates[index(of)], &rates[index(to)]);
    let ratios: Vec<f64> = a.iter().zip(b).map(|(a, b)| a / b).collect();
    let (median, low, high) = spread(&ratios);
    let by_round: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    eprintln!(
        "paired {label} {of}: ratio to {to} by round {}; median {median:.2}, lowest {low:.2}, highest {high:.2}, at least {bar} in {} of {} rounds",
        by_round.join(" "),
        ratios.iter().filter(|r| **r >= bar).count(),
        ratios.len(),
    );
}
