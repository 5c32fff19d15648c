//! ACE's kinds as Kubernetes objects: what the Kubernetes resource API on the admin listener
//! decides (the real `kubectl` drives it). Each kind keeps its own state where it always did;
//! this module adds what Kubernetes keeps about every object (uid, resourceVersion,
//! generation, creation time, labels and annotations as sent), the write modes kubectl uses
//! (create, replace, merge patch, server-side apply), `Status` refusals and `Table` output.

mod merge;
mod status;
mod table;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub use merge::merge_patch;
pub use status::{KubeError, deleted};
pub use table::{human_age, table};

use crate::time::Timestamp;

/// A kind served by the Kubernetes resource API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// `remoteenvironments.applicationconnector.kyma-project.io` (cluster-wide).
    RemoteEnvironment,
    /// `environmentmappings.applicationconnector.kyma-project.io`.
    EnvironmentMapping,
    /// `eventactivations.applicationconnector.kyma-project.io`.
    EventActivation,
    /// `subscriptions.eventing.kyma.cx`.
    Subscription,
    /// `serviceinstances.servicecatalog.k8s.io`.
    ServiceInstance,
    /// `servicebindings.servicecatalog.k8s.io`.
    ServiceBinding,
    /// `serviceclasses.servicecatalog.k8s.io`: the catalog, read-only.
    ServiceClass,
}

/// How the API names and scopes a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// The kind.
    pub id: Kind,
    /// `kind:`.
    pub kind: &'static str,
    /// API group.
    pub group: &'static str,
    /// API version in the group.
    pub version: &'static str,
    /// Plural resource name (the path segment).
    pub plural: &'static str,
    /// Singular name.
    pub singular: &'static str,
    /// Short names (`kubectl get em`).
    pub short_names: &'static [&'static str],
    /// Namespaced (false: cluster-wide).
    pub namespaced: bool,
    /// Only get and list.
    pub read_only: bool,
}

const APPLICATION_CONNECTOR: &str = "applicationconnector.kyma-project.io";
const EVENTING: &str = "eventing.kyma.cx";
const SERVICE_CATALOG: &str = "servicecatalog.k8s.io";

impl Kind {
    /// Every kind, in the order discovery lists them.
    pub const ALL: [Kind; 7] = [
        Kind::RemoteEnvironment,
        Kind::EnvironmentMapping,
        Kind::EventActivation,
        Kind::Subscription,
        Kind::ServiceInstance,
        Kind::ServiceBinding,
        Kind::ServiceClass,
    ];

    /// Its names and scope.
    pub const fn info(self) -> KindInfo {
        let (kind, group, version, plural, singular, short_names, namespaced, read_only): (
            _,
            _,
            _,
            _,
            _,
            &'static [&'static str],
            _,
            _,
        ) = match self {
            Kind::RemoteEnvironment => (
                "RemoteEnvironment",
                APPLICATION_CONNECTOR,
                "v1alpha1",
                "remoteenvironments",
                "remoteenvironment",
                &["re"],
                false,
                false,
            ),
            Kind::EnvironmentMapping => (
                "EnvironmentMapping",
                APPLICATION_CONNECTOR,
                "v1alpha1",
                "environmentmappings",
                "environmentmapping",
                &["em"],
                true,
                false,
            ),
            Kind::EventActivation => (
                "EventActivation",
                APPLICATION_CONNECTOR,
                "v1alpha1",
                "eventactivations",
                "eventactivation",
                &["ea"],
                true,
                false,
            ),
            Kind::Subscription => (
                "Subscription",
                EVENTING,
                "v1alpha1",
                "subscriptions",
                "subscription",
                &["sub"],
                true,
                false,
            ),
            Kind::ServiceInstance => (
                "ServiceInstance",
                SERVICE_CATALOG,
                "v1beta1",
                "serviceinstances",
                "serviceinstance",
                &[],
                true,
                false,
            ),
            Kind::ServiceBinding => (
                "ServiceBinding",
                SERVICE_CATALOG,
                "v1beta1",
                "servicebindings",
                "servicebinding",
                &[],
                true,
                false,
            ),
            Kind::ServiceClass => (
                "ServiceClass",
                SERVICE_CATALOG,
                "v1beta1",
                "serviceclasses",
                "serviceclass",
                &[],
                true,
                true,
            ),
        };
        KindInfo {
            id: self,
            kind,
            group,
            version,
            plural,
            singular,
            short_names,
            namespaced,
            read_only,
        }
    }

    /// The kind served at `/apis/{group}/{version}/.../{plural}`.
    pub fn by_path(group: &str, version: &str, plural: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| {
            let i = k.info();
            i.group == group && i.version == version && i.plural == plural
        })
    }

    /// The kind any of kubectl's names for it names (`Subscription`, `subscription`,
    /// `subscriptions`, `sub`), in any case.
    pub fn from_name(name: &str) -> Option<Kind> {
        let name = name.to_ascii_lowercase();
        Kind::ALL.into_iter().find(|k| {
            let i = k.info();
            name == i.singular || name == i.plural || i.short_names.contains(&name.as_str())
        })
    }

    /// The kinds of one group version, for discovery.
    pub fn of_group_version(group: &str, version: &str) -> impl Iterator<Item = Kind> {
        let (group, version) = (group.to_owned(), version.to_owned());
        Kind::ALL.into_iter().filter(move |k| {
            let i = k.info();
            i.group == group && i.version == version
        })
    }
}

