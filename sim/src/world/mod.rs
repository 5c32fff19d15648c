//! One simulated world, decided by one seed.
//!
//! Hosts: `ace` (the real `ace serve`, on a [`SimDisk`] that survives its crashes); two
//! external solutions, `solution-1` (RE `ec`) and `solution-2` (RE `shop`), that onboard
//! through the token → info → CSR flow over mutual TLS and publish events through the
//! gateway; an `operator` that creates the REs, activations and subscriptions and keeps
//! changing resources while traffic flows; subscribers `sub-a` and `sub-b` (each may
//! misbehave with its first requests: 5xx, late answers, resets, requests never answered);
//! `api`, an OAuth server and a registered API for the proxy.
//!
//! The seed picks the faults ([`Faults`]): a safety phase runs under them, then everything
//! heals and every event answered 200 must reach every activated subscription that matches
//! it (at least once; duplicates are counted, not failures). Once the faults have healed, a
//! contract phase tries to break the other documented guarantees: a used configuration or
//! CSR URL and an expired one are refused, a certificate opens neither another RE nor its RE
//! created again, service identifiers are unique and OAuth secrets masked, the proxy never
//! sends an OAuth token past its `expires_in`, and an update of a subscription keeps the
//! events it is owed. Throughout, nothing may be pushed to a subscription without an
//! EventActivation, no subscriber may hold more than its subscription's `max_inflight`, and a
//! registry read must reflect every acknowledged write.

mod actor;
mod api;
mod contract;
mod operator;
mod schedule;
mod shared;
mod solution;
mod subscriber;
mod verdict;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use ace_client::Clock;
use ace_model::bugs::Bugs;
use ace_server::ServeOptions;
use ace_server::driver::Placement;

use crate::disk::{DiskNote, SimDisk};
pub use crate::faults::{Clog, Faults, Loss, Misbehaviour, Partition, ReplicaFaults};
use crate::net::{DeploymentNet, TurmoilNet};
use crate::oracle::Mirror;
use crate::timeline::{Entry, Kind};

use actor::*;
use api::*;
use contract::*;
use operator::*;
use schedule::*;
use shared::*;
use solution::*;
use subscriber::*;
use verdict::*;

/// External solutions, each with its own RE.
pub const SOLUTIONS: usize = 2;
/// Events each solution publishes in the safety phase (a multiple of 4: the second solution
/// publishes in bursts of four).
pub const EVENTS: usize = 12;
/// Events the contract phase publishes (from `solution-1`), besides those.
pub const CONTRACT_EVENTS: usize = 3;
/// The `max_inflight` of subscription `orders` (the others: see [`SUBSCRIPTIONS`]).
pub const MAX_INFLIGHT: usize = 3;
/// Connector tokens live this long in the world (the contract phase waits it out).
pub const TOKEN_TTL: Duration = Duration::from_secs(2);
/// The subscriptions' push deadline.
pub(super) const PUSH_TIMEOUT_MS: u64 = 1000;
/// The `expires_in` of the world's OAuth tokens, in seconds: short-lived, so the proxy must
/// fetch one for every call (it keeps a token until 10 s before it expires).
pub(super) const OAUTH_EXPIRES_IN: u64 = 2;
pub(super) const STEP_TIMEOUT: Duration = Duration::from_secs(3);

/// The REs of the solutions, by solution.
pub(super) const RES: [&str; SOLUTIONS] = ["ec", "shop"];

/// A subscription of the world.
#[derive(Clone, Copy, Debug)]
pub struct Sub {
    /// Its name (unique in the world; the subscribers tell them apart by it).
    pub name: &'static str,
    /// Its namespace.
    pub namespace: &'static str,
    /// Where it pushes.
    pub endpoint: &'static str,
    /// Its `max_inflight`.
    pub max_inflight: usize,
    /// The RE whose events it takes.
    pub source: &'static str,
    /// Whether its namespace has an EventActivation for `source`.
    pub activated: bool,
}

