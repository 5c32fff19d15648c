//! The simulated disk under `ace serve`: a write is durable only once its sync has finished,
//! and a sync takes simulated time. A crash in the middle of a sync either loses the write or
//! keeps it whole (the seed decides, as a fault), like a real disk whose page cache may or may
//! not have been written back; an atomic commit is never torn.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ace_model::Record;
use ace_model::bus::BusRecord;
use ace_server::store::{Entry, EventReader, MemoryStore, Position, Store, StoreError};

use crate::faults::mix;

/// What the disk tells the world.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskNote {
    /// A sync made this many records durable, this many of them accepted events.
    Synced {
        /// Records.
        records: usize,
        /// Accepted events among them.
        events: usize,
    },
    /// At a restart, the unsynced write of this many records was lost.
    Lost(usize),
    /// At a restart, the unsynced write of this many records had reached the disk after all.
    Kept(usize),
}

/// A write not yet synced.
#[derive(Clone, Debug)]
enum Unsynced {
    Append(Vec<Record>),
    Compact(Vec<Record>),
}

/// The disk: durable records, the write being synced, and the fate of that write at a crash.
/// Clones share the disk (the host's closure keeps one across restarts).
#[derive(Clone)]
pub struct SimDisk {
    durable: MemoryStore,
    unsynced: Arc<Mutex<Option<Unsynced>>>,
    rng: Arc<Mutex<u64>>,
    sync_ms: (u64, u64),
    lose_unsynced: bool,
    notes: Arc<dyn Fn(DiskNote) + Send + Sync>,
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDisk")
            .field("sync_ms", &self.sync_ms)
            .field("lose_unsynced", &self.lose_unsynced)
            .finish_non_exhaustive()
    }
}

fn poisoned() -> StoreError {
    StoreError::Io(io::Error::other("a simulated disk's lock was poisoned"))
}

impl SimDisk {
    /// An empty disk whose syncs take `sync_ms` (a range, drawn from `seed`); at a crash an
    /// unsynced write is lost if `lose_unsynced`, kept whole otherwise.
    pub fn new(
        seed: u64,
        sync_ms: (u64, u64),
        lose_unsynced: bool,
        notes: Arc<dyn Fn(DiskNote) + Send + Sync>,
    ) -> SimDisk {
        SimDisk {
            durable: MemoryStore::default(),
            unsynced: Arc::default(),
            rng: Arc::new(Mutex::new(seed ^ 0xd15c)),
            sync_ms,
            lose_unsynced,
            notes,
        }
    }

    /// The durable records.
    pub fn durable(&self) -> Vec<Record> {
        self.durable.records()
    }

    /// The disk as the next process finds it after a crash (or a clean stop): the write that
    /// was being synced met its fate, lost or kept whole as the seed decided.
    pub fn restart(&self) -> Result<SimDisk, StoreError> {
        let unsynced = self.unsynced.lock().map_err(|_| poisoned())?.take();
        if let Some(write) = unsynced {
            let n = match &write {
                Unsynced::Append(r) | Unsynced::Compact(r) => r.len(),
            };
            if self.lose_unsynced {
                (self.notes)(DiskNote::Lost(n));
            } else {
                // Nobody waited for this sync, but the disk finished it.
                (self.notes)(DiskNote::Kept(n));
                self.apply(write)?;
            }
        }
        Ok(self.clone())
    }

    fn sync_time(&self) -> Duration {
        let (lo, hi) = self.sync_ms;
        let r = self.rng.lock().map(|mut s| mix(&mut s)).unwrap_or(0);
        Duration::from_micros(lo * 1000 + r % ((hi - lo) * 1000 + 1))
    }

    /// Writes `write` out: unsynced first, durable once the sync has taken its time.
    async fn sync(&mut self, write: Unsynced) -> Result<Position, StoreError> {
        *self.unsynced.lock().map_err(|_| poisoned())? = Some(write.clone());
        tokio::time::sleep(self.sync_time()).await;
        self.apply(write)?;
        *self.unsynced.lock().map_err(|_| poisoned())? = None;
        Ok(self.durable.end())
    }

    fn apply(&self, write: Unsynced) -> Result<(), StoreError> {
        match write {
            Unsynced::Append(records) => {
                let events = records
                    .iter()
                    .filter(|r| matches!(r, Record::Bus(BusRecord::EventAccepted { .. })))
                    .count();
                let n = records.len();
                self.durable.append_now(records)?;
                (self.notes)(DiskNote::Synced { records: n, events });
            }
            Unsynced::Compact(snapshot) => {
                self.durable.compact_now(snapshot)?;
            }
        }
        Ok(())
    }
}

impl Store for SimDisk {
    async fn read(&mut self, from: Position, max: usize) -> Result<Vec<Entry>, StoreError> {
        self.durable.read(from, max).await
    }

    async fn append(&mut self, records: Vec<Record>) -> Result<Position, StoreError> {
        self.sync(Unsynced::Append(records)).await
    }

    async fn compact(&mut self, snapshot: Vec<Record>) -> Result<Position, StoreError> {
        self.sync(Unsynced::Compact(snapshot)).await
    }

    fn end(&self) -> Position {
        self.durable.end()
    }

    fn len(&self) -> u64 {
        self.durable.len()
    }

    async fn follow(&mut self, after: Position) -> Result<(), StoreError> {
        self.durable.follow(after).await
    }

    fn events(&self) -> Arc<dyn EventReader> {
        self.durable.events()
    }

    fn stored_bytes(&self) -> u64 {
        self.durable.stored_bytes()
    }
}
