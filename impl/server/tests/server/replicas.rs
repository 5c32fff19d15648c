//! Several `ace serve` replicas on one JetStream stream (three `nats-server` processes on
//! loopback, R3): one leads, the others apply its log and forward every request to it; what
//! any replica acknowledges is read back from every other; a token works once whichever
//! replica serves it; when the leader dies another takes the lead and nothing acknowledged
//! is lost; a follower that missed a compaction reads the log again.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ace_model::Record;
use ace_model::bus::ResourceKey;
use ace_server::options::StoreKind;
use ace_server::replica::ReplicaOptions;
use ace_server::store::jetstream::{JetStreamOptions, JetStreamStore};
use ace_server::store::{Position, Store, StoreError};
use hyper::Method;
use serde_json::json;

use crate::common::nats::{Cluster, IDENTITY, open};
use crate::common::subscriber::{self, eventually};
use crate::common::{TestServer, fast_retries, start_with, subject};

fn jetstream(cluster: &Cluster, stream: &str, name: &str) -> JetStreamOptions {
    JetStreamOptions {
        servers: cluster.urls(),
        stream: stream.into(),
        replicas: cluster.urls().len(),
        replica: ReplicaOptions {
            name: name.into(),
            lease: Duration::from_secs(2),
            ..ReplicaOptions::default()
        },
        ..JetStreamOptions::default()
    }
}

/// Replicas `a`, `b`, ... on one stream, sharing one identity (made by the first).
struct Replicas {
    dirs: Vec<tempfile::TempDir>,
    servers: Vec<Option<TestServer>>,
}

impl Replicas {
    async fn start(cluster: &Cluster, stream: &str, n: usize) -> Replicas {
        Self::start_with(cluster, stream, n, |_| {}).await
    }

    /// The same, each replica's options changed by `tweak` first.
    async fn start_with(
        cluster: &Cluster,
        stream: &str,
        n: usize,
        tweak: impl Fn(&mut ace_server::options::ServeOptions),
    ) -> Replicas {
        drop(open(&jetstream(cluster, stream, "setup")).await);
        let mut dirs = Vec::new();
        let mut servers = Vec::new();
        for i in 0..n {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
            if let Some(first) = dirs.first() {
                copy_identity(first, dir.path());
            }
            let name = format!("{}", char::from(b'a' + i as u8));
            let mut opts = fast_retries(dir.path());
            opts.store = StoreKind::JetStream(jetstream(cluster, stream, &name));
            tweak(&mut opts);
            servers.push(Some(start_with(opts).await));
            dirs.push(dir);
        }
        Replicas { dirs, servers }
    }

    fn get(&self, i: usize) -> &TestServer {
        self.servers[i]
            .as_ref()
            .unwrap_or_else(|| panic!("replica {i} was stopped"))
    }

