//! The `api` host: an OAuth server and a registered API behind ACE's proxy.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;

/// A registered API and its OAuth server: `POST /token` issues `tok-N` with `expires_in`
/// [`OAUTH_EXPIRES_IN`]; any other request is the API, which checks that the proxy's bearer
/// token has not expired.
pub(super) async fn api(shared: Arc<Shared>) -> Result<(), Box<dyn std::error::Error>> {
    let listener = turmoil::net::TcpListener::bind("0.0.0.0:9100").await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |req: hyper::Request<hyper::body::Incoming>| {
                    let shared = shared.clone();
                    count_exchange();
                    async move {
                        let now = turmoil::sim_elapsed().unwrap_or_default();
                        let body = if req.uri().path() == "/token" {
                            let token = match shared.oauth_tokens.lock() {
                                Ok(mut tokens) => {
                                    let token = format!("tok-{}", tokens.len() + 1);
                                    tokens.insert(token.clone(), now);
                                    token
                                }
                                Err(_) => "tok-?".to_owned(),
                            };
                            if token != "tok-1" {
                                shared.rare("oauth-token-refetched");
                            }
                            shared.note("api", format!("issued {token}"));
                            json!({"access_token": token, "token_type": "bearer",
                                   "expires_in": OAUTH_EXPIRES_IN})
                            .to_string()
                        } else {
                            let token = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.strip_prefix("Bearer "))
                                .unwrap_or_default()
                                .to_owned();
                            let issued = shared
                                .oauth_tokens
                                .lock()
                                .ok()
                                .and_then(|t| t.get(&token).copied());
                            shared.note("api", format!("call with {token}"));
                            match issued {
                                None => shared.violation(format!(
                                    "proxy: the API was called with {token:?}, which the OAuth server never issued"
                                )),
                                Some(at)
                                    if now >= at + Duration::from_secs(OAUTH_EXPIRES_IN) =>
                                {
                                    shared.violation(format!(
                                        "proxy: the API was called with {token}, expired {}ms before",
                                        (now - at - Duration::from_secs(OAUTH_EXPIRES_IN))
                                            .as_millis()
                                    ))
                                }
                                Some(_) => {}
                            }
                            "{}".to_owned()
                        };
                        Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(body),
                        )))
                    }
                },
            );
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}
