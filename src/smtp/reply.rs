//! SMTP replies as values, and their one way onto the wire.
//!
//! Reply text can come from outside the session (an engine error message, the shell's
//! ETRN answer, a queue id), so the only serialiser, [`Reply::to_bytes`], cleans every
//! line: a CR or LF inside reply text would let that text forge further replies to a
//! pipelining client. Multi-line replies use `code-` on every line but the last
//! (RFC 5321 §4.2.1), and every line carries the same enhanced status code (RFC 2034).

/// Longest reply text we write per line; RFC 5321 §4.5.3.1.5 allows 512 octets with the
/// code and CRLF.
const MAX_TEXT: usize = 480;

/// One SMTP reply: a code, an optional enhanced status code and one or more text lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    /// `(class, subject, detail)` as in RFC 3463, e.g. `(2, 1, 5)` for `2.1.5`.
    pub enhanced: Option<(u8, u16, u16)>,
    pub lines: Vec<String>,
}

impl Reply {
    /// A one-line reply with an enhanced status code.
    pub fn new(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: Some(enhanced),
            lines: vec![text.into()],
        }
    }

    /// A one-line reply without an enhanced code (greeting, HELO; RFC 2034 §3).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: None,
            lines: vec![text.into()],
        }
    }

    /// 2xx and 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// The reply as it goes on the wire, CRLF-terminated, text sanitised.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 * self.lines.len().max(1));
        self.write_to(&mut out);
        out
    }

    /// Appends the wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        // An out-of-range code would not parse as a reply at all at the client.
        let code = self.code.clamp(200, 599);
        let enhanced = self
            .enhanced
            .filter(|&(class, _, _)| u16::from(class) == code / 100);
        let empty = [String::new()];
        let lines: &[String] = if self.lines.is_empty() {
            &empty
        } else {
            &self.lines
        };
        for (i, line) in lines.iter().enumerate() {
            push_number(out, code);
            out.push(if i + 1 == lines.len() { b' ' } else { b'-' });
            if let Some((class, subject, detail)) = enhanced {
                push_number(out, u16::from(class));
                out.push(b'.');
                push_number(out, subject);
                out.push(b'.');
                push_number(out, detail);
                out.push(b' ');
            }
            push_clean(out, line);
            out.extend_from_slice(b"\r\n");
        }
    }
}

/// Appends `n` in decimal (replies are written for every command: no formatter).
fn push_number(out: &mut Vec<u8>, n: u16) {
    let mut digits = [0u8; 5];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// Appends `text` as printable ASCII: control characters become spaces and anything
/// else outside ASCII becomes `?`, so nothing in it can end the reply line.
fn push_clean(out: &mut Vec<u8>, text: &str) {
    let text = &text.as_bytes()[..text.len().min(MAX_TEXT)];
    if text.iter().all(|b| (0x20..=0x7e).contains(b)) {
        out.extend_from_slice(text);
        return;
    }
    for &byte in text {
        out.push(match byte {
            0x20..=0x7e => byte,
            0x80..=0xff => b'?',
            _ => b' ',
        });
    }
}

/// Printable ASCII rendering of client bytes for reply text and logs, cut at `max`.
pub fn printable(bytes: &[u8], max: usize) -> String {
    let mut text: String = bytes
        .iter()
        .take(max)
        .map(|&b| match b {
            0x20..=0x7e => char::from(b),
            _ => '?',
        })
        .collect();
    if bytes.len() > max {
        text.push_str("...");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line_with_enhanced_code() {
        let r = Reply::new(250, (2, 1, 5), "Ok");
        assert_eq!(r.to_bytes(), b"250 2.1.5 Ok\r\n");
    }

    #[test]
    fn multi_line_uses_dash_except_last() {
        let r = Reply {
            code: 250,
            enhanced: None,
            lines: vec!["host".into(), "PIPELINING".into(), "SIZE 10".into()],
        };
        assert_eq!(
            r.to_bytes(),
            b"250-host\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
        );
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::new(451, (4, 3, 0), "oops\r\n250 2.0.0 fake\0é");
        assert_eq!(r.to_bytes(), b"451 4.3.0 oops  250 2.0.0 fake ??\r\n");
    }

    #[test]
    fn mismatched_class_drops_enhanced_and_bad_code_is_clamped() {
        let r = Reply::new(550, (2, 0, 0), "x");
        assert_eq!(r.to_bytes(), b"550 x\r\n");
        let r = Reply::plain(1000, "x");
        assert_eq!(r.to_bytes(), b"599 x\r\n");
        let r = Reply {
            code: 250,
            enhanced: None,
            lines: vec![],
        };
        assert_eq!(r.to_bytes(), b"250 \r\n");
    }

    #[test]
    fn every_part_of_an_enhanced_code_is_written_in_decimal() {
        for (class, subject, detail) in [(5, 7, 26), (4, 0, 0), (2, 10, 999), (5, 65535, 65535)] {
            let r = Reply::new(u16::from(class) * 100 + 1, (class, subject, detail), "t");
            let want = format!("{}01 {class}.{subject}.{detail} t\r\n", class);
            assert_eq!(r.to_bytes(), want.as_bytes());
        }
    }

    #[test]
    fn long_text_is_cut() {
        let r = Reply::plain(250, "x".repeat(2000));
        assert_eq!(r.to_bytes().len(), 4 + MAX_TEXT + 2);
    }

    #[test]
    fn printable_cuts_and_masks() {
        assert_eq!(printable(b"ab\r\ncd", 4), "ab??...");
        assert_eq!(printable(b"ok", 4), "ok");
    }
}
