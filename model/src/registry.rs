//! The Metadata Service: registering the APIs and event catalogs of an external solution
//! (reference §2).
//!
//! Request bodies arrive as bytes; decoding is part of the decision because the order of the
//! checks (JSON, then structure, then "api or events", then the specs' shapes) is the contract.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value, json};

use crate::config::RegistryConfig;
use crate::error::{ClientError, CommonError};
use crate::names;

/// A secret value: kept and stored, never shown in a read, a log line or `Debug`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The clear value, for the one place that needs it (the proxy's token request).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Serialize for Secret {
    /// Secrets are serialized in the clear: only durable records are serialized with them.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(********)")
    }
}

/// What a read shows instead of a secret.
pub const MASK: &str = "********";

/// OAuth client credentials of a registered API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthCredentials {
    /// The token URL.
    pub url: String,
    /// Client id.
    pub client_id: Secret,
    /// Client secret.
    pub client_secret: Secret,
}

/// A registered API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceApi {
    /// Where the proxy forwards calls.
    pub target_url: String,
    /// OAuth client credentials, if the API needs them.
    pub oauth: Option<OAuthCredentials>,
    /// The API spec as stored (a Swagger 2.0 spec is rewritten to point at the proxy).
    pub spec: Option<Value>,
}

/// One entry of `documentation.docs` (its fields are not enforced, as in Kyma; `null` reads as
/// empty, as Go's decoder reads it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocEntry {
    /// Title.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub title: String,
    /// Type.
    #[serde(default, rename = "type", deserialize_with = "null_as_empty")]
    pub kind: String,
    /// Source.
    #[serde(default, deserialize_with = "null_as_empty")]
    pub source: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Option::<String>::deserialize(d).map(Option::unwrap_or_default)
}

/// A service's documentation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Documentation {
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: String,
    /// Type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Documents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docs: Option<Vec<DocEntry>>,
}

/// A registered service, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredService {
    /// UUID v4 given at registration.
    pub id: String,
    /// `provider`.
    pub provider: String,
    /// `name`, also the display name of the service class.
    pub name: String,
    /// `description`.
    pub description: String,
    /// `shortDescription`, `description` when absent; stored, never returned by the Metadata
    /// Service (Kyma keeps it in the RE's `spec.services[].description`).
    pub short_description: String,
    /// `identifier`, empty when absent.
    pub identifier: String,
    /// Labels after the `connected-app` rules.
    pub labels: BTreeMap<String, String>,
    /// The API, if any.
    pub api: Option<ServiceApi>,
    /// The event catalog (AsyncAPI spec), if any.
    pub events: Option<Value>,
    /// Documentation, if any.
    pub documentation: Option<Documentation>,
}

impl RegisteredService {
    /// `{id, provider, name, description, identifier?, labels?}`: an item of the list.
    pub fn summary_json(&self) -> Value {
        let mut m = self.base_json();
        let mut out = Map::new();
        out.insert("id".into(), Value::String(self.id.clone()));
        out.append(&mut m);
        Value::Object(out)
    }

    /// `{provider, name, description, identifier?, labels?}`: the body of a PUT reply.
    pub fn base_json_value(&self) -> Value {
        Value::Object(self.base_json())
    }

