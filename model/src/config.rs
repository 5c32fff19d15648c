//! Configuration of the model: everything a decision depends on that is not state.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bugs::Bugs;
use crate::bus::BusConfig;

/// Everything the model's decisions depend on besides its state and its inputs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// The Connector Service: tokens, info, certificates.
    pub connector: ConnectorConfig,
    /// The Metadata Service and the catalog.
    pub registry: RegistryConfig,
    /// The Event Service, publishing and delivery.
    pub bus: BusConfig,
    /// Request body limits.
    pub limits: crate::limits::Limits,
    /// Which addresses ACE may connect to on someone else's behalf.
    pub egress: crate::egress::EgressPolicy,
    /// Deliberately wrong behaviours that are on (see [`crate::bugs`]). Never serialized;
    /// always empty unless `ace-model` is built with the feature `bug-zoo`.
    #[serde(skip)]
    pub bugs: Bugs,
}

/// The Connector Service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnectorConfig {
    /// Base URL of the connector's external API, without a trailing slash
    /// (Kyma: `https://connector-service.<domain>`). `csrUrl` and `certificatesUrl` start here.
    pub connector_url: String,
    /// Base URL of the gateway, without a trailing slash (Kyma: `https://gateway.<domain>`).
    /// `metadataUrl` and `eventsUrl` start here.
    pub gateway_url: String,
    /// The subject a CSR must carry (CN is always the RE name).
    pub subject: SubjectTemplate,
    /// Random bytes in a token (Kyma: 64, giving 88 base64 characters).
    pub token_length: usize,
    /// How long a token stays valid after it is issued.
    #[serde(with = "duration_secs")]
    pub token_ttl: Duration,
    /// Validity of an issued client certificate (Kyma 0.5: 365 days).
    #[serde(with = "duration_secs")]
    pub certificate_validity: Duration,
    /// The advisory `key-algorithm` shown in `info`.
    pub key_algorithm: String,
    /// What a CSR must meet beyond Kyma's subject checks.
    pub csr_policy: CsrPolicy,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        ConnectorConfig {
            connector_url: "https://connector-service.kyma.local".to_owned(),
            gateway_url: "https://gateway.kyma.local".to_owned(),
            subject: SubjectTemplate::default(),
            token_length: 64,
            token_ttl: Duration::from_secs(5 * 60),
            certificate_validity: Duration::from_secs(365 * 24 * 3600),
            key_algorithm: "rsa2048".to_owned(),
            csr_policy: CsrPolicy::default(),
        }
    }
}

impl ConnectorConfig {
    /// URLs in Kyma's form for a cluster domain: `https://connector-service.<domain>` and
    /// `https://gateway.<domain>`.
    pub fn for_domain(domain: &str) -> Self {
        ConnectorConfig {
            connector_url: format!("https://connector-service.{domain}"),
            gateway_url: format!("https://gateway.{domain}"),
            ..ConnectorConfig::default()
        }
    }
}

/// The subject fields of issued certificates, other than CN (Kyma's chart values by default,
/// which are also the values of the seed's `openssl req` command).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SubjectTemplate {
    /// `C`.
    pub country: String,
    /// `O`.
    pub organization: String,
    /// `OU`.
    pub organizational_unit: String,
    /// `L`.
    pub locality: String,
    /// `ST`.
    pub province: String,
}

impl Default for SubjectTemplate {
    fn default() -> Self {
        SubjectTemplate {
            country: "DE".to_owned(),
            organization: "Organization".to_owned(),
            organizational_unit: "OrgUnit".to_owned(),
            locality: "Waldorf".to_owned(),
            province: "Waldorf".to_owned(),
        }
    }
}

impl SubjectTemplate {
    /// The subject a certificate of RE `re` carries, and its CSR must: CN `re`, the rest
    /// from the template.
    pub fn subject_for(&self, re: &str) -> crate::connector::Subject {
        crate::connector::Subject {
            common_name: Some(re.to_owned()),
            country: Some(self.country.clone()),
            organization: Some(self.organization.clone()),
            organizational_unit: Some(self.organizational_unit.clone()),
            locality: Some(self.locality.clone()),
            province: Some(self.province.clone()),
        }
    }
}

/// What a CSR must meet beyond Kyma's subject checks. Kyma 0.5 checks neither key size nor
/// signature algorithm (reference §1.4 step 7); ACE does by default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CsrPolicy {
    /// Smallest accepted RSA modulus in bits; `None` accepts any size.
    pub min_rsa_bits: Option<u32>,
    /// Reject MD5 and SHA-1 signatures.
    pub reject_weak_signatures: bool,
}

impl Default for CsrPolicy {
    fn default() -> Self {
        CsrPolicy {
            min_rsa_bits: Some(2048),
            reject_weak_signatures: true,
        }
    }
}

impl CsrPolicy {
    /// Kyma 0.5's policy: no checks beyond the subject.
    pub fn kyma() -> Self {
        CsrPolicy {
            min_rsa_bits: None,
            reject_weak_signatures: false,
        }
    }
}

/// The Metadata Service and the catalog.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryConfig {
    /// Base URL of the proxy, without a trailing slash. A registered API is reached at
    /// `<proxy_url>/re-<re>-<id>`: that is its `gatewayUrl` and its binding's `GATEWAY_URL`.
    pub proxy_url: String,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            proxy_url: "http://127.0.0.1:8090".to_owned(),
        }
    }
}

/// Serializes a `Duration` as whole seconds.
pub mod duration_secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as seconds.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    /// Deserializes from seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}
