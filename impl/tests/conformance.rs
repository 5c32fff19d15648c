//! The conformance suite against ACE itself: every check passes against the embedded target.

use std::sync::Arc;

use ace::conformance::{Embedded, EmbeddedRestart};
use ace::driver::Clock;
use ace_conformance::endpoint::Endpoint;
use ace_conformance::run::{self, Status};
use ace_conformance::{AdminApi, Ctx, Profile, Selection, checks};

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0))
}

async fn run_suite(selection: Selection) -> ace_conformance::Report {
    let embedded = Embedded::start(Clock::new(now_ms()), 5u64.into(), |_| {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let target = embedded.target();
    let endpoint = Endpoint::start("127.0.0.1:0", None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let admin = AdminApi::new(target.admin.as_deref().unwrap_or_default());
    let cx = Ctx::new(
        target,
        endpoint,
        Some(Box::new(admin)),
        Some(Box::new(EmbeddedRestart(embedded.clone()))),
        Profile::Ace,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let report = run::run(Arc::new(cx), selection.apply(checks::all()), 4, &mut |_| {}).await;
    embedded.stop().await;
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ace_passes_every_check() {
    let report = run_suite(Selection::default()).await;
    for o in &report.outcomes {
        assert!(
            matches!(o.status, Status::Passed),
            "{}",
            run::progress_line(o)
        );
    }
    assert_eq!(report.outcomes.len(), checks::all().len());
    assert!(report.passed());
}
