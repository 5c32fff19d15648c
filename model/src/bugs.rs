//! The bug zoo: named, deliberately wrong behaviours, so that the simulation and the
//! conformance suite can prove that they catch each one.
//!
//! The names, areas and descriptions are always compiled (`ace-sim bugs` lists them in every
//! build). Switching a bug on is not: a [`Bugs`] set can hold a bug only when `ace-model` is
//! built with the cargo feature `bug-zoo`, and the wrong behaviours themselves are compiled
//! only then. In a default build every [`Bugs`] is empty, [`Bugs::has`] is a constant `false`
//! and no wrong code exists.
//!
//! The set lives in [`crate::Config::bugs`] (never serialized): the model consults it, and so
//! do the parts of the shell that decide on their own (the driver's commit order, the proxy's
//! token cache).

use std::fmt;
use std::str::FromStr;

/// Whether `bug` (a [`Bug`] variant's name) is on in `bugs`. Without the feature `bug-zoo`
/// this is the literal `false`: the wrong branch it guards is dead code the compiler drops.
macro_rules! bug_on {
    ($bugs:expr, $bug:ident) => {{
        #[cfg(feature = "bug-zoo")]
        {
            $bugs.has($crate::bugs::Bug::$bug)
        }
        #[cfg(not(feature = "bug-zoo"))]
        {
            let _ = &$bugs;
            false
        }
    }};
}
pub(crate) use bug_on;

/// Whether this build can switch bugs on (`ace-model` built with the feature `bug-zoo`).
pub const INJECTABLE: bool = cfg!(feature = "bug-zoo");

/// One deliberately wrong behaviour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bug {
    /// The configuration URL's token is not consumed.
    TokenReusable,
    /// Expired tokens are accepted.
    TokenTtlIgnored,
    /// The gateway does not check that the certificate is for the RE in the path.
    CnNotChecked,
    /// The gateway accepts certificates of deleted REs.
    DeletedReAccepted,
    /// Duplicate service identifiers are accepted.
    IdentifierNotUnique,
    /// OAuth credentials are returned unmasked.
    SecretReturned,
    /// Events are acknowledged before they are durable.
    AckBeforeDurable,
    /// A 5xx answer counts as delivered.
    NoRetryOn5xx,
    /// Events are pushed to subscriptions that are not activated.
    DeliverInactive,
    /// `max_inflight` is not enforced.
    MaxInflightIgnored,
    /// Updating a subscription drops what it is owed.
    LossOnSubscriptionUpdate,
    /// When a subscription's window of loaded events moves on, one owed event is skipped.
    BacklogWindowForgets,
    /// The proxy's OAuth tokens never expire from its cache.
    TokenCachedForever,
    /// The egress policy is switched off.
    ProxyEgressOpen,
    /// A replica's egress refuses its own listeners but not the other replicas'.
    PeerEgressOpen,
    /// A follower's forwarded-request ids repeat after it restarts under its name.
    ForwardIdsReused,
    /// A leader answers before the log acknowledged the append.
    AckBeforeQuorum,
    /// Followers number their forwarded requests alike, so their ids collide at the leader.
    ForwardIdsShared,
    /// The log's appends are not guarded by the sequence their writer last saw.
    UnguardedAppend,
    /// A leader keeps leading after its lease lapsed by its own clock.
    LeaseOutlived,
}

impl Bug {
    /// Every bug, in the order they are listed.
    pub const ALL: [Bug; 20] = [
        Bug::TokenReusable,
        Bug::TokenTtlIgnored,
        Bug::CnNotChecked,
        Bug::DeletedReAccepted,
        Bug::IdentifierNotUnique,
        Bug::SecretReturned,
        Bug::AckBeforeDurable,
        Bug::NoRetryOn5xx,
        Bug::DeliverInactive,
        Bug::MaxInflightIgnored,
        Bug::LossOnSubscriptionUpdate,
        Bug::BacklogWindowForgets,
        Bug::TokenCachedForever,
        Bug::ProxyEgressOpen,
        Bug::PeerEgressOpen,
        Bug::ForwardIdsReused,
        Bug::AckBeforeQuorum,
        Bug::ForwardIdsShared,
        Bug::UnguardedAppend,
        Bug::LeaseOutlived,
    ];

