//! Session tests, driven the way the shell drives a session, without sockets.
//!
//! [`Driver`] plays the shell: it feeds bytes within `input_room`, answers every action
//! (logins against one account, `tim` with RFC 2195's secret; ATRN with a chosen
//! verdict) and keeps the transcript, so tests read as conversations.

mod atrn;
mod auth;
mod conversation;
mod props;
mod tls;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use md5::Md5;

use super::{
    Action, AtrnVerdict, AuthVerdict, Connection, Credential, Mechanism, OdmrConfig, Session,
};
use crate::smtp::Reply;

/// RFC 2195 §2's example: challenge, user and shared secret.
pub const CHALLENGE: &str = "<1896.697170952@postoffice.reston.mci.net>";
pub const USER: &str = "tim";
pub const SECRET: &str = "tanstaaftanstaaf";

pub fn config() -> OdmrConfig {
    OdmrConfig {
        hostname: "odmr.test".into(),
        starttls: true,
        plaintext_auth: false,
        max_command_line: 512,
        max_pipelined: 4096,
        max_auth_failures: 3,
        max_bad_commands: 10,
    }
}

/// Hex HMAC-MD5 of `challenge` keyed by `secret`, as a CRAM-MD5 client computes it.
pub fn cram_digest(secret: &str, challenge: &str) -> String {
    let Ok(mut mac) = <Hmac<Md5> as Mac>::new_from_slice(secret.as_bytes()) else {
        panic!("HMAC takes any key length");
    };
    mac.update(challenge.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A CRAM-MD5 response line for `user` with `secret`, CRLF included.
pub fn cram_response(user: &str, secret: &str) -> Vec<u8> {
    let digest = cram_digest(secret, CHALLENGE);
    format!("{}\r\n", b64(format!("{user} {digest}").as_bytes())).into_bytes()
}

pub fn b64(raw: &[u8]) -> String {
    STANDARD.encode(raw)
}

/// What the Driver's engine says to a login.
fn check(login: &[u8], credential: &Credential) -> AuthVerdict {
    if login == b"temp" {
        return AuthVerdict::Temporary;
    }
    let good = login == USER.as_bytes()
        && match credential {
            Credential::Plain(secret) => secret.expose() == SECRET.as_bytes(),
            Credential::CramMd5 { challenge, digest } => {
                challenge == CHALLENGE
                    && digest.to_ascii_lowercase() == cram_digest(SECRET, challenge)
            }
        };
    if good {
        AuthVerdict::Accepted
    } else {
        AuthVerdict::Rejected
    }
}

pub struct Driver {
    pub session: Session,
    pub transcript: String,
    pub auths: Vec<(Mechanism, Vec<u8>, Credential)>,
    pub atrns: Vec<Vec<String>>,
    pub refused: Vec<(String, Reply)>,
    pub starttls: usize,
    pub reversed: usize,
    pub closed: bool,
    /// What the next ATRN gets.
    pub atrn_verdict: AtrnVerdict,
}

impl Driver {
    pub fn new(cfg: OdmrConfig) -> Driver {
        Driver::with_connection(
            cfg,
            Connection {
                tls_active: false,
                challenge: CHALLENGE.into(),
            },
        )
    }

    pub fn with_connection(cfg: OdmrConfig, conn: Connection) -> Driver {
        let mut driver = Driver {
            session: Session::new(Arc::new(cfg), conn),
            transcript: String::new(),
            auths: Vec::new(),
            atrns: Vec::new(),
            refused: Vec::new(),
            starttls: 0,
            reversed: 0,
            closed: false,
            atrn_verdict: AtrnVerdict::Turn,
        };
        driver.run();
        driver
    }

    /// Sends `bytes` as one packet (in pieces if the session's room is smaller) and
    /// returns the replies written since the last call. Stops when the session is
    /// closed or reversed: what is left is not the session's.
    pub fn send(&mut self, bytes: &[u8]) -> String {
        let before = self.transcript.len();
        let mut rest = bytes;
        loop {
            let taken = self.session.receive(rest);
            rest = &rest[taken..];
            self.run();
            if rest.is_empty() || self.session.is_closed() {
                break;
            }
            assert!(taken > 0 || self.session.input_room() > 0, "session stuck");
        }
        self.transcript[before..].to_string()
    }

    /// Sends each byte on its own.
    pub fn send_bytewise(&mut self, bytes: &[u8]) -> String {
        let before = self.transcript.len();
        for b in bytes {
            self.send(std::slice::from_ref(b));
        }
        self.transcript[before..].to_string()
    }

    /// Carries out actions until the session needs input, then takes the output.
    pub fn run(&mut self) {
        while let Some(action) = self.session.next_action() {
            match action {
                Action::Authenticate {
                    mechanism,
                    login,
                    credential,
                } => {
                    let verdict = check(&login, &credential);
                    self.auths.push((mechanism, login, credential));
                    self.session.answer_auth(verdict);
                }
                Action::Atrn { domains } => {
                    self.atrns.push(domains);
                    self.session.answer_atrn(self.atrn_verdict);
                }
                Action::StartTls => {
                    self.take_output();
                    self.starttls += 1;
                    self.session.tls_started();
                }
                Action::Reverse => self.reversed += 1,
                Action::Refused { command, reply } => self.refused.push((command, reply)),
                Action::Close => self.closed = true,
            }
        }
        self.take_output();
    }

    fn take_output(&mut self) {
        let out = self.session.take_output();
        self.transcript.push_str(&String::from_utf8_lossy(&out));
    }
}

/// The reply codes (with enhanced codes) in `replies`, one per final reply line.
pub fn codes(replies: &str) -> Vec<String> {
    replies
        .split("\r\n")
        .filter(|line| line.len() >= 4 && line.as_bytes()[3] == b' ')
        .map(|line| {
            let mut words = line.split(' ');
            let code = words.next().unwrap_or_default();
            match words.next() {
                Some(e) if e.contains('.') && e.as_bytes()[0].is_ascii_digit() => {
                    format!("{code} {e}")
                }
                _ => code.to_string(),
            }
        })
        .collect()
}

/// A driver that has said EHLO.
pub fn greeted(cfg: OdmrConfig) -> Driver {
    let mut d = Driver::new(cfg);
    d.send(b"EHLO site.test\r\n");
    d
}

/// A driver authenticated with CRAM-MD5.
pub fn authenticated() -> Driver {
    let mut d = greeted(config());
    d.send(b"AUTH CRAM-MD5\r\n");
    let out = d.send(&cram_response(USER, SECRET));
    assert_eq!(codes(&out), ["235 2.7.0"]);
    d
}
