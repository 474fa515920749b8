//! Every call latchkey makes to another server (OAuth token URLs, webhook endpoints) goes
//! through [`Outbound`]: it refuses loopback, link-local, private and other non-public
//! addresses unless the operator allows them (`LATCHKEY_OUTBOUND_ALLOW_PRIVATE`), checks
//! the addresses a name resolves to as well as literal ones, never follows a redirect,
//! times out, and reads at most a bounded answer.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

/// How long a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole call may take, answer included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// The most of an answer that is read; token answers and webhook replies are far smaller.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Which addresses outbound calls may reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AddressPolicy {
    /// Public unicast addresses only (the default).
    #[default]
    PublicOnly,
    /// Any address: for tests and private deployments whose providers live on a private network.
    AllowPrivate,
}

impl AddressPolicy {
    pub fn allows(self, ip: IpAddr) -> bool {
        self == AddressPolicy::AllowPrivate || is_public(ip)
    }
}

/// Why an outbound call was not made or failed. Messages name the host at most, never a
/// query string, a body or a credential.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error("{0} is not an http(s) URL with a host")]
    BadUrl(&'static str),
    #[error("{host} resolves only to addresses latchkey does not call (loopback, private or link-local)")]
    Refused { host: String },
    #[error("the call to {host} timed out")]
    Timeout { host: String },
    #[error("the call to {host} failed to connect or send")]
    Transport { host: String },
    #[error("the answer from {host} is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge { host: String },
}

impl OutboundError {
    /// A failure that may pass on its own (network, timeout), as opposed to one that will
    /// repeat every time (a refused or malformed URL, an oversized answer).
    pub fn is_transient(&self) -> bool {
        matches!(self, OutboundError::Timeout { .. } | OutboundError::Transport { .. })
    }
}

/// An answer: its status, headers and at most [`MAX_ANSWER_BYTES`] of body.
pub type Answer = http::Response<Vec<u8>>;

/// The client for every outbound call. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbound {
    client: reqwest::Client,
    policy: AddressPolicy,
}

impl Outbound {
    pub fn new(policy: AddressPolicy) -> Self {
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver { policy }))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(CALL_TIMEOUT)
            .user_agent(concat!("latchkey/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a client with a resolver, timeouts and no redirects builds");
        Self { client, policy }
    }

    pub fn policy(&self) -> AddressPolicy {
        self.policy
    }

    /// Whether `url` may be called: http(s), a host, and not a refused address literal.
    /// Names are checked again, after resolution, when the call is made.
    pub fn check(&self, url: &Url) -> Result<(), OutboundError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(OutboundError::BadUrl("the URL"));
        }
        let refused = |host: &str| OutboundError::Refused { host: host.to_owned() };
        match url.host() {
            None => Err(OutboundError::BadUrl("the URL")),
            Some(url::Host::Ipv4(ip)) if !self.policy.allows(IpAddr::V4(ip)) => Err(refused(&ip.to_string())),
            Some(url::Host::Ipv6(ip)) if !self.policy.allows(IpAddr::V6(ip)) => Err(refused(&ip.to_string())),
            Some(_) => Ok(()),
        }
    }

    /// Sends `request` and reads its answer, bounded in size and time.
    pub async fn send(&self, request: http::Request<Vec<u8>>) -> Result<Answer, OutboundError> {
        let url = Url::parse(&request.uri().to_string()).map_err(|_| OutboundError::BadUrl("the URL"))?;
        self.check(&url)?;
        let host = url.host_str().unwrap_or_default().to_owned();
        let request = reqwest::Request::try_from(request).map_err(|_| OutboundError::BadUrl("the URL"))?;
        let failed = |err: reqwest::Error| classify(&host, &err);
        let mut response = self.client.execute(request).await.map_err(failed)?;
        let mut answer = http::Response::builder().status(response.status());
        for (name, value) in response.headers() {
            answer = answer.header(name, value);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(OutboundError::TooLarge { host });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(answer.body(body).expect("a status and headers copied from an answer build one"))
    }
}

fn classify(host: &str, err: &reqwest::Error) -> OutboundError {
    let host = host.to_owned();
    if err.is_timeout() {
        return OutboundError::Timeout { host };
    }
    // The resolver's refusal surfaces as a connect error whose source chain holds it.
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(current) = source {
        if current.downcast_ref::<RefusedAddresses>().is_some() {
            return OutboundError::Refused { host };
        }
        source = current.source();
    }
    OutboundError::Transport { host }
}

/// Resolves names as the system does, then drops the addresses the policy refuses, so a
/// public name pointed at a private address is refused too.
#[derive(Debug)]
struct CheckedResolver {
    policy: AddressPolicy,
}

#[derive(Debug, thiserror::Error)]
#[error("the name resolves only to refused addresses")]
struct RefusedAddresses;

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy;
        Box::pin(async move {
            let found = tokio::net::lookup_host((name.as_str(), 0)).await?;
            let allowed: Vec<SocketAddr> = found.filter(|addr| policy.allows(addr.ip())).collect();
            if allowed.is_empty() {
                return Err(Box::new(RefusedAddresses) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Whether `ip` is a public unicast address: not loopback, private, link-local, shared
/// (carrier-grade NAT), unspecified, broadcast, multicast, documentation or benchmarking,
/// in IPv4 or IPv6 (IPv4-mapped and -compatible addresses are judged as IPv4).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => match ip.to_ipv4() {
            Some(v4) if !ip.is_loopback() && !ip.is_unspecified() => is_public_v4(v4),
            _ => is_public_v6(ip),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10, shared address space.
        || (a == 100 && (64..128).contains(&b))
        // 198.18.0.0/15, benchmarking.
        || (a == 198 && (b == 18 || b == 19))
        // 240.0.0.0/4, reserved.
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7, unique local.
        || (first & 0xfe00) == 0xfc00
        // fe80::/10, link-local.
        || (first & 0xffc0) == 0xfe80
        // 2001:db8::/32, documentation.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for refused in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2001:db8::1",
        ] {
            assert!(!is_public(refused.parse().expect("an address")), "{refused} must be refused");
        }
        for allowed in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(allowed.parse().expect("an address")), "{allowed} must be allowed");
        }
    }

    #[test]
    fn address_literals_are_checked_before_any_call() {
        let outbound = Outbound::new(AddressPolicy::PublicOnly);
        for url in ["http://127.0.0.1:9/token", "https://[::1]/token", "http://169.254.169.254/latest"] {
            let url = Url::parse(url).expect("a URL");
            assert!(matches!(outbound.check(&url), Err(OutboundError::Refused { .. })), "{url}");
        }
        let ftp = Url::parse("ftp://example.com/").expect("a URL");
        assert!(matches!(outbound.check(&ftp), Err(OutboundError::BadUrl(_))));
        let open = Outbound::new(AddressPolicy::AllowPrivate);
        assert!(open.check(&Url::parse("http://127.0.0.1:9/token").expect("a URL")).is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_at_call_time() {
        let outbound = Outbound::new(AddressPolicy::PublicOnly);
        let request = http::Request::post("http://localhost:9/token").body(Vec::new()).expect("a request");
        let err = outbound.send(request).await.expect_err("localhost is loopback");
        assert!(matches!(err, OutboundError::Refused { .. }), "{err:?}");
        assert!(!err.is_transient());
    }
}
