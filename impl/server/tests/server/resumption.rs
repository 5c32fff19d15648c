//! TLS 1.3 session resumption on the HTTPS listeners: a returning client resumes its session,
//! also after many other clients have connected in between.

use std::net::SocketAddr;

use crate::common::start;
use ace_client::TlsOptions;
use ace_server::pki;
use rustls::HandshakeKind;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

/// One connection and one `GET path` (`Connection: close`): how the handshake went and the
/// response.
async fn connect(tls: &TlsConnector, addr: SocketAddr, path: &str) -> (HandshakeKind, String) {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let name = ServerName::try_from("localhost").unwrap_or_else(|e| panic!("{e}"));
    let mut stream = tls
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("handshake with {addr}: {e}"));
    let kind = stream
        .get_ref()
        .1
        .handshake_kind()
        .unwrap_or_else(|| panic!("handshake not done"));
    let request = format!("GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .unwrap_or_else(|e| panic!("write: {e}"));
    // Reading also takes in the session tickets the server sends after the handshake.
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    (kind, String::from_utf8_lossy(&response).into_owned())
}

#[tokio::test]
async fn a_returning_client_resumes_even_after_many_other_clients() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let t = start(dir.path()).await;
    let applied = t.apply_re("ec-default").await;
    assert!(applied.status < 300, "{}", applied.text());
    let client = t.onboard("ec-default").await;
    let gateway = t.server.gateway;
    let services = "/ec-default/v1/metadata/services";

    let (kind, response) = connect(&client, gateway, services).await;
    assert_eq!(kind, HandshakeKind::Full);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let (kind, response) = connect(&client, gateway, services).await;
    assert_eq!(kind, HandshakeKind::Resumed);
    // The resumed session still carries the client certificate.
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // 200 other clients, each a full handshake that is sent session tickets of its own
    // (more than a cache of 256 sessions holds).
    let roots = pki::certs_from_pem(&t.server.ca_pem).unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..200 {
        let other = crate::common::tls_connector(&TlsOptions {
            roots: roots.clone(),
            ..TlsOptions::default()
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let (kind, _) = connect(&other, gateway, "/v1/health").await;
        assert_eq!(kind, HandshakeKind::Full);
    }
    let (kind, response) = connect(&client, gateway, services).await;
    assert_eq!(kind, HandshakeKind::Resumed);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // The connector's external API resumes too.
    let fresh = crate::common::tls_connector(&TlsOptions {
        roots,
        ..TlsOptions::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let external = t.server.connector_external;
    let info = "/v1/remoteenvironments/ec-default/info";
    assert_eq!(connect(&fresh, external, info).await.0, HandshakeKind::Full);
    assert_eq!(
        connect(&fresh, external, info).await.0,
        HandshakeKind::Resumed
    );
}

#[tokio::test]
async fn a_resumed_session_is_refused_once_its_certificate_is_revoked() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let t = start(dir.path()).await;
    t.apply_re("ec").await;
    let client = t.onboard("ec").await;
    let gateway = t.server.gateway;
    let (kind, _) = connect(&client, gateway, "/ec/v1/metadata/services").await;
    assert_eq!(kind, HandshakeKind::Full);
    let (kind, response) = connect(&client, gateway, "/ec/v1/metadata/services").await;
    assert_eq!(kind, HandshakeKind::Resumed);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    // Delete and re-create the RE: the certificate is revoked, and a resumed session (which
    // skips certificate verification) still carries it, so the model refuses it per request.
    let deleted = t
        .send(
            hyper::Method::DELETE,
            &t.admin("/v1/remoteenvironments/ec"),
            None,
            None,
        )
        .await;
    assert_eq!(deleted.status, 204);
    t.apply_re("ec").await;
    let (kind, response) = connect(&client, gateway, "/ec/v1/metadata/services").await;
    assert_eq!(kind, HandshakeKind::Resumed);
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(
        response.contains("The client certificate has been revoked."),
        "{response}"
    );
}
