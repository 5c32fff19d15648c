//! Certificates: ACE's CA ([`ca`]), its server identity ([`identity`]), reading CSRs and
//! client certificates for the model ([`csr`]), and the PEM files they live in ([`files`]).
//! rcgen issues, x509-parser reads, ring signs.

pub mod ca;
pub mod csr;
pub mod files;
pub mod identity;

use std::path::PathBuf;

use ace_model::Timestamp;
use rcgen::KeyPair;
use rustls::pki_types::PrivatePkcs8KeyDer;

pub use ca::Ca;
pub use csr::{inspect_csr, make_csr, peer_identity, read_subject, subject_dn};
pub use files::{certs_from_pem, key_from_pem, write_atomic, write_private};

/// Why certificates or keys could not be made, read or written.
#[derive(Debug)]
pub enum PkiError {
    /// A file of the identity could not be read or written.
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// rcgen refused to make or sign a certificate.
    Certificate(rcgen::Error),
    /// A PEM file is not valid PEM, or lacks what it must hold.
    Pem(String),
    /// An RSA key could not be generated or encoded.
    RsaKey(String),
    /// A CSR accepted earlier no longer parses (a bug: it was parsed to be accepted).
    Csr(String),
}

impl std::fmt::Display for PkiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PkiError::File { path, source } => write!(f, "{}: {source}", path.display()),
            PkiError::Certificate(e) => write!(f, "certificate: {e}"),
            PkiError::Pem(e) => write!(f, "PEM: {e}"),
            PkiError::RsaKey(e) => write!(f, "RSA key: {e}"),
            PkiError::Csr(e) => write!(f, "CSR: {e}"),
        }
    }
}

impl std::error::Error for PkiError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PkiError::File { source, .. } => Some(source),
            PkiError::Certificate(e) => Some(e),
            _ => None,
        }
    }
}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError::Certificate(e)
    }
}

/// Algorithms ACE can generate keys for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256 (fast; the default).
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 (what Kyma's `key-algorithm: rsa2048` asks for).
    #[serde(rename = "rsa2048")]
    Rsa2048,
    /// Ed25519: deterministic signatures, and keys that can be derived from a seed
    /// ([`ed25519_from_seed`]), so a simulation's seed decides every certificate byte.
    #[serde(rename = "ed25519")]
    Ed25519,
}

/// A fresh key pair from the operating system's randomness. RSA keys are generated with the
/// `rsa` crate (ring cannot generate them) and handed to rcgen as PKCS#8; ring signs with them.
pub fn generate_key(kind: KeyKind) -> Result<KeyPair, PkiError> {
    match kind {
        KeyKind::EcdsaP256 => Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?),
        KeyKind::Ed25519 => Ok(KeyPair::generate_for(&rcgen::PKCS_ED25519)?),
        KeyKind::Rsa2048 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                .map_err(|e| PkiError::RsaKey(format!("generation failed: {e}")))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| PkiError::RsaKey(format!("encoding failed: {e}")))?;
            let der = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
            Ok(KeyPair::from_pkcs8_der_and_sign_algo(
                &der,
                &rcgen::PKCS_RSA_SHA256,
            )?)
        }
    }
}

/// The Ed25519 key whose private key is `seed` (RFC 8410: a PKCS#8 v1 document is a fixed
/// prefix and the 32 seed bytes). The same seed gives the same key, and Ed25519 signatures
/// are deterministic: what a simulation needs for certificates its seed decides.
pub fn ed25519_from_seed(seed: &[u8; 32]) -> Result<KeyPair, PkiError> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(seed);
    let der = PrivatePkcs8KeyDer::from(der);
    Ok(KeyPair::from_pkcs8_der_and_sign_algo(
        &der,
        &rcgen::PKCS_ED25519,
    )?)
}

/// Where the keys of a new CA and a new server certificate come from.
#[derive(Debug)]
pub enum KeySource {
    /// The operating system's randomness, keys of this kind (what `ace serve` uses).
    Os(KeyKind),
    /// Ed25519 keys derived one after another from a seed, so that the seed decides every
    /// byte of the certificates (simulations).
    Seeded(Box<ace_model::SeededRng>),
}

impl KeySource {
    /// 32 secret bytes (a token), from the same source.
    pub fn secret(&mut self) -> [u8; 32] {
        let mut secret = [0u8; 32];
        match self {
            KeySource::Os(_) => rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret),
            KeySource::Seeded(rng) => rng.fill(&mut secret),
        }
        secret
    }

    /// The next key.
    pub fn next_key(&mut self) -> Result<KeyPair, PkiError> {
        match self {
            KeySource::Os(kind) => generate_key(*kind),
            KeySource::Seeded(rng) => {
                let mut seed = [0u8; 32];
                rng.fill(&mut seed);
                ed25519_from_seed(&seed)
            }
        }
    }
}

