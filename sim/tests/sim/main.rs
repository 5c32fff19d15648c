//! The simulation's tests: the real server in turmoil worlds, seeded worlds and their
//! determinism, replicated worlds on the JetStream stand-in, the `ace-sim` command line, and the bug zoo's pinned seeds.

mod bug_zoo;
mod cli;
mod replicated;
mod seeds;
mod world;
