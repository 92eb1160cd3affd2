//! Clients that do not wait their turn: input before the greeting, and input pipelined
//! when PIPELINING was not offered (after HELO, before EHLO, after STARTTLS before the
//! new EHLO). Real mail software waits for each reply it may not pipeline past; spam
//! engines that fire a whole dialogue at once do not (Postfix's postscreen and
//! sendmail's greet_pause test the same). Each is logged, once per session, or refused
//! with 421, as [`ViolationPolicy`] says. A refusal comes before the input is acted
//! upon: nothing sent without waiting for its reply is taken, not even the message.
//!
//! Where more input may legitimately follow without a reply: the octets after a BDAT
//! line (they are its chunk), and anything once PIPELINING was offered (RFC 2920).

use super::action::{Action, Violation};
use super::config::ViolationPolicy;
use super::session::{Session, shown};
use super::texts;

impl Session {
    /// The shell found client bytes waiting before it wrote the greeting (`sample` is
    /// some of them, for the log). Call before the first [`Session::take_output`]: when
    /// refused, the greeting is replaced by 421.
    pub fn talked_before_greeting(&mut self, sample: &[u8]) {
        if self.is_closed() {
            return;
        }
        let refused = self.cfg.early_talkers == ViolationPolicy::Refuse;
        self.notify(Action::ProtocolViolation {
            violation: Violation::EarlyTalk,
            command: shown(sample),
            refused,
        });
        if refused {
            self.discard_output();
            let reply = texts::early_talk(&self.cfg.hostname);
            self.reply(&reply);
            self.close();
        }
    }

    /// Called when `command` (a command line, or the end of a message or chunk) has
    /// just been read: more input waiting now was sent without waiting for its reply.
    /// True when the session refused it (and closed).
    pub(super) fn pipelined_without_offer(&mut self, command: &[u8]) -> bool {
        if self.pipelining_offered() || !self.has_pending_input() {
            return false;
        }
        let refused = self.cfg.unoffered_pipelining == ViolationPolicy::Refuse;
        if !refused && self.pipelining_reported {
            return false;
        }
        self.pipelining_reported = true;
        self.notify(Action::ProtocolViolation {
            violation: Violation::UnofferedPipelining,
            command: shown(command),
            refused,
        });
        if refused {
            self.reply(&texts::unoffered_pipelining());
            self.close();
        }
        refused
    }

    /// The EHLO reply, which always lists PIPELINING, was given since the last reset.
    fn pipelining_offered(&self) -> bool {
        self.helo.as_ref().is_some_and(|h| h.extended)
    }
}
