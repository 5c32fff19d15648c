//! The real `ace serve` in a turmoil world: the server on host `ace`, an external solution on
//! host `solution` onboarding over simulated TCP with real mutual TLS, registering a service
//! and reading it back.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use ace_client::{self as client, TlsOptions};
use ace_server::pki::{self, KeyKind};
use ace_server::store::MemoryStore;
use ace_sim::net::TurmoilNet;
use ace_sim::world::{epoch_of, options, sim_clock};
use base64::Engine as _;
use hyper::Method;
use serde_json::{Value, json};

const TIMEOUT: Duration = Duration::from_secs(10);

async fn send(
    method: Method,
    url: &str,
    body: Option<Value>,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> client::Response {
    let body = body.map(|b| b.to_string().into_bytes());
    let authorization = format!("Bearer {}", ace_sim::world::admin_token(7));
    client::request(
        &TurmoilNet,
        method,
        url,
        &[
            ("content-type", "application/json"),
            ("authorization", &authorization),
        ],
        body,
        tls,
        TIMEOUT,
    )
    .await
    .unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[test]
fn ace_serve_runs_in_turmoil_and_a_solution_onboards_over_mutual_tls() {
    let unix_ms = epoch_of(7);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(120))
        .epoch(UNIX_EPOCH + Duration::from_millis(unix_ms))
        .build();
    let dir = Arc::new(tempfile::tempdir().unwrap_or_else(|e| panic!("{e}")));
    let data = dir.path().to_owned();
    let ca_path = data.join("ca.crt");

    sim.host("ace", move || {
        let data = data.clone();
        async move {
            let server = ace_server::start_with_store(
                TurmoilNet,
                options(&data, 7),
                sim_clock(unix_ms),
                7.into(),
                MemoryStore::default(),
            )
            .await
            .map_err(|e| e.to_string())?;
            let _server = server;
            std::future::pending::<()>().await;
            Ok(())
        }
    });

    sim.client("solution", async move {
        // Wait until the server answers.
        loop {
            let r = client::request(&TurmoilNet, Method::GET, "http://ace:8081/healthz", &[], None, None, TIMEOUT).await;
            if r.is_ok_and(|r| r.status == 200) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let re = json!({"kind": "RemoteEnvironment", "metadata": {"name": "ec"}, "spec": {"description": "simulated"}});
        assert_eq!(send(Method::PUT, "http://ace:8081/v1/remoteenvironments/ec", Some(re), None).await.status, 201);
        let token = send(Method::POST, "http://ace:8080/v1/remoteenvironments/ec/tokens", None, None).await.json();
        let config_url = token["url"].as_str().unwrap_or_default().to_owned();
        assert!(config_url.starts_with("https://ace:8443/v1/remoteenvironments/ec/info?token="), "{config_url}");

        let ca = std::fs::read_to_string(&ca_path).unwrap_or_else(|e| panic!("{e}"));
        let roots = pki::certs_from_pem(&ca).unwrap_or_else(|e| panic!("{e}"));
        let clock = sim_clock(unix_ms);
        let anonymous = client::tls_connector(&TlsOptions { roots: roots.clone(), ..TlsOptions::default() }, clock).unwrap_or_else(|e| panic!("{e}"));
        let info = send(Method::GET, &config_url, None, Some(&anonymous)).await;
        assert_eq!(info.status, 200);
        assert_eq!(send(Method::GET, &config_url, None, Some(&anonymous)).await.status, 403, "a configuration URL works once");
        let info = info.json();

        let key = pki::generate_key(KeyKind::EcdsaP256).unwrap_or_else(|e| panic!("{e}"));
        let subject = ace_model::config::SubjectTemplate::default().subject_for("ec");
        let csr = pki::make_csr(&key, &subject).unwrap_or_else(|e| panic!("{e}"));
        let body = json!({"csr": base64::engine::general_purpose::STANDARD.encode(csr)});
        let crt = send(Method::POST, info["csrUrl"].as_str().unwrap_or_default(), Some(body), Some(&anonymous)).await;
        assert_eq!(crt.status, 201, "{}", crt.text());
        let chain = base64::engine::general_purpose::STANDARD.decode(crt.json()["crt"].as_str().unwrap_or_default()).unwrap_or_default();
        let chain = pki::certs_from_pem(&String::from_utf8_lossy(&chain)).unwrap_or_else(|e| panic!("{e}"));
        let me = client::tls_connector(&TlsOptions {
            roots,
            identity: Some((chain, pki::key_from_pem(&key.serialize_pem()).unwrap_or_else(|e| panic!("{e}")))),
            insecure: false,
        }, clock)
        .unwrap_or_else(|e| panic!("{e}"));

        let services = info["api"]["metadataUrl"].as_str().unwrap_or_default().to_owned();
        assert_eq!(services, "https://ace:8444/ec/v1/metadata/services");
        let service = json!({"provider": "p", "name": "orders", "description": "d", "events": {"spec": {}}});
        let created = send(Method::POST, &services, Some(service), Some(&me)).await;
        assert_eq!(created.status, 200, "{}", created.text());
        let listed = send(Method::GET, &services, None, Some(&me)).await.json();
        assert_eq!(listed.as_array().map(Vec::len), Some(1));
        assert_eq!(send(Method::GET, &services, None, Some(&anonymous)).await.status, 403, "no certificate, no entry");
        Ok(())
    });

    sim.run()
        .unwrap_or_else(|e| panic!("the simulation failed: {e}"));
}
