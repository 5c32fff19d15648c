//! Everything `ace serve` can be told, with its defaults.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ace_model::Config;
use ace_model::bugs::Bugs;
use ace_model::egress::EgressPolicy;
use ace_model::limits::Limits;

use crate::driver::Placement;
use crate::pki::KeyKind;

/// Which store `ace serve` keeps its records in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "made once per server from its options; its size costs nothing"
)]
pub enum StoreKind {
    /// The embedded store: `ace.redb` and its journal in the data directory.
    #[default]
    Embedded,
    /// Memory only: everything is lost when the process ends (tests).
    Memory,
    /// A stream on a NATS JetStream cluster (one `ace serve` per stream).
    #[cfg(feature = "jetstream")]
    JetStream(crate::store::jetstream::JetStreamOptions),
}

/// How the admin API (and every resource API on its listener) authenticates callers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum AdminAuth {
    /// A bearer token kept in the data directory (`admin.token`, readable by its owner
    /// only), made at the first start. The default.
    #[default]
    Generated,
    /// This bearer token.
    Token(String),
    /// No token: anyone who reaches the listener may change every resource.
    Off,
}

/// Everything `ace serve` can be told.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where the CA, the server certificate and the record store live.
    pub data_dir: PathBuf,
    /// Host names and IP addresses the server certificate is valid for; the first one is used
    /// in the URLs handed to clients unless `domain` is set.
    pub hosts: Vec<String>,
    /// A cluster domain: URLs become `https://connector-service.<domain>` and
    /// `https://gateway.<domain>` (for a deployment behind an ingress with those names).
    pub domain: Option<String>,
    /// The connector external API's URL as clients reach it (a load balancer in front of
    /// several replicas, say), handed out instead of one made from `hosts` or `domain`.
    pub connector_url: Option<String>,
    /// The gateway's URL as clients reach it, likewise.
    pub gateway_url: Option<String>,
    /// Listen address of the connector internal API (plain HTTP).
    pub connector_internal_addr: String,
    /// Listen address of the connector external API (HTTPS).
    pub connector_external_addr: String,
    /// Listen address of the gateway (HTTPS, client certificates).
    pub gateway_addr: String,
    /// Listen address of the admin API, metrics and health (plain HTTP).
    pub admin_addr: String,
    /// Listen address of the Event Bus publish API (plain HTTP).
    pub publish_addr: String,
    /// Listen address of the proxy to registered APIs (plain HTTP).
    pub proxy_addr: String,
    /// Listen address of the Kubernetes resource API, for kubectl (HTTPS with the server
    /// certificate; the admin API's bearer token).
    pub kube_addr: String,
    /// Time allowed to a registered API (and its OAuth server) to answer through the proxy.
    pub proxy_timeout: Duration,
    /// Do not verify the certificates of registered APIs and OAuth servers (the seed's
    /// `skipVerify`; on for every RE).
    pub proxy_skip_verify: bool,
    /// Do not verify `https` subscribers' certificates (Kyma's chart set `tls_skip_verify`).
    pub push_tls_skip_verify: bool,
    /// CA certificates (PEM) trusted for `https` subscribers, besides ACE's own CA.
    pub push_ca_pem: Option<String>,
    /// Key algorithm of a newly created CA and server certificate.
    pub ca_key: KeyKind,
    /// Derive the keys of a new CA and server certificate from this seed (Ed25519) instead of
    /// the operating system's randomness: for simulations, whose seed must decide every byte
    /// of every certificate. Never for a real deployment.
    pub key_seed: Option<ace_model::Seed>,
    /// How long a connector token is valid.
    pub token_ttl: Duration,
    /// How long an issued client certificate is valid.
    pub certificate_validity: Duration,
    /// Enforce ACE's CSR policy (RSA ≥ 2048 bits, no MD5/SHA-1) or Kyma's (none).
    pub strict_csr_policy: bool,
    /// Most connections open at once, all listeners together.
    pub max_connections: usize,
    /// Time allowed to send a request's headers, from their first byte (or from the
    /// connection's start).
    pub header_timeout: Duration,
    /// Time a keep-alive connection may sit idle between an answer and the next request.
    pub idle_timeout: Duration,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Time allowed to send a request body.
    pub body_timeout: Duration,
    /// Body size limits (events have the Event Bus's, in `bus`).
    pub limits: Limits,
    /// Which addresses ACE may connect to on someone else's behalf (subscribers, registered
    /// APIs, OAuth servers). By default public addresses only; ACE's own listeners never.
    pub egress: EgressPolicy,
    /// Base URL of the proxy, used in registered APIs' `gatewayUrl`.
    pub proxy_url: String,
    /// The Event Bus: event size limit, retention, retry policy, default push timeout.
    pub bus: ace_model::bus::BusConfig,
    /// Where the records are kept.
    pub store: StoreKind,
    /// The disk budget: most bytes of accepted events (metadata and bodies) the store keeps;
    /// at it, publishes are refused with 507 until subscribers catch up.
    pub max_store_bytes: u64,
    /// How callers of the admin API authenticate.
    pub admin_auth: AdminAuth,
    /// Where the driver (the task that owns the model and the store) runs: a thread of its
    /// own, or, for a simulation, a task on the server's runtime.
    pub driver: Placement,
    /// Deliberately wrong behaviours to switch on (see [`ace_model::bugs`]); always empty
    /// unless built with the feature `bug-zoo`.
    pub bugs: Bugs,
}

