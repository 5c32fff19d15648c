//! The Application Connector model: a whole onboarding (token, info, CSR, certificate, first
//! gateway call) per iteration, against a baseline that only makes and hashes the two tokens
//! the flow needs (the irreducible cryptographic work).

use std::hint::black_box;

use ace_model::config::SubjectTemplate;
use ace_model::connector::{
    CsrSubmission, ParsedCsr, PeerCertificate, PublicKeyKind, SignatureAlgorithm, TokenDigest,
};
use ace_model::{AdminRequest, Config, GatewayCall, Model, Reply, Request, SeededRng, Timestamp};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn csr(re: &str) -> CsrSubmission {
    CsrSubmission::Parsed(ParsedCsr {
        subject: SubjectTemplate::default().subject_for(re),
        public_key: PublicKeyKind::EcdsaP256,
        signature_algorithm: SignatureAlgorithm::EcdsaSha256,
        signature: Ok(()),
    })
}

fn onboard(model: &mut Model, now: Timestamp, re: &str) -> Option<()> {
    let Reply::Token(token) = model.handle_request(now, Request::CreateToken { re: re.into() })
    else {
        return None;
    };
    let Reply::Info(info) = model.handle_request(
        now,
        Request::Info {
            re: re.into(),
            token: Some(token.token),
        },
    ) else {
        return None;
    };
    let csr_token = info.csr_url.split_once("token=").map(|(_, t)| t.to_owned());
    let Reply::Certificate(cert) = model.handle_request(
        now,
        Request::ClientCerts {
            re: re.into(),
            token: csr_token,
            csr: csr(re),
        },
    ) else {
        return None;
    };
    let peer = PeerCertificate {
        common_name: cert.subject.common_name,
        serial: cert.serial,
    };
    let reply = model.handle_request(
        now,
        Request::Gateway {
            re: re.into(),
            peer: Some(peer),
            call: GatewayCall::ListServices,
        },
    );
    while model.poll_record().is_some() {}
    (reply.status() == 200).then_some(())
}

fn benchmarks(c: &mut Criterion) {
    let now = Timestamp::from_unix_millis(1_700_000_000_000);
    let mut group = c.benchmark_group("connector");
    group.throughput(Throughput::Elements(1));

    group.bench_function("baseline_two_tokens_made_and_hashed", |b| {
        let mut rng = SeededRng::new(1.into());
        b.iter(|| {
            let a = rng.token(64);
            let c = rng.token(64);
            black_box((TokenDigest::of(&a), TokenDigest::of(&c)))
        })
    });

    group.bench_function("onboarding_token_info_csr_gateway", |b| {
        let mut model = Model::new(Config::default(), 1.into());
        model.handle_request(
            now,
            Request::Admin(AdminRequest::ApplyRemoteEnvironment {
                name: "ec-default".into(),
                description: String::new(),
                labels: Default::default(),
                skip_verify: false,
            }),
        );
        b.iter(|| black_box(onboard(&mut model, now, "ec-default")))
    });
    group.finish();
}

criterion_group!(benches, benchmarks);
criterion_main!(benches);
