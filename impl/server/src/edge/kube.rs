//! The Kubernetes resource API on the admin listener, for the real `kubectl`: discovery, the
//! OpenAPI stub kubectl needs before it writes, the CRDs (read-only), and the kinds' objects
//! under `/apis/{group}/{version}/...`. The router only reads paths, headers and bodies;
//! every decision (existence, resourceVersion, validation, tables) is the model's
//! ([`ace_model::kube`]).

use ace_model::Request;
use ace_model::kube::{Kind, KubeError, KubeRequest, WriteMode};
use ace_model::limits::BodyKind;
use bytes::Bytes;
use hyper::Method;
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE};
use serde_json::{Value, json};

use super::App;
use super::reply::{self, Response, respond};
use crate::specs;

const CRD_GROUP: &str = "apiextensions.k8s.io";

/// Whether `segs` is a path of this API.
pub fn owns(segs: &[&str]) -> bool {
    matches!(segs.first(), Some(&"apis"))
        || matches!(
            segs,
            ["openapi", "v2"] | ["openapi", "v3", ..] | ["api", "v1", "namespaces", _]
        )
}

fn status(e: &KubeError) -> Response {
    reply::json(e.code, "application/json", &e.to_status())
}

fn ok(body: &Value) -> Response {
    reply::json(200, "application/json", body)
}

/// Every group this API serves, with its one version.
fn groups() -> Vec<(&'static str, &'static str)> {
    let mut groups: Vec<(&str, &str)> = Vec::new();
    for kind in Kind::ALL {
        let i = kind.info();
        if !groups.contains(&(i.group, i.version)) {
            groups.push((i.group, i.version));
        }
    }
    groups.push((CRD_GROUP, "v1"));
    groups
}

fn group_json(group: &str, version: &str) -> Value {
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv], "preferredVersion": gv})
}

fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<Value> = if group == CRD_GROUP && version == "v1" {
        vec![json!({
            "name": "customresourcedefinitions", "singularName": "customresourcedefinition",
            "namespaced": false, "kind": "CustomResourceDefinition",
            "verbs": ["get", "list"], "shortNames": ["crd", "crds"],
        })]
    } else {
        Kind::of_group_version(group, version)
            .map(|k| {
                let i = k.info();
                let verbs: &[&str] = if i.read_only {
                    &["get", "list"]
                } else {
                    &["create", "delete", "get", "list", "patch", "update"]
                };
                json!({
                    "name": i.plural, "singularName": i.singular, "namespaced": i.namespaced,
                    "kind": i.kind, "verbs": verbs, "shortNames": i.short_names,
                })
            })
            .collect()
    };
    (!resources.is_empty()).then(|| {
        json!({"kind": "APIResourceList", "apiVersion": "v1",
               "groupVersion": format!("{group}/{version}"), "resources": resources})
    })
}

/// A kind's JSON Schema from `specs/schemas/` (without the JSON Schema keywords OpenAPI
/// does not have), if it has one.
fn kind_schema(plural: &str) -> Option<Value> {
    let (_, schema) = specs::CRD_SCHEMAS.iter().find(|(p, _)| *p == plural)?;
    let mut schema: Value = serde_json::from_str(schema).ok()?;
    if let Value::Object(s) = &mut schema {
        s.remove("$schema");
        s.remove("$id");
    }
    Some(schema)
}

/// `io.k8s`-style schema name: the group reversed, the version, the kind.
fn schema_name(info: &ace_model::kube::KindInfo) -> String {
    let mut group: Vec<&str> = info.group.split('.').collect();
    group.reverse();
    format!("{}.{}.{}", group.join("."), info.version, info.kind)
}

