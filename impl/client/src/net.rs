//! The network seam: servers accept from a [`Listener`] and clients connect through a
//! [`Net`], so the same code runs on real sockets ([`TokioNet`]) and in a simulated network.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};

use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream a server or client can speak HTTP over.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Stream for T {}

/// Something that accepts connections.
pub trait Listener: Send + Sync + 'static {
    /// The accepted stream.
    type Io: Stream;
    /// The next connection and its peer address.
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, SocketAddr)>> + Send;
    /// The bound address.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Io, SocketAddr)> {
        let (stream, addr) = tokio::net::TcpListener::accept(self).await?;
        let _ = stream.set_nodelay(true);
        Ok((stream, addr))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        tokio::net::TcpListener::local_addr(self)
    }
}

/// A network: binds listeners and opens connections.
pub trait Net: Clone + Send + Sync + 'static {
    /// Its listeners.
    type Listener: Listener;
    /// Its client streams.
    type Io: Stream;
    /// Binds `addr` (`host:port`).
    fn bind(&self, addr: &str) -> impl Future<Output = io::Result<Self::Listener>> + Send;
    /// Connects to `addr` (`host:port`).
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Io>> + Send;
    /// The addresses `host` (a name, or an address literal) resolves to, with `port`.
    fn resolve(
        &self,
        host: &str,
        port: u16,
    ) -> impl Future<Output = io::Result<Vec<SocketAddr>>> + Send;
    /// Connects to one resolved address (no name is looked up again).
    fn connect_addr(&self, addr: SocketAddr) -> impl Future<Output = io::Result<Self::Io>> + Send;
}

/// The operating system's network.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioNet;

impl Net for TokioNet {
    type Listener = tokio::net::TcpListener;
    type Io = tokio::net::TcpStream;

    async fn bind(&self, addr: &str) -> io::Result<Self::Listener> {
        tokio::net::TcpListener::bind(addr).await
    }

    async fn connect(&self, addr: &str) -> io::Result<Self::Io> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        Ok(tokio::net::lookup_host((bare, port)).await?.collect())
    }

    async fn connect_addr(&self, addr: SocketAddr) -> io::Result<Self::Io> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

/// `host` and `port` of `host:port` (an IPv6 host in brackets).
pub fn split_host_port(addr: &str) -> io::Result<(&str, u16)> {
    let bad = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not host:port: {addr}"),
        )
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    Ok((host.trim_start_matches('[').trim_end_matches(']'), port))
}

/// `host:port` for a URI host (IPv6 in brackets or not) and a port.
pub fn host_port(host: &str, port: u16) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