    fn base_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("provider".into(), Value::String(self.provider.clone()));
        m.insert("name".into(), Value::String(self.name.clone()));
        m.insert(
            "description".into(),
            Value::String(self.description.clone()),
        );
        if !self.identifier.is_empty() {
            m.insert("identifier".into(), Value::String(self.identifier.clone()));
        }
        if !self.labels.is_empty() {
            m.insert("labels".into(), json!(self.labels));
        }
        m
    }

    /// The `GET` body: base fields, `api` with credentials masked, `events`, `documentation`.
    pub fn details_json(&self) -> Value {
        self.details(|_| MASK)
    }

    /// The `GET` body with the OAuth credentials as stored: the bug `secret-returned`.
    #[cfg(feature = "bug-zoo")]
    pub fn details_json_unmasked(&self) -> Value {
        self.details(Secret::expose)
    }

    fn details<'a>(&'a self, shown: impl Fn(&'a Secret) -> &'a str) -> Value {
        let mut m = self.base_json();
        if let Some(api) = &self.api {
            let mut a = Map::new();
            a.insert("targetUrl".into(), Value::String(api.target_url.clone()));
            if let Some(oauth) = &api.oauth {
                a.insert(
                    "credentials".into(),
                    json!({"oauth": {"url": oauth.url, "clientId": shown(&oauth.client_id),
                                     "clientSecret": shown(&oauth.client_secret)}}),
                );
            }
            if let Some(spec) = &api.spec {
                a.insert("spec".into(), spec.clone());
            }
            m.insert("api".into(), Value::Object(a));
        }
        if let Some(spec) = &self.events {
            m.insert("events".into(), json!({ "spec": spec }));
        }
        if let Some(doc) = &self.documentation {
            m.insert("documentation".into(), json!(doc));
        }
        Value::Object(m)
    }

    /// The entry of the RE's `spec.services`, as Kyma's Metadata Service writes it.
    pub fn entry_json(&self, re: &str, config: &RegistryConfig) -> Value {
        let resource = names::resource_name(re, &self.id);
        let mut entries = Vec::new();
        if let Some(api) = &self.api {
            let mut e = Map::new();
            e.insert("type".into(), json!("API"));
            e.insert(
                "gatewayUrl".into(),
                json!(gateway_url(config, re, &self.id)),
            );
            e.insert("accessLabel".into(), json!(resource));
            e.insert("targetUrl".into(), json!(api.target_url));
            if let Some(oauth) = &api.oauth {
                e.insert("oauthUrl".into(), json!(oauth.url));
                e.insert("credentialsSecretName".into(), json!(resource));
            }
            entries.push(Value::Object(e));
        }
        if self.events.is_some() {
            entries.push(json!({"type": "Events"}));
        }
        json!({
            "id": self.id,
            "identifier": self.identifier,
            "name": names::service_entry_name(&self.name, &self.id),
            "displayName": self.name,
            "description": self.short_description,
            "longDescription": self.description,
            "providerDisplayName": self.provider,
            "labels": self.labels,
            "tags": [],
            "entries": entries,
        })
    }
}

/// The URL at which the proxy serves a registered API: `<proxy_url>/re-<re>-<id>`.
pub fn gateway_url(config: &RegistryConfig, re: &str, service_id: &str) -> String {
    format!(
        "{}/{}",
        config.proxy_url,
        names::resource_name(re, service_id)
    )
}

/// Why the Metadata Service refused a request. Every variant is one documented status and
/// message (reference §2.3–§2.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataError {
    /// The body is not JSON or a field has the wrong type.
    Unmarshal(String),
    /// Struct validation: one message per failing field, in field order.
    InvalidStructure(Vec<String>),
    /// Neither `api` nor `events`.
    NeitherApiNorEvents,
    /// `api.spec` or `events.spec` is not a JSON object.
    SpecNotObject {
        /// `api` or `events`.
        part: SpecPart,
        /// The decoder's message.
        detail: String,
    },
    /// Another service of the RE has this identifier.
    IdentifierExists(String),
    /// No service with this id.
    NotFound(String),
    /// PUT on an unknown id.
    UpdateNotFound(String),
    /// The RE does not exist (Kyma: a masked 500).
    RemoteEnvironmentNotFound(String),
    /// A URL the proxy would call is refused by ACE's egress policy (ACE only: Kyma 0.5
    /// registered any URL and let the proxy reach the cluster's own services).
    EgressRefused {
        /// `targetUrl` or `credentials.oauth.url`.
        // `std::primitive::str`, not `str`: see `crate::wire::static_str`.
        #[serde(with = "crate::wire::static_str")]
        field: &'static std::primitive::str,
        /// The URL.
        url: String,
        /// Why the policy refuses it.
        reason: String,
    },
}

