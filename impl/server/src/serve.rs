//! `ace serve`: the model behind real listeners, TLS and durable storage, wired together.

use std::net::SocketAddr;
use std::sync::Arc;

use ace_client::Clock;
use ace_client::connector::NetConnector;
use ace_client::net::{Listener, Net};
use ace_model::config::CsrPolicy;
use ace_model::{Config, Model, Seed};
use tokio::sync::Semaphore;

use crate::driver::{self, Placement, now};
use crate::edge::listen::{ConnOptions, accept_loop};
use crate::edge::{App, Surface};
use crate::error::StartError;
use crate::metrics::Metrics;
use crate::options::{ServeOptions, StoreKind};
use crate::outbound::clients;
use crate::outbound::egress::EgressNet;
use crate::outbound::forward::Forwarder;
use crate::pki::{self, Ca, KeySource};
use crate::store::{self, AnyStore, MemoryStore, RedbOptions, RedbStore, Store, StoreError};

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
    /// Bound address of the Kubernetes resource API (HTTPS).
    pub kube: SocketAddr,
    /// The CA certificate clients must trust, PEM.
    pub ca_pem: String,
    /// The model's configuration (URLs handed to clients).
    pub config: Config,
    /// Records replayed at start.
    pub replayed: u64,
    /// The admin API's bearer token (`None` when authentication is off).
    pub admin_token: Option<String>,
    driver: driver::Running,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    on_stop: OnStop,
}

type StopFuture = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What a clean stop does last (a replica gives its lease back). In a mutex, so that a
/// server stays shareable across threads.
struct OnStop(std::sync::Mutex<Option<StopFuture>>);

impl std::fmt::Debug for OnStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnStop")
    }
}

impl Server {
    /// The bound addresses, in the order of [`Surface::ALL`].
    pub fn addrs(&self) -> [SocketAddr; 7] {
        [
            self.connector_internal,
            self.connector_external,
            self.gateway,
            self.admin,
            self.publish,
            self.proxy,
            self.kube,
        ]
    }

    /// Waits until the server stops by itself (the store failed).
    pub async fn wait(&mut self) -> Result<(), StoreError> {
        self.driver.wait().await
    }

    /// Stops accepting and drops every connection.
    pub fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Stops everything and waits until the store is closed (so the same data directory can
    /// be opened again, as after a restart).
    pub async fn stop(mut self) {
        self.shutdown();
        self.driver.stop().await;
        let release = self.on_stop.0.lock().ok().and_then(|mut r| r.take());
        if let Some(release) = release {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), release).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
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
    if let Some(url) = &opts.connector_url {
        config.connector.connector_url = url.trim_end_matches('/').to_owned();
    }
    if let Some(url) = &opts.gateway_url {
        config.connector.gateway_url = url.trim_end_matches('/').to_owned();
    }
    config.connector.token_ttl = opts.token_ttl;
    config.connector.certificate_validity = opts.certificate_validity;
    if !opts.strict_csr_policy {
        config.connector.csr_policy = CsrPolicy::kyma();
    }
    config.registry.proxy_url.clone_from(&opts.proxy_url);
    config.bus = opts.bus.clone();
    config.limits = opts.limits;
    config.egress = opts.egress.clone().with_bugs(opts.bugs);
    config.bugs = opts.bugs;
    config
}

/// Creates the data directory (readable by its owner only).
fn data_dir(opts: &ServeOptions) -> Result<(), StartError> {
    let failed = |source| StartError::DataDir {
        path: opts.data_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&opts.data_dir).map_err(failed)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&opts.data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(failed)?;
    }
    Ok(())
}

/// What a server is known by: its CA, its certificate and key, and the admin API's token.
#[derive(Debug)]
pub struct Identity {
    /// The CA that signs client certificates and the server's own.
    pub ca: Arc<Ca>,
    /// The server certificate for `opts.hosts`, PEM.
    pub cert_pem: String,
    /// Its key, PEM.
    pub key_pem: String,
    /// The admin API's bearer token (`None` when authentication is off).
    pub admin_token: Option<crate::edge::auth::AdminToken>,
}

/// The identity kept in the data directory (`ca.crt`, `ca.key`, `server.crt`, `server.key`,
/// `admin.token`), made there whatever of it is missing. Replicas on one shared log need the
/// same CA: make it once (`ace init`) and give every replica a copy.
pub fn identity(opts: &ServeOptions, clock: Clock) -> Result<Identity, StartError> {
    data_dir(opts)?;
    let mut keys = match opts.key_seed {
        Some(seed) => KeySource::Seeded(Box::new(ace_model::SeededRng::new(seed))),
        None => KeySource::Os(opts.ca_key),
    };
    let ca = Arc::new(Ca::load_or_create(&opts.data_dir, &mut keys, now(&clock))?);
    let (cert_pem, key_pem) =
        pki::identity::server_identity(&opts.data_dir, &ca, &opts.hosts, &mut keys, now(&clock))?;
    let admin_token =
        crate::edge::auth::load_or_create(&opts.data_dir, &opts.admin_auth, || keys.secret())?;
    Ok(Identity {
        ca,
        cert_pem,
        key_pem,
        admin_token,
    })
}

