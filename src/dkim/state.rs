//! `ROOT/dkim/DOMAIN/selectors`: which key signs, and which retired keys stay
//! published for a while so that mail signed with them and still in flight verifies.
//!
//! ```text
//! # comment
//! active SELECTOR
//! retired SELECTOR UNTIL
//! ```
//!
//! UNTIL is seconds since 1970 (UTC). At most one `active` line; each selector once.
//! A file without an `active` line signs nothing. The parser is strict (an unknown
//! line is an error naming it), bounded, and never panics.

/// Largest selectors file read.
pub const MAX_STATE: usize = 64 * 1024;
/// Longest selector (one DNS label).
pub const MAX_SELECTOR: usize = 63;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    pub active: Option<String>,
    pub retired: Vec<Retired>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retired {
    pub selector: String,
    /// Seconds since 1970 after which its TXT record need not be published.
    pub until: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct StateError {
    pub line: usize,
    pub reason: String,
}

/// A selector as typed or read: one DNS label of letters, digits and `-`, lowercased.
/// It is also a file name (`SELECTOR.pem`), so nothing else may pass.
pub fn selector(raw: &str) -> Result<String, String> {
    let s = raw.trim().to_ascii_lowercase();
    if s.is_empty() || s.len() > MAX_SELECTOR {
        return Err(format!("selector {raw:?}: 1 to {MAX_SELECTOR} characters"));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err(format!("selector {raw:?}: starts or ends with '-'"));
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!(
            "selector {raw:?}: only letters, digits and '-' (one DNS label)"
        ));
    }
    Ok(s)
}

impl State {
    /// Every selector named, the active one first.
    pub fn selectors(&self) -> impl Iterator<Item = &str> {
        self.active
            .iter()
            .map(String::as_str)
            .chain(self.retired.iter().map(|r| r.selector.as_str()))
    }

    pub fn contains(&self, sel: &str) -> bool {
        self.selectors().any(|s| s == sel)
    }

    /// Make `new` the active selector; the one it replaces stays published until
    /// `until`.
    pub fn rotate(&mut self, new: String, until: u64) {
        if let Some(old) = self.active.replace(new) {
            self.retired.push(Retired {
                selector: old,
                until,
            });
        }
    }

    /// Drop the retired selectors whose time is over at `now`; returns them.
    pub fn expire(&mut self, now: u64) -> Vec<Retired> {
        let (gone, kept) = std::mem::take(&mut self.retired)
            .into_iter()
            .partition(|r| r.until <= now);
        self.retired = kept;
        gone
    }
}

pub fn parse(text: &[u8]) -> Result<State, StateError> {
    let err = |line: usize, reason: String| StateError { line, reason };
    if text.len() > MAX_STATE {
        return Err(err(0, format!("larger than {MAX_STATE} bytes")));
    }
    let text = std::str::from_utf8(text).map_err(|_| err(0, "not UTF-8 text".into()))?;
    let mut state = State::default();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = l.split_ascii_whitespace().collect();
        let sel = |w: &str| selector(w).map_err(|e| err(line, e));
        match words.as_slice() {
            ["active", s] => {
                if state.active.is_some() {
                    return Err(err(line, "a second active selector".into()));
                }
                let s = sel(s)?;
                if state.contains(&s) {
                    return Err(err(line, format!("selector {s} named twice")));
                }
                state.active = Some(s);
            }
            ["retired", s, until] => {
                let s = sel(s)?;
                if state.contains(&s) {
                    return Err(err(line, format!("selector {s} named twice")));
                }
                let until = until
                    .parse::<u64>()
                    .map_err(|_| err(line, format!("{until:?} is not a time in seconds")))?;
                state.retired.push(Retired { selector: s, until });
            }
            _ => {
                return Err(err(
                    line,
                    format!("expected `active SELECTOR` or `retired SELECTOR UNTIL`, not {l:?}"),
                ));
            }
        }
    }
    Ok(state)
}

/// The file's text for `domain`.
pub fn write(state: &State, domain: &str) -> Vec<u8> {
    let mut out = format!(
        "# DKIM selectors of {domain}, kept by `turnmail domain dkim {domain}`.\n\
         # active SELECTOR: the key that signs. retired SELECTOR UNTIL: still published\n\
         # in DNS until UNTIL (seconds since 1970, UTC). Keys: SELECTOR.pem beside this.\n"
    );
    if let Some(a) = &state.active {
        out.push_str(&format!("active {a}\n"));
    }
    for r in &state.retired {
        out.push_str(&format!("retired {} {}\n", r.selector, r.until));
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_rotation() {
        let mut s = State::default();
        s.rotate("one".into(), 10);
        assert!(s.retired.is_empty());
        s.rotate("two".into(), 100);
        s.rotate("three".into(), 200);
        let text = write(&s, "example.net");
        let back = parse(&text).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            back.selectors().collect::<Vec<_>>(),
            ["three", "one", "two"]
        );
        let mut e = back.clone();
        let gone = e.expire(100);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].selector, "one");
        assert_eq!(e.retired.len(), 1);
    }

    #[test]
    fn refusals_name_the_line() {
        for (text, line) in [
            ("active a\nactive b\n", 2),
            ("active a\nretired a 5\n", 2),
            ("# c\n\nretired a soon\n", 3),
            ("active a/b\n", 1),
            ("active ../x\n", 1),
            ("enable a\n", 1),
            ("active\n", 1),
        ] {
            let e = parse(text.as_bytes()).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
        assert!(parse(b"\xff\n").is_err());
        assert_eq!(parse(b"").unwrap(), State::default());
    }

    #[test]
    fn selectors_are_one_label() {
        assert_eq!(selector(" TM2026 ").unwrap(), "tm2026");
        for bad in ["", "-a", "a-", "a.b", "a/b", "..", &"a".repeat(64)] {
            assert!(selector(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(v in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse(&v);
        }

        #[test]
        fn written_states_read_back(
            active in proptest::option::of("[a-z][a-z0-9]{0,10}"),
            retired in proptest::collection::vec(("[a-z][a-z0-9]{0,10}", any::<u64>()), 0..4),
        ) {
            let mut s = State { active, retired: Vec::new() };
            for (sel, until) in retired {
                if !s.contains(&sel) {
                    s.retired.push(Retired { selector: sel, until });
                }
            }
            prop_assert_eq!(parse(&write(&s, "example.net")).unwrap(), s);
        }
    }
}
