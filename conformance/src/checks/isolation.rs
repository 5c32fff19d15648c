//! Certificates open only their own RE (reference §1.6; seed application-connector).

use hyper::Method;

use crate::check;
use crate::check::{Check, CheckResult, Failure};
use crate::context::Ctx;

/// The checks of this area.
pub fn checks() -> Vec<Check> {
    vec![
        check!(
            "isolation.cn-bound",
            Isolation,
            Must,
            "reference §1.6",
            "A client certificate for RE A gets 403 on RE B's metadata and events.",
            [Resources],
            cn_bound
        ),
        check!(
            "isolation.no-certificate",
            Isolation,
            Must,
            "reference §1.6",
            "The gateway refuses callers without a client certificate (TLS alert or 4xx).",
            [Resources],
            no_certificate
        ),
        check!(
            "isolation.deleted-re",
            Isolation,
            Must,
            "reference §1.6, §2.4",
            "A certificate of a deleted RE gets no 2xx from the metadata or events API.",
            [Resources],
            deleted_re
        ),
        check!(
            "isolation.recreated-re",
            Isolation,
            Should,
            "reference §1.6 (Kyma checked the CN only)",
            "A certificate does not open a new RE of the same name as its deleted one.",
            [Resources],
            recreated_re
        ),
    ]
}

async fn cn_bound(cx: &Ctx) -> CheckResult {
    let a = cx.fresh_re().await?;
    let b = cx.fresh_re().await?;
    let id = cx.onboard(&a).await?;
    cx.gateway_call(
        &id,
        Method::GET,
        &format!("/{a}/v1/metadata/services"),
        None,
    )
    .await?
    .expect_status(200, "A's certificate opens A")?;
    for (method, path) in [
        (Method::GET, format!("/{b}/v1/metadata/services")),
        (Method::POST, format!("/{b}/v1/events")),
    ] {
        let body = crate::context::event(serde_json::json!("x"));
        let body = (method == Method::POST).then_some(&body);
        cx.gateway_call(&id, method, &path, body)
            .await?
            .expect_status(403, "A's certificate refused on B")?;
    }
    Ok(())
}

async fn no_certificate(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let url = cx.gateway(&format!("/{re}/v1/metadata/services"));
    match cx.call(Method::GET, &url, &[], None, None).await {
        Err(_) => Ok(()),
        Ok(r) if (400..500).contains(&r.status()) => Ok(()),
        Ok(r) => Err(r.fail("a refused handshake or a 4xx".into())),
    }
}

async fn deleted_re(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let id = cx.onboard(&re).await?;
    let path = format!("/{re}/v1/metadata/services");
    cx.gateway_call(&id, Method::GET, &path, None)
        .await?
        .expect_status(200, "the certificate works")?;
    cx.delete("RemoteEnvironment", None, &re).await?;
    let ev = crate::context::event(serde_json::json!("x"));
    for (method, path, body) in [
        (Method::GET, path.clone(), None),
        (Method::POST, format!("/{re}/v1/events"), Some(&ev)),
    ] {
        let r = cx.gateway_call(&id, method, &path, body).await?;
        if (200..300).contains(&r.status()) {
            return Err(r.fail("no 2xx for a deleted RE".into()));
        }
    }
    Ok(())
}

async fn recreated_re(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let id = cx.onboard(&re).await?;
    let path = format!("/{re}/v1/metadata/services");
    cx.delete("RemoteEnvironment", None, &re).await?;
    cx.create_re(&re).await?;
    let again = cx.gateway_call(&id, Method::GET, &path, None).await?;
    if cx.kyma() {
        return again
            .expect_status(200, "Kyma: the CN alone decides")
            .map(|_| ());
    }
    again
        .expect_status(403, "the old certificate refused by the new RE")
        .map(|_| ())
        .map_err(|mut f: Failure| {
            f.expected
                .push_str(" (certificates are bound to the RE they were issued for)");
            f
        })
}
