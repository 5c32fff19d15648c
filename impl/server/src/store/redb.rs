//! The embedded store: a redb database file (`ace.redb`, ACID, crash-safe) with a
//! write-ahead [`journal`](super::journal) beside it (`ace.journal`) that makes each batch
//! durable with one sequential append and `fdatasync`.
//!
//! Batches reach redb later and together: once [`FLUSH_AFTER`] records are waiting, in one
//! commit that is not synced (the journal holds them), or with the next checkpoint. One redb
//! commit per group commit cost 75 µs of CPU for a dozen records, most of it the commit's
//! fixed work (BENCHMARKS.md, "Event Bus end to end", run 6). A record's position is its key
//! in redb. Accepted events go into two tables of their own, by sequence number: their
//! metadata (the logged acceptance record) and their body; a record that releases events
//! removes them in the same commit, so disk use follows the backlog. redb's page cache is
//! capped ([`RedbOptions::cache_bytes`]): a large backlog stays on disk, not in memory.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use ace_model::Record;
use ace_model::bus::{BusRecord, SeqSet, StoredEvent};
use bytes::Bytes;
use futures_util::future::Either;
use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition,
};

use super::codec::{self, Encoded, encode, held_events, journal_entries, journal_payload};
use super::journal::{self, Journal};
use super::{Entry, EventReader, Position, Store, StoreError, StoreFuture};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("records");
const BODIES: TableDefinition<u64, &str> = TableDefinition::new("event-bodies");
const EVENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("events");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The journal generation of the last checkpoint (in [`META`]).
const GENERATION: &str = "journal-generation";
/// The key the next record gets (in [`META`], written with every commit). Not derived from
/// the log's last key alone: a compaction to an empty snapshot leaves the log empty while
/// the journal's keys go on.
const NEXT_KEY: &str = "next-key";
/// Bytes of the events kept apart (in [`META`], written with every commit).
const EVENT_BYTES: &str = "event-bytes";
/// Set once accepted events have their metadata in [`EVENTS`] and records release events;
/// a data directory written before has it filled from the log when it is opened.
const EVENTS_KEPT_APART: &str = "events-kept-apart";

/// Records in the journal and not in redb that make redb take them (in a commit that is not
/// synced; the journal keeps them durable).
pub const FLUSH_AFTER: usize = 1024;

/// Logged at start when redb finds its file was not closed (a crash, `kill -9`, power loss):
/// redb then checks the file before the server starts.
pub const NOT_CLOSED_CLEANLY: &str = "the store was not closed cleanly (a crash or a kill): \
     redb is checking its file; the journal holds every acknowledged change";

/// Events in the journal and not yet in redb, by sequence number: the logged record (the
/// metadata) and the body.
type Unflushed = Arc<Mutex<BTreeMap<u64, (Arc<[u8]>, String)>>>;

/// How a [`RedbStore`] works.
#[derive(Clone, Copy, Debug)]
pub struct RedbOptions {
    /// Do journal appends and checkpoints on the calling thread instead of tokio's blocking
    /// pool: for a caller on a thread of its own that waits for every append anyway (the
    /// driver's), where a hand-off to another thread and back only adds two wake-ups.
    pub io_in_place: bool,
    /// Bytes of frames the journal holds before a checkpoint.
    pub journal_capacity: u64,
    /// Bytes of pages redb keeps in memory (its default is 1 GiB, which a large backlog
    /// would fill).
    pub cache_bytes: usize,
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            io_in_place: false,
            journal_capacity: journal::DEFAULT_CAPACITY,
            cache_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The embedded default: a redb database file (`ace.redb`) and its journal (`ace.journal`).
#[derive(Debug)]
pub struct RedbStore {
    db: Arc<Database>,
    journal: Arc<Mutex<Journal>>,
    /// Records appended (durable in the journal) and not yet written to redb: the last
    /// `pending.len()` keys before `next`.
    pending: Vec<Encoded>,
    /// Their events, readable until redb has them.
    unflushed: Unflushed,
    next: u64,
    len: u64,
    /// Bytes of the events kept apart, in redb and waiting for it.
    bytes: u64,
    /// Of `bytes`, those of events written to redb.
    bytes_in_redb: u64,
    /// A data directory written before events were released by records: its first
    /// compaction keeps only the events the snapshot holds.
    collect_once: bool,
    options: RedbOptions,
}

/// Reads events from the redb file and from the batches not yet written to it. It does not
/// keep the file open: once the store is dropped (closed), reads fail, and a push still under
/// way when the server stops is retried by the next process.
#[derive(Debug)]
struct RedbEvents {
    db: std::sync::Weak<Database>,
    unflushed: Unflushed,
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(std::io::Error::other(e.to_string()))
}

/// What a commit writes besides records.
struct Write<'a> {
    /// Records from this key.
    first: u64,
    /// Records already in the journal, then those of a snapshot.
    pending: &'a [Encoded],
    entries: &'a [Encoded],
    /// A compaction: the log is cleared between `pending` and `entries` (and, if given, only
    /// these events are kept).
    compaction: Option<Option<&'a SeqSet>>,
    /// A checkpoint of this journal generation (synced), or a commit that is not.
    checkpoint: Option<u64>,
    /// Bytes of the events kept apart before the commit.
    bytes: u64,
}

