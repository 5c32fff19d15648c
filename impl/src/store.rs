//! Durable storage of the model's records.
//!
//! The model owns the record format; storage only appends, syncs and replays. [`RedbStore`]
//! keeps the log in one `redb` file in the data directory (ACID, crash-safe: a commit returns
//! after fsync). [`MemoryStore`] keeps it in memory, for tests and simulations.
//!
//! Event bodies are kept apart from the records, by the event's sequence number, and written
//! in the same commit: the log (and so a restarted model) holds only the events' metadata,
//! and a body is read back when it is pushed ([`EventBodies`]). Compaction keeps only the
//! bodies of events still owed, so disk use follows the backlog.

use std::io;
use std::path::Path;
use std::sync::Arc;

use std::collections::{BTreeMap, BTreeSet};

use ace_model::Record;
use ace_model::bus::BusRecord;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// Where records go.
pub trait Store: Send + 'static {
    /// Every record, in order.
    fn load(&mut self) -> io::Result<Vec<Record>>;
    /// Appends `records` and returns once they are durable.
    fn append(
        &mut self,
        records: Vec<Record>,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send;
    /// Replaces the whole log with `snapshot` (records that rebuild the same state).
    fn compact(
        &mut self,
        snapshot: Vec<Record>,
    ) -> impl std::future::Future<Output = io::Result<()>> + Send;
    /// Records in the log.
    fn len(&self) -> u64;
    /// Whether the log is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// A reader of event bodies, for the pushes.
    fn bodies(&self) -> Arc<dyn EventBodies>;
}

/// Reads event bodies back by sequence number.
pub trait EventBodies: Send + Sync {
    /// The body (the JSON text of `data`) of event `seq`, if it is still kept.
    fn body(&self, seq: u64) -> io::Result<Option<String>>;
}

/// The record as logged, and the body to keep apart if it is an accepted event's.
fn split_body(record: &Record) -> (std::borrow::Cow<'_, Record>, Option<(u64, String)>) {
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
            (
                std::borrow::Cow::Owned(logged),
                Some((*seq, event.data.clone())),
            )
        }
        other => (std::borrow::Cow::Borrowed(other), None),
    }
}

/// The events a snapshot still owes.
fn owed_events(snapshot: &[Record]) -> BTreeSet<u64> {
    snapshot
        .iter()
        .filter_map(|r| match r {
            Record::Bus(BusRecord::EventAccepted { seq, .. }) => Some(*seq),
            _ => None,
        })
        .collect()
}

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const BODIES: TableDefinition<u64, &str> = TableDefinition::new("event-bodies");

/// The embedded default: a redb database file.
#[derive(Clone, Debug)]
pub struct RedbStore {
    db: Arc<Database>,
    next: u64,
    len: u64,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl RedbStore {
    /// Opens (or creates) `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let db = Database::create(path).map_err(io_err)?;
        let txn = db.begin_write().map_err(io_err)?;
        txn.open_table(LOG).map_err(io_err)?;
        txn.open_table(BODIES).map_err(io_err)?;
        txn.commit().map_err(io_err)?;
        let read = db.begin_read().map_err(io_err)?;
        let table = read.open_table(LOG).map_err(io_err)?;
        let next = table
            .last()
            .map_err(io_err)?
            .map_or(0, |(k, _)| k.value() + 1);
        let len = table.len().map_err(io_err)?;
        drop(table);
        drop(read);
        Ok(RedbStore {
            db: Arc::new(db),
            next,
            len,
        })
    }

    fn write(db: &Database, first: u64, records: &[Record], clear: bool) -> io::Result<()> {
        let txn = db.begin_write().map_err(io_err)?;
        {
            let mut table = txn.open_table(LOG).map_err(io_err)?;
            let mut bodies = txn.open_table(BODIES).map_err(io_err)?;
            if clear {
                table.retain(|_, _| false).map_err(io_err)?;
                let owed = owed_events(records);
                bodies
                    .retain(|seq, _| owed.contains(&seq))
                    .map_err(io_err)?;
            }
            for (i, record) in records.iter().enumerate() {
                let (logged, body) = split_body(record);
                if let Some((seq, data)) = body {
                    bodies.insert(seq, data.as_str()).map_err(io_err)?;
                }
                let bytes = serde_json::to_vec(logged.as_ref()).map_err(io_err)?;
                table
                    .insert(first + i as u64, bytes.as_slice())
                    .map_err(io_err)?;
            }
        }
        txn.commit().map_err(io_err)
    }
}

impl Store for RedbStore {
    fn load(&mut self) -> io::Result<Vec<Record>> {
        let read = self.db.begin_read().map_err(io_err)?;
        let table = read.open_table(LOG).map_err(io_err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(io_err)? {
            let (key, value) = entry.map_err(io_err)?;
            let record = serde_json::from_slice(value.value()).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("record {}: {e}", key.value()),
                )
            })?;
            out.push(record);
        }
        Ok(out)
    }

    async fn append(&mut self, records: Vec<Record>) -> io::Result<()> {
        let db = self.db.clone();
        let first = self.next;
        let n = records.len() as u64;
        tokio::task::spawn_blocking(move || RedbStore::write(&db, first, &records, false))
            .await
            .map_err(io_err)??;
        self.next += n;
        self.len += n;
        Ok(())
    }

    async fn compact(&mut self, snapshot: Vec<Record>) -> io::Result<()> {
        let db = self.db.clone();
        let first = self.next;
        let n = snapshot.len() as u64;
        tokio::task::spawn_blocking(move || RedbStore::write(&db, first, &snapshot, true))
            .await
            .map_err(io_err)??;
        self.next += n;
        self.len = n;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn bodies(&self) -> Arc<dyn EventBodies> {
        Arc::new(self.clone())
    }
}

