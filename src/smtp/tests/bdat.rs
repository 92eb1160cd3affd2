//! BDAT (RFC 3030): chunks, LAST, limits and failures; octets are always consumed.

use super::{Driver, codes, config, greeted, in_transaction};

#[test]
fn chunks_and_last() {
    let mut d = in_transaction();
    assert_eq!(
        d.send(b"BDAT 9\r\nSubject: "),
        "250 2.0.0 9 octets received\r\n"
    );
    // The chunk boundary falls inside CRLF, twice.
    assert_eq!(codes(&d.send(b"BDAT 4\r\nx\r\n\r")), ["250 2.0.0"]);
    assert_eq!(codes(&d.send(b"BDAT 8 LAST\r\n\n.body\r\n")), ["250 2.0.0"]);
    assert_eq!(d.deliveries.len(), 1);
    assert_eq!(d.deliveries[0].data, b"Subject: x\n\n.body\n");
    assert!(d.transcript.ends_with("250 2.0.0 Ok: queued as QID\r\n"));
    assert_eq!(codes(&d.send(b"RCPT TO:<a@b.c>\r\n")), ["503 5.5.1"]);
}

#[test]
fn pipelined_bytewise_and_zero_length_last() {
    let wire = b"EHLO c\r\nMAIL FROM:<s@a.test>\r\nRCPT TO:<r@b.test>\r\n\
                 BDAT 5\r\nab\r\ncBDAT 0 LAST\r\nNOOP\r\n";
    let mut whole = Driver::new(config());
    whole.send(wire);
    let mut bytewise = Driver::new(config());
    bytewise.send_bytewise(wire);
    assert_eq!(whole.transcript, bytewise.transcript);
    assert_eq!(whole.deliveries, bytewise.deliveries);
    assert_eq!(whole.deliveries[0].data, b"ab\nc");
    assert!(
        whole
            .transcript
            .ends_with("250 2.0.0 Ok: queued as QID\r\n250 2.0.0 Ok\r\n")
    );
}

#[test]
fn chunk_bytes_are_never_commands() {
    // Without MAIL, the chunk is still consumed: its content is not run.
    let mut d = greeted();
    let replies = d.send(b"BDAT 6\r\nQUIT\r\nNOOP\r\n");
    assert_eq!(codes(&replies), ["503 5.5.1", "250 2.0.0"]);
    assert!(!d.closed);
}

#[test]
fn failure_discards_the_rest_of_the_transaction() {
    let mut d = in_transaction();
    // Over the size limit (10 000): read, not stored, refused.
    let mut wire = b"BDAT 10001\r\n".to_vec();
    wire.extend_from_slice(&[b'x'; 10_001]);
    wire.extend_from_slice(b"BDAT 4 LAST\r\nQUIT");
    wire.extend_from_slice(b"NOOP\r\n");
    let replies = d.send(&wire);
    assert_eq!(codes(&replies), ["552 5.3.4", "503 5.5.1", "250 2.0.0"]);
    assert!(d.transcript.contains("Chunk discarded"));
    assert!(d.deliveries.is_empty());
    assert!(d.session.buffered() < 512 + 32 * 1024 + 100);
    // A new transaction works.
    d.send(b"MAIL FROM:<s@a.test>\r\nRCPT TO:<r@b.test>\r\nBDAT 2 LAST\r\nok");
    assert_eq!(d.deliveries.len(), 1);
}

#[test]
fn size_limit_across_chunks() {
    let mut d = in_transaction();
    let mut wire = b"BDAT 6000\r\n".to_vec();
    wire.extend_from_slice(&[b'x'; 6000]);
    assert_eq!(codes(&d.send(&wire)), ["250 2.0.0"]);
    let mut wire = b"BDAT 6000 LAST\r\n".to_vec();
    wire.extend_from_slice(&[b'x'; 6000]);
    assert_eq!(codes(&d.send(&wire)), ["552 5.3.4"]);
    assert!(d.deliveries.is_empty());
}

