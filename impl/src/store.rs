//! Durable storage of the model's records.
//!
//! The model owns the record format; storage only appends, syncs and replays. [`RedbStore`]
//! keeps the log in one `redb` file in the data directory (ACID, crash-safe), with a
//! write-ahead journal beside it that makes each batch durable with one sequential append and
//! `fdatasync` (see [`crate::journal`]). Batches reach redb later and together: once
//! [`FLUSH_AFTER`] records are waiting, in one commit that is not synced (the journal holds
//! them), or with the next checkpoint. One redb commit per group commit cost 75 µs of CPU for
//! a dozen records, most of it the commit's fixed work (BENCHMARKS.md, "Event Bus end to
//! end", run 6). [`MemoryStore`] keeps the log in memory, for tests and simulations.
//!
//! Event bodies are kept apart from the records, by the event's sequence number, and written
//! in the same commit: the log (and so a restarted model) holds only the events' metadata,
//! and a body is read back when it is pushed ([`EventBodies`]). Compaction keeps only the
//! bodies of events still owed, so disk use follows the backlog.

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use std::collections::{BTreeMap, BTreeSet};

use ace_model::Record;
use ace_model::bus::BusRecord;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use crate::journal::{self, Journal};
use futures_util::future::Either;

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
    /// From now on the store is used from a thread of its own (the driver's), which may block
    /// on the disk: the store can do its I/O in place instead of handing it to another thread.
    fn do_io_in_place(&mut self) {}
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

/// A record as stored: its logged form's JSON, and the body kept apart, if any.
#[derive(Debug)]
struct Encoded {
    record: Vec<u8>,
    body: Option<(u64, String)>,
}

fn encode(records: &[Record]) -> io::Result<Vec<Encoded>> {
    records
        .iter()
        .map(|record| {
            let (logged, body) = split_body(record);
            Ok(Encoded {
                record: serde_json::to_vec(logged.as_ref()).map_err(io_err)?,
                body,
            })
        })
        .collect()
}

/// A batch as the journal keeps it: per record, its length and JSON, then `1`, the event's
/// sequence number, the body's length and the body, or `0` without a body (integers
/// little-endian, lengths `u32`).
fn journal_payload(entries: &[Encoded]) -> io::Result<Vec<u8>> {
    let len = |n: usize| {
        u32::try_from(n)
            .map(u32::to_le_bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record over 4 GiB"))
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
fn journal_entries(mut payload: &[u8]) -> io::Result<Vec<Encoded>> {
    fn take<'a>(payload: &mut &'a [u8], n: usize) -> io::Result<&'a [u8]> {
        if payload.len() < n {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "journal batch cut short",
            ));
        }
        let (head, rest) = payload.split_at(n);
        *payload = rest;
        Ok(head)
    }
    fn int<const N: usize>(payload: &mut &[u8]) -> io::Result<[u8; N]> {
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
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                Some((seq, body))
            }
        };
        entries.push(Encoded { record, body });
    }
    Ok(entries)
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
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The journal generation of the last checkpoint (in [`META`]).
const GENERATION: &str = "journal-generation";
/// The key the next record gets (in [`META`], written with every commit). Not derived from
/// the log's last key alone: a compaction to an empty snapshot leaves the log empty while
/// the journal's keys go on.
const NEXT_KEY: &str = "next-key";

/// Records in the journal and not in redb that make redb take them (in a commit that is not
/// synced; the journal keeps them durable).
pub const FLUSH_AFTER: usize = 1024;

/// Logged at start when redb finds its file was not closed (a crash, `kill -9`, power loss):
/// redb then checks the file before the server starts.
pub const NOT_CLOSED_CLEANLY: &str = "the store was not closed cleanly (a crash or a kill): \
     redb is checking its file; the journal holds every acknowledged change";

/// Bodies of events in the journal and not yet in redb, by sequence number.
type Unflushed = Arc<Mutex<BTreeMap<u64, String>>>;

