//! The model-based phase: proptest generates sequences of Metadata API calls, runs each
//! against the target and against the model, and compares every response. A failure is shrunk
//! to a minimal sequence and printed as `curl` commands.

use std::sync::Mutex;

use ace_model::GatewayCall;
use hyper::Method;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{Value, json};

use crate::check;
use crate::check::{Check, CheckResult, Failure};
use crate::checks::metadata::invalid_services;
use crate::context::Ctx;
use crate::oracle::Oracle;

/// The checks of this area.
pub fn checks() -> Vec<Check> {
    vec![check!(
        "model.metadata-sequences",
        Model,
        Must,
        "reference §2 (the model is the oracle)",
        "Every response to a generated sequence of Metadata API calls equals the model's prediction.",
        [Resources],
        metadata_sequences
    )]
}

/// One generated call.
#[derive(Clone, Debug)]
enum Op {
    Create(Body),
    Get(usize),
    GetUnknown,
    List,
    Update(usize, Body),
    Delete(usize),
}

/// A generated body: a valid variant or one of the invalid ones.
#[derive(Clone, Debug)]
enum Body {
    Valid {
        identifier: Option<&'static str>,
        api: bool,
        events: bool,
        labels: bool,
    },
    Invalid(usize),
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Valid {
                identifier,
                api,
                events,
                labels,
            } => {
                let mut v = json!({"provider": "gen", "name": "generated", "description": "generated service"});
                if let Some(i) = identifier {
                    v["identifier"] = json!(i);
                }
                if *api || !*events {
                    v["api"] = json!({"targetUrl": "https://api.example.com/v1",
                        "credentials": {"oauth": {"url": "https://api.example.com/token", "clientId": "id", "clientSecret": "secret"}}});
                }
                if *events {
                    v["events"] = json!({"spec": {"asyncapi": "1.0.0"}});
                }
                if *labels {
                    v["labels"] = json!({"tier": "gold"});
                }
                v.to_string().into_bytes()
            }
            Body::Invalid(i) => {
                let cases = invalid_services();
                cases[i % cases.len()].1.clone()
            }
        }
    }
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        3 => (prop::option::of(prop_oneof![Just("a"), Just("b")]), any::<bool>(), any::<bool>(), any::<bool>())
            .prop_map(|(identifier, api, events, labels)| Body::Valid { identifier, api, events, labels }),
        1 => (0..32usize).prop_map(Body::Invalid),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => body().prop_map(Op::Create),
        2 => (0..8usize).prop_map(Op::Get),
        1 => Just(Op::GetUnknown),
        1 => Just(Op::List),
        2 => ((0..8usize), body()).prop_map(|(i, b)| Op::Update(i, b)),
        1 => (0..8usize).prop_map(Op::Delete),
    ]
}

/// What one sequence did: the curl lines, and the first difference.
struct Run {
    curls: Vec<String>,
    mismatch: Option<(String, String)>,
}

fn normalize(v: Option<Value>, model_ids: &[String], target_ids: &[String]) -> Value {
    let mut text = v.unwrap_or(Value::Null).to_string();
    for (m, t) in model_ids.iter().zip(target_ids) {
        text = text.replace(m.as_str(), t.as_str());
    }
    let mut v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if let Some(list) = v.as_array_mut() {
        list.sort_by_key(|s| s["id"].as_str().unwrap_or_default().to_owned());
    }
    v
}

