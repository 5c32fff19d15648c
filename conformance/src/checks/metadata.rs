//! The Metadata Service (seed application-connector "Register a service"; reference §2),
//! with the model predicting the validation answers.

use hyper::Method;
use serde_json::{Value, json};

use crate::check;
use crate::check::{Check, CheckResult, Failure};
use crate::context::{Ctx, Identity};
use crate::oracle::Oracle;
use ace_model::GatewayCall;

/// The checks of this area.
pub fn checks() -> Vec<Check> {
    vec![
        check!(
            "metadata.redirect",
            Metadata,
            Must,
            "reference §2.1",
            "Any method on /{re}/v1/metadata answers 301 to /{re}/v1/metadata/api.yaml, which is served.",
            [Resources],
            redirect
        ),
        check!(
            "metadata.create",
            Metadata,
            Must,
            "seed application-connector; reference §2.1, §2.4",
            "POST /{re}/v1/metadata/services answers 200 {\"id\"} and the service reads back as registered.",
            [Resources],
            create
        ),
        check!(
            "metadata.credentials.masked",
            Metadata,
            Must,
            "reference §2.5, §2.7",
            "OAuth clientId and clientSecret read back as \"********\", never in clear.",
            [Resources],
            masked
        ),
        check!(
            "metadata.labels",
            Metadata,
            Must,
            "reference §2.4",
            "Without labels a service gets {\"connected-app\": re}; a given connected-app is overwritten with the RE.",
            [Resources],
            labels
        ),
        check!(
            "metadata.list",
            Metadata,
            Must,
            "reference §2.5",
            "GET /{re}/v1/metadata/services lists {id, provider, name, description, identifier, labels} of each service.",
            [Resources],
            list
        ),
        check!(
            "metadata.identifier.conflict",
            Metadata,
            Must,
            "reference §2.4",
            "A second service with an identifier already used in the RE gets 409 \"Service with Identifier <x> already exists\".",
            [Resources],
            identifier_conflict
        ),
        check!(
            "metadata.validation",
            Metadata,
            Must,
            "reference §2.3",
            "Invalid service definitions get 400 with the message the model predicts, checks in the documented order.",
            [Resources],
            validation
        ),
        check!(
            "metadata.get.unknown",
            Metadata,
            Must,
            "reference §2.5",
            "GET of an unknown id gets 404 \"Service with ID <id> not found\".",
            [Resources],
            get_unknown
        ),
        check!(
            "metadata.update",
            Metadata,
            Must,
            "reference §2.5",
            "PUT replaces the service, keeps the stored identifier, and answers the base info; an unknown id gets 404 after body validation.",
            [Resources],
            update
        ),
        check!(
            "metadata.delete",
            Metadata,
            Must,
            "reference §2.5",
            "DELETE answers 204 (also for an unknown id), and the service is gone.",
            [Resources],
            delete
        ),
    ]
}

/// A service definition with an API (OAuth) and events.
pub fn service(identifier: Option<&str>) -> Value {
    let mut s = json!({
        "provider": "myCompany", "name": "my-service", "description": "This is some service",
        "api": {"targetUrl": "https://www.orders.com/v1/orders",
                "credentials": {"oauth": {"url": "https://oauth.orders.com/token", "clientId": "client-1", "clientSecret": "very-secret"}}},
        "events": {"spec": {"asyncapi": "1.0.0", "info": {"title": "Orders", "version": "1.0"}}}
    });
    if let Some(i) = identifier {
        s["identifier"] = json!(i);
    }
    s
}

async fn onboarded(cx: &Ctx) -> Result<(String, Identity), Failure> {
    let re = cx.fresh_re().await?;
    let id = cx.onboard(&re).await?;
    Ok((re, id))
}

async fn register(cx: &Ctx, re: &str, id: &Identity, body: &Value) -> Result<String, Failure> {
    let r = cx
        .gateway_call(
            id,
            Method::POST,
            &format!("/{re}/v1/metadata/services"),
            Some(body),
        )
        .await?;
    r.expect_status(200, "registered")?;
    r.json()["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| r.fail("200 {\"id\": \"<uuid>\"}".into()))
}

async fn redirect(cx: &Ctx) -> CheckResult {
    let (re, id) = onboarded(cx).await?;
    for method in [Method::GET, Method::POST, Method::DELETE] {
        let r = cx
            .gateway_call(&id, method, &format!("/{re}/v1/metadata"), None)
            .await?;
        r.expect_status(301, "a redirect")?;
        let want = format!("/{re}/v1/metadata/api.yaml");
        if r.response.header("location") != Some(want.as_str()) {
            return Err(r.fail(format!("Location: {want}")));
        }
    }
    cx.gateway_call(
        &id,
        Method::GET,
        &format!("/{re}/v1/metadata/api.yaml"),
        None,
    )
    .await?
    .expect_status(200, "the spec")?;
    Ok(())
}

