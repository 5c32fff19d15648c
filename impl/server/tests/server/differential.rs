//! The simulation's JetStream stand-in pinned to the real server: one script of the
//! operations ACE uses (guards and their conflicts, `Nats-Msg-Id` dedupe, direct gets,
//! subject lists, purges, a size limit, the lease bucket's create / update / delete /
//! expiry, core requests and no-responders) runs against the stand-in and against a
//! loopback three-node cluster, and every answer must be the same.

use std::sync::Arc;
use std::time::Duration;

use ace_server::nats::standin::{StandIn, StandInOptions};
use ace_server::nats::{KvConfig, Nats, NatsError, Publish, StreamConfig};
use ace_server::store::jetstream::JetStreamOptions;
use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::common::nats::Cluster;

/// An answer as the transcript records it: errors by kind (their texts differ).
fn outcome<T: std::fmt::Debug>(result: Result<T, NatsError>) -> String {
    match result {
        Ok(v) => format!("{v:?}"),
        Err(NatsError::WrongLastSequence(_)) => "Err(WrongLastSequence)".into(),
        Err(NatsError::AlreadyExists) => "Err(AlreadyExists)".into(),
        Err(NatsError::Full(_)) => "Err(Full)".into(),
        Err(NatsError::Unavailable(e)) => format!("Err(Unavailable: {e})"),
        Err(NatsError::Refused(e)) => format!("Err(Refused: {e})"),
    }
}

fn stream(name: &str, max_bytes: Option<u64>) -> StreamConfig {
    StreamConfig {
        name: name.into(),
        subjects: vec![format!("{}.>", name.to_ascii_lowercase())],
        replicas: 3,
        max_bytes,
        duplicate_window: Duration::from_secs(120),
    }
}

/// Makes a stream, waiting out a cluster that has no meta leader yet.
async fn create(nats: &dyn Nats, config: StreamConfig) -> Result<Option<u64>, NatsError> {
    for _ in 0..60 {
        match nats.create_stream(config.clone()).await {
            Err(NatsError::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(500)).await,
            other => return other,
        }
    }
    nats.create_stream(config).await
}

