//! The driver: the one task that owns the model.
//!
//! Requests arrive on a channel. The driver takes every request waiting (a batch), hands each
//! to the model, appends all the batch's records to the store with one sync (group commit),
//! and only then releases the replies. If the store fails, the driver stops: the model's state
//! would be ahead of the disk, so no further reply may be sent (fail-stop).

use std::io;
use std::sync::Arc;

use ace_model::bus::{Delivery, DeliveryOutcome};
use ace_model::proxy::ProxyTable;
use ace_model::{Model, Record, Reply, Request, Timestamp};
use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::Metrics;
use crate::store::Store;

/// Maps `tokio::time` to Unix time: the only way the server reads the time.
///
/// The wall-clock reading at start comes from outside (the binary reads it once; a simulation
/// gives its own epoch); after that, time advances with `tokio::time::Instant`, which a
/// simulation controls.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    unix_millis_at_start: u64,
    start: tokio::time::Instant,
}

impl Clock {
    /// A clock that reads `unix_millis_at_start` now.
    pub fn new(unix_millis_at_start: u64) -> Self {
        Clock {
            unix_millis_at_start,
            start: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        let elapsed = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        Timestamp::from_unix_millis(self.unix_millis_at_start.saturating_add(elapsed))
    }
}

struct Job {
    request: Request,
    reply: oneshot::Sender<Reply>,
}

/// A cheap handle for sending requests to the driver.
#[derive(Clone, Debug)]
pub struct Handle {
    tx: mpsc::Sender<Job>,
}

/// The driver has stopped (the store failed or the server is shutting down).
#[derive(Debug)]
pub struct Stopped;

impl Handle {
    /// Sends a request and waits for its reply, which comes only after its records are durable.
    pub async fn call(&self, request: Request) -> Result<Reply, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job { request, reply: tx })
            .await
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }
}

/// Most requests handled in one batch (one sync).
pub const MAX_BATCH: usize = 512;

/// Compact the log once it holds this many records more than the last snapshot did.
pub const COMPACT_AFTER: u64 = 50_000;

/// Where delivery outcomes go back to the driver.
pub type OutcomeSender = mpsc::UnboundedSender<DeliveryOutcome>;

/// Starts a delivery; built by the caller of [`spawn`] around an [`OutcomeSender`].
pub type Deliverer = Box<dyn FnMut(Delivery) + Send>;

/// Where the driver runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Placement {
    /// A thread of its own (named `ace-driver`, with a single-threaded runtime), where the
    /// store does its disk I/O in place: the driver waits for every sync anyway, so blocking
    /// its thread delays nothing else, and each sync saves the two thread hand-offs of tokio's
    /// blocking pool. Deliveries it starts run on the caller's runtime.
    #[default]
    Thread,
    /// A task on the caller's runtime, with the store's disk I/O on tokio's blocking pool; for
    /// a simulation, whose clock and scheduling must stay the simulation's.
    Task,
}

/// The running driver.
#[derive(Debug)]
pub struct Running {
    stop: Option<oneshot::Sender<()>>,
    done: oneshot::Receiver<io::Result<()>>,
}

impl Running {
    /// Waits until the driver ends: with an error if the store failed, or `Ok` once every
    /// handle is dropped.
    pub async fn wait(&mut self) -> io::Result<()> {
        (&mut self.done)
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the driver panicked")))
    }

    /// Stops the driver and waits until its store is closed (so that the same data directory
    /// can be opened again, as after a restart). Replies not yet released are never sent.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.wait().await;
    }
}

/// Starts the driver, placed as `placement` says. `deliverer` is given the channel for
/// delivery outcomes and returns the function that starts deliveries. Returns the driver's
/// handle, the proxy's tables and the running driver.
pub fn spawn<S: Store>(
    placement: Placement,
    model: Model,
    mut store: S,
    clock: Clock,
    metrics: Arc<Metrics>,
    deliverer: impl FnOnce(OutcomeSender) -> Deliverer,
) -> io::Result<(Handle, ProxyTables, Running)> {
    let (tx, rx) = mpsc::channel(4 * MAX_BATCH);
    let (outcome_tx, outcome_rx) = mpsc::unbounded_channel();
    let (tables_tx, tables) = watch::channel(Arc::new(model.state().proxy_table()));
    let deliver = deliverer(outcome_tx);
    let out = Outputs {
        deliver,
        tables: tables_tx,
    };
    let (stop, stopped) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    if placement == Placement::Thread {
        store.do_io_in_place();
    }
    // Ends when the driver does, or at `stop`; either way the store is dropped (closed) before
    // `done` is told.
    let driver = async move {
        let result = tokio::select! {
            result = run(model, store, rx, outcome_rx, out, clock, metrics) => result,
            Ok(()) = stopped => Ok(()),
        };
        let _ = done_tx.send(result);
    };
    match placement {
        Placement::Task => drop(tokio::spawn(driver)),
        Placement::Thread => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()?;
            std::thread::Builder::new()
                .name("ace-driver".into())
                .spawn(move || runtime.block_on(driver))?;
        }
    }
    let running = Running {
        stop: Some(stop),
        done,
    };
    Ok((Handle { tx }, tables, running))
}

