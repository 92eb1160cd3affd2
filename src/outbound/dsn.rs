//! Delivery status notifications (RFC 3464) for mail that cannot be delivered: a human
//! part, a machine-readable `message/delivery-status` part, and the original message
//! (or only its header when it is large). Written with LF line ends, as stored in a
//! Maildir; the SMTP client converts to CRLF on the way out.

use crate::datetime::rfc5322;

/// Originals larger than this are returned as headers only.
pub const MAX_RETURNED: usize = 64 << 10;

/// The envelope sender of a double bounce, as qmail writes it: a bounce of a bounce is
/// recognised by it and dropped instead of bouncing a third time.
pub const DOUBLE_BOUNCE_SENDER: &[u8] = b"#@[]";

/// One recipient that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub recipient: Vec<u8>,
    /// Enhanced status code, e.g. `5.1.1`.
    pub status: String,
    /// What happened, e.g. the remote reply or the local reason.
    pub diagnostic: String,
    /// `smtp` when `diagnostic` is a remote SMTP reply, else `x-local`.
    pub diagnostic_type: &'static str,
}

/// Who a bounce for a message from `sender` goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceTo {
    /// An ordinary bounce to the sender, with the null sender `<>`.
    Sender(Vec<u8>),
    /// The message was itself a bounce: a double bounce to the postmaster.
    Postmaster,
    /// The message was a double bounce: drop it.
    Drop,
}

pub fn bounce_to(sender: &[u8]) -> BounceTo {
    if sender == DOUBLE_BOUNCE_SENDER {
        BounceTo::Drop
    } else if sender.is_empty() {
        BounceTo::Postmaster
    } else {
        BounceTo::Sender(sender.to_vec())
    }
}

/// Which notification: RFC 3464 `Action: failed` or `Action: delayed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Failed,
    Delayed,
}

/// What a bounce says.
pub struct BounceInfo<'a> {
    pub kind: Kind,
    pub hostname: &'a str,
    pub now: u64,
    /// A token unique to this bounce (used in the boundary and Message-ID).
    pub unique: &'a str,
    /// The To: address of the bounce.
    pub to: &'a [u8],
    pub failures: &'a [Failure],
    /// The original message, LF line ends.
    pub original: &'a [u8],
    /// Extra sentence for the human part, e.g. "This message is too old. Giving up."
    pub note: Option<&'a str>,
}

