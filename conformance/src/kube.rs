//! The Kubernetes resource adapter: the suite's resources through the Kubernetes API of any
//! cluster (a Kyma cluster, or ACE's own `--kube-addr`), from a kubeconfig. Documents are
//! created with `POST` and changed with a JSON merge patch, as `kubectl apply` does without
//! its annotation; a ServiceBinding's credentials come from its answer's
//! `status.credentials` (ACE) or from the Secret the Service Catalog made for it (Kyma).
//!
//! The kubeconfig may give the cluster's CA (`certificate-authority-data` or a file), skip
//! verification, and authenticate with a bearer token (`token`, `tokenFile`) or a client
//! certificate (`client-certificate[-data]`, `client-key[-data]`). Exec credential plugins
//! and `tls-server-name` are not supported: they are refused with a message naming them.

use std::path::Path;
use std::time::Duration;

use ace_client::{Clock, Response, TlsOptions, TokioNet};
use base64::Engine as _;
use hyper::Method;
use rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use serde_json::{Value, json};
use tokio_rustls::TlsConnector;

use crate::target::{AdminApi, BoxFuture, Resources};

/// A kind's API version, plural and scope, as a Kyma 0.5 cluster (and ACE) serve them.
fn kind_path(kind: &str) -> Result<(&'static str, &'static str, bool), String> {
    Ok(match kind {
        "RemoteEnvironment" => (
            "applicationconnector.kyma-project.io/v1alpha1",
            "remoteenvironments",
            false,
        ),
        "EnvironmentMapping" => (
            "applicationconnector.kyma-project.io/v1alpha1",
            "environmentmappings",
            true,
        ),
        "EventActivation" => (
            "applicationconnector.kyma-project.io/v1alpha1",
            "eventactivations",
            true,
        ),
        "Subscription" => ("eventing.kyma.cx/v1alpha1", "subscriptions", true),
        "ServiceInstance" => ("servicecatalog.k8s.io/v1beta1", "serviceinstances", true),
        "ServiceBinding" => ("servicecatalog.k8s.io/v1beta1", "servicebindings", true),
        other => return Err(format!("the Kubernetes adapter has no kind {other}")),
    })
}

/// What a kubeconfig's context says: where the API is and how to call it.
#[derive(Clone)]
pub struct KubeApi {
    server: String,
    authorization: Option<String>,
    tls: TlsConnector,
    /// Dead letters are ACE's own API (no Kubernetes kind): read there when given.
    admin: Option<AdminApi>,
}

impl std::fmt::Debug for KubeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The credentials are never printed.
        f.debug_struct("KubeApi")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn pick<'a>(doc: &'a Value, list: &str, name: &str, what: &str) -> Result<&'a Value, String> {
    doc[list]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["name"] == name)
        .map(|e| &e[what])
        .ok_or_else(|| format!("kubeconfig: no {what} named {name:?} in {list}"))
}

/// Bytes of `inline` (base64 in the kubeconfig) or of the file `path` names (relative to the
/// kubeconfig's directory).
fn data_or_file(
    entry: &Value,
    inline: &str,
    path: &str,
    dir: &Path,
) -> Result<Option<Vec<u8>>, String> {
    if let Some(b64) = entry[inline].as_str() {
        return base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(Some)
            .map_err(|e| format!("kubeconfig: {inline} is not base64: {e}"));
    }
    match entry[path].as_str() {
        Some(file) => std::fs::read(dir.join(file))
            .map(Some)
            .map_err(|e| format!("kubeconfig: {path} {file}: {e}")),
        None => Ok(None),
    }
}

fn pem_blocks(bytes: &[u8], what: &str) -> Result<Vec<pem::Pem>, String> {
    pem::parse_many(bytes).map_err(|e| format!("kubeconfig: {what}: {e}"))
}

