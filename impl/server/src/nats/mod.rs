//! What the replicated store and the replicas ask of NATS JetStream, as one seam.
//!
//! [`Nats`] is exactly the subset ACE uses: one stream with publishes guarded by a
//! subject's last sequence and deduplicated by `Nats-Msg-Id`, direct reads of a subject's
//! last message and of the next message on a subject, the stream's subjects, purges; a
//! key-value bucket for the lease and the members (create, guarded update, put, delete,
//! keys); and core publish/subscribe with replies for forwarded requests.
//!
//! Two implementations: [`client::NatsClient`] (feature `jetstream`) on a real cluster
//! through `async-nats`, and [`standin::StandIn`], which runs inside a simulation's
//! deterministic world where `async-nats` cannot. A differential test runs one script of
//! operations against both and compares the answers.

#[cfg(feature = "jetstream")]
pub mod client;
pub mod standin;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

/// A future a [`Nats`] returns.
pub type NatsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, NatsError>> + Send + 'a>>;

/// Messages on a core subscription, until it is dropped.
pub type Subscription = Pin<Box<dyn Stream<Item = CoreMessage> + Send + Sync>>;

/// Why an operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatsError {
    /// A guard refused: the subject's last sequence, or the key's revision, is not the one
    /// expected (JetStream error 10071).
    WrongLastSequence(String),
    /// A key-value create of a key that exists.
    AlreadyExists,
    /// The stream is at its size limit, or the message is larger than it takes.
    Full(String),
    /// Not now: no stream leader, a timeout, a broken connection. Worth trying again.
    Unavailable(String),
    /// Refused for good (a bad name, a configuration the servers cannot take).
    Refused(String),
}

impl std::fmt::Display for NatsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsError::WrongLastSequence(e) => write!(f, "wrong last sequence: {e}"),
            NatsError::AlreadyExists => f.write_str("the key exists"),
            NatsError::Full(e) | NatsError::Unavailable(e) | NatsError::Refused(e) => {
                f.write_str(e)
            }
        }
    }
}

impl std::error::Error for NatsError {}

/// Runs `op` until it answers, trying again while the servers cannot answer (an election)
/// for up to `patience`; `what` names it in the log.
pub async fn patiently<T, F>(
    patience: Duration,
    what: &str,
    op: impl Fn() -> F,
) -> Result<T, NatsError>
where
    F: Future<Output = Result<T, NatsError>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut wait = Duration::from_millis(50);
    loop {
        match op().await {
            Err(e @ NatsError::Unavailable(_))
                if tokio::time::Instant::now() + wait <= deadline =>
            {
                tracing::warn!(error = %e, "{what}: the servers cannot answer now; retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// A stream as ACE makes it: file storage, new messages refused at the size limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamConfig {
    pub name: String,
    pub subjects: Vec<String>,
    /// Servers that keep a copy.
    pub replicas: usize,
    /// The size limit in bytes, if any.
    pub max_bytes: Option<u64>,
    /// How long a `Nats-Msg-Id` is remembered.
    pub duplicate_window: Duration,
}

/// A key-value bucket as ACE makes it: one value per key, entries expiring `max_age` after
/// they were written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvConfig {
    pub bucket: String,
    pub description: String,
    pub max_age: Duration,
    pub replicas: usize,
}

/// A message to publish to a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Publish {
    pub subject: String,
    pub payload: Bytes,
    /// `Nats-Msg-Id`: a repeat within the duplicate window is acknowledged, not stored.
    pub msg_id: Option<String>,
    /// `Nats-Expected-Last-Subject-Sequence`, and the subject it is about when not the
    /// message's own (`Nats-Expected-Last-Subject-Sequence-Subject`).
    pub expect: Option<(u64, Option<String>)>,
    /// Headers of ACE's own.
    pub headers: Vec<(String, String)>,
}

impl Publish {
    pub fn new(subject: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        Publish {
            subject: subject.into(),
            payload: payload.into(),
            msg_id: None,
            expect: None,
            headers: Vec::new(),
        }
    }

    /// With `Nats-Msg-Id: id`.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.msg_id = Some(id.into());
        self
    }

    /// Refused unless the message's own subject's last sequence is `seq` (0: no message).
    pub fn expect_last(mut self, seq: u64) -> Self {
        self.expect = Some((seq, None));
        self
    }

    /// Refused unless `subject`'s last sequence is `seq`.
    pub fn expect_last_of(mut self, seq: u64, subject: impl Into<String>) -> Self {
        self.expect = Some((seq, Some(subject.into())));
        self
    }

    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// What the stream said of a publish it took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PubAck {
    pub seq: u64,
    /// The `Nats-Msg-Id` was seen within the window: nothing new was stored, `seq` is the
    /// first one's.
    pub duplicate: bool,
}

