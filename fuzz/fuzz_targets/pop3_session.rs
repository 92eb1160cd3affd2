//! The POP3 server session on arbitrary client bytes, cut into arbitrary pieces, with
//! the shell's answers chosen by the input too: no panic, bounded buffering, replies
//! well formed, UPDATE only with valid message numbers and never before QUIT.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use turnmail::pop3::{
    Action, AuthVerdict, Connection, MaildropError, MessageInfo, Pop3Config, RetrieveError,
    Session, UpdateReport,
};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let cfg = Arc::new(Pop3Config {
        stls_available: knobs & 1 != 0,
        plaintext_allowed: knobs & 2 != 0,
        compat_extra_blank_line: knobs & 4 != 0,
        max_pipelined: 4096,
        ..Pop3Config::default()
    });
    let conn = Connection {
        tls_active: knobs & 8 != 0,
        loopback: knobs & 16 != 0,
        apop_timestamp: (knobs & 32 != 0).then(|| "<1.2.3@fuzz>".to_string()),
    };
    let step = usize::from(knobs >> 5).max(1) * 7;
    let messages = 5usize;
    let mut s = Session::new(cfg, conn);
    let mut retrieving = false;
    for piece in rest.chunks(step) {
        let mut off = 0;
        while off < piece.len() && !s.is_closed() {
            let taken = s.receive(&piece[off..]);
            off += taken;
            while let Some(a) = s.next_action() {
                match a {
                    Action::Authenticate { login, .. } => {
                        let v = match login.first() {
                            Some(b'r') => AuthVerdict::Rejected,
                            Some(b't') => AuthVerdict::Temporary("later".into()),
                            _ => AuthVerdict::Accepted,
                        };
                        s.answer_auth(v);
                    }
                    Action::OpenMaildrop => {
                        let r = match knobs % 7 {
                            0 => Err(MaildropError::InUse),
                            1 => Err(MaildropError::Temporary("t".into())),
                            _ => Ok((0..messages)
                                .map(|i| MessageInfo {
                                    uidl: format!("{i}.M{i}P1.fuzz"),
                                    size: 10 + i as u64,
                                    in_new: i % 2 == 0,
                                })
                                .collect()),
                        };
                        s.answer_maildrop(r);
                    }
                    Action::Retrieve { index, .. } => {
                        assert!(index < messages);
                        assert!(!retrieving);
                        if index == 3 {
                            s.retrieve_failed(RetrieveError::Gone);
                        } else {
                            let Some(mut enc) = s.retrieve_opened() else {
                                continue;
                            };
                            let mut out = s.take_output();
                            enc.feed(b"Subject: x\n\n.dot line\nbody\n", &mut out);
                            enc.finish(&mut out);
                            assert!(out.ends_with(b"\r\n.\r\n"));
                            s.retrieve_done();
                        }
                        retrieving = false;
                    }
                    Action::Update { delete, seen } => {
                        assert!(delete.iter().chain(&seen).all(|&i| i < messages));
                        assert!(delete.iter().all(|i| !seen.contains(i)));
                        s.answer_update(UpdateReport::default());
                    }
                    Action::StartTls => s.tls_started(),
                    Action::Flush | Action::Close | Action::Refused { .. } => {}
                }
            }
            let out = s.take_output();
            // Single-line replies and multi-line bodies end in CRLF; nothing bare.
            if !out.is_empty() {
                assert!(out.ends_with(b"\r\n"), "{out:?}");
            }
            assert!(s.buffered() <= 1024 + 4096, "buffered {}", s.buffered());
            if taken == 0 && off < piece.len() {
                assert!(s.is_closed() || s.input_room() > 0);
                break;
            }
        }
    }
    s.timeout();
    assert!(s.is_closed());
});
