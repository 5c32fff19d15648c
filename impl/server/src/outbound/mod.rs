//! The outbound layer: every connection ACE opens on someone else's behalf. [`push`] performs
//! the model's deliveries to subscribers; [`forward`] makes the proxy's calls to registered
//! APIs and their OAuth servers; [`clients`] builds their TLS and connection pools on the
//! injected network and clock; [`egress`] checks every such connection against the egress
//! policy. Nothing here decides where to go: the model did.

pub mod clients;
pub mod egress;
pub mod forward;
pub mod push;
