//! How records are stored: each record's logged form as JSON, with an accepted event kept
//! apart (by sequence number: its logged record, which is its metadata, and its body), the
//! events a record releases, and a batch of them as one journal frame.

use std::sync::Arc;

use ace_model::Record;
use ace_model::bus::{BusRecord, SeqSet, StoredEvent};

use super::StoreError;

/// The record as logged, and the body to keep apart if it is an accepted event's that some
/// subscription is due (an event due to none is never read back).
pub fn split_body(record: &Record) -> (std::borrow::Cow<'_, Record>, Option<(u64, String)>) {
    match record {
        Record::Bus(BusRecord::EventAccepted {
            seq,
            at,
            event,
            deliveries,
        }) if !event.body_stored => {
            let logged = Record::Bus(BusRecord::EventAccepted {
                seq: *seq,
                at: *at,
                event: Arc::new(event.without_body()),
                deliveries: deliveries.clone(),
            });
            let body = (!deliveries.is_empty()).then(|| (*seq, event.data.clone()));
            (std::borrow::Cow::Owned(logged), body)
        }
        other => (std::borrow::Cow::Borrowed(other), None),
    }
}

/// The events `record` says the store may forget: no subscription owes or holds them.
pub fn released(record: &Record) -> SeqSet {
    match record {
        Record::Bus(BusRecord::DeliveryAcknowledged {
            seq,
            released: true,
            ..
        }) => SeqSet::from_iter([*seq]),
        Record::Bus(
            BusRecord::SubscriptionDeleted { released, .. }
            | BusRecord::DeliveriesAcknowledged { released, .. }
            | BusRecord::DeadLettersDiscarded { released, .. },
        ) => released.clone(),
        _ => SeqSet::new(),
    }
}

/// A record as stored: its logged form's JSON, the event kept apart, if any, and the events
/// it releases.
#[derive(Debug)]
pub struct Encoded {
    /// The logged record, JSON.
    pub record: Vec<u8>,
    /// The event kept apart: its sequence number and body text (its metadata is `record`).
    pub body: Option<(u64, String)>,
    /// The events the store may forget once this record is written.
    pub released: SeqSet,
}

impl Encoded {
    /// Bytes the store keeps for the event this record accepts (its metadata and its body).
    pub fn kept_bytes(&self) -> u64 {
        self.body
            .as_ref()
            .map_or(0, |(_, body)| (self.record.len() + body.len()) as u64)
    }
}

pub fn encode(records: &[Record]) -> Result<Vec<Encoded>, StoreError> {
    records
        .iter()
        .map(|record| {
            let (logged, body) = split_body(record);
            Ok(Encoded {
                record: logged
                    .to_json()
                    .map_err(|e| StoreError::Corrupt(format!("a record does not encode: {e}")))?,
                body,
                released: released(record),
            })
        })
        .collect()
}

/// The accepted event a kept record holds, read back.
pub fn stored_event(seq: u64, record: &[u8]) -> Result<StoredEvent, StoreError> {
    match decode(record, format_args!("event {seq}"))? {
        Record::Bus(BusRecord::EventAccepted { at, event, .. }) => {
            Ok(StoredEvent { seq, at, event })
        }
        _ => Err(StoreError::Corrupt(format!(
            "event {seq} is kept as another kind of record"
        ))),
    }
}

/// A batch as the journal keeps it: per record, its length and JSON, then `1`, the event's
/// sequence number, the body's length and the body, or `0` without a body (integers
/// little-endian, lengths `u32`).
pub fn journal_payload(entries: &[Encoded]) -> Result<Vec<u8>, StoreError> {
    let len = |n: usize| {
        u32::try_from(n)
            .map(u32::to_le_bytes)
            .map_err(|_| StoreError::Corrupt("a record over 4 GiB".into()))
    };
    let size = entries
        .iter()
        .map(|e| 5 + e.record.len() + e.body.as_ref().map_or(0, |(_, b)| 12 + b.len()))
        .sum();
    let mut out = Vec::with_capacity(size);
    for entry in entries {
        out.extend_from_slice(&len(entry.record.len())?);
        out.extend_from_slice(&entry.record);
        match &entry.body {
            None => out.push(0),
            Some((seq, body)) => {
                out.push(1);
                out.extend_from_slice(&seq.to_le_bytes());
                out.extend_from_slice(&len(body.len())?);
                out.extend_from_slice(body.as_bytes());
            }
        }
    }
    Ok(out)
}

/// The entries of a journal batch ([`journal_payload`]).
pub fn journal_entries(mut payload: &[u8]) -> Result<Vec<Encoded>, StoreError> {
    fn take<'a>(payload: &mut &'a [u8], n: usize) -> Result<&'a [u8], StoreError> {
        if payload.len() < n {
            return Err(StoreError::Corrupt("journal batch cut short".into()));
        }
        let (head, rest) = payload.split_at(n);
        *payload = rest;
        Ok(head)
    }
    fn int<const N: usize>(payload: &mut &[u8]) -> Result<[u8; N], StoreError> {
        let mut out = [0u8; N];
        out.copy_from_slice(take(payload, N)?);
        Ok(out)
    }
    let mut entries = Vec::new();
    while !payload.is_empty() {
        let n = u32::from_le_bytes(int(&mut payload)?) as usize;
        let record = take(&mut payload, n)?.to_vec();
        let body = match int::<1>(&mut payload)? {
            [0] => None,
            _ => {
                let seq = u64::from_le_bytes(int(&mut payload)?);
                let n = u32::from_le_bytes(int(&mut payload)?) as usize;
                let body = String::from_utf8(take(&mut payload, n)?.to_vec())
                    .map_err(|e| StoreError::Corrupt(format!("a body is not UTF-8: {e}")))?;
                Some((seq, body))
            }
        };
        // Only the records that can release events are read again.
        let released = if names_released(&record) {
            released(&decode(&record, "a journal record")?)
        } else {
            SeqSet::new()
        };
        entries.push(Encoded {
            record,
            body,
            released,
        });
    }
    Ok(entries)
}

/// Whether a logged record may release events (names `released`).
fn names_released(record: &[u8]) -> bool {
    const NAME: &[u8] = b"\"released\"";
    record.windows(NAME.len()).any(|w| w == NAME)
}

/// The events a snapshot still owes or holds as dead letters: what the store must keep.
pub fn held_events(snapshot: &[Record]) -> SeqSet {
    let mut held = SeqSet::new();
    for record in snapshot {
        if let Record::Bus(BusRecord::SubscriptionBacklog { owed, dead, .. }) = record {
            held.add_all(owed);
            held.add_all(dead);
        }
    }
    held
}

/// Decodes a logged record.
pub fn decode(bytes: &[u8], what: impl std::fmt::Display) -> Result<Record, StoreError> {
    Record::from_json(bytes).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}
