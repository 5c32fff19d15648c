//! The command line's grammar (clap) and how `ace serve`'s options are resolved: flags, then
//! `ACE_*` environment variables, then the YAML config file, then the defaults.

use std::path::PathBuf;
use std::time::Duration;

use ace_model::bus::RetryPolicy;
use ace_server::ServeOptions;
use ace_server::pki::KeyKind;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::Deserialize;

/// ACE: the Kyma Application Connector and Event Bus, modelled, implemented and checked.
///
/// `ace serve` runs the server. The other commands talk to a running server: `token` and
/// `connect` do the onboarding of an external solution; `apply`, `get` and `delete` manage
/// resources as the seeds' `kubectl` examples do.
#[derive(Debug, Parser)]
#[command(name = "ace", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: connector APIs, gateway (mutual TLS) and admin API.
    ///
    /// On first start it creates its data directory, its CA and a server certificate for the
    /// host names, and keeps them; every change is made durable before it is acknowledged.
    /// Flags override environment variables (ACE_*), which override the config file.
    Serve(Box<ServeArgs>),
    /// Make the server's identity without serving: the CA, a server certificate for the host
    /// names and the admin token, in the data directory (what `serve` makes at its first
    /// start). Replicas on one JetStream stream need the same CA: make it once, then copy the
    /// directory to every replica.
    Init {
        /// Data directory [default: $XDG_DATA_HOME/ace or ~/.local/share/ace].
        #[arg(long, env = "ACE_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Host name or IP address for the server certificate (repeat)
        /// [default: localhost, 127.0.0.1].
        #[arg(long = "host", value_delimiter = ',')]
        host: Option<Vec<String>>,
        /// Key algorithm of a new CA and server certificate [default: ecdsa-p256].
        #[arg(long, value_enum)]
        ca_key: Option<KeyArg>,
    },
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
        key_algorithm: Option<KeyArg>,
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
        /// Namespace (without one, every namespace).
        #[arg(short, long, conflicts_with = "all_namespaces")]
        namespace: Option<String>,
        /// Every namespace (the default without -n; kubectl's flag, for habit).
        #[arg(short = 'A', long)]
        all_namespaces: bool,
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
    /// Print the kubeconfig `ace serve` wrote into its data directory: kubectl pointed at the
    /// Kubernetes resource API (HTTPS, ACE's CA, the admin token). Use it with
    /// `kubectl --kubeconfig <(ace kubeconfig) get re` or save it and set KUBECONFIG.
    Kubeconfig {
        /// The server's data directory [default: $XDG_DATA_HOME/ace or ~/.local/share/ace].
        #[arg(long, env = "ACE_DATA_DIR")]
        data_dir: Option<PathBuf>,
    },
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
pub struct ConformanceArgs {
    /// List the selected checks (id, level, area, sentence, source) and exit.
    #[arg(long)]
    pub list: bool,
    /// Only these checks (ids or id prefixes such as `onboarding.csr`; repeatable).
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// Only these areas (onboarding, isolation, metadata, events, delivery, proxy, catalog,
    /// durability, model; repeatable).
    #[arg(long = "area", value_name = "AREA")]
    pub areas: Vec<ace_conformance::Area>,
    /// Only this level (must or should).
    #[arg(long)]
    pub level: Option<ace_conformance::Level>,
    /// Expected behaviour where Kyma 0.5 and ACE differ: `ace` or `kyma-0.5` (the known
    /// divergences are listed in conformance/profiles/kyma-0.5.yaml).
    #[arg(long, default_value = "ace")]
    pub profile: ace_conformance::Profile,
    /// A target file (YAML: connector_internal, connector_external, gateway, publish, admin,
    /// proxy, ca, token_ttl_seconds, restart_command, endpoint_listen, endpoint_url, ...).
    #[arg(long, value_name = "FILE")]
    pub target: Option<PathBuf>,
    /// Connector internal API of a live target (instead of a target file).
    #[arg(long, value_name = "URL", requires_all = ["connector_external", "gateway"])]
    pub connector_internal: Option<String>,
    /// Connector external API of a live target.
    #[arg(long, value_name = "URL")]
    pub connector_external: Option<String>,
    /// Gateway of a live target.
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,
    /// Publish API of a live target.
    #[arg(long, value_name = "URL")]
    pub publish: Option<String>,
    /// Admin API of a live target (the resource adapter).
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// Bearer token of the live target's admin API (ACE keeps it in admin.token in its data
    /// directory).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "ACE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// Proxy of a live target.
    #[arg(long, value_name = "URL")]
    pub proxy: Option<String>,
    /// Manage the target's resources through the Kubernetes API of this kubeconfig's cluster
    /// (a Kyma cluster, or ACE's own: `ace kubeconfig`) instead of ACE's admin API. Tokens and
    /// client certificates are supported, exec plugins are not. With the embedded target: the
    /// word `embedded` uses the embedded server's own kubeconfig.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<String>,
    /// The kubeconfig's context (default: its current context).
    #[arg(long, value_name = "NAME", requires = "kubeconfig")]
    pub context: Option<String>,
    /// CA certificate (PEM file) that signed the live target's server certificates.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<String>,
    /// Where the suite's subscriber / OAuth / API endpoint listens (default 127.0.0.1:0).
    #[arg(long, value_name = "ADDR")]
    pub endpoint_listen: Option<String>,
    /// The URL the target reaches the suite's endpoint at (default: from the listen address).
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
    /// Fail (exit status 1) when a SHOULD check fails too, not only a MUST.
    #[arg(long)]
    pub strict: bool,
    /// Checks run at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Generated sequences in the model-based phase.
    #[arg(long, default_value_t = 12)]
    pub cases: u32,
    /// Write the report as JSON.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the report as JUnit XML.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Run the embedded target with a bug of the zoo switched on (repeatable; `ace-sim bugs`
    /// describes them): the suite must then fail. Exists only in builds with the feature
    /// `bug-zoo`.
    #[cfg(feature = "bug-zoo")]
    #[arg(long = "inject-bug", value_name = "NAME", value_parser = bug_parser())]
    pub inject_bug: Vec<ace_model::bugs::Bug>,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Dead letters: list them, or queue them again.
    #[command(name = "dead-letter", subcommand)]
    DeadLetter(DeadLetterCommand),
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List dead letters (all namespaces, or one), oldest first per subscription.
    List {
        /// Namespace.
        #[arg(short, long)]
        namespace: Option<String>,
        /// Most dead letters to show; the server is asked page by page.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
        limit: u64,
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

/// Where the admin API is and how to authenticate to it.
#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Base URL of the admin API.
    #[arg(long, env = "ACE_ADMIN_URL", default_value = "http://127.0.0.1:8081")]
    pub admin_url: String,
    /// Bearer token of the admin API [default: the token in the data directory's admin.token].
    #[arg(long, env = "ACE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The server's data directory, whose admin.token to read [default: $XDG_DATA_HOME/ace or
    /// ~/.local/share/ace].
    #[arg(long, env = "ACE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Clone, Copy, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RetryPolicyArg {
    /// Exponential backoff with jitter.
    Backoff,
    /// A fixed ack wait.
    Kyma,
}

#[derive(Debug, Clone, Copy, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CsrPolicyArg {
    /// RSA keys of at least 2048 bits, no MD5 or SHA-1 signatures.
    Ace,
    /// Kyma 0.5: subject checks only.
    Kyma,
}

