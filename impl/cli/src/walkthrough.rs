//! `ace walkthrough`: the seeds' onboarding and registration flow, run through the model and
//! printed exchange by exchange. No network is involved.

use std::collections::BTreeMap;
use std::io::Write;

use ace_model::config::SubjectTemplate;
use ace_model::connector::{
    CsrSubmission, ParsedCsr, PeerCertificate, PublicKeyKind, SignatureAlgorithm,
};
use ace_model::{AdminRequest, Config, GatewayCall, Model, Reply, Request, Timestamp};

struct Printer<'a, W: Write> {
    out: &'a mut W,
    model: Model,
    now: Timestamp,
}

impl<W: Write> Printer<'_, W> {
    fn exchange(&mut self, what: &str, request: Request) -> Result<Reply, String> {
        let reply = self.model.handle_request(self.now, request);
        let mut durable = 0;
        while self.model.poll_record().is_some() {
            durable += 1;
        }
        let body = match (&reply, reply.body()) {
            (Reply::Certificate(c), _) => format!(
                "certificate to sign: serial {} for RE {} (incarnation {}), valid {} .. {}",
                c.serial.0,
                c.re,
                c.incarnation,
                c.not_before.to_rfc3339(),
                c.not_after.to_rfc3339()
            ),
            (Reply::Redirect { location }, _) => format!("Location: {location}"),
            (_, Some(body)) => serde_json::to_string_pretty(&body).map_err(|e| e.to_string())?,
            (_, None) => String::new(),
        };
        writeln!(
            self.out,
            "> {what}\n< {} ({durable} record(s) made durable first)\n{body}\n",
            reply.status()
        )
        .map_err(|e| e.to_string())?;
        Ok(reply)
    }
}

/// Runs the walkthrough with `seed` at model time `now`, writing to `out`.
pub fn walkthrough(
    out: &mut impl Write,
    seed: u64,
    re: &str,
    namespace: &str,
    now: Timestamp,
) -> Result<(), String> {
    let mut p = Printer {
        out,
        model: Model::new(Config::default(), seed.into()),
        now,
    };
    let created = p.exchange(
        &format!("apply RemoteEnvironment {re}"),
        Request::Admin(AdminRequest::ApplyRemoteEnvironment {
            name: re.into(),
            description: "The seed's e-commerce solution".into(),
            labels: BTreeMap::from([
                ("region".into(), "us".into()),
                ("kind".into(), "production".into()),
            ]),
            skip_verify: false,
        }),
    )?;
    if created.error().is_some() {
        return Err(format!("cannot create Remote Environment {re:?}"));
    }
    let Reply::Token(token) = p.exchange(
        &format!("POST /v1/remoteenvironments/{re}/tokens"),
        Request::CreateToken { re: re.into() },
    )?
    else {
        return Err("no token".into());
    };
    let Reply::Info(info) = p.exchange(
        &format!("GET {}", token.url),
        Request::Info {
            re: re.into(),
            token: Some(token.token.clone()),
        },
    )?
    else {
        return Err("no info".into());
    };
    p.exchange(
        &format!("GET {} (a second time)", token.url),
        Request::Info {
            re: re.into(),
            token: Some(token.token),
        },
    )?;
    let csr_token = info.csr_url.split_once("token=").map(|(_, t)| t.to_owned());
    let csr = ParsedCsr {
        subject: SubjectTemplate::default().subject_for(re),
        public_key: PublicKeyKind::Rsa { bits: 2048 },
        signature_algorithm: SignatureAlgorithm::RsaSha256,
        signature: Ok(()),
    };
    let Reply::Certificate(cert) = p.exchange(
        &format!(
            "POST {} with the CSR of `openssl req -subj \"/{}\"`",
            info.csr_url,
            info.subject.replace(',', "/")
        ),
        Request::ClientCerts {
            re: re.into(),
            token: csr_token,
            csr: CsrSubmission::Parsed(csr),
        },
    )?
    else {
        return Err("no certificate".into());
    };
    let peer = PeerCertificate {
        common_name: cert.subject.common_name.clone(),
        serial: cert.serial.clone(),
    };
    let service = serde_json::json!({
        "provider": "myCompany", "name": "my-service", "Identifier": "identifier",
        "description": "This is some service",
        "api": {"targetUrl": "http://httpbin.org/", "spec": {"swagger": "2.0"},
                "credentials": {"oauth": {"url": "https://oauth.example.com/token", "clientId": "id", "clientSecret": "secret"}}},
        "events": {"spec": {"asyncapi": "1.0.0"}}
    });
    let gateway = |call| Request::Gateway {
        re: re.into(),
        peer: Some(peer.clone()),
        call,
    };
    let Reply::ServiceCreated { id } = p.exchange(
        &format!(
            "POST {} (client certificate {})",
            info.metadata_url, cert.serial.0
        ),
        gateway(GatewayCall::CreateService {
            body: service.to_string().into_bytes(),
        }),
    )?
    else {
        return Err("service not registered".into());
    };
    p.exchange(
        &format!("GET {}/{id}", info.metadata_url),
        gateway(GatewayCall::GetService { id: id.clone() }),
    )?;
    p.exchange(
        &format!(
            "GET {} with the same certificate on another RE",
            info.metadata_url.replace(re, "other-re")
        ),
        Request::Gateway {
            re: "other-re".into(),
            peer: Some(peer.clone()),
            call: GatewayCall::ListServices,
        },
    )?;
    p.exchange(
        &format!("apply EnvironmentMapping {re} in namespace {namespace}"),
        Request::Admin(AdminRequest::ApplyMapping {
            namespace: namespace.into(),
            re: re.into(),
        }),
    )?;
    p.exchange(
        &format!("catalog of namespace {namespace}"),
        Request::Admin(AdminRequest::Catalog {
            namespace: namespace.into(),
        }),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64) -> String {
        let mut out = Vec::new();
        walkthrough(
            &mut out,
            seed,
            "ec-default",
            "production",
            Timestamp::from_unix_millis(1_539_702_000_000),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        String::from_utf8(out).unwrap_or_default()
    }

    #[test]
    fn walkthrough_onboards_registers_and_shows_the_catalog() {
        let text = run(1);
        assert!(text.contains("< 201"), "token created");
        assert!(
            text.contains("\"error\": \"Invalid token.\""),
            "config URL works once"
        );
        assert!(text.contains("certificate to sign: serial"));
        assert!(
            text.contains("\"clientSecret\": \"********\""),
            "secrets masked"
        );
        assert!(!text.contains("\"secret\""), "secret never shown");
        assert!(text.contains("does not belong to Remote Environment other-re"));
        assert!(
            text.contains("\"name\": \"re-ec-default-"),
            "catalog lists the class"
        );
    }

    #[test]
    fn walkthrough_is_deterministic_per_seed() {
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
    }

    #[test]
    fn walkthrough_refuses_a_bad_name() {
        let mut out = Vec::new();
        let err = walkthrough(&mut out, 1, "Bad_Name", "production", Timestamp::EPOCH);
        assert!(err.is_err());
    }
}
