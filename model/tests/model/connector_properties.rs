//! Properties of the Application Connector over random command sequences, checked after
//! every step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::*;
use ace_model::connector::{CsrSubmission, IssuedCertificate};
use ace_model::{GatewayCall, Reply, Request};
use proptest::prelude::*;

const RES: [&str; 3] = ["ec-a", "ec-b", "ec-c"];

#[derive(Clone, Debug)]
enum Op {
    ApplyRe(usize),
    DeleteRe(usize),
    CreateToken(usize),
    /// Call info on RE `.0` with issued token `.1` (an index modulo the tokens seen), or a
    /// forged one.
    Info(usize, Option<usize>),
    ClientCerts(usize, Option<usize>, CsrKind),
    Gateway(usize, Option<usize>, CallKind),
    Advance(u64),
}

#[derive(Clone, Copy, Debug)]
enum CsrKind {
    Good,
    WrongCn,
    Malformed,
}

#[derive(Clone, Copy, Debug)]
enum CallKind {
    List,
    Create(u8),
    Get(usize),
    Delete(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let re = 0..RES.len();
    let pick = proptest::option::weighted(0.9, 0..16usize);
    let csr = prop_oneof![
        Just(CsrKind::Good),
        Just(CsrKind::WrongCn),
        Just(CsrKind::Malformed)
    ];
    let call = prop_oneof![
        Just(CallKind::List),
        (0..3u8).prop_map(CallKind::Create),
        (0..8usize).prop_map(CallKind::Get),
        (0..8usize).prop_map(CallKind::Delete),
    ];
    prop_oneof![
        2 => re.clone().prop_map(Op::ApplyRe),
        1 => re.clone().prop_map(Op::DeleteRe),
        3 => re.clone().prop_map(Op::CreateToken),
        3 => (re.clone(), pick.clone()).prop_map(|(r, t)| Op::Info(r, t)),
        3 => (re.clone(), pick.clone(), csr).prop_map(|(r, t, c)| Op::ClientCerts(r, t, c)),
        4 => (re, pick, call).prop_map(|(r, c, k)| Op::Gateway(r, c, k)),
        1 => (0..400u64).prop_map(Op::Advance),
    ]
}

/// A token handed out by the model, and whether it has been used up.
struct SeenToken {
    re: &'static str,
    token: String,
    spent: bool,
}

struct Run {
    h: Harness,
    tokens: Vec<SeenToken>,
    certs: Vec<IssuedCertificate>,
    service_ids: Vec<String>,
    secrets: BTreeSet<String>,
    transcript: Vec<(u16, Option<serde_json::Value>)>,
}

impl Run {
    fn new(seed: u64) -> Self {
        Run {
            h: Harness::new(seed),
            tokens: Vec::new(),
            certs: Vec::new(),
            service_ids: Vec::new(),
            secrets: BTreeSet::new(),
            transcript: Vec::new(),
        }
    }

