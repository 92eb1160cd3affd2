//! AUTH (RFC 4954) in the SMTP session: PLAIN and LOGIN (under TLS, or without it when
//! the configuration allows plaintext), CRAM-MD5 when the shell gave a challenge. The
//! SASL messages are taken apart by the same code as on the ODMR port
//! ([`crate::auth::sasl`]), and the shell checks them with the same engine.
//!
//! AUTH only tells the shell which account is asking: ETRN uses it for sites whose
//! policy wants it, and the shell lets the account relay on the submission ports (on
//! port 25 only with `[smtp] auth_relay`). The session itself checks recipients the
//! same way with or without it; with `SessionConfig::auth_required` (submission) MAIL
//! waits for it.

use super::action::Action;
use super::reply::Reply;
use super::session::{Session, Waiting, shown};
use super::texts;
use crate::auth::sasl::{self, Exchange, Step};
use crate::auth::texts as auth_texts;
use crate::auth::{AuthVerdict, Mechanism};

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
        match mechanism {
            Mechanism::CramMd5 if self.challenge.is_none() => {
                return self.protocol_error(shown(line), auth_texts::unknown_mechanism());
            }
            Mechanism::Plain | Mechanism::Login if !self.plaintext_ok() => {
                return self.protocol_error(shown(line), auth_texts::encryption_required());
            }
            _ => {}
        }
        let challenge = self.challenge.clone().unwrap_or_default();
        match Exchange::start(mechanism, initial, &challenge) {
            Ok(step) => self.sasl_step(mechanism, step),
            Err(reply) => self.protocol_error(shown(line), reply),
        }
    }

    /// One client response of an AUTH exchange.
    pub(super) fn on_sasl_response(&mut self, exchange: Exchange, response: &[u8]) {
        let mechanism = exchange.mechanism();
        let challenge = self.challenge.clone().unwrap_or_default();
        let step = exchange.respond(response, &challenge);
        self.sasl_step(mechanism, step);
    }

    fn sasl_step(&mut self, mechanism: Mechanism, step: Step) {
        match step {
            Step::Challenge(exchange, text) => {
                self.reply(&auth_texts::sasl_challenge(&sasl::encode(text.as_bytes())));
                self.exchange = Some(exchange);
            }
            Step::Check { login, credential } => self.request(
                Action::Authenticate {
                    mechanism,
                    login,
                    credential,
                },
                Some(Waiting::Auth(mechanism)),
            ),
            Step::Refused(reply) => self.auth_refused(mechanism, reply),
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
