//! The subscriber hosts: they take ACE's pushes, may misbehave with their first ones, and
//! record what they held at once (`max_inflight`) and what they received.

use std::sync::Arc;
use std::time::Duration;

pub use crate::faults::Misbehaviour;

use super::*;

/// The subscription a push is for, by its `Kyma-Subscription` header.
pub(super) fn subscription_of(req: &hyper::Request<hyper::body::Incoming>) -> String {
    req.headers()
        .get("kyma-subscription")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned()
}

/// One push held by a subscriber, counted out when it is dropped (however the request ends:
/// a peer that goes away mid-request makes hyper drop the handler).
pub(super) struct InFlight(Arc<Shared>, String);

impl InFlight {
    pub(super) fn new(shared: &Arc<Shared>, sub: &str) -> InFlight {
        let limit = SUBSCRIPTIONS
            .iter()
            .find(|s| s.name == sub)
            .map_or(1, |s| s.max_inflight);
        if let Ok(mut m) = shared.in_flight.lock() {
            let (now, max) = m.entry(sub.to_owned()).or_default();
            *now += 1;
            *max = (*max).max(*now);
            if *now == limit && limit > 1 {
                shared.rare("max-inflight-reached");
            }
        }
        InFlight(shared.clone(), sub.to_owned())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Ok(mut m) = self.0.in_flight.lock()
            && let Some((now, _)) = m.get_mut(&self.1)
        {
            *now = now.saturating_sub(1);
        }
    }
}

/// What a subscriber does with one push.
pub(super) async fn push(
    shared: Arc<Shared>,
    host: &'static str,
    port: u16,
    misbehaviour: Misbehaviour,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::io::Error> {
    let ok = || {
        Ok(hyper::Response::new(http_body_util::Full::new(
            bytes::Bytes::new(),
        )))
    };
    let sub = subscription_of(&req);
    let id = req
        .headers()
        .get("kyma-event-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("?")
        .to_owned();
    let activated = SUBSCRIPTIONS.iter().any(|s| s.name == sub && s.activated);
    if !activated {
        shared.note(host, format!("push {id} for {sub}: not activated"));
        if let Ok(mut s) = shared.stray.lock() {
            s.push(sub);
        }
        return ok();
    }
    if port != 9000 {
        shared.rare("push-to-updated-endpoint");
    }
    let n = shared
        .requests
        .lock()
        .map(|mut r| {
            let n = r.entry(host).or_default();
            *n += 1;
            *n - 1
        })
        .unwrap_or(0);
    let key = (sub.clone(), id.clone());
    let fail = |how: &str| {
        shared.note(host, format!("push {id} for {sub} -> {how}"));
        if let Ok(mut f) = shared.failed.lock() {
            f.insert(key.clone());
        }
    };
    let misbehaving = n < misbehaviour.first();
    let status = match misbehaviour {
        Misbehaviour::Reset(_) if misbehaving => {
            fail("reset");
            return Err(std::io::Error::other("connection reset by the subscriber"));
        }
        Misbehaviour::Drop(_) if misbehaving => {
            fail("never answered");
            std::future::pending::<()>().await;
            return ok();
        }
        Misbehaviour::Late(_) if misbehaving => {
            // Not counted in flight: the server has given up on it before it ends.
            fail("answered late");
            tokio::time::sleep(Duration::from_millis(PUSH_TIMEOUT_MS + 200)).await;
            200
        }
        _ => {
            let _held = InFlight::new(&shared, &sub);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if misbehaving { 500 } else { 200 }
        }
    };
    if status == 200 {
        let now = turmoil::sim_elapsed().unwrap_or_default();
        if let Ok(mut r) = shared.received.lock() {
            r.entry(key.clone()).or_insert((0, now)).0 += 1;
        }
        if shared.failed.lock().is_ok_and(|f| f.contains(&key)) {
            shared.rare("push-retried-after-failure");
        }
        shared.note(host, format!("push {id} for {sub} -> 200"));
        ok()
    } else {
        fail("500");
        let mut resp = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
        *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        Ok(resp)
    }
}

/// A subscriber host: listens on `ports`, treats its first requests as `misbehaviour` says.
pub(super) async fn subscriber(
    shared: Arc<Shared>,
    host: &'static str,
    ports: &'static [u16],
    misbehaviour: Misbehaviour,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut listeners = Vec::new();
    for port in ports {
        listeners.push((
            *port,
            turmoil::net::TcpListener::bind(format!("0.0.0.0:{port}")).await?,
        ));
    }
    let mut tasks = Vec::new();
    for (port, listener) in listeners {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        count_exchange();
                        push(shared.clone(), host, port, misbehaviour, req)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(())
}
