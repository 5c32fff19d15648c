//! The proxy to registered APIs (reference §5): services and lambdas call
//! `<proxy>/re-<re>-<id>/<path>` (or send `Host: re-<re>-<id>...`) with their binding's
//! `Ace-Binding-Key`; the model decides whether the call gets through and where it goes; this
//! module forwards it, fetching and caching OAuth tokens.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ace_model::error::CommonError;
use ace_model::proxy::{self, ProxyTarget, TokenCache, TokenCachePolicy};
use ace_model::{Reply, RequestError};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderName, HeaderValue};
use hyper::{HeaderMap, StatusCode};
use hyper_util::client::legacy::Client;
use serde::Deserialize;

use crate::driver::Clock;
use crate::http::{self, App, Response};
use crate::net::Net;
use crate::push::NetConnector;

/// The header carrying the caller's binding key.
pub const BINDING_KEY_HEADER: &str = "ace-binding-key";
/// The header with a token to pass instead of fetching one (reference §5.4).
pub const ACCESS_TOKEN_HEADER: &str = "access-token";

type SendFuture = Pin<Box<dyn Future<Output = Result<hyper::Response<Incoming>, String>> + Send>>;

/// Sends one HTTP request (a pooled client on some network).
pub trait Sender: Send + Sync {
    /// Sends `request`.
    fn send(&self, request: hyper::Request<Full<Bytes>>) -> SendFuture;
}

impl<N: Net> Sender for Client<NetConnector<N>, Full<Bytes>> {
    fn send(&self, request: hyper::Request<Full<Bytes>>) -> SendFuture {
        let client = self.clone();
        Box::pin(async move { client.request(request).await.map_err(|e| e.to_string()) })
    }
}

/// The proxy.
pub struct Proxy {
    sender: Arc<dyn Sender>,
    /// For REs with `skipVerify`.
    unverified: Arc<dyn Sender>,
    tokens: Mutex<TokenCache>,
    clock: Clock,
    timeout: Duration,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Hop-by-hop headers, never forwarded (RFC 9110 §7.6.1), and ACE's own (as header names,
/// so that removing them does not parse their names on every call).
static NOT_FORWARDED: [HeaderName; 11] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    HeaderName::from_static(BINDING_KEY_HEADER),
    HeaderName::from_static(ACCESS_TOKEN_HEADER),
];

/// Removes the headers that are not forwarded: [`NOT_FORWARDED`] and every header the
/// `Connection` header names (RFC 9110 §7.6.1).
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&NOT_FORWARDED) {
        headers.remove(name);
    }
}

/// Largest OAuth token response read; a larger one fails the token request (502).
const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: Option<u64>,
}

