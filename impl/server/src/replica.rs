//! Replicas of one deployment on a NATS JetStream stream: who leads, and how the others
//! reach the leader.
//!
//! - **The lease** is a key in a JetStream key-value bucket (`<stream>_LEASE`, kept on as
//!   many servers as the stream, entries expiring `lease` after they were written). A
//!   replica takes it with a create (which fails while another holds it) and keeps it with
//!   updates guarded by the revision it holds. A leader that cannot renew in time stops
//!   leading, by its own clock, a quarter of the lease before the key can expire; a replica
//!   that dies holding it is replaced once the key expires. The lease decides who should
//!   lead; the log's guard decides who may append (see [`crate::driver`]).
//! - **Forwarding**: a follower sends each request, as JSON with an id of its own, to
//!   `_ace.<stream>.rpc.<leader>`, the subject of the replica the lease names; a replica
//!   listens on its own subject only while it leads (so a paused old leader that wakes up
//!   gets nothing new, and a follower stops waiting for it as soon as the lease names
//!   another). The leader first says it has the request, then answers
//!   the model's reply, after its append is durable, or word that nothing was decided (it
//!   lost the lead meanwhile). A follower that hears nothing at all soon (the request went
//!   to a leader that had just died, or that is paused) sends it again with the same id: a
//!   leader decides one id once and answers a repeat with the first answer. A follower tries
//!   until a leader answers, for up to the lease plus a margin; once a leader said it has the
//!   request, the follower waits for that leader's answer only.
//! - **Members**: each replica keeps its listeners' addresses under `member.<name>` in the
//!   same bucket (rewritten every 250 ms, so a dead replica's entry expires with the lease),
//!   and reads everyone's: the egress policy refuses them as it refuses the replica's own, so
//!   a registered API cannot point one replica's proxy at another replica's admin API. A
//!   replica refuses every member it has seen for as long as it runs: a record also lapses
//!   while its replica, still serving, cannot reach the log. A replica starting records its
//!   listeners, reads the others', and waits for the others to have read its own before it
//!   serves.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ace_model::bugs::{Bug, Bugs};
use ace_model::error::CommonError;
use ace_model::{Reply, Request, RequestError};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::driver::{Forward, Handle, Lease};
use crate::nats::{KvConfig, Nats, NatsError};
use crate::outbound::egress::{Listeners, Peers};
use crate::store::StoreError;

/// How a replica takes part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaOptions {
    /// This replica's name, as the lease and the logs show it.
    pub name: String,
    /// How long the lease lasts without a renewal: how soon another replica takes over when
    /// the leader dies (renewed every sixth of it).
    pub lease: Duration,
    /// How long a follower waits for the leader's answer to one forwarded request (the
    /// leader may be waiting for the servers to elect a stream leader).
    pub answer_timeout: Duration,
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        ReplicaOptions {
            name: format!("ace-{}", std::process::id()),
            lease: Duration::from_secs(6),
            answer_timeout: Duration::from_secs(40),
        }
    }
}

/// Gives the lease back (when the server stops cleanly).
pub type Release = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The lease's key in the bucket.
const KEY: &str = "leader";

/// How long a follower waits to apply a change it forwarded before it answers anyway.
const CATCH_UP: Duration = Duration::from_secs(5);

/// How often a replica rewrites its listeners and reads everyone's.
const MEMBERS_EVERY: Duration = Duration::from_millis(250);

/// How long a replica waits for one write or read of the members before it tries again.
const MEMBERS_WAIT: Duration = Duration::from_secs(1);

/// How often a follower looks whether the lease is free.
const POLL: Duration = Duration::from_millis(250);

/// How long a follower waits for a leader to say it has a forwarded request before it sends
/// the request again.
const TAKEN_WITHIN: Duration = Duration::from_secs(2);

/// How many answers a leader keeps for repeated requests.
const ANSWERS_KEPT: usize = 4096;

