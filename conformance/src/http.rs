//! The suite's HTTP(S) client: one request per connection, optional client certificate,
//! custom roots or (like `curl -k`) no server verification. ACE's command line uses the same
//! pieces over its own network seam.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_rustls::TlsConnector;

/// The TLS implementation everything here uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// How to do TLS.
#[derive(Debug, Default)]
pub struct TlsOptions {
    /// Trusted roots (e.g. the deployment's CA).
    pub roots: Vec<CertificateDer<'static>>,
    /// Do not verify the server (as `curl -k`).
    pub insecure: bool,
    /// Client certificate chain and key.
    pub identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

/// A response.
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

/// Why a request failed before a response arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError(pub String);

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClientError {}

#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
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
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
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
    let server_name = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let addr = if server_name.contains(':') {
        format!("[{server_name}]:{port}")
    } else {
        format!("{server_name}:{port}")
    };
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
        .map_err(|e| ClientError(e.to_string()))?;
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
        let connector = tls.ok_or_else(|| ClientError("an https URL needs TLS options".into()))?;
        let name = ServerName::try_from(prepared.server_name)
            .map_err(|e| ClientError(format!("bad server name: {e}")))?;
        let stream = connector
            .connect(name, stream)
            .await
            .map_err(|e| ClientError(format!("TLS with {} failed: {e}", prepared.addr)))?;
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

/// Sends one request over a TCP connection of this host, within `timeout`.
pub async fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
    tls: Option<&TlsConnector>,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let prepared = prepare(method, url, headers, body)?;
    tokio::time::timeout(timeout, async {
        let stream = tokio::net::TcpStream::connect(&prepared.addr)
            .await
            .map_err(|e| ClientError(format!("cannot connect to {}: {e}", prepared.addr)))?;
        exchange(stream, prepared, tls).await
    })
    .await
    .map_err(|_| ClientError(format!("no answer from {url} within {timeout:?}")))?
}
