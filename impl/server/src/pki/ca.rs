//! ACE's certificate authority: it signs the server's certificate and every client
//! certificate the model decides to issue.

use std::path::Path;

use ace_model::Timestamp;
use ace_model::connector::IssuedCertificate;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, SubjectPublicKeyInfo,
};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509CertificationRequest};

use super::files::{read_file, write_atomic, write_private};
use super::{KeySource, PkiError, subject_dn, to_offset};

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
    /// A new CA named "ACE Connector CA" with `key`, valid for ten years from `now`.
    pub fn generate(key: KeyPair, now: Timestamp) -> Result<Ca, PkiError> {
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
        let der =
            pem::parse(cert_pem).map_err(|e| PkiError::Pem(format!("CA certificate: {e}")))?;
        Ok(Ca {
            issuer,
            cert_pem: cert_pem.to_owned(),
            cert_der: CertificateDer::from(der.into_contents()),
        })
    }

    /// The CA kept in `dir` (`ca.crt`, `ca.key`), created there on first use with a key from
    /// `keys`. The key file is readable by its owner only.
    pub fn load_or_create(
        dir: &Path,
        keys: &mut KeySource,
        now: Timestamp,
    ) -> Result<Ca, PkiError> {
        let (crt, key) = (dir.join("ca.crt"), dir.join("ca.key"));
        if crt.exists() && key.exists() {
            return Ca::from_pem(&read_file(&crt)?, &read_file(&key)?);
        }
        let ca = Ca::generate(keys.next_key()?, now)?;
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

    /// The SHA-256 of the CA certificate (DER), in lower-case hex: what tells two CAs apart.
    pub fn sha256_hex(&self) -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(self.cert_der.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// A server certificate for `hosts` (DNS names or IP addresses) with `key`, valid a year
    /// from `now`. Returns it as PEM.
    pub fn issue_server(
        &self,
        hosts: &[String],
        key: &KeyPair,
        now: Timestamp,
    ) -> Result<String, PkiError> {
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
        Ok(params.signed_by(key, &self.issuer)?.pem())
    }

    /// Signs the certificate the model decided to issue, for the public key of `csr_der`.
    /// Returns the client certificate as PEM.
    pub fn sign_client(
        &self,
        csr_der: &[u8],
        issued: &IssuedCertificate,
    ) -> Result<String, PkiError> {
        let (_, csr) = X509CertificationRequest::from_der(csr_der)
            .map_err(|e| PkiError::Csr(format!("no longer parses: {e}")))?;
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
