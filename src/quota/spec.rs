//! Quota limits and the ways they are written: the Maildir++ header form
//! (`10000000S,1000C`, either part optional) that `maildirsize` and vpopmail's vpasswd
//! use, and the operator's shorthand (`10M`, `1G`, `1000C`, `10M,1000C`, `none`).

use std::fmt;

/// A mailbox's limits; `None` is no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Limits {
    pub bytes: Option<u64>,
    pub messages: Option<u64>,
}

/// A limits text that is neither form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad quota {text:?}: {why} (examples: 10M, 1G, 10000000S, 1000C, 10M,1000C, none)")]
pub struct SpecError {
    pub text: String,
    pub why: &'static str,
}

/// Longest limits text looked at (a header line or an operator's argument).
const MAX_SPEC: usize = 128;

impl Limits {
    pub const NONE: Limits = Limits {
        bytes: None,
        messages: None,
    };

    pub fn is_none(&self) -> bool {
        self.bytes.is_none() && self.messages.is_none()
    }

    /// The Maildir++ header form: `NNNS`, `NNNC` or `NNNS,NNNC`; empty for no limits.
    pub fn header(&self) -> String {
        let mut parts = Vec::new();
        if let Some(b) = self.bytes {
            parts.push(format!("{b}S"));
        }
        if let Some(c) = self.messages {
            parts.push(format!("{c}C"));
        }
        parts.join(",")
    }

    /// Parse a Maildir++ header as Courier and Dovecot write it: comma-separated
    /// `<digits>S` and `<digits>C` parts, either missing. A zero limit is no limit
    /// (Dovecot writes `0C` for "no message limit"). Anything else is refused.
    pub fn parse_header(text: &[u8]) -> Result<Limits, SpecError> {
        let err = |why| SpecError {
            text: String::from_utf8_lossy(&text[..text.len().min(MAX_SPEC)]).into_owned(),
            why,
        };
        if text.len() > MAX_SPEC {
            return Err(err("too long"));
        }
        let mut l = Limits::NONE;
        let (mut seen_s, mut seen_c) = (false, false);
        for part in text.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() {
                continue;
            }
            let (digits, kind) = part.split_at(part.len() - 1);
            let n = decimal(digits).ok_or_else(|| err("a limit must be digits then S or C"))?;
            let n = (n > 0).then_some(n);
            match kind {
                [b'S'] if !seen_s => {
                    seen_s = true;
                    l.bytes = n;
                }
                [b'C'] if !seen_c => {
                    seen_c = true;
                    l.messages = n;
                }
                [b'S' | b'C'] => return Err(err("a limit given twice")),
                _ => return Err(err("a limit must end in S (bytes) or C (messages)")),
            }
        }
        Ok(l)
    }

    /// Parse what an operator types, or vpopmail's quota field: `none` / `NOQUOTA`,
    /// the header form, or sizes with K/M/G/T suffixes (powers of 1024, as
    /// vpopmail's `vsetuserquota` reads them; a bare number is bytes), joined by a
    /// comma with a `NNNC` message count.
    pub fn parse_operator(text: &str) -> Result<Limits, SpecError> {
        let t = text.trim();
        let err = |why| SpecError {
            text: t.chars().take(MAX_SPEC).collect(),
            why,
        };
        if t.len() > MAX_SPEC {
            return Err(err("too long"));
        }
        if t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("noquota") {
            return Ok(Limits::NONE);
        }
        if t.is_empty() {
            return Err(err("empty"));
        }
        let mut l = Limits::NONE;
        let (mut seen_s, mut seen_c) = (false, false);
        for part in t.split(',') {
            let part = part.trim();
            let Some(last) = part.bytes().last() else {
                return Err(err("an empty part"));
            };
            let pb = part.as_bytes();
            let (digits, unit) = if last.is_ascii_digit() {
                (pb, b'S')
            } else {
                (&pb[..pb.len() - 1], last.to_ascii_uppercase())
            };
            let n = decimal(digits).ok_or_else(|| err("a size must start with digits"))?;
            let (mult, is_count): (u64, bool) = match unit {
                b'S' | b'B' => (1, false),
                b'K' => (1 << 10, false),
                b'M' => (1 << 20, false),
                b'G' => (1 << 30, false),
                b'T' => (1 << 40, false),
                b'C' => (1, true),
                _ => {
                    return Err(err(
                        "unknown unit (use K, M, G, T, S for bytes, C for messages)",
                    ));
                }
            };
            let n = n.checked_mul(mult).ok_or_else(|| err("too large"))?;
            let n = (n > 0).then_some(n);
            if is_count {
                if std::mem::replace(&mut seen_c, true) {
                    return Err(err("a message limit given twice"));
                }
                l.messages = n;
            } else {
                if std::mem::replace(&mut seen_s, true) {
                    return Err(err("a size limit given twice"));
                }
                l.bytes = n;
            }
        }
        Ok(l)
    }

    /// Whether `usage` is at or past a limit (nothing more may be delivered).
    pub fn is_over(&self, bytes: i64, messages: i64) -> bool {
        self.bytes.is_some_and(|b| bytes >= 0 && bytes as u64 >= b)
            || self
                .messages
                .is_some_and(|c| messages >= 0 && messages as u64 >= c)
    }

    /// Whether adding `add_bytes` in one message would go past a limit.
    pub fn would_exceed(&self, bytes: i64, messages: i64, add_bytes: u64) -> bool {
        let after_b = i128::from(bytes) + i128::from(add_bytes);
        let after_c = i128::from(messages) + 1;
        self.bytes.is_some_and(|b| after_b > i128::from(b))
            || self.messages.is_some_and(|c| after_c > i128::from(c))
    }

    /// The highest use of a limit, in whole percent (0 without limits).
    pub fn percent_used(&self, bytes: i64, messages: i64) -> u64 {
        let pct = |used: i64, limit: Option<u64>| match limit {
            Some(l) if l > 0 && used > 0 => (used as u128 * 100 / u128::from(l)) as u64,
            _ => 0,
        };
        pct(bytes, self.bytes).max(pct(messages, self.messages))
    }
}

