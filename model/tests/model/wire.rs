//! The channel between replicas: every `Request` and `Reply` goes through JSON and comes back
//! equal, bodies travel as base64, and the forms clients and the log see are unchanged.
//!
//! The samples use a value other than the default in every field, so that a field the
//! channel dropped (or read back as its default) makes a round trip differ. Each enum has an
//! exhaustive `*_variant` function (here, or in `variants.rs` for the refusals the error-body
//! snapshots share): a new variant does not compile until it is named there, and the coverage
//! tests then fail until a sample of it is added.

use std::collections::{BTreeMap, BTreeSet};

use ace_model::bus::{
    ActivationSpec, BackoffReason, BackoffStatus, BusReply, BusRequest, DeadLetterRef,
    DeliveryStats, EventServiceError, GatewayEvent, PublishError, ReplaySelection, ResourceError,
    ResourceKey, SubscriptionSpec,
};
use ace_model::connector::{
    ConnectorError, CsrSubmission, GatewayError, InfoReply, IssuedCertificate, ParsedCsr,
    PeerCertificate, PublicKeyKind, SignatureAlgorithm, Subject, SubjectField, TokenReply,
};
use ace_model::documents::DocumentKind;
use ace_model::error::CommonError;
use ace_model::kube::{Kind, KubeError, KubeRequest, WriteMode};
use ace_model::proxy::{ProxyError, ProxyTarget};
use ace_model::registry::{
    DocEntry, Documentation, MetadataError, OAuthCredentials, RegisteredService, Secret,
    ServiceApi, SpecPart,
};
use ace_model::rng::CertSerial;
use ace_model::{AdminError, AdminRequest, GatewayCall, Reply, Request, RequestError, Timestamp};
use base64::Engine as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::variants::{
    ADMIN_VARIANTS, CONNECTOR_VARIANTS, GATEWAY_VARIANTS, METADATA_VARIANTS, PROXY_VARIANTS,
    admin_variant, connector_variant, gateway_variant, metadata_variant, proxy_variant,
};

/// `value` through JSON and back, which must give `value` again.
#[track_caller]
fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let bytes = serde_json::to_vec(value).expect("serializes");
    let back: T = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "{} does not read back: {e}",
            String::from_utf8_lossy(&bytes)
        )
    });
    assert_eq!(&back, value, "{}", String::from_utf8_lossy(&bytes));
}

fn t(millis: u64) -> Timestamp {
    Timestamp::from_unix_millis(millis)
}

fn key(namespace: &str, name: &str) -> ResourceKey {
    ResourceKey::new(namespace, name)
}

/// Bytes that are not UTF-8, with every byte value.
fn bytes() -> Vec<u8> {
    (0..=255u8).rev().chain([0, 0xff, b'"', b'\\']).collect()
}

fn headers() -> Vec<(String, String)> {
    vec![
        ("traceparent".into(), "00-abc-def-01".into()),
        ("x-b3-traceid".into(), "1234".into()),
    ]
}

fn subject() -> Subject {
    Subject {
        common_name: Some("ec-default".into()),
        country: Some("DE".into()),
        organization: Some("Organization".into()),
        organizational_unit: Some("OrgUnit".into()),
        locality: Some("Waldorf".into()),
        province: Some("Baden".into()),
    }
}

fn parsed_csr(signature: Result<(), String>) -> ParsedCsr {
    ParsedCsr {
        subject: subject(),
        public_key: PublicKeyKind::Rsa { bits: 3072 },
        signature_algorithm: SignatureAlgorithm::RsaSha384,
        signature,
    }
}

fn oauth() -> OAuthCredentials {
    OAuthCredentials {
        url: "https://oauth.example.com/token".into(),
        client_id: Secret::new("client-id \u{1F511}"),
        client_secret: Secret::new("s3cr3t \"quoted\" \\ \n"),
    }
}

fn service() -> RegisteredService {
    RegisteredService {
        id: "5f2a4e3c-0000-4000-8000-000000000001".into(),
        provider: "SAP".into(),
        name: "Orders".into(),
        description: "Order API".into(),
        short_description: "Orders".into(),
        identifier: "orders-v1".into(),
        labels: BTreeMap::from([("connected-app".into(), "ec-default".into())]),
        api: Some(ServiceApi {
            target_url: "https://orders.example.com/v1".into(),
            oauth: Some(oauth()),
            spec: Some(json!({"swagger": "2.0", "paths": {"/orders": {}}})),
        }),
        events: Some(json!({"asyncapi": "1.0.0", "topics": {"order.created.v1": {}}})),
        documentation: Some(Documentation {
            display_name: "Orders".into(),
            description: "The orders".into(),
            kind: "API".into(),
            tags: Some(vec!["orders".into(), "commerce".into()]),
            docs: Some(vec![DocEntry {
                title: "Guide".into(),
                kind: "markdown".into(),
                source: "https://docs.example.com".into(),
            }]),
        }),
    }
}

fn subscription_spec() -> SubscriptionSpec {
    SubscriptionSpec {
        endpoint: "http://lambda.stage.svc:8080/".into(),
        include_subscription_name_header: true,
        max_inflight: 17,
        push_request_timeout_ms: 2500,
        event_type: "order.created".into(),
        event_type_version: "v1".into(),
        source_id: "ec-default".into(),
    }
}

