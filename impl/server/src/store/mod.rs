//! Durable storage of the model's records: a log that the driver appends to and that a
//! starting server (or a follower) reads back.
//!
//! The model owns the record format; a store only appends, syncs, reads back and compacts.
//! [`Store`] is shaped for a log that may be shared: reads are asynchronous and go from a
//! [`Position`], appends return the position they reached, errors say whether the disk broke,
//! the data is damaged, another writer moved the log (fenced), the log cannot be reached now,
//! or it is full, and a follower can wait for the log to grow. The backends:
//! - [`redb::RedbStore`], the embedded default: a redb file and its write-ahead
//!   [`journal`] in the data directory;
//! - [`memory::MemoryStore`]: in memory, for tests and simulations (clones share one log);
//! - [`jetstream::JetStreamStore`]: a stream on a NATS JetStream cluster, for a log that
//!   outlives the machine (through [`crate::nats::Nats`]: a real cluster with feature
//!   `jetstream`, the simulation's stand-in in a simulated world).
//!
//! Accepted events are kept apart from the records, by sequence number, and written with the
//! same append: their metadata (the logged acceptance) and their body. The model reads the
//! metadata of owed events back as its window of each backlog moves, and a push reads the
//! body ([`EventReader`]). A record that settles an event for good (its last holder
//! acknowledged it, its subscription was deleted, its dead letter discarded) releases it, and
//! the store forgets it in the same write, so disk use follows the backlog.

pub mod codec;
pub mod jetstream;
pub mod journal;
pub mod memory;
pub mod redb;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use ace_model::Record;
use ace_model::bus::StoredEvent;
use bytes::Bytes;

pub use memory::MemoryStore;
pub use redb::{NOT_CLOSED_CLEANLY, RedbOptions, RedbStore};

/// A place in a log: the position of one record, or of the end. Positions only grow, also
/// across compactions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position(pub u64);

impl Position {
    /// Before the first record ever appended.
    pub const START: Position = Position(0);
}

/// A record read back, with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// Where it is in the log.
    pub position: Position,
    /// The record.
    pub record: Record,
}

/// Why a store could not do what it was asked. The variants say whose fault it is and what
/// the server can do about it.
#[derive(Debug)]
pub enum StoreError {
    /// The disk (or the operating system) failed: the server stops, since what it decided
    /// may not be durable.
    Io(std::io::Error),
    /// What was read back is not what was written (damaged data, or records missing).
    Corrupt(String),
    /// Another writer moved the log past what this writer decided on: catch up, decide again.
    Fenced(String),
    /// The log cannot be reached now (a replicated log without a quorum): try again later.
    Unavailable(String),
    /// The store's space budget is exhausted: refuse new work instead of losing it.
    Full(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io(e) => write!(f, "storage I/O failed: {e}"),
            StoreError::Corrupt(e) => write!(f, "the store is damaged: {e}"),
            StoreError::Fenced(e) => write!(f, "another writer moved the log: {e}"),
            StoreError::Unavailable(e) => write!(f, "the log cannot be reached: {e}"),
            StoreError::Full(e) => write!(f, "the store is full: {e}"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Io(e)
    }
}

/// A future a store returns from a shared reader.
pub type StoreFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send>>;

/// A log of records.
pub trait Store: Send + 'static {
    /// Up to `max` records at `from` or later, in order. Positions before the oldest record
    /// kept (compacted away) read from the oldest one. An empty answer means the end.
    fn read(
        &mut self,
        from: Position,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Entry>, StoreError>> + Send;
    /// Appends `records` as one batch and returns, once they are durable, the end position.
    fn append(
        &mut self,
        records: Vec<Record>,
    ) -> impl Future<Output = Result<Position, StoreError>> + Send;
    /// Replaces every record so far with `snapshot` (records that rebuild the same state),
    /// appended at the end; returns the new end position.
    fn compact(
        &mut self,
        snapshot: Vec<Record>,
    ) -> impl Future<Output = Result<Position, StoreError>> + Send;
    /// The position after the last record.
    fn end(&self) -> Position;
    /// Records kept (what compaction shrinks).
    fn len(&self) -> u64;
    /// Whether the log keeps no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Resolves once the log reaches beyond `after` (appended by another writer, for a
    /// follower); at once if it already does. A log with a single writer never grows by itself.
    fn follow(&mut self, after: Position) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Makes this writer the log's writer from here on (a replica taking the lead): appends
    /// a mark after everything read so far, so that another writer's next append is fenced,
    /// or is fenced itself if another writer appended since. Returns the end. A log with one
    /// writer has nothing to do.
    fn claim(&mut self) -> impl Future<Output = Result<Position, StoreError>> + Send {
        std::future::ready(Ok(self.end()))
    }
    /// Where this store has read or written up to, in the log's own numbering (a stream
    /// sequence on JetStream): what a replica reports as applied.
    fn applied_seq(&self) -> u64 {
        self.end().0
    }
    /// Where the log ends now, in the same numbering, asking the servers of a shared log.
    fn latest_seq(&mut self) -> impl Future<Output = Result<u64, StoreError>> + Send {
        std::future::ready(Ok(self.applied_seq()))
    }
    /// Ties the log to the CA that signs for it (`ca_sha256`: the SHA-256 of the CA
    /// certificate, hex): a shared log records it at the first start and refuses a server
    /// with another CA, which would issue certificates the others reject. A log in the data
    /// directory, beside the CA itself, has nothing to check.
    fn bind_identity(
        &mut self,
        ca_sha256: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = ca_sha256;
        std::future::ready(Ok(()))
    }
    /// A reader of the events kept apart, for the model's backlog reads and the pushes.
    fn events(&self) -> Arc<dyn EventReader>;
    /// Bytes of the events kept apart (metadata and bodies): what the disk budget limits.
    fn stored_bytes(&self) -> u64;
    /// The most bytes of events the store can take whatever the budget (`None`: no limit of
    /// its own): a stream with a size limit of its own would refuse appends, records and
    /// snapshots as well as events, past it, so the budget must fill first.
    fn capacity(&self) -> Option<u64> {
        None
    }
}

/// Reads accepted events back by sequence number, from any task.
pub trait EventReader: Send + Sync + std::fmt::Debug {
    /// The body (the JSON text of `data`) of event `seq`, if it is still kept.
    fn body(&self, seq: u64) -> StoreFuture<Option<Bytes>>;
    /// The events among `seqs` still kept, in the order of `seqs`, without their bodies.
    fn accepted(&self, seqs: Vec<u64>) -> StoreFuture<Vec<StoredEvent>>;
}

/// Reads every record of `store` from the beginning (in pages), passing each to `apply`;
/// returns how many there were.
pub async fn replay<S: Store>(
    store: &mut S,
    mut apply: impl FnMut(Record),
) -> Result<u64, StoreError> {
    const PAGE: usize = 4096;
    let mut from = Position::START;
    let mut count = 0;
    loop {
        let page = store.read(from, PAGE).await?;
        let Some(last) = page.last() else {
            return Ok(count);
        };
        from = Position(last.position.0 + 1);
        for entry in page {
            count += 1;
            apply(entry.record);
        }
    }
}

/// Every record of `store`, in order (tests and tools: a server replays with [`replay`]).
pub async fn load_all<S: Store>(store: &mut S) -> Result<Vec<Record>, StoreError> {
    let mut records = Vec::new();
    replay(store, |r| records.push(r)).await?;
    Ok(records)
}

/// The store chosen at run time ([`crate::options::StoreKind`]).
#[derive(Debug)]
pub enum AnyStore {
    /// The embedded redb store.
    Embedded(RedbStore),
    /// Memory only.
    Memory(MemoryStore),
    /// A NATS JetStream stream.
    #[cfg(feature = "jetstream")]
    JetStream(Box<jetstream::JetStreamStore>),
}

impl Store for AnyStore {
    async fn read(&mut self, from: Position, max: usize) -> Result<Vec<Entry>, StoreError> {
        match self {
            AnyStore::Embedded(s) => s.read(from, max).await,
            AnyStore::Memory(s) => s.read(from, max).await,
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.read(from, max).await,
        }
    }