/// A request as a follower forwards it.
#[derive(Debug, Serialize, Deserialize)]
struct Forwarded {
    /// Unique to this request on this follower, the same each time it is sent again.
    id: String,
    request: Request,
}

/// What a leader answers a forwarded request.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    /// The leader has the request and will answer it (sent before it is decided).
    Taken,
    /// The model's reply, and how far the leader's log was when it was given (a follower
    /// applies that far before it answers).
    Reply(Box<Reply>, u64),
    /// Nothing was decided (this replica does not lead): ask again.
    Retry,
}

/// The lease and the forwarding of one replica.
#[derive(Debug)]
pub struct Replica {
    nats: Arc<dyn Nats>,
    /// How long it waits out servers that cannot answer while it starts.
    patience: Duration,
    /// The lease bucket.
    bucket: String,
    rpc: String,
    options: ReplicaOptions,
    lease: watch::Sender<Lease>,
    /// The name of the replica that holds the lease, when known.
    holder: watch::Sender<Option<String>>,
    applied: watch::Sender<u64>,
    /// Bugs of the zoo switched on (`peer-egress-open`, `forward-ids-reused` and
    /// `forward-ids-shared` are the replica's).
    bugs: Bugs,
}

impl Replica {
    /// Opens (or makes) the lease bucket of `stream`, kept on `replicas` servers.
    /// Waits out servers that cannot answer (an election) for up to `patience`, here and when
    /// it [joins](Self::join).
    pub async fn open(
        nats: Arc<dyn Nats>,
        stream: &str,
        replicas: usize,
        options: ReplicaOptions,
        patience: Duration,
    ) -> Result<Self, StoreError> {
        let bucket = format!("{stream}_LEASE");
        let config = KvConfig {
            bucket: bucket.clone(),
            description: format!("Which ACE replica leads the deployment on stream {stream}"),
            max_age: options.lease,
            replicas,
        };
        crate::nats::patiently(patience, "cannot open the lease bucket", || {
            nats.kv_open(config.clone())
        })
        .await
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot open the lease bucket {bucket}: {e}"))
        })?;
        let (lease, _) = watch::channel(Lease::Follow { leader: false });
        let (applied, _) = watch::channel(0);
        let (holder, _) = watch::channel(None);
        Ok(Replica {
            nats,
            patience,
            bucket,
            rpc: format!("_ace.{}.rpc", stream.to_ascii_lowercase()),
            options,
            lease,
            holder,
            applied,
            bugs: Bugs::NONE,
        })
    }

    /// This replica with `bugs` of the zoo switched on.
    #[must_use]
    pub fn with_bugs(mut self, bugs: Bugs) -> Self {
        self.bugs = bugs;
        self
    }

    /// Records this replica's listeners (`own`) for the others, and waits until every other
    /// replica has read them, before this one serves: from its first request on, no other
    /// replica's proxy reaches its surfaces.
    ///
    /// It also reads the others' listeners into `peers` before it serves, so its own proxy
    /// never reaches theirs either.
    pub async fn join(&self, own: &Listeners, peers: &Peers) -> Result<(), StoreError> {
        let (key, value) = member_entry(&self.options.name, own)?;
        crate::nats::patiently(
            self.patience,
            "cannot record this replica's listeners",
            || self.nats.kv_put(&self.bucket, &key, value.clone()),
        )
        .await
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot record this replica's listeners: {e}"))
        })?;
        let bucket = Bucket {
            nats: Arc::clone(&self.nats),
            name: self.bucket.clone(),
        };
        let found = crate::nats::patiently(
            self.patience,
            "cannot read the other replicas' listeners",
            || members(&bucket),
        )
        .await
        .map_err(|e| {
            StoreError::Unavailable(format!("cannot read the other replicas' listeners: {e}"))
        })?;
        if !self.bugs.has(Bug::PeerEgressOpen) {
            peers.learn(found);
        }
        tokio::time::sleep(MEMBERS_EVERY * 2).await;
        Ok(())
    }

    /// Who leads, as this replica's lease task sees it.
    pub fn lease(&self) -> watch::Receiver<Lease> {
        self.lease.subscribe()
    }

    /// Where the driver tells how far its state is in the log.
    pub fn applied(&self) -> watch::Sender<u64> {
        self.applied.clone()
    }

    /// Where the lease task tells which replica holds the lease (the one requests are
    /// forwarded to).
    pub fn holder(&self) -> watch::Sender<Option<String>> {
        self.holder.clone()
    }

    /// What sends requests to the leader.
    pub fn forwarder(&self) -> Arc<dyn Forward> {
        Arc::new(Forwarder {
            nats: Arc::clone(&self.nats),
            rpc: self.rpc.clone(),
            // A replica started again under the same name must not send ids the leader
            // still keeps answers for: they would be answered with the old answers.
            name: if self.bugs.has(Bug::ForwardIdsShared) {
                "forwarded".into()
            } else if self.bugs.has(Bug::ForwardIdsReused) {
                self.options.name.clone()
            } else {
                format!("{}-{:016x}", self.options.name, self.nats.nonce())
            },
            holder: self.holder.subscribe(),
            sent: AtomicU64::new(0),
            retry_for: self.options.lease + Duration::from_secs(5),
            answer_timeout: self.options.answer_timeout,
            applied: self.applied.subscribe(),
        })
    }

    /// Runs the lease and, while this replica leads, answers forwarded requests through
    /// `driver`. Returns the tasks (they end when aborted) and what gives the lease back
    /// when the server stops (so that another replica need not wait for it to expire).
    pub fn run(
        self,
        driver: Handle,
        own: Listeners,
        peers: Peers,
    ) -> (Vec<tokio::task::JoinHandle<()>>, Release) {
        let leases = self.lease.subscribe();
        let inbox = tokio::spawn(answer_forwarded(
            Arc::clone(&self.nats),
            subject(&self.rpc, &self.options.name),
            leases,
            self.applied.subscribe(),
            driver,
        ));
        let held = Arc::new(Mutex::new(None));
        let bucket = Bucket {
            nats: self.nats,
            name: self.bucket,
        };
        let release = {
            let (bucket, held) = (bucket.clone(), Arc::clone(&held));
            Box::pin(async move {
                let revision = held.lock().ok().and_then(|mut h| h.take());
                if let Some(revision) = revision {
                    match bucket.nats.kv_delete(&bucket.name, KEY, revision).await {
                        Ok(()) => tracing::info!("gave the lease back"),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot give the lease back; it expires by itself")
                        }
                    }
                }
            }) as Release
        };
        // With `peer-egress-open`, the others' listeners are recorded but never read.
        let peers = (!self.bugs.has(Bug::PeerEgressOpen)).then_some(peers);
        let members = tokio::spawn(keep_membership(
            bucket.clone(),
            self.options.clone(),
            own,
            peers,
        ));
        let lease = tokio::spawn(keep_lease(
            bucket,
            self.options,
            (self.lease, self.holder),
            held,
        ));
        (vec![lease, inbox, members], release)
    }
}