impl RedbStore {
    /// Opens (or creates) `path` and its journal beside it (`path` with the extension
    /// `journal`), replaying into redb the batches the journal holds beyond redb's last
    /// checkpoint (those a crash kept from redb).
    pub fn open(path: &Path, options: RedbOptions) -> Result<Self, StoreError> {
        let warned = std::cell::Cell::new(false);
        let db = redb::Builder::new()
            .set_cache_size(options.cache_bytes)
            .set_repair_callback(move |_| {
                if !warned.replace(true) {
                    tracing::warn!("{}", NOT_CLOSED_CLEANLY);
                }
            })
            .create(path)
            .map_err(db_err)?;
        let collect_once = Self::prepare(&db)?;
        let read = db.begin_read().map_err(db_err)?;
        let table = read.open_table(LOG).map_err(db_err)?;
        let after_last = table
            .last()
            .map_err(db_err)?
            .map_or(0, |(k, _)| k.value() + 1);
        let mut len = table.len().map_err(db_err)?;
        let meta = read.open_table(META).map_err(db_err)?;
        let meta_value = |key: &str| -> Result<Option<u64>, StoreError> {
            Ok(meta.get(key).map_err(db_err)?.map(|v| v.value()))
        };
        let generation = meta_value(GENERATION)?.unwrap_or(0);
        // Data directories written before the key was recorded have only the log's last key.
        let mut next = meta_value(NEXT_KEY)?.unwrap_or(0).max(after_last);
        let bytes = meta_value(EVENT_BYTES)?.unwrap_or(0);
        drop(meta);
        drop(table);
        drop(read);
        let (mut journal, frames) = Journal::open(
            &path.with_extension("journal"),
            generation,
            next,
            options.journal_capacity,
        )
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => StoreError::Corrupt(e.to_string()),
            _ => StoreError::Io(e),
        })?;
        let replayed_from = next;
        let mut replayed = Vec::new();
        for frame in &frames {
            let invalid = |e: String| {
                StoreError::Corrupt(format!("journal batch at record {}: {e}", frame.first_key))
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
        let bytes = Self::checkpoint_now(
            &db,
            &mut journal,
            Write {
                first: replayed_from,
                pending: &replayed,
                entries: &[],
                compaction: None,
                checkpoint: None,
                bytes,
            },
        )?;
        Ok(RedbStore {
            db: Arc::new(db),
            journal: Arc::new(Mutex::new(journal)),
            pending: Vec::new(),
            unflushed: Unflushed::default(),
            next,
            len,
            bytes,
            bytes_in_redb: bytes,
            collect_once,
            options,
        })
    }

    /// Creates the tables, and fills [`EVENTS`] from the log in a data directory written
    /// before it existed; returns whether that directory's first compaction must keep only
    /// the events its snapshot holds.
    fn prepare(db: &Database) -> Result<bool, StoreError> {
        let txn = db.begin_write().map_err(db_err)?;
        let mut collect_once = false;
        {
            let log = txn.open_table(LOG).map_err(db_err)?;
            let bodies = txn.open_table(BODIES).map_err(db_err)?;
            let mut events = txn.open_table(EVENTS).map_err(db_err)?;
            let mut meta = txn.open_table(META).map_err(db_err)?;
            if meta.get(EVENTS_KEPT_APART).map_err(db_err)?.is_none() {
                let mut bytes = 0u64;
                for entry in log.iter().map_err(db_err)? {
                    let (key, value) = entry.map_err(db_err)?;
                    let record = value.value();
                    let Record::Bus(BusRecord::EventAccepted { seq, .. }) =
                        codec::decode(record, format_args!("record {}", key.value()))?
                    else {
                        continue;
                    };
                    if let Some(body) = bodies.get(seq).map_err(db_err)? {
                        bytes += (record.len() + body.value().len()) as u64;
                        events.insert(seq, record).map_err(db_err)?;
                        collect_once = true;
                    }
                }
                meta.insert(EVENTS_KEPT_APART, 1).map_err(db_err)?;
                meta.insert(EVENT_BYTES, bytes).map_err(db_err)?;
                if collect_once {
                    tracing::info!(
                        events = events.len().map_err(db_err)?,
                        "the events of an older data directory are now kept apart"
                    );
                }
            }
        }
        txn.commit().map_err(db_err)?;
        Ok(collect_once)
    }

    /// Commits `w` durably, which makes every batch before it durable too, and starts the
    /// journal's next generation; returns the bytes of the events kept apart after it.
    fn checkpoint_now(
        db: &Database,
        journal: &mut Journal,
        w: Write<'_>,
    ) -> Result<u64, StoreError> {
        let generation = journal.generation() + 1;
        let bytes = Self::write(
            db,
            Write {
                checkpoint: Some(generation),
                ..w
            },
        )?;
        journal.restart(generation);
        Ok(bytes)
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
        compaction: Option<Option<SeqSet>>,
    ) -> Result<(), StoreError> {
        let first = self.first_pending();
        let pending = std::mem::take(&mut self.pending);
        let (db, journal) = (self.db.clone(), self.journal.clone());
        let bytes = self.bytes_in_redb;
        let bytes = run_io(self.options.io_in_place, move || {
            let mut journal = lock(&journal)?;
            Self::checkpoint_now(
                &db,
                &mut journal,
                Write {
                    first,
                    pending: &pending,
                    entries: &entries,
                    compaction: compaction.as_ref().map(Option::as_ref),
                    checkpoint: None,
                    bytes,
                },
            )
        })
        .await?;
        self.bytes = bytes;
        self.bytes_in_redb = bytes;
        lock(&self.unflushed)?.clear();
        Ok(())
    }

    /// Writes the records waiting for redb in one commit that is not synced, and forgets
    /// their events (redb has them now).
    fn flush(&mut self) -> Result<(), StoreError> {
        self.bytes_in_redb = Self::write(
            &self.db,
            Write {
                first: self.first_pending(),
                pending: &[],
                entries: &self.pending,
                compaction: None,
                checkpoint: None,
                bytes: self.bytes_in_redb,
            },
        )?;
        let mut unflushed = lock(&self.unflushed)?;
        for entry in self.pending.drain(..) {
            if let Some((seq, _)) = entry.body {
                unflushed.remove(&seq);
            }
        }
        Ok(())
    }

    /// Writes `w.pending` and then `w.entries` (clearing the log in between for a
    /// compaction). Without a checkpoint the commit is not synced (the journal holds the
    /// batches); with one, it is, and it records that journal generation. Returns the bytes
    /// of the events kept apart after it.
    fn write(db: &Database, w: Write<'_>) -> Result<u64, StoreError> {
        let mut txn = db.begin_write().map_err(db_err)?;
        if w.checkpoint.is_none() {
            txn.set_durability(Durability::None).map_err(db_err)?;
        }
        let mut bytes = w.bytes;
        {
            let mut tables = Tables {
                log: txn.open_table(LOG).map_err(db_err)?,
                bodies: txn.open_table(BODIES).map_err(db_err)?,
                events: txn.open_table(EVENTS).map_err(db_err)?,
                bytes: &mut bytes,
                transient: HashSet::new(),
            };
            tables.transient = transient(w.pending);
            for (key, entry) in (w.first..).zip(w.pending) {
                tables.insert(key, entry)?;
            }
            if let Some(keep) = w.compaction {
                tables.log.retain(|_, _| false).map_err(db_err)?;
                if let Some(keep) = keep {
                    tables.keep_only(keep)?;
                }
            }
            let first = w.first + w.pending.len() as u64;
            tables.transient = transient(w.entries);
            for (key, entry) in (first..).zip(w.entries) {
                tables.insert(key, entry)?;
            }
        }
        {
            let mut meta = txn.open_table(META).map_err(db_err)?;
            if let Some(generation) = w.checkpoint {
                meta.insert(GENERATION, generation).map_err(db_err)?;
            }
            let next = w.first + (w.pending.len() + w.entries.len()) as u64;
            meta.insert(NEXT_KEY, next).map_err(db_err)?;
            meta.insert(EVENT_BYTES, bytes).map_err(db_err)?;
        }
        txn.commit().map_err(db_err)?;
        Ok(bytes)
    }

    /// Records from key `from` in redb's own table, up to `max`.
    fn read_committed(&self, from: u64, max: usize) -> Result<Vec<Entry>, StoreError> {
        let read = self.db.begin_read().map_err(db_err)?;
        let table = read.open_table(LOG).map_err(db_err)?;
        let mut out = Vec::new();
        for entry in table.range(from..).map_err(db_err)?.take(max) {
            let (key, value) = entry.map_err(db_err)?;
            let key = key.value();
            out.push(Entry {
                position: Position(key),
                record: codec::decode(value.value(), format_args!("record {key}"))?,
            });
        }
        Ok(out)
    }
}

