//! The served routes and the OpenAPI files agree, both ways: every route ACE serves is in a
//! spec, every spec operation is served, and no other method on those paths is answered.

use std::collections::BTreeSet;

use crate::common::*;
use ace_server::edge::{ROUTES, Surface};
use ace_server::specs;
use hyper::Method;
use serde_json::Value;

fn spec_of(surface: Surface) -> &'static str {
    match surface {
        Surface::ConnectorInternal | Surface::ConnectorExternal => specs::CONNECTOR,
        Surface::Gateway => specs::GATEWAY,
        Surface::Admin => specs::ADMIN,
        Surface::Publish => specs::PUBLISH,
        Surface::Kube => specs::KUBERNETES,
        // The proxy forwards the registered APIs' own paths; it has no routes of its own.
        Surface::Proxy => "",
    }
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "DELETE", "PATCH"];

fn operations(spec: &str) -> BTreeSet<(String, String)> {
    let doc: Value =
        serde_yaml_ng::from_str(spec).unwrap_or_else(|e| panic!("spec does not parse: {e}"));
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for method in METHODS {
            if item.get(method.to_ascii_lowercase()).is_some() {
                ops.insert((method.to_owned(), path.clone()));
            }
        }
    }
    ops
}

#[test]
fn every_served_route_is_in_a_spec_and_every_spec_operation_is_served() {
    for spec in [
        specs::CONNECTOR,
        specs::GATEWAY,
        specs::ADMIN,
        specs::PUBLISH,
        specs::KUBERNETES,
    ] {
        let declared: BTreeSet<(String, String)> = ROUTES
            .iter()
            .filter(|(surface, _, _)| spec_of(*surface) == spec)
            .map(|(_, m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        let documented = operations(spec);
        let undocumented: Vec<_> = declared.difference(&documented).collect();
        let unserved: Vec<_> = documented.difference(&declared).collect();
        assert!(
            undocumented.is_empty(),
            "served but not in the spec: {undocumented:?}"
        );
        assert!(
            unserved.is_empty(),
            "in the spec but not served: {unserved:?}"
        );
    }
}

fn concrete(template: &str) -> String {
    // The Kubernetes API's cluster-wide paths name a cluster-wide kind.
    let (group, plural) = if template.starts_with("/apis/{group}/{version}/{plural}") {
        ("applicationconnector.kyma-project.io", "remoteenvironments")
    } else {
        ("eventing.kyma.cx", "subscriptions")
    };
    template
        .replace("{reName}", "ec")
        .replace("{serviceId}", "some-id")
        .replace("{namespace}", "production")
        .replace("{name}", "ec")
        .replace("{instance}", "inst")
        .replace("{binding}", "bind")
        .replace("{group}", group)
        .replace("{version}", "v1alpha1")
        .replace("{plural}", plural)
}

fn is_route_miss(status: u16, body: &Value) -> bool {
    status == 405
        || (status == 404
            && (body["error"] == "Requested resource could not be found."
                || body["message"] == "the server could not find the requested resource"))
}

#[tokio::test]
async fn the_declared_routes_are_exactly_what_the_server_answers() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let s = start(dir.path()).await;
    for (surface, _, template) in ROUTES {
        let url = match surface {
            Surface::ConnectorInternal => s.internal(&concrete(template)),
            Surface::ConnectorExternal => s.external(&concrete(template)),
            Surface::Gateway => s.gateway(&concrete(template)),
            Surface::Admin => s.admin(&concrete(template)),
            Surface::Publish => format!("http://{}{}", s.server.publish, concrete(template)),
            Surface::Proxy => format!("http://{}{}", s.server.proxy, concrete(template)),
            Surface::Kube => s.kube(&concrete(template)),
        };
        for method in METHODS {
            let declared = ROUTES
                .iter()
                .any(|(sf, m, p)| sf == surface && *m == method && p == template);
            let body = (method == "PUT" || method == "POST").then_some(&b"{}"[..]);
            let r = s
                .send(
                    Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET),
                    &url,
                    body,
                    None,
                )
                .await;
            let miss = is_route_miss(r.status, &r.json());
            if r.status == 405 {
                let allow = r
                    .headers
                    .get("allow")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let expected: Vec<&str> = ROUTES
                    .iter()
                    .filter(|(sf, _, p)| sf == surface && p == template)
                    .map(|(_, m, _)| *m)
                    .collect();
                assert_eq!(
                    allow,
                    expected.join(", "),
                    "405 on {method} {url} must list the allowed methods"
                );
            }
            assert_eq!(
                !miss,
                declared,
                "{method} {url} ({surface:?}) answered {} {}",
                r.status,
                r.text()
            );
        }
    }
}

#[test]
fn the_gateway_spec_states_the_models_url_pattern() {
    let doc: Value = serde_yaml_ng::from_str(specs::GATEWAY).unwrap_or_else(|e| panic!("{e}"));
    let url = &doc["components"]["schemas"]["Url"];
    assert_eq!(url["pattern"], ace_model::registry::URL_PATTERN);
    assert_eq!(url["minLength"], *ace_model::registry::URL_LENGTH.start());
    assert_eq!(url["maxLength"], *ace_model::registry::URL_LENGTH.end());
}

/// Every `$ref` inside a spec names something the spec has: a dangling one makes tools skip
/// that part of the schema (schemathesis only warns), so what it describes goes unchecked.
#[test]
fn every_reference_within_a_spec_resolves() {
    fn refs<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("$ref", Value::String(target)) => out.push(target),
                        _ => refs(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let specs = [
        ("connector", specs::CONNECTOR),
        ("gateway", specs::GATEWAY),
        ("admin", specs::ADMIN),
        ("kubernetes", specs::KUBERNETES),
        ("publish", specs::PUBLISH),
        ("proxy", include_str!("../../../../specs/proxy.yaml")),
    ];
    let mut dangling = Vec::new();
    let mut seen = 0;
    for (name, spec) in specs {
        let doc: Value = serde_yaml_ng::from_str(spec)
            .unwrap_or_else(|e| panic!("{name} spec does not parse: {e}"));
        let mut found = Vec::new();
        refs(&doc, &mut found);
        for target in found {
            let Some(pointer) = target.strip_prefix('#') else {
                continue;
            };
            seen += 1;
            if doc.pointer(pointer).is_none() {
                dangling.push(format!("{name}: {target}"));
            }
        }
    }
    assert!(
        seen > 20,
        "only {seen} references found: the walk is broken"
    );
    assert!(dangling.is_empty(), "dangling references: {dangling:?}");
}
