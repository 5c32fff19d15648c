//! Publishing: the Event Service's checks (reference §3.3) and the publish API's checks
//! (reference §4.1), with their exact error bodies.
//!
//! Both surfaces parse the body once, check the fields in the documented order and either
//! refuse with a typed error ([`EventServiceError`], [`PublishError`]) or produce an
//! [`Event`] ready to be accepted.

use std::sync::Arc;

use serde::de::Deserializer;
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};

/// Trace headers an event may carry from the publisher to its deliveries (reference §3.4).
pub const TRACE_HEADERS: [&str; 7] = [
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-ot-span-context",
];

/// Keeps only the trace headers of [`TRACE_HEADERS`] (names compared case-insensitively,
/// stored in lower case), in the order given.
pub fn trace_headers_of(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            TRACE_HEADERS
                .iter()
                .find(|t| t.eq_ignore_ascii_case(name))
                .map(|t| ((*t).to_owned(), value.clone()))
        })
        .collect()
}

/// An accepted event, as stored until every subscription due it has it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Event {
    /// `source-id`: the RE for the Event Service, the payload or `Source-Id` header otherwise.
    #[serde(rename = "source-id")]
    pub source_id: String,
    /// `event-type`.
    #[serde(rename = "event-type")]
    pub event_type: String,
    /// `event-type-version`.
    #[serde(rename = "event-type-version")]
    pub event_type_version: String,
    /// `event-id`: the client's, or a generated UUID v4.
    #[serde(rename = "event-id")]
    pub event_id: String,
    /// `event-time`, as sent (RFC 3339).
    #[serde(rename = "event-time")]
    pub event_time: String,
    /// `data`, as compact JSON text: the body of every delivery. Empty only when the body is
    /// kept by the store (`body_stored`); an accepted event's `data` is never empty otherwise,
    /// so an empty one is left out of records.
    #[serde(with = "raw_json", default, skip_serializing_if = "String::is_empty")]
    pub data: String,
    /// Trace headers passed on to deliveries (names in lower case).
    #[serde(
        default,
        rename = "trace-headers",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub trace_headers: Vec<(String, String)>,
    /// `data` is not held here but in the store, which keeps event bodies apart from the
    /// records (the shell reads it back by the event's sequence number); `data` is then empty.
    #[serde(
        default,
        rename = "body-stored",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub body_stored: bool,
}

impl Event {
    /// The same event without its body, which the store keeps.
    pub fn without_body(&self) -> Event {
        Event {
            data: String::new(),
            body_stored: true,
            ..self.clone()
        }
    }
}

impl PartialEq for Event {
    /// An event whose body is in the store equals the same event with its body in memory.
    fn eq(&self, other: &Self) -> bool {
        self.source_id == other.source_id
            && self.event_type == other.event_type
            && self.event_type_version == other.event_type_version
            && self.event_id == other.event_id
            && self.event_time == other.event_time
            && (self.body_stored || other.body_stored || self.data == other.data)
            && self.trace_headers == other.trace_headers
    }
}

/// `data` is kept as JSON text and written into records as JSON (not as a string).
///
/// Reading goes through [`Value`], not [`RawValue`], because records are nested in the
/// internally tagged [`crate::Record`], which serde buffers; a `RawValue` cannot be read
/// from a buffer.
mod raw_json {
    use super::*;

    pub fn serialize<S: Serializer>(data: &str, s: S) -> Result<S::Ok, S::Error> {
        match RawValue::from_string(data.to_owned()) {
            Ok(raw) => raw.serialize(s),
            Err(_) => Value::Null.serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Value::deserialize(d)?.to_string())
    }
}

// The patterns below are checked by hand rather than with `regex`: they run for every
// published event, and for such short strings a regex search cost several times the check.
// The tests compare them with the regexes on every short string of a small alphabet.

/// Whether `s` matches `^[a-zA-Z]+([_\-\.]?[a-zA-Z0-9]+)*$`: the pattern of `source-id` and
/// `event-type` at publish, and of a Subscription's `event_type`.
///
/// That is: an ASCII letter first, then ASCII letters and digits, with single separators
/// (`_`, `-`, `.`) between them, not at the end.
pub fn is_valid_name_token(s: &str) -> bool {
    let Some((first, rest)) = s.as_bytes().split_first() else {
        return false;
    };
    if !first.is_ascii_alphabetic() {
        return false;
    }
    let mut after_separator = false;
    for &b in rest {
        if b.is_ascii_alphanumeric() {
            after_separator = false;
        } else if matches!(b, b'_' | b'-' | b'.') && !after_separator {
            after_separator = true;
        } else {
            return false;
        }
    }
    !after_separator
}