/// The events that `entries` both accept and release: a commit that writes them all never
/// needs to keep those events apart (each is delivered everywhere it was due before redb
/// sees it), so it neither inserts nor removes them. With a healthy subscriber that is
/// nearly every event, and it spares four of redb's six B-tree changes per event.
fn transient(entries: &[Encoded]) -> HashSet<u64> {
    let mut accepted = HashSet::new();
    let mut both = HashSet::new();
    for entry in entries {
        if let Some((seq, _)) = &entry.body {
            accepted.insert(*seq);
        }
        both.extend(entry.released.iter().filter(|seq| accepted.contains(seq)));
    }
    both
}

/// The tables a commit writes, and the bytes of the events kept apart.
struct Tables<'txn, 'b> {
    log: redb::Table<'txn, u64, &'static [u8]>,
    bodies: redb::Table<'txn, u64, &'static str>,
    events: redb::Table<'txn, u64, &'static [u8]>,
    bytes: &'b mut u64,
    /// Events accepted and released by the records being written ([`transient`]).
    transient: HashSet<u64>,
}

impl Tables<'_, '_> {
    /// Writes one record, the event it keeps apart if any (unless the same write releases
    /// it), and forgets the events it releases.
    fn insert(&mut self, key: u64, entry: &Encoded) -> Result<(), StoreError> {
        if let Some((seq, data)) = &entry.body
            && !self.transient.contains(seq)
        {
            if let Some(old) = self.bodies.insert(*seq, data.as_str()).map_err(db_err)? {
                *self.bytes = self.bytes.saturating_sub(old.value().len() as u64);
            }
            if let Some(old) = self
                .events
                .insert(*seq, entry.record.as_slice())
                .map_err(db_err)?
            {
                *self.bytes = self.bytes.saturating_sub(old.value().len() as u64);
            }
            *self.bytes += entry.kept_bytes();
        }
        for seq in entry.released.iter() {
            if !self.transient.contains(&seq) {
                self.forget(seq)?;
            }
        }
        self.log
            .insert(key, entry.record.as_slice())
            .map_err(db_err)?;
        Ok(())
    }

