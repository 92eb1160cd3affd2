//! How the session answers each server reply, and how it ends.
//!
//! Kept apart from the sending side so the matching rules (which reply answers
//! which command, what a code means at each step, when a session is over) read in
//! one place.

use std::io;

use super::super::flight::{Flight, Step};
use super::super::{Capabilities, ProtocolError, Reply, ReplyParser, SessionError, TlsPolicy};
use super::{AuthStep, Expect, Phase, Session, Txn};

impl Session {
    /// Bytes from the server.
    pub fn feed(&mut self, bytes: &[u8]) {
        if matches!(self.phase, Phase::Closing | Phase::Done) {
            return;
        }
        self.parser.push(bytes);
        while matches!(self.phase, Phase::Setup | Phase::Mail | Phase::Quit) {
            match self.parser.next_reply() {
                Ok(Some(reply)) => self.on_reply(reply),
                Ok(None) => return,
                Err(err) => return self.fail(err.into()),
            }
        }
    }

    /// The server closed the connection.
    pub fn eof(&mut self) {
        match self.phase {
            Phase::Done => {}
            Phase::Closing => self.phase = Phase::Done,
            _ if self.only_quit_left() => self.phase = Phase::Done,
            _ => self.fail(SessionError::ConnectionClosed),
        }
    }

    /// A [`super::Action::Read`] ran out of time.
    pub fn timed_out(&mut self) {
        if self.only_quit_left() {
            self.phase = Phase::Done;
            return;
        }
        let what = self
            .expects
            .front()
            .map_or("waiting for the server", |p| p.what.waiting_for());
        self.fail(SessionError::Timeout(what));
    }

    /// A write made no progress in time.
    pub fn write_timed_out(&mut self) {
        self.closing_or_fail(SessionError::Timeout("writing to the server"));
    }

    /// Reading or writing failed.
    pub fn io_error(&mut self, err: io::Error) {
        self.closing_or_fail(SessionError::Io(err));
    }

    fn closing_or_fail(&mut self, err: SessionError) {
        if matches!(self.phase, Phase::Closing | Phase::Done) {
            self.phase = Phase::Done;
        } else {
            self.fail(err);
        }
    }

    fn only_quit_left(&self) -> bool {
        self.expects.len() == 1 && self.expects.front().is_some_and(|p| p.what == Expect::Quit)
    }

    /// The driver finished the TLS handshake: start over with EHLO (RFC 3207 §4.2).
    pub fn tls_established(&mut self) {
        if self.phase != Phase::Handshake {
            return;
        }
        self.tls_active = true;
        self.caps = Capabilities::default();
        self.parser = ReplyParser::default();
        self.phase = Phase::Setup;
        self.ehlo();
    }

    /// The driver's TLS handshake failed: the stream is unusable.
    pub fn tls_failed(&mut self, err: io::Error) {
        self.fail(SessionError::TlsHandshake(err));
    }

    fn ehlo(&mut self) {
        let line = format!("EHLO {}\r\n", self.opts.helo);
        self.command(line.as_bytes(), Expect::Ehlo);
    }

    fn on_reply(&mut self, reply: Reply) {
        let Some(pending) = self.expects.pop_front() else {
            return self.fail(if reply.code == 421 {
                SessionError::Closing(reply)
            } else {
                ProtocolError::Unsolicited(reply.one_line()).into()
            });
        };
        if pending.due > self.written {
            return self.fail(ProtocolError::Premature(reply.one_line()).into());
        }
        if let Some(f) = pending.what.message().and_then(|i| self.flight(i)) {
            f.outstanding = f.outstanding.saturating_sub(1);
        }
        // 421 can answer any command; the server is going away (RFC 5321 §3.8).
        if reply.code == 421 && pending.what != Expect::Quit {
            if let Some(f) = pending.what.message().and_then(|i| self.flight(i)) {
                f.failure.get_or_insert(reply.clone());
            }
            return self.fail(SessionError::Closing(reply));
        }
        match pending.what {
            Expect::Greeting if reply.code == 220 => self.ehlo(),
            Expect::Greeting => self.fail_quit(SessionError::Greeting(reply)),
            Expect::Ehlo if reply.code == 250 => {
                self.caps = Capabilities::from_ehlo(&reply);
                self.after_hello();
            }
            Expect::Ehlo => {
                let line = format!("HELO {}\r\n", self.opts.helo);
                self.command(line.as_bytes(), Expect::Helo);
            }
            Expect::Helo if reply.code == 250 => {
                self.caps = Capabilities::default();
                self.after_hello();
            }
            Expect::Helo => self.fail_quit(SessionError::HeloRejected(reply)),
            Expect::StartTls if reply.code == 220 => {
                // Bytes after the 220 came in clear text, perhaps from a man in the
                // middle, and must not be taken for replies under TLS (the client
                // side of CVE-2011-0411).
                if self.parser.has_partial() {
                    return self.fail(ProtocolError::InjectionAfterStartTls.into());
                }
                self.phase = Phase::Handshake;
            }
            Expect::StartTls if self.opts.tls == TlsPolicy::Required => {
                self.fail_quit(SessionError::StartTlsRefused(reply));
            }
            Expect::StartTls => self.after_tls(),
            Expect::Auth(step) => self.on_auth_reply(step, reply),
            // Anything else after QUIT is a reply left over from earlier: out of step.
            Expect::Quit if matches!(reply.code, 221 | 421) => self.phase = Phase::Done,
            Expect::Quit => self.fail(
                ProtocolError::UnexpectedReply {
                    command: "QUIT",
                    reply: reply.one_line(),
                }
                .into(),
            ),
            Expect::Rset(_) if reply.is_success() => {}
            Expect::Rset(_) => self.fail(ProtocolError::RsetRefused(reply.one_line()).into()),
            Expect::Msg(idx, step) => {
                let success = reply.is_success();
                let result = match self.flight(idx) {
                    Some(f) => f.on_reply(step, reply),
                    None => Ok(()),
                };
                if let Err(err) = result {
                    return self.fail(err.into());
                }
                if step == Step::Bdat(true) && self.txn == Txn::AfterLast(idx) {
                    // RFC 3030: after a failed BDAT the state is indeterminate.
                    self.txn = if success { Txn::Clean } else { Txn::Dirty };
                }
            }
        }
        self.complete_ready();
    }

