//! Exhaustive variant names of the refusals, shared by the error-body snapshots and the
//! channel's round trips: a new variant does not compile until it is named here, and each
//! test's coverage check then fails until it has an example of it.

use ace_model::AdminError;
use ace_model::connector::{ConnectorError, GatewayError};
use ace_model::proxy::ProxyError;
use ace_model::registry::MetadataError;

pub(crate) fn connector_variant(e: &ConnectorError) -> &'static str {
    match e {
        ConnectorError::RemoteEnvironmentNotFound(_) => "RemoteEnvironmentNotFound",
        ConnectorError::TokenNotProvided => "TokenNotProvided",
        ConnectorError::InvalidToken => "InvalidToken",
        ConnectorError::MalformedBody(_) => "MalformedBody",
        ConnectorError::BadBase64 => "BadBase64",
        ConnectorError::NoPemBlock => "NoPemBlock",
        ConnectorError::Unparsable(_) => "Unparsable",
        ConnectorError::SignatureInvalid(_) => "SignatureInvalid",
        ConnectorError::InvalidCommonName => "InvalidCommonName",
        ConnectorError::MissingSubjectField(_) => "MissingSubjectField",
        ConnectorError::InvalidSubjectField(_) => "InvalidSubjectField",
        ConnectorError::KeyTooSmall { .. } => "KeyTooSmall",
        ConnectorError::WeakSignature(_) => "WeakSignature",
    }
}
pub(crate) const CONNECTOR_VARIANTS: usize = 13;

pub(crate) fn gateway_variant(e: &GatewayError) -> &'static str {
    match e {
        GatewayError::NoCertificate => "NoCertificate",
        GatewayError::WrongRemoteEnvironment(_) => "WrongRemoteEnvironment",
        GatewayError::Revoked => "Revoked",
        GatewayError::UnknownCertificate => "UnknownCertificate",
        GatewayError::Expired => "Expired",
    }
}
pub(crate) const GATEWAY_VARIANTS: usize = 5;

pub(crate) fn metadata_variant(e: &MetadataError) -> &'static str {
    match e {
        MetadataError::Unmarshal(_) => "Unmarshal",
        MetadataError::InvalidStructure(_) => "InvalidStructure",
        MetadataError::NeitherApiNorEvents => "NeitherApiNorEvents",
        MetadataError::SpecNotObject { .. } => "SpecNotObject",
        MetadataError::IdentifierExists(_) => "IdentifierExists",
        MetadataError::NotFound(_) => "NotFound",
        MetadataError::UpdateNotFound(_) => "UpdateNotFound",
        MetadataError::RemoteEnvironmentNotFound(_) => "RemoteEnvironmentNotFound",
        MetadataError::EgressRefused { .. } => "EgressRefused",
    }
}
pub(crate) const METADATA_VARIANTS: usize = 9;

pub(crate) fn admin_variant(e: &AdminError) -> &'static str {
    match e {
        AdminError::InvalidName { .. } => "InvalidName",
        AdminError::NotFound { .. } => "NotFound",
        AdminError::ClassNotAvailable { .. } => "ClassNotAvailable",
        AdminError::NotBindable { .. } => "NotBindable",
        AdminError::InstanceConflict { .. } => "InstanceConflict",
    }
}
pub(crate) const ADMIN_VARIANTS: usize = 5;

pub(crate) fn proxy_variant(e: &ProxyError) -> &'static str {
    match e {
        ProxyError::UnknownService(_) => "UnknownService",
        ProxyError::NoApi(_) => "NoApi",
        ProxyError::NotAllowed => "NotAllowed",
    }
}
pub(crate) const PROXY_VARIANTS: usize = 3;
