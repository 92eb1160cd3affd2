//! The SASL messages inside SMTP AUTH (RFC 4954): PLAIN (RFC 4616), LOGIN
//! (draft-murchison-sasl-login) and CRAM-MD5 (RFC 2195).
//!
//! Each function takes one client response as sent (base64, or `=` for an empty
//! initial response) and returns what the engine needs, or the reply refusing it.
//! [`Exchange`] strings them into the steps of one AUTH exchange, for the sessions
//! that offer AUTH (the SMTP and submission ports and the ODMR port); POP3 decodes its
//! AUTH PLAIN with [`decode_plain`].
//! Decoded bytes that may hold a password live in [`Secret`]s, so they are hidden from
//! logs and wiped when dropped. Checking the password or digest is the engine's job:
//! this file only takes the messages apart.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::auth::Secret;
use crate::smtp::Reply;

use super::texts;
use super::{Credential, Mechanism};

/// Why a SASL response was refused, for sessions with replies of their own (POP3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    Base64,
    /// The parts are not what the mechanism sends.
    Parts,
    /// An authorization identity other than the login.
    Authzid,
}

/// PLAIN's response decoded: the login and the password (see [`plain`]).
pub fn decode_plain(response: &[u8]) -> Result<(Vec<u8>, Secret), Malformed> {
    let decoded = if response == b"=" {
        Secret::default()
    } else {
        Secret::new(BASE64.decode(response).map_err(|_| Malformed::Base64)?)
    };
    let mut parts = decoded.expose().split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Malformed::Parts);
    };
    if authcid.is_empty() || passwd.is_empty() {
        return Err(Malformed::Parts);
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(Malformed::Authzid);
    }
    Ok((authcid.to_vec(), Secret::new(passwd.to_vec())))
}

/// Standard alphabet; padding optional when decoding, since some clients leave it off.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Length of an HMAC-MD5 digest in hex.
const DIGEST_HEX: usize = 32;

/// The challenge text of a 334 reply.
pub fn encode(text: &[u8]) -> String {
    BASE64.encode(text)
}

/// The client's answer is `*`: abort the exchange (RFC 4954 §4).
pub fn is_cancel(response: &[u8]) -> bool {
    response == b"*"
}

/// Decodes one response; `=` is the empty initial response (RFC 4954 §4).
fn decode(response: &[u8]) -> Result<Secret, Reply> {
    if response == b"=" {
        return Ok(Secret::default());
    }
    BASE64
        .decode(response)
        .map(Secret::new)
        .map_err(|_| texts::bad_base64())
}

/// PLAIN: `authzid NUL authcid NUL passwd` → the login and the password. Only an empty
/// authorization identity or one equal to the login is accepted: acting as another
/// user is a feature turnmail does not have.
pub fn plain(response: &[u8]) -> Result<(Vec<u8>, Secret), Reply> {
    decode_plain(response).map_err(|m| match m {
        Malformed::Base64 => texts::bad_base64(),
        Malformed::Parts => texts::malformed_response("PLAIN"),
        Malformed::Authzid => texts::authzid_refused(),
    })
}

/// LOGIN's first response (or AUTH LOGIN's initial response): the user name.
pub fn login_user(response: &[u8]) -> Result<Vec<u8>, Reply> {
    let decoded = decode(response)?;
    if decoded.expose().is_empty() || decoded.expose().contains(&0) {
        return Err(texts::malformed_response("LOGIN"));
    }
    Ok(decoded.expose().to_vec())
}

/// LOGIN's second response: the password.
pub fn login_password(response: &[u8]) -> Result<Secret, Reply> {
    let decoded = decode(response)?;
    if decoded.expose().is_empty() || decoded.expose().contains(&0) {
        return Err(texts::malformed_response("LOGIN"));
    }
    Ok(decoded)
}

/// CRAM-MD5: `user SP digest` → the login and the 32 hex digit digest. The user is
/// everything before the last space, so a login containing spaces still works.
pub fn cram_md5(response: &[u8]) -> Result<(Vec<u8>, String), Reply> {
    let decoded = decode(response)?;
    let text = decoded.expose();
    let Some(space) = text.iter().rposition(|&b| b == b' ') else {
        return Err(texts::malformed_response("CRAM-MD5"));
    };
    let (user, digest) = (&text[..space], &text[space + 1..]);
    if user.is_empty()
        || user.contains(&0)
        || digest.len() != DIGEST_HEX
        || !digest.iter().all(u8::is_ascii_hexdigit)
    {
        return Err(texts::malformed_response("CRAM-MD5"));
    }
    Ok((user.to_vec(), String::from_utf8_lossy(digest).into_owned()))
}

