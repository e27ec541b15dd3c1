//! Which webhook URLs the server calls, and the HTTP client that calls them.
//!
//! A webhook URL is chosen by an administrator, but the request leaves from inside the
//! operator's network: without rules it could reach the database, a cloud metadata
//! service (169.254.169.254) or an admin port on loopback (SSRF). So, unless the
//! operator allows it in `[webhooks]`: only `https`, and never a loopback, private,
//! link-local, unique-local, CGNAT or otherwise special address. The rule is checked
//! where the connection is made — our DNS resolver drops refused addresses, so the
//! client connects only to an address that was checked in the same resolution (a name
//! that resolves to a public address when the URL is saved and to 127.0.0.1 later
//! gets nowhere) — and for IP literals, which never reach a resolver, before each
//! attempt. Redirects are never followed (a 3xx is a failed attempt), proxies from the
//! environment are ignored, and a response body is read to a small limit and dropped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

/// Longest URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// Most of a response body read (then dropped unread by anyone).
const BODY_LIMIT: usize = 4096;

/// What the operator allows (`[webhooks] allow_http`, `allow_private_addresses`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OutboundRules {
    pub allow_http: bool,
    pub allow_private_addresses: bool,
}

/// Why a URL or address is refused. The message is for the admin; `code` is stable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefused {
    #[error("the webhook URL is not a valid absolute URL")]
    Malformed,
    #[error("webhook URLs must use https")]
    Scheme,
    #[error("webhook URLs must not carry a user name or password")]
    Credentials,
    #[error("the webhook URL is longer than 2048 characters")]
    TooLong,
    #[error("the webhook URL's address is loopback, private, link-local or otherwise not allowed")]
    Address,
}

impl UrlRefused {
    /// Short and stable, for a delivery's `last_error`.
    pub fn code(&self) -> &'static str {
        match self {
            UrlRefused::Malformed => "url_malformed",
            UrlRefused::Scheme => "url_scheme_not_allowed",
            UrlRefused::Credentials => "url_credentials_not_allowed",
            UrlRefused::TooLong => "url_too_long",
            UrlRefused::Address => "address_not_allowed",
        }
    }
}

impl OutboundRules {
    /// Checks a URL as saved and before each attempt: syntax, scheme, no credentials,
    /// and the address when the host is an IP literal (names are checked when they are
    /// resolved, at every connection).
    pub fn check_url(&self, raw: &str) -> Result<Url, UrlRefused> {
        if raw.len() > MAX_URL_LEN {
            return Err(UrlRefused::TooLong);
        }
        let url = Url::parse(raw).map_err(|_| UrlRefused::Malformed)?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            _ => return Err(UrlRefused::Scheme),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlRefused::Credentials);
        }
        match url.host() {
            None => return Err(UrlRefused::Malformed),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip))?,
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip))?,
            Some(Host::Domain(name)) => {
                // Names that are loopback by definition (RFC 6761) are refused as
                // such, without asking DNS.
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                if !self.allow_private_addresses
                    && (name == "localhost" || name.ends_with(".localhost"))
                {
                    return Err(UrlRefused::Address);
                }
            }
        }
        Ok(url)
    }

    /// Whether the server may connect to `ip`.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), UrlRefused> {
        match classify(ip) {
            Class::Public => Ok(()),
            Class::Internal if self.allow_private_addresses => Ok(()),
            Class::Internal | Class::Never => Err(UrlRefused::Address),
        }
    }
}

enum Class {
    /// Reachable on the internet.
    Public,
    /// Inside the operator's network (loopback, private, link-local, ULA, CGNAT,
    /// metadata services): only when the operator allows it.
    Internal,
    /// Never a receiver (unspecified, multicast, broadcast, documentation, reserved).
    Never,
}

fn classify(ip: IpAddr) -> Class {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback()          // 127/8
        || ip.is_private()       // 10/8, 172.16/12, 192.168/16
        || ip.is_link_local()    // 169.254/16, cloud metadata included
        || (a == 100 && (64..128).contains(&b)) // 100.64/10, CGNAT
        || (a == 198 && (b == 18 || b == 19)) // 198.18/15, benchmarking
        || (a == 192 && b == 0 && c == 0)
    // 192.0.0/24, IETF protocol assignments
    {
        return Class::Internal;
    }
    if a == 0                    // 0/8, "this network"
        || ip.is_multicast()     // 224/4
        || a >= 240              // 240/4 reserved, broadcast
        || ip.is_documentation()
    {
        return Class::Never;
    }
    Class::Public
}

fn classify_v6(ip: Ipv6Addr) -> Class {
    // Addresses that carry an IPv4 address are judged by it: mapped (::ffff:a.b.c.d),
    // NAT64 (64:ff9b::/96) and 6to4 (2002::/16).
    if let Some(v4) = ip.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    let s = ip.segments();
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return classify_v4(Ipv4Addr::new(
            (s[6] >> 8) as u8,
            s[6] as u8,
            (s[7] >> 8) as u8,
            s[7] as u8,
        ));
    }
    if s[0] == 0x2002 {
        return classify_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    if ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local (fd00:ec2::254 included)
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0
    // fec0::/10 site-local (deprecated)
    {
        return Class::Internal;
    }
    if ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x2001 && s[1] == 0) // Teredo
        || s[0] == 0 // ::/8 other than the above (IPv4-compatible, reserved)
        || s[0] == 0x0100
    // 100::/64 discard
    {
        return Class::Never;
    }
    Class::Public
}

/// The DNS resolver of the webhook client: resolves with the system resolver and
/// keeps only the addresses the rules allow. The connection is made to what this
/// returns, so the check and the connection see the same resolution.
struct GuardedResolver {
    rules: OutboundRules,
}