/// The embedded default: a redb database file (`ace.redb`) and its journal (`ace.journal`).
#[derive(Debug)]
pub struct RedbStore {
    db: Arc<Database>,
    journal: Arc<Mutex<Journal>>,
    /// Records appended (durable in the journal) and not yet written to redb: the last
    /// `pending.len()` keys before `next`.
    pending: Vec<Encoded>,
    /// Their bodies, readable until redb has them.
    unflushed: Unflushed,
    next: u64,
    len: u64,
    /// Journal appends and checkpoints run on the calling thread, not on tokio's blocking pool
    /// (see [`Store::do_io_in_place`]).
    io_in_place: bool,
}

/// Reads event bodies from the redb file and from the batches not yet written to it.
#[derive(Debug)]
struct RedbBodies {
    db: Arc<Database>,
    unflushed: Unflushed,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

impl RedbStore {
    /// Opens (or creates) `path` and its journal beside it (`path` with the extension
    /// `journal`), replaying into redb the batches the journal holds beyond redb's last
    /// checkpoint (those a crash kept from redb).
    pub fn open(path: &Path) -> io::Result<Self> {
        Self::open_with(path, journal::DEFAULT_CAPACITY)
    }

    fn open_with(path: &Path, journal_capacity: u64) -> io::Result<Self> {
        let warned = std::cell::Cell::new(false);
        let db = redb::Builder::new()
            .set_repair_callback(move |_| {
                if !warned.replace(true) {
                    tracing::warn!("{}", NOT_CLOSED_CLEANLY);
                }
            })
            .create(path)
            .map_err(io_err)?;
        let txn = db.begin_write().map_err(io_err)?;
        txn.open_table(LOG).map_err(io_err)?;
        txn.open_table(BODIES).map_err(io_err)?;
        txn.open_table(META).map_err(io_err)?;
        txn.commit().map_err(io_err)?;
        let read = db.begin_read().map_err(io_err)?;
        let table = read.open_table(LOG).map_err(io_err)?;
        let after_last = table
            .last()
            .map_err(io_err)?
            .map_or(0, |(k, _)| k.value() + 1);
        let mut len = table.len().map_err(io_err)?;
        let meta = read.open_table(META).map_err(io_err)?;
        let meta_value = |key: &str| -> io::Result<Option<u64>> {
            Ok(meta.get(key).map_err(io_err)?.map(|v| v.value()))
        };
        let generation = meta_value(GENERATION)?.unwrap_or(0);
        // Data directories written before the key was recorded have only the log's last key.
        let mut next = meta_value(NEXT_KEY)?.unwrap_or(0).max(after_last);
        drop(meta);
        drop(table);
        drop(read);
        let (mut journal, frames) = Journal::open(
            &path.with_extension("journal"),
            generation,
            next,
            journal_capacity,
        )?;
        let replayed_from = next;
        let mut replayed = Vec::new();
        for frame in &frames {
            let invalid = |e: String| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("journal batch at record {}: {e}", frame.first_key),
                )
            };
            let entries = journal_entries(&frame.payload).map_err(|e| invalid(e.to_string()))?;
            // The first frame may begin with records redb already has.
            let known = usize::try_from(next - frame.first_key).unwrap_or(usize::MAX);
            if entries.len() as u64 != frame.count || known > entries.len() {
                return Err(invalid(format!(
                    "{} records, {} expected",
                    entries.len(),
                    frame.count
                )));
            }
            next += (entries.len() - known) as u64;
            replayed.extend(entries.into_iter().skip(known));
        }
        len += replayed.len() as u64;
        if !frames.is_empty() {
            tracing::info!(batches = frames.len(), "replayed the journal");
        }
        // Whatever was replayed becomes durable in redb, and the journal starts again.
        Self::checkpoint_now(&db, &mut journal, replayed_from, &replayed, None, &[])?;
        Ok(RedbStore {
            db: Arc::new(db),
            journal: Arc::new(Mutex::new(journal)),
            pending: Vec::new(),
            unflushed: Unflushed::default(),
            next,
            len,
            io_in_place: false,
        })
    }

    /// Commits `pending` and then `entries`, from key `first`, to redb durably (clearing the
    /// log and the bodies not owed in between, if `clear` is given), which makes every batch
    /// before them durable there too, and starts the journal's next generation.
    fn checkpoint_now(
        db: &Database,
        journal: &mut Journal,
        first: u64,
        pending: &[Encoded],
        clear: Option<&BTreeSet<u64>>,
        entries: &[Encoded],
    ) -> io::Result<()> {
        let generation = journal.generation() + 1;
        Self::write(db, first, pending, clear, entries, Some(generation))?;
        journal.restart(generation);
        Ok(())
    }

    /// The key of the first record waiting for redb (`next` if none is).
    fn first_pending(&self) -> u64 {
        self.next - self.pending.len() as u64
    }

    /// [`RedbStore::checkpoint_now`] on a blocking thread, with the records waiting for redb
    /// first; `entries` get the keys from `next`.
    async fn checkpoint(
        &mut self,
        entries: Vec<Encoded>,
        clear: Option<BTreeSet<u64>>,
    ) -> io::Result<()> {
        let first = self.first_pending();
        let pending = std::mem::take(&mut self.pending);
        let (db, journal) = (self.db.clone(), self.journal.clone());
        run_io(self.io_in_place, move || {
            let mut journal = lock(&journal)?;
            Self::checkpoint_now(&db, &mut journal, first, &pending, clear.as_ref(), &entries)
        })
        .await?;
        lock(&self.unflushed)?.clear();
        Ok(())
    }

    /// Writes the records waiting for redb in one commit that is not synced, and forgets
    /// their bodies (redb has them now).
    fn flush(&mut self) -> io::Result<()> {
        Self::write(
            &self.db,
            self.first_pending(),
            &[],
            None,
            &self.pending,
            None,
        )?;
        let mut unflushed = lock(&self.unflushed)?;
        for entry in self.pending.drain(..) {
            if let Some((seq, _)) = entry.body {
                unflushed.remove(&seq);
            }
        }
        Ok(())
    }

    /// Writes `pending` and then `entries`, from key `first` (clearing the log and dropping
    /// the bodies of events not in `clear` in between, if given). Without a `checkpoint` the
    /// commit is not synced (the journal holds the batches); with one, it is, and it records
    /// that journal generation.
    fn write(
        db: &Database,
        first: u64,
        pending: &[Encoded],
        clear: Option<&BTreeSet<u64>>,
        entries: &[Encoded],
        checkpoint: Option<u64>,
    ) -> io::Result<()> {
        let mut txn = db.begin_write().map_err(io_err)?;
        if checkpoint.is_none() {
            txn.set_durability(Durability::None).map_err(io_err)?;
        }
        {
            let mut meta = txn.open_table(META).map_err(io_err)?;
            if let Some(generation) = checkpoint {
                meta.insert(GENERATION, generation).map_err(io_err)?;
            }
            let next = first + (pending.len() + entries.len()) as u64;
            meta.insert(NEXT_KEY, next).map_err(io_err)?;
        }
        {
            let mut table = txn.open_table(LOG).map_err(io_err)?;
            let mut bodies = txn.open_table(BODIES).map_err(io_err)?;
            for (key, entry) in (first..).zip(pending) {
                insert(&mut table, &mut bodies, key, entry)?;
            }
            if let Some(owed) = clear {
                table.retain(|_, _| false).map_err(io_err)?;
                bodies
                    .retain(|seq, _| owed.contains(&seq))
                    .map_err(io_err)?;
            }
            let first = first + pending.len() as u64;
            for (key, entry) in (first..).zip(entries) {
                insert(&mut table, &mut bodies, key, entry)?;
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
        for entry in &self.pending {
            out.push(serde_json::from_slice(&entry.record).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("waiting record: {e}"))
            })?);
        }
        Ok(out)
    }

    async fn append(&mut self, records: Vec<Record>) -> io::Result<()> {
        let first = self.next;
        let n = records.len() as u64;
        let entries = encode(&records)?;
        let payload = journal_payload(&entries)?;
        let fits = lock(&self.journal)?.fits(payload.len());
        if fits {
            // The journal's sync makes the batch durable. Its bodies become readable and,
            // once enough records wait for redb, redb takes them in a commit that is not
            // synced (memory work and page-cache writes only): after the sync when the I/O is
            // done in place, else on this thread while a blocking thread syncs.
            let journal = self.journal.clone();
            let journaled = run_io(self.io_in_place, move || {
                lock(&journal)?.append(first, n, &payload)
            });
            {
                let mut unflushed = lock(&self.unflushed)?;
                for entry in &entries {
                    if let Some((seq, body)) = &entry.body {
                        unflushed.insert(*seq, body.clone());
                    }
                }
            }
            self.pending.extend(entries);
            self.next += n;
            let flushed = if self.pending.len() >= FLUSH_AFTER {
                self.flush()
            } else {
                Ok(())
            };
            journaled.await?;
            flushed?;
        } else {
            self.checkpoint(entries, None).await?;
            self.next += n;
        }
        self.len += n;
        Ok(())
    }

    async fn compact(&mut self, snapshot: Vec<Record>) -> io::Result<()> {
        let n = snapshot.len() as u64;
        let owed = owed_events(&snapshot);
        self.checkpoint(encode(&snapshot)?, Some(owed)).await?;
        self.next += n;
        self.len = n;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn bodies(&self) -> Arc<dyn EventBodies> {
        Arc::new(RedbBodies {
            db: self.db.clone(),
            unflushed: self.unflushed.clone(),
        })
    }

    fn do_io_in_place(&mut self) {
        self.io_in_place = true;
    }
}

