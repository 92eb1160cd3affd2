//! The sending side of the session: messages started, their commands and bodies.
//!
//! Which commands may go out before which replies have come back is the whole
//! difference between the three modes; it is decided in `pump`.

use super::super::flight::{Flight, Step};
use super::super::{Encoder, NotSent, SessionError};
use super::{CHUNK, Current, Expect, MessageHead, Next, Phase, Session, Txn};

impl Session {
    /// Starts the next message; returns its index (0, 1, ... in call order).
    pub fn start_message(&mut self, head: MessageHead) -> usize {
        let idx = self.next_idx;
        self.next_idx += 1;
        let mut flight = Flight::for_recipients(head.recipients.len());
        if self.phase != Phase::Mail || self.cur.is_some() {
            flight.local = Some(NotSent::SessionEnded);
        } else if !valid_address(&head.sender)
            || head.recipients.is_empty()
            || head
                .recipients
                .iter()
                .any(|r| r.is_empty() || !valid_address(r))
        {
            flight.local = Some(NotSent::InvalidAddress);
        }
        let refused = flight.local.is_some();
        flight.done_sending = refused;
        self.flights.push_back(flight);
        if !refused {
            let enc = if self.chunking {
                Encoder::bdat()
            } else {
                Encoder::data()
            };
            self.cur = Some(Current {
                idx,
                next: Next::Start,
                head,
                rcpt_next: 0,
                enc,
                chunk: Vec::new(),
            });
        }
        self.complete_ready();
        idx
    }

    /// The caller has no more messages: QUIT once the last one is sent.
    pub fn no_more_messages(&mut self) {
        self.source_done = true;
    }

    /// The next piece of the current message's body, as read from the spool.
    pub fn push_body(&mut self, piece: &[u8]) {
        let Some(cur) = self.cur.as_mut().filter(|c| c.next == Next::Body) else {
            return;
        };
        let idx = cur.idx;
        if self.chunking {
            cur.enc.encode(piece, &mut cur.chunk);
            if cur.chunk.len() >= CHUNK {
                self.emit_chunk(false);
            }
        } else {
            let before = self.out.len();
            cur.enc.encode(piece, &mut self.out);
            self.account(idx, self.out.len() - before);
        }
    }

    /// The current message's body is complete.
    pub fn end_body(&mut self) {
        let Some(cur) = self.cur.as_mut().filter(|c| c.next == Next::Body) else {
            return;
        };
        let idx = cur.idx;
        if self.chunking {
            cur.enc.finish(&mut cur.chunk);
            self.emit_chunk(true);
            self.txn = Txn::AfterLast(idx);
        } else {
            let before = self.out.len();
            cur.enc.finish(&mut self.out);
            self.account(idx, self.out.len() - before);
            self.expect(Expect::Msg(idx, Step::DataEnd));
            // The end of data ends the transaction whatever the reply (RFC 5321 §4.1.1.4).
            self.txn = Txn::Clean;
        }
        let queued = self.queued;
        if let Some(f) = self.flight(idx) {
            f.done_sending = true;
            f.final_due = Some(queued);
        }
        self.cur = None;
    }

    /// Reading the current message's body failed. With BDAT the message is dropped
    /// from the session (no LAST chunk; RSET before the next one); after a DATA
    /// command's 354 there is no way to abandon the data but closing the connection.
    pub fn abort_body(&mut self, reason: String) {
        let Some(idx) = self.cur.as_ref().map(|c| c.idx) else {
            return;
        };
        if let Some(f) = self.flight(idx) {
            f.local
                .get_or_insert(NotSent::BodyUnreadable(reason.clone()));
        }
        if self.chunking {
            self.abort_current();
        } else {
            self.fail(SessionError::BodyRead(reason));
        }
    }

