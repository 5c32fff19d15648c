//! The proxy's outbound half (reference §5): forwards a call the model let through to the
//! registered API, with an OAuth token fetched with the registered client credentials and
//! cached until shortly before it expires (or the caller's own `Access-Token`), and retries
//! once with a fresh token after a 403. The inbound half, which finds the service and asks
//! the model, is [`crate::edge::proxy`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ace_client::Clock;
use ace_client::connector::NetConnector;
use ace_client::net::Net;
use ace_model::egress::EgressRefusal;
use ace_model::proxy::{self, ProxyTarget, TokenCache, TokenCachePolicy};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use serde::Deserialize;

use super::egress::refusal_of;
use crate::driver::now;
use crate::metrics::Metrics;

/// The header carrying the caller's binding key.
pub const BINDING_KEY_HEADER: &str = "ace-binding-key";
/// The header with a token to pass instead of fetching one (reference §5.4).
pub const ACCESS_TOKEN_HEADER: &str = "access-token";

type SendFuture =
    Pin<Box<dyn Future<Output = Result<hyper::Response<Incoming>, SendError>> + Send>>;
type OpenFuture = Pin<Box<dyn Future<Output = Result<Dedicated, SendError>> + Send>>;

/// An HTTP/1.1 connection of the proxy's own to one registered API's server.
pub type Dedicated = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// The egress policy refused the connection.
    Refused(EgressRefusal),
    /// The connection or the exchange failed.
    Failed(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Refused(r) => write!(f, "refused by ACE's egress policy: {r}"),
            SendError::Failed(e) => f.write_str(e),
        }
    }
}

/// Sends HTTP requests on some network: over a pool shared by every caller, or over a
/// connection opened for one caller's connection.
pub trait Sender: Send + Sync {
    /// Sends `request` (an absolute URI) over the pool.
    fn send(&self, request: hyper::Request<Full<Bytes>>) -> SendFuture;
    /// Opens a connection to `uri`'s server (TLS for `https`), through the same egress
    /// checks as the pool's connections.
    fn open(&self, uri: &Uri) -> OpenFuture;
}

/// A pooled client and the connector it opens its connections with.
pub struct PooledSender<N> {
    pool: Client<NetConnector<N>, Full<Bytes>>,
    connector: NetConnector<N>,
}

impl<N> std::fmt::Debug for PooledSender<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledSender").finish_non_exhaustive()
    }
}

impl<N: Net> PooledSender<N> {
    /// Sends over `pool` and opens connections of its own with `connector` (the pool's).
    pub fn new(pool: Client<NetConnector<N>, Full<Bytes>>, connector: NetConnector<N>) -> Self {
        PooledSender { pool, connector }
    }
}

fn send_error(e: &(dyn std::error::Error + 'static)) -> SendError {
    match refusal_of(e) {
        Some(refusal) => SendError::Refused(refusal),
        None => SendError::Failed(e.to_string()),
    }
}

impl<N: Net> Sender for PooledSender<N> {
    fn send(&self, request: hyper::Request<Full<Bytes>>) -> SendFuture {
        let client = self.pool.clone();
        Box::pin(async move { client.request(request).await.map_err(|e| send_error(&e)) })
    }

    fn open(&self, uri: &Uri) -> OpenFuture {
        let connector = self.connector.clone();
        let uri = uri.clone();
        Box::pin(async move {
            let io = connector.connect(&uri).await.map_err(|e| send_error(&e))?;
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
                .await
                .map_err(|e| send_error(&e))?;
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "proxy upstream connection ended with an error");
                }
            });
            Ok(sender)
        })
    }
}

/// Which server a connection goes to, how its certificate is checked, and the `Host` header
/// its requests carry.
#[derive(Clone, Debug)]
struct UpstreamKey {
    https: bool,
    host: String,
    port: Option<u16>,
    skip_verify: bool,
    host_header: HeaderValue,
}

