//! users/poppasswd, users/secrets and login sanity.
//!
//! Invariants:
//! - an accepted poppasswd gives increasing line numbers, a non-empty login and owner
//!   without `:`, NUL or LF, a hash without `:`, and a home starting with `/`;
//! - write_poppasswd then parse_poppasswd gives the same accounts back (numbered
//!   1..=n), and writing that again is a fixed point;
//! - a refused poppasswd names a line that exists;
//! - parse_secrets equals a model: lowercased text before the first colon of each
//!   meaningful line, first line wins among those whose value (everything after that
//!   colon) reads as a secret (`Secret::parse`); check_secrets names a line for each
//!   meaningful line that is skipped;
//! - login_is_sane equals its specification (1..=255 bytes, no control/space/DEL,
//!   `/`, `:`, or `..`) and is stable under ASCII lowercasing.
#![no_main]

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use turnmail::engine::accounts::{
    self, AccountLine, MAX_LOGIN, Secret, login_is_sane, parse_poppasswd, parse_secrets,
};
use turnmail::qmail::control::read_lines;

fn fields(a: &AccountLine) -> [&[u8]; 4] {
    [&a.login, &a.hash, &a.owner, &a.home]
}

fn sane_model(l: &[u8]) -> bool {
    !l.is_empty()
        && l.len() <= MAX_LOGIN
        && l.iter()
            .all(|&b| b > b' ' && b != 0x7f && b != b'/' && b != b':')
        && !l.windows(2).any(|w| w == b"..")
}

fuzz_target!(|data: &[u8]| {
    match parse_poppasswd(data) {
        Ok(lines) => {
            let mut prev = 0;
            for a in &lines {
                assert!(a.line > prev);
                prev = a.line;
                for f in fields(a) {
                    assert!(!f.contains(&b':') && !f.contains(&0) && !f.contains(&b'\n'));
                }
                assert!(!a.login.is_empty() && !a.owner.is_empty());
                assert!(a.home.starts_with(b"/"));
                let _ = login_is_sane(&a.login);
            }
            let text = accounts::write_poppasswd(&lines);
            let again = parse_poppasswd(&text).expect("written poppasswd parses");
            assert_eq!(again.len(), lines.len(), "written text: {text:?}");
            for (i, (a, b)) in lines.iter().zip(&again).enumerate() {
                assert_eq!(b.line, i + 1);
                assert_eq!(fields(a), fields(b), "round trip of line {}", a.line);
            }
            assert_eq!(accounts::write_poppasswd(&again), text);
        }
        Err(e) => {
            let lfs = data.iter().filter(|&&b| b == b'\n').count();
            assert!(e.line >= 1 && e.line <= lfs + 1);
            let _ = e.to_string();
        }
    }

    let secrets = parse_secrets(data);
    let mut model: HashMap<Vec<u8>, Secret> = HashMap::new();
    let mut skipped = Vec::new();
    for l in read_lines(data) {
        match l.text.iter().position(|&b| b == b':') {
            Some(c) => match Secret::parse(&l.text[c + 1..]) {
                Some(s) => {
                    model.entry(l.text[..c].to_ascii_lowercase()).or_insert(s);
                }
                None => skipped.push(l.line),
            },
            None => skipped.push(l.line),
        }
    }
    assert_eq!(secrets, model);
    let named: Vec<usize> = accounts::check_secrets(data).iter().map(|e| e.line).collect();
    assert!(skipped.iter().all(|l| named.contains(l)), "{skipped:?} {named:?}");

    for login in [data, data.split(|&b| b == b'\n').next().unwrap_or_default()] {
        let sane = login_is_sane(login);
        assert_eq!(sane, sane_model(login), "{login:?}");
        assert_eq!(login_is_sane(&login.to_ascii_lowercase()), sane);
    }
});