    fn token(&self, re: &'static str, pick: Option<usize>) -> (String, Option<usize>) {
        match pick {
            Some(i) if !self.tokens.is_empty() => {
                let i = i % self.tokens.len();
                (self.tokens[i].token.clone(), Some(i))
            }
            _ => (format!("forged-token-for-{re}"), None),
        }
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let reply = match *op {
            Op::ApplyRe(r) => self.h.apply_re(RES[r]),
            Op::DeleteRe(r) => self.h.delete_re(RES[r]),
            Op::Advance(secs) => {
                self.h.advance(Duration::from_secs(secs));
                return Ok(());
            }
            Op::CreateToken(r) => {
                let reply = self.h.send(Request::CreateToken { re: RES[r].into() });
                if let Reply::Token(t) = &reply {
                    // A new token replaces the RE's earlier ones.
                    self.spend_tokens_of(RES[r]);
                    self.tokens.push(SeenToken {
                        re: RES[r],
                        token: t.token.clone(),
                        spent: false,
                    });
                }
                reply
            }
            Op::Info(r, pick) => {
                let (token, idx) = self.token(RES[r], pick);
                let usable =
                    idx.is_some_and(|i| !self.tokens[i].spent && self.tokens[i].re == RES[r]);
                let reply = self.h.info(RES[r], &token);
                if reply.status() == 200 {
                    prop_assert!(usable, "info accepted a spent, forged or foreign token");
                    self.spend_tokens_of(RES[r]);
                    if let Reply::Info(info) = &reply {
                        self.tokens.push(SeenToken {
                            re: RES[r],
                            token: csr_token_of(&info.csr_url),
                            spent: false,
                        });
                    }
                } else {
                    prop_assert!(
                        matches!(reply.status(), 403),
                        "info refused with {}",
                        reply.status()
                    );
                }
                reply
            }
            Op::ClientCerts(r, pick, kind) => {
                let (token, idx) = self.token(RES[r], pick);
                let usable =
                    idx.is_some_and(|i| !self.tokens[i].spent && self.tokens[i].re == RES[r]);
                let csr = match kind {
                    CsrKind::Good => good_csr(RES[r]),
                    CsrKind::WrongCn => good_csr("intruder"),
                    CsrKind::Malformed => CsrSubmission::NoPemBlock,
                };
                let reply = self.h.client_certs(RES[r], &token, csr);
                if let Reply::Certificate(cert) = &reply {
                    prop_assert!(
                        usable,
                        "a certificate was issued for a spent, forged or foreign token"
                    );
                    prop_assert!(matches!(kind, CsrKind::Good));
                    prop_assert_eq!(&cert.re, RES[r]);
                    self.spend_tokens_of(RES[r]);
                    self.certs.push(cert.clone());
                } else if !usable {
                    prop_assert_eq!(reply.status(), 403);
                }
                reply
            }
            Op::Gateway(r, pick, call) => {
                let cert = pick
                    .filter(|_| !self.certs.is_empty())
                    .map(|i| self.certs[i % self.certs.len()].clone());
                let call = match call {
                    CallKind::List => GatewayCall::ListServices,
                    CallKind::Create(ident) => {
                        let secret = format!("secret-{}", self.secrets.len());
                        self.secrets.insert(secret.clone());
                        let identifier = if ident == 0 {
                            String::new()
                        } else {
                            format!("id-{ident}")
                        };
                        GatewayCall::CreateService {
                            body: service_body(&identifier, &secret),
                        }
                    }
                    CallKind::Get(i) => GatewayCall::GetService {
                        id: self.service_id(i),
                    },
                    CallKind::Delete(i) => GatewayCall::DeleteService {
                        id: self.service_id(i),
                    },
                };
                let reply = self.h.gateway(RES[r], cert.as_ref(), call);
                let authorized = reply.status() != 403;
                let may_open = cert.as_ref().is_some_and(|c| {
                    c.re == RES[r]
                        && self
                            .h
                            .model
                            .state()
                            .remote_environment(RES[r])
                            .map(|re| re.incarnation)
                            == Some(c.incarnation)
                        && self.h.now < c.not_after
                });
                prop_assert_eq!(
                    authorized,
                    may_open,
                    "gateway decision for {:?} on {}",
                    cert,
                    RES[r]
                );
                if let Reply::ServiceCreated { id } = &reply {
                    self.service_ids.push(id.clone());
                }
                reply
            }
        };
        self.transcript.push((reply.status(), reply.body()));
        self.check_invariants(&reply)
    }

    fn service_id(&self, i: usize) -> String {
        if self.service_ids.is_empty() {
            "unknown".into()
        } else {
            self.service_ids[i % self.service_ids.len()].clone()
        }
    }

    fn spend_tokens_of(&mut self, re: &str) {
        for t in self.tokens.iter_mut().filter(|t| t.re == re) {
            t.spent = true;
        }
    }

    fn check_invariants(&mut self, reply: &Reply) -> Result<(), TestCaseError> {
        // No read returns a secret.
        let shown = reply.body().map(|b| b.to_string()).unwrap_or_default();
        for secret in &self.secrets {
            prop_assert!(!shown.contains(secret.as_str()), "a reply showed {secret}");
        }
        // Identifiers are unique per RE.
        for re in self.h.model.state().remote_environments() {
            let mut seen = BTreeMap::new();
            for s in re.services.iter().filter(|s| !s.identifier.is_empty()) {
                prop_assert!(
                    seen.insert(s.identifier.clone(), ()).is_none(),
                    "duplicate identifier {}",
                    s.identifier
                );
            }
        }
        // Deleting an RE kills its tokens.
        for t in self.tokens.iter_mut() {
            if self.h.model.state().remote_environment(t.re).is_none() {
                t.spent = true;
            }
        }
        // Replaying the records gives the same state.
        let replayed = self.h.replayed();
        prop_assert_eq!(replayed.state(), self.h.model.state());
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn connector_invariants_hold_after_every_step(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..60)) {
        let mut run = Run::new(seed);
        for op in &ops {
            run.step(op)?;
        }
        // A snapshot rebuilds the same state as the full log.
        let compacted = ace_model::Model::replay(run.h.model.config().clone(), 0.into(), run.h.model.snapshot());
        prop_assert_eq!(compacted.state(), run.h.model.state());
        prop_assert_eq!(compacted.state_digest(), run.h.model.state_digest());
        // A digest tells states apart: one more record, another digest.
        let mut more = compacted;
        let before = more.state_digest();
        more.apply_record(&ace_model::Record::IncarnationsUsed { last: u64::MAX });
        prop_assert_ne!(more.state_digest(), before);
    }

    #[test]
    fn same_seed_and_inputs_give_the_same_outputs(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..40)) {
        let mut a = Run::new(seed);
        let mut b = Run::new(seed);
        for op in &ops {
            a.step(op)?;
            b.step(op)?;
        }
        prop_assert_eq!(&a.transcript, &b.transcript);
        prop_assert_eq!(&a.h.log, &b.h.log);
    }
}