fn stats(seed: u64, backoff: Option<BackoffStatus>) -> DeliveryStats {
    DeliveryStats {
        pending: seed + 1,
        in_flight: seed + 2,
        delivered: seed + 3,
        retried: seed + 4,
        dead_lettered: seed + 5,
        over_limit: seed + 6,
        discarded: seed + 7,
        backoff,
    }
}

// -- Variant names: exhaustive, so that a new variant must be named (and then sampled). --

fn request_variant(r: &Request) -> &'static str {
    match r {
        Request::CreateToken { .. } => "CreateToken",
        Request::Info { .. } => "Info",
        Request::ClientCerts { .. } => "ClientCerts",
        Request::Gateway { .. } => "Gateway",
        Request::Admin(_) => "Admin",
        Request::Bus(_) => "Bus",
        Request::Document { .. } => "Document",
        Request::Readiness => "Readiness",
        Request::StateDigest => "StateDigest",
        Request::Proxy { .. } => "Proxy",
        Request::Kube(_) => "Kube",
    }
}
const REQUEST_VARIANTS: usize = 11;

fn gateway_call_variant(c: &GatewayCall) -> &'static str {
    match c {
        GatewayCall::MetadataRoot => "MetadataRoot",
        GatewayCall::MetadataSpec => "MetadataSpec",
        GatewayCall::CreateService { .. } => "CreateService",
        GatewayCall::ListServices => "ListServices",
        GatewayCall::GetService { .. } => "GetService",
        GatewayCall::UpdateService { .. } => "UpdateService",
        GatewayCall::DeleteService { .. } => "DeleteService",
        GatewayCall::PublishEvent(_) => "PublishEvent",
    }
}
const GATEWAY_CALL_VARIANTS: usize = 8;

fn admin_request_variant(r: &AdminRequest) -> &'static str {
    match r {
        AdminRequest::ApplyRemoteEnvironment { .. } => "ApplyRemoteEnvironment",
        AdminRequest::DeleteRemoteEnvironment { .. } => "DeleteRemoteEnvironment",
        AdminRequest::GetRemoteEnvironment { .. } => "GetRemoteEnvironment",
        AdminRequest::ListRemoteEnvironments => "ListRemoteEnvironments",
        AdminRequest::ApplyMapping { .. } => "ApplyMapping",
        AdminRequest::DeleteMapping { .. } => "DeleteMapping",
        AdminRequest::ListMappings { .. } => "ListMappings",
        AdminRequest::Catalog { .. } => "Catalog",
        AdminRequest::Provision { .. } => "Provision",
        AdminRequest::Deprovision { .. } => "Deprovision",
        AdminRequest::Bind { .. } => "Bind",
        AdminRequest::Unbind { .. } => "Unbind",
    }
}
const ADMIN_REQUEST_VARIANTS: usize = 12;

fn bus_request_variant(r: &BusRequest) -> &'static str {
    match r {
        BusRequest::Publish { .. } => "Publish",
        BusRequest::ApplyActivation { .. } => "ApplyActivation",
        BusRequest::DeleteActivation { .. } => "DeleteActivation",
        BusRequest::GetActivation { .. } => "GetActivation",
        BusRequest::ListActivations { .. } => "ListActivations",
        BusRequest::ApplySubscription { .. } => "ApplySubscription",
        BusRequest::DeleteSubscription { .. } => "DeleteSubscription",
        BusRequest::GetSubscription { .. } => "GetSubscription",
        BusRequest::ListSubscriptions { .. } => "ListSubscriptions",
        BusRequest::ListDeadLetters { .. } => "ListDeadLetters",
        BusRequest::DeliveryFigures => "DeliveryFigures",
        BusRequest::ReplayDeadLetters { .. } => "ReplayDeadLetters",
    }
}
const BUS_REQUEST_VARIANTS: usize = 12;

fn reply_variant(r: &Reply) -> &'static str {
    match r {
        Reply::Token(_) => "Token",
        Reply::Info(_) => "Info",
        Reply::Certificate(_) => "Certificate",
        Reply::MetadataSpec => "MetadataSpec",
        Reply::Redirect { .. } => "Redirect",
        Reply::ServiceCreated { .. } => "ServiceCreated",
        Reply::ServiceList(_) => "ServiceList",
        Reply::ServiceDetails(_) => "ServiceDetails",
        Reply::ServiceUpdated(_) => "ServiceUpdated",
        Reply::NoContent => "NoContent",
        Reply::Resource { .. } => "Resource",
        Reply::Bus(_) => "Bus",
        Reply::Proxy(_) => "Proxy",
        Reply::Ready => "Ready",
        Reply::Error(_) => "Error",
    }
}
const REPLY_VARIANTS: usize = 15;

fn bus_reply_variant(r: &BusReply) -> &'static str {
    match r {
        BusReply::Published { .. } => "Published",
        BusReply::PublishRefused(_) => "PublishRefused",
        BusReply::EventServiceRefused(_) => "EventServiceRefused",
        BusReply::Resource { .. } => "Resource",
        BusReply::NoContent => "NoContent",
        BusReply::ResourceRefused(_) => "ResourceRefused",
        BusReply::Figures(_) => "Figures",
        BusReply::DeadLetters { .. } => "DeadLetters",
        BusReply::ReplayNeedsEvents { .. } => "ReplayNeedsEvents",
    }
}
const BUS_REPLY_VARIANTS: usize = 9;

