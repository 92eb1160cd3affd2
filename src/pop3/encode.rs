//! The RETR/TOP body encoder: Maildir bytes in, POP3 multi-line response body out.
//!
//! Messages are stored with LF line ends; POP3 sends CRLF and dot-stuffs (RFC 1939
//! §3). The shell streams a file through [`RetrEncoder`] in chunks of any size, so the
//! encoder keeps only a few flags and never buffers. Line ends follow qmail-pop3d and
//! `maildir::crlf_size` exactly: every LF becomes CRLF and every other byte is
//! sent as it is, so a CR stored before an LF is message text (it is sent, and counted
//! in the size, as one octet). That keeps the octets sent for RETR, dot-stuffing and
//! terminator aside, equal to `bytes + LFs (+ 2 for a partial last line)`: the size
//! LIST reports, which RFC 1939 requires to be exact.
//!
//! TOP sends the header (up to and including the first empty line) and then at most
//! `k` body lines, as qmail-pop3d does; a message with fewer lines is sent whole.

/// Streaming encoder for one RETR or TOP response body.
#[derive(Debug, Clone)]
pub struct RetrEncoder {
    /// Body lines still allowed (TOP); `None` for RETR.
    body_lines_left: Option<u64>,
    extra_blank_line: bool,
    in_header: bool,
    at_line_start: bool,
    /// TOP has sent all it may; further input is ignored.
    cut: bool,
    finished: bool,
}

impl RetrEncoder {
    /// `max_body_lines` is `None` for RETR and `Some(k)` for `TOP n k`.
    /// `extra_blank_line` adds qmail-pop3d's blank line before the final dot.
    pub fn new(max_body_lines: Option<u64>, extra_blank_line: bool) -> RetrEncoder {
        RetrEncoder {
            body_lines_left: max_body_lines,
            extra_blank_line,
            in_header: true,
            at_line_start: true,
            cut: false,
            finished: false,
        }
    }

    /// True once no more input can change the output (TOP reached its limit, or
    /// `finish` was called): the shell may stop reading the file.
    pub fn is_done(&self) -> bool {
        self.cut || self.finished
    }

    /// Encodes the next chunk of the message into `out`. Appends at most
    /// `2 * input.len()` bytes.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) {
        while !input.is_empty() && !self.is_done() {
            if self.at_line_start {
                if !self.in_header {
                    match &mut self.body_lines_left {
                        Some(0) => {
                            self.cut = true;
                            return;
                        }
                        Some(left) => *left -= 1,
                        None => {}
                    }
                }
                if input[0] == b'.' {
                    out.push(b'.');
                }
            }
            match input.iter().position(|&b| b == b'\n') {
                Some(lf) => {
                    if self.at_line_start && lf == 0 {
                        // The empty line that ends the header belongs to it.
                        self.in_header = false;
                    }
                    out.extend_from_slice(&input[..lf]);
                    out.extend_from_slice(b"\r\n");
                    self.at_line_start = true;
                    input = &input[lf + 1..];
                }
                None => {
                    out.extend_from_slice(input);
                    self.at_line_start = false;
                    return;
                }
            }
        }
    }

    /// Ends the response: completes a partial last line, adds the compatibility blank
    /// line if asked, and writes the terminating `.` CRLF. Later calls write nothing.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if !self.at_line_start {
            out.extend_from_slice(b"\r\n");
        }
        if self.extra_blank_line {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b".\r\n");
    }

    /// The whole response body for `message` at once (tests, small messages).
    pub fn encode_all(
        message: &[u8],
        max_body_lines: Option<u64>,
        extra_blank_line: bool,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(message.len() + message.len() / 16 + 8);
        let mut encoder = RetrEncoder::new(max_body_lines, extra_blank_line);
        encoder.feed(message, &mut out);
        encoder.finish(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retr(m: &[u8]) -> Vec<u8> {
        RetrEncoder::encode_all(m, None, false)
    }

    fn top(m: &[u8], k: u64) -> Vec<u8> {
        RetrEncoder::encode_all(m, Some(k), false)
    }

    const MSG: &[u8] = b"From: a\nSubject: b\n\nline 1\n.line 2\nline 3\n";

    #[test]
    fn retr_converts_and_stuffs() {
        assert_eq!(
            retr(MSG),
            b"From: a\r\nSubject: b\r\n\r\nline 1\r\n..line 2\r\nline 3\r\n.\r\n"
        );
    }

    #[test]
    fn partial_last_line_is_completed() {
        assert_eq!(retr(b"a\nb"), b"a\r\nb\r\n.\r\n");
        assert_eq!(retr(b""), b".\r\n");
        assert_eq!(retr(b"."), b"..\r\n.\r\n");
    }

    #[test]
    fn cr_is_text_as_in_qmail_pop3d() {
        assert_eq!(retr(b"a\r\nb\rc\n"), b"a\r\r\nb\rc\r\n.\r\n");
    }

    #[test]
    fn top_counts_body_lines_after_the_header() {
        assert_eq!(top(MSG, 0), b"From: a\r\nSubject: b\r\n\r\n.\r\n");
        assert_eq!(
            top(MSG, 2),
            b"From: a\r\nSubject: b\r\n\r\nline 1\r\n..line 2\r\n.\r\n"
        );
        assert_eq!(top(MSG, 3), retr(MSG));
        assert_eq!(top(MSG, u64::MAX), retr(MSG));
        // No empty line: all of it is header.
        assert_eq!(top(b"A: b\nC: d", 0), b"A: b\r\nC: d\r\n.\r\n");
        // A partial last body line counts as a line.
        assert_eq!(top(b"A: b\n\nx", 1), b"A: b\r\n\r\nx\r\n.\r\n");
    }

    #[test]
    fn top_stops_reading() {
        let mut e = RetrEncoder::new(Some(0), false);
        let mut out = Vec::new();
        e.feed(b"A: b\n\n", &mut out);
        assert!(!e.is_done());
        e.feed(b"body", &mut out);
        assert!(e.is_done());
        e.feed(b"more\n", &mut out);
        e.finish(&mut out);
        e.finish(&mut out);
        assert_eq!(out, b"A: b\r\n\r\n.\r\n");
    }

    #[test]
    fn extra_blank_line_for_qmail_compatibility() {
        assert_eq!(
            RetrEncoder::encode_all(b"a\n", None, true),
            b"a\r\n\r\n.\r\n"
        );
        assert_eq!(RetrEncoder::encode_all(b"", None, true), b"\r\n.\r\n");
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let whole = retr(MSG);
        for split in 0..=MSG.len() {
            let mut e = RetrEncoder::new(None, false);
            let mut out = Vec::new();
            e.feed(&MSG[..split], &mut out);
            e.feed(&MSG[split..], &mut out);
            e.finish(&mut out);
            assert_eq!(out, whole, "split at {split}");
        }
    }
}
