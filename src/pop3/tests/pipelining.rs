//! Framing and pipelining (RFC 2449 §6.6): many commands per packet, any packet
//! boundaries, replies in order, bounded buffers, over-long lines, and STLS injection.

use std::sync::Arc;

use super::{Driver, config, connection, stored};
use crate::pop3::{Action, Pop3Config, Session};

const SESSION: &[u8] = b"CAPA\r\nUSER alice\r\nPASS secret\r\nSTAT\r\nRETR 1\r\nRETR 2\r\n\
TOP 3 0\r\nUIDL 2\r\nDELE 1\r\nLIST\r\nRETR 1\r\nLAST\r\nRSET\r\nQUIT\r\n";

#[test]
fn a_whole_session_in_one_packet() {
    let mut d = Driver::new(config());
    let out = d.send(SESSION);
    let expected = [
        "+OK Capability list follows\r\n",
        "+OK Logged in, 3 messages (101 octets)\r\n",
        "+OK 3 101\r\n",
        "+OK 28 octets\r\nSubject: one\r\n\r\nfirst body\r\n.\r\n",
        "+OK 43 octets\r\nSubject: two\r\n\r\n..dot line\r\nline 2\r\nline 3\r\n.\r\n",
        "+OK Top of message follows\r\nSubject: three\r\n\r\n.\r\n",
        "+OK 2 1001.M1P1Q2.host\r\n",
        "+OK Message 1 deleted\r\n",
        "+OK 2 messages (73 octets)\r\n2 43\r\n3 30\r\n.\r\n",
        "-ERR Message already deleted\r\n",
        "+OK 1\r\n",
        "+OK Maildrop has 3 messages (101 octets)\r\n",
        "+OK Logging out\r\n",
    ];
    let mut rest = out.as_str();
    for part in expected {
        let at = rest
            .find(part)
            .unwrap_or_else(|| panic!("{part:?} missing in {rest:?}"));
        rest = &rest[at + part.len()..];
    }
    assert!(rest.is_empty(), "{rest:?}");
    assert_eq!(d.updates, [(vec![], vec![0, 2])]);
}

#[test]
fn byte_at_a_time_gives_the_same_output() {
    let b64 = "AGFsaWNlAHNlY3JldA==";
    let inputs: Vec<Vec<u8>> = vec![
        SESSION.to_vec(),
        format!("AUTH PLAIN\r\n{b64}\r\nSTAT\r\nRETR 2\r\nQUIT\r\n").into_bytes(),
        b"NOOP\nUSER alice\nPASS secret\nLIST 9\nTOP 2 1\r\nQUIT\n".to_vec(),
        [
            b"NOOP ".as_slice(),
            &[b'x'; 600],
            b"\r\nNOOP\r\nXYZ\r\nQUIT\r\n",
        ]
        .concat(),
    ];
    for input in inputs {
        let mut whole = Driver::new(config());
        let mut bytewise = Driver::new(config());
        let mut chunky = Driver::new(config());
        chunky.chunk = 1;
        whole.chunk = 10_000;
        whole.send(&input);
        bytewise.send_bytewise(&input);
        for piece in input.chunks(7) {
            chunky.send(piece);
        }
        assert_eq!(whole.transcript, bytewise.transcript);
        assert_eq!(whole.transcript, chunky.transcript);
        assert_eq!(whole.updates, bytewise.updates);
        assert!(whole.closed && bytewise.closed && chunky.closed);
    }
}

#[test]
fn bare_lf_is_a_line_end() {
    let mut d = Driver::new(config());
    assert_eq!(d.send(b"NOOP\nnoop\r\n"), "+OK\r\n+OK\r\n");
}