/// The step of an AUTH exchange whose response comes next.
#[derive(Debug)]
pub enum Exchange {
    Plain,
    LoginUser,
    LoginPassword(Vec<u8>),
    CramMd5,
}

/// What the session does next in an AUTH exchange.
#[derive(Debug)]
pub enum Step {
    /// Send a 334 with this text (base64-encoded by [`encode`]) and wait for the
    /// response to `Exchange`.
    Challenge(Exchange, String),
    /// Ask the engine whether `credential` proves `login`.
    Check {
        login: Vec<u8>,
        credential: Credential,
    },
    /// End the exchange with this reply; it counts as a failed attempt.
    Refused(Reply),
}

impl Exchange {
    pub fn mechanism(&self) -> Mechanism {
        match self {
            Exchange::Plain => Mechanism::Plain,
            Exchange::LoginUser | Exchange::LoginPassword(_) => Mechanism::Login,
            Exchange::CramMd5 => Mechanism::CramMd5,
        }
    }

    /// The first step of `AUTH mechanism [initial]`, once the session has allowed the
    /// mechanism. `cram_challenge` is the text CRAM-MD5 sends (angle brackets
    /// included). Err: the command itself is wrong (CRAM-MD5 has the server speak
    /// first, so it takes no initial response: RFC 4954 §4).
    pub fn start(
        mechanism: Mechanism,
        initial: Option<&[u8]>,
        cram_challenge: &str,
    ) -> Result<Step, Reply> {
        match (mechanism, initial) {
            (Mechanism::Plain, Some(response)) => Ok(Exchange::Plain.respond(response, "")),
            (Mechanism::Plain, None) => Ok(Step::Challenge(Exchange::Plain, String::new())),
            (Mechanism::Login, Some(response)) => Ok(Exchange::LoginUser.respond(response, "")),
            (Mechanism::Login, None) => {
                Ok(Step::Challenge(Exchange::LoginUser, "Username:".into()))
            }
            (Mechanism::CramMd5, Some(_)) => Err(texts::no_initial_response("CRAM-MD5")),
            (Mechanism::CramMd5, None) => Ok(Step::Challenge(
                Exchange::CramMd5,
                cram_challenge.to_string(),
            )),
        }
    }

