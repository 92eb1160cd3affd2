//! Server replies as the client reads them: an incremental, bounded parser.
//!
//! The server side has its own `Reply` type for writing; this one is built from
//! untrusted bytes, so the parser is strict about syntax (a garbled reply means the
//! client can no longer tell which reply belongs to which command) and bounds what
//! it buffers. smtp-proto's `ResponseReceiver` was not used: it merges the lines of a
//! multi-line reply into one string, drops the enhanced code from the text and does
//! not check that every line carries the same code, and those checks are how this
//! client notices a mis-synchronised pipeline.

use std::fmt;

use super::ProtocolError;

/// Longest reply line accepted. RFC 5321 §4.5.3.1.5 says 512 octets; servers exceed it
/// with long texts, so this is lenient but still bounded.
const MAX_LINE: usize = 4096;
/// Most lines in one reply (EHLO replies are the longest, with a dozen or two).
const MAX_LINES: usize = 128;

/// One reply: its code, the enhanced status code of its first line if there is one
/// (RFC 3463), and the text of every line after `NNN-` / `NNN `, made printable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<(u8, u16, u16)>,
    pub lines: Vec<String>,
}

impl Reply {
    /// 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: only DATA expects one (354).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: will not work as sent.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// All lines on one line, for logs and bounce texts: `550 5.1.1 no such user`.
    pub fn one_line(&self) -> String {
        let mut out = self.code.to_string();
        for (i, line) in self.lines.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { " / " });
            out.push_str(line);
        }
        out
    }
}

impl fmt::Display for Reply {
    /// The wire form without CRs: `250-first`, `250 last`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, line) in self.lines.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let sep = if i + 1 == self.lines.len() { ' ' } else { '-' };
            write!(f, "{}{sep}{line}", self.code)?;
        }
        Ok(())
    }
}

/// Reassembles replies from the byte stream, however it was split into reads.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    /// Start of the unparsed bytes in `buf`; compacted lazily to avoid shifting on
    /// every line.
    start: usize,
    code: u16,
    lines: Vec<String>,
    enhanced: Option<(u8, u16, u16)>,
}

impl ReplyParser {
    /// Adds bytes read from the server. The caller parses all complete replies out
    /// (with [`ReplyParser::next_reply`]) before adding more, so the buffer holds at
    /// most one partial line plus one read.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received but not yet part of a complete reply (partial lines or lines of
    /// an unfinished multi-line reply).
    pub fn has_partial(&self) -> bool {
        self.start < self.buf.len() || !self.lines.is_empty()
    }

    /// The next complete reply, if one has arrived.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ProtocolError> {
        loop {
            let rest = &self.buf[self.start..];
            let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
                if rest.len() > MAX_LINE {
                    return Err(ProtocolError::LineTooLong);
                }
                return Ok(None);
            };
            if lf > MAX_LINE {
                return Err(ProtocolError::LineTooLong);
            }
            let raw = &rest[..lf];
            let line = raw.strip_suffix(b"\r").unwrap_or(raw);
            let (code, last, text) = split_line(line)?;
            if !self.lines.is_empty() && code != self.code {
                return Err(ProtocolError::CodeChanged {
                    first: self.code,
                    then: code,
                });
            }
            if self.lines.len() >= MAX_LINES {
                return Err(ProtocolError::TooManyLines);
            }
            if self.lines.is_empty() {
                self.code = code;
                self.enhanced = enhanced_code(code, text);
            }
            self.lines.push(printable(text));
            self.start += lf + 1;
            if last {
                return Ok(Some(Reply {
                    code: self.code,
                    enhanced: self.enhanced.take(),
                    lines: std::mem::take(&mut self.lines),
                }));
            }
        }
    }
}

/// `NNN-text`, `NNN text` or `NNN`: code, whether it is the last line, text.
fn split_line(line: &[u8]) -> Result<(u16, bool, &[u8]), ProtocolError> {
    let bad = || ProtocolError::BadReplyLine(printable(line));
    let (digits, rest) = line.split_at_checked(3).ok_or_else(bad)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return Err(bad());
    }
    let code = digits
        .iter()
        .fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
    // Positive preliminary (1xx) replies do not exist in SMTP; 6xx and up are not codes.
    if !(200..600).contains(&code) {
        return Err(bad());
    }
    match rest {
        [] => Ok((code, true, rest)),
        [b' ', text @ ..] => Ok((code, true, text)),
        [b'-', text @ ..] => Ok((code, false, text)),
        _ => Err(bad()),
    }
}

