//! A local subscriber: records every push, answers with a programmable status and delay, and
//! tracks how many requests it holds at once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::HeaderMap;
use hyper_util::rt::{TokioIo, TokioTimer};

/// One push as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: String,
}

/// How to answer the n-th request (0-based): status and delay.
pub type Behaviour = Arc<dyn Fn(usize) -> (u16, Duration) + Send + Sync>;

#[derive(Clone)]
pub struct Subscriber {
    pub addr: SocketAddr,
    pub received: Arc<Mutex<Vec<Received>>>,
    pub answered_ok: Arc<Mutex<Vec<Received>>>,
    pub max_concurrent: Arc<AtomicUsize>,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Subscriber {
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Pushes answered 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        self.answered_ok
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The `kyma-event-id`s of the pushes answered 2xx, in the order they were answered.
    pub fn delivered_ids(&self) -> Vec<String> {
        self.delivered()
            .iter()
            .filter_map(|r| {
                r.headers
                    .get("kyma-event-id")?
                    .to_str()
                    .ok()
                    .map(String::from)
            })
            .collect()
    }

    /// The most pushes held at once.
    pub fn max_concurrent(&self) -> usize {
        self.max_concurrent.load(Ordering::SeqCst)
    }
}

pub async fn start(behaviour: Behaviour) -> Subscriber {
    start_on("127.0.0.1:0", behaviour).await
}

pub async fn start_on(addr: &str, behaviour: Behaviour) -> Subscriber {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s = Subscriber {
        addr: listener.local_addr().unwrap_or_else(|e| panic!("{e}")),
        received: Arc::default(),
        answered_ok: Arc::default(),
        max_concurrent: Arc::default(),
        connections: Arc::default(),
        requests: Arc::default(),
    };
    let current = Arc::new(AtomicUsize::new(0));
    let sub = s.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            sub.connections.fetch_add(1, Ordering::SeqCst);
            let (sub, behaviour, current) = (sub.clone(), behaviour.clone(), current.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (sub, behaviour, current) =
                            (sub.clone(), behaviour.clone(), current.clone());
                        async move {
                            let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                            sub.max_concurrent.fetch_max(now, Ordering::SeqCst);
                            let n = sub.requests.fetch_add(1, Ordering::SeqCst);
                            let headers = req.headers().clone();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let received = Received {
                                headers,
                                body: String::from_utf8_lossy(&body).into_owned(),
                            };
                            if let Ok(mut r) = sub.received.lock() {
                                r.push(received.clone());
                            }
                            let (status, delay) = behaviour(n);
                            tokio::time::sleep(delay).await;
                            current.fetch_sub(1, Ordering::SeqCst);
                            if (200..300).contains(&status)
                                && let Ok(mut r) = sub.answered_ok.lock()
                            {
                                r.push(received);
                            }
                            let mut resp = hyper::Response::new(Full::new(Bytes::new()));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status)
                                .unwrap_or(hyper::StatusCode::OK);
                            Ok::<_, Infallible>(resp)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    s
}

pub fn always(status: u16) -> Behaviour {
    Arc::new(move |_| (status, Duration::ZERO))
}

/// Polls `check` every 20 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = tokio::time::Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// Asserts that every event of `ids` reaches `subscriber` within 30 s.
pub async fn all_delivered(subscriber: &Subscriber, ids: &[String]) {
    assert!(
        eventually(Duration::from_secs(30), || {
            let got = subscriber.delivered_ids();
            ids.iter().all(|id| got.contains(id))
        })
        .await,
        "every acknowledged event is delivered: {:?} of {ids:?}",
        subscriber.delivered_ids()
    );
}