/// The world's subscriptions: two namespaces take `ec`'s events, one `shop`'s, and one
/// namespace without an activation must get nothing.
pub const SUBSCRIPTIONS: [Sub; 4] = [
    Sub {
        name: "orders",
        namespace: "prod",
        endpoint: "http://sub-a:9000/",
        max_inflight: MAX_INFLIGHT,
        source: "ec",
        activated: true,
    },
    Sub {
        name: "audit",
        namespace: "stage",
        endpoint: "http://sub-b:9000/",
        max_inflight: 1,
        source: "ec",
        activated: true,
    },
    Sub {
        name: "shop",
        namespace: "prod",
        endpoint: "http://sub-b:9000/",
        max_inflight: 2,
        source: "shop",
        activated: true,
    },
    Sub {
        name: "dark",
        namespace: "dark",
        endpoint: "http://sub-b:9000/",
        max_inflight: 1,
        source: "ec",
        activated: false,
    },
];

/// Rare paths: sometimes-assertions that a large sweep must reach at least once, or its
/// worlds are not exercising what they claim to.
pub const RARE: [(&str, &str); 16] = [
    (
        "publish-retried",
        "a publish went unanswered or refused and was sent again",
    ),
    (
        "onboarding-restarted",
        "the token → info → CSR flow failed midway and started again",
    ),
    (
        "token-expired-mid-onboarding",
        "a CSR sent after its token's TTL was refused",
    ),
    (
        "push-retried-after-failure",
        "an event a subscriber failed (5xx, reset, late, unanswered) reached it again",
    ),
    (
        "duplicate-delivery",
        "a subscriber answered 200 to the same event twice",
    ),
    (
        "delivered-after-crash",
        "an event accepted before a crash first reached a subscriber after it",
    ),
    (
        "unsynced-write-lost",
        "a crash lost a write the disk had not synced",
    ),
    (
        "unsynced-write-kept",
        "a write being synced at a crash survived it",
    ),
    ("group-commit", "one sync made several events durable"),
    (
        "max-inflight-reached",
        "a subscriber held exactly max_inflight (> 1) pushes of one subscription",
    ),
    (
        "push-to-updated-endpoint",
        "a push reached the endpoint a subscription was changed to under traffic",
    ),
    (
        "registry-write-retried",
        "an operator's write went unanswered and was sent again",
    ),
    (
        "model-states-forked",
        "a registry write's answer was lost and the oracle followed both possible states",
    ),
    (
        "oauth-token-refetched",
        "the proxy fetched a new OAuth token once the last had expired",
    ),
    (
        "subscription-backed-off",
        "a subscription whose subscriber was down backed off as a whole (its status said so)",
    ),
    (
        "dead-subscriber-drained",
        "a subscriber down for a long while got its whole backlog once it was up again",
    ),
];

/// Whether this build seeds each host's tokio runtime from the world's seed (tokio built with
/// `--cfg tokio_unstable`, which the workspace's `.cargo/config.toml` sets). Without it,
/// tokio draws the waiter a `watch` channel wakes first from the OS, and a replicated world,
/// whose replicas wait on such channels, is not reproducible from its seed.
pub const SEEDED_RUNTIMES: bool = cfg!(tokio_unstable);

/// The hosts of a replicated deployment's replicas (the first `n` of them).
pub const REPLICA_HOSTS: [&str; 3] = ["ace-1", "ace-2", "ace-3"];

