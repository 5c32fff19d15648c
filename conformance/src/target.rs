//! What the suite checks: a deployment's URLs, the CA to trust, how to change its resources,
//! and (optionally) how to restart it.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::Method;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use serde_json::{Value, json};

use ace_client::{Response, TokioNet};

/// A boxed future, for the object-safe traits below.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The deployment's surfaces and facts the suite cannot discover by itself.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Target {
    /// Connector internal API (tokens), e.g. `http://127.0.0.1:8080`.
    pub connector_internal: String,
    /// Connector external API (info, client-certs), e.g. `https://localhost:8443`.
    pub connector_external: String,
    /// The gateway (metadata and events over mutual TLS), e.g. `https://localhost:8444`.
    pub gateway: String,
    /// The Event Bus publish API, e.g. `http://127.0.0.1:8082`; checks that need it are
    /// skipped without it.
    #[serde(default)]
    pub publish: Option<String>,
    /// ACE's admin API (the resource adapter), e.g. `http://127.0.0.1:8081`.
    #[serde(default)]
    pub admin: Option<String>,
    /// The admin API's bearer token (ACE keeps it in `admin.token` in its data directory).
    #[serde(default)]
    pub admin_token: Option<String>,
    /// A kubeconfig whose cluster's Kubernetes API manages the resources (a Kyma cluster, or
    /// ACE's `--kube-addr`), instead of ACE's admin API; the admin API, if given too, still
    /// answers what has no Kubernetes kind (dead letters).
    #[serde(default)]
    pub kubeconfig: Option<String>,
    /// The kubeconfig's context to use (default: its current context).
    #[serde(default)]
    pub kube_context: Option<String>,
    /// The proxy to registered APIs, e.g. `http://127.0.0.1:8090`; proxy checks are skipped
    /// without it.
    #[serde(default)]
    pub proxy: Option<String>,
    /// PEM file (or the PEM itself) of the CA that signed the servers' certificates.
    #[serde(default)]
    pub ca: Option<String>,
    /// Do not verify the servers' certificates (as `curl -k`).
    #[serde(default)]
    pub insecure: bool,
    /// The deployment's token lifetime in seconds; the expiry check runs only when it is at
    /// most 10 s.
    #[serde(default)]
    pub token_ttl_seconds: Option<u64>,
    /// How long before `expires_in` the proxy drops an OAuth token (ACE 10, Kyma 0.5 2).
    #[serde(default)]
    pub oauth_margin_seconds: Option<u64>,
    /// How long a delivery may take, retries included, before a check gives up (default 20).
    #[serde(default)]
    pub delivery_timeout_seconds: Option<u64>,
    /// The deployment's backlog limit per subscription (ACE: `--max-backlog-events`); the
    /// backlog-limit check runs only with it, and publishes that many events and more.
    #[serde(default)]
    pub max_backlog_events: Option<u64>,
    /// A shell command that restarts the deployment (kill and start again, keeping its
    /// storage); the durability checks run only with it.
    #[serde(default)]
    pub restart_command: Option<String>,
    /// Where the suite's own endpoint (subscriber, OAuth server, target API) listens
    /// (default `127.0.0.1:0`).
    #[serde(default)]
    pub endpoint_listen: Option<String>,
    /// The base URL the deployment uses to reach the suite's endpoint (default: from the
    /// listen address).
    #[serde(default)]
    pub endpoint_url: Option<String>,
}

/// The URLs of one surface: a target may list several, comma-separated (the replicas of one
/// deployment, each serving every surface); the suite then spreads its requests over them in
/// turn. The first is the one the deployment hands out (in `info`'s URLs, say).
pub fn urls(list: &str) -> Vec<&str> {
    list.split(',')
        .map(|u| u.trim().trim_end_matches('/'))
        .filter(|u| !u.is_empty())
        .collect()
}

/// The first of `list`'s URLs (see [`urls`]).
pub fn first_url(list: &str) -> &str {
    urls(list).first().copied().unwrap_or_default()
}

/// Spreads requests over several URLs of one surface, in turn.
#[derive(Debug, Default)]
pub struct RoundRobin(std::sync::atomic::AtomicUsize);

impl RoundRobin {
    /// The next of `list`'s URLs.
    pub fn next<'a>(&self, list: &'a str) -> &'a str {
        let all = urls(list);
        if all.len() <= 1 {
            return all.first().copied().unwrap_or_default();
        }
        let i = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        all[i % all.len()]
    }
}

