//! `ace`: the command line of ACE. Run `ace --help`.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ace::cli;
use ace::client::TlsOptions;
use ace::driver::Clock;
use ace::net::TokioNet;
use ace::pki::KeyKind;
use ace::serve::{self, ServeOptions};
use ace_model::Timestamp;
use ace_model::bus::RetryPolicy;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// ACE: the Kyma Application Connector and Event Bus, modelled, implemented and checked.
///
/// `ace serve` runs the server. The other commands talk to a running server: `token` and
/// `connect` do the onboarding of an external solution; `apply`, `get` and `delete` manage
/// resources as the seeds' `kubectl` examples do.
#[derive(Debug, Parser)]
#[command(name = "ace", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server: connector APIs, gateway (mutual TLS) and admin API.
    ///
    /// On first start it creates its data directory, its CA and a server certificate for the
    /// host names, and keeps them; every change is made durable before it is acknowledged.
    /// Flags override environment variables (ACE_*), which override the config file.
    Serve(Box<ServeArgs>),
    /// Get a one-time configuration URL for a Remote Environment (connector internal API).
    Token {
        /// The Remote Environment.
        re: String,
        /// Base URL of the connector internal API.
        #[arg(
            long,
            env = "ACE_INTERNAL_URL",
            default_value = "http://127.0.0.1:8080"
        )]
        internal_url: String,
    },
    /// Onboard an external solution: fetch info from a configuration URL, generate a key,
    /// send the CSR, and write key.pem, cert.pem, ca.pem and connection.json into --out.
    Connect {
        /// The configuration URL from `ace token`.
        url: String,
        /// Directory for the key, the certificates and the URLs.
        #[arg(long, short)]
        out: PathBuf,
        /// CA certificate that signed the server's certificate (e.g. the server's ca.crt).
        #[arg(long, conflicts_with = "insecure")]
        ca: Option<PathBuf>,
        /// Do not verify the server's certificate (as `curl -k`).
        #[arg(long, short = 'k')]
        insecure: bool,
        /// Key algorithm; by default the one `info` asks for.
        #[arg(long, value_enum)]
        key_algorithm: Option<KeyKind>,
    },
    /// Create or update resources from YAML manifests (multi-document; `-f -` reads stdin).
    Apply {
        /// Manifest file.
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Show resources: remoteenvironment (re), environmentmapping (em), serviceclass.
    Get {
        /// Kind.
        kind: String,
        /// Name (all when absent).
        name: Option<String>,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete resources, by kind and name or from a manifest file.
    Delete {
        /// Kind (or use -f).
        kind: Option<String>,
        /// Name.
        name: Option<String>,
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
        /// Manifest file whose resources to delete.
        #[arg(short = 'f', long = "filename", conflicts_with_all = ["kind", "name"])]
        file: Option<PathBuf>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Dead letters: events a subscription did not take within the retention.
    Events {
        #[command(subcommand)]
        command: EventsCommand,
    },
    /// Check a deployment against the documented contract: every check is one sentence of the
    /// seeds or the Kyma 0.5 reference, MUST or SHOULD. Without a target, an embedded `ace
    /// serve` on loopback (temporary data directory) is started and checked. Exits 0 only if
    /// every selected MUST check passed.
    Conformance(Box<ConformanceArgs>),
    /// Walk through the seeds' flow on the model alone (no server, no network) and print
    /// every request and reply.
    Walkthrough {
        /// Seed of the model's generator.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Remote Environment name.
        #[arg(long, default_value = "ec-default")]
        re: String,
        /// Namespace it is mapped to.
        #[arg(long, default_value = "production")]
        namespace: String,
    },
}

/// `ace conformance` flags.
#[derive(Debug, Args)]
struct ConformanceArgs {
    /// List the selected checks (id, level, area, sentence, source) and exit.
    #[arg(long)]
    list: bool,
    /// Only these checks (ids or id prefixes such as `onboarding.csr`; repeatable).
    #[arg(long = "id", value_name = "ID")]
    ids: Vec<String>,
    /// Only these areas (onboarding, isolation, metadata, events, delivery, proxy, catalog,
    /// durability, model; repeatable).
    #[arg(long = "area", value_name = "AREA")]
    areas: Vec<ace_conformance::Area>,
    /// Only this level (must or should).
    #[arg(long)]
    level: Option<ace_conformance::Level>,
    /// Expected behaviour where Kyma 0.5 and ACE differ: `ace` or `kyma-0.5` (the known
    /// divergences are listed in conformance/profiles/kyma-0.5.yaml).
    #[arg(long, default_value = "ace")]
    profile: ace_conformance::Profile,
    /// A target file (YAML: connector_internal, connector_external, gateway, publish, admin,
    /// proxy, ca, token_ttl_seconds, restart_command, endpoint_listen, endpoint_url, ...).
    #[arg(long, value_name = "FILE")]
    target: Option<PathBuf>,
    /// Connector internal API of a live target (instead of a target file).
    #[arg(long, value_name = "URL", requires_all = ["connector_external", "gateway"])]
    connector_internal: Option<String>,
    /// Connector external API of a live target.
    #[arg(long, value_name = "URL")]
    connector_external: Option<String>,
    /// Gateway of a live target.
    #[arg(long, value_name = "URL")]
    gateway: Option<String>,
    /// Publish API of a live target.
    #[arg(long, value_name = "URL")]
    publish: Option<String>,
    /// Admin API of a live target (the resource adapter).
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
    /// Proxy of a live target.
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// CA certificate (PEM file) that signed the live target's server certificates.
    #[arg(long, value_name = "FILE")]
    ca: Option<String>,
    /// Where the suite's subscriber / OAuth / API endpoint listens (default 127.0.0.1:0).
    #[arg(long, value_name = "ADDR")]
    endpoint_listen: Option<String>,
    /// The URL the target reaches the suite's endpoint at (default: from the listen address).
    #[arg(long, value_name = "URL")]
    endpoint_url: Option<String>,
    /// Fail (exit status 1) when a SHOULD check fails too, not only a MUST.
    #[arg(long)]
    strict: bool,
    /// Checks run at once.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Generated sequences in the model-based phase.
    #[arg(long, default_value_t = 12)]
    cases: u32,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the report as JUnit XML.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Run the embedded target with a bug of the zoo switched on (repeatable; `ace-sim bugs`
    /// describes them): the suite must then fail. Exists only in builds with the feature
    /// `bug-zoo`.
    #[cfg(feature = "bug-zoo")]
    #[arg(long = "inject-bug", value_name = "NAME", value_parser = bug_parser())]
    inject_bug: Vec<ace_model::bugs::Bug>,
}

#[derive(Debug, Subcommand)]
enum EventsCommand {
    /// Dead letters: list them, or queue them again.
    #[command(name = "dead-letter", subcommand)]
    DeadLetter(DeadLetterCommand),
}

#[derive(Debug, Subcommand)]
enum DeadLetterCommand {
    /// List dead letters (all namespaces, or one).
    List {
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Queue a subscription's dead letters again, with a fresh retention.
    Replay {
        /// The subscription.
        subscription: String,
        /// Its namespace.
        #[arg(short, long, default_value = "default")]
        namespace: String,
        /// Only the dead letters of this event id.
        #[arg(long)]
        event_id: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Debug, Args)]
struct AdminArgs {
    /// Base URL of the admin API.
    #[arg(long, env = "ACE_ADMIN_URL", default_value = "http://127.0.0.1:8081")]
    admin_url: String,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RetryPolicyArg {
    /// Exponential backoff with jitter.
    Backoff,
    /// A fixed ack wait.
    Kyma,
}

#[derive(Debug, Clone, Copy, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CsrPolicyArg {
    /// RSA keys of at least 2048 bits, no MD5 or SHA-1 signatures.
    Ace,
    /// Kyma 0.5: subject checks only.
    Kyma,
}

/// `ace serve` options. Every one can also come from the environment (`ACE_…`) or from the
/// YAML config file (same names, e.g. `gateway-addr: 0.0.0.0:8444`).
#[derive(Debug, Default, Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ServeArgs {
    /// YAML config file.
    #[arg(long, env = "ACE_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Data directory [default: $XDG_DATA_HOME/ace or ~/.local/share/ace].
    #[arg(long, env = "ACE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Host name or IP address for the server certificate (repeat; the first is used in
    /// URLs) [default: localhost, 127.0.0.1].
    #[arg(long = "host", env = "ACE_HOSTS", value_delimiter = ',')]
    host: Option<Vec<String>>,
    /// Cluster domain: hand out https://connector-service.<domain> and https://gateway.<domain>.
    #[arg(long, env = "ACE_DOMAIN")]
    domain: Option<String>,
    /// Connector internal API (plain HTTP) [default: 127.0.0.1:8080].
    #[arg(long, env = "ACE_CONNECTOR_INTERNAL_ADDR")]
    connector_internal_addr: Option<String>,
    /// Connector external API (HTTPS) [default: 127.0.0.1:8443].
    #[arg(long, env = "ACE_CONNECTOR_EXTERNAL_ADDR")]
    connector_external_addr: Option<String>,
    /// Gateway (HTTPS, client certificates) [default: 127.0.0.1:8444].
    #[arg(long, env = "ACE_GATEWAY_ADDR")]
    gateway_addr: Option<String>,
    /// Admin API, /metrics and health (plain HTTP) [default: 127.0.0.1:8081].
    #[arg(long, env = "ACE_ADMIN_ADDR")]
    admin_addr: Option<String>,
    /// Event Bus publish API (plain HTTP) [default: 127.0.0.1:8082].
    #[arg(long, env = "ACE_PUBLISH_ADDR")]
    publish_addr: Option<String>,
    /// Proxy to registered APIs (plain HTTP) [default: 127.0.0.1:8090].
    #[arg(long, env = "ACE_PROXY_ADDR")]
    proxy_addr: Option<String>,
    /// Time a registered API or its OAuth server has to answer through the proxy [default: 10s].
    #[arg(long, env = "ACE_PROXY_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    proxy_timeout: Option<Duration>,
    /// Do not verify registered APIs' certificates, for every RE (per RE: spec.skipVerify).
    #[arg(long, env = "ACE_PROXY_SKIP_VERIFY")]
    #[serde(default)]
    proxy_skip_verify: bool,
    /// Do not verify the certificates of https subscribers (Kyma's chart did not).
    #[arg(long, env = "ACE_PUSH_TLS_SKIP_VERIFY")]
    #[serde(default)]
    push_tls_skip_verify: bool,
    /// PEM file of CA certificates trusted for https subscribers (ACE's own CA always is).
    #[arg(long, env = "ACE_PUSH_CA")]
    push_ca: Option<PathBuf>,
    /// When failed deliveries are retried: `backoff` (exponential with jitter) or `kyma`
    /// (a fixed ack wait, as NATS Streaming redelivered) [default: backoff].
    #[arg(long, env = "ACE_RETRY_POLICY", value_enum)]
    retry_policy: Option<RetryPolicyArg>,
    /// First backoff wait, e.g. 1s [default: 1s].
    #[arg(long, env = "ACE_RETRY_INITIAL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    retry_initial: Option<Duration>,
    /// Longest backoff wait [default: 60s].
    #[arg(long, env = "ACE_RETRY_MAX", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    retry_max: Option<Duration>,
    /// The fixed wait of the `kyma` retry policy [default: 30s].
    #[arg(long, env = "ACE_ACK_WAIT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    ack_wait: Option<Duration>,
    /// How long an event stays owed to a subscription before it is dead-lettered [default: 24h].
    #[arg(long, env = "ACE_RETENTION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    retention: Option<Duration>,
    /// Most bytes of event bodies kept in memory; the backlog beyond it is read back from
    /// disk when pushed [default: 67108864].
    #[arg(long, env = "ACE_MAX_RESIDENT_BODY_BYTES")]
    max_resident_body_bytes: Option<usize>,
    /// Largest event in bytes (413 request_body_too_large beyond) [default: 65536].
    #[arg(long, env = "ACE_MAX_EVENT_BYTES")]
    max_event_bytes: Option<usize>,
    /// Key algorithm of a new CA and server certificate [default: ecdsa-p256].
    #[arg(long, env = "ACE_CA_KEY", value_enum)]
    ca_key: Option<KeyKind>,
    /// Validity of a connector token, e.g. 5m [default: 5m].
    #[arg(long, env = "ACE_TOKEN_TTL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    token_ttl: Option<Duration>,
    /// Validity of issued client certificates, e.g. 365days [default: 365days].
    #[arg(long, env = "ACE_CERTIFICATE_VALIDITY", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    certificate_validity: Option<Duration>,
    /// CSR policy [default: ace].
    #[arg(long, env = "ACE_CSR_POLICY", value_enum)]
    csr_policy: Option<CsrPolicyArg>,
    /// Most connections open at once [default: 1024].
    #[arg(long, env = "ACE_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Largest request body in bytes on the connector, events and admin APIs [default: 65536].
    #[arg(long, env = "ACE_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Base URL of the proxy for registered APIs [default: http://127.0.0.1:8090].
    #[arg(long, env = "ACE_PROXY_URL")]
    proxy_url: Option<String>,
    /// Log format [default: human]; the level comes from RUST_LOG (default info).
    #[arg(long, env = "ACE_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Switch on a deliberately wrong behaviour of the bug zoo (repeat for several; `ace-sim
    /// bugs` describes them). This flag exists only because this build has the feature
    /// `bug-zoo`; the server then warns loudly at start. Never use it outside of tests.
    #[cfg(feature = "bug-zoo")]
    #[arg(
        long = "inject-bug",
        value_name = "NAME",
        value_parser = bug_parser()
    )]
    #[serde(skip)]
    inject_bug: Vec<ace_model::bugs::Bug>,
}

/// `--inject-bug`: one of the zoo's names (listed in `--help`).
#[cfg(feature = "bug-zoo")]
fn bug_parser() -> impl clap::builder::TypedValueParser<Value = ace_model::bugs::Bug> {
    use ace_model::bugs::Bug;
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Bug::ALL.map(Bug::name))
        .try_map(|name| name.parse::<Bug>())
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl ServeArgs {
    /// Flags and environment over the config file over the defaults.
    fn resolve(self) -> Result<(ServeOptions, LogFormat), String> {
        let file: ServeArgs = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("config {}: {e}", path.display()))?;
                serde_yaml_ng::from_str(&text)
                    .map_err(|e| format!("config {}: {e}", path.display()))?
            }
            None => ServeArgs::default(),
        };
        let d = ServeOptions::default();
        let mut limits = d.limits;
        limits.max_body_bytes = self
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(limits.max_body_bytes);
        let options = ServeOptions {
            data_dir: self.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            hosts: self.host.or(file.host).unwrap_or(d.hosts),
            domain: self.domain.or(file.domain),
            connector_internal_addr: self
                .connector_internal_addr
                .or(file.connector_internal_addr)
                .unwrap_or(d.connector_internal_addr),
            connector_external_addr: self
                .connector_external_addr
                .or(file.connector_external_addr)
                .unwrap_or(d.connector_external_addr),
            gateway_addr: self
                .gateway_addr
                .or(file.gateway_addr)
                .unwrap_or(d.gateway_addr),
            admin_addr: self.admin_addr.or(file.admin_addr).unwrap_or(d.admin_addr),
            publish_addr: self
                .publish_addr
                .or(file.publish_addr)
                .unwrap_or(d.publish_addr),
            proxy_addr: self.proxy_addr.or(file.proxy_addr).unwrap_or(d.proxy_addr),
            proxy_timeout: self
                .proxy_timeout
                .or(file.proxy_timeout)
                .unwrap_or(d.proxy_timeout),
            proxy_skip_verify: self.proxy_skip_verify || file.proxy_skip_verify,
            push_tls_skip_verify: self.push_tls_skip_verify || file.push_tls_skip_verify,
            push_ca_pem: match self.push_ca.or(file.push_ca) {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("push CA {}: {e}", path.display()))?,
                ),
                None => None,
            },
            ca_key: self.ca_key.or(file.ca_key).unwrap_or(d.ca_key),
            token_ttl: self.token_ttl.or(file.token_ttl).unwrap_or(d.token_ttl),
            certificate_validity: self
                .certificate_validity
                .or(file.certificate_validity)
                .unwrap_or(d.certificate_validity),
            strict_csr_policy: !matches!(
                self.csr_policy.or(file.csr_policy),
                Some(CsrPolicyArg::Kyma)
            ),
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            proxy_url: self.proxy_url.or(file.proxy_url).unwrap_or(d.proxy_url),
            limits,
            ..d
        };
        let mut options = options;
        #[cfg(feature = "bug-zoo")]
        {
            options.bugs = self.inject_bug.iter().copied().collect();
        }
        let bus = &mut options.bus;
        bus.retention = self.retention.or(file.retention).unwrap_or(bus.retention);
        bus.max_resident_body_bytes = self
            .max_resident_body_bytes
            .or(file.max_resident_body_bytes)
            .unwrap_or(bus.max_resident_body_bytes);
        bus.max_event_bytes = self
            .max_event_bytes
            .or(file.max_event_bytes)
            .unwrap_or(bus.max_event_bytes);
        bus.retry = match self.retry_policy.or(file.retry_policy) {
            Some(RetryPolicyArg::Kyma) => RetryPolicy::Kyma {
                ack_wait: self
                    .ack_wait
                    .or(file.ack_wait)
                    .unwrap_or(Duration::from_secs(30)),
            },
            _ => {
                let (initial, max) = match RetryPolicy::default() {
                    RetryPolicy::Backoff { initial, max } => (initial, max),
                    RetryPolicy::Kyma { .. } => (Duration::from_secs(1), Duration::from_secs(60)),
                };
                RetryPolicy::Backoff {
                    initial: self.retry_initial.or(file.retry_initial).unwrap_or(initial),
                    max: self.retry_max.or(file.retry_max).unwrap_or(max),
                }
            }
        };
        if options.hosts.is_empty() {
            return Err("at least one --host is needed".into());
        }
        Ok((
            options,
            self.log_format
                .or(file.log_format)
                .unwrap_or(LogFormat::Human),
        ))
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: a log redirected to a file or a collector stays plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::IsTerminal::is_terminal(&io::stderr()))
        .with_writer(io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn unix_millis_now() -> u64 {
    // The only wall-clock read of the server: the rest of time comes from tokio::time.
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn os_seed() -> ace_model::Seed {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    ace_model::Seed(bytes)
}

async fn run_serve(args: ServeArgs) -> Result<(), String> {
    let (options, log_format) = args.resolve()?;
    init_logging(log_format);
    let data_dir = options.data_dir.clone();
    let mut server = serve::start(TokioNet, options, Clock::new(unix_millis_now()), os_seed())
        .await
        .map_err(|e| e.to_string())?;
    let c = &server.config.connector;
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "ACE is serving (data directory {}, {} records replayed)\n  \
         connector internal API  http://{}/v1/remoteenvironments/{{re}}/tokens\n  \
         connector external API  {}/v1/api.yaml   (listening on {})\n  \
         gateway                 {}/{{re}}/v1/metadata/services   (listening on {})\n  \
         admin API               http://{}/v1/api.yaml   (metrics: /metrics, health: /healthz)\n  \
         publish API             http://{}/v1/events\n  \
         proxy                   http://{}/re-{{re}}-{{service id}}/...\n  \
         CA certificate          {}",
        data_dir.display(),
        server.replayed,
        server.connector_internal,
        c.connector_url,
        server.connector_external,
        c.gateway_url,
        server.gateway,
        server.admin,
        server.publish,
        server.proxy,
        data_dir.join("ca.crt").display()
    );
    drop(out);
    let signal = tokio::select! {
        result = server.wait() => return result.map_err(|e| format!("the server stopped: {e}")),
        signal = shutdown_signal() => signal,
    };
    tracing::info!(
        signal,
        "stopping; every acknowledged change is already durable"
    );
    // Closes the store, so that the next start finds it closed cleanly.
    server.stop().await;
    Ok(())
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM (what `kill` and container runtimes send) and
/// returns its name; never returns if no handler can be installed.
async fn shutdown_signal() -> &'static str {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => "SIGINT",
        () = terminate => "SIGTERM",
    }
}