/// Where `ace serve` keeps its records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreArg {
    /// A redb file and its journal in the data directory.
    Embedded,
    /// A stream on a NATS JetStream cluster.
    Jetstream,
}

/// `ace serve` options. Every one can also come from the environment (`ACE_…`) or from the
/// YAML config file (same names, e.g. `gateway-addr: 0.0.0.0:8444`).
#[derive(Debug, Default, Args, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ServeArgs {
    /// YAML config file.
    #[arg(long, env = "ACE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Data directory [default: $XDG_DATA_HOME/ace or ~/.local/share/ace].
    #[arg(long, env = "ACE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Host name or IP address for the server certificate (repeat; the first is used in
    /// URLs) [default: localhost, 127.0.0.1].
    #[arg(long = "host", env = "ACE_HOSTS", value_delimiter = ',')]
    pub host: Option<Vec<String>>,
    /// Cluster domain: hand out https://connector-service.<domain> and https://gateway.<domain>.
    #[arg(long, env = "ACE_DOMAIN")]
    pub domain: Option<String>,
    /// The connector external API's URL as clients reach it, handed out in tokens and info
    /// (a load balancer in front of several replicas, say) [default: from --host or --domain
    /// and the listening port].
    #[arg(long, env = "ACE_CONNECTOR_URL")]
    pub connector_url: Option<String>,
    /// The gateway's URL as clients reach it, handed out in info [default: from --host or
    /// --domain and the listening port].
    #[arg(long, env = "ACE_GATEWAY_URL")]
    pub gateway_url: Option<String>,
    /// Connector internal API (plain HTTP) [default: 127.0.0.1:8080].
    #[arg(long, env = "ACE_CONNECTOR_INTERNAL_ADDR")]
    pub connector_internal_addr: Option<String>,
    /// Connector external API (HTTPS) [default: 127.0.0.1:8443].
    #[arg(long, env = "ACE_CONNECTOR_EXTERNAL_ADDR")]
    pub connector_external_addr: Option<String>,
    /// Gateway (HTTPS, client certificates) [default: 127.0.0.1:8444].
    #[arg(long, env = "ACE_GATEWAY_ADDR")]
    pub gateway_addr: Option<String>,
    /// Admin API, /metrics and health (plain HTTP) [default: 127.0.0.1:8081].
    #[arg(long, env = "ACE_ADMIN_ADDR")]
    pub admin_addr: Option<String>,
    /// Event Bus publish API (plain HTTP) [default: 127.0.0.1:8082].
    #[arg(long, env = "ACE_PUBLISH_ADDR")]
    pub publish_addr: Option<String>,
    /// Proxy to registered APIs (plain HTTP) [default: 127.0.0.1:8090].
    #[arg(long, env = "ACE_PROXY_ADDR")]
    pub proxy_addr: Option<String>,
    /// Kubernetes resource API for kubectl (HTTPS, the admin token) [default: 127.0.0.1:8445].
    /// `ace serve` writes a kubeconfig for it into the data directory.
    #[arg(long, env = "ACE_KUBE_ADDR")]
    pub kube_addr: Option<String>,
    /// Time a registered API or its OAuth server has to answer through the proxy [default: 10s].
    #[arg(long, env = "ACE_PROXY_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub proxy_timeout: Option<Duration>,
    /// Do not verify registered APIs' certificates, for every RE (per RE: spec.skipVerify).
    #[arg(long, env = "ACE_PROXY_SKIP_VERIFY")]
    #[serde(default)]
    pub proxy_skip_verify: bool,
    /// Let subscribers, registered APIs and OAuth servers be on loopback, link-local, private
    /// and unique-local addresses (local development); ACE's own listeners stay refused.
    #[arg(long, env = "ACE_ALLOW_PRIVATE_EGRESS")]
    #[serde(default)]
    pub allow_private_egress: bool,
    /// A network (CIDR or address) or host name ACE may connect to on someone else's behalf
    /// whatever its addresses (repeat, or separate with commas) [default: public addresses only].
    #[arg(long = "egress-allow", env = "ACE_EGRESS_ALLOW", value_delimiter = ',')]
    pub egress_allow: Option<Vec<String>>,
    /// The admin API's bearer token [default: one made at the first start and kept in
    /// admin.token in the data directory].
    #[arg(long, env = "ACE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Serve the admin API without a token: anyone who reaches its listener may change every
    /// resource.
    #[arg(long, env = "ACE_NO_ADMIN_AUTH", conflicts_with = "admin_token")]
    #[serde(default)]
    pub no_admin_auth: bool,
    /// Do not verify the certificates of https subscribers (Kyma's chart did not).
    #[arg(long, env = "ACE_PUSH_TLS_SKIP_VERIFY")]
    #[serde(default)]
    pub push_tls_skip_verify: bool,
    /// PEM file of CA certificates trusted for https subscribers (ACE's own CA always is).
    #[arg(long, env = "ACE_PUSH_CA")]
    pub push_ca: Option<PathBuf>,
    /// When failed deliveries are retried: `backoff` (exponential with jitter) or `kyma`
    /// (a fixed ack wait, as NATS Streaming redelivered) [default: backoff].
    #[arg(long, env = "ACE_RETRY_POLICY", value_enum)]
    pub retry_policy: Option<RetryPolicyArg>,
    /// First backoff wait, e.g. 1s [default: 1s].
    #[arg(long, env = "ACE_RETRY_INITIAL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub retry_initial: Option<Duration>,
    /// Longest backoff wait [default: 60s].
    #[arg(long, env = "ACE_RETRY_MAX", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub retry_max: Option<Duration>,
    /// The fixed wait of the `kyma` retry policy [default: 30s].
    #[arg(long, env = "ACE_ACK_WAIT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub ack_wait: Option<Duration>,
    /// How long an event stays owed to a subscription before it is dead-lettered [default: 24h].
    #[arg(long, env = "ACE_RETENTION", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub retention: Option<Duration>,
    /// Most bytes of event bodies kept in memory; the backlog beyond it is read back from
    /// disk when pushed [default: 67108864].
    #[arg(long, env = "ACE_MAX_RESIDENT_BODY_BYTES")]
    pub max_resident_body_bytes: Option<usize>,
    /// Largest event in bytes (413 request_body_too_large beyond) [default: 65536].
    #[arg(long, env = "ACE_MAX_EVENT_BYTES")]
    pub max_event_bytes: Option<usize>,
    /// Owed events each subscription keeps in memory (at least its max_inflight); the rest
    /// of a backlog stays on disk and is read in order [default: 2048].
    #[arg(long, env = "ACE_BACKLOG_WINDOW", value_parser = clap::value_parser!(u64).range(1..))]
    pub backlog_window: Option<u64>,
    /// Most events a subscription may owe; beyond it its oldest owed events are
    /// dead-lettered, counted in its status [default: 1000000].
    #[arg(long, env = "ACE_MAX_BACKLOG_EVENTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_backlog_events: Option<u64>,
    /// Most dead letters a subscription keeps; beyond it the oldest are discarded, counted
    /// in its status [default: 1000000].
    #[arg(long, env = "ACE_MAX_DEAD_LETTERS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_dead_letters: Option<u64>,
    /// Disk budget for accepted events (metadata and bodies), e.g. 4GiB or 500MB; at it,
    /// publishes are refused with 507 until subscribers catch up [default: 4GiB].
    #[arg(long, env = "ACE_MAX_STORE_BYTES", value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub max_store_bytes: Option<u64>,
    /// Where the records and events are kept: `embedded` (a redb file in the data
    /// directory) or `jetstream` (a stream on a NATS JetStream cluster, see --nats)
    /// [default: embedded].
    #[arg(long, env = "ACE_STORE", value_enum)]
    pub store: Option<StoreArg>,
    /// NATS servers of the JetStream cluster (comma-separated; any that answers will do),
    /// with --store jetstream. nats-server 2.11 or newer [default: nats://127.0.0.1:4222].
    #[arg(long, env = "ACE_NATS", value_delimiter = ',')]
    pub nats: Option<Vec<String>>,
    /// The JetStream stream holding ACE's log; its subjects start with its name in lower
    /// case. One `ace serve` per stream [default: ACE].
    #[arg(long, env = "ACE_NATS_STREAM")]
    pub nats_stream: Option<String>,
    /// Servers that keep a copy of the stream, when ACE creates it (3 survives the loss of
    /// one) [default: 3].
    #[arg(long, env = "ACE_NATS_REPLICAS", value_parser = clap::value_parser!(u64).range(1..=5))]
    pub nats_replicas: Option<u64>,
    /// NATS credentials file (.creds), if the servers require one.
    #[arg(long, env = "ACE_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// PEM file of the CA certificate(s) that sign the NATS servers' certificates: ACE then
    /// talks to them over TLS only, verifying them against it (`tls://` URLs, or `nats://`).
    #[arg(long, env = "ACE_NATS_CA")]
    pub nats_ca: Option<PathBuf>,
    /// PEM client certificate for NATS servers that verify their clients (with --nats-key).
    #[arg(long, env = "ACE_NATS_CERT", requires = "nats_key")]
    pub nats_cert: Option<PathBuf>,
    /// PEM private key of --nats-cert.
    #[arg(long, env = "ACE_NATS_KEY", requires = "nats_cert")]
    pub nats_key: Option<PathBuf>,
    /// Size limit of the stream, when ACE creates it, e.g. 10GiB; at it the servers refuse
    /// new messages (never dropping old ones), so ACE refuses publishes with 507 once events
    /// fill a quarter of it (the log and its snapshots need the rest) [default: none].
    #[arg(long, env = "ACE_NATS_MAX_BYTES", value_parser = parse_size)]
    #[serde(default, deserialize_with = "size_opt")]
    pub nats_max_bytes: Option<u64>,
    /// How long an append or a read of the log keeps trying while the JetStream cluster
    /// cannot answer (a leader election, say) before the server stops [default: 30s].
    #[arg(long, env = "ACE_NATS_UNAVAILABLE_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub nats_unavailable_timeout: Option<Duration>,
    /// This replica's name among the `ace serve` processes on one stream, as the lease and
    /// the logs show it [default: ace-<process id>].
    #[arg(long, env = "ACE_REPLICA_NAME")]
    pub replica_name: Option<String>,
    /// How long the lead lasts without a renewal: how soon another replica takes over when
    /// the leader dies, e.g. 6s [default: 6s].
    #[arg(long, env = "ACE_REPLICA_LEASE", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub replica_lease: Option<Duration>,
    /// Key algorithm of a new CA and server certificate [default: ecdsa-p256].
    #[arg(long, env = "ACE_CA_KEY", value_enum)]
    pub ca_key: Option<KeyArg>,
    /// Validity of a connector token, e.g. 5m [default: 5m].
    #[arg(long, env = "ACE_TOKEN_TTL", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub token_ttl: Option<Duration>,
    /// Validity of issued client certificates, e.g. 365days [default: 365days].
    #[arg(long, env = "ACE_CERTIFICATE_VALIDITY", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub certificate_validity: Option<Duration>,
    /// CSR policy [default: ace].
    #[arg(long, env = "ACE_CSR_POLICY", value_enum)]
    pub csr_policy: Option<CsrPolicyArg>,
    /// Most connections open at once [default: 1024].
    #[arg(long, env = "ACE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Time a client has to send a request's headers, from their first byte (on a new
    /// connection, from the connection's start) [default: 10s].
    #[arg(long, env = "ACE_HEADER_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub header_timeout: Option<Duration>,
    /// How long a keep-alive connection stays open with nothing to do between an answer and
    /// the next request [default: 60s].
    #[arg(long, env = "ACE_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    #[serde(default, with = "humantime_serde_opt")]
    pub idle_timeout: Option<Duration>,
    /// Largest request body in bytes on the connector, events and admin APIs [default: 65536].
    #[arg(long, env = "ACE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Base URL of the proxy for registered APIs [default: http://127.0.0.1:8090].
    #[arg(long, env = "ACE_PROXY_URL")]
    pub proxy_url: Option<String>,
    /// Log format [default: human]; the level comes from RUST_LOG (default info).
    #[arg(long, env = "ACE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
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
    pub inject_bug: Vec<ace_model::bugs::Bug>,
}

