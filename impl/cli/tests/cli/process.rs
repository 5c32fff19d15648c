//! `ace serve` as a child process, on loopback ports picked free.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The child's ports.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub internal: u16,
    pub external: u16,
    pub gateway: u16,
    pub admin: u16,
    pub publish: u16,
    pub proxy: u16,
}

impl Ports {
    /// The admin API's base URL.
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin)
    }

    /// The publish API's events URL.
    pub fn publish_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1/events", self.publish)
    }
}

/// A running `ace serve`; killed (SIGKILL) and reaped when dropped.
pub struct ServeProcess {
    child: Child,
    pub ports: Ports,
    data: std::path::PathBuf,
    /// Where its log (stderr) goes: `<data>.log`, appended to by every start on `<data>`.
    log: std::path::PathBuf,
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        // Already gone if the test killed it.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Whether `GET /readyz` on the admin port answers 200.
fn ready(admin: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", admin)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

impl ServeProcess {
    /// Kills the child with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill_9(&mut self) {
        self.child.kill().unwrap_or_else(|e| panic!("{e}"));
        let _ = self.child.wait();
    }

    /// Sends the signal `name` (`TERM`, `STOP`, `CONT`) to the child.
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("kill: {e}"));
        assert!(sent.success(), "kill -{name} failed");
    }

    /// Sends SIGTERM and waits (up to 10 s) for the child to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal("TERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap_or_else(|e| panic!("{e}")) {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "ace serve did not stop within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything logged so far by every server started on this data directory.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The admin API's `Authorization` header: the token the server keeps in its data
    /// directory.
    pub fn authorization(&self) -> String {
        let token = std::fs::read_to_string(self.data.join("admin.token"))
            .unwrap_or_else(|e| panic!("admin.token: {e}"));
        format!("Bearer {}", token.trim())
    }

    /// Starts `ace serve` on `data` with `extra` arguments and waits until it is ready.
    ///
    /// The ports are picked free and then bound by the child, so another process may take one
    /// in between ("Address already in use"): a child that exits before it is ready is
    /// started again on other ports, up to five times. Blocks; from async code, call it on a
    /// blocking thread.
    pub fn start(data: &Path, extra: &[&str]) -> ServeProcess {
        for _ in 0..5 {
            if let Some(s) = Self::try_start(data, extra) {
                return s;
            }
        }
        panic!("ace serve did not come up in five attempts");
    }

    fn try_start(data: &Path, extra: &[&str]) -> Option<ServeProcess> {
        let ports = Ports {
            internal: free_port(),
            external: free_port(),
            gateway: free_port(),
            admin: free_port(),
            publish: free_port(),
            proxy: free_port(),
        };
        let addr = |port: u16| format!("127.0.0.1:{port}");
        let log = data.with_extension("log");
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("{}: {e}", log.display()));
        let child = Command::new(env!("CARGO_BIN_EXE_ace"))
            .args(["serve", "--data-dir"])
            .arg(data)
            .args(["--connector-internal-addr", &addr(ports.internal)])
            .args(["--connector-external-addr", &addr(ports.external)])
            .args(["--gateway-addr", &addr(ports.gateway)])
            .args(["--admin-addr", &addr(ports.admin)])
            .args(["--publish-addr", &addr(ports.publish)])
            .args(["--proxy-addr", &addr(ports.proxy)])
            // Any free port: its address is in the kubeconfig the server writes.
            .args(["--kube-addr", "127.0.0.1:0"])
            // The tests' subscribers are on loopback (ACE's own listeners stay refused).
            .arg("--allow-private-egress")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut s = ServeProcess {
            child,
            ports,
            data: data.to_owned(),
            log,
        };
        let started = Instant::now();
        while !ready(ports.admin) {
            if s.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "ace serve did not come up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(s)
    }
}
