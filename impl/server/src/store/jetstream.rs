//! The log on a NATS JetStream stream: a store that outlives the machine `ace serve` runs on.
//!
//! One stream (`ACE` by default; file storage, replicated over `replicas` servers) holds,
//! under the subject prefix `<stream in lower case>` (`ace`):
//!
//! | subject | what |
//! | --- | --- |
//! | `ace.log` | the records, one message per append (split in parts over `max_payload`) |
//! | `ace.ev.<first>.<last>.<bytes>` | the accepted events of one append: metadata and bodies |
//! | `ace.snap` | where the latest complete snapshot starts |
//! | `ace.id` | the SHA-256 of the CA certificate the log was made with (never the key) |
//!
//! **One writer.** Every message of an append is published with
//! `Nats-Expected-Last-Subject-Sequence` of the log subject: a writer that did not see the
//! log's last append is refused (error 10071) and gets [`StoreError::Fenced`], so two
//! processes on one stream can never both decide on stale state; the one fenced stops.
//! The event messages carry the same guard (`...-Subject: ace.log`), so a fenced writer
//! leaves nothing behind either.
//!
//! **Durable before acknowledged.** An append returns once JetStream acknowledged every
//! message (a quorum has it; fsynced too with `sync_interval: always` on the servers). The
//! event messages go first, the records last: a crash in between leaves events no record
//! refers to, whose sequence numbers the next writer reuses; its first append removes them.
//! An append the servers cannot take now (no quorum during a leader election, a server down)
//! is retried with the same `Nats-Msg-Id`s, so a retry of what did land is a duplicate the
//! server drops, for up to `unavailable_timeout`; then the append fails with
//! [`StoreError::Unavailable`].
//!
//! **Parts.** A batch larger than the servers' `max_payload` is published as several
//! messages (`Ace-Part: i/k`, one `Ace-Batch` id); a reader applies a batch only when all its
//! parts are there, so a crash between parts loses the whole batch, never half of it.
//!
//! **Compaction** publishes the snapshot as a batch marked `Ace-Snapshot`, then points
//! `ace.snap` at it, then purges the log before it and the event messages no subscription
//! holds. A reader starts at the pointed snapshot and skips any other (one a crash left
//! unpointed).
//!
//! Positions are `(stream sequence of the batch's first message) << 32 | index in batch`.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ace_model::Record;
use ace_model::bus::{SeqSet, StoredEvent};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::codec::{self, Encoded, held_events, journal_entries, journal_payload};
use super::{Entry, EventReader, Position, Store, StoreError, StoreFuture};
use crate::nats::{Message, Nats, NatsError, Publish, StreamConfig, Subscription};

/// The oldest nats-server the store runs on: older ones have no `sync_interval: always`,
/// no subject guard on another subject, and diverged under `kill -9` in ACE's tests.
pub const MIN_SERVER_VERSION: (u64, u64) = (2, 11);

/// Where the stream is and how it is made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JetStreamOptions {
    /// The NATS servers to connect to (`nats://host:port`); any one that answers will do.
    pub servers: Vec<String>,
    /// The stream's name; its subjects start with the name in lower case.
    pub stream: String,
    /// Servers that keep a copy of the stream (when ACE creates it): 3 survives one loss.
    pub replicas: usize,
    /// A NATS credentials file (`.creds`), if the servers require one.
    pub credentials: Option<PathBuf>,
    /// TLS to the servers.
    pub tls: NatsTls,
    /// The stream's size limit in bytes (when ACE creates it); `None` for none. At it the
    /// servers refuse new messages rather than dropping old ones.
    pub max_bytes: Option<u64>,
    /// How long an append or a read keeps trying while the servers cannot answer.
    pub unavailable_timeout: Duration,
    /// How this server takes part among the replicas on the stream.
    pub replica: crate::replica::ReplicaOptions,
}

impl Default for JetStreamOptions {
    fn default() -> Self {
        JetStreamOptions {
            servers: vec!["nats://127.0.0.1:4222".into()],
            stream: "ACE".into(),
            replicas: 3,
            credentials: None,
            tls: NatsTls::default(),
            max_bytes: None,
            unavailable_timeout: Duration::from_secs(30),
            replica: crate::replica::ReplicaOptions::default(),
        }
    }
}

/// TLS to the NATS servers (`tls://` URLs, or any URL once a CA is given).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// PEM file of the CA certificate(s) that sign the servers' certificates: the
    /// connection is then TLS only, verified against them.
    pub ca: Option<PathBuf>,
    /// PEM files of a client certificate and its private key, for servers that verify
    /// their clients.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The subjects of one stream.
#[derive(Debug)]
struct Subjects {
    log: String,
    snap: String,
    /// The CA the log was made with (its certificate's SHA-256).
    id: String,
    /// Prefix of the event messages' subjects.
    ev: String,
}