impl KindInfo {
    /// `apiVersion:` of its objects.
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// One object: kind, namespace (empty for cluster-wide kinds) and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace, empty for a cluster-wide kind.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// The key of `kind`'s object `name` in `namespace` ("" for a cluster-wide kind).
    pub fn new(kind: Kind, namespace: &str, name: &str) -> ObjectKey {
        ObjectKey {
            kind,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }
    }
}

/// What Kubernetes keeps about every object besides its spec and status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.resourceVersion`, from one counter over all objects.
    pub resource_version: u64,
    /// `metadata.generation`: 1 at creation, +1 on each change of the spec.
    pub generation: u64,
    /// `metadata.creationTimestamp`.
    pub created: Timestamp,
    /// `metadata.labels`, as sent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`, as sent (kubectl's last applied configuration among them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The metadata of every object written through the Kubernetes API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KubeState {
    /// Live objects' metadata. An object made through ACE's own admin API has none until
    /// the Kubernetes API writes it.
    pub objects: BTreeMap<ObjectKey, ObjectMeta>,
    /// The highest resourceVersion handed out.
    pub revision: u64,
}

impl KubeState {
    /// Metadata of `key` set (`Some`) or forgotten (`None`).
    pub fn apply(&mut self, key: &ObjectKey, meta: Option<&ObjectMeta>) {
        match meta {
            Some(meta) => {
                self.revision = self.revision.max(meta.resource_version);
                self.objects.insert(key.clone(), meta.clone());
            }
            None => {
                self.objects.remove(key);
            }
        }
    }

    /// Forgets the metadata of an object that was deleted (by any API).
    pub fn forget(&mut self, kind: Kind, namespace: &str, name: &str) {
        self.objects.remove(&ObjectKey::new(kind, namespace, name));
    }
}

/// How a write treats what exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteMode {
    /// `POST`: the name must be free (409 AlreadyExists).
    Create,
    /// `PUT`: the object must exist; a `metadata.resourceVersion` in the body must be current.
    Replace,
    /// `PATCH` with `application/merge-patch+json` (RFC 7386) on an existing object.
    MergePatch,
    /// `PATCH` with `application/apply-patch+yaml` (server-side apply, one manager): create,
    /// or merge into what exists.
    Apply,
}

/// A request of the Kubernetes resource API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum KubeRequest {
    /// Read one object; `table`: as a `Table` (`kubectl get`).
    Get {
        /// Kind.
        kind: Kind,
        /// Namespace ("" for cluster-wide kinds).
        namespace: String,
        /// Name.
        name: String,
        /// Answer a `meta.k8s.io/v1` Table.
        table: bool,
    },
    /// Read the objects of a kind in a namespace, or in all.
    List {
        /// Kind.
        kind: Kind,
        /// `None`: every namespace.
        namespace: Option<String>,
        /// Answer a `meta.k8s.io/v1` Table.
        table: bool,
    },
    /// Create, replace or patch.
    Write {
        /// Kind.
        kind: Kind,
        /// Namespace ("" for cluster-wide kinds).
        namespace: String,
        /// The path's name (`None` for a create, which names the object in its body).
        name: Option<String>,
        /// How to treat what exists.
        mode: WriteMode,
        /// The object, or the patch, as JSON.
        #[serde(with = "crate::wire::base64_bytes")]
        body: Vec<u8>,
    },
    /// Delete one object.
    Delete {
        /// Kind.
        kind: Kind,
        /// Namespace ("" for cluster-wide kinds).
        namespace: String,
        /// Name.
        name: String,
    },
}

