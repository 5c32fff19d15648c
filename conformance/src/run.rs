//! Selecting and running checks, and the report: human, JSON and JUnit XML.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::check::{Area, Check, Failure, Level, Need};
use crate::context::Ctx;

/// Which checks to run.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    /// Ids or id prefixes (`onboarding.csr`); empty means all.
    pub ids: Vec<String>,
    /// Areas; empty means all.
    pub areas: Vec<Area>,
    /// Only this level.
    pub level: Option<Level>,
}

impl Selection {
    /// The selected checks of `all`, in order.
    pub fn apply(&self, all: Vec<Check>) -> Vec<Check> {
        all.into_iter()
            .filter(|c| {
                (self.ids.is_empty()
                    || self
                        .ids
                        .iter()
                        .any(|i| c.id == i || c.id.starts_with(&format!("{i}."))))
                    && (self.areas.is_empty() || self.areas.contains(&c.area))
                    && self.level.is_none_or(|l| l == c.level)
            })
            .collect()
    }
}

/// How a check ended.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Status {
    /// It held.
    Passed,
    /// It did not hold.
    Failed(Failure),
    /// It could not run against this target.
    Skipped {
        /// Why.
        reason: String,
    },
}

/// A check's result.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    /// Id.
    pub id: &'static str,
    /// Area.
    pub area: Area,
    /// Level.
    pub level: Level,
    /// Source.
    pub source: &'static str,
    /// The sentence.
    pub sentence: &'static str,
    /// How it ended.
    #[serde(flatten)]
    pub status: Status,
    /// How long it took, in milliseconds.
    pub millis: u64,
}

fn missing_need(cx: &Ctx, check: &Check) -> Option<String> {
    check.needs.iter().find_map(|n| {
        let missing = match n {
            Need::Resources => cx.resources.is_none(),
            Need::Publish => cx.target.publish.is_none(),
            Need::Proxy => cx.target.proxy.is_none(),
            Need::Restart => cx.restart.is_none(),
            Need::ShortTokenTtl => cx.target.token_ttl_seconds.is_none_or(|t| t > 10),
            Need::EgressPolicy => cx.kyma(),
            Need::BacklogLimit => cx.kyma() || cx.target.max_backlog_events.is_none(),
        };
        missing.then(|| {
            match n {
                Need::Resources => "the target has no resource adapter (admin URL)",
                Need::Publish => "the target has no publish API URL",
                Need::Proxy => "the target has no proxy URL",
                Need::Restart => "the target has no restart command",
                Need::ShortTokenTtl => {
                    "the target's token TTL is unknown or over 10 s (token_ttl_seconds)"
                }
                Need::EgressPolicy => {
                    "Kyma 0.5 has no egress policy: its proxy reaches the cluster's own services (profiles/kyma-0.5.yaml)"
                }
                Need::BacklogLimit => {
                    "the target's backlog limit is unknown (max_backlog_events; ACE: --max-backlog-events), or it is Kyma 0.5, which had none (profiles/kyma-0.5.yaml)"
                }
            }
            .to_owned()
        })
    })
}

