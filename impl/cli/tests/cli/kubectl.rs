//! The seeds' kubectl commands, with the real `kubectl` against a real `ace serve` process and
//! the kubeconfig it writes: apply (created, unchanged, configured), create, get with `-n`,
//! `-A`, `-o yaml|json|jsonpath|custom-columns`, the CRDs, a service class by id, merge and
//! server-side patches, delete by name and with `-f`, and the refusals a user sees. The output
//! is checked as a user reads it, not only the exit status.
//!
//! CI has kubectl; the test fails (it does not skip) when it is missing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::process::ServeProcess;

/// kubectl with the server's kubeconfig.
struct Kubectl {
    binary: PathBuf,
    kubeconfig: PathBuf,
}

impl Kubectl {
    fn output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(&self.binary)
            .env("KUBECONFIG", &self.kubeconfig)
            .env(
                "HOME",
                self.kubeconfig.parent().unwrap_or(Path::new("/tmp")),
            )
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {}: {e} (CI installs kubectl)",
                    self.binary.display()
                )
            });
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.unwrap_or_default().as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
        }
        child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Runs `kubectl args` (with `stdin`), which must succeed; returns its standard output.
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.output(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `kubectl args`, which must fail; returns its standard error.
    fn fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.output(args, stdin);
        assert!(
            !out.status.success(),
            "kubectl {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// `kubectl`, or `kubectl.1.NN` for `Some(minor)`, if installed (the machine's kubectl
/// dispatches to such binaries next to it).
fn kubectl_binary(minor: Option<u32>) -> Option<PathBuf> {
    let name = minor.map_or_else(|| "kubectl".to_owned(), |m| format!("kubectl.1.{m}"));
    let path = std::env::var_os("PATH")?;
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.push("/usr/lib/google-cloud-sdk/bin".into());
    dirs.into_iter()
        .map(|d| d.join(&name))
        .find(|p| p.is_file())
}

const RE: &str = "apiVersion: applicationconnector.kyma-project.io/v1alpha1
kind: RemoteEnvironment
metadata:
  name: ec-default
spec:
  description: The e-commerce solution
  labels:
    region: us
    kind: production
";

const MAPPING: &str = "apiVersion: applicationconnector.kyma-project.io/v1alpha1
kind: EnvironmentMapping
metadata:
  name: ec-default
  namespace: production
";

const SUBSCRIPTION: &str = "apiVersion: eventing.kyma.cx/v1alpha1
kind: Subscription
metadata:
  name: my-subscription
  namespace: stage
spec:
  endpoint: http://testjs.default:8080/
  push_request_timeout_ms: 2000
  max_inflight: 400
  include_subscription_name_header: true
  event_type: order_created
  event_type_version: v1
  source_id: stage.commerce.kyma.local
";

const ACTIVATION: &str = "apiVersion: applicationconnector.kyma-project.io/v1alpha1
kind: EventActivation
metadata:
  name: stage.commerce.kyma.local
  namespace: stage
spec:
  displayName: Commerce
  sourceId: stage.commerce.kyma.local
";

/// Onboards `ec-default` with `ace token` and `ace connect` and registers a service with an
/// API and events through the gateway (curl with the client certificate); returns its id.
fn register_service(s: &ServeProcess, dir: &Path, data: &Path) -> String {
    let ace = env!("CARGO_BIN_EXE_ace");
    let url = run_ok(Command::new(ace).args([
        "token",
        "ec-default",
        "--internal-url",
        &format!("http://127.0.0.1:{}", s.ports.internal),
    ]));
    let client = dir.join("client");
    run_ok(
        Command::new(ace)
            .args(["connect", url.trim(), "--out"])
            .arg(&client)
            .arg("--ca")
            .arg(data.join("ca.crt")),
    );
    let service = r#"{"name":"orders","provider":"myCompany","description":"Orders","api":{"targetUrl":"https://orders.example.com/v1"},"events":{"spec":{"asyncapi":"1.0.0","info":{"title":"Orders","version":"1.0.0"},"topics":{"order.created.v1":{"subscribe":{"summary":"An order"}}}}}}"#;
    let created = run_ok(
        Command::new("curl")
            .args(["-sS", "--max-time", "20", "-X", "POST", "-d", service])
            .arg(format!(
                "https://localhost:{}/ec-default/v1/metadata/services",
                s.ports.gateway
            ))
            .arg("--cert")
            .arg(client.join("cert.pem"))
            .arg("--key")
            .arg(client.join("key.pem"))
            .arg("--cacert")
            .arg(data.join("ca.crt")),
    );
    let created: serde_json::Value =
        serde_json::from_str(&created).unwrap_or_else(|e| panic!("{e}: {created}"));
    created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id: {created}"))
        .to_owned()
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The rows of a `kubectl get` table, split on runs of spaces.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

#[test]
fn the_seeds_kubectl_commands_work_against_ace_serve() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    let s = ServeProcess::start(&data, &[]);
    let kubeconfig = data.join("kubeconfig");
    let printed = run_ok(
        Command::new(env!("CARGO_BIN_EXE_ace"))
            .args(["kubeconfig", "--data-dir"])
            .arg(&data),
    );
    assert_eq!(
        printed,
        std::fs::read_to_string(&kubeconfig).unwrap_or_default(),
        "ace kubeconfig prints the file ace serve wrote"
    );
    let k = Kubectl {
        binary: kubectl_binary(None).unwrap_or_else(|| "kubectl".into()),
        kubeconfig,
    };

    // kubectl apply: created, unchanged, configured.
    let applied = k.ok(&["apply", "-f", "-"], Some(RE));
    assert_eq!(
        applied.trim(),
        "remoteenvironment.applicationconnector.kyma-project.io/ec-default created"
    );
    let again = k.ok(&["apply", "-f", "-"], Some(RE));
    assert!(again.trim().ends_with("ec-default unchanged"), "{again}");
    let changed = RE.replace("The e-commerce solution", "Orders and stock");
    let configured = k.ok(&["apply", "-f", "-"], Some(&changed));
    assert!(
        configured.trim().ends_with("ec-default configured"),
        "{configured}"
    );
    let table = rows(&k.ok(&["get", "re"], None));
    assert_eq!(table[0], ["NAME", "DESCRIPTION", "SERVICES", "AGE"]);
    assert_eq!(table[1][..3], ["ec-default", "Orders and stock", "0"]);
    let yaml = k.ok(&["get", "re", "ec-default", "-o", "yaml"], None);
    for line in [
        "kubectl.kubernetes.io/last-applied-configuration",
        "generation: 2",
        "region: us",
        "accessLabel: ec-default",
    ] {
        assert!(yaml.contains(line), "{line} missing from {yaml}");
    }

    // The seed's EnvironmentMapping steps.
    let created = k.ok(&["apply", "-f", "-"], Some(MAPPING));
    assert!(created.trim().ends_with("ec-default created"), "{created}");
    let em = rows(&k.ok(&["get", "em", "-n", "production"], None));
    assert_eq!(em[1][0], "ec-default");
    let where_mapped = k.ok(
        &[
            "get",
            "em",
            "--all-namespaces",
            "-o",
            r#"jsonpath={range .items[?(@.metadata.name=="ec-default")]}{@.metadata.namespace}{""}{end}"#,
        ],
        None,
    );
    assert_eq!(where_mapped, "production");

    // A registered service is a service class of the namespace; an instance and a binding.
    let id = register_service(&s, dir.path(), &data);
    let external = k.ok(
        &[
            "-n",
            "production",
            "get",
            "serviceclass",
            &id,
            "-o",
            "jsonpath={.spec.externalName}",
        ],
        None,
    );
    assert!(external.starts_with("orders-"), "{external}");
    let instance = format!(
        "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceInstance\nmetadata:\n  name: orders\n  namespace: production\nspec:\n  serviceClassExternalName: {external}\n"
    );
    let made = k.ok(&["apply", "-f", "-"], Some(&instance));
    assert_eq!(
        made.trim(),
        "serviceinstance.servicecatalog.k8s.io/orders created"
    );
    let binding = "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceBinding\nmetadata:\n  name: orders-binding\n  namespace: production\nspec:\n  instanceRef:\n    name: orders\n";
    let bound = k.ok(
        &[
            "create",
            "-f",
            "-",
            "-o",
            "jsonpath={.status.credentials.GATEWAY_URL}",
        ],
        Some(binding),
    );
    assert!(bound.contains(&format!("/re-ec-default-{id}")), "{bound}");
    let instances = rows(&k.ok(&["get", "serviceinstances", "-A"], None));
    assert_eq!(instances[0][..3], ["NAMESPACE", "NAME", "CLASS"]);
    assert_eq!(
        instances[1][..3],
        [
            "production".to_owned(),
            "orders".to_owned(),
            external.clone()
        ]
    );

    // The Event Bus seed: create, then the lists and columns it shows.
    let created = k.ok(&["create", "-f", "-"], Some(SUBSCRIPTION));
    assert_eq!(
        created.trim(),
        "subscription.eventing.kyma.cx/my-subscription created"
    );
    let exists = k.fails(&["create", "-f", "-"], Some(SUBSCRIPTION));
    assert!(
        exists.contains("(AlreadyExists)")
            && exists
                .contains(r#"subscriptions.eventing.kyma.cx "my-subscription" already exists"#),
        "{exists}"
    );
    let named = k.ok(&["apply", "-f", "-"], Some(ACTIVATION));
    assert!(
        named.contains("stage.commerce.kyma.local created"),
        "{named}"
    );
    let all = rows(&k.ok(&["get", "subscription", "--all-namespaces"], None));
    assert_eq!(
        all[0],
        [
            "NAMESPACE",
            "NAME",
            "EVENT TYPE",
            "VERSION",
            "SOURCE",
            "ACTIVATED",
            "DELIVERED",
            "PENDING",
            "DEAD LETTERS",
            "AGE"
        ]
    );
    assert_eq!(
        all[1][..9],
        [
            "stage",
            "my-subscription",
            "order_created",
            "v1",
            "stage.commerce.kyma.local",
            "True",
            "0",
            "0",
            "0"
        ]
    );
    let columns = rows(&k.ok(
        &[
            "get",
            "subscriptions",
            "-n",
            "stage",
            "-o=custom-columns=NAME:.metadata.name,STATUS:.status.conditions[*].status,STATUS TYPE:.status.conditions[*].type",
        ],
        None,
    ));
    assert_eq!(columns[0], ["NAME", "STATUS", "STATUS TYPE"]);
    assert_eq!(columns[1], ["my-subscription", "True", "events-activated"]);
    let json: serde_json::Value =
        serde_json::from_str(&k.ok(&["get", "sub", "-n", "stage", "-o", "json"], None))
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(json["items"][0]["spec"]["max_inflight"], 400);
    assert_eq!(json["items"][0]["metadata"]["generation"], 1);

    // Merge patch, server-side apply, and a refused change.
    let patched = k.ok(
        &[
            "patch",
            "sub",
            "my-subscription",
            "-n",
            "stage",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"max_inflight":7}}"#,
        ],
        None,
    );
    assert!(patched.contains("my-subscription patched"), "{patched}");
    let server_side = SUBSCRIPTION.replace("max_inflight: 400", "max_inflight: 9");
    let applied = k.ok(&["apply", "--server-side", "-f", "-"], Some(&server_side));
    assert!(
        applied.contains("my-subscription serverside-applied"),
        "{applied}"
    );
    let figures = k.ok(
        &[
            "get",
            "sub",
            "my-subscription",
            "-n",
            "stage",
            "-o",
            "jsonpath={.spec.max_inflight} {.metadata.generation}",
        ],
        None,
    );
    assert_eq!(figures, "9 3");
    let invalid = k.fails(
        &[
            "patch",
            "sub",
            "my-subscription",
            "-n",
            "stage",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"endpoint":"ftp://x"}}"#,
        ],
        None,
    );
    assert!(
        invalid.contains(r#"The Subscription "my-subscription" is invalid: spec: "#)
            && invalid.contains("ftp://x"),
        "{invalid}"
    );
    let strategic = k.fails(
        &["patch", "sub", "my-subscription", "-n", "stage", "-p", "{}"],
        None,
    );
    assert!(
        strategic.contains("application/merge-patch+json"),
        "{strategic}"
    );

    // The CRDs.
    let crd = k.ok(
        &["get", "crd", "subscriptions.eventing.kyma.cx", "-o", "yaml"],
        None,
    );
    for line in [
        "scope: Namespaced",
        "openAPIV3Schema:",
        "group: eventing.kyma.cx",
        "type: Established",
    ] {
        assert!(crd.contains(line), "{line} missing from {crd}");
    }
    let crds = k.ok(&["get", "crd", "-o", "name"], None);
    assert!(
        crds.contains("customresourcedefinition.apiextensions.k8s.io/remoteenvironments.applicationconnector.kyma-project.io"),
        "{crds}"
    );

    // kubectl explain, from the OpenAPI v3 documents.
    let explained = k.ok(&["explain", "subscription.spec"], None);
    for field in [
        "max_inflight",
        "push_request_timeout_ms",
        "event_type_version",
    ] {
        assert!(
            explained.contains(field),
            "{field} missing from {explained}"
        );
    }

    // Missing names, deletes.
    let missing = k.fails(&["get", "sub", "nope", "-n", "stage"], None);
    assert!(
        missing.contains(
            r#"Error from server (NotFound): subscriptions.eventing.kyma.cx "nope" not found"#
        ),
        "{missing}"
    );
    let deleted = k.ok(&["delete", "sub", "my-subscription", "-n", "stage"], None);
    assert_eq!(
        deleted.trim(),
        r#"subscription.eventing.kyma.cx "my-subscription" deleted"#
    );
    let gone = k.fails(&["get", "sub", "my-subscription", "-n", "stage"], None);
    assert!(gone.contains("(NotFound)"), "{gone}");
    let by_file = k.ok(&["delete", "-f", "-"], Some(ACTIVATION));
    assert!(
        by_file.contains("stage.commerce.kyma.local\" deleted"),
        "{by_file}"
    );
    // Left: the activation provisioning the instance made in production.
    let left = rows(&k.ok(&["get", "ea", "-A"], None));
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(left[1][..2], ["production".to_owned(), id.clone()]);
}