/// Rare paths of replicated worlds, besides those of [`RARE`] that a replicated world can
/// take.
pub const REPLICATED_RARE: [(&str, &str); 6] = [
    (
        "takeover",
        "a replica took the lease from another (crashed, cut off or lapsed) with traffic flowing",
    ),
    (
        "guarded-write-conflict",
        "an append to the log was refused by its guard, as another writer had appended",
    ),
    (
        "leader-move-under-traffic",
        "a publish to the log was interrupted by a stream leader move",
    ),
    (
        "replica-cut-off",
        "a replica was cut off the log while the world ran",
    ),
    (
        "replica-paused",
        "a replica was paused past its lease (its links held, its log requests unanswered) and resumed",
    ),
    (
        "stale-read-refused",
        "a leader whose lease lapsed by its own clock stopped answering from its state before it heard of another leader",
    ),
];

/// The rare paths a sweep with `--require-rare` must reach: [`RARE`] for the single node,
/// [`REPLICATED_RARE`] for replicas (the others a replicated world takes are the single-node
/// sweep's to require).
pub fn required_paths(replicas: usize) -> &'static [(&'static str, &'static str)] {
    if replicas <= 1 {
        &RARE
    } else {
        &REPLICATED_RARE
    }
}

/// The rare paths a world of `replicas` replicas can take (1: the single node).
pub fn rare_paths(replicas: usize) -> Vec<(&'static str, &'static str)> {
    if replicas <= 1 {
        return RARE.to_vec();
    }
    // A replicated world has no local disk: its syncs and their faults are the log's.
    let local = ["unsynced-write-lost", "unsynced-write-kept", "group-commit"];
    RARE.iter()
        .filter(|(path, _)| !local.contains(path))
        .chain(REPLICATED_RARE.iter())
        .copied()
        .collect()
}

/// What a run saw.
#[derive(Clone, Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// ACE's replicas in the world (1: the single node).
    pub replicas: usize,
    /// Its faults.
    pub faults: Faults,
    /// The trace: one entry per observed step, in simulated order.
    pub entries: Vec<Entry>,
    /// Events answered 200.
    pub accepted: usize,
    /// Deliveries beyond the first per event and subscription (at-least-once allows them).
    pub duplicates: usize,
    /// Broken guarantees; empty when the run passed.
    pub violations: Vec<String>,
    /// HTTP exchanges the world's clients started (ACE's pushes and proxy calls included).
    pub exchanges: usize,
    /// How often each rare path of [`RARE`] was taken.
    pub rare: BTreeMap<&'static str, usize>,
}

impl Report {
    /// The hash of the trace: the same seed gives the same hash.
    pub fn trace_hash(&self) -> String {
        crate::timeline::hash(&self.entries)
    }

    /// The trace as lines of text.
    pub fn trace(&self) -> Vec<String> {
        self.entries.iter().map(ToString::to_string).collect()
    }
}

/// The Unix time (milliseconds) at which the world of `seed` starts: a moment of 2026 the
/// seed picks, so that nothing in a world depends on the date it runs on.
pub fn epoch_of(seed: u64) -> u64 {
    const START_OF_2026: u64 = 1_767_225_600_000;
    let mut s = seed ^ 0xe90c;
    START_OF_2026 + (crate::faults::mix(&mut s) % (365 * 86_400)) * 1000
}

/// 32 bytes the seed decides, for the key or seed of `purpose`.
pub fn seed_bytes(seed: u64, purpose: u64) -> [u8; 32] {
    let mut s = seed ^ purpose.wrapping_mul(0x5851_f42d_4c95_7f2d);
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&crate::faults::mix(&mut s).to_le_bytes());
    }
    out
}

