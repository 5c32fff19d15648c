//! A JetStream stand-in: the subset of NATS JetStream ACE uses, in memory and deterministic,
//! for simulated worlds where the Go server cannot run.
//!
//! One [`StandIn`] is a cluster; [`StandIn::connect`] gives each replica its own connection.
//! It keeps streams (publishes guarded by a subject's last sequence, `Nats-Msg-Id` dedupe
//! within the duplicate window, size limits with new messages refused, direct gets, subject
//! lists, purges), key-value buckets on streams of their own as JetStream keeps them (one
//! value per key, revisions that are stream sequences, entries expiring after `max_age`,
//! delete markers), and core publish/subscribe with no-responders answers. Every operation
//! takes simulated time (`tokio::time`); iteration is ordered and ids come from the seed, so
//! a world replays exactly.
//!
//! Faults, as a simulation injects them:
//! - [`StandIn::move_leader`]: the streams' leaders move; for the election, every stream
//!   operation waits out the client's timeout and fails as unavailable. A publish being
//!   replicated when the leader moves is either lost or kept with its acknowledgement lost
//!   (the seed decides): the client is told it is unavailable either way, as a real client
//!   times out; what it acknowledged is never lost (the quorum had it).
//! - [`StandIn::cut`]: a connection cut off from the cluster: its operations time out, its
//!   subscriptions hear nothing, what it sends is lost.
//!
//! Left out, because ACE does not use them: consumers of any kind, streams' other retention
//! and discard policies, mirrors and sources. `tests/server/differential.rs` runs one script
//! against the stand-in and a real three-node cluster and compares every answer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::{
    CoreMessage, KvConfig, KvEntry, Message, Nats, NatsError, NatsFuture, PubAck, Publish,
    ServerInfo, StreamConfig, Subscription,
};

/// How the stand-in behaves.
#[derive(Clone, Debug)]
pub struct StandInOptions {
    /// Seeds the ids it hands out (inboxes, nonces) and the fate of interrupted publishes.
    pub seed: u64,
    /// The largest payload it takes.
    pub max_payload: usize,
    /// How long a request to the cluster takes (each way counted once).
    pub latency: Duration,
    /// How long a publish takes to reach a quorum, on top.
    pub replication: Duration,
    /// How long a client waits for an answer before it gives up (async-nats' request
    /// timeout as ACE sets it).
    pub timeout: Duration,
}

impl Default for StandInOptions {
    fn default() -> Self {
        StandInOptions {
            seed: 0,
            max_payload: 1024 * 1024,
            latency: Duration::from_millis(1),
            replication: Duration::from_millis(1),
            timeout: Duration::from_secs(5),
        }
    }
}

/// What happened in the cluster, for a simulation's rare paths.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StandInStats {
    /// Publishes to a stream refused by a guard (10071), key-value buckets' aside.
    pub conflicts: u64,
    /// Key-value writes refused by a guard (a key created or updated on a stale revision).
    pub kv_conflicts: u64,
    /// Publishes answered as duplicates of an earlier `Nats-Msg-Id`.
    pub duplicates: u64,
    /// Leader moves.
    pub leader_moves: u64,
    /// Publishes lost in a leader move (never stored).
    pub lost: u64,
    /// Publishes stored whose acknowledgement was lost in a leader move.
    pub unacknowledged: u64,
    /// Publishes that completed.
    pub publishes: u64,
}

/// Puts `name` in `set` (`on`) or takes it out.
fn mark(set: &mut BTreeSet<String>, name: &str, on: bool) {
    if on {
        set.insert(name.to_owned());
    } else {
        set.remove(name);
    }
}

/// How often a paused client's request looks whether it was resumed.
const PAUSED_POLL: Duration = Duration::from_millis(10);

