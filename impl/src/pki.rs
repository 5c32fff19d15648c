//! Certificates: ACE's CA, its server certificates, parsing CSRs for the model, and signing
//! the certificates the model decided to issue. rcgen issues, x509-parser reads, ring signs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ace_model::Timestamp;
use ace_model::connector::{
    CsrSubmission, IssuedCertificate, ParsedCsr, PublicKeyKind, SignatureAlgorithm, Subject,
};
use ace_model::rng::CertSerial;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

/// Errors of certificate handling: a broken data directory or an rcgen failure.
#[derive(Debug)]
pub struct PkiError(pub String);

impl std::fmt::Display for PkiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PkiError {}

impl From<rcgen::Error> for PkiError {
    fn from(e: rcgen::Error) -> Self {
        PkiError(e.to_string())
    }
}

impl From<io::Error> for PkiError {
    fn from(e: io::Error) -> Self {
        PkiError(e.to_string())
    }
}

/// Algorithms ACE can generate keys for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    /// ECDSA on P-256 with SHA-256 (fast; the default).
    #[value(name = "ecdsa-p256")]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 (what Kyma's `key-algorithm: rsa2048` asks for).
    #[value(name = "rsa2048")]
    #[serde(rename = "rsa2048")]
    Rsa2048,
}

/// A fresh key pair. RSA keys are generated with the `rsa` crate (ring cannot generate them)
/// and handed to rcgen as PKCS#8; ring signs with them.
pub fn generate_key(kind: KeyKind) -> Result<KeyPair, PkiError> {
    match kind {
        KeyKind::EcdsaP256 => Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?),
        KeyKind::Rsa2048 => {
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048)
                .map_err(|e| PkiError(format!("RSA key generation failed: {e}")))?;
            let der = key
                .to_pkcs8_der()
                .map_err(|e| PkiError(format!("RSA key encoding failed: {e}")))?;
            let der = PrivatePkcs8KeyDer::from(der.as_bytes().to_vec());
            Ok(KeyPair::from_pkcs8_der_and_sign_algo(
                &der,
                &rcgen::PKCS_RSA_SHA256,
            )?)
        }
    }
}

/// Converts model time for rcgen.
pub fn to_offset(t: Timestamp) -> time::OffsetDateTime {
    let nanos = i128::from(t.as_unix_millis()) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// ACE's certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

const CA_VALIDITY_DAYS: u64 = 10 * 365;

impl Ca {
    /// A new CA named "ACE Connector CA", valid for ten years from `now`.
    pub fn generate(kind: KeyKind, now: Timestamp) -> Result<Ca, PkiError> {
        let key = generate_key(kind)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "ACE Connector CA");
        dn.push(DnType::OrganizationName, "ACE");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = to_offset(now);
        params.not_after = to_offset(
            now.saturating_add(std::time::Duration::from_secs(CA_VALIDITY_DAYS * 86_400)),
        );
        let cert = params.self_signed(&key)?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().clone();
        Ok(Ca {
            issuer: Issuer::new(params, key),
            cert_pem,
            cert_der,
        })
    }

    /// A CA from its PEM certificate and PKCS#8 PEM key.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        let der = pem::parse(cert_pem).map_err(|e| PkiError(format!("CA certificate: {e}")))?;
        Ok(Ca {
            issuer,
            cert_pem: cert_pem.to_owned(),
            cert_der: CertificateDer::from(der.into_contents()),
        })
    }

    /// The CA kept in `dir` (`ca.crt`, `ca.key`), created there on first use. The key file is
    /// readable by its owner only.
    pub fn load_or_create(dir: &Path, kind: KeyKind, now: Timestamp) -> Result<Ca, PkiError> {
        let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        if crt.exists() && key.exists() {
            return Ca::from_pem(&fs::read_to_string(&crt)?, &fs::read_to_string(&key)?);
        }
        let ca = Ca::generate(kind, now)?;
        write_private(&key, &ca.issuer.key().serialize_pem())?;
        write_atomic(&crt, ca.cert_pem.as_bytes())?;
        Ok(ca)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A server certificate for `hosts` (DNS names or IP addresses), valid a year from `now`.
    pub fn issue_server(
        &self,
        hosts: &[String],
        kind: KeyKind,
        now: Timestamp,
    ) -> Result<(String, KeyPair), PkiError> {
        let key = generate_key(kind)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            hosts.first().map_or("localhost", String::as_str),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => h.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_offset(now);
        params.not_after =
            to_offset(now.saturating_add(std::time::Duration::from_secs(365 * 86_400)));
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((cert.pem(), key))
    }

    /// Signs the certificate the model decided to issue, for the public key of `csr_der`.
    /// Returns the client certificate as PEM.
    pub fn sign_client(
        &self,
        csr_der: &[u8],
        issued: &IssuedCertificate,
    ) -> Result<String, PkiError> {
        let (_, csr) = X509CertificationRequest::from_der(csr_der)
            .map_err(|e| PkiError(format!("CSR no longer parses: {e}")))?;
        let spki = SubjectPublicKeyInfo::from_der(csr.certification_request_info.subject_pki.raw)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = subject_dn(&issued.subject);
        params.serial_number = Some(SerialNumber::from_slice(&issued.serial.to_bytes()));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = to_offset(issued.not_before);
        params.not_after = to_offset(issued.not_after);
        Ok(params.signed_by(&spki, &self.issuer)?.pem())
    }
}