/// Which spec of a service definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SpecPart {
    /// `api.spec`.
    Api,
    /// `events.spec`.
    Events,
}

impl MetadataError {
    /// The message of the `{code, error}` body.
    pub fn message(&self) -> String {
        const VALIDATE: &str = "Failed to validate request body";
        match self {
            MetadataError::Unmarshal(e) => format!("Failed to unmarshal request body, {e}"),
            MetadataError::InvalidStructure(errs) => format!(
                "{VALIDATE}, Incorrect structure of service definition, {}",
                errs.join(";")
            ),
            MetadataError::NeitherApiNorEvents => format!(
                "{VALIDATE}, At least one of service definition attributes: 'api', 'events' have to be provided"
            ),
            MetadataError::SpecNotObject { part, detail } => {
                let p = match part {
                    SpecPart::Api => "api",
                    SpecPart::Events => "events",
                };
                format!("{VALIDATE}, {p}.Spec is not a proper json object, {detail}")
            }
            MetadataError::IdentifierExists(x) => {
                format!("Service with Identifier {x} already exists")
            }
            MetadataError::NotFound(id) => format!("Service with ID {id} not found"),
            MetadataError::UpdateNotFound(id) => {
                format!("Updating {id} service failed, Service with ID {id} not found")
            }
            MetadataError::RemoteEnvironmentNotFound(re) => {
                format!("Remote Environment {re} not found")
            }
            MetadataError::EgressRefused { field, url, reason } => {
                format!("{VALIDATE}, {field}: {url} is refused by ACE's egress policy: {reason}")
            }
        }
    }
}

impl ClientError for MetadataError {
    fn status(&self) -> u16 {
        match self {
            MetadataError::IdentifierExists(_) => 409,
            MetadataError::NotFound(_)
            | MetadataError::UpdateNotFound(_)
            | MetadataError::RemoteEnvironmentNotFound(_) => 404,
            _ => 400,
        }
    }
    fn body(&self) -> Value {
        CommonError::new(self.status(), self.message()).to_json()
    }
}

/// A service definition as the client sent it, after decoding and validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceDefinition {
    provider: String,
    name: String,
    description: String,
    short_description: Option<String>,
    identifier: String,
    labels: Option<BTreeMap<String, String>>,
    api: Option<ServiceApi>,
    events: Option<Value>,
    documentation: Option<Documentation>,
}

// The wire form, decoded leniently (every field optional) so that validation can report
// missing fields in Kyma's words and order.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireService {
    provider: Option<String>,
    name: Option<String>,
    description: Option<String>,
    short_description: Option<String>,
    identifier: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    api: Option<WireApi>,
    events: Option<WireEvents>,
    documentation: Option<WireDocumentation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireApi {
    target_url: Option<String>,
    credentials: Option<WireCredentials>,
    spec: Option<Value>,
}