impl Subjects {
    fn new(stream: &str) -> Self {
        let prefix = stream.to_ascii_lowercase();
        Subjects {
            log: format!("{prefix}.log"),
            snap: format!("{prefix}.snap"),
            id: format!("{prefix}.id"),
            ev: format!("{prefix}.ev"),
        }
    }
}

/// A log on a JetStream stream (see the module documentation).
#[derive(Debug)]
pub struct JetStreamStore {
    log: Log,
    /// The stream's size limit, if it has one.
    max_bytes: Option<u64>,
    subjects: Arc<Subjects>,
    /// Stream sequence of the last message on the log subject this store wrote or read: what
    /// the next append expects.
    last_log: u64,
    /// The log's last sequence when the store was opened: batches after it were appended by
    /// another writer while this one followed, and tell the event index what they added.
    opened_at: u64,
    /// The last log sequence of the last batch read or written, to tell a gap (a compaction
    /// that purged what this reader had not read yet) from a continuation (`Ace-Prev`).
    chain: Option<u64>,
    /// A subscription to the log subject, telling a follower that something was published.
    hints: Option<Hints>,
    /// Stream sequence of the first message of the snapshot the log starts from (0: none).
    snapshot_from: u64,
    /// Records kept since the snapshot (counted as they are read back and appended).
    len: u64,
    /// Largest payload of one message.
    part_bytes: usize,
    events: Arc<Events>,
    /// The batch read last (a snapshot is read a page at a time).
    last_batch: Option<Batch>,
    unavailable_timeout: Duration,
    /// Bugs of the zoo switched on (only `unguarded-append` is the store's).
    bugs: ace_model::bugs::Bugs,
}

/// A subscription to the log subject.
struct Hints(Subscription);

impl std::fmt::Debug for Hints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hints")
    }
}

/// One batch of records read back.
#[derive(Clone, Debug)]
struct Batch {
    /// Stream sequence of its first part.
    first: u64,
    /// The log sequence its writer expected before it (`Ace-Prev`; `None` in logs written
    /// before the header existed).
    prev: Option<u64>,
    /// The event messages published with it (`Ace-Events`).
    events: Vec<String>,
    /// The last log message before it that the reader passed over (a broken batch).
    skipped: Option<u64>,
    /// Stream sequence of its last part.
    last: u64,
    snapshot: bool,
    records: Arc<Vec<Record>>,
}

/// The event messages: what the store keeps apart, shared with the readers.
#[derive(Debug)]
struct Events {
    log: Log,
    index: Mutex<EventIndex>,
    /// Subjects whose messages no subscription holds any more, to purge.
    forget: mpsc::UnboundedSender<String>,
}

#[derive(Debug, Default)]
struct EventIndex {
    /// By the first sequence number each message holds.
    ranges: BTreeMap<u64, Range>,
    /// Of the kept messages.
    bytes: u64,
    /// The messages read (or written) last, decoded.
    cache: VecDeque<(u64, Arc<Vec<Encoded>>)>,
}

const CACHED_MESSAGES: usize = 32;

/// One event message.
#[derive(Debug)]
struct Range {
    last: u64,
    subject: String,
    bytes: u64,
    /// Its events some subscription may still need.
    held: SeqSet,
}

impl EventIndex {
    fn find(&self, seq: u64) -> Option<(u64, &Range)> {
        self.ranges
            .range(..=seq)
            .next_back()
            .filter(|(_, r)| seq <= r.last)
            .map(|(first, r)| (*first, r))
    }

    fn cached(&self, first: u64) -> Option<Arc<Vec<Encoded>>> {
        self.cache
            .iter()
            .find(|(f, _)| *f == first)
            .map(|(_, e)| Arc::clone(e))
    }

    fn remember(&mut self, first: u64, entries: Arc<Vec<Encoded>>) {
        self.cache.retain(|(f, _)| *f != first);
        if self.cache.len() >= CACHED_MESSAGES {
            self.cache.pop_front();
        }
        self.cache.push_back((first, entries));
    }

    /// Adds the message holding `first..=last`, of which `held` may still be needed.
    fn add(&mut self, first: u64, last: u64, subject: String, bytes: u64, held: SeqSet) {
        self.bytes += bytes;
        self.ranges.insert(
            first,
            Range {
                last,
                subject,
                bytes,
                held,
            },
        );
    }

    /// Adds the message `subject` (an event message's) as holding its whole range, unless it
    /// is known already.
    fn add_listed(&mut self, subject: &str, prefix: &str) {
        let Some((first, last, bytes)) = parse_range(subject, prefix) else {
            return;
        };
        if self
            .ranges
            .get(&first)
            .is_some_and(|r| r.subject == subject)
        {
            return;
        }
        let mut held = SeqSet::new();
        held.insert_range(first..=last);
        self.add(first, last, subject.to_owned(), bytes, held);
    }