/// Keeps this replica's listeners in the bucket and everyone's in `peers` (if given).
async fn keep_membership(
    bucket: Bucket,
    options: ReplicaOptions,
    own: Listeners,
    peers: Option<Peers>,
) {
    let (key, value) = match member_entry(&options.name, &own) {
        Ok(entry) => entry,
        Err(e) => {
            tracing::error!(error = %e, "cannot encode this replica's listeners");
            return;
        }
    };
    loop {
        // The write and the read side by side, each given up after a while when the log
        // cannot answer (an election): the next round tries again, so that a write blocked
        // never holds back learning of a replica that came meanwhile.
        let put = tokio::time::timeout(
            MEMBERS_WAIT,
            bucket.nats.kv_put(&bucket.name, &key, value.clone()),
        );
        let read = async {
            let Some(peers) = &peers else {
                return;
            };
            match tokio::time::timeout(MEMBERS_WAIT, members(&bucket)).await {
                Ok(Ok(found)) => peers.learn(found),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot read the other replicas' listeners");
                }
                Err(_) => tracing::warn!("reading the other replicas' listeners took too long"),
            }
        };
        let (put, ()) = tokio::join!(put, read);
        match put {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot record this replica's listeners"),
            Err(_) => tracing::warn!("recording this replica's listeners took too long"),
        }
        tokio::time::sleep(MEMBERS_EVERY).await;
    }
}