/// A client's clock on a host of a simulated world that started at `epoch_ms`.
pub fn sim_clock(epoch_ms: u64) -> Clock {
    let elapsed = turmoil::sim_elapsed().unwrap_or_default();
    Clock::new(epoch_ms + u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
}

/// The admin API's base URL in a world.
pub(super) const ADMIN: &str = "http://ace:8081/";

/// The admin API's bearer token in the world of `seed`.
pub fn admin_token(seed: u64) -> String {
    ace_model::hex::lower(&seed_bytes(seed, 2))
}

/// Owed events each subscription of the world keeps in memory (at least its
/// `max_inflight`): small, so that the world's backlogs move through the store.
pub const BACKLOG_WINDOW: usize = 2;

/// The network turmoil gives its hosts: every peer of `ace` is there, so the world's egress
/// policy allows it (ACE's own listeners stay refused).
pub const SIM_NETWORK: &str = "192.168.0.0/16";

/// `ace serve`'s options on host `ace` of the simulated world of `seed`: every surface on its
/// usual port, the server certificate for the host name `ace`, keys and the admin token the
/// seed decides, the simulated network allowed as egress, fast retries.
pub fn options(dir: &std::path::Path, seed: u64) -> ServeOptions {
    let mut opts = ServeOptions {
        data_dir: dir.to_owned(),
        key_seed: Some(ace_model::Seed(seed_bytes(seed, 1))),
        admin_auth: ace_server::options::AdminAuth::Token(admin_token(seed)),
        hosts: vec!["ace".into()],
        connector_internal_addr: "0.0.0.0:8080".into(),
        connector_external_addr: "0.0.0.0:8443".into(),
        gateway_addr: "0.0.0.0:8444".into(),
        admin_addr: "0.0.0.0:8081".into(),
        publish_addr: "0.0.0.0:8082".into(),
        proxy_addr: "0.0.0.0:8090".into(),
        kube_addr: "0.0.0.0:8445".into(),
        // Everything on the simulation's runtime, on its clock.
        driver: Placement::Task,
        ..ServeOptions::default()
    };
    opts.bus.retry = ace_model::bus::RetryPolicy::Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };
    // A window of two: every backlog beyond it is read back from the store as it moves.
    opts.bus.backlog_window = BACKLOG_WINDOW;
    opts.token_ttl = TOKEN_TTL;
    if let Ok(net) = SIM_NETWORK.parse() {
        opts.egress.allowed_networks.push(net);
    }
    opts
}

/// Runs the world of `seed` and checks it.
pub fn run(seed: u64) -> Result<Report, String> {
    run_with(seed, Bugs::NONE)
}

/// Runs the world of `seed` with the server's `bugs` switched on, and checks it.
pub fn run_with(seed: u64, bugs: Bugs) -> Result<Report, String> {
    run_deployment(seed, bugs, 1)
}

