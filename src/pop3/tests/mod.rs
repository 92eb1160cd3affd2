//! Session tests, driven the way the shell drives a session, without sockets.
//!
//! [`Driver`] plays the shell: it feeds bytes within `input_room`, answers every action
//! (logins by a fixed table, a maildrop of in-memory messages, RETR through the real
//! encoder in small chunks) and keeps the transcript, so tests read as conversations.

mod auth;
mod encode_props;
mod pipelining;
mod props;
mod transaction;

use std::sync::Arc;

use super::{
    Action, AuthVerdict, Connection, Credential, MaildropError, MessageInfo, Pop3Config, Reply,
    RetrieveError, Session, UpdateReport,
};

/// The APOP challenge and the digest the driver accepts for it.
pub const TIMESTAMP: &str = "<1896.697170952@dbc.mtview.ca.us>";
pub const GOOD_DIGEST: &str = "c4c9334bac560ecc979e58001b3e22fb";

pub fn config() -> Pop3Config {
    Pop3Config {
        hostname: "pop.test".into(),
        stls_available: true,
        plaintext_allowed: true,
        max_line: 256,
        max_pipelined: 4096,
        max_auth_failures: 3,
        max_bad_commands: 10,
        compat_extra_blank_line: false,
        implementation: "turnmail".into(),
    }
}

pub fn connection() -> Connection {
    Connection {
        tls_active: false,
        loopback: false,
        apop_timestamp: Some(TIMESTAMP.into()),
    }
}

/// The size the shell advertises: `maildir::crlf_size`.
pub fn crlf_size(data: &[u8]) -> u64 {
    let lfs = data.iter().filter(|&&b| b == b'\n').count() as u64;
    let partial = !data.is_empty() && data.last() != Some(&b'\n');
    data.len() as u64 + lfs + if partial { 2 } else { 0 }
}

/// A message in the driver's fake Maildir.
#[derive(Debug, Clone)]
pub struct Stored {
    pub uidl: String,
    pub data: Vec<u8>,
    pub in_new: bool,
}

pub fn stored(uidl: &str, data: &[u8], in_new: bool) -> Stored {
    Stored {
        uidl: uidl.into(),
        data: data.to_vec(),
        in_new,
    }
}

/// Three messages: two in new/, one in cur/.
pub fn mailbox() -> Vec<Stored> {
    vec![
        stored(
            "1000.M1P1Q1.host,S=28,W=31",
            b"Subject: one\n\nfirst body\n",
            true,
        ),
        stored(
            "1001.M1P1Q2.host",
            b"Subject: two\n\n.dot line\nline 2\nline 3\n",
            false,
        ),
        stored("1002.M1P1Q3.host", b"Subject: three\n\nno newline", true),
    ]
}

pub struct Driver {
    pub session: Session,
    pub transcript: Vec<u8>,
    pub auths: Vec<(Vec<u8>, Credential)>,
    pub updates: Vec<(Vec<usize>, Vec<usize>)>,
    pub refused: Vec<(String, Reply)>,
    pub retrieves: Vec<(usize, Option<u64>)>,
    pub opened: usize,
    pub starttls: usize,
    pub flushes: usize,
    pub closed: bool,
    /// The maildrop handed out after a good login.
    pub mailbox: Result<Vec<Stored>, MaildropError>,
    /// What RETR's open gives, if not success.
    pub open_error: Option<RetrieveError>,
    pub update_report: UpdateReport,
    /// Bytes per `feed` when streaming a message.
    pub chunk: usize,
    /// Most output buffered in the session at any `Flush` or `None`.
    pub max_output: usize,
}

impl Driver {
    pub fn new(cfg: Pop3Config) -> Driver {
        Driver::with(cfg, connection())
    }

    pub fn with(cfg: Pop3Config, conn: Connection) -> Driver {
        let mut driver = Driver {
            session: Session::new(Arc::new(cfg), conn),
            transcript: Vec::new(),
            auths: Vec::new(),
            updates: Vec::new(),
            refused: Vec::new(),
            retrieves: Vec::new(),
            opened: 0,
            starttls: 0,
            flushes: 0,
            closed: false,
            mailbox: Ok(mailbox()),
            open_error: None,
            update_report: UpdateReport::default(),
            chunk: 5,
            max_output: 0,
        };
        driver.run();
        driver
    }

