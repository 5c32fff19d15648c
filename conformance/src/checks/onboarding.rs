//! Onboarding: tokens, the one-time info URL, CSRs and the issued certificate (seed
//! application-connector "Get the client certificate"; reference §1).

use std::time::Duration;

use hyper::Method;
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::check;
use crate::check::{Check, CheckResult, Failure};
use crate::context::{CsrStep, Ctx, csr_body, decode_chain, make_csr, make_csr_dn, parse_subject};

/// The checks of this area.
pub fn checks() -> Vec<Check> {
    vec![
        check!(
            "onboarding.token.created",
            Onboarding,
            Must,
            "seed application-connector; reference §1.2",
            "POST /v1/remoteenvironments/{re}/tokens answers 201 with the token and the configuration URL holding it.",
            [Resources],
            token_created
        ),
        check!(
            "onboarding.token.replaced",
            Onboarding,
            Must,
            "reference §1.3",
            "A second token for the same RE replaces the first: the first gets 403 \"Invalid token.\", the second works.",
            [Resources],
            token_replaced
        ),
        check!(
            "onboarding.info.one-time",
            Onboarding,
            Must,
            "seed application-connector; reference §1.3",
            "The configuration URL works once; a second call gets 403 \"Invalid token.\".",
            [Resources],
            info_one_time
        ),
        check!(
            "onboarding.info.body",
            Onboarding,
            Must,
            "seed application-connector; reference §1.2",
            "info answers csrUrl, api.metadataUrl, api.eventsUrl, api.certificatesUrl and certificate.subject (OU,O,L,ST,C,CN=re), extensions and key-algorithm.",
            [Resources],
            info_body
        ),
        check!(
            "onboarding.info.token-missing",
            Onboarding,
            Must,
            "reference §1.2",
            "info without a token gets 403 \"Token not provided.\".",
            [],
            info_token_missing
        ),
        check!(
            "onboarding.token.scoped",
            Onboarding,
            Must,
            "reference §1.3",
            "A token works only for the RE it was issued for.",
            [Resources],
            token_scoped
        ),
        check!(
            "onboarding.token.expires",
            Onboarding,
            Must,
            "reference §1.3",
            "A token is refused with 403 once its lifetime has passed.",
            [Resources, ShortTokenTtl],
            token_expires
        ),
        check!(
            "onboarding.certificate.chain",
            Onboarding,
            Must,
            "seed application-connector; reference §1.5",
            "client-certs answers 201 with crt: base64 of the client certificate (subject of the CSR, client auth) then the CA certificate that signed it.",
            [Resources],
            certificate_chain
        ),
        check!(
            "onboarding.certificate.one-time",
            Onboarding,
            Must,
            "reference §1.3",
            "The csrUrl's token is consumed by a successful client-certs: a second CSR on it gets 403.",
            [Resources],
            certificate_one_time
        ),
        check!(
            "onboarding.csr.cn",
            Onboarding,
            Must,
            "reference §1.4",
            "A CSR whose CN is not the RE gets 400 \"CSR: Invalid CName provided.\" and the token stays usable.",
            [Resources],
            csr_cn
        ),
        check!(
            "onboarding.csr.subject",
            Onboarding,
            Must,
            "reference §1.4",
            "A CSR with a missing or different subject field gets 400 with that field's message, CN then C, O, OU, L, ST.",
            [Resources],
            csr_subject
        ),
        check!(
            "onboarding.csr.encoding",
            Onboarding,
            Must,
            "reference §1.4",
            "A csr that is not base64, or holds no PEM block, gets 400 with the documented message.",
            [Resources],
            csr_encoding
        ),
        check!(
            "onboarding.csr.malformed-json",
            Onboarding,
            Should,
            "reference §1.4 (Kyma answers 500)",
            "A client-certs body that is not JSON is a client error (400), not a server error.",
            [Resources],
            csr_malformed_json
        ),
        check!(
            "onboarding.api-spec",
            Onboarding,
            Must,
            "reference §1.2",
            "GET /v1 on the external API redirects (301) to /v1/api.yaml, which is served.",
            [],
            api_spec
        ),
    ]
}

fn error_body(code: u16, message: &str) -> Value {
    json!({"code": code, "error": message})
}

async fn token_created(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let t = cx.token(&re).await?;
    t.expect_status(201, "a token")?;
    let body = t.json();
    let token = body["token"].as_str().unwrap_or_default();
    let url = body["url"].as_str().unwrap_or_default();
    if token.is_empty() || !url.contains(&format!("/v1/remoteenvironments/{re}/info?token={token}"))
    {
        return Err(t.fail(format!(
            "201 {{\"url\": \".../v1/remoteenvironments/{re}/info?token=<token>\", \"token\": \"<token>\"}}"
        )));
    }
    if token.len() < 43 {
        return Err(
            t.fail("a token of at least 256 random bits (Kyma: 64 bytes, 88 characters)".into())
        );
    }
    Ok(())
}

