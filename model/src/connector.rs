//! The Connector Service and the gateway's certificate check (reference §1).
//!
//! One live token per RE; `info` consumes it and issues the CSR token; `client-certs` consumes
//! it only when a certificate is issued. Tokens are kept as SHA-256 digests and compared in
//! constant time; the clear token exists only in the reply that hands it out.

use std::fmt;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ConnectorConfig, CsrPolicy};
use crate::error::{ClientError, CommonError};
use crate::rng::CertSerial;
use crate::time::Timestamp;

/// SHA-256 of a token, the only form in which the model keeps it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenDigest(String);

impl TokenDigest {
    /// The digest of `token`.
    pub fn of(token: &str) -> Self {
        TokenDigest(crate::hex::lower(&Sha256::digest(token.as_bytes())))
    }

    /// Constant-time comparison with the digest of `token`.
    pub fn matches(&self, token: &str) -> bool {
        self.ct_eq(&TokenDigest::of(token))
    }

    /// Constant-time comparison with another digest.
    pub fn ct_eq(&self, other: &TokenDigest) -> bool {
        bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

impl fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenDigest({}..)", &self.0[..8.min(self.0.len())])
    }
}

/// The live token of an RE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveToken {
    /// Digest of the token.
    pub digest: TokenDigest,
    /// The token is invalid from this time on.
    pub expires_at: Timestamp,
}

impl LiveToken {
    /// Whether `token` is this token and it is still valid at `now`.
    pub fn accepts(&self, token: &str, now: Timestamp) -> bool {
        now < self.expires_at && self.digest.matches(token)
    }
}

/// The subject of a CSR or a certificate: the first value of each attribute, if present.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// `CN`.
    pub common_name: Option<String>,
    /// `C`.
    pub country: Option<String>,
    /// `O`.
    pub organization: Option<String>,
    /// `OU`.
    pub organizational_unit: Option<String>,
    /// `L`.
    pub locality: Option<String>,
    /// `ST`.
    pub province: Option<String>,
}

impl Subject {
    /// The subject in the order of `info`: `OU=..,O=..,L=..,ST=..,C=..,CN=..`, absent fields
    /// left out.
    pub fn to_info_string(&self) -> String {
        [
            ("OU", &self.organizational_unit),
            ("O", &self.organization),
            ("L", &self.locality),
            ("ST", &self.province),
            ("C", &self.country),
            ("CN", &self.common_name),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(",")
    }
}

/// The public key of a CSR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublicKeyKind {
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// Modulus size.
        bits: u32,
    },
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384.
    EcdsaP384,
    /// Ed25519.
    Ed25519,
    /// Anything else, by OID or name.
    Other(String),
}

/// The signature algorithm of a CSR.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SignatureAlgorithm {
    /// md5WithRSAEncryption.
    RsaMd5,
    /// sha1WithRSAEncryption.
    RsaSha1,
    /// sha256WithRSAEncryption.
    RsaSha256,
    /// sha384WithRSAEncryption.
    RsaSha384,
    /// sha512WithRSAEncryption.
    RsaSha512,
    /// RSASSA-PSS.
    RsaPss,
    /// ecdsa-with-SHA1.
    EcdsaSha1,
    /// ecdsa-with-SHA256.
    EcdsaSha256,
    /// ecdsa-with-SHA384.
    EcdsaSha384,
    /// Ed25519.
    Ed25519,
    /// Anything else, by OID or name.
    Other(String),
}