/// Runs the disk work `io` in place (see [`Store::do_io_in_place`]), before this returns, or
/// else on tokio's blocking pool, while the caller goes on until it awaits the result.
fn run_io<T: Send + 'static>(
    in_place: bool,
    io: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> impl std::future::Future<Output = io::Result<T>> {
    let job = if in_place {
        Either::Left(std::future::ready(Ok(io())))
    } else {
        Either::Right(tokio::task::spawn_blocking(io))
    };
    async move { job.await.map_err(io_err)? }
}

/// Writes one record, and its body if it has one kept apart.
fn insert(
    log: &mut redb::Table<u64, &[u8]>,
    bodies: &mut redb::Table<u64, &str>,
    key: u64,
    entry: &Encoded,
) -> io::Result<()> {
    if let Some((seq, data)) = &entry.body {
        bodies.insert(*seq, data.as_str()).map_err(io_err)?;
    }
    log.insert(key, entry.record.as_slice()).map_err(io_err)?;
    Ok(())
}

fn lock<T>(shared: &Mutex<T>) -> io::Result<std::sync::MutexGuard<'_, T>> {
    shared
        .lock()
        .map_err(|_| io::Error::other("a storage thread panicked"))
}

impl EventBodies for RedbBodies {
    fn body(&self, seq: u64) -> io::Result<Option<String>> {
        // Checked first: a body leaves this map only once redb has it.
        if let Some(body) = lock(&self.unflushed)?.get(&seq) {
            return Ok(Some(body.clone()));
        }
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

    pub(super) fn record(i: u64) -> Record {
        Record::IncarnationsUsed { last: i }
    }

    pub(super) fn open(path: &Path) -> RedbStore {
        RedbStore::open(path).unwrap_or_else(|e| panic!("{e}"))
    }

    pub(super) async fn append(s: &mut RedbStore, records: Vec<Record>) {
        s.append(records).await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[tokio::test]
    async fn appended_records_survive_reopening_and_compaction_replaces_them() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        {
            let mut s = open(&path);
            append(&mut s, vec![record(1), record(2)]).await;
            append(&mut s, vec![record(3)]).await;
        }
        let mut s = open(&path);
        assert_eq!(
            s.load().unwrap_or_default(),
            vec![record(1), record(2), record(3)]
        );
        assert_eq!(s.len(), 3);
        s.compact(vec![record(9)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        append(&mut s, vec![record(10)]).await;
        drop(s);
        let mut s = open(&path);
        assert_eq!(s.load().unwrap_or_default(), vec![record(9), record(10)]);
    }

    /// The redb file as a crash leaves it: its commits since the last checkpoint were never
    /// synced, so only the checkpoint's state is certain. `keep` copies the file when it holds
    /// just that; `crash` puts the copy back after the store is gone.
    pub(super) struct Crash {
        path: std::path::PathBuf,
        kept: std::path::PathBuf,
    }

    impl Crash {
        pub(super) fn keep(path: &Path) -> Crash {
            let kept = path.with_extension("kept");
            std::fs::copy(path, &kept).unwrap_or_else(|e| panic!("{e}"));
            Crash {
                path: path.to_owned(),
                kept,
            }
        }

        pub(super) fn crash(self, store: RedbStore) {
            drop(store);
            std::fs::rename(&self.kept, &self.path).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[tokio::test]
    async fn batches_in_the_journal_survive_a_crash_that_loses_redbs_unsynced_commits() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        let mut s = open(&path);
        append(&mut s, vec![record(1)]).await;
        drop(s);
        // Opening checkpointed record 1; the next two batches are only in the journal.
        let mut s = open(&path);
        let crash = Crash::keep(&path);
        append(&mut s, vec![record(2), record(3)]).await;
        append(&mut s, vec![record(4)]).await;
        crash.crash(s);
        let mut s = open(&path);
        assert_eq!(
            s.load().unwrap_or_default(),
            (1..=4).map(record).collect::<Vec<_>>()
        );
        assert_eq!(s.len(), 4);
        // The replayed batches were checkpointed: the next crash does not need them again.
        let crash = Crash::keep(&path);
        append(&mut s, vec![record(5)]).await;
        crash.crash(s);
        let mut s = open(&path);
        assert_eq!(
            s.load().unwrap_or_default(),
            (1..=5).map(record).collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_full_journal_checkpoints_and_batches_after_it_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        let mut s = RedbStore::open_with(&path, 1024).unwrap_or_else(|e| panic!("{e}"));
        let start = lock(&s.journal).map(|j| j.generation()).unwrap_or(0);
        let mut crash = None;
        let mut i = 0;
        // Batches of ~20 records each: a few fill the journal.
        while crash.is_none() {
            append(&mut s, (i..i + 20).map(record).collect()).await;
            i += 20;
            if lock(&s.journal).map(|j| j.generation()).unwrap_or(0) > start {
                crash = Some(Crash::keep(&path));
            }
            assert!(i < 10_000, "the journal never filled");
        }
        // Two small batches, which fit into the restarted journal.
        for n in [3, 3] {
            append(&mut s, (i..i + n).map(record).collect()).await;
            i += n;
        }
        assert_eq!(
            lock(&s.journal).map(|j| j.generation()).unwrap_or(0),
            start + 1
        );
        if let Some(crash) = crash {
            crash.crash(s);
        }
        let mut s = RedbStore::open_with(&path, 1024).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            s.load().unwrap_or_default(),
            (0..i).map(record).collect::<Vec<_>>()
        );
    }
}

#[cfg(test)]
mod body_tests {
    use std::sync::Arc;

    use ace_model::bus::{BusRecord, Event};

    use super::tests::{append, open, record};
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

    /// Records in redb's own log table (not those waiting in the store).
    fn in_redb(s: &RedbStore) -> u64 {
        let read = s.db.begin_read().unwrap_or_else(|e| panic!("{e}"));
        let table = read.open_table(LOG).unwrap_or_else(|e| panic!("{e}"));
        table.len().unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn batches_wait_for_redb_until_enough_are_waiting_and_stay_readable() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        let mut s = open(&path);
        append(&mut s, vec![accepted(1, "[1]")]).await;
        assert_eq!(in_redb(&s), 0, "a small batch is only in the journal");
        let bodies = s.bodies();
        assert_eq!(bodies.body(1).unwrap_or_default().as_deref(), Some("[1]"));
        assert_eq!(s.load().unwrap_or_default().len(), 1);
        let fillers = (0..FLUSH_AFTER as u64).map(record);
        append(&mut s, fillers.collect()).await;
        assert_eq!(
            in_redb(&s),
            FLUSH_AFTER as u64 + 1,
            "enough waited: redb has them"
        );
        assert!(lock(&s.unflushed).map(|u| u.is_empty()).unwrap_or(false));
        assert_eq!(bodies.body(1).unwrap_or_default().as_deref(), Some("[1]"));
        // Waiting again, then a compaction: the waiting body still owed survives it.
        append(&mut s, vec![accepted(2, "[2]"), accepted(3, "[3]")]).await;
        s.compact(vec![accepted(3, "[3]")])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(bodies.body(2).unwrap_or_default(), None);
        assert_eq!(bodies.body(3).unwrap_or_default().as_deref(), Some("[3]"));
        assert_eq!(s.load().unwrap_or_default().len(), 1);
        // Not flushed at all before the store goes away: the journal brings them back.
        append(&mut s, vec![accepted(4, "[4]")]).await;
        drop((s, bodies));
        let mut s = open(&path);
        assert_eq!(s.load().unwrap_or_default().len(), 2);
        assert_eq!(
            s.bodies().body(4).unwrap_or_default().as_deref(),
            Some("[4]")
        );
        assert_eq!(
            s.bodies().body(3).unwrap_or_default().as_deref(),
            Some("[3]")
        );
    }

    #[tokio::test]
    async fn records_written_to_redb_and_records_still_waiting_all_survive_a_clean_close() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        let mut s = open(&path);
        let records: Vec<Record> = (0..FLUSH_AFTER as u64 + 5).map(record).collect();
        let (written, waiting) = records.split_at(FLUSH_AFTER + 2);
        append(&mut s, written.to_vec()).await;
        assert_eq!(in_redb(&s), written.len() as u64);
        append(&mut s, waiting.to_vec()).await;
        drop(s);
        let mut s = open(&path);
        assert_eq!(s.load().unwrap_or_default(), records);
    }

    #[tokio::test]
    async fn records_after_a_compaction_to_an_empty_snapshot_survive_reopening() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        let mut s = open(&path);
        append(&mut s, vec![record(0), record(1)]).await;
        s.compact(Vec::new())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // The log is empty now; this batch waits in the journal, under key 2.
        append(&mut s, vec![record(2)]).await;
        drop(s);
        let mut s = RedbStore::open(&path).unwrap_or_else(|e| panic!("reopening: {e}"));
        assert_eq!(s.load().unwrap_or_default(), vec![record(2)]);
        append(&mut s, vec![record(3)]).await;
        drop(s);
        assert_eq!(
            open(&path).load().unwrap_or_default(),
            vec![record(2), record(3)]
        );
    }

    #[tokio::test]
    async fn bodies_are_kept_apart_from_the_log_and_compaction_drops_the_settled_ones() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut s = open(&dir.path().join("ace.redb"));
        append(
            &mut s,
            vec![accepted(1, r#"{"a":1}"#), accepted(2, r#""two""#)],
        )
        .await;
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
        let s = open(&dir.path().join("ace.redb"));
        assert_eq!(
            s.bodies().body(2).unwrap_or_default().as_deref(),
            Some(r#""two""#),
            "bodies survive reopening"
        );
        // A body appended since the last checkpoint is replayed from the journal after a crash
        // that lost redb's unsynced commits.
        let path = dir.path().join("ace.redb");
        let mut s = s;
        let crash = super::tests::Crash::keep(&path);
        append(&mut s, vec![accepted(3, r#"[3]"#)]).await;
        crash.crash(s);
        let s = open(&path);
        assert_eq!(
            s.bodies().body(3).unwrap_or_default().as_deref(),
            Some("[3]")
        );
    }
}