#[test]
fn huge_chunk_is_consumed_in_bounded_memory() {
    let mut d = in_transaction();
    let mut replies = d.send(b"BDAT 1000000 LAST\r\n");
    for _ in 0..100 {
        replies += &d.send(&[b'\n'; 10_000]);
        assert!(d.session.buffered() < 512 + 32 * 1024 + 100);
    }
    replies += &d.send(b"NOOP\r\n");
    assert_eq!(codes(&replies), ["552 5.3.4", "250 2.0.0"]);
}

#[test]
fn bare_line_endings_refused_at_last() {
    let mut d = in_transaction();
    assert_eq!(codes(&d.send(b"BDAT 3\r\na\nb")), ["250 2.0.0"]);
    assert_eq!(
        d.send(b"BDAT 2 LAST\r\n\r\n"),
        "550 5.6.11 Message contains bare CR or LF\r\n"
    );
    let mut d = in_transaction();
    assert_eq!(codes(&d.send(b"BDAT 2 LAST\r\na\r")), ["550 5.6.11"]);
}

#[test]
fn data_and_bdat_do_not_mix() {
    let mut d = in_transaction();
    d.send(b"BDAT 3\r\nabc");
    assert_eq!(codes(&d.send(b"DATA\r\n")), ["503 5.5.1"]);
    // The transaction survives the refused DATA.
    d.send(b"BDAT 0 LAST\r\n");
    assert_eq!(d.deliveries[0].data, b"abc");
}

#[test]
fn bdat_without_recipients() {
    let mut d = greeted();
    d.send(b"MAIL FROM:<s@a.test>\r\nRCPT TO:<unknown@b.test>\r\n");
    let replies = d.send(b"BDAT 3\r\nabcBDAT 1 LAST\r\nxNOOP\r\n");
    assert_eq!(codes(&replies), ["554 5.5.1", "503 5.5.1", "250 2.0.0"]);
}

/// Commands a smuggler would hide in a chunk.
const HIDDEN: &[u8] = b"RSET\r\nMAIL FROM:<x@evil.test>\r\nRCPT TO:<r@b.test>\r\nDATA\r\nSubject: smuggled\r\n\r\n.\r\n";

#[test]
fn a_bad_bdat_line_with_a_size_still_frames_its_octets() {
    for line in [
        "BDAT {} LASTX",
        "BDAT {} LAST junk",
        "BDAT {} FIRST",
        "BDAT {} LAST\0",
    ] {
        let mut d = in_transaction();
        let mut wire = line.replace("{}", &HIDDEN.len().to_string()).into_bytes();
        wire.extend_from_slice(b"\r\n");
        wire.extend_from_slice(HIDDEN);
        wire.extend_from_slice(b"NOOP\r\n");
        assert_eq!(
            codes(&d.send(&wire)),
            ["501 5.5.4", "250 2.0.0"],
            "{line:?}"
        );
        assert!(d.deliveries.is_empty(), "{line:?}");
        assert_eq!(
            d.recipients_checked.len(),
            1,
            "{line:?}: chunk bytes were run"
        );
        // The refused line ended the transaction; pipelined chunks of it are dropped.
        assert_eq!(codes(&d.send(b"BDAT 2 LAST\r\nok")), ["503 5.5.1"]);
        assert!(d.deliveries.is_empty());
    }
}

#[test]
fn a_bdat_without_a_readable_size_ends_the_session() {
    for size in [
        "99999999999999999999005",
        "18446744073709551616",
        "x",
        "-5",
        "",
    ] {
        let mut d = in_transaction();
        let mut wire = format!("BDAT {size} LAST\r\n").into_bytes();
        wire.extend_from_slice(HIDDEN);
        let replies = d.send(&wire);
        assert_eq!(codes(&replies), ["501 5.5.4", "421 4.5.0"], "{size:?}");
        assert!(replies.contains("Syntax: BDAT size [LAST]"));
        assert!(d.closed && d.deliveries.is_empty(), "{size:?}");
        assert_eq!(d.recipients_checked.len(), 1);
    }
}

#[test]
fn the_largest_size_is_a_size_not_an_error() {
    let mut d = in_transaction();
    let replies = d.send(b"BDAT 18446744073709551615 LAST\r\nabc");
    assert_eq!(replies, "");
    assert!(!d.closed);
    assert!(d.session.buffered() < 512 + 32 * 1024 + 100);
}