impl SignatureAlgorithm {
    /// The conventional name, as in error messages.
    pub fn name(&self) -> &str {
        match self {
            SignatureAlgorithm::RsaMd5 => "md5WithRSAEncryption",
            SignatureAlgorithm::RsaSha1 => "sha1WithRSAEncryption",
            SignatureAlgorithm::RsaSha256 => "sha256WithRSAEncryption",
            SignatureAlgorithm::RsaSha384 => "sha384WithRSAEncryption",
            SignatureAlgorithm::RsaSha512 => "sha512WithRSAEncryption",
            SignatureAlgorithm::RsaPss => "rsassaPss",
            SignatureAlgorithm::EcdsaSha1 => "ecdsa-with-SHA1",
            SignatureAlgorithm::EcdsaSha256 => "ecdsa-with-SHA256",
            SignatureAlgorithm::EcdsaSha384 => "ecdsa-with-SHA384",
            SignatureAlgorithm::Ed25519 => "Ed25519",
            SignatureAlgorithm::Other(name) => name,
        }
    }

    /// MD5 and SHA-1 signatures are forgeable by collision and are weak.
    pub fn is_weak(&self) -> bool {
        matches!(
            self,
            SignatureAlgorithm::RsaMd5
                | SignatureAlgorithm::RsaSha1
                | SignatureAlgorithm::EcdsaSha1
        )
    }
}

/// A CSR as the shell parsed it (PKCS#10 DER to fields; the model has no X.509 parser).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedCsr {
    /// The subject.
    pub subject: Subject,
    /// The subject public key.
    pub public_key: PublicKeyKind,
    /// The algorithm of the self-signature.
    pub signature_algorithm: SignatureAlgorithm,
    /// Whether the self-signature verified, with the verifier's message if not.
    pub signature: Result<(), String>,
}

/// What the shell found in a `client-certs` body, step by step as reference §1.4.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CsrSubmission {
    /// Step 1: the body is not JSON of the form `{"csr": "..."}`.
    MalformedBody(String),
    /// Step 2: `csr` is not standard base64.
    BadBase64,
    /// Step 3: the decoded bytes hold no PEM block.
    NoPemBlock,
    /// Step 4: the PEM block is not a PKCS#10 request.
    Unparsable(String),
    /// The request parsed; steps 5 and later are the model's.
    Parsed(ParsedCsr),
}

/// Why a `client-certs` body holds no CSR to parse (steps 1 to 3 of reference §1.4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CsrDecodeError {
    /// Step 1: not JSON of the form `{"csr": "..."}`.
    MalformedBody(String),
    /// Step 2: `csr` is not standard base64.
    BadBase64,
    /// Step 3: no PEM block.
    NoPemBlock,
}

impl From<CsrDecodeError> for CsrSubmission {
    fn from(e: CsrDecodeError) -> Self {
        match e {
            CsrDecodeError::MalformedBody(m) => CsrSubmission::MalformedBody(m),
            CsrDecodeError::BadBase64 => CsrSubmission::BadBase64,
            CsrDecodeError::NoPemBlock => CsrSubmission::NoPemBlock,
        }
    }
}

/// Steps 1 to 3 of reference §1.4, which need no cryptography: the DER bytes of the CSR in a
/// `client-certs` body.
pub fn decode_csr_body(body: &[u8]) -> Result<Vec<u8>, CsrDecodeError> {
    #[derive(Deserialize)]
    struct CsrBody {
        #[serde(default)]
        csr: Option<String>,
    }
    let parsed: CsrBody =
        serde_json::from_slice(body).map_err(|e| CsrDecodeError::MalformedBody(e.to_string()))?;
    // Go's decoder skips line breaks, so Kyma accepted `openssl base64` output as it is
    // (wrapped at 64 columns); so does ACE.
    let encoded: String = parsed
        .csr
        .unwrap_or_default()
        .chars()
        .filter(|c| !matches!(c, '\r' | '\n'))
        .collect();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| CsrDecodeError::BadBase64)?;
    pem::parse(&decoded)
        .map(|p| p.into_contents())
        .map_err(|_| CsrDecodeError::NoPemBlock)
}

