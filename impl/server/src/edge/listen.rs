//! Accepting connections: a connection cap over every listener, TLS handshakes within a time
//! limit, and HTTP/1.1 with a header timeout and an idle timeout ([`super::timed`]), each
//! connection in a task of its own.

use std::sync::Arc;
use std::time::Duration;

use ace_client::net::Listener;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::timed::{Answered, Phase, Timed};
use super::{App, Surface};
use crate::outbound::forward::Upstream;
use crate::pki;

/// Limits of one connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnOptions {
    /// Time allowed to send a request's headers, from their first byte (or from the
    /// connection's start, for its first request).
    pub header_timeout: Duration,
    /// Time a keep-alive connection may sit idle between an answer and the next request.
    pub idle_timeout: Duration,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout: Duration,
}

/// Accepts connections on `listener` for `surface` until the task is aborted.
pub async fn accept_loop<L: Listener>(
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
                None => serve_connection(io, surface, None, app, opts).await,
                Some(acceptor) => {
                    match tokio::time::timeout(opts.handshake_timeout, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => {
                            let peer = stream
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|c| c.first())
                                .and_then(pki::peer_identity);
                            serve_connection(stream, surface, peer, app, opts).await;
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
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let phase = Phase::new();
    let io = TokioIo::new(Timed::new(
        io,
        phase.clone(),
        opts.header_timeout,
        opts.idle_timeout,
    ));
    // The proxy forwards one connection's calls over an upstream connection of its own,
    // closed with this one.
    let upstream = (surface == Surface::Proxy).then(Upstream::default);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        let app = app.clone();
        let peer = peer.clone();
        if let Some(upstream) = &upstream {
            req.extensions_mut().insert(upstream.clone());
        }
        let phase = phase.clone();
        phase.serving();
        async move {
            let response = app.handle(surface, peer, req).await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| Answered::new(body, phase)))
        }
    });
    // The header and idle timeouts are `Timed`'s: hyper's own header timer would count from
    // the previous answer, and so close idle keep-alive connections after the header timeout.
    let result = hyper::server::conn::http1::Builder::new()
        .max_buf_size(64 * 1024)
        .serve_connection(io, service)
        .await;
    if let Err(e) = result {
        tracing::debug!(surface = surface.name(), error = %e, "connection ended with an error");
    }
}
