//! What the server benchmarks share: wall-clock milliseconds, CPU time from `/proc/self`,
//! and the subject of an RE's certificate.

use std::time::Duration;

use ace_model::connector::Subject;

/// Milliseconds since the Unix epoch, for the server's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// User and system CPU time in a `/proc/<pid>[/task/<tid>]/stat` line, and the thread's
/// name. Resolution: one clock tick, 10 ms.
pub fn stat_cpu(stat: &str) -> Option<(&str, Duration)> {
    // `pid (comm) state ppid ...`: utime and stime are fields 14 and 15.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok());
    let ticks = field(11)? + field(12)?;
    Some((&stat[open + 1..close], Duration::from_millis(ticks * 10)))
}

/// Name of `ace serve`'s driver thread (the model and the store), beside its runtime's threads.
pub const DRIVER_THREAD: &str = "ace-driver";

/// CPU time so far of the threads whose name starts with one of `prefixes`, and of the process.
pub fn cpu_times(prefixes: &[&str]) -> (Duration, Duration) {
    let process = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| stat_cpu(&s).map(|(_, cpu)| cpu))
        .unwrap_or_default();
    let mut threads = Duration::ZERO;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        if let Some((name, cpu)) = stat_cpu(&stat)
            && prefixes.iter().any(|p| name.starts_with(p))
        {
            threads += cpu;
        }
    }
    (threads, process)
}

/// The subject of RE `cn`'s certificate.
pub fn subject(cn: &str) -> Subject {
    ace_model::config::SubjectTemplate::default().subject_for(cn)
}
