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

/// turmoil's network as the clients of a replicated deployment see it: the name `ace`
/// reaches the deployment's replicas in turn, one per connection (a DNS round robin, as a
/// load balancer in front of the replicas would); every other name is turmoil's. With no
/// replicas, `ace` is the host of that name.
#[derive(Clone, Debug, Default)]
pub struct DeploymentNet {
    replicas: std::sync::Arc<[&'static str]>,
    turn: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl DeploymentNet {
    /// `ace` as the hosts `replicas`, in turn.
    pub fn new(replicas: &[&'static str]) -> Self {
        DeploymentNet {
            replicas: replicas.into(),
            turn: std::sync::Arc::default(),
        }
    }

    /// The host a connection to `host` goes to.
    fn host<'a>(&self, host: &'a str) -> &'a str
    where
        'static: 'a,
    {
        if host != "ace" || self.replicas.is_empty() {
            return host;
        }
        let turn = self.turn.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.replicas[turn % self.replicas.len()]
    }
}

impl Net for DeploymentNet {
    type Listener = TurmoilListener;
    type Io = turmoil::net::TcpStream;

    async fn bind(&self, addr: &str) -> io::Result<Self::Listener> {
        TurmoilNet.bind(addr).await
    }

    async fn connect(&self, addr: &str) -> io::Result<Self::Io> {
        match addr.rsplit_once(':') {
            Some((host, port)) => {
                TurmoilNet
                    .connect(&format!("{}:{port}", self.host(host)))
                    .await
            }
            None => TurmoilNet.connect(addr).await,
        }
    }

    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        TurmoilNet.resolve(self.host(host), port).await
    }

    async fn connect_addr(&self, addr: SocketAddr) -> io::Result<Self::Io> {
        TurmoilNet.connect_addr(addr).await
    }
}
