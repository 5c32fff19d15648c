//! Serde helpers for the internal channel between replicas: a replica forwards a
//! [`crate::Request`] to another one as JSON and gets the [`crate::Reply`] back. That form
//! must give back exactly the value that was sent, so where a type's own serde form is meant
//! for clients or the log (and is lossy, or cannot be read back), the channel uses one of the
//! faithful forms here, by `#[serde(with = ...)]` on the field that holds it.

use std::fmt;

use base64::Engine as _;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Bytes (request bodies) as one standard base64 string, not as an array of numbers: about
/// 4/3 of their size in JSON instead of up to 4 bytes per byte.
pub(crate) mod base64_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Base64;
        impl Visitor<'_> for Base64 {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a standard base64 string")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(E::custom)
            }
        }
        d.deserialize_str(Base64)
    }
}

/// Every `&'static str` a refusal can hold: the kinds of resource of [`crate::AdminError`] and
/// [`crate::bus::ResourceError`], the fields of [`crate::bus::PublishError`] and
/// [`crate::bus::EventServiceError`], the fields of
/// [`crate::registry::MetadataError::EgressRefused`]. A `&'static str` cannot be read from
/// a message that does not live forever, so reading one gives back the entry of this table
/// with the same text. A refusal built with a text that is not here cannot be read back:
/// add it here (the channel's tests list these values too).
const STATIC_NAMES: &[&str] = &[
    // Kinds of resource (`AdminError`, `ResourceError`).
    "namespace",
    "RemoteEnvironment",
    "EnvironmentMapping",
    "ServiceInstance",
    "ServiceBinding",
    "EventActivation",
    "Subscription",
    // Fields of an event (`PublishError`, `EventServiceError`).
    "source-id",
    "event-type",
    "event-type-version",
    "event-id",
    "event-time",
    "data",
    // URLs of a service definition (`MetadataError::EgressRefused`).
    "targetUrl",
    "credentials.oauth.url",
    // What a name must be (`ResourceError::InvalidName`).
    "label",
    "subdomain",
];

/// A `&'static str` as its text, read back as the entry of [`STATIC_NAMES`] with that text
/// (an unknown text is an error, not a leak).
///
/// The fields that use it spell their type `&'static std::primitive::str`: serde borrows a
/// field spelled `&str` from the input, which for `'static` would make the whole type
/// readable only from input that lives forever. The type is the same.
pub(crate) mod static_str {
    use super::*;

    // `with` passes `&&'static str`.
    #[allow(clippy::trivially_copy_pass_by_ref)]
    pub fn serialize<S: Serializer>(name: &&'static str, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(name)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
        struct Name;
        impl Visitor<'_> for Name {
            type Value = &'static str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a known kind or field name")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<&'static str, E> {
                STATIC_NAMES
                    .iter()
                    .find(|known| **known == text)
                    .copied()
                    .ok_or_else(|| E::custom(format!("unknown kind or field name {text:?}")))
            }
        }
        d.deserialize_str(Name)
    }
}

/// [`crate::bus::DeliveryStats`] in full. Its own `Serialize` is the status shown to clients
/// (`status.delivery`, `/metrics`), whose `backoff` holds RFC 3339 text (empty for a time
/// past year 9999) and cannot be read back; the channel carries the fields as they are.
pub(crate) mod delivery_figures {
    use super::*;
    use crate::bus::{BackoffReason, BackoffStatus, DeliveryStats, ResourceKey};
    use crate::time::Timestamp;

    #[derive(Serialize, Deserialize)]
    #[serde(remote = "DeliveryStats")]
    struct DeliveryStatsDef {
        pending: u64,
        in_flight: u64,
        delivered: u64,
        retried: u64,
        dead_lettered: u64,
        over_limit: u64,
        discarded: u64,
        #[serde(with = "option_backoff")]
        backoff: Option<BackoffStatus>,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(remote = "BackoffStatus")]
    struct BackoffStatusDef {
        since: Timestamp,
        reason: BackoffReason,
        failures: u32,
        next_probe: Option<Timestamp>,
    }

    #[derive(Serialize, Deserialize)]
    struct Stats(#[serde(with = "DeliveryStatsDef")] DeliveryStats);

    #[derive(Serialize, Deserialize)]
    struct Backoff(#[serde(with = "BackoffStatusDef")] BackoffStatus);

    mod option_backoff {
        use super::*;

        pub fn serialize<S: Serializer>(
            backoff: &Option<BackoffStatus>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            backoff.map(Backoff).serialize(s)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<BackoffStatus>, D::Error> {
            Ok(Option::<Backoff>::deserialize(d)?.map(|Backoff(b)| b))
        }
    }

    pub fn serialize<S: Serializer>(
        figures: &[(ResourceKey, DeliveryStats)],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(figures.iter().map(|(key, stats)| (key, Stats(*stats))))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(ResourceKey, DeliveryStats)>, D::Error> {
        let figures = Vec::<(ResourceKey, Stats)>::deserialize(d)?;
        Ok(figures
            .into_iter()
            .map(|(key, Stats(stats))| (key, stats))
            .collect())
    }
}