    /// Marks `released` as needed by no one; returns the subjects of messages now unneeded.
    fn release(&mut self, released: &SeqSet) -> Vec<String> {
        let mut emptied = Vec::new();
        for seq in released.iter() {
            if let Some((first, _)) = self.find(seq)
                && let Some(range) = self.ranges.get_mut(&first)
            {
                range.held.remove(seq);
                if range.held.is_empty() {
                    emptied.push(first);
                }
            }
        }
        emptied
            .into_iter()
            .filter_map(|first| self.remove(first))
            .collect()
    }

    /// Removes the range starting at `first`; returns its subject.
    fn remove(&mut self, first: u64) -> Option<String> {
        let range = self.ranges.remove(&first)?;
        self.bytes -= range.bytes;
        self.cache.retain(|(f, _)| *f != first);
        Some(range.subject)
    }

    /// The ranges that hold any of `first..=last`.
    fn overlapping(&self, first: u64, last: u64) -> Vec<u64> {
        let mut found: Vec<u64> = self.ranges.range(first..=last).map(|(f, _)| *f).collect();
        if let Some((f, _)) = self.find(first)
            && !found.contains(&f)
        {
            found.push(f);
        }
        found
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{what}: {e}"))
}

fn lock(index: &Mutex<EventIndex>) -> Result<MutexGuard<'_, EventIndex>, StoreError> {
    index
        .lock()
        .map_err(|_| StoreError::Corrupt("a thread panicked while holding the event index".into()))
}

/// The stream on a connection, and the reads and purges the store makes of it.
#[derive(Clone, Debug)]
struct Log {
    nats: Arc<dyn Nats>,
    stream: String,
    /// How long a read keeps trying while the servers cannot answer (an election).
    patience: Duration,
}

impl Log {
    /// Runs `read` until it answers, retrying while the servers cannot answer for up to
    /// `patience`, as an append does: a replica starting during an election replays the log
    /// once it has a leader rather than giving up.
    async fn patiently<T, F>(&self, what: &str, read: impl Fn() -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, NatsError>>,
    {
        crate::nats::patiently(self.patience, what, read)
            .await
            .map_err(|e| unavailable(what, e))
    }

    async fn last_message(&self, subject: &str) -> Result<Option<Message>, StoreError> {
        self.patiently(&format!("cannot read {subject}"), || {
            self.nats.last_message(&self.stream, subject)
        })
        .await
    }

    async fn last_seq(&self, subject: &str) -> Result<u64, StoreError> {
        Ok(self.last_message(subject).await?.map_or(0, |m| m.seq))
    }

    async fn next_message(&self, subject: &str, seq: u64) -> Result<Option<Message>, StoreError> {
        self.patiently(&format!("cannot read {subject}"), || {
            self.nats.next_message(&self.stream, subject, seq)
        })
        .await
    }

    /// Removes the messages on `subject` (`below`: only those before that sequence).
    async fn purge(&self, subject: &str, below: Option<u64>) -> Result<(), StoreError> {
        self.nats
            .purge(&self.stream, subject, below)
            .await
            .map_err(|e| unavailable(&format!("cannot purge {subject}"), e))
    }

    /// Where the latest complete snapshot starts (0: there is none).
    async fn snapshot_pointer(&self, subject: &str) -> Result<u64, StoreError> {
        match self.last_message(subject).await? {
            Some(message) => serde_json::from_slice::<serde_json::Value>(&message.payload)
                .ok()
                .and_then(|v| v.get("from").and_then(serde_json::Value::as_u64))
                .ok_or_else(|| StoreError::Corrupt("the snapshot pointer is unreadable".into())),
            None => Ok(0),
        }
    }

    /// The event messages the stream keeps, each taken as holding every event in its range.
    async fn list_events(&self, prefix: &str) -> Result<EventIndex, StoreError> {
        let mut index = EventIndex::default();
        let filter = format!("{prefix}.>");
        let subjects = self
            .patiently("cannot list the event messages", || {
                self.nats.subjects(&self.stream, &filter)
            })
            .await?;
        for subject in subjects {
            index.add_listed(&subject, prefix);
        }
        Ok(index)
    }
}

/// `major.minor` of a server's version string (`2.15.1`).
pub fn parse_version(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim_start_matches('v').split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The events message subject's parts after the prefix: `<first>.<last>.<bytes>`.
fn parse_range(subject: &str, prefix: &str) -> Option<(u64, u64, u64)> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let mut parts = rest.split('.');
    let first = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    let bytes = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((first, last, bytes))
}

/// `i/k` of a part header.
fn parse_part(value: &str) -> Option<(usize, usize)> {
    let (i, k) = value.split_once('/')?;
    let (i, k) = (i.parse().ok()?, k.parse().ok()?);
    (1..=k).contains(&i).then_some((i, k))
}

impl JetStreamStore {
    /// Connects to the servers `options` names and opens the log on them.
    #[cfg(feature = "jetstream")]
    pub async fn open(options: &JetStreamOptions) -> Result<Self, StoreError> {
        let nats = crate::nats::client::NatsClient::connect(options).await?;
        Self::open_on(nats, options).await
    }

