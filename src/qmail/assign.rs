//! The `users/assign` text format, parsed and written exactly as qmail-newu reads it.
//!
//! turnmail keeps qmail's own files as its source of truth, so an administrator can
//! edit `users/assign` by hand, run either qmail-newu or turnmail over it, and get the
//! same `users/cdb`. This module is pure: it turns bytes into [`AssignEntry`] values and
//! back, and offers a [`lint`] pass for lines qmail accepts but that cannot do what the
//! author meant. Compiling to the cdb lives in `users_cdb`.

use std::collections::HashMap;
use std::fmt;

use thiserror::Error;

/// Longest assignment line (without its LF) that we accept.
///
/// qmail has no limit; ours exists so that a hostile or corrupt file is refused with a
/// line number instead of being copied field by field into memory.
pub const MAX_LINE: usize = 64 * 1024;

/// Which of the two assignment forms a line uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssignKind {
    /// `=local:...`: applies to exactly `local` (any first byte other than `+`).
    Simple,
    /// `+loc:...`: applies to every address starting with `loc`.
    Wildcard,
}

/// One assignment line.
///
/// Fields are kept as raw bytes because qmail-newu copies them into the cdb without
/// looking at them; numbers are only interpreted at lookup time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignEntry {
    pub kind: AssignKind,
    /// 1-based line number in the source text (0 for entries built in code).
    pub line: usize,
    /// The first byte of the line as written. qmail treats every byte other than `+`
    /// as "simple", so this is kept only to let [`lint`] flag unusual ones.
    pub type_byte: u8,
    /// The local part as written (original case), without the type byte.
    pub local: Vec<u8>,
    pub user: Vec<u8>,
    pub uid: Vec<u8>,
    pub gid: Vec<u8>,
    pub home: Vec<u8>,
    pub dash: Vec<u8>,
    /// `ext` for simple lines, `pre` for wildcards.
    pub ext: Vec<u8>,
}

impl AssignEntry {
    /// Build an entry in code, with the canonical type byte and line 0.
    /// `fields` are user, uid, gid, home, dash and ext, in file order.
    pub fn new(kind: AssignKind, local: &[u8], fields: [&[u8]; 6]) -> AssignEntry {
        let [user, uid, gid, home, dash, ext] = fields;
        AssignEntry {
            kind,
            line: 0,
            type_byte: canonical_type_byte(kind),
            local: local.to_vec(),
            user: user.to_vec(),
            uid: uid.to_vec(),
            gid: gid.to_vec(),
            home: home.to_vec(),
            dash: dash.to_vec(),
            ext: ext.to_vec(),
        }
    }

    /// The uid as qmail-lspawn will read it (see [`scan_ulong`]).
    pub fn uid_num(&self) -> u32 {
        scan_ulong(&self.uid)
    }

    /// The gid as qmail-lspawn will read it (see [`scan_ulong`]).
    pub fn gid_num(&self) -> u32 {
        scan_ulong(&self.gid)
    }

    /// Whether [`write`] can represent this entry so that [`parse`] gives it back:
    /// no field may hold `:`, LF or NUL, and the line must fit in [`MAX_LINE`].
    pub fn is_writable(&self) -> bool {
        let fields = [
            &self.local,
            &self.user,
            &self.uid,
            &self.gid,
            &self.home,
            &self.dash,
            &self.ext,
        ];
        let clean = fields
            .iter()
            .all(|f| !f.iter().any(|b| matches!(b, b':' | b'\n' | 0)));
        let len = 1 + fields.iter().map(|f| f.len() + 1).sum::<usize>();
        clean && len <= MAX_LINE
    }
}

fn canonical_type_byte(kind: AssignKind) -> u8 {
    match kind {
        AssignKind::Simple => b'=',
        AssignKind::Wildcard => b'+',
    }
}

/// qmail's `scan_ulong` as used by qmail-lspawn: the leading decimal digits, or 0 if
/// there are none.
///
/// A value that does not fit in 32 bits also gives 0. qmail would wrap it into an
/// arbitrary uid; mapping it to 0 instead makes it refused like root, which is the
/// only safe reading of a number nobody could have meant.
pub fn scan_ulong(field: &[u8]) -> u32 {
    let mut n: u32 = 0;
    for &b in field.iter().take_while(|b| b.is_ascii_digit()) {
        match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u32::from(b - b'0')))
        {
            Some(v) => n = v,
            None => return 0,
        }
    }
    n
}