    fn forget(&mut self, seq: u64) -> Result<(), StoreError> {
        if let Some(old) = self.bodies.remove(seq).map_err(db_err)? {
            *self.bytes = self.bytes.saturating_sub(old.value().len() as u64);
        }
        if let Some(old) = self.events.remove(seq).map_err(db_err)? {
            *self.bytes = self.bytes.saturating_sub(old.value().len() as u64);
        }
        Ok(())
    }

    /// Forgets every event not in `keep`.
    fn keep_only(&mut self, keep: &SeqSet) -> Result<(), StoreError> {
        let mut gone = Vec::new();
        for entry in self.events.iter().map_err(db_err)? {
            let seq = entry.map_err(db_err)?.0.value();
            if !keep.contains(seq) {
                gone.push(seq);
            }
        }
        for entry in self.bodies.iter().map_err(db_err)? {
            let seq = entry.map_err(db_err)?.0.value();
            if !keep.contains(seq) {
                gone.push(seq);
            }
        }
        for seq in gone {
            self.forget(seq)?;
        }
        Ok(())
    }
}

impl Store for RedbStore {
    async fn read(&mut self, from: Position, max: usize) -> Result<Vec<Entry>, StoreError> {
        let first_pending = self.first_pending();
        let mut out = if from.0 < first_pending {
            self.read_committed(from.0, max)?
        } else {
            Vec::new()
        };
        let start = from.0.max(first_pending);
        let skip = usize::try_from(start - first_pending).unwrap_or(usize::MAX);
        for (i, entry) in self.pending.iter().enumerate().skip(skip) {
            if out.len() >= max {
                break;
            }
            let key = first_pending + i as u64;
            out.push(Entry {
                position: Position(key),
                record: codec::decode(&entry.record, format_args!("waiting record {key}"))?,
            });
        }
        Ok(out)
    }

