//! Every error body the Application Connector half of the model can produce, snapshotted:
//! a change of wire format is a reviewed diff. Each enum is matched exhaustively, so a new
//! variant does not compile until it has an example here.

use std::collections::BTreeSet;

use ace_model::AdminError;
use ace_model::connector::{ConnectorError, GatewayError, SubjectField};
use ace_model::error::{ClientError, CommonError};
use ace_model::proxy::ProxyError;
use ace_model::registry::{MetadataError, SpecPart};
use serde_json::{Value, json};

use crate::variants::{
    ADMIN_VARIANTS, CONNECTOR_VARIANTS, GATEWAY_VARIANTS, METADATA_VARIANTS, PROXY_VARIANTS,
    admin_variant, connector_variant, gateway_variant, metadata_variant, proxy_variant,
};

fn entry(e: &impl ClientError) -> Value {
    json!({"status": e.status(), "body": e.body()})
}

fn table<E: ClientError>(
    examples: &[E],
    name: fn(&E) -> &'static str,
    variants: usize,
) -> Vec<Value> {
    let covered: BTreeSet<_> = examples.iter().map(name).collect();
    assert_eq!(covered.len(), variants, "every variant needs an example");
    examples.iter().map(entry).collect()
}

#[test]
fn connector_error_bodies() {
    use SubjectField::*;
    let examples = vec![
        ConnectorError::RemoteEnvironmentNotFound("ec-default".into()),
        ConnectorError::TokenNotProvided,
        ConnectorError::InvalidToken,
        ConnectorError::MalformedBody("EOF while parsing a value at line 1 column 0".into()),
        ConnectorError::BadBase64,
        ConnectorError::NoPemBlock,
        ConnectorError::Unparsable("asn1: structure error".into()),
        ConnectorError::SignatureInvalid("x509: ECDSA verification failure".into()),
        ConnectorError::InvalidCommonName,
        ConnectorError::MissingSubjectField(Country),
        ConnectorError::MissingSubjectField(Organization),
        ConnectorError::MissingSubjectField(OrganizationalUnit),
        ConnectorError::MissingSubjectField(Locality),
        ConnectorError::MissingSubjectField(Province),
        ConnectorError::InvalidSubjectField(Country),
        ConnectorError::InvalidSubjectField(Organization),
        ConnectorError::InvalidSubjectField(OrganizationalUnit),
        ConnectorError::InvalidSubjectField(Locality),
        ConnectorError::InvalidSubjectField(Province),
        ConnectorError::KeyTooSmall {
            bits: 1024,
            min_bits: 2048,
        },
        ConnectorError::WeakSignature("sha1WithRSAEncryption".into()),
    ];
    insta::assert_json_snapshot!(table(&examples, connector_variant, CONNECTOR_VARIANTS));
}

#[test]
fn gateway_error_bodies() {
    let examples = vec![
        GatewayError::NoCertificate,
        GatewayError::WrongRemoteEnvironment("ec-b".into()),
        GatewayError::Revoked,
        GatewayError::UnknownCertificate,
        GatewayError::Expired,
    ];
    insta::assert_json_snapshot!(table(&examples, gateway_variant, GATEWAY_VARIANTS));
}

#[test]
fn metadata_error_bodies() {
    let examples = vec![
        MetadataError::Unmarshal(
            "invalid type: integer `1`, expected a string at line 1 column 10".into(),
        ),
        MetadataError::InvalidStructure(vec![
            "Provider field cannot be empty.".into(),
            "Name field cannot be empty.".into(),
        ]),
        MetadataError::NeitherApiNorEvents,
        MetadataError::SpecNotObject {
            part: SpecPart::Api,
            detail: "json: cannot unmarshal string into Go value of type map[string]interface {}"
                .into(),
        },
        MetadataError::SpecNotObject {
            part: SpecPart::Events,
            detail: "json: cannot unmarshal array into Go value of type map[string]interface {}"
                .into(),
        },
        MetadataError::IdentifierExists("orders".into()),
        MetadataError::NotFound("01a702b8-e302-4e62-b678-8d361b627e49".into()),
        MetadataError::UpdateNotFound("01a702b8-e302-4e62-b678-8d361b627e49".into()),
        MetadataError::RemoteEnvironmentNotFound("ec-default".into()),
        MetadataError::EgressRefused {
            field: "targetUrl",
            url: "http://127.0.0.1:8081/".into(),
            reason: "127.0.0.1 is a loopback address (allow it with --egress-allow)".into(),
        },
    ];
    insta::assert_json_snapshot!(table(&examples, metadata_variant, METADATA_VARIANTS));
}

#[test]
fn admin_error_bodies() {
    let examples = vec![
        AdminError::InvalidName {
            kind: "RemoteEnvironment",
            name: "system_prod".into(),
            problem: ace_model::names::dns1123_label_problem("system_prod").unwrap_or_default(),
        },
        AdminError::NotFound {
            kind: "RemoteEnvironment",
            name: "ec-default".into(),
        },
        AdminError::ClassNotAvailable {
            namespace: "production".into(),
            class: "re-ec-default-01a702b8".into(),
        },
        AdminError::NotBindable {
            namespace: "production".into(),
            instance: "events-only".into(),
        },
        AdminError::InstanceConflict {
            namespace: "production".into(),
            name: "orders".into(),
        },
    ];
    insta::assert_json_snapshot!(table(&examples, admin_variant, ADMIN_VARIANTS));
}

#[test]
fn common_error_bodies() {
    let examples = [
        CommonError::route_not_found(),
        CommonError::method_not_allowed(),
        CommonError::payload_too_large(65536),
    ];
    insta::assert_json_snapshot!(examples.iter().map(entry).collect::<Vec<_>>());
}

#[test]
fn proxy_error_bodies() {
    let examples = vec![
        ProxyError::UnknownService("re-ec-default-01a702b8-e302-4e62-b678-8d361b627e49".into()),
        ProxyError::NoApi("01a702b8-e302-4e62-b678-8d361b627e49".into()),
        ProxyError::NotAllowed,
    ];
    insta::assert_json_snapshot!(table(&examples, proxy_variant, PROXY_VARIANTS));
}
