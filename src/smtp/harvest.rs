//! Refused recipients cost the client time, then its connection.
//!
//! A client that tries address after address and gets 550 or 553 is harvesting (or
//! relay-probing); a legitimate one rarely has more than a few stale addresses. So, as
//! Postfix does with its soft and hard error limits, refusals beyond
//! `rcpt_soft_error_limit` are answered only after the shell has waited
//! `rcpt_error_delay` ([`Action::Pause`]), and the refusal that reaches
//! `rcpt_hard_error_limit` is followed by 421 and [`Action::Penalize`]: the shell then
//! turns away the client's address for a while. A delivered message resets the count.

use super::action::Action;
use super::reply::Reply;
use super::session::{Session, Waiting};
use super::texts;

impl Session {
    /// A recipient was refused for good (unknown, relaying denied, unusable).
    pub(super) fn refuse_recipient(&mut self, command: String, reply: Reply) {
        self.refused_recipients += 1;
        let hard = self.cfg.rcpt_hard_error_limit;
        if hard > 0 && self.refused_recipients >= hard {
            // No pause first: the connection is ending, holding it costs only us.
            self.refuse(command, reply);
            self.reply(&texts::too_many_refused_recipients());
            self.notify(Action::Penalize);
            return self.close();
        }
        let delay = self.cfg.rcpt_error_delay;
        if self.refused_recipients > self.cfg.rcpt_soft_error_limit && !delay.is_zero() {
            return self.request(
                Action::Pause(delay),
                Some(Waiting::Delayed { command, reply }),
            );
        }
        self.refuse(command, reply);
    }

    /// The shell waited as [`Action::Pause`] asked: the refusal is written now.
    /// Ignored if no pause is pending.
    pub fn resume(&mut self) {
        if let Some(Waiting::Delayed { command, reply }) = self
            .waiting
            .take_if(|w| matches!(w, Waiting::Delayed { .. }))
        {
            self.refuse(command, reply);
        }
    }
}
