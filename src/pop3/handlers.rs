//! What each command does to the session, in the state RFC 1939 allows it.
//!
//! [`super::session`] cuts the input and calls [`Session::handle_line`] per command
//! line (or [`Session::on_sasl_response`] after an AUTH continuation); here the command
//! is parsed, checked against the state (AUTHORIZATION or TRANSACTION) and answered, or
//! turned into an [`Action`] for the shell.

use super::action::{Action, Credential};
use super::command::{self, Command};
use super::maildrop::Maildrop;
use super::reply::Reply;
use super::sasl;
use super::session::{Session, State, Waiting, shown};
use super::texts;
use crate::auth::Secret;

impl Session {
    pub(super) fn handle_line(&mut self, line: &[u8]) {
        let command = match command::parse(line) {
            Ok(command) => command,
            Err(reply) => return self.protocol_error(shown(line), reply),
        };
        let authenticated = self.is_authenticated();
        if command.needs_transaction() && !authenticated {
            return self.protocol_error(shown(line), texts::authenticate_first());
        }
        if command.needs_authorization() && authenticated {
            return self.protocol_error(shown(line), texts::already_authenticated());
        }
        match command {
            Command::Capa => {
                let capabilities = texts::capabilities(self.capabilities());
                self.reply(&capabilities);
            }
            // RFC 1939 has NOOP only in TRANSACTION; qmail-popup allows it before.
            Command::Noop => self.reply(&texts::ok()),
            Command::Quit => self.on_quit(),
            Command::User(name) => self.on_user(line, name),
            Command::Pass(password) => self.on_pass(line, password),
            Command::Apop { name, digest } => self.on_apop(line, name, digest),
            Command::Auth { mechanism, initial } => self.on_auth(line, mechanism, initial),
            Command::Stls => self.on_stls(line),
            other => self.on_transaction(line, other),
        }
    }

