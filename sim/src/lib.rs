//! `ace-sim`: deterministic simulation of ACE under injected faults.
//!
//! Not built yet. It will run the real `ace serve` inside turmoil worlds (crashes, partitions,
//! loss, misbehaving subscribers), with every run decided by one printed seed, and check the
//! documented guarantees with the model's checkers (`ace_model`'s delivery ledger and the
//! connector invariants).

#![forbid(unsafe_code)]
