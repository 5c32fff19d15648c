//! The driver: [`Model`], its inputs ([`Request`]) and outputs ([`Reply`], records, deliveries,
//! timers).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde_json::{Value, json};

#[cfg(feature = "bug-zoo")]
use crate::bugs::Bug;
use crate::bugs::{Bugs, bug_on};
use crate::bus::{BusReply, BusRequest, Delivery, EventBus, GatewayEvent};
use crate::config::Config;
use crate::connector::{
    self, ConnectorError, CsrSubmission, GatewayError, InfoReply, IssuedCertificate, LiveToken,
    PeerCertificate, TokenDigest, TokenReply,
};
use crate::effects::Effects;
use crate::error::{ClientError, CommonError};
use crate::names;
use crate::record::Record;
use crate::registry::{self, MetadataError, RegisteredService};
use crate::rng::{CertSerial, Seed, SeededRng};
use crate::time::Timestamp;

/// An HTTP request, already routed and parsed by the shell.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Connector internal API: `POST /v1/remoteenvironments/{re}/tokens`.
    CreateToken {
        /// RE name from the path.
        re: String,
    },
    /// Connector external API: `GET /v1/remoteenvironments/{re}/info?token=`.
    Info {
        /// RE name from the path.
        re: String,
        /// The `token` query parameter.
        token: Option<String>,
    },
    /// Connector external API: `POST /v1/remoteenvironments/{re}/client-certs?token=`.
    ClientCerts {
        /// RE name from the path.
        re: String,
        /// The `token` query parameter.
        token: Option<String>,
        /// What the shell found in the body ([`connector::decode_csr_body`], then X.509).
        csr: CsrSubmission,
    },
    /// A call on the gateway, `/{re}/v1/...`, with the verified client certificate.
    Gateway {
        /// RE name from the path.
        re: String,
        /// The client certificate the TLS layer verified, if any.
        peer: Option<PeerCertificate>,
        /// What is called.
        call: GatewayCall,
    },
    /// The admin API.
    Admin(AdminRequest),
    /// The Event Bus: the publish API and its resources.
    Bus(BusRequest),
    /// A resource document for the admin API (`PUT` of a RemoteEnvironment, a Subscription,
    /// ...), or the body of a command on one: checked and turned into its typed request
    /// ([`crate::documents`]).
    Document {
        /// What it describes.
        kind: crate::documents::DocumentKind,
        /// The namespace from the path (empty for cluster-wide kinds).
        namespace: String,
        /// The name from the path.
        name: String,
        /// The body as received.
        body: Vec<u8>,
    },
    /// Whether the server is ready to serve (`/readyz`, `/v1/status/ready`).
    Readiness,
    /// A call on the proxy to the registered API `re-<re>-<id>`, with the caller's binding key.
    Proxy {
        /// The service's `re-<re>-<id>` name.
        service: String,
        /// The `Ace-Binding-Key` header.
        binding_key: Option<String>,
    },
}

/// A call on the gateway, after the path's RE.
#[derive(Clone, Debug, PartialEq)]
pub enum GatewayCall {
    /// Any method on `/{re}/v1/metadata`: 301 to the spec.
    MetadataRoot,
    /// `GET /{re}/v1/metadata/api.yaml`: the Metadata API's spec, for callers of this RE.
    MetadataSpec,
    /// `POST /{re}/v1/metadata/services`.
    CreateService {
        /// Raw body.
        body: Vec<u8>,
    },
    /// `GET /{re}/v1/metadata/services`.
    ListServices,
    /// `GET /{re}/v1/metadata/services/{id}`.
    GetService {
        /// Service id from the path.
        id: String,
    },
    /// `PUT /{re}/v1/metadata/services/{id}`.
    UpdateService {
        /// Service id from the path.
        id: String,
        /// Raw body.
        body: Vec<u8>,
    },
    /// `DELETE /{re}/v1/metadata/services/{id}`.
    DeleteService {
        /// Service id from the path.
        id: String,
    },
    /// `POST /{re}/v1/events`.
    PublishEvent(GatewayEvent),
}

