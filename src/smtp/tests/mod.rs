//! Session tests, driven the way the shell drives a session, without sockets.
//!
//! [`Driver`] plays the shell: it feeds bytes within `input_room`, answers every action
//! (recipients by a naming convention, deliveries with a queue id) and keeps the
//! transcript, so tests read as conversations.

mod auth;
mod bdat;
mod conversation;
mod data;
mod harvest;
mod props;
mod submission;
mod tls;
mod violations;

use std::sync::Arc;

use super::{Action, MessageVerdict, RcptVerdict, Reply, Session, SessionConfig};
use crate::auth::{AuthVerdict, Credential, Mechanism};

pub fn config() -> SessionConfig {
    SessionConfig {
        hostname: "mx.test".into(),
        max_message_size: 10_000,
        max_recipients: 3,
        max_command_line: 512,
        max_text_line: 1000,
        max_bad_commands: 10,
        starttls: true,
        etrn: true,
        chunking: true,
        auth: false,
        plaintext_auth: false,
        max_auth_failures: 3,
        ..SessionConfig::default()
    }
}

/// A delivered message as the shell saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub sender: Vec<u8>,
    pub recipients: Vec<Vec<u8>>,
    pub data: Vec<u8>,
    pub helo: String,
    pub tls: bool,
    pub body_8bit: bool,
}

/// The verdict for a recipient, by the first word of its local part.
pub fn verdict_for(address: &[u8]) -> RcptVerdict {
    match address.split(|&b| b == b'@').next().unwrap_or_default() {
        b"unknown" => RcptVerdict::Unknown,
        b"relay" => RcptVerdict::NotOurs,
        b"bad" => RcptVerdict::BadAddress("no such domain form"),
        b"temp" => RcptVerdict::Temporary("engine busy".into()),
        b"limit" => RcptVerdict::Limited("Sending limit reached".into()),
        b"full" => RcptVerdict::OverQuota { permanent: false },
        b"fullperm" => RcptVerdict::OverQuota { permanent: true },
        _ => RcptVerdict::Accept,
    }
}

pub struct Driver {
    pub session: Session,
    pub transcript: String,
    pub deliveries: Vec<Delivery>,
    pub refused: Vec<(String, Reply)>,
    pub etrns: Vec<Vec<u8>>,
    /// AUTH exchanges handed out, and what the next one gets.
    pub auths: Vec<(Mechanism, Vec<u8>, Credential)>,
    pub auth_verdict: AuthVerdict,
    pub recipients_checked: Vec<Vec<u8>>,
    pub starttls: usize,
    pub closed: bool,
    /// What the next Deliver gets.
    pub message_verdict: MessageVerdict,
    /// Accept every recipient instead of using [`verdict_for`].
    pub accept_all: bool,
    /// Pauses asked for (taken at once: there is no clock here), with the length of
    /// the transcript when each began.
    pub pauses: Vec<(usize, std::time::Duration)>,
    pub penalized: usize,
    pub violations: Vec<(crate::smtp::Violation, String, bool)>,
    /// Senders asked about, and what the next one gets.
    pub senders_checked: Vec<Vec<u8>>,
    pub sender_verdict: crate::smtp::SenderVerdict,
}

impl Driver {
    pub fn new(cfg: SessionConfig) -> Driver {
        Self::with_session(Session::new(Arc::new(cfg), false))
    }

    pub fn with_session(session: Session) -> Driver {
        let mut driver = Driver {
            session,
            transcript: String::new(),
            deliveries: Vec::new(),
            refused: Vec::new(),
            etrns: Vec::new(),
            auths: Vec::new(),
            auth_verdict: AuthVerdict::Accepted,
            recipients_checked: Vec::new(),
            starttls: 0,
            closed: false,
            message_verdict: MessageVerdict::Accepted {
                queue_id: "QID".into(),
            },
            accept_all: false,
            pauses: Vec::new(),
            penalized: 0,
            violations: Vec::new(),
            senders_checked: Vec::new(),
            sender_verdict: crate::smtp::SenderVerdict::Accept,
        };
        driver.run();
        driver
    }

