//! Errors a client caused, as data: each maps to one documented status code and body.
//!
//! The Application Connector surfaces (connector, metadata, gateway, admin) answer
//! `{"code": <status>, "error": "<message>"}` (reference §0, "Common error body"). The Event
//! Service and the publish API have shapes of their own, in [`crate::bus`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The common `{code, error}` body of the Application Connector services.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommonError {
    /// The HTTP status, repeated in the body.
    pub code: u16,
    /// The human-readable message.
    pub error: String,
}

impl CommonError {
    /// An error with `status` and `message`.
    pub fn new(status: u16, message: impl Into<String>) -> Self {
        CommonError {
            code: status,
            error: message.into(),
        }
    }

    /// The body for an unknown route (gorilla/mux NotFound).
    pub fn route_not_found() -> Self {
        CommonError::new(404, "Requested resource could not be found.")
    }

    /// The body for a known route called with the wrong method.
    pub fn method_not_allowed() -> Self {
        CommonError::new(405, "Method not allowed.")
    }

    /// The body for a request larger than the configured limit.
    pub fn payload_too_large(limit_bytes: usize) -> Self {
        CommonError::new(
            413,
            format!("Request body too large: the limit is {limit_bytes} bytes."),
        )
    }

    /// The JSON body.
    pub fn to_json(&self) -> Value {
        json!({"code": self.code, "error": self.error})
    }
}

/// Implemented by every client-error enum of the model.
pub trait ClientError {
    /// The HTTP status code.
    fn status(&self) -> u16;
    /// The JSON body, exactly as sent on the wire.
    fn body(&self) -> Value;
}

impl ClientError for CommonError {
    fn status(&self) -> u16 {
        self.code
    }
    fn body(&self) -> Value {
        self.to_json()
    }
}
