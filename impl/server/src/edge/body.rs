//! Reading what a request carries: its body within the model's limit and the time allowed,
//! its query parameters, its trace headers.

use std::time::Duration;

use ace_model::Config;
use ace_model::limits::{self, BodyKind};
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::reply::{Response, from_reply};

/// A refused body up to this size is read and discarded before the 413 is sent, so that a
/// client still writing it reads the answer instead of a reset connection; a larger one is
/// refused at once and the connection closed.
const DRAIN_LIMIT: usize = 1024 * 1024;

/// Reads and discards up to [`DRAIN_LIMIT`] bytes of `body` within `timeout`.
async fn drain(mut body: Incoming, timeout: Duration) {
    let discard = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(timeout, discard).await;
}

/// Reads a body of `kind` within `timeout`: at most the model's limit for it, else the
/// model's 413 for it.
pub async fn read(
    req: hyper::Request<Incoming>,
    config: &Config,
    kind: BodyKind,
    timeout: Duration,
) -> Result<Bytes, Response> {
    let limit = config.body_limit(kind);
    let too_large = || from_reply(&config.too_large(kind));
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if let Some(len) = declared
        && len > limit
    {
        if len <= DRAIN_LIMIT {
            drain(req.into_body(), timeout).await;
        }
        return Err(too_large());
    }
    let mut body = req.into_body();
    match tokio::time::timeout(timeout, Limited::new(&mut body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e))
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            drain(body, timeout).await;
            Err(too_large())
        }
        Ok(Err(_)) => Err(from_reply(&limits::body_unreadable())),
        Err(_) => Err(from_reply(&limits::body_timeout())),
    }
}

/// The value of query parameter `name`, percent-decoded.
pub fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = (bytes[i] == b'%' && i + 2 < bytes.len())
            .then(|| Some(hex(bytes[i + 1])? * 16 + hex(bytes[i + 2])?))
            .flatten();
        match decoded {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The request's trace headers (reference §3.4), the only ones passed on with an event.
pub fn trace_headers(headers: &hyper::HeaderMap) -> Vec<(String, String)> {
    ace_model::bus::publish::TRACE_HEADERS
        .iter()
        .filter_map(|name| {
            Some((
                (*name).to_owned(),
                headers.get(*name)?.to_str().ok()?.to_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_found_and_percent_decoded() {
        assert_eq!(
            query_param(Some("token=abc=="), "token").as_deref(),
            Some("abc==")
        );
        assert_eq!(
            query_param(Some("a=1&token=x%3D%3D"), "token").as_deref(),
            Some("x==")
        );
        assert_eq!(query_param(Some("token="), "token").as_deref(), Some(""));
        assert_eq!(query_param(Some("tokens=1"), "token"), None);
        assert_eq!(query_param(None, "token"), None);
        assert_eq!(
            query_param(Some("token=%zz%"), "token").as_deref(),
            Some("%zz%")
        );
    }
}
