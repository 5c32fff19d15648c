//! The proxy to registered APIs (reference §5): which calls get through, where they go, and
//! how long an OAuth token is reused. The shell performs the calls.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::bugs::{Bugs, bug_on};
use crate::connector::TokenDigest;
use crate::error::{ClientError, CommonError};
use crate::registry::OAuthCredentials;
use crate::time::Timestamp;

/// Where an allowed call goes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProxyTarget {
    /// The RE.
    pub re: String,
    /// The service id.
    pub service_id: String,
    /// The registered `targetUrl`.
    pub target_url: String,
    /// OAuth client credentials to fetch a token with, if the API has them.
    pub oauth: Option<OAuthCredentials>,
    /// Do not verify the target's (and its OAuth server's) certificate: the RE's `skipVerify`.
    pub skip_verify: bool,
}

/// The proxy's decisions for every registered service, as of one state: built by
/// [`crate::State::proxy_table`], so that a shell can decide calls without asking the model
/// each time (it rebuilds the table whenever services, instances or bindings change).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProxyTable {
    /// By `re-<re>-<id>` name: the target and the digests of the keys that open it, or why
    /// it cannot be called.
    pub(crate) services: BTreeMap<String, Result<Openable, ProxyError>>,
}

/// A callable service: its target, and the digests of the keys that open it.
pub(crate) type Openable = (std::sync::Arc<ProxyTarget>, Vec<TokenDigest>);

impl ProxyTable {
    /// The decision for a call on `service` with `binding_key`: unknown service 404, service
    /// without API 400, no live binding of it 403, else its target.
    pub fn decide(
        &self,
        service: &str,
        binding_key: Option<&str>,
    ) -> Result<std::sync::Arc<ProxyTarget>, ProxyError> {
        let entry = self
            .services
            .get(service)
            .ok_or_else(|| ProxyError::UnknownService(service.to_owned()))?;
        let (target, keys) = entry.as_ref().map_err(Clone::clone)?;
        let key = binding_key
            .filter(|k| !k.is_empty())
            .ok_or(ProxyError::NotAllowed)?;
        let digest = TokenDigest::of(key);
        // Every key is compared, in constant time, so that timing does not tell which matched.
        let allowed = keys.iter().fold(false, |found, k| k.ct_eq(&digest) | found);
        if allowed {
            // Shared, not copied: the proxy decides every call with it.
            Ok(std::sync::Arc::clone(target))
        } else {
            Err(ProxyError::NotAllowed)
        }
    }
}

/// Why the proxy refused a call.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProxyError {
    /// No registered service has this `re-<re>-<id>` name.
    UnknownService(String),
    /// The service has no API (only events).
    NoApi(String),
    /// The caller holds no live binding of this service (Kyma's Istio denier: 403 `Not allowed`).
    NotAllowed,
}

impl ProxyError {
    /// The message of the `{code, error}` body.
    pub fn message(&self) -> String {
        match self {
            ProxyError::UnknownService(id) => format!("service with ID {id} not found"),
            // Kyma printed `'%!s(MISSING)'` here (a format bug); ACE prints the id.
            ProxyError::NoApi(id) => format!("service with ID '{id}' has no API"),
            ProxyError::NotAllowed => "Not allowed".to_owned(),
        }
    }
}

impl ClientError for ProxyError {
    fn status(&self) -> u16 {
        match self {
            ProxyError::UnknownService(_) => 404,
            ProxyError::NoApi(_) => 400,
            ProxyError::NotAllowed => 403,
        }
    }
    fn body(&self) -> Value {
        CommonError::new(self.status(), self.message()).to_json()
    }
}

/// The URL a proxied call goes to (reference §5.3): the target's scheme and host, the target
/// path and the request path joined with a single `/`, the target query then the request
/// query joined with `&`.
pub fn join_url(target_url: &str, request_path: &str, request_query: Option<&str>) -> String {
    let (base, target_query) = match target_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (target_url, None),
    };
    let base = base.split_once('#').map_or(base, |(b, _)| b);
    let target_query = target_query.filter(|q| !q.is_empty());
    let request_query = request_query.filter(|q| !q.is_empty());
    // Built in one allocation: the proxy joins a URL on every call.
    let mut url = String::with_capacity(
        base.len()
            + 1
            + request_path.len()
            + 2
            + target_query.map_or(0, str::len)
            + request_query.map_or(0, str::len),
    );
    url.push_str(base);
    match (base.ends_with('/'), request_path.starts_with('/')) {
        (true, true) => url.push_str(&request_path[1..]),
        (false, false) if !request_path.is_empty() => {
            url.push('/');
            url.push_str(request_path);
        }
        _ => url.push_str(request_path),
    }
    let mut separator = '?';
    for q in [target_query, request_query].into_iter().flatten() {
        url.push(separator);
        url.push_str(q);
        separator = '&';
    }
    url
}

/// The `Authorization` value for an `Access-Token` request header: the seed says it is sent
/// as a Bearer token, Kyma copied it verbatim. A value that already names a scheme (`Bearer x`,
/// `Basic x`) is kept; a bare token gets `Bearer `, so both kinds of client work.
pub fn authorization_from_access_token(value: &str) -> String {
    let value = value.trim();
    match value.split_once(' ') {
        Some((scheme, rest))
            if !scheme.is_empty()
                && !rest.trim().is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-') =>
        {
            value.to_owned()
        }
        _ => format!("Bearer {value}"),
    }
}