/// Whether `s` matches `^[a-zA-Z0-9]+$` (`event-type-version` at publish).
pub fn is_valid_version(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether `s` matches the Event Service's unanchored `[a-zA-Z0-9]+`: at least one ASCII
/// letter or digit anywhere.
pub fn is_valid_version_unanchored(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_alphanumeric())
}

/// Whether `s` matches the event-id UUID pattern
/// `^[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{12}$` (any
/// version, either case).
pub fn is_valid_event_id(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// Whether `s` parses as Go's `time.RFC3339`: `T` and `Z` in upper case, an optional fraction
/// of a second, `Z` or a `±hh:mm` offset.
pub fn is_valid_event_time(s: &str) -> bool {
    if is_plain_rfc3339(s) {
        return true;
    }
    // The `time` crate also accepts lower-case `t` and `z`, which Go refuses.
    if s.bytes().any(|b| b == b't' || b == b'z') {
        return false;
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok()
}

/// Whether `s` is a valid time in the form nearly every event uses,
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, with no leap second. Checked by hand because
/// it runs for every event; `false` only means "not this form": [`is_valid_event_time`] then
/// asks the `time` crate, which decides every other case (other separators, leap seconds,
/// invalid times). The tests check that this accepts only what the `time` crate accepts.
fn is_plain_rfc3339(s: &str) -> bool {
    let s = s.as_bytes();
    let number = |at: usize, len: usize| -> Option<u32> {
        s.get(at..at + len)?.iter().try_fold(0, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + u32::from(b - b'0'))
        })
    };
    let (Some(year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = (
        number(0, 4),
        number(5, 2),
        number(8, 2),
        number(11, 2),
        number(14, 2),
        number(17, 2),
    ) else {
        return false;
    };
    // `s` has at least 19 bytes now.
    if (s[4], s[7], s[10], s[13], s[16]) != (b'-', b'-', b'T', b':', b':') {
        return false;
    }
    let leap_year = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap_year => 29,
        2 => 28,
        _ => return false,
    };
    if !(1..=days).contains(&day) || hour > 23 || minute > 59 || second > 59 {
        return false;
    }
    let mut rest = &s[19..];
    if let [b'.', fraction @ ..] = rest {
        let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            return false;
        }
        rest = &fraction[digits..];
    }
    match rest {
        [b'Z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            let two = |a: u8, b: u8| {
                (a.is_ascii_digit() && b.is_ascii_digit())
                    .then(|| u32::from(a - b'0') * 10 + u32::from(b - b'0'))
            };
            matches!((two(*h1, *h2), two(*m1, *m2)), (Some(h), Some(m)) if h <= 23 && m <= 59)
        }
        _ => false,
    }
}

/// The fields both surfaces read. Fields may be `null` (Go leaves them empty); a wrong type is
/// a syntax error, as for Go's decoder.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "source-id", default)]
    source_id: Option<String>,
    #[serde(rename = "event-type", default)]
    event_type: Option<String>,
    #[serde(rename = "event-type-version", default)]
    event_type_version: Option<String>,
    #[serde(rename = "event-id", default)]
    event_id: Option<String>,
    #[serde(rename = "event-time", default)]
    event_time: Option<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

/// Parses a body as Go's decoder would into the event struct: an object (or `null`, which
/// leaves every field empty); anything else is a syntax error.
fn parse(body: &[u8]) -> Result<RawEvent<'_>, String> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        // Read as `str`, serde_json does not check the UTF-8 of every string again (for the
        // short fields of an event, a tenth of the parse). A body that is not UTF-8 cannot
        // parse; `from_slice` then gives the decoder's error, with its position.
        Some(b'{') => match std::str::from_utf8(body) {
            Ok(text) => serde_json::from_str(text),
            Err(_) => serde_json::from_slice(body),
        }
        .map_err(|e| e.to_string()),
        Some(b'n') if serde_json::from_slice::<Value>(body).is_ok_and(|v| v.is_null()) => {
            Ok(RawEvent {
                source_id: None,
                event_type: None,
                event_type_version: None,
                event_id: None,
                event_time: None,
                data: None,
            })
        }
        _ => match serde_json::from_slice::<Value>(body) {
            Ok(v) => Err(format!(
                "json: cannot unmarshal {} into Go value of type api.PublishRequest",
                json_kind(&v)
            )),
            Err(e) => Err(e.to_string()),
        },
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `data` missing, `null` or `""` counts as missing (reference §3.3 step 9, §4.1).
fn data_missing(data: Option<&RawValue>) -> bool {
    data.is_none_or(|d| matches!(d.get(), "null" | "\"\""))
}

