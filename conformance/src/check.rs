//! Checks: each one sentence of the contract, with an id, a level and a source.

use std::fmt;

use serde::Serialize;

use crate::context::Ctx;
use crate::target::BoxFuture;

/// RFC 2119 level: a MUST failure fails the run; a SHOULD failure is reported only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// Required by the contract (the seeds, or what Kyma 0.5 does).
    Must,
    /// What a correct implementation does where Kyma 0.5 had a bug (reference: quirks).
    Should,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
        })
    }
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "must" => Ok(Level::Must),
            "should" => Ok(Level::Should),
            _ => Err(format!("level {s:?}: use must or should")),
        }
    }
}

/// The part of the contract a check belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    /// Tokens, info, CSR, certificates.
    Onboarding,
    /// Certificates open only their own RE.
    Isolation,
    /// The Metadata Service.
    Metadata,
    /// The Event Service and the publish API.
    Events,
    /// Push delivery.
    Delivery,
    /// The proxy to registered APIs and OAuth.
    Proxy,
    /// Service classes, instances and bindings.
    Catalog,
    /// Acknowledged writes survive a restart.
    Durability,
    /// The model-based phase: generated call sequences against the model.
    Model,
}

impl Area {
    /// Every area, in report order.
    pub const ALL: [Area; 9] = [
        Area::Onboarding,
        Area::Isolation,
        Area::Metadata,
        Area::Events,
        Area::Delivery,
        Area::Proxy,
        Area::Catalog,
        Area::Durability,
        Area::Model,
    ];

    /// The lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Area::Onboarding => "onboarding",
            Area::Isolation => "isolation",
            Area::Metadata => "metadata",
            Area::Events => "events",
            Area::Delivery => "delivery",
            Area::Proxy => "proxy",
            Area::Catalog => "catalog",
            Area::Durability => "durability",
            Area::Model => "model",
        }
    }
}

impl fmt::Display for Area {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Area {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Area::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = Area::ALL.iter().map(|a| a.name()).collect();
                format!("area {s:?}: one of {}", names.join(", "))
            })
    }
}

/// What a check needs of the target besides the connector and gateway.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Need {
    /// A resource adapter (admin API).
    Resources,
    /// The publish API.
    Publish,
    /// The proxy.
    Proxy,
    /// A restart command.
    Restart,
    /// A token TTL of at most 10 s.
    ShortTokenTtl,
    /// ACE's profile: an egress policy (Kyma 0.5 had none; `profiles/kyma-0.5.yaml`).
    EgressPolicy,
    /// A known backlog limit per subscription (`max_backlog_events` in the target).
    BacklogLimit,
}

/// Why a check failed: what the contract expects, what the deployment did, and how to see it
/// again.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Failure {
    /// What the contract says should have happened.
    pub expected: String,
    /// What happened.
    pub actual: String,
    /// Commands (usually `curl`) that show the behaviour.
    pub reproduce: Vec<String>,
}

impl Failure {
    /// A failure with expected and actual.
    pub fn new(expected: impl Into<String>, actual: impl Into<String>) -> Self {
        Failure {
            expected: expected.into(),
            actual: actual.into(),
            reproduce: Vec::new(),
        }
    }

    /// The suite could not even set the check up (the deployment refused a precondition).
    pub fn setup(what: impl fmt::Display) -> Self {
        Failure::new("the check's setup to succeed", format!("{what}"))
    }
}

/// What a check's body returns.
pub type CheckResult = Result<(), Failure>;

/// A check's body.
pub type CheckFn = for<'a> fn(&'a Ctx) -> BoxFuture<'a, CheckResult>;

/// One sentence of the contract.
#[derive(Clone, Copy)]
pub struct Check {
    /// Stable id, `area.topic.what`.
    pub id: &'static str,
    /// Area.
    pub area: Area,
    /// MUST or SHOULD.
    pub level: Level,
    /// Where the contract says it: seed document and section, or reference section.
    pub source: &'static str,
    /// The sentence.
    pub sentence: &'static str,
    /// What the target must offer for the check to run.
    pub needs: &'static [Need],
    /// The body.
    pub run: CheckFn,
}

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Check")
            .field("id", &self.id)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

/// Declares a check: `check!(id, Area, Level, source, sentence, [needs], body_fn)`.
#[macro_export]
macro_rules! check {
    ($id:literal, $area:ident, $level:ident, $source:literal, $sentence:literal, [$($need:ident),*], $f:path) => {
        $crate::check::Check {
            id: $id,
            area: $crate::check::Area::$area,
            level: $crate::check::Level::$level,
            source: $source,
            sentence: $sentence,
            needs: &[$($crate::check::Need::$need),*],
            run: |cx| Box::pin($f(cx)),
        }
    };
}