/// A request to the admin API (ACE's stand-in for `kubectl` on the CRDs).
#[derive(Clone, Debug, PartialEq)]
pub enum AdminRequest {
    /// Create or update a RemoteEnvironment (`accessLabel` is always the name).
    ApplyRemoteEnvironment {
        /// `metadata.name`.
        name: String,
        /// `spec.description`.
        description: String,
        /// `spec.labels`.
        labels: BTreeMap<String, String>,
        /// `spec.skipVerify`: the proxy does not verify this RE's APIs' certificates.
        skip_verify: bool,
    },
    /// Delete a RemoteEnvironment.
    DeleteRemoteEnvironment {
        /// Name.
        name: String,
    },
    /// Read one RemoteEnvironment.
    GetRemoteEnvironment {
        /// Name.
        name: String,
    },
    /// Read all RemoteEnvironments.
    ListRemoteEnvironments,
    /// Create an EnvironmentMapping (idempotent).
    ApplyMapping {
        /// `metadata.namespace`.
        namespace: String,
        /// `metadata.name`: the RE.
        re: String,
    },
    /// Delete an EnvironmentMapping.
    DeleteMapping {
        /// Namespace.
        namespace: String,
        /// RE.
        re: String,
    },
    /// List EnvironmentMappings, of one namespace or all.
    ListMappings {
        /// Only this namespace.
        namespace: Option<String>,
    },
    /// The service classes a namespace sees.
    Catalog {
        /// Namespace.
        namespace: String,
    },
    /// Provision a service class into a namespace (a ServiceInstance).
    Provision {
        /// Namespace.
        namespace: String,
        /// Instance name.
        name: String,
        /// The class: its external name, its `re-<re>-<id>` name, or the service id.
        class: String,
    },
    /// Remove a ServiceInstance (and its bindings).
    Deprovision {
        /// Namespace.
        namespace: String,
        /// Instance name.
        name: String,
    },
    /// Bind a ServiceInstance: its credentials are `GATEWAY_URL` and a proxy access key.
    /// Binding an existing binding again replaces its key.
    Bind {
        /// Namespace.
        namespace: String,
        /// Binding name.
        name: String,
        /// The instance.
        instance: String,
    },
    /// Remove a ServiceBinding; its key stops opening the proxy.
    Unbind {
        /// Namespace.
        namespace: String,
        /// Binding name.
        name: String,
    },
}

/// Why the admin API refused a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminError {
    /// A name is not a DNS-1123 label.
    InvalidName {
        /// Which kind of name.
        kind: &'static str,
        /// The name.
        name: String,
        /// Why.
        problem: String,
    },
    /// No such resource.
    NotFound {
        /// Kind of resource.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// The class is not offered in the namespace (no such service, or no mapping).
    ClassNotAvailable {
        /// Namespace.
        namespace: String,
        /// Class asked for.
        class: String,
    },
    /// The instance's service has no API, so it cannot be bound.
    NotBindable {
        /// Namespace.
        namespace: String,
        /// Instance name.
        instance: String,
    },
    /// An instance of this name exists for another class.
    InstanceConflict {
        /// Namespace.
        namespace: String,
        /// Instance name.
        name: String,
    },
}

impl AdminError {
    /// The message of the `{code, error}` body.
    pub fn message(&self) -> String {
        match self {
            AdminError::InvalidName {
                kind,
                name,
                problem,
            } => format!("Invalid {kind} name {name:?}: a DNS-1123 label {problem}."),
            AdminError::NotFound { kind, name } => format!("{kind} {name} not found."),
            AdminError::ClassNotAvailable { namespace, class } => {
                format!("Service class {class} is not available in namespace {namespace}.")
            }
            AdminError::NotBindable {
                namespace,
                instance,
            } => format!(
                "ServiceInstance {namespace}/{instance} cannot be bound: its service has no API."
            ),
            AdminError::InstanceConflict { namespace, name } => format!(
                "ServiceInstance {namespace}/{name} already exists for another service class."
            ),
        }
    }
}

impl ClientError for AdminError {
    fn status(&self) -> u16 {
        match self {
            AdminError::InvalidName { .. } | AdminError::NotBindable { .. } => 400,
            AdminError::NotFound { .. } | AdminError::ClassNotAvailable { .. } => 404,
            AdminError::InstanceConflict { .. } => 409,
        }
    }
    fn body(&self) -> Value {
        CommonError::new(self.status(), self.message()).to_json()
    }
}

/// A refusal, by the surface that refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    /// Connector Service.
    Connector(ConnectorError),
    /// Gateway certificate check.
    Gateway(GatewayError),
    /// Metadata Service.
    Metadata(MetadataError),
    /// Admin API.
    Admin(AdminError),
    /// Proxy.
    Proxy(crate::proxy::ProxyError),
    /// A request the shell could not read, or a document that does not say what it must, in
    /// the common `{code, error}` shape.
    Common(CommonError),
}

