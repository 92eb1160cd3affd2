//! One message in flight: its replies so far and the rules that make them consistent.
//!
//! With pipelining, several replies per message arrive after all its commands were
//! sent, so the result is decided here from the whole sequence: the first failing
//! reply wins, and once a transaction was refused every later reply in it must be a
//! failure too. A refused RCPT refuses only its recipient; the transaction fails when
//! every RCPT was refused (with the first refusal), and each recipient's own refusal
//! is kept for the caller. A success after a refusal means the client and server disagree about
//! which reply answers which command; that ends the session rather than risk
//! crediting a message with another one's 250.

use super::{NotSent, Outcome, ProtocolError, Reply};

/// The commands whose replies decide a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Mail,
    /// The reply to the RCPT of recipient `n` (0, 1, ... in the message's order).
    Rcpt(usize),
    Data,
    /// The reply to the end-of-data dot.
    DataEnd,
    /// The reply to a BDAT chunk; `true` for the LAST one.
    Bdat(bool),
}

impl Step {
    pub(super) fn name(self) -> &'static str {
        match self {
            Step::Mail => "MAIL",
            Step::Rcpt(_) => "RCPT",
            Step::Data => "DATA",
            Step::DataEnd => "end of data",
            Step::Bdat(_) => "BDAT",
        }
    }
}

/// What is known about one message.
#[derive(Debug, Default)]
pub(super) struct Flight {
    /// Replies still to come for it (RSET before it included).
    pub outstanding: u32,
    /// No more commands or data will be sent for it.
    pub done_sending: bool,
    /// Stream offset at which its last command or data was complete.
    pub final_due: Option<u64>,
    /// Octets queued for it: commands and encoded body (for the window).
    pub bytes: u64,
    /// The DATA reply was 354 (`Some(true)`) or a failure.
    pub data_ok: Option<bool>,
    pub failure: Option<Reply>,
    pub delivered: Option<Reply>,
    pub local: Option<NotSent>,
    /// Per recipient: its RCPT refusal, if any.
    pub refused: Vec<Option<Reply>>,
    /// RCPT replies still to come, and RCPTs accepted so far.
    pub rcpt_left: usize,
    pub rcpt_ok: usize,
}

impl Flight {
    /// A reply that this message's transaction cannot go on after: the server
    /// refused, or something local went wrong.
    pub fn failed(&self) -> bool {
        self.failure.is_some() || self.local.is_some()
    }

    /// A message for `n` recipients.
    pub fn for_recipients(n: usize) -> Flight {
        Flight {
            refused: vec![None; n],
            rcpt_left: n,
            ..Flight::default()
        }
    }

    pub fn is_complete(&self) -> bool {
        self.done_sending && self.outstanding == 0
    }

    /// Takes the reply to one of its commands.
    pub fn on_reply(&mut self, step: Step, reply: Reply) -> Result<(), ProtocolError> {
        // 354 answers DATA only; 2xx answers everything but DATA.
        let fits = match step {
            Step::Data => !reply.is_success(),
            _ => !reply.is_intermediate(),
        };
        if !fits {
            return Err(ProtocolError::UnexpectedReply {
                command: step.name(),
                reply: reply.one_line(),
            });
        }
        if let Step::Rcpt(n) = step {
            return self.on_rcpt(n, reply);
        }
        if reply.is_success() || reply.is_intermediate() {
            if self.failure.is_some() {
                return Err(ProtocolError::AcceptedAfterRefusal {
                    command: step.name(),
                    reply: reply.one_line(),
                });
            }
            match step {
                Step::Data => self.data_ok = Some(true),
                Step::DataEnd | Step::Bdat(true) => self.delivered = Some(reply),
                _ => {}
            }
        } else {
            if step == Step::Data {
                self.data_ok = Some(false);
            }
            self.failure.get_or_insert(reply);
        }
        Ok(())
    }

    /// A RCPT reply: a refusal is the recipient's own while others may still be
    /// accepted; once every RCPT is answered and none was accepted, the transaction
    /// has failed with the first refusal.
    fn on_rcpt(&mut self, n: usize, reply: Reply) -> Result<(), ProtocolError> {
        self.rcpt_left = self.rcpt_left.saturating_sub(1);
        if reply.is_success() {
            if self.failure.is_some() {
                return Err(ProtocolError::AcceptedAfterRefusal {
                    command: "RCPT",
                    reply: reply.one_line(),
                });
            }
            self.rcpt_ok += 1;
        } else if self.failure.is_none()
            && let Some(slot) = self.refused.get_mut(n)
        {
            // After a refused MAIL, a RCPT's "need MAIL" says nothing of its recipient.
            slot.get_or_insert(reply);
        }
        if self.rcpt_left == 0 && self.rcpt_ok == 0 && self.failure.is_none() {
            let first = self.refused.iter().flatten().next().cloned();
            self.failure = first;
        }
        Ok(())
    }

