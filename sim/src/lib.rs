//! `ace-sim`: deterministic simulation of ACE under injected faults.
//!
//! Built so far: [`net::TurmoilNet`], the network seam of `ace serve` implemented on turmoil's
//! simulated TCP, so that the real server runs unchanged inside a turmoil world (see
//! `tests/world.rs`: a server host and an external solution onboarding over mutual TLS).
//!
//! Not built yet: fault schedules, checkers against the model, seeds and replay, the sweep
//! and the bug zoo.

#![forbid(unsafe_code)]

pub mod net;
pub mod world;
