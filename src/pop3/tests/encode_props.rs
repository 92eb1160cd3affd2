//! Properties of the RETR/TOP encoder: what it sends decodes back to the stored
//! message, its octet count is the size LIST advertises, TOP is a prefix cut at the
//! right line, and chunk boundaries never matter.

use proptest::prelude::*;

use super::crlf_size;
use crate::pop3::RetrEncoder;

/// The client's view: strip the terminator, unstuff, CRLF → LF.
fn decode(wire: &[u8]) -> Vec<u8> {
    let body = wire.strip_suffix(b".\r\n").expect("terminator");
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("every line ends in CRLF");
        let line = &rest[..end];
        out.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        out.push(b'\n');
        rest = &rest[end + 2..];
    }
    out
}

/// Dot-stuffing octets: one per line that starts with a dot after stuffing.
fn stuffed(wire: &[u8]) -> usize {
    let body = &wire[..wire.len() - 3];
    usize::from(body.starts_with(b"..")) + body.windows(3).filter(|w| w == b"\n..").count()
}

/// The expected TOP result, line by line: header through the first empty line, then
/// `k` lines.
fn reference_top(message: &[u8], k: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut in_header = true;
    let mut left = k;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if !in_header {
            if left == 0 {
                break;
            }
            left -= 1;
        }
        if line == b"\n" {
            in_header = false;
        }
        out.extend_from_slice(line);
    }
    if !out.is_empty() && out.last() != Some(&b'\n') {
        out.push(b'\n');
    }
    out
}

fn with_lf(message: &[u8]) -> Vec<u8> {
    let mut m = message.to_vec();
    if !m.is_empty() && m.last() != Some(&b'\n') {
        m.push(b'\n');
    }
    m
}

/// Bytes with plenty of line ends, dots and CRs.
fn message() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => Just(b'\n'),
        3 => Just(b'.'),
        2 => Just(b'\r'),
        8 => any::<u8>(),
        8 => b'a'..=b'z',
    ];
    proptest::collection::vec(byte, 0..400)
}

fn encode_in_pieces(message: &[u8], cuts: &[usize], top: Option<u64>) -> Vec<u8> {
    let mut encoder = RetrEncoder::new(top, false);
    let mut out = Vec::new();
    let mut rest = message;
    for &cut in cuts {
        let (piece, tail) = rest.split_at(cut.min(rest.len()));
        let before = out.len();
        encoder.feed(piece, &mut out);
        assert!(out.len() - before <= 2 * piece.len());
        rest = tail;
    }
    encoder.feed(rest, &mut out);
    encoder.finish(&mut out);
    out
}

proptest! {
    #[test]
    fn retr_decodes_to_the_message(m in message()) {
        let wire = RetrEncoder::encode_all(&m, None, false);
        prop_assert_eq!(decode(&wire), with_lf(&m));
    }

    #[test]
    fn retr_octets_are_the_listed_size(m in message()) {
        let wire = RetrEncoder::encode_all(&m, None, false);
        let sent = wire.len() - 3 - stuffed(&wire);
        prop_assert_eq!(sent as u64, crlf_size(&m));
    }

    #[test]
    fn top_matches_the_reference(m in message(), k in 0u64..12) {
        let wire = RetrEncoder::encode_all(&m, Some(k), false);
        prop_assert_eq!(decode(&wire), reference_top(&m, k));
    }

    #[test]
    fn top_with_enough_lines_is_retr(m in message(), extra in 0u64..3) {
        let lines = m.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
        prop_assert_eq!(
            RetrEncoder::encode_all(&m, Some(lines + extra), false),
            RetrEncoder::encode_all(&m, None, false)
        );
        prop_assert_eq!(
            RetrEncoder::encode_all(&m, Some(u64::MAX), false),
            RetrEncoder::encode_all(&m, None, false)
        );
    }

    #[test]
    fn top_zero_is_the_header_and_blank_line(
        header in proptest::collection::vec("[A-Za-z.][ -~]{0,30}", 0..8),
        body in message(),
    ) {
        let mut head = Vec::new();
        for line in &header {
            head.extend_from_slice(line.as_bytes());
            head.push(b'\n');
        }
        head.push(b'\n');
        let m = [head.as_slice(), &body].concat();
        let wire = RetrEncoder::encode_all(&m, Some(0), false);
        prop_assert_eq!(decode(&wire), head);
    }

    #[test]
    fn chunk_boundaries_never_matter(
        m in message(),
        cuts in proptest::collection::vec(0usize..50, 0..20),
        top in proptest::option::of(0u64..6),
    ) {
        let whole = RetrEncoder::encode_all(&m, top, false);
        prop_assert_eq!(encode_in_pieces(&m, &cuts, top), whole);
    }

    #[test]
    fn extra_blank_line_adds_one_crlf(m in message()) {
        let plain = RetrEncoder::encode_all(&m, None, false);
        let compat = RetrEncoder::encode_all(&m, None, true);
        prop_assert_eq!(compat.len(), plain.len() + 2);
        prop_assert!(compat.ends_with(b"\r\n\r\n.\r\n") || compat == b"\r\n.\r\n");
    }
}
