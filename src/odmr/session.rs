//! The server session: input framing, pausing for answers, and the session's state.
//!
//! This file owns the byte stream: it cuts lines (bounded by `max_command_line`,
//! discarding the rest of an over-long line), routes each one to the command handlers
//! or, during an AUTH exchange, to the SASL step, pauses while an [`Action`] waits for
//! its answer, and keeps buffered input within `max_command_line + max_pipelined`.
//! Processed input is wiped, since AUTH lines carry passwords. What each command does
//! is in [`super::handlers`]. The session is sans-IO: see [`super`] for the loop.

use crate::auth::sasl::Exchange;
use std::collections::VecDeque;
use std::sync::Arc;

use crate::line_input::{LineInput, Next};
use crate::smtp::Reply;

use super::action::{Action, AtrnVerdict, AuthVerdict, Mechanism};
use super::config::{Connection, OdmrConfig};
use super::texts;

/// How much of a refused command line goes into [`Action::Refused`].
const LOGGED_COMMAND: usize = 100;

/// An ODMR server session (RFC 2645 initial and authenticated states; the reversed
/// state belongs to the flush client). See the module documentation of [`super`].
#[derive(Debug)]
pub struct Session {
    pub(super) cfg: Arc<OdmrConfig>,
    pub(super) conn: Connection,
    input: LineInput,
    output: Vec<u8>,
    actions: VecDeque<Action>,
    /// An AUTH exchange is under way: the next line is a SASL response.
    pub(super) exchange: Option<Exchange>,
    pub(super) waiting: Option<Waiting>,
    pub(super) greeted: Greeted,
    pub(super) authenticated: bool,
    auth_failures: usize,
    bad_commands: usize,
    closed: bool,
    reversed: bool,
}

/// What the client said first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Greeted {
    Not,
    /// HELO: no extensions, so no AUTH and hence no ATRN (RFC 5321 §4.1.1.1).
    Helo,
    Ehlo,
}

/// An action handed out whose answer has not come yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    Auth(Mechanism),
    Atrn,
    Tls,
}

impl Session {
    /// A new session; the greeting is already in the output.
    pub fn new(cfg: Arc<OdmrConfig>, conn: Connection) -> Session {
        let greeting = texts::greeting(&cfg.hostname);
        let input = LineInput::new(cfg.max_command_line, cfg.max_pipelined);
        let mut session = Session {
            cfg,
            conn,
            input,
            output: Vec::new(),
            actions: VecDeque::new(),
            exchange: None,
            waiting: None,
            greeted: Greeted::Not,
            authenticated: false,
            auth_failures: 0,
            bad_commands: 0,
            closed: false,
            reversed: false,
        };
        session.reply(&greeting);
        session
    }

    /// Most bytes [`Session::receive`] takes now; 0 once closed or reversed.
    pub fn input_room(&self) -> usize {
        if self.is_closed() {
            return 0;
        }
        self.input.room()
    }