async fn run_conformance(args: ConformanceArgs) -> Result<(), String> {
    use ace_conformance::{AdminApi, Ctx, Resources, Restart, Selection, Target, checks, run};
    let selection = Selection {
        ids: args.ids.clone(),
        areas: args.areas.clone(),
        level: args.level,
    };
    let selected = selection.apply(checks::all());
    if args.list {
        print(&run::list(&selected));
        return Ok(());
    }
    if selected.is_empty() {
        return Err("no check matches the selection (see --list)".into());
    }
    let live = args.target.is_some() || args.connector_internal.is_some();
    #[cfg(feature = "bug-zoo")]
    if live && !args.inject_bug.is_empty() {
        return Err(
            "--inject-bug switches bugs on in the embedded target; it cannot reach a live one"
                .into(),
        );
    }
    let mut embedded = None;
    let target = if let Some(file) = &args.target {
        Target::from_file(file)?
    } else if let (Some(internal), Some(external), Some(gateway)) = (
        &args.connector_internal,
        &args.connector_external,
        &args.gateway,
    ) {
        Target {
            connector_internal: internal.clone(),
            connector_external: external.clone(),
            gateway: gateway.clone(),
            publish: args.publish.clone(),
            admin: args.admin.clone(),
            proxy: args.proxy.clone(),
            ca: args.ca.clone(),
            ..Target::local_defaults()
        }
    } else {
        #[cfg(feature = "bug-zoo")]
        let bugs: ace_model::bugs::Bugs = args.inject_bug.iter().copied().collect();
        let e = ace::conformance::Embedded::start(
            Clock::new(unix_millis_now()),
            os_seed(),
            |_o: &mut ServeOptions| {
                #[cfg(feature = "bug-zoo")]
                {
                    _o.bugs = bugs;
                }
            },
        )
        .await?;
        let t = e.target();
        embedded = Some(e);
        t
    };
    let mut target = target;
    if args.endpoint_listen.is_some() {
        target.endpoint_listen.clone_from(&args.endpoint_listen);
    }
    if args.endpoint_url.is_some() {
        target.endpoint_url.clone_from(&args.endpoint_url);
    }
    let endpoint = ace_conformance::endpoint::Endpoint::start(
        target.endpoint_listen.as_deref().unwrap_or("127.0.0.1:0"),
        target.endpoint_url.as_deref(),
    )
    .await?;
    let resources: Option<Box<dyn Resources>> = target
        .admin
        .as_deref()
        .map(|a| Box::new(AdminApi::new(a)) as Box<dyn Resources>);
    let restart: Option<Box<dyn Restart>> = match (&embedded, &target.restart_command) {
        (Some(e), _) => Some(Box::new(ace::conformance::EmbeddedRestart(e.clone()))),
        (None, Some(command)) => Some(Box::new(ace_conformance::target::CommandRestart {
            command: command.clone(),
            probe_url: format!(
                "{}/v1/api.yaml",
                target.connector_internal.trim_end_matches('/')
            ),
        })),
        (None, None) => None,
    };
    print(&format!(
        "ace conformance: {} checks against {} ({}), profile {}\n",
        selected.len(),
        target.gateway,
        if live {
            "live target"
        } else {
            "embedded ace serve"
        },
        args.profile
    ));
    let mut cx = Ctx::new(target, endpoint, resources, restart, args.profile)?;
    cx.model_cases = args.cases;
    let report = run::run(std::sync::Arc::new(cx), selected, args.jobs, &mut |o| {
        print(&format!("{}\n", run::progress_line(o)))
    })
    .await;
    if let Some(e) = embedded {
        e.stop().await;
    }
    print(&format!("\n{}\n", report.summary()));
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report.json()).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, report.junit()).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if report.passed() && (!args.strict || report.passed_strict()) {
        Ok(())
    } else {
        Err(format!(
            "{} checks failed ({} of them MUST)",
            report.failures().count(),
            report
                .failures()
                .filter(|o| o.level == ace_conformance::Level::Must)
                .count()
        ))
    }
}

