//! Collects a message body from decoded lines, with every limit checked on the way.
//!
//! Both DATA ([`super::dot`]) and BDAT ([`super::chunk`]) decode the wire format into
//! the same events: bytes of the current line, end of line, and "a bare CR or LF was
//! seen". This sink stores the lines with LF endings and decides at the end whether the
//! message may be delivered: size (RFC 1870, counted as the CRLF form the client sent),
//! line length, bare line endings (the SMTP smuggling defence) and the hop count from
//! `Received:` and `Delivered-To:` header fields (RFC 5321 §6.3). Once any check fails
//! the body is dropped and nothing more is stored, so memory stays within the size
//! limit whatever the client sends.

use super::reply::Reply;
use super::texts;

/// RFC 5321 §6.3: this many Received/Delivered-To fields means a loop.
pub const MAX_HOPS: usize = 100;

/// The longest header field name we need to recognise (`Delivered-To`), with room for
/// the obsolete white space before the colon.
const NAME_BUF: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeaderState {
    /// At the start of a header line, or reading its field name.
    Name,
    /// Past the field name (or a continuation line): nothing more to look at.
    Rest,
    /// The blank line has been seen.
    Body,
}

/// Accumulates one message.
#[derive(Debug)]
pub struct MessageBuilder {
    data: Vec<u8>,
    max_size: u64,
    max_line: usize,
    /// Size in the CRLF form, as RFC 1870 counts it.
    size: u64,
    line_len: usize,
    header: HeaderState,
    name: [u8; NAME_BUF],
    name_len: usize,
    hops: usize,
    oversize: bool,
    bare: bool,
    long_line: bool,
    eight_bit: bool,
}

impl MessageBuilder {
    pub fn new(max_size: u64, max_line: usize) -> MessageBuilder {
        MessageBuilder {
            data: Vec::new(),
            max_size,
            max_line,
            size: 0,
            line_len: 0,
            header: HeaderState::Name,
            name: [0; NAME_BUF],
            name_len: 0,
            hops: 0,
            oversize: false,
            bare: false,
            long_line: false,
            eight_bit: false,
        }
    }

    /// Bytes of the current line (never CR or LF that end a line).
    pub fn text(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        if self.header == HeaderState::Name {
            self.read_field_name(bytes);
        }
        self.line_len = self.line_len.saturating_add(bytes.len());
        if self.line_len > self.max_line {
            self.long_line = true;
        }
        if !self.eight_bit && !bytes.is_ascii() {
            self.eight_bit = true;
        }
        self.grow(bytes.len() as u64);
        if self.storing() {
            self.store(bytes);
        }
    }

    /// The end of a line (CRLF on the wire), stored as LF.
    pub fn line_end(&mut self) {
        if self.header != HeaderState::Body {
            self.header = if self.line_len == 0 {
                HeaderState::Body
            } else {
                HeaderState::Name
            };
            self.name_len = 0;
        }
        self.line_len = 0;
        self.grow(2);
        if self.storing() {
            self.store(b"\n");
        }
    }

    /// A CR or LF that was not part of a CRLF pair.
    pub fn bare_line_ending(&mut self) {
        self.bare = true;
        self.data = Vec::new();
    }

    /// Counts `octets` that arrive but will not be looked at (a BDAT chunk that is
    /// already too big): the message fails with 552.
    pub fn skip(&mut self, octets: u64) {
        self.grow(octets);
        self.oversize = true;
        self.data = Vec::new();
    }

    /// Octets counted so far (CRLF form).
    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn is_oversize(&self) -> bool {
        self.oversize
    }

    /// Saw bytes with the high bit set.
    pub fn is_8bit(&self) -> bool {
        self.eight_bit
    }

    /// Heap bytes held, for memory-bound checks.
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    /// The body with LF line ends, or the reply that refuses it.
    pub fn finish(self) -> Result<Vec<u8>, Reply> {
        if self.oversize {
            Err(texts::message_too_big())
        } else if self.bare {
            Err(texts::bare_line_ending())
        } else if self.long_line {
            Err(texts::text_line_too_long())
        } else if self.hops >= MAX_HOPS {
            Err(texts::looping())
        } else {
            Ok(self.data)
        }
    }