impl Target {
    /// The resource adapter the target names: the Kubernetes API of its kubeconfig, else
    /// ACE's admin API, else none (checks that need resources are skipped).
    pub fn resources(&self) -> Result<Option<Box<dyn Resources>>, String> {
        let admin = self
            .admin
            .as_deref()
            .map(|a| AdminApi::new(a, self.admin_token.as_deref()));
        Ok(match (&self.kubeconfig, admin) {
            (Some(file), admin) => Some(Box::new(crate::KubeApi::from_kubeconfig(
                Path::new(file),
                self.kube_context.as_deref(),
                admin,
            )?)),
            (None, Some(admin)) => Some(Box::new(admin)),
            (None, None) => None,
        })
    }

    /// A target for an ACE server on the default loopback ports.
    pub fn local_defaults() -> Target {
        Target {
            connector_internal: "http://127.0.0.1:8080".into(),
            connector_external: "https://localhost:8443".into(),
            gateway: "https://localhost:8444".into(),
            publish: Some("http://127.0.0.1:8082".into()),
            admin: Some("http://127.0.0.1:8081".into()),
            admin_token: None,
            kubeconfig: None,
            kube_context: None,
            proxy: Some("http://127.0.0.1:8090".into()),
            ca: None,
            insecure: false,
            token_ttl_seconds: None,
            oauth_margin_seconds: None,
            delivery_timeout_seconds: None,
            max_backlog_events: None,
            restart_command: None,
            endpoint_listen: None,
            endpoint_url: None,
        }
    }

    /// Reads a target file (YAML or JSON).
    pub fn from_file(path: &Path) -> Result<Target, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("target file {}: {e}", path.display()))?;
        serde_yaml_ng::from_str(&text).map_err(|e| format!("target file {}: {e}", path.display()))
    }

    /// The CA certificates to trust.
    pub fn roots(&self) -> Result<Vec<CertificateDer<'static>>, String> {
        let Some(ca) = &self.ca else {
            return Ok(Vec::new());
        };
        let pem_text = if ca.contains("-----BEGIN") {
            ca.clone()
        } else {
            std::fs::read_to_string(ca).map_err(|e| format!("CA file {ca}: {e}"))?
        };
        let certs: Vec<_> = pem::parse_many(pem_text.as_bytes())
            .map_err(|e| format!("CA: {e}"))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| CertificateDer::from(p.into_contents()))
            .collect();
        if certs.is_empty() {
            return Err("CA: no certificate in it".into());
        }
        Ok(certs)
    }

    /// The delivery bound.
    pub fn delivery_timeout(&self) -> Duration {
        Duration::from_secs(self.delivery_timeout_seconds.unwrap_or(20))
    }
}

/// How the suite creates and removes the deployment's resources (RemoteEnvironments,
/// mappings, activations, subscriptions, instances, bindings). Documents are the seeds'
/// manifests as JSON (`kind`, `metadata`, `spec`).
pub trait Resources: Send + Sync {
    /// Creates or updates the resource; for a ServiceBinding, returns its credentials.
    fn apply<'a>(&'a self, doc: &'a Value) -> BoxFuture<'a, Result<Value, String>>;
    /// Deletes a resource (absent is fine).
    fn delete<'a>(
        &'a self,
        kind: &'a str,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
    /// A resource as the deployment shows it (`None` if absent).
    fn get<'a>(
        &'a self,
        kind: &'a str,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Value>, String>>;
    /// The service classes `namespace` sees (a JSON array).
    fn catalog<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Value, String>>;
    /// The dead letters of `namespace` (a JSON array, each with its `event-id`).
    fn dead_letters<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Value, String>>;
}

/// Restarts the deployment, keeping its storage.
pub trait Restart: Send + Sync {
    /// Kills and starts the deployment; returns once it answers again.
    fn restart(&self) -> BoxFuture<'_, Result<(), String>>;
}