fn request_error_variant(e: &RequestError) -> &'static str {
    match e {
        RequestError::Connector(_) => "Connector",
        RequestError::Gateway(_) => "Gateway",
        RequestError::Metadata(_) => "Metadata",
        RequestError::Admin(_) => "Admin",
        RequestError::Proxy(_) => "Proxy",
        RequestError::Common(_) => "Common",
        RequestError::Kube(_) => "Kube",
    }
}
const REQUEST_ERROR_VARIANTS: usize = 7;

fn csr_variant(c: &CsrSubmission) -> &'static str {
    match c {
        CsrSubmission::MalformedBody(_) => "MalformedBody",
        CsrSubmission::BadBase64 => "BadBase64",
        CsrSubmission::NoPemBlock => "NoPemBlock",
        CsrSubmission::Unparsable(_) => "Unparsable",
        CsrSubmission::Parsed(_) => "Parsed",
    }
}
const CSR_VARIANTS: usize = 5;

fn publish_error_variant(e: &PublishError) -> &'static str {
    match e {
        PublishError::BadRequest => "BadRequest",
        PublishError::RequestBodyTooLarge => "RequestBodyTooLarge",
        PublishError::BadPayloadSyntax => "BadPayloadSyntax",
        PublishError::MissingSourceId => "MissingSourceId",
        PublishError::MissingField(_) => "MissingField",
        PublishError::InvalidField(_) => "InvalidField",
        PublishError::InvalidSourceIdHeader => "InvalidSourceIdHeader",
        PublishError::InsufficientStorage => "InsufficientStorage",
    }
}
const PUBLISH_ERROR_VARIANTS: usize = 8;

fn event_service_error_variant(e: &EventServiceError) -> &'static str {
    match e {
        EventServiceError::RequestBodyTooLarge => "RequestBodyTooLarge",
        EventServiceError::BadPayloadSyntax { .. } => "BadPayloadSyntax",
        EventServiceError::MissingField(_) => "MissingField",
        EventServiceError::InvalidField(_) => "InvalidField",
        EventServiceError::Publish(_) => "Publish",
    }
}
const EVENT_SERVICE_ERROR_VARIANTS: usize = 5;

fn resource_error_variant(e: &ResourceError) -> &'static str {
    match e {
        ResourceError::InvalidName { .. } => "InvalidName",
        ResourceError::InvalidSpec { .. } => "InvalidSpec",
        ResourceError::NotFound { .. } => "NotFound",
    }
}
const RESOURCE_ERROR_VARIANTS: usize = 3;

#[track_caller]
fn assert_covers<T>(samples: &[T], name: fn(&T) -> &'static str, count: usize) {
    let names: BTreeSet<_> = samples.iter().map(name).collect();
    assert_eq!(names.len(), count, "variants sampled: {names:?}");
}

// -- Samples. --

fn csr_submissions() -> Vec<CsrSubmission> {
    let mut out = vec![
        CsrSubmission::MalformedBody("expected value at line 1 column 1".into()),
        CsrSubmission::BadBase64,
        CsrSubmission::NoPemBlock,
        CsrSubmission::Unparsable("not a PKCS#10 request".into()),
        CsrSubmission::Parsed(parsed_csr(Ok(()))),
        CsrSubmission::Parsed(parsed_csr(Err("bad signature".into()))),
    ];
    let keys = [
        PublicKeyKind::Rsa { bits: 1024 },
        PublicKeyKind::EcdsaP256,
        PublicKeyKind::EcdsaP384,
        PublicKeyKind::Ed25519,
        PublicKeyKind::Other("1.2.3.4".into()),
    ];
    let algorithms = [
        SignatureAlgorithm::RsaMd5,
        SignatureAlgorithm::RsaSha1,
        SignatureAlgorithm::RsaSha256,
        SignatureAlgorithm::RsaSha384,
        SignatureAlgorithm::RsaSha512,
        SignatureAlgorithm::RsaPss,
        SignatureAlgorithm::EcdsaSha1,
        SignatureAlgorithm::EcdsaSha256,
        SignatureAlgorithm::EcdsaSha384,
        SignatureAlgorithm::Ed25519,
        SignatureAlgorithm::Other("gost".into()),
    ];
    for (i, signature_algorithm) in algorithms.into_iter().enumerate() {
        out.push(CsrSubmission::Parsed(ParsedCsr {
            subject: Subject {
                common_name: Some("ec".into()),
                ..Subject::default()
            },
            public_key: keys[i % keys.len()].clone(),
            signature_algorithm,
            signature: Ok(()),
        }));
    }
    out
}

fn gateway_calls() -> Vec<GatewayCall> {
    vec![
        GatewayCall::MetadataRoot,
        GatewayCall::MetadataSpec,
        GatewayCall::CreateService { body: bytes() },
        GatewayCall::ListServices,
        GatewayCall::GetService { id: "id-1".into() },
        GatewayCall::UpdateService {
            id: "id-2".into(),
            body: br#"{"provider":"SAP"}"#.to_vec(),
        },
        GatewayCall::DeleteService { id: "id-3".into() },
        GatewayCall::PublishEvent(GatewayEvent {
            body: bytes(),
            headers: headers(),
        }),
        GatewayCall::PublishEvent(GatewayEvent {
            body: Vec::new(),
            headers: Vec::new(),
        }),
    ]
}

