//! The store on a NATS JetStream cluster (three `nats-server` processes on loopback, R3,
//! `sync_interval: always`): what is appended reads back after reopening, after a
//! compaction into several parts and after a node is killed; a second writer fences the
//! first; events are kept apart and released; and `ace serve` on it keeps a subscription
//! and delivers after a restart.

use std::sync::Arc;
use std::time::Duration;

use ace_model::Record;
use ace_model::bus::{BusRecord, ResourceKey};
use ace_server::options::StoreKind;
use ace_server::store::jetstream::{JetStreamOptions, JetStreamStore};
use ace_server::store::{EventReader, Store, StoreError, codec, load_all};
use serde_json::json;

use crate::common::nats::{Cluster, open};
use crate::common::subscriber::{self, eventually};
use crate::common::{fast_retries, start_with};

fn options(cluster: &Cluster, stream: &str) -> JetStreamOptions {
    JetStreamOptions {
        servers: cluster.urls(),
        stream: stream.into(),
        replicas: cluster.urls().len(),
        unavailable_timeout: Duration::from_secs(30),
        ..JetStreamOptions::default()
    }
}

fn record(i: u64) -> Record {
    Record::IncarnationsUsed { last: i }
}

fn sub() -> Arc<ResourceKey> {
    Arc::new(ResourceKey::new("prod", "orders"))
}

fn accepted(seq: u64, data: &str) -> Record {
    crate::common::accepted(seq, data, &sub())
}

fn acknowledged(seq: u64) -> Record {
    Record::Bus(BusRecord::DeliveryAcknowledged {
        seq,
        subscription: sub(),
        released: true,
    })
}

/// A record as the log gives it back (an accepted event without its body).
fn logged(record: &Record) -> Record {
    codec::split_body(record).0.into_owned()
}

