//! The group line of a queue file: the recipients of one message that leave through
//! the outbound queue are queued one file each (so each is settled on its own and a
//! crash never repeats a recipient already acknowledged), and the files of one
//! message carry the same token so that the runner sends them in one transaction to
//! each destination.
//!
//! `X-Turnmail-Group: ` and the token, on a line of its own before anything else in
//! the file, for the reason the resume line comes first (`resume.rs`): every queue
//! file turnmail writes starts with a line of its own making, so nothing a sender
//! writes can pose as one. Files without the line (queued before it existed) are
//! sent alone, as they always were.

const MARK: &[u8] = b"X-Turnmail-Group: ";

/// The longest token accepted.
pub const MAX_TOKEN: usize = 64;

/// Whether a token is acceptable: letters, digits, `.` and `-`, 1 to 64 of them.
pub fn valid(token: &[u8]) -> bool {
    !token.is_empty()
        && token.len() <= MAX_TOKEN
        && token
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// The line for `token` (LF included); None for a token [`valid`] refuses.
pub fn line(token: &[u8]) -> Option<Vec<u8>> {
    if !valid(token) {
        return None;
    }
    let mut out = MARK.to_vec();
    out.extend_from_slice(token);
    out.push(b'\n');
    Some(out)
}

/// Whether `head` starts with a group line (then it must parse, or the file is not
/// a spool file).
pub fn starts(head: &[u8]) -> bool {
    head.starts_with(MARK)
}

/// The group line at the start of `head`: the token and the length of the line.
pub fn parse(head: &[u8]) -> Option<(Vec<u8>, usize)> {
    let end = head.iter().position(|&b| b == b'\n')?;
    let token = head[..end].strip_prefix(MARK)?;
    valid(token).then(|| (token.to_vec(), end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_round_trip_and_bad_tokens_are_refused() {
        let l = line(b"1700000000.123-45.6789abcdef").unwrap();
        assert_eq!(l, b"X-Turnmail-Group: 1700000000.123-45.6789abcdef\n");
        let mut head = l.clone();
        head.extend_from_slice(b"Return-Path: <a@b>\n");
        assert!(starts(&head));
        assert_eq!(
            parse(&head),
            Some((b"1700000000.123-45.6789abcdef".to_vec(), l.len()))
        );
        assert_eq!(line(b""), None);
        assert_eq!(line(b"a b"), None);
        assert_eq!(line(&[b'a'; MAX_TOKEN + 1]), None);
        assert_eq!(parse(b"X-Turnmail-Group: a/b\n"), None);
        assert_eq!(parse(b"X-Turnmail-Group: \n"), None);
        assert_eq!(parse(b"X-Turnmail-Group: abc"), None);
        assert_eq!(parse(b"Return-Path: <a@b>\n"), None);
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&data);
            let mut marked = MARK.to_vec();
            marked.extend_from_slice(&data);
            let _ = parse(&marked);
        }

        #[test]
        fn valid_tokens_round_trip(token in "[A-Za-z0-9.-]{1,64}") {
            let l = line(token.as_bytes()).unwrap();
            prop_assert_eq!(parse(&l), Some((token.into_bytes(), l.len())));
        }
    }
}
