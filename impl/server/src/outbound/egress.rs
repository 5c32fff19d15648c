//! The egress policy at connect time ([`ace_model::egress`]): every connection ACE opens on
//! someone else's behalf (a subscriber, a registered API, its OAuth server) goes through
//! [`EgressNet`], which resolves the name, checks every address it resolves to, and connects
//! to a checked address: the name is not looked up again, so a name that resolves to another
//! address the second time cannot slip through. A name with any refused address is refused
//! (a mixed answer is what a rebinding attack sends).

use std::collections::BTreeMap;
use std::error::Error;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};

use ace_client::net::{Net, split_host_port};
use ace_model::egress::{EgressPolicy, EgressRefusal};

/// A connection the policy refused, carried inside the `io::Error` the connection fails with.
#[derive(Debug)]
pub struct Refused(pub EgressRefusal);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused by ACE's egress policy: {}", self.0)
    }
}

impl Error for Refused {}

/// The refusal behind `error`, if the policy refused the connection it failed on.
pub fn refusal_of(error: &(dyn Error + 'static)) -> Option<EgressRefusal> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(refused) = e.downcast_ref::<Refused>() {
            return Some(refused.0.clone());
        }
        if let Some(refused) = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Refused>())
        {
            return Some(refused.0.clone());
        }
        next = e.source();
    }
    None
}

/// A network whose connections the egress policy checks.
#[derive(Clone, Debug)]
pub struct EgressNet<N> {
    inner: N,
    policy: Arc<EgressPolicy>,
    peers: Peers,
}

impl<N> EgressNet<N> {
    /// `inner`, checked against `policy`.
    pub fn new(inner: N, policy: Arc<EgressPolicy>) -> Self {
        EgressNet {
            inner,
            policy,
            peers: Peers::default(),
        }
    }

    /// Also refuses the listeners of the deployment's other servers, as `peers` says.
    pub fn with_peers(mut self, peers: Peers) -> Self {
        self.peers = peers;
        self
    }

    fn check(&self, host: &str, addr: SocketAddr) -> io::Result<()> {
        self.policy.check_addr(host, addr).map_err(refused)?;
        self.peers.check(&self.policy, addr).map_err(refused)
    }
}

/// The listeners of a server: where they are bound, and its addresses besides loopback (at
/// which a listener on the unspecified address answers too).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Listeners {
    /// The bound addresses.
    pub bound: Vec<SocketAddr>,
    /// The server's own addresses.
    pub addresses: Vec<IpAddr>,
}

/// The listeners of the other servers of a deployment (replicas on one log): as much ACE's
/// own as its own listeners, never reachable on someone else's behalf. Learnt as replicas
/// come, by member name, and never forgotten while this server runs: a replica's record
/// lapses while it cannot reach the log, and it may still serve meanwhile.
#[derive(Clone, Debug, Default)]
pub struct Peers(Arc<RwLock<BTreeMap<String, Listeners>>>);

impl Peers {
    /// Adds the members `found` (name, listeners) to those known; a member started again
    /// under its name replaces its entry.
    pub fn learn(&self, found: Vec<(String, Listeners)>) {
        if let Ok(mut known) = self.0.write() {
            known.extend(found);
        }
    }

    fn check(&self, policy: &EgressPolicy, addr: SocketAddr) -> Result<(), EgressRefusal> {
        let known = self
            .0
            .read()
            .map_err(|_| EgressRefusal::OwnListener(addr))?;
        for peer in known.values() {
            policy.check_peer(&peer.bound, &peer.addresses, addr)?;
        }
        Ok(())
    }
}

fn refused(refusal: EgressRefusal) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, Refused(refusal))
}

impl<N: Net> Net for EgressNet<N> {
    type Listener = N::Listener;
    type Io = N::Io;

    async fn bind(&self, addr: &str) -> io::Result<Self::Listener> {
        self.inner.bind(addr).await
    }