/// Why the Connector Service refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ConnectorError {
    /// The RE does not exist (ACE refuses tokens for unknown REs; Kyma 0.5 issued them).
    RemoteEnvironmentNotFound(String),
    /// `token` query parameter absent or empty.
    TokenNotProvided,
    /// No live token for the RE, expired, or a different one.
    InvalidToken,
    /// Step 1: malformed JSON (Kyma answered 500; ACE answers 400).
    MalformedBody(String),
    /// Step 2.
    BadBase64,
    /// Step 3.
    NoPemBlock,
    /// Step 4.
    Unparsable(String),
    /// Step 5.
    SignatureInvalid(String),
    /// Step 6: CN is not the RE name.
    InvalidCommonName,
    /// Step 6: a subject field is absent.
    MissingSubjectField(SubjectField),
    /// Step 6: a subject field has another value than `info` asked for.
    InvalidSubjectField(SubjectField),
    /// ACE policy: RSA key smaller than the minimum.
    KeyTooSmall {
        /// Bits of the key.
        bits: u32,
        /// Bits required.
        min_bits: u32,
    },
    /// ACE policy: MD5 or SHA-1 signature.
    WeakSignature(String),
}

/// A subject field other than CN, in the order Kyma checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubjectField {
    /// `C`.
    Country,
    /// `O`.
    Organization,
    /// `OU`.
    OrganizationalUnit,
    /// `L`.
    Locality,
    /// `ST`.
    Province,
}

impl SubjectField {
    fn noun(self) -> &'static str {
        match self {
            SubjectField::Country => "country",
            SubjectField::Organization => "organization",
            SubjectField::OrganizationalUnit => "organizational unit",
            SubjectField::Locality => "locality",
            SubjectField::Province => "province",
        }
    }
}

impl ConnectorError {
    /// The message of the `{code, error}` body.
    pub fn message(&self) -> String {
        match self {
            ConnectorError::RemoteEnvironmentNotFound(re) => {
                format!("Remote Environment {re} not found.")
            }
            ConnectorError::TokenNotProvided => "Token not provided.".to_owned(),
            ConnectorError::InvalidToken => "Invalid token.".to_owned(),
            ConnectorError::MalformedBody(e) => {
                format!("Error while unmarshalling request body: {e}")
            }
            ConnectorError::BadBase64 => "There was an error while parsing the base64 content. An incorrect value was provided.".to_owned(),
            ConnectorError::NoPemBlock => "Error while decoding pem block.".to_owned(),
            ConnectorError::Unparsable(e) => format!("Error while parsing CSR: {e}"),
            ConnectorError::SignatureInvalid(e) => format!("CSR signature invalid: {e}"),
            ConnectorError::InvalidCommonName => "CSR: Invalid CName provided.".to_owned(),
            ConnectorError::MissingSubjectField(f) => format!("CSR: No {} provided.", f.noun()),
            ConnectorError::InvalidSubjectField(f) => {
                format!("CSR: Invalid {} provided.", f.noun())
            }
            ConnectorError::KeyTooSmall { bits, min_bits } => format!(
                "CSR: RSA key of {bits} bits is too small, at least {min_bits} bits are required."
            ),
            ConnectorError::WeakSignature(alg) => {
                format!("CSR: Signature algorithm {alg} is too weak.")
            }
        }
    }
}

impl ClientError for ConnectorError {
    fn status(&self) -> u16 {
        match self {
            ConnectorError::RemoteEnvironmentNotFound(_) => 404,
            ConnectorError::TokenNotProvided | ConnectorError::InvalidToken => 403,
            _ => 400,
        }
    }

    fn body(&self) -> Value {
        CommonError::new(self.status(), self.message()).to_json()
    }
}

