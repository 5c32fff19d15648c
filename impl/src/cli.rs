//! The command line's client commands: `token`, `connect`, `apply`, `get`, `delete`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ace_model::connector::Subject;
use base64::Engine as _;
use hyper::Method;
use serde_json::{Value, json};

use crate::client::{self, ClientError, Response, TlsOptions};
use crate::net::TokioNet;
use crate::pki::{self, KeyKind};

const TIMEOUT: Duration = Duration::from_secs(30);

async fn call(method: Method, url: &str, body: Option<Value>) -> Result<Response, String> {
    let body = body.map(|b| b.to_string().into_bytes());
    let headers: &[(&str, &str)] = if body.is_some() {
        &[("content-type", "application/json")]
    } else {
        &[]
    };
    client::request(&TokioNet, method, url, headers, body, None, TIMEOUT)
        .await
        .map_err(|e: ClientError| e.to_string())
}

fn api_error(what: &str, r: &Response) -> String {
    let detail = r
        .json()
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| r.text());
    format!("{what}: {} {detail}", r.status)
}

/// `ace token RE`: asks the internal API for a one-time configuration URL.
pub async fn token(internal_url: &str, re: &str) -> Result<String, String> {
    let r = call(
        Method::POST,
        &format!("{internal_url}/v1/remoteenvironments/{re}/tokens"),
        None,
    )
    .await?;
    match r.status {
        201 => r
            .json()
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "the reply has no url".into()),
        _ => Err(api_error(&format!("no token for {re}"), &r)),
    }
}

/// What `ace connect` wrote.
#[derive(Debug)]
pub struct Connection {
    /// The directory.
    pub dir: PathBuf,
    /// The metadata URL from info.
    pub metadata_url: String,
    /// The events URL from info.
    pub events_url: String,
}

/// Parses `OU=..,O=..,L=..,ST=..,C=..,CN=..` as `info` gives it.
pub fn parse_subject(s: &str) -> Subject {
    let mut subject = Subject::default();
    for part in s.split(',') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let v = Some(v.trim().to_owned());
        match k.trim() {
            "CN" => subject.common_name = v,
            "C" => subject.country = v,
            "O" => subject.organization = v,
            "OU" => subject.organizational_unit = v,
            "L" => subject.locality = v,
            "ST" => subject.province = v,
            _ => {}
        }
    }
    subject
}