impl UpstreamKey {
    /// The key of `uri`'s server (`None` for a scheme other than `http` and `https`).
    fn of(uri: &Uri, skip_verify: bool) -> Option<Self> {
        let https = match uri.scheme_str()? {
            "https" => true,
            "http" => false,
            _ => return None,
        };
        let host = uri.host()?;
        // As the pooled client writes it: the port only when it is not the scheme's default.
        let default = if https { 443 } else { 80 };
        let host_header = match uri.port_u16() {
            Some(port) if port != default => HeaderValue::from_str(&format!("{host}:{port}")),
            _ => HeaderValue::from_str(host),
        }
        .ok()?;
        Some(UpstreamKey {
            https,
            host: host.to_owned(),
            port: uri.port_u16(),
            skip_verify,
            host_header,
        })
    }

    /// Whether `uri` goes to this key's server (compared in place: no allocation per call).
    fn matches(&self, uri: &Uri, skip_verify: bool) -> bool {
        self.skip_verify == skip_verify
            && uri.scheme_str() == Some(if self.https { "https" } else { "http" })
            && uri.host() == Some(self.host.as_str())
            && uri.port_u16() == self.port
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// The server this caller's connection forwards to over a connection of its own (the
    /// first it called); calls to other servers go over the pool.
    key: Option<UpstreamKey>,
    /// That connection, while no call is using it.
    connection: Option<Dedicated>,
}

/// The upstream side of one caller's connection to the proxy: the caller's calls to the
/// registered API it calls first go over one connection of the proxy's own, opened on the
/// first call and closed with the caller's connection, without the pool's per-call
/// dispatch; calls to any other server go over the pool. A caller's HTTP/1.1 connection
/// carries one call at a time, so the connection is never contended.
#[derive(Clone, Debug, Default)]
pub struct Upstream(Arc<Mutex<Slot>>);

/// What a call may use.
enum Claim {
    /// The caller's connection (`None`: open it), and the `Host` header for its server.
    Own(Option<Dedicated>, HeaderValue),
    /// The pool: the caller's connection goes to another server (or one it cannot take).
    Pool,
}

impl Upstream {
    fn claim(&self, uri: &Uri, skip_verify: bool) -> Claim {
        let Ok(mut slot) = self.0.lock() else {
            return Claim::Pool;
        };
        match &slot.key {
            None => match UpstreamKey::of(uri, skip_verify) {
                Some(key) => {
                    let host = key.host_header.clone();
                    slot.key = Some(key);
                    Claim::Own(None, host)
                }
                None => Claim::Pool,
            },
            Some(key) if key.matches(uri, skip_verify) => {
                let host = key.host_header.clone();
                Claim::Own(slot.connection.take(), host)
            }
            Some(_) => Claim::Pool,
        }
    }

