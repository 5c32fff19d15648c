//! What the model knows, rebuilt exactly by replaying the records: Remote Environments and
//! their services, mappings, tokens, certificates, instances, bindings and the Event Bus; and
//! the decisions read straight from it (the gateway's certificate check, the proxy's table,
//! the catalog).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};

use crate::bugs::{Bugs, bug_on};
use crate::bus::EventBus;
use crate::config::Config;
use crate::connector::{GatewayError, IssuedCertificate, LiveToken, PeerCertificate, TokenDigest};
use crate::names;
use crate::record::Record;
use crate::registry::{self, RegisteredService};
use crate::rng::CertSerial;
use crate::time::Timestamp;

/// A RemoteEnvironment and the services registered in it.
#[derive(Clone, Debug, PartialEq)]
pub struct RemoteEnvironment {
    /// Name (a DNS-1123 label), also its `accessLabel`.
    pub name: String,
    /// Tells this RE apart from earlier ones of the same name.
    pub incarnation: u64,
    /// `spec.description`.
    pub description: String,
    /// `spec.labels`.
    pub labels: BTreeMap<String, String>,
    /// `spec.skipVerify`: the proxy does not verify this RE's APIs' certificates (the seed's
    /// "Disable SSL certificate verification").
    pub skip_verify: bool,
    /// Registered services, in registration order (`spec.services`).
    pub services: Vec<RegisteredService>,
}

impl RemoteEnvironment {
    pub(super) fn service(&self, id: &str) -> Option<&RegisteredService> {
        self.services.iter().find(|s| s.id == id)
    }

    /// The resource as `ace get` shows it, in the shape of the CRD.
    pub fn to_resource(&self, config: &Config) -> Value {
        json!({
            "apiVersion": "applicationconnector.kyma-project.io/v1alpha1",
            "kind": "RemoteEnvironment",
            "metadata": {"name": self.name},
            "spec": {
                "description": self.description,
                "accessLabel": self.name,
                "labels": self.labels,
                "skipVerify": self.skip_verify,
                "services": self.services.iter()
                    .map(|s| s.entry_json(&self.name, &config.registry))
                    .collect::<Vec<_>>(),
            }
        })
    }
}

/// A provisioned service class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceInstance {
    /// The RE of the service.
    pub re: String,
    /// The service id.
    pub service_id: String,
}

/// Everything the model knows; rebuilt exactly by replaying the records.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    pub(super) remote_environments: BTreeMap<String, RemoteEnvironment>,
    pub(super) last_incarnation: u64,
    /// `(namespace, re)`.
    pub(super) mappings: BTreeSet<(String, String)>,
    pub(super) tokens: BTreeMap<String, LiveToken>,
    pub(super) certificates: BTreeMap<CertSerial, IssuedCertificate>,
    /// `(namespace, name)`.
    pub(super) instances: BTreeMap<(String, String), ServiceInstance>,
    /// `(namespace, name)` → (instance, key digest).
    pub(super) bindings: BTreeMap<(String, String), (String, TokenDigest)>,
    pub(super) bus: EventBus,
    /// What the Kubernetes resource API keeps about the objects it wrote.
    pub(super) kube: crate::kube::KubeState,
}