/// `GET /openapi/v3/apis/{group}/{version}`: the kinds' schemas (`kubectl explain`), and
/// their paths with the query parameters kubectl looks for: `fieldValidation` on writes
/// (kubectl then leaves validation to the server) and, for patches, only the merge and
/// apply patch types (kubectl then sends merge patches, never strategic ones).
fn openapi_v3(group: &str, version: &str) -> Option<Value> {
    let kinds: Vec<Kind> = Kind::of_group_version(group, version).collect();
    if kinds.is_empty() {
        return None;
    }
    let mut schemas = serde_json::Map::new();
    let mut paths = serde_json::Map::new();
    for kind in kinds {
        let info = kind.info();
        let gvk = json!({"group": info.group, "version": info.version, "kind": info.kind});
        let mut schema = kind_schema(info.plural).unwrap_or_else(|| json!({"type": "object"}));
        schema["x-kubernetes-group-version-kind"] = json!([gvk]);
        schema["x-kubernetes-preserve-unknown-fields"] = json!(true);
        let name = schema_name(&info);
        schemas.insert(name.clone(), schema);
        let object = json!({"schema": {"$ref": format!("#/components/schemas/{name}")}});
        let ok = json!({"200": {"description": "OK", "content": {"application/json": object}}});
        let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}});
        let write_params = json!([
            query("fieldValidation"),
            query("fieldManager"),
            query("dryRun")
        ]);
        let op = |action: &str, params: &Value, body: Option<Value>| {
            let mut op = json!({
                "parameters": params, "responses": ok,
                "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk,
            });
            if let Some(body) = body {
                op["requestBody"] = json!({"content": body});
            }
            op
        };
        let base = if info.namespaced {
            format!(
                "/apis/{group}/{version}/namespaces/{{namespace}}/{}",
                info.plural
            )
        } else {
            format!("/apis/{group}/{version}/{}", info.plural)
        };
        let json_body = json!({"application/json": object});
        let patch_body =
            json!({"application/merge-patch+json": object, "application/apply-patch+yaml": object});
        let mut collection = json!({"get": op("list", &json!([]), None)});
        let mut item = json!({"get": op("get", &json!([]), None)});
        if !info.read_only {
            collection["post"] = op("post", &write_params, Some(json_body.clone()));
            item["put"] = op("put", &write_params, Some(json_body));
            item["patch"] = op("patch", &write_params, Some(patch_body));
            item["delete"] = op("delete", &json!([]), None);
        }
        paths.insert(format!("{base}/{{name}}"), item);
        paths.insert(base, collection);
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "ACE", "version": env!("CARGO_PKG_VERSION")},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

/// `GET /openapi/v3`: where each group version's document is, with a hash of it (kubectl
/// caches documents by it).
fn openapi_v3_index() -> Value {
    use sha2::Digest as _;
    let paths: serde_json::Map<String, Value> = groups()
        .into_iter()
        .filter_map(|(g, v)| {
            let doc = openapi_v3(g, v)?;
            let hash: String = sha2::Sha256::digest(doc.to_string())
                .iter()
                .take(16)
                .map(|b| format!("{b:02X}"))
                .collect();
            Some((
                format!("apis/{g}/{v}"),
                json!({"serverRelativeURL": format!("/openapi/v3/apis/{g}/{v}?hash={hash}")}),
            ))
        })
        .collect();
    json!({"paths": paths})
}

/// The CRD of one of ACE's kinds, its schema from `specs/schemas/`.
fn crd(plural: &str) -> Option<Value> {
    let schema = kind_schema(plural)?;
    let info = Kind::ALL
        .into_iter()
        .map(Kind::info)
        .find(|i| i.plural == plural)?;
    let name = format!("{}.{}", info.plural, info.group);
    let names = json!({"plural": info.plural, "singular": info.singular, "kind": info.kind,
                       "listKind": format!("{}List", info.kind), "shortNames": info.short_names});
    Some(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": name, "uid": format!("crd-{}", info.plural), "resourceVersion": "1",
                     "generation": 1, "creationTimestamp": null},
        "spec": {
            "group": info.group,
            "names": names,
            "scope": if info.namespaced { "Namespaced" } else { "Cluster" },
            "versions": [{"name": info.version, "served": true, "storage": true,
                          "schema": {"openAPIV3Schema": schema}}],
        },
        "status": {
            "acceptedNames": names,
            "storedVersions": [info.version],
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                 "message": "no conflicts found", "lastTransitionTime": null},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                 "message": "the initial names have been accepted", "lastTransitionTime": null},
            ],
        },
    }))
}

