//! The server session: input framing, pausing for answers, and the session's state.
//!
//! This file owns the byte stream: it cuts command lines (bounded by the command line
//! limit, discarding the rest of an over-long line), streams DATA and BDAT bytes into
//! the message decoders, pauses while an [`Action`] waits for its answer, and keeps the
//! buffered input within a fixed bound. What each command does is in
//! [`super::handlers`]. The session is sans-IO: see [`super`] for how a shell drives it.

use std::collections::VecDeque;
use std::sync::Arc;

use super::action::{Action, MessageVerdict, RcptVerdict};
use super::chunk::ChunkDecoder;
use super::config::SessionConfig;
use super::dot::DotDecoder;
use super::message::MessageBuilder;
use super::reply::{Reply, printable};
use super::texts;
use crate::auth::sasl::Exchange;
use crate::auth::{Secret, wipe};

/// Input buffered beyond one command line. The shell reads at most
/// [`Session::input_room`] bytes at a time, so this bounds each read as well.
const INPUT_SLACK: usize = 32 * 1024;

/// How much of a refused command line goes into [`Action::Refused`].
const LOGGED_COMMAND: usize = 100;

/// An SMTP server session. See the module documentation of [`super`].
#[derive(Debug)]
pub struct Session {
    pub(super) cfg: Arc<SessionConfig>,
    /// Received, not yet processed bytes start at `input[start]`.
    input: Vec<u8>,
    start: usize,
    output: Vec<u8>,
    actions: VecDeque<Action>,
    mode: Mode,
    pub(super) waiting: Option<Waiting>,
    pub(super) helo: Option<Helo>,
    pub(super) tls: bool,
    pub(super) tx: Option<Transaction>,
    /// A BDAT of the last transaction failed: BDATs that follow directly are
    /// pipelined chunks of it, to be read and discarded (RFC 3030 §4.2).
    pub(super) bdat_failed: bool,
    bad_commands: usize,
    /// Recipients refused (550, 553) since the last delivered message.
    pub(super) refused_recipients: usize,
    /// Unoffered pipelining was reported once already (it tends to go on).
    pub(super) pipelining_reported: bool,
    closed: bool,
    /// The CRAM-MD5 challenge of this connection, if the shell made one.
    pub(super) challenge: Option<String>,
    /// An AUTH exchange is under way: the next line is a SASL response.
    pub(super) exchange: Option<Exchange>,
    pub(super) authenticated: bool,
    pub(super) auth_failures: usize,
    /// The shell found this client may relay by its address: MAIL needs no AUTH.
    pub(super) relay_client: bool,
}

/// What the next input bytes are.
#[derive(Debug)]
pub(super) enum Mode {
    Command,
    /// The rest of an over-long command line, up to its LF.
    SkipLine,
    Data(DotDecoder, MessageBuilder),
    Chunk(Chunk),
}

/// A BDAT chunk being read.
#[derive(Debug)]
pub(super) struct Chunk {
    /// The BDAT line, printable, for the log.
    pub command: String,
    pub size: u64,
    pub remaining: u64,
    pub last: bool,
    pub outcome: ChunkOutcome,
}

/// What becomes of a BDAT chunk's bytes.
#[derive(Debug)]
pub(super) enum ChunkOutcome {
    /// Into the transaction's message.
    Store,
    /// Dropped (too big; the message already knows it failed).
    Skip,
    /// Dropped, then this reply; `counts` if it is a protocol error.
    Refuse { reply: Reply, counts: bool },
}

/// An action handed out whose answer has not come yet.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Waiting {
    /// MAIL's sender and BODY, a transaction if the sender is accepted.
    Sender {
        sender: Vec<u8>,
        body_8bit: bool,
    },
    Recipient(Vec<u8>),
    Message,
    Etrn,
    Tls,
    Auth(crate::auth::Mechanism),
    /// [`Action::Pause`]: this refusal is written when the pause is over.
    Delayed {
        command: String,
        reply: Reply,
    },
}

#[derive(Debug)]
pub(super) struct Helo {
    pub name: String,
    pub extended: bool,
}

/// From MAIL to the end of the message.
#[derive(Debug)]
pub(super) struct Transaction {
    pub sender: Vec<u8>,
    pub body_8bit: bool,
    pub recipients: Vec<Vec<u8>>,
    /// Present once a BDAT chunk was stored.
    pub bdat: Option<(ChunkDecoder, MessageBuilder)>,
}