impl State {
    pub(super) fn apply(&mut self, record: &Record) {
        self.forget_deleted_objects(record);
        match record {
            Record::RemoteEnvironmentCreated {
                name,
                incarnation,
                description,
                labels,
                skip_verify,
            } => {
                self.last_incarnation = self.last_incarnation.max(*incarnation);
                self.remote_environments.insert(
                    name.clone(),
                    RemoteEnvironment {
                        name: name.clone(),
                        incarnation: *incarnation,
                        description: description.clone(),
                        labels: labels.clone(),
                        skip_verify: *skip_verify,
                        services: Vec::new(),
                    },
                );
            }
            Record::RemoteEnvironmentUpdated {
                name,
                description,
                labels,
                skip_verify,
            } => {
                if let Some(re) = self.remote_environments.get_mut(name) {
                    re.description.clone_from(description);
                    re.labels.clone_from(labels);
                    re.skip_verify = *skip_verify;
                }
            }
            Record::RemoteEnvironmentDeleted { name } => {
                self.remote_environments.remove(name);
                self.tokens.remove(name);
            }
            Record::MappingCreated { namespace, re } => {
                self.mappings.insert((namespace.clone(), re.clone()));
            }
            Record::MappingDeleted { namespace, re } => {
                self.mappings.remove(&(namespace.clone(), re.clone()));
            }
            Record::TokenIssued {
                re,
                digest,
                expires_at,
            } => {
                self.tokens.insert(
                    re.clone(),
                    LiveToken {
                        digest: digest.clone(),
                        expires_at: *expires_at,
                    },
                );
            }
            Record::CertificateIssued(cert) => {
                self.tokens.remove(&cert.re);
                self.certificates.insert(cert.serial.clone(), cert.clone());
            }
            Record::ServiceRegistered { re, service } => {
                if let Some(re) = self.remote_environments.get_mut(re) {
                    re.services.push((**service).clone());
                }
            }
            Record::ServiceUpdated { re, service } => {
                if let Some(re) = self.remote_environments.get_mut(re)
                    && let Some(slot) = re.services.iter_mut().find(|s| s.id == service.id)
                {
                    *slot = (**service).clone();
                }
            }
            Record::ServiceDeleted { re, id } => {
                if let Some(re) = self.remote_environments.get_mut(re) {
                    re.services.retain(|s| &s.id != id);
                }
            }
            Record::InstanceProvisioned {
                namespace,
                name,
                re,
                service_id,
            } => {
                self.instances.insert(
                    (namespace.clone(), name.clone()),
                    ServiceInstance {
                        re: re.clone(),
                        service_id: service_id.clone(),
                    },
                );
            }
            Record::InstanceDeprovisioned { namespace, name } => {
                self.instances.remove(&(namespace.clone(), name.clone()));
            }
            Record::BindingCreated {
                namespace,
                name,
                instance,
                key,
            } => {
                self.bindings.insert(
                    (namespace.clone(), name.clone()),
                    (instance.clone(), key.clone()),
                );
            }
            Record::BindingDeleted { namespace, name } => {
                self.bindings.remove(&(namespace.clone(), name.clone()));
            }
            Record::IncarnationsUsed { last } => {
                self.last_incarnation = self.last_incarnation.max(*last);
            }
            Record::Bus(r) => self.bus.apply(r),
            Record::ObjectMeta { key, meta } => self.kube.apply(key, meta.as_ref()),
            Record::ResourceVersionsUsed { last } => {
                self.kube.revision = self.kube.revision.max(*last);
            }
        }
    }

    /// An object deleted through any API loses its Kubernetes metadata: made again, it is a
    /// new object (new uid, creation time and generation).
    fn forget_deleted_objects(&mut self, record: &Record) {
        use crate::bus::BusRecord;
        use crate::kube::Kind;
        let (kind, namespace, name) = match record {
            Record::RemoteEnvironmentDeleted { name } => (Kind::RemoteEnvironment, "", name),
            Record::MappingDeleted { namespace, re } => {
                (Kind::EnvironmentMapping, &**namespace, re)
            }
            Record::InstanceDeprovisioned { namespace, name } => {
                (Kind::ServiceInstance, &**namespace, name)
            }
            Record::BindingDeleted { namespace, name } => {
                (Kind::ServiceBinding, &**namespace, name)
            }
            Record::Bus(BusRecord::ActivationDeleted { activation, .. }) => (
                Kind::EventActivation,
                &*activation.namespace,
                &activation.name,
            ),
            Record::Bus(BusRecord::SubscriptionDeleted { subscription, .. }) => (
                Kind::Subscription,
                &*subscription.namespace,
                &subscription.name,
            ),
            _ => return,
        };
        self.kube.forget(kind, namespace, name);
    }

    /// A live RemoteEnvironment.
    pub fn remote_environment(&self, name: &str) -> Option<&RemoteEnvironment> {
        self.remote_environments.get(name)
    }

    /// All live RemoteEnvironments, by name.
    pub fn remote_environments(&self) -> impl Iterator<Item = &RemoteEnvironment> {
        self.remote_environments.values()
    }

    /// Every certificate ever issued, by serial.
    pub fn certificates(&self) -> impl Iterator<Item = &IssuedCertificate> {
        self.certificates.values()
    }

    /// Whether `namespace` has an EnvironmentMapping for `re`.
    pub fn is_mapped(&self, namespace: &str, re: &str) -> bool {
        self.mappings
            .contains(&(namespace.to_owned(), re.to_owned()))
    }

    /// The Event Bus state.
    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    /// The gateway's decision for a caller of `/{re}/...` at `now` (reference §1.6, with the
    /// certificate bound to the RE's incarnation).
    pub fn authorize(
        &self,
        now: Timestamp,
        re: &str,
        peer: Option<&PeerCertificate>,
    ) -> Result<(), GatewayError> {
        self.authorize_with(now, re, peer, Bugs::NONE)
    }

