//! Dead letters on the admin API: the model knows which events of which subscription are
//! dead letters (by sequence number); their fields (id, source, type, times) are in the store,
//! which this reads for each page of a listing and for a replay of one event id.

use ace_model::bus::{BusReply, BusRequest, DeadLetterRef, ReplaySelection, StoredEvent};
use ace_model::error::CommonError;
use ace_model::{Reply, Request};
use hyper::header::HeaderValue;
use serde_json::{Value, json};

use super::App;
use super::body::query_param;
use super::reply::{self, Response, from_reply};

/// Dead letters a listing answers unless `limit` says otherwise.
pub const DEFAULT_LIMIT: usize = 1000;
/// The most a listing answers at once.
pub const MAX_LIMIT: usize = 10_000;
/// The header naming where the next page starts (`?continue=` of the next request).
pub const CONTINUE_HEADER: &str = "ace-continue";

/// Events read from the store at once while resolving an event id.
const PAGE: usize = 4096;

/// `GET /v1/deadletters` and `GET /v1/namespaces/{ns}/deadletters`: at most `limit` dead
/// letters in order of subscription and event, after the `continue` token if given; the next
/// token is in the [`CONTINUE_HEADER`] header while more remain.
pub async fn list(app: &App, namespace: Option<String>, query: Option<&str>) -> Response {
    let limit = match query_param(query, "limit") {
        None => DEFAULT_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return reply::error(&CommonError::new(
                    400,
                    format!("limit must be a whole number from 1 to {MAX_LIMIT}, got {text:?}."),
                ));
            }
        },
    };
    let after = match query_param(query, "continue").map(|t| t.parse::<DeadLetterRef>()) {
        None => None,
        Some(Ok(token)) => Some(token),
        Some(Err(e)) => return reply::error(&CommonError::new(400, format!("{e}."))),
    };
    let request = Request::Bus(BusRequest::ListDeadLetters {
        namespace,
        after,
        limit,
    });
    let reply = match app.ask(request).await {
        Ok(reply) => reply,
        Err(e) => return reply::unavailable(e),
    };
    let Reply::Bus(BusReply::DeadLetters { entries, more }) = reply else {
        return from_reply(&reply);
    };
    let events = match app
        .events
        .accepted(entries.iter().map(|e| e.seq).collect())
        .await
    {
        Ok(events) => events,
        Err(e) => return store_failed(&e),
    };
    let mut events = events
        .into_iter()
        .map(|e| (e.seq, e))
        .collect::<std::collections::BTreeMap<_, _>>();
    let body: Vec<Value> = entries
        .iter()
        .map(|entry| describe(entry, events.get(&entry.seq)))
        .collect();
    events.clear();
    let mut response = reply::json(200, "application/json", &Value::Array(body));
    if let Some(next) = more
        && let Ok(value) = HeaderValue::from_str(&next.to_string())
    {
        response.headers_mut().insert(CONTINUE_HEADER, value);
    }
    response
}

/// One dead letter as the listing shows it. An event several subscriptions hold is read once
/// per page; one the store no longer has (never: a dead letter is kept until discarded) shows
/// its sequence number only.
fn describe(entry: &DeadLetterRef, event: Option<&StoredEvent>) -> Value {
    let mut out = json!({
        "namespace": entry.subscription.namespace,
        "subscription": entry.subscription.name,
        "seq": entry.seq,
    });
    if let Some(stored) = event {
        let e = &stored.event;
        out["event-id"] = json!(e.event_id);
        out["source-id"] = json!(e.source_id);
        out["event-type"] = json!(e.event_type);
        out["event-type-version"] = json!(e.event_type_version);
        out["event-time"] = json!(e.event_time);
        out["accepted-at"] = json!(stored.at.to_rfc3339());
    }
    out
}

/// A replay (`POST .../subscriptions/{name}/replay`): the model checks the request; one of
/// an event id comes back with the subscription's dead letters, whose ids are read from the
/// store, and the matching ones are replayed.
pub async fn replay(app: &App, request: Request) -> Response {
    let reply = match app.ask(request).await {
        Ok(reply) => reply,
        Err(e) => return reply::unavailable(e),
    };
    let Reply::Bus(BusReply::ReplayNeedsEvents {
        subscription,
        event_id,
        seqs,
    }) = reply
    else {
        return from_reply(&reply);
    };
    let mut matching = Vec::new();
    for page in seqs.chunks(PAGE) {
        match app.events.accepted(page.to_vec()).await {
            Ok(events) => matching.extend(
                events
                    .into_iter()
                    .filter(|e| e.event.event_id == event_id)
                    .map(|e| e.seq),
            ),
            Err(e) => return store_failed(&e),
        }
    }
    app.call(Request::Bus(BusRequest::ReplayDeadLetters {
        namespace: subscription.namespace,
        name: subscription.name,
        selection: ReplaySelection::Seqs(matching),
    }))
    .await
}

fn store_failed(e: &crate::store::StoreError) -> Response {
    tracing::error!(error = %e, "reading dead letters from the store failed");
    reply::error(&CommonError::new(
        500,
        "The dead letters could not be read from the store.",
    ))
}