impl Default for ServeOptions {
    fn default() -> Self {
        let model = Config::default();
        ServeOptions {
            data_dir: default_data_dir(),
            hosts: vec!["localhost".into(), "127.0.0.1".into()],
            domain: None,
            connector_url: None,
            gateway_url: None,
            connector_internal_addr: "127.0.0.1:8080".into(),
            connector_external_addr: "127.0.0.1:8443".into(),
            gateway_addr: "127.0.0.1:8444".into(),
            admin_addr: "127.0.0.1:8081".into(),
            publish_addr: "127.0.0.1:8082".into(),
            proxy_addr: "127.0.0.1:8090".into(),
            kube_addr: "127.0.0.1:8445".into(),
            proxy_timeout: Duration::from_secs(10),
            proxy_skip_verify: false,
            push_tls_skip_verify: false,
            push_ca_pem: None,
            ca_key: KeyKind::EcdsaP256,
            key_seed: None,
            token_ttl: model.connector.token_ttl,
            certificate_validity: model.connector.certificate_validity,
            strict_csr_policy: true,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            limits: model.limits,
            egress: model.egress,
            proxy_url: model.registry.proxy_url,
            bus: model.bus,
            store: StoreKind::default(),
            max_store_bytes: crate::driver::StorageBudget::default().max_bytes,
            admin_auth: AdminAuth::default(),
            bugs: model.bugs,
            driver: Placement::default(),
        }
    }
}

impl ServeOptions {
    /// Defaults with the data in `data_dir` and every listener on a port of loopback the
    /// system picks (what tests and the embedded conformance target use). The egress policy
    /// is the default one: a caller whose subscribers or APIs are on loopback allows private
    /// addresses itself ([`EgressPolicy::allow_private`]).
    pub fn loopback(data_dir: &Path) -> Self {
        let mut options = ServeOptions {
            data_dir: data_dir.to_owned(),
            ..ServeOptions::default()
        };
        for addr in options.listen_addrs_mut() {
            "127.0.0.1:0".clone_into(addr);
        }
        options
    }

    /// The seven listen addresses, in the order of [`crate::edge::Surface::ALL`].
    pub fn listen_addrs_mut(&mut self) -> [&mut String; 7] {
        [
            &mut self.connector_internal_addr,
            &mut self.connector_external_addr,
            &mut self.gateway_addr,
            &mut self.admin_addr,
            &mut self.publish_addr,
            &mut self.proxy_addr,
            &mut self.kube_addr,
        ]
    }
}

/// `$XDG_DATA_HOME/ace`, else `~/.local/share/ace`, else `./ace-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("ace");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".local/share/ace");
    }
    PathBuf::from("ace-data")
}
