//! The SMTP server session on arbitrary client bytes, cut into arbitrary pieces: no
//! panic, bounded buffering, every paused action answered, replies well formed.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use turnmail::auth::AuthVerdict;
use turnmail::smtp::{
    Action, MessageVerdict, RcptVerdict, Reply, SenderVerdict, Session, SessionConfig,
};

fuzz_target!(|data: &[u8]| {
    let Some((&cuts, rest)) = data.split_first() else {
        return;
    };
    let cfg = Arc::new(SessionConfig {
        max_message_size: 4096,
        starttls: true,
        etrn: true,
        auth: true,
        plaintext_auth: cuts & 1 == 1,
        // The submission role half of the time.
        auth_required: cuts & 2 == 2,
        check_sender: cuts & 4 == 4,
        ..SessionConfig::default()
    });
    let mut s = Session::new(cfg, false)
        .with_challenge("<1.2@fuzz>".into())
        .with_relay_client(cuts & 8 == 8);
    let step = usize::from(cuts).max(1);
    let mut delivered = 0usize;
    for piece in rest.chunks(step) {
        let mut off = 0;
        while off < piece.len() && !s.is_closed() {
            let taken = s.receive(&piece[off..]);
            off += taken;
            while let Some(a) = s.next_action() {
                match a {
                    Action::CheckSender { address } => {
                        let v = match address.first() {
                            Some(b'a') => SenderVerdict::Refused("not yours".into()),
                            Some(b'b') => SenderVerdict::Limited("too many".into()),
                            Some(b'c') => SenderVerdict::Temporary("later".into()),
                            _ => SenderVerdict::Accept,
                        };
                        s.answer_sender(v);
                    }
                    Action::CheckRecipient { address } => {
                        assert!(!address.iter().any(|&b| b < b' '));
                        let v = match address.first() {
                            Some(b'a') => RcptVerdict::NotOurs,
                            Some(b'b') => RcptVerdict::Unknown,
                            Some(b'c') => RcptVerdict::Temporary("later".into()),
                            Some(b'd') => RcptVerdict::Limited("too many".into()),
                            _ => RcptVerdict::Accept,
                        };
                        s.answer_recipient(v);
                    }
                    Action::Deliver { data, recipients, .. } => {
                        assert!(!recipients.is_empty());
                        assert!(!data.contains(&b'\r'));
                        assert!(data.len() <= 4096 + 16);
                        delivered += 1;
                        s.answer_message(MessageVerdict::Accepted { queue_id: delivered.to_string() });
                    }
                    Action::Etrn { .. } => s.answer_etrn(Reply::new(250, (2, 0, 0), "ok")),
                    Action::StartTls => s.tls_started(),
                    Action::Authenticate { login, .. } => {
                        assert!(!login.is_empty());
                        let v = match login.first() {
                            Some(b'a') => AuthVerdict::Accepted,
                            Some(b'b') => AuthVerdict::Temporary,
                            _ => AuthVerdict::Rejected,
                        };
                        s.answer_auth(v);
                    }
                    // No clock here: the pause is over at once.
                    Action::Pause(_) => s.resume(),
                    Action::Close
                    | Action::Refused { .. }
                    | Action::Penalize
                    | Action::ProtocolViolation { .. } => {}
                }
            }
            let out = s.take_output();
            // Every reply line is CRLF-terminated and starts with a code.
            for line in out.split_inclusive(|&b| b == b'\n') {
                assert!(line.ends_with(b"\r\n"), "{line:?}");
                assert!(line.len() >= 5 && line[..3].iter().all(u8::is_ascii_digit));
            }
            assert!(s.buffered() <= 128 * 1024, "buffered {}", s.buffered());
            if taken == 0 && off < piece.len() {
                // No room: the session must be waiting for nothing, so this is a bug.
                assert!(s.is_closed() || s.input_room() > 0);
                break;
            }
        }
    }
});