/// The cluster's clock: time since some fixed start. Hosts of a simulated world each run
/// their own runtime, whose `tokio::time::Instant`s cannot be compared with another's, so
/// the world gives the stand-in its own clock.
pub type StandInClock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// A simulated JetStream cluster (see the module documentation).
#[derive(Clone)]
pub struct StandIn {
    cluster: Arc<Mutex<Cluster>>,
    options: StandInOptions,
    clock: StandInClock,
}

impl std::fmt::Debug for StandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandIn")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// A point on the cluster's clock.
type Instant = Duration;

#[derive(Debug)]
struct Cluster {
    streams: BTreeMap<String, StreamState>,
    subscriptions: BTreeMap<u64, Sub>,
    next_id: u64,
    rng: u64,
    /// Counts leader moves: a publish replicating across a move is interrupted.
    epoch: u64,
    /// Until when the streams have no leader.
    electing_until: Option<Instant>,
    /// A leader move waiting for the next publish to a stream (the election it takes).
    armed: Option<Duration>,
    cut: BTreeSet<String>,
    /// Clients whose requests wait, unanswered, until they are resumed.
    paused: BTreeSet<String>,
    stats: StandInStats,
}

#[derive(Debug)]
struct Sub {
    client: String,
    filter: String,
    tx: mpsc::UnboundedSender<CoreMessage>,
}

#[derive(Debug)]
struct StreamState {
    config: StreamConfig,
    /// One value per subject, as a key-value bucket keeps them.
    per_subject: Option<usize>,
    max_age: Option<Duration>,
    messages: BTreeMap<u64, Stored>,
    last_seq: u64,
    bytes: u64,
    /// `Nats-Msg-Id` → (sequence, when).
    seen: BTreeMap<String, (u64, Instant)>,
}

#[derive(Debug, Clone)]
struct Stored {
    subject: String,
    headers: Vec<(String, String)>,
    payload: Bytes,
    at: Instant,
    size: u64,
}

/// Whether `subject` matches `filter` (`*` one token, `>` the rest).
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in filter.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (t, Some(s)) if t == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

/// The size a file store counts for a message.
fn size_of(subject: &str, headers: &[(String, String)], payload: &[u8]) -> u64 {
    let headers: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    (30 + subject.len() + headers + payload.len()) as u64
}

impl StreamState {
    fn new(config: StreamConfig, per_subject: Option<usize>, max_age: Option<Duration>) -> Self {
        StreamState {
            config,
            per_subject,
            max_age,
            messages: BTreeMap::new(),
            last_seq: 0,
            bytes: 0,
            seen: BTreeMap::new(),
        }
    }

    fn expire(&mut self, now: Instant) {
        if let Some(age) = self.max_age {
            let old: Vec<u64> = self
                .messages
                .iter()
                .filter(|(_, m)| now.saturating_sub(m.at) >= age)
                .map(|(s, _)| *s)
                .collect();
            for seq in old {
                self.remove(seq);
            }
        }
        let window = self.config.duplicate_window;
        self.seen
            .retain(|_, (_, at)| now.saturating_sub(*at) < window);
    }

    fn remove(&mut self, seq: u64) {
        if let Some(m) = self.messages.remove(&seq) {
            self.bytes -= m.size;
        }
    }

    fn last_on(&self, filter: &str) -> Option<(u64, &Stored)> {
        self.messages
            .iter()
            .rev()
            .find(|(_, m)| matches(filter, &m.subject))
            .map(|(s, m)| (*s, m))
    }

    fn message(seq: u64, m: &Stored) -> Message {
        Message {
            subject: m.subject.clone(),
            seq,
            headers: m.headers.clone(),
            payload: m.payload.clone(),
        }
    }

