//! The seeds' own client walkthrough, with the real `openssl` and `curl` binaries against a
//! real `ace serve` process: create the RE from the seed's manifest, get the configuration
//! URL, fetch info, generate the key and CSR exactly as the seed shows, send it, decode the
//! chain, register the seed's example service and read it back, publish the seed's event.
//!
//! CI installs openssl and curl; the test fails (it does not skip) when they are missing.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (CI installs openssl and curl)"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

fn json(cmd: &mut Command) -> Value {
    let text = stdout(cmd);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn curl(dir: &Path) -> Command {
    let mut c = Command::new("curl");
    c.current_dir(dir).args(["-sS", "--max-time", "20"]);
    c
}

fn apply(ace: &str, data: &Path, admin: u16, manifest: &str) -> String {
    // The server keeps the admin API's token in its data directory, where `ace apply` reads it.
    let mut child = Command::new(ace)
        .env("ACE_DATA_DIR", data)
        .args([
            "apply",
            "-f",
            "-",
            "--admin-url",
            &format!("http://127.0.0.1:{admin}"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    child
        .stdin
        .take()
        .map(|mut i| i.write_all(manifest.as_bytes()));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "ace apply failed ({:?}): {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_seeds_openssl_and_curl_walkthrough_works() {
    // The lambda of "Trigger a lambda with events": a local subscriber.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let lambda = runtime.block_on(crate::common::subscriber::start(
        crate::common::subscriber::always(200),
    ));
    let work = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = work.path();
    let ace = env!("CARGO_BIN_EXE_ace");
    let serve = crate::process::ServeProcess::start(&dir.join("data"), &[]);
    let crate::process::Ports {
        internal,
        gateway,
        admin,
        ..
    } = serve.ports;
    let ca = dir.join("data/ca.crt");
    let data = dir.join("data");
    let re = "ec-default";

    // Create a new Remote Environment (the seed's manifest).
    let manifest = format!(
        "apiVersion: applicationconnector.kyma-project.io/v1alpha1\nkind: RemoteEnvironment\nmetadata:\n  name: {re}\nspec:\n  description: The e-commerce solution\n  labels:\n    region: us\n    kind: production\n"
    );
    assert!(apply(ace, &data, admin, &manifest).contains("remoteenvironment/ec-default created"));

    // curl -X POST http://localhost:8080/v1/remoteenvironments/{RE_NAME}/tokens
    let token = json(curl(dir).args([
        "-X",
        "POST",
        &format!("http://localhost:{internal}/v1/remoteenvironments/{re}/tokens"),
    ]));
    let config_url = token["url"].as_str().unwrap_or_default().to_owned();
    assert!(config_url.contains(&format!("/v1/remoteenvironments/{re}/info?token=")));

    // curl {CONFIGURATION_URL_WITH_TOKEN} (the server's CA trusted, as the seed's local-deployment note says)
    let info = json(curl(dir).arg("--cacert").arg(&ca).arg(&config_url));
    let subject = info["certificate"]["subject"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        subject,
        format!("OU=OrgUnit,O=Organization,L=Waldorf,ST=Waldorf,C=DE,CN={re}")
    );
    let again = stdout(
        curl(dir)
            .args(["-o", "/dev/null", "-w", "%{http_code}"])
            .arg("--cacert")
            .arg(&ca)
            .arg(&config_url),
    );
    assert_eq!(again, "403", "a configuration URL works once");

    // openssl genrsa / req / base64, exactly as in the seed.
    run(Command::new("openssl")
        .current_dir(dir)
        .args(["genrsa", "-out", "generated.key", "2048"])
        .stderr(Stdio::null()));
    let subj = format!("/OU=OrgUnit/O=Organization/L=Waldorf/ST=Waldorf/C=DE/CN={re}");
    run(Command::new("openssl").current_dir(dir).args([
        "req",
        "-new",
        "-sha256",
        "-out",
        "generated.csr",
        "-key",
        "generated.key",
        "-subj",
        &subj,
    ]));
    let csr_b64 =
        stdout(
            Command::new("openssl")
                .current_dir(dir)
                .args(["base64", "-in", "generated.csr"]),
        );
    assert!(
        csr_b64.trim_end().contains('\n'),
        "openssl wraps base64 lines; ACE must accept that as Kyma did"
    );

    // curl -H "Content-Type: application/json" -d '{"csr":"BASE64_ENCODED_CSR_HERE"}' {csrUrl}
    let body = serde_json::json!({ "csr": csr_b64 }).to_string();
    let csr_url = info["csrUrl"].as_str().unwrap_or_default().to_owned();
    let crt = json(
        curl(dir)
            .args(["-H", "Content-Type: application/json", "-d", &body])
            .arg("--cacert")
            .arg(&ca)
            .arg(&csr_url),
    );
    let crt = crt["crt"].as_str().unwrap_or_else(|| panic!("no crt"));
    std::fs::write(dir.join("crt.b64"), crt).unwrap_or_else(|e| panic!("{e}"));
    run(Command::new("openssl").current_dir(dir).args([
        "base64",
        "-d",
        "-A",
        "-in",
        "crt.b64",
        "-out",
        "generated.crt",
    ]));
    let chain = std::fs::read_to_string(dir.join("generated.crt")).unwrap_or_default();
    assert_eq!(
        chain.matches("BEGIN CERTIFICATE").count(),
        2,
        "client certificate and CA"
    );
    let verified = stdout(
        Command::new("openssl")
            .current_dir(dir)
            .args(["verify", "-CAfile"])
            .arg(&ca)
            .arg("generated.crt"),
    );
    assert!(verified.contains("OK"), "{verified}");

    // Register the seed's example service and read it back (curl ... --cert --key -k).
    let service = r#"{"name":"my-service","provider":"myCompany","Identifier":"identifier","description":"This is some service","events":{"spec":{"asyncapi":"1.0.0","info":{"title":"Example Events","version":"1.0.0"},"topics":{"exampleEvent.v1":{"subscribe":{"summary":"Example event"}}}}}}"#;
    let services = format!("https://localhost:{gateway}/{re}/v1/metadata/services");
    let created = json(curl(dir).args([
        "-X",
        "POST",
        "-d",
        service,
        &services,
        "--cert",
        "generated.crt",
        "--key",
        "generated.key",
        "-k",
    ]));
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {created}"))
        .to_owned();
    let read = json(curl(dir).args([
        &format!("{services}/{id}"),
        "--cert",
        "generated.crt",
        "--key",
        "generated.key",
        "-k",
    ]));
    assert_eq!(read["identifier"], "identifier");
    assert_eq!(read["events"]["spec"]["asyncapi"], "1.0.0");

    // The same certificate on another RE, and no certificate at all: 403.
    let other = stdout(curl(dir).args([
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("https://localhost:{gateway}/other/v1/metadata/services"),
        "--cert",
        "generated.crt",
        "--key",
        "generated.key",
        "-k",
    ]));
    assert_eq!(other, "403");
    let anonymous =
        stdout(curl(dir).args(["-o", "/dev/null", "-w", "%{http_code}", &services, "-k"]));
    assert_eq!(anonymous, "403");

    // "Trigger a lambda with events": an EventActivation (as provisioning would create) and the
    // seed's Subscription, with its endpoint pointing at the local lambda.
    let manifests = format!(
        "apiVersion: applicationconnector.kyma-project.io/v1alpha1\nkind: EventActivation\nmetadata:\n  name: my-service\n  namespace: production\nspec:\n  displayName: my-service\n  sourceId: {re}\n---\n\
apiVersion: eventing.kyma.cx/v1alpha1\nkind: Subscription\nmetadata:\n  labels:\n    Function: my-lambda\n  name: lambda-my-lambda-exampleevent-v1\n  namespace: production\nspec:\n  endpoint: {}\n  event_type: exampleEvent\n  event_type_version: v1\n  include_subscription_name_header: true\n  max_inflight: 400\n  push_request_timeout_ms: 2000\n  source_id: {re}\n",
        lambda.url()
    );
    let applied = apply(ace, &data, admin, &manifests);
    assert!(
        applied.contains("eventactivation/my-service created")
            && applied.contains("subscription/lambda-my-lambda-exampleevent-v1 created"),
        "{applied}"
    );

    // Send the seed's event (curl -X POST https://gateway.../{RE_NAME}/v1/events -k --cert --key -d '...').
    let event = r#"{"event-type": "exampleEvent", "event-type-version": "v1", "event-id": "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa", "event-time": "2018-10-16T15:00:00Z", "data": "some data"}"#;
    let published = json(curl(dir).args([
        "-X",
        "POST",
        &format!("https://localhost:{gateway}/{re}/v1/events"),
        "-k",
        "--cert",
        "generated.crt",
        "--key",
        "generated.key",
        "-d",
        event,
    ]));
    assert_eq!(
        published["event-id"],
        "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
    );

    // The lambda is triggered: the JSON body and the KYMA-* headers.
    let delivered = runtime.block_on(crate::common::subscriber::eventually(
        Duration::from_secs(15),
        || lambda.delivered().len() == 1,
    ));
    assert!(delivered, "the lambda was not triggered");
    let got = &lambda.delivered()[0];
    assert_eq!(got.body, r#""some data""#);
    for (name, value) in [
        ("kyma-source-id", re),
        ("kyma-event-type", "exampleEvent"),
        ("kyma-event-type-version", "v1"),
        ("kyma-event-id", "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"),
        ("kyma-event-time", "2018-10-16T15:00:00Z"),
        ("kyma-subscription", "lambda-my-lambda-exampleevent-v1"),
    ] {
        assert_eq!(
            got.headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{name}"
        );
    }
    // "Call a registered external service": register the seed's API service (its targetUrl a
    // local stand-in for httpbin.org), map the RE, provision the class by its external name,
    // bind it, and call it through the proxy as the lambda would.
    let httpbin = runtime.block_on(wiremock::MockServer::start());
    runtime.block_on(
        wiremock::Mock::given(wiremock::matchers::path("/uuid"))
            .respond_with(
                wiremock::ResponseTemplate::new(200).set_body_json(
                    serde_json::json!({"uuid": "d44cc373-b26e-4a36-9890-6418d131a285"}),
                ),
            )
            .mount(&httpbin),
    );
    let api_service = format!(
        r#"{{"name":"my-service","provider":"myCompany","Identifier":"api-identifier","description":"This is some service","api":{{"targetUrl":"{}/","spec":{{"swagger":"2.0"}}}}}}"#,
        httpbin.uri()
    );
    let created = json(curl(dir).args([
        "-X",
        "POST",
        "-d",
        &api_service,
        &services,
        "--cert",
        "generated.crt",
        "--key",
        "generated.key",
        "-k",
    ]));
    let api_id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {created}"))
        .to_owned();
    let mapping = format!(
        "apiVersion: applicationconnector.kyma-project.io/v1alpha1\nkind: EnvironmentMapping\nmetadata:\n name: {re}\n namespace: production\n"
    );
    assert!(apply(ace, &data, admin, &mapping).contains("environmentmapping/ec-default created"));
    let classes = json(Command::new(ace).env("ACE_DATA_DIR", &data).args([
        "get",
        "serviceclass",
        "-n",
        "production",
        "-o",
        "json",
        "--admin-url",
        &format!("http://127.0.0.1:{admin}"),
    ]));
    let external_name = classes
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["id"] == api_id.as_str())
        .and_then(|c| c["externalName"].as_str())
        .unwrap_or_else(|| panic!("no service class for {api_id}: {classes}"))
        .to_owned();
    // The seed's ServiceInstance and ServiceBinding manifests, as flattened in its text.
    let instance = format!(
        "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceInstance\nmetadata:\nname: my-service-instance-name\nnamespace: production\nspec:\nserviceClassExternalName: {external_name}\n"
    );
    assert!(
        apply(ace, &data, admin, &instance)
            .contains("serviceinstance/my-service-instance-name created")
    );
    let binding = "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceBinding\nmetadata:\n  labels:\n    Function: my-lambda\n  name: my-service-binding\n  namespace: production\nspec:\n  instanceRef:\n    name: my-service-instance-name\n";
    let bound = apply(ace, &data, admin, binding);
    let credential = |name: &str| {
        bound
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("{name}="))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no {name} in {bound}"))
    };
    let (gateway_url, key) = (credential("GATEWAY_URL"), credential("ACCESS_KEY"));
    let uuid = json(curl(dir).args([
        &format!("{gateway_url}/uuid"),
        "-H",
        &format!("Ace-Binding-Key: {key}"),
    ]));
    assert_eq!(uuid["uuid"], "d44cc373-b26e-4a36-9890-6418d131a285");
    let refused = stdout(curl(dir).args([
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{gateway_url}/uuid"),
    ]));
    assert_eq!(refused, "403", "without the binding's key");

    let listed = stdout(Command::new(ace).env("ACE_DATA_DIR", &data).args([
        "get",
        "subscription",
        "-n",
        "production",
        "--admin-url",
        &format!("http://127.0.0.1:{admin}"),
    ]));
    let header: Vec<&str> = listed
        .lines()
        .next()
        .unwrap_or_default()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "EVENT TYPE",
            "VERSION",
            "SOURCE",
            "ACTIVATED",
            "DELIVERED",
            "PENDING",
            "DEAD LETTERS"
        ],
        "{listed}"
    );
    let row: Vec<&str> = listed
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(row.get(4), Some(&"True"), "events activated: {listed}");
}
