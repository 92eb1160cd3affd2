//! The alias table's text (`[accounts] backend = "postgres"`): one `local@domain:LINE`
//! record per line, in order, where LINE is a line of the alias's `.qmail-LOCAL` file
//! (`&address` forward, `./Maildir/` or `/abs/Maildir/` delivery). Keys are lowercase
//! (qmail's `.qmail` names are); a program line (`|`) is refused: the table is edited
//! by SQL too, and runs nothing. Pure: the store, the engine and the edits share it.

use std::collections::BTreeMap;

/// Longest text accepted (the texts of one load are held in memory together).
const MAX_TEXT: usize = 1 << 28;

/// Longest record line.
pub const MAX_LINE: usize = 4096;

/// `local@domain` → the alias's lines, in order.
pub type Aliases = BTreeMap<String, Vec<String>>;

/// A line of the text that is not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("aliases line {line}: {reason}")]
pub struct AliasTextError {
    pub line: usize,
    pub reason: String,
}

/// Why `address` cannot be a key, if it cannot.
pub fn check_address(address: &str) -> Result<(&str, &str), String> {
    let (local, domain) = address
        .rsplit_once('@')
        .ok_or_else(|| format!("{address:?} is not local@domain"))?;
    if local.is_empty() || domain.is_empty() {
        return Err(format!("{address:?} is not local@domain"));
    }
    if address != address.to_ascii_lowercase() {
        return Err(format!("{address:?} is not lowercase"));
    }
    if local.starts_with('#') || domain.contains('@') {
        return Err(format!("{address:?} is not local@domain"));
    }
    if address
        .chars()
        .any(|c| c.is_ascii_control() || matches!(c, ':' | '/' | ' '))
    {
        return Err(format!("{address:?} has a control byte, space, ':' or '/'"));
    }
    Ok((local, domain))
}

/// Why `line` cannot be an alias's line, if it cannot.
pub fn check_line(line: &str) -> Result<(), String> {
    if line.is_empty() || line.len() > MAX_LINE {
        return Err("empty or too long".into());
    }
    if line.chars().any(|c| c.is_ascii_control()) || line.ends_with([' ', '\t']) {
        return Err(format!("{line:?} has a control byte or trailing blank"));
    }
    if !line.starts_with(['&', '.', '/']) || line.len() < 2 {
        return Err(format!(
            "{line:?} is neither a forward (&address) nor a delivery (./Maildir/, /path/Maildir/)"
        ));
    }
    Ok(())
}

/// Read the text: blank lines and `#` comments skipped, records kept in order.
pub fn parse(text: &[u8]) -> Result<Aliases, AliasTextError> {
    let mut out = Aliases::new();
    if text.len() > MAX_TEXT {
        return Err(AliasTextError {
            line: 0,
            reason: "the text is too long".into(),
        });
    }
    for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
        let bad = |reason: String| AliasTextError {
            line: i + 1,
            reason,
        };
        if raw.is_empty() || raw.starts_with(b"#") {
            continue;
        }
        let s = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8".into()))?;
        let (address, line) = s
            .split_once(':')
            .ok_or_else(|| bad("no ':' between address and line".into()))?;
        check_address(address).map_err(bad)?;
        check_line(line).map_err(bad)?;
        out.entry(address.to_string())
            .or_default()
            .push(line.to_string());
    }
    Ok(out)
}

/// The canonical text of `aliases` (every key and line as [`check_address`] and
/// [`check_line`] accept them reads back as itself).
pub fn render(aliases: &Aliases) -> Vec<u8> {
    let mut out = Vec::new();
    for (address, lines) in aliases {
        for l in lines {
            out.extend_from_slice(format!("{address}:{l}\n").as_bytes());
        }
    }
    out
}

/// The `.qmail` file text of one alias's lines.
pub fn file_text(lines: &[String]) -> Vec<u8> {
    lines
        .iter()
        .flat_map(|l| format!("{l}\n").into_bytes())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_in_order() {
        let t = b"# comment\n\ninfo@example.com:&joe@example.com\nsales@example.com:./sales/Maildir/\ninfo@example.com:&ann@elsewhere.org\n";
        let a = parse(t).unwrap();
        assert_eq!(
            a["info@example.com"],
            ["&joe@example.com", "&ann@elsewhere.org"]
        );
        assert_eq!(a["sales@example.com"], ["./sales/Maildir/"]);
        assert_eq!(parse(&render(&a)).unwrap(), a);
    }

    #[test]
    fn bad_records_are_refused_with_their_line() {
        for (t, line) in [
            (&b"info@example.com &x@y\n"[..], 1),
            (b"\nInfo@example.com:&x@y\n", 2),
            (b"info:&x@y\n", 1),
            (b"@example.com:&x@y\n", 1),
            (b"a/b@example.com:&x@y\n", 1),
            (b"info@example.com:|rm -rf /\n", 1),
            (b"info@example.com:\n", 1),
            (b"info@example.com:&x\x01\n", 1),
            (b"info@example.com:\xff\n", 1),
            (b"ok@x.org:&y@z\ninfo@example.com:&x@y \n", 2),
        ] {
            let e = parse(t).unwrap_err();
            assert_eq!(e.line, line, "{e}");
        }
    }

    fn address() -> impl Strategy<Value = String> {
        ("[a-z0-9._-]{1,8}", "[a-z0-9.-]{1,8}").prop_map(|(l, d)| format!("{l}@{d}"))
    }

    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            "&[a-z0-9.]{1,6}@[a-z.]{1,6}",
            "\\./[A-Za-z]{1,6}/Maildir/",
            "/[a-z]{1,6}/Maildir/",
        ]
    }

    proptest! {
        #[test]
        fn render_then_parse_is_the_identity(
            a in proptest::collection::btree_map(
                address(), proptest::collection::vec(line(), 1..4), 0..6)
        ) {
            prop_assert_eq!(parse(&render(&a)).unwrap(), a);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_accepted_texts_are_canonical(
            t in proptest::collection::vec(any::<u8>(), 0..200)
        ) {
            if let Ok(a) = parse(&t) {
                let again = render(&a);
                prop_assert_eq!(parse(&again).unwrap(), a);
            }
        }

        #[test]
        fn record_shaped_text_reads_back(
            recs in proptest::collection::vec((address(), line(), any::<bool>()), 0..8)
        ) {
            let mut t = String::new();
            for (a, l, comment) in &recs {
                if *comment { t.push_str("# note\n\n"); }
                t.push_str(&format!("{a}:{l}\n"));
            }
            let parsed = parse(t.as_bytes()).unwrap();
            let n: usize = parsed.values().map(Vec::len).sum();
            prop_assert_eq!(n, recs.len());
            prop_assert_eq!(parse(&render(&parsed)).unwrap(), parsed);
        }
    }
}