    /// Stores `p` if its guards and the limits allow it.
    fn apply(
        &mut self,
        p: &Publish,
        now: Instant,
        stats: &mut StandInStats,
    ) -> Result<PubAck, NatsError> {
        self.expire(now);
        if let Some(id) = &p.msg_id
            && let Some((seq, _)) = self.seen.get(id)
        {
            stats.duplicates += 1;
            return Ok(PubAck {
                seq: *seq,
                duplicate: true,
            });
        }
        if let Some((expected, guard)) = &p.expect {
            let guard = guard.as_deref().unwrap_or(&p.subject);
            let last = self.last_on(guard).map_or(0, |(s, _)| s);
            if last != *expected {
                if self.per_subject.is_some() {
                    stats.kv_conflicts += 1;
                } else {
                    stats.conflicts += 1;
                }
                return Err(NatsError::WrongLastSequence(format!(
                    "wrong last sequence: {last} (error code 10071)"
                )));
            }
        }
        let size = size_of(&p.subject, &p.headers, &p.payload);
        if let Some(max) = self.config.max_bytes
            && self.bytes + size > max
        {
            return Err(NatsError::Full(
                "maximum bytes exceeded (error code 10047)".into(),
            ));
        }
        self.last_seq += 1;
        let seq = self.last_seq;
        self.messages.insert(
            seq,
            Stored {
                subject: p.subject.clone(),
                headers: p.headers.clone(),
                payload: p.payload.clone(),
                at: now,
                size,
            },
        );
        self.bytes += size;
        if let Some(id) = &p.msg_id {
            self.seen.insert(id.clone(), (seq, now));
        }
        if let Some(keep) = self.per_subject {
            let same: Vec<u64> = self
                .messages
                .iter()
                .filter(|(_, m)| m.subject == p.subject)
                .map(|(s, _)| *s)
                .collect();
            for old in same.iter().take(same.len().saturating_sub(keep)) {
                self.remove(*old);
            }
        }
        stats.publishes += 1;
        Ok(PubAck {
            seq,
            duplicate: false,
        })
    }
}

impl Cluster {
    /// SplitMix64 over the seed.
    fn draw(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn stream(&mut self, name: &str) -> Result<&mut StreamState, NatsError> {
        self.streams
            .get_mut(name)
            .ok_or_else(|| NatsError::Refused(format!("stream not found: {name} (10059)")))
    }

    /// Sends a core message to the subscriptions on `subject` of every client not cut off;
    /// whether any heard it.
    fn deliver(&mut self, subject: &str, reply: Option<&str>, payload: &Bytes) -> bool {
        self.subscriptions.retain(|_, s| !s.tx.is_closed());
        let mut heard = false;
        for sub in self.subscriptions.values() {
            if matches(&sub.filter, subject) && !self.cut.contains(&sub.client) {
                heard |= sub
                    .tx
                    .send(CoreMessage {
                        subject: subject.to_owned(),
                        reply: reply.map(str::to_owned),
                        payload: payload.clone(),
                        no_responders: false,
                    })
                    .is_ok();
            }
        }
        heard
    }

    fn move_leader(&mut self, now: Instant, election: Duration) {
        self.epoch += 1;
        self.stats.leader_moves += 1;
        self.electing_until = Some(now + election);
    }

    fn electing(&self, now: Instant) -> bool {
        self.electing_until.is_some_and(|until| now < until)
    }
}

fn kv_stream(bucket: &str) -> String {
    format!("KV_{bucket}")
}

fn kv_subject(bucket: &str, key: &str) -> String {
    format!("$KV.{bucket}.{key}")
}

/// Whether a bucket's message is a delete or purge marker.
fn deleted(m: &Stored) -> bool {
    m.headers
        .iter()
        .any(|(k, v)| k == "KV-Operation" && (v == "DEL" || v == "PURGE"))
}

impl StandIn {
    /// A cluster on the runtime's clock (one runtime: a test).
    pub fn new(options: StandInOptions) -> Self {
        let start = tokio::time::Instant::now();
        Self::with_clock(options, Arc::new(move || start.elapsed()))
    }