/// Compact JSON text of `data`: the raw text without insignificant whitespace.
fn compact(data: &RawValue) -> String {
    let text = data.get();
    // In valid JSON the only bytes up to b' ' are whitespace (control characters are escaped
    // in strings). `fold` does not stop at the first hit, so it vectorizes: the common case
    // is compact text, read to the end anyway.
    let has_whitespace = text.bytes().fold(false, |found, b| found | (b <= b' '));
    if !has_whitespace {
        return text.to_owned();
    }
    serde_json::from_str::<Value>(text)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| text.to_owned())
}

/// The message of a missing-field error at publish.
pub const MISSING_FIELD_MESSAGE: &str = "We need all required fields complete to keep you moving.";
/// The message of an invalid-field error at publish.
pub const INVALID_FIELD_MESSAGE: &str =
    "We need all your entries to be correct to keep you moving.";
/// The message of a bad request, a bad payload and an internal error at publish.
pub const INTERNAL_MESSAGE: &str =
    "Some unexpected internal error occurred, please contact support.";
/// The message of a missing `source-id` at publish (T05).
pub const MISSING_SOURCE_ID_MESSAGE: &str =
    "Either provide 'Source-Id' header or specify 'source-id' in the json payload";
/// The message of a body over the size limit (Kyma from 2019-03).
pub const TOO_LARGE_MESSAGE: &str = "Request body too large";
/// The message of a 507: the store is over its space budget (ACE's own).
pub const INSUFFICIENT_STORAGE_MESSAGE: &str = "The event store is full: the event was not accepted. Retry once subscribers have caught up or an operator has made room.";

/// Why the publish API (`POST /v1/events`) refused an event (reference §4.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublishError {
    /// The method is not POST: 400 `bad_request`.
    BadRequest,
    /// The body is larger than the limit: 413 `request_body_too_large`.
    RequestBodyTooLarge,
    /// The body is not a JSON event: 400 `bad_payload_syntax` (with the bad-request message,
    /// a Kyma quirk).
    BadPayloadSyntax,
    /// Neither the payload nor the `Source-Id` header gives a source.
    MissingSourceId,
    /// A required field is missing.
    // `std::primitive::str`, not `str`: see `crate::wire::static_str`.
    MissingField(#[serde(with = "crate::wire::static_str")] &'static std::primitive::str),
    /// A field does not match its pattern.
    // `std::primitive::str`, not `str`: see `crate::wire::static_str`.
    InvalidField(#[serde(with = "crate::wire::static_str")] &'static std::primitive::str),
    /// The `Source-Id` header (used because the payload has none) does not match its pattern.
    InvalidSourceIdHeader,
    /// The store is over its space budget: 507 `insufficient_storage` (ACE's own; Kyma 0.5
    /// accepted events its NATS Streaming could not keep).
    InsufficientStorage,
}

/// One element of `details` in an error body.
struct Detail {
    field: &'static str,
    kind: &'static str,
    message: &'static str,
}

impl PublishError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            PublishError::RequestBodyTooLarge => 413,
            PublishError::InsufficientStorage => 507,
            _ => 400,
        }
    }

    fn parts(&self) -> (&'static str, &'static str, Option<Detail>) {
        let detail = |field, kind, message| {
            Some(Detail {
                field,
                kind,
                message,
            })
        };
        match self {
            PublishError::BadRequest => ("bad_request", INTERNAL_MESSAGE, None),
            PublishError::RequestBodyTooLarge => {
                ("request_body_too_large", TOO_LARGE_MESSAGE, None)
            }
            PublishError::BadPayloadSyntax => ("bad_payload_syntax", INTERNAL_MESSAGE, None),
            PublishError::InsufficientStorage => {
                ("insufficient_storage", INSUFFICIENT_STORAGE_MESSAGE, None)
            }
            PublishError::MissingSourceId => (
                "validation_violation",
                MISSING_SOURCE_ID_MESSAGE,
                detail(
                    "source-id/Source-Id",
                    "missing_field/missing_header",
                    MISSING_SOURCE_ID_MESSAGE,
                ),
            ),
            PublishError::MissingField(f) => (
                "validation_violation",
                MISSING_FIELD_MESSAGE,
                detail(f, "missing_field", MISSING_FIELD_MESSAGE),
            ),
            PublishError::InvalidField(f) => (
                "validation_violation",
                INVALID_FIELD_MESSAGE,
                detail(f, "invalid_field", INVALID_FIELD_MESSAGE),
            ),
            PublishError::InvalidSourceIdHeader => (
                "validation_violation",
                INVALID_FIELD_MESSAGE,
                detail("Source-Id", "invalid_header", INVALID_FIELD_MESSAGE),
            ),
        }
    }

    /// The body as the publish API sends it: every field present, `moreInfo` empty,
    /// `details` `null` when there are none.
    pub fn body(&self) -> Value {
        let (kind, message, detail) = self.parts();
        let details = match detail {
            Some(d) => json!([{
                "field": d.field, "type": d.kind, "message": d.message, "moreInfo": ""
            }]),
            None => Value::Null,
        };
        json!({
            "status": self.status(), "type": kind, "message": message,
            "moreInfo": "", "details": details,
        })
    }

    /// The body as the Event Service relays it: the same error decoded into its `omitempty`
    /// structure, so empty `moreInfo` and `null` details are dropped (reference §3.4).
    pub fn relayed_body(&self) -> Value {
        let (kind, message, detail) = self.parts();
        let mut body = json!({"status": self.status(), "type": kind, "message": message});
        if let Some(d) = detail {
            body["details"] = json!([{"field": d.field, "type": d.kind, "message": d.message}]);
        }
        body
    }
}