/// `--inject-bug`: one of the zoo's names (listed in `--help`).
#[cfg(feature = "bug-zoo")]
fn bug_parser() -> impl clap::builder::TypedValueParser<Value = ace_model::bugs::Bug> {
    use ace_model::bugs::Bug;
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Bug::ALL.map(Bug::name))
        .try_map(|name| name.parse::<Bug>())
}

/// A size in bytes: a number with an optional unit (`4GiB`, `500MB`, `1048576`).
fn parse_size(text: &str) -> Result<u64, String> {
    let size: bytesize::ByteSize = text.trim().parse()?;
    if size.as_u64() == 0 {
        return Err("the budget must be more than 0 bytes".into());
    }
    Ok(size.as_u64())
}

fn size_opt<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Option::<Size>::deserialize(d)? {
        None => Ok(None),
        Some(Size::Bytes(n)) => Ok(Some(n)),
        Some(Size::Text(t)) => parse_size(&t).map(Some).map_err(serde::de::Error::custom),
    }
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
    /// The store named by --store and the --nats options.
    #[cfg(feature = "jetstream")]
    fn store_kind(&self, file: &ServeArgs) -> Result<ace_server::options::StoreKind, String> {
        use ace_server::options::StoreKind;
        use ace_server::store::jetstream::JetStreamOptions;
        let d = JetStreamOptions::default();
        let nats = self.nats.clone().or_else(|| file.nats.clone());
        match self.store.or(file.store) {
            Some(StoreArg::Jetstream) => Ok(StoreKind::JetStream(JetStreamOptions {
                servers: nats.unwrap_or(d.servers),
                stream: self
                    .nats_stream
                    .clone()
                    .or_else(|| file.nats_stream.clone())
                    .unwrap_or(d.stream),
                replicas: self
                    .nats_replicas
                    .or(file.nats_replicas)
                    .map_or(d.replicas, |n| usize::try_from(n).unwrap_or(1)),
                credentials: self.nats_creds.clone().or_else(|| file.nats_creds.clone()),
                tls: ace_server::store::jetstream::NatsTls {
                    ca: self.nats_ca.clone().or_else(|| file.nats_ca.clone()),
                    client: match (
                        self.nats_cert.clone().or_else(|| file.nats_cert.clone()),
                        self.nats_key.clone().or_else(|| file.nats_key.clone()),
                    ) {
                        (Some(cert), Some(key)) => Some((cert, key)),
                        (None, None) => None,
                        _ => {
                            return Err(
                                "--nats-cert and --nats-key go together: give both or neither"
                                    .into(),
                            );
                        }
                    },
                },
                max_bytes: self.nats_max_bytes.or(file.nats_max_bytes),
                unavailable_timeout: self
                    .nats_unavailable_timeout
                    .or(file.nats_unavailable_timeout)
                    .unwrap_or(d.unavailable_timeout),
                replica: ace_server::replica::ReplicaOptions {
                    name: self
                        .replica_name
                        .clone()
                        .or_else(|| file.replica_name.clone())
                        .unwrap_or(d.replica.name),
                    lease: {
                        let lease = self
                            .replica_lease
                            .or(file.replica_lease)
                            .unwrap_or(d.replica.lease);
                        if lease < std::time::Duration::from_secs(1) {
                            return Err(format!(
                                "--replica-lease {lease:?} is too short: at least 1s"
                            ));
                        }
                        lease
                    },
                    ..d.replica
                },
            })),
            Some(StoreArg::Embedded) | None if nats.is_some() => {
                Err("--nats names a JetStream cluster: add --store jetstream".into())
            }
            Some(StoreArg::Embedded) | None => Ok(StoreKind::Embedded),
        }
    }

    /// The store named by --store: this build has the embedded one only.
    #[cfg(not(feature = "jetstream"))]
    fn store_kind(&self, file: &ServeArgs) -> Result<ace_server::options::StoreKind, String> {
        match self.store.or(file.store) {
            Some(StoreArg::Jetstream) => {
                Err("this build of ace has no JetStream store (feature `jetstream`)".into())
            }
            _ => Ok(ace_server::options::StoreKind::Embedded),
        }
    }

    /// Flags and environment over the config file over the defaults.
    pub fn resolve(self) -> Result<(ServeOptions, LogFormat), String> {
        let file: ServeArgs = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("config {}: {e}", path.display()))?;
                serde_yaml_ng::from_str(&text)
                    .map_err(|e| format!("config {}: {e}", path.display()))?
            }
            None => ServeArgs::default(),
        };
        let store = self.store_kind(&file)?;
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
            connector_url: self.connector_url.or(file.connector_url),
            gateway_url: self.gateway_url.or(file.gateway_url),
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
            kube_addr: self.kube_addr.or(file.kube_addr).unwrap_or(d.kube_addr),
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
            ca_key: self.ca_key.or(file.ca_key).map_or(d.ca_key, KeyKind::from),
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
            header_timeout: self
                .header_timeout
                .or(file.header_timeout)
                .unwrap_or(d.header_timeout),
            idle_timeout: self
                .idle_timeout
                .or(file.idle_timeout)
                .unwrap_or(d.idle_timeout),
            proxy_url: self.proxy_url.or(file.proxy_url).unwrap_or(d.proxy_url),
            limits,
            ..d
        };
        let mut options = options;
        #[cfg(feature = "bug-zoo")]
        {
            options.bugs = self.inject_bug.iter().copied().collect();
        }
        options.egress.allow_private = self.allow_private_egress || file.allow_private_egress;
        for allowed in self.egress_allow.or(file.egress_allow).unwrap_or_default() {
            let allowed = allowed.trim();
            if let Ok(net) = allowed.parse::<ipnet::IpNet>() {
                options.egress.allowed_networks.push(net);
            } else if let Ok(ip) = allowed.parse::<std::net::IpAddr>() {
                options.egress.allowed_networks.push(ipnet::IpNet::from(ip));
            } else if !allowed.is_empty() && !allowed.contains(['/', ' ']) {
                options.egress.allowed_hosts.push(allowed.to_owned());
            } else {
                return Err(format!(
                    "--egress-allow {allowed:?}: not a network (10.0.0.0/8), an address or a host name"
                ));
            }
        }
        options.admin_auth = match (
            self.admin_token.or(file.admin_token),
            self.no_admin_auth || file.no_admin_auth,
        ) {
            (_, true) => ace_server::options::AdminAuth::Off,
            (Some(token), false) => ace_server::options::AdminAuth::Token(token),
            (None, false) => ace_server::options::AdminAuth::Generated,
        };
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
        if let Some(window) = self.backlog_window.or(file.backlog_window) {
            bus.backlog_window = usize::try_from(window).unwrap_or(usize::MAX);
        }
        bus.max_backlog_events = self
            .max_backlog_events
            .or(file.max_backlog_events)
            .unwrap_or(bus.max_backlog_events);
        bus.max_dead_letters = self
            .max_dead_letters
            .or(file.max_dead_letters)
            .unwrap_or(bus.max_dead_letters);
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
        options.max_store_bytes = self
            .max_store_bytes
            .or(file.max_store_bytes)
            .unwrap_or(options.max_store_bytes);
        options.store = store;
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