#[test]
fn over_long_lines_are_refused_and_skipped() {
    let mut d = Driver::new(config());
    let mut line = b"USER ".to_vec();
    line.extend(std::iter::repeat_n(b'a', 300));
    line.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(d.send(&line), "-ERR Line too long\r\n+OK\r\n");
    // Longer than the whole buffer, in pieces, without its LF for a while.
    let mut d = Driver::new(config());
    let mut total = 0;
    for _ in 0..100 {
        let out = d.send(&[b'z'; 1000]);
        total += out.matches("-ERR Line too long").count();
        assert!(d.session.buffered() <= 256 + 4096);
    }
    assert_eq!(d.send(b"zz\r\nNOOP\r\n"), "+OK\r\n");
    assert_eq!(total, 1);
    // A line of exactly the limit (CRLF included) is fine; one more byte is not.
    let mut d = Driver::new(config());
    let ok = format!("USER {}\r\n", "b".repeat(256 - 7));
    assert_eq!(d.send(ok.as_bytes()), "+OK Send PASS\r\n");
    let long = format!("USER {}\r\n", "b".repeat(256 - 6));
    assert_eq!(d.send(long.as_bytes()), "-ERR Line too long\r\n");
}

#[test]
fn too_many_bad_commands_close() {
    let mut d = Driver::new(config());
    let out = d.send(&b"XYZZY\r\n".repeat(12));
    assert_eq!(out.matches("-ERR Unknown command").count(), 10);
    assert!(d.closed);
    assert_eq!(d.refused.len(), 10);
}

#[test]
fn pipelined_listings_wait_for_the_shell_to_write() {
    let mut d = Driver::new(config());
    let many: Vec<_> = (0..2000)
        .map(|i| stored(&format!("{i}.M1P1Q1.host"), b"x\n", false))
        .collect();
    d.mailbox = Ok(many);
    d.send(b"USER alice\r\nPASS secret\r\n");
    let out = d.send(&b"LIST\r\n".repeat(200));
    assert_eq!(out.matches("+OK 2000 messages (6000 octets)").count(), 200);
    assert!(d.flushes > 0);
    let one_list = out.len() / 200;
    assert!(d.max_output <= 64 * 1024 + one_list, "{}", d.max_output);
}

#[test]
fn pipelined_input_is_bounded() {
    let mut s = Session::new(Arc::new(config()), connection());
    // Paused on a login, the session buffers at most max_line + max_pipelined.
    let mut taken = s.receive(b"USER alice\r\nPASS secret\r\n");
    assert!(matches!(s.next_action(), Some(Action::Authenticate { .. })));
    for _ in 0..10 {
        taken += s.receive(&[b'\n'; 1000]);
    }
    assert_eq!(s.input_room(), 0);
    assert_eq!(taken, 25 + 256 + 4096);
    assert!(s.buffered() <= 256 + 4096);
}

#[test]
fn nothing_pipelined_after_stls_is_read() {
    let mut d = Driver::new(config());
    let out = d.send(b"STLS\r\nUSER evil\r\nPASS secret\r\nCAPA\r\n");
    assert_eq!(out, "+OK Begin TLS negotiation\r\n");
    assert_eq!(d.starttls, 1);
    assert!(d.auths.is_empty());
    assert_eq!(d.send(b"PASS secret\r\n"), "-ERR USER first\r\n");
    // Bytes arriving during the handshake are dropped too.
    let mut s = Session::new(Arc::new(config()), connection());
    s.receive(b"STLS\r\n");
    assert_eq!(s.next_action(), Some(Action::StartTls));
    assert_eq!(s.receive(b"USER evil\r\nPASS x\r\n"), 19);
    s.tls_started();
    assert_eq!(s.next_action(), None);
    s.take_output();
    s.receive(b"NOOP\r\n");
    assert_eq!(s.next_action(), None);
    assert_eq!(s.take_output(), b"+OK\r\n");
}

#[test]
fn auth_continuation_can_be_pipelined() {
    let mut d = Driver::new(Pop3Config {
        plaintext_allowed: true,
        ..config()
    });
    assert_eq!(
        d.send(b"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nSTAT\r\n"),
        "+ \r\n+OK Logged in, 3 messages (101 octets)\r\n+OK 3 101\r\n"
    );
}