async fn load(s: &mut JetStreamStore) -> Vec<Record> {
    load_all(s).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn append(s: &mut JetStreamStore, records: Vec<Record>) {
    s.append(records).await.unwrap_or_else(|e| panic!("{e}"));
}

async fn body(events: &Arc<dyn EventReader>, seq: u64) -> Option<String> {
    events
        .body(seq)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_log_survives_reopening_compaction_into_parts_and_a_killed_node() {
    let mut cluster = Cluster::start(3);
    let options = options(&cluster, "LOG");
    let mut s = open(&options).await;
    assert!(load(&mut s).await.is_empty(), "a new stream is empty");

    let first = vec![record(1), accepted(1, "[1]"), accepted(2, r#"{"b":2}"#)];
    append(&mut s, first.clone()).await;
    let events = s.events();
    assert_eq!(body(&events, 1).await.as_deref(), Some("[1]"));
    assert_eq!(body(&events, 2).await.as_deref(), Some(r#"{"b":2}"#));
    let ids: Vec<String> = events
        .accepted(vec![2, 1, 9])
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|e| e.event.event_id.clone())
        .collect();
    assert_eq!(
        ids,
        ["id-2", "id-1"],
        "in the order asked, unknown ones left out"
    );
    let both = s.stored_bytes();
    assert!(both > 0);

    // Events larger than a message together: several event messages.
    let big = "x".repeat(60_000);
    let many: Vec<Record> = (3..43)
        .map(|seq| accepted(seq, &format!("\"{big}{seq}\"")))
        .collect();
    append(&mut s, many.clone()).await;
    assert_eq!(body(&events, 42).await, Some(format!("\"{big}42\"")));

    // Releasing one of two events in a message keeps it; releasing both forgets it.
    let before = s.stored_bytes();
    append(&mut s, vec![acknowledged(1)]).await;
    assert_eq!(s.stored_bytes(), before, "event 2 still holds the message");
    assert_eq!(body(&events, 1).await, None);
    assert_eq!(body(&events, 2).await.as_deref(), Some(r#"{"b":2}"#));
    append(&mut s, vec![acknowledged(2)]).await;
    assert_eq!(body(&events, 2).await, None);
    assert_eq!(s.stored_bytes(), before - both, "the message is forgotten");

    let mut expected: Vec<Record> = first.iter().map(logged).collect();
    expected.extend(many.iter().map(logged));
    expected.extend([acknowledged(1), acknowledged(2)]);
    drop((s, events));
    let mut s = open(&options).await;
    assert_eq!(
        load(&mut s).await,
        expected,
        "everything reads back after reopening"
    );
    assert_eq!(
        body(&s.events(), 42).await,
        Some(format!("\"{big}42\"")),
        "events survive reopening"
    );

    // A snapshot larger than a message: published in parts, read back whole.
    let snapshot: Vec<Record> = (0..60_000).map(record).collect();
    s.compact(snapshot.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        body(&s.events(), 42).await,
        None,
        "events the snapshot does not hold are forgotten"
    );
    append(&mut s, vec![record(99)]).await;
    let mut after = snapshot.clone();
    after.push(record(99));
    drop(s);
    let mut s = open(&options).await;
    assert_eq!(
        load(&mut s).await,
        after,
        "the snapshot replaces what came before it"
    );

    // A node killed without a clean shutdown: appends go on, nothing acknowledged is lost.
    cluster.kill(0);
    append(&mut s, vec![record(100), accepted(50, "[50]")]).await;
    after.extend([record(100), logged(&accepted(50, "[50]"))]);
    cluster.restart(0);
    cluster.kill(1);
    drop(s);
    let mut s = open(&options).await;
    assert_eq!(load(&mut s).await, after);
    assert_eq!(body(&s.events(), 50).await.as_deref(), Some("[50]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_fences_the_first() {
    let cluster = Cluster::start(1);
    let options = options(&cluster, "FENCE");
    let mut a = open(&options).await;
    append(&mut a, vec![record(1)]).await;
    let mut b = open(&options).await;
    assert_eq!(load(&mut b).await, vec![record(1)]);
    append(&mut b, vec![record(2)]).await;
    match a.append(vec![record(3), accepted(7, "[7]")]).await {
        Err(StoreError::Fenced(_)) => {}
        other => panic!("a stale writer must be fenced, got {other:?}"),
    }
    append(&mut b, vec![record(4), accepted(7, "[7 from b]")]).await;
    let mut c = open(&options).await;
    assert_eq!(
        load(&mut c).await,
        vec![
            record(1),
            record(2),
            record(4),
            logged(&accepted(7, "[7 from b]"))
        ],
        "nothing of the fenced append is in the log"
    );
    assert_eq!(body(&c.events(), 7).await.as_deref(), Some("[7 from b]"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ace_serve_on_jetstream_keeps_its_resources_and_delivers_after_a_restart() {
    let cluster = Cluster::start(3);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = fast_retries(dir.path());
    let jetstream = options(&cluster, "SERVE");
    // Opened once here, so that the server's start does not race the first leader election.
    drop(open(&jetstream).await);
    opts.store = StoreKind::JetStream(jetstream);
    let subscriber = subscriber::start(subscriber::always(200)).await;
    let t = start_with(opts.clone()).await;
    t.activate("prod", "ec").await;
    t.subscribe("prod", "orders", &subscriber.url(), "ec", 4, 2000)
        .await;
    let (status, first) = t.publish("ec", "order.created", json!({"n": 1})).await;
    assert_eq!(status, 200);
    assert!(
        eventually(Duration::from_secs(20), || subscriber.delivered().len()
            == 1)
        .await,
        "the first event is delivered"
    );
    t.server.stop().await;

    let t = start_with(opts).await;
    assert!(
        t.server.replayed > 0,
        "the restarted server read the stream"
    );
    let status = t.subscription("prod", "orders").await;
    assert_eq!(status["spec"]["endpoint"], subscriber.url());
    let (status, second) = t.publish("ec", "order.created", json!({"n": 2})).await;
    assert_eq!(status, 200);
    assert!(
        eventually(Duration::from_secs(20), || subscriber.delivered().len()
            >= 2)
        .await,
        "the restarted server delivers"
    );
    let ids = subscriber.delivered_ids();
    assert!(ids.contains(&first) && ids.contains(&second), "{ids:?}");
}

/// The store's budget holds on a stream as on the embedded store: a full stream answers
/// publishes 507 and never takes an event it then loses; released events leave the stream
/// (purged), and publishes are taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_stream_refuses_publishes_with_507_and_delivers_what_it_took() {
    let cluster = Cluster::start(3);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = fast_retries(dir.path());
    let jetstream = options(&cluster, "FULL");
    drop(open(&jetstream).await);
    opts.store = StoreKind::JetStream(jetstream);
    opts.max_store_bytes = 4000;
    crate::backlog::full_store_refuses_with_507_until_subscribers_catch_up(opts).await;
}

/// A stream with a size limit of its own (`--nats-max-bytes`) and the default budget: the
/// server refuses publishes with 507 before the stream would refuse its appends (which would
/// stop it), and takes them again once subscribers catch up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_with_a_size_limit_refuses_publishes_with_507_before_it_is_full() {
    let cluster = Cluster::start(3);
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = fast_retries(dir.path());
    let mut jetstream = options(&cluster, "LIMIT");
    jetstream.max_bytes = Some(16_000);
    drop(open(&jetstream).await);
    opts.store = StoreKind::JetStream(jetstream);
    crate::backlog::full_store_refuses_with_507_until_subscribers_catch_up(opts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_with_another_ca_is_refused_by_the_stream() {
    let cluster = Cluster::start(1);
    let jetstream = options(&cluster, "IDENTITY");
    drop(open(&jetstream).await);
    let first = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut opts = fast_retries(first.path());
    opts.store = StoreKind::JetStream(jetstream.clone());
    let t = start_with(opts.clone()).await;
    t.server.stop().await;

    // A copy of the identity directory is the same server to the stream.
    let copy = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for file in [
        "ca.crt",
        "ca.key",
        "server.crt",
        "server.key",
        "admin.token",
    ] {
        std::fs::copy(first.path().join(file), copy.path().join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    opts.data_dir = copy.path().to_owned();
    start_with(opts.clone()).await.server.stop().await;

    // A data directory of its own makes a CA of its own, which the stream refuses.
    let other = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    opts.data_dir = other.path().to_owned();
    let refused = ace_server::start(
        ace_client::TokioNet,
        opts,
        ace_client::Clock::new(crate::common::now_ms()),
        7.into(),
    )
    .await;
    match refused {
        Err(e) => assert!(
            e.to_string().contains("same identity files"),
            "the error names the fix: {e}"
        ),
        Ok(_) => panic!("a server with another CA must not start on the stream"),
    }
}

/// A CA, a certificate for a NATS server on 127.0.0.1 and a client certificate, as PEM files
/// in `dir`: `(ca, server cert, server key, client cert, client key)`.
fn tls_files(
    dir: &std::path::Path,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let fail = |e: rcgen::Error| -> ! { panic!("{e}") };
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap_or_else(|e| panic!("{e}"));
        path
    };
    let ca_key = KeyPair::generate().unwrap_or_else(|e| fail(e));
    let mut ca = CertificateParams::new(Vec::new()).unwrap_or_else(|e| fail(e));
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca.self_signed(&ca_key).unwrap_or_else(|e| fail(e)).pem();
    let issuer = Issuer::new(ca, ca_key);
    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap_or_else(|e| fail(e));
        let mut params = CertificateParams::new(names).unwrap_or_else(|e| fail(e));
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer).unwrap_or_else(|e| fail(e));
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key) = leaf(
        vec!["127.0.0.1".into(), "localhost".into()],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let (client_pem, client_key) = leaf(vec!["ace".into()], ExtendedKeyUsagePurpose::ClientAuth);
    (
        write("ca.pem", ca_pem),
        write("server.pem", server_pem),
        write("server-key.pem", server_key),
        write("client.pem", client_pem),
        write("client-key.pem", client_key),
    )
}

/// NATS servers that require TLS and verify their clients: the store connects with the CA
/// and a client certificate (`--nats-ca`, `--nats-cert`, `--nats-key`) and works; without the
/// CA, or without the client certificate, it is refused; a missing file is named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_talks_tls_to_servers_that_require_it_and_verify_clients() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (ca, server_cert, server_key, client_cert, client_key) = tls_files(dir.path());
    let cluster = Cluster::start_with(
        1,
        &format!(
            "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 5\n}}",
            server_cert.display(),
            server_key.display(),
            ca.display()
        ),
    );
    let mut opts = options(&cluster, "TLS");
    opts.unavailable_timeout = Duration::from_secs(2);

    let refused = |r: Result<JetStreamStore, StoreError>| match r {
        Ok(_) => panic!("the store connected"),
        Err(e) => e.to_string(),
    };
    refused(JetStreamStore::open(&opts).await);
    opts.tls.ca = Some(ca.clone());
    refused(JetStreamStore::open(&opts).await);

    opts.tls.client = Some((client_cert.clone(), client_key));
    let mut s = open(&opts).await;
    append(&mut s, vec![record(1)]).await;
    drop(s);
    let mut s = open(&opts).await;
    assert_eq!(load(&mut s).await, vec![record(1)], "read back over TLS");

    opts.tls.client = Some((client_cert, dir.path().join("missing-key.pem")));
    let e = refused(JetStreamStore::open(&opts).await);
    assert!(e.contains("missing-key.pem"), "{e}");
}
