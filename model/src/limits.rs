//! Request body limits: how large a body each kind of call may send, and the answer to a
//! body that is larger, that does not arrive in time, or that cannot be read. The shell reads
//! bodies; these are the decisions about them.

use serde::{Deserialize, Serialize};

use crate::bus::{BusReply, EventServiceError, PublishError};
use crate::config::Config;
use crate::error::CommonError;
use crate::model::{Reply, RequestError};

/// Body size limits of the Application Connector's surfaces (events have the Event Bus's
/// own, [`crate::bus::BusConfig::max_event_bytes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Largest body of a connector call (a CSR) and of an admin command (a replay, a broker
    /// call).
    pub max_body_bytes: usize,
    /// Largest body of the Metadata API (API specs can be large), of a resource document and
    /// of a call through the proxy.
    pub max_metadata_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            max_metadata_body_bytes: 4 * 1024 * 1024,
        }
    }
}

/// What a body is for: it decides the limit and the answer when it is exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `client-certs`: a CSR.
    Connector,
    /// A Metadata API call: a service definition.
    Metadata,
    /// An admin resource document (a RemoteEnvironment, a Subscription, ...).
    Document,
    /// A small admin command (a dead-letter replay, an Open Service Broker call).
    Command,
    /// An event on the gateway's Event Service.
    GatewayEvent,
    /// An event on the publish API.
    PublishEvent,
    /// A call through the proxy to a registered API.
    Proxy,
}

impl Config {
    /// The largest body of `kind`, in bytes.
    pub fn body_limit(&self, kind: BodyKind) -> usize {
        match kind {
            BodyKind::Connector | BodyKind::Command => self.limits.max_body_bytes,
            BodyKind::Metadata | BodyKind::Document | BodyKind::Proxy => {
                self.limits.max_metadata_body_bytes
            }
            BodyKind::GatewayEvent | BodyKind::PublishEvent => self.bus.max_event_bytes,
        }
    }

    /// The answer to a body of `kind` over [`Config::body_limit`]: 413, in the Event Bus's own
    /// shape for events (`request_body_too_large`), in the common `{code, error}` shape
    /// otherwise.
    pub fn too_large(&self, kind: BodyKind) -> Reply {
        match kind {
            BodyKind::GatewayEvent => Reply::Bus(BusReply::EventServiceRefused(
                EventServiceError::RequestBodyTooLarge,
            )),
            BodyKind::PublishEvent => {
                Reply::Bus(BusReply::PublishRefused(PublishError::RequestBodyTooLarge))
            }
            _ => Reply::Error(RequestError::Common(CommonError::payload_too_large(
                self.body_limit(kind),
            ))),
        }
    }
}

/// The answer to a body that did not arrive within the time allowed: 408.
pub fn body_timeout() -> Reply {
    Reply::Error(RequestError::Common(CommonError::new(
        408,
        "The request body was not received in time.",
    )))
}

/// The answer to a body that could not be read (the connection failed mid-body): 400.
pub fn body_unreadable() -> Reply {
    Reply::Error(RequestError::Common(CommonError::new(
        400,
        "The request body could not be read.",
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ClientError;

    #[test]
    fn each_kind_of_body_has_its_limit_and_its_413() {
        let config = Config::default();
        assert_eq!(config.body_limit(BodyKind::Connector), 64 * 1024);
        assert_eq!(config.body_limit(BodyKind::Document), 4 * 1024 * 1024);
        assert_eq!(config.body_limit(BodyKind::PublishEvent), 64 * 1024);
        let admin = config.too_large(BodyKind::Command);
        assert_eq!(admin.status(), 413);
        assert_eq!(
            admin.body().map(|b| b["error"].clone()),
            Some("Request body too large: the limit is 65536 bytes.".into())
        );
        let event = config.too_large(BodyKind::PublishEvent);
        assert_eq!(event.status(), 413);
        assert_eq!(
            event.body().map(|b| b["type"].clone()),
            Some("request_body_too_large".into())
        );
        assert_eq!(body_timeout().error().map(ClientError::status), Some(408));
    }
}
