//! The model as the clients' oracle: every answer a solution sees to its registry and event
//! calls must equal what `ace-model` predicts for it.
//!
//! Under faults a client does not always know whether a request took effect: its answer may
//! be lost. The oracle then follows both possible states (the model is cloned), and every
//! answer seen later keeps only the states that predict it; none left is a violation. Ids
//! differ between the server and the model (each draws its own), so answers are compared
//! with every service id replaced by the service's identifier.

use std::collections::BTreeMap;

use ace_conformance::oracle::Oracle;
use ace_model::GatewayCall;
use ace_model::bus::GatewayEvent;
use serde_json::Value;

/// A call a solution makes on its RE, named by service identifiers rather than ids.
#[derive(Clone, Debug)]
pub enum Call {
    /// `POST /{re}/v1/metadata/services`.
    Create {
        /// The identifier in the body.
        identifier: String,
        /// The body.
        body: Vec<u8>,
    },
    /// `GET /{re}/v1/metadata/services`.
    List,
    /// `GET /{re}/v1/metadata/services/{id}`.
    Get(String),
    /// `PUT /{re}/v1/metadata/services/{id}`.
    Update(String, Vec<u8>),
    /// `DELETE /{re}/v1/metadata/services/{id}`.
    Delete(String),
    /// `POST /{re}/v1/events`.
    Publish(Vec<u8>),
}

impl Call {
    /// Whether the call may change what later calls are answered.
    fn writes(&self) -> bool {
        matches!(
            self,
            Call::Create { .. } | Call::Update(..) | Call::Delete(_)
        )
    }
}

/// An id no service has.
const UNKNOWN_ID: &str = "00000000-0000-4000-8000-0000000000ff";
/// The most states followed at once.
const MAX_CANDIDATES: usize = 64;

/// One state the server may be in, with the model's service ids by identifier (kept after a
/// service is deleted, so that its id in a later answer still reads as the identifier).
#[derive(Clone, Debug)]
struct Candidate {
    oracle: Oracle,
    ids: BTreeMap<String, String>,
}

/// The states of one RE the answers seen so far allow.
#[derive(Debug)]
pub struct Mirror {
    candidates: Vec<Candidate>,
    /// The server's service ids, by identifier, as the answers showed them.
    server_ids: BTreeMap<String, String>,
    broken: bool,
    /// Answers compared.
    pub compared: usize,
    /// Most states followed at once.
    pub widest: usize,
}

fn normalize(body: Option<&Value>, ids: &BTreeMap<String, String>) -> String {
    let mut text = body.map(Value::to_string).unwrap_or_default();
    for (identifier, id) in ids {
        text = text.replace(id.as_str(), &format!("<{identifier}>"));
    }
    text
}

impl Mirror {
    /// A mirror of RE `re`, onboarded, behind the gateway `gateway_url`.
    pub fn new(re: &str, gateway_url: &str) -> Mirror {
        Mirror {
            candidates: vec![Candidate {
                oracle: Oracle::new(re, gateway_url),
                ids: BTreeMap::new(),
            }],
            server_ids: BTreeMap::new(),
            broken: false,
            compared: 0,
            widest: 1,
        }
    }

    fn gateway_call(c: &Candidate, call: &Call) -> GatewayCall {
        let id = |identifier: &String| {
            c.ids
                .get(identifier)
                .cloned()
                .unwrap_or_else(|| UNKNOWN_ID.to_owned())
        };
        match call {
            Call::Create { body, .. } => GatewayCall::CreateService { body: body.clone() },
            Call::List => GatewayCall::ListServices,
            Call::Get(identifier) => GatewayCall::GetService { id: id(identifier) },
            Call::Update(identifier, body) => GatewayCall::UpdateService {
                id: id(identifier),
                body: body.clone(),
            },
            Call::Delete(identifier) => GatewayCall::DeleteService { id: id(identifier) },
            Call::Publish(body) => GatewayCall::PublishEvent(GatewayEvent {
                body: body.clone(),
                headers: Vec::new(),
            }),
        }
    }

    /// The server's id of the service `identifier`, once an answer has shown it.
    pub fn server_id(&self, identifier: &str) -> Option<&str> {
        self.server_ids.get(identifier).map(String::as_str)
    }