/// Steps 5 to 7 of reference §1.4 (signature, subject in the order CN, C, O, OU, L, ST),
/// then ACE's policy on key size and signature algorithm.
pub fn check_csr(
    re: &str,
    config: &ConnectorConfig,
    submission: CsrSubmission,
) -> Result<ParsedCsr, ConnectorError> {
    let csr = match submission {
        CsrSubmission::MalformedBody(e) => return Err(ConnectorError::MalformedBody(e)),
        CsrSubmission::BadBase64 => return Err(ConnectorError::BadBase64),
        CsrSubmission::NoPemBlock => return Err(ConnectorError::NoPemBlock),
        CsrSubmission::Unparsable(e) => return Err(ConnectorError::Unparsable(e)),
        CsrSubmission::Parsed(csr) => csr,
    };
    if let Err(e) = &csr.signature {
        return Err(ConnectorError::SignatureInvalid(e.clone()));
    }
    let s = &csr.subject;
    if s.common_name.as_deref() != Some(re) {
        return Err(ConnectorError::InvalidCommonName);
    }
    let t = &config.subject;
    let expected = [
        (SubjectField::Country, &s.country, &t.country),
        (SubjectField::Organization, &s.organization, &t.organization),
        (
            SubjectField::OrganizationalUnit,
            &s.organizational_unit,
            &t.organizational_unit,
        ),
        (SubjectField::Locality, &s.locality, &t.locality),
        (SubjectField::Province, &s.province, &t.province),
    ];
    for (field, actual, wanted) in expected {
        match actual.as_deref() {
            None | Some("") => return Err(ConnectorError::MissingSubjectField(field)),
            Some(v) if v != wanted => return Err(ConnectorError::InvalidSubjectField(field)),
            Some(_) => {}
        }
    }
    check_policy(&config.csr_policy, &csr)?;
    Ok(csr)
}

fn check_policy(policy: &CsrPolicy, csr: &ParsedCsr) -> Result<(), ConnectorError> {
    if let (Some(min_bits), PublicKeyKind::Rsa { bits }) = (policy.min_rsa_bits, &csr.public_key)
        && *bits < min_bits
    {
        return Err(ConnectorError::KeyTooSmall {
            bits: *bits,
            min_bits,
        });
    }
    if policy.reject_weak_signatures && csr.signature_algorithm.is_weak() {
        return Err(ConnectorError::WeakSignature(
            csr.signature_algorithm.name().to_owned(),
        ));
    }
    Ok(())
}

/// The body of a token reply (`201`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenReply {
    /// The one-time configuration URL.
    pub url: String,
    /// The token in it.
    pub token: String,
}

/// The body of an `info` reply (`200`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InfoReply {
    /// Where to send the CSR, with the new token.
    pub csr_url: String,
    /// `api.metadataUrl`.
    pub metadata_url: String,
    /// `api.eventsUrl`.
    pub events_url: String,
    /// `api.certificatesUrl`.
    pub certificates_url: String,
    /// `certificate.subject`, in the order OU,O,L,ST,C,CN.
    pub subject: String,
    /// `certificate.key-algorithm`.
    pub key_algorithm: String,
}

impl InfoReply {
    /// The JSON body, field names as Kyma's code writes them (`csrUrl`, not the spec's `url`).
    pub fn to_json(&self) -> Value {
        json!({
            "csrUrl": self.csr_url,
            "api": {
                "metadataUrl": self.metadata_url,
                "eventsUrl": self.events_url,
                "certificatesUrl": self.certificates_url,
            },
            "certificate": {
                "subject": self.subject,
                "extensions": "",
                "key-algorithm": self.key_algorithm,
            }
        })
    }
}

/// The URL of `info` for `re` with `token`.
pub fn info_url(config: &ConnectorConfig, re: &str, token: &str) -> String {
    format!(
        "{}/v1/remoteenvironments/{re}/info?token={token}",
        config.connector_url
    )
}

