//! The DNS TXT record publishing a selector's public key (RFC 6376 §3.6.1, §3.6.2.1):
//! `SELECTOR._domainkey.DOMAIN`, value `v=DKIM1; k=ALG; p=BASE64`. One DNS
//! character-string holds at most 255 bytes, so a longer value (any RSA-2048 key) is
//! published as several strings, which verifiers join without a separator.

use super::keys::PrivateKey;

/// Longest DNS character-string (RFC 1035 §3.3).
pub const MAX_STRING: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TxtRecord {
    /// The owner name, without the final dot.
    pub name: String,
    /// The whole value, as verifiers read it.
    pub value: String,
    /// The value cut into character-strings of at most 255 bytes.
    pub strings: Vec<String>,
}

impl TxtRecord {
    pub fn new(domain: &str, selector: &str, key: &PrivateKey) -> TxtRecord {
        let value = format!(
            "v=DKIM1; k={}; p={}",
            key.algorithm.as_str(),
            key.public_base64()
        );
        TxtRecord {
            name: format!("{selector}._domainkey.{domain}"),
            strings: split(&value),
            value,
        }
    }

    /// The record as a zone file line (BIND syntax), strings in parentheses when
    /// there are several.
    pub fn zone_line(&self) -> String {
        let quoted: Vec<String> = self.strings.iter().map(|s| format!("\"{s}\"")).collect();
        if quoted.len() == 1 {
            format!("{}. IN TXT {}", self.name, quoted[0])
        } else {
            format!("{}. IN TXT ( {} )", self.name, quoted.join(" "))
        }
    }
}

/// The value is ASCII (tags and base64), so cutting at any byte is safe.
fn split(value: &str) -> Vec<String> {
    value
        .as_bytes()
        .chunks(MAX_STRING)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::keys::{Algorithm, generate, parse_pem};

    #[test]
    fn ed25519_fits_one_string() {
        let k = parse_pem(generate(Algorithm::Ed25519).unwrap().as_bytes()).unwrap();
        let r = TxtRecord::new("example.net", "tm1", &k);
        assert_eq!(r.name, "tm1._domainkey.example.net");
        assert!(r.value.starts_with("v=DKIM1; k=ed25519; p="));
        assert_eq!(r.strings, vec![r.value.clone()]);
        assert!(
            r.zone_line()
                .starts_with("tm1._domainkey.example.net. IN TXT \"v=DKIM1;")
        );
    }

    #[test]
    fn long_values_are_cut_at_255_bytes() {
        let v = "x".repeat(600);
        let s = split(&v);
        assert_eq!(
            s.iter().map(String::len).collect::<Vec<_>>(),
            [255, 255, 90]
        );
        assert_eq!(s.concat(), v);
    }
}