    /// One client response to this step; `*` cancels (RFC 4954 §4).
    pub fn respond(self, response: &[u8], cram_challenge: &str) -> Step {
        if is_cancel(response) {
            return Step::Refused(texts::auth_cancelled());
        }
        let result = match self {
            Exchange::Plain => {
                plain(response).map(|(login, secret)| (login, Credential::Plain(secret)))
            }
            Exchange::LoginUser => {
                return match login_user(response) {
                    Ok(login) => {
                        Step::Challenge(Exchange::LoginPassword(login), "Password:".into())
                    }
                    Err(reply) => Step::Refused(reply),
                };
            }
            Exchange::LoginPassword(login) => {
                login_password(response).map(|secret| (login, Credential::Plain(secret)))
            }
            Exchange::CramMd5 => cram_md5(response).map(|(login, digest)| {
                let challenge = cram_challenge.to_string();
                (login, Credential::CramMd5 { challenge, digest })
            }),
        };
        match result {
            Ok((login, credential)) => Step::Check { login, credential },
            Err(reply) => Step::Refused(reply),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    fn b64(raw: &[u8]) -> Vec<u8> {
        STANDARD.encode(raw).into_bytes()
    }

    fn text(result: Result<impl std::fmt::Debug, Reply>) -> String {
        match result {
            Ok(v) => panic!("accepted: {v:?}"),
            Err(r) => format!("{} {}", r.code, r.lines.join(" ")),
        }
    }

    #[test]
    fn plain_with_and_without_authzid() {
        let (login, pass) = plain(&b64(b"\0tim\0tanstaaftanstaaf")).unwrap();
        assert_eq!(login, b"tim");
        assert_eq!(pass.expose(), b"tanstaaftanstaaf");
        let (login, _) = plain(&b64(b"tim\0tim\0x")).unwrap();
        assert_eq!(login, b"tim");
        let mut unpadded = b64(b"\0a\0bc");
        while unpadded.last() == Some(&b'=') {
            unpadded.pop();
        }
        assert!(plain(&unpadded).is_ok());
    }

    #[test]
    fn plain_refusals() {
        assert_eq!(text(plain(b"!!!")), "501 Cannot decode base64 response");
        assert_eq!(text(plain(b"=")), "501 Malformed PLAIN response");
        assert_eq!(
            text(plain(&b64(b"tim\0pw"))),
            "501 Malformed PLAIN response"
        );
        assert_eq!(text(plain(&b64(b"\0\0pw"))), "501 Malformed PLAIN response");
        assert_eq!(
            text(plain(&b64(b"\0tim\0"))),
            "501 Malformed PLAIN response"
        );
        assert_eq!(
            text(plain(&b64(b"\0t\0p\0x"))),
            "501 Malformed PLAIN response"
        );
        assert_eq!(
            text(plain(&b64(b"admin\0tim\0pw"))),
            "535 Authorization identity must be empty or equal the login"
        );
    }

    #[test]
    fn login_steps() {
        assert_eq!(encode(b"Username:"), "VXNlcm5hbWU6");
        assert_eq!(encode(b"Password:"), "UGFzc3dvcmQ6");
        assert_eq!(login_user(&b64(b"tim")).unwrap(), b"tim");
        assert_eq!(login_password(&b64(b"pw")).unwrap().expose(), b"pw");
        assert_eq!(text(login_user(b"=")), "501 Malformed LOGIN response");
        assert_eq!(
            text(login_password(&b64(b"a\0b"))),
            "501 Malformed LOGIN response"
        );
        assert_eq!(text(login_user(b"%%")), "501 Cannot decode base64 response");
    }

    #[test]
    fn cram_md5_response() {
        // RFC 2195 §2's example response.
        let (user, digest) = cram_md5(b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw").unwrap();
        assert_eq!(user, b"tim");
        assert_eq!(digest, "b913a602c7eda7a495b4e6e7334d3890");
        let (user, _) = cram_md5(&b64(b"a b 0123456789ABCDEF0123456789abcdef")).unwrap();
        assert_eq!(user, b"a b");
        for bad in [
            &b"tim"[..],
            b"tim b913a602c7eda7a495b4e6e7334d389",
            b" b913a602c7eda7a495b4e6e7334d3890",
            b"tim b913a602c7eda7a495b4e6e7334d389g",
            b"tim b913a602c7eda7a495b4e6e7334d3890 ",
        ] {
            assert_eq!(text(cram_md5(&b64(bad))), "501 Malformed CRAM-MD5 response");
        }
        assert_eq!(text(cram_md5(b"=")), "501 Malformed CRAM-MD5 response");
    }

    #[test]
    fn cancel() {
        assert!(is_cancel(b"*"));
        assert!(!is_cancel(b"**"));
    }

    #[test]
    fn an_exchange_runs_login_in_two_challenges_then_asks_the_engine() {
        let Ok(Step::Challenge(ex, text)) = Exchange::start(Mechanism::Login, None, "<c>") else {
            panic!("LOGIN starts with a challenge");
        };
        assert_eq!(text, "Username:");
        let Step::Challenge(ex, text) = ex.respond(&b64(b"tim"), "<c>") else {
            panic!("then asks for the password");
        };
        assert_eq!(text, "Password:");
        assert_eq!(ex.mechanism(), Mechanism::Login);
        match ex.respond(&b64(b"pw"), "<c>") {
            Step::Check {
                login,
                credential: Credential::Plain(secret),
            } => {
                assert_eq!(login, b"tim");
                assert_eq!(secret.expose(), b"pw");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_exchange_takes_initial_responses_and_cancels() {
        match Exchange::start(Mechanism::Plain, Some(&b64(b"\0tim\0pw")), "") {
            Ok(Step::Check { login, .. }) => assert_eq!(login, b"tim"),
            other => panic!("{other:?}"),
        }
        // CRAM-MD5: the server speaks first, with the challenge it was given.
        assert_eq!(
            text(Exchange::start(Mechanism::CramMd5, Some(b"x"), "<c>")),
            "501 CRAM-MD5 takes no initial response"
        );
        let Ok(Step::Challenge(ex, text)) = Exchange::start(Mechanism::CramMd5, None, "<1.2@h>")
        else {
            panic!("CRAM-MD5 starts with a challenge");
        };
        assert_eq!(text, "<1.2@h>");
        let digest = "0123456789abcdef0123456789abcdef";
        match ex.respond(&b64(format!("tim {digest}").as_bytes()), "<1.2@h>") {
            Step::Check {
                credential:
                    Credential::CramMd5 {
                        challenge,
                        digest: d,
                    },
                ..
            } => assert_eq!((challenge.as_str(), d.as_str()), ("<1.2@h>", digest)),
            other => panic!("{other:?}"),
        }
        for ex in [Exchange::Plain, Exchange::LoginUser, Exchange::CramMd5] {
            match ex.respond(b"*", "<c>") {
                Step::Refused(r) => assert_eq!(r.code, 501),
                other => panic!("{other:?}"),
            }
        }
    }
}