/// The lease bucket on a connection.
#[derive(Clone, Debug)]
struct Bucket {
    nats: Arc<dyn Nats>,
    name: String,
}

/// Every replica's listeners, as the bucket has them, by key.
async fn members(bucket: &Bucket) -> Result<Vec<(String, Listeners)>, NatsError> {
    let mut found = Vec::new();
    for key in bucket.nats.kv_keys(&bucket.name, "member.").await? {
        if let Some(entry) = bucket.nats.kv_get(&bucket.name, &key).await?
            && let Ok(listeners) = serde_json::from_slice::<Listeners>(&entry.value)
        {
            found.push((key, listeners));
        }
    }
    Ok(found)
}

/// The key and value under which replica `name` records its listeners `own`.
fn member_entry(name: &str, own: &Listeners) -> Result<(String, Bytes), StoreError> {
    let value = serde_json::to_vec(own)
        .map_err(|e| StoreError::Corrupt(format!("this replica's listeners: {e}")))?;
    Ok((format!("member.{}", member_key(name)), Bytes::from(value)))
}

/// `name` as one token of a key (letters, digits, `-` and `_`; anything else as `_`).
fn member_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The subject on which replica `name` answers forwarded requests while it leads.
fn subject(rpc: &str, name: &str) -> String {
    format!("{rpc}.{}", member_key(name))
}

/// Takes the lease when it is free and keeps it while it can, telling `state` and who holds
/// it.
async fn keep_lease(
    kv: Bucket,
    options: ReplicaOptions,
    (state, holder): (watch::Sender<Lease>, watch::Sender<Option<String>>),
    shared: Arc<Mutex<Option<u64>>>,
) {
    let set_holder = |name: Option<String>| {
        holder.send_if_modified(|h| {
            let changed = *h != name;
            *h = name;
            changed
        });
    };
    let name = Bytes::from(options.name.clone());
    let renew_every = options.lease / 6;
    // Stop leading a quarter of the lease before the key can expire on the servers.
    let valid_for = options.lease - options.lease / 4;
    let mut held: Option<(u64, Instant)> = None;
    loop {
        if let Ok(mut shared) = shared.lock() {
            *shared = held.map(|(revision, _)| revision);
        }
        match held {
            None => {
                let leader = match kv.nats.kv_get(&kv.name, KEY).await {
                    Ok(Some(entry)) => {
                        set_holder(Some(String::from_utf8_lossy(&entry.value).into_owned()));
                        true
                    }
                    Ok(_) => {
                        let sent = Instant::now();
                        match kv.nats.kv_create(&kv.name, KEY, name.clone()).await {
                            Ok(revision) => {
                                held = Some((revision, sent + valid_for));
                                tracing::info!(replica = options.name, "took the lease");
                                set_holder(Some(options.name.clone()));
                                state.send_replace(Lease::Lead {
                                    until: sent + valid_for,
                                });
                                continue;
                            }
                            Err(NatsError::AlreadyExists) => true,
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot take the lease");
                                false
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the lease");
                        false
                    }
                };
                if !leader {
                    set_holder(None);
                }
                state.send_if_modified(|s| {
                    let new = Lease::Follow { leader };
                    let changed = *s != new;
                    *s = new;
                    changed
                });
                tokio::time::sleep(POLL).await;
            }
            Some((revision, until)) => {
                tokio::time::sleep(renew_every).await;
                let sent = Instant::now();
                match kv
                    .nats
                    .kv_update(&kv.name, KEY, name.clone(), revision)
                    .await
                {
                    Ok(revision) => {
                        held = Some((revision, sent + valid_for));
                        state.send_replace(Lease::Lead {
                            until: sent + valid_for,
                        });
                    }
                    Err(NatsError::WrongLastSequence(_)) => {
                        tracing::warn!(
                            replica = options.name,
                            "another replica holds the lease now"
                        );
                        held = None;
                        set_holder(None);
                        state.send_replace(Lease::Follow { leader: true });
                    }
                    Err(e) => {
                        if Instant::now() >= until {
                            tracing::warn!(error = %e, replica = options.name, "the lease lapsed: it could not be renewed in time");
                            held = None;
                            set_holder(None);
                            state.send_replace(Lease::Follow { leader: false });
                        } else {
                            tracing::warn!(error = %e, "cannot renew the lease; trying again");
                        }
                    }
                }
            }
        }
    }
}

/// While this replica leads, answers the requests followers forward.
async fn answer_forwarded(
    client: Arc<dyn Nats>,
    rpc: String,
    mut lease: watch::Receiver<Lease>,
    applied: watch::Receiver<u64>,
    driver: Handle,
) {
    let answers = Arc::new(Mutex::new(Answers::default()));
    loop {
        while !matches!(*lease.borrow_and_update(), Lease::Lead { .. }) {
            if lease.changed().await.is_err() {
                return;
            }
        }
        let mut inbox = match client.subscribe(&rpc).await {
            Ok(inbox) => inbox,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for forwarded requests; trying again");
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                biased;
                changed = lease.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if !matches!(*lease.borrow_and_update(), Lease::Lead { .. }) {
                        break;
                    }
                }
                message = inbox.next() => {
                    let Some(message) = message else { break };
                    let Some(reply_to) = message.reply.clone() else { continue };
                    let (driver, client, applied) = (driver.clone(), Arc::clone(&client), applied.clone());
                    let answers = Arc::clone(&answers);
                    tokio::spawn(async move {
                        let body = answer(&driver, client.as_ref(), &applied, &answers, &reply_to, &message.payload).await;
                        if let Err(e) = client.send(&reply_to, None, body).await {
                            tracing::warn!(error = %e, "cannot answer a forwarded request");
                        }
                    });
                }
            }
        }
        drop(inbox);
    }
}

