//! Whole conversations: RFC 2645 §6's example with CRAM-MD5, the EHLO reply, HELO,
//! the commands ODMR refuses, and the limits.

use super::{
    CHALLENGE, Driver, SECRET, USER, b64, codes, config, cram_digest, cram_response, greeted,
};
use crate::odmr::{AtrnVerdict, Credential, Mechanism, OdmrConfig};

#[test]
fn rfc_2195_vector() {
    assert_eq!(
        cram_digest(SECRET, CHALLENGE),
        "b913a602c7eda7a495b4e6e7334d3890"
    );
    assert_eq!(
        cram_response(USER, SECRET),
        b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw\r\n"
    );
}

#[test]
fn cram_md5_conversation_ends_in_reverse() {
    let mut d = Driver::new(config());
    assert_eq!(d.transcript, "220 odmr.test ODMR service ready\r\n");
    assert_eq!(
        d.send(b"EHLO site.example.org\r\n"),
        "250-odmr.test\r\n250-AUTH CRAM-MD5\r\n250-STARTTLS\r\n\
         250-ENHANCEDSTATUSCODES\r\n250 ATRN\r\n"
    );
    assert_eq!(
        d.send(b"AUTH CRAM-MD5\r\n"),
        format!("334 {}\r\n", b64(CHALLENGE.as_bytes()))
    );
    assert_eq!(
        d.send(&cram_response(USER, SECRET)),
        "235 2.7.0 Authentication successful\r\n"
    );
    assert!(d.session.is_authenticated());
    let (mechanism, login, credential) = &d.auths[0];
    assert_eq!(*mechanism, Mechanism::CramMd5);
    assert_eq!(login, b"tim");
    assert_eq!(
        *credential,
        Credential::CramMd5 {
            challenge: CHALLENGE.into(),
            digest: "b913a602c7eda7a495b4e6e7334d3890".into()
        }
    );
    assert_eq!(
        d.send(b"ATRN example.org,example.com\r\n"),
        "250 2.0.0 OK now reversing the connection\r\n"
    );
    assert_eq!(d.atrns, [vec!["example.org", "example.com"]]);
    assert_eq!(d.reversed, 1);
    assert!(!d.closed, "a reversed session is handed over, not closed");
}

#[test]
fn byte_at_a_time_gives_the_same_transcript() {
    let script = [
        b"EHLO site.test\r\nNOOP\r\nAUTH CRAM-MD5\r\n".to_vec(),
        cram_response(USER, SECRET),
        b"RSET\r\nATRN\r\n".to_vec(),
    ]
    .concat();
    for verdict in [AtrnVerdict::Turn, AtrnVerdict::NoMail] {
        let mut whole = Driver::new(config());
        whole.atrn_verdict = verdict;
        // One command per packet: no PIPELINING is offered.
        for line in script.split_inclusive(|&b| b == b'\n') {
            whole.send(line);
        }
        let mut bytewise = Driver::new(config());
        bytewise.atrn_verdict = verdict;
        bytewise.send_bytewise(&script);
        assert_eq!(whole.transcript, bytewise.transcript);
        assert_eq!(whole.reversed, bytewise.reversed);
    }
}

#[test]
fn helo_answers_without_extensions_and_opens_no_auth() {
    let mut d = Driver::new(config());
    assert_eq!(d.send(b"HELO site.test\r\n"), "250 odmr.test\r\n");
    assert_eq!(
        codes(&d.send(b"AUTH CRAM-MD5\r\n")),
        ["503 5.5.1"],
        "extensions need EHLO"
    );
    assert_eq!(codes(&d.send(b"ATRN\r\n")), ["530 5.7.0"]);
    // EHLO afterwards opens AUTH, and a later HELO keeps the login.
    d.send(b"EHLO site.test\r\nAUTH CRAM-MD5\r\n");
    assert_eq!(codes(&d.send(&cram_response(USER, SECRET))), ["235 2.7.0"]);
    assert_eq!(d.send(b"HELO site.test\r\n"), "250 odmr.test\r\n");
    assert_eq!(codes(&d.send(b"ATRN\r\n")), ["250 2.0.0"]);
}

