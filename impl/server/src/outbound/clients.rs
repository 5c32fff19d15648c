//! The clients the outbound layer sends with: TLS for subscribers, registered APIs and OAuth
//! servers (verified against the injected clock), and the proxy's connection pools.

use std::sync::Arc;
use std::time::Duration;

use ace_client::Clock;
use ace_client::connector::{NetConnector, pooled_client};
use ace_client::net::Net;
use ace_client::tls::{TlsError, TlsOptions, tls_connector};
use rustls::pki_types::CertificateDer;
use tokio_rustls::TlsConnector;

use super::forward::{PooledSender, Sender};

/// Most idle connections the proxy keeps per registered API host.
pub const PROXY_MAX_IDLE_PER_HOST: usize = 512;

/// A pooled connection idle this long is closed.
pub const PROXY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The TLS connector for servers ACE calls: verified against `roots` at `clock`'s time, or
/// not at all when `skip_verify` (Kyma's chart set `tls_skip_verify` for subscribers; the
/// seed's `skipVerify` for registered APIs).
pub fn tls(
    roots: Vec<CertificateDer<'static>>,
    skip_verify: bool,
    clock: Clock,
) -> Result<TlsConnector, TlsError> {
    let options = TlsOptions {
        roots,
        insecure: skip_verify,
        identity: None,
    };
    tls_connector(&options, clock)
}

/// The proxy's pooled client on `net`, verifying with `tls`.
pub fn proxy_sender<N: Net>(net: N, tls: TlsConnector) -> Arc<dyn Sender> {
    let connector = NetConnector::new(net, tls);
    Arc::new(PooledSender::new(
        pooled_client(
            connector.clone(),
            PROXY_MAX_IDLE_PER_HOST,
            PROXY_IDLE_TIMEOUT,
        ),
        connector,
    ))
}
