//! Every check of the suite, by area.

pub mod delivery;
pub mod durability;
pub mod events;
pub mod isolation;
pub mod metadata;
pub mod model;
pub mod onboarding;
pub mod proxy;

use crate::check::Check;

/// All checks, in report order.
pub fn all() -> Vec<Check> {
    let mut all = Vec::new();
    all.extend(onboarding::checks());
    all.extend(isolation::checks());
    all.extend(metadata::checks());
    all.extend(events::checks());
    all.extend(delivery::checks());
    all.extend(proxy::checks());
    all.extend(durability::checks());
    all.extend(model::checks());
    all
}