/// Make a value safe for one header or DSN line: no CR/LF, no other controls.
fn one_line(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn header_of(message: &[u8]) -> &[u8] {
    let mut i = 0;
    while i < message.len() {
        let end = message[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(message.len(), |p| i + p + 1);
        if end - i <= 1 {
            return &message[..end];
        }
        i = end;
    }
    message
}

/// Build the bounce message (LF line ends).
pub fn build(b: &BounceInfo) -> Vec<u8> {
    let host = one_line(b.hostname.as_bytes());
    let boundary = format!("{}/{}", one_line(b.unique.as_bytes()), host);
    let date = rfc5322(b.now);
    let mut o = String::new();
    o.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{host}>\n"
    ));
    o.push_str(&format!("To: <{}>\n", one_line(b.to)));
    let (subject, action) = match b.kind {
        Kind::Failed => ("Undelivered Mail Returned to Sender", "failed"),
        Kind::Delayed => ("Delayed Mail (still being retried)", "delayed"),
    };
    o.push_str(&format!("Subject: {subject}\n"));
    o.push_str(&format!("Date: {date}\n"));
    o.push_str(&format!(
        "Message-ID: <{}.bounce@{host}>\n",
        one_line(b.unique.as_bytes())
    ));
    o.push_str("Auto-Submitted: auto-replied\n");
    o.push_str("MIME-Version: 1.0\n");
    o.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"{boundary}\"\n\n"
    ));
    o.push_str("This is a MIME-encapsulated message.\n\n");
    o.push_str(&format!(
        "--{boundary}\nContent-Type: text/plain; charset=utf-8\n\n"
    ));
    let what = match b.kind {
        Kind::Failed => {
            "Your message could not be delivered to one or more recipients.\nIt is attached below."
        }
        Kind::Delayed => {
            "Your message has not been delivered to one or more recipients yet.\nDelivery will be tried again; you need not send it again. Its header is attached below."
        }
    };
    o.push_str(&format!("This is the mail system at {host}.\n\n{what}\n\n"));
    for f in b.failures {
        o.push_str(&format!(
            "<{}>: {}\n",
            one_line(&f.recipient),
            one_line(f.diagnostic.as_bytes())
        ));
    }
    if let Some(n) = b.note {
        o.push_str(&format!("{}\n", one_line(n.as_bytes())));
    }
    o.push_str(&format!(
        "\n--{boundary}\nContent-Type: message/delivery-status\n\n"
    ));
    o.push_str(&format!("Reporting-MTA: dns; {host}\n"));
    for f in b.failures {
        o.push_str(&format!(
            "\nFinal-Recipient: rfc822; {}\nAction: {action}\nStatus: {}\nDiagnostic-Code: {}; {}\nLast-Attempt-Date: {date}\n",
            one_line(&f.recipient),
            one_line(f.status.as_bytes()),
            f.diagnostic_type,
            one_line(f.diagnostic.as_bytes()),
        ));
    }
    // A delay notice returns the header only: the message is still on its way.
    let (ctype, returned) = if b.original.len() <= MAX_RETURNED && b.kind == Kind::Failed {
        ("message/rfc822", b.original)
    } else {
        ("text/rfc822-headers", header_of(b.original))
    };
    o.push_str(&format!(
        "\n--{boundary}\nContent-Type: {ctype}\nContent-Transfer-Encoding: 8bit\n\n"
    ));
    let mut out = o.into_bytes();
    out.extend_from_slice(returned);
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info<'a>(failures: &'a [Failure], original: &'a [u8]) -> BounceInfo<'a> {
        BounceInfo {
            kind: Kind::Failed,
            hostname: "mail.example.com",
            now: 0,
            unique: "1.2.3",
            to: b"bob@example.org",
            failures,
            original,
            note: Some("This message is too old. Giving up."),
        }
    }

    #[test]
    fn dsn_has_the_three_parts() {
        let f = [Failure {
            recipient: b"joe@acme.example".to_vec(),
            status: "5.1.1".into(),
            diagnostic: "550 5.1.1 no such user".into(),
            diagnostic_type: "smtp",
        }];
        let m = build(&info(&f, b"Subject: hello\n\nbody\n"));
        let s = String::from_utf8(m).unwrap();
        assert!(s.contains("report-type=delivery-status"));
        assert!(s.contains("Final-Recipient: rfc822; joe@acme.example\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 no such user\n"));
        assert!(s.contains("Content-Type: message/rfc822\nContent-Transfer-Encoding: 8bit\n\nSubject: hello\n\nbody\n"));
        assert!(s.contains("This message is too old. Giving up."));
        assert!(s.ends_with("--1.2.3/mail.example.com--\n"));
        assert!(!s.contains('\r'));
    }

    #[test]
    fn large_originals_are_returned_as_headers_and_fields_cannot_inject() {
        let mut big = b"Subject: big\nX: y\n\n".to_vec();
        big.extend(std::iter::repeat_n(b'x', MAX_RETURNED + 10));
        let f = [Failure {
            recipient: b"evil\r\nBcc: victim@example.org".to_vec(),
            status: "5.0.0".into(),
            diagnostic: "bad\nX-Injected: 1".into(),
            diagnostic_type: "x-local",
        }];
        let s = String::from_utf8(build(&info(&f, &big))).unwrap();
        assert!(s.contains("text/rfc822-headers"));
        assert!(s.contains("Subject: big\nX: y\n\n"));
        assert!(!s.contains("xxxxxxxx"));
        assert!(!s.contains("\nBcc:"));
        assert!(!s.contains("\nX-Injected"));
    }

    #[test]
    fn delay_notices_say_delayed_and_return_the_header() {
        let f = [Failure {
            recipient: b"joe@acme.example".to_vec(),
            status: "4.4.1".into(),
            diagnostic: "connection refused".into(),
            diagnostic_type: "x-local",
        }];
        let mut i = info(&f, b"Subject: hello\n\nbody text\n");
        i.kind = Kind::Delayed;
        i.note = None;
        let s = String::from_utf8(build(&i)).unwrap();
        assert!(s.contains("Subject: Delayed Mail (still being retried)\n"));
        assert!(s.contains("Action: delayed\nStatus: 4.4.1\n"));
        assert!(s.contains("Content-Type: text/rfc822-headers"));
        assert!(!s.contains("body text"));
    }

    #[test]
    fn who_gets_the_bounce() {
        assert_eq!(bounce_to(b"a@b"), BounceTo::Sender(b"a@b".to_vec()));
        assert_eq!(bounce_to(b""), BounceTo::Postmaster);
        assert_eq!(bounce_to(b"#@[]"), BounceTo::Drop);
    }
}