/// The answers a leader gave (or is working out) to recent forwarded requests, by id.
#[derive(Default)]
struct Answers {
    by_id: HashMap<String, watch::Receiver<Option<Bytes>>>,
    order: VecDeque<String>,
}

/// Says the request was taken, decides it (once per id) and returns the encoded answer.
async fn answer(
    driver: &Handle,
    client: &dyn Nats,
    applied: &watch::Receiver<u64>,
    answers: &Mutex<Answers>,
    reply_to: &str,
    payload: &[u8],
) -> Bytes {
    let forwarded = match serde_json::from_slice::<Forwarded>(payload) {
        Ok(f) => f,
        Err(e) => {
            let reply = error(400, &format!("A forwarded request could not be read: {e}"));
            return encode(&Answer::Reply(Box::new(reply), 0));
        }
    };
    if let Err(e) = client.send(reply_to, None, encode(&Answer::Taken)).await {
        tracing::warn!(error = %e, "cannot tell a follower its request was taken");
    }
    let (earlier, tx) = {
        let Ok(mut answers) = answers.lock() else {
            return encode(&Answer::Retry);
        };
        match answers.by_id.get(&forwarded.id) {
            Some(rx) => (Some(rx.clone()), None),
            None => {
                let (tx, rx) = watch::channel(None);
                answers.by_id.insert(forwarded.id.clone(), rx);
                answers.order.push_back(forwarded.id.clone());
                while answers.order.len() > ANSWERS_KEPT {
                    if let Some(old) = answers.order.pop_front() {
                        answers.by_id.remove(&old);
                    }
                }
                (None, Some(tx))
            }
        }
    };
    if let Some(mut rx) = earlier {
        // Sent again: the first answer, once there is one.
        return match rx.wait_for(Option::is_some).await {
            Ok(body) => body.clone().unwrap_or_else(|| encode(&Answer::Retry)),
            Err(_) => encode(&Answer::Retry),
        };
    }
    let body = match driver.call_forwarded(forwarded.request).await {
        Ok(reply) => encode(&Answer::Reply(Box::new(reply), *applied.borrow())),
        Err(_) => {
            // Nothing was decided: a repeat is decided afresh.
            if let Ok(mut answers) = answers.lock() {
                answers.by_id.remove(&forwarded.id);
            }
            encode(&Answer::Retry)
        }
    };
    if let Some(tx) = tx {
        tx.send_replace(Some(body.clone()));
    }
    body
}