/// The subject as a distinguished name, in the order of the seed's `openssl req -subj`.
pub fn subject_dn(s: &Subject) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    let fields = [
        (DnType::OrganizationalUnitName, &s.organizational_unit),
        (DnType::OrganizationName, &s.organization),
        (DnType::LocalityName, &s.locality),
        (DnType::StateOrProvinceName, &s.province),
        (DnType::CountryName, &s.country),
        (DnType::CommonName, &s.common_name),
    ];
    for (ty, value) in fields {
        if let Some(v) = value {
            dn.push(ty, v.as_str());
        }
    }
    dn
}

/// A PEM CSR for `subject`, signed with `key` (what `ace connect` and the tests send).
pub fn make_csr(key: &KeyPair, subject: &Subject) -> Result<String, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = subject_dn(subject);
    Ok(params.serialize_request(key)?.pem()?)
}

/// Steps 4 and 5 of reference §1.4 and the facts the model's policy needs: parses a PKCS#10
/// request, verifies its self-signature, and reads its subject, key and signature algorithm.
pub fn inspect_csr(der: &[u8]) -> CsrSubmission {
    let csr = match X509CertificationRequest::from_der(der) {
        Ok((_, csr)) => csr,
        Err(e) => return CsrSubmission::Unparsable(e.to_string()),
    };
    let info = &csr.certification_request_info;
    let public_key = key_kind(&info.subject_pki);
    let signature = csr.verify_signature().map_err(|e| match &public_key {
        PublicKeyKind::Rsa { bits } if *bits < 2048 => {
            format!("{e} (RSA keys under 2048 bits cannot be verified)")
        }
        _ => e.to_string(),
    });
    CsrSubmission::Parsed(ParsedCsr {
        subject: read_subject(&info.subject),
        public_key,
        signature_algorithm: signature_algorithm(&csr.signature_algorithm.algorithm.to_id_string()),
        signature,
    })
}

fn first_attr(
    name: &x509_parser::x509::X509Name<'_>,
    oid: &x509_parser::oid_registry::Oid<'_>,
) -> Option<String> {
    name.iter_by_oid(oid).next().map(|attr| {
        attr.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|_| String::from_utf8_lossy(attr.attr_value().data).into_owned())
    })
}

/// The first value of each subject attribute the connector checks.
pub fn read_subject(name: &x509_parser::x509::X509Name<'_>) -> Subject {
    use x509_parser::oid_registry as oids;
    Subject {
        common_name: first_attr(name, &oids::OID_X509_COMMON_NAME),
        country: first_attr(name, &oids::OID_X509_COUNTRY_NAME),
        organization: first_attr(name, &oids::OID_X509_ORGANIZATION_NAME),
        organizational_unit: first_attr(name, &oids::OID_X509_ORGANIZATIONAL_UNIT),
        locality: first_attr(name, &oids::OID_X509_LOCALITY_NAME),
        province: first_attr(name, &oids::OID_X509_STATE_OR_PROVINCE_NAME),
    }
}