/// Why a users/assign file was refused. qmail-newu says only "bad format"; these
/// distinguish the cases so an administrator can find the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum AssignErrorKind {
    #[error("file ends without a line starting with a dot")]
    MissingDot,
    #[error("last line does not end with a newline")]
    MissingNewline,
    #[error("line contains a NUL byte")]
    Nul,
    #[error("line has no colon")]
    NoColon,
    #[error("line starts with a colon")]
    ColonFirst,
    #[error("line has fewer than 7 colons")]
    TooFewColons,
    #[error("line is longer than {MAX_LINE} bytes")]
    TooLong,
}

/// A parse failure and the 1-based line it was found on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("users/assign line {line}: {kind}")]
pub struct AssignError {
    pub line: usize,
    pub kind: AssignErrorKind,
}

/// Parse users/assign text with qmail-newu's exact acceptance rules.
///
/// Any error refuses the whole file, as qmail-newu does, so that a half-edited file
/// never replaces a working cdb.
pub fn parse(input: &[u8]) -> Result<Vec<AssignEntry>, AssignError> {
    let mut entries = Vec::new();
    let mut rest = input;
    let mut line = 0;
    loop {
        line += 1;
        let err = |kind| AssignError { line, kind };
        // The dot test comes first, so the dot line may lack its LF or hold anything.
        match rest.first() {
            None => return Err(err(AssignErrorKind::MissingDot)),
            Some(b'.') => return Ok(entries),
            Some(_) => {}
        }
        let Some(end) = rest.iter().position(|&b| b == b'\n') else {
            return Err(err(AssignErrorKind::MissingNewline));
        };
        let text = &rest[..end];
        rest = &rest[end + 1..];
        if text.len() > MAX_LINE {
            return Err(err(AssignErrorKind::TooLong));
        }
        entries.push(parse_line(text, line).map_err(err)?);
    }
}

/// One non-dot line, without its LF.
fn parse_line(text: &[u8], line: usize) -> Result<AssignEntry, AssignErrorKind> {
    if text.contains(&0) {
        return Err(AssignErrorKind::Nul);
    }
    let colon = match text.iter().position(|&b| b == b':') {
        None => return Err(AssignErrorKind::NoColon),
        Some(0) => return Err(AssignErrorKind::ColonFirst),
        Some(i) => i,
    };
    let type_byte = text[0];
    let kind = if type_byte == b'+' {
        AssignKind::Wildcard
    } else {
        AssignKind::Simple
    };
    // Six more colons end six fields; whatever follows the last one (a CR from a
    // CRLF file, comments, more fields) is dropped, as qmail-newu drops it.
    let mut fields: [&[u8]; 6] = [&[]; 6];
    let mut found = 0;
    let mut data = &text[colon + 1..];
    while found < 6 {
        let Some(i) = data.iter().position(|&b| b == b':') else {
            return Err(AssignErrorKind::TooFewColons);
        };
        fields[found] = &data[..i];
        data = &data[i + 1..];
        found += 1;
    }
    let [user, uid, gid, home, dash, ext] = fields;
    Ok(AssignEntry {
        kind,
        line,
        type_byte,
        local: text[1..colon].to_vec(),
        user: user.to_vec(),
        uid: uid.to_vec(),
        gid: gid.to_vec(),
        home: home.to_vec(),
        dash: dash.to_vec(),
        ext: ext.to_vec(),
    })
}

/// Canonical users/assign text: one `=` or `+` line per entry, then `.`.
///
/// Entries that are not [`AssignEntry::is_writable`] are written as they are and
/// will not read back the same; callers that accept fields from users must check.
pub fn write(entries: &[AssignEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.push(canonical_type_byte(e.kind));
        out.extend_from_slice(&e.local);
        out.push(b':');
        for field in [&e.user, &e.uid, &e.gid, &e.home, &e.dash, &e.ext] {
            out.extend_from_slice(field);
            out.push(b':');
        }
        out.push(b'\n');
    }
    out.extend_from_slice(b".\n");
    out
}

/// A line qmail accepts but that probably does not do what its author meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for Lint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "users/assign line {}: {}", self.line, self.message)
    }
}