/// Where the driver's outputs other than replies go.
struct Outputs {
    /// Starts deliveries.
    deliver: Deliverer,
    /// Publishes the proxy's decisions.
    tables: watch::Sender<Arc<ProxyTable>>,
}

/// The proxy's decisions as of the last durable change (see [`ace_model::proxy::ProxyTable`]).
pub type ProxyTables = watch::Receiver<Arc<ProxyTable>>;

async fn run<S: Store>(
    mut model: Model,
    mut store: S,
    mut rx: mpsc::Receiver<Job>,
    mut outcomes: mpsc::UnboundedReceiver<DeliveryOutcome>,
    mut out: Outputs,
    clock: Clock,
    metrics: Arc<Metrics>,
) -> io::Result<()> {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut replies = Vec::with_capacity(MAX_BATCH);
    let mut records = Vec::new();
    let mut snapshot_len = store.len();
    #[cfg(feature = "bug-zoo")]
    let ack_before_durable = model
        .config()
        .bugs
        .has(ace_model::bugs::Bug::AckBeforeDurable);
    // With `ack-before-durable`: event records not yet written (see below).
    #[cfg(feature = "bug-zoo")]
    let mut held: Vec<Record> = Vec::new();
    loop {
        let deadline = model.poll_timeout();
        let sleep = async {
            match deadline {
                Some(t) => {
                    let wait = t.saturating_duration_since(clock.now());
                    tokio::time::sleep(wait).await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            biased;
            Some(outcome) = outcomes.recv() => {
                model.handle_delivery_outcome(clock.now(), outcome);
                while let Ok(outcome) = outcomes.try_recv() {
                    model.handle_delivery_outcome(clock.now(), outcome);
                }
            }
            n = rx.recv_many(&mut batch, MAX_BATCH) => {
                if n == 0 {
                    return Ok(());
                }
            }
            () = sleep => {
                model.handle_timeout(clock.now());
            }
        }
        // Whatever woke the driver, take everything else that is already waiting too, so that
        // acknowledgements and requests share one sync.
        while let Ok(outcome) = outcomes.try_recv() {
            model.handle_delivery_outcome(clock.now(), outcome);
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        for job in batch.drain(..) {
            let reply = model.handle_request(clock.now(), job.request);
            replies.push((reply, job.reply));
        }
        while let Some(record) = model.poll_record() {
            records.push(record);
        }
        #[cfg(feature = "bug-zoo")]
        if ack_before_durable {
            let events_only = records.iter().all(|r| {
                matches!(
                    r,
                    Record::Bus(ace_model::bus::BusRecord::EventAccepted { .. })
                )
            });
            if events_only {
                // The bug: a batch of accepted events is answered at once, its records kept in
                // memory until a write of another kind; a crash before then loses them.
                held.append(&mut records);
            } else if !held.is_empty() {
                held.append(&mut records);
                records = std::mem::take(&mut held);
            }
        }
        // Services, instances and bindings decide the proxy's answers: publish the new table
        // before any reply of this batch is released, so an acknowledged unbind is in force.
        let proxy_changed = records.iter().any(|r| !matches!(r, Record::Bus(_)));
        if !records.is_empty() {
            let n = records.len() as u64;
            let started = tokio::time::Instant::now();
            if let Err(e) = store.append(std::mem::take(&mut records)).await {
                tracing::error!(error = %e, "storage failed; stopping so that no unrecorded change is acknowledged");
                return Err(e);
            }
            metrics.record_sync(n, started.elapsed());
            if store.len() > snapshot_len + COMPACT_AFTER {
                let snapshot = model.snapshot();
                snapshot_len = snapshot.len() as u64;
                store.compact(snapshot).await?;
                tracing::info!(records = snapshot_len, "compacted the log");
            }
        }
        if proxy_changed {
            out.tables
                .send_replace(Arc::new(model.state().proxy_table()));
        }
        for (reply, tx) in replies.drain(..) {
            // The caller may have gone (client hung up); its change is durable regardless.
            let _ = tx.send(reply);
        }
        while let Some(delivery) = model.poll_delivery() {
            metrics.delivery_started();
            (out.deliver)(delivery);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{EventBodies, MemoryStore};
    use ace_model::{AdminRequest, Config};
    use std::sync::Mutex;

    /// An append the test has to let through.
    struct Gate {
        records: Vec<Record>,
        open: oneshot::Sender<()>,
    }

    fn apply(name: &str) -> Request {
        Request::Admin(AdminRequest::ApplyRemoteEnvironment {
            name: name.into(),
            description: String::new(),
            labels: Default::default(),
            skip_verify: false,
        })
    }

    fn get(name: &str) -> Request {
        Request::Admin(AdminRequest::GetRemoteEnvironment { name: name.into() })
    }

    /// Whether `records` create the RemoteEnvironment `name`.
    fn creates(records: &[Record], name: &str) -> bool {
        let text = serde_json::to_string(records).unwrap_or_default();
        text.contains(&format!("\"{name}\""))
    }

    /// Lets the driver run until it waits for something.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    fn start() -> (Handle, mpsc::UnboundedReceiver<Gate>) {
        let (appends, gates) = mpsc::unbounded_channel();
        let (store, _watch) = TestStore::new(Some(appends), false);
        let (handle, _running) = spawn_with(Placement::Task, store);
        (handle, gates)
    }

    /// What a [`TestStore`] saw: for each append, the thread it ran on and whether the store
    /// had been told to do its I/O in place; and whether the store was closed.
    #[derive(Default)]
    struct Watch {
        appends: Mutex<Vec<(Option<String>, bool)>>,
        closed: std::sync::atomic::AtomicBool,
    }

    /// A store in memory that notes where and how it is used and when it is closed. With
    /// `gates`, each append waits until the test opens its gate; with `fail`, appends fail.
    struct TestStore {
        inner: MemoryStore,
        gates: Option<mpsc::UnboundedSender<Gate>>,
        fail: bool,
        in_place: bool,
        watch: Arc<Watch>,
    }

    impl TestStore {
        fn new(gates: Option<mpsc::UnboundedSender<Gate>>, fail: bool) -> (Self, Arc<Watch>) {
            let watch = Arc::new(Watch::default());
            let store = TestStore {
                inner: MemoryStore::default(),
                gates,
                fail,
                in_place: false,
                watch: watch.clone(),
            };
            (store, watch)
        }
    }

    impl Drop for TestStore {
        fn drop(&mut self) {
            self.watch
                .closed
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Store for TestStore {
        fn load(&mut self) -> io::Result<Vec<Record>> {
            self.inner.load()
        }
        async fn append(&mut self, records: Vec<Record>) -> io::Result<()> {
            let thread = std::thread::current().name().map(String::from);
            if let Ok(mut appends) = self.watch.appends.lock() {
                appends.push((thread, self.in_place));
            }
            if self.fail {
                return Err(io::Error::other("disk gone"));
            }
            if let Some(gates) = &self.gates {
                let (open, opened) = oneshot::channel();
                let gate = Gate {
                    records: records.clone(),
                    open,
                };
                gates.send(gate).map_err(io::Error::other)?;
                opened.await.map_err(io::Error::other)?;
            }
            self.inner.append_now(records)
        }
        async fn compact(&mut self, snapshot: Vec<Record>) -> io::Result<()> {
            self.inner.compact_now(snapshot)
        }
        fn len(&self) -> u64 {
            self.inner.len()
        }
        fn bodies(&self) -> Arc<dyn EventBodies> {
            self.inner.bodies()
        }
        fn do_io_in_place(&mut self) {
            self.in_place = true;
        }
    }

    fn spawn_with(placement: Placement, store: TestStore) -> (Handle, Running) {
        let model = Model::new(Config::default(), 7.into());
        let Ok((handle, _tables, running)) = spawn(
            placement,
            model,
            store,
            Clock::new(1_700_000_000_000),
            Arc::new(Metrics::default()),
            |_outcomes| Box::new(|_delivery| {}),
        ) else {
            panic!("the driver did not start")
        };
        (handle, running)
    }

    fn start_watched(placement: Placement, fail: bool) -> (Handle, Running, Arc<Watch>) {
        let (store, watch) = TestStore::new(None, fail);
        let (handle, running) = spawn_with(placement, store);
        (handle, running, watch)
    }

    fn appends(watch: &Watch) -> Vec<(Option<String>, bool)> {
        watch.appends.lock().map(|a| a.clone()).unwrap_or_default()
    }

    #[tokio::test]
    async fn a_driver_on_its_own_thread_does_the_stores_io_there_and_stop_closes_the_store() {
        let (handle, mut running, watch) = start_watched(Placement::Thread, false);
        assert_eq!(call(&handle, apply("one")).await.ok(), Some(201));
        assert_eq!(appends(&watch), vec![(Some("ace-driver".into()), true)]);
        assert!(!watch.closed.load(std::sync::atomic::Ordering::SeqCst));
        running.stop().await;
        assert!(
            watch.closed.load(std::sync::atomic::Ordering::SeqCst),
            "stop returned before the store was closed"
        );
        assert_eq!(call(&handle, get("one")).await.ok(), Some(0), "stopped");
    }

    #[tokio::test]
    async fn a_driver_task_leaves_the_stores_io_to_the_store() {
        let (handle, mut running, watch) = start_watched(Placement::Task, false);
        assert_eq!(call(&handle, apply("one")).await.ok(), Some(201));
        let seen = appends(&watch);
        assert_eq!(seen.len(), 1);
        assert!(!seen[0].1, "told to block a runtime thread on the disk");
        assert_ne!(seen[0].0.as_deref(), Some("ace-driver"));
        running.stop().await;
        assert!(watch.closed.load(std::sync::atomic::Ordering::SeqCst));
    }

    #[tokio::test]
    async fn a_driver_thread_whose_store_fails_stops_and_says_why() {
        let (handle, mut running, _watch) = start_watched(Placement::Thread, true);
        assert_eq!(call(&handle, apply("one")).await.ok(), Some(0), "no reply");
        let result = running.wait().await;
        assert!(
            result
                .as_ref()
                .is_err_and(|e| e.to_string().contains("disk gone")),
            "{result:?}"
        );
    }

    fn call(handle: &Handle, request: Request) -> tokio::task::JoinHandle<u16> {
        let handle = handle.clone();
        tokio::spawn(async move { handle.call(request).await.map_or(0, |reply| reply.status()) })
    }

    #[tokio::test]
    async fn requests_arriving_during_an_append_form_the_next_one_and_wait_for_it() {
        let (handle, mut gates) = start();
        let first = call(&handle, apply("one"));
        let Some(gate1) = gates.recv().await else {
            panic!("no append")
        };
        assert!(creates(&gate1.records, "one"));

        // While the first append is under way: a write, then a read that sees it.
        let second = call(&handle, apply("two"));
        settle().await;
        let read = call(&handle, get("two"));
        settle().await;
        assert!(gates.try_recv().is_err(), "one append at a time");
        assert!(
            !first.is_finished(),
            "replied before its records were durable"
        );
        assert!(!second.is_finished() && !read.is_finished());

        assert!(gate1.open.send(()).is_ok());
        assert_eq!(first.await.ok(), Some(201));
        let Some(gate2) = gates.recv().await else {
            panic!("the waiting batch was not appended")
        };
        assert!(creates(&gate2.records, "two"));
        assert!(!creates(&gate2.records, "one"));
        settle().await;
        assert!(
            !second.is_finished(),
            "replied before its records were durable"
        );
        assert!(
            !read.is_finished(),
            "a read that saw a change was answered before the change was durable"
        );

        assert!(gate2.open.send(()).is_ok());
        assert_eq!(second.await.ok(), Some(201));
        assert_eq!(read.await.ok(), Some(200));
    }

    #[tokio::test]
    async fn a_read_during_an_append_waits_for_it() {
        let (handle, mut gates) = start();
        let write = call(&handle, apply("one"));
        let Some(gate) = gates.recv().await else {
            panic!("no append")
        };
        let read = call(&handle, get("one"));
        settle().await;
        assert!(
            !read.is_finished(),
            "a read saw a change before the change was durable"
        );
        assert!(gate.open.send(()).is_ok());
        assert_eq!(write.await.ok(), Some(201));
        assert_eq!(read.await.ok(), Some(200));
        assert!(gates.try_recv().is_err(), "a read appends nothing");
    }
}
