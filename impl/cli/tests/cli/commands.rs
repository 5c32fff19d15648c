//! The command line's client commands against a server on loopback.

use ace_client::TlsOptions;
use ace_server::pki::{self, KeyKind};
use hyper::Method;

use crate::common::*;

#[tokio::test]
async fn ace_connect_onboards_and_explains_a_used_url() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    s.apply_re("ec").await;
    let internal = format!("http://{}", s.server.connector_internal);
    let url = ace::commands::token(&internal, "ec")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let out = dir.path().join("client");
    let tls = TlsOptions {
        roots: pki::certs_from_pem(&s.server.ca_pem).unwrap_or_default(),
        ..TlsOptions::default()
    };
    let c = ace::commands::connect(&url, &out, &tls, Some(KeyKind::EcdsaP256))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.metadata_url, s.gateway("/ec/v1/metadata/services"));
    for file in ["key.pem", "cert.pem", "ca.pem", "connection.json"] {
        assert!(out.join(file).exists(), "{file} written");
    }
    // The written identity opens the gateway.
    let read = |f: &str| std::fs::read_to_string(out.join(f)).unwrap_or_default();
    let tls = tls_connector(&TlsOptions {
        roots: pki::certs_from_pem(&read("ca.pem")).unwrap_or_default(),
        identity: Some((
            pki::certs_from_pem(&read("cert.pem")).unwrap_or_default(),
            pki::key_from_pem(&read("key.pem")).unwrap_or_else(|e| panic!("{e}")),
        )),
        insecure: false,
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let r = s.send(Method::GET, &c.metadata_url, None, Some(&tls)).await;
    assert_eq!(r.status, 200);
    // The same URL again: a clear explanation.
    let e = ace::commands::connect(
        &url,
        &dir.path().join("again"),
        &TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        },
        None,
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("Invalid token.") && e.contains("ace token"),
        "{e}"
    );
}
