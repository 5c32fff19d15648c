//! The model as the oracle: a private `ace-model` instance with one onboarded RE, asked what a
//! deployment must answer to a metadata or event call.

use std::collections::BTreeMap;

use ace_model::bus::{BusRequest, GatewayEvent};
use ace_model::connector::{
    CsrSubmission, ParsedCsr, PeerCertificate, PublicKeyKind, SignatureAlgorithm,
};
use ace_model::{AdminRequest, Config, GatewayCall, Model, Reply, Request, Timestamp};
use serde_json::Value;

/// What the model answers: status and JSON body (if any).
pub type Answer = (u16, Option<Value>);

/// A model with one RE and a certificate for it. A clone is an independent copy, for a
/// checker that must follow several possible states.
#[derive(Clone, Debug)]
pub struct Oracle {
    model: Model,
    now: Timestamp,
    re: String,
    peer: PeerCertificate,
}

/// Model time starts here and moves one millisecond per call.
const START: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

impl Oracle {
    /// A model holding RE `re`, onboarded; `gateway_url` is the deployment's gateway (Swagger
    /// specs are rewritten to its host).
    pub fn new(re: &str, gateway_url: &str) -> Oracle {
        let mut config = Config::default();
        config.connector.gateway_url = gateway_url.trim_end_matches('/').to_owned();
        let mut model = Model::new(config.clone(), 7.into());
        let now = START;
        model.handle_request(
            now,
            Request::Admin(AdminRequest::ApplyRemoteEnvironment {
                name: re.to_owned(),
                description: "conformance".into(),
                labels: BTreeMap::new(),
                skip_verify: false,
            }),
        );
        let token = match model.handle_request(now, Request::CreateToken { re: re.into() }) {
            Reply::Token(t) => t.token,
            other => panic!("the model refused a token: {other:?}"),
        };
        let csr_token = match model.handle_request(
            now,
            Request::Info {
                re: re.into(),
                token: Some(token),
            },
        ) {
            Reply::Info(i) => i
                .csr_url
                .rsplit("token=")
                .next()
                .unwrap_or_default()
                .to_owned(),
            other => panic!("the model refused info: {other:?}"),
        };
        let subject = &config.connector.subject;
        let csr = CsrSubmission::Parsed(ParsedCsr {
            subject: subject.subject_for(re),
            public_key: PublicKeyKind::EcdsaP256,
            signature_algorithm: SignatureAlgorithm::EcdsaSha256,
            signature: Ok(()),
        });
        let serial = match model.handle_request(
            now,
            Request::ClientCerts {
                re: re.into(),
                token: Some(csr_token),
                csr,
            },
        ) {
            Reply::Certificate(c) => c.serial,
            other => panic!("the model refused the CSR: {other:?}"),
        };
        while model.poll_record().is_some() {}
        Oracle {
            model,
            now,
            re: re.to_owned(),
            peer: PeerCertificate {
                common_name: Some(re.to_owned()),
                serial,
            },
        }
    }

    fn ask(&mut self, request: Request) -> Answer {
        self.now = self.now.saturating_add(std::time::Duration::from_millis(1));
        let reply = self.model.handle_request(self.now, request);
        while self.model.poll_record().is_some() {}
        while self.model.poll_delivery().is_some() {}
        (reply.status(), reply.body())
    }

    /// The ids of the RE's registered services, by identifier.
    pub fn service_ids(&self) -> BTreeMap<String, String> {
        self.model
            .state()
            .remote_environment(&self.re)
            .map(|r| {
                r.services
                    .iter()
                    .map(|s| (s.identifier.clone(), s.id.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A gateway call by the RE's own certificate.
    pub fn gateway(&mut self, call: GatewayCall) -> Answer {
        let request = Request::Gateway {
            re: self.re.clone(),
            peer: Some(self.peer.clone()),
            call,
        };
        self.ask(request)
    }

    /// `POST /{re}/v1/events` with `body`.
    pub fn gateway_event(&mut self, body: &[u8]) -> Answer {
        self.gateway(GatewayCall::PublishEvent(GatewayEvent {
            body: body.to_vec(),
            headers: Vec::new(),
        }))
    }

    /// `POST /v1/events` on the publish API.
    pub fn publish(&mut self, source_header: Option<&str>, body: &[u8]) -> Answer {
        self.ask(Request::Bus(BusRequest::Publish {
            method: "POST".into(),
            source_id_header: source_header.map(str::to_owned),
            body: body.to_vec(),
            headers: Vec::new(),
        }))
    }
}
