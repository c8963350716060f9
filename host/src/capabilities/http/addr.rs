//! Addresses: reading every spelling of an IP a URL may carry, and deciding
//! which addresses guests may never reach.
//!
//! [`parse_host`] turns a URL host into an IP when it is one, however it is
//! spelled: dotted quads, but also the forms `inet_aton` accepts and some
//! resolvers honour — `127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1` —
//! and bracketed IPv6. [`denied_range`] classifies an address (IPv4-mapped
//! and IPv4-compatible IPv6 forms are unwrapped first) and names the range
//! that forbids it, which is what the logs and the guest's error cite.

use crate::base::Invalid;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What a URL host is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP address (any spelling, normalized).
    Ip(IpAddr),
    /// A DNS name, lowercased, without a trailing dot.
    Name(String),
}

/// Reads a URL host (`[::1]`, `127.1`, `example.com.` …).
pub fn parse_host(host: &str) -> Result<Host, Invalid> {
    let host = host.trim();
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let inner = inner.split('%').next().unwrap_or(inner); // zone id
        return inner
            .parse::<Ipv6Addr>()
            .map(|ip| Host::Ip(IpAddr::V6(ip)))
            .map_err(|_| Invalid(format!("invalid IPv6 address {host:?}")));
    }
    if let Ok(ip) = host.parse::<Ipv6Addr>() {
        return Ok(Host::Ip(IpAddr::V6(ip)));
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return Err("empty host".into());
    }
    if let Some(ip) = parse_ipv4_loose(&name) {
        return Ok(Host::Ip(IpAddr::V4(ip)));
    }
    // A last label made of digits (or 0x…) that did not parse as an IPv4
    // address is malformed, not a name: refuse rather than hand it to DNS.
    let last = name.rsplit('.').next().unwrap_or("");
    if !last.is_empty() && (last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x")) {
        return Err(Invalid(format!("malformed IPv4 address {host:?}")));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return Err(Invalid(format!("invalid host name {host:?}")));
    }
    Ok(Host::Name(name))
}

/// `inet_aton` semantics: 1–4 parts, each decimal, octal (`0` prefix) or hex
/// (`0x`), the last part filling the remaining bytes.
fn parse_ipv4_loose(s: &str) -> Option<Ipv4Addr> {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let mut values = Vec::with_capacity(parts.len());
    for part in &parts {
        values.push(parse_part(part)?);
    }
    let (last, init) = values.split_last()?;
    for v in init {
        if *v > 255 {
            return None;
        }
    }
    let remaining_bytes = 4 - init.len() as u32;
    if remaining_bytes < 4 && *last >= 1u64 << (8 * remaining_bytes) {
        return None;
    }
    if *last > u32::MAX as u64 {
        return None;
    }
    let mut n: u32 = 0;
    for (i, v) in init.iter().enumerate() {
        n |= (*v as u32) << (24 - 8 * i as u32);
    }
    n |= *last as u32;
    Some(Ipv4Addr::from(n))
}

fn parse_part(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        return if radix == 16 { None } else { Some(0) };
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .filter(|v| *v <= u32::MAX as u64)
}

/// The canonical IPv4 address inside an IPv6 one, if any (mapped
/// `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`).
/// The IPv4 address in the last 32 bits of an IPv6 address's segments.
fn low_v4(s: &[u16; 8]) -> Ipv4Addr {
    let [a, b] = s[6].to_be_bytes();
    let [c, d] = s[7].to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

fn embedded_v4(ip: &Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    if s[..6] == [0, 0, 0, 0, 0, 0] && (s[6] != 0 || s[7] > 1) {
        return Some(low_v4(&s));
    }
    // SIIT "IPv4-translated" addresses ::ffff:0:a.b.c.d (RFC 2765).
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some(low_v4(&s));
    }
    // ISATAP interface identifiers (…:0:5efe:a.b.c.d, …:200:5efe:a.b.c.d).
    if s[4] & 0xfdff == 0 && s[5] == 0x5efe {
        return Some(low_v4(&s));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(low_v4(&s));
    }
    None
}