    /// Writes as many commands of the current message as the mode allows.
    pub(super) fn pump(&mut self) {
        while self.phase == Phase::Mail {
            let Some((idx, next)) = self.cur.as_ref().map(|c| (c.idx, c.next)) else {
                return;
            };
            let (failed, data_ok) = match self.flight(idx) {
                Some(f) => (f.failed(), f.data_ok),
                None => return,
            };
            let waiting = !self.pipelining && !self.expects.is_empty();
            match next {
                // Nothing may follow DATA before its reply: were it 354 after all,
                // the next commands would become message text (RFC 2920 §3.1).
                Next::AwaitData if data_ok.is_none() => return,
                // After 354 the data must be finished, whatever else happens.
                Next::Body if !self.chunking => return,
                Next::Body => {
                    if failed {
                        self.abort_current();
                    }
                    return;
                }
                _ if waiting => return,
                _ if failed => return self.abort_current(),
                Next::Start => {
                    if self.txn != Txn::Clean {
                        self.command(b"RSET\r\n", Expect::Rset(idx));
                        self.txn = Txn::Clean;
                    }
                    self.set_next(Next::Mail);
                }
                Next::Mail => {
                    let line = self.mail_line();
                    self.command(&line, Expect::Msg(idx, Step::Mail));
                    self.txn = Txn::Dirty;
                    self.set_next(Next::Rcpt);
                }
                Next::Rcpt => {
                    let Some(cur) = self.cur.as_mut() else {
                        return;
                    };
                    let n = cur.rcpt_next;
                    cur.rcpt_next += 1;
                    let last = cur.rcpt_next >= cur.head.recipients.len();
                    let line = cur
                        .head
                        .recipients
                        .get(n)
                        .map_or_else(Vec::new, |r| address_line(b"RCPT TO:<", r, b">\r\n"));
                    self.command(&line, Expect::Msg(idx, Step::Rcpt(n)));
                    if last {
                        let next = if self.chunking {
                            Next::Body
                        } else {
                            Next::Data
                        };
                        self.set_next(next);
                    }
                }
                Next::Data => {
                    self.command(b"DATA\r\n", Expect::Msg(idx, Step::Data));
                    self.set_next(Next::AwaitData);
                }
                Next::AwaitData => self.set_next(Next::Body),
            }
        }
    }

    fn set_next(&mut self, next: Next) {
        if let Some(cur) = self.cur.as_mut() {
            cur.next = next;
        }
    }

    fn mail_line(&self) -> Vec<u8> {
        let Some(cur) = &self.cur else {
            return Vec::new();
        };
        let mut line = address_line(b"MAIL FROM:<", &cur.head.sender, b">");
        if let (Some(_), Some(size)) = (self.caps.size, cur.head.size) {
            line.extend_from_slice(format!(" SIZE={size}").as_bytes());
        }
        // Harmless for 7-bit bodies, and the spool may hold 8-bit ones.
        if self.caps.eightbitmime {
            line.extend_from_slice(b" BODY=8BITMIME");
        }
        line.extend_from_slice(b"\r\n");
        line
    }

    /// Moves the filled chunk to the output as one BDAT command.
    fn emit_chunk(&mut self, last: bool) {
        let Some(cur) = self.cur.as_mut() else {
            return;
        };
        let idx = cur.idx;
        let mut data = std::mem::take(&mut cur.chunk);
        let header = if last {
            format!("BDAT {} LAST\r\n", data.len())
        } else {
            format!("BDAT {}\r\n", data.len())
        };
        self.emit(idx, header.as_bytes());
        self.emit(idx, &data);
        self.expect(Expect::Msg(idx, Step::Bdat(last)));
        data.clear();
        if let Some(cur) = self.cur.as_mut() {
            cur.chunk = data;
        }
    }

    /// Stops sending the current message; its replies still count.
    fn abort_current(&mut self) {
        if let Some(cur) = self.cur.take()
            && let Some(f) = self.flight(cur.idx)
        {
            f.done_sending = true;
        }
        self.complete_ready();
    }
}

/// Control characters in an address could end the command line early.
fn valid_address(addr: &[u8]) -> bool {
    !addr.iter().any(|&b| b < 0x20 || b == 0x7f)
}

fn address_line(verb: &[u8], addr: &[u8], tail: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(verb.len() + addr.len() + tail.len() + 24);
    line.extend_from_slice(verb);
    line.extend_from_slice(addr);
    line.extend_from_slice(tail);
    line
}