/// The script, with what each step answered.
async fn script(nats: Arc<dyn Nats>) -> Vec<String> {
    let mut t = Vec::new();
    let mut say = |step: &str, answer: String| t.push(format!("{step}: {answer}"));
    let n = nats.as_ref();
    say("create D", outcome(create(n, stream("D", None)).await));
    say(
        "create D again",
        outcome(n.create_stream(stream("D", None)).await),
    );

    // Guards on the message's own subject, and dedupe.
    let first = Publish::new("d.log", "a")
        .id("m1")
        .expect_last(0)
        .header("Ace-Batch", "b1");
    say("first append", outcome(n.publish("D", first.clone()).await));
    let stale = Publish::new("d.log", "b").id("m2").expect_last(0);
    say("stale guard", outcome(n.publish("D", stale).await));
    let second = Publish::new("d.log", "b")
        .id("m2")
        .expect_last(1)
        .header("Ace-Batch", "b2")
        .header("Ace-Part", "1/2");
    say(
        "second append",
        outcome(n.publish("D", second.clone()).await),
    );
    say(
        "second again (same id, guard now stale)",
        outcome(n.publish("D", second).await),
    );
    say("first again", outcome(n.publish("D", first).await));
    // Guards on another subject, and on a wildcard.
    let event = Publish::new("d.ev.1.2.10", "e").expect_last_of(2, "d.log");
    say(
        "event guarded by the log",
        outcome(n.publish("D", event).await),
    );
    let late = Publish::new("d.ev.3.3.10", "e").expect_last_of(1, "d.log");
    say("event behind the log", outcome(n.publish("D", late).await));
    let wild = Publish::new("d.ev.4.4.10", "e").expect_last_of(3, "d.ev.>");
    say("wildcard guard", outcome(n.publish("D", wild).await));
    let unguarded = Publish::new("d.snap", "{\"from\":1}").id("snap-1");
    say("unguarded", outcome(n.publish("D", unguarded).await));

    // Reads.
    say("last d.log", outcome(n.last_message("D", "d.log").await));
    say("last d.none", outcome(n.last_message("D", "d.none").await));
    for seq in [0, 1, 2, 3] {
        say(
            &format!("next d.log from {seq}"),
            outcome(n.next_message("D", "d.log", seq).await),
        );
    }
    say(
        "next d.ev.> from 1",
        outcome(n.next_message("D", "d.ev.>", 1).await),
    );
    let mut subjects = n.subjects("D", "d.ev.>").await;
    if let Ok(s) = &mut subjects {
        s.sort();
    }
    say("subjects d.ev.>", outcome(subjects));

    // Purges.
    say(
        "purge d.log below 2",
        outcome(n.purge("D", "d.log", Some(2)).await),
    );
    say(
        "next d.log from 0",
        outcome(
            n.next_message("D", "d.log", 0)
                .await
                .map(|m| m.map(|m| m.seq)),
        ),
    );
    say(
        "purge d.ev.1.2.10",
        outcome(n.purge("D", "d.ev.1.2.10", None).await),
    );
    say(
        "subjects after purge",
        outcome(n.subjects("D", "d.ev.>").await),
    );
    say(
        "a guard still counts the purged",
        outcome(
            n.publish("D", Publish::new("d.log", "c").expect_last(2))
                .await,
        ),
    );

    // A size limit: new messages refused, never old ones dropped.
    say(
        "create F",
        outcome(create(n, stream("F", Some(2048))).await),
    );
    let mut taken = 0;
    let full = loop {
        match n.publish("F", Publish::new("f.x", vec![b'x'; 300])).await {
            Ok(_) if taken < 20 => taken += 1,
            other => break other,
        }
    };
    say(
        "publishing to F until refused",
        outcome(full.map(|_| "still taken after 20")),
    );
    let first_kept = n
        .next_message("F", "f.x", 0)
        .await
        .map(|m| m.map(|m| m.seq));
    say("F keeps its first message", outcome(first_kept));

    // The lease bucket.
    say(
        "open L",
        outcome(
            n.kv_open(KvConfig {
                bucket: "L".into(),
                description: "lease".into(),
                max_age: Duration::from_secs(2),
                replicas: 3,
            })
            .await,
        ),
    );
    let v = |s: &'static str| Bytes::from_static(s.as_bytes());
    say("get unset", outcome(n.kv_get("L", "leader").await));
    say("create", outcome(n.kv_create("L", "leader", v("a")).await));
    say(
        "create taken",
        outcome(n.kv_create("L", "leader", v("b")).await),
    );
    say(
        "update stale",
        outcome(n.kv_update("L", "leader", v("a"), 7).await),
    );
    say(
        "update",
        outcome(n.kv_update("L", "leader", v("a"), 1).await),
    );
    say("put", outcome(n.kv_put("L", "member.b", v("mb")).await));
    say("put", outcome(n.kv_put("L", "member.a", v("ma")).await));
    say("get", outcome(n.kv_get("L", "leader").await));
    say("keys member.", outcome(n.kv_keys("L", "member.").await));
    say("delete stale", outcome(n.kv_delete("L", "leader", 1).await));
    say("delete", outcome(n.kv_delete("L", "leader", 2).await));
    say("get deleted", outcome(n.kv_get("L", "leader").await));
    say("keys", outcome(n.kv_keys("L", "").await));
    say(
        "create after delete",
        outcome(n.kv_create("L", "leader", v("c")).await),
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    say("get expired", outcome(n.kv_get("L", "leader").await));
    say("keys expired", outcome(n.kv_keys("L", "").await));
    say(
        "create expired",
        outcome(n.kv_create("L", "leader", v("d")).await),
    );

    // Core messages: a request with a reply subject, and one nobody hears.
    let inbox = "_diff.inbox";
    let mut answers = n.subscribe(inbox).await.unwrap_or_else(|e| panic!("{e}"));
    let mut rpc = n
        .subscribe("_diff.rpc.*")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    say(
        "send request",
        outcome(n.send("_diff.rpc.l", Some(inbox), v("q")).await),
    );
    let heard = tokio::time::timeout(Duration::from_secs(2), rpc.next()).await;
    say("heard", format!("{:?}", heard.ok().flatten()));
    say(
        "send unheard",
        outcome(n.send("_diff.nobody", Some(inbox), v("q")).await),
    );
    let told = tokio::time::timeout(Duration::from_secs(2), answers.next()).await;
    say(
        "told",
        format!("{:?}", told.ok().flatten().map(|m| m.no_responders)),
    );
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standin_answers_the_script_as_a_three_node_cluster_does() {
    let cluster = Cluster::start(3);
    let options = JetStreamOptions {
        servers: cluster.urls(),
        ..JetStreamOptions::default()
    };
    let real = ace_server::nats::client::NatsClient::connect(&options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let standin = StandIn::new(StandInOptions::default()).connect("differential");
    let expected = script(real).await;
    let got = script(standin).await;
    for (e, g) in expected.iter().zip(&got) {
        assert_eq!(
            g, e,
            "\nthe stand-in (left) answered a step unlike nats-server (right)"
        );
    }
    assert_eq!(got.len(), expected.len());
}