#[test]
fn auth_before_any_greeting_needs_ehlo() {
    let mut d = Driver::new(config());
    assert_eq!(codes(&d.send(b"AUTH PLAIN\r\n")), ["503 5.5.1"]);
}

#[test]
fn plaintext_policy_shapes_the_ehlo_reply() {
    let mut d = greeted(OdmrConfig {
        plaintext_auth: true,
        starttls: false,
        ..config()
    });
    let ehlo = d.send(b"EHLO again.test\r\n");
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN CRAM-MD5\r\n"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"));
    assert!(ehlo.ends_with("250 ATRN\r\n"));
}

#[test]
fn simple_commands() {
    let mut d = greeted(config());
    assert_eq!(d.send(b"NOOP\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(d.send(b"rset\r\n"), "250 2.0.0 Ok\r\n");
    assert_eq!(d.send(b"QUIT\r\n"), "221 2.0.0 Bye\r\n");
    assert!(d.closed);
    assert_eq!(d.session.receive(b"NOOP\r\n"), 6, "dropped after close");
    assert_eq!(d.session.next_action(), None);
}

#[test]
fn other_smtp_commands_get_502_and_garbage_500() {
    let mut d = greeted(config());
    for line in [
        &b"MAIL FROM:<a@b.test>\r\n"[..],
        b"RCPT TO:<a@b.test>\r\n",
        b"DATA\r\n",
        b"ETRN @b.test\r\n",
        b"TURN\r\n",
        b"VRFY x\r\n",
    ] {
        assert_eq!(codes(&d.send(line)), ["502 5.5.1"], "{line:?}");
    }
    assert_eq!(codes(&d.send(b"HELLO\r\n")), ["500 5.5.2"]);
    assert_eq!(d.refused.len(), 7);
    assert_eq!(d.refused[0].0, "MAIL FROM:<a@b.test>");
}

#[test]
fn long_lines_are_refused_and_skipped() {
    let mut d = greeted(config());
    let mut line = b"NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 600));
    line.extend_from_slice(b"\r\nNOOP\r\n");
    assert_eq!(codes(&d.send(&line)), ["500 5.5.2", "250 2.0.0"]);
    // The same, arriving in pieces: the tail of the long line is not a command.
    let mut d = greeted(config());
    let out = d.send_bytewise(&line);
    assert_eq!(codes(&out), ["500 5.5.2", "250 2.0.0"]);
    // 512 octets with the CRLF is still fine.
    let mut ok = b"NOOP ".to_vec();
    ok.extend(std::iter::repeat_n(b'y', 512 - 7));
    ok.extend_from_slice(b"\r\n");
    assert_eq!(codes(&d.send(&ok)), ["250 2.0.0"]);
    ok.insert(5, b'y');
    assert_eq!(codes(&d.send(&ok)), ["500 5.5.2"]);
}

#[test]
fn too_many_errors_close_with_421() {
    let mut d = greeted(config());
    let mut out = String::new();
    for _ in 0..10 {
        out.push_str(&d.send(b"DATA\r\n"));
    }
    assert_eq!(codes(&out).last().map(String::as_str), Some("421 4.7.0"));
    assert!(d.closed);
    assert_eq!(d.session.input_room(), 0);
}

#[test]
fn idle_timeout() {
    let mut d = greeted(config());
    d.session.timeout();
    d.run();
    assert!(
        d.transcript
            .ends_with("421 4.4.2 Idle timeout, closing connection\r\n")
    );
    assert!(d.closed);
}

#[test]
fn replies_cannot_be_forged_by_input() {
    let mut d = greeted(config());
    let out = d.send(b"MAIL FROM:<a\r@b>\r\n");
    assert_eq!(codes(&out), ["501 5.5.4"]);
    assert!(!d.refused[0].0.contains('\r'));
}