/// A message read back from a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub seq: u64,
    /// ACE's own headers (the server's `Nats-*` headers left out).
    pub headers: Vec<(String, String)>,
    pub payload: Bytes,
}

impl Message {
    /// The value of header `name`, if the message has it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A key's value and the revision that wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvEntry {
    pub value: Bytes,
    pub revision: u64,
}

/// A message on a core subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreMessage {
    pub subject: String,
    pub reply: Option<String>,
    pub payload: Bytes,
    /// The servers' word that a request sent to this inbox found no subscriber.
    pub no_responders: bool,
}

/// The servers' limits and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    pub version: String,
    /// The largest message payload the servers take.
    pub max_payload: usize,
}

/// A connection to JetStream: the operations the replicated store and the replicas use.
pub trait Nats: Send + Sync + std::fmt::Debug + 'static {
    /// What the servers said when the connection was made.
    fn server_info(&self) -> ServerInfo;
    /// A fresh subject for replies.
    fn new_inbox(&self) -> String;
    /// A fresh 64-bit value for ids (`Nats-Msg-Id` prefixes): drawn at random on a real
    /// connection, from the world's seed in a simulation.
    fn nonce(&self) -> u64;

    /// Opens the stream `config.name`, making it if it does not exist; returns its size limit.
    fn create_stream(&self, config: StreamConfig) -> NatsFuture<'_, Option<u64>>;
    /// Publishes to a stream and waits for its acknowledgement.
    fn publish(&self, stream: &str, message: Publish) -> NatsFuture<'_, PubAck>;
    /// The last message on `subject`, if any.
    fn last_message(&self, stream: &str, subject: &str) -> NatsFuture<'_, Option<Message>>;
    /// The first message on `subject` at sequence `seq` or after, if any.
    fn next_message(
        &self,
        stream: &str,
        subject: &str,
        seq: u64,
    ) -> NatsFuture<'_, Option<Message>>;
    /// The subjects matching `filter` that hold messages, in no particular order.
    fn subjects(&self, stream: &str, filter: &str) -> NatsFuture<'_, Vec<String>>;
    /// Removes the messages on `subject` (`below`: only those before that sequence).
    fn purge(&self, stream: &str, subject: &str, below: Option<u64>) -> NatsFuture<'_, ()>;

    /// Opens the bucket `config.bucket`, making it if it does not exist.
    fn kv_open(&self, config: KvConfig) -> NatsFuture<'_, ()>;
    /// A key's value, unless it has none (never written, deleted, expired).
    fn kv_get(&self, bucket: &str, key: &str) -> NatsFuture<'_, Option<KvEntry>>;
    /// Writes a key that has no value; [`NatsError::AlreadyExists`] if it has one.
    fn kv_create(&self, bucket: &str, key: &str, value: Bytes) -> NatsFuture<'_, u64>;
    /// Writes a key whose last revision is `revision`; [`NatsError::WrongLastSequence`] if not.
    fn kv_update(
        &self,
        bucket: &str,
        key: &str,
        value: Bytes,
        revision: u64,
    ) -> NatsFuture<'_, u64>;
    /// Writes a key whatever it holds.
    fn kv_put(&self, bucket: &str, key: &str, value: Bytes) -> NatsFuture<'_, u64>;
    /// Deletes a key whose last revision is `revision`.
    fn kv_delete(&self, bucket: &str, key: &str, revision: u64) -> NatsFuture<'_, ()>;
    /// The keys starting with `prefix` that have a value, sorted.
    fn kv_keys(&self, bucket: &str, prefix: &str) -> NatsFuture<'_, Vec<String>>;

    /// Core messages published to `subject` from now on.
    fn subscribe(&self, subject: &str) -> NatsFuture<'_, Subscription>;
    /// Publishes a core message (`reply`: where answers go).
    fn send(&self, subject: &str, reply: Option<&str>, payload: Bytes) -> NatsFuture<'_, ()>;
}