impl fmt::Display for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            f.write_str("none")
        } else {
            f.write_str(&self.header())
        }
    }
}

fn decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 20 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn l(bytes: Option<u64>, messages: Option<u64>) -> Limits {
        Limits { bytes, messages }
    }

    #[test]
    fn header_forms() {
        assert_eq!(
            Limits::parse_header(b"10000000S"),
            Ok(l(Some(10_000_000), None))
        );
        assert_eq!(Limits::parse_header(b"1000C"), Ok(l(None, Some(1000))));
        assert_eq!(
            Limits::parse_header(b"10000000S,1000C"),
            Ok(l(Some(10_000_000), Some(1000)))
        );
        assert_eq!(
            Limits::parse_header(b"1000C,5S"),
            Ok(l(Some(5), Some(1000)))
        );
        assert_eq!(Limits::parse_header(b"0S,0C"), Ok(Limits::NONE));
        assert_eq!(Limits::parse_header(b""), Ok(Limits::NONE));
        assert!(Limits::parse_header(b"10M").is_err());
        assert!(Limits::parse_header(b"5S,6S").is_err());
        assert!(Limits::parse_header(b"S").is_err());
        assert!(Limits::parse_header(b"-5S").is_err());
        assert!(Limits::parse_header(b"99999999999999999999999S").is_err());
    }

    #[test]
    fn operator_forms() {
        let p = |s| Limits::parse_operator(s);
        assert_eq!(p("10M"), Ok(l(Some(10 << 20), None)));
        assert_eq!(p("1G"), Ok(l(Some(1 << 30), None)));
        assert_eq!(p("10000000S"), Ok(l(Some(10_000_000), None)));
        assert_eq!(p("10000000"), Ok(l(Some(10_000_000), None)));
        assert_eq!(p("1000C"), Ok(l(None, Some(1000))));
        assert_eq!(p("10M,1000C"), Ok(l(Some(10 << 20), Some(1000))));
        assert_eq!(p("5m"), Ok(l(Some(5 << 20), None)));
        assert_eq!(p("none"), Ok(Limits::NONE));
        assert_eq!(p("NOQUOTA"), Ok(Limits::NONE));
        assert!(p("").is_err());
        assert!(p("10X").is_err());
        assert!(p("M").is_err());
        assert!(p("10M,20M").is_err());
        assert!(p("99999999999T").is_err());
    }

    #[test]
    fn over_and_crossing() {
        let q = l(Some(100), Some(2));
        assert!(!q.is_over(99, 1));
        assert!(q.is_over(100, 1));
        assert!(q.is_over(0, 2));
        assert!(!q.would_exceed(50, 0, 50));
        assert!(q.would_exceed(50, 0, 51));
        assert!(q.would_exceed(0, 2, 1));
        assert!(!Limits::NONE.would_exceed(i64::MAX, i64::MAX, u64::MAX));
        assert_eq!(q.percent_used(90, 0), 90);
        assert_eq!(q.percent_used(10, 2), 100);
    }

    proptest! {
        #[test]
        fn header_round_trips(b in proptest::option::of(1u64..u64::MAX), c in proptest::option::of(1u64..u64::MAX)) {
            let q = l(b, c);
            prop_assert_eq!(Limits::parse_header(q.header().as_bytes()), Ok(q));
            prop_assert_eq!(Limits::parse_operator(&q.to_string()), Ok(q));
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Limits::parse_header(&bytes);
            let _ = Limits::parse_operator(&String::from_utf8_lossy(&bytes));
        }
    }
}