/// Converts model time for rcgen.
pub fn to_offset(t: Timestamp) -> time::OffsetDateTime {
    let nanos = i128::from(t.as_unix_millis()) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ace_model::connector::{
        CsrSubmission, IssuedCertificate, PublicKeyKind, SignatureAlgorithm, Subject,
    };
    use ace_model::rng::CertSerial;

    fn subject(cn: &str) -> Subject {
        ace_model::config::SubjectTemplate::default().subject_for(cn)
    }

    #[test]
    fn a_csr_round_trips_through_inspection_and_signing() {
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        let key = generate_key(KeyKind::EcdsaP256).unwrap_or_else(|e| panic!("{e}"));
        let ca = Ca::generate(key, now).unwrap_or_else(|e| panic!("{e}"));
        let key = generate_key(KeyKind::EcdsaP256).unwrap_or_else(|e| panic!("{e}"));
        let csr_pem = make_csr(&key, &subject("ec-default")).unwrap_or_else(|e| panic!("{e}"));
        let der = pem::parse(&csr_pem)
            .map(|p| p.into_contents())
            .unwrap_or_default();
        let CsrSubmission::Parsed(parsed) = inspect_csr(&der) else {
            panic!("unparsed")
        };
        assert_eq!(parsed.subject, subject("ec-default"));
        assert_eq!(parsed.public_key, PublicKeyKind::EcdsaP256);
        assert_eq!(parsed.signature_algorithm, SignatureAlgorithm::EcdsaSha256);
        assert_eq!(parsed.signature, Ok(()));

        let issued = IssuedCertificate {
            serial: CertSerial("5a".repeat(16)),
            re: "ec-default".into(),
            incarnation: 1,
            subject: parsed.subject,
            not_before: now,
            not_after: now.saturating_add(std::time::Duration::from_secs(3600)),
        };
        let pem_text = ca
            .sign_client(&der, &issued)
            .unwrap_or_else(|e| panic!("{e}"));
        let certs = certs_from_pem(&pem_text).unwrap_or_else(|e| panic!("{e}"));
        let peer = peer_identity(&certs[0]).unwrap_or_else(|| panic!("unreadable"));
        assert_eq!(peer.serial, issued.serial);
        assert_eq!(peer.common_name.as_deref(), Some("ec-default"));
    }

    #[test]
    fn garbage_and_tampered_csrs_are_reported_as_such() {
        assert!(matches!(
            inspect_csr(b"not der"),
            CsrSubmission::Unparsable(_)
        ));
        let key = generate_key(KeyKind::EcdsaP256).unwrap_or_else(|e| panic!("{e}"));
        let csr_pem = make_csr(&key, &subject("ec")).unwrap_or_else(|e| panic!("{e}"));
        let mut der = pem::parse(&csr_pem)
            .map(|p| p.into_contents())
            .unwrap_or_default();
        let last = der.len() - 1;
        der[last] ^= 1;
        match inspect_csr(&der) {
            CsrSubmission::Parsed(p) => assert!(p.signature.is_err()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_ca_survives_a_reload_from_its_files() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        let a = Ca::load_or_create(dir.path(), &mut KeySource::Os(KeyKind::EcdsaP256), now)
            .unwrap_or_else(|e| panic!("{e}"));
        let b = Ca::load_or_create(dir.path(), &mut KeySource::Os(KeyKind::EcdsaP256), now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.cert_pem(), b.cert_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("ca.key"))
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

#[cfg(test)]
mod seeded {
    use super::*;

    #[test]
    fn seeded_keys_and_their_signatures_are_the_same_for_the_same_seed() {
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        let ca_pem = |seed: u8| {
            let mut keys = KeySource::Seeded(Box::new(ace_model::SeededRng::new(ace_model::Seed(
                [seed; 32],
            ))));
            let key = keys.next_key().unwrap_or_else(|e| panic!("{e}"));
            Ca::generate(key, now)
                .unwrap_or_else(|e| panic!("{e}"))
                .cert_pem()
                .to_owned()
        };
        assert_eq!(ca_pem(1), ca_pem(1));
        assert_ne!(ca_pem(1), ca_pem(2));
        let os = |_: u8| {
            let key = generate_key(KeyKind::Ed25519).unwrap_or_else(|e| panic!("{e}"));
            Ca::generate(key, now)
                .unwrap_or_else(|e| panic!("{e}"))
                .cert_pem()
                .to_owned()
        };
        assert_ne!(os(1), os(1), "keys from the OS differ");
    }
}
