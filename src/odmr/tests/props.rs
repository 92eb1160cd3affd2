//! Property: whatever a client sends, in whatever pieces, the session does not panic,
//! keeps its input bounded, writes only well-formed replies in bounded amounts, hands
//! out Reverse at most once and nothing after it.

use proptest::prelude::*;

use super::{Driver, SECRET, USER, b64, cram_response};
use crate::odmr::{AtrnVerdict, OdmrConfig};

fn config(plaintext_auth: bool, starttls: bool) -> OdmrConfig {
    OdmrConfig {
        hostname: "odmr.test".into(),
        starttls,
        plaintext_auth,
        max_command_line: 512,
        max_pipelined: 4096,
        max_auth_failures: 5,
        // High enough that garbage does not end most runs early.
        max_bad_commands: 50,
    }
}

/// Lines that steer the session into every state.
fn line() -> impl Strategy<Value = Vec<u8>> {
    let fixed: Vec<Vec<u8>> = vec![
        b"EHLO site.test\r\n".to_vec(),
        b"HELO site.test\r\n".to_vec(),
        b"AUTH CRAM-MD5\r\n".to_vec(),
        cram_response(USER, SECRET),
        b"AUTH PLAIN\r\n".to_vec(),
        b"AUTH LOGIN\r\n".to_vec(),
        format!("{}\r\n", b64(b"tim")).into_bytes(),
        b"*\r\n".to_vec(),
        b"ATRN\r\n".to_vec(),
        b"ATRN a.test,b.test\r\n".to_vec(),
        b"ATRN a.test, b.test\r\n".to_vec(),
        b"STARTTLS\r\n".to_vec(),
        b"RSET\r\n".to_vec(),
        b"NOOP\r\n".to_vec(),
        b"MAIL FROM:<a@b.test>\r\n".to_vec(),
    ];
    proptest::sample::select(fixed)
}

/// Whole AUTH exchanges, good and bad, so that many runs get as far as ATRN.
fn login() -> impl Strategy<Value = Vec<u8>> {
    let plain = |password: &str| {
        let blob = b64(format!("\0{USER}\0{password}").as_bytes());
        format!("AUTH PLAIN {blob}\r\n").into_bytes()
    };
    let logins: Vec<Vec<u8>> = vec![
        [b"AUTH CRAM-MD5\r\n".to_vec(), cram_response(USER, SECRET)].concat(),
        [b"AUTH CRAM-MD5\r\n".to_vec(), cram_response(USER, "wrong")].concat(),
        plain(SECRET),
        plain("wrong"),
        format!(
            "AUTH LOGIN\r\n{}\r\n{}\r\n",
            b64(USER.as_bytes()),
            b64(SECRET.as_bytes())
        )
        .into_bytes(),
    ];
    proptest::sample::select(logins)
}

/// EHLO, a login and an ATRN in a row: the path a real client takes.
fn conversation() -> impl Strategy<Value = Vec<u8>> {
    (
        login(),
        prop_oneof![Just(&b"ATRN\r\n"[..]), Just(&b"ATRN a.test\r\n"[..])],
    )
        .prop_map(|(login, atrn)| [&b"EHLO site.test\r\n"[..], &login, atrn].concat())
}

fn fragment() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => line(),
        4 => login(),
        3 => conversation(),
        2 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => (1usize..1500).prop_map(|n| vec![b'A'; n]),
        1 => Just(b"\r".to_vec()),
        1 => Just(b"\n".to_vec()),
        1 => Just(b"QUIT\r\n".to_vec()),
    ]
}

fn stream_and_cuts() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    let start = prop_oneof![3 => Just(b"EHLO site.test\r\n".to_vec()), 1 => Just(Vec::new())];
    (
        (start, proptest::collection::vec(fragment(), 0..40))
            .prop_map(|(start, f)| [start, f.concat()].concat()),
        proptest::collection::vec(1usize..300, 1..40),
    )
}