impl Session {
    /// A new session; the greeting is already in the output. `tls_active` is true for
    /// implicit TLS (the shell did the handshake before the greeting).
    pub fn new(cfg: Arc<SessionConfig>, tls_active: bool) -> Session {
        let mut session = Session {
            cfg,
            input: Vec::new(),
            start: 0,
            output: Vec::new(),
            actions: VecDeque::new(),
            mode: Mode::Command,
            waiting: None,
            helo: None,
            tls: tls_active,
            tx: None,
            bdat_failed: false,
            bad_commands: 0,
            refused_recipients: 0,
            pipelining_reported: false,
            closed: false,
            challenge: None,
            exchange: None,
            authenticated: false,
            auth_failures: 0,
            relay_client: false,
        };
        let greeting = texts::greeting(&session.cfg.hostname);
        session.reply(&greeting);
        session
    }

    /// Offer CRAM-MD5 with this challenge (RFC 2195: `<unique.stamp@host>`, angle
    /// brackets included, unique per connection), when AUTH is offered at all.
    pub fn with_challenge(mut self, challenge: String) -> Session {
        self.challenge = Some(challenge);
        self
    }

    /// The client may relay by its address (tcp.smtp, POP-before-SMTP, a site's
    /// networks): on a submission listener it may send without AUTH.
    pub fn with_relay_client(mut self, relay_client: bool) -> Session {
        self.relay_client = relay_client;
        self
    }

    /// The answer to [`Action::CheckSender`]; ignored if none is pending.
    pub fn answer_sender(&mut self, verdict: super::action::SenderVerdict) {
        use super::action::SenderVerdict;
        let Some(Waiting::Sender { sender, body_8bit }) = self
            .waiting
            .take_if(|w| matches!(w, Waiting::Sender { .. }))
        else {
            return;
        };
        let shown = printable(&sender, LOGGED_COMMAND);
        let command = format!("MAIL FROM:<{shown}>");
        match verdict {
            SenderVerdict::Accept => {
                self.tx = Some(Transaction {
                    sender,
                    body_8bit,
                    recipients: Vec::new(),
                    bdat: None,
                });
                self.reply(&texts::sender_ok());
            }
            SenderVerdict::Refused(why) => {
                self.refuse(command, texts::sender_refused(&shown, &why))
            }
            SenderVerdict::Limited(text) => self.refuse(command, texts::limited(&text)),
            SenderVerdict::Temporary(text) => self.refuse(command, texts::temporary(&text)),
        }
    }

    /// Most bytes [`Session::receive`] takes now.
    pub fn input_room(&self) -> usize {
        self.input_cap()
            .saturating_sub(self.input.len() - self.start)
    }