impl ClientError for RequestError {
    fn status(&self) -> u16 {
        match self {
            RequestError::Connector(e) => e.status(),
            RequestError::Gateway(e) => e.status(),
            RequestError::Metadata(e) => e.status(),
            RequestError::Admin(e) => e.status(),
            RequestError::Proxy(e) => e.status(),
            RequestError::Common(e) => e.status(),
        }
    }
    fn body(&self) -> Value {
        match self {
            RequestError::Connector(e) => e.body(),
            RequestError::Gateway(e) => e.body(),
            RequestError::Metadata(e) => e.body(),
            RequestError::Admin(e) => e.body(),
            RequestError::Proxy(e) => e.body(),
            RequestError::Common(e) => e.body(),
        }
    }
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// `201` token and configuration URL.
    Token(TokenReply),
    /// `200` info.
    Info(InfoReply),
    /// `201`: the shell signs this certificate and answers `{"crt": ...}`.
    Certificate(IssuedCertificate),
    /// `200`: the shell serves the Metadata API's OpenAPI document.
    MetadataSpec,
    /// `301` to `location`.
    Redirect {
        /// The `Location` header.
        location: String,
    },
    /// `200 {"id": ...}`: a service was registered.
    ServiceCreated {
        /// The new id.
        id: String,
    },
    /// `200` list of services.
    ServiceList(Vec<RegisteredService>),
    /// `200` one service, credentials masked.
    ServiceDetails(Box<RegisteredService>),
    /// `200` the base fields of the updated service.
    ServiceUpdated(Box<RegisteredService>),
    /// `204`, empty body.
    NoContent,
    /// An admin API answer with its status and body.
    Resource {
        /// `200` or `201`.
        status: u16,
        /// The resource(s).
        body: Value,
    },
    /// The Event Bus's answer.
    Bus(BusReply),
    /// The proxy may forward the call here (the shell then answers with the target's reply).
    Proxy(crate::proxy::ProxyTarget),
    /// `200`: ready to serve (the shell answers `ready` as plain text).
    Ready,
    /// A refusal.
    Error(RequestError),
}

impl Reply {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Reply::Token(_) | Reply::Certificate(_) => 201,
            Reply::Info(_)
            | Reply::ServiceCreated { .. }
            | Reply::ServiceList(_)
            | Reply::ServiceDetails(_)
            | Reply::ServiceUpdated(_)
            | Reply::MetadataSpec => 200,
            Reply::Redirect { .. } => 301,
            Reply::NoContent => 204,
            Reply::Resource { status, .. } => *status,
            Reply::Bus(b) => b.status(),
            Reply::Proxy(_) | Reply::Ready => 200,
            Reply::Error(e) => e.status(),
        }
    }

    /// The JSON body, exactly as on the wire; `None` for an empty body, a redirect, the
    /// Metadata API's spec (a YAML file the shell serves) and a certificate (whose body the
    /// shell makes when it has signed it).
    pub fn body(&self) -> Option<Value> {
        match self {
            Reply::Token(t) => Some(json!(t)),
            Reply::Info(i) => Some(i.to_json()),
            Reply::Certificate(_)
            | Reply::Redirect { .. }
            | Reply::NoContent
            | Reply::MetadataSpec => None,
            Reply::ServiceCreated { id } => Some(json!({ "id": id })),
            Reply::ServiceList(list) => Some(Value::Array(
                list.iter().map(RegisteredService::summary_json).collect(),
            )),
            Reply::ServiceDetails(s) => Some(s.details_json()),
            Reply::ServiceUpdated(s) => Some(s.base_json_value()),
            Reply::Resource { body, .. } => Some(body.clone()),
            Reply::Bus(b) => b.body(),
            Reply::Proxy(_) | Reply::Ready => None,
            Reply::Error(e) => Some(e.body()),
        }
    }

    /// The refusal, if this is one.
    pub fn error(&self) -> Option<&RequestError> {
        match self {
            Reply::Error(e) => Some(e),
            _ => None,
        }
    }
}

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
    fn service(&self, id: &str) -> Option<&RegisteredService> {
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
    remote_environments: BTreeMap<String, RemoteEnvironment>,
    last_incarnation: u64,
    /// `(namespace, re)`.
    mappings: BTreeSet<(String, String)>,
    tokens: BTreeMap<String, LiveToken>,
    certificates: BTreeMap<CertSerial, IssuedCertificate>,
    /// `(namespace, name)`.
    instances: BTreeMap<(String, String), ServiceInstance>,
    /// `(namespace, name)` → (instance, key digest).
    bindings: BTreeMap<(String, String), (String, TokenDigest)>,
    bus: EventBus,
}