    /// The kebab-case name (`--inject-bug NAME`, `ace-sim run --bug NAME`).
    pub const fn name(self) -> &'static str {
        match self {
            Bug::TokenReusable => "token-reusable",
            Bug::TokenTtlIgnored => "token-ttl-ignored",
            Bug::CnNotChecked => "cn-not-checked",
            Bug::DeletedReAccepted => "deleted-re-accepted",
            Bug::IdentifierNotUnique => "identifier-not-unique",
            Bug::SecretReturned => "secret-returned",
            Bug::AckBeforeDurable => "ack-before-durable",
            Bug::NoRetryOn5xx => "no-retry-on-5xx",
            Bug::DeliverInactive => "deliver-inactive",
            Bug::MaxInflightIgnored => "max-inflight-ignored",
            Bug::LossOnSubscriptionUpdate => "loss-on-subscription-update",
            Bug::BacklogWindowForgets => "backlog-window-forgets",
            Bug::TokenCachedForever => "token-cached-forever",
            Bug::ProxyEgressOpen => "proxy-egress-open",
            Bug::PeerEgressOpen => "peer-egress-open",
            Bug::ForwardIdsReused => "forward-ids-reused",
            Bug::AckBeforeQuorum => "ack-before-quorum",
            Bug::ForwardIdsShared => "forward-ids-shared",
            Bug::UnguardedAppend => "unguarded-append",
            Bug::LeaseOutlived => "lease-outlived",
        }
    }

    /// The part of ACE it breaks: `tokens`, `certificates`, `metadata`, `events`, `proxy` or
    /// `replicas` (a deployment of several replicas on one log; those bugs show only there).
    pub const fn area(self) -> &'static str {
        match self {
            Bug::TokenReusable | Bug::TokenTtlIgnored => "tokens",
            Bug::CnNotChecked | Bug::DeletedReAccepted => "certificates",
            Bug::IdentifierNotUnique | Bug::SecretReturned => "metadata",
            Bug::AckBeforeDurable
            | Bug::NoRetryOn5xx
            | Bug::DeliverInactive
            | Bug::MaxInflightIgnored
            | Bug::LossOnSubscriptionUpdate
            | Bug::BacklogWindowForgets => "events",
            Bug::TokenCachedForever | Bug::ProxyEgressOpen => "proxy",
            Bug::PeerEgressOpen
            | Bug::ForwardIdsReused
            | Bug::AckBeforeQuorum
            | Bug::ForwardIdsShared
            | Bug::UnguardedAppend
            | Bug::LeaseOutlived => "replicas",
        }
    }

    /// What goes wrong, in one sentence.
    pub const fn description(self) -> &'static str {
        match self {
            Bug::TokenReusable => {
                "A configuration or CSR URL's token is not consumed: info hands out the same token for the CSR and it stays live after the certificate, so a used URL works again."
            }
            Bug::TokenTtlIgnored => "Expired tokens are accepted by info and client-certs.",
            Bug::CnNotChecked => {
                "The gateway accepts a valid client certificate of one RE on another RE's paths."
            }
            Bug::DeletedReAccepted => {
                "The gateway skips the incarnation check, so a certificate of a deleted (and recreated) RE is still accepted."
            }
            Bug::IdentifierNotUnique => {
                "Registering a service with an identifier already used in the RE succeeds instead of answering 409."
            }
            Bug::SecretReturned => {
                "GET of a service returns its OAuth clientId and clientSecret unmasked."
            }
            Bug::AckBeforeDurable => {
                "Publish answers are released before the event is synced, and event records wait in memory until the next write of another kind, so a crash right after a 200 loses the event."
            }
            Bug::NoRetryOn5xx => {
                "A 5xx answer from a subscriber counts as delivered and is never retried."
            }
            Bug::DeliverInactive => {
                "Events are pushed to subscriptions whose namespace has no EventActivation for the source."
            }
            Bug::MaxInflightIgnored => {
                "A subscription gets every ready push at once, more than its max_inflight."
            }
            Bug::BacklogWindowForgets => {
                "When a subscription's window of loaded events moves on through a large backlog, it skips one owed event, which is never pushed."
            }
            Bug::LossOnSubscriptionUpdate => {
                "Updating a subscription recreates it and drops its pending deliveries (Kyma 0.5's own quirk)."
            }
            Bug::TokenCachedForever => {
                "The proxy's OAuth token cache ignores expires_in and never refreshes a token by time."
            }
            Bug::ProxyEgressOpen => {
                "The egress policy is switched off: a registered API, its OAuth server or a subscriber may be any address, ACE's own admin and connector APIs included."
            }
            Bug::PeerEgressOpen => {
                "A replica's egress policy refuses its own listeners but not the other replicas' (it never reads the members' record), so a registered API can point one replica's proxy at another replica's admin or connector API."
            }
            Bug::ForwardIdsReused => {
                "A follower numbers its forwarded requests from the same start each time it starts under its name, so the leader, which keeps the answers to recent ids, answers a restarted follower's requests with the answers to its earlier ones."
            }
            Bug::AckBeforeQuorum => {
                "A leading replica releases its answers before the log acknowledged their append (before a quorum of NATS servers has it), so a leader that crashes mid-append loses writes it confirmed."
            }
            Bug::ForwardIdsShared => {
                "Forwarded-request ids are unique on each follower but not across them (a count, without the replica's name), so the leader answers one follower's request with the answer to another's."
            }
            Bug::UnguardedAppend => {
                "Appends to the log are not guarded by the sequence their writer last saw, so a leader cut off the log that appends after another replica took over forks the replicas' states."
            }
            Bug::LeaseOutlived => {
                "A leader trusts its lease until the lease task gives up renewing it, not until it lapses by its own clock, so a leader cut off the log keeps starting pushes while another replica leads and pushes the same events."
            }
        }
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a bug's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownBug(pub String);