    /// The message's result once nothing more will come for it. `written` is how far
    /// the stream got: a message whose data all went out may have been delivered.
    pub fn outcome(self, written: u64) -> Outcome {
        if let Some(local) = self.local {
            Outcome::NotAttempted(local)
        } else if let Some(reply) = self.failure {
            if reply.is_transient() {
                Outcome::Temporary(reply)
            } else {
                Outcome::Permanent(reply)
            }
        } else if let Some(reply) = self.delivered {
            Outcome::Delivered(reply)
        } else if self.final_due.is_some_and(|due| due <= written) {
            Outcome::NotAttempted(NotSent::ReplyMissing)
        } else {
            Outcome::NotAttempted(NotSent::SessionEnded)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(code: u16) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec!["x".into()],
        }
    }

    #[test]
    fn first_failure_wins() {
        let mut f = Flight::default();
        f.on_reply(Step::Mail, r(452)).unwrap();
        f.on_reply(Step::Rcpt(0), r(503)).unwrap();
        f.on_reply(Step::Bdat(true), r(554)).unwrap();
        f.done_sending = true;
        assert_eq!(f.outcome(0), Outcome::Temporary(r(452)));
    }

    #[test]
    fn success_after_refusal_is_a_mis_sync() {
        let mut f = Flight::for_recipients(1);
        f.on_reply(Step::Rcpt(0), r(550)).unwrap();
        assert!(matches!(
            f.on_reply(Step::Bdat(true), r(250)),
            Err(ProtocolError::AcceptedAfterRefusal { .. })
        ));
        let mut f = Flight::default();
        f.on_reply(Step::Mail, r(550)).unwrap();
        assert!(f.on_reply(Step::Data, r(354)).is_err());
    }

    #[test]
    fn a_refused_recipient_refuses_only_itself() {
        let mut f = Flight::for_recipients(3);
        f.on_reply(Step::Mail, r(250)).unwrap();
        f.on_reply(Step::Rcpt(0), r(250)).unwrap();
        f.on_reply(Step::Rcpt(1), r(550)).unwrap();
        f.on_reply(Step::Rcpt(2), r(451)).unwrap();
        f.on_reply(Step::Data, r(354)).unwrap();
        f.on_reply(Step::DataEnd, r(250)).unwrap();
        assert_eq!(f.refused, vec![None, Some(r(550)), Some(r(451))]);
        f.done_sending = true;
        assert_eq!(f.outcome(0), Outcome::Delivered(r(250)));
    }

    #[test]
    fn every_recipient_refused_fails_the_transaction() {
        let mut f = Flight::for_recipients(2);
        f.on_reply(Step::Mail, r(250)).unwrap();
        f.on_reply(Step::Rcpt(0), r(450)).unwrap();
        assert!(!f.failed());
        f.on_reply(Step::Rcpt(1), r(550)).unwrap();
        assert!(f.failed());
        // DATA accepted when no recipient was: out of step.
        assert!(f.on_reply(Step::Data, r(354)).is_err());
        let mut f = Flight::for_recipients(2);
        f.on_reply(Step::Mail, r(550)).unwrap();
        f.on_reply(Step::Rcpt(0), r(503)).unwrap();
        assert_eq!(f.refused, vec![None, None]);
        assert!(f.on_reply(Step::Rcpt(1), r(250)).is_err());
    }

    #[test]
    fn impossible_codes() {
        assert!(Flight::default().on_reply(Step::Data, r(250)).is_err());
        assert!(Flight::default().on_reply(Step::Mail, r(354)).is_err());
        assert!(Flight::default().on_reply(Step::DataEnd, r(354)).is_err());
    }

    #[test]
    fn unanswered_data_may_have_been_delivered() {
        let f = Flight {
            final_due: Some(100),
            ..Flight::default()
        };
        assert_eq!(f.outcome(100), Outcome::NotAttempted(NotSent::ReplyMissing));
        let f = Flight {
            final_due: Some(100),
            ..Flight::default()
        };
        assert_eq!(f.outcome(99), Outcome::NotAttempted(NotSent::SessionEnded));
    }
}
