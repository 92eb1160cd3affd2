//! The header section of a stored message (LF line ends, possibly a CRLF left here and
//! there), read as the signature will see it: fields until the first empty line.
//! Only what signing needs: the From: field, and the assurance that every line is a
//! field or a continuation, so that no verifier splits the section differently.

use super::DkimError;

/// Longest header section signed (a message with more is refused, not truncated).
pub const MAX_HEADER: usize = 1024 * 1024;

/// The value of the one From: field (continuation lines included, line ends kept).
pub fn from_value(message: &[u8]) -> Result<&[u8], DkimError> {
    let mut from: Option<&[u8]> = None;
    let mut count = 0usize;
    let mut offset = 0usize;
    // The field being read: its name's position and where its value starts.
    let mut field: Option<(bool, usize)> = None;
    let mut line_no = 0usize;
    let mut finish = |field: Option<(bool, usize)>, end: usize| {
        if let Some((true, start)) = field {
            count += 1;
            from = Some(&message[start..end]);
        }
    };
    loop {
        line_no += 1;
        if offset > MAX_HEADER {
            return Err(DkimError::HeaderTooLong(MAX_HEADER));
        }
        if offset >= message.len() {
            finish(field, message.len());
            break;
        }
        let rest = &message[offset..];
        let (line, next) = match rest.iter().position(|&b| b == b'\n') {
            Some(lf) => (&rest[..lf], offset + lf + 1),
            None => (rest, message.len()),
        };
        let text = line.strip_suffix(b"\r").unwrap_or(line);
        if text.is_empty() {
            finish(field, offset);
            break;
        }
        match text[0] {
            b' ' | b'\t' => {
                if field.is_none() {
                    return Err(DkimError::BadHeader {
                        line: line_no,
                        reason: "a continuation line before any field",
                    });
                }
            }
            _ => {
                finish(field.take(), offset);
                let Some(colon) = text.iter().position(|&b| b == b':') else {
                    return Err(DkimError::BadHeader {
                        line: line_no,
                        reason: "neither a field (no colon) nor a continuation",
                    });
                };
                // RFC 5322 §4.5.3 (obsolete) allows white space before the colon.
                let name = trim_end(&text[..colon]);
                if name.is_empty() || !name.iter().all(|&b| (33..=126).contains(&b)) {
                    return Err(DkimError::BadHeader {
                        line: line_no,
                        reason: "a field name with characters other than printable ASCII",
                    });
                }
                field = Some((name.eq_ignore_ascii_case(b"from"), offset + colon + 1));
            }
        }
        offset = next;
    }
    match (count, from) {
        (1, Some(v)) => Ok(v),
        (0, _) | (_, None) => Err(DkimError::NoFrom),
        (n, _) => Err(DkimError::SeveralFrom(n)),
    }
}

fn trim_end(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(0, |e| e + 1);
    &b[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn finds_the_folded_from_field() {
        let m = b"Subject: x\nFROM : Joe\n <joe@example.net>\nTo: a@b\n\nFrom: body@x\n";
        assert_eq!(from_value(m).unwrap(), b" Joe\n <joe@example.net>\n");
        let last = b"To: a@b\nFrom: j@example.net";
        assert_eq!(from_value(last).unwrap(), b" j@example.net");
        let crlf = b"From: j@example.net\r\n\r\nbody\r\n";
        assert_eq!(from_value(crlf).unwrap(), b" j@example.net\r\n");
    }

    #[test]
    fn refuses_what_verifiers_would_read_otherwise() {
        assert!(matches!(
            from_value(b"Subject: x\n\nFrom: a@b\n"),
            Err(DkimError::NoFrom)
        ));
        assert!(matches!(
            from_value(b"From: a@b\nfrom: c@d\n\n"),
            Err(DkimError::SeveralFrom(2))
        ));
        assert!(matches!(
            from_value(b" folded first\nFrom: a@b\n\n"),
            Err(DkimError::BadHeader { line: 1, .. })
        ));
        assert!(matches!(
            from_value(b"From: a@b\nno colon here\n\n"),
            Err(DkimError::BadHeader { line: 2, .. })
        ));
        assert!(matches!(
            from_value(b"From a@b Sat Jan  3 01:05:34 1996\nFrom: a@b\n\n"),
            Err(DkimError::BadHeader { line: 1, .. })
        ));
        let mut long = b"From: a@b\n".to_vec();
        while long.len() <= MAX_HEADER + 10 {
            long.extend_from_slice(b"X-Pad: 0123456789012345678901234567890123456789\n");
        }
        assert!(matches!(
            from_value(&long),
            Err(DkimError::HeaderTooLong(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(v in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(value) = from_value(&v) {
                let _ = crate::dkim::from::domain(value);
            }
        }

        #[test]
        fn header_like_text_never_panics(v in "([A-Za-z: \t]{0,12}(\r?\n)?){0,12}") {
            let _ = from_value(v.as_bytes());
        }
    }
}
