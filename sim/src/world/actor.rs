//! A host that sends requests: each traced with its outcome, retried as a client would;
//! a solution's answers are also checked against the model.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ace_client::{self as client};
use hyper::Method;
use serde_json::Value;

use crate::oracle::{Call, Mirror};
use crate::timeline::Kind;

use super::*;

/// A host of the world that sends requests, tracing each with its outcome; a solution's
/// answers from its RE are also checked against the model.
#[derive(Clone)]
pub(super) struct Actor {
    pub(super) shared: Arc<Shared>,
    pub(super) name: &'static str,
    pub(super) mirror: Option<Arc<Mutex<Mirror>>>,
}

/// The host of `url`, and its path with the query elided (it may hold a token).
pub(super) fn host_and_path(url: &str) -> (&str, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.split(':').next().unwrap_or(authority);
    let path = match path.split_once('?') {
        Some((p, _)) => format!("{p}?…"),
        None => path.to_owned(),
    };
    (host, path)
}

impl Actor {
    pub(super) fn note(&self, what: impl Into<String>) {
        self.shared.note(self.name, what.into());
    }

    pub(super) async fn send_with(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<&Value>,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<client::Response, String> {
        count_exchange();
        let bytes = body.map(|b| b.to_string().into_bytes());
        let mut headers = headers.to_vec();
        if url.starts_with(ADMIN)
            || self
                .shared
                .replicas
                .iter()
                .any(|r| url.starts_with(&format!("http://{r}:8081/")))
        {
            headers.push(("authorization", &self.shared.admin_authorization));
        }
        let r = client::request(
            &self.shared.net,
            method.clone(),
            url,
            &headers,
            bytes,
            tls,
            STEP_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string());
        let (host, path) = host_and_path(url);
        let outcome = match &r {
            Ok(r) if r.status >= 400 => {
                let body = r.json();
                let error = body["error"].as_str().unwrap_or_default();
                format!(
                    "{} {}",
                    r.status,
                    error.chars().take(80).collect::<String>()
                )
                .trim_end()
                .to_owned()
            }
            Ok(r) => r.status.to_string(),
            Err(e) => format!("failed: {e}"),
        };
        self.shared.entry(
            self.name,
            Some(host),
            format!("{method} {path} -> {outcome}"),
            Kind::Request,
        );
        r
    }

    pub(super) async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<client::Response, String> {
        let json = [("content-type", "application/json")];
        self.send_with(method, url, &json, body, tls).await
    }

    /// Sends until the answer's status is in `ok` (faults may be striking); also returns how
    /// many attempts it took.
    pub(super) async fn until(
        &self,
        ok: &[u16],
        method: Method,
        url: &str,
        body: Option<&Value>,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> (client::Response, usize) {
        retry(
            |status| ok.contains(&status),
            || async { self.send(method.clone(), url, body, tls).await.ok() },
        )
        .await
    }

    /// Sends until the server answers at all.
    pub(super) async fn answer(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> client::Response {
        retry(
            |_| true,
            || async { self.send(method.clone(), url, body, tls).await.ok() },
        )
        .await
        .0
    }

    /// Sends `call` once and checks its answer (or its loss) against the model.
    pub(super) async fn checked(
        &self,
        call: Call,
        method: Method,
        url: &str,
        body: Option<&Value>,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Option<client::Response> {
        let r = self.send(method, url, body, tls).await.ok();
        if let Some(mirror) = &self.mirror {
            let json = r
                .as_ref()
                .map(|r| (r.status, (!r.body.is_empty()).then(|| r.json())));
            let answer = json.as_ref().map(|(s, b)| (*s, b.as_ref()));
            let seen = mirror.lock().map(|mut m| m.observe(&call, answer));
            if let Ok(Err(violation)) = seen {
                self.shared.violation(violation);
            }
        }
        r
    }

    /// Sends `call` until it is answered with a status in `ok`, checking every answer.
    pub(super) async fn checked_until(
        &self,
        ok: &[u16],
        call: Call,
        method: Method,
        url: &str,
        body: Option<&Value>,
        tls: &tokio_rustls::TlsConnector,
    ) -> (client::Response, usize) {
        retry(
            |status| ok.contains(&status),
            || self.checked(call.clone(), method.clone(), url, body, Some(tls)),
        )
        .await
    }

    /// An idempotent write by the operator, sent until acknowledged.
    pub(super) async fn write(&self, method: Method, url: &str, body: Option<&Value>, ok: &[u16]) {
        let (_, attempts) = self.until(ok, method, url, body, None).await;
        if attempts > 1 {
            self.shared.rare("registry-write-retried");
        }
    }
}

/// Calls `attempt` every 100 ms until it gives an answer whose status `accept`s; returns the
/// answer and how many attempts it took.
pub(super) async fn retry<F, Fut>(
    accept: impl Fn(u16) -> bool,
    mut attempt: F,
) -> (client::Response, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<client::Response>>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        if let Some(r) = attempt().await
            && accept(r.status)
        {
            return (r, attempts);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