impl EventBodies for RedbStore {
    fn body(&self, seq: u64) -> io::Result<Option<String>> {
        let read = self.db.begin_read().map_err(io_err)?;
        let table = read.open_table(BODIES).map_err(io_err)?;
        Ok(table
            .get(seq)
            .map_err(io_err)?
            .map(|v| v.value().to_owned()))
    }
}

/// Records kept in memory: for tests, and for simulations that model a disk. Bodies are kept
/// apart from the records, as [`RedbStore`] does.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    /// The durable records, shared so a test can inspect or keep them across a restart.
    pub records: Arc<std::sync::Mutex<Vec<Record>>>,
    /// Event bodies by sequence number.
    pub bodies: Arc<std::sync::Mutex<BTreeMap<u64, String>>>,
}

impl MemoryStore {
    /// Appends `records` at once (a memory store has nothing to wait for).
    pub fn append_now(&self, records: Vec<Record>) -> io::Result<()> {
        let logged = self.keep(records)?;
        self.records.lock().map_err(io_err)?.extend(logged);
        Ok(())
    }

    /// Replaces the log with `snapshot` at once, keeping only the bodies still owed.
    pub fn compact_now(&self, snapshot: Vec<Record>) -> io::Result<()> {
        let owed = owed_events(&snapshot);
        let logged = self.keep(snapshot)?;
        self.bodies
            .lock()
            .map_err(io_err)?
            .retain(|seq, _| owed.contains(seq));
        *self.records.lock().map_err(io_err)? = logged;
        Ok(())
    }

    fn keep(&self, records: Vec<Record>) -> io::Result<Vec<Record>> {
        let mut bodies = self.bodies.lock().map_err(io_err)?;
        Ok(records
            .iter()
            .map(|r| {
                let (logged, body) = split_body(r);
                if let Some((seq, data)) = body {
                    bodies.insert(seq, data);
                }
                logged.into_owned()
            })
            .collect())
    }
}

impl Store for MemoryStore {
    fn load(&mut self) -> io::Result<Vec<Record>> {
        Ok(self.records.lock().map_err(io_err)?.clone())
    }

    async fn append(&mut self, records: Vec<Record>) -> io::Result<()> {
        self.append_now(records)
    }

    async fn compact(&mut self, snapshot: Vec<Record>) -> io::Result<()> {
        self.compact_now(snapshot)
    }

    fn len(&self) -> u64 {
        self.records.lock().map(|r| r.len() as u64).unwrap_or(0)
    }

    fn bodies(&self) -> Arc<dyn EventBodies> {
        Arc::new(self.clone())
    }
}

impl EventBodies for MemoryStore {
    fn body(&self, seq: u64) -> io::Result<Option<String>> {
        Ok(self.bodies.lock().map_err(io_err)?.get(&seq).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> Record {
        Record::IncarnationsUsed { last: i }
    }

    #[tokio::test]
    async fn appended_records_survive_reopening_and_compaction_replaces_them() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        {
            let mut s = RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
            s.append(vec![record(1), record(2)])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            s.append(vec![record(3)])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        let mut s = RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.load().unwrap_or_default(),
            vec![record(1), record(2), record(3)]
        );
        assert_eq!(s.len(), 3);
        s.compact(vec![record(9)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        s.append(vec![record(10)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        drop(s);
        let mut s = RedbStore::open(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.load().unwrap_or_default(), vec![record(9), record(10)]);
    }
}

#[cfg(test)]
mod body_tests {
    use std::sync::Arc;

    use ace_model::bus::{BusRecord, Event};

    use super::*;

    fn accepted(seq: u64, data: &str) -> Record {
        Record::Bus(BusRecord::EventAccepted {
            seq,
            at: ace_model::Timestamp::EPOCH,
            event: Arc::new(Event {
                source_id: "shop".into(),
                event_type: "order.created".into(),
                event_type_version: "v1".into(),
                event_id: format!("id-{seq}"),
                event_time: "2018-10-16T15:00:00Z".into(),
                data: data.into(),
                trace_headers: Vec::new(),
                body_stored: false,
            }),
            deliveries: Vec::new(),
        })
    }

    #[tokio::test]
    async fn bodies_are_kept_apart_from_the_log_and_compaction_drops_the_settled_ones() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut s = RedbStore::open(&dir.path().join("ace.redb")).unwrap_or_else(|e| panic!("{e}"));
        s.append(vec![accepted(1, r#"{"a":1}"#), accepted(2, r#""two""#)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let logged = s.load().unwrap_or_default();
        assert!(logged.iter().all(|r| matches!(r, Record::Bus(BusRecord::EventAccepted { event, .. }) if event.body_stored && event.data.is_empty())));
        assert_eq!(
            s.bodies().body(1).unwrap_or_default().as_deref(),
            Some(r#"{"a":1}"#)
        );
        // Event 1 is settled: the snapshot no longer has it.
        s.compact(vec![accepted(2, r#""two""#)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.bodies().body(1).unwrap_or_default(), None);
        assert_eq!(
            s.bodies().body(2).unwrap_or_default().as_deref(),
            Some(r#""two""#)
        );
        drop(s);
        let s = RedbStore::open(&dir.path().join("ace.redb")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.bodies().body(2).unwrap_or_default().as_deref(),
            Some(r#""two""#),
            "bodies survive reopening"
        );
    }
}
