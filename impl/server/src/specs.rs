//! The OpenAPI documents in `specs/`, compiled in and served.

/// Connector internal and external API.
pub const CONNECTOR: &str = include_str!("../../../specs/connector.yaml");
/// Gateway: Metadata Service, Event Service, health.
pub const GATEWAY: &str = include_str!("../../../specs/gateway.yaml");
/// Admin API.
pub const ADMIN: &str = include_str!("../../../specs/admin.yaml");
/// Event Bus publish API.
pub const PUBLISH: &str = include_str!("../../../specs/publish.yaml");
