//! Push delivery: performs the HTTP POSTs the model decides on and reports their outcomes.
//!
//! Each endpoint has a worker task that keeps its connections (reused from one attempt to the
//! next) and runs its attempts concurrently, on the injected [`Net`], so the same code runs on
//! real sockets and in a simulation. Every attempt is aborted at its deadline; the model then
//! counts it as timed out. The model starts at most `max_inflight` deliveries per
//! subscription, and a slow subscriber only holds its own attempts and its own worker.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use std::collections::HashMap;
use std::sync::Mutex;

use ace_model::bus::{Delivery, DeliveryOutcome, DeliveryResult};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::HOST;
use hyper::http::HeaderValue;
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::pki_types::ServerName;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::driver::Clock;
use crate::net::{Net, Stream};
use crate::store::EventBodies;

/// A stream to a subscriber, plain or TLS.
pub enum PushIo<S> {
    /// `http://`.
    Plain(S),
    /// `https://`.
    Tls(Box<tokio_rustls::client::TlsStream<S>>),
}

impl<S> std::fmt::Debug for PushIo<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PushIo::Plain(_) => "PushIo::Plain",
            PushIo::Tls(_) => "PushIo::Tls",
        })
    }
}

impl<S: Stream> tokio::io::AsyncRead for PushIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PushIo::Plain(s) => Pin::new(s).poll_read(cx, buf),
            PushIo::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl<S: Stream> tokio::io::AsyncWrite for PushIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PushIo::Plain(s) => Pin::new(s).poll_write(cx, buf),
            PushIo::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PushIo::Plain(s) => Pin::new(s).poll_flush(cx),
            PushIo::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PushIo::Plain(s) => Pin::new(s).poll_shutdown(cx),
            PushIo::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

impl<S> Connection for PushIo<S> {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

/// A hyper-util connector over a [`Net`], with TLS for `https` endpoints.
#[derive(Clone)]
pub struct NetConnector<N> {
    net: N,
    tls: TlsConnector,
}

impl<N> std::fmt::Debug for NetConnector<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetConnector").finish_non_exhaustive()
    }
}

impl<N: Net> tower_service::Service<Uri> for NetConnector<N> {
    type Response = TokioIo<PushIo<N::Io>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let net = self.net.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            let https = uri.scheme_str() == Some("https");
            let host = uri.host().ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "endpoint without host")
            })?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let addr = if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            };
            let stream = net.connect(&addr).await?;
            if !https {
                return Ok(TokioIo::new(PushIo::Plain(stream)));
            }
            let name = ServerName::try_from(host)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
            let tls = tls.connect(name, stream).await?;
            Ok(TokioIo::new(PushIo::Tls(Box::new(tls))))
        })
    }
}

/// Performs deliveries and sends their outcomes back.
///
/// Each endpoint has one worker task, started at its first delivery, that owns the endpoint's
/// connections and runs every attempt to it: an attempt takes an idle connection (or opens
/// one), writes the request and reads the response within the worker's own task, with no
/// task of its own and no separate task per connection, and hands the connection back for
/// the next attempt. Attempts to one endpoint run concurrently (the model starts at most
/// `max_inflight` per subscription); attempts to other endpoints run in their own workers.
#[derive(Clone)]
pub struct Pusher<N: Net> {
    connector: NetConnector<N>,
    clock: Clock,
    bodies: Arc<dyn EventBodies>,
    workers: Arc<Mutex<HashMap<Arc<str>, mpsc::UnboundedSender<Attempt>>>>,
    /// The runtime the workers run on: the one the pusher was made on, whichever thread starts
    /// a delivery (the driver may have a thread of its own).
    runtime: tokio::runtime::Handle,
}

impl<N: Net> std::fmt::Debug for Pusher<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher").finish_non_exhaustive()
    }
}

/// Most idle connections kept per subscriber host: `max_inflight` goes up to 400 per
/// subscription, and several subscriptions may share a host.
pub const MAX_IDLE_PER_ENDPOINT: usize = 512;