/// Runs the world of `seed` on `replicas` replicas of ACE (1: the single node on its local
/// disk; 2 or 3: replicas on a JetStream stand-in, which solutions, the operator and the
/// proxy's callers reach in turn under the name `ace`), and checks it.
pub fn run_deployment(seed: u64, bugs: Bugs, replicas: usize) -> Result<Report, String> {
    if replicas > REPLICA_HOSTS.len() {
        return Err(format!(
            "a world has at most {} replicas, not {replicas}",
            REPLICA_HOSTS.len()
        ));
    }
    let faults = Faults::of(seed);
    let hosts: Vec<&'static str> = if replicas > 1 {
        REPLICA_HOSTS[..replicas].to_vec()
    } else {
        Vec::new()
    };
    let replica_faults = (replicas > 1).then(|| ReplicaFaults::of(seed, replicas));
    EXCHANGES.with(|n| n.set(0));
    let shared = Arc::new(Shared {
        admin_authorization: format!("Bearer {}", admin_token(seed)),
        net: DeploymentNet::new(&hosts),
        replicas: hosts.clone(),
        replicated_healed_by: replica_faults
            .as_ref()
            .map(ReplicaFaults::healed_by)
            .unwrap_or_default(),
        ..Shared::default()
    });
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().to_owned();
    let ca_path = data.join("ca.crt");
    let disk_shared = shared.clone();
    let disk = SimDisk::new(
        seed,
        faults.sync_ms,
        faults.lose_unsynced,
        Arc::new(move |note| match note {
            DiskNote::Synced { events, .. } => {
                if events > 1 {
                    disk_shared.rare("group-commit");
                }
            }
            DiskNote::Lost(n) => {
                disk_shared.rare("unsynced-write-lost");
                disk_shared.note(
                    "ace",
                    format!("restart: an unsynced write of {n} records was lost"),
                );
            }
            DiskNote::Kept(n) => {
                disk_shared.rare("unsynced-write-kept");
                disk_shared.note(
                    "ace",
                    format!("restart: an unsynced write of {n} records survived"),
                );
            }
        }),
    );
    let unix_ms = epoch_of(seed);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(UNIX_EPOCH + Duration::from_millis(unix_ms))
        .simulation_duration(Duration::from_secs(300))
        .min_message_latency(Duration::from_millis(faults.latency_ms.0))
        .max_message_latency(Duration::from_millis(faults.latency_ms.1))
        .repair_rate(0.1)
        .build();

    // The simulated time the main loop has reached: the stand-in's clock (each host runs
    // a runtime of its own, whose instants cannot be compared with another's).
    let now_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deployment = if hosts.is_empty() {
        sim.host("ace", move || {
            let (data, disk) = (data.clone(), disk.clone());
            async move {
                // After a crash the host starts again here: memory is gone, the disk is kept
                // (with the fate of its unsynced write), and the new process reads the clock
                // again.
                let disk = disk.restart().map_err(|e| e.to_string())?;
                let mut opts = options(&data, seed);
                opts.bugs = bugs;
                // ACE's own address in the world: its listeners there are its own, never a
                // target.
                opts.hosts.push(turmoil::lookup("ace").to_string());
                let _server = ace_server::start_with_store(
                    TurmoilNet,
                    opts,
                    sim_clock(unix_ms),
                    seed.into(),
                    disk,
                )
                .await
                .map_err(|e| e.to_string())?;
                std::future::pending::<()>().await;
                Ok(())
            }
        });
        schedule::Deployment {
            hosts: vec!["ace"],
            target: "ace",
            standin: None,
        }
    } else {
        replicated(
            &mut sim,
            &hosts,
            &data,
            seed,
            bugs,
            unix_ms,
            &now_ms,
            &replica_faults,
        )
    };
    for (i, (host, ports)) in [("sub-a", &[9000, 9001][..]), ("sub-b", &[9000][..])]
        .into_iter()
        .enumerate()
    {
        let shared = shared.clone();
        let misbehaviour = faults.subscribers[i];
        sim.host(host, move || {
            subscriber(shared.clone(), host, ports, misbehaviour)
        });
    }
    let api_shared = shared.clone();
    sim.host("api", move || api(api_shared.clone()));
    let actor = |name, mirror: Option<Mirror>| Actor {
        shared: shared.clone(),
        name,
        mirror: mirror.map(|m| Arc::new(Mutex::new(m))),
    };
    sim.client("operator", operator(actor("operator", None)));
    for (index, name) in ["solution-1", "solution-2"].into_iter().enumerate() {
        let mirror = Mirror::new(RES[index], "https://ace:8444");
        sim.client(
            name,
            solution(
                actor(name, Some(mirror)),
                index,
                ca_path.clone(),
                faults.clone(),
                seed,
            ),
        );
    }

    let plan = schedule(&faults, replica_faults.as_ref());
    let mut next = 0;
    let mut holder = None;
    loop {
        let elapsed = sim.elapsed();
        now_ms.store(
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        if deployment.standin.is_some() {
            let leader = deployment.leader();
            if let (Some(before), Some(now)) = (holder, leader)
                && before != now
            {
                shared.rare("takeover");
            }
            if leader.is_some() && leader != holder {
                shared.push(Entry {
                    at: elapsed,
                    host: "faults".into(),
                    peer: None,
                    what: format!("{} leads", leader.unwrap_or_default()),
                    kind: Kind::Note,
                });
                holder = leader;
            }
        }
        while let Some((at, action)) = plan.get(next)
            && elapsed >= *at
        {
            if matches!(action, Action::Cut(_, true)) {
                shared.rare("replica-cut-off");
            }
            if matches!(action, Action::Pause(_, false)) {
                shared.rare("replica-paused");
            }
            let what = strike(&mut sim, action, &deployment);
            shared.push(Entry {
                at: elapsed,
                host: "faults".into(),
                peer: None,
                what,
                kind: Kind::Fault,
            });
            next += 1;
        }
        match sim.step() {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                // A world that does not finish (a host stuck or failed) is a broken
                // guarantee like any other, with its timeline.
                shared.violation(format!("liveness: the world did not finish: {e}"));
                break;
            }
        }
    }
    if let Some(standin) = &deployment.standin {
        let stats = standin.stats();
        if stats.conflicts > 0 {
            shared.rare("guarded-write-conflict");
        }
        if stats.lost + stats.unacknowledged > 0 {
            shared.rare("leader-move-under-traffic");
        }
    }
    Ok(check(seed, faults, &shared))
}

