//! The route table: every route ACE serves, by surface, method and path template (as in the
//! OpenAPI files). `impl/server/tests` checks it against `specs/` and against a live server.

use super::Surface;

/// Every route ACE serves: surface, method, path template (as in the OpenAPI files).
/// `impl/tests/specs.rs` checks this table against `specs/` and against a live server.
pub const ROUTES: &[(Surface, &str, &str)] = &[
    (
        Surface::ConnectorInternal,
        "POST",
        "/v1/remoteenvironments/{reName}/tokens",
    ),
    (Surface::ConnectorInternal, "GET", "/v1/api.yaml"),
    (
        Surface::ConnectorExternal,
        "GET",
        "/v1/remoteenvironments/{reName}/info",
    ),
    (
        Surface::ConnectorExternal,
        "POST",
        "/v1/remoteenvironments/{reName}/client-certs",
    ),
    (Surface::ConnectorExternal, "GET", "/v1"),
    (Surface::ConnectorExternal, "GET", "/v1/api.yaml"),
    (Surface::Gateway, "GET", "/v1/health"),
    (Surface::Gateway, "GET", "/{reName}/v1/metadata"),
    (Surface::Gateway, "POST", "/{reName}/v1/metadata"),
    (Surface::Gateway, "PUT", "/{reName}/v1/metadata"),
    (Surface::Gateway, "DELETE", "/{reName}/v1/metadata"),
    (Surface::Gateway, "PATCH", "/{reName}/v1/metadata"),
    (Surface::Gateway, "GET", "/{reName}/v1/metadata/api.yaml"),
    (Surface::Gateway, "GET", "/{reName}/v1/metadata/services"),
    (Surface::Gateway, "POST", "/{reName}/v1/metadata/services"),
    (
        Surface::Gateway,
        "GET",
        "/{reName}/v1/metadata/services/{serviceId}",
    ),
    (
        Surface::Gateway,
        "PUT",
        "/{reName}/v1/metadata/services/{serviceId}",
    ),
    (
        Surface::Gateway,
        "DELETE",
        "/{reName}/v1/metadata/services/{serviceId}",
    ),
    (Surface::Gateway, "POST", "/{reName}/v1/events"),
    (Surface::Admin, "GET", "/healthz"),
    (Surface::Admin, "GET", "/readyz"),
    (Surface::Admin, "GET", "/metrics"),
    (Surface::Admin, "GET", "/v1/state"),
    (Surface::Admin, "GET", "/v1/api.yaml"),
    (Surface::Admin, "GET", "/v1/remoteenvironments"),
    (Surface::Admin, "GET", "/v1/remoteenvironments/{name}"),
    (Surface::Admin, "PUT", "/v1/remoteenvironments/{name}"),
    (Surface::Admin, "DELETE", "/v1/remoteenvironments/{name}"),
    (Surface::Admin, "GET", "/v1/environmentmappings"),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/environmentmappings",
    ),
    (
        Surface::Admin,
        "PUT",
        "/v1/namespaces/{namespace}/environmentmappings/{name}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/v1/namespaces/{namespace}/environmentmappings/{name}",
    ),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/serviceclasses",
    ),
    (
        Surface::Admin,
        "PUT",
        "/v1/namespaces/{namespace}/serviceinstances/{name}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/v1/namespaces/{namespace}/serviceinstances/{name}",
    ),
    (Surface::Admin, "GET", "/v1/eventactivations"),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/eventactivations",
    ),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/eventactivations/{name}",
    ),
    (
        Surface::Admin,
        "PUT",
        "/v1/namespaces/{namespace}/eventactivations/{name}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/v1/namespaces/{namespace}/eventactivations/{name}",
    ),
    (Surface::Admin, "GET", "/v1/subscriptions"),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/subscriptions",
    ),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/subscriptions/{name}",
    ),
    (
        Surface::Admin,
        "PUT",
        "/v1/namespaces/{namespace}/subscriptions/{name}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/v1/namespaces/{namespace}/subscriptions/{name}",
    ),
    (Surface::Admin, "GET", "/v1/deadletters"),
    (
        Surface::Admin,
        "GET",
        "/v1/namespaces/{namespace}/deadletters",
    ),
    (
        Surface::Admin,
        "POST",
        "/v1/namespaces/{namespace}/subscriptions/{name}/replay",
    ),
    (Surface::Publish, "GET", "/v1/events"),
    (Surface::Publish, "POST", "/v1/events"),
    (Surface::Publish, "PUT", "/v1/events"),
    (Surface::Publish, "DELETE", "/v1/events"),
    (Surface::Publish, "PATCH", "/v1/events"),
    (Surface::Publish, "GET", "/v1/status/live"),
    (Surface::Publish, "GET", "/v1/status/ready"),
    (
        Surface::Admin,
        "PUT",
        "/v1/namespaces/{namespace}/servicebindings/{name}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/v1/namespaces/{namespace}/servicebindings/{name}",
    ),
    (Surface::Admin, "GET", "/broker/{namespace}/v2/catalog"),
    (
        Surface::Admin,
        "PUT",
        "/broker/{namespace}/v2/service_instances/{instance}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/broker/{namespace}/v2/service_instances/{instance}",
    ),
    (
        Surface::Admin,
        "PUT",
        "/broker/{namespace}/v2/service_instances/{instance}/service_bindings/{binding}",
    ),
    (
        Surface::Admin,
        "DELETE",
        "/broker/{namespace}/v2/service_instances/{instance}/service_bindings/{binding}",
    ),
    (Surface::Kube, "GET", "/apis"),
    (Surface::Kube, "GET", "/apis/{group}"),
    (Surface::Kube, "GET", "/apis/{group}/{version}"),
    (Surface::Kube, "GET", "/apis/{group}/{version}/{plural}"),
    (Surface::Kube, "POST", "/apis/{group}/{version}/{plural}"),
    (
        Surface::Kube,
        "GET",
        "/apis/{group}/{version}/{plural}/{name}",
    ),
    (
        Surface::Kube,
        "PUT",
        "/apis/{group}/{version}/{plural}/{name}",
    ),
    (
        Surface::Kube,
        "DELETE",
        "/apis/{group}/{version}/{plural}/{name}",
    ),
    (
        Surface::Kube,
        "PATCH",
        "/apis/{group}/{version}/{plural}/{name}",
    ),
    (
        Surface::Kube,
        "GET",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
    ),
    (
        Surface::Kube,
        "POST",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}",
    ),
    (
        Surface::Kube,
        "GET",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    ),
    (
        Surface::Kube,
        "PUT",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    ),
    (
        Surface::Kube,
        "DELETE",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    ),
    (
        Surface::Kube,
        "PATCH",
        "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}",
    ),
    (Surface::Kube, "GET", "/api/v1/namespaces/{namespace}"),
    (Surface::Kube, "GET", "/openapi/v2"),
    (Surface::Kube, "GET", "/openapi/v3"),
    (Surface::Kube, "GET", "/openapi/v3/apis/{group}/{version}"),
];

/// Whether `path` matches `template` (`{...}` matches one non-empty segment).
pub fn matches_template(template: &str, path: &str) -> bool {
    let (t, p) = (segments(template), segments(path));
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| (t.starts_with('{') && !p.is_empty()) || t == p)
}

/// The methods [`ROUTES`] serves for `path` on `surface`, for the `Allow` header of a 405.
pub fn allowed_methods(surface: Surface, path: &str) -> Vec<&'static str> {
    let mut methods: Vec<&'static str> = ROUTES
        .iter()
        .filter(|(s, _, t)| *s == surface && matches_template(t, path))
        .map(|(_, m, _)| *m)
        .collect();
    methods.dedup();
    methods
}

/// A path's segments, without the leading slash.
pub fn segments(path: &str) -> Vec<&str> {
    path.trim_start_matches('/').split('/').collect()
}