/// The named range that forbids `ip` by default, or `None` for a public
/// address.
pub fn denied_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => denied_v4(v4),
        // Local-use NAT64 (RFC 8215) may put the IPv4 anywhere in its
        // suffix: the whole prefix is denied, whatever it seems to embed.
        IpAddr::V6(v6) if v6.segments()[..3] == [0x64, 0xff9b, 1] => {
            Some("local-use NAT64 64:ff9b:1::/48 (may embed a private IPv4)")
        }
        // An address is judged as itself *and* as the IPv4 it embeds: an
        // ISATAP identifier under a unique-local prefix
        // (`fd00::5efe:808:808`) is not public because 8.8.8.8 is.
        IpAddr::V6(v6) => denied_v6(v6).or_else(|| embedded_v4(&v6).and_then(denied_v4)),
    }
}

fn denied_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    Some(match o {
        [0, ..] => "this-network 0.0.0.0/8",
        [10, ..] => "private 10.0.0.0/8",
        [100, b, ..] if (64..128).contains(&b) => "shared (CGNAT) 100.64.0.0/10",
        [127, ..] => "loopback 127.0.0.0/8",
        [169, 254, ..] => "link-local 169.254.0.0/16 (cloud metadata)",
        [172, b, ..] if (16..32).contains(&b) => "private 172.16.0.0/12",
        [192, 0, 0, _] => "IETF protocol assignments 192.0.0.0/24",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation (TEST-NET)",
        [192, 88, 99, _] => "6to4 relay 192.88.99.0/24",
        [192, 168, ..] => "private 192.168.0.0/16",
        [198, b, ..] if b == 18 || b == 19 => "benchmarking 198.18.0.0/15",
        [a, ..] if (224..240).contains(&a) => "multicast 224.0.0.0/4",
        [255, 255, 255, 255] => "broadcast 255.255.255.255",
        [a, ..] if a >= 240 => "reserved 240.0.0.0/4",
        _ => return None,
    })
}

fn denied_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(if ip.is_unspecified() {
        "unspecified ::"
    } else if ip.is_loopback() {
        "loopback ::1"
    } else if s[0] & 0xfe00 == 0xfc00 {
        "unique-local fc00::/7"
    } else if s[0] & 0xffc0 == 0xfe80 {
        "link-local fe80::/10"
    } else if s[0] & 0xffc0 == 0xfec0 {
        "site-local fec0::/10"
    } else if s[0] & 0xff00 == 0xff00 {
        "multicast ff00::/8"
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        "documentation 2001:db8::/32"
    } else if s[0] == 0x2002 {
        "6to4 2002::/16 (may embed a private IPv4)"
    } else if s[0] == 0x2001 && s[1] == 0 {
        "Teredo 2001::/32 (may embed a private IPv4)"
    } else if s[0] == 0x0100 && s[1..4] == [0, 0, 0] {
        "discard-only 100::/64"
    } else {
        return None;
    })
}