async fn run_ops(cx: &Ctx, ops: &[Op]) -> Result<Run, Failure> {
    let re = cx.fresh_re().await?;
    let identity = cx.onboard(&re).await?;
    let mut oracle = Oracle::new(&re, crate::target::first_url(&cx.target.gateway));
    let (mut model_ids, mut target_ids): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    let mut run = Run {
        curls: Vec::new(),
        mismatch: None,
    };
    let unknown = "00000000-0000-4000-8000-00000000beef".to_owned();
    for op in ops {
        let pick = |i: &usize, ids: &[String]| {
            ids.get(i % ids.len().max(1))
                .cloned()
                .unwrap_or_else(|| unknown.clone())
        };
        let (method, path, body, call) = match op {
            Op::Create(b) => (
                Method::POST,
                "services".to_owned(),
                Some(b.bytes()),
                GatewayCall::CreateService { body: b.bytes() },
            ),
            Op::Get(i) => (
                Method::GET,
                format!("services/{}", pick(i, &target_ids)),
                None,
                GatewayCall::GetService {
                    id: pick(i, &model_ids),
                },
            ),
            Op::GetUnknown => (
                Method::GET,
                format!("services/{unknown}"),
                None,
                GatewayCall::GetService {
                    id: unknown.clone(),
                },
            ),
            Op::List => (
                Method::GET,
                "services".to_owned(),
                None,
                GatewayCall::ListServices,
            ),
            Op::Update(i, b) => (
                Method::PUT,
                format!("services/{}", pick(i, &target_ids)),
                Some(b.bytes()),
                GatewayCall::UpdateService {
                    id: pick(i, &model_ids),
                    body: b.bytes(),
                },
            ),
            Op::Delete(i) => (
                Method::DELETE,
                format!("services/{}", pick(i, &target_ids)),
                None,
                GatewayCall::DeleteService {
                    id: pick(i, &model_ids),
                },
            ),
        };
        let path = format!("/{re}/v1/metadata/{path}");
        let got = cx
            .gateway_raw(&identity, method, &path, body.as_deref())
            .await?;
        run.curls.push(got.curl.clone());
        let (status, want) = oracle.gateway(call);
        if let (Op::Create(_), 200, 200) = (op, status, got.status()) {
            model_ids.push(
                want.as_ref()
                    .and_then(|w| w["id"].as_str())
                    .unwrap_or_default()
                    .to_owned(),
            );
            target_ids.push(got.json()["id"].as_str().unwrap_or_default().to_owned());
            continue;
        }
        let want = normalize(want, &model_ids, &target_ids);
        let mut got_body = got.json();
        if let Some(list) = got_body.as_array_mut() {
            list.sort_by_key(|s| s["id"].as_str().unwrap_or_default().to_owned());
        }
        if status != got.status() || (want != Value::Null && want != got_body) {
            run.mismatch = Some((
                format!("{status} {want}"),
                format!("{} {}", got.status(), got.response.text()),
            ));
            break;
        }
    }
    Ok(run)
}

async fn metadata_sequences(cx: &Ctx) -> CheckResult {
    let handle = tokio::runtime::Handle::current();
    let setup_error: Mutex<Option<Failure>> = Mutex::new(None);
    let cases = cx.model_cases;
    let result = tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        runner.run(&prop::collection::vec(op(), 1..12), |ops| {
            match handle.block_on(run_ops(cx, &ops)) {
                Ok(run) => match run.mismatch {
                    None => Ok(()),
                    Some((want, got)) => {
                        Err(TestCaseError::fail(format!("model {want}, target {got}")))
                    }
                },
                Err(f) => {
                    if let Ok(mut e) = setup_error.lock() {
                        *e = Some(f);
                    }
                    Err(TestCaseError::fail("setup failed"))
                }
            }
        })
    });
    if let Some(f) = setup_error.lock().ok().and_then(|mut e| e.take()) {
        return Err(f);
    }
    match result {
        Ok(()) => Ok(()),
        Err(TestError::Fail(_, minimal)) => {
            let run = tokio::task::block_in_place(|| handle.block_on(run_ops(cx, &minimal)))?;
            let (expected, actual) = run.mismatch.unwrap_or_else(|| {
                (
                    "a reproducible mismatch".into(),
                    "the minimal sequence passed when run again (flaky target)".into(),
                )
            });
            Err(Failure {
                expected: format!("the last call: {expected}"),
                actual: format!(
                    "{actual} (minimal sequence of {} calls: {minimal:?})",
                    run.curls.len()
                ),
                reproduce: run.curls,
            })
        }
        Err(TestError::Abort(why)) => Err(Failure::setup(why)),
    }
}
