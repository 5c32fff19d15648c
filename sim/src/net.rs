//! `ace serve`'s network seam on turmoil's simulated TCP.

use std::io;
use std::net::SocketAddr;

use ace_client::net::{Listener, Net};

/// A listener on a turmoil host.
pub struct TurmoilListener(turmoil::net::TcpListener);

impl std::fmt::Debug for TurmoilListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("TurmoilListener")
            .field(&self.0.local_addr().ok())
            .finish()
    }
}

impl Listener for TurmoilListener {
    type Io = turmoil::net::TcpStream;

    async fn accept(&self) -> io::Result<(Self::Io, SocketAddr)> {
        self.0.accept().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

/// turmoil's simulated network. Listeners bind `0.0.0.0:<port>` (turmoil accepts only the
/// unspecified address or localhost); clients connect to `<host name>:<port>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TurmoilNet;

impl Net for TurmoilNet {
    type Listener = TurmoilListener;
    type Io = turmoil::net::TcpStream;

    async fn bind(&self, addr: &str) -> io::Result<Self::Listener> {
        turmoil::net::TcpListener::bind(addr.to_owned())
            .await
            .map(TurmoilListener)
    }

    async fn connect(&self, addr: &str) -> io::Result<Self::Io> {
        turmoil::net::TcpStream::connect(addr.to_owned()).await
    }

    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        // turmoil's own name table (an unknown name gets an address no host listens on, so a
        // connection to it is refused, as a name without a host would fail).
        Ok(vec![SocketAddr::new(turmoil::lookup(bare), port)])
    }

    async fn connect_addr(&self, addr: SocketAddr) -> io::Result<Self::Io> {
        turmoil::net::TcpStream::connect(addr).await
    }
}
