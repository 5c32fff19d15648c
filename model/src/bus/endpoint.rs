//! Subscription endpoints: what a push can be sent to. An endpoint is an absolute `http` or
//! `https` URL with a host, parsed exactly as the push client parses it (the `http` crate's
//! `Uri`), so that the model refuses at apply time what no push could ever reach.

/// An endpoint events can be pushed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    uri: http::Uri,
}

/// Why a text is not an endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointError(String);

impl std::fmt::Display for EndpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EndpointError {}

impl Endpoint {
    /// Parses `endpoint`.
    pub fn parse(endpoint: &str) -> Result<Endpoint, EndpointError> {
        let uri: http::Uri = endpoint
            .parse()
            .map_err(|e: http::uri::InvalidUri| EndpointError(e.to_string()))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(EndpointError("the scheme must be http or https".into())),
        }
        if uri.host().is_none() {
            return Err(EndpointError("endpoint without host".into()));
        }
        Ok(Endpoint { uri })
    }

    /// The URI.
    pub fn uri(&self) -> &http::Uri {
        &self.uri
    }

    /// The host, as written (an IPv6 address in brackets).
    pub fn host(&self) -> &str {
        self.uri.host().unwrap_or_default()
    }

    /// Whether pushes go over TLS.
    pub fn https(&self) -> bool {
        self.uri.scheme_str() == Some("https")
    }

    /// The port: the explicit one, else the scheme's.
    pub fn port(&self) -> u16 {
        self.uri
            .port_u16()
            .unwrap_or(if self.https() { 443 } else { 80 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_http_urls_with_a_host() {
        for ok in [
            "http://sub:8080/events?x=1",
            "https://sub.ns.svc.cluster.local/",
            "http://[::1]:9/",
            "http://user@host/",
        ] {
            assert!(Endpoint::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://[",
            "http:// host/",
            "https://ho st",
            "http://",
            "ftp://host/",
            "host",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
        let e = Endpoint::parse("https://[::1]/x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((e.host(), e.port(), e.https()), ("[::1]", 443, true));
    }
}
