//! The input side of the line protocols' sessions (POP3, ODMR): client bytes buffered
//! within a bound, cut into command lines of at most `max_line` bytes, the rest of an
//! over-long line dropped up to its LF, and every byte wiped once processed (AUTH and
//! PASS lines carry passwords). Sans-IO like the sessions that own it.

use crate::auth::{Secret, wipe};

/// What the buffered input holds next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A whole line, without its CRLF (or bare LF).
    Line(Secret),
    /// A line longer than `max_line`: what of it has arrived is gone, and the rest is
    /// dropped as it comes, up to its LF.
    TooLong,
    /// More bytes are needed.
    More,
}

#[derive(Debug)]
pub struct LineInput {
    /// Received, not yet processed bytes start at `buf[start]`.
    buf: Vec<u8>,
    start: usize,
    /// Dropping the rest of an over-long line, up to its LF.
    skipping: bool,
    max_line: usize,
    /// Most bytes held unprocessed: one line and `max_pipelined` more.
    cap: usize,
}

impl LineInput {
    /// Lines of at most `max_line` bytes (at least 1), with up to `max_pipelined` more
    /// bytes of pipelined commands held behind one.
    pub fn new(max_line: usize, max_pipelined: usize) -> LineInput {
        let max_line = max_line.max(1);
        LineInput {
            buf: Vec::new(),
            start: 0,
            skipping: false,
            max_line,
            cap: max_line + max_pipelined,
        }
    }

    /// Most bytes [`LineInput::receive`] takes now.
    pub fn room(&self) -> usize {
        self.cap.saturating_sub(self.buf.len() - self.start)
    }

    /// Buffers up to [`LineInput::room`] of `bytes` and returns how many it took.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        self.compact();
        let taken = self.room().min(bytes.len());
        self.buf.extend_from_slice(&bytes[..taken]);
        taken
    }

    /// The next line, if a whole one (or a too long one) is buffered.
    pub fn next_line(&mut self) -> Next {
        loop {
            let pending = &self.buf[self.start..];
            let lf = memchr::memchr(b'\n', pending);
            if self.skipping {
                match lf {
                    Some(lf) => {
                        self.consume(lf + 1);
                        self.skipping = false;
                        continue;
                    }
                    None => {
                        self.discard();
                        return Next::More;
                    }
                }
            }
            return match lf {
                Some(lf) if lf < self.max_line => {
                    let raw = &pending[..lf];
                    let line = Secret::new(raw.strip_suffix(b"\r").unwrap_or(raw).to_vec());
                    self.consume(lf + 1);
                    Next::Line(line)
                }
                Some(lf) => {
                    self.consume(lf + 1);
                    Next::TooLong
                }
                // Even with the LF still to come, this line is already too long.
                None if pending.len() >= self.max_line => {
                    self.discard();
                    self.skipping = true;
                    Next::TooLong
                }
                None => Next::More,
            };
        }
    }

    /// Whether unprocessed bytes are buffered.
    pub fn has_unread(&self) -> bool {
        self.start < self.buf.len()
    }

    /// Whether the client is in the middle of a line (for the deadlines).
    pub fn mid_line(&self) -> bool {
        self.skipping || self.has_unread()
    }

    /// Bytes held, processed or not (for checking that memory stays bounded).
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Drops the processed bytes from the front of the buffer.
    pub fn compact(&mut self) {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }

    /// Drops all buffered input, wiping it: it may hold a password.
    pub fn discard(&mut self) {
        wipe(&mut self.buf);
        self.buf.clear();
        self.start = 0;
    }

    /// Forgets everything, the over-long line being dropped included (after STARTTLS
    /// or STLS: nothing sent before the handshake may count).
    pub fn reset(&mut self) {
        self.skipping = false;
        self.discard();
    }

    /// Marks `n` more bytes processed, wiping them.
    fn consume(&mut self, n: usize) {
        let end = (self.start + n).min(self.buf.len());
        wipe(&mut self.buf[self.start..end]);
        self.start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line(n: Next) -> Vec<u8> {
        match n {
            Next::Line(s) => s.expose().to_vec(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lines_are_cut_at_lf_with_an_optional_cr() {
        let mut i = LineInput::new(100, 100);
        assert_eq!(i.receive(b"USER a\r\nPASS b\nQU"), 17);
        assert_eq!(line(i.next_line()), b"USER a");
        assert_eq!(line(i.next_line()), b"PASS b");
        assert_eq!(i.next_line(), Next::More);
        assert!(i.mid_line());
        i.receive(b"IT\r\n");
        assert_eq!(line(i.next_line()), b"QUIT");
        assert!(!i.mid_line());
        assert_eq!(i.next_line(), Next::More);
    }

    #[test]
    fn an_over_long_line_is_refused_once_and_dropped_to_its_lf() {
        let mut i = LineInput::new(8, 100);
        i.receive(b"123456789");
        assert_eq!(i.next_line(), Next::TooLong);
        assert_eq!(i.held(), 0, "what arrived of it is gone");
        i.receive(b"more of the same");
        assert_eq!(i.next_line(), Next::More);
        assert_eq!(i.held(), 0);
        i.receive(b"end\nNOOP\r\n");
        assert_eq!(line(i.next_line()), b"NOOP");
        // A long line arriving whole is refused as one too.
        i.receive(b"0123456789\nSTAT\n");
        assert_eq!(i.next_line(), Next::TooLong);
        assert_eq!(line(i.next_line()), b"STAT");
    }

    #[test]
    fn input_stays_within_one_line_and_the_pipelined_allowance() {
        let mut i = LineInput::new(10, 20);
        assert_eq!(i.room(), 30);
        assert_eq!(i.receive(&[b'a'; 50]), 30);
        assert_eq!(i.room(), 0);
        assert_eq!(i.next_line(), Next::TooLong);
        assert_eq!(i.room(), 30);
    }

    #[test]
    fn reset_forgets_a_line_being_dropped() {
        let mut i = LineInput::new(4, 10);
        i.receive(b"toolong");
        assert_eq!(i.next_line(), Next::TooLong);
        i.reset();
        i.receive(b"ok\n");
        assert_eq!(line(i.next_line()), b"ok");
    }

    proptest! {
        /// However the bytes are split into receives, the same lines come out, none
        /// longer than the limit, and memory stays bounded.
        #[test]
        fn splitting_never_changes_the_lines(
            text in proptest::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'x')], 0..300),
            cuts in proptest::collection::vec(1usize..40, 1..20),
        ) {
            let run = |pieces: &mut dyn Iterator<Item = usize>| {
                let mut i = LineInput::new(16, 32);
                let mut out = Vec::new();
                let mut rest: &[u8] = &text;
                while !rest.is_empty() {
                    let n = pieces.next().unwrap_or(rest.len()).min(rest.len());
                    let mut chunk = &rest[..n];
                    rest = &rest[n..];
                    while !chunk.is_empty() {
                        let took = i.receive(chunk);
                        chunk = &chunk[took..];
                        assert!(i.held() <= 48);
                        loop {
                            match i.next_line() {
                                Next::Line(l) => {
                                    assert!(l.expose().len() < 16);
                                    out.push(Some(l.expose().to_vec()));
                                }
                                Next::TooLong => out.push(None),
                                Next::More => break,
                            }
                        }
                    }
                }
                out
            };
            let whole = run(&mut std::iter::empty());
            let split = run(&mut cuts.iter().copied().cycle());
            prop_assert_eq!(whole, split);
        }
    }
}