async fn token_replaced(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let first = cx.configuration_url(&re).await?;
    let second = cx.configuration_url(&re).await?;
    let old = cx.call(Method::GET, &first, &[], None, None).await?;
    old.expect(
        403,
        &error_body(403, "Invalid token."),
        "the replaced token refused",
    )?;
    cx.call(Method::GET, &second, &[], None, None)
        .await?
        .expect_status(200, "the newest token accepted")?;
    Ok(())
}

async fn info_one_time(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let url = cx.configuration_url(&re).await?;
    cx.call(Method::GET, &url, &[], None, None)
        .await?
        .expect_status(200, "the first use")?;
    cx.call(Method::GET, &url, &[], None, None).await?.expect(
        403,
        &error_body(403, "Invalid token."),
        "the second use refused",
    )?;
    Ok(())
}

async fn info_body(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let info = cx.info(&re).await?;
    let b = info.json();
    let s = |p: &str| {
        b.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let subject = s("/certificate/subject");
    let order: Vec<&str> = subject
        .split(',')
        .map(|p| p.split('=').next().unwrap_or_default())
        .collect();
    let ok = s("/csrUrl").contains(&format!("/v1/remoteenvironments/{re}/client-certs?token="))
        && s("/api/metadataUrl").ends_with(&format!("/{re}/v1/metadata/services"))
        && s("/api/eventsUrl").ends_with(&format!("/{re}/v1/events"))
        && s("/api/certificatesUrl").ends_with(&format!("/v1/remoteenvironments/{re}"))
        && order == ["OU", "O", "L", "ST", "C", "CN"]
        && subject.ends_with(&format!("CN={re}"))
        && b.pointer("/certificate/extensions").is_some()
        && s("/certificate/key-algorithm") == "rsa2048";
    if ok {
        Ok(())
    } else {
        Err(info.fail(format!(
            "200 {{\"csrUrl\": \".../v1/remoteenvironments/{re}/client-certs?token=...\", \"api\": {{\"metadataUrl\": \".../{re}/v1/metadata/services\", \"eventsUrl\": \".../{re}/v1/events\", \"certificatesUrl\": \".../v1/remoteenvironments/{re}\"}}, \"certificate\": {{\"subject\": \"OU=..,O=..,L=..,ST=..,C=..,CN={re}\", \"extensions\": \"\", \"key-algorithm\": \"rsa2048\"}}}}"
        )))
    }
}

async fn info_token_missing(cx: &Ctx) -> CheckResult {
    let re = cx.name("re");
    for query in ["", "?token="] {
        cx.call(
            Method::GET,
            &cx.external(&format!("/v1/remoteenvironments/{re}/info{query}")),
            &[],
            None,
            None,
        )
        .await?
        .expect(
            403,
            &error_body(403, "Token not provided."),
            "no token refused",
        )?;
    }
    Ok(())
}

async fn token_scoped(cx: &Ctx) -> CheckResult {
    let a = cx.fresh_re().await?;
    let b = cx.fresh_re().await?;
    let url = cx.configuration_url(&a).await?;
    let foreign = url.replace(
        &format!("/remoteenvironments/{a}/"),
        &format!("/remoteenvironments/{b}/"),
    );
    cx.call(Method::GET, &foreign, &[], None, None)
        .await?
        .expect(
            403,
            &error_body(403, "Invalid token."),
            "A's token refused for B",
        )?;
    Ok(())
}

async fn token_expires(cx: &Ctx) -> CheckResult {
    let ttl = cx.target.token_ttl_seconds.unwrap_or(u64::MAX);
    let re = cx.fresh_re().await?;
    let url = cx.configuration_url(&re).await?;
    tokio::time::sleep(Duration::from_millis(ttl.saturating_mul(1000) + 1200)).await;
    cx.call(Method::GET, &url, &[], None, None).await?.expect(
        403,
        &error_body(403, "Invalid token."),
        &format!("the token refused after its {ttl} s"),
    )?;
    Ok(())
}

async fn certificate_chain(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let step = cx.csr_step(&re).await?;
    let (csr, _key) = make_csr(&step.subject).map_err(Failure::setup)?;
    let reply = cx.post_csr(&step.csr_url, &csr_body(&csr)).await?;
    reply.expect_status(201, "a certificate")?;
    let chain = decode_chain(&reply.json()).map_err(|e| reply.fail(format!("a crt: {e}")))?;
    let blocks = pem::parse_many(chain.as_bytes()).map_err(|e| reply.fail(format!("PEM: {e}")))?;
    if blocks.len() != 2 {
        return Err(reply.fail(format!(
            "two PEM certificates in crt, found {}",
            blocks.len()
        )));
    }
    let (_, client) = X509Certificate::from_der(blocks[0].contents())
        .map_err(|e| reply.fail(format!("a client certificate: {e}")))?;
    let (_, ca) = X509Certificate::from_der(blocks[1].contents())
        .map_err(|e| reply.fail(format!("a CA certificate: {e}")))?;
    client
        .verify_signature(Some(ca.public_key()))
        .map_err(|e| {
            reply.fail(format!(
                "the client certificate signed by the second one: {e}"
            ))
        })?;
    let cn = client
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default();
    if cn != re {
        return Err(reply.fail(format!("CN={re} in the client certificate, found {cn:?}")));
    }
    let client_auth = client
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|e| e.value.client_auth);
    if !client_auth {
        return Err(reply.fail("extended key usage clientAuth".into()));
    }
    Ok(())
}