/// Starts `ace serve` on `net` with the store `opts.store` names.
pub async fn start<N: Net>(
    net: N,
    opts: ServeOptions,
    clock: Clock,
    seed: Seed,
) -> Result<Server, StartError> {
    data_dir(&opts)?;
    let store = match &opts.store {
        StoreKind::Embedded => {
            let options = RedbOptions {
                // A driver on a thread of its own waits for every sync anyway.
                io_in_place: opts.driver == Placement::Thread,
                ..RedbOptions::default()
            };
            AnyStore::Embedded(RedbStore::open(&opts.data_dir.join("ace.redb"), options)?)
        }
        StoreKind::Memory => AnyStore::Memory(MemoryStore::default()),
        #[cfg(feature = "jetstream")]
        StoreKind::JetStream(options) => {
            let options = options.clone();
            let nats = crate::nats::client::NatsClient::connect(&options).await?;
            return start_replica(net, opts, clock, seed, nats, &options).await;
        }
    };
    start_inner(net, opts, clock, seed, store, None).await
}

/// Starts `ace serve` as a replica on the JetStream `nats` connects to (a simulation brings
/// its stand-in).
pub async fn start_replica<N: Net>(
    net: N,
    opts: ServeOptions,
    clock: Clock,
    seed: Seed,
    nats: Arc<dyn crate::nats::Nats>,
    options: &store::jetstream::JetStreamOptions,
) -> Result<Server, StartError> {
    let store = store::jetstream::JetStreamStore::open_on(nats, options)
        .await?
        .with_bugs(opts.bugs);
    let replica = crate::replica::Replica::open(
        store.nats(),
        &store.stream_name(),
        options.replicas,
        options.replica.clone(),
        options.unavailable_timeout,
    )
    .await?
    .with_bugs(opts.bugs);
    start_inner(net, opts, clock, seed, store, Some(replica)).await
}

/// Models with nothing applied, each with a generator seeded afresh from `seed` (a replica
/// rebuilding its state must not draw the tokens and ids it drew before).
fn fresh_models(config: Config, seed: Seed) -> Box<dyn FnMut() -> Model + Send> {
    use sha2::Digest;
    let mut rebuilds = 0u64;
    Box::new(move || {
        rebuilds += 1;
        let mut hash = sha2::Sha256::new();
        hash.update(seed.0);
        hash.update(rebuilds.to_le_bytes());
        Model::new(config.clone(), Seed(hash.finalize().into()))
    })
}

/// Starts `ace serve` with the given store (a simulation brings its own disk).
pub async fn start_with_store<N: Net, S: Store>(
    net: N,
    opts: ServeOptions,
    clock: Clock,
    seed: Seed,
    store: S,
) -> Result<Server, StartError> {
    start_inner(net, opts, clock, seed, store, None).await
}

