//! The flush client session against an arbitrary server byte stream, cut into arbitrary
//! pieces, with arbitrary write sizes: no panic, no hang (it always reaches Done once
//! the stream ends), bounded output, and exactly one outcome per started message, in
//! order.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use turnmail::client::{Action, ClientOptions, MessageHead, Session, TlsPolicy};

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else {
        return;
    };
    let mut opts = ClientOptions::new("fuzz.example");
    opts.pipelining = knobs & 1 != 0;
    opts.chunking = knobs & 2 != 0;
    opts.tls = match (knobs >> 2) & 3 {
        0 => TlsPolicy::Off,
        1 => TlsPolicy::Opportunistic,
        _ => TlsPolicy::Required,
    };
    let messages = usize::from((knobs >> 4) & 7);
    let write_step = usize::from(knobs >> 7) * 100 + 1;
    let read_step = usize::from(knobs % 13) + 1;
    let body = b"Subject: fuzz\n\n.leading dot\nline\n";

    let mut s = Session::new(&opts);
    let mut input = rest.chunks(read_step);
    let mut started = 0usize;
    let mut outcomes = Vec::new();
    let mut done = false;
    // Every step consumes input, output or a message; this bounds a correct session.
    for _ in 0..(rest.len() + 64) * 8 + messages * 64 {
        while let Some((idx, _)) = s.take_outcome() {
            outcomes.push(idx);
        }
        match s.next_action() {
            Action::Done => {
                done = true;
                break;
            }
            Action::Write => {
                let n = s.output().len();
                assert!(n > 0);
                assert!(n <= 256 * 1024, "output {n}");
                s.wrote(n.min(write_step));
            }
            Action::Read(wait) => {
                assert!(wait > Duration::ZERO);
                match input.next() {
                    Some(piece) => s.feed(piece),
                    None => s.eof(),
                }
            }
            Action::NextMessage => {
                if started < messages {
                    s.start_message(MessageHead {
                        sender: format!("s{started}@a.example").into_bytes(),
                        recipients: vec![format!("r{started}@b.example").into_bytes()],
                        size: Some(body.len() as u64),
                    });
                    started += 1;
                } else {
                    s.no_more_messages();
                }
            }
            Action::Body => {
                s.push_body(body);
                s.end_body();
            }
            Action::StartTls => s.tls_established(),
        }
    }
    assert!(done, "the session did not finish");
    while let Some((idx, _)) = s.take_outcome() {
        outcomes.push(idx);
    }
    assert_eq!(outcomes, (0..started).collect::<Vec<_>>());
});
