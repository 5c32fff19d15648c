//! `ace serve` as a process: logging, the server, and a clean stop on SIGINT or SIGTERM.

use std::io::{self, Write};

use ace_client::{Clock, TokioNet};

use crate::args::{LogFormat, ServeArgs};

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

/// A seed for the model's generator from the operating system: tokens are derived from it.
pub fn os_seed() -> ace_model::Seed {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    ace_model::Seed(bytes)
}

/// Runs `ace serve` until a signal (or a failed store) stops it.
pub async fn run_serve(args: ServeArgs) -> Result<(), String> {
    let (options, log_format) = args.resolve()?;
    init_logging(log_format);
    let data_dir = options.data_dir.clone();
    let admin_token_given = matches!(options.admin_auth, ace_server::options::AdminAuth::Token(_));
    let mut server = ace_server::start(TokioNet, options, Clock::from_system_time(), os_seed())
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
         Kubernetes API          https://{}   (kubectl: export KUBECONFIG={})\n  \
         CA certificate          {}\n  \
         admin API token         {}",
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
        server.kube,
        data_dir.join(ace_server::kubeconfig::FILE).display(),
        data_dir.join("ca.crt").display(),
        match &server.admin_token {
            Some(_) if admin_token_given => "the one given with --admin-token".to_owned(),
            Some(_) => format!(
                "{} (ace apply, get and delete read it)",
                data_dir.join(ace_server::edge::auth::TOKEN_FILE).display()
            ),
            None => "none: anyone who reaches the admin API may change every resource".to_owned(),
        }
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
