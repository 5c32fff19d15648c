//! The Kubernetes resource API's handlers: each kind read through its own state and written
//! through its own requests (the same checks as ACE's admin API), with what Kubernetes keeps
//! about every object recorded beside it (see [`crate::kube`]).

use serde_json::{Value, json};

use crate::bus::{BusReply, BusRequest};
use crate::kube::{self, Kind, KindInfo, KubeError, KubeRequest, ObjectKey, ObjectMeta, WriteMode};
use crate::names;
use crate::record::Record;
use crate::time::Timestamp;

use super::*;

impl Model {
    pub(super) fn kube(
        &mut self,
        now: Timestamp,
        req: KubeRequest,
    ) -> Result<Reply, Box<KubeError>> {
        let resource = |body| Reply::Resource { status: 200, body };
        match req {
            KubeRequest::Get {
                kind,
                namespace,
                name,
                table,
            } => {
                let key = ObjectKey::new(kind, &namespace, &name);
                let object = self
                    .kube_object(now, &key)
                    .ok_or_else(|| KubeError::not_found(&kind.info(), &key.name))?;
                Ok(resource(if table {
                    kube::table(kind, &[object], self.state.kube.revision, now)
                } else {
                    object
                }))
            }
            KubeRequest::List {
                kind,
                namespace,
                table,
            } => {
                let objects = self.kube_list(now, kind, namespace.as_deref());
                let revision = self.state.kube.revision;
                Ok(resource(if table {
                    kube::table(kind, &objects, revision, now)
                } else {
                    let info = kind.info();
                    json!({
                        "apiVersion": info.api_version(),
                        "kind": format!("{}List", info.kind),
                        "metadata": {"resourceVersion": revision.to_string()},
                        "items": objects,
                    })
                }))
            }
            KubeRequest::Write {
                kind,
                namespace,
                name,
                mode,
                body,
            } => self.kube_write(now, kind, namespace, name, mode, &body),
            KubeRequest::Delete {
                kind,
                namespace,
                name,
            } => {
                let info = kind.info();
                if info.read_only {
                    return Err(Box::new(KubeError::method_not_allowed(info.plural)));
                }
                let key = ObjectKey::new(kind, &namespace, &name);
                let object = self
                    .kube_object(now, &key)
                    .ok_or_else(|| KubeError::not_found(&info, &key.name))?;
                let (ns, name) = (key.namespace.clone(), key.name.clone());
                let request = match kind {
                    Kind::RemoteEnvironment => {
                        Request::Admin(AdminRequest::DeleteRemoteEnvironment { name })
                    }
                    Kind::EnvironmentMapping => Request::Admin(AdminRequest::DeleteMapping {
                        namespace: ns,
                        re: name,
                    }),
                    Kind::EventActivation => Request::Bus(BusRequest::DeleteActivation {
                        namespace: ns,
                        name,
                    }),
                    Kind::Subscription => Request::Bus(BusRequest::DeleteSubscription {
                        namespace: ns,
                        name,
                    }),
                    Kind::ServiceInstance => Request::Admin(AdminRequest::Deprovision {
                        namespace: ns,
                        name,
                    }),
                    Kind::ServiceBinding => Request::Admin(AdminRequest::Unbind {
                        namespace: ns,
                        name,
                    }),
                    Kind::ServiceClass => {
                        return Err(Box::new(KubeError::method_not_allowed(info.plural)));
                    }
                };
                self.underlying(now, &info, &key.name, request)?;
                let uid = object
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                Ok(resource(kube::deleted(&info, &key.name, uid)))
            }
        }
    }

    /// Sends a request of ACE's own API and turns a refusal into a `Status`.
    fn underlying(
        &mut self,
        now: Timestamp,
        info: &KindInfo,
        name: &str,
        request: Request,
    ) -> Result<Reply, Box<KubeError>> {
        let reply = self.handle_request(now, request);
        let status = reply.status();
        if status < 400 {
            return Ok(reply);
        }
        let body = reply.body().unwrap_or(Value::Null);
        let message = ["error", "message"]
            .iter()
            .find_map(|k| body.get(*k).and_then(Value::as_str))
            .map_or_else(|| body.to_string(), str::to_owned);
        Err(match status {
            400 | 422 => KubeError::invalid(info, name, "spec", &message),
            404 => KubeError::new(404, "NotFound", message),
            409 => KubeError::new(409, "Conflict", message),
            413 => KubeError::new(413, "RequestEntityTooLarge", message),
            503 => KubeError::new(503, "ServiceUnavailable", message),
            code => KubeError::new(code, "InternalError", message),
        }
        .into())
    }

