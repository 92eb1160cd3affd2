//! AUTH (RFC 4954) in the SMTP session: PLAIN and LOGIN (under TLS, or without it when
//! the configuration allows plaintext), CRAM-MD5 when the shell gave a challenge. The
//! SASL messages are taken apart by the same code as on the ODMR port
//! ([`crate::odmr::sasl`]), and the shell checks them with the same engine.
//!
//! AUTH only tells the shell which account is asking: ETRN uses it for sites whose
//! policy wants it. Recipients are checked exactly as without it, so AUTH never opens
//! relaying, and mail submission is not offered.

use super::action::Action;
use super::reply::Reply;
use super::session::{Session, Waiting, shown};
use super::texts;
use crate::odmr::sasl;
use crate::odmr::texts as auth_texts;
use crate::odmr::{AuthVerdict, Credential, Mechanism};

/// The step of an AUTH exchange whose response comes next.
#[derive(Debug)]
pub(super) enum Exchange {
    Plain,
    LoginUser,
    LoginPassword(Vec<u8>),
    CramMd5,
}

impl Session {
    /// PLAIN and LOGIN may be used (and are advertised) now.
    fn plaintext_ok(&self) -> bool {
        self.cfg.plaintext_auth || self.tls
    }

    /// The mechanisms offered now, for the EHLO reply; None when AUTH is not offered.
    pub(super) fn auth_keyword(&self) -> Option<String> {
        if !self.cfg.auth {
            return None;
        }
        let mut mechanisms = Vec::new();
        if self.plaintext_ok() {
            mechanisms.extend(["PLAIN", "LOGIN"]);
        }
        if self.challenge.is_some() {
            mechanisms.push("CRAM-MD5");
        }
        (!mechanisms.is_empty()).then(|| format!("AUTH {}", mechanisms.join(" ")))
    }

    /// An AUTH succeeded (and no STARTTLS came after it).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    pub(super) fn on_auth(
        &mut self,
        line: &[u8],
        mechanism: Option<Mechanism>,
        initial: Option<&[u8]>,
    ) {
        if self.auth_keyword().is_none() {
            return self.protocol_error(shown(line), texts::not_implemented());
        }
        if !self.helo.as_ref().is_some_and(|h| h.extended) {
            return self.protocol_error(shown(line), auth_texts::need_ehlo());
        }
        if self.tx.is_some() {
            return self.protocol_error(shown(line), texts::not_in_transaction("AUTH"));
        }
        if self.authenticated {
            return self.protocol_error(shown(line), auth_texts::already_authenticated());
        }
        let Some(mechanism) = mechanism else {
            return self.protocol_error(shown(line), auth_texts::unknown_mechanism());
        };
        match (mechanism, initial) {
            (Mechanism::CramMd5, _) if self.challenge.is_none() => {
                self.protocol_error(shown(line), auth_texts::unknown_mechanism());
            }
            (Mechanism::Plain | Mechanism::Login, _) if !self.plaintext_ok() => {
                self.protocol_error(shown(line), auth_texts::encryption_required());
            }
            (Mechanism::Plain, Some(response)) => self.on_sasl_response(Exchange::Plain, response),
            (Mechanism::Plain, None) => self.challenge(Exchange::Plain, ""),
            (Mechanism::Login, Some(response)) => {
                self.on_sasl_response(Exchange::LoginUser, response);
            }
            (Mechanism::Login, None) => self.challenge(Exchange::LoginUser, "Username:"),
            // The server speaks first in CRAM-MD5 (RFC 4954 §4).
            (Mechanism::CramMd5, Some(_)) => {
                self.protocol_error(shown(line), auth_texts::no_initial_response("CRAM-MD5"));
            }
            (Mechanism::CramMd5, None) => {
                let challenge = self.challenge.clone().unwrap_or_default();
                self.challenge(Exchange::CramMd5, &challenge);
            }
        }
    }

    /// Sends a 334 and waits for the response to it.
    fn challenge(&mut self, exchange: Exchange, text: &str) {
        self.reply(&auth_texts::sasl_challenge(&sasl::encode(text.as_bytes())));
        self.exchange = Some(exchange);
    }

    /// One client response of an AUTH exchange (the initial response included).
    pub(super) fn on_sasl_response(&mut self, exchange: Exchange, response: &[u8]) {
        let mechanism = match exchange {
            Exchange::Plain => Mechanism::Plain,
            Exchange::LoginUser | Exchange::LoginPassword(_) => Mechanism::Login,
            Exchange::CramMd5 => Mechanism::CramMd5,
        };
        if sasl::is_cancel(response) {
            return self.auth_refused(mechanism, auth_texts::auth_cancelled());
        }
        let result = match exchange {
            Exchange::Plain => {
                sasl::plain(response).map(|(login, secret)| (login, Credential::Plain(secret)))
            }
            Exchange::LoginUser => match sasl::login_user(response) {
                Ok(login) => return self.challenge(Exchange::LoginPassword(login), "Password:"),
                Err(reply) => Err(reply),
            },
            Exchange::LoginPassword(login) => {
                sasl::login_password(response).map(|secret| (login, Credential::Plain(secret)))
            }
            Exchange::CramMd5 => sasl::cram_md5(response).map(|(login, digest)| {
                let challenge = self.challenge.clone().unwrap_or_default();
                (login, Credential::CramMd5 { challenge, digest })
            }),
        };
        match result {
            Ok((login, credential)) => self.request(
                Action::Authenticate {
                    mechanism,
                    login,
                    credential,
                },
                Some(Waiting::Auth(mechanism)),
            ),
            Err(reply) => self.auth_refused(mechanism, reply),
        }
    }

    /// The answer to [`Action::Authenticate`]; ignored if none is pending.
    pub fn answer_auth(&mut self, verdict: AuthVerdict) {
        let Some(Waiting::Auth(mechanism)) =
            self.waiting.take_if(|w| matches!(w, Waiting::Auth(_)))
        else {
            return;
        };
        match verdict {
            AuthVerdict::Accepted => {
                self.authenticated = true;
                self.reply(&auth_texts::auth_ok());
            }
            AuthVerdict::Rejected => self.auth_refused(mechanism, auth_texts::auth_failed()),
            AuthVerdict::Temporary => self.refuse(
                format!("AUTH {}", mechanism.name()),
                auth_texts::auth_temporary(),
            ),
        }
    }

    pub(super) fn auth_line_too_long(&mut self) {
        self.refuse("AUTH ***".to_string(), auth_texts::auth_line_too_long());
        self.count_auth_failure();
    }

    /// An exchange that ended without an account still counts as a failure, so that
    /// AUTH and `*` cannot loop for ever.
    fn auth_refused(&mut self, mechanism: Mechanism, reply: Reply) {
        self.refuse(format!("AUTH {} ***", mechanism.name()), reply);
        self.count_auth_failure();
    }

    /// Too many failed exchanges close the connection, so that one connection cannot
    /// be used to guess passwords.
    fn count_auth_failure(&mut self) {
        self.auth_failures += 1;
        if self.auth_failures >= self.cfg.max_auth_failures {
            self.reply(&auth_texts::too_many_auth_failures());
            self.close();
        }
    }
}