/// Warnings about accepted but suspicious entries, in line order.
pub fn lint(entries: &[AssignEntry]) -> Vec<Lint> {
    let mut out = Vec::new();
    // The cdb keeps the first record of each key, so later duplicates are dead lines.
    let mut seen: HashMap<(AssignKind, Vec<u8>), usize> = HashMap::new();
    for e in entries {
        let mut warn = |message: String| {
            out.push(Lint {
                line: e.line,
                message,
            })
        };
        if e.kind == AssignKind::Simple && e.type_byte != b'=' {
            warn(format!(
                "line starts with {:?}, not '=': qmail treats it as a simple assignment for {:?}",
                char::from(e.type_byte),
                show(&e.local)
            ));
        }
        if e.uid_num() == 0 {
            warn(format!(
                "uid 0: qmail refuses to deliver as root (uid field {:?})",
                show(&e.uid)
            ));
        }
        if e.gid_num() == 0 {
            warn(format!(
                "gid 0: deliveries would run with root's group (gid field {:?})",
                show(&e.gid)
            ));
        }
        if !e.home.starts_with(b"/") {
            warn(format!(
                "home directory {:?} does not start with '/'",
                show(&e.home)
            ));
        }
        if e.kind == AssignKind::Wildcard && e.local.last().is_some_and(u8::is_ascii_uppercase) {
            warn(format!(
                "wildcard {:?} ends in an uppercase letter: qmail's own qmail-newu makes it \
                 unmatchable (turnmail's compiler lowercases it)",
                show(&e.local)
            ));
        }
        let key = (e.kind, e.local.to_ascii_lowercase());
        match seen.get(&key) {
            Some(&first) => warn(format!(
                "{:?} duplicates line {first} (case is ignored); the first line wins, this one is never used",
                show(&e.local)
            )),
            None => {
                seen.insert(key, e.line);
            }
        }
    }
    out
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn err(input: &[u8]) -> AssignError {
        parse(input).unwrap_err()
    }

    const JOE: &[u8] = b"=joe:joe:507:100:/home/joe:::\n";

    #[test]
    fn man_page_example() {
        let text = b"+:alias:7790:2108:/var/qmail/alias:-::\n\
                     +joe-:joe:507:100:/home/joe:-::\n\
                     =joe:joe:507:100:/home/joe:::\n.\n";
        let e = parse(text).unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].kind, AssignKind::Wildcard);
        assert_eq!(e[0].local, b"");
        assert_eq!(e[0].user, b"alias");
        assert_eq!(e[0].uid_num(), 7790);
        assert_eq!(e[0].gid_num(), 2108);
        assert_eq!(e[0].home, b"/var/qmail/alias");
        assert_eq!(e[0].dash, b"-");
        assert_eq!(e[0].ext, b"");
        assert_eq!(e[1].local, b"joe-");
        assert_eq!(e[2].kind, AssignKind::Simple);
        assert_eq!(e[2].local, b"joe");
        assert_eq!(e[2].dash, b"");
        assert_eq!(e.iter().map(|e| e.line).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(write(&e), text.to_vec());
        assert!(lint(&e).is_empty());
    }

    #[test]
    fn local_keeps_its_case() {
        let e = parse(b"=Joe:joe:507:100:/home/joe:::\n.\n").unwrap();
        assert_eq!(e[0].local, b"Joe");
    }

    #[test]
    fn error_kinds_and_lines() {
        use AssignErrorKind::*;
        assert_eq!(
            err(b""),
            AssignError {
                line: 1,
                kind: MissingDot
            }
        );
        let two = [JOE, JOE].concat();
        assert_eq!(
            err(&two),
            AssignError {
                line: 3,
                kind: MissingDot
            }
        );
        assert_eq!(
            err(b"=joe:joe:507:100:/home/joe:::"),
            AssignError {
                line: 1,
                kind: MissingNewline
            }
        );
        let cases: [(&[u8], AssignErrorKind); 6] = [
            (b"=jo\0e:joe:507:100:/home/joe:::\n.\n", Nul),
            (b"=joe:joe:507:100:/home/joe:::\0\n.\n", Nul),
            (b"=joe\n.\n", NoColon),
            (b"\n.\n", NoColon),
            (b":joe:507:100:/home/joe:::x:\n.\n", ColonFirst),
            (b"=joe:joe:507:100:/home/joe::\n.\n", TooFewColons),
        ];
        for (body, kind) in cases {
            let input = [JOE, JOE, body].concat();
            assert_eq!(err(&input), AssignError { line: 3, kind }, "{body:?}");
        }
        let mut long = b"=joe:joe:507:100:/home/joe:::".to_vec();
        long.resize(MAX_LINE + 1, b'x');
        long.extend_from_slice(b"\n.\n");
        assert_eq!(
            err(&long),
            AssignError {
                line: 1,
                kind: TooLong
            }
        );
        long.truncate(MAX_LINE);
        long.extend_from_slice(b"\n.\n");
        assert!(parse(&long).is_ok());
    }

    #[test]
    fn error_display() {
        let e = AssignError {
            line: 7,
            kind: AssignErrorKind::TooFewColons,
        };
        assert_eq!(
            e.to_string(),
            "users/assign line 7: line has fewer than 7 colons"
        );
    }

    #[test]
    fn any_type_byte_but_plus_is_simple() {
        for t in [b'=', b'-', b'#', b'x', b'*', 0xff] {
            let mut line = vec![t];
            line.extend_from_slice(b"joe:joe:507:100:/home/joe:::\n.\n");
            let e = parse(&line).unwrap();
            assert_eq!(e[0].kind, AssignKind::Simple);
            assert_eq!(e[0].type_byte, t);
            assert_eq!(e[0].local, b"joe");
        }
        // A "comment" with enough colons is an assignment, not a comment.
        let e = parse(b"#joe:joe:507:100:/home/joe:::\n.\n").unwrap();
        assert_eq!(e[0].local, b"joe");
        let l = lint(&e);
        assert_eq!(l.len(), 1);
        assert!(l[0].message.contains("not '='"), "{l:?}");
    }

    #[test]
    fn empty_local_parts() {
        // "=:" is a simple assignment for the empty local part; "+:" the catch-all.
        let e = parse(b"=:a:1:1:/a:::\n+:b:2:2:/b:::\n.\n").unwrap();
        assert_eq!(e[0].kind, AssignKind::Simple);
        assert_eq!(e[0].local, b"");
        assert_eq!(e[1].kind, AssignKind::Wildcard);
        assert_eq!(e[1].local, b"");
    }

    #[test]
    fn text_after_seventh_colon_is_ignored() {
        let e = parse(b"=joe:joe:507:100:/home/joe:-:ext:more:stuff\n.\n").unwrap();
        assert_eq!(e[0].dash, b"-");
        assert_eq!(e[0].ext, b"ext");
    }

    #[test]
    fn dot_line_ends_processing() {
        let e = parse(b"=a:a:1:1:/a:::\n.garbage: here\nnot even a line").unwrap();
        assert_eq!(e.len(), 1);
        assert_eq!(parse(b".").unwrap(), vec![]);
        assert_eq!(parse(b".\0\n\0").unwrap(), vec![]);
        // Only the first byte counts: a dot later in the line is an ordinary byte.
        assert_eq!(err(b" .\n").kind, AssignErrorKind::NoColon);
    }

    #[test]
    fn crlf_line_ends() {
        // With the trailing colon present, the CR sits after the 7th colon and is
        // dropped, so a CRLF file compiles exactly like its LF twin.
        let crlf = b"=joe:joe:507:100:/home/joe:::\r\n+joe-:joe:507:100:/home/joe:-:x:\r\n.\r\n";
        let lf = b"=joe:joe:507:100:/home/joe:::\n+joe-:joe:507:100:/home/joe:-:x:\n.\n";
        assert_eq!(parse(crlf).unwrap(), parse(lf).unwrap());
        assert_eq!(parse(crlf).unwrap()[1].ext, b"x");
        // Without it, the CR would have to end the ext field, and the line is
        // short of a colon: refused, never silently an ext of "\r".
        assert_eq!(
            err(b"=joe:joe:507:100:/home/joe::\r\n.\r\n").kind,
            AssignErrorKind::TooFewColons
        );
        // A CR in any earlier field is kept: qmail-newu does not know about CR.
        let e = parse(b"=joe\r:joe:507:100:/home/joe:::\n.\n").unwrap();
        assert_eq!(e[0].local, b"joe\r");
    }

    #[test]
    fn scan_ulong_semantics() {
        assert_eq!(scan_ulong(b"507"), 507);
        assert_eq!(scan_ulong(b"507abc"), 507);
        assert_eq!(scan_ulong(b"0007"), 7);
        assert_eq!(scan_ulong(b""), 0);
        assert_eq!(scan_ulong(b"abc"), 0);
        assert_eq!(scan_ulong(b" 5"), 0);
        assert_eq!(scan_ulong(b"+5"), 0);
        assert_eq!(scan_ulong(b"-5"), 0);
        assert_eq!(scan_ulong(b"4294967295"), u32::MAX);
        assert_eq!(scan_ulong(b"4294967296"), 0);
        assert_eq!(scan_ulong(b"4294968296"), 0);
        assert_eq!(scan_ulong(b"99999999999999999999999"), 0);
    }

    #[test]
    fn lints() {
        let text = b"=joe:joe:507:100:/home/joe:::\n\
                     =root:root:0:0:/root:::\n\
                     =bad:bad:x:7:/h:::\n\
                     +Joe-X:joe:507:100:/home/joe:-::\n\
                     =rel:rel:5:5:home/rel:::\n\
                     =JOE:other:508:100:/home/other:::\n\
                     +joe-:joe:507:100:/home/joe:-::\n\
                     +JOE-:joe:507:100:/home/joe:-::\n\
                     *star:s:9:9:/s:::\n.\n";
        let l = lint(&parse(text).unwrap());
        let at = |line: usize| {
            l.iter()
                .filter(|x| x.line == line)
                .map(|x| x.message.as_str())
                .collect::<Vec<_>>()
        };
        assert!(at(1).is_empty());
        assert_eq!(at(2).len(), 2);
        assert!(at(2)[0].starts_with("uid 0: qmail refuses to deliver as root"));
        assert!(at(2)[1].starts_with("gid 0"));
        assert_eq!(at(3).len(), 1);
        assert!(at(3)[0].starts_with("uid 0:") && at(3)[0].contains("\"x\""));
        assert_eq!(at(4).len(), 1);
        assert!(at(4)[0].contains("uppercase"));
        assert_eq!(at(5).len(), 1);
        assert!(at(5)[0].contains("does not start with '/'"));
        assert_eq!(at(6).len(), 1);
        assert!(at(6)[0].contains("duplicates line 1"));
        assert!(at(7).is_empty());
        assert_eq!(at(8).len(), 1);
        assert!(at(8)[0].contains("duplicates line 7"));
        assert_eq!(at(9).len(), 1);
        assert!(at(9)[0].contains("'*'"));
        assert_eq!(
            l[0].to_string(),
            format!("users/assign line 2: {}", l[0].message)
        );
    }

    #[test]
    fn simple_and_wildcard_with_same_local_are_not_duplicates() {
        let e =
            parse(b"=joe:joe:507:100:/home/joe:::\n+joe:joe:507:100:/home/joe:-::\n.\n").unwrap();
        assert!(lint(&e).is_empty());
    }

    fn field() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(|v| {
            v.into_iter()
                .filter(|b| !matches!(b, b':' | b'\n' | 0))
                .collect()
        })
    }

    fn entry() -> impl Strategy<Value = AssignEntry> {
        (any::<bool>(), field(), proptest::array::uniform6(field())).prop_map(|(wild, local, f)| {
            let kind = if wild {
                AssignKind::Wildcard
            } else {
                AssignKind::Simple
            };
            AssignEntry::new(kind, &local, [&f[0], &f[1], &f[2], &f[3], &f[4], &f[5]])
        })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&input);
        }

        #[test]
        fn line_shaped_bytes_never_panic(
            lines in proptest::collection::vec(
                proptest::collection::vec(
                    prop::sample::select(vec![b':', b'=', b'+', b'.', b'\n', b'\r', 0, b'a', b'7']),
                    0..24,
                ),
                0..6,
            )
        ) {
            let input = lines.concat();
            if let Ok(entries) = parse(&input) {
                let _ = lint(&entries);
            }
        }

        #[test]
        fn write_then_parse_round_trips(entries in proptest::collection::vec(entry(), 0..8)) {
            for e in &entries {
                prop_assert!(e.is_writable());
            }
            let text = write(&entries);
            let parsed = parse(&text).unwrap();
            let expected: Vec<AssignEntry> = entries
                .iter()
                .enumerate()
                .map(|(i, e)| AssignEntry { line: i + 1, ..e.clone() })
                .collect();
            prop_assert_eq!(&parsed, &expected);
            prop_assert_eq!(write(&parsed), text);
        }
    }
}
