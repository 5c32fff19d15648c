//! The model's answers, and the refusals among them: each maps to one documented status and
//! body.

use serde_json::{Value, json};

use crate::bus::BusReply;
use crate::connector::{ConnectorError, GatewayError, InfoReply, IssuedCertificate, TokenReply};
use crate::error::{ClientError, CommonError};
use crate::registry::{MetadataError, RegisteredService};

/// Why the admin API refused a request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AdminError {
    /// A name is not a DNS-1123 label.
    InvalidName {
        /// Which kind of name.
        // `std::primitive::str`, not `str`: see `crate::wire::static_str`.
        #[serde(with = "crate::wire::static_str")]
        kind: &'static std::primitive::str,
        /// The name.
        name: String,
        /// Why.
        problem: String,
    },
    /// No such resource.
    NotFound {
        /// Kind of resource.
        // `std::primitive::str`, not `str`: see `crate::wire::static_str`.
        #[serde(with = "crate::wire::static_str")]
        kind: &'static std::primitive::str,
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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
    /// The Kubernetes resource API refused the request (a `kind: Status` body).
    Kube(Box<crate::kube::KubeError>),
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
            RequestError::Kube(e) => e.code,
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
            RequestError::Kube(e) => e.to_status(),
        }
    }
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