fn key_kind(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> PublicKeyKind {
    use x509_parser::public_key::PublicKey;
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => PublicKeyKind::Rsa {
            bits: u32::try_from(rsa.key_size()).unwrap_or(u32::MAX),
        },
        Ok(PublicKey::EC(point)) => match point.key_size() {
            256 => PublicKeyKind::EcdsaP256,
            384 => PublicKeyKind::EcdsaP384,
            n => PublicKeyKind::Other(format!("EC {n} bits")),
        },
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => PublicKeyKind::Ed25519,
        _ => PublicKeyKind::Other(spki.algorithm.algorithm.to_id_string()),
    }
}

fn signature_algorithm(oid: &str) -> SignatureAlgorithm {
    match oid {
        "1.2.840.113549.1.1.4" => SignatureAlgorithm::RsaMd5,
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" => SignatureAlgorithm::RsaSha1,
        "1.2.840.113549.1.1.11" => SignatureAlgorithm::RsaSha256,
        "1.2.840.113549.1.1.12" => SignatureAlgorithm::RsaSha384,
        "1.2.840.113549.1.1.13" => SignatureAlgorithm::RsaSha512,
        "1.2.840.113549.1.1.10" => SignatureAlgorithm::RsaPss,
        "1.2.840.10045.4.1" => SignatureAlgorithm::EcdsaSha1,
        "1.2.840.10045.4.3.2" => SignatureAlgorithm::EcdsaSha256,
        "1.2.840.10045.4.3.3" => SignatureAlgorithm::EcdsaSha384,
        "1.3.101.112" => SignatureAlgorithm::Ed25519,
        other => SignatureAlgorithm::Other(other.to_owned()),
    }
}

/// What the gateway reads from a verified client certificate: its first CN and its serial.
pub fn peer_identity(der: &CertificateDer<'_>) -> Option<ace_model::connector::PeerCertificate> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    Some(ace_model::connector::PeerCertificate {
        common_name: first_attr(
            cert.subject(),
            &x509_parser::oid_registry::OID_X509_COMMON_NAME,
        ),
        serial: CertSerial::from_bytes(cert.raw_serial()),
    })
}

/// Parses PEM certificates.
pub fn certs_from_pem(pem_text: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    pem::parse_many(pem_text)
        .map_err(|e| PkiError(format!("bad PEM: {e}")))
        .map(|blocks| {
            blocks
                .into_iter()
                .filter(|b| b.tag() == "CERTIFICATE")
                .map(|b| CertificateDer::from(b.into_contents()))
                .collect()
        })
}

/// Parses a PKCS#8 PEM private key.
pub fn key_from_pem(pem_text: &str) -> Result<PrivateKeyDer<'static>, PkiError> {
    let block = pem::parse_many(pem_text)
        .map_err(|e| PkiError(format!("bad PEM: {e}")))?
        .into_iter()
        .find(|b| b.tag().ends_with("PRIVATE KEY"))
        .ok_or_else(|| PkiError("no private key in PEM".into()))?;
    match block.tag() {
        "PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs8(block.into_contents().into())),
        "RSA PRIVATE KEY" => Ok(PrivateKeyDer::Pkcs1(block.into_contents().into())),
        "EC PRIVATE KEY" => Ok(PrivateKeyDer::Sec1(block.into_contents().into())),
        other => Err(PkiError(format!("unsupported key type {other}"))),
    }
}

/// Writes a file atomically (temporary file, sync, rename).
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let tmp: PathBuf = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

/// Writes a secret file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> io::Result<()> {
    use std::io::Write;
    let tmp: PathBuf = path.with_extension("tmp");
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(cn: &str) -> Subject {
        ace_model::config::SubjectTemplate::default().subject_for(cn)
    }

    #[test]
    fn a_csr_round_trips_through_inspection_and_signing() {
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        let ca = Ca::generate(KeyKind::EcdsaP256, now).unwrap_or_else(|e| panic!("{e}"));
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
        let a = Ca::load_or_create(dir.path(), KeyKind::EcdsaP256, now)
            .unwrap_or_else(|e| panic!("{e}"));
        let b = Ca::load_or_create(dir.path(), KeyKind::EcdsaP256, now)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.cert_pem(), b.cert_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("ca.key"))
                .map(|m| m.permissions().mode())
                .unwrap_or(0);
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