/// Why the Event Service (`POST /{re}/v1/events`) refused an event (reference §3.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventServiceError {
    /// The body is larger than the limit: 413 `request_body_too_large` (Kyma from 2019-03).
    RequestBodyTooLarge,
    /// An empty body (`more_info` = `Bad Payload Syntax`) or a JSON error (`more_info` = the
    /// decoder's text).
    BadPayloadSyntax {
        /// The `moreInfo` field.
        more_info: String,
    },
    /// A required field is missing.
    // `std::primitive::str`, not `str`: see `crate::wire::static_str`.
    MissingField(#[serde(with = "crate::wire::static_str")] &'static std::primitive::str),
    /// A field does not match its pattern.
    // `std::primitive::str`, not `str`: see `crate::wire::static_str`.
    InvalidField(#[serde(with = "crate::wire::static_str")] &'static std::primitive::str),
    /// The event passed the Event Service but publish refused it; relayed with its status.
    Publish(PublishError),
}

impl EventServiceError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            EventServiceError::RequestBodyTooLarge => 413,
            EventServiceError::Publish(e) => e.status(),
            _ => 400,
        }
    }

    /// The body, with Go's `omitempty` (no empty `moreInfo`, no `null` details).
    pub fn body(&self) -> Value {
        let field_error = |field: &str, kind: &str, message: &str| {
            json!({
                "status": 400, "type": "validation_violation", "message": message,
                "details": [{"field": field, "type": kind, "message": message}],
            })
        };
        match self {
            EventServiceError::RequestBodyTooLarge => json!({
                "status": 413, "type": "request_body_too_large", "message": TOO_LARGE_MESSAGE
            }),
            EventServiceError::BadPayloadSyntax { more_info } => {
                let mut body = json!({
                    "status": 400, "type": "bad_payload_syntax", "message": "Bad Payload Syntax"
                });
                if !more_info.is_empty() {
                    body["moreInfo"] = Value::String(more_info.clone());
                }
                body
            }
            EventServiceError::MissingField(f) => field_error(f, "missing_field", "Missing Field"),
            EventServiceError::InvalidField(f) => field_error(f, "invalid_field", "Invalid Field"),
            EventServiceError::Publish(e) => e.relayed_body(),
        }
    }
}

/// A request to publish, before the publish validation: what the publish API reads from a
/// body and header, or what the Event Service forwards.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub source_id: String,
    pub source_from_header: bool,
    pub event_type: String,
    pub event_type_version: String,
    pub event_id: String,
    pub event_time: String,
    /// `None` when missing, `null` or `""`.
    pub data: Option<String>,
}