/// How long OAuth tokens are reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenCachePolicy {
    /// A token is dropped this long before its `expires_in` ends (Kyma: 2 s).
    pub margin: Duration,
    /// Reuse time of a token whose response has no `expires_in` (Kyma cached it forever).
    pub without_expiry: Duration,
}

impl Default for TokenCachePolicy {
    fn default() -> Self {
        TokenCachePolicy {
            margin: Duration::from_secs(10),
            without_expiry: Duration::from_secs(60),
        }
    }
}

/// OAuth tokens by client id, each until shortly before it expires.
#[derive(Clone, Debug, Default)]
pub struct TokenCache {
    policy: TokenCachePolicy,
    tokens: BTreeMap<String, (String, Timestamp)>,
    bugs: Bugs,
}

impl TokenCache {
    /// An empty cache.
    pub fn new(policy: TokenCachePolicy) -> Self {
        TokenCache {
            policy,
            tokens: BTreeMap::new(),
            bugs: Bugs::NONE,
        }
    }

    /// This cache with the bugs of `bugs` (only `token-cached-forever` concerns it; none
    /// can be on unless built with `bug-zoo`).
    #[must_use]
    pub fn with_bugs(mut self, bugs: Bugs) -> Self {
        self.bugs = bugs;
        self
    }

    /// The cached token of `client_id`, if it is still to be used at `now`.
    pub fn get(&self, client_id: &str, now: Timestamp) -> Option<&str> {
        self.tokens
            .get(client_id)
            .filter(|(_, until)| now < *until)
            .map(|(token, _)| token.as_str())
    }

    /// Keeps `token` for `client_id`, fetched at `now` with `expires_in` seconds of life: until
    /// `expires_in − margin`; not at all if that is not positive; for `without_expiry` if the
    /// server gave no lifetime.
    pub fn insert(
        &mut self,
        client_id: &str,
        token: &str,
        expires_in: Option<u64>,
        now: Timestamp,
    ) {
        let keep = match expires_in {
            // The lifetime is ignored: the token is used until a target refuses it.
            _ if bug_on!(self.bugs, TokenCachedForever) => Duration::MAX,
            None => self.policy.without_expiry,
            Some(secs) => Duration::from_secs(secs).saturating_sub(self.policy.margin),
        };
        if keep.is_zero() {
            self.tokens.remove(client_id);
        } else {
            self.tokens.insert(
                client_id.to_owned(),
                (token.to_owned(), now.saturating_add(keep)),
            );
        }
    }

    /// Drops the token of `client_id` (the target answered 403 with it).
    pub fn invalidate(&mut self, client_id: &str) {
        self.tokens.remove(client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_with_a_single_slash_and_both_queries() {
        assert_eq!(
            join_url("https://orders.com/v1/orders", "/uuid", None),
            "https://orders.com/v1/orders/uuid"
        );
        assert_eq!(
            join_url("https://orders.com/v1/orders/", "/uuid", None),
            "https://orders.com/v1/orders/uuid"
        );
        assert_eq!(
            join_url("http://httpbin.org/", "/uuid", None),
            "http://httpbin.org/uuid"
        );
        assert_eq!(
            join_url("http://httpbin.org", "", None),
            "http://httpbin.org"
        );
        assert_eq!(
            join_url("http://h/p?a=1", "/q", Some("b=2")),
            "http://h/p/q?a=1&b=2"
        );
        assert_eq!(
            join_url("http://h/p", "/q", Some("b=2")),
            "http://h/p/q?b=2"
        );
        assert_eq!(
            join_url("http://h/p?a=1", "/q", Some("")),
            "http://h/p/q?a=1"
        );
    }

    #[test]
    fn access_tokens_become_bearer_unless_they_name_a_scheme() {
        assert_eq!(authorization_from_access_token("abc"), "Bearer abc");
        assert_eq!(authorization_from_access_token("Bearer abc"), "Bearer abc");
        assert_eq!(
            authorization_from_access_token("Basic dXNlcg=="),
            "Basic dXNlcg=="
        );
        assert_eq!(authorization_from_access_token(" abc "), "Bearer abc");
    }

    #[test]
    fn tokens_are_reused_until_shortly_before_they_expire_and_never_forever() {
        let t0 = Timestamp::from_unix_millis(1_000_000);
        let mut cache = TokenCache::new(TokenCachePolicy::default());
        cache.insert("client", "tok", Some(3600), t0);
        assert_eq!(cache.get("client", t0), Some("tok"));
        assert_eq!(
            cache.get("client", t0.saturating_add(Duration::from_secs(3589))),
            Some("tok")
        );
        assert_eq!(
            cache.get("client", t0.saturating_add(Duration::from_secs(3590))),
            None
        );
        // A tiny lifetime is not cached at all; a missing one only briefly.
        cache.insert("tiny", "t", Some(2), t0);
        assert_eq!(cache.get("tiny", t0), None);
        cache.insert("none", "n", None, t0);
        assert_eq!(
            cache.get("none", t0.saturating_add(Duration::from_secs(59))),
            Some("n")
        );
        assert_eq!(
            cache.get("none", t0.saturating_add(Duration::from_secs(60))),
            None
        );
        cache.invalidate("client");
        assert_eq!(cache.get("client", t0), None);
    }
}
