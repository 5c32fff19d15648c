//! `ace`: the IO shell around `ace-model`. HTTP and TLS edges, the durable store, the driver
//! that feeds the model, certificates, and the command line's clients.
//!
//! The shell translates and persists; every decision is the model's. Networking is injected
//! through [`net::Net`] and time is read only through `tokio::time` (via [`driver::Clock`]),
//! so the same server runs on real sockets and in a simulated network.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod cli;
pub mod client;
pub mod conformance;
pub mod driver;
pub mod http;
pub mod journal;
pub mod metrics;
pub mod net;
pub mod osb;
pub mod pki;
pub mod proxy;
pub mod push;
pub mod serve;
pub mod specs;
pub mod store;
pub mod walkthrough;
