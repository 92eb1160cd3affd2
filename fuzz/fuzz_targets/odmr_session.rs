//! The ODMR server session on arbitrary client bytes, cut into arbitrary pieces, with
//! verdicts chosen by the input: no panic, bounded buffering, replies well formed with
//! three-digit codes, and no ATRN turn without an accepted AUTH.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use turnmail::odmr::{Action, AtrnVerdict, AuthVerdict, Connection, OdmrConfig, Session};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let cfg = Arc::new(OdmrConfig {
        starttls: knobs & 1 != 0,
        plaintext_auth: knobs & 2 != 0,
        ..OdmrConfig::default()
    });
    let conn = Connection {
        tls_active: knobs & 4 != 0,
        challenge: "<1.2.3@fuzz>".to_string(),
    };
    let step = usize::from(knobs >> 3).max(1) * 3;
    let mut s = Session::new(cfg, conn);
    let mut accepted = false;
    for piece in rest.chunks(step) {
        let mut off = 0;
        while off < piece.len() && !s.is_closed() && !s.is_reversed() {
            let taken = s.receive(&piece[off..]);
            off += taken;
            while let Some(a) = s.next_action() {
                match a {
                    Action::Authenticate { login, .. } => {
                        let v = match login.first() {
                            Some(b'r') => AuthVerdict::Rejected,
                            Some(b't') => AuthVerdict::Temporary,
                            _ => AuthVerdict::Accepted,
                        };
                        accepted = v == AuthVerdict::Accepted;
                        s.answer_auth(v);
                    }
                    Action::Atrn { domains } => {
                        assert!(accepted && s.is_authenticated());
                        assert!(domains.iter().all(|d| !d.is_empty() && !d.contains(',')));
                        let v = match domains.len() % 5 {
                            0 => AtrnVerdict::Turn,
                            1 => AtrnVerdict::NoMail,
                            2 => AtrnVerdict::NotEntitled,
                            3 => AtrnVerdict::RateLimited,
                            _ => AtrnVerdict::Temporary,
                        };
                        s.answer_atrn(v);
                    }
                    Action::StartTls => {
                        s.tls_started();
                        // STARTTLS drops an earlier AUTH.
                        accepted = false;
                    }
                    Action::Reverse => assert!(s.is_reversed()),
                    Action::Close | Action::Refused { .. } => {}
                }
            }
            let out = s.take_output();
            for line in out.split_inclusive(|&b| b == b'\n') {
                assert!(line.ends_with(b"\r\n"), "{line:?}");
                assert!(line.len() >= 5 && line[..3].iter().all(u8::is_ascii_digit));
            }
            assert!(s.buffered() <= 512 + 4096, "buffered {}", s.buffered());
            if taken == 0 && off < piece.len() {
                assert!(s.is_closed() || s.is_reversed() || s.input_room() > 0);
                break;
            }
        }
    }
});