    /// A cluster on `clock`.
    pub fn with_clock(options: StandInOptions, clock: StandInClock) -> Self {
        StandIn {
            cluster: Arc::new(Mutex::new(Cluster {
                streams: BTreeMap::new(),
                subscriptions: BTreeMap::new(),
                next_id: 0,
                rng: options.seed,
                epoch: 0,
                electing_until: None,
                armed: None,
                cut: BTreeSet::new(),
                paused: BTreeSet::new(),
                stats: StandInStats::default(),
            })),
            options,
            clock,
        }
    }

    fn now(&self) -> Instant {
        (self.clock)()
    }

    fn lock(&self) -> MutexGuard<'_, Cluster> {
        self.cluster.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection for the client `name` (a replica's host name, say).
    pub fn connect(&self, name: &str) -> Arc<dyn Nats> {
        Arc::new(Connection {
            standin: self.clone(),
            name: name.to_owned(),
        })
    }

    /// The streams' leaders move: no stream answers for `election`, and publishes being
    /// replicated now are lost or stored without their acknowledgement.
    pub fn move_leader(&self, election: Duration) {
        let now = self.now();
        self.lock().move_leader(now, election);
    }

    /// The streams' leaders move as the next publish to a stream is being replicated (that
    /// publish is interrupted), as [`move_leader`](Self::move_leader) says.
    pub fn move_leader_under_traffic(&self, election: Duration) {
        self.lock().armed = Some(election);
    }

    /// Cuts client `name` off the cluster (`true`) or heals it (`false`).
    pub fn cut(&self, name: &str, cut: bool) {
        mark(&mut self.lock().cut, name, cut);
    }

    /// Pauses client `name` (`true`): its requests wait, unanswered, until it is resumed
    /// (`false`), as those of a stopped process (SIGSTOP, a long garbage-collection pause)
    /// would; nothing times out meanwhile.
    pub fn pause(&self, name: &str, paused: bool) {
        mark(&mut self.lock().paused, name, paused);
    }

    /// A bucket key's value now (deleted and expired keys have none).
    pub fn kv_value(&self, bucket: &str, key: &str) -> Option<Bytes> {
        let now = self.now();
        let mut cluster = self.lock();
        let stream = cluster.streams.get_mut(&kv_stream(bucket))?;
        stream.expire(now);
        stream
            .last_on(&kv_subject(bucket, key))
            .filter(|(_, m)| !deleted(m))
            .map(|(_, m)| m.payload.clone())
    }

    pub fn stats(&self) -> StandInStats {
        self.lock().stats
    }

    /// The messages a stream keeps (sequence, subject, payload), in order: what was stored.
    pub fn messages(&self, stream: &str) -> Vec<(u64, String, Bytes)> {
        self.lock()
            .streams
            .get(stream)
            .map(|s| {
                s.messages
                    .iter()
                    .map(|(seq, m)| (*seq, m.subject.clone(), m.payload.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One client's connection to a [`StandIn`].
#[derive(Debug)]
struct Connection {
    standin: StandIn,
    name: String,
}

impl Connection {
    /// Waits for the cluster's answer to a request: unavailable (after the client's timeout)
    /// if this client is cut off, or if `stream_op` and the streams are electing a leader.
    async fn reach(&self, stream_op: bool) -> Result<(), NatsError> {
        tokio::time::sleep(self.standin.options.latency).await;
        while self.standin.lock().paused.contains(&self.name) {
            tokio::time::sleep(PAUSED_POLL).await;
        }
        let refused = {
            let cluster = self.standin.lock();
            if cluster.cut.contains(&self.name) {
                Some("timed out: the connection to the cluster is cut")
            } else if stream_op && cluster.electing(self.standin.now()) {
                Some("timed out: the stream has no leader (an election)")
            } else {
                None
            }
        };
        match refused {
            Some(why) => {
                tokio::time::sleep(self.standin.options.timeout).await;
                Err(NatsError::Unavailable(why.into()))
            }
            None => Ok(()),
        }
    }

    /// Runs `f` on the cluster after the way there.
    async fn with<T>(
        &self,
        stream_op: bool,
        f: impl FnOnce(&mut Cluster, Instant) -> Result<T, NatsError>,
    ) -> Result<T, NatsError> {
        self.reach(stream_op).await?;
        let now = self.standin.now();
        let mut cluster = self.standin.lock();
        f(&mut cluster, now)
    }

    async fn publish_to(&self, stream: &str, message: Publish) -> Result<PubAck, NatsError> {
        if message.payload.len() > self.standin.options.max_payload {
            return Err(NatsError::Refused("maximum payload exceeded".into()));
        }
        self.reach(true).await?;
        let epoch = {
            let mut cluster = self.standin.lock();
            // A publish to a stream is a core message too: subscribers on its subject hear
            // it, whether the stream takes it or not.
            cluster.deliver(&message.subject, None, &message.payload);
            let epoch = cluster.epoch;
            if let Some(election) = cluster.armed.take() {
                cluster.move_leader(self.standin.now(), election);
            }
            epoch
        };
        tokio::time::sleep(self.standin.options.replication).await;
        let interrupted = {
            let now = self.standin.now();
            let mut cluster = self.standin.lock();
            let moved = cluster.epoch != epoch;
            if moved && cluster.draw().is_multiple_of(2) {
                cluster.stats.lost += 1;
            } else {
                let c = &mut *cluster;
                let result = match c.streams.get_mut(stream) {
                    Some(s) => s.apply(&message, now, &mut c.stats),
                    None => Err(NatsError::Refused(format!(
                        "stream not found: {stream} (10059)"
                    ))),
                };
                if !moved {
                    return result;
                }
                if result.is_ok() {
                    cluster.stats.unacknowledged += 1;
                }
            }
            NatsError::Unavailable(
                "timed out: the stream leader moved while the message was replicated".into(),
            )
        };
        tokio::time::sleep(self.standin.options.timeout).await;
        Err(interrupted)
    }

    fn kv_value(
        cluster: &mut Cluster,
        bucket: &str,
        key: &str,
        now: Instant,
    ) -> Result<Option<(u64, Stored)>, NatsError> {
        let stream = cluster.stream(&kv_stream(bucket))?;
        stream.expire(now);
        Ok(stream
            .last_on(&kv_subject(bucket, key))
            .map(|(s, m)| (s, m.clone())))
    }
}

impl Nats for Connection {
    fn server_info(&self) -> ServerInfo {
        ServerInfo {
            version: "2.15.1-standin".into(),
            max_payload: self.standin.options.max_payload,
        }
    }

    fn new_inbox(&self) -> String {
        let mut cluster = self.standin.lock();
        cluster.next_id += 1;
        format!("_INBOX.{}.{}", self.name, cluster.next_id)
    }

    fn nonce(&self) -> u64 {
        self.standin.lock().draw()
    }

    fn create_stream(&self, config: StreamConfig) -> NatsFuture<'_, Option<u64>> {
        Box::pin(self.with(true, move |cluster, _| {
            let stream = cluster
                .streams
                .entry(config.name.clone())
                .or_insert_with(|| StreamState::new(config, None, None));
            Ok(stream.config.max_bytes)
        }))
    }

    fn publish(&self, stream: &str, message: Publish) -> NatsFuture<'_, PubAck> {
        let stream = stream.to_owned();
        Box::pin(async move { self.publish_to(&stream, message).await })
    }

    fn last_message(&self, stream: &str, subject: &str) -> NatsFuture<'_, Option<Message>> {
        let (stream, subject) = (stream.to_owned(), subject.to_owned());
        Box::pin(self.with(true, move |cluster, now| {
            let s = cluster.stream(&stream)?;
            s.expire(now);
            Ok(s.last_on(&subject)
                .map(|(seq, m)| StreamState::message(seq, m)))
        }))
    }

    fn next_message(
        &self,
        stream: &str,
        subject: &str,
        seq: u64,
    ) -> NatsFuture<'_, Option<Message>> {
        let (stream, subject) = (stream.to_owned(), subject.to_owned());
        Box::pin(self.with(true, move |cluster, now| {
            let s = cluster.stream(&stream)?;
            s.expire(now);
            Ok(s.messages
                .range(seq.max(1)..)
                .find(|(_, m)| matches(&subject, &m.subject))
                .map(|(seq, m)| StreamState::message(*seq, m)))
        }))
    }

    fn subjects(&self, stream: &str, filter: &str) -> NatsFuture<'_, Vec<String>> {
        let (stream, filter) = (stream.to_owned(), filter.to_owned());
        Box::pin(self.with(true, move |cluster, now| {
            let s = cluster.stream(&stream)?;
            s.expire(now);
            let found: BTreeSet<String> = s
                .messages
                .values()
                .filter(|m| matches(&filter, &m.subject))
                .map(|m| m.subject.clone())
                .collect();
            Ok(found.into_iter().collect())
        }))
    }

    fn purge(&self, stream: &str, subject: &str, below: Option<u64>) -> NatsFuture<'_, ()> {
        let (stream, subject) = (stream.to_owned(), subject.to_owned());
        Box::pin(self.with(true, move |cluster, _| {
            let s = cluster.stream(&stream)?;
            let gone: Vec<u64> = s
                .messages
                .iter()
                .filter(|(seq, m)| below.is_none_or(|b| **seq < b) && matches(&subject, &m.subject))
                .map(|(seq, _)| *seq)
                .collect();
            for seq in gone {
                s.remove(seq);
            }
            Ok(())
        }))
    }

    fn kv_open(&self, config: KvConfig) -> NatsFuture<'_, ()> {
        Box::pin(self.with(true, move |cluster, _| {
            let name = kv_stream(&config.bucket);
            cluster.streams.entry(name.clone()).or_insert_with(|| {
                StreamState::new(
                    StreamConfig {
                        name,
                        subjects: vec![format!("$KV.{}.>", config.bucket)],
                        replicas: config.replicas,
                        max_bytes: None,
                        duplicate_window: config.max_age.min(Duration::from_secs(120)),
                    },
                    Some(1),
                    Some(config.max_age),
                )
            });
            Ok(())
        }))
    }

