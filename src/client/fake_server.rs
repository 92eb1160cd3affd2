//! A scriptable SMTP server for the client's tests, in the spirit of Postfix's
//! smtp-sink: extensions on or off, chosen replies per sender or recipient, and
//! faults (drop mid-data or after a body, stall, 421, garbage) at chosen messages.
//!
//! It answers pipelined input the way real servers do: it handles everything that
//! has arrived and writes all replies in one go, and it counts those wake-ups so
//! tests can count round trips instead of timing them. Like Postfix, it keeps a
//! transaction's MAIL after a refused DATA or BDAT, so a client that skips the RSET
//! it needs gets `503 nested MAIL` and the test sees it.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

/// What the server offers and how it misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Fake {
    pub pipelining: bool,
    pub chunking: bool,
    pub starttls: bool,
    /// Answer EHLO with 502 (the client must fall back to HELO).
    pub no_ehlo: bool,
    /// Greeting line; "220 fake.example ESMTP" if empty.
    pub greeting: String,
    /// Reply lines (without CRLF) by sender for MAIL, by recipient for RCPT and for
    /// the end of data. A reply starting with 421 closes the connection after it.
    pub mail: HashMap<String, String>,
    pub rcpt: HashMap<String, String>,
    pub data: HashMap<String, String>,
    /// Faults, by the transaction's recipient.
    pub drop_mid_data: Option<String>,
    pub drop_after_body: Option<String>,
    pub stall_after_body: Option<String>,
    /// Time between a read and handling it, as if the link had that round trip.
    pub delay: Duration,
}

/// One message as the server received it (data with CRLF, dots unstuffed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub sender: String,
    pub recipient: String,
    pub data: Vec<u8>,
}

/// What happened, returned when the connection ends.
#[derive(Debug, Default)]
pub struct Log {
    pub delivered: Vec<Received>,
    pub commands: Vec<String>,
    /// Reads that found new input (after the delay: one per round trip).
    pub wakeups: u32,
    /// Writes of replies.
    pub flushes: u32,
}

#[derive(Debug)]
enum Mode {
    Command,
    Data,
    Bdat { remaining: usize, last: bool },
}

#[derive(Debug, Default)]
struct Txn {
    sender: String,
    recipients: Vec<String>,
    data: Vec<u8>,
    /// A DATA or BDAT of this transaction was refused: later chunks are refused too.
    refused: bool,
}

enum Next {
    Go,
    Close,
    Stall,
}

impl Fake {
    pub fn offering(pipelining: bool, chunking: bool) -> Fake {
        Fake {
            pipelining,
            chunking,
            ..Fake::default()
        }
    }

    /// Starts the server on one end of an in-memory pipe; returns the client's end.
    pub fn spawn(self) -> (DuplexStream, JoinHandle<Log>) {
        let (client, server) = tokio::io::duplex(1 << 20);
        (client, tokio::spawn(self.run(server)))
    }

    async fn run(self, mut s: DuplexStream) -> Log {
        let mut log = Log::default();
        let mut st = Server {
            cfg: &self,
            mode: Mode::Command,
            txn: None,
            tls: false,
            input: Vec::new(),
            out: Vec::new(),
        };
        let greeting = if self.greeting.is_empty() {
            "220 fake.example ESMTP"
        } else {
            &self.greeting
        };
        st.reply(greeting);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if !st.out.is_empty() {
                log.flushes += 1;
                if s.write_all(&st.out).await.is_err() {
                    return log;
                }
                st.out.clear();
            }
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return log,
                Ok(n) => st.input.extend_from_slice(&buf[..n]),
            }
            if !self.delay.is_zero() {
                tokio::time::sleep(self.delay).await;
                // Take in whatever else arrived meanwhile (a zero timeout polls once).
                while let Ok(Ok(n)) = tokio::time::timeout(Duration::ZERO, s.read(&mut buf)).await {
                    if n == 0 {
                        break;
                    }
                    st.input.extend_from_slice(&buf[..n]);
                }
            }
            log.wakeups += 1;
            let next = st.process(&mut log);
            if !matches!(next, Next::Go) {
                let _ = s.write_all(&st.out).await;
                if matches!(next, Next::Stall) {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                return log;
            }
        }
    }
}

