//! Sans-IO tests of the session: exact bytes on the wire and the mis-sync checks,
//! with replies chosen byte by byte (the fake server is too well-behaved for these).

use std::time::Duration;

use super::{
    Action, ClientOptions, MessageHead, NotSent, Outcome, ProtocolError, Session, SessionError,
    TlsPolicy,
};

const EHLO_ALL: &[u8] = b"250-fake\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 STARTTLS\r\n";
const EHLO_PIPE: &[u8] = b"250-fake\r\n250 PIPELINING\r\n";

fn opts(tls: TlsPolicy) -> ClientOptions {
    let mut o = ClientOptions::new("me.example");
    o.tls = tls;
    o
}

/// Takes everything the session wants written, as if written at once.
fn written(s: &mut Session) -> String {
    let out = s.output().to_vec();
    s.wrote(out.len());
    String::from_utf8_lossy(&out).into_owned()
}

fn head(i: usize) -> MessageHead {
    MessageHead {
        sender: format!("s{i}@x").into_bytes(),
        recipients: vec![format!("r{i}@y").into_bytes()],
        size: None,
    }
}

/// Greeting and EHLO done; the session is ready for mail.
fn ready(ehlo: &[u8]) -> Session {
    let mut s = Session::new(&opts(TlsPolicy::Off));
    assert!(matches!(s.next_action(), Action::Read(_)));
    s.feed(b"220 hi\r\n");
    assert_eq!(s.next_action(), Action::Write);
    assert_eq!(written(&mut s), "EHLO me.example\r\n");
    s.feed(ehlo);
    s
}

/// Starts a message with a short body and ends it.
fn send(s: &mut Session, i: usize) {
    assert_eq!(s.next_action(), Action::NextMessage);
    s.start_message(head(i));
    assert_eq!(s.next_action(), Action::Body);
    s.push_body(b"hi\n");
    s.end_body();
}

fn error(s: &mut Session) -> Option<SessionError> {
    s.take_error()
}

#[test]
fn chunking_pipeline_bytes_and_rset_placement() {
    let mut s = ready(EHLO_ALL);
    send(&mut s, 1);
    send(&mut s, 2);
    assert_eq!(s.next_action(), Action::NextMessage);
    s.no_more_messages();
    assert_eq!(s.next_action(), Action::Write);
    assert_eq!(
        written(&mut s),
        "MAIL FROM:<s1@x>\r\nRCPT TO:<r1@y>\r\nBDAT 4 LAST\r\nhi\r\n\
         RSET\r\nMAIL FROM:<s2@x>\r\nRCPT TO:<r2@y>\r\nBDAT 4 LAST\r\nhi\r\nQUIT\r\n"
    );
    assert_eq!(s.next_action(), Action::Read(Duration::from_secs(60)));
    s.feed(b"250 a\r\n550 5.1.1 no\r\n554 5.5.1 no rcpt\r\n250 r\r\n250 m\r\n250 r\r\n");
    assert!(matches!(s.take_outcome(), Some((0, Outcome::Permanent(r))) if r.code == 550));
    // The LAST reply of message 2 is still out: a long wait.
    assert_eq!(s.next_action(), Action::Read(Duration::from_secs(300)));
    s.feed(b"250 queued\r\n221 bye\r\n");
    assert!(matches!(s.take_outcome(), Some((1, Outcome::Delivered(_)))));
    assert_eq!(s.next_action(), Action::Done);
    assert!(error(&mut s).is_none());
}