async fn start_inner<N: Net, S: Store>(
    net: N,
    opts: ServeOptions,
    clock: Clock,
    seed: Seed,
    mut store: S,
    replica: Option<crate::replica::Replica>,
) -> Result<Server, StartError> {
    for bug in opts.bugs.iter() {
        tracing::warn!(
            bug = bug.name(),
            "BUG INJECTED: this server is deliberately wrong: {}",
            bug.description()
        );
    }
    let Identity {
        ca,
        cert_pem,
        key_pem,
        admin_token,
    } = identity(&opts, clock)?;
    store.bind_identity(&ca.sha256_hex()).await?;
    let (external_tls, gateway_tls) = crate::edge::tls::acceptors(&ca, &cert_pem, &key_pem, clock)?;

    let mut opts = opts;
    let mut listeners = Vec::new();
    for (surface, addr) in Surface::ALL.into_iter().zip(opts.listen_addrs_mut()) {
        let listener = net.bind(addr).await.map_err(|source| StartError::Listen {
            surface: surface.name(),
            addr: addr.clone(),
            source,
        })?;
        let bound = listener.local_addr().map_err(|source| StartError::Listen {
            surface: surface.name(),
            addr: addr.clone(),
            source,
        })?;
        listeners.push((surface, listener, bound));
    }
    let bound = |s: Surface| {
        listeners
            .iter()
            .find(|(surface, _, _)| *surface == s)
            .map(|(_, _, addr)| *addr)
            .unwrap_or_else(|| unreachable!("every surface is bound"))
    };
    let proxy_addr = bound(Surface::Proxy);
    if opts.proxy_url == ServeOptions::default().proxy_url {
        // Hand out the address the proxy really listens on.
        opts.proxy_url = format!("http://{proxy_addr}");
    }
    let mut config = model_config(
        &opts,
        bound(Surface::ConnectorExternal),
        bound(Surface::Gateway),
    );
    // Never reachable on someone else's behalf, whatever the policy allows.
    config.egress.own_listeners = Surface::ALL.map(bound).to_vec();
    config.egress.own_addresses = opts.hosts.iter().filter_map(|h| h.parse().ok()).collect();
    let egress = Arc::new(config.egress.clone());

    let mut model = Model::new(config.clone(), seed);
    let replayed = store::replay(&mut store, |record| model.apply_record(&record)).await?;
    if replica.is_none() {
        // A replica takes over when it takes the lead.
        model.take_over();
    }

    let metrics = Arc::new(Metrics::default());
    let mut push_roots = vec![ca.cert_der().clone()];
    if let Some(pem) = &opts.push_ca_pem {
        push_roots.extend(pki::certs_from_pem(pem)?);
    }
    let push_tls = clients::tls(push_roots, opts.push_tls_skip_verify, clock)?;
    let events = store.events();
    let budget = driver::StorageBudget {
        max_bytes: match store.capacity() {
            Some(capacity) if capacity < opts.max_store_bytes => {
                tracing::info!(
                    budget = capacity,
                    "the stream's size limit leaves room for fewer bytes of events than \
                     --max-store-bytes: publishes are refused with 507 past a quarter of it"
                );
                capacity
            }
            _ => opts.max_store_bytes,
        },
    };
    let mut tasks = Vec::new();
    // The listeners of the deployment's other replicas (none for a server alone).
    let peers = crate::outbound::egress::Peers::default();
    let mut on_stop = None;
    let (handle, ports, driver) = match replica {
        None => driver::spawn(opts.driver, model, store, clock, metrics.clone(), budget)
            .map_err(StartError::Driver)?,
        Some(replica) => {
            let ports = driver::ReplicaPorts {
                lease: replica.lease(),
                forward: replica.forwarder(),
                fresh_model: fresh_models(config.clone(), seed),
                applied: replica.applied(),
            };
            let (handle, driver_ports, running) = driver::spawn_replica(
                opts.driver,
                model,
                store,
                clock,
                metrics.clone(),
                budget,
                ports,
            )
            .map_err(StartError::Driver)?;
            let own = crate::outbound::egress::Listeners {
                bound: config.egress.own_listeners.clone(),
                addresses: config.egress.own_addresses.clone(),
            };
            replica.join(&own, &peers).await?;
            let (replica_tasks, release) = replica.run(handle.clone(), own, peers.clone());
            tasks.extend(replica_tasks);
            on_stop = Some(release);
            (handle, driver_ports, running)
        }
    };
    let outbound_net = EgressNet::new(net.clone(), egress).with_peers(peers);
    tasks.push(tokio::spawn(crate::outbound::push::run(
        NetConnector::new(outbound_net.clone(), push_tls),
        clock,
        events.clone(),
        ports.deliveries,
        ports.outcomes,
        metrics.clone(),
    )));

    let proxy_tls = clients::tls(Vec::new(), opts.proxy_skip_verify, clock)?;
    let unverified_tls = clients::tls(Vec::new(), true, clock)?;
    let forwarder = Forwarder::new(
        clients::proxy_sender(outbound_net.clone(), proxy_tls),
        clients::proxy_sender(outbound_net, unverified_tls),
        clock,
        opts.proxy_timeout,
        metrics.clone(),
    )
    .with_bugs(opts.bugs);
    let app = Arc::new(App {
        driver: handle,
        config: Arc::new(config.clone()),
        ca: ca.clone(),
        metrics,
        body_timeout: opts.body_timeout,
        forwarder,
        proxy_tables: ports.proxy_tables,
        admin_token: admin_token.clone(),
        events,
    });
    let conns = Arc::new(Semaphore::new(opts.max_connections));
    let conn = ConnOptions {
        header_timeout: opts.header_timeout,
        idle_timeout: opts.idle_timeout,
        handshake_timeout: opts.handshake_timeout,
    };
    let addrs = Surface::ALL.map(bound);
    let [
        connector_internal,
        connector_external,
        gateway,
        admin,
        publish,
        proxy,
        kube,
    ] = addrs;
    // kubectl's way in: written at every start (the address may have changed), before the
    // first request is answered.
    crate::pki::files::write_private(
        &opts.data_dir.join(crate::kubeconfig::FILE),
        &crate::kubeconfig::render(
            kube,
            &opts.hosts,
            ca.cert_pem(),
            admin_token.as_ref().map(|t| t.expose()),
        ),
    )?;
    for (surface, listener, _) in listeners {
        let tls = match surface {
            Surface::ConnectorExternal => Some(external_tls.clone()),
            Surface::Gateway => Some(gateway_tls.clone()),
            // The server certificate, with no client certificate asked: kubectl sends the
            // admin token, which it only does over TLS.
            Surface::Kube => Some(external_tls.clone()),
            _ => None,
        };
        tasks.push(tokio::spawn(accept_loop(
            listener,
            tls,
            surface,
            app.clone(),
            conns.clone(),
            conn,
        )));
    }
    Ok(Server {
        connector_internal,
        connector_external,
        gateway,
        admin,
        publish,
        proxy,
        kube,
        ca_pem: ca.cert_pem().to_owned(),
        config,
        replayed,
        admin_token: admin_token.map(|t| t.expose().to_owned()),
        driver,
        tasks,
        on_stop: OnStop(std::sync::Mutex::new(on_stop)),
    })
}