    /// [`State::authorize`], with the certificate bugs of `bugs` (none in a default build).
    pub(super) fn authorize_with(
        &self,
        now: Timestamp,
        re: &str,
        peer: Option<&PeerCertificate>,
        bugs: Bugs,
    ) -> Result<(), GatewayError> {
        let peer = peer.ok_or(GatewayError::NoCertificate)?;
        let cn_checked = !bug_on!(bugs, CnNotChecked);
        let incarnation_checked = !bug_on!(bugs, DeletedReAccepted);
        if cn_checked && peer.common_name.as_deref() != Some(re) {
            return Err(GatewayError::WrongRemoteEnvironment(re.to_owned()));
        }
        let cert = self
            .certificates
            .get(&peer.serial)
            .ok_or(GatewayError::UnknownCertificate)?;
        // With `cn-not-checked`, a certificate is checked against its own RE, not the path's.
        let cert_re = if cn_checked { re } else { cert.re.as_str() };
        let current = self.remote_environments.get(cert_re).map(|r| r.incarnation);
        if cert.re != cert_re || (incarnation_checked && Some(cert.incarnation) != current) {
            return Err(GatewayError::Revoked);
        }
        if now < cert.not_before || now >= cert.not_after {
            return Err(GatewayError::Expired);
        }
        Ok(())
    }

    /// The proxy's decision for a call on `service` (`re-<re>-<id>`) with `binding_key`:
    /// unknown service 404, service without API 400, no live binding of it 403.
    pub fn proxy_target(
        &self,
        service: &str,
        binding_key: Option<&str>,
    ) -> Result<crate::proxy::ProxyTarget, crate::proxy::ProxyError> {
        self.proxy_table()
            .decide(service, binding_key)
            .map(|target| (*target).clone())
    }

    /// The proxy's decisions for every registered service in this state.
    pub fn proxy_table(&self) -> crate::proxy::ProxyTable {
        use crate::proxy::{ProxyError, ProxyTable, ProxyTarget};
        let mut table = ProxyTable::default();
        for re in self.remote_environments.values() {
            for svc in &re.services {
                let entry = match &svc.api {
                    None => Err(ProxyError::NoApi(svc.id.clone())),
                    Some(api) => {
                        let keys = self
                            .bindings
                            .iter()
                            .filter(|((ns, _), (instance, _))| {
                                self.instances
                                    .get(&(ns.clone(), instance.clone()))
                                    .is_some_and(|i| i.re == re.name && i.service_id == svc.id)
                            })
                            .map(|(_, (_, digest))| digest.clone())
                            .collect();
                        let target = ProxyTarget {
                            re: re.name.clone(),
                            service_id: svc.id.clone(),
                            target_url: api.target_url.clone(),
                            oauth: api.oauth.clone(),
                            skip_verify: re.skip_verify,
                        };
                        Ok((std::sync::Arc::new(target), keys))
                    }
                };
                table
                    .services
                    .insert(names::resource_name(&re.name, &svc.id), entry);
            }
        }
        table
    }

    /// The service classes `namespace` sees: one per service of every RE mapped to it.
    pub fn catalog(&self, namespace: &str, config: &Config) -> Vec<Value> {
        self.mappings
            .iter()
            .filter(|(ns, _)| ns == namespace)
            .filter_map(|(_, re)| self.remote_environments.get(re))
            .flat_map(|re| {
                re.services
                    .iter()
                    .map(move |s| service_class(&re.name, s, config))
            })
            .collect()
    }

    pub(super) fn find_class(
        &self,
        namespace: &str,
        class: &str,
    ) -> Option<(&RemoteEnvironment, &RegisteredService)> {
        self.mappings
            .iter()
            .filter(|(ns, _)| ns == namespace)
            .filter_map(|(_, re)| self.remote_environments.get(re))
            .flat_map(|re| re.services.iter().map(move |s| (re, s)))
            .find(|(re, s)| {
                s.id == class
                    || names::resource_name(&re.name, &s.id) == class
                    || names::service_entry_name(&s.name, &s.id) == class
            })
    }
}

/// A service class as the catalog shows it (reference §6.4).
pub fn service_class(re: &str, service: &RegisteredService, config: &Config) -> Value {
    let resource = names::resource_name(re, &service.id);
    json!({
        "name": resource,
        "id": service.id,
        "externalName": names::service_entry_name(&service.name, &service.id),
        "remoteEnvironment": re,
        "description": service.short_description,
        "bindable": service.api.is_some(),
        "metadata": {
            "displayName": service.name,
            "providerDisplayName": service.provider,
            "longDescription": service.description,
            "remoteEnvironmentServiceId": service.id,
            "labels": service.labels,
            "bindingLabels": { resource.clone(): "true" },
            "gatewayUrl": service.api.as_ref().map(|_| registry::gateway_url(&config.registry, re, &service.id)),
            "hasEvents": service.events.is_some(),
        },
        "plans": [{"id": format!("{}-plan", service.id), "name": "default"}],
    })
}
