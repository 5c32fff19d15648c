//! Connections for long-lived clients: a plain-or-TLS stream, a hyper-util connector over a
//! [`Net`], and a pooled client built on it (what the proxy and the push workers use).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::net::{Net, Stream, host_port};

/// A stream to a server, plain or TLS.
pub enum MaybeTls<S> {
    /// `http://`.
    Plain(S),
    /// `https://`.
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
}

impl<S> std::fmt::Debug for MaybeTls<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MaybeTls::Plain(_) => "MaybeTls::Plain",
            MaybeTls::Tls(_) => "MaybeTls::Tls",
        })
    }
}

impl<S: Stream> tokio::io::AsyncRead for MaybeTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: Stream> tokio::io::AsyncWrite for MaybeTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl<S> Connection for MaybeTls<S> {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// Opens connections over a [`Net`], with TLS for `https` URIs; a hyper-util connector.
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

impl<N: Net> NetConnector<N> {
    /// A connector on `net`; `tls` verifies `https` servers.
    pub fn new(net: N, tls: TlsConnector) -> Self {
        NetConnector { net, tls }
    }

    /// Opens a connection to `uri`'s host and port (TLS for `https`).
    pub async fn connect(&self, uri: &Uri) -> io::Result<MaybeTls<N::Io>> {
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "URI without host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let stream = self.net.connect(&host_port(&host, port)).await?;
        if !https {
            return Ok(MaybeTls::Plain(stream));
        }
        let name = ServerName::try_from(host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        let tls = self.tls.connect(name, stream).await?;
        Ok(MaybeTls::Tls(Box::new(tls)))
    }
}

impl<N: Net> tower_service::Service<Uri> for NetConnector<N> {
    type Response = TokioIo<MaybeTls<N::Io>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connector = self.clone();
        Box::pin(async move { connector.connect(&uri).await.map(TokioIo::new) })
    }
}

/// A pooled HTTP(S) client on `connector`, keeping up to `max_idle_per_host` idle
/// connections per host for `idle_timeout`.
pub fn pooled_client<N: Net>(
    connector: NetConnector<N>,
    max_idle_per_host: usize,
    idle_timeout: Duration,
) -> Client<NetConnector<N>, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(idle_timeout)
        .pool_max_idle_per_host(max_idle_per_host)
        .build(connector)
}
