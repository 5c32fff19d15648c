//! The suite's own endpoint: a subscriber that records every push, an OAuth server and a
//! target API for the proxy. Each check uses its own mailbox (a path segment), so checks do not
//! see each other's traffic.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::HeaderMap;
use hyper_util::rt::TokioIo;
use serde_json::json;

/// How a mailbox answers.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// Answer this many pushes with `fail_status` before answering 200.
    pub fail_first: usize,
    /// The failing status (default 500).
    pub fail_status: u16,
    /// Wait this long before answering each push.
    pub delay: Duration,
    /// Wait this long before answering only the first push.
    pub first_delay: Duration,
    /// `expires_in` of issued OAuth tokens (`None`: leave it out).
    pub expires_in: Option<u64>,
    /// The target API answers 403 to the first token it sees.
    pub reject_first_token: bool,
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query after the mailbox prefix.
    pub path: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
    /// Status answered.
    pub answered: u16,
}

impl Received {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// What a mailbox saw.
#[derive(Clone, Debug, Default)]
pub struct Mailbox {
    /// The plan.
    pub plan: Plan,
    /// Pushes, in arrival order.
    pub pushes: Vec<Received>,
    /// OAuth token requests.
    pub token_requests: Vec<Received>,
    /// Calls on the target API.
    pub api_calls: Vec<Received>,
    /// Pushes being answered now.
    pub in_flight: usize,
    /// Most pushes answered at once.
    pub max_in_flight: usize,
}

impl Mailbox {
    /// Pushes answered 2xx.
    pub fn delivered(&self) -> impl Iterator<Item = &Received> {
        self.pushes
            .iter()
            .filter(|r| (200..300).contains(&r.answered))
    }
}

type Boxes = Arc<Mutex<BTreeMap<String, Mailbox>>>;

/// The running endpoint.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The base URL the deployment reaches it at.
    pub base_url: String,
    /// The bound address.
    pub addr: SocketAddr,
    boxes: Boxes,
}

fn lock(boxes: &Boxes) -> MutexGuard<'_, BTreeMap<String, Mailbox>> {
    boxes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Endpoint {
    /// Listens on `listen`; `public_url` overrides the base URL handed to the deployment.
    pub async fn start(listen: &str, public_url: Option<&str>) -> Result<Endpoint, String> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("suite endpoint on {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let base_url = public_url.map_or_else(
            || format!("http://{addr}"),
            |u| u.trim_end_matches('/').to_owned(),
        );
        let boxes: Boxes = Arc::default();
        let served = boxes.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let boxes = served.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let boxes = boxes.clone();
                        async move { Ok::<_, Infallible>(handle(&boxes, req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Endpoint {
            base_url,
            addr,
            boxes,
        })
    }

    /// Opens a mailbox with `plan` (replacing one of the same name).
    pub fn open(&self, name: &str, plan: Plan) {
        lock(&self.boxes).insert(
            name.to_owned(),
            Mailbox {
                plan,
                ..Mailbox::default()
            },
        );
    }

    /// The subscriber URL of a mailbox.
    pub fn push_url(&self, name: &str) -> String {
        format!("{}/push/{name}", self.base_url)
    }

    /// The OAuth token URL of a mailbox.
    pub fn oauth_url(&self, name: &str) -> String {
        format!("{}/oauth/{name}/token", self.base_url)
    }

    /// The target API URL of a mailbox.
    pub fn api_url(&self, name: &str) -> String {
        format!("{}/api/{name}", self.base_url)
    }

    /// A copy of what a mailbox saw.
    pub fn mailbox(&self, name: &str) -> Mailbox {
        lock(&self.boxes).get(name).cloned().unwrap_or_default()
    }

    /// Waits until `done` holds for the mailbox or `timeout` passes; returns the mailbox.
    pub async fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        done: impl Fn(&Mailbox) -> bool,
    ) -> Mailbox {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let m = self.mailbox(name);
            if done(&m) || tokio::time::Instant::now() >= deadline {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    boxes: &Boxes,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let method = req.method().as_str().to_owned();
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    let mut parts = path_and_query.trim_start_matches('/').splitn(3, '/');
    let (kind, name, rest) = (
        parts.next().unwrap_or_default().to_owned(),
        parts
            .next()
            .unwrap_or_default()
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned(),
        parts.next().unwrap_or_default().to_owned(),
    );
    let mut received = Received {
        method,
        path: format!("/{rest}"),
        headers,
        body,
        answered: 200,
    };
    match kind.as_str() {
        "push" => push(boxes, &name, received).await,
        "oauth" => {
            let mut boxes = lock(boxes);
            let Some(m) = boxes.get_mut(&name) else {
                return respond(404, "no such mailbox".into());
            };
            let n = m.token_requests.len() + 1;
            m.token_requests.push(received);
            let mut token =
                json!({"access_token": format!("token-{name}-{n}"), "token_type": "bearer"});
            if let Some(e) = m.plan.expires_in {
                token["expires_in"] = json!(e);
            }
            respond(200, token.to_string())
        }
        "api" => {
            let mut boxes = lock(boxes);
            let Some(m) = boxes.get_mut(&name) else {
                return respond(404, "no such mailbox".into());
            };
            let authorization = received
                .header("authorization")
                .unwrap_or_default()
                .to_owned();
            let first_token = format!("Bearer token-{name}-1");
            received.answered = if m.plan.reject_first_token && authorization == first_token {
                403
            } else {
                200
            };
            let reply = json!({"method": received.method, "path": received.path, "authorization": authorization});
            let status = received.answered;
            m.api_calls.push(received);
            respond(status, reply.to_string())
        }
        _ => respond(404, "not a suite path".into()),
    }
}

async fn push(boxes: &Boxes, name: &str, mut received: Received) -> hyper::Response<Full<Bytes>> {
    let (status, delay) = {
        let mut boxes = lock(boxes);
        let Some(m) = boxes.get_mut(name) else {
            return respond(404, "no such mailbox".into());
        };
        m.in_flight += 1;
        m.max_in_flight = m.max_in_flight.max(m.in_flight);
        let n = m.pushes.len();
        let status = if n < m.plan.fail_first {
            if m.plan.fail_status == 0 {
                500
            } else {
                m.plan.fail_status
            }
        } else {
            200
        };
        let delay = if n == 0 {
            m.plan.delay + m.plan.first_delay
        } else {
            m.plan.delay
        };
        received.answered = status;
        m.pushes.push(received);
        (status, delay)
    };
    tokio::time::sleep(delay).await;
    if let Some(m) = lock(boxes).get_mut(name) {
        m.in_flight = m.in_flight.saturating_sub(1);
    }
    respond(status, String::new())
}

fn respond(status: u16, body: String) -> hyper::Response<Full<Bytes>> {
    let mut r = hyper::Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::OK);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}
