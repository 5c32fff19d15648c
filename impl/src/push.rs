//! Push delivery: performs the HTTP POSTs the model decides on and reports their outcomes.
//!
//! One pooled client (connection reuse per endpoint) runs on the injected [`Net`], so the
//! same code runs on real sockets and in a simulation. Every attempt is aborted at its
//! deadline; the model then counts it as timed out. The model starts at most `max_inflight`
//! deliveries per subscription, and a slow subscriber only holds its own attempts: each
//! attempt is its own task.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ace_model::bus::{Delivery, DeliveryOutcome, DeliveryResult};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::driver::Clock;
use crate::net::{Net, Stream};
use crate::store::EventBodies;

/// A stream to a subscriber, plain or TLS.
pub enum PushIo<S> {
    /// `http://`.
    Plain(S),
    /// `https://`.
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
}

impl<S> std::fmt::Debug for PushIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushIo::Plain(_) => "PushIo::Plain",
            PushIo::Tls(_) => "PushIo::Tls",
        })
    }
}

impl<S: Stream> tokio::io::AsyncRead for PushIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PushIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PushIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: Stream> tokio::io::AsyncWrite for PushIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PushIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PushIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PushIo::Plain(s) => Pin::new(s).poll_flush(cx),
            PushIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PushIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PushIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl<S> Connection for PushIo<S> {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// A hyper-util connector over a [`Net`], with TLS for `https` endpoints.
#[derive(Clone)]
pub struct NetConnector<N> {
    net: N,
    tls: TlsConnector,
}

impl<N> std::fmt::Debug for NetConnector<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetConnector").finish_non_exhaustive()
    }
}

impl<N: Net> tower_service::Service<Uri> for NetConnector<N> {
    type Response = TokioIo<PushIo<N::Io>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let net = self.net.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let https = uri.scheme_str() == Some("https");
            let host = uri.host().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "endpoint without host")
            })?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let addr = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let stream = net.connect(&addr).await?;
            if !https {
                return Ok(TokioIo::new(PushIo::Plain(stream)));
            }
            let name = ServerName::try_from(host)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            let tls = tls.connect(name, stream).await?;
            Ok(TokioIo::new(PushIo::Tls(Box::new(tls))))
        })
    }
}

/// Performs deliveries and sends their outcomes back.
#[derive(Clone)]
pub struct Pusher<N: Net> {
    client: Client<NetConnector<N>, Full<Bytes>>,
    clock: Clock,
    bodies: Arc<dyn EventBodies>,
}

impl<N: Net> std::fmt::Debug for Pusher<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").finish_non_exhaustive()
    }
}

/// Most idle connections kept per subscriber host: `max_inflight` goes up to 400 per
/// subscription, and several subscriptions may share a host.
pub const MAX_IDLE_PER_ENDPOINT: usize = 512;

/// A pooled HTTP(S) client on `net` (connection reuse per endpoint); `tls` verifies `https`
/// servers.
pub fn pooled_client<N: Net>(net: N, tls: TlsConnector) -> Client<NetConnector<N>, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(MAX_IDLE_PER_ENDPOINT)
        .build(NetConnector { net, tls })
}

impl<N: Net> Pusher<N> {
    /// A pusher on `net`; `tls` verifies `https` subscribers; bodies the model does not hold
    /// in memory are read from `bodies`.
    pub fn new(net: N, tls: TlsConnector, clock: Clock, bodies: Arc<dyn EventBodies>) -> Self {
        Pusher {
            client: pooled_client(net, tls),
            clock,
            bodies,
        }
    }

    /// Starts `delivery` in its own task; `report` receives its outcome.
    pub fn start<F>(&self, delivery: Delivery, report: F)
    where
        F: FnOnce(DeliveryOutcome) + Send + 'static,
    {
        let client = self.client.clone();
        let wait = delivery
            .deadline
            .saturating_duration_since(self.clock.now());
        let body = if delivery.event.body_stored {
            match self.bodies.body(delivery.seq) {
                Ok(Some(body)) => Bytes::from(body),
                other => {
                    // The store failed or no longer has the body: the attempt fails and is
                    // retried; the event is never silently skipped.
                    let found = other.map(|b| b.is_some());
                    tracing::error!(
                        seq = delivery.seq,
                        ?found,
                        "an event's body could not be read"
                    );
                    report(DeliveryOutcome {
                        delivery: delivery.id,
                        result: DeliveryResult::ConnectionError,
                    });
                    return;
                }
            }
        } else {
            Bytes::copy_from_slice(delivery.body().as_bytes())
        };
        tokio::spawn(async move {
            let result = match tokio::time::timeout(wait, post(&client, &delivery, body)).await {
                Ok(Ok(status)) => DeliveryResult::Status(status),
                Ok(Err(e)) => {
                    tracing::debug!(endpoint = %delivery.endpoint, error = %e, "delivery failed");
                    DeliveryResult::ConnectionError
                }
                Err(_) => DeliveryResult::Timeout,
            };
            tracing::debug!(
                endpoint = %delivery.endpoint,
                attempt = delivery.attempt,
                ?result,
                "delivery finished"
            );
            report(DeliveryOutcome {
                delivery: delivery.id,
                result,
            });
        });
    }
}

async fn post<N: Net>(
    client: &Client<NetConnector<N>, Full<Bytes>>,
    delivery: &Delivery,
    body: Bytes,
) -> Result<u16, String> {
    let mut request = hyper::Request::post(&*delivery.endpoint);
    for (name, value) in delivery.headers() {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(body)).map_err(|e| e.to_string())?;
    let response = client.request(request).await.map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    // Read the body so the connection can be reused.
    let _ = response.into_body().collect().await;
    Ok(status)
}

/// The TLS connector for `https` subscribers: verified against `roots`, or not at all when
/// `skip_verify` (Kyma's chart set `tls_skip_verify`).
pub fn subscriber_tls(
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    skip_verify: bool,
) -> Result<TlsConnector, String> {
    let options = crate::client::TlsOptions {
        roots,
        insecure: skip_verify,
        identity: None,
    };
    crate::client::tls_connector(&options).map_err(|e| e.to_string())
}