/// The `info` body for `re`, whose CSR URL carries `csr_token`.
pub fn info_reply(config: &ConnectorConfig, re: &str, csr_token: &str) -> InfoReply {
    let subject = config.subject.subject_for(re);
    InfoReply {
        csr_url: format!(
            "{}/v1/remoteenvironments/{re}/client-certs?token={csr_token}",
            config.connector_url
        ),
        metadata_url: format!("{}/{re}/v1/metadata/services", config.gateway_url),
        events_url: format!("{}/{re}/v1/events", config.gateway_url),
        certificates_url: format!("{}/v1/remoteenvironments/{re}", config.connector_url),
        subject: subject.to_info_string(),
        key_algorithm: config.key_algorithm.clone(),
    }
}

/// A certificate the model decided to issue. The shell signs it with the CA (subject and public
/// key from the CSR, this serial and validity, key usage DigitalSignature, extended key usage
/// ClientAuth) and answers `201 {"crt": base64(client PEM + CA PEM)}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    /// Unique serial (Kyma always used 2).
    pub serial: CertSerial,
    /// The RE it opens.
    pub re: String,
    /// The incarnation of the RE it opens: a re-created RE of the same name is another one.
    pub incarnation: u64,
    /// The subject, copied from the CSR.
    pub subject: Subject,
    /// Start of validity.
    pub not_before: Timestamp,
    /// End of validity.
    pub not_after: Timestamp,
}

/// What the gateway knows of its peer after the TLS handshake verified the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerCertificate {
    /// The first CN of the subject.
    pub common_name: Option<String>,
    /// The serial.
    pub serial: CertSerial,
}

/// Why the gateway refused a caller (always 403, as Kyma's ingress).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatewayError {
    /// No client certificate.
    NoCertificate,
    /// The certificate's CN does not name the RE in the path.
    WrongRemoteEnvironment(String),
    /// The certificate names the RE, but was not issued for its current incarnation: the RE
    /// was deleted (and maybe created again) since.
    Revoked,
    /// The certificate is not one this connector issued.
    UnknownCertificate,
    /// The certificate's validity has ended.
    Expired,
}

impl GatewayError {
    /// The message of the `{code, error}` body.
    pub fn message(&self) -> String {
        match self {
            GatewayError::NoCertificate => "A client certificate is required.".to_owned(),
            GatewayError::WrongRemoteEnvironment(re) => {
                format!("The client certificate does not belong to Remote Environment {re}.")
            }
            GatewayError::Revoked => "The client certificate has been revoked.".to_owned(),
            GatewayError::UnknownCertificate => {
                "The client certificate was not issued by this connector.".to_owned()
            }
            GatewayError::Expired => "The client certificate has expired.".to_owned(),
        }
    }
}

