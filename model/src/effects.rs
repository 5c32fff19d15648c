//! The context a decision runs in: the time, the generator, and the queue of records.

use std::collections::VecDeque;

use crate::record::Record;
use crate::rng::SeededRng;
use crate::time::Timestamp;

/// Passed to every part of the model while it handles one input.
///
/// A part changes its state only by committing a record: it applies the record to itself and
/// pushes it here, so the records drained from the model rebuild exactly the same state.
#[derive(Debug)]
pub struct Effects<'a> {
    /// The time of the input being handled.
    pub now: Timestamp,
    /// The model's seeded generator.
    pub rng: &'a mut SeededRng,
    pub(crate) records: &'a mut VecDeque<Record>,
}

impl Effects<'_> {
    /// Queues `record` for durable storage. The caller has already applied it to its state.
    pub fn push_record(&mut self, record: Record) {
        self.records.push_back(record);
    }
}
