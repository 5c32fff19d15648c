//! `ace serve`: the model behind real listeners, TLS and durable storage.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ace_model::bugs::Bugs;
use ace_model::config::CsrPolicy;
use ace_model::{Config, Model, Seed};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::UnixTime;
use rustls::server::WebPkiClientVerifier;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::driver::{self, Clock};
use crate::http::{App, Limits, Surface};
use crate::metrics::Metrics;
use crate::net::{Listener, Net};
use crate::pki::{self, Ca, KeyKind, PkiError};
use crate::store::{RedbStore, Store};

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
    /// How long a connector token is valid.
    pub token_ttl: Duration,
    /// How long an issued client certificate is valid.
    pub certificate_validity: Duration,
    /// Enforce ACE's CSR policy (RSA ≥ 2048 bits, no MD5/SHA-1) or Kyma's (none).
    pub strict_csr_policy: bool,
    /// Most connections open at once, all listeners together.
    pub max_connections: usize,
    /// Time allowed to send request headers (also the keep-alive idle limit).
    pub header_timeout: Duration,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
    /// Body limits.
    pub limits: Limits,
    /// Base URL of the proxy, used in registered APIs' `gatewayUrl`.
    pub proxy_url: String,
    /// The Event Bus: event size limit, retention, retry policy, default push timeout.
    pub bus: ace_model::bus::BusConfig,
    /// Where the driver (the task that owns the model and the store) runs: a thread of its
    /// own, or, for a simulation, a task on the server's runtime.
    pub driver: driver::Placement,
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
            connector_internal_addr: "127.0.0.1:8080".into(),
            connector_external_addr: "127.0.0.1:8443".into(),
            gateway_addr: "127.0.0.1:8444".into(),
            admin_addr: "127.0.0.1:8081".into(),
            publish_addr: "127.0.0.1:8082".into(),
            proxy_addr: "127.0.0.1:8090".into(),
            proxy_timeout: Duration::from_secs(10),
            proxy_skip_verify: false,
            push_tls_skip_verify: false,
            push_ca_pem: None,
            ca_key: KeyKind::EcdsaP256,
            token_ttl: model.connector.token_ttl,
            certificate_validity: model.connector.certificate_validity,
            strict_csr_policy: true,
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            limits: Limits::default(),
            proxy_url: model.registry.proxy_url,
            bus: model.bus,
            bugs: model.bugs,
            driver: driver::Placement::default(),
        }
    }
}

/// `$ACE_DATA_DIR`, else `$XDG_DATA_HOME/ace`, else `~/.local/share/ace`, else `./ace-data`.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(dir).join("ace");
    }
    if let Some(home) = std::env::var_os("HOME") {
        return PathBuf::from(home).join(".local/share/ace");
    }
    PathBuf::from("ace-data")
}

/// Why the server could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl From<PkiError> for StartError {
    fn from(e: PkiError) -> Self {
        StartError(format!("certificates: {e}"))
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// Bound address of the connector internal API.
    pub connector_internal: SocketAddr,
    /// Bound address of the connector external API.
    pub connector_external: SocketAddr,
    /// Bound address of the gateway.
    pub gateway: SocketAddr,
    /// Bound address of the admin API.
    pub admin: SocketAddr,
    /// Bound address of the publish API.
    pub publish: SocketAddr,
    /// Bound address of the proxy.
    pub proxy: SocketAddr,
    /// The CA certificate clients must trust, PEM.
    pub ca_pem: String,
    /// The model's configuration (URLs handed to clients).
    pub config: Config,
    /// Records replayed at start.
    pub replayed: usize,
    driver: driver::Running,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Waits until the server stops by itself (the store failed).
    pub async fn wait(&mut self) -> io::Result<()> {
        self.driver.wait().await
    }

    /// Stops accepting and drops every connection.
    pub fn shutdown(&self) {
        for l in &self.listeners {
            l.abort();
        }
    }

    /// Stops everything and waits until the store is closed (so the same data directory can
    /// be opened again, as after a restart).
    pub async fn stop(mut self) {
        self.shutdown();
        self.driver.stop().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[derive(Debug)]
struct ClockTime(Clock);

impl rustls::time_provider::TimeProvider for ClockTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_millis(
            self.0.now().as_unix_millis(),
        )))
    }
}