async fn create(cx: &Ctx) -> CheckResult {
    let (re, id) = onboarded(cx).await?;
    let body = service(Some("create-1"));
    let sid = register(cx, &re, &id, &body).await?;
    if uuid_like(&sid).is_none() {
        return Err(Failure::new("a UUID as the id", sid));
    }
    let r = cx
        .gateway_call(
            &id,
            Method::GET,
            &format!("/{re}/v1/metadata/services/{sid}"),
            None,
        )
        .await?;
    let mut want = body.clone();
    want["labels"] = json!({"connected-app": re});
    want["api"]["credentials"]["oauth"]["clientId"] = json!("********");
    want["api"]["credentials"]["oauth"]["clientSecret"] = json!("********");
    r.expect(200, &want, "the service as registered")?;
    Ok(())
}

fn uuid_like(s: &str) -> Option<()> {
    let parts: Vec<_> = s.split('-').map(str::len).collect();
    (parts == [8, 4, 4, 4, 12] && s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()))
        .then_some(())
}

async fn masked(cx: &Ctx) -> CheckResult {
    let (re, id) = onboarded(cx).await?;
    let sid = register(cx, &re, &id, &service(None)).await?;
    for path in [
        format!("/{re}/v1/metadata/services/{sid}"),
        format!("/{re}/v1/metadata/services"),
    ] {
        let r = cx.gateway_call(&id, Method::GET, &path, None).await?;
        let text = r.response.text();
        if text.contains("very-secret") || text.contains("client-1") {
            return Err(r.fail("credentials masked as ********".into()));
        }
    }
    Ok(())
}

async fn labels(cx: &Ctx) -> CheckResult {
    let (re, id) = onboarded(cx).await?;
    let mut body = service(None);
    body["labels"] = json!({"connected-app": "other", "team": "a"});
    let sid = register(cx, &re, &id, &body).await?;
    let r = cx
        .gateway_call(
            &id,
            Method::GET,
            &format!("/{re}/v1/metadata/services/{sid}"),
            None,
        )
        .await?;
    if r.json()["labels"] != json!({"connected-app": re, "team": "a"}) {
        return Err(r.fail(format!(
            "labels {{\"connected-app\": \"{re}\", \"team\": \"a\"}}"
        )));
    }
    Ok(())
}

async fn list(cx: &Ctx) -> CheckResult {
    let (re, id) = onboarded(cx).await?;
    let a = register(cx, &re, &id, &service(Some("list-a"))).await?;
    let b = register(cx, &re, &id, &service(None)).await?;
    let r = cx
        .gateway_call(
            &id,
            Method::GET,
            &format!("/{re}/v1/metadata/services"),
            None,
        )
        .await?;
    let summary = |sid: &str, identifier: Option<&str>| {
        let mut v = json!({"id": sid, "provider": "myCompany", "name": "my-service",
            "description": "This is some service", "labels": {"connected-app": re}});
        if let Some(i) = identifier {
            v["identifier"] = json!(i);
        }
        v
    };
    let mut got = r.json().as_array().cloned().unwrap_or_default();
    got.sort_by_key(|v| v["id"].as_str().unwrap_or_default().to_owned());
    let mut want = vec![summary(&a, Some("list-a")), summary(&b, None)];
    want.sort_by_key(|v| v["id"].as_str().unwrap_or_default().to_owned());
    if r.status() != 200 || got != want {
        return Err(r.fail(format!("200 {}", Value::Array(want))));
    }
    Ok(())
}

async fn identifier_conflict(cx: &Ctx) -> CheckResult {
    let (re, id) = onboarded(cx).await?;
    register(cx, &re, &id, &service(Some("dup"))).await?;
    cx.gateway_call(
        &id,
        Method::POST,
        &format!("/{re}/v1/metadata/services"),
        Some(&service(Some("dup"))),
    )
    .await?
    .expect(
        409,
        &json!({"code": 409, "error": "Service with Identifier dup already exists"}),
        "a conflict",
    )?;
    Ok(())
}

