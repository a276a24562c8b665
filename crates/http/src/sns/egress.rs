//! Where SNS may POST: the one place the broker opens connections a caller chose.
//!
//! An HTTP/S subscription's endpoint is any URL its creator writes, so without a rule it is a
//! way into the gateway's own network: its loopback services, the LAN behind it, the cloud
//! metadata address, and the broker's own API (ADR 0015). By default deliveries go only to
//! public addresses: an address that is loopback, private, link-local, shared (CGNAT),
//! unspecified, multicast or broadcast, in any spelling (`127.1`, `2130706433`, `0x7f000001`,
//! `[::1]`, `[::ffff:127.0.0.1]`, a name that resolves there) is refused. The check runs after
//! DNS resolution, on every connection (the client's resolver filters what it connects to, so
//! a name that changes its answer between checks gains nothing), and redirects are never
//! followed. A LAN that needs private endpoints names them in `topics.allow_endpoint_networks`
//! (CIDR blocks); the broker's own listeners stay refused even then.
//!
//! Deliveries are also paced per endpoint host (a token bucket, `topics.endpoint_posts_per_
//! second`), so subscriptions with immediate retries cannot turn one publish into a flood at
//! one host.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper_util::client::legacy::connect::dns::Name;
use ipnet::IpNet;
use parking_lot::Mutex;

/// Who may be POSTed to.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// Networks admitted although they are not public (a LAN's receivers).
    pub allow: Vec<IpNet>,
    /// The broker's own listeners: never a delivery target.
    pub own: Vec<SocketAddr>,
    /// POSTs per second to one host (0: unpaced), and the burst.
    pub per_host_per_second: f64,
    /// Burst of the per-host pace.
    pub per_host_burst: f64,
}

/// True for an address that is not on the public internet: loopback, private, link-local,
/// shared address space, unspecified, multicast, broadcast, documentation, benchmarking and
/// reserved ranges, and IPv6 forms that embed such an IPv4 address.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return internal_v4(v4);
    }
    // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) embed an IPv4
    // address a packet may end up at.
    if s[..6] == [0; 6] {
        return true; // ::, ::1 and every ::a.b.c.d
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let v4 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
        return internal_v4(v4);
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return internal_v4(v4);
    }
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || s[0] == 0x2001 && s[1] == 0x0db8 // documentation
        || s[0] == 0x0100 && s[1..4] == [0, 0, 0] // discard-only
}

impl EgressPolicy {
    /// Whether a POST may go to `ip` (any port).
    pub fn admits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        !is_internal(ip) || self.allow.iter().any(|n| n.contains(&ip))
    }

    /// Whether `addr` is one of the broker's own listeners.
    pub fn is_own(&self, addr: SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        self.own.iter().any(|o| {
            o.port() == addr.port()
                && (o.ip().is_unspecified() || canonical(o.ip()) == ip || ip.is_loopback())
        })
    }

    /// Checks an endpoint URL before any connection: its host, when it is an address (in any
    /// spelling a resolver would accept), must be admitted, and it must not name the broker's
    /// own listeners. Names are checked when they are resolved.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let uri: hyper::Uri = url
            .parse()
            .map_err(|_| "the endpoint is not a valid URL".to_string())?;
        let host = uri.host().ok_or("the endpoint has no host")?;
        let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
            Some("https") => 443,
            _ => 80,
        });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match host.parse::<IpAddr>() {
            Ok(ip) => Some(ip),
            Err(_) => legacy_ipv4(host).map(IpAddr::V4),
        };
        if let Some(ip) = ip {
            if !self.admits(ip) {
                return Err(format!("the endpoint's address {ip} is not public"));
            }
            if self.is_own(SocketAddr::new(ip, port)) {
                return Err("the endpoint is this broker".into());
            }
        } else if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") {
            let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
            if !self.admits(ip) {
                return Err("the endpoint's address is loopback".into());
            }
            if self.is_own(SocketAddr::new(ip, port)) {
                return Err("the endpoint is this broker".into());
            }
        }
        Ok(())
    }
}

/// IPv4-mapped IPv6 addresses as the IPv4 address they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The IPv4 spellings `inet_aton` accepts beside dotted quads: fewer parts (`127.1`), octal
/// (`0177.0.0.1`) and hexadecimal (`0x7f000001`) parts, one 32-bit number (`2130706433`).
/// A resolver would turn these into addresses; they are classified the same way.
pub fn legacy_ipv4(host: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = host.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        let n = if let Some(hex) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
            u64::from_str_radix(hex, 16).ok()?
        } else if p.len() > 1 && p.starts_with('0') {
            u64::from_str_radix(&p[1..], 8).ok()?
        } else {
            p.parse::<u64>().ok()?
        };
        nums.push(n);
    }
    let (last, head) = nums.split_last()?;
    if head.iter().any(|n| *n > 255) {
        return None;
    }
    let room = 8 * (4 - head.len() as u32);
    if *last >= 1u64 << room {
        return None;
    }
    let mut value: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        value |= n << (24 - 8 * i as u32);
    }
    value |= last;
    Some(Ipv4Addr::from(u32::try_from(value).ok()?))
}

