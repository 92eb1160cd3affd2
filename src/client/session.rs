//! The client side of an SMTP session as a sans-IO state machine.
//!
//! It never touches a socket: the driver feeds it server bytes, writes out what it
//! produces, hands it message bodies piece by piece, and asks [`Session::next_action`]
//! what to do next. That keeps every protocol decision testable without a network.
//!
//! How messages go out, fastest mode first:
//! - CHUNKING + PIPELINING: `[RSET] MAIL RCPT BDAT n LAST <data>` per message, written
//!   back to back without waiting, up to a window of messages/octets whose replies
//!   are outstanding. Bodies over 64 KiB go as several `BDAT n` chunks, so no length
//!   has to be known up front and memory stays flat. RFC 3030 makes the state after a
//!   failed BDAT "indeterminate" and requires RSET before further commands, and a
//!   server keeps the MAIL of a transaction whose RCPT failed; the client cannot know
//!   either when it sends the next MAIL, so it pipelines an RSET in front of each
//!   MAIL unless the previous transaction is known to have ended cleanly (RFC 2920
//!   allows RSET anywhere in a group). Cost: six octets and one short reply per
//!   message, no round trip. Once a message has failed, its remaining chunks are not
//!   sent (RFC 3030 §2).
//! - PIPELINING: `[RSET] MAIL RCPT DATA` in one write; after 354 the body, the dot,
//!   and the next message's commands in the same write (RFC 2920 §3.1 lets the data
//!   start a group), so each message costs about one round trip. The end of data
//!   always ends the transaction, so RSET is needed only after a refused DATA.
//! - Neither: one command, one reply; RSET only after a failed transaction. With
//!   CHUNKING alone, BDAT saves the wait for 354.
//!
//! Every reply is matched to the command it answers through one queue. Replies that
//! arrive for a command not yet written, with no command outstanding, with a code
//! the command cannot have, or a success after a refusal in the same transaction,
//! end the session as a protocol violation: a pipelined client that loses count
//! would otherwise credit a message with another message's reply.

use std::collections::VecDeque;
use std::time::Duration;

use super::flight::{Flight, Step};
use super::{Capabilities, ClientOptions, Encoder, Outcome, ReplyParser, SessionError};

mod messages;
mod replies;

/// Output beyond this is written before more is produced.
const HIGH_WATER: usize = 64 * 1024;
/// Encoded BDAT chunk size for bodies that do not fit in one.
const CHUNK: usize = 64 * 1024;

/// Envelope of one message. Addresses go into the commands as given (the caller
/// applies qmail's quote2, as serialsmtp does); `size` is an estimate for `SIZE=`.
/// Several recipients go in one transaction, one RCPT each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHead {
    pub sender: Vec<u8>,
    pub recipients: Vec<Vec<u8>>,
    pub size: Option<u64>,
}

/// A decided message: its outcome and, per recipient, its RCPT refusal (if any).
/// A recipient without a refusal shares the message's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageResult {
    pub outcome: Outcome,
    pub refused: Vec<Option<super::Reply>>,
}

impl MessageResult {
    /// What happened to recipient `n`: its own refusal, else the message's outcome.
    pub fn recipient(&self, n: usize) -> Outcome {
        match self.refused.get(n).and_then(Option::as_ref) {
            Some(r) if r.is_transient() => Outcome::Temporary(r.clone()),
            Some(r) => Outcome::Permanent(r.clone()),
            None => self.outcome.clone(),
        }
    }
}

/// What the driver should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Write [`Session::output`] (reading at the same time is welcome).
    Write,
    /// Nothing to write: wait this long for server bytes.
    Read(Duration),
    /// Call [`Session::start_message`] or [`Session::no_more_messages`].
    NextMessage,
    /// Call [`Session::push_body`], [`Session::end_body`] or [`Session::abort_body`]
    /// for the message last started.
    Body,
    /// STARTTLS was accepted: do the handshake, then [`Session::tls_established`].
    StartTls,
    /// Close the connection.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Greeting, EHLO/HELO, STARTTLS.
    Setup,
    Handshake,
    /// Transactions.
    Mail,
    /// QUIT sent.
    Quit,
    /// Failed: send what is queued (a QUIT at most), then done.
    Closing,
    Done,
}

