//! Push delivery: performs the HTTP POSTs the model decides on and reports their outcomes.
//!
//! [`run`] takes deliveries from the driver's channel and hands each to its endpoint's
//! worker: a task that keeps the endpoint's connections (reused from one attempt to the next)
//! and runs its attempts concurrently, on the injected [`Net`], so the same code runs on real
//! sockets and in a simulation. An attempt reads the event's body from the store when the
//! model does not hold it, sends the POST, and sends the outcome back on the driver's outcomes
//! channel. Every attempt is aborted at its deadline; the model then counts it as timed out.
//! The model starts at most `max_inflight` deliveries per subscription, and a slow subscriber
//! only holds its own attempts and its own worker.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ace_client::Clock;
use ace_client::connector::{MaybeTls, NetConnector};
use ace_client::net::Net;
use ace_model::bus::{Delivery, DeliveryOutcome, DeliveryResult, endpoint::Endpoint};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::header::{CONTENT_TYPE, HOST, HeaderName};
use hyper::http::HeaderValue;
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;

use super::egress::refusal_of;
use crate::driver::{OutcomeSender, now};
use crate::metrics::Metrics;
use crate::store::EventReader;

/// Most idle connections kept per subscriber host: `max_inflight` goes up to 400 per
/// subscription, and several subscriptions may share a host.
pub const MAX_IDLE_PER_ENDPOINT: usize = 512;

/// A connection idle this long is closed, and a worker with nothing to do this long ends.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a worker needs besides its endpoint.
struct Shared<N: Net> {
    connector: NetConnector<N>,
    clock: Clock,
    bodies: Arc<dyn EventReader>,
    outcomes: OutcomeSender,
    metrics: Arc<Metrics>,
}

/// Performs the deliveries that arrive on `deliveries` until the driver closes the channel,
/// and sends each one's outcome on `outcomes`. Each endpoint gets a worker task at its first
/// delivery (again after the worker ended idle).
pub async fn run<N: Net>(
    connector: NetConnector<N>,
    clock: Clock,
    bodies: Arc<dyn EventReader>,
    mut deliveries: mpsc::UnboundedReceiver<Delivery>,
    outcomes: OutcomeSender,
    metrics: Arc<Metrics>,
) {
    let shared = Arc::new(Shared {
        connector,
        clock,
        bodies,
        outcomes,
        metrics,
    });
    let mut workers: HashMap<Arc<str>, mpsc::UnboundedSender<Delivery>> = HashMap::new();
    let mut batch = Vec::with_capacity(64);
    while deliveries.recv_many(&mut batch, 64).await > 0 {
        for delivery in batch.drain(..) {
            let endpoint = Arc::clone(&delivery.endpoint);
            let delivery = match workers.get(&endpoint) {
                Some(worker) => match worker.send(delivery) {
                    Ok(()) => continue,
                    // The worker ended (idle) since it was last used: start another one.
                    Err(mpsc::error::SendError(delivery)) => delivery,
                },
                None => delivery,
            };
            let target = match Target::parse(&endpoint) {
                Ok(target) => target,
                Err(e) => {
                    // The model only keeps endpoints that parse; report rather than lose it.
                    tracing::error!(%endpoint, error = %e, "an endpoint does not parse");
                    shared.report(&delivery, DeliveryResult::ConnectionError);
                    continue;
                }
            };
            let (tx, rx) = mpsc::unbounded_channel();
            // A fresh channel has its receiver: the send cannot fail.
            let _ = tx.send(delivery);
            workers.insert(endpoint, tx);
            tokio::spawn(worker(shared.clone(), target, rx));
        }
    }
}