impl State {
    fn apply(&mut self, record: &Record) {
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
        }
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
    fn authorize_with(
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
        self.proxy_table().decide(service, binding_key)
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
                        Ok((target, keys))
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

    fn find_class(
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

/// The pure state machine of the Application Connector and the Event Bus.
///
/// # Driving contract
///
/// Inputs go in through `handle_*`, each with the current time:
/// - [`Model::handle_request`] for an HTTP request, returning its [`Reply`];
/// - [`Model::handle_timeout`] when the deadline of [`Model::poll_timeout`] has passed;
/// - [`Model::handle_delivery_outcome`] when a delivery the shell performed has finished.
///
/// After every input (or a batch of them), drain the outputs in this order:
/// 1. [`Model::poll_record`] until `None`, and make those records durable;
/// 2. [`Model::poll_proxy_table`], and put the proxy's new decisions in force;
/// 3. only then release the reply (or, with group commit, every reply of the batch);
/// 4. [`Model::poll_delivery`] until `None`, and start those HTTP requests;
/// 5. [`Model::poll_timeout`], and arm a timer for it.
///
/// State changes only through [`Record`]s. A model that starts from durable records applies
/// them with [`Model::apply_record`] (a follower does the same with records another
/// writer made durable), then calls [`Model::take_over`] before its first input: the
/// records do not say what the previous owner still had in flight, and taking over treats it
/// as a restart. [`Model::replay`] does both.
///
/// ```
/// use ace_model::{AdminRequest, Config, Model, Request, Timestamp};
///
/// let mut model = Model::new(Config::default(), 42.into());
/// let now = Timestamp::from_unix_millis(1_700_000_000_000);
/// let apply = AdminRequest::ApplyRemoteEnvironment {
///     name: "ec-default".into(), description: "".into(), labels: Default::default(),
///     skip_verify: false,
/// };
/// model.handle_request(now, Request::Admin(apply));
/// let reply = model.handle_request(now, Request::CreateToken { re: "ec-default".into() });
/// let mut durable = Vec::new();
/// while let Some(record) = model.poll_record() {
///     durable.push(record); // the shell appends and syncs here
/// }
/// let _proxy_decisions = model.poll_proxy_table(); // in force before the reply
/// assert_eq!(reply.status(), 201); // now the reply may be sent
/// while let Some(_delivery) = model.poll_delivery() { /* start the POST */ }
/// let _next_timer = model.poll_timeout();
///
/// // After a restart, the records rebuild the same state.
/// let restored = Model::replay(Config::default(), 7.into(), durable);
/// assert_eq!(restored.state(), model.state());
/// ```
///
/// A clone is an independent copy: a checker that does not know whether a request took
/// effect (its answer was lost) follows both possible states.
#[derive(Clone, Debug)]
pub struct Model {
    config: Config,
    rng: SeededRng,
    state: State,
    records: VecDeque<Record>,
    /// Whether the proxy's decisions changed since [`Model::poll_proxy_table`] last said so.
    proxy_changed: bool,
}

impl Model {
    /// An empty model. In a server the seed comes from the operating system (tokens are
    /// derived from it); in a simulation from the printed run seed.
    pub fn new(config: Config, seed: Seed) -> Self {
        let mut bus = EventBus::new(&config.bus);
        bus.bugs = config.bugs;
        let state = State {
            bus,
            ..State::default()
        };
        Model {
            config,
            rng: SeededRng::new(seed),
            state,
            records: VecDeque::new(),
            // The first poll hands out the table of the state the shell starts from.
            proxy_changed: true,
        }
    }

    /// A model whose state is rebuilt from durable records, in order. The records are not
    /// queued again.
    pub fn replay(config: Config, seed: Seed, records: impl IntoIterator<Item = Record>) -> Self {
        let mut model = Model::new(config, seed);
        for record in records {
            model.apply_record(&record);
        }
        model.take_over();
        model
    }

    /// Applies one durable record: replaying the log at start, or following a log another
    /// writer appends to. The record is not queued again.
    pub fn apply_record(&mut self, record: &Record) {
        self.proxy_changed |= record.affects_proxy();
        self.state.apply(record);
    }

    /// Takes over the state the applied records describe, as a restarted process does: the
    /// records do not say which deliveries the previous owner still had in flight, so each
    /// subscription waits one push timeout before it delivers again (`max_inflight` holds at
    /// the subscriber across the change of owner).
    pub fn take_over(&mut self) {
        self.state.bus.hold_after_restart();
    }

    /// The records that rebuild the current state from nothing: a snapshot, to compact a long
    /// log. Replaying them gives a state equal to this one.
    pub fn snapshot(&self) -> Vec<Record> {
        let s = &self.state;
        // The counter first: the newest incarnation may belong to a deleted RE.
        let mut out = vec![Record::IncarnationsUsed {
            last: s.last_incarnation,
        }];
        for re in s.remote_environments.values() {
            out.push(Record::RemoteEnvironmentCreated {
                name: re.name.clone(),
                incarnation: re.incarnation,
                description: re.description.clone(),
                labels: re.labels.clone(),
                skip_verify: re.skip_verify,
            });
            for service in &re.services {
                out.push(Record::ServiceRegistered {
                    re: re.name.clone(),
                    service: Box::new(service.clone()),
                });
            }
        }
        for (namespace, re) in &s.mappings {
            out.push(Record::MappingCreated {
                namespace: namespace.clone(),
                re: re.clone(),
            });
        }
        for cert in s.certificates.values() {
            // Issuing a certificate consumes the RE's token; the live tokens come after.
            out.push(Record::CertificateIssued(cert.clone()));
        }
        for (re, token) in &s.tokens {
            out.push(Record::TokenIssued {
                re: re.clone(),
                digest: token.digest.clone(),
                expires_at: token.expires_at,
            });
        }
        for ((namespace, name), instance) in &s.instances {
            out.push(Record::InstanceProvisioned {
                namespace: namespace.clone(),
                name: name.clone(),
                re: instance.re.clone(),
                service_id: instance.service_id.clone(),
            });
        }
        for ((namespace, name), (instance, key)) in &s.bindings {
            out.push(Record::BindingCreated {
                namespace: namespace.clone(),
                name: name.clone(),
                instance: instance.clone(),
                key: key.clone(),
            });
        }
        out.extend(s.bus.snapshot().into_iter().map(Record::Bus));
        out
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The state, read-only.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The next record to make durable before replies are released.
    pub fn poll_record(&mut self) -> Option<Record> {
        self.records.pop_front()
    }

    /// The proxy's decisions, when they changed since the last call (always at the first):
    /// put them in force after the records are durable and before the replies are released,
    /// so that an acknowledged unbind is in force.
    pub fn poll_proxy_table(&mut self) -> Option<crate::proxy::ProxyTable> {
        std::mem::take(&mut self.proxy_changed).then(|| self.state.proxy_table())
    }

    /// The next delivery to start.
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.state.bus.poll_delivery()
    }

    /// When [`Model::handle_timeout`] must next be called.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.state.bus.poll_timeout()
    }

    /// Handles the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.with_bus(now, |bus, fx| bus.handle_timeout(fx));
    }

    /// Handles the outcome of a delivery the shell performed.
    pub fn handle_delivery_outcome(
        &mut self,
        now: Timestamp,
        outcome: crate::bus::DeliveryOutcome,
    ) {
        self.with_bus(now, |bus, fx| bus.handle_delivery_outcome(fx, outcome));
    }

    /// Lends the Event Bus the effects of an input at `now`.
    fn with_bus<T>(
        &mut self,
        now: Timestamp,
        f: impl FnOnce(&mut EventBus, &mut Effects<'_>) -> T,
    ) -> T {
        let Model {
            rng,
            state,
            records,
            ..
        } = self;
        let mut fx = Effects { now, rng, records };
        f(&mut state.bus, &mut fx)
    }

    fn commit(&mut self, record: Record) {
        self.proxy_changed |= record.affects_proxy();
        self.state.apply(&record);
        self.records.push_back(record);
    }

    /// Handles one request and returns its reply. Drain [`Model::poll_record`] and make the
    /// records durable before sending the reply.
    pub fn handle_request(&mut self, now: Timestamp, request: Request) -> Reply {
        let result = match request {
            Request::CreateToken { re } => self.create_token(now, &re),
            Request::Info { re, token } => self.info(now, &re, token.as_deref()),
            Request::ClientCerts { re, token, csr } => {
                self.client_certs(now, &re, token.as_deref(), csr)
            }
            Request::Gateway { re, peer, call } => self.gateway(now, &re, peer.as_ref(), call),
            Request::Admin(req) => self.admin(now, req),
            Request::Proxy {
                service,
                binding_key,
            } => self
                .state
                .proxy_target(&service, binding_key.as_deref())
                .map(Reply::Proxy)
                .map_err(RequestError::Proxy),
            Request::Bus(req) => Ok(Reply::Bus(
                self.with_bus(now, |bus, fx| bus.handle(fx, req)),
            )),
            Request::Document {
                kind,
                namespace,
                name,
                body,
            } => match crate::documents::request(kind, &namespace, &name, &body) {
                Ok(request) => return self.handle_request(now, request),
                Err(e) => Err(RequestError::Common(e)),
            },
            Request::Readiness => Ok(Reply::Ready),
        };
        result.unwrap_or_else(Reply::Error)
    }

    fn issue_token(&mut self, now: Timestamp, re: &str) -> String {
        let token = self.rng.token(self.config.connector.token_length);
        self.commit(Record::TokenIssued {
            re: re.to_owned(),
            digest: TokenDigest::of(&token),
            expires_at: now.saturating_add(self.config.connector.token_ttl),
        });
        token
    }

    fn create_token(&mut self, now: Timestamp, re: &str) -> Result<Reply, RequestError> {
        if self.state.remote_environment(re).is_none() {
            return Err(RequestError::Connector(
                ConnectorError::RemoteEnvironmentNotFound(re.to_owned()),
            ));
        }
        let token = self.issue_token(now, re);
        Ok(Reply::Token(TokenReply {
            url: connector::info_url(&self.config.connector, re, &token),
            token,
        }))
    }

    fn check_token(
        &self,
        now: Timestamp,
        re: &str,
        token: Option<&str>,
    ) -> Result<(), RequestError> {
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or(RequestError::Connector(ConnectorError::TokenNotProvided))?;
        match self.state.tokens.get(re) {
            Some(live) if live.accepts(token, now) => Ok(()),
            Some(live)
                if bug_on!(self.config.bugs, TokenTtlIgnored) && live.digest.matches(token) =>
            {
                Ok(())
            }
            _ => Err(RequestError::Connector(ConnectorError::InvalidToken)),
        }
    }

    fn info(
        &mut self,
        now: Timestamp,
        re: &str,
        token: Option<&str>,
    ) -> Result<Reply, RequestError> {
        self.check_token(now, re, token)?;
        #[cfg(feature = "bug-zoo")]
        if self.config.bugs.has(Bug::TokenReusable)
            && let Some(token) = token
        {
            // The configuration URL's token is not consumed: it becomes the CSR token too.
            return Ok(Reply::Info(connector::info_reply(
                &self.config.connector,
                re,
                token,
            )));
        }
        let csr_token = self.issue_token(now, re);
        Ok(Reply::Info(connector::info_reply(
            &self.config.connector,
            re,
            &csr_token,
        )))
    }

    fn client_certs(
        &mut self,
        now: Timestamp,
        re: &str,
        token: Option<&str>,
        csr: CsrSubmission,
    ) -> Result<Reply, RequestError> {
        self.check_token(now, re, token)?;
        let csr = connector::check_csr(re, &self.config.connector, csr)
            .map_err(RequestError::Connector)?;
        // A live token implies a live RE: deleting an RE deletes its token.
        let incarnation = self
            .state
            .remote_environment(re)
            .map(|r| r.incarnation)
            .ok_or(RequestError::Connector(ConnectorError::InvalidToken))?;
        // Unique among every certificate ever issued, even if the random numbers repeat (a
        // server restored from a snapshot, or restarted with the same seed): a serial that is
        // issued again would take over the first certificate's RE and revoke it.
        let serial = loop {
            let serial = self.rng.serial();
            if !self.state.certificates.contains_key(&serial) {
                break serial;
            }
        };
        let cert = IssuedCertificate {
            serial,
            re: re.to_owned(),
            incarnation,
            subject: csr.subject,
            not_before: now,
            not_after: now.saturating_add(self.config.connector.certificate_validity),
        };
        #[cfg(feature = "bug-zoo")]
        let live = self.state.tokens.get(re).cloned();
        self.commit(Record::CertificateIssued(cert.clone()));
        #[cfg(feature = "bug-zoo")]
        if self.config.bugs.has(Bug::TokenReusable)
            && let Some(live) = live
        {
            // Issuing the certificate consumed the token: issue the same one again.
            self.commit(Record::TokenIssued {
                re: re.to_owned(),
                digest: live.digest,
                expires_at: live.expires_at,
            });
        }
        Ok(Reply::Certificate(cert))
    }

    fn gateway(
        &mut self,
        now: Timestamp,
        re: &str,
        peer: Option<&PeerCertificate>,
        call: GatewayCall,
    ) -> Result<Reply, RequestError> {
        self.state
            .authorize_with(now, re, peer, self.config.bugs)
            .map_err(RequestError::Gateway)?;
        let not_found =
            || RequestError::Metadata(MetadataError::RemoteEnvironmentNotFound(re.to_owned()));
        let remote = self.state.remote_environment(re).ok_or_else(not_found)?;
        match call {
            GatewayCall::MetadataRoot => Ok(Reply::Redirect {
                location: format!("/{re}/v1/metadata/api.yaml"),
            }),
            GatewayCall::MetadataSpec => Ok(Reply::MetadataSpec),
            GatewayCall::ListServices => Ok(Reply::ServiceList(remote.services.clone())),
            GatewayCall::GetService { id } => {
                let service = remote
                    .service(&id)
                    .ok_or(RequestError::Metadata(MetadataError::NotFound(id)))?;
                #[cfg(feature = "bug-zoo")]
                if self.config.bugs.has(Bug::SecretReturned) {
                    return Ok(Reply::Resource {
                        status: 200,
                        body: service.details_json_unmasked(),
                    });
                }
                Ok(Reply::ServiceDetails(Box::new(service.clone())))
            }
            GatewayCall::CreateService { body } => {
                let def =
                    registry::parse_service_definition(&body).map_err(RequestError::Metadata)?;
                let identifier = def.identifier().to_owned();
                if !bug_on!(self.config.bugs, IdentifierNotUnique)
                    && !identifier.is_empty()
                    && remote.services.iter().any(|s| s.identifier == identifier)
                {
                    return Err(RequestError::Metadata(MetadataError::IdentifierExists(
                        identifier,
                    )));
                }
                // Unique in the registry, even if the random numbers repeat.
                let id = loop {
                    let id = self.rng.uuid_v4();
                    let taken = self
                        .state
                        .remote_environments
                        .values()
                        .any(|r| r.services.iter().any(|s| s.id == id));
                    if !taken {
                        break id;
                    }
                };
                let service = def.into_service(re, id.clone(), identifier, &self.config.registry);
                self.commit(Record::ServiceRegistered {
                    re: re.to_owned(),
                    service: Box::new(service),
                });
                Ok(Reply::ServiceCreated { id })
            }
            GatewayCall::UpdateService { id, body } => {
                let def =
                    registry::parse_service_definition(&body).map_err(RequestError::Metadata)?;
                let stored = remote.service(&id).ok_or_else(|| {
                    RequestError::Metadata(MetadataError::UpdateNotFound(id.clone()))
                })?;
                let identifier = stored.identifier.clone();
                let service = Box::new(def.into_service(re, id, identifier, &self.config.registry));
                self.commit(Record::ServiceUpdated {
                    re: re.to_owned(),
                    service: service.clone(),
                });
                Ok(Reply::ServiceUpdated(service))
            }
            GatewayCall::DeleteService { id } => {
                if remote.service(&id).is_some() {
                    self.deprovision_instances_of(now, re, &id);
                    self.commit(Record::ServiceDeleted {
                        re: re.to_owned(),
                        id,
                    });
                }
                Ok(Reply::NoContent)
            }
            GatewayCall::PublishEvent(event) => {
                Ok(Reply::Bus(self.with_bus(now, |bus, fx| {
                    bus.publish_from_gateway(fx, re, event)
                })))
            }
        }
    }

    /// Removes the instances of a service that goes away, and their EventActivations.
    fn deprovision_instances_of(&mut self, now: Timestamp, re: &str, service_id: &str) {
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

    fn deprovision(&mut self, now: Timestamp, namespace: &str, name: &str) -> bool {
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

    fn admin(&mut self, now: Timestamp, req: AdminRequest) -> Result<Reply, RequestError> {
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
