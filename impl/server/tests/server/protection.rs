//! Protections: expired certificates, slow clients, too many connections.

use std::time::Duration;

use crate::common::*;
use ace_model::Timestamp;
use ace_server::pki::{Ca, KeyKind, KeySource};
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn an_expired_client_certificate_fails_the_handshake() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    s.apply_re("ec").await;
    // Issued by ACE's own CA for the right RE, but its validity ended an hour ago.
    let ca = Ca::load_or_create(
        dir.path(),
        &mut KeySource::Os(KeyKind::EcdsaP256),
        Timestamp::from_unix_millis(now_ms()),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let status = gateway_status_with_certificate(&s, &ca, "22", -7_200_000, -3_600_000).await;
    assert_eq!(
        status, None,
        "an expired certificate must not get an answer"
    );
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = options(dir.path());
    opts.header_timeout = Duration::from_millis(300);
    // Far longer: what closes these connections is the header timeout.
    opts.idle_timeout = Duration::from_secs(60);
    let s = start_with(opts).await;
    let mut conn = TcpStream::connect(s.server.admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server must close a connection whose headers never end"
    );
    // So is a connection that never sends a request.
    let mut silent = TcpStream::connect(s.server.admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server must close a connection that sends nothing"
    );
}

#[tokio::test]
async fn a_keep_alive_connection_outlives_the_header_timeout_until_the_idle_limit() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = options(dir.path());
    opts.header_timeout = Duration::from_millis(300);
    opts.idle_timeout = Duration::from_secs(2);
    let s = start_with(opts).await;
    let mut conn = TcpStream::connect(s.server.admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(healthz_on(&mut conn).await.starts_with("HTTP/1.1 200"));
    // Idle for longer than the header timeout: the connection is still open.
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        healthz_on(&mut conn).await.starts_with("HTTP/1.1 200"),
        "the idle connection was closed before the idle limit"
    );
    // Then idle past the idle limit: the server ends it.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "the server must close an idle connection at the idle limit: {read:?}"
    );
}

/// Sends `GET /healthz` on a keep-alive connection and reads its whole answer.
async fn healthz_on(conn: &mut TcpStream) -> String {
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let text = String::from_utf8_lossy(&answer).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_owned())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or_else(|| panic!("no content-length in {head}"));
            if body.len() >= length {
                return text;
            }
        }
        let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut buf))
            .await
            .unwrap_or_else(|e| panic!("no answer: {e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(n > 0, "the connection closed while an answer was awaited");
        answer.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test]
async fn connections_beyond_the_cap_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = options(dir.path());
    opts.max_connections = 2;
    opts.header_timeout = Duration::from_secs(30);
    let s = start_with(opts).await;
    let _held: Vec<TcpStream> = vec![
        TcpStream::connect(s.server.admin)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        TcpStream::connect(s.server.admin)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut third = TcpStream::connect(s.server.admin)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let _ = third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the connection over the cap is closed at once"
    );
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "and not served"
    );
    drop(_held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s.send(Method::GET, &s.admin("/metrics"), None, None).await;
    assert!(
        r.text().contains("ace_connections_refused_total 1"),
        "{}",
        r.text()
    );
}