    /// Which replica leads, once one does.
    async fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for (i, server) in self.servers.iter().enumerate() {
                if let Some(t) = server
                    && leads(t).await
                {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no replica took the lead");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops replica `i` without a clean stop: its tasks end, its lease is not given back.
    fn crash(&mut self, i: usize) {
        if let Some(t) = self.servers[i].take() {
            t.server.shutdown();
            drop(t);
        }
    }
}

fn copy_identity(from: &tempfile::TempDir, to: &Path) {
    for file in IDENTITY {
        std::fs::copy(from.path().join(file), to.join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

async fn metric(t: &TestServer, name: &str) -> Option<f64> {
    let text = t
        .send(Method::GET, &t.admin("/metrics"), None, None)
        .await
        .text();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

async fn leads(t: &TestServer) -> bool {
    metric(t, "ace_replica_leading").await == Some(1.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_replica_serves_and_reads_back_what_another_acknowledged() {
    let cluster = Cluster::start(3);
    let replicas = Replicas::start(&cluster, "SHARED", 2).await;
    let leader = replicas.leader().await;
    let follower = 1 - leader;
    let (l, f) = (replicas.get(leader), replicas.get(follower));
    assert!(!leads(f).await, "one leader at a time");

    // Written through the follower (forwarded), read back from both.
    assert_eq!(f.apply_re("shop").await.status / 100, 2);
    assert_eq!(f.activate("prod", "shop").await.status / 100, 2);
    let subscriber = subscriber::start(subscriber::always(200)).await;
    assert_eq!(
        f.subscribe("prod", "orders", &subscriber.url(), "shop", 4, 2000)
            .await
            .status
            / 100,
        2
    );
    for t in [l, f] {
        let got = t.subscription("prod", "orders").await;
        assert_eq!(got["spec"]["endpoint"], subscriber.url(), "{got}");
    }
    assert!(
        metric(f, "ace_replica_forwarded_total").await >= Some(3.0),
        "the follower forwarded its writes"
    );

    // Events published on either replica reach the subscriber.
    let mut ids = Vec::new();
    for (i, t) in [l, f, l, f].into_iter().enumerate() {
        let (status, id) = t.publish("shop", "order.created", json!({"n": i})).await;
        assert_eq!(status, 200);
        ids.push(id);
    }
    assert!(
        eventually(Duration::from_secs(20), || subscriber.delivered_ids().len()
            >= 4)
        .await,
        "every event is delivered: {:?}",
        subscriber.delivered_ids()
    );
    let delivered = subscriber.delivered_ids();
    for id in &ids {
        assert!(delivered.contains(id), "{id} delivered: {delivered:?}");
    }

    // A follower applies what the leader appends.
    let applied_f = metric(f, "ace_replica_applied_sequence").await;
    assert!(
        applied_f > Some(0.0),
        "the follower applied the log: {applied_f:?}"
    );

    // One token, offered to both replicas at once: one certificate.
    let token = l.token("shop").await;
    let key = ace_server::pki::generate_key(ace_server::pki::KeyKind::EcdsaP256)
        .unwrap_or_else(|e| panic!("{e}"));
    let csr = ace_server::pki::make_csr(&key, &subject("shop")).unwrap_or_else(|e| panic!("{e}"));
    use base64::Engine as _;
    let body = json!({"csr": base64::engine::general_purpose::STANDARD.encode(csr)}).to_string();
    let path = format!("/v1/remoteenvironments/shop/client-certs?token={token}");
    let (url_l, url_f) = (l.external(&path), f.external(&path));
    let (a, b) = tokio::join!(
        l.send(Method::POST, &url_l, Some(body.as_bytes()), None),
        f.send(Method::POST, &url_f, Some(body.as_bytes()), None),
    );
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    assert_eq!(statuses[0], 201, "{} / {}", a.text(), b.text());
    assert!(
        (400..500).contains(&statuses[1]),
        "the token works once: {} / {}",
        a.text(),
        b.text()
    );

    // One replica's proxy never reaches another replica's surfaces, whatever the policy
    // allows (loopback here): the replicas know each other's listeners.
    l.apply_re("evil").await;
    let me = l.onboard("evil").await;
    let target = format!("http://localhost:{}", f.server.admin.port());
    let (url, key) = crate::egress::bound(l, &me, json!({"targetUrl": target}))
        .await
        .unwrap_or_else(|r| panic!("{}", r.text()));
    assert!(url.contains(&l.server.proxy.port().to_string()), "{url}");
    let r =
        crate::egress::through_proxy(Method::GET, &format!("{url}/v1/remoteenvironments"), &key)
            .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("ACE's own listeners"), "{}", r.text());

    // Readiness: both replicas are ready while one leads.
    for t in [l, f] {
        let r = t.send(Method::GET, &t.admin("/readyz"), None, None).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    replicas_converge(&replicas).await;
}

/// Activates `shop` in `prod` and subscribes a subscriber answering as `behaviour` to
/// `order.created` (at most 2 pushes at once, 3 s push timeout), through `t`.
async fn activated_subscriber(
    t: &TestServer,
    behaviour: subscriber::Behaviour,
) -> subscriber::Subscriber {
    assert_eq!(t.activate("prod", "shop").await.status / 100, 2);
    let subscriber = subscriber::start(behaviour).await;
    let r = t
        .subscribe("prod", "orders", &subscriber.url(), "shop", 2, 3000)
        .await;
    assert_eq!(r.status / 100, 2, "{}", r.text());
    subscriber
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_dies_another_replica_leads_and_delivers_what_was_acknowledged() {
    let cluster = Cluster::start(3);
    let mut replicas = Replicas::start(&cluster, "FAILOVER", 2).await;
    let leader = replicas.leader().await;
    let survivor = 1 - leader;
    let l = replicas.get(leader);
    // The subscriber holds every push for a while, so some are in flight at the crash.
    let subscriber = activated_subscriber(
        l,
        Arc::new(|n| (200, Duration::from_millis(if n < 6 { 500 } else { 0 }))),
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..6 {
        let (status, id) = l.publish("shop", "order.created", json!({"n": n})).await;
        assert_eq!(status, 200);
        ids.push(id);
    }
    replicas.crash(leader);
    let crashed = Instant::now();

    let s = replicas.get(survivor);
    let (status, id) = s
        .publish("shop", "order.created", json!({"n": "after"}))
        .await;
    let took = crashed.elapsed();
    assert_eq!(status, 200, "the survivor answers once it leads");
    ids.push(id);
    eprintln!("publishing on the survivor took {took:?} after the leader's crash");
    assert!(leads(s).await, "the survivor leads");
    assert!(
        metric(s, "ace_replica_takeovers_total").await >= Some(1.0),
        "it counted its takeover"
    );
    subscriber::all_delivered(&subscriber, &ids).await;
    assert!(
        subscriber.max_concurrent() <= 2 + 2,
        "at most the old leader's and the new leader's max_inflight at once"
    );
    let _ = &replicas.dirs;
}

/// Sends `payload` as a follower forwards a request, and returns the leader's answer after
/// its word that it has the request.
async fn forward_raw(client: &async_nats::Client, rpc: &str, payload: &[u8]) -> String {
    use futures_util::StreamExt as _;
    let inbox = client.new_inbox();
    let mut answers = client
        .subscribe(inbox.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client
        .publish_with_reply(rpc.to_owned(), inbox, payload.to_vec().into())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let taken = tokio::time::timeout(Duration::from_secs(10), answers.next())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the leader did not say it has the request"));
    assert_eq!(&taken.payload[..], b"\"Taken\"");
    let answer = tokio::time::timeout(Duration::from_secs(20), answers.next())
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the leader did not answer"));
    String::from_utf8_lossy(&answer.payload).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_request_sent_again_is_decided_once() {
    let cluster = Cluster::start(3);
    let replicas = Replicas::start(&cluster, "ONCE", 2).await;
    let leader = replicas.leader().await;
    let l = replicas.get(leader);
    // Replica `a`, `b`, ... listens on `_ace.<stream>.rpc.<name>` while it leads.
    let rpc = format!("_ace.once.rpc.{}", char::from(b'a' + leader as u8));
    assert_eq!(l.apply_re("shop").await.status / 100, 2);
    let client = async_nats::connect(cluster.urls()[0].as_str())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let request = |id: &str| {
        serde_json::to_vec(&json!({
            "id": id,
            "request": ace_model::Request::CreateToken { re: "shop".into() },
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    };
    // A follower that heard nothing sends the same request again: one token, twice.
    let first = forward_raw(&client, &rpc, &request("f-1")).await;
    assert!(first.contains("token"), "{first}");
    let again = forward_raw(&client, &rpc, &request("f-1")).await;
    assert_eq!(first, again, "the same id gets the first answer");
    let other = forward_raw(&client, &rpc, &request("f-2")).await;
    assert!(other.contains("token"), "{other}");
    assert_ne!(first, other, "another id is another request");
}

fn accepted(seq: u64, data: &str) -> Record {
    crate::common::accepted(seq, data, &Arc::new(ResourceKey::new("prod", "orders")))
}

async fn read_all(s: &mut JetStreamStore, from: &mut Position) -> Result<Vec<Record>, StoreError> {
    let mut out = Vec::new();
    loop {
        let page = s.read(*from, 100).await?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        *from = Position(last.position.0 + 1);
        out.extend(page.into_iter().map(|e| e.record));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reads_the_leaders_appends_claims_the_log_and_notices_a_compaction() {
    let cluster = Cluster::start(3);
    let options = jetstream(&cluster, "FOLLOW", "x");
    let mut leader = open(&options).await;
    let mut follower = open(&options).await;
    let mut from = Position::START;
    assert!(
        read_all(&mut follower, &mut from)
            .await
            .is_ok_and(|r| r.is_empty())
    );

    leader
        .append(vec![
            Record::IncarnationsUsed { last: 1 },
            accepted(1, "[1]"),
        ])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    tokio::time::timeout(Duration::from_secs(10), follower.follow(from))
        .await
        .unwrap_or_else(|_| panic!("the follower was not told the log grew"))
        .unwrap_or_else(|e| panic!("{e}"));
    let got = read_all(&mut follower, &mut from)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(got.len(), 2, "{got:?}");
    // The event's body, published by the leader, is found by the follower.
    let body = follower
        .events()
        .body(1)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|b| String::from_utf8_lossy(&b).into_owned());
    assert_eq!(body.as_deref(), Some("[1]"));

    // The follower claims the log: the old leader's next append is fenced.
    follower.claim().await.unwrap_or_else(|e| panic!("{e}"));
    match leader
        .append(vec![Record::IncarnationsUsed { last: 2 }])
        .await
    {
        Err(StoreError::Fenced(_)) => {}
        other => panic!("a stale leader must be fenced, got {other:?}"),
    }

    // The new leader appends and compacts before the old one (now following) read it: the
    // old one is told, and reads the log again from the snapshot.
    follower
        .append(vec![Record::IncarnationsUsed { last: 3 }])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    follower
        .compact(vec![Record::IncarnationsUsed { last: 3 }])
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut behind = Position::START;
    let mut stale = open(&options).await;
    // Reads up to before the compaction ... (a fresh reader starts at the snapshot).
    let fresh = read_all(&mut stale, &mut behind)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(fresh, vec![Record::IncarnationsUsed { last: 3 }]);
    let mut old_from = from;
    match read_all(&mut leader, &mut old_from).await {
        Err(StoreError::Fenced(e)) => assert!(e.contains("compacted"), "{e}"),
        other => panic!("a reader behind a compaction must be told, got {other:?}"),
    }
    let mut again = Position::START;
    let reread = read_all(&mut leader, &mut again)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reread, vec![Record::IncarnationsUsed { last: 3 }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_answers_a_forwarded_write_only_once_it_applied_it() {
    use futures_util::StreamExt as _;
    let cluster = Cluster::start(1);
    let options = jetstream(&cluster, "RYW", "f");
    drop(open(&options).await);
    let client = async_nats::connect(cluster.urls()[0].as_str())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let nats = ace_server::nats::client::NatsClient::connect(&options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let replica =
        ace_server::replica::Replica::open(nats, "RYW", 1, options.replica, Duration::ZERO)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    // A leader that answers every forwarded request: done, as of log sequence 100.
    replica.holder().send_replace(Some("l".into()));
    let mut inbox = client
        .subscribe("_ace.ryw.rpc.l")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let leader = client.clone();
    tokio::spawn(async move {
        while let Some(message) = inbox.next().await {
            if let Some(reply) = message.reply {
                let _ = leader
                    .publish(reply, r#"{"Reply":["NoContent",100]}"#.into())
                    .await;
            }
        }
    });
    client.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let applied = replica.applied();
    let forward = replica.forwarder();
    let mut answer = tokio::spawn(async move {
        forward
            .forward(ace_model::Request::Admin(
                ace_model::AdminRequest::DeleteRemoteEnvironment { name: "x".into() },
            ))
            .await
    });
    applied.send_replace(99);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut answer)
            .await
            .is_err(),
        "answered before this replica applied the leader's change"
    );
    applied.send_replace(100);
    let reply = tokio::time::timeout(Duration::from_secs(5), answer)
        .await
        .unwrap_or_else(|_| panic!("no answer once applied"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(reply, ace_model::Reply::NoContent);
}

/// The status `/readyz` answers on `t`.
async fn ready(t: &TestServer) -> u16 {
    t.send(Method::GET, &t.admin("/readyz"), None, None)
        .await
        .status
}

/// Publishes on `t` until one is answered 200 (a replica may answer 503 while it follows a
/// leader that is not yet known, or while the log cannot be reached), for up to `limit`.
async fn publish_until_taken(t: &TestServer, n: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (status, id) = t.publish("shop", "order.created", json!({"n": n})).await;
        if status == 200 {
            return id;
        }
        assert!(
            status == 503 || status == 507,
            "a publish the log cannot take is refused with 503 or 507, got {status}"
        );
        assert!(
            Instant::now() < deadline,
            "no publish was taken in {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Chaos scenario: every NATS node is killed with SIGKILL under two replicas with pushes
/// owed, and started again. While the log is gone no replica is ready and none takes a
/// publish; afterwards both take publishes again, and every event either acknowledged
/// (before or after the outage) is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_every_nats_node_loses_nothing_the_replicas_acknowledged() {
    let mut cluster = Cluster::start(3);
    let replicas = Replicas::start(&cluster, "ALLDOWN", 2).await;
    let leader = replicas.leader().await;
    let (l, f) = (replicas.get(leader), replicas.get(1 - leader));
    // The subscriber refuses its first pushes, so events are owed when the log goes away.
    let subscriber = activated_subscriber(
        l,
        Arc::new(|n| (if n < 4 { 503 } else { 200 }, Duration::ZERO)),
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..4 {
        let t = if n % 2 == 0 { l } else { f };
        let (status, id) = t.publish("shop", "order.created", json!({"n": n})).await;
        assert_eq!(status, 200, "publish {n} before the outage");
        ids.push(id);
    }

    for i in 0..3 {
        cluster.kill(i);
    }
    assert!(
        {
            let mut unready = false;
            for _ in 0..100 {
                if ready(l).await != 200 && ready(f).await != 200 {
                    unready = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            unready
        },
        "neither replica is ready while no NATS node runs"
    );
    for i in 0..3 {
        cluster.restart(i);
    }

    ids.push(publish_until_taken(l, "after-a", Duration::from_secs(60)).await);
    ids.push(publish_until_taken(f, "after-b", Duration::from_secs(60)).await);
    subscriber::all_delivered(&subscriber, &ids).await;
    cluster.nodes_agree("ALLDOWN").await;
    replicas_converge(&replicas).await;
    let _ = &replicas.dirs;
}

/// Asserts that every running replica reaches the same log position with the same state
/// digest (`GET /v1/state`) within 20 s, once nothing more is written.
async fn replicas_converge(replicas: &Replicas) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut states = Vec::new();
        for t in replicas.servers.iter().flatten() {
            let r = t.send(Method::GET, &t.admin("/v1/state"), None, None).await;
            assert_eq!(r.status, 200, "{}", r.text());
            let state = r.json();
            let sha = state["sha256"].as_str().unwrap_or_default().to_owned();
            assert_eq!(sha.len(), 64, "{state}");
            states.push((state["applied"].as_u64().unwrap_or(0), sha));
        }
        if states.windows(2).all(|w| w[0] == w[1]) {
            return;
        }
        // The same position with another digest is a divergence, not a lag.
        for w in states.windows(2) {
            assert!(
                w[0].0 != w[1].0 || w[0].1 == w[1].1,
                "two replicas at position {} have different states: {states:?}",
                w[0].0
            );
        }
        assert!(
            Instant::now() < deadline,
            "the replicas did not reach the same position: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes on `t` every 20 ms until `stop`; returns the ids answered 200, each with whether
/// `after` was set when its publish was sent. Anything but 200 must be a refusal (503, 507).
async fn keep_publishing(
    t: &TestServer,
    tag: &str,
    stop: &std::sync::atomic::AtomicBool,
    after: &std::sync::atomic::AtomicBool,
) -> Vec<(String, bool)> {
    use std::sync::atomic::Ordering;
    let mut taken = Vec::new();
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        let late = after.load(Ordering::SeqCst);
        let (status, id) = t
            .publish("shop", "order.created", json!({"n": format!("{tag}-{n}")}))
            .await;
        match status {
            200 => taken.push((id, late)),
            503 | 507 => {}
            other => panic!("publish {tag}-{n}: {other}"),
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    taken
}

/// Chaos scenario: the NATS node that leads the stream is killed with SIGKILL while both
/// replicas take publishes, and started again. Publishes wait or are refused while the
/// servers elect another stream leader, none is lost: every one answered 200 is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_stream_leader_loses_nothing_the_replicas_acknowledged() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut cluster = Cluster::start(3);
    let replicas = Replicas::start(&cluster, "SLEAD", 2).await;
    let leader = replicas.leader().await;
    let (l, f) = (replicas.get(leader), replicas.get(1 - leader));
    let subscriber = activated_subscriber(l, subscriber::always(200)).await;
    let node = cluster.stream_leader("SLEAD").await;
    let (stop, never) = (AtomicBool::new(false), AtomicBool::new(false));
    let chaos = async {
        tokio::time::sleep(Duration::from_millis(800)).await;
        cluster.kill(node);
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.store(true, Ordering::SeqCst);
    };
    let ((), on_l, on_f) = tokio::join!(
        chaos,
        keep_publishing(l, "l", &stop, &never),
        keep_publishing(f, "f", &stop, &never),
    );
    cluster.restart(node);
    let ids: Vec<String> = on_l.into_iter().chain(on_f).map(|(id, _)| id).collect();
    assert!(ids.len() > 20, "too few publishes taken: {}", ids.len());
    // And both take publishes once the stream has its node back.
    let mut ids = ids;
    ids.push(publish_until_taken(l, "after-l", Duration::from_secs(30)).await);
    ids.push(publish_until_taken(f, "after-f", Duration::from_secs(30)).await);
    subscriber::all_delivered(&subscriber, &ids).await;
    cluster.nodes_agree("SLEAD").await;
    replicas_converge(&replicas).await;
    let _ = &replicas.dirs;
}

/// Chaos scenario, racing writes: an activation is deleted through one replica while both
/// publish. No event published after the delete was acknowledged is pushed (the leader
/// decides both in one order), and events published before it were delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_deleted_while_publishing_stops_every_later_push() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let cluster = Cluster::start(3);
    let replicas = Replicas::start(&cluster, "RACE", 2).await;
    let leader = replicas.leader().await;
    let (l, f) = (replicas.get(leader), replicas.get(1 - leader));
    let subscriber = activated_subscriber(l, subscriber::always(200)).await;
    let (stop, deleted) = (AtomicBool::new(false), AtomicBool::new(false));
    let delete = async {
        tokio::time::sleep(Duration::from_millis(600)).await;
        let r = f
            .send(
                Method::DELETE,
                &f.admin("/v1/namespaces/prod/eventactivations/shop"),
                None,
                None,
            )
            .await;
        assert_eq!(r.status / 100, 2, "{}", r.text());
        deleted.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(600)).await;
        stop.store(true, Ordering::SeqCst);
    };
    let ((), on_l, on_f) = tokio::join!(
        delete,
        keep_publishing(l, "l", &stop, &deleted),
        keep_publishing(f, "f", &stop, &deleted),
    );
    let all: Vec<(String, bool)> = on_l.into_iter().chain(on_f).collect();
    let before: Vec<String> = all
        .iter()
        .filter(|(_, late)| !late)
        .map(|(id, _)| id.clone())
        .collect();
    let after: Vec<String> = all
        .iter()
        .filter(|(_, late)| *late)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        before.len() > 5 && after.len() > 5,
        "{} before, {} after",
        before.len(),
        after.len()
    );
    // Wait until the subscriber had time to get everything it is owed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = subscriber.delivered_ids();
    replicas_converge(&replicas).await;
    let pushed_late: Vec<&String> = after.iter().filter(|id| got.contains(id)).collect();
    assert!(
        pushed_late.is_empty(),
        "pushed without an activation: {pushed_late:?}"
    );
    let delivered_before = before.iter().filter(|id| got.contains(id)).count();
    assert!(
        delivered_before > 0,
        "nothing published before the delete was delivered"
    );
    let _ = &replicas.dirs;
}

/// Chaos scenario, retention expiry: events a dead subscriber does not take within the
/// retention become dead letters, recorded once by the leader; the leader then dies. The
/// survivor lists each dead letter once, replays them, and delivers them once the subscriber
/// takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_outlive_the_leader_and_are_replayed_from_the_survivor() {
    use std::sync::atomic::{AtomicU16, Ordering};
    let cluster = Cluster::start(3);
    let mut replicas = Replicas::start_with(&cluster, "EXPIRY", 2, |opts| {
        opts.bus.retention = Duration::from_secs(1);
    })
    .await;
    let leader = replicas.leader().await;
    let survivor = 1 - leader;
    let answer = Arc::new(AtomicU16::new(503));
    let status = Arc::clone(&answer);
    let subscriber = activated_subscriber(
        replicas.get(leader),
        Arc::new(move |_| (status.load(Ordering::SeqCst), Duration::ZERO)),
    )
    .await;
    let mut ids = Vec::new();
    for (n, i) in [leader, survivor, leader].into_iter().enumerate() {
        let (status, id) = replicas
            .get(i)
            .publish("shop", "order.created", json!({"n": n}))
            .await;
        assert_eq!(status, 200);
        ids.push(id);
    }
    let s = replicas.get(survivor);
    let dead_lettered = async || {
        s.subscription("prod", "orders").await["status"]["delivery"]["deadLettered"]
            .as_u64()
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while dead_lettered().await < 3 {
        assert!(Instant::now() < deadline, "not dead-lettered within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    replicas.crash(leader);
    let s = replicas.get(survivor);

    let r = s
        .send(
            Method::GET,
            &s.admin("/v1/namespaces/prod/deadletters"),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let mut listed: Vec<String> = r
        .json()
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d["event-id"].as_str().unwrap_or_default().to_owned())
        .collect();
    listed.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(
        listed, expected,
        "each dead letter listed once, from the survivor"
    );

    answer.store(200, Ordering::SeqCst);
    // A new leader waits one push timeout (3 s) before it pushes to a subscription (so that
    // `max_inflight` holds across the change); a replay before then would expire again
    // within the 1 s retention.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let r = s
        .send(
            Method::POST,
            &s.admin("/v1/namespaces/prod/subscriptions/orders/replay"),
            Some(b"{}"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"replayed": 3}));
    subscriber::all_delivered(&subscriber, &ids).await;
    replicas_converge(&replicas).await;
    let _ = &replicas.dirs;
}

/// Chaos scenario, racing writes: one service identifier registered through both replicas
/// at once, ten times over: each time exactly one registration is taken and the other is
/// refused (identifiers are unique within an RE), and both replicas list each service once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_identifier_registered_through_both_replicas_at_once_is_taken_once() {
    let cluster = Cluster::start(3);
    let replicas = Replicas::start(&cluster, "IDENT", 2).await;
    let leader = replicas.leader().await;
    let (l, f) = (replicas.get(leader), replicas.get(1 - leader));
    assert_eq!(l.apply_re("ec").await.status / 100, 2);
    let me = l.onboard("ec").await;
    let path = "/ec/v1/metadata/services";
    let (url_l, url_f) = (l.gateway(path), f.gateway(path));
    for n in 0..10 {
        let body = crate::common::service_body(&format!("orders-{n}"));
        let (a, b) = tokio::join!(
            l.send(Method::POST, &url_l, Some(&body), Some(&me)),
            f.send(Method::POST, &url_f, Some(&body), Some(&me)),
        );
        let mut statuses = [a.status, b.status];
        statuses.sort_unstable();
        assert_eq!(statuses[0], 200, "{} / {}", a.text(), b.text());
        assert!(
            (400..500).contains(&statuses[1]),
            "identifier orders-{n} taken twice: {} / {}",
            a.text(),
            b.text()
        );
    }
    for t in [l, f] {
        let list = t.send(Method::GET, &t.gateway(path), None, Some(&me)).await;
        let mut identifiers: Vec<String> = list
            .json()
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["identifier"].as_str().unwrap_or_default().to_owned())
            .collect();
        identifiers.sort();
        let mut expected: Vec<String> = (0..10).map(|n| format!("orders-{n}")).collect();
        expected.sort();
        assert_eq!(identifiers, expected, "each service listed once");
    }
    replicas_converge(&replicas).await;
}