/// Why an attempt got no status from the subscriber. The model counts every one as a
/// connection error; the reason is logged.
#[derive(Debug)]
enum Failure {
    /// The endpoint cannot be requested (the model refuses such endpoints when applied).
    Endpoint(String),
    /// The store cannot give the event's body (it is retried: never silently skipped).
    Body(Option<crate::store::StoreError>),
    /// The connection (or its TLS handshake) could not be made.
    Connect(std::io::Error),
    /// The HTTP exchange failed.
    Http(hyper::Error),
    /// The request could not be built from the delivery's headers.
    Request(hyper::http::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Endpoint(e) => write!(f, "the endpoint cannot be requested: {e}"),
            Failure::Body(Some(e)) => write!(f, "the event's body could not be read: {e}"),
            Failure::Body(None) => f.write_str("the event's body is no longer kept"),
            Failure::Connect(e) => write!(f, "cannot connect: {e}"),
            Failure::Http(e) => write!(f, "{e}"),
            Failure::Request(e) => write!(f, "bad request: {e}"),
        }
    }
}

impl<N: Net> Shared<N> {
    fn report(&self, delivery: &Delivery, result: DeliveryResult) {
        tracing::debug!(
            endpoint = %delivery.endpoint,
            attempt = delivery.attempt,
            ?result,
            "delivery finished"
        );
        // The driver is gone only when the server stops; the outcome no longer matters.
        let _ = self.outcomes.send(DeliveryOutcome {
            delivery: delivery.id,
            result,
        });
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
    fn parse(endpoint: &str) -> Result<Target, Failure> {
        let endpoint = Endpoint::parse(endpoint).map_err(|e| Failure::Endpoint(e.to_string()))?;
        let uri = endpoint.uri().clone();
        // Host and explicit port only: user information in the endpoint is never sent.
        let host = match uri.port() {
            Some(port) => format!("{}:{port}", endpoint.host()),
            None => endpoint.host().to_owned(),
        };
        let host = HeaderValue::from_str(&host).map_err(|e| Failure::Endpoint(e.to_string()))?;
        let path = match uri.path_and_query() {
            Some(p) => Uri::try_from(p.as_str()).map_err(|e| Failure::Endpoint(e.to_string()))?,
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
type ConnDriver<N> = http1::Connection<TokioIo<MaybeTls<<N as Net>::Io>>, Full<Bytes>>;

/// Runs every attempt to one endpoint until it has been idle for [`IDLE_TIMEOUT`].
async fn worker<N: Net>(
    shared: Arc<Shared<N>>,
    target: Target,
    mut attempts: mpsc::UnboundedReceiver<Delivery>,
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
                Some(delivery) => {
                    // The most recently used connection first: the others may expire.
                    let conn = idle.pop().map(|(conn, _)| conn);
                    running.push(attempt(shared.clone(), target.clone(), conn, delivery));
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

/// Runs one attempt on `conn` (or a new connection) within its deadline, reports its
/// outcome, and returns the connection if it can be used again.
async fn attempt<N: Net>(
    shared: Arc<Shared<N>>,
    target: Target,
    conn: Option<Conn<N>>,
    delivery: Delivery,
) -> Option<Conn<N>> {
    let wait = delivery
        .deadline
        .saturating_duration_since(now(&shared.clock));
    let deadline = tokio::time::Instant::now() + wait;
    let work = async {
        let body = body_of(&shared, &delivery).await?;
        let request = request(&target, &delivery, body)?;
        let (status, conn) = exchange(shared.connector.clone(), &target, conn, request).await;
        status.map(|status| (status, conn))
    };
    let (result, conn) = match tokio::time::timeout_at(deadline, work).await {
        Ok(Ok((status, conn))) => (DeliveryResult::Status(status), conn),
        Ok(Err(Failure::Connect(e))) if refusal_of(&e).is_some() => {
            shared.metrics.egress_refused("push");
            tracing::info!(endpoint = %delivery.endpoint, error = %e, "a push was refused by the egress policy");
            (DeliveryResult::ConnectionError, None)
        }
        Ok(Err(e)) => {
            tracing::debug!(endpoint = %delivery.endpoint, error = %e, "delivery failed");
            (DeliveryResult::ConnectionError, None)
        }
        // Dropping the exchange closed its connection.
        Err(_) => (DeliveryResult::Timeout, None),
    };
    shared.report(&delivery, result);
    conn
}

/// The body to send: the event's `data` as the model holds it, or read back from the store.
/// A body the store cannot give fails the attempt (which is retried): an event is never
/// silently skipped.
async fn body_of<N: Net>(shared: &Shared<N>, delivery: &Delivery) -> Result<Bytes, Failure> {
    if !delivery.event.body_stored {
        return Ok(Bytes::copy_from_slice(delivery.body().as_bytes()));
    }
    let failure = match shared.bodies.body(delivery.seq).await {
        Ok(Some(body)) => return Ok(body),
        Ok(None) => Failure::Body(None),
        Err(e) => Failure::Body(Some(e)),
    };
    tracing::error!(seq = delivery.seq, error = %failure, "an event's body could not be read");
    Err(failure)
}

/// The names of the headers every push carries (HTTP/1.1 writes names in lower case), so
/// that a push does not parse and allocate them again.
static DELIVERY_HEADERS: [HeaderName; 7] = [
    CONTENT_TYPE,
    HeaderName::from_static("kyma-source-id"),
    HeaderName::from_static("kyma-event-type"),
    HeaderName::from_static("kyma-event-type-version"),
    HeaderName::from_static("kyma-event-id"),
    HeaderName::from_static("kyma-event-time"),
    HeaderName::from_static("kyma-subscription"),
];

/// The header name `name`: one of [`DELIVERY_HEADERS`], or parsed (an event's trace headers).
fn header_name(name: &str) -> Result<HeaderName, hyper::http::Error> {
    match DELIVERY_HEADERS
        .iter()
        .find(|known| known.as_str().eq_ignore_ascii_case(name))
    {
        Some(known) => Ok(known.clone()),
        None => Ok(HeaderName::from_bytes(name.as_bytes())?),
    }
}

/// The POST of `delivery` to `target`, its header map sized once (a request builder would
/// move the whole request head through every header it adds).
fn request(
    target: &Target,
    delivery: &Delivery,
    body: Bytes,
) -> Result<Request<Full<Bytes>>, Failure> {
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = target.path.clone();
    let fields = delivery.headers();
    let headers = request.headers_mut();
    headers.reserve(fields.len() + 1);
    headers.insert(HOST, target.host.clone());
    for (name, value) in fields {
        let value = HeaderValue::from_str(value).map_err(|e| Failure::Request(e.into()))?;
        headers.append(header_name(name).map_err(Failure::Request)?, value);
    }
    Ok(request)
}

/// Sends `request` on `conn`, or on a new connection if there is none or if `conn` turns out
/// to have been closed before the request went out. Returns the status and the connection if
/// it can carry another request.
async fn exchange<N: Net>(
    connector: NetConnector<N>,
    target: &Target,
    mut conn: Option<Conn<N>>,
    mut request: Request<Full<Bytes>>,
) -> (Result<u16, Failure>, Option<Conn<N>>) {
    loop {
        let reused = conn.is_some();
        let mut c = match conn.take() {
            Some(c) => c,
            None => match connect(&connector, &target.uri).await {
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

async fn connect<N: Net>(connector: &NetConnector<N>, uri: &Uri) -> Result<Conn<N>, Failure> {
    let io = connector.connect(uri).await.map_err(Failure::Connect)?;
    let (sender, driver) = http1::handshake(TokioIo::new(io))
        .await
        .map_err(Failure::Http)?;
    Ok(Conn {
        sender,
        driver: Some(Box::pin(driver)),
    })
}

/// A failed send: the request if it never went out, and why.
type SendFailure = (Option<Request<Full<Bytes>>>, Failure);

/// Sends `request` on `conn`, polling the connection meanwhile, and reads the whole response.
/// Returns the status and whether the connection can carry another request.
async fn send<N: Net>(
    conn: &mut Conn<N>,
    request: Request<Full<Bytes>>,
) -> Result<(u16, bool), SendFailure> {
    let Conn { sender, driver } = conn;
    let work = async move {
        if let Err(e) = sender.ready().await {
            return Err((Some(request), Failure::Http(e)));
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
                Err((unsent, Failure::Http(e.into_error())))
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

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Mutex;

    use ace_client::tls::{TlsOptions, tls_connector};
    use ace_model::bus::{DeliveryId, Event, ResourceKey};

    use super::*;
    use crate::store::MemoryStore;

    /// The model's delivery header names are all known (not parsed per push), as HTTP/1.1
    /// writes them; any other name (a trace header) is parsed, and a bad one refused.
    #[test]
    fn delivery_header_names_are_known_and_others_parsed() {
        let clock = Clock::new(1_700_000_000_000);
        let with_name = Delivery {
            include_subscription_name_header: true,
            ..delivery(1, &clock, "{}", false)
        };
        let headers = with_name.headers();
        assert!(headers.len() >= 7);
        for (name, _) in headers {
            let known = header_name(name).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                DELIVERY_HEADERS.contains(&known),
                "{name} is parsed per push"
            );
            assert_eq!(known.as_str(), name.to_ascii_lowercase());
        }
        let trace = header_name("X-B3-TraceId").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(trace.as_str(), "x-b3-traceid");
        assert!(header_name("bad name").is_err());
    }

    /// A push is a POST of the body to the endpoint's path, with its Host, every delivery
    /// header in the model's order, and nothing else; a header value that cannot be sent
    /// fails the attempt instead of being dropped.
    #[test]
    fn a_push_request_carries_the_endpoint_and_every_delivery_header() {
        let clock = Clock::new(1_700_000_000_000);
        let target = Target::parse(ENDPOINT).unwrap_or_else(|e| panic!("{e}"));
        let mut d = delivery(1, &clock, "{}", false);
        Arc::make_mut(&mut d.event).trace_headers = vec![("x-b3-traceid".into(), "abc".into())];
        let r = request(&target, &d, Bytes::from_static(b"{}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "/orders");
        let sent: Vec<(String, String)> = r
            .headers()
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_owned()))
            .collect();
        let mut want = vec![("host".to_owned(), "sub.prod:8080".to_owned())];
        want.extend(
            d.headers()
                .into_iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.to_owned())),
        );
        assert_eq!(sent, want);
        assert!(sent.iter().any(|(n, v)| n == "x-b3-traceid" && v == "abc"));
        Arc::make_mut(&mut d.event).trace_headers = vec![("x-b3-traceid".into(), "a\nb".into())];
        assert!(matches!(
            request(&target, &d, Bytes::new()),
            Err(Failure::Request(_))
        ));
    }

    /// A network whose every connection reaches an in-memory HTTP server answering 200; it
    /// counts connections and keeps the bodies it received.
    #[derive(Clone, Default)]
    struct MemoryNet {
        connections: Arc<Mutex<usize>>,
        bodies: Arc<Mutex<Vec<Bytes>>>,
    }

    impl Net for MemoryNet {
        type Listener = tokio::net::TcpListener;
        type Io = tokio::io::DuplexStream;

        async fn bind(&self, _: &str) -> io::Result<Self::Listener> {
            Err(io::Error::other("this network only connects"))
        }

        async fn resolve(&self, _: &str, port: u16) -> io::Result<Vec<std::net::SocketAddr>> {
            Ok(vec![std::net::SocketAddr::from(([127, 0, 0, 1], port))])
        }

        async fn connect_addr(&self, _: std::net::SocketAddr) -> io::Result<Self::Io> {
            self.connect("").await
        }

        async fn connect(&self, _: &str) -> io::Result<Self::Io> {
            if let Ok(mut n) = self.connections.lock() {
                *n += 1;
            }
            let (client, server) = tokio::io::duplex(64 * 1024);
            let bodies = self.bodies.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let bodies = bodies.clone();
                        async move {
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            if let (Ok(body), Ok(mut all)) = (body, bodies.lock()) {
                                all.push(body);
                            }
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(server), service)
                    .await;
            });
            Ok(client)
        }
    }

    impl MemoryNet {
        fn connections(&self) -> usize {
            self.connections.lock().map_or(0, |n| *n)
        }
    }

    const ENDPOINT: &str = "http://sub.prod:8080/orders";

    fn delivery(id: u64, clock: &Clock, data: &str, body_stored: bool) -> Delivery {
        Delivery {
            id: DeliveryId(id),
            seq: id,
            subscription: Arc::new(ResourceKey::new("prod", "sub")),
            attempt: 1,
            endpoint: ENDPOINT.into(),
            include_subscription_name_header: false,
            deadline: now(clock).saturating_add(Duration::from_millis(1000)),
            event: Arc::new(Event {
                source_id: "ec".into(),
                event_type: "order.created".into(),
                event_type_version: "v1".into(),
                event_id: format!("{id}"),
                event_time: "2018-11-02T22:08:41+00:00".into(),
                data: data.into(),
                trace_headers: Vec::new(),
                body_stored,
            }),
        }
    }

    /// The driver's side of a running pusher.
    struct Driver {
        deliveries: mpsc::UnboundedSender<Delivery>,
        outcomes: mpsc::UnboundedReceiver<DeliveryOutcome>,
        clock: Clock,
    }

    impl Driver {
        fn start(net: MemoryNet, bodies: Arc<dyn EventReader>) -> Driver {
            let clock = Clock::new(1_700_000_000_000);
            let tls = tls_connector(
                &TlsOptions {
                    insecure: true,
                    ..TlsOptions::default()
                },
                clock,
            )
            .unwrap_or_else(|e| panic!("{e}"));
            let (deliveries, rx) = mpsc::unbounded_channel();
            let (outcome_tx, outcomes) = mpsc::unbounded_channel();
            tokio::spawn(run(
                NetConnector::new(net, tls),
                clock,
                bodies,
                rx,
                outcome_tx,
                Arc::new(Metrics::default()),
            ));
            Driver {
                deliveries,
                outcomes,
                clock,
            }
        }

        async fn push(&mut self, delivery: Delivery) -> DeliveryResult {
            let id = delivery.id;
            assert!(self.deliveries.send(delivery).is_ok());
            let outcome = self
                .outcomes
                .recv()
                .await
                .unwrap_or_else(|| panic!("no outcome"));
            assert_eq!(outcome.delivery, id);
            outcome.result
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoint_keeps_its_connection_until_idle_then_opens_a_new_one() {
        let net = MemoryNet::default();
        let mut driver = Driver::start(net.clone(), Arc::new(MemoryStore::default()));
        let clock = driver.clock;
        let ok = DeliveryResult::Status(200);
        assert_eq!(driver.push(delivery(1, &clock, "{}", false)).await, ok);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(driver.push(delivery(2, &clock, "{}", false)).await, ok);
        assert_eq!(net.connections(), 1, "reused");
        // Idle for two idle timeouts: the worker has ended with its connections.
        tokio::time::sleep(2 * IDLE_TIMEOUT + Duration::from_secs(1)).await;
        assert_eq!(driver.push(delivery(3, &clock, "{}", false)).await, ok);
        assert_eq!(net.connections(), 2);
    }

    #[tokio::test]
    async fn a_body_the_model_does_not_hold_is_read_from_the_store_and_a_missing_one_fails() {
        let net = MemoryNet::default();
        let store = MemoryStore::default();
        let stored = ace_model::Record::Bus(ace_model::bus::BusRecord::EventAccepted {
            seq: 7,
            at: ace_model::Timestamp::EPOCH,
            event: delivery(7, &Clock::new(0), r#"{"order":7}"#, false).event,
            deliveries: vec![Arc::new(ace_model::bus::ResourceKey::new("prod", "orders"))],
        });
        store
            .append_now(vec![stored])
            .unwrap_or_else(|e| panic!("{e}"));
        let mut driver = Driver::start(net.clone(), Arc::new(store));
        let clock = driver.clock;
        let result = driver.push(delivery(7, &clock, "", true)).await;
        assert_eq!(result, DeliveryResult::Status(200));
        let received = net.bodies.lock().map(|b| b.clone()).unwrap_or_default();
        assert_eq!(received, vec![Bytes::from_static(br#"{"order":7}"#)]);
        // No body kept for event 8: the attempt fails (and is retried by the model).
        let result = driver.push(delivery(8, &clock, "", true)).await;
        assert_eq!(result, DeliveryResult::ConnectionError);
    }
}
