//! Durable records: the only way state changes, and the only thing storage keeps.
//!
//! Every accepted change is one record. The model applies it to its state and queues it; the
//! shell makes it durable before it releases the reply. Replaying the records in order into a
//! fresh model rebuilds the same state. The serialized form (JSON, tagged by `type`) is the
//! storage format; storage only appends, syncs and replays.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::bus::BusRecord;
use crate::connector::{IssuedCertificate, TokenDigest};
use crate::registry::RegisteredService;
use crate::time::Timestamp;

/// One durable change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Record {
    /// A RemoteEnvironment was created; `incarnation` tells it apart from earlier ones of the
    /// same name.
    RemoteEnvironmentCreated {
        /// Name.
        name: String,
        /// Unique among all REs ever created.
        incarnation: u64,
        /// `spec.description`.
        description: String,
        /// `spec.labels`.
        labels: BTreeMap<String, String>,
        /// `spec.skipVerify` (absent in older records: false).
        #[serde(default)]
        skip_verify: bool,
    },
    /// A RemoteEnvironment's description, labels or skipVerify changed.
    RemoteEnvironmentUpdated {
        /// Name.
        name: String,
        /// `spec.description`.
        description: String,
        /// `spec.labels`.
        labels: BTreeMap<String, String>,
        /// `spec.skipVerify` (absent in older records: false).
        #[serde(default)]
        skip_verify: bool,
    },
    /// A RemoteEnvironment was deleted, with its token, services and the power of its
    /// certificates.
    RemoteEnvironmentDeleted {
        /// Name.
        name: String,
    },
    /// An EnvironmentMapping was created.
    MappingCreated {
        /// The namespace that sees the RE.
        namespace: String,
        /// The RE.
        re: String,
    },
    /// An EnvironmentMapping was deleted.
    MappingDeleted {
        /// The namespace.
        namespace: String,
        /// The RE.
        re: String,
    },
    /// A token was issued for an RE, replacing any earlier one.
    TokenIssued {
        /// The RE.
        re: String,
        /// Digest of the token; the token itself is never stored.
        digest: TokenDigest,
        /// End of validity.
        expires_at: Timestamp,
    },
    /// A client certificate was issued; the RE's token is consumed.
    CertificateIssued(IssuedCertificate),
    /// A service was registered.
    ServiceRegistered {
        /// The RE.
        re: String,
        /// The service.
        service: Box<RegisteredService>,
    },
    /// A service was replaced.
    ServiceUpdated {
        /// The RE.
        re: String,
        /// The new service.
        service: Box<RegisteredService>,
    },
    /// A service was deleted.
    ServiceDeleted {
        /// The RE.
        re: String,
        /// Its id.
        id: String,
    },
    /// A service class was provisioned into a namespace.
    InstanceProvisioned {
        /// Namespace.
        namespace: String,
        /// Instance name.
        name: String,
        /// The RE of the service.
        re: String,
        /// The service id.
        service_id: String,
    },
    /// A service instance was removed.
    InstanceDeprovisioned {
        /// Namespace.
        namespace: String,
        /// Instance name.
        name: String,
    },
    /// A ServiceBinding was created (or its key replaced).
    BindingCreated {
        /// Namespace.
        namespace: String,
        /// Binding name.
        name: String,
        /// The instance it binds.
        instance: String,
        /// Digest of the proxy access key; the key itself is never stored.
        key: TokenDigest,
    },
    /// A ServiceBinding was removed; its key no longer opens the proxy.
    BindingDeleted {
        /// Namespace.
        namespace: String,
        /// Binding name.
        name: String,
    },
    /// Incarnations up to `last` are taken (the first record of a snapshot).
    IncarnationsUsed {
        /// The highest incarnation used so far.
        last: u64,
    },
    /// A change of the Event Bus.
    Bus(BusRecord),
    /// What the Kubernetes resource API keeps about an object (uid, resourceVersion, labels,
    /// annotations, ...) was set, or forgotten (`None`).
    ObjectMeta {
        /// The object.
        key: crate::kube::ObjectKey,
        /// Its metadata.
        meta: Option<crate::kube::ObjectMeta>,
    },
    /// resourceVersions up to `last` are taken (in a snapshot, before the objects' metadata).
    ResourceVersionsUsed {
        /// The highest resourceVersion handed out so far.
        last: u64,
    },
}