/// The replicas of a replicated world: hosts `hosts` on one JetStream stand-in, sharing one
/// identity (the data directory holds only that: their log is the stream).
#[allow(clippy::too_many_arguments, reason = "the world's parts, passed once")]
fn replicated(
    sim: &mut turmoil::Sim<'_>,
    hosts: &[&'static str],
    data: &std::path::Path,
    seed: u64,
    bugs: Bugs,
    unix_ms: u64,
    now_ms: &Arc<std::sync::atomic::AtomicU64>,
    faults: &Option<ReplicaFaults>,
) -> schedule::Deployment {
    use ace_server::nats::standin::{StandIn, StandInOptions};
    let clock = Arc::clone(now_ms);
    let standin = StandIn::with_clock(
        StandInOptions {
            seed,
            ..StandInOptions::default()
        },
        Arc::new(move || Duration::from_millis(clock.load(std::sync::atomic::Ordering::Relaxed))),
    );
    let names: Vec<&'static str> = hosts.to_vec();
    for (i, host) in hosts.iter().copied().enumerate() {
        let (standin, data, names) = (standin.clone(), data.to_owned(), names.clone());
        let starts = Arc::new(std::sync::atomic::AtomicU64::new(0));
        sim.host(host, move || {
            let (standin, data, names) = (standin.clone(), data.clone(), names.clone());
            let start = starts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async move {
                let mut opts = options(&data, seed);
                opts.bugs = bugs;
                // One identity for every replica: a certificate for `ace` and each replica's
                // name. Its own address only: the others' it learns as members (so a replica
                // that did not would let its proxy reach them).
                opts.hosts.extend(names.iter().map(|h| (*h).to_owned()));
                opts.hosts.push(turmoil::lookup(host).to_string());
                let js = ace_server::store::jetstream::JetStreamOptions {
                    servers: vec!["nats://standin:4222".into()],
                    replica: ace_server::replica::ReplicaOptions {
                        name: host.into(),
                        lease: Duration::from_secs(2),
                        answer_timeout: Duration::from_secs(10),
                    },
                    ..Default::default()
                };
                // Each start draws afresh: a replica must never draw what it drew before.
                let model_seed = ace_model::Seed(seed_bytes(seed, 100 + i as u64 * 1000 + start));
                let _server = ace_server::serve::start_replica(
                    DeploymentNet::new(&names),
                    opts,
                    sim_clock(unix_ms),
                    model_seed,
                    standin.connect(host),
                    &js,
                )
                .await
                .map_err(|e| e.to_string())?;
                std::future::pending::<()>().await;
                Ok(())
            }
        });
    }
    let target = faults.as_ref().map_or(0, |f| f.target);
    schedule::Deployment {
        hosts: names.clone(),
        target: names.get(target).copied().unwrap_or("ace"),
        standin: Some(standin),
    }
}