    fn storing(&self) -> bool {
        !(self.oversize || self.bare || self.long_line || self.hops >= MAX_HOPS)
    }

    fn grow(&mut self, octets: u64) {
        self.size = self.size.saturating_add(octets);
        if self.size > self.max_size && !self.oversize {
            self.oversize = true;
            self.data = Vec::new();
        }
    }

    /// Appends without letting the vector's capacity run past the size limit, so the
    /// usual doubling cannot make a message cost twice its limit.
    fn store(&mut self, bytes: &[u8]) {
        let needed = self.data.len() + bytes.len();
        if needed > self.data.capacity() {
            let limit = usize::try_from(self.max_size).unwrap_or(usize::MAX);
            let target = (self.data.capacity() * 2)
                .max(needed)
                .max(256)
                .min(limit.max(needed));
            self.data.reserve_exact(target - self.data.len());
        }
        self.data.extend_from_slice(bytes);
    }

    fn read_field_name(&mut self, bytes: &[u8]) {
        // A line starting with white space continues the previous field.
        if self.line_len == 0 && matches!(bytes.first(), Some(b' ' | b'\t')) {
            self.header = HeaderState::Rest;
            return;
        }
        for &b in bytes {
            if b == b':' {
                self.header = HeaderState::Rest;
                let name = self.name[..self.name_len].trim_ascii_end();
                if name.eq_ignore_ascii_case(b"received")
                    || name.eq_ignore_ascii_case(b"delivered-to")
                {
                    self.hops += 1;
                    if self.hops >= MAX_HOPS {
                        self.data = Vec::new();
                    }
                }
                return;
            }
            if self.name_len == NAME_BUF {
                self.header = HeaderState::Rest;
                return;
            }
            self.name[self.name_len] = b;
            self.name_len += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(builder: &mut MessageBuilder, lines: &[&str]) {
        for line in lines {
            builder.text(line.as_bytes());
            builder.line_end();
        }
    }

    #[test]
    fn stores_lf_lines_and_counts_crlf_size() {
        let mut b = MessageBuilder::new(1000, 100);
        lines(&mut b, &["Subject: hi", "", "body"]);
        assert_eq!(b.size(), 11 + 2 + 2 + 4 + 2);
        assert_eq!(b.finish(), Ok(b"Subject: hi\n\nbody\n".to_vec()));
    }

    #[test]
    fn hop_count_in_header_only() {
        let mut b = MessageBuilder::new(1 << 20, 1000);
        for _ in 0..MAX_HOPS - 1 {
            lines(&mut b, &["received: x", " continued"]);
        }
        lines(&mut b, &["", "Received: in the body does not count"]);
        assert!(b.finish().is_ok());

        let mut b = MessageBuilder::new(1 << 20, 1000);
        for i in 0..MAX_HOPS {
            let line = if i % 2 == 0 {
                "Delivered-To: x"
            } else {
                "Received : y"
            };
            // Split the name over two calls, as a decoder may.
            b.text(&line.as_bytes()[..4]);
            b.text(&line.as_bytes()[4..]);
            b.line_end();
        }
        assert_eq!(b.finish().map_err(|r| r.code), Err(554));
    }

    #[test]
    fn size_limit_drops_body() {
        let mut b = MessageBuilder::new(10, 100);
        lines(&mut b, &["0123456789"]);
        assert!(b.is_oversize());
        assert_eq!(b.capacity(), 0);
        assert_eq!(b.finish().map_err(|r| r.code), Err(552));
    }

    #[test]
    fn capacity_never_exceeds_limit() {
        let mut b = MessageBuilder::new(5000, 100_000);
        for _ in 0..49 {
            b.text(&[b'x'; 100]);
        }
        assert!(b.capacity() <= 5000);
        assert!(b.finish().is_ok());
    }

    #[test]
    fn long_line_and_bare_line_endings() {
        let mut b = MessageBuilder::new(1000, 4);
        lines(&mut b, &["12345"]);
        assert_eq!(b.finish().map_err(|r| r.enhanced), Err(Some((5, 6, 0))));
        let mut b = MessageBuilder::new(1000, 4);
        b.bare_line_ending();
        assert_eq!(b.finish().map_err(|r| r.enhanced), Err(Some((5, 6, 11))));
    }
}
