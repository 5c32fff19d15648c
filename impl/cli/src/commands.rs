//! The command line's client commands: `token`, `connect`, `apply`, `get`, `delete`, and the
//! dead letters'. Each talks to a running server over its documented APIs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ace_client::{Clock, Response, TlsOptions, TokioNet};
use ace_model::connector::Subject;
use ace_server::pki::{self, KeyKind};
use base64::Engine as _;
use hyper::Method;
use serde_json::{Value, json};

use crate::manifest::{parse_manifests, resource_url};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Where the admin API is, and the bearer token it wants.
#[derive(Clone, Debug)]
pub struct Admin {
    /// Base URL (`http://127.0.0.1:8081`).
    pub url: String,
    /// Bearer token (`None` for a server with authentication off).
    pub token: Option<String>,
}

impl Admin {
    async fn call(
        &self,
        method: Method,
        url: &str,
        body: Option<Value>,
    ) -> Result<Response, String> {
        let body = body.map(|b| b.to_string().into_bytes());
        let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        if let Some(value) = &authorization {
            headers.push(("authorization", value));
        }
        let r = ace_client::request(&TokioNet, method, url, &headers, body, None, TIMEOUT)
            .await
            .map_err(|e| e.to_string())?;
        if r.status == 401 {
            return Err(format!(
                "the admin API refused the token: {}\nGive it with --admin-token (or ACE_ADMIN_TOKEN), or --data-dir of the server whose admin.token to read.",
                api_error("401", &r)
            ));
        }
        Ok(r)
    }
}

async fn call(method: Method, url: &str, body: Option<Value>) -> Result<Response, String> {
    let body = body.map(|b| b.to_string().into_bytes());
    let headers: &[(&str, &str)] = if body.is_some() {
        &[("content-type", "application/json")]
    } else {
        &[]
    };
    ace_client::request(&TokioNet, method, url, headers, body, None, TIMEOUT)
        .await
        .map_err(|e| e.to_string())
}

fn api_error(what: &str, r: &Response) -> String {
    let detail = r
        .json()
        .get("error")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| r.text());
    format!("{what}: {} {detail}", r.status)
}

/// `ace token RE`: asks the internal API for a one-time configuration URL.
pub async fn token(internal_url: &str, re: &str) -> Result<String, String> {
    let r = call(
        Method::POST,
        &format!("{internal_url}/v1/remoteenvironments/{re}/tokens"),
        None,
    )
    .await?;
    match r.status {
        201 => r
            .json()
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "the reply has no url".into()),
        _ => Err(api_error(&format!("no token for {re}"), &r)),
    }
}

/// What `ace connect` wrote.
#[derive(Debug)]
pub struct Connection {
    /// The directory.
    pub dir: PathBuf,
    /// The metadata URL from info.
    pub metadata_url: String,
    /// The events URL from info.
    pub events_url: String,
}

/// Parses `OU=..,O=..,L=..,ST=..,C=..,CN=..` as `info` gives it.
pub fn parse_subject(s: &str) -> Subject {
    let mut subject = Subject::default();
    for part in s.split(',') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let v = Some(v.trim().to_owned());
        match k.trim() {
            "CN" => subject.common_name = v,
            "C" => subject.country = v,
            "O" => subject.organization = v,
            "OU" => subject.organizational_unit = v,
            "L" => subject.locality = v,
            "ST" => subject.province = v,
            _ => {}
        }
    }
    subject
}