#[derive(Deserialize)]
struct WireCredentials {
    oauth: Option<WireOAuth>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireOAuth {
    url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

#[derive(Deserialize)]
struct WireEvents {
    spec: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireDocumentation {
    display_name: Option<String>,
    description: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    tags: Option<Vec<String>>,
    docs: Option<Vec<Option<DocEntry>>>,
}

// Field names of each wire object, for Go's case-insensitive key matching.
const SERVICE_KEYS: &[&str] = &[
    "provider",
    "name",
    "description",
    "shortDescription",
    "identifier",
    "labels",
    "api",
    "events",
    "documentation",
];
const API_KEYS: &[&str] = &["targetUrl", "credentials", "spec"];
const CREDENTIALS_KEYS: &[&str] = &["oauth"];
const OAUTH_KEYS: &[&str] = &["url", "clientId", "clientSecret"];
const EVENTS_KEYS: &[&str] = &["spec"];
const DOCUMENTATION_KEYS: &[&str] = &["displayName", "description", "type", "tags", "docs"];
const DOC_KEYS: &[&str] = &["title", "type", "source"];

/// Renames keys that match a known field case-insensitively to the field's name, as Go's
/// `encoding/json` does (the seeds send `"Identifier"`).
fn fold_keys(value: &mut Value, known: &[&str]) {
    let Value::Object(map) = value else { return };
    let old = std::mem::take(map);
    let mut folded: Vec<(String, Value)> = Vec::with_capacity(old.len());
    for (key, v) in old {
        let target = known
            .iter()
            .find(|k| **k == key)
            .or_else(|| known.iter().find(|k| k.eq_ignore_ascii_case(&key)));
        match target {
            // Go decodes keys in order: a later key for the same field wins.
            Some(k) => match folded.iter_mut().find(|(fk, _)| fk == k) {
                Some(slot) => slot.1 = v,
                None => folded.push(((*k).to_owned(), v)),
            },
            None => folded.push((key, v)),
        }
    }
    map.extend(folded);
}

fn fold_service(value: &mut Value) {
    fold_keys(value, SERVICE_KEYS);
    let Value::Object(map) = value else { return };
    if let Some(api) = map.get_mut("api") {
        fold_keys(api, API_KEYS);
        if let Some(Value::Object(a)) = Some(api)
            && let Some(creds) = a.get_mut("credentials")
        {
            fold_keys(creds, CREDENTIALS_KEYS);
            if let Value::Object(c) = creds
                && let Some(oauth) = c.get_mut("oauth")
            {
                fold_keys(oauth, OAUTH_KEYS);
            }
        }
    }
    if let Some(events) = map.get_mut("events") {
        fold_keys(events, EVENTS_KEYS);
    }
    if let Some(doc) = map.get_mut("documentation") {
        fold_keys(doc, DOCUMENTATION_KEYS);
        if let Value::Object(d) = doc
            && let Some(Value::Array(docs)) = d.get_mut("docs")
        {
            for entry in docs {
                fold_keys(entry, DOC_KEYS);
            }
        }
    }
}

/// Go decodes a JSON object (or `null`) into a struct and nothing else; serde would also take
/// an array of the fields in order. Refuse that as Go does, before decoding.
fn require_objects(value: &Value) -> Result<(), MetadataError> {
    let check = |v: Option<&Value>, field: &str, ty: &str| match v {
        None | Some(Value::Null | Value::Object(_)) => Ok(()),
        Some(other) => Err(MetadataError::Unmarshal(format!(
            "json: cannot unmarshal {} into Go struct field {field} of type {ty}",
            json_kind(other)
        ))),
    };
    let api = value.get("api");
    check(api, "ServiceDetails.api", "externalapi.API")?;
    let credentials = api.and_then(|a| a.get("credentials"));
    check(credentials, "API.credentials", "externalapi.Credentials")?;
    check(
        credentials.and_then(|c| c.get("oauth")),
        "Credentials.oauth",
        "externalapi.Oauth",
    )?;
    check(
        value.get("events"),
        "ServiceDetails.events",
        "externalapi.Events",
    )?;
    let documentation = value.get("documentation");
    check(
        documentation,
        "ServiceDetails.documentation",
        "externalapi.Documentation",
    )?;
    if let Some(Value::Array(docs)) = documentation.and_then(|d| d.get("docs")) {
        for doc in docs {
            check(Some(doc), "Documentation.docs", "externalapi.DocsObject")?;
        }
    }
    Ok(())
}

/// Decodes and validates a service definition in the order of reference §2.3.
pub fn parse_service_definition(body: &[u8]) -> Result<ServiceDefinition, MetadataError> {
    // 1. JSON and field types.
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| MetadataError::Unmarshal(e.to_string()))?;
    if !value.is_object() {
        return Err(MetadataError::Unmarshal(format!(
            "json: cannot unmarshal {} into Go value of type externalapi.ServiceDetails",
            json_kind(&value)
        )));
    }
    fold_service(&mut value);
    require_objects(&value)?;
    let wire: WireService =
        serde_json::from_value(value).map_err(|e| MetadataError::Unmarshal(e.to_string()))?;

    // 2. Struct validation, one message per field in struct field order.
    let mut errs = Vec::new();
    let required = |v: &Option<String>, msg: &str, errs: &mut Vec<String>| {
        if v.as_deref().unwrap_or("").is_empty() {
            errs.push(msg.to_owned());
        }
    };
    required(&wire.provider, "Provider field cannot be empty.", &mut errs);
    required(&wire.name, "Name field cannot be empty.", &mut errs);
    required(
        &wire.description,
        "Description field cannot be empty.",
        &mut errs,
    );
    if let Some(api) = &wire.api {
        match api.target_url.as_deref().unwrap_or("") {
            "" => errs.push("targetUrl field cannot be empty.".to_owned()),
            url if !is_url(url) => errs.push(format!("targetUrl: {url} does not validate as url")),
            _ => {}
        }
        if let Some(creds) = &api.credentials {
            match &creds.oauth {
                None => errs.push("oauth field cannot be empty".to_owned()),
                Some(oauth) => {
                    match oauth.url.as_deref().unwrap_or("") {
                        "" => errs.push("oauth url field cannot be empty".to_owned()),
                        url if !is_url(url) => {
                            errs.push(format!("url: {url} does not validate as url"))
                        }
                        _ => {}
                    }
                    required(
                        &oauth.client_id,
                        "oauth clientId field cannot be empty",
                        &mut errs,
                    );
                    required(
                        &oauth.client_secret,
                        "oauth clientSecret cannot be empty",
                        &mut errs,
                    );
                }
            }
        }
    }
    if let Some(events) = &wire.events
        && matches!(events.spec, None | Some(Value::Null))
    {
        errs.push("spec cannot be empty".to_owned());
    }
    if let Some(doc) = &wire.documentation {
        required(
            &doc.display_name,
            "displayName field cannot be empty in documentation",
            &mut errs,
        );
        required(
            &doc.description,
            "description field cannot be empty in documentation",
            &mut errs,
        );
        required(
            &doc.kind,
            "type field cannot be empty in documentation",
            &mut errs,
        );
    }
    if !errs.is_empty() {
        return Err(MetadataError::InvalidStructure(errs));
    }

    // 3. At least one of api and events.
    if wire.api.is_none() && wire.events.is_none() {
        return Err(MetadataError::NeitherApiNorEvents);
    }

    // 4. Specs must be JSON objects (api.spec may also be null).
    if let Some(api) = &wire.api
        && let Some(spec) = &api.spec
        && !(spec.is_object() || spec.is_null())
    {
        return Err(MetadataError::SpecNotObject {
            part: SpecPart::Api,
            detail: not_an_object(spec),
        });
    }
    if let Some(events) = &wire.events
        && let Some(spec) = &events.spec
        && !spec.is_object()
    {
        return Err(MetadataError::SpecNotObject {
            part: SpecPart::Events,
            detail: not_an_object(spec),
        });
    }

    let api = wire.api.map(|api| ServiceApi {
        target_url: api.target_url.unwrap_or_default(),
        oauth: api
            .credentials
            .and_then(|c| c.oauth)
            .map(|o| OAuthCredentials {
                url: o.url.unwrap_or_default(),
                client_id: Secret::new(o.client_id.unwrap_or_default()),
                client_secret: Secret::new(o.client_secret.unwrap_or_default()),
            }),
        spec: api.spec.filter(|s| !s.is_null()),
    });
    Ok(ServiceDefinition {
        provider: wire.provider.unwrap_or_default(),
        name: wire.name.unwrap_or_default(),
        description: wire.description.unwrap_or_default(),
        short_description: wire.short_description.filter(|s| !s.is_empty()),
        identifier: wire.identifier.unwrap_or_default(),
        labels: wire.labels,
        api,
        events: wire.events.and_then(|e| e.spec),
        documentation: wire.documentation.map(|d| Documentation {
            display_name: d.display_name.unwrap_or_default(),
            description: d.description.unwrap_or_default(),
            kind: d.kind.unwrap_or_default(),
            tags: d.tags,
            docs: d.docs.map(|docs| {
                docs.into_iter()
                    .map(|doc| {
                        doc.unwrap_or(DocEntry {
                            title: String::new(),
                            kind: String::new(),
                            source: String::new(),
                        })
                    })
                    .collect()
            }),
        }),
    })
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

fn not_an_object(v: &Value) -> String {
    format!(
        "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
        json_kind(v)
    )
}

/// The pattern of a URL the Metadata Service accepts, in govalidator's spirit: an optional
/// scheme, an optional user, a host name or IPv4 address (labels of letters, digits and inner
/// hyphens; bracketed IPv6 literals are not accepted), an optional port, and an optional path, query or fragment without
/// spaces or control characters. `specs/gateway.yaml` carries the same pattern, so the spec and
/// the server agree; the classes are spelled in ASCII because `\s` differs between regex
/// dialects.
pub const URL_PATTERN: &str = r"^((https?|ftp|tcp|udp|wss?)://)?([^\x00-\x20\x7f@/]+@)?([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?)(:[0-9]{1,5})?([/?#][^\x00-\x20\x7f]*)?$";

/// Shortest and longest accepted URL (govalidator: more than 3, fewer than 2083 characters).
pub const URL_LENGTH: std::ops::RangeInclusive<usize> = 4..=2082;

/// Whether `s` is a URL the Metadata Service accepts ([`URL_PATTERN`], [`URL_LENGTH`]).
pub fn is_url(s: &str) -> bool {
    static URL: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(URL_PATTERN).expect("the URL pattern compiles")
    });
    URL_LENGTH.contains(&s.chars().count()) && URL.is_match(s)
}

impl ServiceDefinition {
    /// The first URL of the API (its target, then its OAuth server) that `policy` refuses
    /// from what the URL itself shows (an address literal, `localhost`); names are checked
    /// again on the addresses they resolve to when the proxy connects.
    pub fn egress_problem(&self, policy: &crate::egress::EgressPolicy) -> Option<MetadataError> {
        let api = self.api.as_ref()?;
        let urls = [("targetUrl", Some(&api.target_url))]
            .into_iter()
            .chain([("credentials.oauth.url", api.oauth.as_ref().map(|o| &o.url))]);
        urls.filter_map(|(field, url)| Some((field, url?)))
            .find_map(|(field, url)| {
                policy
                    .check_url(url)
                    .err()
                    .map(|refusal| MetadataError::EgressRefused {
                        field,
                        url: url.clone(),
                        reason: refusal.to_string(),
                    })
            })
    }