/// Parses a publish API body (after the method and size checks): the `Source-Id` header is
/// used only when the payload has no `source-id` (reference §4.1).
pub(crate) fn parse_publish(
    body: &[u8],
    source_id_header: Option<&str>,
) -> Result<Candidate, PublishError> {
    let raw = parse(body).map_err(|_| PublishError::BadPayloadSyntax)?;
    let payload_source = raw.source_id.unwrap_or_default();
    let (source_id, source_from_header) = if payload_source.is_empty() {
        (source_id_header.unwrap_or_default().to_owned(), true)
    } else {
        (payload_source, false)
    };
    Ok(Candidate {
        source_id,
        source_from_header,
        event_type: raw.event_type.unwrap_or_default(),
        event_type_version: raw.event_type_version.unwrap_or_default(),
        event_id: raw.event_id.unwrap_or_default(),
        event_time: raw.event_time.unwrap_or_default(),
        data: (!data_missing(raw.data)).then(|| raw.data.map(compact).unwrap_or_default()),
    })
}

/// The publish validation, step 3 of reference §4.1, in order.
pub(crate) fn validate_publish(c: &Candidate) -> Result<(), PublishError> {
    if c.source_id.is_empty() {
        return Err(PublishError::MissingSourceId);
    }
    let missing = [
        ("event-type", c.event_type.is_empty()),
        ("event-type-version", c.event_type_version.is_empty()),
        ("event-time", c.event_time.is_empty()),
        ("data", c.data.is_none()),
    ];
    if let Some((field, _)) = missing.iter().find(|(_, m)| *m) {
        return Err(PublishError::MissingField(field));
    }
    if !is_valid_name_token(&c.source_id) {
        return Err(if c.source_from_header {
            PublishError::InvalidSourceIdHeader
        } else {
            PublishError::InvalidField("source-id")
        });
    }
    if !is_valid_name_token(&c.event_type) {
        return Err(PublishError::InvalidField("event-type"));
    }
    if !is_valid_version(&c.event_type_version) {
        return Err(PublishError::InvalidField("event-type-version"));
    }
    if !is_valid_event_time(&c.event_time) {
        return Err(PublishError::InvalidField("event-time"));
    }
    if !c.event_id.is_empty() && !is_valid_event_id(&c.event_id) {
        return Err(PublishError::InvalidField("event-id"));
    }
    Ok(())
}

/// The Event Service's checks (reference §3.3, after the size check), then the enrichment
/// with `source-id` = `re` (§3.4). The result still goes through [`validate_publish`].
pub(crate) fn parse_gateway(body: &[u8], re: &str) -> Result<Candidate, EventServiceError> {
    if body.is_empty() {
        return Err(EventServiceError::BadPayloadSyntax {
            more_info: "Bad Payload Syntax".to_owned(),
        });
    }
    let raw = parse(body).map_err(|more_info| EventServiceError::BadPayloadSyntax { more_info })?;
    let event_type = raw.event_type.unwrap_or_default();
    let event_type_version = raw.event_type_version.unwrap_or_default();
    let event_time = raw.event_time.unwrap_or_default();
    let event_id = raw.event_id.unwrap_or_default();
    if event_type.is_empty() {
        return Err(EventServiceError::MissingField("event-type"));
    }
    if event_type_version.is_empty() {
        return Err(EventServiceError::MissingField("event-type-version"));
    }
    if !is_valid_version_unanchored(&event_type_version) {
        return Err(EventServiceError::InvalidField("event-type-version"));
    }
    if event_time.is_empty() {
        return Err(EventServiceError::MissingField("event-time"));
    }
    if !is_valid_event_time(&event_time) {
        return Err(EventServiceError::InvalidField("event-time"));
    }
    if !event_id.is_empty() && !is_valid_event_id(&event_id) {
        return Err(EventServiceError::InvalidField("event-id"));
    }
    if data_missing(raw.data) {
        return Err(EventServiceError::MissingField("data"));
    }
    Ok(Candidate {
        source_id: re.to_owned(),
        source_from_header: false,
        event_type,
        event_type_version,
        event_id,
        event_time,
        data: raw.data.map(compact),
    })
}