/// A connection idle this long is closed, and a worker with nothing to do this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A pooled HTTP(S) client on `net` (connection reuse per endpoint); `tls` verifies `https`
/// servers.
pub fn pooled_client<N: Net>(net: N, tls: TlsConnector) -> Client<NetConnector<N>, Full<Bytes>> {
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(IDLE_TIMEOUT)
        .pool_max_idle_per_host(MAX_IDLE_PER_ENDPOINT)
        .build(NetConnector { net, tls })
}

/// Reports a delivery's outcome.
type Report = Box<dyn FnOnce(DeliveryOutcome) + Send>;

/// One delivery attempt, handed to its endpoint's worker.
struct Attempt {
    delivery: Delivery,
    body: Bytes,
    deadline: tokio::time::Instant,
    report: Report,
}

impl<N: Net> Pusher<N> {
    /// A pusher on `net`, whose workers run on the current runtime; `tls` verifies `https`
    /// subscribers; bodies the model does not hold in memory are read from `bodies`.
    pub fn new(net: N, tls: TlsConnector, clock: Clock, bodies: Arc<dyn EventBodies>) -> Self {
        Pusher {
            connector: NetConnector { net, tls },
            clock,
            bodies,
            workers: Arc::default(),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Starts `delivery` in its endpoint's worker; `report` receives its outcome.
    pub fn start<F>(&self, delivery: Delivery, report: F)
    where
        F: FnOnce(DeliveryOutcome) + Send + 'static,
    {
        let wait = delivery
            .deadline
            .saturating_duration_since(self.clock.now());
        let body = if delivery.event.body_stored {
            match self.bodies.body(delivery.seq) {
                Ok(Some(body)) => Bytes::from(body),
                other => {
                    // The store failed or no longer has the body: the attempt fails and is
                    // retried; the event is never silently skipped.
                    let found = other.map(|b| b.is_some());
                    tracing::error!(
                        seq = delivery.seq,
                        ?found,
                        "an event's body could not be read"
                    );
                    report(DeliveryOutcome {
                        delivery: delivery.id,
                        result: DeliveryResult::ConnectionError,
                    });
                    return;
                }
            }
        } else {
            Bytes::copy_from_slice(delivery.body().as_bytes())
        };
        let attempt = Attempt {
            delivery,
            body,
            deadline: tokio::time::Instant::now() + wait,
            report: Box::new(report),
        };
        let Ok(mut workers) = self.workers.lock() else {
            finish(attempt, DeliveryResult::ConnectionError);
            return;
        };
        let endpoint = attempt.delivery.endpoint.clone();
        let attempt = match workers.get(&endpoint) {
            Some(worker) => match worker.send(attempt) {
                Ok(()) => return,
                // The worker ended (idle) since it was last used: start another one.
                Err(mpsc::error::SendError(attempt)) => attempt,
            },
            None => attempt,
        };
        let target = match Target::parse(&endpoint) {
            Ok(target) => target,
            Err(e) => return fail(attempt, &e),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // A fresh channel has its receiver: the send cannot fail.
        let _ = tx.send(attempt);
        workers.insert(endpoint, tx);
        self.runtime
            .spawn(worker(self.connector.clone(), target, rx));
    }
}

/// Ends `attempt` as a connection error, for `error`.
fn fail(attempt: Attempt, error: &str) {
    tracing::debug!(endpoint = %attempt.delivery.endpoint, error, "delivery failed");
    finish(attempt, DeliveryResult::ConnectionError);
}

fn finish(attempt: Attempt, result: DeliveryResult) {
    tracing::debug!(
        endpoint = %attempt.delivery.endpoint,
        attempt = attempt.delivery.attempt,
        ?result,
        "delivery finished"
    );
    (attempt.report)(DeliveryOutcome {
        delivery: attempt.delivery.id,
        result,
    });
}

/// Whether pushes can be sent to `endpoint`: an absolute `http` or `https` URL with a host,
/// parsed as the pusher parses it.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let target = Target::parse(endpoint)?;
    match target.uri.scheme_str() {
        Some("http" | "https") => Ok(()),
        _ => Err("the scheme must be http or https".into()),
    }
}

/// Where an endpoint's requests go: the URI to connect to, the `Host` header and the
/// request target (origin form).
#[derive(Clone)]
struct Target {
    uri: Uri,
    host: HeaderValue,
    path: Uri,
}

impl Target {
    fn parse(endpoint: &str) -> Result<Target, String> {
        let uri: Uri = endpoint
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| e.to_string())?;
        let name = uri.host().ok_or("endpoint without host")?;
        // Host and explicit port only: user information in the endpoint is never sent.
        let host = match uri.port() {
            Some(port) => format!("{name}:{port}"),
            None => name.to_owned(),
        };
        let host = HeaderValue::from_str(&host).map_err(|e| e.to_string())?;
        let path = match uri.path_and_query() {
            Some(p) => Uri::try_from(p.as_str()).map_err(|e| e.to_string())?,
            None => Uri::from_static("/"),
        };
        Ok(Target { uri, host, path })
    }
}

/// One HTTP/1.1 connection to a subscriber: the request side and the connection's own future,
/// which the attempt using the connection polls (no task of its own). `driver` is `None` once
/// the connection has ended.
struct Conn<N: Net> {
    sender: http1::SendRequest<Full<Bytes>>,
    driver: Option<Pin<Box<ConnDriver<N>>>>,
}

/// The future that runs one connection's reads and writes.
type ConnDriver<N> = http1::Connection<TokioIo<PushIo<<N as Net>::Io>>, Full<Bytes>>;

/// Runs every attempt to one endpoint until it has been idle for [`IDLE_TIMEOUT`].
async fn worker<N: Net>(
    connector: NetConnector<N>,
    target: Target,
    mut attempts: mpsc::UnboundedReceiver<Attempt>,
) {
    let mut idle: Vec<(Conn<N>, tokio::time::Instant)> = Vec::new();
    let mut running = FuturesUnordered::new();
    let mut last_busy = tokio::time::Instant::now();
    let mut tick = tokio::time::interval_at(last_busy + IDLE_TIMEOUT, IDLE_TIMEOUT);
    let mut open = true;
    loop {
        tokio::select! {
            biased;
            Some(back) = running.next(), if !running.is_empty() => {
                if let Some(conn) = back
                    && idle.len() < MAX_IDLE_PER_ENDPOINT
                {
                    idle.push((conn, tokio::time::Instant::now()));
                }
            }
            next = attempts.recv(), if open => match next {
                Some(attempt) => {
                    // The most recently used connection first: the others may expire.
                    let conn = idle.pop().map(|(conn, _)| conn);
                    running.push(run(connector.clone(), target.clone(), conn, attempt));
                }
                None => open = false,
            },
            now = tick.tick() => {
                idle.retain(|(_, since)| now.duration_since(*since) < IDLE_TIMEOUT);
                if running.is_empty() && now.duration_since(last_busy) >= IDLE_TIMEOUT {
                    // Deliveries sent from now on start another worker; those already sent
                    // are still run here.
                    attempts.close();
                }
            }
        }
        if !running.is_empty() {
            last_busy = tokio::time::Instant::now();
        } else if !open {
            return;
        }
    }
}

/// Runs one attempt on `conn` (or a new connection) and returns the connection if it can be
/// used again.
async fn run<N: Net>(
    connector: NetConnector<N>,
    target: Target,
    conn: Option<Conn<N>>,
    attempt: Attempt,
) -> Option<Conn<N>> {
    let exchanged = match request(&target, &attempt) {
        Ok(request) => {
            let exchange = exchange(connector, &target, conn, request);
            tokio::time::timeout_at(attempt.deadline, exchange).await
        }
        Err(e) => Ok((Err(e), None)),
    };
    match exchanged {
        Ok((Ok(status), conn)) => {
            finish(attempt, DeliveryResult::Status(status));
            conn
        }
        Ok((Err(e), _)) => {
            fail(attempt, &e);
            None
        }
        // Dropping the exchange closed its connection.
        Err(_) => {
            finish(attempt, DeliveryResult::Timeout);
            None
        }
    }
}

fn request(target: &Target, attempt: &Attempt) -> Result<Request<Full<Bytes>>, String> {
    let mut request = Request::post(target.path.clone()).header(HOST, target.host.clone());
    for (name, value) in attempt.delivery.headers() {
        request = request.header(name, value);
    }
    request
        .body(Full::new(attempt.body.clone()))
        .map_err(|e| e.to_string())
}

/// Sends `request` on `conn`, or on a new connection if there is none or if `conn` turns out
/// to have been closed before the request went out. Returns the status and the connection if
/// it can carry another request.
async fn exchange<N: Net>(
    mut connector: NetConnector<N>,
    target: &Target,
    mut conn: Option<Conn<N>>,
    mut request: Request<Full<Bytes>>,
) -> (Result<u16, String>, Option<Conn<N>>) {
    loop {
        let reused = conn.is_some();
        let mut c = match conn.take() {
            Some(c) => c,
            None => match connect(&mut connector, &target.uri).await {
                Ok(c) => c,
                Err(e) => return (Err(e), None),
            },
        };
        match send(&mut c, request).await {
            Ok((status, reusable)) => return (Ok(status), reusable.then_some(c)),
            // An idle connection the subscriber had closed: the request never left, so it
            // goes out on a new connection.
            Err((Some(unsent), _)) if reused => request = unsent,
            Err((_, e)) => return (Err(e), None),
        }
    }
}

async fn connect<N: Net>(connector: &mut NetConnector<N>, uri: &Uri) -> Result<Conn<N>, String> {
    let io = tower_service::Service::call(connector, uri.clone())
        .await
        .map_err(|e| e.to_string())?;
    let (sender, driver) = http1::handshake(io).await.map_err(|e| e.to_string())?;
    Ok(Conn {
        sender,
        driver: Some(Box::pin(driver)),
    })
}

/// A failed send: the request if it never went out, and why.
type SendFailure = (Option<Request<Full<Bytes>>>, String);

/// Sends `request` on `conn`, polling the connection meanwhile, and reads the whole response.
/// Returns the status and whether the connection can carry another request.
async fn send<N: Net>(
    conn: &mut Conn<N>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, bool), SendFailure> {
    let Conn { sender, driver } = conn;
    let work = async move {
        if let Err(e) = sender.ready().await {
            return Err((Some(request), e.to_string()));
        }
        match sender.try_send_request(request).await {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read the body so the connection can be reused.
                let complete = response.into_body().collect().await.is_ok();
                Ok((status, complete))
            }
            Err(mut e) => {
                let unsent = e.take_message();
                Err((unsent, e.into_error().to_string()))
            }
        }
    };
    let mut work = std::pin::pin!(work);
    loop {
        let Some(running) = driver.as_mut() else {
            return work.await.map(|(status, _)| (status, false));
        };
        tokio::select! {
            biased;
            ended = running.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(error = %e, "push connection ended");
                }
                // Dropping the connection fails whatever waits on it.
                *driver = None;
            }
            done = &mut work => return done,
        }
    }
}