fn encode(answer: &Answer) -> Bytes {
    match serde_json::to_vec(answer) {
        Ok(body) => body.into(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an answer");
            Bytes::from_static(b"\"Retry\"")
        }
    }
}

fn error(status: u16, message: &str) -> Reply {
    Reply::Error(RequestError::Common(CommonError::new(status, message)))
}

/// Sends requests to the leader.
#[derive(Debug)]
struct Forwarder {
    nats: Arc<dyn Nats>,
    rpc: String,
    /// This replica's name and a value drawn when it started: the first part of every
    /// forwarded request's id.
    name: String,
    /// Who holds the lease.
    holder: watch::Receiver<Option<String>>,
    /// How many requests this replica forwarded (the second part).
    sent: AtomicU64,
    /// How long to keep asking while no leader answers.
    retry_for: Duration,
    answer_timeout: Duration,
    /// How far this replica applied the log.
    applied: watch::Receiver<u64>,
}

/// How one sending of a forwarded request ended.
enum Sent {
    /// The leader's answer.
    Answered(Reply, u64),
    /// No leader has it: send it again (after a pause).
    Again,
    /// An answer for the caller, made here.
    Failed(Reply),
}

impl Forward for Forwarder {
    fn forward(&self, request: Request) -> Pin<Box<dyn Future<Output = Reply> + Send>> {
        let client = Arc::clone(&self.nats);
        let rpc = self.rpc.clone();
        let retry_for = self.retry_for;
        let answer_timeout = self.answer_timeout;
        let mut applied = self.applied.clone();
        let mut holder = self.holder.clone();
        let id = format!(
            "{}-{}",
            self.name,
            self.sent.fetch_add(1, Ordering::Relaxed)
        );
        Box::pin(async move {
            let payload = match serde_json::to_vec(&Forwarded { id, request }) {
                Ok(p) => Bytes::from(p),
                Err(e) => return error(500, &format!("The request could not be forwarded: {e}")),
            };
            let max = client.server_info().max_payload;
            if payload.len() + 1024 > max {
                return error(
                    413,
                    &format!(
                        "The request is too large to forward to the leading replica ({} bytes; \
                         the NATS servers' max_payload is {max}).",
                        payload.len()
                    ),
                );
            }
            let deadline = Instant::now() + retry_for;
            let mut wait = Duration::from_millis(25);
            loop {
                match send(client.as_ref(), &rpc, &mut holder, &payload, answer_timeout).await {
                    Sent::Answered(reply, position) => {
                        // Read-your-writes here: answer once this replica applied the
                        // change (its proxy decides from what it applied).
                        let caught_up = applied.wait_for(|a| *a >= position);
                        if tokio::time::timeout(CATCH_UP, caught_up).await.is_err() {
                            tracing::warn!(
                                position,
                                applied = *applied.borrow(),
                                "answering before this follower applied the leader's change"
                            );
                        }
                        return reply;
                    }
                    Sent::Failed(reply) => return reply,
                    Sent::Again => {}
                }
                if Instant::now() + wait > deadline {
                    return error(503, "No replica leads the deployment now; retry later.");
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
        })
    }
}

/// Sends a forwarded request once to the replica that holds the lease and waits for what it
/// says of it.
async fn send(
    client: &dyn Nats,
    rpc: &str,
    holder: &mut watch::Receiver<Option<String>>,
    payload: &Bytes,
    answer_timeout: Duration,
) -> Sent {
    let Some(leader) = holder.borrow_and_update().clone() else {
        return Sent::Again;
    };
    let inbox = client.new_inbox();
    let mut answers = match client.subscribe(&inbox).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot forward a request; trying again");
            return Sent::Again;
        }
    };
    if let Err(e) = client
        .send(&subject(rpc, &leader), Some(&inbox), payload.clone())
        .await
    {
        tracing::warn!(error = %e, "cannot forward a request; trying again");
        return Sent::Again;
    }
    // Until a leader says it has the request, nothing was decided: a request that went to
    // a leader that just died is sent again.
    // Nor if the lease passes to another replica first.
    let mut taken = false;
    loop {
        let within = if taken { answer_timeout } else { TAKEN_WITHIN };
        let next = async {
            if taken {
                answers.next().await
            } else {
                tokio::select! {
                    biased;
                    message = answers.next() => message,
                    () = moved(holder, &leader) => None,
                }
            }
        };
        let message = match tokio::time::timeout(within, next).await {
            Ok(Some(message)) => message,
            Ok(None) => return Sent::Again,
            Err(_) if !taken => return Sent::Again,
            Err(_) => {
                return Sent::Failed(error(
                    503,
                    "The leading replica did not answer in time; the request may or may not \
                     have taken effect.",
                ));
            }
        };
        if message.no_responders {
            return Sent::Again;
        }
        match serde_json::from_slice::<Answer>(&message.payload) {
            Ok(Answer::Taken) => taken = true,
            Ok(Answer::Reply(reply, position)) => return Sent::Answered(*reply, position),
            Ok(Answer::Retry) => return Sent::Again,
            Err(e) => {
                return Sent::Failed(error(
                    502,
                    &format!("The leading replica's answer could not be read: {e}"),
                ));
            }
        }
    }
}

