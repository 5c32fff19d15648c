//! `ace-sim`: deterministic simulation of ACE under injected faults.
//!
//! Built so far: [`net::TurmoilNet`], the network seam of `ace serve` implemented on turmoil's
//! simulated TCP, so that the real server runs unchanged inside a turmoil world (see
//! `tests/world.rs`: a server host and an external solution onboarding over mutual TLS).
//!
//! [`world`] runs one seeded world with faults, checks at-least-once delivery and
//! `max_inflight`, and once the faults have healed tries to break the other documented
//! guarantees; [`world::run_with`] runs it with bugs of the zoo switched on in the server
//! (`ace-sim run/sweep --bug NAME`, in a build with the feature `bug-zoo`).
//!
//! Not built yet: checkers against the model, faults during the contract phase.

#![forbid(unsafe_code)]

pub mod net;
pub mod world;
