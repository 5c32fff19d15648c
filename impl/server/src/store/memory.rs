//! A log kept in memory: for tests, and for simulations that model the disk themselves.
//! Clones share one log, so two handles can stand for a writer and a follower.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use ace_model::Record;
use ace_model::bus::{BusRecord, Event, StoredEvent};
use bytes::Bytes;
use tokio::sync::watch;

use super::codec::{held_events, released, split_body};
use super::{Entry, EventReader, Position, Store, StoreError, StoreFuture};

/// Records and accepted events in memory, kept apart as [`super::RedbStore`] keeps them.
#[derive(Clone, Debug)]
pub struct MemoryStore {
    log: Arc<Mutex<Log>>,
    /// The end position, for followers.
    end: Arc<watch::Sender<Position>>,
}

/// An accepted event kept apart.
#[derive(Debug)]
struct Kept {
    at: ace_model::Timestamp,
    /// Without its body.
    event: Arc<Event>,
    body: String,
    /// What the redb store would keep: the logged record's JSON and the body.
    bytes: u64,
}

#[derive(Debug, Default)]
struct Log {
    /// The position of `records[0]`.
    first: u64,
    records: Vec<Record>,
    events: BTreeMap<u64, Kept>,
    /// Of the kept events.
    bytes: u64,
}

impl Log {
    fn forget(&mut self, seq: u64) {
        if let Some(kept) = self.events.remove(&seq) {
            self.bytes -= kept.bytes;
        }
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            log: Arc::default(),
            end: Arc::new(watch::Sender::new(Position::START)),
        }
    }
}

fn poisoned() -> StoreError {
    StoreError::Corrupt("a thread panicked while holding the memory log".into())
}

impl MemoryStore {
    fn log(&self) -> Result<MutexGuard<'_, Log>, StoreError> {
        self.log.lock().map_err(|_| poisoned())
    }

    /// Appends `records` at once (memory has nothing to wait for); returns the end position.
    pub fn append_now(&self, records: Vec<Record>) -> Result<Position, StoreError> {
        let end = {
            let mut log = self.log()?;
            for record in &records {
                let (logged, body) = split_body(record);
                if let Some((seq, body)) = body
                    && let Record::Bus(BusRecord::EventAccepted { at, event, .. }) = logged.as_ref()
                {
                    let json = logged.to_json().map_err(|e| {
                        StoreError::Corrupt(format!("a record does not encode: {e}"))
                    })?;
                    let bytes = (json.len() + body.len()) as u64;
                    let (at, event) = (*at, Arc::clone(event));
                    log.forget(seq);
                    log.bytes += bytes;
                    log.events.insert(
                        seq,
                        Kept {
                            at,
                            event,
                            body,
                            bytes,
                        },
                    );
                }
                for seq in released(record).iter() {
                    log.forget(seq);
                }
                log.records.push(logged.into_owned());
            }
            Position(log.first + log.records.len() as u64)
        };
        self.end.send_replace(end);
        Ok(end)
    }

    /// Replaces the log with `snapshot` at once, keeping only the events still owed or held
    /// as dead letters.
    pub fn compact_now(&self, snapshot: Vec<Record>) -> Result<Position, StoreError> {
        let held = held_events(&snapshot);
        {
            let mut log = self.log()?;
            log.first += log.records.len() as u64;
            log.records.clear();
            let gone: Vec<u64> = log
                .events
                .keys()
                .copied()
                .filter(|seq| !held.contains(*seq))
                .collect();
            for seq in gone {
                log.forget(seq);
            }
        }
        self.append_now(snapshot)
    }

    /// The records kept, in order.
    pub fn records(&self) -> Vec<Record> {
        self.log()
            .map(|log| log.records.clone())
            .unwrap_or_default()
    }

    /// The sequence numbers of the events kept apart.
    pub fn kept_events(&self) -> Vec<u64> {
        self.log()
            .map(|log| log.events.keys().copied().collect())
            .unwrap_or_default()
    }
}

impl Store for MemoryStore {
    async fn read(&mut self, from: Position, max: usize) -> Result<Vec<Entry>, StoreError> {
        let log = self.log()?;
        let skip = usize::try_from(from.0.saturating_sub(log.first)).unwrap_or(usize::MAX);
        Ok(log
            .records
            .iter()
            .enumerate()
            .skip(skip)
            .take(max)
            .map(|(i, record)| Entry {
                position: Position(log.first + i as u64),
                record: record.clone(),
            })
            .collect())
    }

    async fn append(&mut self, records: Vec<Record>) -> Result<Position, StoreError> {
        self.append_now(records)
    }

    async fn compact(&mut self, snapshot: Vec<Record>) -> Result<Position, StoreError> {
        self.compact_now(snapshot)
    }

    fn end(&self) -> Position {
        *self.end.borrow()
    }

    fn len(&self) -> u64 {
        self.log().map_or(0, |log| log.records.len() as u64)
    }

    async fn follow(&mut self, after: Position) -> Result<(), StoreError> {
        let mut end = self.end.subscribe();
        end.wait_for(|end| *end > after)
            .await
            .map(|_| ())
            .map_err(|_| StoreError::Unavailable("the memory log is gone".into()))
    }

    fn events(&self) -> Arc<dyn EventReader> {
        Arc::new(self.clone())
    }

    fn stored_bytes(&self) -> u64 {
        self.log().map_or(0, |log| log.bytes)
    }
}

impl EventReader for MemoryStore {
    fn body(&self, seq: u64) -> StoreFuture<Option<Bytes>> {
        let body = self.log().map(|log| {
            log.events
                .get(&seq)
                .map(|kept| Bytes::from(kept.body.clone()))
        });
        Box::pin(std::future::ready(body))
    }

    fn accepted(&self, seqs: Vec<u64>) -> StoreFuture<Vec<StoredEvent>> {
        let events = self.log().map(|log| {
            seqs.iter()
                .filter_map(|seq| {
                    log.events.get(seq).map(|kept| StoredEvent {
                        seq: *seq,
                        at: kept.at,
                        event: Arc::clone(&kept.event),
                    })
                })
                .collect()
        });
        Box::pin(std::future::ready(events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> Record {
        Record::IncarnationsUsed { last: i }
    }

    #[tokio::test]
    async fn a_follower_sees_what_another_handle_appends_from_its_position() {
        let mut writer = MemoryStore::default();
        let mut follower = writer.clone();
        assert_eq!(
            writer.append(vec![record(1), record(2)]).await.ok(),
            Some(Position(2))
        );
        // Already beyond position 1: no wait.
        follower
            .follow(Position(1))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let waiting =
            tokio::spawn(async move { follower.follow(Position(2)).await.map(|()| follower) });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the log has not grown");
        writer
            .append(vec![record(3)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut follower = waiting
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        let read = follower.read(Position(2), 10).await.unwrap_or_default();
        assert_eq!(
            read,
            vec![Entry {
                position: Position(2),
                record: record(3)
            }]
        );
    }

    #[tokio::test]
    async fn positions_go_on_across_a_compaction() {
        let mut store = MemoryStore::default();
        store
            .append(vec![record(1), record(2)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let end = store
            .compact(vec![record(9)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(end, Position(3));
        let all = store.read(Position::START, 10).await.unwrap_or_default();
        assert_eq!(
            all,
            vec![Entry {
                position: Position(2),
                record: record(9)
            }]
        );
    }
}