/// The client's resolver: resolves as the system does, then keeps only admitted addresses, so
/// the connection goes where the check said it may, whatever the name answers next time.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver(pub Arc<EgressPolicy>);

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.0.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let admitted: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.admits(a.ip()))
                .collect();
            if admitted.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "{} resolves to addresses deliveries may not go to ({})",
                        name.as_str().chars().take(128).collect::<String>(),
                        found
                            .iter()
                            .map(|a| a.ip().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            Ok(admitted.into_iter())
        })
    }
}

/// Most hosts paced at once; past it the map is cleared (a flood of hosts cannot grow it).
const MAX_HOSTS: usize = 4_096;

/// One token bucket per endpoint host: a POST waits for its host's next token.
#[derive(Debug, Default)]
pub(crate) struct HostPace {
    slots: Mutex<HashMap<String, Instant>>,
}

impl HostPace {
    /// How long a POST to `host` waits for its turn (its turn is then taken).
    pub(crate) fn wait(&self, host: &str, per_second: f64, burst: f64) -> Duration {
        if per_second <= 0.0 {
            return Duration::ZERO;
        }
        let step = Duration::from_secs_f64(1.0 / per_second);
        let credit = step.mul_f64(burst.max(1.0));
        let now = Instant::now();
        let mut slots = self.slots.lock();
        if slots.len() >= MAX_HOSTS && !slots.contains_key(host) {
            slots.retain(|_, next| *next > now);
            if slots.len() >= MAX_HOSTS {
                slots.clear();
            }
        }
        // The bucket is the time its next token is due: never further back than the burst.
        let floor = now.checked_sub(credit).unwrap_or(now);
        let next = slots.entry(host.to_ascii_lowercase()).or_insert(floor);
        let at = (*next).max(floor) + step;
        *next = at;
        at.saturating_duration_since(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> EgressPolicy {
        EgressPolicy {
            own: vec!["0.0.0.0:9324".parse().unwrap()],
            ..EgressPolicy::default()
        }
    }

    #[test]
    fn every_spelling_of_an_internal_address_is_refused() {
        let p = policy();
        for url in [
            "http://127.0.0.1/",
            "http://127.1/",
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://0x7f000001/",
            "http://0x7f.1/",
            "http://0.0.0.0/",
            "http://0/",
            "http://localhost:8080/",
            "http://api.localhost/",
            "http://[::1]/",
            "http://[::]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://10.0.0.1/",
            "http://172.16.5.4/",
            "http://192.168.1.1/",
            "http://100.64.0.1/",
            "http://[fd00::1]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "https://127.0.0.1:9324/?Action=CreateQueue&QueueName=x",
        ] {
            assert!(p.check_url(url).is_err(), "{url} was admitted");
        }
        for url in [
            "https://example.com/hook",
            "http://93.184.216.34/",
            "http://[2606:2800:220:1:248:1893:25c8:1946]/",
            "http://8.8.8.8:8080/x",
        ] {
            assert_eq!(p.check_url(url), Ok(()), "{url}");
        }
    }

    #[test]
    fn an_allow_list_admits_a_network_but_never_the_broker() {
        let p = EgressPolicy {
            allow: vec![
                "127.0.0.0/8".parse().unwrap(),
                "10.1.0.0/16".parse().unwrap(),
            ],
            ..policy()
        };
        assert_eq!(p.check_url("http://127.0.0.1:8080/hook"), Ok(()));
        assert_eq!(p.check_url("http://10.1.2.3/hook"), Ok(()));
        assert!(p.check_url("http://10.2.0.1/hook").is_err());
        assert!(p.check_url("http://127.0.0.1:9324/").is_err());
        assert!(p.check_url("http://localhost:9324/").is_err());
        assert!(p.check_url("http://127.1:9324/").is_err());
    }

    #[test]
    fn legacy_spellings_parse_as_a_resolver_would() {
        assert_eq!(legacy_ipv4("127.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(legacy_ipv4("2130706433"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(legacy_ipv4("0177.0.0.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(legacy_ipv4("0x7f000001"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(legacy_ipv4("10.0x10.1"), Some(Ipv4Addr::new(10, 16, 0, 1)));
        assert_eq!(legacy_ipv4("example"), None);
        assert_eq!(legacy_ipv4("256.1.1.1"), None);
        assert_eq!(legacy_ipv4("1.2.3.4.5"), None);
    }

    #[test]
    fn hosts_are_paced_after_their_burst() {
        let pace = HostPace::default();
        let waits: Vec<Duration> = (0..6).map(|_| pace.wait("Host", 10.0, 3.0)).collect();
        assert!(waits[..3].iter().all(|w| w.is_zero()), "{waits:?}");
        assert!(
            waits[3] > Duration::ZERO && waits[5] > waits[4],
            "{waits:?}"
        );
        assert!(pace.wait("other", 10.0, 3.0).is_zero());
        assert!(pace.wait("x", 0.0, 0.0).is_zero());
    }
}
