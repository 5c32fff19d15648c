//! The suite's own catalog: ids, levels, sources, the Kyma 0.5 divergences file, selection,
//! and the report formats.

use std::collections::BTreeSet;

use ace_conformance::check::Need;
use ace_conformance::run::{Outcome, Report, Status};
use ace_conformance::{Area, Failure, Level, Selection, checks, profile};

#[test]
fn ids_are_unique_and_name_their_area() {
    let all = checks::all();
    let mut seen = BTreeSet::new();
    for c in &all {
        assert!(seen.insert(c.id), "duplicate id {}", c.id);
        assert!(
            c.id.starts_with(&format!("{}.", c.area.name())),
            "{} is not in area {}",
            c.id,
            c.area
        );
        assert!(c.sentence.ends_with('.'), "{}: one sentence", c.id);
        assert!(
            c.source.contains("seed") || c.source.contains("reference"),
            "{}: a source",
            c.id
        );
    }
    for area in Area::ALL {
        assert!(all.iter().any(|c| c.area == area), "no check in {area}");
    }
    assert!(all.len() >= 50, "{} checks", all.len());
}

#[test]
fn every_divergence_names_a_check_that_adapts_or_is_should() {
    let all = checks::all();
    let divergences = profile::kyma_divergences();
    assert!(divergences.len() >= 6);
    for d in &divergences {
        let check = all
            .iter()
            .find(|c| c.id == d.check)
            .unwrap_or_else(|| panic!("no check {}", d.check));
        assert!(!d.kyma.is_empty() && !d.reason.is_empty());
        if check.level == Level::Must {
            // A MUST either adapts to Kyma's behaviour or is skipped under its profile.
            let skipped = check.needs.iter().any(|n| {
                matches!(
                    n,
                    ace_conformance::check::Need::EgressPolicy
                        | ace_conformance::check::Need::BacklogLimit
                )
            });
            assert!(
                d.reason.contains("MUST in both profiles")
                    || (skipped && d.reason.contains("skipped in Kyma 0.5's")),
                "{}: a MUST divergence must say how it stays a MUST or that it is skipped",
                d.check
            );
        }
    }
    // Every SHOULD check is a place where ACE does better than Kyma 0.5: each one is listed.
    for c in all.iter().filter(|c| c.level == Level::Should) {
        assert!(
            divergences.iter().any(|d| d.check == c.id),
            "{} is SHOULD but not in profiles/kyma-0.5.yaml",
            c.id
        );
    }
}

#[test]
fn selection_by_prefix_area_and_level() {
    let all = checks::all();
    let csr = Selection {
        ids: vec!["onboarding.csr".into()],
        ..Selection::default()
    }
    .apply(all.clone());
    assert!(csr.len() >= 3);
    assert!(csr.iter().all(|c| c.id.starts_with("onboarding.csr.")));
    let exact = Selection {
        ids: vec!["onboarding.csr.cn".into()],
        ..Selection::default()
    }
    .apply(all.clone());
    assert_eq!(exact.len(), 1);
    let should_delivery = Selection {
        areas: vec![Area::Delivery],
        level: Some(Level::Should),
        ..Selection::default()
    }
    .apply(all.clone());
    assert!(!should_delivery.is_empty());
    assert!(
        should_delivery
            .iter()
            .all(|c| c.area == Area::Delivery && c.level == Level::Should)
    );
    assert!(
        all.iter()
            .filter(|c| c.area == Area::Durability)
            .all(|c| c.needs.contains(&Need::Restart))
    );
}

fn outcome(id: &'static str, level: Level, status: Status) -> Outcome {
    Outcome {
        id,
        area: Area::Metadata,
        level,
        source: "reference §2",
        sentence: "A <sentence> & more.",
        status,
        millis: 5,
    }
}

#[test]
fn only_must_failures_fail_the_run_and_reports_carry_them() {
    let failure = Failure {
        expected: "200 \"ok\"".into(),
        actual: "500 <boom>".into(),
        reproduce: vec!["curl -X GET 'https://x/y?a=1&b=2'".into()],
    };
    let mut report = Report {
        target: "https://localhost:8444".into(),
        profile: "ace".into(),
        outcomes: vec![
            outcome("metadata.a", Level::Must, Status::Passed),
            outcome("metadata.b", Level::Should, Status::Failed(failure.clone())),
            outcome(
                "metadata.c",
                Level::Must,
                Status::Skipped {
                    reason: "no proxy".into(),
                },
            ),
        ],
        millis: 10,
    };
    assert!(report.passed(), "a SHOULD failure does not fail the run");
    assert!(!report.passed_strict(), "but it fails a strict run");
    let xml = report.junit();
    assert!(
        xml.contains("tests=\"3\" failures=\"1\" skipped=\"1\""),
        "{xml}"
    );
    assert!(xml.contains("<failure type=\"SHOULD\""), "{xml}");
    assert!(xml.contains("500 &lt;boom&gt;"), "{xml}");
    assert!(xml.contains("a=1&amp;b=2"), "{xml}");
    assert!(!xml.contains("<boom>"));
    report.outcomes[0].status = Status::Failed(failure);
    assert!(!report.passed());
    let json = report.json();
    assert_eq!(json["passed"], false);
    assert_eq!(json["checks"][0]["status"], "failed");
    assert_eq!(json["checks"][0]["expected"], "200 \"ok\"");
    assert_eq!(json["checks"][2]["status"], "skipped");
    let summary = report.summary();
    assert!(summary.contains("FAILED"), "{summary}");
}