    /// A driver already in the TRANSACTION state (the login lines are not returned).
    pub fn logged_in() -> Driver {
        let mut d = Driver::new(config());
        d.send(b"USER alice\r\nPASS secret\r\n");
        assert!(d.session.is_authenticated());
        d
    }

    /// Sends `bytes` as one packet (in pieces if the session's room is smaller) and
    /// returns the output written since the last call.
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
        String::from_utf8_lossy(&self.transcript[before..]).into_owned()
    }

    /// Sends each byte on its own.
    pub fn send_bytewise(&mut self, bytes: &[u8]) -> String {
        let before = self.transcript.len();
        for b in bytes {
            self.send(std::slice::from_ref(b));
        }
        String::from_utf8_lossy(&self.transcript[before..]).into_owned()
    }

    pub fn timeout(&mut self) -> String {
        let before = self.transcript.len();
        self.session.timeout();
        self.run();
        String::from_utf8_lossy(&self.transcript[before..]).into_owned()
    }

    fn write_output(&mut self) {
        let out = self.session.take_output();
        self.max_output = self.max_output.max(out.len());
        self.transcript.extend_from_slice(&out);
    }

    /// Carries out actions until the session needs input, then takes the output.
    pub fn run(&mut self) {
        while let Some(action) = self.session.next_action() {
            match action {
                Action::Authenticate { login, credential } => {
                    let verdict = verdict(&login, &credential);
                    self.auths.push((login, credential));
                    self.session.answer_auth(verdict);
                }
                Action::OpenMaildrop => {
                    let answer = self.mailbox.clone().map(|list| {
                        list.iter()
                            .map(|m| MessageInfo {
                                uidl: m.uidl.clone(),
                                size: crlf_size(&m.data),
                                in_new: m.in_new,
                            })
                            .collect()
                    });
                    self.session.answer_maildrop(answer);
                }
                Action::Retrieve {
                    index,
                    max_body_lines,
                } => {
                    self.retrieves.push((index, max_body_lines));
                    self.retrieve(index);
                }
                Action::Update { delete, seen } => {
                    self.updates.push((delete, seen));
                    self.session.answer_update(self.update_report);
                }
                Action::StartTls => {
                    self.write_output();
                    self.starttls += 1;
                    self.session.tls_started();
                }
                Action::Flush => {
                    self.flushes += 1;
                    self.write_output();
                }
                Action::Refused { command, reply } => self.refused.push((command, reply)),
                Action::Close => self.closed = true,
            }
        }
        self.write_output();
    }

    fn retrieve(&mut self, index: usize) {
        if let Some(error) = self.open_error.clone() {
            return self.session.retrieve_failed(error);
        }
        let data = match &self.mailbox {
            Ok(list) => list[index].data.clone(),
            Err(_) => panic!("retrieve without a maildrop"),
        };
        let mut encoder = self.session.retrieve_opened().expect("retrieval pending");
        self.opened += 1;
        self.write_output();
        let mut out = Vec::new();
        for piece in data.chunks(self.chunk.max(1)) {
            if encoder.is_done() {
                break;
            }
            encoder.feed(piece, &mut out);
        }
        encoder.finish(&mut out);
        self.transcript.extend_from_slice(&out);
        self.session.retrieve_done();
    }
}

/// alice/secret by USER or PLAIN, mrose by APOP with [`GOOD_DIGEST`], "temp" is a
/// temporary failure, anything else fails.
fn verdict(login: &[u8], credential: &Credential) -> AuthVerdict {
    match (login, credential) {
        (b"temp", _) => AuthVerdict::Temporary("engine busy".into()),
        (b"alice", Credential::Pass(p) | Credential::Plain(p)) if p.expose() == b"secret" => {
            AuthVerdict::Accepted
        }
        (b"mrose", Credential::Apop { timestamp, digest })
            if timestamp == TIMESTAMP && digest == GOOD_DIGEST =>
        {
            AuthVerdict::Accepted
        }
        _ => AuthVerdict::Rejected,
    }
}