/// The kubectl versions the machine has (1.27 to 1.33): apply, get across namespaces, delete.
#[test]
fn every_installed_kubectl_version_applies_gets_and_deletes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let data = dir.path().join("data");
    let _s = ServeProcess::start(&data, &[]);
    let versions: Vec<(u32, PathBuf)> = (27..=33)
        .filter_map(|minor| kubectl_binary(Some(minor)).map(|b| (minor, b)))
        .collect();
    if versions.is_empty() {
        eprintln!(
            "no versioned kubectl binaries (kubectl.1.NN) here; the default one is tested above"
        );
    }
    for (minor, binary) in versions {
        let k = Kubectl {
            binary,
            kubeconfig: data.join("kubeconfig"),
        };
        let created = k.ok(&["apply", "-f", "-"], Some(SUBSCRIPTION));
        assert!(
            created.contains("my-subscription created"),
            "1.{minor}: {created}"
        );
        let unchanged = k.ok(&["apply", "-f", "-"], Some(SUBSCRIPTION));
        assert!(
            unchanged.contains("my-subscription unchanged"),
            "1.{minor}: {unchanged}"
        );
        let all = rows(&k.ok(&["get", "sub", "-A"], None));
        assert_eq!(
            all[1][..3],
            ["stage", "my-subscription", "order_created"],
            "1.{minor}"
        );
        let deleted = k.ok(&["delete", "-f", "-"], Some(SUBSCRIPTION));
        assert!(deleted.contains("deleted"), "1.{minor}: {deleted}");
    }
}
