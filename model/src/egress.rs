//! The egress policy: which addresses ACE may connect to on someone else's behalf (the proxy's
//! targets, OAuth token URLs, push endpoints). By default it refuses ACE's own listeners,
//! loopback, link-local, private and unique-local ranges, and addresses that are no host
//! (unspecified, broadcast, multicast): otherwise a registered URL or a subscription could
//! reach ACE's own admin API, another RE's tokens, or a cloud's metadata service. An operator
//! allows what a deployment needs with explicit networks and host names; local development
//! allows private addresses with one switch. ACE's own listeners are refused whatever is
//! allowed.
//!
//! The model decides on what it can see in a URL (an address literal, `localhost`) when the
//! URL is registered; the shell decides on the addresses a name resolves to, at connect time,
//! with the same rules ([`EgressPolicy::check_addr`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// What kind of address an IP is, as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    /// A public (globally routed) address.
    Public,
    /// Loopback: `127.0.0.0/8`, `::1`.
    Loopback,
    /// Link-local: `169.254.0.0/16` (cloud metadata services live here), `fe80::/10`.
    LinkLocal,
    /// Private: `10/8`, `172.16/12`, `192.168/16`, and the shared `100.64/10`.
    Private,
    /// Unique-local IPv6: `fc00::/7`.
    UniqueLocal,
    /// No host: unspecified (`0.0.0.0/8`, `::`), broadcast, multicast, reserved.
    NotAHost,
}

impl AddressClass {
    /// What the class is called in messages.
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Public => "public",
            AddressClass::Loopback => "loopback",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Private => "private",
            AddressClass::UniqueLocal => "unique-local",
            AddressClass::NotAHost => "non-host",
        }
    }
}

/// The class of `ip`; an IPv4 address mapped into IPv6 (`::ffff:a.b.c.d`) or written in the
/// old IPv4-compatible form (`::a.b.c.d`) is classed as the IPv4 address it carries.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // `::a.b.c.d` (deprecated, still routed by some stacks); `::` and `::1` are not IPv4.
    let s = v6.segments();
    (s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1)).then(|| {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    })
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        AddressClass::Private
    } else if a == 0 || ip.is_broadcast() || ip.is_multicast() || a >= 240 {
        AddressClass::NotAHost
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_unspecified() || ip.is_multicast() {
        AddressClass::NotAHost
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if first & 0xfe00 == 0xfc00 {
        AddressClass::UniqueLocal
    } else {
        AddressClass::Public
    }
}

/// Whether a connection to `addr` reaches one of the listeners `bound` of a server whose
/// addresses besides loopback are `addresses` (where a listener on the unspecified address
/// answers too). Loopback is taken as the server's own whatever host it is on: refusing too
/// much there is the safe side.
pub fn reaches_listener(bound: &[SocketAddr], addresses: &[IpAddr], addr: SocketAddr) -> bool {
    let ip = normalized(addr.ip());
    bound.iter().any(|own| {
        let any = own.ip().is_unspecified();
        own.port() == addr.port()
            && (normalized(own.ip()) == ip
                || ((any || own.ip().is_loopback()) && ip.is_loopback())
                || (any && addresses.iter().any(|a| normalized(*a) == ip)))
    })
}

/// Which addresses ACE may connect to on someone else's behalf.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EgressPolicy {
    /// Allow loopback, link-local, private and unique-local addresses (local development,
    /// tests): one switch, `--allow-private-egress`.
    pub allow_private: bool,
    /// Networks allowed whatever their class (`--egress-allow 10.20.0.0/16`).
    pub allowed_networks: Vec<IpNet>,
    /// Host names allowed whatever they resolve to (`--egress-allow orders.internal`); a
    /// name is compared without case and without a trailing dot.
    pub allowed_hosts: Vec<String>,
    /// ACE's own listeners: never reachable, whatever is allowed (the shell fills them in).
    #[serde(skip)]
    pub own_listeners: Vec<SocketAddr>,
    /// ACE's own addresses besides loopback (the addresses among its `--host` names), at
    /// which a listener on the unspecified address answers too.
    #[serde(skip)]
    pub own_addresses: Vec<IpAddr>,
    /// The bug `proxy-egress-open`: every address allowed (never in a default build).
    #[serde(skip)]
    switched_off: bool,
}