    /// Buffers client bytes and returns how many were taken (at most
    /// [`Session::input_room`]); offer the rest again after the next `next_action`.
    /// Bytes arriving after the session closed or while TLS is being started are
    /// dropped (and counted as taken): they must never be read as commands. After
    /// [`Action::Reverse`] nothing is taken: the bytes are the flush client's.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        if self.reversed {
            return 0;
        }
        if self.closed || self.waiting == Some(Waiting::Tls) {
            return bytes.len();
        }
        self.input.receive(bytes)
    }

    /// Processes buffered input until something needs the shell. `None` means: more
    /// input is needed, or an answer is pending, or the session is closed or reversed.
    pub fn next_action(&mut self) -> Option<Action> {
        loop {
            if let Some(action) = self.actions.pop_front() {
                return Some(action);
            }
            if self.is_closed() || self.waiting.is_some() || !self.step() {
                self.input.compact();
                return None;
            }
        }
    }

    /// Reply bytes to write now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The answer to [`Action::Authenticate`]; ignored if none is pending.
    pub fn answer_auth(&mut self, verdict: AuthVerdict) {
        let Some(Waiting::Auth(mechanism)) =
            self.waiting.take_if(|w| matches!(w, Waiting::Auth(_)))
        else {
            return;
        };
        let command = format!("AUTH {}", mechanism.name());
        match verdict {
            AuthVerdict::Accepted => {
                self.authenticated = true;
                self.reply(&texts::auth_ok());
            }
            AuthVerdict::Rejected => {
                self.refuse(command, texts::auth_failed());
                self.count_auth_failure();
            }
            AuthVerdict::Temporary => self.refuse(command, texts::auth_temporary()),
        }
    }

    /// The answer to [`Action::Atrn`]; ignored if none is pending. On
    /// [`AtrnVerdict::Turn`] the 250 goes out, then [`Action::Reverse`].
    pub fn answer_atrn(&mut self, verdict: AtrnVerdict) {
        if self.waiting.take_if(|w| *w == Waiting::Atrn).is_none() {
            return;
        }
        let reply = match verdict {
            AtrnVerdict::Turn => {
                self.reply(&texts::reversing());
                // Nothing the client sent before our 250 can be its greeting (it
                // must wait for the 250), so none of it is handed over.
                self.discard_input();
                self.reversed = true;
                self.exchange = None;
                self.actions.push_back(Action::Reverse);
                return;
            }
            AtrnVerdict::NotEntitled => texts::not_entitled(),
            AtrnVerdict::Temporary => texts::atrn_temporary(),
            AtrnVerdict::NoMail => texts::no_mail(),
            AtrnVerdict::RateLimited => texts::rate_limited(),
        };
        self.refuse("ATRN".to_string(), reply);
    }

    /// The TLS handshake after [`Action::StartTls`] succeeded. RFC 3207 §4.2: forget
    /// everything learnt from the client before, EHLO and AUTH included; the
    /// greeting is not repeated.
    pub fn tls_started(&mut self) {
        if self.waiting.take_if(|w| *w == Waiting::Tls).is_none() {
            return;
        }
        self.conn.tls_active = true;
        self.greeted = Greeted::Not;
        self.authenticated = false;
        self.exchange = None;
        self.input.reset();
    }

    /// The client was idle too long: 421, then [`Action::Close`].
    pub fn timeout(&mut self) {
        if !self.is_closed() {
            self.reply(&texts::idle_timeout());
            self.close();
        }
    }

    /// No more input is read by the session: it closed, or it handed the connection
    /// over with [`Action::Reverse`]. Output may still need writing.
    pub fn is_closed(&self) -> bool {
        self.closed || self.reversed
    }

    /// [`Action::Reverse`] was handed out: the connection is the flush client's.
    pub fn is_reversed(&self) -> bool {
        self.reversed
    }

    /// TLS is active on this connection.
    pub fn is_tls(&self) -> bool {
        self.conn.tls_active
    }

    /// An AUTH succeeded (and no STARTTLS came after it).
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// What the session is in the middle of reading, for the deadlines: part of a
    /// command line, or nothing.
    pub fn phase(&self) -> crate::policy::deadline::Phase {
        use crate::policy::deadline::Phase;
        if self.input.mid_line() {
            Phase::Line
        } else {
            Phase::Idle
        }
    }

    /// Bytes of client input held, for checking that memory stays bounded.
    pub fn buffered(&self) -> usize {
        self.input.held()
    }

    /// PLAIN and LOGIN may be used (and are advertised) now.
    pub(super) fn plaintext_ok(&self) -> bool {
        self.cfg.plaintext_auth || self.conn.tls_active
    }

    /// Drops all buffered input, wiping it: it may hold a password.
    pub(super) fn discard_input(&mut self) {
        self.input.discard();
    }

    /// Makes progress on buffered input; false when more input is needed.
    fn step(&mut self) -> bool {
        match self.input.next_line() {
            Next::Line(line) => {
                match self.exchange.take() {
                    Some(exchange) => self.on_sasl_response(exchange, line.expose()),
                    None => self.handle_line(line.expose()),
                }
                true
            }
            Next::TooLong => {
                self.line_too_long();
                true
            }
            Next::More => false,
        }
    }

    /// RFC 4954 §4 has its own code for an over-long line inside an exchange, which
    /// also ends the exchange.
    fn line_too_long(&mut self) {
        match self.exchange.take() {
            Some(_) => {
                self.refuse("AUTH ***".to_string(), texts::auth_line_too_long());
                self.count_auth_failure();
            }
            None => self.protocol_error("(line too long)".to_string(), texts::line_too_long()),
        }
    }

    /// Queues a reply.
    pub(super) fn reply(&mut self, reply: &Reply) {
        reply.write_to(&mut self.output);
    }

    /// Queues a refusal and its log action.
    pub(super) fn refuse(&mut self, command: String, reply: Reply) {
        self.reply(&reply);
        self.actions.push_back(Action::Refused { command, reply });
    }

    /// A refusal that counts towards the bad command limit.
    pub(super) fn protocol_error(&mut self, command: String, reply: Reply) {
        self.refuse(command, reply);
        self.bad_commands += 1;
        if self.bad_commands >= self.cfg.max_bad_commands {
            self.reply(&texts::too_many_errors());
            self.close();
        }
    }

    /// A failed AUTH exchange, after its reply; too many close the connection, so
    /// one connection cannot be used to guess passwords.
    pub(super) fn count_auth_failure(&mut self) {
        self.auth_failures += 1;
        if self.auth_failures >= self.cfg.max_auth_failures {
            self.reply(&texts::too_many_auth_failures());
            self.close();
        }
    }

    /// Hands an action out and pauses the session until its answer.
    pub(super) fn request(&mut self, action: Action, waiting: Waiting) {
        self.actions.push_back(action);
        self.waiting = Some(waiting);
    }

    pub(super) fn close(&mut self) {
        self.closed = true;
        self.waiting = None;
        self.exchange = None;
        self.discard_input();
        self.actions.push_back(Action::Close);
    }
}

/// A command line made printable and short for [`Action::Refused`]; an AUTH line
/// keeps only its mechanism, since the rest may be a password.
pub(super) fn shown(line: &[u8]) -> String {
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let is_auth = words
        .next()
        .is_some_and(|verb| verb.eq_ignore_ascii_case(b"AUTH"));
    if !is_auth {
        return printable(line, LOGGED_COMMAND);
    }
    let mechanism = words.next().map(|m| printable(m, 20));
    let more = words.next().is_some();
    match (mechanism, more) {
        (Some(m), true) => format!("AUTH {m} ***"),
        (Some(m), false) => format!("AUTH {m}"),
        (None, _) => "AUTH".to_string(),
    }
}

/// Printable ASCII rendering of client bytes, cut at `max`.
fn printable(bytes: &[u8], max: usize) -> String {
    let mut text: String = bytes
        .iter()
        .take(max)
        .map(|&b| match b {
            0x20..=0x7e => char::from(b),
            _ => '?',
        })
        .collect();
    if bytes.len() > max {
        text.push_str("...");
    }
    text
}
