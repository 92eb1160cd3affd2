//! The AUTH PLAIN message (RFC 4616) inside POP3's AUTH (RFC 5034).
//!
//! The client sends base64 of `authzid NUL authcid NUL passwd`. We accept only an empty
//! authorization identity or one equal to the login: acting as another user is a
//! master-user feature turnmail does not have. Decoded bytes live in [`Secret`]s so the
//! password is wiped when the check is done. The decoding is `auth::sasl`'s, shared
//! with SMTP and ODMR; the replies are POP3's.

use super::reply::Reply;
use super::texts;
use crate::auth::Secret;
use crate::auth::sasl::{self, Malformed};

/// The client's answer is `*`: abort the exchange (RFC 5034 §4).
pub fn is_cancel(response: &[u8]) -> bool {
    sasl::is_cancel(response)
}

/// Decodes a PLAIN response into the login and the password, or the reply refusing it.
/// `=` is an empty initial response (RFC 5034 §4), which PLAIN cannot use.
pub fn decode_plain(response: &[u8]) -> Result<(Vec<u8>, Secret), Reply> {
    sasl::decode_plain(response).map_err(|m| match m {
        Malformed::Base64 => texts::bad_base64(),
        Malformed::Parts => texts::bad_plain(),
        Malformed::Authzid => texts::authzid_refused(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;

    fn encode(raw: &[u8]) -> Vec<u8> {
        STANDARD.encode(raw).into_bytes()
    }

    #[test]
    fn plain_with_and_without_authzid() {
        let (login, pass) = decode_plain(&encode(b"\0tim\0tanstaaftanstaaf")).unwrap();
        assert_eq!(login, b"tim");
        assert_eq!(pass.expose(), b"tanstaaftanstaaf");
        let (login, _) = decode_plain(&encode(b"tim\0tim\0x")).unwrap();
        assert_eq!(login, b"tim");
    }

    #[test]
    fn padding_is_optional() {
        let mut unpadded = encode(b"\0a\0bc");
        while unpadded.last() == Some(&b'=') {
            unpadded.pop();
        }
        assert!(decode_plain(&unpadded).is_ok());
    }

    #[test]
    fn refusals() {
        let text = |r: &[u8]| decode_plain(r).unwrap_err().text;
        assert_eq!(text(b"!!!"), "Invalid base64 data");
        assert_eq!(text(b"="), "Malformed PLAIN response");
        assert_eq!(text(&encode(b"tim\0pw")), "Malformed PLAIN response");
        assert_eq!(text(&encode(b"\0\0pw")), "Malformed PLAIN response");
        assert_eq!(text(&encode(b"\0tim\0")), "Malformed PLAIN response");
        assert_eq!(text(&encode(b"\0tim\0pw\0x")), "Malformed PLAIN response");
        assert_eq!(
            text(&encode(b"admin\0tim\0pw")),
            "Authorization identity must be empty or equal the login"
        );
    }

    #[test]
    fn cancel() {
        assert!(is_cancel(b"*"));
        assert!(!is_cancel(b"**"));
    }
}