fn admin_requests() -> Vec<AdminRequest> {
    vec![
        AdminRequest::ApplyRemoteEnvironment {
            name: "ec-default".into(),
            description: "EC".into(),
            labels: BTreeMap::from([("region".into(), "us".into()), ("a".into(), "".into())]),
            skip_verify: true,
        },
        AdminRequest::DeleteRemoteEnvironment { name: "ec".into() },
        AdminRequest::GetRemoteEnvironment { name: "ec".into() },
        AdminRequest::ListRemoteEnvironments,
        AdminRequest::ApplyMapping {
            namespace: "stage".into(),
            re: "ec".into(),
        },
        AdminRequest::DeleteMapping {
            namespace: "stage".into(),
            re: "ec".into(),
        },
        AdminRequest::ListMappings {
            namespace: Some("stage".into()),
        },
        AdminRequest::ListMappings { namespace: None },
        AdminRequest::Catalog {
            namespace: "stage".into(),
        },
        AdminRequest::Provision {
            namespace: "stage".into(),
            name: "orders".into(),
            class: "re-ec-id".into(),
        },
        AdminRequest::Deprovision {
            namespace: "stage".into(),
            name: "orders".into(),
        },
        AdminRequest::Bind {
            namespace: "stage".into(),
            name: "b".into(),
            instance: "orders".into(),
        },
        AdminRequest::Unbind {
            namespace: "stage".into(),
            name: "b".into(),
        },
    ]
}

fn bus_requests() -> Vec<BusRequest> {
    let (namespace, name) = (String::from("stage"), String::from("sub"));
    vec![
        BusRequest::Publish {
            method: "POST".into(),
            source_id_header: Some("ec-default".into()),
            body: bytes(),
            headers: headers(),
        },
        BusRequest::Publish {
            method: "GET".into(),
            source_id_header: None,
            body: Vec::new(),
            headers: Vec::new(),
        },
        BusRequest::ApplyActivation {
            namespace: namespace.clone(),
            name: name.clone(),
            spec: ActivationSpec {
                source_id: "ec-default".into(),
                display_name: "EC".into(),
            },
        },
        BusRequest::DeleteActivation {
            namespace: namespace.clone(),
            name: name.clone(),
        },
        BusRequest::GetActivation {
            namespace: namespace.clone(),
            name: name.clone(),
        },
        BusRequest::ListActivations {
            namespace: Some(namespace.clone()),
        },
        BusRequest::ListActivations { namespace: None },
        BusRequest::ApplySubscription {
            namespace: namespace.clone(),
            name: name.clone(),
            spec: subscription_spec(),
        },
        BusRequest::DeleteSubscription {
            namespace: namespace.clone(),
            name: name.clone(),
        },
        BusRequest::GetSubscription {
            namespace: namespace.clone(),
            name: name.clone(),
        },
        BusRequest::ListSubscriptions {
            namespace: Some(namespace.clone()),
        },
        BusRequest::ListDeadLetters {
            namespace: Some(namespace.clone()),
            after: Some(DeadLetterRef {
                subscription: key("stage", "sub"),
                seq: u64::MAX,
            }),
            limit: 250,
        },
        BusRequest::ListDeadLetters {
            namespace: None,
            after: None,
            limit: 0,
        },
        BusRequest::DeliveryFigures,
        BusRequest::ReplayDeadLetters {
            namespace: namespace.clone(),
            name: name.clone(),
            selection: ReplaySelection::All,
        },
        BusRequest::ReplayDeadLetters {
            namespace: namespace.clone(),
            name: name.clone(),
            selection: ReplaySelection::EventId("evt-1".into()),
        },
        BusRequest::ReplayDeadLetters {
            namespace,
            name,
            selection: ReplaySelection::Seqs(vec![1, 7, u64::MAX]),
        },
    ]
}

fn requests() -> Vec<Request> {
    let mut out = vec![
        Request::CreateToken { re: "ec".into() },
        Request::Info {
            re: "ec".into(),
            token: Some("tok".into()),
        },
        Request::Info {
            re: "ec".into(),
            token: None,
        },
        Request::Readiness,
        Request::StateDigest,
        Request::Kube(KubeRequest::Write {
            kind: Kind::Subscription,
            namespace: "stage".into(),
            name: Some("s".into()),
            mode: WriteMode::MergePatch,
            body: b"{\"spec\":null}".to_vec(),
        }),
        Request::Kube(KubeRequest::List {
            kind: Kind::ServiceClass,
            namespace: None,
            table: true,
        }),
        Request::Kube(KubeRequest::Get {
            kind: Kind::RemoteEnvironment,
            namespace: String::new(),
            name: "ec".into(),
            table: false,
        }),
        Request::Kube(KubeRequest::Delete {
            kind: Kind::ServiceBinding,
            namespace: "production".into(),
            name: "b".into(),
        }),
        Request::Proxy {
            service: "re-ec-id".into(),
            binding_key: Some("key".into()),
        },
        Request::Proxy {
            service: "re-ec-id".into(),
            binding_key: None,
        },
    ];
    out.extend(
        csr_submissions()
            .into_iter()
            .map(|csr| Request::ClientCerts {
                re: "ec".into(),
                token: Some("csr-token".into()),
                csr,
            }),
    );
    let peer = PeerCertificate {
        common_name: Some("ec".into()),
        serial: CertSerial("7f00ff".into()),
    };
    for (i, call) in gateway_calls().into_iter().enumerate() {
        out.push(Request::Gateway {
            re: "ec".into(),
            peer: (i % 2 == 0).then(|| peer.clone()),
            call,
        });
    }
    out.push(Request::Gateway {
        re: "ec".into(),
        peer: Some(PeerCertificate {
            common_name: None,
            serial: CertSerial("01".into()),
        }),
        call: GatewayCall::ListServices,
    });
    out.extend(admin_requests().into_iter().map(Request::Admin));
    out.extend(bus_requests().into_iter().map(Request::Bus));
    for kind in [
        DocumentKind::RemoteEnvironment,
        DocumentKind::ServiceInstance,
        DocumentKind::ServiceBinding,
        DocumentKind::EventActivation,
        DocumentKind::Subscription,
        DocumentKind::DeadLetterReplay,
    ] {
        out.push(Request::Document {
            kind,
            namespace: "stage".into(),
            name: kind.name().to_ascii_lowercase(),
            body: bytes(),
        });
    }
    out
}