    /// One object as the Kubernetes API shows it, if it exists.
    pub(super) fn kube_object(&mut self, now: Timestamp, key: &ObjectKey) -> Option<Value> {
        let (ns, name) = (key.namespace.as_str(), key.name.as_str());
        let object = match key.kind {
            Kind::RemoteEnvironment => self
                .state
                .remote_environment(name)
                .map(|re| re.to_resource(&self.config)),
            Kind::EnvironmentMapping => self
                .state
                .is_mapped(ns, name)
                .then(|| json!({"metadata": {"name": name, "namespace": ns}})),
            Kind::EventActivation => self.bus_object(
                now,
                BusRequest::GetActivation {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                },
            ),
            Kind::Subscription => self.bus_object(
                now,
                BusRequest::GetSubscription {
                    namespace: ns.to_owned(),
                    name: name.to_owned(),
                },
            ),
            Kind::ServiceInstance => self.instance_object(ns, name),
            Kind::ServiceBinding => self
                .state
                .bindings
                .get(&(ns.to_owned(), name.to_owned()))
                .map(|(instance, _)| json!({"spec": {"instanceRef": {"name": instance}}})),
            Kind::ServiceClass => self
                .kube_list(now, Kind::ServiceClass, Some(ns))
                .into_iter()
                .find(|o| o.pointer("/metadata/name").and_then(Value::as_str) == Some(name)),
        }?;
        if key.kind == Kind::ServiceClass {
            return Some(object);
        }
        Some(kube::decorate(
            key,
            object,
            self.state.kube.objects.get(key),
        ))
    }

    fn bus_object(&mut self, now: Timestamp, request: BusRequest) -> Option<Value> {
        let reply = self.with_bus(now, |bus, fx| bus.handle(fx, request));
        (reply.status() == 200).then(|| reply.body()).flatten()
    }

    fn instance_object(&self, namespace: &str, name: &str) -> Option<Value> {
        let instance = self
            .state
            .instances
            .get(&(namespace.to_owned(), name.to_owned()))?;
        let service = self
            .state
            .remote_environment(&instance.re)
            .and_then(|re| re.service(&instance.service_id));
        Some(json!({"spec": {
            "serviceClassExternalName": service
                .map(|s| names::service_entry_name(&s.name, &s.id)),
            "serviceClassName": names::resource_name(&instance.re, &instance.service_id),
        }}))
    }

    /// Every object of `kind` in `namespace` (or in all), as the Kubernetes API shows them.
    pub(super) fn kube_list(
        &mut self,
        now: Timestamp,
        kind: Kind,
        namespace: Option<&str>,
    ) -> Vec<Value> {
        let in_ns = |ns: &str| namespace.is_none_or(|n| n == ns);
        let keys: Vec<(String, String)> = match kind {
            Kind::RemoteEnvironment => self
                .state
                .remote_environments()
                .map(|re| (String::new(), re.name.clone()))
                .collect(),
            Kind::EnvironmentMapping => self
                .state
                .mappings
                .iter()
                .filter(|(ns, _)| in_ns(ns))
                .cloned()
                .collect(),
            Kind::EventActivation | Kind::Subscription => {
                let namespace = namespace.map(str::to_owned);
                let request = if kind == Kind::EventActivation {
                    BusRequest::ListActivations { namespace }
                } else {
                    BusRequest::ListSubscriptions { namespace }
                };
                let reply = self.with_bus(now, |bus, fx| bus.handle(fx, request));
                let items = match reply {
                    BusReply::Resource { body, .. } => body,
                    other => other.body().unwrap_or(Value::Null),
                };
                // The listed objects are the objects: decorated as they are, not read again.
                let Value::Array(items) = items else {
                    return Vec::new();
                };
                return items
                    .into_iter()
                    .filter_map(|o| {
                        let ns = o.pointer("/metadata/namespace")?.as_str()?;
                        let name = o.pointer("/metadata/name")?.as_str()?;
                        let key = ObjectKey::new(kind, ns, name);
                        let meta = self.state.kube.objects.get(&key);
                        Some(kube::decorate(&key, o, meta))
                    })
                    .collect();
            }
            Kind::ServiceInstance => self
                .state
                .instances
                .keys()
                .filter(|(ns, _)| in_ns(ns))
                .cloned()
                .collect(),
            Kind::ServiceBinding => self
                .state
                .bindings
                .keys()
                .filter(|(ns, _)| in_ns(ns))
                .cloned()
                .collect(),
            Kind::ServiceClass => {
                let namespaces: Vec<String> = match namespace {
                    Some(ns) => vec![ns.to_owned()],
                    None => {
                        let mut all: Vec<String> = self
                            .state
                            .mappings
                            .iter()
                            .map(|(ns, _)| ns.clone())
                            .collect();
                        all.dedup();
                        all
                    }
                };
                let info = kind.info();
                return namespaces
                    .iter()
                    .flat_map(|ns| {
                        self.state.catalog(ns, &self.config).into_iter().map(move |class| {
                            let id = class.get("id").cloned().unwrap_or(Value::Null);
                            json!({
                                "apiVersion": info.api_version(),
                                "kind": info.kind,
                                "metadata": {"name": id, "namespace": ns, "creationTimestamp": null},
                                "spec": class,
                            })
                        })
                    })
                    .collect();
            }
        };
        keys.into_iter()
            .filter_map(|(namespace, name)| {
                self.kube_object(now, &ObjectKey::new(kind, &namespace, &name))
            })
            .collect()
    }