    /// Sends `bytes` as one packet (in pieces if the session's room is smaller) and
    /// returns the replies written since the last call.
    pub fn send(&mut self, bytes: &[u8]) -> String {
        let before = self.transcript.len();
        let mut rest = bytes;
        loop {
            let taken = self.session.receive(rest);
            rest = &rest[taken..];
            self.run();
            if rest.is_empty() || self.closed {
                break;
            }
            assert!(taken > 0 || self.session.input_room() > 0, "session stuck");
        }
        self.transcript[before..].to_string()
    }

    /// Sends each byte on its own.
    pub fn send_bytewise(&mut self, bytes: &[u8]) -> String {
        let before = self.transcript.len();
        for b in bytes {
            self.send(std::slice::from_ref(b));
        }
        self.transcript[before..].to_string()
    }

    /// Carries out actions until the session needs input, then takes the output.
    pub fn run(&mut self) {
        while let Some(action) = self.session.next_action() {
            match action {
                Action::CheckSender { address } => {
                    self.senders_checked.push(address);
                    self.session.answer_sender(self.sender_verdict.clone());
                }
                Action::CheckRecipient { address } => {
                    let verdict = if self.accept_all {
                        RcptVerdict::Accept
                    } else {
                        verdict_for(&address)
                    };
                    self.recipients_checked.push(address);
                    self.session.answer_recipient(verdict);
                }
                Action::Deliver {
                    sender,
                    recipients,
                    data,
                    helo,
                    tls,
                    body_8bit,
                } => {
                    self.deliveries.push(Delivery {
                        sender,
                        recipients,
                        data,
                        helo,
                        tls,
                        body_8bit,
                    });
                    self.session.answer_message(self.message_verdict.clone());
                }
                Action::Etrn { argument } => {
                    self.etrns.push(argument);
                    self.session
                        .answer_etrn(Reply::plain(250, "OK, queuing for node started"));
                }
                Action::StartTls => {
                    self.take_output();
                    self.starttls += 1;
                    self.session.tls_started();
                }
                Action::Authenticate {
                    mechanism,
                    login,
                    credential,
                } => {
                    self.auths.push((mechanism, login, credential));
                    self.session.answer_auth(self.auth_verdict);
                }
                Action::Refused { command, reply } => self.refused.push((command, reply)),
                Action::Pause(delay) => {
                    // The shell writes what came before the pause first.
                    self.take_output();
                    self.pauses.push((self.transcript.len(), delay));
                    self.session.resume();
                }
                Action::Penalize => self.penalized += 1,
                Action::ProtocolViolation {
                    violation,
                    command,
                    refused,
                } => self.violations.push((violation, command, refused)),
                Action::Close => self.closed = true,
            }
        }
        self.take_output();
    }

    fn take_output(&mut self) {
        let out = self.session.take_output();
        self.transcript.push_str(&String::from_utf8_lossy(&out));
    }
}

/// The reply codes (with enhanced codes) in `replies`, one per reply line end.
pub fn codes(replies: &str) -> Vec<String> {
    replies
        .split("\r\n")
        .filter(|line| line.len() >= 4 && line.as_bytes()[3] == b' ')
        .map(|line| {
            let mut words = line.split(' ');
            let code = words.next().unwrap_or_default();
            match words.next() {
                Some(e) if e.contains('.') && e.as_bytes()[0].is_ascii_digit() => {
                    format!("{code} {e}")
                }
                _ => code.to_string(),
            }
        })
        .collect()
}

/// A driver that has said EHLO.
pub fn greeted() -> Driver {
    let mut d = Driver::new(config());
    d.send(b"EHLO client.test\r\n");
    d
}

/// A driver inside a transaction with one accepted recipient.
pub fn in_transaction() -> Driver {
    let mut d = greeted();
    d.send(b"MAIL FROM:<s@a.test>\r\nRCPT TO:<r@b.test>\r\n");
    d
}
