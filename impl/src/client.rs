//! A small HTTP(S) client for the command line and the tests: one request per connection,
//! optional client certificate, custom roots or (like `curl -k`) no server verification.
//!
//! The request building, TLS and response reading are the conformance suite's client
//! ([`ace_conformance::http`]); this module sends them over ACE's network seam, so the same
//! client runs on real sockets and in the simulation.

use std::time::Duration;

use hyper::Method;
use tokio_rustls::TlsConnector;

pub use ace_conformance::http::{ClientError, Response, TlsOptions, tls_connector};

use crate::net::Net;

/// Sends one request to `url` and reads the whole response, within `timeout`.
pub async fn request<N: Net>(
    net: &N,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    tls: Option<&TlsConnector>,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let prepared = ace_conformance::http::prepare(method, url, headers, body)?;
    tokio::time::timeout(timeout, async {
        let stream = net
            .connect(&prepared.addr)
            .await
            .map_err(|e| ClientError(format!("cannot connect to {}: {e}", prepared.addr)))?;
        ace_conformance::http::exchange(stream, prepared, tls).await
    })
    .await
    .map_err(|_| ClientError(format!("no answer from {url} within {timeout:?}")))?
}