    fn kube_write(
        &mut self,
        now: Timestamp,
        kind: Kind,
        namespace: String,
        path_name: Option<String>,
        mode: WriteMode,
        body: &[u8],
    ) -> Result<Reply, Box<KubeError>> {
        let info = kind.info();
        if info.read_only {
            return Err(Box::new(KubeError::method_not_allowed(info.plural)));
        }
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| KubeError::bad_request(format!("the body is not valid JSON: {e}")))?;
        if !doc.is_object() {
            return Err(Box::new(KubeError::bad_request(
                "the body must be a JSON object",
            )));
        }
        let patch = matches!(mode, WriteMode::MergePatch | WriteMode::Apply);
        for (field, expected) in [
            ("apiVersion", info.api_version()),
            ("kind", info.kind.to_owned()),
        ] {
            match doc.get(field) {
                None | Some(Value::Null) if patch => {}
                Some(Value::String(s)) if *s == expected => {}
                other => {
                    return Err(Box::new(KubeError::bad_request(format!(
                        "{field} must be {expected}, not {}",
                        other.map_or_else(|| "missing".to_owned(), Value::to_string)
                    ))));
                }
            }
        }
        let body_name = doc.pointer("/metadata/name").and_then(Value::as_str);
        let name = match (&path_name, body_name) {
            (Some(path), Some(body)) if path != body => {
                return Err(Box::new(KubeError::bad_request(format!(
                    "the name of the object ({body}) does not match the name on the URL ({path})"
                ))));
            }
            (Some(path), _) => path.clone(),
            (None, Some(body)) => body.to_owned(),
            (None, None) => {
                return Err(Box::new(KubeError::invalid(
                    &info,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                )));
            }
        };
        if let Some(ns) = doc.pointer("/metadata/namespace").and_then(Value::as_str)
            && info.namespaced
            && ns != namespace
        {
            return Err(Box::new(KubeError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            )));
        }
        if let Some(problem) = names::dns1123_subdomain_problem(&name) {
            return Err(Box::new(KubeError::invalid(
                &info,
                &name,
                "metadata.name",
                &format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain {problem}"),
            )));
        }
        if info.namespaced
            && let Some(problem) = names::dns1123_label_problem(&namespace)
        {
            return Err(Box::new(KubeError::invalid(
                &info,
                &name,
                "metadata.namespace",
                &format!("Invalid value: {namespace:?}: a lowercase RFC 1123 label {problem}"),
            )));
        }
        let key = ObjectKey::new(kind, &namespace, &name);
        let current = self.kube_object(now, &key);
        let current_version = current
            .as_ref()
            .and_then(|c| c.pointer("/metadata/resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        if let Some(sent) = doc
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            && current.is_some()
            && mode != WriteMode::Create
            && Some(sent) != current_version.as_deref()
        {
            return Err(Box::new(KubeError::conflict(&info, &name)));
        }
        let desired = match (mode, &current) {
            (WriteMode::Create, Some(_)) => {
                return Err(Box::new(KubeError::already_exists(&info, &name)));
            }
            (WriteMode::Replace | WriteMode::MergePatch, None) => {
                return Err(Box::new(KubeError::not_found(&info, &name)));
            }
            (WriteMode::Create | WriteMode::Apply, None) | (WriteMode::Replace, Some(_)) => doc,
            (WriteMode::MergePatch | WriteMode::Apply, Some(current)) => {
                let mut merged = current.clone();
                kube::merge_patch(&mut merged, &doc);
                merged
            }
        };
        let labels = kube::string_map(&desired, "labels")
            .map_err(|e| KubeError::invalid(&info, &name, "metadata.labels", &e))?;
        let annotations = kube::string_map(&desired, "annotations")
            .map_err(|e| KubeError::invalid(&info, &name, "metadata.annotations", &e))?;
        let spec_before = current.as_ref().map(|c| c.get("spec").cloned());
        // A binding whose instance is unchanged keeps its key: re-applying it is no change.
        let unchanged_binding = kind == Kind::ServiceBinding
            && spec_before.as_ref().is_some_and(|before| {
                before.as_ref().and_then(|s| s.pointer("/instanceRef/name"))
                    == desired.pointer("/spec/instanceRef/name")
            });
        let mut credentials = None;
        if !unchanged_binding {
            let request = self.kube_document(kind, &namespace, &name, &desired, &info)?;
            let reply = self.underlying(now, &info, &name, request)?;
            credentials = reply.body().and_then(|b| b.get("credentials").cloned());
        }
        let mut object = self
            .kube_object(now, &key)
            .ok_or_else(|| KubeError::not_found(&info, &name))?;
        let old = self.state.kube.objects.get(&key).cloned();
        let spec_changed = spec_before != Some(object.get("spec").cloned());
        let meta = ObjectMeta {
            uid: match (&old, &current) {
                (Some(old), Some(_)) => old.uid.clone(),
                (None, Some(c)) => c
                    .pointer("/metadata/uid")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                (_, None) => self.rng.uuid_v4(),
            },
            resource_version: old.as_ref().map_or(0, |o| o.resource_version),
            generation: match (&old, current.is_some()) {
                (Some(old), true) => old.generation + u64::from(spec_changed),
                (None, true) => 1 + u64::from(spec_changed),
                (_, false) => 1,
            },
            created: match (&old, current.is_some()) {
                (Some(old), true) => old.created,
                _ => now,
            },
            labels,
            annotations,
        };
        if old.as_ref() != Some(&meta) || credentials.is_some() {
            let meta = ObjectMeta {
                resource_version: self.state.kube.revision + 1,
                ..meta
            };
            self.commit(Record::ObjectMeta {
                key: key.clone(),
                meta: Some(meta),
            });
            object = self
                .kube_object(now, &key)
                .ok_or_else(|| KubeError::not_found(&info, &name))?;
        }
        if let Some(credentials) = credentials
            && let Value::Object(o) = &mut object
        {
            // The proxy's access key is shown once, in the answer that made it.
            o.insert("status".into(), json!({"credentials": credentials}));
        }
        Ok(Reply::Resource {
            status: if current.is_some() { 200 } else { 201 },
            body: object,
        })
    }

    /// The request of ACE's own API that writes `desired`.
    fn kube_document(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        desired: &Value,
        info: &KindInfo,
    ) -> Result<Request, Box<KubeError>> {
        let document = match kind {
            Kind::RemoteEnvironment => crate::documents::DocumentKind::RemoteEnvironment,
            Kind::EnvironmentMapping => {
                return Ok(Request::Admin(AdminRequest::ApplyMapping {
                    namespace: namespace.to_owned(),
                    re: name.to_owned(),
                }));
            }
            Kind::EventActivation => crate::documents::DocumentKind::EventActivation,
            Kind::Subscription => crate::documents::DocumentKind::Subscription,
            Kind::ServiceInstance => crate::documents::DocumentKind::ServiceInstance,
            Kind::ServiceBinding => crate::documents::DocumentKind::ServiceBinding,
            Kind::ServiceClass => return Err(Box::new(KubeError::method_not_allowed(info.plural))),
        };
        let body = serde_json::to_vec(desired).unwrap_or_default();
        crate::documents::request(document, namespace, name, &body)
            .map_err(|e| KubeError::invalid(info, name, "spec", &e.error).into())
    }
}
