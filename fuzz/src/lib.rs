//! Fuzz harnesses for the parsers that read untrusted bytes, each with the properties it checks
//! besides "never panics".
//!
//! - [`csr`]: a `client-certs` body or a raw CSR, through the shell's decoding and X.509
//!   inspection and the model's policy, to the CA's signature;
//! - [`journal`]: arbitrary bytes as the journal file found after a crash;
//! - [`gateway`]: arbitrary bodies on the Metadata and Event Services.
//!
//! The fuzz targets in `fuzz_targets/` call these (`cargo +nightly fuzz run <target> --features
//! libfuzzer`); `tests/replay.rs` runs every input under `seeds/` and `regressions/` through
//! them on stable, so a finding, once committed, is checked by every test run.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use ace_model::connector::{self, CsrSubmission, PeerCertificate};
use ace_model::registry::MASK;
use ace_model::{AdminRequest, Config, GatewayCall, Model, Record, Reply, Request, Timestamp};
use ace_server::pki::{Ca, KeyKind};
use ace_server::store::journal::{Frame, Journal};

/// The model's clock in every harness.
pub const NOW: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

/// The Remote Environment every harness onboards.
pub const RE: &str = "ec";

/// A model and the records it wrote, as the driver keeps them.
struct World {
    model: Model,
    log: Vec<Record>,
}

impl World {
    fn new() -> World {
        let mut world = World {
            model: Model::new(Config::default(), 7.into()),
            log: Vec::new(),
        };
        let reply = world.send(Request::Admin(AdminRequest::ApplyRemoteEnvironment {
            name: RE.into(),
            description: "fuzzed".into(),
            labels: BTreeMap::new(),
            skip_verify: false,
        }));
        assert!(reply.status() < 300, "creating the RE: {reply:?}");
        world
    }

    fn send(&mut self, request: Request) -> Reply {
        let reply = self.model.handle_request(NOW, request);
        while let Some(record) = self.model.poll_record() {
            self.log.push(record);
        }
        reply
    }

    /// The token a `client-certs` call needs, from the one-time URL's info call.
    fn csr_token(&mut self) -> String {
        let Reply::Token(token) = self.send(Request::CreateToken { re: RE.into() }) else {
            panic!("no token for the RE")
        };
        let Reply::Info(info) = self.send(Request::Info {
            re: RE.into(),
            token: Some(token.token),
        }) else {
            panic!("info refused")
        };
        let (_, token) = info.csr_url.split_once("token=").expect("token in csrUrl");
        token.to_owned()
    }

    /// Onboards the RE with the CSR the model's policy expects; the certificate's identity.
    fn onboard(&mut self) -> PeerCertificate {
        let token = self.csr_token();
        let csr = CsrSubmission::Parsed(connector::ParsedCsr {
            subject: self.model.config().connector.subject.subject_for(RE),
            public_key: connector::PublicKeyKind::EcdsaP256,
            signature_algorithm: connector::SignatureAlgorithm::EcdsaSha256,
            signature: Ok(()),
        });
        match self.send(Request::ClientCerts {
            re: RE.into(),
            token: Some(token),
            csr,
        }) {
            Reply::Certificate(issued) => PeerCertificate {
                common_name: issued.subject.common_name,
                serial: issued.serial,
            },
            other => panic!("onboarding refused: {other:?}"),
        }
    }

    /// Every refusal is the caller's fault (4xx), and the records rebuild the same state.
    fn check(&self, reply: &Reply) {
        let status = reply.status();
        assert!(
            (200..500).contains(&status),
            "a request got {status}: {reply:?}"
        );
        let replayed = Model::replay(self.model.config().clone(), 99.into(), self.log.clone());
        assert!(
            replayed.state() == self.model.state(),
            "replaying the records gives another state"
        );
    }
}

/// The CA that signs accepted CSRs, made once.
fn ca() -> &'static Ca {
    static CA: OnceLock<Ca> = OnceLock::new();
    CA.get_or_init(|| {
        let key = ace_server::pki::generate_key(KeyKind::EcdsaP256).expect("a key");
        Ca::generate(key, NOW).expect("a CA")
    })
}

/// A `client-certs` call with a valid token. The first byte chooses what the rest is: even, the
/// request body as it came; odd, a CSR's DER, wrapped into a body as clients do.
///
/// Checks: a wrapped DER decodes back to itself; the connector answers 201 or a 4xx; and every
/// CSR the model accepts is signed by the CA, into a certificate for the subject the model
/// chose (a 500 after acceptance would be the shell failing a request the model granted).
/// Returns the connector's status.
pub fn csr(data: &[u8]) -> Option<u16> {
    let (&mode, rest) = data.split_first()?;
    let body = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", rest.to_vec()));
        ace_conformance::context::csr_body(&pem)
    };
    let (der, submission) = match connector::decode_csr_body(&body) {
        Ok(der) => {
            let inspected = ace_server::pki::inspect_csr(&der);
            (der, inspected)
        }
        Err(e) => (Vec::new(), e.into()),
    };
    if mode % 2 == 1 {
        assert_eq!(der, rest, "a wrapped CSR decodes to other bytes");
    }
    let mut world = World::new();
    let token = world.csr_token();
    let reply = world.send(Request::ClientCerts {
        re: RE.into(),
        token: Some(token),
        csr: submission,
    });
    world.check(&reply);
    let status = reply.status();
    if let Reply::Certificate(issued) = reply {
        let signed = ca()
            .sign_client(&der, &issued)
            .unwrap_or_else(|e| panic!("the model accepted a CSR the CA cannot sign: {e}"));
        let certs =
            ace_server::pki::certs_from_pem(&signed).expect("the signed certificate is PEM");
        let identity = ace_server::pki::peer_identity(&certs[0]).expect("the certificate parses");
        assert_eq!(identity.common_name, issued.subject.common_name);
        assert_eq!(identity.serial, issued.serial);
    }
    Some(status)
}