/// The crypto provider: ring, chosen explicitly so no process-wide default is needed.
pub fn provider() -> Arc<CryptoProvider> {
    ace_conformance::http::provider()
}

fn tls_err(e: impl std::fmt::Display) -> StartError {
    StartError(format!("TLS: {e}"))
}

/// The server certificate for `hosts`, kept in the data directory and re-issued when the
/// host list changes.
fn server_identity(
    dir: &Path,
    ca: &Ca,
    hosts: &[String],
    kind: KeyKind,
    clock: &Clock,
) -> Result<(String, String), StartError> {
    let (crt, key, names) = (
        dir.join("server.crt"),
        dir.join("server.key"),
        dir.join("server.hosts"),
    );
    let wanted = hosts.join("\n");
    if crt.exists()
        && key.exists()
        && std::fs::read_to_string(&names).ok().as_deref() == Some(wanted.as_str())
    {
        let cert_pem = std::fs::read_to_string(&crt).map_err(|e| StartError(e.to_string()))?;
        let key_pem = std::fs::read_to_string(&key).map_err(|e| StartError(e.to_string()))?;
        return Ok((cert_pem, key_pem));
    }
    let (cert_pem, key_pair) = ca.issue_server(hosts, kind, clock.now())?;
    let key_pem = key_pair.serialize_pem();
    pki::write_private(&key, &key_pem).map_err(|e| StartError(e.to_string()))?;
    pki::write_atomic(&crt, cert_pem.as_bytes()).map_err(|e| StartError(e.to_string()))?;
    pki::write_atomic(&names, wanted.as_bytes()).map_err(|e| StartError(e.to_string()))?;
    Ok((cert_pem, key_pem))
}

fn server_configs(
    ca: &Ca,
    cert_pem: &str,
    key_pem: &str,
    clock: Clock,
) -> Result<(TlsAcceptor, TlsAcceptor), StartError> {
    let mut chain = pki::certs_from_pem(cert_pem)?;
    chain.push(ca.cert_der().clone());
    let key = pki::key_from_pem(key_pem)?;
    let time = Arc::new(ClockTime(clock));
    let mut external = rustls::ServerConfig::builder_with_details(provider(), time.clone())
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(tls_err)?;
    external.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Stateless TLS 1.3 session tickets, one key per listener: the default (stateful, a cache
    // of 256 sessions shared by every client) forgets a client's session once 128 other
    // connections have been made, so under load nobody resumes.
    external.ticketer = rustls::crypto::ring::Ticketer::new().map_err(tls_err)?;
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert_der().clone()).map_err(tls_err)?;
    // Callers without a certificate get through the handshake and a clear 403 from the model;
    // a certificate that does not verify against ACE's CA fails the handshake.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(tls_err)?;
    let mut gateway = rustls::ServerConfig::builder_with_details(provider(), time)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    gateway.alpn_protocols = vec![b"http/1.1".to_vec()];
    gateway.ticketer = rustls::crypto::ring::Ticketer::new().map_err(tls_err)?;
    Ok((
        TlsAcceptor::from(Arc::new(external)),
        TlsAcceptor::from(Arc::new(gateway)),
    ))
}

/// The model's configuration for these options and bound addresses.
fn model_config(opts: &ServeOptions, external: SocketAddr, gateway: SocketAddr) -> Config {
    let mut config = Config::default();
    let host = opts
        .hosts
        .first()
        .cloned()
        .unwrap_or_else(|| "localhost".into());
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    match &opts.domain {
        Some(domain) => {
            config.connector = ace_model::config::ConnectorConfig::for_domain(domain);
        }
        None => {
            config.connector.connector_url = format!("https://{host}:{}", external.port());
            config.connector.gateway_url = format!("https://{host}:{}", gateway.port());
        }
    }
    config.connector.token_ttl = opts.token_ttl;
    config.connector.certificate_validity = opts.certificate_validity;
    if !opts.strict_csr_policy {
        config.connector.csr_policy = CsrPolicy::kyma();
    }
    config.registry.proxy_url.clone_from(&opts.proxy_url);
    config.bus = opts.bus.clone();
    config.bugs = opts.bugs;
    config
}

