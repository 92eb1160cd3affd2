//! The AUTH PLAIN message (RFC 4616) inside POP3's AUTH (RFC 5034).
//!
//! The client sends base64 of `authzid NUL authcid NUL passwd`. We accept only an empty
//! authorization identity or one equal to the login: acting as another user is a
//! master-user feature turnmail does not have. Decoded bytes live in [`Secret`]s so the
//! password is wiped when the check is done.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::reply::Reply;
use super::secret::Secret;
use super::texts;

/// Standard alphabet; padding optional, since some clients leave it off.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The client's answer is `*`: abort the exchange (RFC 5034 §4).
pub fn is_cancel(response: &[u8]) -> bool {
    response == b"*"
}

/// Decodes a PLAIN response into the login and the password, or the reply refusing it.
pub fn decode_plain(response: &[u8]) -> Result<(Vec<u8>, Secret), Reply> {
    // "=" is an empty initial response (RFC 5034 §4), which PLAIN cannot use.
    let decoded = if response == b"=" {
        Secret::default()
    } else {
        Secret::new(BASE64.decode(response).map_err(|_| texts::bad_base64())?)
    };
    let mut parts = decoded.expose().split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(texts::bad_plain());
    };
    if authcid.is_empty() || passwd.is_empty() {
        return Err(texts::bad_plain());
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(texts::authzid_refused());
    }
    Ok((authcid.to_vec(), Secret::new(passwd.to_vec())))
}

#[cfg(test)]
mod tests {
    use super::*;
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
