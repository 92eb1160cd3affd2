//! The two envelope lines at the top of a spool file, written and read back (in
//! `ROOT/queue` maybe after a resume line, see `resume.rs`).
//!
//! Line 1 is qmail-local's RPLINE (`Return-Path: <` quote2(sender) `>`), line 2 its
//! DTLINE (`Delivered-To: ` recipient). Reading undoes the quoting, so an address that
//! needed quotes is sent with exactly one level of them.

use crate::qmail::quote;

/// Sender and recipient of one spool file, and where the message starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub sender: Vec<u8>,
    pub recipient: Vec<u8>,
    /// Byte offset of the message (after the envelope lines).
    pub body_offset: usize,
    /// In `ROOT/queue`: a local delivery to resume, with what is left of it.
    pub resume: Option<super::resume::Rest>,
    /// In `ROOT/queue`: the token shared by the files of one message (`group.rs`).
    pub group: Option<Vec<u8>>,
}

/// Which spool a file was read from, for reading its envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format<'a> {
    /// A site's spool: the Delivered-To value must start with one of the site's
    /// prefixes (the first that fits is removed: longest first, as the site lists them).
    Site(&'a [Vec<u8>]),
    /// `ROOT/queue`: no prefix, and a resume line may come first (see `resume.rs`).
    Queue,
}

/// Parse the envelope of a file in a spool of `format`; None when the file is not in
/// spool format.
pub fn parse_in(head: &[u8], format: Format<'_>) -> Option<Envelope> {
    match format {
        Format::Site(prefixes) => prefixes.iter().find_map(|p| parse(head, p)),
        Format::Queue if super::group::starts(head) => {
            let (token, skip) = super::group::parse(head)?;
            let rest = &head[skip..];
            // A group line is never followed by another one.
            if super::group::starts(rest) {
                return None;
            }
            let mut e = parse_in(rest, Format::Queue)?;
            e.body_offset += skip;
            e.group = Some(token);
            Some(e)
        }
        Format::Queue if super::resume::starts(head) => {
            let (rest, skip) = super::resume::parse(head)?;
            let mut e = parse(&head[skip..], b"")?;
            e.body_offset += skip;
            e.resume = Some(rest);
            Some(e)
        }
        Format::Queue => parse(head, b""),
    }
}

/// The two lines for a new spool file.
pub fn lines(sender: &[u8], recipient: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (quote::rpline(sender), quote::dtline(recipient))
}

/// Undo quote2's quoting of a local part: `"a b"@x` → `a b@x`.
pub fn unquote(addr: &[u8]) -> Vec<u8> {
    let Some(at) = addr.iter().rposition(|&b| b == b'@') else {
        return unquote_local(addr);
    };
    let mut out = unquote_local(&addr[..at]);
    out.extend_from_slice(&addr[at..]);
    out
}