/// Why the policy refuses a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EgressRefusal {
    /// The address is one of ACE's own listeners.
    OwnListener(SocketAddr),
    /// The address is of a class the policy refuses.
    Class {
        /// The address.
        addr: IpAddr,
        /// Its class.
        class: AddressClass,
    },
    /// `localhost` (or a name under it) is loopback by definition (RFC 6761).
    Localhost(String),
}

impl std::fmt::Display for EgressRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EgressRefusal::OwnListener(addr) => write!(f, "{addr} is one of ACE's own listeners"),
            EgressRefusal::Class { addr, class } => write!(
                f,
                "{addr} is a {} address (allow it with --egress-allow)",
                class.describe()
            ),
            EgressRefusal::Localhost(host) => write!(
                f,
                "{host} is loopback (allow private addresses with --allow-private-egress)"
            ),
        }
    }
}

impl EgressPolicy {
    /// This policy, with the bugs of `bugs` (only `proxy-egress-open` concerns it).
    #[must_use]
    pub fn with_bugs(mut self, bugs: crate::bugs::Bugs) -> Self {
        self.switched_off = crate::bugs::bug_on!(bugs, ProxyEgressOpen);
        self
    }

    /// Whether `host` (as written in a URL: a name, or an address in brackets or not) is
    /// allowed by name.
    fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.allowed_hosts
            .iter()
            .any(|h| h.trim_end_matches('.').eq_ignore_ascii_case(host))
    }

    /// Whether ACE may connect to `addr` given another server of the same deployment (a
    /// replica) with listeners `bound` at `addresses`: never, as to its own listeners.
    pub fn check_peer(
        &self,
        bound: &[SocketAddr],
        addresses: &[IpAddr],
        addr: SocketAddr,
    ) -> Result<(), EgressRefusal> {
        if !self.switched_off && reaches_listener(bound, addresses, addr) {
            return Err(EgressRefusal::OwnListener(addr));
        }
        Ok(())
    }

    /// Whether ACE may connect to `addr`, reached through the name `host`.
    pub fn check_addr(&self, host: &str, addr: SocketAddr) -> Result<(), EgressRefusal> {
        if self.switched_off {
            return Ok(());
        }
        let ip = normalized(addr.ip());
        if reaches_listener(&self.own_listeners, &self.own_addresses, addr) {
            return Err(EgressRefusal::OwnListener(addr));
        }
        if self.host_allowed(host) || self.allowed_networks.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match classify(ip) {
            AddressClass::Public => Ok(()),
            AddressClass::NotAHost => Err(EgressRefusal::Class {
                addr: ip,
                class: AddressClass::NotAHost,
            }),
            _ if self.allow_private => Ok(()),
            class => Err(EgressRefusal::Class { addr: ip, class }),
        }
    }

    /// What the policy says about a URL's host and port before any name is resolved: an
    /// address literal is decided now, `localhost` too; any other name is decided at connect
    /// time on the addresses it resolves to (`Ok` here).
    pub fn check_literal(&self, host: &str, port: u16) -> Result<(), EgressRefusal> {
        if self.switched_off {
            return Ok(());
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return self.check_addr(host, SocketAddr::new(ip, port));
        }
        let name = bare.trim_end_matches('.').to_ascii_lowercase();
        if (name == "localhost" || name.ends_with(".localhost"))
            && !self.allow_private
            && !self.host_allowed(&name)
        {
            return Err(EgressRefusal::Localhost(bare.to_owned()));
        }
        Ok(())
    }

    /// [`EgressPolicy::check_literal`] of a URL (`http(s)://host[:port]/...`); a URL without a
    /// scheme is taken as `http`, as the proxy takes it.
    pub fn check_url(&self, url: &str) -> Result<(), EgressRefusal> {
        let (https, rest) = match url.split_once("://") {
            Some((scheme, rest)) => (scheme.eq_ignore_ascii_case("https"), rest),
            None => (false, url),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, p.parse().ok()),
            _ => (authority, None),
        };
        let port = port.unwrap_or(if https { 443 } else { 80 });
        self.check_literal(host, port)
    }
}