    fn kv_get(&self, bucket: &str, key: &str) -> NatsFuture<'_, Option<KvEntry>> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        Box::pin(self.with(true, move |cluster, now| {
            Ok(Self::kv_value(cluster, &bucket, &key, now)?
                .filter(|(_, m)| !deleted(m))
                .map(|(revision, m)| KvEntry {
                    value: m.payload,
                    revision,
                }))
        }))
    }

    fn kv_create(&self, bucket: &str, key: &str, value: Bytes) -> NatsFuture<'_, u64> {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        Box::pin(async move {
            let last = self
                .with(true, |cluster, now| {
                    Self::kv_value(cluster, &bucket, &key, now)
                })
                .await?;
            let expected = match last {
                Some((_, m)) if !deleted(&m) => return Err(NatsError::AlreadyExists),
                Some((seq, _)) => seq,
                None => 0,
            };
            let message = Publish::new(kv_subject(&bucket, &key), value).expect_last(expected);
            match self.publish_to(&kv_stream(&bucket), message).await {
                Ok(ack) => Ok(ack.seq),
                Err(NatsError::WrongLastSequence(_)) => Err(NatsError::AlreadyExists),
                Err(e) => Err(e),
            }
        })
    }

    fn kv_update(
        &self,
        bucket: &str,
        key: &str,
        value: Bytes,
        revision: u64,
    ) -> NatsFuture<'_, u64> {
        let message = Publish::new(kv_subject(bucket, key), value).expect_last(revision);
        let stream = kv_stream(bucket);
        Box::pin(async move { Ok(self.publish_to(&stream, message).await?.seq) })
    }

    fn kv_put(&self, bucket: &str, key: &str, value: Bytes) -> NatsFuture<'_, u64> {
        let message = Publish::new(kv_subject(bucket, key), value);
        let stream = kv_stream(bucket);
        Box::pin(async move { Ok(self.publish_to(&stream, message).await?.seq) })
    }

    fn kv_delete(&self, bucket: &str, key: &str, revision: u64) -> NatsFuture<'_, ()> {
        let message = Publish::new(kv_subject(bucket, key), Bytes::new())
            .expect_last(revision)
            .header("KV-Operation", "DEL");
        let stream = kv_stream(bucket);
        Box::pin(async move { self.publish_to(&stream, message).await.map(drop) })
    }

    fn kv_keys(&self, bucket: &str, prefix: &str) -> NatsFuture<'_, Vec<String>> {
        let (bucket, prefix) = (bucket.to_owned(), prefix.to_owned());
        Box::pin(self.with(true, move |cluster, now| {
            let head = format!("$KV.{bucket}.");
            let s = cluster.stream(&kv_stream(&bucket))?;
            s.expire(now);
            let keys: BTreeSet<String> = s
                .messages
                .values()
                .filter(|m| !deleted(m))
                .filter_map(|m| m.subject.strip_prefix(&head))
                .filter(|k| k.starts_with(&prefix))
                .map(str::to_owned)
                .collect();
            Ok(keys.into_iter().collect())
        }))
    }

    fn subscribe(&self, subject: &str) -> NatsFuture<'_, Subscription> {
        let filter = subject.to_owned();
        Box::pin(async move {
            let (tx, rx) = mpsc::unbounded_channel();
            self.with(false, |cluster, _| {
                cluster.next_id += 1;
                let id = cluster.next_id;
                cluster.subscriptions.insert(
                    id,
                    Sub {
                        client: self.name.clone(),
                        filter,
                        tx,
                    },
                );
                Ok(())
            })
            .await?;
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|m| (m, rx))
            });
            Ok(Box::pin(stream) as Subscription)
        })
    }

    fn send(&self, subject: &str, reply: Option<&str>, payload: Bytes) -> NatsFuture<'_, ()> {
        let (subject, reply) = (subject.to_owned(), reply.map(str::to_owned));
        Box::pin(async move {
            tokio::time::sleep(self.standin.options.latency).await;
            let mut cluster = self.standin.lock();
            if cluster.cut.contains(&self.name) {
                // Lost on the way; a real client only notices much later.
                return Ok(());
            }
            let heard = cluster.deliver(&subject, reply.as_deref(), &payload);
            if !heard && let Some(reply) = reply {
                for sub in cluster.subscriptions.values() {
                    if matches(&sub.filter, &reply) && sub.client == self.name {
                        let _ = sub.tx.send(CoreMessage {
                            subject: reply.clone(),
                            reply: None,
                            payload: Bytes::new(),
                            no_responders: true,
                        });
                    }
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_match_filters_token_by_token() {
        assert!(matches("ace.log", "ace.log"));
        assert!(!matches("ace.log", "ace.logs"));
        assert!(matches("ace.ev.>", "ace.ev.1.2.3"));
        assert!(!matches("ace.ev.>", "ace.ev"));
        assert!(matches("ace.*.x", "ace.y.x"));
        assert!(!matches("ace.*", "ace.y.x"));
        assert!(matches(">", "a"));
    }

    fn standin() -> (StandIn, Arc<dyn Nats>) {
        let standin = StandIn::new(StandInOptions {
            latency: Duration::from_millis(1),
            replication: Duration::from_millis(10),
            ..StandInOptions::default()
        });
        let nats = standin.connect("a");
        (standin, nats)
    }

    /// A stand-in with stream `S` (subjects `s.>`) made, and a client of it.
    async fn standin_with_stream() -> (StandIn, Arc<dyn Nats>) {
        let (standin, nats) = standin();
        nats.create_stream(config(None))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        (standin, nats)
    }

    fn config(max_bytes: Option<u64>) -> StreamConfig {
        StreamConfig {
            name: "S".into(),
            subjects: vec!["s.>".into()],
            replicas: 3,
            max_bytes,
            duplicate_window: Duration::from_secs(120),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_move_interrupts_a_publish_and_refuses_until_elected() {
        let (standin, nats) = standin_with_stream().await;
        let publishing = {
            let nats = Arc::clone(&nats);
            tokio::spawn(async move { nats.publish("S", Publish::new("s.a", "1").id("x")).await })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        standin.move_leader(Duration::from_secs(3));
        let interrupted = publishing.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(interrupted, Err(NatsError::Unavailable(_))),
            "{interrupted:?}"
        );
        let stats = standin.stats();
        assert_eq!(stats.lost + stats.unacknowledged, 1, "{stats:?}");
        // Elected by now (the client waited out its timeout): the retry with the same id is
        // stored once, whichever way the interrupted publish went.
        let again = nats
            .publish("S", Publish::new("s.a", "1").id("x"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.seq, 1);
        assert_eq!(again.duplicate, stats.unacknowledged == 1);
        assert_eq!(standin.messages("S").len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_leader_move_under_traffic_waits_for_the_next_publish_and_interrupts_it() {
        let (standin, nats) = standin_with_stream().await;
        standin.move_leader_under_traffic(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(
            standin.stats().leader_moves,
            0,
            "nothing moves before a publish"
        );
        let interrupted = nats.publish("S", Publish::new("s.a", "1").id("x")).await;
        assert!(
            matches!(interrupted, Err(NatsError::Unavailable(_))),
            "{interrupted:?}"
        );
        let stats = standin.stats();
        assert_eq!(
            (stats.leader_moves, stats.lost + stats.unacknowledged),
            (1, 1)
        );
        // Once: the next publish goes through.
        let next = nats.publish("S", Publish::new("s.b", "2").id("y")).await;
        assert!(next.is_ok(), "{next:?}");
        assert_eq!(standin.stats().leader_moves, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_client_waits_until_it_is_resumed() {
        let (standin, nats) = standin_with_stream().await;
        standin.pause("a", true);
        let publishing = {
            let nats = Arc::clone(&nats);
            tokio::spawn(async move { nats.publish("S", Publish::new("s.a", "1").id("x")).await })
        };
        // Far past the client's timeout: still waiting, nothing stored.
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!publishing.is_finished());
        assert!(standin.messages("S").is_empty());
        standin.pause("a", false);
        let done = publishing.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.map(|ack| ack.seq), Ok(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_client_times_out_and_hears_nothing() {
        let (standin, nats) = standin();
        let other = standin.connect("b");
        let mut heard = other.subscribe("x").await.unwrap_or_else(|e| panic!("{e}"));
        standin.cut("b", true);
        nats.send("x", None, Bytes::from_static(b"1"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let cut = other.create_stream(config(None)).await;
        assert!(matches!(cut, Err(NatsError::Unavailable(_))), "{cut:?}");
        standin.cut("b", false);
        nats.send("x", None, Bytes::from_static(b"2"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        use futures_util::StreamExt as _;
        let first = heard.next().await.map(|m| m.payload);
        assert_eq!(first, Some(Bytes::from_static(b"2")));
    }

    #[tokio::test(start_paused = true)]
    async fn bucket_entries_expire_after_max_age() {
        let (_standin, nats) = standin();
        nats.kv_open(KvConfig {
            bucket: "L".into(),
            description: String::new(),
            max_age: Duration::from_secs(6),
            replicas: 3,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let rev = nats
            .kv_create("L", "leader", Bytes::from_static(b"a"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            nats.kv_create("L", "leader", Bytes::from_static(b"b"))
                .await,
            Err(NatsError::AlreadyExists)
        );
        tokio::time::sleep(Duration::from_secs(7)).await;
        assert_eq!(nats.kv_get("L", "leader").await, Ok(None));
        let next = nats
            .kv_create("L", "leader", Bytes::from_static(b"b"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(next > rev);
    }
}
