//! `ace-model`: the pure, deterministic state machine of the Kyma Application Connector and
//! Event Bus, as ACE implements them.
//!
//! Every decision lives here: which tokens are valid, which CSRs are signed, which
//! certificates open which Remote Environment, how service definitions are validated and
//! stored, what a namespace's catalog holds, which events are accepted and where they are
//! pushed. The crate does no IO: no sockets, no clock, no OS randomness. Time comes in with
//! every input; randomness comes from a generator seeded at construction. The same seed and
//! the same inputs give the same outputs, byte for byte.
//!
//! Three users share it:
//! - `ace serve` (crate `ace`) puts it behind HTTP, TLS and durable storage;
//! - `ace-sim` runs that server in a simulated network and checks it against the model;
//! - `ace-conformance` uses it as the oracle of what a deployment must answer.
//!
//! # Driving contract
//!
//! See [`Model`]: `handle_*` takes inputs, `poll_*` drains outputs in a fixed order (records,
//! which must be durable before any reply is sent; the proxy's decisions; deliveries; the next
//! timer). State changes only through [`Record`]s: [`Model::apply_record`] rebuilds it from a
//! log after a restart or on a follower, and [`Model::take_over`] makes the rebuilt model the
//! one that acts.
//!
//! # Errors
//!
//! What a client got wrong is data: [`RequestError`] and its parts map one to one to the
//! documented status codes and bodies ([`error::ClientError`]). A broken invariant is a bug
//! and panics.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod bugs;
pub mod bus;
pub mod config;
pub mod connector;
pub mod documents;
mod effects;
pub mod egress;
pub mod error;
pub mod hex;
pub mod kube;
pub mod limits;
mod model;
pub mod names;
pub mod proxy;
pub mod record;
pub mod registry;
pub mod rng;
pub mod time;
mod wire;

pub use config::Config;
pub use effects::Effects;
pub use model::{
    AdminError, AdminRequest, GatewayCall, Model, RemoteEnvironment, Reply, Request, RequestError,
    ServiceInstance, State, service_class,
};
pub use record::Record;
pub use rng::{Seed, SeededRng};
pub use time::Timestamp;