    /// On `nats`: refuses servers older than [`MIN_SERVER_VERSION`], makes the stream unless
    /// it exists, and finds the log's end, its snapshot and its event messages.
    pub async fn open_on(
        nats: Arc<dyn Nats>,
        options: &JetStreamOptions,
    ) -> Result<Self, StoreError> {
        let servers = options.servers.join(",");
        let info = nats.server_info();
        match parse_version(&info.version) {
            Some(v) if v >= MIN_SERVER_VERSION => {}
            _ => {
                return Err(StoreError::Unavailable(format!(
                    "nats-server {} at {servers} is too old: the replicated store needs {}.{} or \
                     newer (older servers have no `sync_interval: always` and may diverge after a crash)",
                    info.version, MIN_SERVER_VERSION.0, MIN_SERVER_VERSION.1
                )));
            }
        }
        let part_bytes = info.max_payload.saturating_sub(4096).max(4096);
        let subjects = Subjects::new(&options.stream);
        let config = StreamConfig {
            name: options.stream.clone(),
            subjects: vec![format!("{}.>", options.stream.to_ascii_lowercase())],
            replicas: options.replicas,
            max_bytes: options.max_bytes,
            duplicate_window: Duration::from_secs(120),
        };
        let log = Log {
            nats,
            stream: options.stream.clone(),
            patience: options.unavailable_timeout,
        };
        // A cluster that has just started has no JetStream meta leader for a moment, and a
        // stream just made (by a replica started at the same time) may have no leader yet:
        // both answer with timeouts, retried for up to `unavailable_timeout`. Other refusals
        // (a bad name, too few servers) are reported at once.
        let deadline = tokio::time::Instant::now() + options.unavailable_timeout;
        let (max_bytes, last_log, snapshot_from, index) = loop {
            let attempt = async {
                let max_bytes = log.nats.create_stream(config.clone()).await.map_err(|e| {
                    let what = format!(
                        "cannot open or create stream {} with {} replicas (is JetStream enabled \
                         on enough servers?)",
                        options.stream, options.replicas
                    );
                    match e {
                        NatsError::Unavailable(_) => unavailable(&what, e),
                        e => StoreError::Io(std::io::Error::other(format!("{what}: {e}"))),
                    }
                })?;
                let last_log = log.last_seq(&subjects.log).await?;
                let snapshot_from = log.snapshot_pointer(&subjects.snap).await?;
                let index = log.list_events(&subjects.ev).await?;
                Ok::<_, StoreError>((max_bytes, last_log, snapshot_from, index))
            };
            match attempt.await {
                Ok(opened) => break opened,
                Err(StoreError::Unavailable(e)) if tokio::time::Instant::now() < deadline => {
                    tracing::warn!(stream = %options.stream, error = %e, "the stream cannot be opened yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let (forget, forgotten) = mpsc::unbounded_channel();
        tokio::spawn(purge_forgotten(log.clone(), forgotten));
        let events = Arc::new(Events {
            log: log.clone(),
            index: Mutex::new(index),
            forget,
        });
        Ok(JetStreamStore {
            log,
            max_bytes,
            subjects: Arc::new(subjects),
            last_log,
            opened_at: last_log,
            chain: None,
            hints: None,
            snapshot_from,
            len: 0,
            part_bytes,
            events,
            last_batch: None,
            unavailable_timeout: options.unavailable_timeout,
            bugs: ace_model::bugs::Bugs::NONE,
        })
    }

    /// This store with `bugs` of the zoo switched on.
    #[must_use]
    pub fn with_bugs(mut self, bugs: ace_model::bugs::Bugs) -> Self {
        self.bugs = bugs;
        self
    }

    /// `message` guarded by the log's end as this writer saw it (not with
    /// `unguarded-append`).
    fn guarded(&self, message: Publish) -> Publish {
        if self.bugs.has(ace_model::bugs::Bug::UnguardedAppend) {
            return message;
        }
        if message.subject == self.subjects.log {
            message.expect_last(self.last_log)
        } else {
            message.expect_last_of(self.last_log, self.subjects.log.as_str())
        }
    }

    /// The batch whose first part is at `seq` or after, if any is complete.
    async fn batch_at(&mut self, mut seq: u64) -> Result<Option<Batch>, StoreError> {
        if let Some(batch) = &self.last_batch
            && batch.first == seq
        {
            return Ok(Some(batch.clone()));
        }
        // The last log message passed over (the rest of a broken batch): what the batch found
        // may say came before it.
        let mut skipped = None;
        'batch: loop {
            let Some(message) = self.log.next_message(&self.subjects.log, seq).await? else {
                return Ok(None);
            };
            let id = message.header("Ace-Batch").unwrap_or_default().to_owned();
            let (part, parts) = message
                .header("Ace-Part")
                .map_or(Some((1, 1)), parse_part)
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("log message {} has a bad part", message.seq))
                })?;
            if part != 1 {
                // The rest of a batch whose first part was purged or broken off.
                skipped = Some(message.seq);
                seq = message.seq + 1;
                continue;
            }
            let snapshot = message.header("Ace-Snapshot").is_some();
            let prev = message.header("Ace-Prev").and_then(|v| v.parse().ok());
            let events = message
                .header("Ace-Events")
                .map(|v| {
                    v.split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let first = message.seq;
            let mut last = first;
            let mut payload = message.payload.to_vec();
            for i in 2..=parts {
                let Some(next) = self.log.next_message(&self.subjects.log, last + 1).await? else {
                    // A batch cut short at the end of the log: it never completed.
                    return Ok(None);
                };
                let same = next.header("Ace-Batch") == Some(id.as_str())
                    && next.header("Ace-Part").and_then(parse_part) == Some((i, parts));
                if !same {
                    // Cut short by a crash; another batch follows.
                    skipped = Some(last);
                    seq = next.seq;
                    continue 'batch;
                }
                last = next.seq;
                payload.extend_from_slice(&next.payload);
            }
            let records = journal_entries(&payload)?
                .iter()
                .map(|e| codec::decode(&e.record, format_args!("log message {first}")))
                .collect::<Result<Vec<_>, _>>()?;
            let batch = Batch {
                first,
                prev,
                events,
                skipped,
                last,
                snapshot,
                records: Arc::new(records),
            };
            self.last_batch = Some(batch.clone());
            return Ok(Some(batch));
        }
    }

    /// Publishes `payload` as one message (or parts) on the log subject, guarded by the
    /// log's last sequence; returns the stream sequences of its first and last part.
    async fn publish_log(
        &mut self,
        payload: &[u8],
        snapshot: bool,
        batch_id: &str,
        events: &[String],
    ) -> Result<(u64, u64), StoreError> {
        let parts: Vec<&[u8]> = if payload.is_empty() {
            vec![payload]
        } else {
            payload.chunks(self.part_bytes).collect()
        };
        let k = parts.len();
        let mut first = None;
        for (i, part) in parts.into_iter().enumerate() {
            let message = Publish::new(&self.subjects.log, Bytes::copy_from_slice(part))
                .id(format!("{batch_id}-{}", i + 1))
                .header("Ace-Batch", batch_id);
            let mut message = self.guarded(message);
            if k > 1 {
                message = message.header("Ace-Part", format!("{}/{k}", i + 1));
            }
            if snapshot {
                message = message.header("Ace-Snapshot", "1");
            }
            if i == 0 {
                message = message.header("Ace-Prev", self.last_log.to_string());
                if !events.is_empty() {
                    message = message.header("Ace-Events", events.join(","));
                }
            }
            let seq = self.publish(message).await?;
            self.last_log = seq;
            first.get_or_insert(seq);
        }
        Ok((first.unwrap_or(self.last_log), self.last_log))
    }

    /// Publishes one message and waits for JetStream to acknowledge it, retrying while the
    /// servers cannot take it; returns its stream sequence.
    async fn publish(&self, message: Publish) -> Result<u64, StoreError> {
        let deadline = tokio::time::Instant::now() + self.unavailable_timeout;
        let mut wait = Duration::from_millis(50);
        let subject = message.subject.clone();
        loop {
            let error = match self
                .log
                .nats
                .publish(&self.log.stream, message.clone())
                .await
            {
                Ok(ack) => return Ok(ack.seq),
                Err(e) => e,
            };
            match &error {
                NatsError::WrongLastSequence(_) => {
                    return Err(StoreError::Fenced(format!(
                        "another writer appended to the log {subject} (this one expected it \
                         to end at {}): {error}",
                        self.last_log
                    )));
                }
                NatsError::Full(e) => {
                    return Err(StoreError::Full(format!(
                        "the stream refused a message: {e}"
                    )));
                }
                NatsError::Unavailable(_) if tokio::time::Instant::now() + wait <= deadline => {}
                _ => return Err(unavailable(&format!("cannot publish to {subject}"), error)),
            }
            tracing::warn!(subject, error = %error, "the log cannot take an append now; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }

    /// Appends `records` (a snapshot if `snapshot`): events first, then the records.
    async fn write(&mut self, records: &[Record], snapshot: bool) -> Result<u64, StoreError> {
        let encoded = codec::encode(records)?;
        let batch_id = format!("{:016x}", self.log.nats.nonce());
        // The events, in messages of at most `part_bytes`, each of consecutive entries.
        let mut groups: Vec<Vec<Encoded>> = Vec::new();
        let mut size = 0;
        let mut logged = Vec::with_capacity(encoded.len());
        let mut released = SeqSet::new();
        for entry in encoded {
            released.add_all(&entry.released);
            if let Some(body) = entry.body {
                let kept = Encoded {
                    record: entry.record.clone(),
                    body: Some(body),
                    released: SeqSet::new(),
                };
                let bytes = kept.kept_bytes() as usize + 17;
                if groups.is_empty() || size + bytes > self.part_bytes {
                    groups.push(Vec::new());
                    size = 0;
                }
                size += bytes;
                if let Some(group) = groups.last_mut() {
                    group.push(kept);
                }
            }
            logged.push(Encoded {
                record: entry.record,
                body: None,
                released: SeqSet::new(),
            });
        }
        // Event messages a crashed writer left behind hold the sequence numbers now reused.
        for group in &groups {
            let (first, last) = seq_range(group);
            let stale: Vec<String> = {
                let mut index = lock(&self.events.index)?;
                let found = index.overlapping(first, last);
                found.into_iter().filter_map(|f| index.remove(f)).collect()
            };
            for subject in stale {
                tracing::info!(subject, "removing events a crashed writer left unrecorded");
                self.log.purge(&subject, None).await?;
            }
        }
        let mut written = Vec::new();
        for group in groups {
            let (first, last) = seq_range(&group);
            let payload = journal_payload(&group)?;
            let bytes = payload.len() as u64;
            let subject = format!("{}.{first}.{last}.{bytes}", self.subjects.ev);
            let message = self.guarded(
                Publish::new(subject.clone(), payload).id(format!("{batch_id}-ev-{first}")),
            );
            self.publish(message).await?;
            written.push((first, last, subject, bytes, group));
        }
        let payload = journal_payload(&logged)?;
        let subjects: Vec<String> = written.iter().map(|w| w.2.clone()).collect();
        let (first, last) = self
            .publish_log(&payload, snapshot, &batch_id, &subjects)
            .await?;
        self.chain = Some(last);
        let mut index = lock(&self.events.index)?;
        for (first, last, subject, bytes, group) in written {
            let held = group
                .iter()
                .filter_map(|e| e.body.as_ref().map(|(seq, _)| *seq))
                .collect::<SeqSet>();
            index.add(first, last, subject, bytes, held);
            index.remember(first, Arc::new(group));
        }
        for subject in index.release(&released) {
            let _ = self.events.forget.send(subject);
        }
        Ok(first)
    }
}

fn seq_range(group: &[Encoded]) -> (u64, u64) {
    let seqs = group
        .iter()
        .filter_map(|e| e.body.as_ref().map(|(s, _)| *s));
    let (mut first, mut last) = (u64::MAX, 0);
    for seq in seqs {
        first = first.min(seq);
        last = last.max(seq);
    }
    (first, last)
}

/// Purges the subjects it is sent; a failure leaves the messages to the next compaction.
async fn purge_forgotten(log: Log, mut subjects: mpsc::UnboundedReceiver<String>) {
    while let Some(subject) = subjects.recv().await {
        if let Err(e) = log.purge(&subject, None).await {
            tracing::warn!(subject, error = %e, "cannot purge released events (the next compaction will)");
        }
    }
}

const INDEX_BITS: u32 = 32;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;

impl Store for JetStreamStore {
    async fn read(&mut self, from: Position, max: usize) -> Result<Vec<Entry>, StoreError> {
        let (mut seq, mut skip) = (from.0 >> INDEX_BITS, (from.0 & INDEX_MASK) as usize);
        if from == Position::START {
            self.len = 0;
            if self.chain.is_some() {
                // Read again from the start (a follower that fell behind a compaction): as
                // if opened now.
                self.reopen().await?;
            }
        }
        if seq < self.snapshot_from {
            (seq, skip) = (self.snapshot_from, 0);
        }
        loop {
            let Some(batch) = self.batch_at(seq).await? else {
                return Ok(Vec::new());
            };
            if batch.first != seq {
                skip = 0;
            }
            self.arrive(&batch)?;
            if (batch.snapshot && batch.first != self.snapshot_from) || skip >= batch.records.len()
            {
                (seq, skip) = (batch.last + 1, 0);
                continue;
            }
            let entries: Vec<Entry> = batch
                .records
                .iter()
                .enumerate()
                .skip(skip)
                .take(max)
                .map(|(i, record)| Entry {
                    position: Position(batch.first << INDEX_BITS | i as u64),
                    record: record.clone(),
                })
                .collect();
            self.len += entries.len() as u64;
            return Ok(entries);
        }
    }

    async fn append(&mut self, records: Vec<Record>) -> Result<Position, StoreError> {
        self.write(&records, false).await?;
        self.len += records.len() as u64;
        Ok(self.end())
    }

    async fn compact(&mut self, snapshot: Vec<Record>) -> Result<Position, StoreError> {
        let held = held_events(&snapshot);
        let from = self.write(&snapshot, true).await?;
        let pointer = serde_json::json!({ "from": from }).to_string();
        let message = Publish::new(&self.subjects.snap, pointer).id(format!("snap-{from}"));
        self.publish(message).await?;
        self.snapshot_from = from;
        self.len = snapshot.len() as u64;
        self.log.purge(&self.subjects.log, Some(from)).await?;
        let last_snap = self.log.last_seq(&self.subjects.snap).await?;
        self.log.purge(&self.subjects.snap, Some(last_snap)).await?;
        // The events the snapshot no longer holds.
        let gone: Vec<String> = {
            let mut index = lock(&self.events.index)?;
            let mut gone = Vec::new();
            let firsts: Vec<u64> = index.ranges.keys().copied().collect();
            for first in firsts {
                let keep = index.ranges.get_mut(&first).is_some_and(|range| {
                    range.held.intersect_with(&held);
                    !range.held.is_empty()
                });
                if !keep && let Some(subject) = index.remove(first) {
                    gone.push(subject);
                }
            }
            gone
        };
        for subject in gone {
            let _ = self.events.forget.send(subject);
        }
        Ok(self.end())
    }

    fn end(&self) -> Position {
        Position((self.last_log + 1) << INDEX_BITS)
    }

    fn len(&self) -> u64 {
        self.len
    }

    async fn follow(&mut self, after: Position) -> Result<(), StoreError> {
        // Beyond what was read, whatever `after` says (a position inside the last batch read).
        let seq = (after.0 >> INDEX_BITS).max(self.last_log + 1);
        if self.hints.is_none() {
            let hints = self
                .log
                .nats
                .subscribe(&self.subjects.log)
                .await
                .map_err(|e| unavailable("cannot watch the log", e))?;
            self.hints = Some(Hints(hints));
        }
        loop {
            // The subscription only hints (it also sees publishes the stream refused); the
            // stream says.
            if self.log.last_seq(&self.subjects.log).await? >= seq {
                return Ok(());
            }
            if let Some(hints) = &mut self.hints {
                let _ = tokio::time::timeout(FOLLOW_POLL, hints.0.next()).await;
            }
        }
    }

    async fn claim(&mut self) -> Result<Position, StoreError> {
        self.write(&[], false).await?;
        Ok(self.end())
    }

    fn applied_seq(&self) -> u64 {
        self.last_log
    }

    async fn latest_seq(&mut self) -> Result<u64, StoreError> {
        self.log.last_seq(&self.subjects.log).await
    }

    async fn bind_identity(&mut self, ca_sha256: &str) -> Result<(), StoreError> {
        let subject = self.subjects.id.clone();
        // Twice at most: if another server records its CA between the read and the write,
        // the second round checks against that one.
        for _ in 0..2 {
            if let Some(message) = self.log.last_message(&subject).await? {
                let recorded = String::from_utf8_lossy(&message.payload);
                if recorded != ca_sha256 {
                    return Err(StoreError::Fenced(format!(
                        "stream {} was made by a server whose CA certificate has SHA-256 \
                         {recorded}, and this server's CA has {ca_sha256}: every replica needs \
                         the same identity files (ca.crt, ca.key; made once by `ace init`, then \
                         copied)",
                        self.log.stream
                    )));
                }
                return Ok(());
            }
            let message = Publish::new(subject.clone(), ca_sha256.to_owned()).expect_last(0);
            match self.publish(message).await {
                Err(StoreError::Fenced(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
        Err(StoreError::Unavailable(
            "the stream's identity record changed twice while it was read".into(),
        ))
    }

    fn events(&self) -> Arc<dyn EventReader> {
        Arc::new(EventsHandle(Arc::clone(&self.events)))
    }

    fn stored_bytes(&self) -> u64 {
        lock(&self.events.index).map_or(0, |index| index.bytes)
    }

    /// A quarter of the stream's size limit, if it has one: the log holds a record of about
    /// an event's metadata for each event, and a compaction writes a snapshot before it
    /// purges the log it replaces.
    fn capacity(&self) -> Option<u64> {
        self.max_bytes.map(|b| b / 4)
    }
}

impl JetStreamStore {
    /// The connection to the servers (for a replica's lease and its forwarded requests).
    pub fn nats(&self) -> Arc<dyn Nats> {
        Arc::clone(&self.log.nats)
    }

    /// The stream's name.
    pub fn stream_name(&self) -> String {
        self.log.stream.clone()
    }

    /// Forgets what was read and finds the log's end, snapshot and event messages again.
    async fn reopen(&mut self) -> Result<(), StoreError> {
        self.last_log = self.log.last_seq(&self.subjects.log).await?;
        self.opened_at = self.last_log;
        self.snapshot_from = self.log.snapshot_pointer(&self.subjects.snap).await?;
        let index = self.log.list_events(&self.subjects.ev).await?;
        *lock(&self.events.index)? = index;
        self.chain = None;
        self.last_batch = None;
        Ok(())
    }

    /// Takes note of `batch`, read for the first time: checks that it follows what was read
    /// before, and learns the event messages another writer published and released with it.
    fn arrive(&mut self, batch: &Batch) -> Result<(), StoreError> {
        if self.chain.is_some_and(|c| c >= batch.last) {
            return Ok(());
        }
        if let (Some(chain), Some(prev)) = (self.chain, batch.prev)
            && prev != chain
            && batch.skipped != Some(prev)
        {
            return Err(StoreError::Fenced(format!(
                "the log was compacted past what this reader had read (it read up to {chain}, \
                 the next batch follows {prev}): read it again from the start"
            )));
        }
        self.chain = Some(batch.last);
        self.last_log = self.last_log.max(batch.last);
        if batch.first > self.opened_at {
            let mut index = lock(&self.events.index)?;
            for subject in &batch.events {
                index.add_listed(subject, &self.subjects.ev);
            }
            let mut released = SeqSet::new();
            for record in batch.records.iter() {
                released.add_all(&codec::released(record));
            }
            for subject in index.release(&released) {
                let _ = self.events.forget.send(subject);
            }
        }
        Ok(())
    }
}

/// How often a follower asks the servers for the log's end when no hint came.
const FOLLOW_POLL: Duration = Duration::from_millis(500);

impl Events {
    /// The decoded event message holding `seq`, if it is kept.
    async fn message(&self, seq: u64) -> Result<Option<Arc<Vec<Encoded>>>, StoreError> {
        let (first, subject) = {
            let index = lock(&self.index)?;
            let Some((first, range)) = index.find(seq).filter(|(_, r)| r.held.contains(seq)) else {
                return Ok(None);
            };
            if let Some(entries) = index.cached(first) {
                return Ok(Some(entries));
            }
            (first, range.subject.clone())
        };
        let Some(message) = self.log.last_message(&subject).await? else {
            return Ok(None);
        };
        let entries = Arc::new(journal_entries(&message.payload)?);
        lock(&self.index)?.remember(first, Arc::clone(&entries));
        Ok(Some(entries))
    }
}

/// The store's reader of events, for other tasks.
#[derive(Debug)]
struct EventsHandle(Arc<Events>);

impl EventReader for EventsHandle {
    fn body(&self, seq: u64) -> StoreFuture<Option<Bytes>> {
        let this = Arc::clone(&self.0);
        Box::pin(async move {
            let Some(entries) = this.message(seq).await? else {
                return Ok(None);
            };
            Ok(entries.iter().find_map(|e| match &e.body {
                Some((s, body)) if *s == seq => Some(Bytes::from(body.clone())),
                _ => None,
            }))
        })
    }

    fn accepted(&self, seqs: Vec<u64>) -> StoreFuture<Vec<StoredEvent>> {
        let this = Arc::clone(&self.0);
        Box::pin(async move {
            let mut out = Vec::with_capacity(seqs.len());
            for seq in seqs {
                let Some(entries) = this.message(seq).await? else {
                    continue;
                };
                if let Some(entry) = entries
                    .iter()
                    .find(|e| e.body.as_ref().is_some_and(|(s, _)| *s == seq))
                {
                    out.push(codec::stored_event(seq, &entry.record)?);
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_older_than_2_11_are_told_apart() {
        assert_eq!(parse_version("2.15.1"), Some((2, 15)));
        assert_eq!(parse_version("v2.11.0-RC.1"), Some((2, 11)));
        assert!(parse_version("2.9.10").is_some_and(|v| v < MIN_SERVER_VERSION));
        assert!(parse_version("2.10.29").is_some_and(|v| v < MIN_SERVER_VERSION));
        assert!(parse_version("2.11.0").is_some_and(|v| v >= MIN_SERVER_VERSION));
        assert!(parse_version("3.0.0").is_some_and(|v| v >= MIN_SERVER_VERSION));
        assert_eq!(parse_version("nonsense"), None);
    }

    #[test]
    fn event_subjects_and_parts_read_back() {
        assert_eq!(parse_range("ace.ev.5.9.1200", "ace.ev"), Some((5, 9, 1200)));
        assert_eq!(parse_range("ace.ev.5.9", "ace.ev"), None);
        assert_eq!(parse_range("ace.ev.5.9.1.2", "ace.ev"), None);
        assert_eq!(parse_range("other.ev.5.9.1", "ace.ev"), None);
        assert_eq!(parse_part("2/3"), Some((2, 3)));
        assert_eq!(parse_part("0/3"), None);
        assert_eq!(parse_part("4/3"), None);
        assert_eq!(parse_part("x"), None);
    }

    #[test]
    fn the_index_finds_the_message_holding_a_sequence_number() {
        let mut index = EventIndex::default();
        for (first, last) in [(1, 10), (11, 20), (30, 35)] {
            index.ranges.insert(
                first,
                Range {
                    last,
                    subject: format!("ace.ev.{first}.{last}.1"),
                    bytes: 1,
                    held: {
                        let mut held = SeqSet::new();
                        held.insert_range(first..=last);
                        held
                    },
                },
            );
        }
        assert_eq!(index.find(5).map(|(f, _)| f), Some(1));
        assert_eq!(index.find(11).map(|(f, _)| f), Some(11));
        assert_eq!(index.find(25).map(|(f, _)| f), None);
        assert_eq!(index.find(36).map(|(f, _)| f), None);
        let mut over = index.overlapping(8, 31);
        over.sort_unstable();
        assert_eq!(over, vec![1, 11, 30]);
        assert_eq!(index.overlapping(21, 29), Vec::<u64>::new());
    }
}