fn bad_gateway(message: String) -> Response {
    http::error(&CommonError::new(502, message))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Proxy {
    /// A proxy sending through `sender` (or `unverified`, which does not verify certificates,
    /// for REs with `skipVerify`), giving up on a target (or token server) after `timeout`.
    pub fn new(
        sender: Arc<dyn Sender>,
        unverified: Arc<dyn Sender>,
        clock: Clock,
        timeout: Duration,
    ) -> Self {
        Proxy {
            sender,
            unverified,
            tokens: Mutex::new(TokenCache::new(TokenCachePolicy::default())),
            clock,
            timeout,
        }
    }

    /// This proxy with the bugs of `bugs` (only `token-cached-forever` concerns it).
    #[must_use]
    pub fn with_bugs(self, bugs: ace_model::bugs::Bugs) -> Self {
        Proxy {
            tokens: Mutex::new(TokenCache::new(TokenCachePolicy::default()).with_bugs(bugs)),
            ..self
        }
    }

    /// Which service a request is for, and the rest of its path: the first path segment if it
    /// is `re-...`, else the first label of the Host header (Kyma's access Services).
    fn service_of(req: &hyper::Request<Incoming>) -> Option<(String, String)> {
        let path = req.uri().path();
        let trimmed = path.trim_start_matches('/');
        let (first, rest) = trimmed
            .split_once('/')
            .map_or((trimmed, ""), |(f, r)| (f, r));
        if first.starts_with("re-") {
            return Some((first.to_owned(), format!("/{rest}")));
        }
        let host = req.headers().get(HOST)?.to_str().ok()?;
        let label = host.split(['.', ':']).next()?;
        label
            .starts_with("re-")
            .then(|| (label.to_owned(), path.to_owned()))
    }

    /// Handles one call.
    pub async fn handle(&self, app: &App, req: hyper::Request<Incoming>) -> Response {
        let Some((service, path)) = Self::service_of(&req) else {
            return http::error(&CommonError::route_not_found());
        };
        let binding_key = req
            .headers()
            .get(BINDING_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // The model's decision, from the table the driver published after the last change
        // (no round trip through the driver per call).
        let decision = app
            .proxy_tables
            .borrow()
            .decide(&service, binding_key.as_deref());
        let target = match decision {
            Ok(target) => target,
            Err(e) => return http::from_reply(&Reply::Error(RequestError::Proxy(e))),
        };
        let method = req.method().clone();
        let query = req.uri().query().map(str::to_owned);
        let mut headers = req.headers().clone();
        let access_token = headers
            .get(ACCESS_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(proxy::authorization_from_access_token);
        strip_hop_by_hop(&mut headers);
        let body = match http::read_body(
            req,
            app.limits.max_metadata_body_bytes,
            app.limits.body_timeout,
        )
        .await
        {
            Ok(body) => Bytes::from(body),
            Err(r) => return r,
        };
        let url = proxy::join_url(&target.target_url, &path, query.as_deref());
        let url = if url.contains("://") {
            url
        } else {
            format!("http://{url}")
        };
        let authorization = match (&access_token, &target.oauth) {
            (Some(given), _) => Some(given.clone()),
            (None, Some(_)) => match self.token(&target, false).await {
                Ok(token) => Some(format!("Bearer {token}")),
                Err(message) => return bad_gateway(message),
            },
            (None, None) => None,
        };
        let first = self
            .forward(
                self.sender_for(&target),
                &method,
                &url,
                &headers,
                &body,
                authorization.as_deref(),
            )
            .await;
        let response = match first {
            // A 403 with a cached token may mean the token was revoked early: fetch a fresh one
            // and retry once, returning the retried response (Kyma kept the stale 403).
            Ok(r)
                if r.status() == StatusCode::FORBIDDEN
                    && access_token.is_none()
                    && target.oauth.is_some() =>
            {
                let token = match self.token(&target, true).await {
                    Ok(token) => token,
                    Err(message) => return bad_gateway(message),
                };
                self.forward(
                    self.sender_for(&target),
                    &method,
                    &url,
                    &headers,
                    &body,
                    Some(&format!("Bearer {token}")),
                )
                .await
            }
            other => other,
        };
        match response {
            Ok(r) => {
                let (mut parts, body) = r.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                hyper::Response::from_parts(parts, body.boxed())
            }
            Err(message) => bad_gateway(message),
        }
    }

    fn sender_for(&self, target: &ProxyTarget) -> &dyn Sender {
        if target.skip_verify {
            self.unverified.as_ref()
        } else {
            self.sender.as_ref()
        }
    }

    async fn forward(
        &self,
        sender: &dyn Sender,
        method: &hyper::Method,
        url: &str,
        headers: &HeaderMap,
        body: &Bytes,
        authorization: Option<&str>,
    ) -> Result<hyper::Response<Incoming>, String> {
        let mut request = hyper::Request::builder().method(method.clone()).uri(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        if let Some(auth) = authorization {
            request = request.header(AUTHORIZATION, auth);
        }
        let request = request
            .body(Full::new(body.clone()))
            .map_err(|e| format!("cannot call {url}: {e}"))?;
        match tokio::time::timeout(self.timeout, sender.send(request)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(format!("failed to call '{url}': {e}")),
            Err(_) => Err(format!("no answer from '{url}' within {:?}", self.timeout)),
        }
    }

    /// The OAuth token for `target`: the cached one, or a fresh one (always fresh if `refresh`).
    async fn token(&self, target: &ProxyTarget, refresh: bool) -> Result<String, String> {
        let Some(oauth) = &target.oauth else {
            return Err("no OAuth credentials".into());
        };
        let client_id = oauth.client_id.expose();
        if !refresh
            && let Ok(cache) = self.tokens.lock()
            && let Some(token) = cache.get(client_id, self.clock.now())
        {
            return Ok(token.to_owned());
        }
        let form = format!(
            "client_id={}&client_secret={}&grant_type=client_credentials",
            form_encode(client_id),
            form_encode(oauth.client_secret.expose())
        );
        let url = if oauth.url.contains("://") {
            oauth.url.clone()
        } else {
            format!("http://{}", oauth.url)
        };
        let request = hyper::Request::post(url.as_str())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| format!("failed to make a request to '{url}': {e}"))?;
        let fetched_at = self.clock.now();
        let response =
            match tokio::time::timeout(self.timeout, self.sender_for(target).send(request)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(format!("failed to make a request to '{url}': {e}")),
                Err(_) => {
                    return Err(format!(
                        "failed to make a request to '{url}': no answer within {:?}",
                        self.timeout
                    ));
                }
            };
        let status = response.status().as_u16();
        if status != 200 {
            return Err(format!(
                "incorrect response code '{status}' while getting token from {url}"
            ));
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_TOKEN_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("failed to read token response body from {url}: {e}"))?
            .to_bytes();
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| format!("failed to unmarshal token response body: {e}"))?;
        if let Ok(mut cache) = self.tokens.lock() {
            cache.insert(client_id, &token.access_token, token.expires_in, fetched_at);
        }
        Ok(token.access_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(form_encode("plain-value_1.x"), "plain-value_1.x");
    }
}