/// How a stored Event Bus record begins: the tag of [`Record::Bus`].
const BUS_TAG: &[u8] = br#"{"type":"Bus""#;

impl Record {
    /// The record's stored form: exactly what `serde_json::to_vec(self)` writes.
    ///
    /// The Event Bus's records (one per accepted event and one per delivery) are written
    /// directly. Serde cannot stream a struct variant of [`BusRecord`] inside this
    /// internally tagged enum: it copies every field (the event's strings included) into a
    /// buffer of its own first, which was most of the cost of encoding an event's records.
    /// Written alone, a `BusRecord` is `{"Variant":{..}}`; here it is the same object after
    /// the tag, `{"type":"Bus","Variant":{..}}`.
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        if let Record::Bus(bus) = self {
            let mut out = Vec::with_capacity(256);
            out.extend_from_slice(BUS_TAG);
            serde_json::to_writer(&mut out, bus)?;
            // Every variant is a struct variant, so an object; anything else takes the
            // general path.
            if out.get(BUS_TAG.len()) == Some(&b'{') {
                out[BUS_TAG.len()] = b',';
                return Ok(out);
            }
        }
        serde_json::to_vec(self)
    }

    /// Reads a stored record: the same record as `serde_json::from_slice`.
    ///
    /// An Event Bus record as [`Record::to_json`] writes it, `{"type":"Bus","Variant":{..}}`,
    /// is read as the `BusRecord` `{"Variant":{..}}` directly: serde reads an internally
    /// tagged enum by first copying the whole object into a buffer of its own. Anything else,
    /// or a record that does not read that way, takes the general path (and its error).
    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Record> {
        if let Some(rest) = bytes
            .strip_prefix(BUS_TAG)
            .and_then(|rest| rest.strip_prefix(b","))
        {
            let mut bus = Vec::with_capacity(rest.len() + 1);
            bus.push(b'{');
            bus.extend_from_slice(rest);
            if let Ok(bus) = serde_json::from_slice::<BusRecord>(&bus) {
                return Ok(Record::Bus(bus));
            }
        }
        serde_json::from_slice(bytes)
    }

    /// Whether applying it may change the proxy's decisions ([`crate::proxy::ProxyTable`]):
    /// Remote Environments, their services, instances and bindings.
    pub fn affects_proxy(&self) -> bool {
        matches!(
            self,
            Record::RemoteEnvironmentCreated { .. }
                | Record::RemoteEnvironmentUpdated { .. }
                | Record::RemoteEnvironmentDeleted { .. }
                | Record::ServiceRegistered { .. }
                | Record::ServiceUpdated { .. }
                | Record::ServiceDeleted { .. }
                | Record::InstanceProvisioned { .. }
                | Record::InstanceDeprovisioned { .. }
                | Record::BindingCreated { .. }
                | Record::BindingDeleted { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Event Bus record not in the form `to_json` writes (the tag elsewhere, or broken)
    /// is read by the general path, with the general path's error.
    #[test]
    fn records_not_in_the_written_form_read_as_serde_reads_them() {
        let written = br#"{"type":"Bus","RetentionPassed":{"now":5}}"#;
        let moved = br#"{"RetentionPassed":{"now":5},"type":"Bus"}"#;
        let read = Record::from_json(written).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            Record::from_json(moved).unwrap_or_else(|e| panic!("{e}")),
            read
        );
        assert_eq!(
            read.to_json().unwrap_or_else(|e| panic!("{e}")),
            written.to_vec()
        );
        let broken = br#"{"type":"Bus","RetentionPassed":{"now":"five"}}"#;
        let fast = Record::from_json(broken)
            .map(|_| ())
            .map_err(|e| e.to_string());
        let serde = serde_json::from_slice::<Record>(broken)
            .map(|_| ())
            .map_err(|e| e.to_string());
        assert!(fast.is_err());
        assert_eq!(fast, serde);
    }
}
