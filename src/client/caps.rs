//! What the server offers, read from its EHLO reply.
//!
//! Only the extensions that change how this client talks are kept. Keywords are
//! case-insensitive (RFC 5321 §2.4); the first line of the reply is the server's name,
//! not an extension, so it is skipped.

use super::Reply;

/// Extensions from one EHLO reply. All false after a HELO fallback.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub pipelining: bool,
    pub chunking: bool,
    /// `SIZE` was offered; `Some(0)` or `Some(n)` is the limit it named (0: none).
    pub size: Option<u64>,
    pub eightbitmime: bool,
    pub starttls: bool,
    pub enhanced_status_codes: bool,
    /// SASL mechanisms offered (`AUTH PLAIN LOGIN`, or the old `AUTH=` form).
    pub auth_plain: bool,
    pub auth_login: bool,
}

impl Capabilities {
    /// Reads the lines of a 250 reply to EHLO.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            let keyword = keyword.to_ascii_uppercase();
            // Some servers still write `AUTH=PLAIN LOGIN` (before RFC 2554's form).
            if let Some(first) = keyword.strip_prefix("AUTH=") {
                for m in
                    std::iter::once(first.to_string()).chain(words.map(|w| w.to_ascii_uppercase()))
                {
                    caps.auth_plain |= m == "PLAIN";
                    caps.auth_login |= m == "LOGIN";
                }
                continue;
            }
            match keyword.as_str() {
                "AUTH" => {
                    for m in words.by_ref() {
                        caps.auth_plain |= m.eq_ignore_ascii_case("PLAIN");
                        caps.auth_login |= m.eq_ignore_ascii_case("LOGIN");
                    }
                }
                "PIPELINING" => caps.pipelining = true,
                "CHUNKING" => caps.chunking = true,
                // A limit that does not parse is treated as "no limit stated".
                "SIZE" => caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0)),
                "8BITMIME" => caps.eightbitmime = true,
                "STARTTLS" => caps.starttls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                _ => {}
            }
        }
        caps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(lines: &[&str]) -> Reply {
        Reply {
            code: 250,
            enhanced: None,
            lines: lines.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn keywords_case_insensitive() {
        let caps = Capabilities::from_ehlo(&reply(&[
            "mx.example Hello",
            "PipeLining",
            "chunking",
            "SIZE 10240000",
            "8BITMIME",
            "STARTTLS",
            "ENHANCEDSTATUSCODES",
            "AUTH PLAIN",
        ]));
        assert_eq!(
            caps,
            Capabilities {
                pipelining: true,
                chunking: true,
                size: Some(10_240_000),
                eightbitmime: true,
                starttls: true,
                enhanced_status_codes: true,
                auth_plain: true,
                auth_login: false,
            }
        );
        let old = Capabilities::from_ehlo(&reply(&["mx", "AUTH=login plain"]));
        assert!(old.auth_login && old.auth_plain);
    }

    #[test]
    fn first_line_is_the_name_and_size_may_be_bare() {
        let caps = Capabilities::from_ehlo(&reply(&["PIPELINING", "SIZE", ""]));
        assert!(!caps.pipelining);
        assert_eq!(caps.size, Some(0));
        assert_eq!(
            Capabilities::from_ehlo(&reply(&["x"])),
            Capabilities::default()
        );
    }
}