    /// The identifier the client asked for (empty when none).
    pub fn identifier(&self) -> &str {
        &self.identifier
    }

    /// The stored form of this definition for service `id` of `re`: the `connected-app` label
    /// rules, `shortDescription` defaulting to `description`, and the Swagger 2.0 rewrite.
    pub fn into_service(
        self,
        re: &str,
        id: String,
        identifier: String,
        config: &RegistryConfig,
    ) -> RegisteredService {
        let labels = match self.labels {
            None => BTreeMap::from([("connected-app".to_owned(), re.to_owned())]),
            Some(mut labels) => {
                if let Some(v) = labels.get_mut("connected-app") {
                    re.clone_into(v);
                }
                labels
            }
        };
        let gateway = gateway_url(config, re, &id);
        let api = self.api.map(|mut api| {
            api.spec = api.spec.map(|spec| rewrite_swagger(spec, &gateway));
            api
        });
        RegisteredService {
            short_description: self
                .short_description
                .unwrap_or_else(|| self.description.clone()),
            id,
            provider: self.provider,
            name: self.name,
            description: self.description,
            identifier,
            labels,
            api,
            events: self.events,
            documentation: self.documentation,
        }
    }
}

/// A Swagger 2.0 spec is rewritten to be called through the proxy: `host` = the proxy's host,
/// `schemes` = its scheme, `basePath` = its path prefix (Kyma removed `basePath` and forced
/// `http`, because its proxy had no path prefix). Other specs are kept as they are.
pub fn rewrite_swagger(mut spec: Value, gateway_url: &str) -> Value {
    let is_swagger2 = spec.get("swagger").and_then(Value::as_str) == Some("2.0");
    let Value::Object(map) = &mut spec else {
        return spec;
    };
    if !is_swagger2 {
        return spec;
    }
    let (scheme, rest) = gateway_url
        .split_once("://")
        .unwrap_or(("http", gateway_url));
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    map.insert("host".into(), json!(host));
    map.insert("schemes".into(), json!([scheme]));
    if path.is_empty() {
        map.remove("basePath");
    } else {
        map.insert("basePath".into(), json!(path));
    }
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(body: &str) -> MetadataError {
        match parse_service_definition(body.as_bytes()) {
            Err(e) => e,
            Ok(d) => panic!("accepted {d:?}"),
        }
    }

    #[test]
    fn rejects_malformed_json_and_wrong_types_first() {
        assert!(matches!(err("{"), MetadataError::Unmarshal(_)));
        assert!(matches!(err(r#"{"name": 1}"#), MetadataError::Unmarshal(_)));
        assert!(matches!(err("[]"), MetadataError::Unmarshal(_)));
    }

    #[test]
    fn lists_every_missing_field_in_struct_order() {
        let e = err(
            r#"{"api": {"credentials": {"oauth": {"url": "test_com/token"}}}, "events": {}, "documentation": {}}"#,
        );
        assert_eq!(
            e.message(),
            "Failed to validate request body, Incorrect structure of service definition, \
             Provider field cannot be empty.;Name field cannot be empty.;Description field cannot be empty.;\
             targetUrl field cannot be empty.;url: test_com/token does not validate as url;\
             oauth clientId field cannot be empty;oauth clientSecret cannot be empty;spec cannot be empty;\
             displayName field cannot be empty in documentation;description field cannot be empty in documentation;\
             type field cannot be empty in documentation"
        );
    }

    #[test]
    fn empty_credentials_need_oauth() {
        let e = err(
            r#"{"provider":"p","name":"n","description":"d","api":{"targetUrl":"http://x.com","credentials":{}}}"#,
        );
        assert_eq!(
            e,
            MetadataError::InvalidStructure(vec!["oauth field cannot be empty".into()])
        );
    }

    #[test]
    fn nested_objects_must_be_objects_as_go_requires() {
        for body in [
            r#"{"provider":"p","name":"n","description":"d","api":["http://x.com"]}"#,
            r#"{"provider":"p","name":"n","description":"d","api":{"targetUrl":"http://x.com","credentials":[1]}}"#,
            r#"{"provider":"p","name":"n","description":"d","events":[{}]}"#,
            r#"{"provider":"p","name":"n","description":"d","events":{"spec":{}},"documentation":{"displayName":"a","description":"b","type":"c","docs":[[null,null]]}}"#,
        ] {
            assert!(matches!(err(body), MetadataError::Unmarshal(_)), "{body}");
        }
    }

    #[test]
    fn null_optional_fields_read_as_absent_like_go() {
        let d = parse_service_definition(
            br#"{"provider":"p","name":"n","description":"d","identifier":null,"labels":null,"api":null,
                 "events":{"spec":{}},"documentation":{"displayName":"x","description":"y","type":"z","tags":null,
                 "docs":[{"title":null,"type":null,"source":null},null]}}"#,
        );
        let d = d.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(d.identifier(), "");
        assert!(d.api.is_none());
    }

    #[test]
    fn requires_api_or_events_after_the_structure() {
        assert_eq!(
            err(r#"{"provider":"p","name":"n","description":"d"}"#),
            MetadataError::NeitherApiNorEvents
        );
    }

    #[test]
    fn specs_must_be_objects() {
        let e = err(
            r#"{"provider":"p","name":"n","description":"d","api":{"targetUrl":"http://x.com","spec":"s"}}"#,
        );
        assert_eq!(
            e.message(),
            "Failed to validate request body, api.Spec is not a proper json object, \
             json: cannot unmarshal string into Go value of type map[string]interface {}"
        );
        let e = err(r#"{"provider":"p","name":"n","description":"d","events":{"spec":[1]}}"#);
        assert!(matches!(
            e,
            MetadataError::SpecNotObject {
                part: SpecPart::Events,
                ..
            }
        ));
        // api.spec may be null.
        assert!(parse_service_definition(
            br#"{"provider":"p","name":"n","description":"d","api":{"targetUrl":"http://x.com","spec":null}}"#
        )
        .is_ok());
    }

    #[test]
    fn matches_field_names_case_insensitively_like_go() {
        let d = parse_service_definition(
            br#"{"Provider":"p","NAME":"n","description":"d","Identifier":"identifier","Events":{"Spec":{}}}"#,
        );
        let d = d.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(d.identifier(), "identifier");
        assert_eq!(d.provider, "p");
        assert!(d.events.is_some());
    }

    #[test]
    fn url_validation_follows_govalidator_in_spirit() {
        for ok in [
            "http://httpbin.org/",
            "https://www.orders.com/v1/orders",
            "httpbin.org",
            "http://localhost:8080/x?y=1",
            "http://127.0.0.1:1/",
            "https://user:pw@orders.com:8443/v1?x=1#f",
        ] {
            assert!(is_url(ok), "{ok}");
        }
        for bad in [
            "test_com/token",
            "",
            "a b",
            "http://",
            "gopher://x.com",
            "http://x.com:abc",
            ".x.com",
        ] {
            assert!(!is_url(bad), "{bad}");
        }
    }

    #[test]
    fn labels_get_connected_app_only_when_absent_or_already_there() {
        let cfg = RegistryConfig::default();
        let svc = |labels: &str| {
            let body = format!(
                r#"{{"provider":"p","name":"n","description":"d","events":{{"spec":{{}}}}{labels}}}"#
            );
            parse_service_definition(body.as_bytes())
                .unwrap_or_else(|e| panic!("{e:?}"))
                .into_service("ec", "id".into(), String::new(), &cfg)
                .labels
        };
        assert_eq!(
            svc(""),
            BTreeMap::from([("connected-app".into(), "ec".into())])
        );
        assert_eq!(
            svc(r#","labels":null"#),
            BTreeMap::from([("connected-app".into(), "ec".into())])
        );
        assert_eq!(
            svc(r#","labels":{"connected-app":"other","a":"b"}"#),
            BTreeMap::from([
                ("connected-app".into(), "ec".into()),
                ("a".into(), "b".into())
            ])
        );
        assert_eq!(
            svc(r#","labels":{"a":"b"}"#),
            BTreeMap::from([("a".into(), "b".into())])
        );
    }

    #[test]
    fn swagger_2_specs_point_at_the_proxy() {
        let spec = json!({"swagger": "2.0", "host": "orders.com", "basePath": "/v1", "schemes": ["https"]});
        let out = rewrite_swagger(spec, "http://127.0.0.1:8090/re-ec-id");
        assert_eq!(
            out,
            json!({"swagger": "2.0", "host": "127.0.0.1:8090", "basePath": "/re-ec-id", "schemes": ["http"]})
        );
        let openapi = json!({"openapi": "3.0.0"});
        assert_eq!(rewrite_swagger(openapi.clone(), "http://h/p"), openapi);
    }

    #[test]
    fn reads_mask_credentials() {
        let d = parse_service_definition(
            br#"{"provider":"p","name":"n","description":"d","api":{"targetUrl":"http://x.com","credentials":{"oauth":{"url":"http://o.com/token","clientId":"cid-123","clientSecret":"top-secret"}}}}"#,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let s = d.into_service("ec", "id".into(), String::new(), &RegistryConfig::default());
        let shown = s.details_json().to_string();
        assert!(!shown.contains("top-secret") && !shown.contains("cid-123"));
        assert!(shown.contains(MASK));
        assert!(!format!("{s:?}").contains("top-secret"));
    }
}