    async fn append(&mut self, records: Vec<Record>) -> Result<Position, StoreError> {
        let first = self.next;
        let n = records.len() as u64;
        let entries = encode(&records)?;
        let payload = journal_payload(&entries)?;
        let fits = lock(&self.journal)?.fits(payload.len());
        if fits {
            // The journal's sync makes the batch durable. Its events become readable and,
            // once enough records wait for redb, redb takes them in a commit that is not
            // synced (memory work and page-cache writes only): after the sync when the I/O is
            // done in place, else on this thread while a blocking thread syncs.
            let journal = self.journal.clone();
            let journaled = run_io(self.options.io_in_place, move || {
                lock(&journal)?
                    .append(first, n, &payload)
                    .map_err(StoreError::Io)
            });
            {
                let mut unflushed = lock(&self.unflushed)?;
                for entry in &entries {
                    if let Some((seq, body)) = &entry.body {
                        unflushed.insert(*seq, (Arc::from(entry.record.as_slice()), body.clone()));
                        self.bytes += entry.kept_bytes();
                    }
                    // An estimate until redb has the batch: released events count no more.
                    for seq in entry.released.iter() {
                        if let Some((record, body)) = unflushed.get(&seq) {
                            self.bytes = self
                                .bytes
                                .saturating_sub((record.len() + body.len()) as u64);
                        }
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
            if self.pending.is_empty() {
                self.bytes = self.bytes_in_redb;
            }
        } else {
            self.checkpoint(entries, None).await?;
            self.next += n;
        }
        self.len += n;
        Ok(Position(self.next))
    }

    async fn compact(&mut self, snapshot: Vec<Record>) -> Result<Position, StoreError> {
        let n = snapshot.len() as u64;
        let keep = std::mem::take(&mut self.collect_once).then(|| held_events(&snapshot));
        self.checkpoint(encode(&snapshot)?, Some(keep)).await?;
        self.next += n;
        self.len = n;
        Ok(Position(self.next))
    }

    fn end(&self) -> Position {
        Position(self.next)
    }

    fn len(&self) -> u64 {
        self.len
    }

    async fn follow(&mut self, after: Position) -> Result<(), StoreError> {
        if self.next > after.0 {
            return Ok(());
        }
        // This process is the file's only writer: the log grows only by its own appends.
        std::future::pending().await
    }

    fn events(&self) -> Arc<dyn EventReader> {
        Arc::new(RedbEvents {
            db: Arc::downgrade(&self.db),
            unflushed: self.unflushed.clone(),
        })
    }

    fn stored_bytes(&self) -> u64 {
        self.bytes
    }
}

/// Runs the disk work `io` in place (see [`RedbOptions::io_in_place`]), before this returns,
/// or else on tokio's blocking pool, while the caller goes on until it awaits the result.
fn run_io<T: Send + 'static>(
    in_place: bool,
    io: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, StoreError>> {
    let job = if in_place {
        Either::Left(std::future::ready(Ok(io())))
    } else {
        Either::Right(tokio::task::spawn_blocking(io))
    };
    async move { job.await.map_err(db_err)? }
}

fn lock<T>(shared: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, StoreError> {
    shared
        .lock()
        .map_err(|_| StoreError::Io(std::io::Error::other("a storage thread panicked")))
}

impl RedbEvents {
    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.db
            .upgrade()
            .ok_or_else(|| StoreError::Unavailable("the store is closed".into()))
    }

    fn read_body(&self, seq: u64) -> Result<Option<Bytes>, StoreError> {
        let db = self.db()?;
        let read = db.begin_read().map_err(db_err)?;
        let table = read.open_table(BODIES).map_err(db_err)?;
        Ok(table
            .get(seq)
            .map_err(db_err)?
            .map(|v| Bytes::copy_from_slice(v.value().as_bytes())))
    }

    /// The events among `seqs` that redb has, by sequence number.
    fn read_events(&self, seqs: &[u64]) -> Result<BTreeMap<u64, StoredEvent>, StoreError> {
        let db = self.db()?;
        let read = db.begin_read().map_err(db_err)?;
        let table = read.open_table(EVENTS).map_err(db_err)?;
        let mut out = BTreeMap::new();
        for &seq in seqs {
            if let Some(record) = table.get(seq).map_err(db_err)? {
                out.insert(seq, codec::stored_event(seq, record.value())?);
            }
        }
        Ok(out)
    }

    fn reader(&self) -> RedbEvents {
        RedbEvents {
            db: self.db.clone(),
            unflushed: self.unflushed.clone(),
        }
    }
}

impl EventReader for RedbEvents {
    fn body(&self, seq: u64) -> StoreFuture<Option<Bytes>> {
        // Checked first: an event leaves this map only once redb has it.
        match lock(&self.unflushed).map(|u| u.get(&seq).map(|(_, body)| body.clone())) {
            Ok(Some(body)) => return Box::pin(std::future::ready(Ok(Some(Bytes::from(body))))),
            Ok(None) => {}
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        }
        // A read of the file may wait for the disk: not on the caller's (a push worker's)
        // runtime thread.
        let reader = self.reader();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || reader.read_body(seq))
                .await
                .map_err(db_err)?
        })
    }