impl fmt::Display for UnknownBug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown bug {:?}; the bugs are: ", self.0)?;
        for (i, bug) in Bug::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(bug.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownBug {}

impl FromStr for Bug {
    type Err = UnknownBug;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Bug::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| UnknownBug(s.to_owned()))
    }
}

/// A set of bugs, in the order of [`Bug::ALL`]. `Default` is the empty set.
///
/// Only a build with the feature `bug-zoo` can put a bug in it ([`Bugs::insert`],
/// [`Bugs::with`], `FromIterator`); in any other build every set is empty.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Bugs(u32);

impl Bugs {
    /// No bug.
    pub const NONE: Bugs = Bugs(0);

    /// Whether `bug` is on. Always `false` without the feature `bug-zoo`.
    #[inline]
    pub const fn has(self, bug: Bug) -> bool {
        #[cfg(feature = "bug-zoo")]
        {
            self.0 & bug.bit() != 0
        }
        #[cfg(not(feature = "bug-zoo"))]
        {
            let _ = (self, bug);
            false
        }
    }

    /// Whether no bug is on.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many bugs are on.
    pub const fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The bugs that are on, in the order of [`Bug::ALL`].
    pub fn iter(self) -> impl Iterator<Item = Bug> {
        Bug::ALL.into_iter().filter(move |&b| self.0 & b.bit() != 0)
    }

    /// Switches `bug` on.
    #[cfg(feature = "bug-zoo")]
    pub fn insert(&mut self, bug: Bug) {
        self.0 |= bug.bit();
    }

    /// This set with `bug` on too.
    #[cfg(feature = "bug-zoo")]
    #[must_use]
    pub const fn with(self, bug: Bug) -> Bugs {
        Bugs(self.0 | bug.bit())
    }
}

#[cfg(feature = "bug-zoo")]
impl FromIterator<Bug> for Bugs {
    fn from_iter<I: IntoIterator<Item = Bug>>(iter: I) -> Self {
        let mut bugs = Bugs::NONE;
        for bug in iter {
            bugs.insert(bug);
        }
        bugs
    }
}

#[cfg(feature = "bug-zoo")]
impl From<Bug> for Bugs {
    fn from(bug: Bug) -> Self {
        Bugs::NONE.with(bug)
    }
}

impl fmt::Debug for Bugs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(Bug::name)).finish()
    }
}

/// The names, comma-separated; `none` for the empty set.
impl fmt::Display for Bugs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        for (i, bug) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(bug.name())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for bug in Bug::ALL {
            assert_eq!(bug.name().parse::<Bug>(), Ok(bug));
            assert!(seen.insert(bug.name()), "{} twice", bug.name());
            assert!(
                [
                    "tokens",
                    "certificates",
                    "metadata",
                    "events",
                    "proxy",
                    "replicas"
                ]
                .contains(&bug.area())
            );
            assert!(bug.description().ends_with('.'));
            assert!(
                bug.name()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
        }
        assert_eq!(seen.len(), Bug::ALL.len());
        // Every variant is in ALL, in declaration order (the bit of each is its position).
        for (i, bug) in Bug::ALL.iter().enumerate() {
            assert_eq!(*bug as usize, i);
        }
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let e = "no-such-bug".parse::<Bug>().unwrap_err().to_string();
        assert!(e.starts_with("unknown bug \"no-such-bug\""), "{e}");
        for bug in Bug::ALL {
            assert!(e.contains(bug.name()), "{e}");
        }
    }

    #[test]
    fn the_empty_set_has_no_bug() {
        let none = Bugs::default();
        assert!(none.is_empty());
        assert_eq!(none.len(), 0);
        assert_eq!(none.to_string(), "none");
        assert!(Bug::ALL.iter().all(|&b| !none.has(b)));
    }

    #[cfg(feature = "bug-zoo")]
    #[test]
    fn a_set_keeps_the_order_of_all() {
        let bugs: Bugs = [
            Bug::TokenCachedForever,
            Bug::TokenReusable,
            Bug::NoRetryOn5xx,
        ]
        .into_iter()
        .collect();
        assert_eq!(
            bugs.iter().collect::<Vec<_>>(),
            [
                Bug::TokenReusable,
                Bug::NoRetryOn5xx,
                Bug::TokenCachedForever
            ]
        );
        assert_eq!(
            bugs.to_string(),
            "token-reusable,no-retry-on-5xx,token-cached-forever"
        );
        assert!(bugs.has(Bug::NoRetryOn5xx) && !bugs.has(Bug::CnNotChecked));
        assert_eq!(bugs.len(), 3);
    }
}