/// The TLS connector for `https` subscribers: verified against `roots`, or not at all when
/// `skip_verify` (Kyma's chart set `tls_skip_verify`).
pub fn subscriber_tls(
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    skip_verify: bool,
) -> Result<TlsConnector, String> {
    let options = crate::client::TlsOptions {
        roots,
        insecure: skip_verify,
        identity: None,
    };
    crate::client::tls_connector(&options).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ace_model::bus::{DeliveryId, Event, ResourceKey};

    use super::*;

    #[test]
    fn endpoints_must_be_http_urls_with_a_host() {
        for ok in [
            "http://sub:8080/events?x=1",
            "https://sub.ns.svc.cluster.local/",
            "http://[::1]:9/",
            "http://user@host/",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://[",
            "http:// host/",
            "https://ho st",
            "http://",
            "ftp://host/",
            "host",
        ] {
            assert!(check_endpoint(bad).is_err(), "{bad}");
        }
    }

    /// A network whose every connection reaches an in-memory HTTP server answering 200.
    #[derive(Clone, Default)]
    struct MemoryNet {
        connections: Arc<AtomicUsize>,
    }

    impl Net for MemoryNet {
        type Listener = tokio::net::TcpListener;
        type Io = tokio::io::DuplexStream;

        async fn bind(&self, _: &str) -> io::Result<Self::Listener> {
            Err(io::Error::other("this network only connects"))
        }

        async fn connect(&self, _: &str) -> io::Result<Self::Io> {
            self.connections.fetch_add(1, Ordering::SeqCst);
            let (client, server) = tokio::io::duplex(64 * 1024);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(server), service)
                    .await;
            });
            Ok(client)
        }
    }

    struct NoBodies;

    impl EventBodies for NoBodies {
        fn body(&self, _: u64) -> io::Result<Option<String>> {
            Ok(None)
        }
    }

    const ENDPOINT: &str = "http://sub.prod:8080/orders";

    fn delivery(id: u64, clock: &Clock) -> Delivery {
        Delivery {
            id: DeliveryId(id),
            seq: id,
            subscription: Arc::new(ResourceKey::new("prod", "sub")),
            attempt: 1,
            endpoint: ENDPOINT.into(),
            include_subscription_name_header: false,
            deadline: clock.now().saturating_add(Duration::from_millis(1000)),
            event: Arc::new(Event {
                source_id: "ec".into(),
                event_type: "order.created".into(),
                event_type_version: "v1".into(),
                event_id: format!("{id}"),
                event_time: "2018-11-02T22:08:41+00:00".into(),
                data: "{}".into(),
                trace_headers: Vec::new(),
                body_stored: false,
            }),
        }
    }

    async fn push(pusher: &Pusher<MemoryNet>, clock: &Clock, id: u64) -> DeliveryResult {
        let (tx, rx) = tokio::sync::oneshot::channel();
        pusher.start(delivery(id, clock), move |outcome| {
            let _ = tx.send(outcome);
        });
        match rx.await {
            Ok(outcome) => {
                assert_eq!(outcome.delivery, DeliveryId(id));
                outcome.result
            }
            Err(_) => panic!("no outcome"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_worker_ends_with_its_connections_and_the_next_delivery_starts_another() {
        let net = MemoryNet::default();
        let clock = Clock::new(1_700_000_000_000);
        let tls = subscriber_tls(Vec::new(), true).unwrap_or_else(|e| panic!("{e}"));
        let pusher = Pusher::new(net.clone(), tls, clock, Arc::new(NoBodies));
        let worker_open = || {
            pusher
                .workers
                .lock()
                .map(|w| w.get(ENDPOINT).is_some_and(|tx| !tx.is_closed()))
                .unwrap_or(false)
        };

        assert_eq!(push(&pusher, &clock, 1).await, DeliveryResult::Status(200));
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(push(&pusher, &clock, 2).await, DeliveryResult::Status(200));
        assert_eq!(net.connections.load(Ordering::SeqCst), 1, "reused");
        assert!(worker_open());

        // Idle for two idle timeouts: the worker has ended.
        tokio::time::sleep(2 * IDLE_TIMEOUT + Duration::from_secs(1)).await;
        assert!(!worker_open(), "an idle worker did not end");
        assert_eq!(push(&pusher, &clock, 3).await, DeliveryResult::Status(200));
        assert!(worker_open());
        assert_eq!(net.connections.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_delivery_started_from_a_thread_outside_the_runtime_runs_on_the_pushers_runtime() {
        // As the driver does from its own thread.
        let clock = Clock::new(1_700_000_000_000);
        let tls = subscriber_tls(Vec::new(), true).unwrap_or_else(|e| panic!("{e}"));
        let pusher = Pusher::new(MemoryNet::default(), tls, clock, Arc::new(NoBodies));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let started = std::thread::spawn(move || {
            pusher.start(delivery(1, &clock), move |outcome| {
                let _ = tx.send(outcome.result);
            });
            pusher
        });
        let pusher = started.join().unwrap_or_else(|_| panic!("start panicked"));
        assert_eq!(rx.await.ok(), Some(DeliveryResult::Status(200)));
        drop(pusher);
    }
}