    fn give_back(&self, connection: Dedicated) {
        if let Ok(mut slot) = self.0.lock() {
            slot.connection = Some(connection);
        }
    }
}

/// Sends `request` over `upstream`'s connection when it goes to that connection's server,
/// else over `sender`'s pool; a connection found closed is opened again, and a request the
/// connection did not take is sent over the pool.
async fn send_over(
    sender: &dyn Sender,
    upstream: &Upstream,
    skip_verify: bool,
    mut request: hyper::Request<Full<Bytes>>,
) -> Result<hyper::Response<Incoming>, SendError> {
    let Some(origin) = request.uri().path_and_query().cloned() else {
        return sender.send(request).await;
    };
    let (held, host) = match upstream.claim(request.uri(), skip_verify) {
        Claim::Own(held, host) => (held, host),
        Claim::Pool => return sender.send(request).await,
    };
    let mut connection = match held {
        Some(mut c) => match c.ready().await {
            Ok(()) => c,
            // Closed by the server since the last call.
            Err(_) => sender.open(request.uri()).await?,
        },
        None => sender.open(request.uri()).await?,
    };
    request.headers_mut().entry(header::HOST).or_insert(host);
    let absolute = std::mem::replace(request.uri_mut(), Uri::from(origin));
    match connection.try_send_request(request).await {
        Ok(response) => {
            upstream.give_back(connection);
            Ok(response)
        }
        Err(mut e) => match e.take_message() {
            // Not written: the connection closed just now. The pool may send it.
            Some(mut request) => {
                *request.uri_mut() = absolute;
                sender.send(request).await
            }
            None => Err(send_error(e.error())),
        },
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
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
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

/// Why a call could not be forwarded: the token server or the registered API failed. Either
/// is the upstream's fault, and the caller gets a 502 with the message (Kyma's words).
#[derive(Debug)]
pub enum ForwardError {
    /// The token request could not be made or got no answer.
    TokenRequest {
        /// The token URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The token server answered with another status than 200.
    TokenStatus {
        /// The token URL.
        url: String,
        /// Its status.
        status: u16,
    },
    /// The token response could not be read (or was over 64 KiB).
    TokenBody {
        /// The token URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The token response is not a token document.
    TokenDecode(String),
    /// The call cannot be made to this URL.
    BadTarget {
        /// The joined URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The registered API failed.
    Target {
        /// The joined URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The egress policy refused the connection to the registered API or its OAuth server.
    Refused {
        /// The URL.
        url: String,
        /// Why.
        refusal: EgressRefusal,
    },
    /// The registered API did not answer in time.
    TargetTimeout {
        /// The joined URL.
        url: String,
        /// The time allowed.
        after: Duration,
    },
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::TokenRequest { url, reason } => {
                write!(f, "failed to make a request to '{url}': {reason}")
            }
            ForwardError::TokenStatus { url, status } => write!(
                f,
                "incorrect response code '{status}' while getting token from {url}"
            ),
            ForwardError::TokenBody { url, reason } => {
                write!(f, "failed to read token response body from {url}: {reason}")
            }
            ForwardError::TokenDecode(e) => {
                write!(f, "failed to unmarshal token response body: {e}")
            }
            ForwardError::BadTarget { url, reason } => write!(f, "cannot call {url}: {reason}"),
            ForwardError::Target { url, reason } => write!(f, "failed to call '{url}': {reason}"),
            ForwardError::TargetTimeout { url, after } => {
                write!(f, "no answer from '{url}' within {after:?}")
            }
            ForwardError::Refused { url, refusal } => write!(
                f,
                "the call to '{url}' is refused by ACE's egress policy: {refusal}"
            ),
        }
    }
}

impl std::error::Error for ForwardError {}

/// A call as it arrived, for the registered API the model chose.
#[derive(Debug)]
pub struct Call {
    /// The method.
    pub method: Method,
    /// The path after the service's prefix.
    pub path: String,
    /// The query, if any.
    pub query: Option<String>,
    /// The caller's headers (those not forwarded are removed here; they move into the
    /// forwarded request).
    pub headers: HeaderMap,
    /// The body, read whole (a call after a 403 is sent again).
    pub body: Bytes,
}

/// `value` as a header value; one that cannot be (a control character in a token) fails the
/// call to `url`.
fn header_value(value: &str, url: &str) -> Result<HeaderValue, ForwardError> {
    HeaderValue::from_str(value).map_err(|e| ForwardError::BadTarget {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

/// `Bearer <token>` as a header value.
fn bearer_value(token: &str, url: &str) -> Result<HeaderValue, ForwardError> {
    header_value(&format!("Bearer {token}"), url)
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

/// Forwards calls to registered APIs and keeps their OAuth tokens.
pub struct Forwarder {
    sender: Arc<dyn Sender>,
    /// For REs with `skipVerify`.
    unverified: Arc<dyn Sender>,
    tokens: Mutex<TokenCache>,
    /// By client id, the `Authorization` value of its cached token and that token, so that a
    /// call with a cached token does not build it again (one entry per client, as in
    /// `tokens`); taken under `tokens`' lock.
    bearers: Mutex<HashMap<String, (String, HeaderValue)>>,
    clock: Clock,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Forwarder {
    /// A forwarder sending through `sender` (or `unverified`, which does not verify
    /// certificates, for REs with `skipVerify`), giving up on a target (or token server)
    /// after `timeout`.
    pub fn new(
        sender: Arc<dyn Sender>,
        unverified: Arc<dyn Sender>,
        clock: Clock,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Forwarder {
            sender,
            unverified,
            tokens: Mutex::new(TokenCache::new(TokenCachePolicy::default())),
            bearers: Mutex::new(HashMap::new()),
            clock,
            timeout,
            metrics,
        }
    }

    /// This forwarder with the bugs of `bugs` (only `token-cached-forever` concerns it).
    #[must_use]
    pub fn with_bugs(self, bugs: ace_model::bugs::Bugs) -> Self {
        Forwarder {
            tokens: Mutex::new(TokenCache::new(TokenCachePolicy::default()).with_bugs(bugs)),
            ..self
        }
    }

    /// Forwards `call` to `target` and returns the target's response (hop-by-hop headers
    /// removed; the body streams): over `upstream`, the caller's connection's own, when it
    /// has one, else over the pool.
    pub async fn forward(
        &self,
        target: &ProxyTarget,
        mut call: Call,
        upstream: Option<&Upstream>,
    ) -> Result<hyper::Response<Incoming>, ForwardError> {
        let access_token = call
            .headers
            .get(ACCESS_TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(proxy::authorization_from_access_token);
        strip_hop_by_hop(&mut call.headers);
        let url = proxy::join_url(&target.target_url, &call.path, call.query.as_deref());
        let url = if url.contains("://") {
            url
        } else {
            format!("http://{url}")
        };
        let authorization = match (&access_token, &target.oauth) {
            (Some(given), _) => Some(header_value(given, &url)?),
            (None, Some(_)) => Some(self.bearer(target, &url).await?),
            (None, None) => None,
        };
        // A 403 with a cached token may mean the token was revoked early: fetch a fresh one
        // and retry once, returning the retried response (Kyma kept the stale 403). Only
        // then are the caller's headers needed twice; else they move into the request.
        let may_retry = access_token.is_none() && target.oauth.is_some();
        let headers = if may_retry {
            call.headers.clone()
        } else {
            std::mem::take(&mut call.headers)
        };
        let first = self
            .send(target, &call, headers, &url, authorization, upstream)
            .await?;
        let response = if first.status() == StatusCode::FORBIDDEN && may_retry {
            let token = self.fetch_token(target).await?;
            let authorization = bearer_value(&token, &url)?;
            let headers = std::mem::take(&mut call.headers);
            self.send(target, &call, headers, &url, Some(authorization), upstream)
                .await?
        } else {
            first
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(hyper::Response::from_parts(parts, body))
    }

    fn sender_for(&self, target: &ProxyTarget) -> &dyn Sender {
        if target.skip_verify {
            self.unverified.as_ref()
        } else {
            self.sender.as_ref()
        }
    }

    async fn send(
        &self,
        target: &ProxyTarget,
        call: &Call,
        headers: HeaderMap,
        url: &str,
        authorization: Option<HeaderValue>,
        upstream: Option<&Upstream>,
    ) -> Result<hyper::Response<Incoming>, ForwardError> {
        let bad = |reason: String| ForwardError::BadTarget {
            url: url.to_owned(),
            reason,
        };
        // Built in place: the caller's headers moved in, the URL parsed once.
        let mut request = hyper::Request::new(Full::new(call.body.clone()));
        *request.method_mut() = call.method.clone();
        *request.uri_mut() = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(e.to_string()))?;
        *request.headers_mut() = headers;
        if let Some(value) = authorization {
            // The proxy's token replaces any the caller sent (as Kyma's proxy sets it).
            request.headers_mut().insert(AUTHORIZATION, value);
        }
        let sender = self.sender_for(target);
        let exchange = async {
            match upstream {
                Some(upstream) => send_over(sender, upstream, target.skip_verify, request).await,
                None => sender.send(request).await,
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(SendError::Refused(refusal))) => {
                self.metrics.egress_refused("proxy");
                Err(ForwardError::Refused {
                    url: url.to_owned(),
                    refusal,
                })
            }
            Ok(Err(SendError::Failed(reason))) => Err(ForwardError::Target {
                url: url.to_owned(),
                reason,
            }),
            Err(_) => Err(ForwardError::TargetTimeout {
                url: url.to_owned(),
                after: self.timeout,
            }),
        }
    }

    /// The `Authorization` value for `target`'s cached OAuth token (built once per token),
    /// or for a fresh one when none is cached; `url` names the call in an error.
    async fn bearer(&self, target: &ProxyTarget, url: &str) -> Result<HeaderValue, ForwardError> {
        if let Some(oauth) = &target.oauth
            && let client_id = oauth.client_id.expose()
            && let Ok(cache) = self.tokens.lock()
            && let Some(token) = cache.get(client_id, now(&self.clock))
        {
            let Ok(mut bearers) = self.bearers.lock() else {
                return bearer_value(token, url);
            };
            if let Some((built_for, value)) = bearers.get(client_id)
                && built_for == token
            {
                return Ok(value.clone());
            }
            let value = bearer_value(token, url)?;
            bearers.insert(client_id.to_owned(), (token.to_owned(), value.clone()));
            return Ok(value);
        }
        let token = self.fetch_token(target).await?;
        bearer_value(&token, url)
    }

    /// A fresh OAuth token for `target` from its token server, cached for the calls after.
    async fn fetch_token(&self, target: &ProxyTarget) -> Result<String, ForwardError> {
        let Some(oauth) = &target.oauth else {
            return Err(ForwardError::TokenDecode("no OAuth credentials".into()));
        };
        let client_id = oauth.client_id.expose();
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
        let failed = |reason: String| ForwardError::TokenRequest {
            url: url.clone(),
            reason,
        };
        let request = hyper::Request::post(url.as_str())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| failed(e.to_string()))?;
        let fetched_at = now(&self.clock);
        let response =
            match tokio::time::timeout(self.timeout, self.sender_for(target).send(request)).await {
                Ok(Ok(r)) => r,
                Ok(Err(SendError::Refused(refusal))) => {
                    self.metrics.egress_refused("oauth");
                    return Err(ForwardError::Refused { url, refusal });
                }
                Ok(Err(SendError::Failed(e))) => return Err(failed(e)),
                Err(_) => return Err(failed(format!("no answer within {:?}", self.timeout))),
            };
        let status = response.status().as_u16();
        if status != 200 {
            return Err(ForwardError::TokenStatus { url, status });
        }
        let body = http_body_util::Limited::new(response.into_body(), MAX_TOKEN_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| ForwardError::TokenBody {
                url: url.clone(),
                reason: e.to_string(),
            })?
            .to_bytes();
        let token: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| ForwardError::TokenDecode(e.to_string()))?;
        if let Ok(mut cache) = self.tokens.lock() {
            cache.insert(client_id, &token.access_token, token.expires_in, fetched_at);
        }
        Ok(token.access_token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    /// A caller's connection keeps the server it called first (scheme, host, port and
    /// certificate checking all alike); a call anywhere else goes over the pool, so a
    /// connection of one API never carries another's call.
    #[test]
    fn a_callers_connection_keeps_its_first_server_and_sends_others_to_the_pool() {
        let upstream = Upstream::default();
        let first = uri("http://a.example:8080/v1/orders");
        assert!(
            matches!(upstream.claim(&first, false), Claim::Own(None, host) if host == "a.example:8080")
        );
        for other in [
            "http://b.example:8080/v1/orders",
            "https://a.example:8080/v1/orders",
            "http://a.example:8081/v1/orders",
            "http://a.example/v1/orders",
        ] {
            assert!(
                matches!(upstream.claim(&uri(other), false), Claim::Pool),
                "{other}"
            );
        }
        // The same server without certificate checks is another connection.
        assert!(matches!(upstream.claim(&first, true), Claim::Pool));
        // Another path and query on the same server: its connection.
        let same = uri("http://a.example:8080/v2/items?x=1");
        assert!(matches!(upstream.claim(&same, false), Claim::Own(None, _)));
        // The Host header leaves the scheme's default port out, as the pool writes it.
        let https = uri("https://a.example:443/v1");
        assert!(
            matches!(Upstream::default().claim(&https, false), Claim::Own(None, host) if host == "a.example")
        );
        // A scheme the proxy cannot open a connection for goes to the pool (which refuses it).
        let ftp = uri("ftp://a.example/v1");
        assert!(matches!(
            Upstream::default().claim(&ftp, false),
            Claim::Pool
        ));
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(form_encode("a b&c=d/é"), "a+b%26c%3Dd%2F%C3%A9");
        assert_eq!(form_encode("plain-value_1.x"), "plain-value_1.x");
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut headers = HeaderMap::new();
        for (name, value) in [
            ("connection", "x-private, keep-alive"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("ace-binding-key", "secret"),
            ("x-kept", "yes"),
        ] {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        assert_eq!(left, ["x-kept"]);
    }
}