/// A reply the client is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    Auth(AuthStep),
    Quit,
    /// RSET in front of message `usize`.
    Rset(usize),
    Msg(usize, Step),
}

impl Expect {
    fn message(self) -> Option<usize> {
        match self {
            Expect::Rset(i) | Expect::Msg(i, _) => Some(i),
            _ => None,
        }
    }

    fn waiting_for(self) -> &'static str {
        match self {
            Expect::Greeting => "waiting for the greeting",
            Expect::Ehlo => "waiting for the reply to EHLO",
            Expect::Helo => "waiting for the reply to HELO",
            Expect::StartTls => "waiting for the reply to STARTTLS",
            Expect::Auth(_) => "waiting for the reply to AUTH",
            Expect::Quit => "waiting for the reply to QUIT",
            Expect::Rset(_) => "waiting for the reply to RSET",
            Expect::Msg(_, Step::Mail) => "waiting for the reply to MAIL",
            Expect::Msg(_, Step::Rcpt(_)) => "waiting for the reply to RCPT",
            Expect::Msg(_, Step::Data) => "waiting for the reply to DATA",
            Expect::Msg(_, Step::DataEnd) => "waiting for the reply to the end of data",
            Expect::Msg(_, Step::Bdat(_)) => "waiting for the reply to BDAT",
        }
    }
}

/// Where an AUTH exchange is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthStep {
    /// `AUTH PLAIN <initial response>` sent: 235 or a refusal.
    Plain,
    /// `AUTH LOGIN` sent: 334 for the user name.
    Login,
    /// The user name sent: 334 for the password.
    LoginUser,
    /// The password sent: 235 or a refusal.
    LoginPassword,
}

#[derive(Debug)]
struct Pending {
    what: Expect,
    /// Stream offset the command (with its data) ends at: a reply cannot come before.
    due: u64,
}

/// Is the server's transaction state known to be empty?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Txn {
    Clean,
    Dirty,
    /// `BDAT LAST` of this message sent, reply not yet read.
    AfterLast(usize),
}

/// Where the message being written is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Start,
    Mail,
    Rcpt,
    Data,
    AwaitData,
    Body,
}

#[derive(Debug)]
struct Current {
    idx: usize,
    next: Next,
    head: MessageHead,
    /// The recipient whose RCPT is written next.
    rcpt_next: usize,
    enc: Encoder,
    /// BDAT mode: encoded bytes of the chunk being filled.
    chunk: Vec<u8>,
}

/// One client session. See the module documentation.
#[derive(Debug)]
pub struct Session {
    opts: ClientOptions,
    phase: Phase,
    caps: Capabilities,
    tls_active: bool,
    pipelining: bool,
    chunking: bool,
    parser: ReplyParser,
    out: Vec<u8>,
    out_start: usize,
    /// Octets handed to the driver and written, and octets queued in total.
    written: u64,
    queued: u64,
    expects: VecDeque<Pending>,
    flights: VecDeque<Flight>,
    first_idx: usize,
    next_idx: usize,
    cur: Option<Current>,
    txn: Txn,
    inflight_bytes: u64,
    source_done: bool,
    outcomes: VecDeque<(usize, MessageResult)>,
    error: Option<SessionError>,
}

impl Session {
    /// A session that starts by waiting for the greeting.
    pub fn new(opts: &ClientOptions) -> Session {
        let mut session = Session {
            opts: opts.clone(),
            phase: Phase::Setup,
            caps: Capabilities::default(),
            tls_active: false,
            pipelining: false,
            chunking: false,
            parser: ReplyParser::default(),
            out: Vec::new(),
            out_start: 0,
            written: 0,
            queued: 0,
            expects: VecDeque::new(),
            flights: VecDeque::new(),
            first_idx: 0,
            next_idx: 0,
            cur: None,
            txn: Txn::Clean,
            inflight_bytes: 0,
            source_done: false,
            outcomes: VecDeque::new(),
            error: None,
        };
        session.expect(Expect::Greeting);
        session
    }

    /// The extensions of the last EHLO (all off after HELO).
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// STARTTLS succeeded and the session went on under TLS.
    pub fn tls_active(&self) -> bool {
        self.tls_active
    }

    /// Bytes to write.
    pub fn output(&self) -> &[u8] {
        &self.out[self.out_start..]
    }

