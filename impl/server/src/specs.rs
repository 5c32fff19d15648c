//! The OpenAPI documents in `specs/`, compiled in and served.

/// Connector internal and external API.
pub const CONNECTOR: &str = include_str!("../../../specs/connector.yaml");
/// Gateway: Metadata Service, Event Service, health.
pub const GATEWAY: &str = include_str!("../../../specs/gateway.yaml");
/// Admin API.
pub const ADMIN: &str = include_str!("../../../specs/admin.yaml");
/// The Kubernetes resource API, for kubectl.
pub const KUBERNETES: &str = include_str!("../../../specs/kubernetes.yaml");
/// Event Bus publish API.
pub const PUBLISH: &str = include_str!("../../../specs/publish.yaml");

/// The JSON Schemas of the CRD kinds, by plural resource name; the CRDs the Kubernetes API
/// serves carry them as `openAPIV3Schema`.
pub const CRD_SCHEMAS: [(&str, &str); 4] = [
    (
        "remoteenvironments",
        include_str!("../../../specs/schemas/remoteenvironment.json"),
    ),
    (
        "environmentmappings",
        include_str!("../../../specs/schemas/environmentmapping.json"),
    ),
    (
        "eventactivations",
        include_str!("../../../specs/schemas/eventactivation.json"),
    ),
    (
        "subscriptions",
        include_str!("../../../specs/schemas/subscription.json"),
    ),
];
