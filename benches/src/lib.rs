//! Criterion benchmarks of ACE, one file per area under `benches/`. Each compares the
//! operation with a baseline measured in the same run, so a result is a ratio that holds on a
//! noisy machine. Results and the commands that produced them are in `BENCHMARKS.md`.

#![forbid(unsafe_code)]
