//! `ace-sim`: deterministic simulation of ACE under injected faults.
//!
//! [`net::TurmoilNet`] is the network seam of `ace serve` implemented on turmoil's simulated
//! TCP, so that the real server runs unchanged inside a turmoil world (see `tests/world.rs`);
//! [`disk::SimDisk`] is the disk under it, whose unsynced writes a crash may lose.
//!
//! [`world`] runs one seeded world: solutions, an operator, misbehaving subscribers and an
//! OAuth-protected API around the server, under the faults [`faults::Faults`] picks for the
//! seed; it checks at-least-once delivery, activation, `max_inflight` and read-your-writes,
//! and once the faults have healed tries to break the other documented guarantees;
//! [`world::run_with`] runs it with bugs of the zoo switched on in the server (`ace-sim
//! run/sweep --bug NAME`, in a build with the feature `bug-zoo`). [`timeline`] writes a run
//! out as text and as an HTML sequence diagram.
//!
//! [`oracle`] checks every answer a solution sees to its registry and event calls against
//! `ace-model`, following every state a lost answer leaves possible.
//!
//! Not built yet: faults during the contract phase, and model predictions for the
//! connector's and the admin API's answers (those are checked by the contract phase and the
//! operator's read-backs).

#![forbid(unsafe_code)]

pub mod disk;
pub mod faults;
pub mod net;
pub mod oracle;
pub mod sweep;
pub mod timeline;
pub mod world;
