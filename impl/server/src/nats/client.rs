//! [`Nats`] on a real cluster, through `async-nats`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::{CreateStreamErrorKind, PublishErrorKind};
use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{self, DiscardPolicy, LastRawMessageErrorKind, StorageType};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};

use super::{
    CoreMessage, KvConfig, KvEntry, Message, Nats, NatsError, NatsFuture, PubAck, Publish,
    ServerInfo, StreamConfig, Subscription,
};
use crate::store::StoreError;
use crate::store::jetstream::JetStreamOptions;

/// A connection to a NATS cluster, with the streams and buckets it opened.
#[derive(Debug)]
pub struct NatsClient {
    client: async_nats::Client,
    js: Context,
    streams: Mutex<HashMap<String, stream::Stream>>,
    buckets: Mutex<HashMap<String, kv::Store>>,
}

/// An error naming `what` unless `path` can be read.
fn readable(what: &str, path: &std::path::Path) -> Result<(), StoreError> {
    std::fs::File::open(path).map(drop).map_err(|e| {
        StoreError::Io(std::io::Error::new(
            e.kind(),
            format!("{what} {}: {e}", path.display()),
        ))
    })
}

fn unavailable(e: impl std::fmt::Display) -> NatsError {
    NatsError::Unavailable(e.to_string())
}