/// Invalid bodies and what makes them invalid, for the validation matrix.
pub fn invalid_services() -> Vec<(&'static str, Vec<u8>)> {
    let mut cases: Vec<(&'static str, Vec<u8>)> = vec![
        ("not JSON", b"{".to_vec()),
        ("wrong type", br#"{"provider": 1}"#.to_vec()),
        ("array", b"[]".to_vec()),
    ];
    let base = service(None);
    let mut with = |what: &'static str, f: &dyn Fn(&mut Value)| {
        let mut v = base.clone();
        f(&mut v);
        cases.push((what, v.to_string().into_bytes()));
    };
    with("no provider", &|v| {
        v.as_object_mut().map(|o| o.remove("provider"));
    });
    with("empty name and description", &|v| {
        v["name"] = json!("");
        v["description"] = json!("");
    });
    with("neither api nor events", &|v| {
        let o = v.as_object_mut();
        o.map(|o| {
            o.remove("api");
            o.remove("events")
        });
    });
    with("bad targetUrl", &|v| {
        v["api"]["targetUrl"] = json!("not a url")
    });
    with("empty oauth", &|v| {
        v["api"]["credentials"] = json!({"oauth": {}})
    });
    with("api spec not an object", &|v| {
        v["api"]["spec"] = json!([1, 2])
    });
    with("events spec empty", &|v| v["events"] = json!({"spec": {}}));
    with("events spec a string", &|v| {
        v["events"] = json!({"spec": "text"})
    });
    with("documentation without type", &|v| {
        v["documentation"] = json!({"displayName": "d", "description": "d"});
    });
    cases
}

async fn validation(cx: &Ctx) -> CheckResult {
    let (re, id) = onboarded(cx).await?;
    let mut oracle = Oracle::new(&re, crate::target::first_url(&cx.target.gateway));
    let path = format!("/{re}/v1/metadata/services");
    for (what, body) in invalid_services() {
        let got = cx
            .gateway_raw(&id, Method::POST, &path, Some(&body))
            .await?;
        got.expect_predicted(
            oracle.gateway(GatewayCall::CreateService { body: body.clone() }),
            what,
        )?;
    }
    Ok(())
}

async fn get_unknown(cx: &Ctx) -> CheckResult {
    let (re, id) = onboarded(cx).await?;
    let sid = "00000000-0000-4000-8000-000000000000";
    cx.gateway_call(
        &id,
        Method::GET,
        &format!("/{re}/v1/metadata/services/{sid}"),
        None,
    )
    .await?
    .expect(
        404,
        &json!({"code": 404, "error": format!("Service with ID {sid} not found")}),
        "not found",
    )?;
    Ok(())
}

async fn update(cx: &Ctx) -> CheckResult {
    let (re, id) = onboarded(cx).await?;
    let sid = register(cx, &re, &id, &service(Some("keep-me"))).await?;
    let mut changed = json!({"provider": "otherCompany", "name": "renamed", "description": "changed",
        "identifier": "ignored", "events": {"spec": {"asyncapi": "1.0.0"}}});
    let path = format!("/{re}/v1/metadata/services/{sid}");
    cx.gateway_call(&id, Method::PUT, &path, Some(&changed))
        .await?
        .expect(
            200,
            &json!({"provider": "otherCompany", "name": "renamed", "description": "changed",
            "identifier": "keep-me", "labels": {"connected-app": re}}),
            "the base info, identifier kept",
        )?;
    changed["identifier"] = json!("keep-me");
    changed["labels"] = json!({"connected-app": re});
    cx.gateway_call(&id, Method::GET, &path, None)
        .await?
        .expect(200, &changed, "the replaced service (no api any more)")?;
    let unknown = "00000000-0000-4000-8000-000000000001";
    cx.gateway_call(
        &id,
        Method::PUT,
        &format!("/{re}/v1/metadata/services/{unknown}"),
        Some(&json!({"provider": "x"})),
    )
    .await?
    .expect_status(400, "an invalid body on an unknown id: 400 first")?;
    cx.gateway_call(&id, Method::PUT, &format!("/{re}/v1/metadata/services/{unknown}"), Some(&service(None)))
        .await?
        .expect(404, &json!({"code": 404, "error": format!("Updating {unknown} service failed, Service with ID {unknown} not found")}), "unknown id")?;
    Ok(())
}

async fn delete(cx: &Ctx) -> CheckResult {
    let (re, id) = onboarded(cx).await?;
    let sid = register(cx, &re, &id, &service(None)).await?;
    let path = format!("/{re}/v1/metadata/services/{sid}");
    cx.gateway_call(&id, Method::DELETE, &path, None)
        .await?
        .expect_status(204, "deleted")?;
    cx.gateway_call(&id, Method::GET, &path, None)
        .await?
        .expect_status(404, "gone")?;
    cx.gateway_call(&id, Method::DELETE, &path, None)
        .await?
        .expect_status(204, "deleting again is fine")?;
    Ok(())
}
