//! The embedded target of `ace conformance`: an `ace serve` on loopback ports with a temporary
//! data directory, settings that make the suite fast (short token TTL, quick retries), and a
//! restart that drops the process state and keeps the store, as a crash would.

use std::sync::Arc;
use std::time::Duration;

use ace_conformance::target::{BoxFuture, Restart, Target};
use ace_model::bus::RetryPolicy;
use tokio::sync::Mutex;

use ace_client::{Clock, TokioNet};
use ace_server::edge::auth::TOKEN_FILE;
use ace_server::{ServeOptions, Server};

/// Token lifetime of the embedded target (short, so the expiry check is quick).
pub const TOKEN_TTL: Duration = Duration::from_secs(2);
/// The embedded target's window of owed events kept in memory per subscription.
pub const BACKLOG_WINDOW: usize = 8;
/// The embedded target's backlog limit per subscription.
pub const MAX_BACKLOG_EVENTS: u64 = 50;

/// A running embedded target.
#[derive(Debug)]
pub struct Embedded {
    dir: tempfile::TempDir,
    opts: ServeOptions,
    clock: Clock,
    server: Mutex<Option<Server>>,
}

impl Embedded {
    /// Starts an embedded server; `tune` may change its options (e.g. inject a bug).
    pub async fn start(
        clock: Clock,
        seed: ace_model::Seed,
        tune: impl FnOnce(&mut ServeOptions),
    ) -> Result<Arc<Embedded>, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        // Ports the system picks at the first start (asking for free ones first and binding
        // them later would race with other processes); a restart binds the same ones again.
        let mut opts = ServeOptions::loopback(dir.path());
        // The suite's own subscriber, OAuth server and API listen on loopback: the embedded
        // target allows private addresses (ACE's own listeners stay refused).
        opts.egress.allow_private = true;
        opts.token_ttl = TOKEN_TTL;
        opts.bus.retry = RetryPolicy::Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(400),
        };
        // A small window and a small backlog limit: the suite's backlogs move through the
        // store, and the backlog-limit check reaches the limit with a few dozen events.
        opts.bus.backlog_window = BACKLOG_WINDOW;
        opts.bus.max_backlog_events = MAX_BACKLOG_EVENTS;
        tune(&mut opts);
        let server = ace_server::start(TokioNet, opts.clone(), clock, seed)
            .await
            .map_err(|e| format!("embedded server: {e}"))?;
        for (addr, bound) in opts.listen_addrs_mut().into_iter().zip(server.addrs()) {
            *addr = bound.to_string();
        }
        if opts.proxy_url == ServeOptions::default().proxy_url {
            // As the server did: the URL of the proxy's real address.
            opts.proxy_url = format!("http://{}", server.proxy);
        }
        Ok(Arc::new(Embedded {
            dir,
            opts,
            clock,
            server: Mutex::new(Some(server)),
        }))
    }

    /// The kubeconfig the embedded server wrote (its Kubernetes API, CA and token).
    pub fn kubeconfig(&self) -> String {
        self.dir
            .path()
            .join(ace_server::kubeconfig::FILE)
            .display()
            .to_string()
    }

    /// The target the suite checks.
    pub fn target(&self) -> Target {
        let port = |addr: &str| addr.rsplit(':').next().unwrap_or_default().to_owned();
        Target {
            connector_internal: format!("http://{}", self.opts.connector_internal_addr),
            connector_external: format!(
                "https://localhost:{}",
                port(&self.opts.connector_external_addr)
            ),
            gateway: format!("https://localhost:{}", port(&self.opts.gateway_addr)),
            publish: Some(format!("http://{}", self.opts.publish_addr)),
            admin: Some(format!("http://{}", self.opts.admin_addr)),
            admin_token: std::fs::read_to_string(self.dir.path().join(TOKEN_FILE))
                .ok()
                .map(|t| t.trim().to_owned()),
            kubeconfig: None,
            kube_context: None,
            proxy: Some(self.opts.proxy_url.clone()),
            ca: Some(self.dir.path().join("ca.crt").display().to_string()),
            insecure: false,
            token_ttl_seconds: Some(TOKEN_TTL.as_secs()),
            oauth_margin_seconds: None,
            delivery_timeout_seconds: Some(10),
            max_backlog_events: Some(self.opts.bus.max_backlog_events),
            restart_command: None,
            endpoint_listen: None,
            endpoint_url: None,
        }
    }

    /// Stops the server.
    pub async fn stop(&self) {
        if let Some(s) = self.server.lock().await.take() {
            s.stop().await;
        }
    }
}

/// A new seed for a restarted server (a restarted `ace serve` draws one from the OS too).
fn fresh_seed() -> ace_model::Seed {
    ace_model::Seed(rand::random())
}

/// Restarts an [`Embedded`] target: stops every task (memory is lost, as in a crash) and
/// starts again on the same ports and store.
#[derive(Debug, Clone)]
pub struct EmbeddedRestart(pub Arc<Embedded>);

impl Restart for EmbeddedRestart {
    fn restart(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let e = &self.0;
            let mut slot = e.server.lock().await;
            if let Some(s) = slot.take() {
                s.stop().await;
            }
            let server = ace_server::start(TokioNet, e.opts.clone(), e.clock, fresh_seed())
                .await
                .map_err(|err| format!("embedded server restart: {err}"))?;
            *slot = Some(server);
            Ok(())
        })
    }
}