impl NatsClient {
    /// Connects to the servers `options` names, with its credentials and TLS.
    pub async fn connect(options: &JetStreamOptions) -> Result<Arc<dyn Nats>, StoreError> {
        let servers = options.servers.join(",");
        let mut connect = async_nats::ConnectOptions::new()
            .name("ace")
            .connection_timeout(Duration::from_secs(5));
        if let Some(path) = &options.credentials {
            connect = connect.credentials_file(path).await.map_err(|e| {
                StoreError::Unavailable(format!("NATS credentials {}: {e}", path.display()))
            })?;
        }
        if let Some(ca) = &options.tls.ca {
            readable("the NATS CA file", ca)?;
            connect = connect.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &options.tls.client {
            readable("the NATS client certificate", cert)?;
            readable("the NATS client key", key)?;
            connect = connect.add_client_certificate(cert.clone(), key.clone());
        }
        let addrs = options
            .servers
            .iter()
            .map(|url| {
                url.parse::<async_nats::ServerAddr>().map_err(|e| {
                    StoreError::Io(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("{url:?} is not a NATS server URL: {e}"),
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let client = connect
            .connect(addrs)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot reach NATS at {servers}: {e}")))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(Duration::from_secs(5))
            .build(client.clone());
        Ok(Arc::new(NatsClient {
            client,
            js,
            streams: Mutex::default(),
            buckets: Mutex::default(),
        }))
    }

    fn stream(&self, name: &str) -> Result<stream::Stream, NatsError> {
        opened(&self.streams, "stream", name)
    }

    fn bucket(&self, name: &str) -> Result<kv::Store, NatsError> {
        opened(&self.buckets, "bucket", name)
    }
}

/// The `kind` called `name` that this connection opened.
fn opened<T: Clone>(
    opened: &Mutex<HashMap<String, T>>,
    kind: &str,
    name: &str,
) -> Result<T, NatsError> {
    opened
        .lock()
        .ok()
        .and_then(|o| o.get(name).cloned())
        .ok_or_else(|| NatsError::Refused(format!("{kind} {name} was not opened")))
}

fn message(m: jetstream::message::StreamMessage) -> Message {
    let mut headers: Vec<(String, String)> = m
        .headers
        .iter()
        .filter(|(name, _)| !name.to_string().starts_with("Nats-"))
        .flat_map(|(name, values)| {
            values
                .iter()
                .map(move |v| (name.to_string(), v.as_str().to_owned()))
        })
        .collect();
    headers.sort();
    Message {
        subject: m.subject.to_string(),
        seq: m.sequence,
        headers,
        payload: m.payload,
    }
}

fn found(
    result: Result<jetstream::message::StreamMessage, stream::LastRawMessageError>,
) -> Result<Option<Message>, NatsError> {
    match result {
        Ok(m) => Ok(Some(message(m))),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}

impl Nats for NatsClient {
    fn server_info(&self) -> ServerInfo {
        let info = self.client.server_info();
        ServerInfo {
            version: info.version,
            max_payload: info.max_payload,
        }
    }

    fn new_inbox(&self) -> String {
        self.client.new_inbox()
    }

    fn nonce(&self) -> u64 {
        rand::random()
    }

    fn create_stream(&self, config: StreamConfig) -> NatsFuture<'_, Option<u64>> {
        Box::pin(async move {
            let name = config.name.clone();
            let made = self
                .js
                .get_or_create_stream(stream::Config {
                    name: config.name,
                    subjects: config.subjects,
                    storage: StorageType::File,
                    num_replicas: config.replicas,
                    discard: DiscardPolicy::New,
                    max_bytes: config
                        .max_bytes
                        .map_or(-1, |b| i64::try_from(b).unwrap_or(i64::MAX)),
                    duplicate_window: config.duplicate_window,
                    ..Default::default()
                })
                .await;
            let stream = match made {
                Ok(stream) => stream,
                Err(e) => {
                    let transient = match e.kind() {
                        CreateStreamErrorKind::TimedOut
                        | CreateStreamErrorKind::JetStreamUnavailable
                        | CreateStreamErrorKind::Response => true,
                        CreateStreamErrorKind::JetStream(j) => {
                            j.error_code() == jetstream::ErrorCode::CLUSTER_NOT_AVAILABLE
                        }
                        _ => false,
                    };
                    return Err(if transient {
                        unavailable(e)
                    } else {
                        NatsError::Refused(e.to_string())
                    });
                }
            };
            let max_bytes = u64::try_from(stream.cached_info().config.max_bytes)
                .ok()
                .filter(|b| *b > 0);
            if let Ok(mut streams) = self.streams.lock() {
                streams.insert(name, stream);
            }
            Ok(max_bytes)
        })
    }

    fn publish(&self, _stream: &str, message: Publish) -> NatsFuture<'_, PubAck> {
        Box::pin(async move {
            let mut out = PublishMessage::build().payload(message.payload);
            if let Some(id) = &message.msg_id {
                out = out.message_id(id.as_str());
            }
            if let Some((seq, subject)) = &message.expect {
                out = out.expected_last_subject_sequence(*seq);
                if let Some(subject) = subject {
                    out = out.header(
                        "Nats-Expected-Last-Subject-Sequence-Subject",
                        subject.as_str(),
                    );
                }
            }
            for (name, value) in &message.headers {
                out = out.header(name.as_str(), value.as_str());
            }
            let sent = async { self.js.send_publish(message.subject, out).await?.await };
            let error = match sent.await {
                Ok(ack) => {
                    return Ok(PubAck {
                        seq: ack.sequence,
                        duplicate: ack.duplicate,
                    });
                }
                Err(e) => e,
            };
            let text = format!("{error} (kind {:?})", error.kind());
            Err(match error.kind() {
                PublishErrorKind::WrongLastSequence => NatsError::WrongLastSequence(text),
                PublishErrorKind::TimedOut
                | PublishErrorKind::BrokenPipe
                | PublishErrorKind::StreamNotFound
                | PublishErrorKind::MaxAckPending => NatsError::Unavailable(text),
                // 10077 message size exceeds maximum bytes, 10047 insufficient resources.
                PublishErrorKind::Other
                    if text.contains("10077")
                        || text.contains("maximum bytes")
                        || text.contains("10047") =>
                {
                    NatsError::Full(text)
                }
                // A leader election answers "no suitable peers" or "leader not known".
                PublishErrorKind::Other => NatsError::Unavailable(text),
                _ => NatsError::Refused(text),
            })
        })
    }

    fn last_message(&self, stream: &str, subject: &str) -> NatsFuture<'_, Option<Message>> {
        let (stream, subject) = (self.stream(stream), subject.to_owned());
        Box::pin(async move { found(stream?.get_last_raw_message_by_subject(&subject).await) })
    }

    fn next_message(
        &self,
        stream: &str,
        subject: &str,
        seq: u64,
    ) -> NatsFuture<'_, Option<Message>> {
        let (stream, subject) = (self.stream(stream), subject.to_owned());
        Box::pin(async move {
            found(
                stream?
                    .raw_message_builder()
                    .sequence(seq.max(1))
                    .next_by_subject(subject)
                    .send()
                    .await,
            )
        })
    }

    fn subjects(&self, stream: &str, filter: &str) -> NatsFuture<'_, Vec<String>> {
        let (stream, filter) = (self.stream(stream), filter.to_owned());
        Box::pin(async move {
            let mut listed = stream?
                .info_with_subjects(filter)
                .await
                .map_err(unavailable)?;
            let mut subjects = Vec::new();
            while let Some((subject, _)) = listed.try_next().await.map_err(unavailable)? {
                subjects.push(subject);
            }
            Ok(subjects)
        })
    }

    fn purge(&self, stream: &str, subject: &str, below: Option<u64>) -> NatsFuture<'_, ()> {
        let (stream, subject) = (self.stream(stream), subject.to_owned());
        Box::pin(async move {
            let stream = stream?;
            let purge = stream.purge().filter(subject.as_str());
            match below {
                Some(seq) => purge.sequence(seq).await,
                None => purge.await,
            }
            .map(drop)
            .map_err(unavailable)
        })
    }

    fn kv_open(&self, config: KvConfig) -> NatsFuture<'_, ()> {
        Box::pin(async move {
            let store = match self.js.get_key_value(&config.bucket).await {
                Ok(kv) => kv,
                Err(_) => self
                    .js
                    .create_key_value(kv::Config {
                        bucket: config.bucket.clone(),
                        description: config.description,
                        history: 1,
                        max_age: config.max_age,
                        storage: StorageType::File,
                        num_replicas: config.replicas,
                        ..Default::default()
                    })
                    .await
                    .map_err(unavailable)?,
            };
            if let Ok(mut buckets) = self.buckets.lock() {
                buckets.insert(config.bucket, store);
            }
            Ok(())
        })
    }