fn connector_errors() -> Vec<ConnectorError> {
    let mut out = vec![
        ConnectorError::RemoteEnvironmentNotFound("ec".into()),
        ConnectorError::TokenNotProvided,
        ConnectorError::InvalidToken,
        ConnectorError::MalformedBody("eof".into()),
        ConnectorError::BadBase64,
        ConnectorError::NoPemBlock,
        ConnectorError::Unparsable("asn.1".into()),
        ConnectorError::SignatureInvalid("mismatch".into()),
        ConnectorError::InvalidCommonName,
        ConnectorError::KeyTooSmall {
            bits: 1024,
            min_bits: 2048,
        },
        ConnectorError::WeakSignature("sha1WithRSAEncryption".into()),
    ];
    for field in [
        SubjectField::Country,
        SubjectField::Organization,
        SubjectField::OrganizationalUnit,
        SubjectField::Locality,
        SubjectField::Province,
    ] {
        out.push(ConnectorError::MissingSubjectField(field));
        out.push(ConnectorError::InvalidSubjectField(field));
    }
    out
}

fn gateway_errors() -> Vec<GatewayError> {
    vec![
        GatewayError::NoCertificate,
        GatewayError::WrongRemoteEnvironment("other".into()),
        GatewayError::Revoked,
        GatewayError::UnknownCertificate,
        GatewayError::Expired,
    ]
}

fn metadata_errors() -> Vec<MetadataError> {
    vec![
        MetadataError::Unmarshal("invalid character".into()),
        MetadataError::InvalidStructure(vec!["provider: required".into(), "name".into()]),
        MetadataError::NeitherApiNorEvents,
        MetadataError::SpecNotObject {
            part: SpecPart::Api,
            detail: "array".into(),
        },
        MetadataError::SpecNotObject {
            part: SpecPart::Events,
            detail: "string".into(),
        },
        MetadataError::IdentifierExists("orders-v1".into()),
        MetadataError::NotFound("id".into()),
        MetadataError::UpdateNotFound("id".into()),
        MetadataError::RemoteEnvironmentNotFound("ec".into()),
        MetadataError::EgressRefused {
            field: "targetUrl",
            url: "http://10.0.0.1/".into(),
            reason: "private address".into(),
        },
        MetadataError::EgressRefused {
            field: "credentials.oauth.url",
            url: "http://localhost/".into(),
            reason: "loopback".into(),
        },
    ]
}

/// Every kind of resource an admin refusal names.
const ADMIN_KINDS: &[&str] = &[
    "namespace",
    "RemoteEnvironment",
    "EnvironmentMapping",
    "ServiceInstance",
    "ServiceBinding",
];

fn admin_errors() -> Vec<AdminError> {
    let mut out = vec![
        AdminError::ClassNotAvailable {
            namespace: "stage".into(),
            class: "orders".into(),
        },
        AdminError::NotBindable {
            namespace: "stage".into(),
            instance: "events-only".into(),
        },
        AdminError::InstanceConflict {
            namespace: "stage".into(),
            name: "orders".into(),
        },
    ];
    for &kind in ADMIN_KINDS {
        out.push(AdminError::InvalidName {
            kind,
            name: "Bad_Name".into(),
            problem: "must consist of lower case alphanumeric characters".into(),
        });
        out.push(AdminError::NotFound {
            kind,
            name: "stage/missing".into(),
        });
    }
    out
}

fn proxy_errors() -> Vec<ProxyError> {
    vec![
        ProxyError::UnknownService("re-ec-x".into()),
        ProxyError::NoApi("re-ec-y".into()),
        ProxyError::NotAllowed,
    ]
}

fn request_errors() -> Vec<RequestError> {
    let mut out = Vec::new();
    out.extend(connector_errors().into_iter().map(RequestError::Connector));
    out.extend(gateway_errors().into_iter().map(RequestError::Gateway));
    out.extend(metadata_errors().into_iter().map(RequestError::Metadata));
    out.extend(admin_errors().into_iter().map(RequestError::Admin));
    out.extend(proxy_errors().into_iter().map(RequestError::Proxy));
    out.push(RequestError::Common(CommonError::new(413, "too large")));
    out.push(RequestError::Common(CommonError::route_not_found()));
    out.push(RequestError::Kube(Box::new(KubeError::conflict(
        &Kind::EventActivation.info(),
        "a",
    ))));
    out.push(RequestError::Kube(Box::new(KubeError::no_such_path())));
    out
}

