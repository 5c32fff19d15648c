//! The context a decision runs in: the time, the generator, and the queue of records.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::bus::{BusRecord, ResourceKey, SeqSet};
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

/// Queued records looked back over for an acknowledgement of the same subscription.
const ACK_LOOKBACK: usize = 32;

impl Effects<'_> {
    /// Queues `record` for durable storage. The caller has already applied it to its state.
    ///
    /// An acknowledgement joins an earlier queued acknowledgement of the same subscription
    /// (one of the last 32 queued records, with only acknowledgements after it), which then
    /// becomes a [`BusRecord::DeliveriesAcknowledged`]: the acknowledgements one turn of the
    /// shell takes are stored as one record per subscription rather than one per delivery.
    /// Moving an acknowledgement before other subscriptions' acknowledgements changes nothing
    /// a replay rebuilds: each only settles its own subscription's event.
    pub fn push_record(&mut self, record: Record) {
        let record = match record {
            Record::Bus(BusRecord::DeliveryAcknowledged {
                seq,
                subscription,
                released,
            }) => {
                if self.join_acknowledgement(seq, &subscription, released) {
                    return;
                }
                Record::Bus(BusRecord::DeliveryAcknowledged {
                    seq,
                    subscription,
                    released,
                })
            }
            other => other,
        };
        self.records.push_back(record);
    }

    /// Adds `seq` to a queued acknowledgement of `subscription`, if there is one to join.
    fn join_acknowledgement(
        &mut self,
        seq: u64,
        subscription: &Arc<ResourceKey>,
        released: bool,
    ) -> bool {
        let same =
            |other: &Arc<ResourceKey>| Arc::ptr_eq(other, subscription) || other == subscription;
        for queued in self.records.iter_mut().rev().take(ACK_LOOKBACK) {
            let Record::Bus(bus) = queued else {
                return false;
            };
            match bus {
                BusRecord::DeliveryAcknowledged {
                    seq: first,
                    subscription: key,
                    released: first_released,
                } if same(key) => {
                    let mut gone = SeqSet::new();
                    if *first_released {
                        gone.insert(*first);
                    }
                    if released {
                        gone.insert(seq);
                    }
                    *bus = BusRecord::DeliveriesAcknowledged {
                        subscription: Arc::clone(key),
                        seqs: SeqSet::from_iter([*first, seq]),
                        released: gone,
                    };
                    return true;
                }
                BusRecord::DeliveriesAcknowledged {
                    subscription: key,
                    seqs,
                    released: gone,
                } if same(key) => {
                    seqs.insert(seq);
                    if released {
                        gone.insert(seq);
                    }
                    return true;
                }
                BusRecord::DeliveryAcknowledged { .. }
                | BusRecord::DeliveriesAcknowledged { .. } => {}
                _ => return false,
            }
        }
        false
    }
}
