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

use super::action::{Action, Credential, Mechanism};
use super::command::{self, Command};
use super::sasl;
use super::session::{Exchange, Greeted, Session, Waiting, shown};
use super::texts;

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
        match (mechanism, initial) {
            (Mechanism::Plain, Some(response)) => self.on_sasl_response(Exchange::Plain, response),
            (Mechanism::Plain, None) => self.challenge(Exchange::Plain, ""),
            (Mechanism::Login, Some(response)) => {
                self.on_sasl_response(Exchange::LoginUser, response);
            }
            (Mechanism::Login, None) => self.challenge(Exchange::LoginUser, "Username:"),
            // The server speaks first in CRAM-MD5 (RFC 4954 §4).
            (Mechanism::CramMd5, Some(_)) => {
                self.protocol_error(shown(line), texts::no_initial_response("CRAM-MD5"));
            }
            (Mechanism::CramMd5, None) => {
                let challenge = self.conn.challenge.clone();
                self.challenge(Exchange::CramMd5, &challenge);
            }
        }
    }

    /// Sends a 334 and waits for the response to it.
    fn challenge(&mut self, exchange: Exchange, text: &str) {
        self.reply(&texts::sasl_challenge(&sasl::encode(text.as_bytes())));
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
            return self.auth_refused(mechanism, texts::auth_cancelled());
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
                let challenge = self.conn.challenge.clone();
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
                Waiting::Auth(mechanism),
            ),
            Err(reply) => self.auth_refused(mechanism, reply),
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
