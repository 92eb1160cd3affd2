//! The `maildirsize` file of Maildir++ (Courier's maildirquota, read and written the
//! same way by Dovecot's `maildir` quota backend), as a pure reader and writer.
//!
//! Line 1 is the limits header (`spec.rs`). Every later line is `BYTES COUNT`, two
//! signed decimals: the file's first such line is the usage when it was last
//! recalculated, each delivery appends `+size 1`, each removal `-size -1`. Usage is
//! the sum. The file is recalculated from the folders themselves when it has grown to
//! 5120 bytes or more, when it cannot be read as above, or when it says the mailbox is
//! over quota and was last written more than 15 minutes ago (so a mailbox that looks
//! full because of a lost removal line gets a second look, but never on every delivery).

use super::spec::Limits;

/// At this size a reader recalculates and rewrites the file.
pub const MAX_SIZE: u64 = 5120;
/// An over-quota answer older than this is checked by recalculation.
pub const STALE_SECS: u64 = 15 * 60;
/// Bytes of a file read at most: past `MAX_SIZE` the file is recalculated anyway, so
/// only its header matters, which is in the first line.
pub const READ_LIMIT: usize = 16 * 1024;

/// What a `maildirsize` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contents {
    pub limits: Limits,
    pub bytes: i64,
    pub messages: i64,
    /// Every line after the header was a complete `BYTES COUNT` line and the sums did
    /// not overflow. When false, `bytes`/`messages` cover the good lines before the
    /// first bad one and the file must be recalculated.
    pub intact: bool,
}

/// Read a `maildirsize` text. `None`: the header itself is unreadable, so the limits
/// are unknown. A torn or garbled usage line only makes the result not `intact`.
pub fn parse(text: &[u8]) -> Option<Contents> {
    let (header, rest) = match text.iter().position(|&b| b == b'\n') {
        Some(i) => (&text[..i], &text[i + 1..]),
        // A header without its newline: a torn first write.
        None => return None,
    };
    let limits = Limits::parse_header(header).ok()?;
    let mut c = Contents {
        limits,
        bytes: 0,
        messages: 0,
        intact: true,
    };
    let mut rest = rest;
    while !rest.is_empty() {
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            // A last line without its newline is an append caught half-way.
            c.intact = false;
            break;
        };
        let line = &rest[..end];
        rest = &rest[end + 1..];
        match usage_line(line) {
            Some((b, m)) => match (c.bytes.checked_add(b), c.messages.checked_add(m)) {
                (Some(b), Some(m)) => {
                    c.bytes = b;
                    c.messages = m;
                }
                _ => {
                    c.intact = false;
                    break;
                }
            },
            None => {
                c.intact = false;
                break;
            }
        }
    }
    Some(c)
}

fn usage_line(line: &[u8]) -> Option<(i64, i64)> {
    let mut f = line
        .split(|b| *b == b' ' || *b == b'\t')
        .filter(|f| !f.is_empty());
    let (b, m) = (f.next()?, f.next()?);
    if f.next().is_some() {
        return None;
    }
    Some((signed(b)?, signed(m)?))
}

fn signed(b: &[u8]) -> Option<i64> {
    let (neg, digits) = match b {
        [b'-', d @ ..] => (true, d),
        d => (false, d),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let v: i64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(if neg { -v } else { v })
}

/// A whole file: the header and one usage line, as a recalculation writes it.
pub fn render(limits: &Limits, bytes: u64, messages: u64) -> Vec<u8> {
    format!("{}\n{bytes} {messages}\n", limits.header()).into_bytes()
}

/// The line appended for a change of usage (`-size -1` for a removal).
pub fn delta_line(bytes: i64, messages: i64) -> Vec<u8> {
    format!("{bytes} {messages}\n").into_bytes()
}

/// Whether a reader must recalculate instead of trusting the file.
pub fn must_recalculate(file_len: u64, age_secs: u64, parsed: Option<&Contents>) -> bool {
    match parsed {
        None => true,
        Some(c) => {
            !c.intact
                || file_len >= MAX_SIZE
                || (age_secs > STALE_SECS && c.limits.is_over(c.bytes, c.messages))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_courier_and_dovecot_files() {
        let c = parse(b"10000000S,1000C\n4096 3\n1200 1\n-300 -1\n").unwrap();
        assert_eq!(c.limits.bytes, Some(10_000_000));
        assert_eq!(c.limits.messages, Some(1000));
        assert_eq!((c.bytes, c.messages), (4996, 3));
        assert!(c.intact);
        // Dovecot's padded recalculation line and a header without a message limit.
        let c = parse(b"2048S\n       1024          2\n").unwrap();
        assert_eq!((c.bytes, c.messages, c.intact), (1024, 2, true));
    }

    #[test]
    fn torn_and_garbled_files() {
        assert_eq!(parse(b"1000S"), None);
        assert_eq!(parse(b"junk\n1 1\n"), None);
        let c = parse(b"1000S\n10 1\n5").unwrap();
        assert_eq!((c.bytes, c.intact), (10, false));
        let c = parse(b"1000S\n10 1\nx y\n").unwrap();
        assert!(!c.intact);
        let c = parse(b"1000S\n9223372036854775807 1\n1 1\n").unwrap();
        assert!(!c.intact);
        assert!(!parse(b"1000S\n1 2 3\n").unwrap().intact);
    }

    #[test]
    fn recalculation_rule() {
        let over = parse(b"100S\n200 1\n").unwrap();
        let under = parse(b"1000S\n200 1\n").unwrap();
        assert!(!must_recalculate(20, 0, Some(&over)));
        assert!(must_recalculate(20, STALE_SECS + 1, Some(&over)));
        assert!(!must_recalculate(20, STALE_SECS + 1, Some(&under)));
        assert!(must_recalculate(MAX_SIZE, 0, Some(&under)));
        assert!(must_recalculate(10, 0, None));
    }

    proptest! {
        #[test]
        fn written_files_read_back(
            b in proptest::option::of(1u64..1 << 50),
            c in proptest::option::of(1u64..1 << 30),
            base in 0u64..1 << 40,
            n in 0u64..1 << 20,
            deltas in proptest::collection::vec((-(1i64 << 30)..(1 << 30), -1i64..=1), 0..50),
        ) {
            let limits = Limits { bytes: b, messages: c };
            let mut text = render(&limits, base, n);
            let (mut sb, mut sn) = (base as i64, n as i64);
            for (db, dn) in &deltas {
                text.extend(delta_line(*db, *dn));
                sb += db;
                sn += dn;
            }
            let got = parse(&text).unwrap();
            prop_assert_eq!(got, Contents { limits, bytes: sb, messages: sn, intact: true });
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Some(c) = parse(&bytes) {
                let _ = must_recalculate(bytes.len() as u64, 0, Some(&c));
            }
        }

        #[test]
        fn a_torn_append_is_never_intact(cut in 1usize..8) {
            let mut text = render(&Limits { bytes: Some(1000), messages: None }, 10, 1);
            let line = delta_line(123456, 1);
            text.extend_from_slice(&line[..cut.min(line.len() - 1)]);
            prop_assert!(!parse(&text).unwrap().intact);
        }
    }
}