impl AdminArgs {
    /// The admin API to call: the token given, else the one in the data directory (none if
    /// the server keeps none there: its authentication is off).
    pub fn admin(&self) -> Result<crate::commands::Admin, String> {
        let token = match &self.admin_token {
            Some(token) => Some(token.clone()),
            None => {
                let dir = self
                    .data_dir
                    .clone()
                    .unwrap_or_else(ace_server::options::default_data_dir);
                let path = dir.join(ace_server::edge::auth::TOKEN_FILE);
                match std::fs::read_to_string(&path) {
                    Ok(text) => Some(text.trim().to_owned()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(e) => return Err(format!("{}: {e}", path.display())),
                }
            }
        };
        Ok(crate::commands::Admin {
            url: self.admin_url.clone(),
            token,
        })
    }
}

/// Key algorithms, as the command line and the config file name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
pub enum KeyArg {
    /// ECDSA on P-256 with SHA-256 (fast; the default).
    #[value(name = "ecdsa-p256")]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// RSA 2048 with PKCS#1 v1.5 SHA-256 (what Kyma's `key-algorithm: rsa2048` asks for).
    #[value(name = "rsa2048")]
    #[serde(rename = "rsa2048")]
    Rsa2048,
}

impl From<KeyArg> for KeyKind {
    fn from(arg: KeyArg) -> Self {
        match arg {
            KeyArg::EcdsaP256 => KeyKind::EcdsaP256,
            KeyArg::Rsa2048 => KeyKind::Rsa2048,
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
        std::fs::write(&file, "gateway-addr: 0.0.0.0:9444\nadmin-addr: 127.0.0.1:9081\ntoken-ttl: 10m\nheader-timeout: 2s\nidle-timeout: 2m\ncsr-policy: kyma\nhost: [ace.example.com]\n")
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
        assert_eq!(opts.header_timeout, Duration::from_secs(2));
        assert_eq!(opts.idle_timeout, Duration::from_secs(120));
        assert_eq!(opts.proxy_timeout, Duration::from_secs(10), "the default");
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