/// Every field an event refusal names.
const EVENT_FIELDS: &[&str] = &[
    "source-id",
    "event-type",
    "event-type-version",
    "event-id",
    "event-time",
    "data",
];

fn publish_errors() -> Vec<PublishError> {
    let mut out = vec![
        PublishError::BadRequest,
        PublishError::RequestBodyTooLarge,
        PublishError::BadPayloadSyntax,
        PublishError::MissingSourceId,
        PublishError::InvalidSourceIdHeader,
        PublishError::InsufficientStorage,
    ];
    for &field in EVENT_FIELDS {
        out.push(PublishError::MissingField(field));
        out.push(PublishError::InvalidField(field));
    }
    out
}

fn event_service_errors() -> Vec<EventServiceError> {
    let mut out = vec![
        EventServiceError::RequestBodyTooLarge,
        EventServiceError::BadPayloadSyntax {
            more_info: "Bad Payload Syntax".into(),
        },
    ];
    for &field in EVENT_FIELDS {
        out.push(EventServiceError::MissingField(field));
        out.push(EventServiceError::InvalidField(field));
    }
    out.extend(publish_errors().into_iter().map(EventServiceError::Publish));
    out
}

fn resource_errors() -> Vec<ResourceError> {
    let mut out = Vec::new();
    for kind in ["namespace", "EventActivation", "Subscription"] {
        for rule in ["label", "subdomain"] {
            out.push(ResourceError::InvalidName {
                kind,
                rule,
                name: "Bad".into(),
                problem: "must be lower case".into(),
            });
        }
        out.push(ResourceError::InvalidSpec {
            kind,
            problem: "spec.max_inflight must be between 1 and 400, got 0".into(),
        });
        out.push(ResourceError::NotFound {
            kind,
            key: key("stage", "missing"),
        });
    }
    out
}

fn bus_replies() -> Vec<BusReply> {
    let backoff = BackoffStatus {
        since: t(1_700_000_000_123),
        reason: BackoffReason::ConnectionFailed,
        failures: 4,
        next_probe: Some(t(1_700_000_060_456)),
    };
    let probing = BackoffStatus {
        // Past year 9999: its RFC 3339 text for clients is empty, the channel keeps it.
        since: t(u64::MAX - 1),
        reason: BackoffReason::Timeout,
        failures: 1,
        next_probe: None,
    };
    let mut out = vec![
        BusReply::Published {
            event_id: "8954ad1c-78ed-4c58-a639-68bd44031de0".into(),
        },
        BusReply::Resource {
            status: 201,
            body: json!({"kind": "Subscription", "spec": {"max_inflight": 400}}),
        },
        BusReply::NoContent,
        BusReply::Figures(vec![
            (key("stage", "a"), stats(0, Some(backoff))),
            (key("stage", "b"), stats(100, Some(probing))),
            (key("prod", "c"), stats(200, None)),
        ]),
        BusReply::Figures(Vec::new()),
        BusReply::DeadLetters {
            entries: vec![
                DeadLetterRef {
                    subscription: key("stage", "a"),
                    seq: 3,
                },
                DeadLetterRef {
                    subscription: key("stage", "b"),
                    seq: 9,
                },
            ],
            more: Some(DeadLetterRef {
                subscription: key("stage", "b"),
                seq: 9,
            }),
        },
        BusReply::DeadLetters {
            entries: Vec::new(),
            more: None,
        },
        BusReply::ReplayNeedsEvents {
            subscription: key("stage", "a"),
            event_id: "evt-1".into(),
            seqs: vec![2, 4, 8],
        },
    ];
    out.extend(publish_errors().into_iter().map(BusReply::PublishRefused));
    out.extend(
        event_service_errors()
            .into_iter()
            .map(BusReply::EventServiceRefused),
    );
    out.extend(resource_errors().into_iter().map(BusReply::ResourceRefused));
    out
}

fn replies() -> Vec<Reply> {
    let mut out = vec![
        Reply::Token(TokenReply {
            url: "https://connector/v1/remoteenvironments/ec/info?token=tok".into(),
            token: "tok".into(),
        }),
        Reply::Info(InfoReply {
            csr_url: "https://connector/csr?token=t2".into(),
            metadata_url: "https://gateway/ec/v1/metadata/services".into(),
            events_url: "https://gateway/ec/v1/events".into(),
            certificates_url: "https://connector/v1/remoteenvironments/ec".into(),
            subject: "OU=OrgUnit,O=Organization,L=Waldorf,ST=Waldorf,C=DE,CN=ec".into(),
            key_algorithm: "rsa2048".into(),
        }),
        Reply::Certificate(IssuedCertificate {
            serial: CertSerial("7f0102030405060708090a0b0c0d0e0f".into()),
            re: "ec".into(),
            incarnation: 3,
            subject: subject(),
            not_before: t(1_700_000_000_000),
            not_after: t(1_731_536_000_000),
        }),
        Reply::MetadataSpec,
        Reply::Redirect {
            location: "/ec/v1/metadata/api.yaml".into(),
        },
        Reply::ServiceCreated { id: "id-1".into() },
        Reply::ServiceList(vec![service(), service()]),
        Reply::ServiceList(Vec::new()),
        Reply::ServiceDetails(Box::new(service())),
        Reply::ServiceUpdated(Box::new(RegisteredService {
            api: None,
            events: None,
            documentation: None,
            ..service()
        })),
        Reply::NoContent,
        Reply::Resource {
            status: 201,
            body: json!([{"b": 1, "a": [true, null, "x"], "n": -7, "u": u64::MAX, "f": 0.1}]),
        },
        Reply::Proxy(ProxyTarget {
            re: "ec".into(),
            service_id: "id-1".into(),
            target_url: "https://orders.example.com/v1".into(),
            oauth: Some(oauth()),
            skip_verify: true,
        }),
        Reply::Proxy(ProxyTarget {
            re: "ec".into(),
            service_id: "id-2".into(),
            target_url: "http://h".into(),
            oauth: None,
            skip_verify: false,
        }),
        Reply::Ready,
    ];
    out.extend(bus_replies().into_iter().map(Reply::Bus));
    out.extend(request_errors().into_iter().map(Reply::Error));
    out
}

