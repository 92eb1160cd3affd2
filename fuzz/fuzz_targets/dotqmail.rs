//! .qmail files: parse (both x bits), default_instructions, candidates, safe_ext.
//!
//! The whole input is parsed as a .qmail file. For candidates it is also split as
//! `N DASH EXT`: the first byte N gives the length of DASH (capped by the input).
//!
//! Invariants:
//! - every instruction comes from its line: same bytes after trimming trailing
//!   spaces/tabs, minus the `|` or `&` marker; maildirs end in `/`, mboxes do not;
//!   line numbers increase; forwards are never empty; no instruction holds NUL or LF;
//! - with the x bit: only forwards, forward_only set; and the x bit only ever adds
//!   refusals (same instructions when both succeed, and an x-bit success implies a
//!   plain success; a plain success with forwards only implies an x-bit success);
//! - safe_ext keeps the length, has no `.` and no uppercase ASCII, and is idempotent;
//! - candidates: names start `.qmail` + dash, hold no `/` or NUL, are distinct; the
//!   first is the exact name (when safe); every other is `.qmail` + dash +
//!   safe_ext(ext[..i]) + `default` with i at 0 or after a `-`, DEFAULT = ext[i..].
#![no_main]

use libfuzzer_sys::fuzz_target;
use turnmail::qmail::dotqmail::{self, DotQmail, DotQmailError, Instruction};

fn check_parsed(content: &[u8], d: &DotQmail) {
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let raw: Vec<&[u8]> = body.split(|&b| b == b'\n').collect();
    let mut prev = 0;
    for (line, ins) in &d.instructions {
        assert!(*line > prev);
        prev = *line;
        let src = raw[line - 1];
        let end = src
            .iter()
            .rposition(|&b| b != b' ' && b != b'\t')
            .map_or(0, |i| i + 1);
        let text = &src[..end];
        let bytes = match ins {
            Instruction::Maildir(p) => {
                assert!(p.ends_with(b"/"));
                assert!(matches!(p[0], b'.' | b'/'));
                assert_eq!(&p[..], text);
                p
            }
            Instruction::Mbox(p) => {
                assert!(!p.ends_with(b"/"));
                assert!(matches!(p[0], b'.' | b'/'));
                assert_eq!(&p[..], text);
                p
            }
            Instruction::Program(p) => {
                assert_eq!(text[0], b'|');
                assert_eq!(&p[..], &text[1..]);
                p
            }
            Instruction::Forward(a) => {
                assert!(!a.is_empty());
                if text[0] == b'&' {
                    assert_eq!(&a[..], &text[1..]);
                } else {
                    assert!(!matches!(text[0], b'.' | b'/' | b'|' | b'#' | b'+'));
                    assert_eq!(&a[..], text);
                }
                a
            }
        };
        assert!(!bytes.contains(&0) && !bytes.contains(&b'\n'));
    }
    if !content.is_empty() {
        // qmail refuses a blank first line.
        assert!(raw[0].iter().any(|&b| b != b' ' && b != b'\t'));
    }
}

fn check_safe_ext(ext: &[u8]) -> Vec<u8> {
    let s = dotqmail::safe_ext(ext);
    assert_eq!(s.len(), ext.len());
    assert!(!s.contains(&b'.'));
    assert!(!s.iter().any(u8::is_ascii_uppercase));
    for (&a, &b) in ext.iter().zip(&s) {
        assert!(a == b || (a == b'.' && b == b':') || a.to_ascii_lowercase() == b);
    }
    assert_eq!(dotqmail::safe_ext(&s), s);
    s
}

fn check_candidates(dash: &[u8], ext: &[u8]) {
    let safe = check_safe_ext(ext);
    let c = dotqmail::candidates(dash, ext);
    if dash.contains(&b'/') || dash.contains(&0) {
        assert!(c.is_empty(), "dash {dash:?} gave {c:?}");
        return;
    }
    let prefix = [b".qmail".as_slice(), dash].concat();
    let exact = [prefix.as_slice(), &safe].concat();
    for (i, a) in c.iter().enumerate() {
        assert!(a.name.starts_with(&prefix));
        assert!(!a.name.contains(&b'/') && !a.name.contains(&0));
        assert!(
            c[..i].iter().all(|b| b.name != a.name),
            "repeated {:?}",
            a.name
        );
    }
    let mut rest = &c[..];
    if !safe.contains(&b'/') && !safe.contains(&0) {
        let first = &c[0];
        assert_eq!(first.name, exact);
        let dflt = safe
            .ends_with(b"default")
            .then(|| ext[ext.len() - 7..].to_vec());
        assert_eq!(first.default_part, dflt);
        rest = &c[1..];
    }
    if dash.is_empty() && ext.is_empty() {
        assert_eq!(c.len(), 1);
        return;
    }
    let mut last_i = usize::MAX;
    for a in rest {
        let part = a
            .default_part
            .as_ref()
            .expect("a default candidate sets DEFAULT");
        let i = ext.len() - part.len();
        assert_eq!(&ext[i..], &part[..]);
        assert!(i < last_i, "longest prefix first");
        last_i = i;
        assert!(i == 0 || safe[i - 1] == b'-');
        let want = [prefix.as_slice(), &safe[..i], b"default"].concat();
        assert_eq!(a.name, want);
    }
    // Every qualifying prefix whose name is safe and not the exact name is present.
    let expected = (0..=safe.len())
        .filter(|&i| i == 0 || safe[i - 1] == b'-')
        .filter(|&i| !safe[..i].contains(&b'/') && !safe[..i].contains(&0))
        .filter(|&i| [prefix.as_slice(), &safe[..i], b"default"].concat() != exact)
        .count();
    assert_eq!(rest.len(), expected);
}

fuzz_target!(|data: &[u8]| {
    let plain = dotqmail::parse(data, false);
    let xbit = dotqmail::parse(data, true);
    if let Ok(d) = &plain {
        check_parsed(data, d);
        if data.is_empty() {
            assert_eq!(d, &DotQmail::default());
        }
    }
    if let Ok(d) = &xbit {
        check_parsed(data, d);
        assert!(d.forward_only || data.is_empty());
        assert!(
            d.instructions
                .iter()
                .all(|(_, i)| matches!(i, Instruction::Forward(_)))
        );
        let p = plain.as_ref().expect("x bit only adds refusals");
        assert_eq!(p.instructions, d.instructions);
    }
    if let Ok(p) = &plain
        && p.instructions
            .iter()
            .all(|(_, i)| matches!(i, Instruction::Forward(_)))
    {
        assert!(xbit.is_ok(), "forwards only, yet x bit refused: {xbit:?}");
    }
    for r in [&plain, &xbit] {
        if let Err(e) = r {
            let _ = e.to_string();
            if let DotQmailError::ForwardOnlyViolation { line }
            | DotQmailError::BadForward { line, .. }
            | DotQmailError::NulByte { line } = e
            {
                assert!(*line >= 1);
            }
        }
    }
    // The default delivery differs only for empty text (a blank first line).
    let dflt = dotqmail::default_instructions(data);
    if data.is_empty() {
        assert_eq!(dflt, Err(DotQmailError::BlankFirstLine));
    } else {
        assert_eq!(dflt, plain);
    }

    let (dash, ext) = match data.split_first() {
        Some((&n, rest)) => rest.split_at((n as usize).min(rest.len())),
        None => (&b""[..], &b""[..]),
    };
    check_candidates(dash, ext);
    check_candidates(b"", data);
    check_candidates(b"-", data);
});
