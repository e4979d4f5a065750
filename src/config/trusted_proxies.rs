//! `WSGITrustedProxyHeaders` and `WSGITrustedProxies`: which forwarding headers a front-end
//! proxy may set, and which addresses such a proxy connects from. What the request then sees is
//! decided in `wsgi::proxy_headers`; here are the parsed settings.
//!
//! Subnets are written as httpd writes them (`apr_ipsubnet_create`, as in `Require ip`): a
//! whole IPv4 or IPv6 address, optionally with `/bits` (or, for IPv4, `/dotted.mask`), or the
//! leading octets of an IPv4 network (`10`, `10.1`, `192.168.1.`) with no mask.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address or network a trusted proxy may connect from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpSubnet {
    V4 { net: u32, mask: u32 },
    V6 { net: u128, mask: u128 },
}

impl IpSubnet {
    /// Parses one word of `WSGITrustedProxies`; the error says what is wrong with it.
    pub fn parse(word: &str) -> Result<IpSubnet, String> {
        // C mod_wsgi takes only words made of these characters (lower-case hex for IPv6); a
        // host name is not an address.
        let allowed = if word.contains(':') {
            "0123456789abcdef:/"
        } else {
            "0123456789./"
        };
        if word.is_empty() || !word.chars().all(|c| allowed.contains(c)) {
            return Err("not an IP address or subnet".into());
        }
        let (address, mask) = match word.split_once('/') {
            Some((a, m)) => (a, Some(m)),
            None => (word, None),
        };
        let subnet = if address.contains(':') {
            let ip: Ipv6Addr = address
                .parse()
                .map_err(|_| format!("'{address}' is not an IPv6 address"))?;
            if ip.to_ipv4_mapped().is_some() {
                return Err("an IPv4-mapped IPv6 address; write the IPv4 address".into());
            }
            IpSubnet::V6 {
                net: u128::from(ip),
                mask: u128::MAX,
            }
        } else if let Ok(ip) = address.parse::<Ipv4Addr>() {
            IpSubnet::V4 {
                net: u32::from(ip),
                mask: u32::MAX,
            }
        } else if mask.is_none() {
            partial_ipv4_network(address)?
        } else {
            return Err(format!("'{address}' is not an IPv4 address"));
        };
        let subnet = match mask {
            None => subnet,
            Some(mask) => subnet.with_mask(mask)?,
        };
        Ok(subnet.normalised())
    }

    fn with_mask(self, mask: &str) -> Result<IpSubnet, String> {
        let bad = || format!("'{mask}' is not a valid mask");
        let bits = mask.parse::<u32>().ok();
        Ok(match self {
            IpSubnet::V4 { net, .. } => {
                let mask = match bits {
                    Some(b @ 1..=32) => u32::MAX << (32 - b),
                    Some(_) => return Err(bad()),
                    None => u32::from(mask.parse::<Ipv4Addr>().map_err(|_| bad())?),
                };
                IpSubnet::V4 { net, mask }
            }
            IpSubnet::V6 { net, .. } => match bits {
                Some(b @ 1..=128) => IpSubnet::V6 {
                    net,
                    mask: u128::MAX << (128 - b),
                },
                _ => return Err(bad()),
            },
        })
    }

    /// The network part only, so that `10.1.2.3/8` matches as `10.0.0.0/8` does.
    fn normalised(self) -> IpSubnet {
        match self {
            IpSubnet::V4 { net, mask } => IpSubnet::V4 {
                net: net & mask,
                mask,
            },
            IpSubnet::V6 { net, mask } => IpSubnet::V6 {
                net: net & mask,
                mask,
            },
        }
    }

    /// Whether `ip` is in this subnet; an IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self, ip) {
            (IpSubnet::V4 { net, mask }, IpAddr::V4(ip)) => u32::from(ip) & mask == *net,
            (IpSubnet::V6 { net, mask }, IpAddr::V6(ip)) => u128::from(ip) & mask == *net,
            _ => false,
        }
    }
}