/// `ace connect URL --out DIR`: the external solution's side of onboarding.
pub async fn connect(
    url: &str,
    out: &Path,
    tls: &TlsOptions,
    key: Option<KeyKind>,
) -> Result<Connection, String> {
    let connector = client::tls_connector(tls).map_err(|e| e.to_string())?;
    let get = |url: String| {
        let connector = connector.clone();
        async move {
            client::request(
                &TokioNet,
                Method::GET,
                &url,
                &[],
                None,
                Some(&connector),
                TIMEOUT,
            )
            .await
            .map_err(|e| e.to_string())
        }
    };
    let info = get(url.to_owned()).await?;
    if info.status == 403 {
        return Err(format!(
            "{}\nA configuration URL works once and expires after a few minutes. Ask for a new one with `ace token <remote-environment>`.",
            api_error("the configuration URL was refused", &info)
        ));
    }
    if info.status != 200 {
        return Err(api_error("info failed", &info));
    }
    let info = info.json();
    let field = |p: &str| {
        info.pointer(p)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("info has no {p}"))
    };
    let (csr_url, subject, algorithm) = (
        field("/csrUrl")?,
        field("/certificate/subject")?,
        field("/certificate/key-algorithm")?,
    );
    let (metadata_url, events_url, certificates_url) = (
        field("/api/metadataUrl")?,
        field("/api/eventsUrl")?,
        field("/api/certificatesUrl")?,
    );
    let kind = key.unwrap_or(if algorithm.starts_with("rsa") {
        KeyKind::Rsa2048
    } else {
        KeyKind::EcdsaP256
    });
    let key_pair = pki::generate_key(kind).map_err(|e| e.to_string())?;
    let csr = pki::make_csr(&key_pair, &parse_subject(&subject)).map_err(|e| e.to_string())?;
    let body = json!({ "csr": base64::engine::general_purpose::STANDARD.encode(csr) })
        .to_string()
        .into_bytes();
    let r = client::request(
        &TokioNet,
        Method::POST,
        &csr_url,
        &[("content-type", "application/json")],
        Some(body),
        Some(&connector),
        TIMEOUT,
    )
    .await
    .map_err(|e| e.to_string())?;
    if r.status != 201 {
        return Err(api_error("the CSR was refused", &r));
    }
    let crt = r
        .json()
        .get("crt")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or("the reply has no crt")?;
    let chain = base64::engine::general_purpose::STANDARD
        .decode(crt)
        .map_err(|e| format!("crt is not base64: {e}"))?;
    let chain = String::from_utf8(chain).map_err(|_| "crt is not PEM text")?;
    let blocks = pem::parse_many(&chain).map_err(|e| format!("crt is not PEM: {e}"))?;
    if blocks.len() != 2 {
        return Err(format!(
            "expected the client and CA certificates, got {} PEM blocks",
            blocks.len()
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let write = |name: &str, text: &str| {
        pki::write_atomic(&out.join(name), text.as_bytes()).map_err(|e| format!("{name}: {e}"))
    };
    pki::write_private(&out.join("key.pem"), &key_pair.serialize_pem())
        .map_err(|e| format!("key.pem: {e}"))?;
    write("cert.pem", &pem::encode(&blocks[0]))?;
    write("ca.pem", &pem::encode(&blocks[1]))?;
    let urls = json!({"metadataUrl": metadata_url, "eventsUrl": events_url, "certificatesUrl": certificates_url});
    write(
        "connection.json",
        &serde_json::to_string_pretty(&urls).unwrap_or_default(),
    )?;
    Ok(Connection {
        dir: out.to_owned(),
        metadata_url,
        events_url,
    })
}

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
fn resource_url(
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

/// `ace apply -f FILE`: applies every document; returns one line per document, followed by
/// the credentials of a ServiceBinding (its access key is shown only here).
pub async fn apply(admin: &str, text: &str) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for m in parse_manifests(text)? {
        let (kind, url) = resource_url(admin, &m.kind, &m.name, m.namespace.as_deref())?;
        let r = call(Method::PUT, &url, Some(m.doc.clone())).await?;
        let what = match r.status {
            201 => "created",
            200 => "configured",
            _ => return Err(api_error(&format!("{kind}/{} was refused", m.name), &r)),
        };
        lines.push(format!("{kind}/{} {what}", m.name));
        // A binding's access key is shown once, when it is issued.
        if let Some(credentials) = r.json().get("credentials").and_then(Value::as_object) {
            for (name, value) in credentials {
                lines.push(format!("  {name}={}", value.as_str().unwrap_or_default()));
            }
        }
    }
    Ok(lines)
}

/// `ace delete`: deletes one resource.
pub async fn delete(
    admin: &str,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> Result<String, String> {
    let (kind, url) = resource_url(admin, kind, name, namespace)?;
    let r = call(Method::DELETE, &url, None).await?;
    match r.status {
        204 | 200 => Ok(format!("{kind}/{name} deleted")),
        _ => Err(api_error(&format!("{kind}/{name}"), &r)),
    }
}

/// `ace get KIND [NAME]`: the resources as JSON.
pub async fn get(
    admin: &str,
    kind: &str,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<Value, String> {
    let lower = kind.to_ascii_lowercase();
    let url = match (lower.as_str(), name) {
        ("serviceclass" | "serviceclasses", _) => format!(
            "{admin}/v1/namespaces/{}/serviceclasses",
            namespace.unwrap_or("default")
        ),
        ("environmentmapping" | "environmentmappings" | "em", None) => match namespace {
            Some(ns) => format!("{admin}/v1/namespaces/{ns}/environmentmappings"),
            None => format!("{admin}/v1/environmentmappings"),
        },
        ("remoteenvironment" | "remoteenvironments" | "re", None) => {
            format!("{admin}/v1/remoteenvironments")
        }
        ("eventactivation" | "eventactivations" | "ea", None) => match namespace {
            Some(ns) => format!("{admin}/v1/namespaces/{ns}/eventactivations"),
            None => format!("{admin}/v1/eventactivations"),
        },
        ("subscription" | "subscriptions" | "sub", None) => match namespace {
            Some(ns) => format!("{admin}/v1/namespaces/{ns}/subscriptions"),
            None => format!("{admin}/v1/subscriptions"),
        },
        (_, Some(name)) => resource_url(admin, kind, name, namespace)?.1,
        (other, None) => return Err(format!("cannot list {other}")),
    };
    let r = call(Method::GET, &url, None).await?;
    if r.status != 200 {
        return Err(api_error(&format!("get {kind}"), &r));
    }
    let body = r.json();
    if let (Some(name), Value::Array(items)) = (name, &body)
        && lower.starts_with("environmentmapping")
    {
        return items
            .iter()
            .find(|i| i.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
            .cloned()
            .ok_or_else(|| format!("{kind} {name} not found"));
    }
    Ok(body)
}

/// `ace events dead-letter list`.
pub async fn dead_letters(admin: &str, namespace: Option<&str>) -> Result<Value, String> {
    let url = match namespace {
        Some(ns) => format!("{admin}/v1/namespaces/{ns}/deadletters"),
        None => format!("{admin}/v1/deadletters"),
    };
    let r = call(Method::GET, &url, None).await?;
    if r.status != 200 {
        return Err(api_error("dead letters", &r));
    }
    Ok(r.json())
}

/// `ace events dead-letter replay`.
pub async fn replay(
    admin: &str,
    namespace: &str,
    subscription: &str,
    event_id: Option<&str>,
) -> Result<Value, String> {
    let url = format!("{admin}/v1/namespaces/{namespace}/subscriptions/{subscription}/replay");
    let body = event_id.map_or_else(|| json!({}), |id| json!({ "eventId": id }));
    let r = call(Method::POST, &url, Some(body)).await?;
    if r.status != 200 {
        return Err(api_error(
            &format!("replay for {namespace}/{subscription}"),
            &r,
        ));
    }
    Ok(r.json())
}

/// A table of resources: NAMESPACE (when namespaced), NAME, and a summary column.
pub fn table(value: &Value) -> String {
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut rows = vec![[
        "NAMESPACE".to_owned(),
        "NAME".to_owned(),
        "DETAILS".to_owned(),
    ]];
    for item in items {
        let ns = item
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("");
        let name = item
            .pointer("/metadata/name")
            .or_else(|| item.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let details = match item.get("kind").and_then(Value::as_str) {
            Some("RemoteEnvironment") => format!(
                "{} service(s)",
                item.pointer("/spec/services")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            ),
            Some("EventActivation") => format!(
                "sourceId={}",
                item.pointer("/spec/sourceId")
                    .and_then(Value::as_str)
                    .unwrap_or("")
            ),
            Some("Subscription") => {
                let activated = item
                    .pointer("/status/conditions/0/status")
                    .and_then(Value::as_str)
                    .unwrap_or("Unknown");
                let figures = item
                    .pointer("/status/delivery")
                    .map(Value::to_string)
                    .unwrap_or_default();
                format!("events-activated={activated} {figures}")
            }
            _ => item
                .pointer("/metadata/displayName")
                .or_else(|| item.get("externalName"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
        };
        rows.push([ns.to_owned(), name.to_owned(), details]);
    }
    let width = |c: usize| rows.iter().map(|r| r[c].len()).max().unwrap_or(0);
    let (w0, w1) = (width(0), width(1));
    rows.iter()
        .map(|r| {
            format!("{:w0$}   {:w1$}   {}", r[0], r[1], r[2])
                .trim_end()
                .to_owned()
                + "\n"
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn info_subjects_parse_into_fields() {
        let s = parse_subject("OU=OrgUnit,O=Organization,L=Waldorf,ST=Waldorf,C=DE,CN=ec-default");
        assert_eq!(s.common_name.as_deref(), Some("ec-default"));
        assert_eq!(s.province.as_deref(), Some("Waldorf"));
        assert_eq!(s.country.as_deref(), Some("DE"));
    }
}
