//! The server session: input framing, pausing for answers, and the session's state.
//!
//! This file owns the byte stream: it cuts command lines (bounded by `max_line`,
//! discarding the rest of an over-long line), keeps buffered pipelined input within
//! `max_line + max_pipelined`, pauses while an [`Action`] waits for its answer, and
//! asks the shell to flush when replies pile up. What each command does is in
//! [`super::handlers`]. The session is sans-IO: see [`super`] for how a shell drives it.

use std::collections::VecDeque;
use std::sync::Arc;

use super::action::{Action, AuthVerdict, MaildropError, MessageInfo, RetrieveError, UpdateReport};
use super::command;
use super::config::{Connection, Pop3Config};
use super::encode::RetrEncoder;
use super::maildrop::Maildrop;
use super::reply::Reply;
use super::texts;
use crate::line_input::{LineInput, Next};

/// Output beyond which pipelined commands wait for the shell to write ([`Action::Flush`]),
/// so a client that sends many LISTs without reading cannot grow our memory.
const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// A POP3 server session. See the module documentation of [`super`].
#[derive(Debug)]
pub struct Session {
    pub(super) cfg: Arc<Pop3Config>,
    pub(super) conn: Connection,
    input: LineInput,
    output: Vec<u8>,
    actions: VecDeque<Action>,
    /// AUTH PLAIN sent "+ ": the next line is the client's response.
    pub(super) sasl_pending: bool,
    pub(super) waiting: Option<Waiting>,
    pub(super) state: State,
    auth_failures: usize,
    bad_commands: usize,
    closed: bool,
}

/// RFC 1939's states; UPDATE is [`Waiting::Update`] followed by the close.
#[derive(Debug)]
pub(super) enum State {
    /// `user` is the name given by USER, waiting for PASS.
    Authorization {
        user: Option<Vec<u8>>,
    },
    Transaction(Maildrop),
}

/// An action handed out whose answer has not come yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    Auth,
    Maildrop,
    /// Waiting for the message to be opened.
    Retrieve {
        index: usize,
        max_body_lines: Option<u64>,
    },
    /// The status line is out; the shell is streaming the message.
    Streaming,
    Update,
    Tls,
}

impl Session {
    /// A new session; the greeting is already in the output.
    pub fn new(cfg: Arc<Pop3Config>, conn: Connection) -> Session {
        let greeting = texts::greeting(&cfg.hostname, conn.apop_timestamp.as_deref());
        let input = LineInput::new(cfg.max_line, cfg.max_pipelined);
        let mut session = Session {
            cfg,
            conn,
            input,
            output: Vec::new(),
            actions: VecDeque::new(),
            sasl_pending: false,
            waiting: None,
            state: State::Authorization { user: None },
            auth_failures: 0,
            bad_commands: 0,
            closed: false,
        };
        session.reply(&greeting);
        session
    }

    /// Most bytes [`Session::receive`] takes now.
    pub fn input_room(&self) -> usize {
        self.input.room()
    }