/// `class.subject.detail` at the start of the text, when its class matches the code's.
fn enhanced_code(code: u16, text: &[u8]) -> Option<(u8, u16, u16)> {
    let word = text.split(|&b| b == b' ').next()?;
    let mut parts = word.split(|&b| b == b'.');
    let mut num = |max: usize| -> Option<u16> {
        let part = parts.next()?;
        if part.is_empty() || part.len() > max || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(part.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')))
    };
    let class = u8::try_from(num(1)?).ok()?;
    let subject = num(3)?;
    let detail = num(3)?;
    if parts.next().is_some() || u16::from(class) != code / 100 {
        return None;
    }
    Some((class, subject, detail))
}

/// Server text goes into logs and bounces: keep printable ASCII, replace the rest.
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            0x20..=0x7e => char::from(b),
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_all(input: &[u8]) -> Result<Vec<Reply>, ProtocolError> {
        let mut p = ReplyParser::default();
        p.push(input);
        let mut out = Vec::new();
        while let Some(r) = p.next_reply()? {
            out.push(r);
        }
        Ok(out)
    }

    #[test]
    fn single_and_multi_line() {
        let r = parse_all(b"220 mx ESMTP\r\n250-mx\r\n250-PIPELINING\r\n250 CHUNKING\r\n").unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].code, 220);
        assert_eq!(r[0].lines, vec!["mx ESMTP"]);
        assert_eq!(r[1].lines, vec!["mx", "PIPELINING", "CHUNKING"]);
        assert_eq!(r[1].to_string(), "250-mx\n250-PIPELINING\n250 CHUNKING");
        assert_eq!(r[1].one_line(), "250 mx / PIPELINING / CHUNKING");
    }

    #[test]
    fn enhanced_codes_bare_lf_and_code_only_lines() {
        let r = parse_all(b"550 5.1.1 <x@y>: no such user\n250\r\n451 5.1.1 class mismatch\r\n")
            .unwrap();
        assert_eq!(r[0].enhanced, Some((5, 1, 1)));
        assert_eq!(r[0].lines, vec!["5.1.1 <x@y>: no such user"]);
        assert!(r[0].is_permanent());
        assert_eq!(r[1].code, 250);
        assert_eq!(r[1].lines, vec![""]);
        assert_eq!(r[2].enhanced, None);
    }

    #[test]
    fn split_anywhere() {
        let input = b"250-a\r\n250-b\r\n250 c\r\n354 go\r\n";
        for cut in 0..input.len() {
            let mut p = ReplyParser::default();
            let mut out = Vec::new();
            for part in [&input[..cut], &input[cut..]] {
                p.push(part);
                while let Some(r) = p.next_reply().unwrap() {
                    out.push(r.code);
                }
            }
            assert_eq!(out, vec![250, 354], "cut at {cut}");
            assert!(!p.has_partial());
        }
    }

    #[test]
    fn garbage_is_an_error() {
        for bad in [
            &b"hello\r\n"[..],
            b"25\r\n",
            b"2500 x\r\n",
            b"150 x\r\n",
            b"650 x\r\n",
            b"250_x\r\n",
            b"250-a\r\n251 b\r\n",
        ] {
            assert!(
                parse_all(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bounded() {
        let long = vec![b'x'; MAX_LINE + 10];
        let mut p = ReplyParser::default();
        p.push(b"250 ");
        p.push(&long);
        assert!(matches!(p.next_reply(), Err(ProtocolError::LineTooLong)));
        let many = b"250-x\r\n".repeat(MAX_LINES + 1);
        assert!(matches!(parse_all(&many), Err(ProtocolError::TooManyLines)));
    }

    #[test]
    fn text_is_made_printable() {
        let r = parse_all(b"250 a\tb\xc3\xa9\r\n").unwrap();
        assert_eq!(r[0].lines, vec!["a?b??"]);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_all(&data);
        }
    }
}