struct Server<'a> {
    cfg: &'a Fake,
    mode: Mode,
    txn: Option<Txn>,
    tls: bool,
    input: Vec<u8>,
    out: Vec<u8>,
}

impl Server<'_> {
    fn reply(&mut self, line: &str) {
        self.out.extend_from_slice(line.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    /// A scripted reply or the default; true if it was a 421 (close after it).
    fn scripted(&mut self, table: &HashMap<String, String>, key: &str, default: &str) -> bool {
        let line = table
            .get(key)
            .cloned()
            .unwrap_or_else(|| default.to_string());
        self.reply(&line);
        line.starts_with("421")
    }

    fn rcpt_of_txn(&self) -> String {
        self.txn
            .as_ref()
            .and_then(|t| t.recipients.first().cloned())
            .unwrap_or_default()
    }

    fn process(&mut self, log: &mut Log) -> Next {
        loop {
            match self.mode {
                Mode::Command => {
                    let Some(lf) = self.input.iter().position(|&b| b == b'\n') else {
                        return Next::Go;
                    };
                    let raw: Vec<u8> = self.input.drain(..=lf).collect();
                    let line = String::from_utf8_lossy(&raw).trim_end().to_string();
                    log.commands.push(line.clone());
                    let next = self.command(&line);
                    if !matches!(next, Next::Go) {
                        return next;
                    }
                }
                Mode::Data => {
                    let rcpt = self.rcpt_of_txn();
                    if self.cfg.drop_mid_data.as_deref() == Some(rcpt.as_str()) {
                        return Next::Close;
                    }
                    let Some(lf) = self.input.iter().position(|&b| b == b'\n') else {
                        return Next::Go;
                    };
                    let raw: Vec<u8> = self.input.drain(..=lf).collect();
                    if raw == b".\r\n" {
                        self.mode = Mode::Command;
                        if let Some(next) = self.end_of_data(log) {
                            return next;
                        }
                    } else if let Some(t) = self.txn.as_mut() {
                        t.data
                            .extend_from_slice(raw.strip_prefix(b".").unwrap_or(&raw));
                    }
                }
                Mode::Bdat { remaining, last } => {
                    let rcpt = self.rcpt_of_txn();
                    let accepting = self
                        .txn
                        .as_ref()
                        .is_some_and(|t| !t.recipients.is_empty() && !t.refused);
                    if accepting && self.cfg.drop_mid_data.as_deref() == Some(rcpt.as_str()) {
                        return Next::Close;
                    }
                    let take = remaining.min(self.input.len());
                    let bytes: Vec<u8> = self.input.drain(..take).collect();
                    if accepting && let Some(t) = self.txn.as_mut() {
                        t.data.extend_from_slice(&bytes);
                    }
                    if take < remaining {
                        self.mode = Mode::Bdat {
                            remaining: remaining - take,
                            last,
                        };
                        return Next::Go;
                    }
                    self.mode = Mode::Command;
                    if let Some(next) = self.end_of_chunk(last, log) {
                        return next;
                    }
                }
            }
        }
    }

    fn command(&mut self, line: &str) -> Next {
        let upper = line.to_ascii_uppercase();
        let arg = |prefix: &str| -> String {
            let rest = &line[prefix.len()..];
            rest.trim_start_matches('<')
                .split('>')
                .next()
                .unwrap_or("")
                .to_string()
        };
        if upper.starts_with("EHLO ") {
            if self.cfg.no_ehlo {
                self.reply("502 5.5.2 EHLO not here");
                return Next::Go;
            }
            self.txn = None;
            let mut lines = vec!["fake.example".to_string()];
            if self.cfg.pipelining {
                lines.push("PIPELINING".into());
            }
            if self.cfg.chunking {
                lines.push("CHUNKING".into());
            }
            lines.push("SIZE 10000000".into());
            lines.push("8BITMIME".into());
            if self.cfg.starttls && !self.tls {
                lines.push("STARTTLS".into());
            }
            lines.push("ENHANCEDSTATUSCODES".into());
            let n = lines.len();
            for (i, l) in lines.iter().enumerate() {
                let sep = if i + 1 == n { ' ' } else { '-' };
                self.reply(&format!("250{sep}{l}"));
            }
        } else if upper.starts_with("HELO ") {
            self.txn = None;
            self.reply("250 fake.example");
        } else if upper == "STARTTLS" && self.cfg.starttls && !self.tls {
            // The test's "TLS" is the same pipe: the client must say EHLO again.
            self.tls = true;
            self.reply("220 2.0.0 go ahead");
        } else if upper.starts_with("MAIL FROM:") {
            if self.txn.is_some() {
                self.reply("503 5.5.1 nested MAIL command");
                return Next::Go;
            }
            let sender = arg("MAIL FROM:");
            let mail = &self.cfg.mail;
            let ok = !mail.contains_key(&sender);
            if self.scripted(mail, &sender, "250 2.1.0 ok") {
                return Next::Close;
            }
            if ok {
                self.txn = Some(Txn {
                    sender,
                    ..Txn::default()
                });
            }
        } else if upper.starts_with("RCPT TO:") {
            if self.txn.is_none() {
                self.reply("503 5.5.1 need MAIL");
                return Next::Go;
            }
            let rcpt = arg("RCPT TO:");
            let rules = &self.cfg.rcpt;
            let ok = !rules.contains_key(&rcpt);
            if self.scripted(rules, &rcpt, "250 2.1.5 ok") {
                return Next::Close;
            }
            if ok && let Some(t) = self.txn.as_mut() {
                t.recipients.push(rcpt);
            }
        } else if upper == "DATA" {
            match &self.txn {
                None => self.reply("503 5.5.1 need MAIL"),
                Some(t) if t.recipients.is_empty() => self.reply("554 5.5.1 no valid recipients"),
                Some(_) => {
                    self.reply("354 go ahead");
                    self.mode = Mode::Data;
                }
            }
        } else if let Some(rest) = upper.strip_prefix("BDAT ") {
            let mut words = rest.split_whitespace();
            let size = words.next().and_then(|n| n.parse().ok()).unwrap_or(0);
            let last = words.next() == Some("LAST");
            self.mode = Mode::Bdat {
                remaining: size,
                last,
            };
        } else if upper == "RSET" {
            self.txn = None;
            self.reply("250 2.0.0 ok");
        } else if upper == "QUIT" {
            self.reply("221 2.0.0 bye");
            return Next::Close;
        } else {
            self.reply("502 5.5.2 what?");
        }
        Next::Go
    }

    /// The dot of a DATA transaction arrived.
    fn end_of_data(&mut self, log: &mut Log) -> Option<Next> {
        let rcpt = self.rcpt_of_txn();
        if self.cfg.drop_after_body.as_deref() == Some(rcpt.as_str()) {
            return Some(Next::Close);
        }
        if self.cfg.stall_after_body.as_deref() == Some(rcpt.as_str()) {
            return Some(Next::Stall);
        }
        let txn = self.txn.take()?;
        let rules = &self.cfg.data;
        let ok = !rules.contains_key(&rcpt);
        if self.scripted(rules, &rcpt, "250 2.0.0 queued") {
            return Some(Next::Close);
        }
        if ok {
            log.delivered.push(Received {
                sender: txn.sender,
                recipient: rcpt,
                data: txn.data,
            });
        }
        None
    }

    /// A BDAT chunk's octets are all in (RFC 3030: read even when refused).
    fn end_of_chunk(&mut self, last: bool, log: &mut Log) -> Option<Next> {
        match self.txn.as_mut() {
            None => {
                self.reply("503 5.5.1 need MAIL");
                return None;
            }
            Some(t) if t.recipients.is_empty() || t.refused => {
                t.refused = true;
                self.reply("554 5.5.1 no valid recipients");
                return None;
            }
            Some(_) if !last => {
                self.reply("250 2.0.0 chunk ok");
                return None;
            }
            Some(_) => {}
        }
        self.end_of_data(log)
    }
}
