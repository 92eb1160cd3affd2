//! One message in flight: its replies so far and the rules that make them consistent.
//!
//! With pipelining, several replies per message arrive after all its commands were
//! sent, so the result is decided here from the whole sequence: the first failing
//! reply wins, and once a transaction was refused every later reply in it must be a
//! failure too. A success after a refusal means the client and server disagree about
//! which reply answers which command; that ends the session rather than risk
//! crediting a message with another one's 250.

use super::{NotSent, Outcome, ProtocolError, Reply};

/// The commands whose replies decide a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Mail,
    Rcpt,
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
            Step::Rcpt => "RCPT",
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
}

impl Flight {
    /// A reply that this message's transaction cannot go on after: the server
    /// refused, or something local went wrong.
    pub fn failed(&self) -> bool {
        self.failure.is_some() || self.local.is_some()
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
        f.on_reply(Step::Rcpt, r(503)).unwrap();
        f.on_reply(Step::Bdat(true), r(554)).unwrap();
        f.done_sending = true;
        assert_eq!(f.outcome(0), Outcome::Temporary(r(452)));
    }

    #[test]
    fn success_after_refusal_is_a_mis_sync() {
        let mut f = Flight::default();
        f.on_reply(Step::Rcpt, r(550)).unwrap();
        assert!(matches!(
            f.on_reply(Step::Bdat(true), r(250)),
            Err(ProtocolError::AcceptedAfterRefusal { .. })
        ));
        let mut f = Flight::default();
        f.on_reply(Step::Mail, r(550)).unwrap();
        assert!(f.on_reply(Step::Data, r(354)).is_err());
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