    /// RFC 2449 capabilities; the login ones only before login, and only those that
    /// may be used on this connection now.
    fn capabilities(&self) -> Vec<String> {
        let mut caps = vec!["TOP".to_string(), "UIDL".to_string()];
        if !self.is_authenticated() && self.plaintext_ok() {
            caps.push("USER".to_string());
            caps.push("SASL PLAIN".to_string());
        }
        caps.extend(
            ["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
                .iter()
                .map(|s| s.to_string()),
        );
        if !self.is_authenticated() && self.cfg.stls_available && !self.is_tls() {
            caps.push("STLS".to_string());
        }
        caps.push("EXPIRE NEVER".to_string());
        if !self.cfg.implementation.is_empty() {
            caps.push(format!("IMPLEMENTATION {}", self.cfg.implementation));
        }
        caps
    }

    fn on_quit(&mut self) {
        match &self.state {
            State::Authorization { .. } => {
                self.reply(&texts::logging_out());
                self.close();
            }
            State::Transaction(maildrop) => {
                let (delete, seen) = maildrop.update_lists();
                self.request(Action::Update { delete, seen }, Waiting::Update);
            }
        }
    }

    fn on_user(&mut self, line: &[u8], name: Vec<u8>) {
        if !self.plaintext_ok() {
            return self.protocol_error(shown(line), texts::plaintext_disallowed());
        }
        self.state = State::Authorization { user: Some(name) };
        self.reply(&texts::user_ok());
    }

    fn on_pass(&mut self, line: &[u8], password: Secret) {
        if !self.plaintext_ok() {
            return self.protocol_error(shown(line), texts::plaintext_disallowed());
        }
        // The name stays for another PASS after a failure (RFC 1939 §7 lets the
        // client retry either way).
        let State::Authorization { user: Some(login) } = &self.state else {
            return self.protocol_error(shown(line), texts::user_first());
        };
        let action = Action::Authenticate {
            login: login.clone(),
            credential: Credential::Pass(password),
        };
        self.request(action, Waiting::Auth);
    }

    fn on_apop(&mut self, line: &[u8], name: Vec<u8>, digest: String) {
        let Some(timestamp) = self.conn.apop_timestamp.clone() else {
            return self.protocol_error(shown(line), texts::apop_unavailable());
        };
        self.state = State::Authorization { user: None };
        let action = Action::Authenticate {
            login: name,
            credential: Credential::Apop { timestamp, digest },
        };
        self.request(action, Waiting::Auth);
    }

    fn on_auth(&mut self, line: &[u8], mechanism: Option<Vec<u8>>, initial: Option<Secret>) {
        let Some(mechanism) = mechanism else {
            let list = if self.plaintext_ok() {
                vec!["PLAIN".to_string()]
            } else {
                Vec::new()
            };
            return self.reply(&texts::mechanisms(list));
        };
        if mechanism != b"PLAIN" {
            return self.protocol_error(shown(line), texts::unsupported_mechanism());
        }
        if !self.plaintext_ok() {
            return self.protocol_error(shown(line), texts::plaintext_disallowed());
        }
        self.state = State::Authorization { user: None };
        match initial {
            Some(response) => self.on_plain(response.expose()),
            None => {
                self.reply(&texts::sasl_continue());
                self.sasl_pending = true;
            }
        }
    }

    /// The line after "+ ": the PLAIN response, or `*` to cancel.
    pub(super) fn on_sasl_response(&mut self, line: &[u8]) {
        if sasl::is_cancel(line) {
            // Counted, so that AUTH and "*" cannot loop for ever.
            return self.protocol_error("AUTH PLAIN *".to_string(), texts::auth_cancelled());
        }
        self.on_plain(line);
    }

    fn on_plain(&mut self, response: &[u8]) {
        match sasl::decode_plain(response) {
            Ok((login, password)) => {
                let action = Action::Authenticate {
                    login,
                    credential: Credential::Plain(password),
                };
                self.request(action, Waiting::Auth);
            }
            Err(reply) => {
                self.refuse("AUTH PLAIN ***".to_string(), reply);
                self.count_auth_failure();
            }
        }
    }

    fn on_stls(&mut self, line: &[u8]) {
        if self.is_tls() {
            return self.protocol_error(shown(line), texts::tls_active());
        }
        if !self.cfg.stls_available {
            return self.protocol_error(shown(line), texts::stls_unavailable());
        }
        self.reply(&texts::begin_tls());
        // RFC 2595 §4 / CVE-2011-0411: nothing pipelined after STLS may be read as a
        // command inside TLS.
        self.discard_input();
        self.request(Action::StartTls, Waiting::Tls);
    }

    fn on_transaction(&mut self, line: &[u8], command: Command) {
        let State::Transaction(maildrop) = &mut self.state else {
            return self.protocol_error(shown(line), texts::authenticate_first());
        };
        let outcome = transaction(maildrop, command);
        match outcome {
            Ok(Outcome::Reply(reply)) => self.reply(&reply),
            Ok(Outcome::Retrieve {
                index,
                max_body_lines,
            }) => self.request(
                Action::Retrieve {
                    index,
                    max_body_lines,
                },
                Waiting::Retrieve {
                    index,
                    max_body_lines,
                },
            ),
            // Message-number errors are ordinary (clients probe with UIDL n): not
            // counted as bad commands.
            Err(reply) => self.refuse(shown(line), reply),
        }
    }
}

/// What a TRANSACTION command leads to.
enum Outcome {
    Reply(Reply),
    Retrieve {
        index: usize,
        max_body_lines: Option<u64>,
    },
}

fn transaction(maildrop: &mut Maildrop, command: Command) -> Result<Outcome, Reply> {
    let reply = match command {
        Command::Stat => {
            let (count, octets) = maildrop.stat();
            texts::stat(count, octets)
        }
        Command::List(None) => {
            let (count, octets) = maildrop.stat();
            texts::list(count, octets, maildrop.list_lines())
        }
        Command::List(Some(n)) => {
            let index = maildrop.find(n)?;
            texts::scan_line(index + 1, &maildrop.size(index).to_string())
        }
        Command::Uidl(None) => texts::uidl(maildrop.uidl_lines()),
        Command::Uidl(Some(n)) => {
            let index = maildrop.find(n)?;
            texts::scan_line(index + 1, maildrop.uidl(index))
        }
        Command::Retr(n) => {
            return Ok(Outcome::Retrieve {
                index: maildrop.find(n)?,
                max_body_lines: None,
            });
        }
        Command::Top(n, lines) => {
            return Ok(Outcome::Retrieve {
                index: maildrop.find(n)?,
                max_body_lines: Some(lines),
            });
        }
        Command::Dele(n) => {
            let index = maildrop.find(n)?;
            maildrop.delete(index);
            texts::deleted(index + 1)
        }
        Command::Rset => {
            maildrop.reset();
            let (count, octets) = maildrop.stat();
            texts::rset(count, octets)
        }
        Command::Last => texts::last(maildrop.last()),
        // Dispatched by `handle_line` before coming here.
        _ => texts::unknown_command(),
    };
    Ok(Outcome::Reply(reply))
}