    async fn append(&mut self, records: Vec<Record>) -> Result<Position, StoreError> {
        match self {
            AnyStore::Embedded(s) => s.append(records).await,
            AnyStore::Memory(s) => s.append(records).await,
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.append(records).await,
        }
    }

    async fn compact(&mut self, snapshot: Vec<Record>) -> Result<Position, StoreError> {
        match self {
            AnyStore::Embedded(s) => s.compact(snapshot).await,
            AnyStore::Memory(s) => s.compact(snapshot).await,
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.compact(snapshot).await,
        }
    }

    fn end(&self) -> Position {
        match self {
            AnyStore::Embedded(s) => s.end(),
            AnyStore::Memory(s) => s.end(),
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.end(),
        }
    }

    fn len(&self) -> u64 {
        match self {
            AnyStore::Embedded(s) => s.len(),
            AnyStore::Memory(s) => s.len(),
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.len(),
        }
    }

    async fn follow(&mut self, after: Position) -> Result<(), StoreError> {
        match self {
            AnyStore::Embedded(s) => s.follow(after).await,
            AnyStore::Memory(s) => s.follow(after).await,
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.follow(after).await,
        }
    }

    async fn claim(&mut self) -> Result<Position, StoreError> {
        match self {
            AnyStore::Embedded(s) => s.claim().await,
            AnyStore::Memory(s) => s.claim().await,
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.claim().await,
        }
    }

    fn applied_seq(&self) -> u64 {
        match self {
            AnyStore::Embedded(s) => s.applied_seq(),
            AnyStore::Memory(s) => s.applied_seq(),
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.applied_seq(),
        }
    }

    async fn latest_seq(&mut self) -> Result<u64, StoreError> {
        match self {
            AnyStore::Embedded(s) => s.latest_seq().await,
            AnyStore::Memory(s) => s.latest_seq().await,
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.latest_seq().await,
        }
    }

    async fn bind_identity(&mut self, ca_sha256: &str) -> Result<(), StoreError> {
        match self {
            AnyStore::Embedded(s) => s.bind_identity(ca_sha256).await,
            AnyStore::Memory(s) => s.bind_identity(ca_sha256).await,
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.bind_identity(ca_sha256).await,
        }
    }

    fn events(&self) -> Arc<dyn EventReader> {
        match self {
            AnyStore::Embedded(s) => s.events(),
            AnyStore::Memory(s) => s.events(),
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.events(),
        }
    }

    fn stored_bytes(&self) -> u64 {
        match self {
            AnyStore::Embedded(s) => s.stored_bytes(),
            AnyStore::Memory(s) => s.stored_bytes(),
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.stored_bytes(),
        }
    }

    fn capacity(&self) -> Option<u64> {
        match self {
            AnyStore::Embedded(s) => s.capacity(),
            AnyStore::Memory(s) => s.capacity(),
            #[cfg(feature = "jetstream")]
            AnyStore::JetStream(s) => s.capacity(),
        }
    }
}