/// The journal file found after a crash. Layout of `data`: the generation to open (0–2), the
/// store's next key (0–255), the length (0–63) of a payload to append, that payload, then the
/// file's bytes.
///
/// Checks: opening never fails but for "records are missing"; the frames it returns are
/// contiguous, of the generation, reach past the next key, and fit in the file. Then, as the
/// store does after every open, the journal starts its next generation, and two frames
/// appended to it are read back first on the next open. Returns how many frames the first open
/// found.
pub fn journal(data: &[u8]) -> Option<usize> {
    let [generation, next_key, len, rest @ ..] = data else {
        return None;
    };
    let (generation, next_key) = (u64::from(*generation % 3), u64::from(*next_key));
    let (payload, file) = rest.split_at(usize::from(*len % 64).min(rest.len()));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("journal");
    std::fs::write(&path, file).expect("write the journal");
    let capacity = 4096;
    let (mut journal, found) = match Journal::open(&path, generation, next_key, capacity) {
        Ok(opened) => opened,
        Err(e) => {
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
            assert!(e.to_string().contains("records are missing"), "{e}");
            return None;
        }
    };
    check_frames(&found, next_key, file.len().max(capacity as usize));
    let next_key = found.last().map_or(next_key, |f| f.first_key + f.count);
    journal.restart(generation + 1);
    let appended: Vec<Frame> = (0..2)
        .map(|i| Frame {
            first_key: next_key + i,
            count: 1,
            payload: payload.to_vec(),
        })
        .collect();
    for frame in &appended {
        journal
            .append(frame.first_key, frame.count, &frame.payload)
            .expect("append to the journal");
    }
    let (_, reread) =
        Journal::open(&path, generation + 1, next_key, capacity).expect("reopen the journal");
    assert!(
        reread.len() >= appended.len() && reread[..appended.len()] == appended[..],
        "the appended frames are not read back first"
    );
    Some(found.len())
}

fn check_frames(frames: &[Frame], next_key: u64, file_len: usize) {
    if let Some(first) = frames.first() {
        assert!(first.first_key <= next_key, "the first frame starts late");
    }
    for pair in frames.windows(2) {
        assert_eq!(
            pair[0].first_key + pair[0].count,
            pair[1].first_key,
            "frames are not contiguous"
        );
    }
    if let Some(last) = frames.last() {
        assert!(last.first_key + last.count > next_key, "a stale frame");
    }
    let bytes: usize = frames.iter().map(|f| f.payload.len()).sum();
    assert!(bytes <= file_len, "frames hold more than the file");
}

/// The service every gateway run starts with (the seed's example).
pub fn registered_service() -> Vec<u8> {
    br#"{"provider":"myCompany","name":"my-service","description":"This is some service",
"api":{"targetUrl":"https://www.orders.com/v1/orders",
"credentials":{"oauth":{"url":"https://oauth.orders.com/token","clientId":"client-id","clientSecret":"client-secret"}}},
"events":{"spec":{"asyncapi":"1.0.0"}}}"#
        .to_vec()
}

/// One call on the gateway of an onboarded RE that already has [`registered_service`]. The
/// first byte chooses the call (register, update, publish, get, delete, list), the rest is its
/// body (or the service id).
///
/// Checks: the answer is 2xx or 4xx, the records rebuild the model's state, and a service read
/// back never shows its OAuth credentials. Returns the call's status.
pub fn gateway(data: &[u8]) -> Option<u16> {
    let (&op, body) = data.split_first()?;
    let mut world = World::new();
    let peer = world.onboard();
    let call = |world: &mut World, call: GatewayCall| {
        let reply = world.send(Request::Gateway {
            re: RE.into(),
            peer: Some(peer.clone()),
            call,
        });
        world.check(&reply);
        if let (Reply::ServiceDetails(_), Some(details)) = (&reply, reply.body())
            && let Some(oauth) = details.pointer("/api/credentials/oauth")
        {
            assert_eq!(oauth["clientId"], MASK, "a client id is shown: {details}");
            assert_eq!(oauth["clientSecret"], MASK, "a secret is shown: {details}");
        }
        reply
    };
    let Reply::ServiceCreated { id } = call(
        &mut world,
        GatewayCall::CreateService {
            body: registered_service(),
        },
    ) else {
        panic!("the seed's service is refused")
    };
    let body = body.to_vec();
    let text = String::from_utf8_lossy(&body).into_owned();
    let (reply, read) = match op % 6 {
        0 => {
            let reply = call(&mut world, GatewayCall::CreateService { body });
            let created = match &reply {
                Reply::ServiceCreated { id } => Some(id.clone()),
                _ => None,
            };
            (reply, created)
        }
        1 => {
            let update = GatewayCall::UpdateService {
                id: id.clone(),
                body,
            };
            (call(&mut world, update), Some(id))
        }
        2 => {
            let event = ace_model::bus::GatewayEvent {
                body,
                headers: vec![(
                    "x-b3-traceid".into(),
                    "80f198ee56343ba864fe8b2a57d3eff7".into(),
                )],
            };
            (call(&mut world, GatewayCall::PublishEvent(event)), None)
        }
        3 => (call(&mut world, GatewayCall::GetService { id: text }), None),
        4 => {
            let delete = GatewayCall::DeleteService { id: text.clone() };
            (call(&mut world, delete), Some(text))
        }
        _ => (call(&mut world, GatewayCall::ListServices), None),
    };
    if let Some(id) = read {
        call(&mut world, GatewayCall::GetService { id });
    }
    Some(reply.status())
}