fn read_input(path: &PathBuf) -> Result<String, String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| format!("stdin: {e}"))?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    }
}

fn print(text: &str) {
    let _ = io::stdout().lock().write_all(text.as_bytes());
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(args) => run_serve(*args).await,
        Command::Token { re, internal_url } => {
            print(&format!("{}\n", cli::token(&internal_url, &re).await?));
            Ok(())
        }
        Command::Connect {
            url,
            out,
            ca,
            insecure,
            key_algorithm,
        } => {
            let mut tls = TlsOptions {
                insecure,
                ..TlsOptions::default()
            };
            if let Some(ca) = ca {
                let pem =
                    std::fs::read_to_string(&ca).map_err(|e| format!("{}: {e}", ca.display()))?;
                tls.roots = ace::pki::certs_from_pem(&pem).map_err(|e| e.to_string())?;
            }
            let c = cli::connect(&url, &out, &tls, key_algorithm).await?;
            print(&format!(
                "Connected. Wrote key.pem, cert.pem, ca.pem and connection.json to {}\n  metadata: {}\n  events:   {}\n",
                c.dir.display(),
                c.metadata_url,
                c.events_url
            ));
            Ok(())
        }
        Command::Apply { file, admin } => {
            for line in cli::apply(&admin.admin_url, &read_input(&file)?).await? {
                print(&format!("{line}\n"));
            }
            Ok(())
        }
        Command::Get {
            kind,
            name,
            namespace,
            output,
            admin,
        } => {
            let value = cli::get(
                &admin.admin_url,
                &kind,
                name.as_deref(),
                namespace.as_deref(),
            )
            .await?;
            let text = match output {
                Output::Table => cli::table(&value),
                Output::Json => serde_json::to_string_pretty(&value).unwrap_or_default() + "\n",
                Output::Yaml => serde_yaml_ng::to_string(&value).unwrap_or_default(),
            };
            print(&text);
            Ok(())
        }
        Command::Delete {
            kind,
            name,
            namespace,
            file,
            admin,
        } => {
            let targets = match (file, kind, name) {
                (Some(file), _, _) => cli::parse_manifests(&read_input(&file)?)?
                    .into_iter()
                    .map(|m| (m.kind, m.name, m.namespace))
                    .collect(),
                (None, Some(kind), Some(name)) => vec![(kind, name, namespace)],
                _ => return Err("give KIND NAME or -f FILE".into()),
            };
            for (kind, name, ns) in targets {
                print(&format!(
                    "{}\n",
                    cli::delete(&admin.admin_url, &kind, &name, ns.as_deref()).await?
                ));
            }
            Ok(())
        }
        Command::Events {
            command: EventsCommand::DeadLetter(command),
        } => {
            let value = match command {
                DeadLetterCommand::List { namespace, admin } => {
                    cli::dead_letters(&admin.admin_url, namespace.as_deref()).await?
                }
                DeadLetterCommand::Replay {
                    subscription,
                    namespace,
                    event_id,
                    admin,
                } => {
                    cli::replay(
                        &admin.admin_url,
                        &namespace,
                        &subscription,
                        event_id.as_deref(),
                    )
                    .await?
                }
            };
            print(&(serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"));
            Ok(())
        }
        Command::Conformance(args) => run_conformance(*args).await,
        Command::Walkthrough {
            seed,
            re,
            namespace,
        } => ace::walkthrough::walkthrough(
            &mut io::stdout().lock(),
            seed,
            &re,
            &namespace,
            Timestamp::from_unix_millis(1_539_702_000_000),
        ),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(io::stderr(), "ace: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "ace: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("ace.yaml");
        std::fs::write(&file, "gateway-addr: 0.0.0.0:9444\nadmin-addr: 127.0.0.1:9081\ntoken-ttl: 10m\ncsr-policy: kyma\nhost: [ace.example.com]\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let cli = Cli::try_parse_from([
            "ace",
            "serve",
            "--config",
            file.to_str().unwrap_or_default(),
            "--admin-addr",
            "127.0.0.1:7081",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let (opts, _) = args.resolve().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(opts.gateway_addr, "0.0.0.0:9444", "from the file");
        assert_eq!(opts.admin_addr, "127.0.0.1:7081", "the flag wins");
        assert_eq!(
            opts.connector_internal_addr, "127.0.0.1:8080",
            "the default"
        );
        assert_eq!(opts.token_ttl, Duration::from_secs(600));
        assert!(!opts.strict_csr_policy);
        assert_eq!(opts.hosts, vec!["ace.example.com".to_owned()]);
    }

    #[test]
    fn unknown_config_keys_are_refused_clearly() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("ace.yaml");
        std::fs::write(&file, "gatway-addr: 0.0.0.0:1\n").unwrap_or_else(|e| panic!("{e}"));
        let args = ServeArgs {
            config: Some(file),
            ..ServeArgs::default()
        };
        let err = args.resolve().map(|_| ()).unwrap_err();
        assert!(err.contains("gatway-addr"), "{err}");
    }

    #[cfg(feature = "bug-zoo")]
    #[test]
    fn inject_bug_switches_bugs_on_in_the_options() {
        use ace_model::bugs::Bug;
        let cli = Cli::try_parse_from([
            "ace",
            "serve",
            "--inject-bug",
            "no-retry-on-5xx",
            "--inject-bug",
            "token-reusable",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let (opts, _) = args.resolve().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            opts.bugs.iter().collect::<Vec<_>>(),
            [Bug::TokenReusable, Bug::NoRetryOn5xx]
        );
        let err = Cli::try_parse_from(["ace", "serve", "--inject-bug", "nope"])
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(err.contains("token-cached-forever"), "{err}");
    }

    #[cfg(not(feature = "bug-zoo"))]
    #[test]
    fn a_default_build_has_no_inject_bug_flag() {
        let parsed = Cli::try_parse_from(["ace", "serve", "--inject-bug", "token-reusable"]);
        assert!(parsed.is_err());
        let args = ServeArgs::default();
        let (opts, _) = args.resolve().unwrap_or_else(|e| panic!("{e}"));
        assert!(opts.bugs.is_empty());
    }
}