/// An IPv4 address mapped into IPv6 as that IPv4 address; others unchanged.
fn normalized(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn addresses_are_classified_as_the_policy_sees_them() {
        for (addr, class) in [
            ("8.8.8.8", AddressClass::Public),
            ("127.0.0.1", AddressClass::Loopback),
            ("127.255.0.9", AddressClass::Loopback),
            ("169.254.169.254", AddressClass::LinkLocal),
            ("10.1.2.3", AddressClass::Private),
            ("172.16.0.1", AddressClass::Private),
            ("172.32.0.1", AddressClass::Public),
            ("192.168.0.1", AddressClass::Private),
            ("100.64.0.1", AddressClass::Private),
            ("0.0.0.0", AddressClass::NotAHost),
            ("0.1.2.3", AddressClass::NotAHost),
            ("255.255.255.255", AddressClass::NotAHost),
            ("224.0.0.1", AddressClass::NotAHost),
            ("::1", AddressClass::Loopback),
            ("::", AddressClass::NotAHost),
            ("fe80::1", AddressClass::LinkLocal),
            ("fd12:3456::1", AddressClass::UniqueLocal),
            ("ff02::1", AddressClass::NotAHost),
            ("2001:4860:4860::8888", AddressClass::Public),
            ("::ffff:127.0.0.1", AddressClass::Loopback),
            ("::ffff:169.254.169.254", AddressClass::LinkLocal),
            ("::ffff:8.8.8.8", AddressClass::Public),
            ("::10.0.0.1", AddressClass::Private),
        ] {
            assert_eq!(classify(ip(addr)), class, "{addr}");
        }
    }

    #[test]
    fn by_default_only_public_addresses_are_reached_and_own_listeners_never() {
        let mut policy = EgressPolicy {
            own_listeners: vec![
                "127.0.0.1:8081".parse().unwrap_or_else(|e| panic!("{e}")),
                "0.0.0.0:8444".parse().unwrap_or_else(|e| panic!("{e}")),
            ],
            own_addresses: vec![ip("10.0.0.7")],
            ..EgressPolicy::default()
        };
        let check = |p: &EgressPolicy, a: &str| {
            p.check_addr("h", a.parse().unwrap_or_else(|e| panic!("{a}: {e}")))
        };
        assert_eq!(check(&policy, "8.8.8.8:443"), Ok(()));
        assert!(matches!(
            check(&policy, "169.254.169.254:80"),
            Err(EgressRefusal::Class {
                class: AddressClass::LinkLocal,
                ..
            })
        ));
        assert!(check(&policy, "[::ffff:127.0.0.1]:9000").is_err());
        policy.allow_private = true;
        assert_eq!(check(&policy, "127.0.0.1:9000"), Ok(()));
        assert_eq!(check(&policy, "10.0.0.7:80"), Ok(()));
        assert_eq!(check(&policy, "10.0.0.8:8444"), Ok(()), "another host");
        assert!(check(&policy, "0.0.0.0:80").is_err(), "never a host");
        // ACE's own listeners stay refused: on loopback, and a listener on 0.0.0.0 at ACE's
        // own addresses too; another host's service on the same port is not ACE's.
        for own in [
            "127.0.0.1:8081",
            "[::ffff:127.0.0.1]:8081",
            "127.0.0.2:8081",
            "127.0.0.1:8444",
            "10.0.0.7:8444",
        ] {
            assert!(
                matches!(check(&policy, own), Err(EgressRefusal::OwnListener(_))),
                "{own}"
            );
        }
        policy.allow_private = false;
        policy.allowed_networks = vec!["10.0.0.0/24".parse().unwrap_or_else(|e| panic!("{e}"))];
        assert_eq!(check(&policy, "10.0.0.7:80"), Ok(()));
        assert!(check(&policy, "10.0.1.7:80").is_err());
        policy.allowed_hosts = vec!["Orders.Internal.".into()];
        assert_eq!(
            policy.check_addr(
                "orders.internal",
                "10.9.9.9:80".parse().unwrap_or_else(|e| panic!("{e}"))
            ),
            Ok(())
        );
    }

    #[test]
    fn urls_are_decided_on_their_literals_and_localhost() {
        let policy = EgressPolicy::default();
        for refused in [
            "http://127.0.0.1:8081/",
            "http://[::1]/x",
            "https://169.254.169.254/latest/meta-data",
            "http://localhost:8080/v1/remoteenvironments/x/tokens",
            "http://api.LOCALHOST./",
            "127.0.0.1:9",
            "http://user@10.0.0.1:80/",
        ] {
            assert!(policy.check_url(refused).is_err(), "{refused}");
        }
        for allowed in [
            "https://www.orders.com/v1/orders",
            "http://8.8.8.8/",
            "http://orders.internal/",
        ] {
            assert_eq!(policy.check_url(allowed), Ok(()), "{allowed}");
        }
    }
}