fn unquote_local(local: &[u8]) -> Vec<u8> {
    if local.len() < 2 || local[0] != b'"' || local[local.len() - 1] != b'"' {
        return local.to_vec();
    }
    let inner = &local[1..local.len() - 1];
    let mut out = Vec::with_capacity(inner.len());
    let mut escaped = false;
    for &b in inner {
        if escaped || b != b'\\' {
            out.push(b);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

/// Parse the envelope from the start of a spool file. `prefix` is the byte-exact
/// prefix the Delivered-To value must start with (maildirserial's rule); it is removed
/// from the recipient. Returns None when the file is not in spool format.
pub fn parse(head: &[u8], prefix: &[u8]) -> Option<Envelope> {
    let l1 = head.iter().position(|&b| b == b'\n')?;
    let line1 = &head[..l1];
    let rest = &head[l1 + 1..];
    let l2 = rest.iter().position(|&b| b == b'\n')?;
    let line2 = &rest[..l2];
    let quoted = line1.strip_prefix(b"Return-Path: <")?.strip_suffix(b">")?;
    if quoted.contains(&0) {
        return None;
    }
    let dt = line2.strip_prefix(b"Delivered-To: ")?;
    let recipient = dt.strip_prefix(prefix)?;
    if recipient.is_empty() {
        return None;
    }
    Some(Envelope {
        sender: unquote(quoted),
        recipient: recipient.to_vec(),
        body_offset: l1 + 1 + l2 + 1,
        resume: None,
        group: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn qmail_spool_lines_parse() {
        let f = b"Return-Path: <bob@example.org>\nDelivered-To: site-acme-joe@acme.example\nSubject: hi\n\nbody\n";
        let e = parse(f, b"site-acme-").unwrap();
        assert_eq!(e.sender, b"bob@example.org");
        assert_eq!(e.recipient, b"joe@acme.example");
        assert_eq!(&f[e.body_offset..], b"Subject: hi\n\nbody\n");
        // Prefix is byte-exact and case-sensitive, as in maildirserial.
        assert!(parse(f, b"Site-acme-").is_none());
        assert!(parse(f, b"site-other-").is_none());
        assert!(parse(b"Return-Path: <>\nDelivered-To: x\n", b"").is_some());
        assert!(parse(b"Subject: no envelope\n\n", b"").is_none());
        assert!(parse(b"Return-Path: <a>\n", b"").is_none());
        assert!(parse(b"Return-Path: <a>\nDelivered-To: p-\n", b"p-").is_none());
    }

    #[test]
    fn a_site_with_several_prefixes_reads_each_and_the_longest_first() {
        let prefixes = [b"a-b-".to_vec(), b"a-".to_vec(), b"c-".to_vec()];
        let f = |dt: &str| format!("Return-Path: <s@x>\nDelivered-To: {dt}\n\nbody\n");
        let rcpt =
            |dt: &str| parse_in(f(dt).as_bytes(), Format::Site(&prefixes)).map(|e| e.recipient);
        assert_eq!(rcpt("a-b-joe@x"), Some(b"joe@x".to_vec()));
        assert_eq!(rcpt("a-joe@x"), Some(b"joe@x".to_vec()));
        assert_eq!(rcpt("c-ann@y"), Some(b"ann@y".to_vec()));
        assert_eq!(rcpt("d-ann@y"), None);
    }

    #[test]
    fn queue_files_may_start_with_a_group_line() {
        let f = b"X-Turnmail-Group: 17.3.ab\nReturn-Path: <s@x>\nDelivered-To: r@y\n\nbody\n";
        let e = parse_in(f, Format::Queue).unwrap();
        assert_eq!(e.group.as_deref(), Some(&b"17.3.ab"[..]));
        assert_eq!(e.recipient, b"r@y");
        assert_eq!(&f[e.body_offset..], b"\nbody\n");
        // Only the queue reads it, and only once.
        assert!(parse_in(f, Format::Site(&[b"".to_vec()])).is_none());
        let twice =
            b"X-Turnmail-Group: a\nX-Turnmail-Group: b\nReturn-Path: <s@x>\nDelivered-To: r@y\n";
        assert!(parse_in(twice, Format::Queue).is_none());
        // Files queued before group lines existed read as they did.
        let old = b"Return-Path: <s@x>\nDelivered-To: r@y\n\nbody\n";
        assert_eq!(parse_in(old, Format::Queue).unwrap().group, None);
    }

    #[test]
    fn quoted_senders_round_trip() {
        for s in [
            &b""[..],
            b"plain@x",
            b"needs quoting!@the..host",
            b"a\"b\\c@d",
            b"@",
            b"x",
        ] {
            let (l1, l2) = lines(s, b"r@x");
            let mut f = l1.clone();
            f.extend_from_slice(&l2);
            assert_eq!(
                parse(&f, b"").unwrap().sender,
                s,
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    proptest! {
        #[test]
        fn round_trip(sender in "[ -~]{0,40}", rcpt in "[!-~]{1,40}") {
            let (l1, l2) = lines(sender.as_bytes(), rcpt.as_bytes());
            let mut f = l1;
            f.extend_from_slice(&l2);
            let e = parse(&f, b"").unwrap();
            prop_assert_eq!(e.sender, sender.as_bytes());
            prop_assert_eq!(e.recipient, rcpt.as_bytes());
        }

        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&data, b"");
            let _ = unquote(&data);
        }
    }
}
