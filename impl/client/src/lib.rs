//! `ace-client`: the HTTP(S) client of ACE, shared by the server (pushes to subscribers, the
//! proxy's calls, OAuth token requests), its command line, the conformance suite and the
//! simulation.
//!
//! Two things come from outside, so that the same code runs on real sockets and in a
//! simulated world:
//! - the network, a [`net::Net`] that binds listeners and opens connections;
//! - the time, a [`clock::Clock`] that maps `tokio::time` to Unix time; TLS checks the
//!   validity of certificates against it ([`tls::tls_connector`]), never against the OS clock.
//!
//! It depends on no other crate of the workspace.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod clock;
pub mod connector;
pub mod net;
pub mod request;
pub mod tls;

pub use clock::Clock;
pub use net::{Listener, Net, Stream, TokioNet};
pub use request::{ClientError, Response, exchange, prepare, request};
pub use tls::{TlsError, TlsOptions, provider, tls_connector};