/// ACE's admin API as the resource adapter ([`crate::KubeApi`] is the Kubernetes one).
#[derive(Clone)]
pub struct AdminApi {
    base: String,
    authorization: Option<String>,
    turn: Arc<RoundRobin>,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is never printed.
        f.debug_struct("AdminApi")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AdminApi {
    /// The admin API at `base` (e.g. `http://127.0.0.1:8081`, or several comma-separated,
    /// taken in turn), called with `token` as its bearer token, if given.
    pub fn new(base: &str, token: Option<&str>) -> Self {
        AdminApi {
            base: base.to_owned(),
            authorization: token.map(|t| format!("Bearer {t}")),
            turn: Arc::new(RoundRobin::default()),
        }
    }

    fn path(kind: &str, namespace: Option<&str>, name: &str) -> Result<String, String> {
        let plural = match kind {
            "RemoteEnvironment" => return Ok(format!("/v1/remoteenvironments/{name}")),
            "EnvironmentMapping" => "environmentmappings",
            "EventActivation" => "eventactivations",
            "Subscription" => "subscriptions",
            "ServiceInstance" => "serviceinstances",
            "ServiceBinding" => "servicebindings",
            other => return Err(format!("the admin API has no kind {other}")),
        };
        let ns = namespace.ok_or_else(|| format!("a {kind} needs a namespace"))?;
        Ok(format!("/v1/namespaces/{ns}/{plural}/{name}"))
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response, String> {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(authorization) = &self.authorization {
            headers.push(("authorization", authorization));
        }
        ace_client::request(
            &TokioNet,
            method,
            &format!("{}{path}", self.turn.next(&self.base)),
            &headers,
            body,
            None,
            Duration::from_secs(10),
        )
        .await
        .map_err(|e| e.to_string())
    }
}

fn doc_name(doc: &Value) -> (&str, Option<&str>, &str) {
    (
        doc["kind"].as_str().unwrap_or_default(),
        doc["metadata"]["namespace"].as_str(),
        doc["metadata"]["name"].as_str().unwrap_or_default(),
    )
}

impl Resources for AdminApi {
    fn apply<'a>(&'a self, doc: &'a Value) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            let (kind, ns, name) = doc_name(doc);
            let path = Self::path(kind, ns, name)?;
            let r = self
                .call(Method::PUT, &path, Some(doc.to_string().into_bytes()))
                .await?;
            if (200..300).contains(&r.status) {
                Ok(r.json())
            } else {
                Err(format!("PUT {path}: {} {}", r.status, r.text()))
            }
        })
    }

    fn delete<'a>(
        &'a self,
        kind: &'a str,
        namespace: Option<&'a str>,
        name: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let path = Self::path(kind, namespace, name)?;
            let r = self.call(Method::DELETE, &path, None).await?;
            if (200..300).contains(&r.status) || r.status == 404 {
                Ok(())
            } else {
                Err(format!("DELETE {path}: {} {}", r.status, r.text()))
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
            let path = Self::path(kind, namespace, name)?;
            let r = self.call(Method::GET, &path, None).await?;
            match r.status {
                200 => Ok(Some(r.json())),
                404 => Ok(None),
                s => Err(format!("GET {path}: {s} {}", r.text())),
            }
        })
    }

    fn catalog<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            let path = format!("/v1/namespaces/{namespace}/serviceclasses");
            let r = self.call(Method::GET, &path, None).await?;
            if r.status == 200 {
                Ok(r.json())
            } else {
                Err(format!("GET {path}: {} {}", r.status, r.text()))
            }
        })
    }

    fn dead_letters<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Value, String>> {
        Box::pin(async move {
            let path = format!("/v1/namespaces/{namespace}/deadletters?limit=10000");
            let r = self.call(Method::GET, &path, None).await?;
            if r.status == 200 {
                Ok(r.json())
            } else {
                Err(format!("GET {path}: {} {}", r.status, r.text()))
            }
        })
    }
}

/// Restarts by running a shell command, then waits until `probe_url` answers.
#[derive(Clone, Debug)]
pub struct CommandRestart {
    /// The command (`sh -c`).
    pub command: String,
    /// A URL that answers once the deployment is back.
    pub probe_url: String,
}

impl Restart for CommandRestart {
    fn restart(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&self.command)
                .status()
                .await
                .map_err(|e| format!("restart command: {e}"))?;
            if !status.success() {
                return Err(format!("restart command failed: {status}"));
            }
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let probe = ace_client::request(
                    &TokioNet,
                    Method::GET,
                    &self.probe_url,
                    &[],
                    None,
                    None,
                    Duration::from_secs(2),
                )
                .await;
                if probe.is_ok() {
                    return Ok(());
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(format!("{} did not answer within 60 s", self.probe_url));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }
}

/// The RemoteEnvironment manifest the seeds show.
pub fn remote_environment(name: &str) -> Value {
    json!({
        "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
        "kind": "RemoteEnvironment",
        "metadata": {"name": name},
        "spec": {"description": "conformance", "labels": {"region": "us"}, "accessLabel": name}
    })
}