    fn accepted(&self, seqs: Vec<u64>) -> StoreFuture<Vec<StoredEvent>> {
        let reader = self.reader();
        Box::pin(async move {
            let mut waiting = BTreeMap::new();
            {
                let unflushed = lock(&reader.unflushed)?;
                for &seq in &seqs {
                    if let Some((record, _)) = unflushed.get(&seq) {
                        waiting.insert(seq, codec::stored_event(seq, record)?);
                    }
                }
            }
            let rest: Vec<u64> = seqs
                .iter()
                .copied()
                .filter(|seq| !waiting.contains_key(seq))
                .collect();
            let mut found = if rest.is_empty() {
                BTreeMap::new()
            } else {
                tokio::task::spawn_blocking(move || reader.read_events(&rest))
                    .await
                    .map_err(db_err)??
            };
            found.append(&mut waiting);
            Ok(seqs.iter().filter_map(|seq| found.remove(seq)).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn record(i: u64) -> Record {
        Record::IncarnationsUsed { last: i }
    }

    pub(super) fn open(path: &Path) -> RedbStore {
        RedbStore::open(path, RedbOptions::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every record of `s`.
    pub(super) async fn load(s: &mut RedbStore) -> Vec<Record> {
        crate::store::load_all(s)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The body of event `seq`, as text.
    pub(super) async fn body(bodies: &Arc<dyn EventReader>, seq: u64) -> Option<String> {
        bodies
            .body(seq)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
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
        assert_eq!(load(&mut s).await, vec![record(1), record(2), record(3)]);
        assert_eq!(s.len(), 3);
        s.compact(vec![record(9)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        append(&mut s, vec![record(10)]).await;
        drop(s);
        let mut s = open(&path);
        assert_eq!(load(&mut s).await, vec![record(9), record(10)]);
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
        assert_eq!(load(&mut s).await, (1..=4).map(record).collect::<Vec<_>>());
        assert_eq!(s.len(), 4);
        // The replayed batches were checkpointed: the next crash does not need them again.
        let crash = Crash::keep(&path);
        append(&mut s, vec![record(5)]).await;
        crash.crash(s);
        let mut s = open(&path);
        assert_eq!(load(&mut s).await, (1..=5).map(record).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_full_journal_checkpoints_and_batches_after_it_survive_a_crash() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        let mut s = RedbStore::open(
            &path,
            RedbOptions {
                journal_capacity: 1024,
                ..RedbOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
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
        let mut s = RedbStore::open(
            &path,
            RedbOptions {
                journal_capacity: 1024,
                ..RedbOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(load(&mut s).await, (0..i).map(record).collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod body_tests {
    use std::sync::Arc;

    use ace_model::bus::{BusRecord, Event, ResourceKey};

    use super::tests::{append, body, load, open, record};
    use super::*;

    fn sub() -> Arc<ResourceKey> {
        Arc::new(ResourceKey::new("prod", "orders"))
    }

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
            deliveries: vec![sub()],
        })
    }

    fn acknowledged(seq: u64, released: bool) -> Record {
        Record::Bus(BusRecord::DeliveryAcknowledged {
            seq,
            subscription: sub(),
            released,
        })
    }

    /// Records in redb's own log table (not those waiting in the store).
    fn in_redb(s: &RedbStore) -> u64 {
        let read = s.db.begin_read().unwrap_or_else(|e| panic!("{e}"));
        let table = read.open_table(LOG).unwrap_or_else(|e| panic!("{e}"));
        table.len().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The ids of the events among `seqs` the store gives back.
    async fn ids(s: &RedbStore, seqs: &[u64]) -> Vec<String> {
        s.events()
            .accepted(seqs.to_vec())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|e| {
                assert!(e.event.body_stored && e.event.data.is_empty());
                e.event.event_id.clone()
            })
            .collect()
    }

    #[tokio::test]
    async fn batches_wait_for_redb_until_enough_are_waiting_and_stay_readable() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        let mut s = open(&path);
        append(&mut s, vec![accepted(1, "[1]")]).await;
        assert_eq!(in_redb(&s), 0, "a small batch is only in the journal");
        let events = s.events();
        assert_eq!(body(&events, 1).await.as_deref(), Some("[1]"));
        assert_eq!(ids(&s, &[1]).await, ["id-1"]);
        assert_eq!(load(&mut s).await.len(), 1);
        let fillers = (0..FLUSH_AFTER as u64).map(record);
        append(&mut s, fillers.collect()).await;
        assert_eq!(
            in_redb(&s),
            FLUSH_AFTER as u64 + 1,
            "enough waited: redb has them"
        );
        assert!(lock(&s.unflushed).map(|u| u.is_empty()).unwrap_or(false));
        assert_eq!(body(&events, 1).await.as_deref(), Some("[1]"));
        assert_eq!(ids(&s, &[0, 1, 2]).await, ["id-1"]);
        // Waiting again, then a compaction: events survive it until released.
        append(&mut s, vec![accepted(2, "[2]"), accepted(3, "[3]")]).await;
        append(&mut s, vec![acknowledged(2, true)]).await;
        s.compact(vec![record(7)])
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body(&events, 2).await, None);
        assert_eq!(body(&events, 3).await.as_deref(), Some("[3]"));
        assert_eq!(ids(&s, &[3, 2, 1]).await, ["id-3", "id-1"]);
        assert_eq!(load(&mut s).await.len(), 1);
        // Not flushed at all before the store goes away: the journal brings them back.
        append(&mut s, vec![accepted(4, "[4]")]).await;
        drop((s, events));
        let mut s = open(&path);
        assert_eq!(load(&mut s).await.len(), 2);
        assert_eq!(body(&s.events(), 4).await.as_deref(), Some("[4]"));
        assert_eq!(body(&s.events(), 3).await.as_deref(), Some("[3]"));
        assert_eq!(ids(&s, &[4]).await, ["id-4"]);
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
        assert_eq!(load(&mut s).await, records);
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
        let mut s = RedbStore::open(&path, RedbOptions::default())
            .unwrap_or_else(|e| panic!("reopening: {e}"));
        assert_eq!(load(&mut s).await, vec![record(2)]);
        append(&mut s, vec![record(3)]).await;
        drop(s);
        assert_eq!(load(&mut open(&path)).await, vec![record(2), record(3)]);
    }

    #[tokio::test]
    async fn events_are_kept_apart_released_by_records_and_counted_in_bytes() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        let mut s = open(&path);
        append(
            &mut s,
            vec![accepted(1, r#"{"a":1}"#), accepted(2, r#""two""#)],
        )
        .await;
        let logged = load(&mut s).await;
        assert!(logged.iter().all(|r| matches!(r, Record::Bus(BusRecord::EventAccepted { event, .. }) if event.body_stored && event.data.is_empty())));
        assert_eq!(body(&s.events(), 1).await.as_deref(), Some(r#"{"a":1}"#));
        let two = s.stored_bytes();
        assert!(two > 0);
        // An acknowledgement by a subscription another still owes it to releases nothing.
        append(&mut s, vec![acknowledged(1, false)]).await;
        assert_eq!(body(&s.events(), 1).await.as_deref(), Some(r#"{"a":1}"#));
        append(&mut s, vec![acknowledged(1, true)]).await;
        // Flushed to redb, where the release takes effect.
        append(&mut s, (0..FLUSH_AFTER as u64).map(record).collect()).await;
        assert_eq!(body(&s.events(), 1).await, None);
        assert!(s.stored_bytes() < two && s.stored_bytes() > 0);
        let one = s.stored_bytes();
        drop(s);
        let s = open(&path);
        assert_eq!(s.stored_bytes(), one, "the count survives reopening");
        assert_eq!(
            body(&s.events(), 2).await.as_deref(),
            Some(r#""two""#),
            "bodies survive reopening"
        );
        // An event appended since the last checkpoint is replayed from the journal after a
        // crash that lost redb's unsynced commits, and so is a release.
        let mut s = s;
        let crash = super::tests::Crash::keep(&path);
        append(&mut s, vec![accepted(3, r#"[3]"#), acknowledged(2, true)]).await;
        crash.crash(s);
        let s = open(&path);
        assert_eq!(body(&s.events(), 3).await.as_deref(), Some("[3]"));
        assert_eq!(body(&s.events(), 2).await, None);
        assert_eq!(ids(&s, &[2, 3]).await, ["id-3"]);
    }

    /// Rows of redb's tables of events kept apart: (metadata, bodies).
    fn kept_apart(s: &RedbStore) -> (u64, u64) {
        let read = s.db.begin_read().unwrap_or_else(|e| panic!("{e}"));
        let events = read.open_table(EVENTS).unwrap_or_else(|e| panic!("{e}"));
        let bodies = read.open_table(BODIES).unwrap_or_else(|e| panic!("{e}"));
        let rows = (events.len(), bodies.len());
        (
            rows.0.unwrap_or_else(|e| panic!("{e}")),
            rows.1.unwrap_or_else(|e| panic!("{e}")),
        )
    }

    #[test]
    fn a_write_skips_only_the_events_it_both_accepts_and_releases() {
        let entries = encode(&[
            accepted(1, "[1]"),
            acknowledged(0, true),
            accepted(2, "[2]"),
            acknowledged(1, true),
            acknowledged(2, false),
            accepted(3, "[3]"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        // 0 was accepted by an earlier write, 2 is not released, 3 is released later.
        assert_eq!(transient(&entries), HashSet::from([1]));
    }

    #[tokio::test]
    async fn events_accepted_and_released_in_one_write_never_reach_redbs_event_tables() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        let mut s = open(&path);
        append(&mut s, vec![accepted(1, "[1]"), accepted(2, "[22]")]).await;
        append(&mut s, vec![acknowledged(1, true), accepted(3, "[333]")]).await;
        let three = s.stored_bytes();
        append(&mut s, (0..FLUSH_AFTER as u64).map(record).collect()).await;
        assert_eq!(
            in_redb(&s),
            FLUSH_AFTER as u64 + 4,
            "every record is logged"
        );
        assert_eq!(
            kept_apart(&s),
            (2, 2),
            "events 2 and 3 are kept apart, 1 is not"
        );
        assert_eq!(body(&s.events(), 1).await, None);
        assert_eq!(body(&s.events(), 2).await.as_deref(), Some("[22]"));
        assert_eq!(ids(&s, &[1, 2, 3]).await, ["id-2", "id-3"]);
        assert_eq!(
            s.stored_bytes(),
            three,
            "redb counts what the estimate said"
        );
        let two_and_three = s.stored_bytes();
        // Released by a later write: removed there.
        append(&mut s, vec![acknowledged(2, true)]).await;
        append(&mut s, (0..FLUSH_AFTER as u64).map(record).collect()).await;
        assert_eq!(kept_apart(&s), (1, 1));
        assert!(s.stored_bytes() < two_and_three);
        // Replayed after a crash: the journal's batches are one write, with the same skip.
        drop(s);
        let mut s = open(&path);
        let crash = super::tests::Crash::keep(&path);
        append(&mut s, vec![accepted(4, "[4]"), acknowledged(4, true)]).await;
        append(&mut s, vec![accepted(5, "[5]")]).await;
        let before = s.stored_bytes();
        crash.crash(s);
        let s = open(&path);
        assert_eq!(kept_apart(&s), (2, 2), "events 3 and 5");
        assert_eq!(ids(&s, &[3, 4, 5]).await, ["id-3", "id-5"]);
        assert_eq!(s.stored_bytes(), before, "the replay counts the same bytes");
    }

    #[tokio::test]
    async fn an_event_due_to_no_subscription_is_not_kept() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let mut s = open(&dir.path().join("ace.redb"));
        let mut record = accepted(1, "[1]");
        if let Record::Bus(BusRecord::EventAccepted { deliveries, .. }) = &mut record {
            deliveries.clear();
        }
        append(&mut s, vec![record]).await;
        assert_eq!(body(&s.events(), 1).await, None);
        assert_eq!(s.stored_bytes(), 0);
    }

    #[tokio::test]
    async fn an_older_data_directory_gets_its_events_kept_apart_and_collected_once() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        // As a data directory written before: bodies apart, metadata only in the log.
        {
            let mut s = open(&path);
            append(
                &mut s,
                vec![
                    accepted(1, "[1]"),
                    accepted(2, "[2]"),
                    acknowledged(1, false),
                ],
            )
            .await;
            s.compact(vec![accepted(1, "[1]"), accepted(2, "[2]")])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let txn = s.db.begin_write().unwrap_or_else(|e| panic!("{e}"));
            {
                let mut meta = txn.open_table(META).unwrap_or_else(|e| panic!("{e}"));
                meta.remove(EVENTS_KEPT_APART)
                    .unwrap_or_else(|e| panic!("{e}"));
                let mut events = txn.open_table(EVENTS).unwrap_or_else(|e| panic!("{e}"));
                events
                    .retain(|_, _| false)
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            txn.commit().unwrap_or_else(|e| panic!("{e}"));
        }
        let mut s = open(&path);
        assert_eq!(ids(&s, &[1, 2]).await, ["id-1", "id-2"]);
        assert!(s.stored_bytes() > 0);
        // Its first compaction keeps what the snapshot holds: event 2 only.
        let mut held = SeqSet::new();
        held.insert(2);
        let snapshot = vec![Record::Bus(BusRecord::SubscriptionBacklog {
            subscription: sub(),
            owed: held,
            dead: SeqSet::new(),
            replayed: Vec::new(),
        })];
        s.compact(snapshot.clone())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&s, &[1, 2]).await, ["id-2"]);
        assert_eq!(body(&s.events(), 1).await, None);
        // Later compactions leave events to the records that release them.
        append(&mut s, vec![accepted(5, "[5]")]).await;
        s.compact(snapshot).await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ids(&s, &[5]).await, ["id-5"]);
    }
}

#[cfg(test)]
mod close_tests {
    use super::tests::{append, open, record};
    use super::*;

    #[tokio::test]
    async fn a_body_reader_does_not_keep_the_store_open() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("ace.redb");
        let mut s = open(&path);
        append(&mut s, vec![record(1)]).await;
        let reader = s.events();
        drop(s);
        // As a restarted server does while a push of the previous one is still under way.
        let s = RedbStore::open(&path, RedbOptions::default());
        assert!(s.is_ok(), "{:?}", s.err());
        drop(s);
        assert_eq!(
            reader.body(1).await.map_err(|e| e.to_string()),
            Err("the log cannot be reached: the store is closed".into())
        );
    }
}