// -- Tests. --

#[test]
fn every_request_variant_round_trips() {
    let requests = requests();
    assert_covers(&requests, request_variant, REQUEST_VARIANTS);
    for request in &requests {
        round_trip(request);
    }
}

#[test]
fn every_nested_request_variant_round_trips() {
    let calls = gateway_calls();
    assert_covers(&calls, gateway_call_variant, GATEWAY_CALL_VARIANTS);
    let admin = admin_requests();
    assert_covers(&admin, admin_request_variant, ADMIN_REQUEST_VARIANTS);
    let bus = bus_requests();
    assert_covers(&bus, bus_request_variant, BUS_REQUEST_VARIANTS);
    let csrs = csr_submissions();
    assert_covers(&csrs, csr_variant, CSR_VARIANTS);
    calls.iter().for_each(round_trip);
    admin.iter().for_each(round_trip);
    bus.iter().for_each(round_trip);
    csrs.iter().for_each(round_trip);
}

#[test]
fn every_reply_variant_round_trips() {
    let replies = replies();
    assert_covers(&replies, reply_variant, REPLY_VARIANTS);
    for reply in &replies {
        round_trip(reply);
    }
}

#[test]
fn every_bus_reply_variant_round_trips() {
    let replies = bus_replies();
    assert_covers(&replies, bus_reply_variant, BUS_REPLY_VARIANTS);
    replies.iter().for_each(round_trip);
}

#[test]
fn every_refusal_round_trips() {
    let errors = request_errors();
    assert_covers(&errors, request_error_variant, REQUEST_ERROR_VARIANTS);
    errors.iter().for_each(round_trip);

    let connector = connector_errors();
    assert_covers(&connector, connector_variant, CONNECTOR_VARIANTS);
    let gateway = gateway_errors();
    assert_covers(&gateway, gateway_variant, GATEWAY_VARIANTS);
    let metadata = metadata_errors();
    assert_covers(&metadata, metadata_variant, METADATA_VARIANTS);
    let admin = admin_errors();
    assert_covers(&admin, admin_variant, ADMIN_VARIANTS);
    let proxy = proxy_errors();
    assert_covers(&proxy, proxy_variant, PROXY_VARIANTS);
    let publish = publish_errors();
    assert_covers(&publish, publish_error_variant, PUBLISH_ERROR_VARIANTS);
    let event_service = event_service_errors();
    assert_covers(
        &event_service,
        event_service_error_variant,
        EVENT_SERVICE_ERROR_VARIANTS,
    );
    let resource = resource_errors();
    assert_covers(&resource, resource_error_variant, RESOURCE_ERROR_VARIANTS);
    publish.iter().for_each(round_trip);
    event_service.iter().for_each(round_trip);
    resource.iter().for_each(round_trip);
}

/// The kinds and fields of refusals are `&'static str`s: they are read back from a table, and
/// a name the table does not know is refused rather than leaked or replaced.
#[test]
fn refusal_names_read_back_as_the_same_text_and_unknown_ones_are_refused() {
    let json = serde_json::to_value(PublishError::MissingField("event-time")).expect("json");
    assert_eq!(json, json!({"MissingField": "event-time"}));
    let back: PublishError = serde_json::from_value(json).expect("reads");
    assert_eq!(back, PublishError::MissingField("event-time"));
    for unknown in [
        json!({"MissingField": "event-thyme"}),
        json!({"InvalidField": ""}),
    ] {
        let refused = serde_json::from_value::<PublishError>(unknown).expect_err("unknown");
        assert!(refused.to_string().contains("unknown"), "{refused}");
    }
    assert!(
        serde_json::from_value::<AdminError>(
            json!({"NotFound": {"kind": "Pod", "name": "stage/x"}})
        )
        .is_err()
    );
    // Read from a reader too (nothing borrowed from the input).
    let text = serde_json::to_vec(&ResourceError::InvalidSpec {
        kind: "Subscription",
        problem: "p".into(),
    })
    .expect("json");
    let back: ResourceError = serde_json::from_reader(text.as_slice()).expect("reads");
    assert!(matches!(
        back,
        ResourceError::InvalidSpec {
            kind: "Subscription",
            ..
        }
    ));
}