    /// Takes in `call` and its answer (`None`: lost, the call may or may not have taken
    /// effect). An answer no possible state predicts is a violation, described in the error;
    /// the mirror stops checking after the first.
    pub fn observe(
        &mut self,
        call: &Call,
        answer: Option<(u16, Option<&Value>)>,
    ) -> Result<(), String> {
        if self.broken {
            return Ok(());
        }
        // Learn the server's ids from the answer.
        match (call, answer) {
            (Call::Create { identifier, .. }, Some((200, Some(body)))) => {
                if let Some(id) = body["id"].as_str() {
                    self.server_ids.insert(identifier.clone(), id.to_owned());
                }
            }
            (Call::List, Some((200, Some(Value::Array(items))))) => {
                for item in items {
                    if let (Some(identifier), Some(id)) =
                        (item["identifier"].as_str(), item["id"].as_str())
                    {
                        self.server_ids.insert(identifier.to_owned(), id.to_owned());
                    }
                }
            }
            _ => {}
        }
        if answer.is_none() && !call.writes() {
            return Ok(());
        }
        let mut next = Vec::new();
        let mut predicted = Vec::new();
        for c in self.candidates.drain(..) {
            let mut applied = c.clone();
            let (status, body) = applied.oracle.gateway(Self::gateway_call(&applied, call));
            for (identifier, id) in applied.oracle.service_ids() {
                applied.ids.insert(identifier, id);
            }
            match answer {
                None => {
                    next.push(c);
                    next.push(applied);
                }
                Some((got, actual)) => {
                    let want = normalize(body.as_ref(), &applied.ids);
                    if got == status && normalize(actual, &self.server_ids) == want {
                        next.push(applied);
                    } else {
                        predicted.push(format!("{status} {want}"));
                    }
                }
            }
        }
        if answer.is_some() {
            self.compared += 1;
        }
        if next.is_empty() {
            self.broken = true;
            let (got, actual) = answer.unwrap_or((0, None));
            predicted.dedup();
            return Err(format!(
                "every answer equals the model's prediction: {call:?} was answered {got} {}, the model predicts {}",
                normalize(actual, &self.server_ids),
                predicted.join(" or ")
            ));
        }
        next.truncate(MAX_CANDIDATES);
        self.widest = self.widest.max(next.len());
        self.candidates = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn create(identifier: &str) -> Call {
        let body = json!({"provider": "p", "name": "n", "description": "d",
                          "identifier": identifier, "events": {"spec": {"asyncapi": "1.0.0"}}});
        Call::Create {
            identifier: identifier.into(),
            body: body.to_string().into_bytes(),
        }
    }

    const SERVER_ID: &str = "11111111-1111-4111-8111-111111111111";

    #[test]
    fn answers_are_compared_with_ids_read_as_identifiers() {
        let mut m = Mirror::new("ec", "https://ace:8444");
        let created = json!({"id": SERVER_ID});
        m.observe(&create("a"), Some((200, Some(&created))))
            .expect("the model registers it too");
        assert_eq!(m.server_id("a"), Some(SERVER_ID));
        m.observe(&Call::Get("a".into()), Some((404, None)))
            .expect_err("the model has the service: a 404 is not what it predicts");
        // The mirror stops after its first violation.
        m.observe(&Call::Get("a".into()), Some((500, None)))
            .expect("no second report");
        assert_eq!(m.compared, 2);
    }

    #[test]
    fn a_lost_answer_leaves_two_possible_states_and_the_next_answer_picks_one() {
        for (retry, status) in [
            (json!({"error": "x"}), 409),
            (json!({"id": SERVER_ID}), 200),
        ] {
            let mut m = Mirror::new("ec", "https://ace:8444");
            m.observe(&create("a"), None)
                .expect("a lost answer is no violation");
            let body = if status == 409 {
                // Whatever the model says for a second registration of the identifier.
                let mut c = m.candidates[1].clone();
                let (_, body) = c.oracle.gateway(Mirror::gateway_call(&c, &create("a")));
                body.unwrap_or(retry)
            } else {
                retry
            };
            m.observe(&create("a"), Some((status, Some(&body))))
                .unwrap_or_else(|e| panic!("{status}: {e}"));
            assert_eq!(m.widest, 2);
            assert_eq!(m.candidates.len(), 1, "{status} leaves one state");
        }
        // A read does not fork: nothing can have changed.
        let mut m = Mirror::new("ec", "https://ace:8444");
        m.observe(&Call::List, None).expect("lost");
        assert_eq!(m.candidates.len(), 1);
        m.observe(&Call::List, Some((200, Some(&json!([{"id": SERVER_ID}])))))
            .expect_err("the model has no service to list");
    }
}
