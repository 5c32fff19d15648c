//! The admin API's handlers: Remote Environments, mappings, the catalog, provisioning and
//! binding (ACE's stand-in for `kubectl` on the CRDs).

use serde_json::{Value, json};

use crate::connector::TokenDigest;
use crate::names;
use crate::record::Record;
use crate::registry::{self};
use crate::time::Timestamp;

use super::*;

impl Model {
    /// Removes the instances of a service that goes away, and their EventActivations.
    pub(super) fn deprovision_instances_of(&mut self, now: Timestamp, re: &str, service_id: &str) {
        let doomed: Vec<(String, String)> = self
            .state
            .instances
            .iter()
            .filter(|(_, i)| i.re == re && (service_id.is_empty() || i.service_id == service_id))
            .map(|(k, _)| k.clone())
            .collect();
        for (namespace, name) in doomed {
            self.deprovision(now, &namespace, &name);
        }
    }

    pub(super) fn deprovision(&mut self, now: Timestamp, namespace: &str, name: &str) -> bool {
        let key = (namespace.to_owned(), name.to_owned());
        let Some(instance) = self.state.instances.get(&key).cloned() else {
            return false;
        };
        let bindings: Vec<String> = self
            .state
            .bindings
            .iter()
            .filter(|((ns, _), (inst, _))| ns == namespace && inst == name)
            .map(|((_, b), _)| b.clone())
            .collect();
        for binding in bindings {
            self.commit(Record::BindingDeleted {
                namespace: namespace.to_owned(),
                name: binding,
            });
        }
        self.commit(Record::InstanceDeprovisioned {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        });
        self.with_bus(now, |bus, fx| {
            bus.delete_activation(fx, namespace, &instance.service_id)
        });
        true
    }

