//! One request per connection, read whole: what the command line, the conformance suite and
//! the simulation's actors send.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::net::{Net, host_port};

/// A response, read whole.
#[derive(Clone, Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Response {
    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Why a request failed before a whole response arrived.
#[derive(Debug)]
pub enum ClientError {
    /// The URL cannot be requested (not http or https, no host, not a URL).
    BadUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An `https` URL was given without TLS options.
    NoTls,
    /// The request could not be built (a header that is not valid HTTP).
    BadRequest(String),
    /// The connection could not be opened.
    Connect {
        /// `host:port`.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TLS handshake failed (an untrusted or expired certificate, a wrong name).
    Tls {
        /// `host:port`.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTP exchange failed (the connection closed, a malformed response).
    Http(hyper::Error),
    /// No whole response within the time allowed.
    Timeout {
        /// The URL.
        url: String,
        /// The time allowed.
        after: Duration,
    },
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::BadUrl { url, problem } => write!(f, "bad URL {url}: {problem}"),
            ClientError::NoTls => f.write_str("an https URL needs TLS options"),
            ClientError::BadRequest(e) => write!(f, "bad request: {e}"),
            ClientError::Connect { addr, source } => {
                write!(f, "cannot connect to {addr}: {source}")
            }
            ClientError::Tls { addr, source } => write!(f, "TLS with {addr} failed: {source}"),
            ClientError::Http(e) => write!(f, "request failed: {e}"),
            ClientError::Timeout { url, after } => {
                write!(f, "no answer from {url} within {after:?}")
            }
        }
    }
}

impl std::error::Error for ClientError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClientError::Connect { source, .. } | ClientError::Tls { source, .. } => Some(source),
            ClientError::Http(e) => Some(e),
            _ => None,
        }
    }
}

/// A request ready to send: where to connect, the server name for TLS, and the request.
#[derive(Debug)]
pub struct Prepared {
    /// `host:port` to connect to.
    pub addr: String,
    /// The server name (host without brackets), for TLS.
    pub server_name: String,
    /// Whether the URL is `https`.
    pub https: bool,
    /// The request, with an origin-form target and a `Host` header.
    pub request: hyper::Request<Full<Bytes>>,
}

/// Parses `url` and builds the request.
pub fn prepare(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> Result<Prepared, ClientError> {
    let bad = |problem: String| ClientError::BadUrl {
        url: url.to_owned(),
        problem,
    };
    let uri: hyper::Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(bad("the scheme must be http or https".into())),
    };
    let host = uri.host().ok_or_else(|| bad("no host".into()))?.to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let server_name = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addr = host_port(&server_name, port);
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut req = hyper::Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header(
            hyper::header::HOST,
            uri.authority().map_or(host.as_str(), |a| a.as_str()),
        );
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let request = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| ClientError::BadRequest(e.to_string()))?;
    Ok(Prepared {
        addr,
        server_name,
        https,
        request,
    })
}

/// Sends `prepared` over `stream` (TLS first when the URL is `https`) and reads the whole
/// response.
pub async fn exchange<S>(
    stream: S,
    prepared: Prepared,
    tls: Option<&TlsConnector>,
) -> Result<Response, ClientError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    if prepared.https {
        let connector = tls.ok_or(ClientError::NoTls)?;
        let name = ServerName::try_from(prepared.server_name.clone()).map_err(|e| {
            ClientError::BadUrl {
                url: prepared.server_name.clone(),
                problem: format!("bad server name: {e}"),
            }
        })?;
        let stream = connector
            .connect(name, stream)
            .await
            .map_err(|source| ClientError::Tls {
                addr: prepared.addr.clone(),
                source,
            })?;
        send(TokioIo::new(stream), prepared.request).await
    } else {
        send(TokioIo::new(stream), prepared.request).await
    }
}

async fn send<I>(io: I, req: hyper::Request<Full<Bytes>>) -> Result<Response, ClientError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(ClientError::Http)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender.send_request(req).await.map_err(ClientError::Http)?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(ClientError::Http)?
        .to_bytes();
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Sends one request to `url` over `net` and reads the whole response, within `timeout`.
pub async fn request<N: Net>(
    net: &N,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    tls: Option<&TlsConnector>,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let prepared = prepare(method, url, headers, body)?;
    tokio::time::timeout(timeout, async {
        let stream = net
            .connect(&prepared.addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: prepared.addr.clone(),
                source,
            })?;
        exchange(stream, prepared, tls).await
    })
    .await
    .map_err(|_| ClientError::Timeout {
        url: url.to_owned(),
        after: timeout,
    })?
}