    /// Buffers client bytes and returns how many were taken (at most
    /// [`Session::input_room`]); offer the rest again after the next `next_action`.
    /// Bytes arriving after the session closed or while TLS is being started are
    /// dropped (and counted as taken): they must never be read as commands.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        if self.closed || self.waiting == Some(Waiting::Tls) {
            return bytes.len();
        }
        self.compact();
        let taken = self.input_room().min(bytes.len());
        self.input.extend_from_slice(&bytes[..taken]);
        taken
    }

    /// Processes buffered input until something needs the shell. `None` means: more
    /// input is needed, or an answer is pending, or the session is closed.
    pub fn next_action(&mut self) -> Option<Action> {
        loop {
            if let Some(action) = self.actions.pop_front() {
                return Some(action);
            }
            if self.closed || self.waiting.is_some() || !self.step() {
                self.compact();
                return None;
            }
        }
    }

    /// Reply bytes to write now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// The answer to [`Action::CheckRecipient`]; ignored if none is pending.
    pub fn answer_recipient(&mut self, verdict: RcptVerdict) {
        let Some(Waiting::Recipient(address)) =
            self.waiting.take_if(|w| matches!(w, Waiting::Recipient(_)))
        else {
            return;
        };
        let shown = printable(&address, LOGGED_COMMAND);
        let command = format!("RCPT TO:<{shown}>");
        match verdict {
            RcptVerdict::Accept => {
                if let Some(tx) = self.tx.as_mut() {
                    tx.recipients.push(address);
                }
                self.reply(&texts::recipient_ok());
            }
            RcptVerdict::NotOurs => {
                self.refuse_recipient(command, texts::relaying_denied(&shown));
            }
            RcptVerdict::Unknown => self.refuse_recipient(command, texts::unknown_mailbox(&shown)),
            RcptVerdict::BadAddress(why) => {
                self.refuse_recipient(command, texts::bad_mailbox(&shown, why));
            }
            // Our trouble, not the client's: not counted.
            RcptVerdict::Temporary(text) => self.refuse(command, texts::temporary(&text)),
            RcptVerdict::Limited(text) => self.refuse(command, texts::limited(&text)),
            // A real mailbox, full: not a guess, so not counted either.
            RcptVerdict::OverQuota { permanent } => {
                self.refuse(command, texts::over_quota(&shown, permanent))
            }
        }
    }

    /// The outcome of [`Action::Deliver`]; ignored if none is pending.
    pub fn answer_message(&mut self, verdict: MessageVerdict) {
        if self.waiting.take_if(|w| *w == Waiting::Message).is_none() {
            return;
        }
        let reply = match verdict {
            MessageVerdict::Accepted { queue_id } => {
                // A client that delivers mail is not probing for addresses (Postfix
                // counts errors "without delivering mail" the same way).
                self.refused_recipients = 0;
                texts::queued(&queue_id)
            }
            MessageVerdict::Temporary(text) => texts::temporary(&text),
            MessageVerdict::Permanent(text) => texts::permanent(&text),
            MessageVerdict::Limited(text) => texts::limited(&text),
        };
        self.reply(&reply);
    }

    /// The reply to [`Action::Etrn`], built by the shell (RFC 1985 codes); ignored if
    /// no ETRN is pending.
    pub fn answer_etrn(&mut self, reply: Reply) {
        if self.waiting.take_if(|w| *w == Waiting::Etrn).is_some() {
            self.reply(&reply);
        }
    }

    /// The TLS handshake after [`Action::StartTls`] succeeded. RFC 3207 §4.2: forget
    /// everything learnt before, the client must EHLO again.
    pub fn tls_started(&mut self) {
        if self.waiting.take_if(|w| *w == Waiting::Tls).is_none() {
            return;
        }
        self.tls = true;
        self.helo = None;
        self.tx = None;
        self.authenticated = false;
        self.exchange = None;
        self.bdat_failed = false;
        self.mode = Mode::Command;
        self.discard_input();
    }

    /// The client was idle too long: 421, then [`Action::Close`].
    pub fn timeout(&mut self) {
        if !self.closed {
            self.reply(&texts::idle_timeout());
            self.close();
        }
    }

    /// No more input is read; output may still need writing.
    /// Recipients accepted in the current transaction (0 outside one, and after RSET).
    pub fn accepted_recipients(&self) -> usize {
        self.tx.as_ref().map_or(0, |t| t.recipients.len())
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// TLS is active on this connection.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// What the session is in the middle of reading, for the deadlines: message data,
    /// part of a command line, or nothing.
    pub fn phase(&self) -> crate::policy::deadline::Phase {
        use crate::policy::deadline::Phase;
        match self.mode {
            Mode::Data(..) | Mode::Chunk(_) => Phase::Data,
            Mode::SkipLine => Phase::Line,
            Mode::Command if self.input.len() > self.start => Phase::Line,
            Mode::Command => Phase::Idle,
        }
    }

    /// Heap bytes held for client data (input and message body, not output), for
    /// checking that memory stays bounded.
    pub fn buffered(&self) -> usize {
        let body = match &self.mode {
            Mode::Data(_, builder) => builder.capacity(),
            _ => 0,
        };
        let chunks = self
            .tx
            .as_ref()
            .and_then(|tx| tx.bdat.as_ref())
            .map_or(0, |(_, builder)| builder.capacity());
        self.input.len() + body + chunks
    }

    fn input_cap(&self) -> usize {
        self.cfg.max_command_line + INPUT_SLACK
    }

    fn compact(&mut self) {
        if self.start > 0 {
            self.input.drain(..self.start);
            self.start = 0;
        }
    }

    /// Client bytes are buffered beyond what was processed.
    pub(super) fn has_pending_input(&self) -> bool {
        self.start < self.input.len()
    }

    /// Drops replies not yet taken by the shell.
    pub(super) fn discard_output(&mut self) {
        self.output.clear();
    }

    /// Drops all buffered input, wiping it: it may hold a password.
    pub(super) fn discard_input(&mut self) {
        wipe(&mut self.input);
        self.input.clear();
        self.start = 0;
    }

    /// Makes progress on buffered input; false when more input is needed.
    fn step(&mut self) -> bool {
        match self.mode {
            Mode::Command => self.step_command(),
            Mode::SkipLine => self.step_skip_line(),
            Mode::Data(..) => self.step_data(),
            Mode::Chunk(_) => self.step_chunk(),
        }
    }

    fn step_command(&mut self) -> bool {
        let max = self.cfg.max_command_line;
        let pending = &self.input[self.start..];
        match pending.iter().position(|&b| b == b'\n') {
            Some(lf) if lf < max => {
                let line = pending[..lf].strip_suffix(b"\r").unwrap_or(&pending[..lf]);
                let secret = self.exchange.is_some() || is_auth(line);
                let line = Secret::new(line.to_vec());
                if secret {
                    wipe(&mut self.input[self.start..self.start + lf + 1]);
                }
                self.start += lf + 1;
                // A BDAT line's data follows it directly, by design.
                if !is_bdat(line.expose()) && self.pipelined_without_offer(line.expose()) {
                    return true;
                }
                match self.exchange.take() {
                    Some(exchange) => self.on_sasl_response(exchange, line.expose()),
                    None => self.handle_line(line.expose()),
                }
                true
            }
            Some(lf) => {
                let shown = shown(&pending[..lf]);
                wipe(&mut self.input[self.start..self.start + lf + 1]);
                self.start += lf + 1;
                self.line_too_long(shown);
                true
            }
            // Even with the LF still to come, this line is already too long.
            None if pending.len() >= max => {
                let shown = shown(pending);
                self.discard_input();
                self.mode = Mode::SkipLine;
                self.line_too_long(shown);
                true
            }
            None => false,
        }
    }

    /// RFC 4954 §4 has its own code for an over-long line inside an AUTH exchange,
    /// which also ends the exchange.
    fn line_too_long(&mut self, shown: String) {
        match self.exchange.take() {
            Some(_) => self.auth_line_too_long(),
            None => self.protocol_error(shown, texts::command_too_long()),
        }
    }

    fn step_skip_line(&mut self) -> bool {
        let pending = &self.input[self.start..];
        match pending.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                self.start += lf + 1;
                self.mode = Mode::Command;
                true
            }
            None => {
                self.discard_input();
                false
            }
        }
    }

    fn step_data(&mut self) -> bool {
        let Mode::Data(decoder, builder) = &mut self.mode else {
            return false;
        };
        match decoder.feed(&self.input[self.start..], builder) {
            Some(used) => {
                self.start += used;
                if let Mode::Data(_, builder) = std::mem::replace(&mut self.mode, Mode::Command)
                    && !self.pipelined_without_offer(b".")
                {
                    self.finish_message("DATA".to_string(), builder);
                }
                true
            }
            None => {
                self.discard_input();
                false
            }
        }
    }

    fn step_chunk(&mut self) -> bool {
        let Mode::Chunk(chunk) = &mut self.mode else {
            return false;
        };
        let available = self.input.len() - self.start;
        let take = usize::try_from(chunk.remaining).map_or(available, |r| r.min(available));
        if let ChunkOutcome::Store = chunk.outcome
            && let Some((decoder, builder)) = self.tx.as_mut().and_then(|tx| tx.bdat.as_mut())
        {
            decoder.feed(&self.input[self.start..self.start + take], builder);
        }
        self.start += take;
        chunk.remaining -= take as u64;
        if chunk.remaining > 0 {
            return false;
        }
        if let Mode::Chunk(chunk) = std::mem::replace(&mut self.mode, Mode::Command)
            && !self.pipelined_without_offer(chunk.command.as_bytes())
        {
            self.finish_chunk(chunk);
        }
        true
    }

    pub(super) fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
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

    /// Hands out an action that needs no answer.
    pub(super) fn notify(&mut self, action: Action) {
        self.actions.push_back(action);
    }

    /// Hands an action out; `waiting` pauses the session until its answer.
    pub(super) fn request(&mut self, action: Action, waiting: Option<Waiting>) {
        self.actions.push_back(action);
        self.waiting = waiting;
    }

    pub(super) fn close(&mut self) {
        self.closed = true;
        self.exchange = None;
        self.waiting = None;
        self.mode = Mode::Command;
        self.discard_input();
        self.actions.push_back(Action::Close);
    }
}

/// A command line made printable for [`Action::Refused`]; an AUTH line keeps only its
/// mechanism, since the rest may be a password.
pub(super) fn shown(line: &[u8]) -> String {
    if !is_auth(line) {
        return printable(line, LOGGED_COMMAND);
    }
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty()).skip(1);
    let mechanism = words.next().map(|m| printable(m, 20));
    match (mechanism, words.next().is_some()) {
        (Some(m), true) => format!("AUTH {m} ***"),
        (Some(m), false) => format!("AUTH {m}"),
        (None, _) => "AUTH".to_string(),
    }
}

fn is_bdat(line: &[u8]) -> bool {
    line.len() >= 4
        && line[..4].eq_ignore_ascii_case(b"BDAT")
        && line.get(4).is_none_or(|&b| b == b' ')
}

fn is_auth(line: &[u8]) -> bool {
    line.len() >= 4
        && line[..4].eq_ignore_ascii_case(b"AUTH")
        && line.get(4).is_none_or(|&b| b == b' ')
}