fn verdict() -> impl Strategy<Value = AtrnVerdict> {
    proptest::sample::select(vec![
        AtrnVerdict::Turn,
        AtrnVerdict::NoMail,
        AtrnVerdict::NotEntitled,
        AtrnVerdict::RateLimited,
        AtrnVerdict::Temporary,
    ])
}

/// Every reply line is "ddd-text" or "ddd text" in printable ASCII.
fn well_formed(transcript: &str) -> bool {
    transcript.split_terminator("\r\n").all(|line| {
        let b = line.as_bytes();
        b.len() >= 4
            && b[..3].iter().all(u8::is_ascii_digit)
            && (b[3] == b' ' || b[3] == b'-')
            && b.iter().all(|&c| (0x20..0x7f).contains(&c))
    }) && (transcript.is_empty() || transcript.ends_with("\r\n"))
}

/// Feeds `stream` cut at `cuts` until the session stops reading.
fn feed(d: &mut Driver, stream: &[u8], cuts: &[usize], cap: usize) -> Result<(), TestCaseError> {
    let mut rest = stream;
    let mut cut = cuts.iter().cycle();
    while !rest.is_empty() && !d.session.is_closed() {
        let n = (*cut.next().unwrap_or(&1)).min(rest.len());
        let out = d.send(&rest[..n]);
        rest = &rest[n..];
        prop_assert!(
            d.session.buffered() <= cap,
            "buffered {}",
            d.session.buffered()
        );
        prop_assert!(out.len() <= 16 * cap, "wrote {}", out.len());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_input_in_any_pieces(
        (stream, cuts) in stream_and_cuts(),
        verdict in verdict(),
        plaintext in any::<bool>(),
    ) {
        let cfg = config(plaintext, true);
        let cap = cfg.max_command_line + cfg.max_pipelined;
        let mut d = Driver::new(cfg);
        d.atrn_verdict = verdict;
        feed(&mut d, &stream, &cuts, cap)?;
        // The driver answered everything: nothing is left waiting.
        prop_assert_eq!(d.session.next_action(), None);
        prop_assert!(well_formed(&d.transcript), "{:?}", d.transcript);
        prop_assert!(d.reversed <= 1);
        prop_assert_eq!(d.reversed == 1, d.session.is_reversed());
        if d.session.is_reversed() {
            prop_assert!(!d.closed);
            prop_assert!(d.transcript.ends_with("250 2.0.0 OK now reversing the connection\r\n"));
            let before = d.transcript.len();
            prop_assert_eq!(d.session.receive(b"220 site.test ESMTP\r\n"), 0);
            d.run();
            prop_assert_eq!(d.transcript.len(), before);
        }
        // Only an authenticated session can have turned, and never without ATRN.
        prop_assert!(d.reversed == 0 || !d.atrns.is_empty());
        // Failed logins are capped per connection (max_auth_failures).
        prop_assert!(d.transcript.matches("535 5.7.8").count() <= 5);
    }

    #[test]
    fn splitting_never_changes_the_outcome(
        (stream, cuts) in stream_and_cuts(),
        verdict in verdict(),
    ) {
        // STARTTLS is left out: what it discards depends on packet boundaries, by design.
        let cfg = config(true, false);
        let cap = cfg.max_command_line + cfg.max_pipelined;
        let mut whole = Driver::new(cfg.clone());
        whole.atrn_verdict = verdict;
        whole.send(&stream);
        let mut pieces = Driver::new(cfg);
        pieces.atrn_verdict = verdict;
        feed(&mut pieces, &stream, &cuts, cap)?;
        prop_assert_eq!(&whole.transcript, &pieces.transcript);
        prop_assert_eq!(&whole.atrns, &pieces.atrns);
        prop_assert_eq!(whole.reversed, pieces.reversed);
        prop_assert_eq!(whole.closed, pieces.closed);
    }
}