impl ClientError for GatewayError {
    fn status(&self) -> u16 {
        403
    }
    fn body(&self) -> Value {
        CommonError::new(403, self.message()).to_json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn good_csr(re: &str) -> ParsedCsr {
        ParsedCsr {
            subject: crate::config::SubjectTemplate::default().subject_for(re),
            public_key: PublicKeyKind::Rsa { bits: 2048 },
            signature_algorithm: SignatureAlgorithm::RsaSha256,
            signature: Ok(()),
        }
    }

    /// Digests stored by earlier versions (lowercase hex of SHA-256) must still match.
    #[test]
    fn a_token_digest_is_the_lowercase_hex_of_its_sha256() {
        let digest = TokenDigest::of("abc");
        assert_eq!(
            digest.0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(digest.matches("abc"));
        assert!(!digest.matches("abd"));
    }

    fn check(csr: ParsedCsr) -> Result<ParsedCsr, ConnectorError> {
        check_csr(
            "ec",
            &ConnectorConfig::default(),
            CsrSubmission::Parsed(csr),
        )
    }

    #[test]
    fn accepts_the_subject_that_info_asks_for() {
        assert!(check(good_csr("ec")).is_ok());
    }

    #[test]
    fn checks_subject_fields_in_kyma_order() {
        // Everything wrong at once: the first check (CN) wins, then C, O, OU, L, ST.
        let mut csr = good_csr("other");
        csr.subject.country = None;
        csr.subject.province = Some("x".into());
        assert_eq!(check(csr.clone()), Err(ConnectorError::InvalidCommonName));
        csr.subject.common_name = Some("ec".into());
        assert_eq!(
            check(csr.clone()),
            Err(ConnectorError::MissingSubjectField(SubjectField::Country))
        );
        csr.subject.country = Some("US".into());
        assert_eq!(
            check(csr.clone()),
            Err(ConnectorError::InvalidSubjectField(SubjectField::Country))
        );
        csr.subject.country = Some("DE".into());
        assert_eq!(
            check(csr),
            Err(ConnectorError::InvalidSubjectField(SubjectField::Province))
        );
    }

    #[test]
    fn signature_is_checked_before_the_subject() {
        let mut csr = good_csr("wrong");
        csr.signature = Err("bad".into());
        assert_eq!(
            check(csr),
            Err(ConnectorError::SignatureInvalid("bad".into()))
        );
    }

    #[test]
    fn ace_policy_rejects_small_rsa_keys_and_weak_signatures_but_kyma_policy_does_not() {
        let mut small = good_csr("ec");
        small.public_key = PublicKeyKind::Rsa { bits: 1024 };
        assert_eq!(
            check(small.clone()),
            Err(ConnectorError::KeyTooSmall {
                bits: 1024,
                min_bits: 2048
            })
        );
        let mut sha1 = good_csr("ec");
        sha1.signature_algorithm = SignatureAlgorithm::RsaSha1;
        assert!(matches!(
            check(sha1.clone()),
            Err(ConnectorError::WeakSignature(_))
        ));
        let kyma = ConnectorConfig {
            csr_policy: CsrPolicy::kyma(),
            ..ConnectorConfig::default()
        };
        for csr in [small, sha1] {
            assert!(check_csr("ec", &kyma, CsrSubmission::Parsed(csr)).is_ok());
        }
    }

    #[test]
    fn decodes_csr_bodies_in_kyma_order() {
        assert!(matches!(
            decode_csr_body(b"{not json"),
            Err(CsrDecodeError::MalformedBody(_))
        ));
        assert_eq!(
            decode_csr_body(br#"{"csr":"***"}"#),
            Err(CsrDecodeError::BadBase64)
        );
        // A missing csr decodes to nothing and falls through to the PEM step.
        assert_eq!(decode_csr_body(b"{}"), Err(CsrDecodeError::NoPemBlock));
        let pem = "-----BEGIN CERTIFICATE REQUEST-----\nAQID\n-----END CERTIFICATE REQUEST-----\n";
        let body = json!({"csr": base64::engine::general_purpose::STANDARD.encode(pem)});
        assert_eq!(
            decode_csr_body(body.to_string().as_bytes()),
            Ok(vec![1, 2, 3])
        );
        // Wrapped base64, as `openssl base64` prints it.
        let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
        let wrapped = format!("{}\n{}\n", &encoded[..40], &encoded[40..]);
        let body = json!({ "csr": wrapped });
        assert_eq!(
            decode_csr_body(body.to_string().as_bytes()),
            Ok(vec![1, 2, 3])
        );
    }

    #[test]
    fn info_subject_is_in_the_order_ou_o_l_st_c_cn() {
        let info = info_reply(&ConnectorConfig::default(), "ec-default", "tok");
        assert_eq!(
            info.subject,
            "OU=OrgUnit,O=Organization,L=Waldorf,ST=Waldorf,C=DE,CN=ec-default"
        );
        assert_eq!(
            info.csr_url,
            "https://connector-service.kyma.local/v1/remoteenvironments/ec-default/client-certs?token=tok"
        );
    }

    #[test]
    fn token_digest_matches_only_the_same_token() {
        let d = TokenDigest::of("abc");
        assert!(d.matches("abc"));
        assert!(!d.matches("abd"));
        assert!(!d.matches(""));
        assert!(!format!("{d:?}").contains(&TokenDigest::of("abc").0));
    }
}
