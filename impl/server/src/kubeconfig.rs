//! The kubeconfig `ace serve` writes into its data directory: kubectl (or any Kubernetes
//! client) pointed at the Kubernetes resource API, trusting ACE's CA, with the admin token.

use std::net::SocketAddr;

use base64::Engine as _;
use serde_json::json;

/// The file's name in the data directory.
pub const FILE: &str = "kubeconfig";

/// A kubeconfig for the API at `addr` (an unspecified address is reached on loopback), whose
/// server certificate is issued for `hosts` and signed by `ca_pem`; `token` is the admin
/// API's bearer token, if it has one.
pub fn render(addr: SocketAddr, hosts: &[String], ca_pem: &str, token: Option<&str>) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::Ipv4Addr::LOCALHOST.into()
    } else {
        addr.ip()
    };
    let server = SocketAddr::new(ip, addr.port());
    let mut cluster = json!({
        "server": format!("https://{server}"),
        "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(ca_pem),
    });
    // The certificate names the hosts it was issued for; if the address is not among them,
    // kubectl checks it against the first.
    if !hosts.iter().any(|h| h.parse() == Ok(ip))
        && let Some(host) = hosts.first()
    {
        cluster["tls-server-name"] = json!(host);
    }
    let user = match token {
        Some(token) => json!({"token": token}),
        None => json!({}),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "ace", "cluster": cluster}],
        "users": [{"name": "ace-admin", "user": user}],
        "contexts": [{"name": "ace", "context": {"cluster": "ace", "user": "ace-admin", "namespace": "default"}}],
        "current-context": "ace",
        "preferences": {},
    });
    serde_yaml_ng::to_string(&config).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_names_the_server_the_ca_and_the_token() {
        let text = render(
            "0.0.0.0:6443".parse().unwrap_or_else(|e| panic!("{e}")),
            &["ace.example".into()],
            "PEM",
            Some("secret"),
        );
        let doc: serde_json::Value =
            serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
        let cluster = &doc["clusters"][0]["cluster"];
        assert_eq!(cluster["server"], "https://127.0.0.1:6443");
        assert_eq!(cluster["tls-server-name"], "ace.example");
        assert_eq!(cluster["certificate-authority-data"], "UEVN");
        assert_eq!(doc["users"][0]["user"]["token"], "secret");
        assert_eq!(doc["current-context"], "ace");
        let local = render(
            "127.0.0.1:1".parse().unwrap_or_else(|e| panic!("{e}")),
            &["localhost".into(), "127.0.0.1".into()],
            "PEM",
            None,
        );
        assert!(!local.contains("tls-server-name"), "{local}");
        assert!(!local.contains("token"), "{local}");
    }
}
