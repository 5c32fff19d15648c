//! Durable storage of the model's records.
//!
//! The model owns the record format; storage only appends, syncs and replays. [`RedbStore`]
//! keeps the log in one `redb` file in the data directory (ACID, crash-safe: a commit returns
//! after fsync). [`MemoryStore`] keeps it in memory, for tests and simulations.

use std::io;
use std::path::Path;
use std::sync::Arc;

use ace_model::Record;
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
}

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("records");

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
            if clear {
                table.retain(|_, _| false).map_err(io_err)?;
            }
            for (i, record) in records.iter().enumerate() {
                let bytes = serde_json::to_vec(record).map_err(io_err)?;
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
}

/// Records kept in memory: for tests, and for simulations that model a disk.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    /// The durable records, shared so a test can inspect or keep them across a restart.
    pub records: Arc<std::sync::Mutex<Vec<Record>>>,
}

impl Store for MemoryStore {
    fn load(&mut self) -> io::Result<Vec<Record>> {
        Ok(self.records.lock().map_err(io_err)?.clone())
    }

    async fn append(&mut self, records: Vec<Record>) -> io::Result<()> {
        self.records.lock().map_err(io_err)?.extend(records);
        Ok(())
    }

    async fn compact(&mut self, snapshot: Vec<Record>) -> io::Result<()> {
        *self.records.lock().map_err(io_err)? = snapshot;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.records.lock().map(|r| r.len() as u64).unwrap_or(0)
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