    /// `n` bytes of [`Session::output`] were written.
    pub fn wrote(&mut self, n: usize) {
        let n = n.min(self.output().len());
        self.out_start += n;
        self.written += n as u64;
        if self.out_start == self.out.len() {
            self.out.clear();
            self.out_start = 0;
        } else if self.out_start > HIGH_WATER {
            self.out.drain(..self.out_start);
            self.out_start = 0;
        }
    }

    /// The next decided message, in the order they were started.
    pub fn take_outcome(&mut self) -> Option<(usize, Outcome)> {
        self.outcomes.pop_front().map(|(i, r)| (i, r.outcome))
    }

    /// The next decided message with its recipients' refusals.
    pub fn take_result(&mut self) -> Option<(usize, MessageResult)> {
        self.outcomes.pop_front()
    }

    /// Replies to commands already sent are still to come.
    pub fn awaiting_replies(&self) -> bool {
        !self.expects.is_empty()
    }

    /// Why the session ended early, once it has.
    pub fn take_error(&mut self) -> Option<SessionError> {
        self.error.take()
    }

    /// What the driver should do now. Writes commands as the mode allows first, so
    /// call it again after every step.
    pub fn next_action(&mut self) -> Action {
        match self.phase {
            Phase::Done => return Action::Done,
            Phase::Closing if self.output().is_empty() => {
                self.phase = Phase::Done;
                return Action::Done;
            }
            Phase::Closing => return Action::Write,
            Phase::Handshake => return Action::StartTls,
            Phase::Setup | Phase::Mail | Phase::Quit => {}
        }
        self.pump();
        if self.output().len() > HIGH_WATER {
            return Action::Write;
        }
        if self.phase == Phase::Mail {
            if self.body_wanted() {
                return Action::Body;
            }
            if self.cur.is_none() && !self.source_done && self.window_open() {
                return Action::NextMessage;
            }
            // QUIT may end a pipelined group (RFC 2920 §3.1).
            if self.cur.is_none()
                && self.source_done
                && (self.pipelining || self.expects.is_empty())
            {
                self.command(b"QUIT\r\n", Expect::Quit);
                self.phase = Phase::Quit;
            }
        }
        if !self.output().is_empty() {
            return Action::Write;
        }
        match self.expects.front() {
            Some(front) => Action::Read(self.timeout_for(front.what)),
            None => {
                // Unreachable by construction; ending beats waiting forever.
                self.fail(SessionError::Stalled);
                Action::Done
            }
        }
    }

    fn timeout_for(&self, what: Expect) -> Duration {
        let t = &self.opts.timeouts;
        match what {
            Expect::Msg(_, Step::DataEnd | Step::Bdat(true)) => t.data_end,
            Expect::Quit => t.quit,
            _ => t.command,
        }
    }

    fn window_open(&self) -> bool {
        let w = &self.opts.window;
        self.flights.is_empty()
            || (self.flights.len() < w.messages.max(1) && self.inflight_bytes < w.bytes)
    }

    fn body_wanted(&self) -> bool {
        // A huge message sends many chunks, each with a reply to come: bound those.
        let max_expects = self.opts.window.messages.max(1).saturating_mul(4) + 16;
        self.cur.as_ref().is_some_and(|c| c.next == Next::Body)
            && (!self.chunking
                || (self.pipelining && self.expects.len() < max_expects)
                || self.expects.is_empty())
    }

    fn flight(&mut self, idx: usize) -> Option<&mut Flight> {
        let at = idx.checked_sub(self.first_idx)?;
        self.flights.get_mut(at)
    }

    fn emit(&mut self, idx: usize, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
        self.account(idx, bytes.len());
    }

    fn account(&mut self, idx: usize, n: usize) {
        self.queued += n as u64;
        self.inflight_bytes += n as u64;
        if let Some(f) = self.flight(idx) {
            f.bytes += n as u64;
        }
    }

    fn expect(&mut self, what: Expect) {
        if let Some(f) = what.message().and_then(|i| self.flight(i)) {
            f.outstanding += 1;
        }
        self.expects.push_back(Pending {
            what,
            due: self.queued,
        });
    }

    fn command(&mut self, line: &[u8], what: Expect) {
        match what.message() {
            Some(idx) => self.emit(idx, line),
            None => {
                self.out.extend_from_slice(line);
                self.queued += line.len() as u64;
            }
        }
        self.expect(what);
    }
}
