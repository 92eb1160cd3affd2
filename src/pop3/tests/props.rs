//! Property: whatever a client sends, in whatever pieces, the session does not panic,
//! keeps its buffers bounded, answers the same way regardless of packet boundaries,
//! and hands out UPDATE only after a QUIT.

use proptest::prelude::*;

use super::{Driver, config};
use crate::pop3::Pop3Config;

/// Commands for every state, valid and not.
fn command() -> impl Strategy<Value = Vec<u8>> {
    let words: Vec<&'static [u8]> = vec![
        b"USER alice\r\n",
        b"USER bob\r\n",
        b"PASS secret\r\n",
        b"PASS wrong\r\n",
        b"APOP mrose c4c9334bac560ecc979e58001b3e22fb\r\n",
        b"AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n",
        b"AUTH PLAIN\r\n",
        b"AUTH\r\n",
        b"*\r\n",
        b"CAPA\r\n",
        b"NOOP\r\n",
        b"STAT\r\n",
        b"LIST\r\n",
        b"LIST 2\r\n",
        b"UIDL\r\n",
        b"UIDL 9\r\n",
        b"RETR 1\r\n",
        b"RETR 2\r\n",
        b"TOP 3 0\r\n",
        b"TOP 2 1\n",
        b"DELE 1\r\n",
        b"DELE 0\r\n",
        b"RSET\r\n",
        b"LAST\r\n",
        b"QUIT\r\n",
        b"\r\n",
        b"xyz\r\n",
    ];
    prop_oneof![
        8 => proptest::sample::select(words).prop_map(<[u8]>::to_vec),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => (250usize..600).prop_map(|n| vec![b'x'; n]),
    ]
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(command(), 0..30).prop_map(|cs| cs.concat())
}

fn small_config() -> Pop3Config {
    Pop3Config {
        max_bad_commands: 50,
        max_auth_failures: 50,
        ..config()
    }
}

proptest! {
    #[test]
    fn packet_boundaries_do_not_change_the_conversation(
        input in input(),
        cuts in proptest::collection::vec(1usize..64, 1..40),
    ) {
        let mut whole = Driver::new(small_config());
        whole.send(&input);
        let mut pieces = Driver::new(small_config());
        let mut rest = input.as_slice();
        let mut cut = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cut.next().unwrap_or(&1)).min(rest.len());
            pieces.send(&rest[..n]);
            prop_assert!(pieces.session.buffered() <= 256 + 4096);
            rest = &rest[n..];
        }
        prop_assert_eq!(&whole.transcript, &pieces.transcript);
        prop_assert_eq!(&whole.updates, &pieces.updates);
        prop_assert_eq!(whole.closed, pieces.closed);
    }

    #[test]
    fn update_only_after_quit(input in input(), stls in any::<bool>()) {
        let mut d = Driver::new(small_config());
        if stls {
            d.send(b"STLS\r\n");
        }
        d.send(&input);
        d.timeout();
        let quit = input.windows(4).any(|w| w.eq_ignore_ascii_case(b"QUIT"));
        prop_assert!(d.updates.len() <= usize::from(quit));
        prop_assert!(d.closed);
        prop_assert!(d.session.buffered() == 0);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..3000)) {
        let mut d = Driver::new(small_config());
        d.send(b"USER alice\r\nPASS secret\r\n");
        d.send(&bytes);
        prop_assert!(d.session.buffered() <= 256 + 4096);
        prop_assert!(d.max_output <= 64 * 1024 + 4096);
    }
}