/// The error a resolution that left no allowed address fails with.
#[derive(Debug, thiserror::Error)]
#[error("no allowed address")]
struct NoAllowedAddress;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let rules = self.rules;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| rules.check_ip(a.ip()).is_ok())
                .collect();
            if found.is_empty() {
                return Err(Box::new(NoAllowedAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// Why an attempt failed, in a form short enough to store (never the response body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The URL or every address it resolved to is refused by the rules.
    Refused(UrlRefused),
    /// The receiver answered, but not 2xx (3xx included: redirects are not followed).
    Status(u16),
    Timeout,
    Connect,
    Other,
}

impl SendError {
    /// Short and stable, for `last_error`.
    pub fn describe(&self) -> String {
        match self {
            SendError::Refused(r) => r.code().to_owned(),
            SendError::Status(s) if (300..400).contains(s) => {
                format!("redirect_not_followed (HTTP {s})")
            }
            SendError::Status(s) => format!("http_status (HTTP {s})"),
            SendError::Timeout => "timeout".into(),
            SendError::Connect => "connect_failed".into(),
            SendError::Other => "request_failed".into(),
        }
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            SendError::Status(s) => Some(*s),
            _ => None,
        }
    }
}

/// The client every delivery goes through, with the operator's rules built in.
#[derive(Clone)]
pub struct Outbound {
    client: reqwest::Client,
    rules: OutboundRules,
}

impl Outbound {
    pub fn new(
        rules: OutboundRules,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .pool_max_idle_per_host(2)
            .user_agent(concat!("Tsunagu-Webhooks/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver { rules }))
            .build()?;
        Ok(Outbound { client, rules })
    }

    pub fn rules(&self) -> OutboundRules {
        self.rules
    }

    /// POSTs `body` with `headers`; `Ok(status)` for a 2xx answer.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: String,
    ) -> Result<u16, SendError> {
        let url = self.rules.check_url(url).map_err(SendError::Refused)?;
        let mut req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let mut resp = req.body(body).send().await.map_err(classify_error)?;
        let status = resp.status().as_u16();
        // Read a little of the body so the connection can be reused; never kept.
        let mut read = 0usize;
        while read < BODY_LIMIT {
            match resp.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => break,
                Err(e) => {
                    if !(200..300).contains(&status) {
                        break;
                    }
                    return Err(classify_error(e));
                }
            }
        }
        if (200..300).contains(&status) {
            Ok(status)
        } else {
            Err(SendError::Status(status))
        }
    }
}

fn classify_error(e: reqwest::Error) -> SendError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(c) = cause {
        if c.is::<NoAllowedAddress>() {
            return SendError::Refused(UrlRefused::Address);
        }
        cause = c.source();
    }
    if e.is_timeout() {
        SendError::Timeout
    } else if e.is_connect() {
        SendError::Connect
    } else {
        SendError::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> OutboundRules {
        OutboundRules::default()
    }

    #[test]
    fn internal_addresses_are_refused_unless_allowed() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(strict().check_ip(ip).is_err(), "{ip} must be refused");
            let open = OutboundRules {
                allow_private_addresses: true,
                ..strict()
            };
            assert!(open.check_ip(ip).is_ok(), "{ip} is allowed when configured");
        }
    }

    #[test]
    fn special_addresses_are_always_refused_and_public_ones_allowed() {
        let open = OutboundRules {
            allow_http: true,
            allow_private_addresses: true,
        };
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::",
            "ff02::1",
            "2001:db8::1",
        ] {
            assert!(open.check_ip(ip.parse().unwrap()).is_err(), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(strict().check_ip(ip.parse().unwrap()).is_ok(), "{ip}");
        }
    }

    /// The resolver is what stops a name that resolves to an internal address (DNS
    /// rebinding): `localhost` resolves to loopback everywhere.
    #[tokio::test]
    async fn the_resolver_drops_internal_addresses() {
        let strict = GuardedResolver { rules: strict() };
        let name: Name = "localhost".parse().unwrap();
        let err = match strict.resolve(name).await {
            Ok(addrs) => panic!("resolved to {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => e,
        };
        assert!(err.is::<NoAllowedAddress>(), "{err}");
        let open = GuardedResolver {
            rules: OutboundRules {
                allow_http: true,
                allow_private_addresses: true,
            },
        };
        let found: Vec<SocketAddr> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(found.iter().all(|a| a.ip().is_loopback()) && !found.is_empty());
    }

    #[test]
    fn urls_need_https_no_credentials_and_an_allowed_literal() {
        let r = strict();
        assert!(r.check_url("https://ehr.example.jp/hook?x=1").is_ok());
        assert_eq!(
            r.check_url("http://ehr.example.jp/").unwrap_err(),
            UrlRefused::Scheme
        );
        assert_eq!(
            r.check_url("ftp://ehr.example.jp/").unwrap_err(),
            UrlRefused::Scheme
        );
        assert_eq!(
            r.check_url("https://u:p@ehr.example.jp/").unwrap_err(),
            UrlRefused::Credentials
        );
        assert_eq!(
            r.check_url("https://127.0.0.1/").unwrap_err(),
            UrlRefused::Address
        );
        assert_eq!(
            r.check_url("https://[::1]:8443/").unwrap_err(),
            UrlRefused::Address
        );
        assert_eq!(
            r.check_url("https://localhost/").unwrap_err(),
            UrlRefused::Address
        );
        assert_eq!(
            r.check_url("https://0x7f.1/").unwrap_err(),
            UrlRefused::Address
        );
        assert_eq!(r.check_url("not a url").unwrap_err(), UrlRefused::Malformed);
        let open = OutboundRules {
            allow_http: true,
            allow_private_addresses: true,
        };
        assert!(open.check_url("http://127.0.0.1:9000/hook").is_ok());
    }
}