async fn run_one(cx: Arc<Ctx>, check: Check) -> Outcome {
    let start = tokio::time::Instant::now();
    let status = match missing_need(&cx, &check) {
        Some(reason) => Status::Skipped { reason },
        None => match tokio::time::timeout(Duration::from_secs(120), (check.run)(&cx)).await {
            Ok(Ok(())) => Status::Passed,
            Ok(Err(f)) => Status::Failed(f),
            Err(_) => Status::Failed(Failure::new(
                "the check to finish within 120 s",
                "it did not",
            )),
        },
    };
    Outcome {
        id: check.id,
        area: check.area,
        level: check.level,
        source: check.source,
        sentence: check.sentence,
        status,
        millis: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// Runs `checks`, `jobs` at a time (checks that restart the target run alone, last), calling
/// `progress` as each one ends. Outcomes come back in the checks' order.
pub async fn run(
    cx: Arc<Ctx>,
    checks: Vec<Check>,
    jobs: usize,
    progress: &mut (dyn FnMut(&Outcome) + Send),
) -> Report {
    let start = tokio::time::Instant::now();
    let (exclusive, shared): (Vec<_>, Vec<_>) = checks
        .iter()
        .copied()
        .enumerate()
        .partition(|(_, c)| c.needs.contains(&Need::Restart));
    let mut outcomes: Vec<Option<Outcome>> = vec![None; checks.len()];
    let mut set = tokio::task::JoinSet::new();
    let mut pending = shared.into_iter();
    loop {
        while set.len() < jobs.max(1) {
            let Some((i, c)) = pending.next() else { break };
            let cx = cx.clone();
            set.spawn(async move { (i, run_one(cx, c).await) });
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        if let Ok((i, outcome)) = done {
            progress(&outcome);
            outcomes[i] = Some(outcome);
        }
    }
    for (i, c) in exclusive {
        let outcome = run_one(cx.clone(), c).await;
        progress(&outcome);
        outcomes[i] = Some(outcome);
    }
    cx.clean_up().await;
    Report {
        target: cx.target.gateway.clone(),
        profile: cx.profile.to_string(),
        outcomes: outcomes.into_iter().flatten().collect(),
        millis: u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}

/// The result of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The target (its gateway URL).
    pub target: String,
    /// The profile.
    pub profile: String,
    /// Every selected check's outcome.
    pub outcomes: Vec<Outcome>,
    /// Duration of the run, in milliseconds.
    pub millis: u64,
}

impl Report {
    /// Whether every selected MUST check that ran passed.
    pub fn passed(&self) -> bool {
        !self
            .outcomes
            .iter()
            .any(|o| o.level == Level::Must && matches!(o.status, Status::Failed(_)))
    }

    /// Whether every selected check that ran passed, SHOULD included (`--strict`).
    pub fn passed_strict(&self) -> bool {
        self.failures().next().is_none()
    }

    /// The outcomes that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Outcome> {
        self.outcomes
            .iter()
            .filter(|o| matches!(o.status, Status::Failed(_)))
    }

    /// The report as JSON.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "target": self.target,
            "profile": self.profile,
            "passed": self.passed(),
            "millis": self.millis,
            "checks": self.outcomes,
        })
    }

    /// The report as JUnit XML (one test suite, a test case per check; SHOULD failures have
    /// the failure type `SHOULD`, skipped checks are `<skipped>`).
    pub fn junit(&self) -> String {
        let failures = self.failures().count();
        let skipped = self
            .outcomes
            .iter()
            .filter(|o| matches!(o.status, Status::Skipped { .. }))
            .count();
        let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            x,
            "<testsuites><testsuite name=\"ace-conformance\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">",
            self.outcomes.len(),
            self.millis as f64 / 1000.0
        );
        for o in &self.outcomes {
            let _ = write!(
                x,
                "  <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\">",
                o.area,
                xml_escape(o.id),
                o.millis as f64 / 1000.0
            );
            match &o.status {
                Status::Passed => {}
                Status::Skipped { reason } => {
                    let _ = write!(x, "<skipped message=\"{}\"/>", xml_escape(reason));
                }
                Status::Failed(f) => {
                    let _ = write!(
                        x,
                        "<failure type=\"{}\" message=\"{}\">{}</failure>",
                        o.level,
                        xml_escape(&format!("{}: {}", o.level, o.sentence)),
                        xml_escape(&failure_text(f))
                    );
                }
            }
            x.push_str("</testcase>\n");
        }
        x.push_str("</testsuite></testsuites>\n");
        x
    }

    /// The summary table by area.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{:<12} {:>6} {:>6} {:>8} {:>7}\n",
            "area", "passed", "failed", "(should)", "skipped"
        );
        let mut totals = [0usize; 4];
        for area in Area::ALL {
            let of: Vec<_> = self.outcomes.iter().filter(|o| o.area == area).collect();
            if of.is_empty() {
                continue;
            }
            let passed = of
                .iter()
                .filter(|o| matches!(o.status, Status::Passed))
                .count();
            let failed = of
                .iter()
                .filter(|o| matches!(o.status, Status::Failed(_)))
                .count();
            let should = of
                .iter()
                .filter(|o| o.level == Level::Should && matches!(o.status, Status::Failed(_)))
                .count();
            let skipped = of.len() - passed - failed;
            for (t, n) in totals.iter_mut().zip([passed, failed, should, skipped]) {
                *t += n;
            }
            let _ = writeln!(
                s,
                "{:<12} {passed:>6} {failed:>6} {should:>8} {skipped:>7}",
                area.name()
            );
        }
        let _ = writeln!(
            s,
            "{:<12} {:>6} {:>6} {:>8} {:>7}",
            "total", totals[0], totals[1], totals[2], totals[3]
        );
        let _ = write!(
            s,
            "{} ({} checks in {:.1} s, profile {})",
            if self.passed() {
                "PASSED: every selected MUST holds"
            } else {
                "FAILED: a MUST does not hold"
            },
            self.outcomes.len(),
            self.millis as f64 / 1000.0,
            self.profile
        );
        s
    }
}

/// A failure as text: expected and actual side by side, then how to reproduce it.
pub fn failure_text(f: &Failure) -> String {
    let mut s = format!("expected: {}\n  actual: {}\n", f.expected, f.actual);
    if !f.reproduce.is_empty() {
        s.push_str("reproduce:\n");
        for r in &f.reproduce {
            let _ = writeln!(s, "  {r}");
        }
    }
    s
}

/// One line per ended check (and the failure's details), for progress output.
pub fn progress_line(o: &Outcome) -> String {
    let (mark, detail) = match &o.status {
        Status::Passed => ("ok  ", String::new()),
        Status::Skipped { reason } => ("skip", format!("\n        {reason}")),
        Status::Failed(f) => (
            "FAIL",
            format!(
                "\n        {}\n{}",
                o.sentence,
                failure_text(f)
                    .lines()
                    .map(|l| format!("        {l}\n"))
                    .collect::<String>()
            ),
        ),
    };
    format!(
        "{mark} {:<6} {:<36} {:>6} ms{detail}",
        o.level.to_string(),
        o.id,
        o.millis
    )
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// `--list`: one line per check.
pub fn list(checks: &[Check]) -> String {
    let mut s = String::new();
    for c in checks {
        let _ = writeln!(
            s,
            "{:<36} {:<6} {:<11} {}\n{:<36} source: {}",
            c.id,
            c.level.to_string(),
            c.area.name(),
            c.sentence,
            "",
            c.source
        );
    }
    s
}