/// `10`, `10.1`, `10.1.2` or `10.1.2.` : the network of those leading octets.
fn partial_ipv4_network(address: &str) -> Result<IpSubnet, String> {
    let bad = || format!("'{address}' is not an IPv4 address or network");
    let octets: Vec<&str> = address
        .strip_suffix('.')
        .unwrap_or(address)
        .split('.')
        .collect();
    if octets.len() > 4 {
        return Err(bad());
    }
    let (mut net, mut mask) = (0u32, 0u32);
    for (i, octet) in octets.iter().enumerate() {
        let value: u8 = match octet.parse() {
            Ok(v) if !octet.is_empty() => v,
            _ => return Err(bad()),
        };
        let shift = 24 - 8 * i as u32;
        net |= u32::from(value) << shift;
        mask |= 0xff << shift;
    }
    Ok(IpSubnet::V4 { net, mask })
}

/// Whether any of `subnets` contains the address written in `text` (an address only: a name
/// is not looked up).
pub fn trusted(subnets: &[IpSubnet], text: &[u8]) -> bool {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse::<IpAddr>().ok())
        .is_some_and(|ip| subnets.iter().any(|s| s.contains(ip)))
}

/// The environ name of a request header as `WSGITrustedProxyHeaders` names it:
/// `X-Forwarded-For` is `HTTP_X_FORWARDED_FOR` (letters and digits upper-cased, `-` as `_`,
/// anything else left out, as C mod_wsgi does).
pub fn header_environ_name(header: &str) -> String {
    let mut name = String::with_capacity(5 + header.len());
    name.push_str("HTTP_");
    for c in header.chars() {
        if c.is_ascii_alphanumeric() {
            name.push(c.to_ascii_uppercase());
        } else if c == '-' {
            name.push('_');
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_networks_parse_as_httpd_writes_them() {
        let cases: &[(&str, &[&str], &[&str])] = &[
            ("10.0.0.1", &["10.0.0.1", "::ffff:10.0.0.1"], &["10.0.0.2"]),
            ("10.1", &["10.1.0.0", "10.1.255.7"], &["10.2.0.1"]),
            ("192.168.1.", &["192.168.1.9"], &["192.168.2.9"]),
            ("10.9.8.7/8", &["10.200.1.1"], &["11.0.0.1"]),
            ("172.16.0.0/255.240.0.0", &["172.31.1.1"], &["172.32.0.1"]),
            (
                "2001:db8::/32",
                &["2001:db8:1::5"],
                &["2001:db9::1", "10.0.0.1"],
            ),
            ("::1", &["::1"], &["::2", "127.0.0.1"]),
        ];
        for (word, inside, outside) in cases {
            let s = IpSubnet::parse(word).unwrap_or_else(|e| panic!("{word}: {e}"));
            for a in *inside {
                assert!(s.contains(ip(a)), "{word} should contain {a}");
            }
            for a in *outside {
                assert!(!s.contains(ip(a)), "{word} should not contain {a}");
            }
        }
    }

    #[test]
    fn words_that_are_not_addresses_are_refused() {
        for word in [
            "",
            "proxy.example.com",
            "10.0.0.256",
            "1.2.3.4.5",
            "10.1/16",
            "10.0.0.1/0",
            "10.0.0.1/33",
            "10.0.0.1/255.0.1.x",
            "2001:DB8::1",
            "::1/129",
            "::1/ffff::",
            "::ffff:10.0.0.1",
            "10..1",
        ] {
            assert!(IpSubnet::parse(word).is_err(), "{word:?} was accepted");
        }
    }

    #[test]
    fn only_written_addresses_are_trusted() {
        let subnets = [IpSubnet::parse("127.0.0.1").unwrap()];
        assert!(trusted(&subnets, b"127.0.0.1"));
        assert!(!trusted(&subnets, b"127.0.0.2"));
        assert!(!trusted(&subnets, b"localhost"));
        assert!(!trusted(&subnets, b""));
        assert!(!trusted(&[], b"127.0.0.1"));
    }

    #[test]
    fn header_names_become_environ_names() {
        assert_eq!(
            header_environ_name("X-Forwarded-For"),
            "HTTP_X_FORWARDED_FOR"
        );
        assert_eq!(header_environ_name("x-real-ip"), "HTTP_X_REAL_IP");
        assert_eq!(
            header_environ_name("X_Forwarded.Host"),
            "HTTP_XFORWARDEDHOST"
        );
    }
}