    pub(super) fn admin(
        &mut self,
        now: Timestamp,
        req: AdminRequest,
    ) -> Result<Reply, RequestError> {
        let invalid = |kind: &'static str, name: &str| {
            names::dns1123_label_problem(name).map(|problem| {
                RequestError::Admin(AdminError::InvalidName {
                    kind,
                    name: name.to_owned(),
                    problem,
                })
            })
        };
        let not_found = |kind: &'static str, name: &str| {
            RequestError::Admin(AdminError::NotFound {
                kind,
                name: name.to_owned(),
            })
        };
        match req {
            AdminRequest::ApplyRemoteEnvironment {
                name,
                description,
                labels,
                skip_verify,
            } => {
                if let Some(e) = invalid("RemoteEnvironment", &name) {
                    return Err(e);
                }
                let status = match self.state.remote_environment(&name) {
                    None => {
                        let incarnation = self.state.last_incarnation + 1;
                        self.commit(Record::RemoteEnvironmentCreated {
                            name: name.clone(),
                            incarnation,
                            description,
                            labels,
                            skip_verify,
                        });
                        201
                    }
                    Some(re)
                        if re.description == description
                            && re.labels == labels
                            && re.skip_verify == skip_verify =>
                    {
                        200
                    }
                    Some(_) => {
                        self.commit(Record::RemoteEnvironmentUpdated {
                            name: name.clone(),
                            description,
                            labels,
                            skip_verify,
                        });
                        200
                    }
                };
                let body = self
                    .state
                    .remote_environment(&name)
                    .map(|re| re.to_resource(&self.config))
                    .unwrap_or(Value::Null);
                Ok(Reply::Resource { status, body })
            }
            AdminRequest::DeleteRemoteEnvironment { name } => {
                if self.state.remote_environment(&name).is_none() {
                    return Err(not_found("RemoteEnvironment", &name));
                }
                self.deprovision_instances_of(now, &name, "");
                self.commit(Record::RemoteEnvironmentDeleted { name });
                Ok(Reply::NoContent)
            }
            AdminRequest::GetRemoteEnvironment { name } => self
                .state
                .remote_environment(&name)
                .map(|re| Reply::Resource {
                    status: 200,
                    body: re.to_resource(&self.config),
                })
                .ok_or_else(|| not_found("RemoteEnvironment", &name)),
            AdminRequest::ListRemoteEnvironments => Ok(Reply::Resource {
                status: 200,
                body: Value::Array(
                    self.state
                        .remote_environments()
                        .map(|re| re.to_resource(&self.config))
                        .collect(),
                ),
            }),
            AdminRequest::ApplyMapping { namespace, re } => {
                if let Some(e) =
                    invalid("namespace", &namespace).or_else(|| invalid("RemoteEnvironment", &re))
                {
                    return Err(e);
                }
                let status = if self.state.is_mapped(&namespace, &re) {
                    200
                } else {
                    self.commit(Record::MappingCreated {
                        namespace: namespace.clone(),
                        re: re.clone(),
                    });
                    201
                };
                Ok(Reply::Resource {
                    status,
                    body: mapping_resource(&namespace, &re),
                })
            }
            AdminRequest::DeleteMapping { namespace, re } => {
                if !self.state.is_mapped(&namespace, &re) {
                    return Err(not_found(
                        "EnvironmentMapping",
                        &format!("{namespace}/{re}"),
                    ));
                }
                self.commit(Record::MappingDeleted { namespace, re });
                Ok(Reply::NoContent)
            }
            AdminRequest::ListMappings { namespace } => Ok(Reply::Resource {
                status: 200,
                body: Value::Array(
                    self.state
                        .mappings
                        .iter()
                        .filter(|(ns, _)| namespace.as_ref().is_none_or(|n| n == ns))
                        .map(|(ns, re)| mapping_resource(ns, re))
                        .collect(),
                ),
            }),
            AdminRequest::Catalog { namespace } => Ok(Reply::Resource {
                status: 200,
                body: Value::Array(self.state.catalog(&namespace, &self.config)),
            }),
            AdminRequest::Provision {
                namespace,
                name,
                class,
            } => {
                if let Some(e) =
                    invalid("namespace", &namespace).or_else(|| invalid("ServiceInstance", &name))
                {
                    return Err(e);
                }
                let (re, service) = self
                    .state
                    .find_class(&namespace, &class)
                    .map(|(re, s)| (re.name.clone(), s.clone()))
                    .ok_or_else(|| {
                        RequestError::Admin(AdminError::ClassNotAvailable {
                            namespace: namespace.clone(),
                            class: class.clone(),
                        })
                    })?;
                let body = json!({
                    "kind": "ServiceInstance",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {"serviceClassName": names::resource_name(&re, &service.id),
                             "serviceClassExternalName": names::service_entry_name(&service.name, &service.id)},
                });
                let key = (namespace.clone(), name.clone());
                match self.state.instances.get(&key) {
                    Some(i) if i.re == re && i.service_id == service.id => {
                        return Ok(Reply::Resource { status: 200, body });
                    }
                    Some(_) => {
                        return Err(RequestError::Admin(AdminError::InstanceConflict {
                            namespace,
                            name,
                        }));
                    }
                    None => {}
                }
                self.commit(Record::InstanceProvisioned {
                    namespace: namespace.clone(),
                    name,
                    re: re.clone(),
                    service_id: service.id.clone(),
                });
                if service.events.is_some() {
                    self.with_bus(now, |bus, fx| {
                        bus.create_activation(fx, &namespace, &service.id, &re, &service.name)
                    });
                }
                Ok(Reply::Resource { status: 201, body })
            }
            AdminRequest::Bind {
                namespace,
                name,
                instance,
            } => {
                if let Some(e) =
                    invalid("namespace", &namespace).or_else(|| invalid("ServiceBinding", &name))
                {
                    return Err(e);
                }
                let inst = self
                    .state
                    .instances
                    .get(&(namespace.clone(), instance.clone()))
                    .cloned()
                    .ok_or_else(|| {
                        not_found("ServiceInstance", &format!("{namespace}/{instance}"))
                    })?;
                let service = self
                    .state
                    .remote_environment(&inst.re)
                    .and_then(|re| re.service(&inst.service_id))
                    .filter(|s| s.api.is_some())
                    .ok_or_else(|| {
                        RequestError::Admin(AdminError::NotBindable {
                            namespace: namespace.clone(),
                            instance: instance.clone(),
                        })
                    })?;
                let gateway_url =
                    registry::gateway_url(&self.config.registry, &inst.re, &service.id);
                let existed = self
                    .state
                    .bindings
                    .contains_key(&(namespace.clone(), name.clone()));
                // Unique among the bindings' keys, even if the random numbers repeat.
                let key = loop {
                    let key = self.rng.token(32);
                    let digest = TokenDigest::of(&key);
                    if !self.state.bindings.values().any(|(_, k)| *k == digest) {
                        break key;
                    }
                };
                self.commit(Record::BindingCreated {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    instance: instance.clone(),
                    key: TokenDigest::of(&key),
                });
                Ok(Reply::Resource {
                    status: if existed { 200 } else { 201 },
                    body: json!({
                        "kind": "ServiceBinding",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": {"instanceRef": {"name": instance}},
                        "credentials": {"GATEWAY_URL": gateway_url, "ACCESS_KEY": key},
                    }),
                })
            }
            AdminRequest::Unbind { namespace, name } => {
                if !self
                    .state
                    .bindings
                    .contains_key(&(namespace.clone(), name.clone()))
                {
                    return Err(not_found("ServiceBinding", &format!("{namespace}/{name}")));
                }
                self.commit(Record::BindingDeleted { namespace, name });
                Ok(Reply::NoContent)
            }
            AdminRequest::Deprovision { namespace, name } => {
                if self.deprovision(now, &namespace, &name) {
                    Ok(Reply::NoContent)
                } else {
                    Err(not_found("ServiceInstance", &format!("{namespace}/{name}")))
                }
            }
        }
    }
}

fn mapping_resource(namespace: &str, re: &str) -> Value {
    json!({
        "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
        "kind": "EnvironmentMapping",
        "metadata": {"name": re, "namespace": namespace},
    })
}
