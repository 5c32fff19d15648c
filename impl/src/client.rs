//! A small HTTP(S) client for the command line and the tests: one request per connection,
//! optional client certificate, custom roots or (like `curl -k`) no server verification.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

use crate::net::Net;
use crate::serve::provider;

/// How to do TLS.
#[derive(Debug, Default)]
pub struct TlsOptions {
    /// Trusted roots (e.g. ACE's CA); empty means "verify nothing" only if `insecure`.
    pub roots: Vec<CertificateDer<'static>>,
    /// Do not verify the server (as `curl -k`).
    pub insecure: bool,
    /// Client certificate chain and key.
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// A response.
#[derive(Debug)]
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
}

/// Why a request failed before a response arrived.
#[derive(Debug)]
pub struct ClientError(pub String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

#[derive(Debug)]
struct NoVerification;

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connector for `options`.
pub fn tls_connector(options: &TlsOptions) -> Result<TlsConnector, ClientError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError(e.to_string()))?;
    let builder = if options.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification))
    } else {
        let mut roots = RootCertStore::empty();
        for r in &options.roots {
            roots
                .add(r.clone())
                .map_err(|e| ClientError(format!("bad root certificate: {e}")))?;
        }
        builder.with_root_certificates(roots)
    };
    let mut config = match &options.identity {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|e| ClientError(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

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
    tokio::time::timeout(timeout, request_inner(net, method, url, headers, body, tls))
        .await
        .map_err(|_| ClientError(format!("no answer from {url} within {timeout:?}")))?
}

async fn request_inner<N: Net>(
    net: &N,
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    tls: Option<&TlsConnector>,
) -> Result<Response, ClientError> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| ClientError(format!("bad URL {url}: {e}")))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(ClientError(format!(
                "bad URL {url}: the scheme must be http or https"
            )));
        }
    };
    let host = uri
        .host()
        .ok_or_else(|| ClientError(format!("bad URL {url}: no host")))?
        .to_owned();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let bare_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addr = if bare_host.contains(':') {
        format!("[{bare_host}]:{port}")
    } else {
        format!("{bare_host}:{port}")
    };
    let stream = net
        .connect(&addr)
        .await
        .map_err(|e| ClientError(format!("cannot connect to {addr}: {e}")))?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let mut req = hyper::Request::builder().method(method).uri(path).header(
        hyper::header::HOST,
        uri.authority().map_or(host.as_str(), |a| a.as_str()),
    );
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .map_err(|e| ClientError(e.to_string()))?;
    if https {
        let connector = tls.ok_or_else(|| ClientError("an https URL needs TLS options".into()))?;
        let name = ServerName::try_from(bare_host)
            .map_err(|e| ClientError(format!("bad server name: {e}")))?;
        let stream = connector
            .connect(name, stream)
            .await
            .map_err(|e| ClientError(format!("TLS with {addr} failed: {e}")))?;
        send(TokioIo::new(stream), req).await
    } else {
        send(TokioIo::new(stream), req).await
    }
}

async fn send<I>(io: I, req: hyper::Request<Full<Bytes>>) -> Result<Response, ClientError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| ClientError(e.to_string()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ClientError(format!("request failed: {e}")))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| ClientError(format!("reading the response failed: {e}")))?
        .to_bytes();
    Ok(Response {
        status,
        headers,
        body,
    })
}