async fn certificate_one_time(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let step = cx.csr_step(&re).await?;
    let (csr, _) = make_csr(&step.subject).map_err(Failure::setup)?;
    cx.post_csr(&step.csr_url, &csr_body(&csr))
        .await?
        .expect_status(201, "the first CSR")?;
    cx.post_csr(&step.csr_url, &csr_body(&csr)).await?.expect(
        403,
        &error_body(403, "Invalid token."),
        "the token consumed",
    )?;
    Ok(())
}

async fn csr_cn(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let step = cx.csr_step(&re).await?;
    let (csr_url, subject) = (step.csr_url.as_str(), step.subject.as_str());
    let wrong = subject.replace(&format!("CN={re}"), "CN=someone-else");
    let (csr, _) = make_csr(&wrong).map_err(Failure::setup)?;
    cx.post_csr(csr_url, &csr_body(&csr)).await?.expect(
        400,
        &error_body(400, "CSR: Invalid CName provided."),
        "a foreign CN refused",
    )?;
    let (csr, _) = make_csr(subject).map_err(Failure::setup)?;
    cx.post_csr(csr_url, &csr_body(&csr))
        .await?
        .expect_status(201, "the token still usable after a refused CSR")?;
    Ok(())
}

async fn csr_subject(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let CsrStep { csr_url, subject } = cx.csr_step(&re).await?;
    let csr_url = csr_url.as_str();
    let field = |k: &str| {
        subject
            .split(',')
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .unwrap_or_default()
            .to_owned()
    };
    let cases = [
        ("C", None, "CSR: No country provided."),
        ("O", Some("Other"), "CSR: Invalid organization provided."),
        ("OU", None, "CSR: No organizational unit provided."),
        ("L", Some("Elsewhere"), "CSR: Invalid locality provided."),
        ("ST", None, "CSR: No province provided."),
    ];
    for (key, value, message) in cases {
        let changed: Vec<String> = ["OU", "O", "L", "ST", "C", "CN"]
            .iter()
            .filter_map(|k| {
                if *k == key {
                    value.map(|v| format!("{k}={v}"))
                } else {
                    Some(format!("{k}={}", field(k)))
                }
            })
            .collect();
        let (csr, _) = make_csr_dn(parse_subject(&changed.join(","))).map_err(Failure::setup)?;
        cx.post_csr(csr_url, &csr_body(&csr)).await?.expect(
            400,
            &error_body(400, message),
            &format!("{key} checked"),
        )?;
    }
    Ok(())
}

async fn csr_encoding(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let csr_url = cx.csr_step(&re).await?.csr_url;
    cx.post_csr(&csr_url, br#"{"csr": "%%% not base64 %%%"}"#)
        .await?
        .expect(
            400,
            &error_body(
                400,
                "There was an error while parsing the base64 content. An incorrect value was provided.",
            ),
            "bad base64 refused",
        )?;
    cx.post_csr(&csr_url, br#"{"csr": "aGVsbG8gd29ybGQ="}"#)
        .await?
        .expect(
            400,
            &error_body(400, "Error while decoding pem block."),
            "no PEM block refused",
        )?;
    Ok(())
}

async fn csr_malformed_json(cx: &Ctx) -> CheckResult {
    let re = cx.fresh_re().await?;
    let csr_url = cx.csr_step(&re).await?.csr_url;
    let r = cx.post_csr(&csr_url, b"{not json").await?;
    let want = if cx.kyma() { 500 } else { 400 };
    r.expect_status(want, "a malformed body refused")?;
    Ok(())
}

async fn api_spec(cx: &Ctx) -> CheckResult {
    let r = cx
        .call(Method::GET, &cx.external("/v1"), &[], None, None)
        .await?;
    r.expect_status(301, "a redirect")?;
    if r.response.header("location") != Some("/v1/api.yaml") {
        return Err(r.fail("Location: /v1/api.yaml".into()));
    }
    let spec = cx
        .call(Method::GET, &cx.external("/v1/api.yaml"), &[], None, None)
        .await?;
    spec.expect_status(200, "the spec")?;
    if !spec.response.text().contains("/v1/remoteenvironments/") {
        return Err(spec.fail("the connector's OpenAPI document".into()));
    }
    Ok(())
}
