//! Simulated worlds per second: one whole deterministic turmoil world of the real `ace serve`
//! (`ace_sim::world::run_deployment`) per iteration, against a bare turmoil world in the same
//! run that has the same hosts and does as many plain HTTP/1.1 exchanges, with no ACE logic;
//! and the replicated worlds of the same seeds (two and three replicas of `ace serve` on the
//! JetStream stand-in, `ace_world_2_replicas` and `ace_world_3_replicas`).
//!
//! The standard scenario is seeds [`SEEDS`] (1 to 4) in rotation: iteration `i` of either
//! benchmark runs the world of seed `SEEDS[i % 4]`, with the faults that seed picks, as the
//! first worlds of an `ace-sim sweep` do. Each world is deterministic, so a seed's world does
//! the same work every time. Before measuring, each seed's world is run once to read its
//! `Report::exchanges` (client requests sent plus requests the subscriber and API hosts
//! served), which its bare world then performs; every benchmarked ACE world is checked to do as
//! many again and to report no violations.
//!
//! The bare world of a seed: hosts `ace`, `sub-a`, `sub-b` and `api` each run a hyper 1
//! HTTP/1.1 server on port 8080 of turmoil's TCP that answers 200 with a small JSON body;
//! clients `operator`, `solution-1` and `solution-2` (the world's hosts) share the seed's
//! exchanges, each opening one keep-alive connection to every server host and sending small
//! JSON `POST`s one after another, in turn to each server. Same turmoil settings as the seed's
//! world: the seed as `rng_seed`, an epoch of now, the seed's message latency range (1–2 ms
//! unless the seed slows links), a 300 s simulation limit, the default 1 ms tick, repair rate
//! 0.1. No faults: no partitions, crashes or failing subscribers.

use std::cell::Cell;
use std::convert::Infallible;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// The standard scenario's seeds, run in rotation.
const SEEDS: [u64; 4] = [1, 2, 3, 4];
/// The bare world's servers and clients (the ACE world's host names).
const SERVERS: [&str; 4] = ["ace", "sub-a", "sub-b", "api"];
const CLIENTS: [&str; 3] = ["operator", "solution-1", "solution-2"];
const PORT: u16 = 8080;

/// Runs the ACE world of `seed` on `replicas` replicas (1: the single node), panics on a
/// violation, and gives its report.
fn ace_world(seed: u64, replicas: usize) -> ace_sim::world::Report {
    let report = ace_sim::world::run_deployment(seed, ace_model::bugs::Bugs::NONE, replicas)
        .expect("the ACE world runs");
    assert!(
        report.violations.is_empty(),
        "seed={seed} replicas={replicas}: {:?}",
        report.violations
    );
    report
}

/// The simulated time of the world's last traced step.
fn last_traced_at(report: &ace_sim::world::Report) -> Option<Duration> {
    report.entries.iter().map(|e| e.at).max()
}

/// A trivial HTTP/1.1 server on [`PORT`] of the current turmoil host: 200 with a small JSON
/// body.
async fn server() -> turmoil::Result {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                |req: hyper::Request<hyper::body::Incoming>| async move {
                    // Read the request body, as a real handler would.
                    let _ = req.into_body().collect().await;
                    let resp = hyper::Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from_static(br#"{"status":"ok"}"#)))
                        .unwrap_or_default();
                    Ok::<_, Infallible>(resp)
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// A keep-alive HTTP/1.1 connection from the current turmoil host to `host`.
async fn connect(host: &str) -> turmoil::Result<Sender> {
    let stream = turmoil::net::TcpStream::connect((host, PORT)).await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// `exchanges` sequential requests, in turn to each server host.
async fn client(exchanges: usize) -> turmoil::Result {
    let mut peers = Vec::new();
    for host in SERVERS {
        peers.push((host, connect(host).await?));
    }
    for i in 0..exchanges {
        let (host, sender) = &mut peers[i % SERVERS.len()];
        let body = format!(
            r#"{{"event-type":"order.created","event-type-version":"v1","data":{{"n":{i}}}}}"#
        );
        let req = hyper::Request::post("/v1/events")
            .header("host", *host)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        if resp.status() != 200 {
            return Err(format!("{host} answered {}", resp.status()).into());
        }
        let _ = resp.into_body().collect().await?;
    }
    Ok(())
}

/// The bare world of `seed` with `exchanges` exchanges; gives its simulated duration.
fn bare_world(seed: u64, exchanges: usize) -> Duration {
    let latency_ms = ace_sim::world::Faults::of(seed).latency_ms;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(SystemTime::now())
        .simulation_duration(Duration::from_secs(300))
        .min_message_latency(Duration::from_millis(latency_ms.0))
        .max_message_latency(Duration::from_millis(latency_ms.1))
        .repair_rate(0.1)
        .build();
    for host in SERVERS {
        sim.host(host, server);
    }
    for (i, host) in CLIENTS.into_iter().enumerate() {
        // The first clients take the remainder.
        let share = exchanges / CLIENTS.len() + usize::from(i < exchanges % CLIENTS.len());
        sim.client(host, client(share));
    }
    sim.run().expect("the bare world runs");
    sim.elapsed()
}

fn benchmarks(c: &mut Criterion) {
    // Each seed's exchange count, measured once.
    let exchanges = SEEDS.map(|seed| {
        let started = Instant::now();
        let report = ace_world(seed, 1);
        let ace_wall = started.elapsed();
        let started = Instant::now();
        let bare = bare_world(seed, report.exchanges);
        let bare_wall = started.elapsed();
        eprintln!(
            "sim: seed {seed}: {} exchanges, {} events accepted; simulated time: ACE world {} \
             (last traced step), bare world {bare:?}; one run's wall time: ACE world \
             {ace_wall:?}, bare world {bare_wall:?}; faults: {:?}",
            report.exchanges,
            report.accepted,
            last_traced_at(&report).map_or("?".into(), |d| format!("{d:?}")),
            report.faults,
        );
        report.exchanges
    });
    let total: usize = exchanges.iter().sum();
    eprintln!(
        "sim: {:.2} exchanges per world on average over seeds {SEEDS:?}",
        total as f64 / SEEDS.len() as f64
    );

    let mut group = c.benchmark_group("sim");
    group.throughput(Throughput::Elements(1));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(8));
    let next = Cell::new(0usize);
    // The replicated worlds of the same seeds: their exchange counts, measured once.
    let replicated = [2usize, 3].map(|replicas| {
        let counts = SEEDS.map(|seed| ace_world(seed, replicas).exchanges);
        eprintln!("sim: {replicas} replicas: exchanges per seed {counts:?}");
        (replicas, counts)
    });
    let worlds = std::iter::once((1usize, exchanges)).chain(replicated);
    for (replicas, counts) in worlds {
        let name = match replicas {
            1 => "ace_world".to_owned(),
            n => format!("ace_world_{n}_replicas"),
        };
        next.set(0);
        group.bench_function(name, |b| {
            b.iter(|| {
                let i = next.replace(next.get() + 1) % SEEDS.len();
                let r = ace_world(SEEDS[i], replicas);
                assert_eq!(
                    r.exchanges, counts[i],
                    "seed {} on {replicas}: the world is deterministic",
                    SEEDS[i]
                );
                r
            });
        });
    }
    next.set(0);
    group.bench_function("bare_turmoil", |b| {
        b.iter(|| {
            let i = next.replace(next.get() + 1) % SEEDS.len();
            bare_world(SEEDS[i], exchanges[i])
        });
    });
    group.finish();
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
