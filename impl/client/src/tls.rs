//! Client TLS: trusted roots (or, like `curl -k`, none), an optional client certificate, and
//! certificate validity checked against the injected [`Clock`].

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::clock::{Clock, time_provider};

/// The TLS implementation everything in ACE uses (ring), chosen explicitly so that no
/// process-wide default is needed.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How to do TLS as a client.
#[derive(Debug, Default)]
pub struct TlsOptions {
    /// Trusted roots (e.g. the deployment's CA).
    pub roots: Vec<CertificateDer<'static>>,
    /// Do not verify the server (as `curl -k`).
    pub insecure: bool,
    /// Client certificate chain and key.
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// Why a TLS configuration could not be made.
#[derive(Debug)]
pub enum TlsError {
    /// A trusted root is not a usable certificate.
    BadRoot(rustls::Error),
    /// The client certificate or its key was refused.
    BadIdentity(rustls::Error),
    /// rustls refused the configuration (protocol versions of the provider).
    Config(rustls::Error),
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsError::BadRoot(e) => write!(f, "bad root certificate: {e}"),
            TlsError::BadIdentity(e) => write!(f, "bad client certificate or key: {e}"),
            TlsError::Config(e) => write!(f, "TLS configuration: {e}"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::BadRoot(e) | TlsError::BadIdentity(e) | TlsError::Config(e) => Some(e),
        }
    }
}

#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS connector for `options` that checks certificate validity at `clock`'s time.
pub fn tls_connector(options: &TlsOptions, clock: Clock) -> Result<TlsConnector, TlsError> {
    let builder = rustls::ClientConfig::builder_with_details(provider(), time_provider(clock))
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?;
    let builder = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
    } else {
        let mut roots = RootCertStore::empty();
        for r in &options.roots {
            roots.add(r.clone()).map_err(TlsError::BadRoot)?;
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &options.identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(TlsError::BadIdentity)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use tokio_rustls::TlsAcceptor;

    /// Unix milliseconds at the start of `year` (UTC, close enough for whole years).
    fn year(year: u64) -> u64 {
        (year - 1970) * 31_556_952_000
    }

    /// A CA, and a server certificate for `localhost` it signed, valid in 2030 only.
    fn server_certificate() -> (CertificateDer<'static>, CertificateDer<'static>, KeyPair) {
        let ca_key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap_or_else(|e| panic!("{e}"));
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut leaf =
            CertificateParams::new(vec!["localhost".to_owned()]).unwrap_or_else(|e| panic!("{e}"));
        leaf.not_before = rcgen::date_time_ymd(2030, 1, 1);
        leaf.not_after = rcgen::date_time_ymd(2031, 1, 1);
        let cert = leaf
            .signed_by(&key, &issuer)
            .unwrap_or_else(|e| panic!("{e}"));
        (ca_cert.der().clone(), cert.der().clone(), key)
    }

    /// A handshake with a server holding [`server_certificate`], by a client whose clock reads
    /// `unix_millis`.
    async fn handshake(unix_millis: u64) -> std::io::Result<()> {
        let (root, cert, key) = server_certificate();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let server = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(vec![cert], key))
            .unwrap_or_else(|e| panic!("{e}"));
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let _ = acceptor.accept(server_io).await;
        });
        let options = TlsOptions {
            roots: vec![root],
            ..TlsOptions::default()
        };
        let connector =
            tls_connector(&options, Clock::new(unix_millis)).unwrap_or_else(|e| panic!("{e}"));
        let name = ServerName::try_from("localhost").unwrap_or_else(|e| panic!("{e}"));
        connector.connect(name, client_io).await.map(|_| ())
    }

    #[tokio::test]
    async fn certificates_are_checked_at_the_time_of_the_injected_clock_not_the_os() {
        assert!(handshake(year(2030) + 86_400_000).await.is_ok());
        let early = handshake(year(2026)).await.map_err(|e| e.to_string());
        assert!(
            early.as_ref().is_err_and(|e| e.contains("not valid yet")),
            "{early:?}"
        );
        let late = handshake(year(2032)).await.map_err(|e| e.to_string());
        assert!(
            late.as_ref().is_err_and(|e| e.contains("expired")),
            "{late:?}"
        );
    }
}