impl KubeApi {
    /// The API of `context` (default: the current context) in the kubeconfig at `path`;
    /// `admin`, if given, answers what only ACE's admin API has (dead letters).
    pub fn from_kubeconfig(
        path: &Path,
        context: Option<&str>,
        admin: Option<AdminApi>,
    ) -> Result<KubeApi, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
        let doc: Value = serde_yaml_ng::from_str(&text)
            .map_err(|e| format!("kubeconfig {}: {e}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let context_name = match context {
            Some(c) => c.to_owned(),
            None => doc["current-context"]
                .as_str()
                .filter(|c| !c.is_empty())
                .ok_or("kubeconfig: no current-context; name one with --context")?
                .to_owned(),
        };
        let ctx = pick(&doc, "contexts", &context_name, "context")?;
        let cluster_name = ctx["cluster"].as_str().unwrap_or_default();
        let user_name = ctx["user"].as_str().unwrap_or_default();
        let cluster = pick(&doc, "clusters", cluster_name, "cluster")?;
        let user = if user_name.is_empty() {
            &Value::Null
        } else {
            pick(&doc, "users", user_name, "user")?
        };
        let server = cluster["server"]
            .as_str()
            .ok_or("kubeconfig: the cluster has no server")?
            .trim_end_matches('/')
            .to_owned();
        if cluster.get("tls-server-name").is_some() {
            return Err("kubeconfig: tls-server-name is not supported by the conformance suite's adapter; use a server URL whose host the certificate names".into());
        }
        if user.get("exec").is_some() || user.get("auth-provider").is_some() {
            return Err("kubeconfig: credential plugins (exec, auth-provider) are not supported; give the user a token (kubectl create token ...) or a client certificate".into());
        }
        let roots = match data_or_file(
            cluster,
            "certificate-authority-data",
            "certificate-authority",
            dir,
        )? {
            Some(pem_bytes) => pem_blocks(&pem_bytes, "certificate authority")?
                .into_iter()
                .filter(|p| p.tag() == "CERTIFICATE")
                .map(|p| CertificateDer::from(p.into_contents()))
                .collect(),
            None => Vec::new(),
        };
        let identity = match (
            data_or_file(user, "client-certificate-data", "client-certificate", dir)?,
            data_or_file(user, "client-key-data", "client-key", dir)?,
        ) {
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = pem_blocks(&cert, "client certificate")?
                    .into_iter()
                    .filter(|p| p.tag() == "CERTIFICATE")
                    .map(|p| CertificateDer::from(p.into_contents()))
                    .collect();
                let key = pem_blocks(&key, "client key")?
                    .into_iter()
                    .find_map(|p| {
                        let tag = p.tag().to_owned();
                        let der = p.into_contents();
                        match tag.as_str() {
                            "PRIVATE KEY" => {
                                Some(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
                            }
                            "RSA PRIVATE KEY" => {
                                Some(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)))
                            }
                            "EC PRIVATE KEY" => {
                                Some(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der)))
                            }
                            _ => None,
                        }
                    })
                    .ok_or("kubeconfig: the client key has no private key block")?;
                Some((chain, key))
            }
            (None, None) => None,
            _ => {
                return Err(
                    "kubeconfig: a client certificate needs its key, and a key its certificate"
                        .into(),
                );
            }
        };
        let token = match (user["token"].as_str(), user["tokenFile"].as_str()) {
            (Some(token), _) => Some(token.to_owned()),
            (None, Some(file)) => Some(
                std::fs::read_to_string(dir.join(file))
                    .map_err(|e| format!("kubeconfig: tokenFile {file}: {e}"))?
                    .trim()
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let tls = ace_client::tls_connector(
            &TlsOptions {
                roots,
                insecure: cluster["insecure-skip-tls-verify"] == true,
                identity,
            },
            Clock::from_system_time(),
        )
        .map_err(|e| format!("kubeconfig: {e}"))?;
        Ok(KubeApi {
            server,
            authorization: token.map(|t| format!("Bearer {t}")),
            tls,
            admin,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, String> {
        let mut headers = vec![("accept", "application/json")];
        if body.is_some() {
            headers.push(("content-type", content_type));
        }
        if let Some(authorization) = &self.authorization {
            headers.push(("authorization", authorization));
        }
        ace_client::request(
            &TokioNet,
            method.clone(),
            &format!("{}{path}", self.server),
            &headers,
            body,
            Some(&self.tls),
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| format!("{method} {path}: {e}"))
    }

    /// The collection of `kind` (in `namespace`), under `api_version` if given.
    fn collection(
        kind: &str,
        namespace: Option<&str>,
        api_version: Option<&str>,
    ) -> Result<String, String> {
        let (default_version, plural, namespaced) = kind_path(kind)?;
        let version = api_version.unwrap_or(default_version);
        if namespaced {
            let ns = namespace.ok_or_else(|| format!("a {kind} needs a namespace"))?;
            Ok(format!("/apis/{version}/namespaces/{ns}/{plural}"))
        } else {
            Ok(format!("/apis/{version}/{plural}"))
        }
    }

    /// A binding's credentials: from the answer (ACE), else from its Secret (Kyma's Service
    /// Catalog writes one, named by `spec.secretName` or after the binding).
    async fn credentials(&self, binding: &Value) -> Option<Value> {
        if let Some(c) = binding.pointer("/status/credentials") {
            return Some(c.clone());
        }
        let ns = binding.pointer("/metadata/namespace")?.as_str()?;
        let secret = binding
            .pointer("/spec/secretName")
            .or_else(|| binding.pointer("/metadata/name"))?
            .as_str()?;
        let r = self
            .call(
                Method::GET,
                &format!("/api/v1/namespaces/{ns}/secrets/{secret}"),
                "",
                None,
            )
            .await
            .ok()?;
        let data = r.json()["data"].as_object()?.clone();
        let decoded: serde_json::Map<String, Value> = data
            .iter()
            .filter_map(|(k, v)| {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(v.as_str()?)
                    .ok()?;
                Some((k.clone(), json!(String::from_utf8(bytes).ok()?)))
            })
            .collect();
        Some(Value::Object(decoded))
    }
}

fn refused(what: &str, r: &Response) -> String {
    format!("{what}: {} {}", r.status, r.text())
}

impl Resources for KubeApi {
    fn apply<'a>(&'a self, doc: &'a Value) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            let kind = doc["kind"].as_str().unwrap_or_default();
            let ns = doc["metadata"]["namespace"].as_str();
            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
            let collection = Self::collection(kind, ns, doc["apiVersion"].as_str())?;
            let item = format!("{collection}/{name}");
            let body = doc.to_string().into_bytes();
            let existing = self.call(Method::GET, &item, "", None).await?;
            let r = match existing.status {
                404 => {
                    self.call(Method::POST, &collection, "application/json", Some(body))
                        .await?
                }
                200 => {
                    self.call(
                        Method::PATCH,
                        &item,
                        "application/merge-patch+json",
                        Some(body),
                    )
                    .await?
                }
                _ => return Err(refused(&format!("GET {item}"), &existing)),
            };
            if !(200..300).contains(&r.status) {
                return Err(refused(&format!("apply {item}"), &r));
            }
            let mut object = r.json();
            if kind == "ServiceBinding"
                && let Some(credentials) = self.credentials(&object).await
            {
                // The admin API's shape, which the checks read.
                object["credentials"] = credentials;
            }
            Ok(object)
        })
    }

    fn delete<'a>(
        &'a self,
        kind: &'a str,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let item = format!("{}/{name}", Self::collection(kind, namespace, None)?);
            let body = br#"{"propagationPolicy":"Background"}"#.to_vec();
            let r = self
                .call(Method::DELETE, &item, "application/json", Some(body))
                .await?;
            if (200..300).contains(&r.status) || r.status == 404 {
                Ok(())
            } else {
                Err(refused(&format!("DELETE {item}"), &r))
            }
        })
    }

    fn get<'a>(
        &'a self,
        kind: &'a str,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, String>> {
        Box::pin(async move {
            let item = format!("{}/{name}", Self::collection(kind, namespace, None)?);
            let r = self.call(Method::GET, &item, "", None).await?;
            match r.status {
                200 => Ok(Some(r.json())),
                404 => Ok(None),
                _ => Err(refused(&format!("GET {item}"), &r)),
            }
        })
    }

    fn catalog<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            let path = format!(
                "/apis/servicecatalog.k8s.io/v1beta1/namespaces/{namespace}/serviceclasses"
            );
            let r = self.call(Method::GET, &path, "", None).await?;
            if r.status != 200 {
                return Err(refused(&format!("GET {path}"), &r));
            }
            // Each class as the admin API lists it: its spec, named, with the service's id.
            let classes = r.json()["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|item| {
                    let mut class = item["spec"].clone();
                    let id = item
                        .pointer("/metadata/name")
                        .cloned()
                        .unwrap_or(Value::Null);
                    if class.get("name").is_none() {
                        class["name"] = id.clone();
                    }
                    if class.get("id").is_none() {
                        class["id"] = class.get("externalID").cloned().unwrap_or(id);
                    }
                    class
                })
                .collect();
            Ok(Value::Array(classes))
        })
    }

    fn dead_letters<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            match &self.admin {
                Some(admin) => admin.dead_letters(namespace).await,
                None => Err("dead letters are ACE's own admin API (no Kubernetes kind): give the target's admin URL too".into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    }

    #[test]
    fn a_kubeconfig_gives_the_server_the_token_and_refuses_what_it_cannot_do() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("token"), "from-file\n").unwrap_or_else(|e| panic!("{e}"));
        let config = write(
            dir.path(),
            "config",
            "apiVersion: v1\nkind: Config\ncurrent-context: a\n\
             clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:6443/', insecure-skip-tls-verify: true}\n\
             users:\n- name: u\n  user: {token: secret}\n- name: f\n  user: {tokenFile: token}\n\
             - name: x\n  user: {exec: {command: aws}}\n\
             contexts:\n- name: a\n  context: {cluster: c, user: u}\n- name: b\n  context: {cluster: c, user: f}\n\
             - name: e\n  context: {cluster: c, user: x}\n",
        );
        let a = KubeApi::from_kubeconfig(&config, None, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.server, "https://127.0.0.1:6443");
        assert_eq!(a.authorization.as_deref(), Some("Bearer secret"));
        assert!(!format!("{a:?}").contains("secret"), "never printed");
        let b =
            KubeApi::from_kubeconfig(&config, Some("b"), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(b.authorization.as_deref(), Some("Bearer from-file"));
        let e = KubeApi::from_kubeconfig(&config, Some("e"), None)
            .err()
            .unwrap_or_default();
        assert!(e.contains("exec"), "{e}");
        let missing = KubeApi::from_kubeconfig(&config, Some("nope"), None)
            .err()
            .unwrap_or_default();
        assert!(missing.contains("no context named \"nope\""), "{missing}");
    }

    #[test]
    fn kinds_map_to_their_collections() {
        assert_eq!(
            KubeApi::collection("Subscription", Some("stage"), None)
                .ok()
                .as_deref(),
            Some("/apis/eventing.kyma.cx/v1alpha1/namespaces/stage/subscriptions")
        );
        assert_eq!(
            KubeApi::collection("RemoteEnvironment", None, None)
                .ok()
                .as_deref(),
            Some("/apis/applicationconnector.kyma-project.io/v1alpha1/remoteenvironments")
        );
        assert!(KubeApi::collection("Subscription", None, None).is_err());
        assert!(KubeApi::collection("Function", Some("x"), None).is_err());
    }
}