/// An IP network (`10.0.0.0/8`, `::1/128`) from `[egress] allow_private`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr/prefix` (a bare address means a single host).
    pub fn parse(s: &str) -> Result<Self, Invalid> {
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let network: IpAddr = addr
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map_err(|_| format!("{s:?} is not an IP network (e.g. 10.0.0.0/8, ::1/128)"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?} has an invalid prefix length (0–{max})"))?,
            None => max,
        };
        Ok(Self { network, prefix })
    }

    /// Whether `ip` is inside (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => embedded_v4(&v6).map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translated_and_tunnel_forms_of_private_ipv4_are_denied() {
        let denied = |text: &str| denied_range(text.parse().unwrap());
        // Local-use NAT64 (RFC 8215): the IPv4 sits anywhere in the suffix.
        assert!(denied("64:ff9b:1::a00:1").is_some());
        assert!(denied("64:ff9b:1:ffff::1").is_some());
        assert!(denied("64:ff9b:1::5efe:8.8.8.8").is_some());
        // Well-known NAT64, IPv4-mapped, SIIT-translated, IPv4-compatible.
        for text in [
            "64:ff9b::a9fe:a9fe",
            "::ffff:169.254.169.254",
            "::ffff:0:10.0.0.1",
            "::127.0.0.1",
        ] {
            assert!(denied(text).is_some(), "{text}");
        }
        // ISATAP identifiers embedding a private IPv4.
        assert!(denied("2600::5efe:10.1.2.3").is_some());
        // Judged as itself too: a unique-local ISATAP address embedding a
        // public IPv4 is still unique-local.
        assert!(denied("fd00::5efe:808:808").is_some());
        assert!(denied("fe80::5efe:8.8.8.8").is_some());
        assert!(denied("2600::5efe:8.8.8.8").is_none());
        assert!(denied("2600::200:5efe:192.168.0.1").is_some());
        // Public IPv4 through the same forms stays public.
        assert_eq!(denied("64:ff9b::808:808"), None);
        assert_eq!(denied("::ffff:0:8.8.8.8"), None);
        assert_eq!(denied("2606:4700::1111"), None);
    }

    fn ip(s: &str) -> IpAddr {
        match parse_host(s).unwrap() {
            Host::Ip(ip) => ip,
            Host::Name(n) => panic!("{s} parsed as name {n}"),
        }
    }

    #[test]
    fn odd_ipv4_spellings_normalize() {
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        for spelling in [
            "127.0.0.1",
            "127.1",
            "127.0.1",
            "0x7f000001",
            "0X7F000001",
            "2130706433",
            "0177.0.0.1",
            "0x7f.0.0.1",
            "017700000001",
            "127.0.0.1.",
        ] {
            assert_eq!(ip(spelling), loopback, "{spelling}");
        }
        assert_eq!(ip("0"), "0.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(
            ip("[::ffff:127.0.0.1]"),
            "::ffff:127.0.0.1".parse::<IpAddr>().unwrap()
        );
        assert!(parse_host("256.1.1.1").is_err());
        assert!(parse_host("1.2.3.4.5").is_err());
        assert!(parse_host("08.1.1.1").is_err());
        assert_eq!(
            parse_host("Example.COM.").unwrap(),
            Host::Name("example.com".into())
        );
        assert!(parse_host("exa mple.com").is_err());
    }

    #[test]
    fn dangerous_ranges_are_denied_in_every_form() {
        for spelling in [
            "127.0.0.1",
            "127.1",
            "0x7f000001",
            "2130706433",
            "0177.0.0.1",
            "[::1]",
            "[::ffff:127.0.0.1]",
            "[::ffff:7f00:1]",
            "[::127.0.0.1]",
            "[64:ff9b::7f00:1]",
            "169.254.169.254",
            "[::ffff:169.254.169.254]",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "[::]",
            "[fd00::1]",
            "[fc00::1]",
            "[fe80::1]",
            "[fe80::1%25eth0]",
            "224.0.0.1",
            "255.255.255.255",
            "[ff02::1]",
            "240.0.0.1",
            "[2002:7f00:1::]",
        ] {
            assert!(
                denied_range(ip(spelling)).is_some(),
                "{spelling} must be denied"
            );
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "100.128.0.1",
            "172.32.0.1",
            "[2606:4700:4700::1111]",
            "93.184.215.14",
        ] {
            assert_eq!(denied_range(ip(public)), None, "{public} is public");
        }
        assert!(
            denied_range(ip("169.254.169.254"))
                .unwrap()
                .contains("metadata")
        );
    }

    #[test]
    fn cidrs_parse_and_match() {
        let lo = Cidr::parse("127.0.0.1/32").unwrap();
        assert!(lo.contains(ip("127.0.0.1")));
        assert!(lo.contains(ip("[::ffff:127.0.0.1]")));
        assert!(!lo.contains(ip("127.0.0.2")));
        let ten = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(ten.contains(ip("10.200.1.1")) && !ten.contains(ip("11.0.0.1")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("[::1]")));
        assert!(Cidr::parse("fd00::/8").unwrap().contains(ip("[fd12::1]")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        for bad in ["10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }
}