    /// Buffers client bytes and returns how many were taken (at most
    /// [`Session::input_room`]); offer the rest again after the next `next_action`.
    /// Bytes arriving after the session closed or while TLS is being started are
    /// dropped (and counted as taken): they must never be read as commands.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        if self.closed || self.waiting == Some(Waiting::Tls) {
            return bytes.len();
        }
        self.input.receive(bytes)
    }

    /// Processes buffered input until something needs the shell. `None` means: more
    /// input is needed, or an answer is pending, or the session is closed.
    pub fn next_action(&mut self) -> Option<Action> {
        loop {
            if let Some(action) = self.actions.pop_front() {
                return Some(action);
            }
            if self.closed || self.waiting.is_some() {
                self.input.compact();
                return None;
            }
            if self.output.len() >= OUTPUT_HIGH_WATER && self.input.has_unread() {
                return Some(Action::Flush);
            }
            if !self.step() {
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
        if self.waiting.take_if(|w| *w == Waiting::Auth).is_none() {
            return;
        }
        match verdict {
            AuthVerdict::Accepted => self.request(Action::OpenMaildrop, Waiting::Maildrop),
            AuthVerdict::Rejected => {
                self.reply(&texts::auth_failed());
                self.count_auth_failure();
            }
            AuthVerdict::Temporary(text) => self.reply(&texts::temporary(&text)),
        }
    }

    /// The answer to [`Action::OpenMaildrop`]: the messages in order, or why not.
    /// On an error the session stays in the AUTHORIZATION state. Ignored if no
    /// maildrop is pending.
    pub fn answer_maildrop(&mut self, result: Result<Vec<MessageInfo>, MaildropError>) {
        if self.waiting.take_if(|w| *w == Waiting::Maildrop).is_none() {
            return;
        }
        let reply = match result {
            Ok(list) => {
                let maildrop = Maildrop::new(list);
                let (count, octets) = maildrop.stat();
                self.state = State::Transaction(maildrop);
                texts::logged_in(count, octets)
            }
            Err(error) => {
                self.state = State::Authorization { user: None };
                match error {
                    MaildropError::InUse => texts::in_use(),
                    MaildropError::Temporary(text) => texts::temporary(&text),
                    MaildropError::Permanent(text) => texts::permanent(&text),
                }
            }
        };
        self.reply(&reply);
    }

    /// The message of [`Action::Retrieve`] is open: the status line goes into the
    /// output, and the returned encoder turns the file into the rest of the response.
    /// Write `take_output()` first, then the encoded message, then call
    /// [`Session::retrieve_done`]. `None` if no retrieval is pending.
    pub fn retrieve_opened(&mut self) -> Option<RetrEncoder> {
        let Some(Waiting::Retrieve {
            index,
            max_body_lines,
        }) = self.waiting
        else {
            return None;
        };
        let reply = match (&self.state, max_body_lines) {
            (State::Transaction(maildrop), None) => texts::retr(maildrop.size(index)),
            _ => texts::top(),
        };
        self.reply(&reply);
        self.waiting = Some(Waiting::Streaming);
        Some(RetrEncoder::new(
            max_body_lines,
            self.cfg.compat_extra_blank_line,
        ))
    }

    /// The message of [`Action::Retrieve`] could not be opened: `-ERR`, and the
    /// session goes on. Ignored if no retrieval is pending.
    pub fn retrieve_failed(&mut self, error: RetrieveError) {
        if !matches!(self.waiting, Some(Waiting::Retrieve { .. })) {
            return;
        }
        self.waiting = None;
        self.reply(&match error {
            RetrieveError::Gone => texts::message_gone(),
            RetrieveError::Unreadable => texts::cannot_open(),
        });
    }

    /// The encoded message, terminator included, has been written.
    pub fn retrieve_done(&mut self) {
        self.waiting.take_if(|w| *w == Waiting::Streaming);
    }

    /// The outcome of [`Action::Update`]: the last reply, then [`Action::Close`].
    pub fn answer_update(&mut self, report: UpdateReport) {
        if self.waiting.take_if(|w| *w == Waiting::Update).is_none() {
            return;
        }
        self.reply(&if report.not_removed == 0 {
            texts::logging_out()
        } else {
            texts::not_all_removed()
        });
        self.close();
    }

    /// The TLS handshake after [`Action::StartTls`] succeeded. RFC 2595 §4: forget
    /// what the client said before (a USER name); the greeting is not repeated.
    pub fn tls_started(&mut self) {
        if self.waiting.take_if(|w| *w == Waiting::Tls).is_none() {
            return;
        }
        self.conn.tls_active = true;
        self.state = State::Authorization { user: None };
        self.sasl_pending = false;
        self.input.reset();
    }

    /// The client was idle too long: `-ERR`, then [`Action::Close`]. Like a dropped
    /// connection, this never enters UPDATE (RFC 1939 §3).
    pub fn timeout(&mut self) {
        if !self.closed {
            self.reply(&texts::idle_timeout());
            self.close();
        }
    }

    /// No more input is read; output may still need writing.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// TLS is active on this connection.
    pub fn is_tls(&self) -> bool {
        self.conn.tls_active
    }

    /// The session is in the TRANSACTION state.
    pub fn is_authenticated(&self) -> bool {
        matches!(self.state, State::Transaction(_))
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

    /// Bytes of client input held (for checking that memory stays bounded).
    pub fn buffered(&self) -> usize {
        self.input.held()
    }

    /// USER/PASS and AUTH PLAIN may be used now.
    pub(super) fn plaintext_ok(&self) -> bool {
        self.cfg.plaintext_allowed || self.conn.tls_active || self.conn.loopback
    }

    /// Drops all buffered input, wiping it: it may hold a password.
    pub(super) fn discard_input(&mut self) {
        self.input.discard();
    }

    /// Makes progress on buffered input; false when more input is needed.
    fn step(&mut self) -> bool {
        match self.input.next_line() {
            Next::Line(line) => {
                if std::mem::take(&mut self.sasl_pending) {
                    self.on_sasl_response(line.expose());
                } else {
                    self.handle_line(line.expose());
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

    fn line_too_long(&mut self) {
        self.sasl_pending = false;
        self.protocol_error("(line too long)".to_string(), texts::line_too_long());
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
            self.close();
        }
    }

    /// A failed authentication, after its reply; too many close the connection.
    pub(super) fn count_auth_failure(&mut self) {
        self.auth_failures += 1;
        if self.auth_failures >= self.cfg.max_auth_failures {
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
        self.sasl_pending = false;
        self.discard_input();
        self.actions.push_back(Action::Close);
    }
}

/// A command line made printable for [`Action::Refused`], secrets hidden.
pub(super) fn shown(line: &[u8]) -> String {
    command::shown(line)
}
