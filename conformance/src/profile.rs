//! Profiles: which behaviour the suite expects where Kyma 0.5 and ACE differ.

use serde::Deserialize;

/// The checked-in list of Kyma 0.5's known divergences.
pub const KYMA_05_DIVERGENCES: &str = include_str!("../profiles/kyma-0.5.yaml");

/// Which behaviour is expected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Profile {
    /// ACE's behaviour: the documented contract, with Kyma's obvious bugs fixed.
    #[default]
    Ace,
    /// Kyma 0.5's documented behaviour, quirks included (`profiles/kyma-0.5.yaml`).
    Kyma05,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ace" => Ok(Profile::Ace),
            "kyma-0.5" => Ok(Profile::Kyma05),
            _ => Err(format!("profile {s:?}: use ace or kyma-0.5")),
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Profile::Ace => "ace",
            Profile::Kyma05 => "kyma-0.5",
        })
    }
}

/// One known divergence.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Divergence {
    /// The check id.
    pub check: String,
    /// What Kyma 0.5 does.
    pub kyma: String,
    /// Why ACE differs (or why the check adapts).
    pub reason: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    divergences: Vec<Divergence>,
}

/// The divergences of Kyma 0.5.
pub fn kyma_divergences() -> Vec<Divergence> {
    serde_yaml_ng::from_str::<File>(KYMA_05_DIVERGENCES)
        .map(|f| f.divergences)
        .unwrap_or_default()
}
