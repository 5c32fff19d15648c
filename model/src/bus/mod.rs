//! The Event Service and the Event Bus: publishing, activation, subscriptions, at-least-once
//! push delivery (reference §3, §4 and §6.3, seed `event-bus.txt`).
//!
//! Not built yet: this module holds only the interface the rest of the model calls. Until it
//! is, the gateway's events path answers 404 like any unknown route.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::effects::Effects;
use crate::error::CommonError;
use crate::time::Timestamp;

/// Configuration of the Event Service and the Event Bus.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BusConfig {}

/// A request to the Event Bus (publish API, admin of activations and subscriptions).
#[derive(Clone, Debug, PartialEq)]
pub enum BusRequest {}

/// An event sent by an external solution to `POST /{re}/v1/events`.
#[derive(Clone, Debug, PartialEq)]
pub struct GatewayEvent {
    /// Raw body.
    pub body: Vec<u8>,
}

/// The answer to a [`BusRequest`] or to an Event Service call.
#[derive(Clone, Debug, PartialEq)]
pub enum BusReply {
    /// The Event Bus is not built: 404, as an unknown route.
    NotBuilt,
}

impl BusReply {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        404
    }

    /// The JSON body, if any.
    pub fn body(&self) -> Option<Value> {
        Some(CommonError::route_not_found().to_json())
    }
}

/// A durable change of the Event Bus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum BusRecord {}

/// An HTTP POST the shell performs for the Event Bus.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {}

/// How a delivery ended.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryOutcome {}

/// The Event Bus state machine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EventBus {}

impl EventBus {
    /// An empty bus.
    pub fn new(_config: &BusConfig) -> Self {
        EventBus {}
    }

    /// Applies a record (while handling an input, or on replay).
    pub fn apply(&mut self, record: &BusRecord) {
        match *record {}
    }

    /// The records that rebuild this state.
    pub fn snapshot(&self) -> Vec<BusRecord> {
        Vec::new()
    }

    /// Handles a request to the bus.
    pub fn handle(&mut self, _fx: &mut Effects<'_>, request: BusRequest) -> BusReply {
        match request {}
    }

    /// Handles `POST /{re}/v1/events` from an authorized external solution of `re`.
    pub fn publish_from_gateway(
        &mut self,
        _fx: &mut Effects<'_>,
        _re: &str,
        _event: GatewayEvent,
    ) -> BusReply {
        BusReply::NotBuilt
    }

    /// Creates the EventActivation made by provisioning a service that has events
    /// (reference §6.3: named after the service id, `sourceId` = the RE).
    pub fn create_activation(
        &mut self,
        _fx: &mut Effects<'_>,
        _namespace: &str,
        _name: &str,
        _source_id: &str,
        _display_name: &str,
    ) {
    }

    /// Removes the EventActivation made by provisioning, on deprovisioning.
    pub fn delete_activation(&mut self, _fx: &mut Effects<'_>, _namespace: &str, _name: &str) {}

    /// Handles timers due at `fx.now`.
    pub fn handle_timeout(&mut self, _fx: &mut Effects<'_>) {}

    /// Handles the outcome of a delivery.
    pub fn handle_delivery_outcome(&mut self, _fx: &mut Effects<'_>, _outcome: DeliveryOutcome) {}

    /// The next deadline, if any.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        None
    }

    /// The next delivery to start, if any.
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        None
    }
}