    fn after_hello(&mut self) {
        let want_tls = self.opts.tls != TlsPolicy::Off && !self.tls_active;
        if want_tls && self.caps.starttls {
            self.command(b"STARTTLS\r\n", Expect::StartTls);
        } else if want_tls && self.opts.tls == TlsPolicy::Required {
            self.fail_quit(SessionError::TlsUnavailable);
        } else {
            self.after_tls();
        }
    }

    /// TLS is settled: log in when a login is configured, then mail.
    fn after_tls(&mut self) {
        let Some(c) = self.opts.auth.clone() else {
            return self.enter_mail();
        };
        if !self.tls_active {
            return self.fail_quit(SessionError::AuthNeedsTls);
        }
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        if self.caps.auth_plain {
            // RFC 4616: no authorization identity, the user, the password.
            let mut token = vec![0u8];
            token.extend_from_slice(c.user.as_bytes());
            token.push(0);
            token.extend_from_slice(c.password.as_bytes());
            let line = format!("AUTH PLAIN {}\r\n", b64(&token));
            self.command(line.as_bytes(), Expect::Auth(AuthStep::Plain));
        } else if self.caps.auth_login {
            self.command(b"AUTH LOGIN\r\n", Expect::Auth(AuthStep::Login));
        } else {
            self.fail_quit(SessionError::AuthUnavailable);
        }
    }

    fn on_auth_reply(&mut self, step: AuthStep, reply: Reply) {
        use base64::Engine as _;
        let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let (user, password) = match &self.opts.auth {
            Some(c) => (c.user.clone(), c.password.clone()),
            None => (String::new(), String::new()),
        };
        match (step, reply.code) {
            (AuthStep::Plain | AuthStep::LoginPassword, 235) => self.enter_mail(),
            (AuthStep::Login, 334) => {
                let line = format!("{}\r\n", b64(user.as_bytes()));
                self.command(line.as_bytes(), Expect::Auth(AuthStep::LoginUser));
            }
            (AuthStep::LoginUser, 334) => {
                let line = format!("{}\r\n", b64(password.as_bytes()));
                self.command(line.as_bytes(), Expect::Auth(AuthStep::LoginPassword));
            }
            _ => self.fail_quit(SessionError::AuthRefused(reply)),
        }
    }

    fn enter_mail(&mut self) {
        self.phase = Phase::Mail;
        self.pipelining = self.caps.pipelining && self.opts.pipelining;
        self.chunking = self.caps.chunking && self.opts.chunking;
        self.txn = Txn::Clean;
    }

    /// Reports the decided messages at the front, in order.
    pub(super) fn complete_ready(&mut self) {
        while self.flights.front().is_some_and(Flight::is_complete) {
            let Some(f) = self.flights.pop_front() else {
                return;
            };
            self.inflight_bytes = self.inflight_bytes.saturating_sub(f.bytes);
            self.push_result(f);
        }
    }

    fn push_result(&mut self, mut f: Flight) {
        let refused = std::mem::take(&mut f.refused);
        let outcome = f.outcome(self.written);
        self.outcomes
            .push_back((self.first_idx, super::MessageResult { outcome, refused }));
        self.first_idx += 1;
    }

    /// Ends the session: nothing more is sent, every message still open is decided
    /// from what is known.
    pub(super) fn fail(&mut self, err: SessionError) {
        self.error.get_or_insert(err);
        self.phase = Phase::Closing;
        self.out.clear();
        self.out_start = 0;
        self.expects.clear();
        self.cur = None;
        while let Some(f) = self.flights.pop_front() {
            self.push_result(f);
        }
        self.inflight_bytes = 0;
    }

    /// Ends a session whose command state is clean, politely.
    pub(super) fn fail_quit(&mut self, err: SessionError) {
        self.fail(err);
        self.out.extend_from_slice(b"QUIT\r\n");
        self.queued += 6;
    }
}
