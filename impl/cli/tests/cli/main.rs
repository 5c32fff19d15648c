//! The `ace` command line's tests: the binary as users run it (the seeds' walkthrough with
//! `openssl` and `curl`, `kill -9` and SIGTERM, replicas paused with SIGSTOP), its client
//! commands, and the conformance suite against the embedded target.

mod commands;
#[path = "../../../server/tests/server/common/mod.rs"]
mod common;
mod conformance;
mod durability;
mod kubectl;
mod process;
#[cfg(feature = "jetstream")]
mod replicas;
mod seed_walkthrough;
