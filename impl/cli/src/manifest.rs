//! Manifests as the seeds write them for `kubectl apply`: multi-document YAML, read into
//! JSON documents, and the admin API's URL of each kind.

use serde_json::Value;

/// One manifest document, normalized.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// `kind`.
    pub kind: String,
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: Option<String>,
    /// The whole document as JSON.
    pub doc: Value,
}

/// Parses a multi-document YAML manifest as the seeds' `kubectl apply` examples write them.
/// Documents whose indentation was lost (`metadata:` and `name:` at the same level) are read
/// as if indented.
pub fn parse_manifests(text: &str) -> Result<Vec<Manifest>, String> {
    use serde::Deserialize;
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(doc)
            .map_err(|e| format!("document {}: not valid YAML: {e}", i + 1))?;
        if value.is_null() {
            continue;
        }
        let Value::Object(mut map) = value else {
            return Err(format!(
                "document {}: expected a mapping with apiVersion, kind and metadata",
                i + 1
            ));
        };
        let kind = map
            .get("kind")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("document {}: no kind", i + 1))?
            .to_owned();
        if !map.get("metadata").is_some_and(Value::is_object) {
            let mut meta = serde_json::Map::new();
            for key in ["name", "namespace", "labels"] {
                if let Some(v) = map.remove(key) {
                    meta.insert(key.into(), v);
                }
            }
            map.insert("metadata".into(), Value::Object(meta));
        }
        if !map.get("spec").is_some_and(Value::is_object) {
            let spec: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "apiVersion" | "kind" | "metadata" | "spec" | "status"
                    )
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            map.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"));
            map.insert("spec".into(), Value::Object(spec));
        }
        let name = map
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("document {} ({kind}): no metadata.name", i + 1))?
            .to_owned();
        let namespace = map
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        out.push(Manifest {
            kind,
            name,
            namespace,
            doc: Value::Object(map),
        });
    }
    Ok(out)
}

/// A kind as the admin API names it: its canonical name and the URL of one resource.
pub fn resource_url(
    admin: &str,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> Result<(&'static str, String), String> {
    let ns = || namespace.unwrap_or("default");
    match kind.to_ascii_lowercase().as_str() {
        "remoteenvironment" | "remoteenvironments" | "re" => Ok((
            "remoteenvironment",
            format!("{admin}/v1/remoteenvironments/{name}"),
        )),
        "environmentmapping" | "environmentmappings" | "em" => Ok((
            "environmentmapping",
            format!("{admin}/v1/namespaces/{}/environmentmappings/{name}", ns()),
        )),
        "serviceinstance" | "serviceinstances" => Ok((
            "serviceinstance",
            format!("{admin}/v1/namespaces/{}/serviceinstances/{name}", ns()),
        )),
        "servicebinding" | "servicebindings" => Ok((
            "servicebinding",
            format!("{admin}/v1/namespaces/{}/servicebindings/{name}", ns()),
        )),
        "eventactivation" | "eventactivations" | "ea" => Ok((
            "eventactivation",
            format!("{admin}/v1/namespaces/{}/eventactivations/{name}", ns()),
        )),
        "subscription" | "subscriptions" | "sub" => Ok((
            "subscription",
            format!("{admin}/v1/namespaces/{}/subscriptions/{name}", ns()),
        )),
        other => Err(format!(
            "unknown kind {other}: ACE knows RemoteEnvironment, EnvironmentMapping, EventActivation, Subscription, ServiceInstance and ServiceBinding"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    #[test]
    fn parses_the_seeds_manifests_including_flattened_ones() {
        let text = r#"
apiVersion: applicationconnector.kyma-project.io/v1alpha1
kind: RemoteEnvironment
metadata:
  name: ec-default
spec:
  description: The shop
  labels:
    region: us
---
apiVersion: applicationconnector.kyma-project.io/v1alpha1
kind: EnvironmentMapping
metadata:
 name: ec-default
 namespace: production
---
apiVersion: servicecatalog.k8s.io/v1beta1
kind: ServiceInstance
metadata:
name: my-service-instance-name
namespace: production
spec:
serviceClassExternalName: my-service-abcde
"#;
        let docs = parse_manifests(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(docs.len(), 3);
        assert_eq!(
            docs[0].doc.pointer("/spec/labels/region"),
            Some(&json!("us"))
        );
        assert_eq!(docs[1].namespace.as_deref(), Some("production"));
        assert_eq!(docs[2].name, "my-service-instance-name");
        assert_eq!(
            docs[2].doc.pointer("/spec/serviceClassExternalName"),
            Some(&json!("my-service-abcde"))
        );
    }

    #[test]
    fn manifests_without_kind_or_name_are_refused_clearly() {
        assert!(
            parse_manifests("metadata: {name: x}")
                .unwrap_err()
                .contains("no kind")
        );
        assert!(
            parse_manifests("kind: RemoteEnvironment\nspec: {}")
                .unwrap_err()
                .contains("no metadata.name")
        );
        assert!(
            parse_manifests("- a\n- b")
                .unwrap_err()
                .contains("expected a mapping")
        );
        assert!(
            parse_manifests("kind: [")
                .unwrap_err()
                .contains("not valid YAML")
        );
    }

    #[test]
    fn every_seed_kind_has_an_admin_url() {
        for (kind, url) in [
            ("RemoteEnvironment", "http://a/v1/remoteenvironments/x"),
            (
                "EnvironmentMapping",
                "http://a/v1/namespaces/ns/environmentmappings/x",
            ),
            (
                "EventActivation",
                "http://a/v1/namespaces/ns/eventactivations/x",
            ),
            ("Subscription", "http://a/v1/namespaces/ns/subscriptions/x"),
            (
                "ServiceInstance",
                "http://a/v1/namespaces/ns/serviceinstances/x",
            ),
        ] {
            assert_eq!(
                resource_url("http://a", kind, "x", Some("ns")).map(|r| r.1),
                Ok(url.to_owned())
            );
        }
    }

    #[test]
    fn unknown_kinds_are_named_in_the_error() {
        let e = resource_url("http://x", "Function", "f", None).unwrap_err();
        assert!(e.contains("unknown kind function"), "{e}");
    }
}