#[test]
fn pipelined_data_waits_for_354_and_rsets_only_after_failure() {
    let mut s = ready(EHLO_PIPE);
    assert_eq!(s.next_action(), Action::NextMessage);
    s.start_message(head(1));
    assert_eq!(s.next_action(), Action::Write);
    assert_eq!(
        written(&mut s),
        "MAIL FROM:<s1@x>\r\nRCPT TO:<r1@y>\r\nDATA\r\n"
    );
    // MAIL refused: nothing may follow until DATA's own reply is in.
    s.feed(b"452 4.3.1 full\r\n503 need mail\r\n");
    assert!(matches!(s.next_action(), Action::Read(_)));
    assert!(s.output().is_empty());
    s.feed(b"503 need mail\r\n");
    assert_eq!(s.next_action(), Action::NextMessage);
    assert!(matches!(s.take_outcome(), Some((0, Outcome::Temporary(r))) if r.code == 452));
    s.start_message(head(2));
    assert_eq!(s.next_action(), Action::Write);
    assert_eq!(
        written(&mut s),
        "RSET\r\nMAIL FROM:<s2@x>\r\nRCPT TO:<r2@y>\r\nDATA\r\n"
    );
    s.feed(b"250 ok\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    assert_eq!(s.next_action(), Action::Body);
    s.push_body(b".x\n");
    s.end_body();
    // The next message's commands join the end of data in the same write.
    assert_eq!(s.next_action(), Action::NextMessage);
    s.start_message(head(3));
    assert_eq!(s.next_action(), Action::Write);
    assert_eq!(
        written(&mut s),
        "..x\r\n.\r\nMAIL FROM:<s3@x>\r\nRCPT TO:<r3@y>\r\nDATA\r\n"
    );
    s.feed(b"250 queued\r\n250 ok\r\n250 ok\r\n354 go\r\n");
    assert!(matches!(s.take_outcome(), Some((1, Outcome::Delivered(_)))));
}

#[test]
fn reply_before_its_command_was_written() {
    let mut s = Session::new(&opts(TlsPolicy::Off));
    s.feed(b"220 hi\r\n250 too early\r\n");
    assert!(matches!(
        error(&mut s),
        Some(SessionError::Protocol(ProtocolError::Premature(_)))
    ));
}

#[test]
fn surplus_reply_is_detected() {
    let mut s = ready(EHLO_PIPE);
    s.feed(b"250 who asked?\r\n");
    assert!(matches!(
        error(&mut s),
        Some(SessionError::Protocol(ProtocolError::Unsolicited(_)))
    ));
}

#[test]
fn shifted_replies_are_detected() {
    // One reply too many early on shifts the rest: MAIL refused, then RCPT "accepted".
    let mut s = ready(EHLO_ALL);
    send(&mut s, 1);
    written(&mut s);
    s.feed(b"550 no\r\n250 ok\r\n");
    assert!(matches!(
        error(&mut s),
        Some(SessionError::Protocol(
            ProtocolError::AcceptedAfterRefusal { .. }
        ))
    ));
    assert_eq!(
        s.take_outcome(),
        Some((
            0,
            Outcome::Permanent(super::Reply {
                code: 550,
                enhanced: None,
                lines: vec!["no".into()]
            })
        ))
    );
}

#[test]
fn impossible_replies() {
    let mut s = ready(EHLO_PIPE);
    assert_eq!(s.next_action(), Action::NextMessage);
    s.start_message(head(1));
    assert_eq!(s.next_action(), Action::Write);
    written(&mut s);
    s.feed(b"250 ok\r\n250 ok\r\n250 ok\r\n");
    assert!(matches!(
        error(&mut s),
        Some(SessionError::Protocol(ProtocolError::UnexpectedReply {
            command: "DATA",
            ..
        }))
    ));
    // Commands were all sent, but no data: not delivered.
    assert_eq!(
        s.take_outcome(),
        Some((0, Outcome::NotAttempted(NotSent::SessionEnded)))
    );
}

#[test]
fn starttls_injection_and_reehlo() {
    let mut s = Session::new(&opts(TlsPolicy::Required));
    s.feed(b"220 hi\r\n");
    written(&mut s);
    s.feed(EHLO_ALL);
    assert_eq!(s.next_action(), Action::Write);
    assert_eq!(written(&mut s), "STARTTLS\r\n");
    s.feed(b"220 go\r\n250 injected\r\n");
    assert!(matches!(
        error(&mut s),
        Some(SessionError::Protocol(
            ProtocolError::InjectionAfterStartTls
        ))
    ));

    let mut s = Session::new(&opts(TlsPolicy::Required));
    s.feed(b"220 hi\r\n");
    written(&mut s);
    s.feed(EHLO_ALL);
    written(&mut s);
    s.feed(b"220 go\r\n");
    assert_eq!(s.next_action(), Action::StartTls);
    s.tls_established();
    assert!(s.tls_active());
    assert_eq!(s.next_action(), Action::Write);
    assert_eq!(written(&mut s), "EHLO me.example\r\n");
    s.feed(EHLO_PIPE);
    assert_eq!(s.next_action(), Action::NextMessage);
}

#[test]
fn quit_reply_must_be_221_but_may_not_come() {
    let mut s = ready(EHLO_PIPE);
    assert_eq!(s.next_action(), Action::NextMessage);
    s.no_more_messages();
    assert_eq!(written(&mut s), "");
    assert_eq!(s.next_action(), Action::Write);
    assert_eq!(written(&mut s), "QUIT\r\n");
    assert_eq!(s.next_action(), Action::Read(Duration::from_secs(5)));
    s.timed_out();
    assert_eq!(s.next_action(), Action::Done);
    assert!(error(&mut s).is_none());

    let mut s = ready(EHLO_PIPE);
    s.next_action();
    s.no_more_messages();
    s.next_action();
    written(&mut s);
    s.feed(b"250 leftover\r\n");
    assert!(error(&mut s).is_some());
}

#[test]
fn big_body_goes_in_several_chunks_and_stops_after_a_refusal() {
    let mut s = ready(EHLO_ALL);
    assert_eq!(s.next_action(), Action::NextMessage);
    s.start_message(head(1));
    let piece = vec![b'a'; 40 * 1024];
    for _ in 0..2 {
        assert_eq!(s.next_action(), Action::Body);
        s.push_body(&piece);
    }
    let out = written(&mut s);
    assert!(
        out.contains(&format!("BDAT {}\r\n", 80 * 1024)),
        "one chunk of 80 KiB"
    );
    // The server refuses the RCPT: no more chunks, no LAST, RSET before the next one.
    s.feed(b"250 ok\r\n550 no\r\n554 no\r\n");
    assert_eq!(s.next_action(), Action::NextMessage);
    assert!(matches!(s.take_outcome(), Some((0, Outcome::Permanent(r))) if r.code == 550));
    s.start_message(head(2));
    assert_eq!(s.next_action(), Action::Body);
    s.end_body();
    s.no_more_messages();
    s.next_action();
    assert!(written(&mut s).starts_with("RSET\r\nMAIL FROM:<s2@x>\r\n"));
}

#[test]
fn window_limits_messages_in_flight() {
    let mut o = opts(TlsPolicy::Off);
    o.window.messages = 3;
    let mut s = Session::new(&o);
    s.feed(b"220 hi\r\n");
    written(&mut s);
    s.feed(EHLO_ALL);
    for i in 0..3 {
        send(&mut s, i);
    }
    assert_eq!(s.next_action(), Action::Write);
    written(&mut s);
    assert!(matches!(s.next_action(), Action::Read(_)));
    s.feed(b"250 m\r\n250 r\r\n250 d\r\n");
    assert_eq!(s.next_action(), Action::NextMessage);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    /// Weighted towards the replies that keep a session going.
    const LINES: &[&str] = &[
        "220 hi\r\n",
        "250 ok\r\n",
        "250 ok\r\n",
        "250 ok\r\n",
        "250 ok\r\n",
        "354 go\r\n",
        "250-fake\r\n",
        "250-PIPELINING\r\n",
        "250-CHUNKING\r\n",
        "250 STARTTLS\r\n",
        "354 go\r\n",
        "221 bye\r\n",
        "421 closing\r\n",
        "452 later\r\n",
        "503 sequence\r\n",
        "550 no\r\n",
        "garbage\r\n",
    ];

    proptest! {
        /// Whatever the server says, the session ends or waits, never panics, and
        /// every message it took gets exactly one outcome, in order.
        #[test]
        fn any_server_talk(
            picks in proptest::collection::vec(0..LINES.len(), 0..60),
            cuts in proptest::collection::vec(1usize..20, 0..60),
            pipelining in any::<bool>(),
            chunking in any::<bool>(),
            tls in any::<bool>(),
        ) {
            let mut input = b"220 hi\r\n".to_vec();
            input.extend_from_slice(EHLO_ALL);
            input.extend(picks.iter().flat_map(|&i| LINES[i].bytes()));
            let mut o = opts(if tls { TlsPolicy::Opportunistic } else { TlsPolicy::Off });
            o.pipelining = pipelining;
            o.chunking = chunking;
            o.window.messages = 3;
            let mut s = Session::new(&o);
            let (mut at, mut cut, mut started, mut outcomes) = (0, 0, 0, Vec::new());
            for _ in 0..2000 {
                while let Some((i, _)) = s.take_outcome() {
                    outcomes.push(i);
                }
                match s.next_action() {
                    Action::Done => break,
                    Action::Write => {
                        let n = s.output().len();
                        s.wrote(n);
                    }
                    Action::Read(_) if at >= input.len() => s.eof(),
                    Action::Read(_) => {
                        let n = cuts.get(cut).copied().unwrap_or(7).min(input.len() - at);
                        cut += 1;
                        s.feed(&input[at..at + n]);
                        at += n;
                    }
                    Action::NextMessage if started < 5 => {
                        s.start_message(head(started));
                        started += 1;
                    }
                    Action::NextMessage => s.no_more_messages(),
                    Action::Body => {
                        s.push_body(b"line\n.dot\n");
                        s.end_body();
                    }
                    Action::StartTls => s.tls_established(),
                }
            }
            while let Some((i, _)) = s.take_outcome() {
                outcomes.push(i);
            }
            prop_assert_eq!(s.next_action(), Action::Done);
            prop_assert_eq!(outcomes, (0..started).collect::<Vec<_>>());
        }
    }
}

/// Greeting, EHLO, STARTTLS and the EHLO under TLS (answered with `ehlo_tls`), for a
/// session with a login.
fn under_tls_with_login(ehlo_tls: &[u8]) -> Session {
    let mut o = opts(TlsPolicy::Required);
    o.auth = Some(super::Credentials {
        user: "me@isp.example".into(),
        password: "s3cret".into(),
    });
    let mut s = Session::new(&o);
    s.feed(b"220 hi\r\n");
    written(&mut s);
    s.feed(EHLO_ALL);
    assert_eq!(written(&mut s), "STARTTLS\r\n");
    s.feed(b"220 go\r\n");
    assert_eq!(s.next_action(), Action::StartTls);
    s.tls_established();
    assert_eq!(s.next_action(), Action::Write);
    assert_eq!(written(&mut s), "EHLO me.example\r\n");
    s.feed(ehlo_tls);
    s
}

#[test]
fn auth_plain_after_starttls_before_any_mail() {
    let mut s = under_tls_with_login(b"250-fake\r\n250-PIPELINING\r\n250 AUTH LOGIN PLAIN\r\n");
    assert_eq!(s.next_action(), Action::Write);
    // base64 of "\0me@isp.example\0s3cret"
    assert_eq!(
        written(&mut s),
        "AUTH PLAIN AG1lQGlzcC5leGFtcGxlAHMzY3JldA==\r\n"
    );
    assert!(matches!(s.next_action(), Action::Read(_)));
    s.feed(b"235 2.7.0 ok\r\n");
    assert_eq!(s.next_action(), Action::NextMessage);
    assert!(
        format!(
            "{:?}",
            super::Credentials {
                user: "u".into(),
                password: "s3cret".into()
            }
        )
        .contains("hidden")
    );
}

#[test]
fn auth_login_when_it_is_all_the_server_offers() {
    let mut s = under_tls_with_login(b"250-fake\r\n250 AUTH=LOGIN\r\n");
    assert_eq!(written(&mut s), "AUTH LOGIN\r\n");
    s.feed(b"334 VXNlcm5hbWU6\r\n");
    assert_eq!(s.next_action(), Action::Write);
    assert_eq!(written(&mut s), "bWVAaXNwLmV4YW1wbGU=\r\n");
    s.feed(b"334 UGFzc3dvcmQ6\r\n");
    assert_eq!(s.next_action(), Action::Write);
    assert_eq!(written(&mut s), "czNjcmV0\r\n");
    s.feed(b"235 ok\r\n");
    assert_eq!(s.next_action(), Action::NextMessage);
}

#[test]
fn a_refused_or_impossible_login_sends_no_mail() {
    let mut s = under_tls_with_login(b"250-fake\r\n250 AUTH PLAIN\r\n");
    written(&mut s);
    s.feed(b"535 5.7.8 bad credentials\r\n");
    assert!(matches!(error(&mut s), Some(SessionError::AuthRefused(r)) if r.code == 535));
    assert_eq!(written(&mut s), "QUIT\r\n");

    let mut s = under_tls_with_login(b"250-fake\r\n250 PIPELINING\r\n");
    assert!(matches!(error(&mut s), Some(SessionError::AuthUnavailable)));
    assert_eq!(written(&mut s), "QUIT\r\n");

    // A login without TLS: the password never goes out in clear text.
    let mut o = opts(TlsPolicy::Off);
    o.auth = Some(super::Credentials {
        user: "u".into(),
        password: "p".into(),
    });
    let mut s = Session::new(&o);
    s.feed(b"220 hi\r\n");
    written(&mut s);
    s.feed(b"250-fake\r\n250 AUTH PLAIN\r\n");
    assert!(matches!(error(&mut s), Some(SessionError::AuthNeedsTls)));
    let out = written(&mut s);
    assert_eq!(out, "QUIT\r\n");
}