/// Starts `ace serve` on `net` with the embedded store in `opts.data_dir`.
pub async fn start<N: Net>(
    net: N,
    opts: ServeOptions,
    clock: Clock,
    seed: Seed,
) -> Result<Server, StartError> {
    std::fs::create_dir_all(&opts.data_dir)
        .map_err(|e| StartError(format!("data directory {}: {e}", opts.data_dir.display())))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&opts.data_dir, std::fs::Permissions::from_mode(0o700));
    }
    let store = RedbStore::open(&opts.data_dir.join("ace.redb"))
        .map_err(|e| StartError(format!("store: {e}")))?;
    start_with_store(net, opts, clock, seed, store).await
}

/// Starts `ace serve` with the given store.
pub async fn start_with_store<N: Net, S: Store>(
    net: N,
    opts: ServeOptions,
    clock: Clock,
    seed: Seed,
    mut store: S,
) -> Result<Server, StartError> {
    for bug in opts.bugs.iter() {
        tracing::warn!(
            bug = bug.name(),
            "BUG INJECTED: this server is deliberately wrong: {}",
            bug.description()
        );
    }
    let ca = Arc::new(Ca::load_or_create(
        &opts.data_dir,
        opts.ca_key,
        clock.now(),
    )?);
    let (cert_pem, key_pem) =
        server_identity(&opts.data_dir, &ca, &opts.hosts, opts.ca_key, &clock)?;
    let (external_tls, gateway_tls) = server_configs(&ca, &cert_pem, &key_pem, clock)?;

    let bind = |addr: String| {
        let net = net.clone();
        async move {
            net.bind(&addr)
                .await
                .map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))
        }
    };
    let internal_l = bind(opts.connector_internal_addr.clone()).await?;
    let external_l = bind(opts.connector_external_addr.clone()).await?;
    let gateway_l = bind(opts.gateway_addr.clone()).await?;
    let admin_l = bind(opts.admin_addr.clone()).await?;
    let publish_l = bind(opts.publish_addr.clone()).await?;
    let proxy_l = bind(opts.proxy_addr.clone()).await?;
    let addr = |l: &N::Listener| l.local_addr().map_err(|e| StartError(e.to_string()));
    let (connector_internal, connector_external, gateway, admin, publish) = (
        addr(&internal_l)?,
        addr(&external_l)?,
        addr(&gateway_l)?,
        addr(&admin_l)?,
        addr(&publish_l)?,
    );
    let proxy_addr = addr(&proxy_l)?;

    let mut opts = opts;
    if opts.proxy_url == ServeOptions::default().proxy_url {
        // Hand out the address the proxy really listens on.
        opts.proxy_url = format!("http://{proxy_addr}");
    }
    let config = model_config(&opts, connector_external, gateway);
    let records = store
        .load()
        .map_err(|e| StartError(format!("store: {e}")))?;
    let replayed = records.len();
    let model = Model::replay(config.clone(), seed, records);
    let metrics = Arc::new(Metrics::default());
    let mut push_roots = vec![ca.cert_der().clone()];
    if let Some(pem) = &opts.push_ca_pem {
        push_roots.extend(pki::certs_from_pem(pem)?);
    }
    let push_tls =
        crate::push::subscriber_tls(push_roots, opts.push_tls_skip_verify).map_err(tls_err)?;
    let pusher = crate::push::Pusher::new(net.clone(), push_tls, clock, store.bodies());
    let (handle, proxy_tables, driver) = driver::spawn(
        opts.driver,
        model,
        store,
        clock,
        metrics.clone(),
        move |outcomes| {
            Box::new(move |delivery| {
                let outcomes = outcomes.clone();
                pusher.start(delivery, move |outcome| {
                    // The driver is gone only when the server stops; the outcome no longer matters.
                    let _ = outcomes.send(outcome);
                });
            })
        },
    )
    .map_err(|e| StartError(format!("cannot start the driver: {e}")))?;
    let mut limits = opts.limits;
    limits.max_event_bytes = config.bus.max_event_bytes;
    let proxy_tls =
        crate::push::subscriber_tls(Vec::new(), opts.proxy_skip_verify).map_err(tls_err)?;
    let proxy_client = crate::push::pooled_client(net.clone(), proxy_tls);
    let unverified_tls = crate::push::subscriber_tls(Vec::new(), true).map_err(tls_err)?;
    let unverified = crate::push::pooled_client(net.clone(), unverified_tls);
    let proxy = crate::proxy::Proxy::new(
        Arc::new(proxy_client),
        Arc::new(unverified),
        clock,
        opts.proxy_timeout,
    )
    .with_bugs(opts.bugs);
    let app = Arc::new(App {
        driver: handle,
        ca: ca.clone(),
        metrics,
        limits,
        proxy: Some(proxy),
        proxy_tables,
    });
    let conns = Arc::new(Semaphore::new(opts.max_connections));
    let conn = ConnOptions {
        header_timeout: opts.header_timeout,
        handshake_timeout: opts.handshake_timeout,
    };
    let listeners = vec![
        tokio::spawn(accept_loop(
            internal_l,
            None,
            Surface::ConnectorInternal,
            app.clone(),
            conns.clone(),
            conn,
        )),
        tokio::spawn(accept_loop(
            external_l,
            Some(external_tls),
            Surface::ConnectorExternal,
            app.clone(),
            conns.clone(),
            conn,
        )),
        tokio::spawn(accept_loop(
            gateway_l,
            Some(gateway_tls),
            Surface::Gateway,
            app.clone(),
            conns.clone(),
            conn,
        )),
        tokio::spawn(accept_loop(
            admin_l,
            None,
            Surface::Admin,
            app.clone(),
            conns.clone(),
            conn,
        )),
        tokio::spawn(accept_loop(
            publish_l,
            None,
            Surface::Publish,
            app.clone(),
            conns.clone(),
            conn,
        )),
        tokio::spawn(accept_loop(proxy_l, None, Surface::Proxy, app, conns, conn)),
    ];
    Ok(Server {
        connector_internal,
        connector_external,
        gateway,
        admin,
        publish,
        proxy: proxy_addr,
        ca_pem: ca.cert_pem().to_owned(),
        config,
        replayed,
        driver,
        listeners,
    })
}