/// `object` (as ACE's own API renders it) with the Kubernetes metadata of `meta`: apiVersion,
/// kind, name, namespace, uid, resourceVersion, generation, creationTimestamp, labels and
/// annotations. An object never written through the Kubernetes API has a uid derived from its
/// key, resourceVersion "0", generation 1 and no creation time.
pub fn decorate(key: &ObjectKey, mut object: Value, meta: Option<&ObjectMeta>) -> Value {
    let info = key.kind.info();
    if !object.is_object() {
        object = json!({});
    }
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), json!(key.name));
    if info.namespaced {
        metadata.insert("namespace".into(), json!(key.namespace));
    }
    match meta {
        Some(meta) => {
            metadata.insert("uid".into(), json!(meta.uid));
            metadata.insert(
                "resourceVersion".into(),
                json!(meta.resource_version.to_string()),
            );
            metadata.insert("generation".into(), json!(meta.generation));
            metadata.insert(
                "creationTimestamp".into(),
                json!(rfc3339_seconds(meta.created)),
            );
            if !meta.labels.is_empty() {
                metadata.insert("labels".into(), json!(meta.labels));
            }
            if !meta.annotations.is_empty() {
                metadata.insert("annotations".into(), json!(meta.annotations));
            }
        }
        None => {
            metadata.insert("uid".into(), json!(derived_uid(key)));
            metadata.insert("resourceVersion".into(), json!("0"));
            metadata.insert("generation".into(), json!(1));
            metadata.insert("creationTimestamp".into(), Value::Null);
        }
    }
    if let Value::Object(o) = &mut object {
        o.insert("apiVersion".into(), json!(info.api_version()));
        o.insert("kind".into(), json!(info.kind));
        o.insert("metadata".into(), Value::Object(metadata));
    }
    object
}

/// `2026-12-05T21:10:48Z`: Kubernetes' timestamps have whole seconds.
pub fn rfc3339_seconds(t: Timestamp) -> String {
    let secs = Timestamp::from_unix_millis(t.as_unix_millis() / 1000 * 1000);
    secs.to_rfc3339().replace(".000Z", "Z")
}

/// A uid for an object that has no recorded one: a UUID-shaped digest of its key, stable.
fn derived_uid(key: &ObjectKey) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(format!(
        "{}/{}/{}",
        key.kind.info().plural,
        key.namespace,
        key.name
    ));
    let h: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The string maps of `metadata.labels` or `metadata.annotations` in `object`; a field that
/// is not a map of strings is refused with the field's path.
pub fn string_map(object: &Value, field: &str) -> Result<BTreeMap<String, String>, String> {
    match object.pointer(&format!("/metadata/{field}")) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|_| format!("metadata.{field}: Invalid value: must map strings to strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_found_by_their_path_and_named_as_kubectl_expects() {
        for kind in Kind::ALL {
            let i = kind.info();
            assert_eq!(Kind::by_path(i.group, i.version, i.plural), Some(kind));
            assert!(i.plural.starts_with(i.singular), "{}", i.plural);
            assert_eq!(i.singular, i.kind.to_ascii_lowercase());
        }
        assert_eq!(Kind::by_path(EVENTING, "v1", "subscriptions"), None);
        for name in ["Subscription", "subscriptions", "SUB"] {
            assert_eq!(Kind::from_name(name), Some(Kind::Subscription), "{name}");
        }
        assert_eq!(Kind::from_name("em"), Some(Kind::EnvironmentMapping));
        assert_eq!(Kind::from_name("function"), None);
        assert_eq!(
            Kind::of_group_version(APPLICATION_CONNECTOR, "v1alpha1").count(),
            3
        );
    }

    #[test]
    fn decorated_objects_carry_kubernetes_metadata() {
        let key = ObjectKey {
            kind: Kind::Subscription,
            namespace: "stage".into(),
            name: "s".into(),
        };
        let meta = ObjectMeta {
            uid: "u".into(),
            resource_version: 7,
            generation: 2,
            created: Timestamp::from_unix_millis(1_700_000_000_123),
            labels: [("a".to_owned(), "b".to_owned())].into(),
            annotations: BTreeMap::new(),
        };
        let object = decorate(&key, json!({"spec": {"x": 1}}), Some(&meta));
        assert_eq!(object["apiVersion"], "eventing.kyma.cx/v1alpha1");
        assert_eq!(object["metadata"]["resourceVersion"], "7");
        assert_eq!(object["metadata"]["namespace"], "stage");
        assert_eq!(
            object["metadata"]["creationTimestamp"],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(object["metadata"]["labels"]["a"], "b");
        assert!(object["metadata"].get("annotations").is_none());
        let bare = decorate(&key, json!({"spec": {}}), None);
        assert_eq!(bare["metadata"]["resourceVersion"], "0");
        assert_eq!(
            bare["metadata"]["uid"],
            decorate(&key, json!({}), None)["metadata"]["uid"]
        );
        assert_eq!(bare["metadata"]["uid"].as_str().map(str::len), Some(36));
    }
}
