//! An in-memory harness: a model, a clock stepped by hand, and the durable log.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use ace_model::bus::BacklogPage;
use ace_model::config::SubjectTemplate;
use ace_model::connector::{
    CsrSubmission, IssuedCertificate, ParsedCsr, PeerCertificate, PublicKeyKind, SignatureAlgorithm,
};
use ace_model::{AdminRequest, Config, GatewayCall, Model, Record, Reply, Request, Timestamp};

pub const START: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

pub struct Harness {
    pub model: Model,
    pub now: Timestamp,
    pub log: Vec<Record>,
}

impl Harness {
    pub fn new(seed: u64) -> Self {
        Self::with_config(Config::default(), seed)
    }

    pub fn with_config(config: Config, seed: u64) -> Self {
        Harness {
            model: Model::new(config, seed.into()),
            now: START,
            log: Vec::new(),
        }
    }

    pub fn advance(&mut self, by: Duration) {
        self.now = self.now.saturating_add(by);
    }

    /// Sends a request, drains its records into the durable log, returns the reply.
    pub fn send(&mut self, request: Request) -> Reply {
        let reply = self.model.handle_request(self.now, request);
        while let Some(r) = self.model.poll_record() {
            self.log.push(r);
        }
        reply
    }

    pub fn apply_re(&mut self, name: &str) -> Reply {
        self.send(Request::Admin(AdminRequest::ApplyRemoteEnvironment {
            name: name.into(),
            description: format!("{name} solution"),
            labels: BTreeMap::from([("region".into(), "us".into())]),
            skip_verify: false,
        }))
    }

    pub fn delete_re(&mut self, name: &str) -> Reply {
        self.send(Request::Admin(AdminRequest::DeleteRemoteEnvironment {
            name: name.into(),
        }))
    }

    pub fn token(&mut self, re: &str) -> Option<String> {
        match self.send(Request::CreateToken { re: re.into() }) {
            Reply::Token(t) => Some(t.token),
            _ => None,
        }
    }

    pub fn info(&mut self, re: &str, token: &str) -> Reply {
        self.send(Request::Info {
            re: re.into(),
            token: Some(token.into()),
        })
    }

    pub fn client_certs(&mut self, re: &str, token: &str, csr: CsrSubmission) -> Reply {
        self.send(Request::ClientCerts {
            re: re.into(),
            token: Some(token.into()),
            csr,
        })
    }

    /// The whole onboarding flow: token, info, CSR. Returns the issued certificate.
    pub fn onboard(&mut self, re: &str) -> IssuedCertificate {
        let token = self.token(re).expect("token");
        let Reply::Info(info) = self.info(re, &token) else {
            panic!("info refused")
        };
        let csr_token = csr_token_of(&info.csr_url);
        match self.client_certs(re, &csr_token, good_csr(re)) {
            Reply::Certificate(c) => c,
            other => panic!("certificate refused: {other:?}"),
        }
    }

    pub fn gateway(
        &mut self,
        re: &str,
        cert: Option<&IssuedCertificate>,
        call: GatewayCall,
    ) -> Reply {
        self.send(Request::Gateway {
            re: re.into(),
            peer: cert.map(peer_of),
            call,
        })
    }

    /// Answers the Event Bus's backlog reads from the durable log, as the store would (the
    /// events without their bodies, which it keeps apart), until it asks for nothing more.
    pub fn serve_reads(&mut self) {
        while let Some(read) = self.model.poll_backlog_read() {
            let page = BacklogPage::from_log(&read, &self.log);
            self.model.handle_backlog(self.now, page);
            while let Some(r) = self.model.poll_record() {
                self.log.push(r);
            }
        }
    }

    pub fn replayed(&self) -> Model {
        Model::replay(self.model.config().clone(), 99.into(), self.log.clone())
    }
}

pub fn csr_token_of(csr_url: &str) -> String {
    csr_url
        .split_once("token=")
        .map(|(_, t)| t.to_owned())
        .expect("token in csrUrl")
}

pub fn peer_of(cert: &IssuedCertificate) -> PeerCertificate {
    PeerCertificate {
        common_name: cert.subject.common_name.clone(),
        serial: cert.serial.clone(),
    }
}

pub fn parsed_csr(re: &str) -> ParsedCsr {
    ParsedCsr {
        subject: SubjectTemplate::default().subject_for(re),
        public_key: PublicKeyKind::Rsa { bits: 2048 },
        signature_algorithm: SignatureAlgorithm::RsaSha256,
        signature: Ok(()),
    }
}

pub fn good_csr(re: &str) -> CsrSubmission {
    CsrSubmission::Parsed(parsed_csr(re))
}

pub fn service_body(identifier: &str, secret: &str) -> Vec<u8> {
    serde_json::json!({
        "provider": "myCompany",
        "name": "my-service",
        "description": "This is some service",
        "identifier": identifier,
        "api": {
            "targetUrl": "https://www.orders.com/v1/orders",
            "credentials": {"oauth": {"url": "https://oauth.orders.com/token", "clientId": "client-id", "clientSecret": secret}},
            "spec": {"swagger": "2.0"}
        },
        "events": {"spec": {"asyncapi": "1.0.0"}}
    })
    .to_string()
    .into_bytes()
}
