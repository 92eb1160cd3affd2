//! Who a client is, for counting: an IPv4 address, or an IPv6 prefix. One host on IPv6
//! usually holds a whole /64 and can pick a fresh address for every connection, so
//! counting IPv6 clients by address would let it start over at will.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// The prefix length IPv6 clients are counted by, unless configured.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;

/// A client as the limits count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClientKey {
    V4([u8; 4]),
    /// The address with every bit past the prefix cleared, and the prefix length.
    V6([u8; 16], u8),
}

impl ClientKey {
    /// The key of `ip`: IPv4 by address (an IPv4-mapped IPv6 address too, since a
    /// dual-stack socket reports IPv4 clients that way), IPv6 by its first
    /// `ipv6_prefix` bits (clamped to 0..=128).
    pub fn of(ip: IpAddr, ipv6_prefix: u8) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(v4.octets()),
                None => {
                    let len = ipv6_prefix.min(128);
                    let bits = u128::from(v6);
                    let masked = match len {
                        0 => 0,
                        n => bits & (u128::MAX << (128 - u32::from(n))),
                    };
                    ClientKey::V6(masked.to_be_bytes(), len)
                }
            },
        }
    }

    /// Bytes that identify the key (for hashing into a shared table).
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            ClientKey::V4(a) => {
                let mut v = vec![4];
                v.extend_from_slice(a);
                v
            }
            ClientKey::V6(a, len) => {
                let mut v = vec![6, *len];
                v.extend_from_slice(a);
                v
            }
        }
    }
}

impl ClientKey {
    /// The key back from [`ClientKey::bytes`]; `None` for anything else.
    pub fn from_bytes(b: &[u8]) -> Option<ClientKey> {
        match b {
            [4, a @ ..] => Some(ClientKey::V4(a.try_into().ok()?)),
            [6, len, a @ ..] if *len <= 128 => Some(ClientKey::V6(a.try_into().ok()?, *len)),
            _ => None,
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientKey::V4(a) => write!(f, "{}", std::net::Ipv4Addr::from(*a)),
            ClientKey::V6(a, 128) => write!(f, "{}", Ipv6Addr::from(*a)),
            ClientKey::V6(a, len) => write!(f, "{}/{len}", Ipv6Addr::from(*a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str, len: u8) -> ClientKey {
        ClientKey::of(s.parse().unwrap(), len)
    }

    #[test]
    fn ipv6_counts_by_prefix_and_ipv4_by_address() {
        assert_eq!(
            key("2001:db8:1:2:aaaa::1", 64),
            key("2001:db8:1:2:ffff:1:2:3", 64)
        );
        assert_ne!(key("2001:db8:1:2::1", 64), key("2001:db8:1:3::1", 64));
        assert_eq!(key("2001:db8:1:2::1", 64).to_string(), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8::1", 128).to_string(), "2001:db8::1");
        assert_eq!(key("2001:db8::1", 200), key("2001:db8::1", 128));
        assert_eq!(key("2001:db8::1", 0), key("::", 0));
        assert_ne!(key("192.0.2.1", 64), key("192.0.2.2", 64));
        assert_eq!(key("::ffff:192.0.2.1", 64), key("192.0.2.1", 64));
        assert_eq!(key("192.0.2.1", 64).to_string(), "192.0.2.1");
        assert_ne!(key("::", 0).bytes(), key("0.0.0.0", 0).bytes());
        for k in [
            key("192.0.2.1", 64),
            key("2001:db8::1", 64),
            key("2001:db8::1", 128),
        ] {
            assert_eq!(ClientKey::from_bytes(&k.bytes()), Some(k));
        }
        assert_eq!(ClientKey::from_bytes(b"\x06\xff"), None);
        assert_eq!(ClientKey::from_bytes(&[4, 1, 2]), None);
    }
}
