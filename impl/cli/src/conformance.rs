//! `ace conformance`: runs the suite against a live target or an embedded `ace serve`.

use ace_client::Clock;
use ace_server::ServeOptions;

use crate::args::ConformanceArgs;
use crate::print;
use crate::serve::os_seed;

/// Runs the selected checks and reports; fails if a MUST check failed (or any, `--strict`).
pub async fn run_conformance(args: ConformanceArgs) -> Result<(), String> {
    use ace_conformance::{Ctx, Resources, Restart, Selection, Target, checks, run};
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
            admin_token: args.admin_token.clone(),
            proxy: args.proxy.clone(),
            ca: args.ca.clone(),
            ..Target::local_defaults()
        }
    } else {
        #[cfg(feature = "bug-zoo")]
        let bugs: ace_model::bugs::Bugs = args.inject_bug.iter().copied().collect();
        let e = crate::embedded::Embedded::start(
            Clock::from_system_time(),
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
    match (args.kubeconfig.as_deref(), &embedded) {
        (Some("embedded"), Some(e)) => target.kubeconfig = Some(e.kubeconfig()),
        (Some("embedded"), None) => {
            return Err(
                "--kubeconfig embedded names the embedded target's own kubeconfig; give a live target's kubeconfig file".into(),
            );
        }
        (Some(file), _) => target.kubeconfig = Some(file.to_owned()),
        (None, _) => {}
    }
    if args.context.is_some() {
        target.kube_context.clone_from(&args.context);
    }
    let resources: Option<Box<dyn Resources>> = target.resources()?;
    let restart: Option<Box<dyn Restart>> = match (&embedded, &target.restart_command) {
        (Some(e), _) => Some(Box::new(crate::embedded::EmbeddedRestart(e.clone()))),
        (None, Some(command)) => Some(Box::new(ace_conformance::target::CommandRestart {
            command: command.clone(),
            probe_url: format!(
                "{}/v1/api.yaml",
                ace_conformance::target::first_url(&target.connector_internal)
            ),
        })),
        (None, None) => None,
    };
    print(&format!(
        "ace conformance: {} checks against {} ({}), profile {}, resources through {}\n",
        selected.len(),
        target.gateway,
        if live {
            "live target"
        } else {
            "embedded ace serve"
        },
        args.profile,
        match (&target.kubeconfig, &target.admin) {
            (Some(_), _) => "the Kubernetes API",
            (None, Some(_)) => "the admin API",
            (None, None) => "nothing (resource checks skipped)",
        }
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