fn crds(segs: &[&str]) -> Response {
    match segs {
        [] => {
            let items: Vec<Value> = specs::CRD_SCHEMAS
                .iter()
                .filter_map(|(plural, _)| crd(plural))
                .collect();
            ok(&json!({"apiVersion": "apiextensions.k8s.io/v1",
                       "kind": "CustomResourceDefinitionList",
                       "metadata": {"resourceVersion": "1"}, "items": items}))
        }
        [name] => match specs::CRD_SCHEMAS
            .iter()
            .filter_map(|(plural, _)| crd(plural))
            .find(|c| c.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
        {
            Some(c) => ok(&c),
            None => status(&KubeError {
                details: Some(json!({"name": name, "group": CRD_GROUP,
                                     "kind": "customresourcedefinitions"})),
                ..KubeError::new(
                    404,
                    "NotFound",
                    format!("customresourcedefinitions.{CRD_GROUP} \"{name}\" not found"),
                )
            }),
        },
        _ => status(&KubeError::no_such_path()),
    }
}

/// Serves one request of the Kubernetes API listener: the admin API's bearer token, then
/// [`route`]; nothing else is served there.
pub async fn serve(app: &App, req: hyper::Request<Incoming>) -> Response {
    if let Some(token) = &app.admin_token
        && !token.admits(req.headers())
    {
        return status(&KubeError::new(401, "Unauthorized", "Unauthorized"));
    }
    let path = req.uri().path().to_owned();
    let segs = super::routes::segments(&path);
    if owns(&segs) {
        route(app, req, &segs).await
    } else {
        status(&KubeError::no_such_path())
    }
}

/// Serves one request of the Kubernetes API (after authentication).
pub async fn route(app: &App, req: hyper::Request<Incoming>, segs: &[&str]) -> Response {
    let method = req.method().clone();
    let read_only = || status(&KubeError::method_not_allowed("this path"));
    match segs {
        ["api", "v1", "namespaces", ns] if method == Method::GET => {
            // Namespaces are implicit: every valid name exists (kubectl asks after a
            // NotFound in a namespace, to say which of the two is missing).
            return match ace_model::names::dns1123_label_problem(ns) {
                None => ok(&json!({
                    "apiVersion": "v1", "kind": "Namespace",
                    "metadata": {"name": ns, "creationTimestamp": null},
                    "spec": {}, "status": {"phase": "Active"},
                })),
                Some(_) => status(&KubeError::new(
                    404,
                    "NotFound",
                    format!("namespaces \"{ns}\" not found"),
                )),
            };
        }
        ["api", ..] => return read_only(),
        ["openapi", "v2"] if method == Method::GET => {
            // An empty protobuf document: kubectl reads it as "no schemas" and leaves
            // validation to the server.
            return respond(200, Some("application/octet-stream"), Bytes::new());
        }
        ["openapi", "v3"] if method == Method::GET => return ok(&openapi_v3_index()),
        ["openapi", "v3", "apis", group, version] if method == Method::GET => {
            return match openapi_v3(group, version) {
                Some(doc) => ok(&doc),
                None => status(&KubeError::no_such_path()),
            };
        }
        ["openapi", ..] => {
            return if method == Method::GET {
                status(&KubeError::no_such_path())
            } else {
                read_only()
            };
        }
        ["apis"] if method == Method::GET => {
            let groups: Vec<Value> = groups()
                .into_iter()
                .map(|(g, v)| group_json(g, v))
                .collect();
            return ok(&json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}));
        }
        ["apis", group] if method == Method::GET => {
            return match groups().into_iter().find(|(g, _)| g == group) {
                Some((g, v)) => {
                    let mut body = group_json(g, v);
                    body["kind"] = json!("APIGroup");
                    body["apiVersion"] = json!("v1");
                    ok(&body)
                }
                None => status(&KubeError::no_such_path()),
            };
        }
        ["apis", group, version] if method == Method::GET => {
            return match resource_list(group, version) {
                Some(list) => ok(&list),
                None => status(&KubeError::no_such_path()),
            };
        }
        ["apis"] | ["apis", _] | ["apis", _, _] => return read_only(),
        [
            "apis",
            CRD_GROUP,
            "v1",
            "customresourcedefinitions",
            rest @ ..,
        ] => {
            return if method == Method::GET {
                crds(rest)
            } else {
                read_only()
            };
        }
        _ => {}
    }
    let (kind, namespace, name, cluster_path) = match segs {
        ["apis", g, v, "namespaces", ns, plural, rest @ ..] if rest.len() <= 1 => {
            match Kind::by_path(g, v, plural).filter(|k| k.info().namespaced) {
                Some(kind) => (kind, Some(*ns), rest.first().copied(), false),
                None => return status(&KubeError::no_such_path()),
            }
        }
        ["apis", g, v, plural, rest @ ..] if rest.len() <= 1 => {
            match Kind::by_path(g, v, plural) {
                // A namespaced kind's cluster path lists every namespace; nothing else.
                Some(kind) if kind.info().namespaced && rest.is_empty() => (kind, None, None, true),
                Some(kind) if !kind.info().namespaced => {
                    (kind, Some(""), rest.first().copied(), false)
                }
                _ => return status(&KubeError::no_such_path()),
            }
        }
        _ => return status(&KubeError::no_such_path()),
    };
    if let Some(dry_run) = query_value(req.uri().query(), "dryRun")
        && !dry_run.is_empty()
    {
        return status(&KubeError::bad_request(
            "ACE does not offer dry runs (dryRun); the request was not carried out",
        ));
    }
    let table = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=Table"));
    let (namespace, name) = (namespace.map(str::to_owned), name.map(str::to_owned));
    let request = match (&method, name, cluster_path) {
        (&Method::GET, None, _) => KubeRequest::List {
            kind,
            namespace,
            table,
        },
        (&Method::GET, Some(name), _) => KubeRequest::Get {
            kind,
            namespace: namespace.unwrap_or_default(),
            name,
            table,
        },
        (&Method::DELETE, Some(name), _) => {
            // The body (delete options, `propagationPolicy`) changes nothing here.
            if let Err(r) = read(app, req).await {
                return r;
            }
            KubeRequest::Delete {
                kind,
                namespace: namespace.unwrap_or_default(),
                name,
            }
        }
        (&Method::POST, None, false) | (&Method::PUT | &Method::PATCH, Some(_), _) => {
            let name = match method {
                Method::POST => None,
                _ => segs.last().map(|s| (*s).to_owned()),
            };
            let content_type = req
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json")
                .to_ascii_lowercase();
            let mode = match method {
                Method::POST => WriteMode::Create,
                Method::PUT => WriteMode::Replace,
                _ if content_type.starts_with("application/merge-patch+json") => {
                    WriteMode::MergePatch
                }
                _ if content_type.starts_with("application/apply-patch+yaml") => WriteMode::Apply,
                _ => return status(&KubeError::unsupported_patch(&content_type)),
            };
            let body = match read(app, req).await {
                Ok(body) => body,
                Err(r) => return r,
            };
            let body = if content_type.contains("yaml") {
                match yaml_to_json(&body) {
                    Ok(json) => json,
                    Err(e) => return status(&KubeError::bad_request(e)),
                }
            } else {
                body.to_vec()
            };
            KubeRequest::Write {
                kind,
                namespace: namespace.unwrap_or_default(),
                name,
                mode,
                body,
            }
        }
        _ => return read_only_or_not_allowed(kind),
    };
    app.call(Request::Kube(request)).await
}

/// The body within the admin documents' limit; a refusal as a `Status`.
async fn read(app: &App, req: hyper::Request<Incoming>) -> Result<Bytes, Response> {
    app.read(req, BodyKind::Document).await.map_err(|r| {
        let code = r.status().as_u16();
        let reason = if code == 413 {
            "RequestEntityTooLarge"
        } else {
            "Timeout"
        };
        status(&KubeError::new(
            code,
            reason,
            format!(
                "the request body was refused ({}): too large, or not sent in time",
                r.status()
            ),
        ))
    })
}

fn read_only_or_not_allowed(kind: Kind) -> Response {
    let info = kind.info();
    let what = if info.read_only {
        info.plural
    } else {
        "this path"
    };
    status(&KubeError::method_not_allowed(what))
}

/// One query parameter's value, percent-decoding left out (the values read here are plain).
fn query_value<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A YAML body (server-side apply) as JSON.
fn yaml_to_json(body: &[u8]) -> Result<Vec<u8>, String> {
    let value: Value =
        serde_yaml_ng::from_slice(body).map_err(|e| format!("the body is not valid YAML: {e}"))?;
    serde_json::to_vec(&value).map_err(|e| e.to_string())
}