#[derive(Clone, Copy, Debug)]
struct ConnOptions {
    header_timeout: Duration,
    handshake_timeout: Duration,
}

async fn accept_loop<L: Listener>(
    listener: L,
    tls: Option<TlsAcceptor>,
    surface: Surface,
    app: Arc<App>,
    conns: Arc<Semaphore>,
    opts: ConnOptions,
) {
    loop {
        let (io, peer_addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(surface = surface.name(), error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            app.metrics.connection_refused();
            tracing::warn!(surface = surface.name(), %peer_addr, "connection cap reached; refusing");
            drop(io);
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tls {
                None => serve_connection(TokioIo::new(io), surface, None, app, opts).await,
                Some(acceptor) => {
                    match tokio::time::timeout(opts.handshake_timeout, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => {
                            let peer = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(pki::peer_identity);
                            serve_connection(TokioIo::new(stream), surface, peer, app, opts).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(surface = surface.name(), %peer_addr, error = %e, "TLS handshake failed")
                        }
                        Err(_) => {
                            tracing::debug!(surface = surface.name(), %peer_addr, "TLS handshake timed out")
                        }
                    }
                }
            }
        });
    }
}

async fn serve_connection<I>(
    io: I,
    surface: Surface,
    peer: Option<ace_model::connector::PeerCertificate>,
    app: Arc<App>,
    opts: ConnOptions,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let app = app.clone();
        let peer = peer.clone();
        async move { app.handle(surface, peer, req).await }
    });
    let result = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_timeout)
        .max_buf_size(64 * 1024)
        .serve_connection(io, service)
        .await;
    if let Err(e) = result {
        tracing::debug!(surface = surface.name(), error = %e, "connection ended with an error");
    }
}