impl Candidate {
    /// The event, once [`validate_publish`] passed and the id is settled.
    pub(crate) fn into_event(
        self,
        event_id: String,
        trace_headers: Vec<(String, String)>,
    ) -> Arc<Event> {
        Arc::new(Event {
            source_id: self.source_id,
            event_type: self.event_type,
            event_type_version: self.event_type_version,
            event_id,
            event_time: self.event_time,
            data: self.data.unwrap_or_default(),
            trace_headers,
            body_stored: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;

    /// Every string of up to `max_len` characters of `alphabet`.
    fn strings(alphabet: &[char], max_len: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max_len {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    #[test]
    fn hand_written_patterns_agree_with_the_regexes() {
        let name = Regex::new(r"^[a-zA-Z]+([_\-\.]?[a-zA-Z0-9]+)*$").unwrap();
        let version = Regex::new(r"^[a-zA-Z0-9]+$").unwrap();
        let alphabet = ['a', 'Z', '0', '9', '_', '-', '.', ' ', '\n', 'é', '/'];
        for s in strings(&alphabet, 5) {
            assert_eq!(
                is_valid_name_token(&s),
                name.is_match(&s),
                "name token {s:?}"
            );
            assert_eq!(is_valid_version(&s), version.is_match(&s), "version {s:?}");
        }
    }

    #[test]
    fn the_plain_event_time_check_accepts_only_what_the_time_crate_accepts() {
        let full = |s: &str| {
            !s.contains(['t', 'z'])
                && time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .is_ok()
        };
        let mut cases = Vec::new();
        for base in [
            "2018-11-02T22:08:41+00:00",
            "2018-11-02T22:08:41.123456789Z",
            "2016-12-31T23:59:60Z",
            "2000-02-29T00:00:00-23:59",
        ] {
            cases.push(base.to_owned());
            // Every position replaced by each of a few characters, removed, or doubled.
            for i in 0..base.len() {
                for c in [
                    '0', '1', '2', '3', '5', '6', '9', 'T', 't', 'Z', 'z', ' ', ':', '-',
                ] {
                    let mut s = base.to_owned();
                    s.replace_range(i..=i, &c.to_string());
                    cases.push(s);
                }
                let mut s = base.to_owned();
                s.remove(i);
                cases.push(s);
                let mut s = base.to_owned();
                s.insert(i, base.as_bytes()[i] as char);
                cases.push(s);
            }
        }
        // Days at the ends of every month, in common, leap and century years.
        for year in ["1900", "2000", "2023", "2024", "0000", "9999"] {
            for month in 0..=13 {
                for day in [0, 1, 28, 29, 30, 31, 32] {
                    cases.push(format!("{year}-{month:02}-{day:02}T12:00:00Z"));
                }
            }
        }
        for (h, m) in [(23, 59), (24, 0), (0, 60), (0, 0)] {
            cases.push(format!("2018-11-02T22:08:41+{h:02}:{m:02}"));
            cases.push(format!("2018-11-02T22:08:41-{h:02}:{m:02}"));
        }
        for s in &cases {
            if is_plain_rfc3339(s) {
                assert!(
                    full(s),
                    "accepted by hand, refused by the time crate: {s:?}"
                );
            }
            assert_eq!(is_valid_event_time(s), full(s), "{s:?}");
        }
        assert!(is_plain_rfc3339("2018-11-02T22:08:41+00:00"));
        assert!(is_plain_rfc3339("2018-11-02T22:08:41.5Z"));
    }

    #[test]
    fn hand_written_uuid_pattern_agrees_with_the_regex() {
        let uuid = Regex::new(
            r"^[a-fA-F0-9]{8}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{4}-[a-fA-F0-9]{12}$",
        )
        .unwrap();
        let valid = "4caad296-e0c5-491e-98ac-0ed118f9474E";
        let mut cases = vec![valid.to_owned(), format!("{valid}\n"), format!("{valid}0")];
        // Every position replaced by each of a few characters, and every prefix.
        for i in 0..valid.len() {
            for c in ['0', 'f', 'F', 'g', '-', 'é', '\n'] {
                let mut s = valid.to_owned();
                s.replace_range(i..=i, &c.to_string());
                cases.push(s);
            }
            cases.push(valid[..i].to_owned());
        }
        for s in cases {
            assert_eq!(is_valid_event_id(&s), uuid.is_match(&s), "uuid {s:?}");
        }
    }
}
