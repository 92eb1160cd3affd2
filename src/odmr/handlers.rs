//! What each command does to the session, in the order RFC 2645 allows them.
//!
//! [`super::session`] cuts the input and calls [`Session::handle_line`] per command
//! line, or [`Session::on_sasl_response`] while an AUTH exchange runs; here the line is
//! parsed, checked against the state (EHLO before AUTH, AUTH before ATRN, one AUTH per
//! session) and answered, or turned into an [`Action`] for the shell.
//!
//! HELO is answered (RFC 5321 §4.1.1.1 wants every server to take it) but, as it opens
//! no extensions, AUTH after it gets 503 "Send EHLO first"; ATRN then gets 530, since
//! RFC 2645 §5.2.1 allows ATRN only after a successful AUTH. A client that wants ODMR
//! must use EHLO, as §5.1.1 requires. A later EHLO or HELO does not undo an AUTH; only
//! STARTTLS does (RFC 3207 §4.2).

use crate::smtp::Reply;

use super::action::{Action, Mechanism};
use super::command::{self, Command};
use super::session::{Greeted, Session, Waiting, shown};
use super::texts;
use crate::auth::sasl::{self, Exchange, Step};

impl Session {
    pub(super) fn handle_line(&mut self, line: &[u8]) {
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(reply) => return self.protocol_error(shown(line), reply),
        };
        match command {
            Command::Helo { extended } => self.on_helo(extended),
            Command::Auth { mechanism, initial } => {
                self.on_auth(line, mechanism, initial.as_ref().map(|i| i.expose()));
            }
            Command::Atrn { domains } => {
                if !self.authenticated {
                    return self.protocol_error(shown(line), texts::auth_required());
                }
                match domains {
                    Ok(domains) => self.request(Action::Atrn { domains }, Waiting::Atrn),
                    Err(reply) => self.protocol_error(shown(line), reply),
                }
            }
            Command::StartTls => self.on_starttls(line),
            Command::Rset | Command::Noop => self.reply(&texts::ok()),
            Command::Quit => {
                self.reply(&texts::bye());
                self.close();
            }
            Command::NotImplemented => self.protocol_error(shown(line), texts::not_implemented()),
        }
    }

    fn on_helo(&mut self, extended: bool) {
        let host = &self.cfg.hostname;
        let reply = if extended {
            texts::ehlo(host, &self.extensions())
        } else {
            texts::helo(host)
        };
        self.greeted = if extended {
            Greeted::Ehlo
        } else {
            Greeted::Helo
        };
        self.reply(&reply);
    }

    /// RFC 2645 §5.1.1: AUTH and ATRN must be listed. PIPELINING is not offered, so
    /// clients wait for each reply.
    fn extensions(&self) -> Vec<String> {
        let mut keywords = Vec::with_capacity(4);
        keywords.push(if self.plaintext_ok() {
            "AUTH PLAIN LOGIN CRAM-MD5".to_string()
        } else {
            "AUTH CRAM-MD5".to_string()
        });
        if self.cfg.starttls && !self.is_tls() {
            keywords.push("STARTTLS".to_string());
        }
        keywords.push("ENHANCEDSTATUSCODES".to_string());
        keywords.push("ATRN".to_string());
        keywords
    }

    fn on_auth(&mut self, line: &[u8], mechanism: Option<Mechanism>, initial: Option<&[u8]>) {
        if self.greeted != Greeted::Ehlo {
            return self.protocol_error(shown(line), texts::need_ehlo());
        }
        if self.authenticated {
            return self.protocol_error(shown(line), texts::already_authenticated());
        }
        let Some(mechanism) = mechanism else {
            return self.protocol_error(shown(line), texts::unknown_mechanism());
        };
        if mechanism != Mechanism::CramMd5 && !self.plaintext_ok() {
            return self.protocol_error(shown(line), texts::encryption_required());
        }
        let step = Exchange::start(mechanism, initial, &self.conn.challenge);
        match step {
            Ok(step) => self.sasl_step(mechanism, step),
            Err(reply) => self.protocol_error(shown(line), reply),
        }
    }

    /// One client response of an AUTH exchange.
    pub(super) fn on_sasl_response(&mut self, exchange: Exchange, response: &[u8]) {
        let mechanism = exchange.mechanism();
        let step = exchange.respond(response, &self.conn.challenge);
        self.sasl_step(mechanism, step);
    }

    fn sasl_step(&mut self, mechanism: Mechanism, step: Step) {
        match step {
            Step::Challenge(exchange, text) => {
                self.reply(&texts::sasl_challenge(&sasl::encode(text.as_bytes())));
                self.exchange = Some(exchange);
            }
            Step::Check { login, credential } => self.request(
                Action::Authenticate {
                    mechanism,
                    login,
                    credential,
                },
                Waiting::Auth(mechanism),
            ),
            Step::Refused(reply) => self.auth_refused(mechanism, reply),
        }
    }

    /// An exchange that ended without reaching the engine still counts as a failure,
    /// so that AUTH and `*` cannot loop for ever.
    fn auth_refused(&mut self, mechanism: Mechanism, reply: Reply) {
        self.refuse(format!("AUTH {} ***", mechanism.name()), reply);
        self.count_auth_failure();
    }

    fn on_starttls(&mut self, line: &[u8]) {
        if !self.cfg.starttls {
            return self.protocol_error(shown(line), texts::not_implemented());
        }
        if self.is_tls() {
            return self.protocol_error(shown(line), texts::tls_already_active());
        }
        self.reply(&texts::ready_for_tls());
        // Anything sent after STARTTLS in clear text is an injection attempt
        // (CVE-2011-0411 and friends): it must not be read as commands under TLS.
        self.discard_input();
        self.request(Action::StartTls, Waiting::Tls);
    }
}
