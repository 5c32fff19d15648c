//! A NATS JetStream cluster on loopback, for the replicated store's tests: three (or one)
//! `nats-server` processes with their own ports and store directories, `sync_interval:
//! always`, which a test can kill (`SIGKILL`) and restart on the same directory.
//!
//! The binary is `$NATS_SERVER`, else the one `scripts/nats-install.sh` installs
//! (`~/.cache/ace/nats/nats-server`), else `nats-server` on the `PATH`.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The files every replica of one deployment shares (the first replica makes them).
pub const IDENTITY: [&str; 5] = [
    "ca.crt",
    "ca.key",
    "server.crt",
    "server.key",
    "admin.token",
];

/// Where the nats-server binary is.
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return PathBuf::from(path);
    }
    let installed = std::env::var_os("ACE_NATS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ace/nats")))
        .map(|dir| dir.join("nats-server"));
    match installed {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("nats-server"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free port: {e}"))
}

/// One node.
struct Node {
    port: u16,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running cluster; its processes are killed when it is dropped.
pub struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<Node>,
}

impl Cluster {
    /// Starts `n` nodes (1 or 3) and waits until each accepts connections. The ports are
    /// picked free and then bound by the servers, so another process may take one in between:
    /// a node that exits (`address already in use`) has the whole cluster started again on
    /// other ports, up to five times.
    pub fn start(n: usize) -> Cluster {
        Self::start_with(n, "")
    }

    /// The same, with `extra` added to every node's configuration (a `tls { ... }` block,
    /// say).
    pub fn start_with(n: usize, extra: &str) -> Cluster {
        for _ in 0..5 {
            let mut cluster = Self::configure(n, extra);
            if (0..n).all(|i| cluster.try_start(i)) {
                return cluster;
            }
        }
        panic!("a {n}-node NATS cluster did not start in five attempts");
    }

    /// Picks ports and writes the nodes' configurations.
    fn configure(n: usize, extra: &str) -> Cluster {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("\"nats-route://127.0.0.1:{route}\""))
            .collect();
        let mut nodes = Vec::new();
        for (i, (port, route)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let store = dir.path().join(&name);
            let cluster = if n > 1 {
                format!(
                    "cluster {{\n  name: ace-test\n  listen: 127.0.0.1:{route}\n  routes: [{}]\n}}\n",
                    routes.join(", ")
                )
            } else {
                String::new()
            };
            let config = dir.path().join(format!("{name}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{port}\n\
                     max_payload: 8MB\njetstream {{\n  store_dir: \"{}\"\n  sync_interval: always\n}}\n{cluster}{extra}\n",
                    store.display()
                ),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            nodes.push(Node {
                port: *port,
                config,
                log: dir.path().join(format!("{name}.log")),
                child: None,
            });
        }
        Cluster { _dir: dir, nodes }
    }

    /// `nats://` URLs of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect()
    }

    /// Kills node `i` with SIGKILL (no clean shutdown), and waits for it to be gone.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// (Re)starts node `i` on its ports and store directory; waits until it listens.
    pub fn restart(&mut self, i: usize) {
        assert!(
            self.try_start(i),
            "nats-server {} exited: {}",
            self.nodes[i].config.display(),
            tail(&self.nodes[i].log)
        );
    }

    /// Starts node `i` and waits until it listens; `false` if it exited instead.
    fn try_start(&mut self, i: usize) -> bool {
        self.kill(i);
        let node = &mut self.nodes[i];
        let log = std::fs::File::create(&node.log).unwrap_or_else(|e| panic!("{e}"));
        let child = Command::new(binary())
            .arg("-c")
            .arg(&node.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} (scripts/nats-install.sh installs nats-server; CI runs it): {e}",
                    binary().display()
                )
            });
        node.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let exited = |node: &mut Node| {
            node.child
                .as_mut()
                .is_none_or(|c| c.try_wait().ok().flatten().is_some())
        };
        while std::net::TcpStream::connect(("127.0.0.1", node.port)).is_err() {
            if exited(node) {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not listen: {}",
                node.config.display(),
                tail(&node.log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // A node listens for clients before it binds its route port, and exits if that is
        // taken.
        let clustered =
            std::fs::read_to_string(&node.config).is_ok_and(|c| c.contains("cluster {"));
        while clustered
            && !std::fs::read_to_string(&node.log)
                .is_ok_and(|l| l.contains("Listening for route connections"))
        {
            if exited(node) {
                return false;
            }
            assert!(
                Instant::now() < deadline,
                "nats-server {} did not listen for routes: {}",
                node.config.display(),
                tail(&node.log)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        !exited(node)
    }
}

#[cfg(feature = "jetstream")]
impl Cluster {
    /// The JetStream API of `cluster`, through its first node.
    pub async fn jetstream_api(&self) -> async_nats::jetstream::Context {
        let client = async_nats::connect(self.urls()[0].as_str())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        async_nats::jetstream::new(client)
    }

    /// Which node (0 for `n1`, ...) leads `stream`, once one does.
    pub async fn stream_leader(&self, stream: &str) -> usize {
        let js = self.jetstream_api().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(s) = js.get_stream(stream).await
                && let Ok(info) = s.get_info().await
                && let Some(leader) = info.cluster.and_then(|c| c.leader)
                && let Some(i) = leader
                    .strip_prefix('n')
                    .and_then(|n| n.parse::<usize>().ok())
            {
                return i - 1;
            }
            assert!(Instant::now() < deadline, "stream {stream} has no leader");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asserts that the three NATS nodes agree on `stream` within 20 s: one leads, and both
    /// others are current, online and not behind it.
    pub async fn nodes_agree(&self, stream: &str) {
        let js = self.jetstream_api().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let cluster_info = match js.get_stream(stream).await {
                Ok(s) => s.get_info().await.ok().and_then(|i| i.cluster),
                Err(_) => None,
            };
            let agreed = cluster_info.as_ref().is_some_and(|c| {
                c.leader.is_some()
                    && c.replicas.len() == 2
                    && c.replicas
                        .iter()
                        .all(|p| p.current && !p.offline && p.lag.unwrap_or(0) == 0)
            });
            if agreed {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the NATS nodes do not agree on {stream}: {cluster_info:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

/// Opens the store on `options`, waiting while the cluster elects its first leaders.
pub async fn open(
    options: &ace_server::store::jetstream::JetStreamOptions,
) -> ace_server::store::jetstream::JetStreamStore {
    use ace_server::store::StoreError;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match ace_server::store::jetstream::JetStreamStore::open(options).await {
            Ok(store) => return store,
            Err(StoreError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("open: {e}"),
        }
    }
}