/// Resolves once the lease names a replica other than `leader` (or none).
async fn moved(holder: &mut watch::Receiver<Option<String>>, leader: &str) {
    if holder
        .wait_for(|h| h.as_deref() != Some(leader))
        .await
        .is_err()
    {
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nats::standin::{StandIn, StandInOptions};

    /// The ids of the requests `replica` forwards to a leader `l` that records them.
    async fn forwarded_id(standin: &StandIn, replica: &Replica) -> String {
        let leader = standin.connect("l");
        let mut inbox = leader
            .subscribe("_ace.s.rpc.l")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        replica.holder().send_replace(Some("l".into()));
        let forward = replica.forwarder();
        let asked = tokio::spawn(async move {
            forward
                .forward(Request::Admin(
                    ace_model::AdminRequest::DeleteRemoteEnvironment { name: "x".into() },
                ))
                .await
        });
        let message = inbox
            .next()
            .await
            .unwrap_or_else(|| panic!("nothing forwarded"));
        let forwarded: Forwarded =
            serde_json::from_slice(&message.payload).unwrap_or_else(|e| panic!("{e}"));
        let reply = message.reply.unwrap_or_default();
        let answer = encode(&Answer::Reply(Box::new(Reply::NoContent), 0));
        leader
            .send(&reply, None, answer)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(asked.await.ok(), Some(Reply::NoContent));
        forwarded.id
    }

    #[tokio::test(start_paused = true)]
    async fn a_replica_started_again_under_its_name_forwards_new_ids() {
        let standin = StandIn::new(StandInOptions::default());
        let options = ReplicaOptions {
            name: "f".into(),
            ..ReplicaOptions::default()
        };
        let open = || async {
            Replica::open(
                standin.connect("f"),
                "S",
                3,
                options.clone(),
                Duration::ZERO,
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let first = forwarded_id(&standin, &open().await).await;
        let again = forwarded_id(&standin, &open().await).await;
        assert!(first.starts_with("f-"), "{first}");
        assert_ne!(
            first, again,
            "a restarted replica reused a forwarded request's id"
        );
    }
}