#[test]
fn a_body_travels_as_base64_not_as_an_array_of_numbers() {
    let body: Vec<u8> = (0..1000u32)
        .map(|i| u8::try_from(i * 7 % 256).expect("byte"))
        .collect();
    let request = Request::Gateway {
        re: "ec".into(),
        peer: None,
        call: GatewayCall::CreateService { body: body.clone() },
    };
    let bytes = serde_json::to_vec(&request).expect("serializes");
    assert!(bytes.len() < 1500, "{} JSON bytes", bytes.len());
    let value: Value = serde_json::from_slice(&bytes).expect("json");
    assert_eq!(
        value["Gateway"]["call"]["CreateService"]["body"],
        Value::String(base64::engine::general_purpose::STANDARD.encode(&body))
    );
    round_trip(&request);

    for request in [
        Request::Document {
            kind: DocumentKind::Subscription,
            namespace: "stage".into(),
            name: "sub".into(),
            body: body.clone(),
        },
        Request::Bus(BusRequest::Publish {
            method: "POST".into(),
            source_id_header: None,
            body: body.clone(),
            headers: Vec::new(),
        }),
        Request::Gateway {
            re: "ec".into(),
            peer: None,
            call: GatewayCall::PublishEvent(GatewayEvent {
                body: body.clone(),
                headers: Vec::new(),
            }),
        },
    ] {
        let bytes = serde_json::to_vec(&request).expect("serializes");
        assert!(bytes.len() < 1500, "{} JSON bytes", bytes.len());
    }
    // Anything but base64 is refused.
    let bad = json!({"Gateway": {"re": "ec", "peer": null,
                     "call": {"CreateService": {"body": [1, 2, 3]}}}});
    assert!(serde_json::from_value::<Request>(bad).is_err());
    let bad = json!({"Gateway": {"re": "ec", "peer": null,
                     "call": {"CreateService": {"body": "not base64!"}}}});
    assert!(serde_json::from_value::<Request>(bad).is_err());
}

/// Secrets cross the channel in full, and the forms clients and the log see are unchanged:
/// a read masks them, a record holds them.
#[test]
fn secrets_round_trip_exactly_and_their_other_forms_are_unchanged() {
    let target = ProxyTarget {
        re: "ec".into(),
        service_id: "id".into(),
        target_url: "https://t".into(),
        oauth: Some(oauth()),
        skip_verify: false,
    };
    let back: ProxyTarget =
        serde_json::from_slice(&serde_json::to_vec(&target).expect("json")).expect("reads");
    let (sent, got) = (
        target.oauth.as_ref().expect("oauth"),
        back.oauth.as_ref().expect("oauth"),
    );
    assert_eq!(got.client_id.expose(), sent.client_id.expose());
    assert_eq!(got.client_secret.expose(), sent.client_secret.expose());

    // The record form: the clear value, as a plain string.
    assert_eq!(
        serde_json::to_value(Secret::new("v")).expect("json"),
        json!("v")
    );
    // What clients read: masked.
    let details = Reply::ServiceDetails(Box::new(service()))
        .body()
        .expect("body");
    let oauth = &details["api"]["credentials"]["oauth"];
    assert_eq!(oauth["clientId"], json!("********"));
    assert_eq!(oauth["clientSecret"], json!("********"));
}

/// Delivery figures cross the channel in full, while their status form for clients keeps
/// its shape (RFC 3339 times, camelCase names).
#[test]
fn delivery_figures_round_trip_in_full_and_their_status_form_is_unchanged() {
    let backoff = BackoffStatus {
        since: t(1_539_702_000_123),
        reason: BackoffReason::Timeout,
        failures: 2,
        next_probe: None,
    };
    let reply = BusReply::Figures(vec![(key("stage", "sub"), stats(10, Some(backoff)))]);
    round_trip(&reply);
    assert_eq!(
        reply.body().expect("body"),
        json!([{"namespace": "stage", "name": "sub", "delivery": {
            "pending": 11, "inFlight": 12, "delivered": 13, "retried": 14,
            "deadLettered": 15, "deadLetteredOverLimit": 16, "deadLettersDiscarded": 17,
            "backoff": {"since": "2018-10-16T15:00:00.123Z", "reason": "timeout",
                        "failures": 2, "nextProbe": null},
        }}])
    );
}

/// JSON bodies the model holds (resources, specs) keep their numbers, key order and floats.
#[test]
fn json_bodies_keep_their_numbers_order_and_floats() {
    let floats = [
        0.1,
        -0.0,
        1e300,
        5e-324,
        f64::MAX,
        f64::MIN_POSITIVE,
        2.638_344_616_030_823e-256,
        1.797_693_134_862_315_7e308,
        0.300_000_000_000_000_04,
        9_007_199_254_740_993.0,
    ];
    let body = json!({
        "z": 1, "a": 2, "m": {"y": i64::MIN, "b": u64::MAX},
        "floats": floats,
    });
    let reply = Reply::Resource { status: 200, body };
    round_trip(&reply);
    let text = serde_json::to_string(&reply).expect("json");
    let back: Reply = serde_json::from_str(&text).expect("reads");
    let Reply::Resource { body, .. } = back else {
        panic!("resource")
    };
    let keys: Vec<_> = body.as_object().expect("object").keys().cloned().collect();
    assert_eq!(keys, ["z", "a", "m", "floats"]);
    let read: Vec<f64> = body["floats"]
        .as_array()
        .expect("array")
        .iter()
        .map(|v| v.as_f64().expect("f64"))
        .collect();
    for (sent, got) in floats.iter().zip(&read) {
        assert_eq!(
            sent.to_bits(),
            got.to_bits(),
            "{sent:e} came back as {got:e}"
        );
    }
}
