//! `ace`: the command line of ACE. `ace serve` runs the server ([`ace_server`]); `token` and
//! `connect` do an external solution's onboarding; `apply`, `get` and `delete` manage
//! resources as the seeds' `kubectl` examples do; `conformance` checks a deployment
//! ([`ace_conformance`]); `walkthrough` prints the seeds' flow as the model decides it.
//!
//! This crate is the only place where errors become text: the libraries' typed errors are
//! printed here.

#![forbid(unsafe_code)]
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod args;
pub mod commands;
pub mod conformance;
pub mod embedded;
pub mod manifest;
pub mod serve;
pub mod table;
pub mod walkthrough;

use std::io::{self, Read, Write};
use std::path::PathBuf;

use ace_client::TlsOptions;
use ace_model::Timestamp;

use crate::args::{Cli, Command, DeadLetterCommand, EventsCommand, Output};

/// The text of `path`, or of standard input for `-`.
pub fn read_input(path: &PathBuf) -> Result<String, String> {
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

/// Writes `text` to standard output.
pub fn print(text: &str) {
    let _ = io::stdout().lock().write_all(text.as_bytes());
}

/// Runs one command line.
pub async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve(args) => serve::run_serve(*args).await,
        Command::Init {
            data_dir,
            host,
            ca_key,
        } => {
            let d = ace_server::ServeOptions::default();
            let opts = ace_server::ServeOptions {
                data_dir: data_dir.unwrap_or(d.data_dir),
                hosts: host.unwrap_or(d.hosts),
                ca_key: ca_key.map_or(d.ca_key, Into::into),
                ..ace_server::ServeOptions::default()
            };
            let clock = ace_client::Clock::from_system_time();
            let identity = ace_server::serve::identity(&opts, clock).map_err(|e| e.to_string())?;
            print(&format!(
                "Identity in {}: ca.crt (SHA-256 {}), ca.key, server.crt for {}, server.key, \
                 admin.token.\nCopy the directory to every replica; keep ca.key secret.\n",
                opts.data_dir.display(),
                identity.ca.sha256_hex(),
                opts.hosts.join(", ")
            ));
            Ok(())
        }
        Command::Token { re, internal_url } => {
            print(&format!("{}\n", commands::token(&internal_url, &re).await?));
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
                tls.roots = ace_server::pki::certs_from_pem(&pem).map_err(|e| e.to_string())?;
            }
            let c = commands::connect(&url, &out, &tls, key_algorithm.map(Into::into)).await?;
            print(&format!(
                "Connected. Wrote key.pem, cert.pem, ca.pem and connection.json to {}\n  metadata: {}\n  events:   {}\n",
                c.dir.display(),
                c.metadata_url,
                c.events_url
            ));
            Ok(())
        }
        Command::Apply { file, admin } => {
            for line in commands::apply(&admin.admin()?, &read_input(&file)?).await? {
                print(&format!("{line}\n"));
            }
            Ok(())
        }
        Command::Get {
            kind,
            name,
            namespace,
            all_namespaces: _,
            output,
            admin,
        } => {
            let value = commands::get(
                &admin.admin()?,
                &kind,
                name.as_deref(),
                namespace.as_deref(),
            )
            .await?;
            let text = match output {
                Output::Table => table::table(&kind, &value, namespace.is_none()),
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
                (Some(file), _, _) => manifest::parse_manifests(&read_input(&file)?)?
                    .into_iter()
                    .map(|m| (m.kind, m.name, m.namespace))
                    .collect(),
                (None, Some(kind), Some(name)) => vec![(kind, name, namespace)],
                _ => return Err("give KIND NAME or -f FILE".into()),
            };
            for (kind, name, ns) in targets {
                print(&format!(
                    "{}\n",
                    commands::delete(&admin.admin()?, &kind, &name, ns.as_deref()).await?
                ));
            }
            Ok(())
        }
        Command::Events {
            command: EventsCommand::DeadLetter(command),
        } => {
            let value = match command {
                DeadLetterCommand::List {
                    namespace,
                    limit,
                    admin,
                } => {
                    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
                    let (list, more) =
                        commands::dead_letters(&admin.admin()?, namespace.as_deref(), limit)
                            .await?;
                    if more {
                        eprintln!("(the first {limit} dead letters; --limit shows more)");
                    }
                    list
                }
                DeadLetterCommand::Replay {
                    subscription,
                    namespace,
                    event_id,
                    admin,
                } => {
                    commands::replay(
                        &admin.admin()?,
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
        Command::Conformance(args) => conformance::run_conformance(*args).await,
        Command::Kubeconfig { data_dir } => {
            let path = data_dir
                .unwrap_or_else(ace_server::options::default_data_dir)
                .join(ace_server::kubeconfig::FILE);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "cannot read {}: {e} (ace serve writes it at start; is this its --data-dir?)",
                    path.display()
                )
            })?;
            print(&text);
            Ok(())
        }
        Command::Walkthrough {
            seed,
            re,
            namespace,
        } => walkthrough::walkthrough(
            &mut io::stdout().lock(),
            seed,
            &re,
            &namespace,
            Timestamp::from_unix_millis(1_539_702_000_000),
        ),
    }
}
