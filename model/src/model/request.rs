//! The model's inputs: an HTTP request, already routed and parsed by the shell.

use std::collections::BTreeMap;

use crate::bus::{BusRequest, GatewayEvent};
use crate::connector::{CsrSubmission, PeerCertificate};

/// An HTTP request, already routed and parsed by the shell.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
        #[serde(with = "crate::wire::base64_bytes")]
        body: Vec<u8>,
    },
    /// A request of the Kubernetes resource API (`/apis/...` on the admin listener).
    Kube(crate::kube::KubeRequest),
    /// Whether the server is ready to serve (`/readyz`, `/v1/status/ready`).
    Readiness,
    /// A digest of the durable state (`GET /v1/state`): replicas at the same log position
    /// must have the same ([`crate::Model::state_digest`]).
    StateDigest,
    /// A call on the proxy to the registered API `re-<re>-<id>`, with the caller's binding key.
    Proxy {
        /// The service's `re-<re>-<id>` name.
        service: String,
        /// The `Ace-Binding-Key` header.
        binding_key: Option<String>,
    },
}

/// A call on the gateway, after the path's RE.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum GatewayCall {
    /// Any method on `/{re}/v1/metadata`: 301 to the spec.
    MetadataRoot,
    /// `GET /{re}/v1/metadata/api.yaml`: the Metadata API's spec, for callers of this RE.
    MetadataSpec,
    /// `POST /{re}/v1/metadata/services`.
    CreateService {
        /// Raw body.
        #[serde(with = "crate::wire::base64_bytes")]
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
        #[serde(with = "crate::wire::base64_bytes")]
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
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