/// `ace connect URL --out DIR`: the external solution's side of onboarding.
pub async fn connect(
    url: &str,
    out: &Path,
    tls: &TlsOptions,
    key: Option<KeyKind>,
) -> Result<Connection, String> {
    let connector =
        ace_client::tls_connector(tls, Clock::from_system_time()).map_err(|e| e.to_string())?;
    let get = |url: String| {
        let connector = connector.clone();
        async move {
            ace_client::request(
                &TokioNet,
                Method::GET,
                &url,
                &[],
                None,
                Some(&connector),
                TIMEOUT,
            )
            .await
            .map_err(|e| e.to_string())
        }
    };
    let info = get(url.to_owned()).await?;
    if info.status == 403 {
        return Err(format!(
            "{}\nA configuration URL works once and expires after a few minutes. Ask for a new one with `ace token <remote-environment>`.",
            api_error("the configuration URL was refused", &info)
        ));
    }
    if info.status != 200 {
        return Err(api_error("info failed", &info));
    }
    let info = info.json();
    let field = |p: &str| {
        info.pointer(p)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("info has no {p}"))
    };
    let (csr_url, subject, algorithm) = (
        field("/csrUrl")?,
        field("/certificate/subject")?,
        field("/certificate/key-algorithm")?,
    );
    let (metadata_url, events_url, certificates_url) = (
        field("/api/metadataUrl")?,
        field("/api/eventsUrl")?,
        field("/api/certificatesUrl")?,
    );
    let kind = key.unwrap_or(if algorithm.starts_with("rsa") {
        KeyKind::Rsa2048
    } else {
        KeyKind::EcdsaP256
    });
    let key_pair = pki::generate_key(kind).map_err(|e| e.to_string())?;
    let csr = pki::make_csr(&key_pair, &parse_subject(&subject)).map_err(|e| e.to_string())?;
    let body = json!({ "csr": base64::engine::general_purpose::STANDARD.encode(csr) })
        .to_string()
        .into_bytes();
    let r = ace_client::request(
        &TokioNet,
        Method::POST,
        &csr_url,
        &[("content-type", "application/json")],
        Some(body),
        Some(&connector),
        TIMEOUT,
    )
    .await
    .map_err(|e| e.to_string())?;
    if r.status != 201 {
        return Err(api_error("the CSR was refused", &r));
    }
    let crt = r
        .json()
        .get("crt")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or("the reply has no crt")?;
    let chain = base64::engine::general_purpose::STANDARD
        .decode(crt)
        .map_err(|e| format!("crt is not base64: {e}"))?;
    let chain = String::from_utf8(chain).map_err(|_| "crt is not PEM text")?;
    let blocks = pem::parse_many(&chain).map_err(|e| format!("crt is not PEM: {e}"))?;
    if blocks.len() != 2 {
        return Err(format!(
            "expected the client and CA certificates, got {} PEM blocks",
            blocks.len()
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let write = |name: &str, text: &str| {
        pki::write_atomic(&out.join(name), text.as_bytes()).map_err(|e| format!("{name}: {e}"))
    };
    pki::write_private(&out.join("key.pem"), &key_pair.serialize_pem())
        .map_err(|e| format!("key.pem: {e}"))?;
    write("cert.pem", &pem::encode(&blocks[0]))?;
    write("ca.pem", &pem::encode(&blocks[1]))?;
    let urls = json!({"metadataUrl": metadata_url, "eventsUrl": events_url, "certificatesUrl": certificates_url});
    write(
        "connection.json",
        &serde_json::to_string_pretty(&urls).unwrap_or_default(),
    )?;
    Ok(Connection {
        dir: out.to_owned(),
        metadata_url,
        events_url,
    })
}

/// `ace apply -f FILE`: applies every document; returns one line per document, followed by
/// the credentials of a ServiceBinding (its access key is shown only here).
pub async fn apply(admin: &Admin, text: &str) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for m in parse_manifests(text)? {
        let (kind, url) = resource_url(&admin.url, &m.kind, &m.name, m.namespace.as_deref())?;
        let r = admin.call(Method::PUT, &url, Some(m.doc.clone())).await?;
        let what = match r.status {
            201 => "created",
            200 => "configured",
            _ => return Err(api_error(&format!("{kind}/{} was refused", m.name), &r)),
        };
        lines.push(format!("{kind}/{} {what}", m.name));
        // A binding's access key is shown once, when it is issued.
        if let Some(credentials) = r.json().get("credentials").and_then(Value::as_object) {
            for (name, value) in credentials {
                lines.push(format!("  {name}={}", value.as_str().unwrap_or_default()));
            }
        }
    }
    Ok(lines)
}

/// `ace delete`: deletes one resource.
pub async fn delete(
    admin: &Admin,
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> Result<String, String> {
    let (kind, url) = resource_url(&admin.url, kind, name, namespace)?;
    let r = admin.call(Method::DELETE, &url, None).await?;
    match r.status {
        204 | 200 => Ok(format!("{kind}/{name} deleted")),
        _ => Err(api_error(&format!("{kind}/{name}"), &r)),
    }
}

/// `ace get KIND [NAME]`: the resources as JSON.
pub async fn get(
    admin: &Admin,
    kind: &str,
    name: Option<&str>,
    namespace: Option<&str>,
) -> Result<Value, String> {
    let lower = kind.to_ascii_lowercase();
    let base = &admin.url;
    let url = match (lower.as_str(), name) {
        ("serviceclass" | "serviceclasses", _) => format!(
            "{base}/v1/namespaces/{}/serviceclasses",
            namespace.unwrap_or("default")
        ),
        ("environmentmapping" | "environmentmappings" | "em", None) => match namespace {
            Some(ns) => format!("{base}/v1/namespaces/{ns}/environmentmappings"),
            None => format!("{base}/v1/environmentmappings"),
        },
        ("remoteenvironment" | "remoteenvironments" | "re", None) => {
            format!("{base}/v1/remoteenvironments")
        }
        ("eventactivation" | "eventactivations" | "ea", None) => match namespace {
            Some(ns) => format!("{base}/v1/namespaces/{ns}/eventactivations"),
            None => format!("{base}/v1/eventactivations"),
        },
        ("subscription" | "subscriptions" | "sub", None) => match namespace {
            Some(ns) => format!("{base}/v1/namespaces/{ns}/subscriptions"),
            None => format!("{base}/v1/subscriptions"),
        },
        (_, Some(name)) => resource_url(base, kind, name, namespace)?.1,
        (other, None) => return Err(format!("cannot list {other}")),
    };
    let r = admin.call(Method::GET, &url, None).await?;
    if r.status != 200 {
        return Err(api_error(&format!("get {kind}"), &r));
    }
    let body = r.json();
    if let (Some(name), Value::Array(items)) = (name, &body)
        && lower.starts_with("environmentmapping")
    {
        return items
            .iter()
            .find(|i| i.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
            .cloned()
            .ok_or_else(|| format!("{kind} {name} not found"));
    }
    Ok(body)
}

/// `ace events dead-letter list`: up to `limit` dead letters, asked for page by page;
/// whether more remain.
pub async fn dead_letters(
    admin: &Admin,
    namespace: Option<&str>,
    limit: usize,
) -> Result<(Value, bool), String> {
    const PAGE: usize = 1000;
    let base = &admin.url;
    let url = match namespace {
        Some(ns) => format!("{base}/v1/namespaces/{ns}/deadletters"),
        None => format!("{base}/v1/deadletters"),
    };
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let page = PAGE.min(limit - out.len());
        let mut page_url = format!("{url}?limit={page}");
        if let Some(token) = &next {
            page_url.push_str(&format!("&continue={token}"));
        }
        let r = admin.call(Method::GET, &page_url, None).await?;
        if r.status != 200 {
            return Err(api_error("dead letters", &r));
        }
        if let Value::Array(items) = r.json() {
            out.extend(items);
        }
        next = r
            .headers
            .get("ace-continue")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if next.is_none() || out.len() >= limit {
            return Ok((Value::Array(out), next.is_some()));
        }
    }
}

/// `ace events dead-letter replay`.
pub async fn replay(
    admin: &Admin,
    namespace: &str,
    subscription: &str,
    event_id: Option<&str>,
) -> Result<Value, String> {
    let url = format!(
        "{}/v1/namespaces/{namespace}/subscriptions/{subscription}/replay",
        admin.url
    );
    let body = event_id.map_or_else(|| json!({}), |id| json!({ "eventId": id }));
    let r = admin.call(Method::POST, &url, Some(body)).await?;
    if r.status != 200 {
        return Err(api_error(
            &format!("replay for {namespace}/{subscription}"),
            &r,
        ));
    }
    Ok(r.json())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_subjects_parse_into_fields() {
        let s = parse_subject("OU=OrgUnit,O=Organization,L=Waldorf,ST=Waldorf,C=DE,CN=ec-default");
        assert_eq!(s.common_name.as_deref(), Some("ec-default"));
        assert_eq!(s.province.as_deref(), Some("Waldorf"));
        assert_eq!(s.country.as_deref(), Some("DE"));
    }
}
