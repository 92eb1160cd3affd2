//! POP3 replies as values, and their one way onto the wire.
//!
//! Reply text can come from outside the session (an engine error message, a UIDL made
//! from a file name), so the only serialiser, [`Reply::write_to`], cleans every line: a
//! CR or LF inside reply text would let that text forge further replies to a
//! pipelining client. Multi-line replies (RFC 1939 §3) end with a lone dot, and body
//! lines that start with a dot are dot-stuffed.

/// Longest text we write per line. RFC 2449 §4 caps a status line at 512 octets.
const MAX_TEXT: usize = 480;

/// `+OK`, `-ERR`, or the `+ ` of a SASL continuation (RFC 5034 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Err,
    Continue,
}

/// Extended response codes (RFC 2449 §8, RFC 3206) in brackets after `-ERR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespCode {
    /// The credentials were wrong (RFC 3206 §4).
    Auth,
    /// Temporary trouble on our side (RFC 3206 §5).
    SysTemp,
    /// Lasting trouble on our side (RFC 3206 §5).
    SysPerm,
    /// Credentials fine, but the maildrop is locked (RFC 2449 §8.1.2).
    InUse,
}

impl RespCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RespCode::Auth => "AUTH",
            RespCode::SysTemp => "SYS/TEMP",
            RespCode::SysPerm => "SYS/PERM",
            RespCode::InUse => "IN-USE",
        }
    }
}

/// One POP3 reply: a status line and, for multi-line replies, the body lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub code: Option<RespCode>,
    pub text: String,
    /// `Some` makes a multi-line reply ending in `.`.
    pub body: Option<Vec<String>>,
}

impl Reply {
    pub fn ok(text: impl Into<String>) -> Reply {
        Reply {
            status: Status::Ok,
            code: None,
            text: text.into(),
            body: None,
        }
    }

    pub fn err(text: impl Into<String>) -> Reply {
        Reply {
            status: Status::Err,
            code: None,
            text: text.into(),
            body: None,
        }
    }

    pub fn err_code(code: RespCode, text: impl Into<String>) -> Reply {
        Reply {
            code: Some(code),
            ..Reply::err(text)
        }
    }

    pub fn multi(text: impl Into<String>, body: Vec<String>) -> Reply {
        Reply {
            body: Some(body),
            ..Reply::ok(text)
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status != Status::Err
    }

    /// The reply as it goes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// Appends the wire form to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(match self.status {
            Status::Ok => b"+OK",
            Status::Err => b"-ERR",
            Status::Continue => b"+",
        });
        if let Some(code) = self.code.filter(|_| self.status == Status::Err) {
            out.extend_from_slice(b" [");
            out.extend_from_slice(code.as_str().as_bytes());
            out.push(b']');
        }
        // RFC 5034 §4: a continuation is "+" SP, even with an empty challenge.
        if !self.text.is_empty() || self.status == Status::Continue {
            out.push(b' ');
            push_clean(out, &self.text);
        }
        out.extend_from_slice(b"\r\n");
        if let Some(body) = &self.body {
            for line in body {
                if line.starts_with('.') {
                    out.push(b'.');
                }
                push_clean(out, line);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b".\r\n");
        }
    }
}

/// Appends `text` as printable ASCII: control characters become spaces and anything
/// else outside ASCII becomes `?`, so nothing in it can end the line.
fn push_clean(out: &mut Vec<u8>, text: &str) {
    out.extend(text.bytes().take(MAX_TEXT).map(|byte| match byte {
        0x20..=0x7e => byte,
        0x80..=0xff => b'?',
        _ => b' ',
    }));
}

/// Printable ASCII rendering of client bytes for logs, cut at `max`.
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
    fn status_lines() {
        assert_eq!(Reply::ok("").to_bytes(), b"+OK\r\n");
        assert_eq!(Reply::ok("2 320").to_bytes(), b"+OK 2 320\r\n");
        assert_eq!(
            Reply::err_code(RespCode::Auth, "Authentication failed.").to_bytes(),
            b"-ERR [AUTH] Authentication failed.\r\n"
        );
        let cont = Reply {
            status: Status::Continue,
            ..Reply::ok("")
        };
        assert_eq!(cont.to_bytes(), b"+ \r\n");
    }

    #[test]
    fn code_only_on_errors() {
        let r = Reply {
            code: Some(RespCode::InUse),
            ..Reply::ok("x")
        };
        assert_eq!(r.to_bytes(), b"+OK x\r\n");
    }

    #[test]
    fn multi_line_is_terminated_and_stuffed() {
        let r = Reply::multi("", vec!["1 120".into(), ".odd".into()]);
        assert_eq!(r.to_bytes(), b"+OK\r\n1 120\r\n..odd\r\n.\r\n");
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::err_code(RespCode::SysTemp, "oops\r\n+OK fake\0é");
        assert_eq!(r.to_bytes(), b"-ERR [SYS/TEMP] oops  +OK fake ??\r\n");
        let r = Reply::multi("", vec!["a\r\n.\r\n".into()]);
        assert_eq!(r.to_bytes(), b"+OK\r\na  .  \r\n.\r\n");
    }

    #[test]
    fn long_text_is_cut() {
        assert_eq!(
            Reply::ok("x".repeat(2000)).to_bytes().len(),
            4 + MAX_TEXT + 2
        );
    }

    #[test]
    fn printable_cuts_and_masks() {
        assert_eq!(printable(b"ab\r\ncd", 4), "ab??...");
    }
}
