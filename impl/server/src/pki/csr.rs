//! CSRs and client certificates as the model sees them: the subject, key and signature
//! algorithm of a request, and the CN and serial of a verified client certificate.

use ace_model::connector::{CsrSubmission, ParsedCsr, PublicKeyKind, SignatureAlgorithm, Subject};
use ace_model::rng::CertSerial;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate, X509CertificationRequest};

use super::PkiError;

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