    async fn connect(&self, addr: &str) -> io::Result<Self::Io> {
        let (host, port) = split_host_port(addr)?;
        self.policy.check_literal(host, port).map_err(refused)?;
        let addrs = self.inner.resolve(host, port).await?;
        for candidate in &addrs {
            self.check(host, *candidate)?;
        }
        let first = addrs.first().copied().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address"))
        })?;
        self.inner.connect_addr(first).await
    }

    async fn resolve(&self, host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        self.inner.resolve(host, port).await
    }

    async fn connect_addr(&self, addr: SocketAddr) -> io::Result<Self::Io> {
        self.check(&addr.ip().to_string(), addr)?;
        self.inner.connect_addr(addr).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ace_client::TokioNet;
    use std::sync::Mutex;

    /// A network whose name service answers from a script (one answer per lookup, in turn)
    /// and which records where connections go; a connection always fails after that.
    #[derive(Clone, Default)]
    struct ScriptedDns {
        answers: Arc<Mutex<Vec<Vec<SocketAddr>>>>,
        connected: Arc<Mutex<Vec<SocketAddr>>>,
    }

    impl Net for ScriptedDns {
        type Listener = tokio::net::TcpListener;
        type Io = tokio::net::TcpStream;

        async fn bind(&self, _: &str) -> io::Result<Self::Listener> {
            Err(io::Error::other("no listeners"))
        }
        async fn connect(&self, _: &str) -> io::Result<Self::Io> {
            Err(io::Error::other("use connect_addr"))
        }
        async fn resolve(&self, _: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
            let mut answers = self
                .answers
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?;
            Ok(if answers.is_empty() {
                Vec::new()
            } else {
                answers.remove(0)
            })
        }
        async fn connect_addr(&self, addr: SocketAddr) -> io::Result<Self::Io> {
            if let Ok(mut c) = self.connected.lock() {
                c.push(addr);
            }
            Err(io::Error::new(io::ErrorKind::ConnectionRefused, "scripted"))
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[tokio::test]
    async fn a_name_is_judged_by_what_it_resolves_to_and_not_looked_up_twice() {
        let dns = ScriptedDns::default();
        let net = EgressNet::new(dns.clone(), Arc::new(EgressPolicy::default()));
        let script = |answers: Vec<Vec<SocketAddr>>| {
            if let Ok(mut a) = dns.answers.lock() {
                *a = answers;
            }
        };
        // A name that resolves to loopback (or to the metadata service) is refused.
        script(vec![vec![addr("127.0.0.1:80")]]);
        let err = net
            .connect("evil.example:80")
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(refusal_of(&err).is_some(), "{err}");
        script(vec![vec![addr("169.254.169.254:80")]]);
        assert!(net.connect("metadata.example:80").await.is_err());
        // A mixed answer is refused whole, as a rebinding attack sends it.
        script(vec![vec![addr("8.8.8.8:80"), addr("10.0.0.1:80")]]);
        let err = net
            .connect("mixed.example:80")
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(refusal_of(&err).is_some(), "{err}");
        // A public answer is connected to, at the checked address: the second, private answer
        // the script holds is never asked for.
        script(vec![vec![addr("8.8.8.8:80")], vec![addr("127.0.0.1:80")]]);
        let err = net.connect("api.example:80").await.map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
        assert_eq!(
            dns.connected.lock().map(|c| c.clone()).unwrap_or_default(),
            [addr("8.8.8.8:80")]
        );
        assert_eq!(
            dns.answers.lock().map(|a| a.len()).unwrap_or_default(),
            1,
            "one lookup"
        );
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_and_says_why() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let strict = EgressNet::new(TokioNet, Arc::new(EgressPolicy::default()));
        // `localhost` is refused by name, and a name that only resolves to loopback by what it
        // resolves to: the machine's own host name.
        for host in ["localhost", "127.0.0.1", "[::ffff:127.0.0.1]"] {
            let err = strict
                .connect(&format!("{host}:{port}"))
                .await
                .map(|_| ())
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{host}");
            assert!(refusal_of(&err).is_some(), "{host}: {err}");
        }
        let mut private = EgressPolicy::default();
        private.allow_private = true;
        let open = EgressNet::new(TokioNet, Arc::new(private.clone()));
        assert!(open.connect(&format!("localhost:{port}")).await.is_ok());
        // ACE's own listener stays refused with private addresses allowed.
        private.own_listeners = vec![SocketAddr::from(([127, 0, 0, 1], port))];
        let own = EgressNet::new(TokioNet, Arc::new(private));
        let err = own
            .connect(&format!("localhost:{port}"))
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(
            matches!(refusal_of(&err), Some(EgressRefusal::OwnListener(_))),
            "{err}"
        );
    }
}
