//! The server's TLS: the connector's external API with the server certificate, and the
//! gateway, which also asks for a client certificate signed by ACE's CA. Certificate validity
//! is checked against the injected clock.

use std::sync::Arc;

use ace_client::Clock;
use ace_client::clock::time_provider;
use ace_client::tls::provider;
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::error::StartError;
use crate::pki::{self, Ca};

/// The acceptors of the connector's external API and of the gateway, for the server
/// certificate `cert_pem` with `key_pem`.
pub fn acceptors(
    ca: &Ca,
    cert_pem: &str,
    key_pem: &str,
    clock: Clock,
) -> Result<(TlsAcceptor, TlsAcceptor), StartError> {
    let mut chain = pki::certs_from_pem(cert_pem)?;
    chain.push(ca.cert_der().clone());
    let key = pki::key_from_pem(key_pem)?;
    let time = time_provider(clock);
    let mut external = rustls::ServerConfig::builder_with_details(provider(), time.clone())
        .with_safe_default_protocol_versions()
        .map_err(StartError::ServerTls)?
        .with_no_client_auth()
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(StartError::ServerTls)?;
    external.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Stateless TLS 1.3 session tickets, one key per listener: the default (stateful, a cache
    // of 256 sessions shared by every client) forgets a client's session once 128 other
    // connections have been made, so under load nobody resumes.
    external.ticketer = rustls::crypto::ring::Ticketer::new().map_err(StartError::ServerTls)?;
    let mut roots = RootCertStore::empty();
    roots
        .add(ca.cert_der().clone())
        .map_err(StartError::ServerTls)?;
    // Callers without a certificate get through the handshake and a clear 403 from the model;
    // a certificate that does not verify against ACE's CA fails the handshake.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| StartError::ServerTls(rustls::Error::General(e.to_string())))?;
    let mut gateway = rustls::ServerConfig::builder_with_details(provider(), time)
        .with_safe_default_protocol_versions()
        .map_err(StartError::ServerTls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(StartError::ServerTls)?;
    gateway.alpn_protocols = vec![b"http/1.1".to_vec()];
    gateway.ticketer = rustls::crypto::ring::Ticketer::new().map_err(StartError::ServerTls)?;
    Ok((
        TlsAcceptor::from(Arc::new(external)),
        TlsAcceptor::from(Arc::new(gateway)),
    ))
}