    fn kv_get(&self, bucket: &str, key: &str) -> NatsFuture<'_, Option<KvEntry>> {
        let (kv, key) = (self.bucket(bucket), key.to_owned());
        Box::pin(async move {
            Ok(kv?
                .entry(key)
                .await
                .map_err(unavailable)?
                .filter(|e| e.operation == Operation::Put)
                .map(|e| KvEntry {
                    value: e.value,
                    revision: e.revision,
                }))
        })
    }

    fn kv_create(&self, bucket: &str, key: &str, value: Bytes) -> NatsFuture<'_, u64> {
        let (kv, key) = (self.bucket(bucket), key.to_owned());
        Box::pin(async move {
            kv?.create(key, value).await.map_err(|e| {
                if e.kind() == CreateErrorKind::AlreadyExists {
                    NatsError::AlreadyExists
                } else {
                    unavailable(e)
                }
            })
        })
    }

    fn kv_update(
        &self,
        bucket: &str,
        key: &str,
        value: Bytes,
        revision: u64,
    ) -> NatsFuture<'_, u64> {
        let (kv, key) = (self.bucket(bucket), key.to_owned());
        Box::pin(async move {
            kv?.update(key, value, revision).await.map_err(|e| {
                if e.kind() == UpdateErrorKind::WrongLastRevision {
                    NatsError::WrongLastSequence(e.to_string())
                } else {
                    unavailable(e)
                }
            })
        })
    }

    fn kv_put(&self, bucket: &str, key: &str, value: Bytes) -> NatsFuture<'_, u64> {
        let (kv, key) = (self.bucket(bucket), key.to_owned());
        Box::pin(async move { kv?.put(key, value).await.map_err(unavailable) })
    }

    fn kv_delete(&self, bucket: &str, key: &str, revision: u64) -> NatsFuture<'_, ()> {
        let (kv, key) = (self.bucket(bucket), key.to_owned());
        Box::pin(async move {
            kv?.delete_expect_revision(key, Some(revision))
                .await
                .map_err(|e| {
                    let text = e.to_string();
                    if text.contains("10071") || text.contains("wrong last sequence") {
                        NatsError::WrongLastSequence(text)
                    } else {
                        NatsError::Unavailable(text)
                    }
                })
        })
    }

    /// Listed from the bucket stream's subjects: a list that ends, unlike a watch over a
    /// bucket whose lease key keeps changing.
    fn kv_keys(&self, bucket: &str, prefix: &str) -> NatsFuture<'_, Vec<String>> {
        let (kv, bucket, prefix) = (self.bucket(bucket), bucket.to_owned(), prefix.to_owned());
        Box::pin(async move {
            let kv = kv?;
            let head = format!("$KV.{bucket}.");
            let stream = self
                .js
                .get_stream(format!("KV_{bucket}"))
                .await
                .map_err(unavailable)?;
            let mut listed = stream
                .info_with_subjects(format!("{head}{prefix}>"))
                .await
                .map_err(unavailable)?;
            let mut keys = Vec::new();
            while let Some((subject, _)) = listed.try_next().await.map_err(unavailable)? {
                if let Some(key) = subject.strip_prefix(&head)
                    && kv.get(key).await.map_err(unavailable)?.is_some()
                {
                    keys.push(key.to_owned());
                }
            }
            keys.sort();
            Ok(keys)
        })
    }

    fn subscribe(&self, subject: &str) -> NatsFuture<'_, Subscription> {
        let subject = subject.to_owned();
        Box::pin(async move {
            let subscriber = self.client.subscribe(subject).await.map_err(unavailable)?;
            let messages = subscriber.map(|m| CoreMessage {
                subject: m.subject.to_string(),
                reply: m.reply.map(|r| r.to_string()),
                payload: m.payload,
                no_responders: m.status == Some(async_nats::StatusCode::NO_RESPONDERS),
            });
            Ok(Box::pin(messages) as Subscription)
        })
    }

    fn send(&self, subject: &str, reply: Option<&str>, payload: Bytes) -> NatsFuture<'_, ()> {
        let (subject, reply) = (subject.to_owned(), reply.map(str::to_owned));
        Box::pin(async move {
            match reply {
                Some(reply) => {
                    self.client
                        .publish_with_reply(subject, reply, payload)
                        .await
                }
                None => self.client.publish(subject, payload).await,
            }
            .map_err(unavailable)
        })
    }
}
