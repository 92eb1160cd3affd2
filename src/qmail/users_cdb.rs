//! users/cdb: compiling users/assign into it (qmail-newu) and resolving a local part
//! through it (qmail-lspawn's lookup).
//!
//! The file must stay interchangeable with qmail's: a cdb written here is read by a
//! real qmail-lspawn, and one written by a real qmail-newu is read here. So keys,
//! values and the record order follow qmail 1.03 byte for byte, with one documented
//! exception in the wildcard-character record (see [`records`]).

use std::collections::HashMap;
use std::io;
use std::path::Path;

use thiserror::Error;

use crate::fsutil;
use crate::qmail::assign::{self, AssignEntry, AssignError, AssignKind, scan_ulong};

/// Mode of users/cdb, as qmail-newu's umask 033 leaves it.
const CDB_MODE: u32 = 0o644;

/// The cdb records for `entries`, in the order qmail-newu writes them.
///
/// * simple: key `!` + lowercase(local) + NUL;
/// * wildcard: key `!` + lowercase(local), no NUL;
/// * value `user NUL uid NUL gid NUL home NUL dash NUL ext` (no trailing NUL);
/// * last, the empty key, whose value lists the distinct last bytes of all non-empty
///   wildcard locals in first-seen order. It is written even when empty, because
///   qmail-lspawn treats its absence as a broken cdb.
///
/// Deliberate difference from qmail-newu: the last bytes are lowercased. qmail-newu
/// takes them from the original line, but qmail-lspawn tests the lowercased address,
/// so in qmail a wildcard such as `+Joe-X:` can never match. Lowercasing makes it
/// match as the man page promises; for every assign file without a wildcard local
/// ending in an ASCII uppercase letter the output is identical to qmail-newu's.
pub fn records(entries: &[AssignEntry]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::with_capacity(entries.len() + 1);
    let mut wildchars = Vec::new();
    for e in entries {
        let mut key = Vec::with_capacity(e.local.len() + 2);
        key.push(b'!');
        key.extend(e.local.iter().map(u8::to_ascii_lowercase));
        match e.kind {
            AssignKind::Simple => key.push(0),
            AssignKind::Wildcard => {
                if let Some(last) = e.local.last().map(u8::to_ascii_lowercase)
                    && !wildchars.contains(&last)
                {
                    wildchars.push(last);
                }
            }
        }
        let mut value = Vec::new();
        for (i, field) in [&e.user, &e.uid, &e.gid, &e.home, &e.dash, &e.ext]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                value.push(0);
            }
            value.extend_from_slice(field);
        }
        out.push((key, value));
    }
    out.push((Vec::new(), wildchars));
    out
}

/// Write `records` as a cdb at `path`, atomically and durably, mode 0644.
///
/// Records go in the given order, which matters: for a repeated key the first record
/// is the one every reader finds.
pub fn write_cdb(path: &Path, records: &[(Vec<u8>, Vec<u8>)]) -> io::Result<()> {
    write_cdb_with(path, records, &mut |_, _| {})
}

/// [`write_cdb`], calling `tick(done, total)` now and then (for a progress bar).
pub fn write_cdb_with(
    path: &Path,
    records: &[(Vec<u8>, Vec<u8>)],
    tick: &mut dyn FnMut(usize, usize),
) -> io::Result<()> {
    fsutil::replace_with(path, CDB_MODE, |file| {
        // CDBMake wants to own a File; a duplicate descriptor shares the offset and
        // lets replace_with fsync the same open file afterwards.
        let mut cdb = cdb2::CDBMake::new(file.try_clone()?)?;
        for (i, (key, value)) in records.iter().enumerate() {
            cdb.add(key, value)?;
            if i % TICK_EVERY == 0 {
                tick(i, records.len());
            }
        }
        tick(records.len(), records.len());
        cdb.finish()
    })
}

/// How many records go between two progress ticks.
pub const TICK_EVERY: usize = 1024;

/// Why users/assign could not be compiled. Either way the old cdb is untouched.
#[derive(Debug, Error)]
pub enum CompileError {
    #[error(transparent)]
    Parse(#[from] AssignError),
    #[error("unable to write {}: {source}", path.display())]
    Write {
        path: std::path::PathBuf,
        source: io::Error,
    },
}

/// Parse users/assign text and replace `cdb_path` with its compiled form, as
/// qmail-newu does. Returns the number of assignment lines.
pub fn compile(assign_text: &[u8], cdb_path: &Path) -> Result<usize, CompileError> {
    compile_with(assign_text, cdb_path, &mut |_, _| {})
}

/// [`compile`], calling `tick(done, total)` as records are written.
pub fn compile_with(
    assign_text: &[u8],
    cdb_path: &Path,
    tick: &mut dyn FnMut(usize, usize),
) -> Result<usize, CompileError> {
    let entries = assign::parse(assign_text)?;
    write_cdb_with(cdb_path, &records(&entries), tick).map_err(|source| CompileError::Write {
        path: cdb_path.to_path_buf(),
        source,
    })?;
    Ok(entries.len())
}

/// What users/cdb says about a local part: the arguments qmail-lspawn would pass to
/// qmail-local, with uid and gid as numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub user: Vec<u8>,
    /// 0 is returned as is; refusing to deliver as root is the caller's job.
    pub uid: u32,
    pub gid: u32,
    pub home: Vec<u8>,
    pub dash: Vec<u8>,
    /// For a wildcard hit, the record's `pre` followed by the rest of the local part
    /// in its original case.
    pub ext: Vec<u8>,
}

/// A lookup that qmail-lspawn would fail with a temporary error (status `Z`): the
/// message must stay queued, never bounce, and never go to the getpw fallback.
#[derive(Debug, Error)]
pub enum LookupError {
    /// The empty-key record is missing: this is not a complete users/cdb.
    #[error("users/cdb has no wildcard-character record (empty key)")]
    NoWildchars,
    /// A record has fewer than the six NUL-separated fields.
    #[error("users/cdb record {:?} has fewer than 6 fields", String::from_utf8_lossy(.key))]
    BadRecord { key: Vec<u8> },
    #[error("trouble reading users/cdb: {0}")]
    Read(#[from] io::Error),
}

/// An opened users/cdb, or the same records held in memory.
///
/// A file is mapped when opened and later replacements (which are renames) are not
/// seen, just as qmail-lspawn sees the file it opened; open it again for each
/// delivery, or whenever it may have changed. The in-memory form (accounts kept in a
/// database) holds exactly the records the file would, first record per key, so both
/// answer every lookup alike.
pub struct UsersCdb {
    table: Table,
}

enum Table {
    File(cdb2::CDB),
    Memory(HashMap<Vec<u8>, Vec<u8>>),
}

impl UsersCdb {
    /// Open `path`; `Ok(None)` if it does not exist, in which case qmail falls back to
    /// qmail-getpw. Any other failure is temporary.
    pub fn open(path: &Path) -> io::Result<Option<UsersCdb>> {
        match cdb2::CDB::open(path) {
            Ok(cdb) => Ok(Some(UsersCdb {
                table: Table::File(cdb),
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The table `records` would make as a file, held in memory (the first record of
    /// a key is the one kept, as a cdb reader finds it).
    pub fn from_records(records: Vec<(Vec<u8>, Vec<u8>)>) -> UsersCdb {
        let mut map = HashMap::with_capacity(records.len());
        for (k, v) in records {
            map.entry(k).or_insert(v);
        }
        UsersCdb {
            table: Table::Memory(map),
        }
    }

    /// users/assign text compiled in memory. An empty text is an absent file
    /// (`Ok(None)`: no table, as when users/cdb does not exist).
    pub fn from_text(assign_text: &[u8]) -> Result<Option<UsersCdb>, AssignError> {
        if assign_text.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self::from_records(records(&assign::parse(
            assign_text,
        )?))))
    }

    /// Resolve `local` (the part before the last `@`, in its original case) exactly
    /// as qmail-lspawn's `nughde_get` does. `Ok(None)` means no assignment matched and
    /// qmail would ask qmail-getpw.
    pub fn lookup(&self, local: &[u8]) -> Result<Option<Assignment>, LookupError> {
        match &self.table {
            Table::File(cdb) => resolve(|key| cdb.get(key).transpose(), local),
            Table::Memory(map) => resolve(|key| Ok(map.get(key).cloned()), local),
        }
    }
}

/// The lookup algorithm over any "first record for this key" function, so that it can
/// be checked against an in-memory table as well as a file.
fn resolve<G>(get: G, local: &[u8]) -> Result<Option<Assignment>, LookupError>
where
    G: Fn(&[u8]) -> io::Result<Option<Vec<u8>>>,
{
    let wildchars = get(b"")?.ok_or(LookupError::NoWildchars)?;

    let mut key = Vec::with_capacity(local.len() + 2);
    key.push(b'!');
    key.extend(local.iter().map(u8::to_ascii_lowercase));
    key.push(0);
    if let Some(value) = get(&key)? {
        return parse_value(&value, &[], &key).map(Some);
    }
    key.pop();

    // Longest prefix first. A prefix is only worth a lookup if some wildcard ends in
    // its last byte; the bare "!" (a "+:" catch-all) is always tried.
    for n in (0..=local.len()).rev() {
        let candidate = &key[..=n];
        let gated = n > 0 && !wildchars.contains(&candidate[n]);
        if gated {
            continue;
        }
        if let Some(value) = get(candidate)? {
            return parse_value(&value, &local[n..], candidate).map(Some);
        }
    }
    Ok(None)
}

/// Split a record value, with a wildcard's remainder appended, the way qmail-lspawn
/// slices it into qmail-local's arguments.
fn parse_value(value: &[u8], remainder: &[u8], key: &[u8]) -> Result<Assignment, LookupError> {
    let mut fields = value.splitn(6, |&b| b == 0);
    let mut next = || {
        fields
            .next()
            .ok_or_else(|| LookupError::BadRecord { key: key.to_vec() })
    };
    let user = next()?;
    let uid = next()?;
    let gid = next()?;
    let home = next()?;
    let dash = next()?;
    let last = next()?;
    // qmail-lspawn passes ext on as a C string, so any further NUL-separated data
    // (qmail-newu never writes any) ends it, remainder included.
    let mut ext = [last, remainder].concat();
    if let Some(nul) = ext.iter().position(|&b| b == 0) {
        ext.truncate(nul);
    }
    Ok(Assignment {
        user: user.to_vec(),
        uid: scan_ulong(uid),
        gid: scan_ulong(gid),
        home: home.to_vec(),
        dash: dash.to_vec(),
        ext,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const MAN_PAGE: &[u8] = b"+:alias:7790:2108:/var/qmail/alias:-::\n\
                              +joe-:joe:507:100:/home/joe:-::\n\
                              =joe:joe:507:100:/home/joe:::\n.\n";

    fn cdb_of(text: &[u8]) -> (tempfile::TempDir, UsersCdb) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdb");
        compile(text, &path).unwrap();
        let cdb = UsersCdb::open(&path).unwrap().unwrap();
        (dir, cdb)
    }

    fn lookup(cdb: &UsersCdb, local: &[u8]) -> Option<Assignment> {
        cdb.lookup(local).unwrap()
    }

    fn asg(user: &[u8], uid: u32, gid: u32, home: &[u8], dash: &[u8], ext: &[u8]) -> Assignment {
        Assignment {
            user: user.to_vec(),
            uid,
            gid,
            home: home.to_vec(),
            dash: dash.to_vec(),
            ext: ext.to_vec(),
        }
    }

    #[test]
    fn man_page_records() {
        let r = records(&assign::parse(MAN_PAGE).unwrap());
        let expect: [(&[u8], &[u8]); 4] = [
            (b"!", b"alias\x007790\x002108\x00/var/qmail/alias\x00-\x00"),
            (b"!joe-", b"joe\x00507\x00100\x00/home/joe\x00-\x00"),
            (b"!joe\x00", b"joe\x00507\x00100\x00/home/joe\x00\x00"),
            (b"", b"-"),
        ];
        let expect: Vec<(Vec<u8>, Vec<u8>)> = expect
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(r, expect);
    }

    #[test]
    fn man_page_lookups() {
        let (_d, cdb) = cdb_of(MAN_PAGE);
        let joe = |dash: &[u8], ext: &[u8]| asg(b"joe", 507, 100, b"/home/joe", dash, ext);
        let alias = |ext: &[u8]| asg(b"alias", 7790, 2108, b"/var/qmail/alias", b"-", ext);
        assert_eq!(lookup(&cdb, b"joe"), Some(joe(b"", b"")));
        assert_eq!(lookup(&cdb, b"JoE"), Some(joe(b"", b"")));
        assert_eq!(lookup(&cdb, b"joe-direct"), Some(joe(b"-", b"direct")));
        assert_eq!(lookup(&cdb, b"JOE-Direct"), Some(joe(b"-", b"Direct")));
        assert_eq!(lookup(&cdb, b"joe-"), Some(joe(b"-", b"")));
        assert_eq!(lookup(&cdb, b"other"), Some(alias(b"other")));
        assert_eq!(lookup(&cdb, b"Other"), Some(alias(b"Other")));
        assert_eq!(lookup(&cdb, b"jo"), Some(alias(b"jo")));
        assert_eq!(lookup(&cdb, b""), Some(alias(b"")));
    }

    #[test]
    fn autoturn_example() {
        let (_d, cdb) = cdb_of(b"+autoturn-:qmaild:7770:2108:/var/qmail/autoturn:-::\n.\n");
        assert_eq!(
            lookup(&cdb, b"autoturn-1.2.3.4-whatever"),
            Some(asg(
                b"qmaild",
                7770,
                2108,
                b"/var/qmail/autoturn",
                b"-",
                b"1.2.3.4-whatever"
            ))
        );
        assert_eq!(lookup(&cdb, b"autoturn"), None);
        assert_eq!(lookup(&cdb, b"other"), None);
    }

    #[test]
    fn longest_prefix_and_pre() {
        let (_d, cdb) = cdb_of(
            b"+a-:short:1:1:/s:-:s-:\n\
              +a-b-:long:2:2:/l:-:l-:\n\
              +a-b-c:longest:3:3:/x:-::\n.\n",
        );
        assert_eq!(lookup(&cdb, b"a-b-cde").unwrap().user, b"longest");
        assert_eq!(lookup(&cdb, b"a-b-cde").unwrap().ext, b"de");
        assert_eq!(lookup(&cdb, b"a-b-x").unwrap().user, b"long");
        assert_eq!(lookup(&cdb, b"a-b-x").unwrap().ext, b"l-x");
        assert_eq!(lookup(&cdb, b"a-bX").unwrap().ext, b"s-bX");
        assert_eq!(lookup(&cdb, b"b"), None);
    }

    #[test]
    fn simple_beats_wildcard_and_first_duplicate_wins() {
        let (_d, cdb) = cdb_of(
            b"+joe:wild:1:1:/w:-::\n\
              =JOE:first:2:2:/f:::\n\
              =joe:second:3:3:/s:::\n\
              +joe:wild2:4:4:/w:-::\n.\n",
        );
        assert_eq!(lookup(&cdb, b"joe").unwrap().user, b"first");
        assert_eq!(lookup(&cdb, b"joex").unwrap().user, b"wild");
    }

    #[test]
    fn wildchar_set_gates_prefixes() {
        // A hand-made cdb whose wildchar record lacks '-' hides the "!joe-" record,
        // exactly as in qmail-lspawn; only the catch-all is reachable.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdb");
        let rec = |k: &[u8], v: &[u8]| (k.to_vec(), v.to_vec());
        write_cdb(
            &path,
            &[
                rec(b"!joe-", b"joe\x001\x001\x00/j\x00-\x00"),
                rec(b"!", b"alias\x002\x002\x00/a\x00-\x00"),
                rec(b"", b"x"),
            ],
        )
        .unwrap();
        let cdb = UsersCdb::open(&path).unwrap().unwrap();
        assert_eq!(lookup(&cdb, b"joe-x").unwrap().user, b"alias");
        assert_eq!(lookup(&cdb, b"joe-x").unwrap().ext, b"joe-x");
    }

    #[test]
    fn uppercase_wildcard_is_matchable() {
        // qmail-newu would record 'X' and never match; ours records 'x'.
        let text = b"+Joe-X:joe:507:100:/home/joe:-::\n.\n";
        let r = records(&assign::parse(text).unwrap());
        assert_eq!(r[0].0, b"!joe-x");
        assert_eq!(r[1], (Vec::new(), b"x".to_vec()));
        let (_d, cdb) = cdb_of(text);
        assert_eq!(lookup(&cdb, b"joe-xtra").unwrap().ext, b"tra");
        assert_eq!(lookup(&cdb, b"JOE-XTRA").unwrap().ext, b"TRA");
    }

    #[test]
    fn wildchars_are_distinct_and_ordered() {
        let text = b"+a-:u:1:1:/h:::\n+b.:u:1:1:/h:::\n+c-:u:1:1:/h:::\n+:u:1:1:/h:::\n\
                     +dZ:u:1:1:/h:::\n+ez:u:1:1:/h:::\n=f:u:1:1:/h:::\n.\n";
        let r = records(&assign::parse(text).unwrap());
        assert_eq!(r.last().unwrap(), &(Vec::new(), b"-.z".to_vec()));
        // Written even when there are no wildcards at all.
        assert_eq!(records(&[]), vec![(Vec::new(), Vec::new())]);
    }

    #[test]
    fn missing_file_and_missing_wildchars() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdb");
        assert!(UsersCdb::open(&path).unwrap().is_none());
        write_cdb(
            &path,
            &[(b"!joe\0".to_vec(), b"joe\x001\x001\x00/\x00\x00".to_vec())],
        )
        .unwrap();
        let cdb = UsersCdb::open(&path).unwrap().unwrap();
        assert!(matches!(cdb.lookup(b"joe"), Err(LookupError::NoWildchars)));
        // A file too short to be a cdb is trouble, not "no file".
        std::fs::write(&path, b"short").unwrap();
        assert!(UsersCdb::open(&path).is_err());
    }

    #[test]
    fn bad_and_odd_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdb");
        let rec = |k: &[u8], v: &[u8]| (k.to_vec(), v.to_vec());
        write_cdb(
            &path,
            &[
                rec(b"!five\0", b"u\x001\x001\x00/h\x00-"),
                rec(b"!seven-", b"u\x001\x001\x00/h\x00-\x00pre\x00junk"),
                rec(b"!nums\0", b"u\x00 5\x0012x\x00/h\x00\x00"),
                rec(b"", b"-"),
            ],
        )
        .unwrap();
        let cdb = UsersCdb::open(&path).unwrap().unwrap();
        match cdb.lookup(b"five") {
            Err(LookupError::BadRecord { key }) => assert_eq!(key, b"!five\0"),
            other => panic!("{other:?}"),
        }
        // Extra fields end ext, and with it a wildcard's remainder (qmail's C string).
        assert_eq!(lookup(&cdb, b"seven-x").unwrap().ext, b"pre");
        let n = lookup(&cdb, b"nums").unwrap();
        assert_eq!((n.uid, n.gid), (0, 12));
    }

    #[test]
    fn compile_keeps_old_cdb_on_parse_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdb");
        assert_eq!(compile(MAN_PAGE, &path).unwrap(), 3);
        let before = std::fs::read(&path).unwrap();
        let e = compile(b"=joe:joe\n.\n", &path).unwrap_err();
        assert!(matches!(e, CompileError::Parse(_)));
        assert_eq!(
            e.to_string(),
            "users/assign line 1: line has fewer than 7 colons"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn root_is_returned_not_refused() {
        let (_d, cdb) = cdb_of(b"=root:root:0:0:/root:::\n.\n");
        assert_eq!(lookup(&cdb, b"root").unwrap().uid, 0);
    }

    /// The man page's meaning, written independently of the cdb: a simple line for
    /// the same local (first wins), else the longest wildcard prefix (first wins).
    fn model(entries: &[AssignEntry], local: &[u8]) -> Option<Assignment> {
        let lower = local.to_ascii_lowercase();
        let pick = |e: &AssignEntry, rest: &[u8]| {
            asg(
                &e.user,
                scan_ulong(&e.uid),
                scan_ulong(&e.gid),
                &e.home,
                &e.dash,
                &[&e.ext[..], rest].concat(),
            )
        };
        if let Some(e) = entries
            .iter()
            .find(|e| e.kind == AssignKind::Simple && e.local.to_ascii_lowercase() == lower)
        {
            return Some(pick(e, b""));
        }
        let mut best: Option<&AssignEntry> = None;
        for e in entries.iter().filter(|e| e.kind == AssignKind::Wildcard) {
            if lower.starts_with(&e.local.to_ascii_lowercase())
                && best.is_none_or(|b| e.local.len() > b.local.len())
            {
                best = Some(e);
            }
        }
        best.map(|e| pick(e, &local[e.local.len()..]))
    }

    fn small_text() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop::sample::select(b"aAbB-.".to_vec()), 0..4)
    }

    fn entries() -> impl Strategy<Value = Vec<AssignEntry>> {
        proptest::collection::vec((any::<bool>(), small_text(), small_text(), 0u32..3), 0..8)
            .prop_map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, (wild, local, pre, uid))| {
                        let kind = if wild {
                            AssignKind::Wildcard
                        } else {
                            AssignKind::Simple
                        };
                        let user = format!("u{i}");
                        let uid = uid.to_string();
                        AssignEntry::new(
                            kind,
                            &local,
                            [user.as_bytes(), uid.as_bytes(), b"7", b"/h", b"-", &pre],
                        )
                    })
                    .collect()
            })
    }

    fn in_memory(records: &[(Vec<u8>, Vec<u8>)]) -> HashMap<Vec<u8>, Vec<u8>> {
        let mut map = HashMap::new();
        for (k, v) in records {
            map.entry(k.clone()).or_insert_with(|| v.clone());
        }
        map
    }

    proptest! {
        #[test]
        fn lookup_matches_man_page_model(entries in entries(), locals in proptest::collection::vec(small_text(), 1..8)) {
            let map = in_memory(&records(&entries));
            for local in &locals {
                let got = resolve(|k| Ok(map.get(k).cloned()), local).unwrap();
                prop_assert_eq!(got, model(&entries, local), "local {:?}", local);
            }
        }

        #[test]
        fn arbitrary_values_never_panic(value in proptest::collection::vec(any::<u8>(), 0..40), rest in proptest::collection::vec(any::<u8>(), 0..8)) {
            let _ = parse_value(&value, &rest, b"k");
        }
    }

    proptest! {
        // Each case writes and fsyncs a real file, so fewer of them.
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn cdb_file_matches_in_memory(entries in entries(), locals in proptest::collection::vec(small_text(), 1..8)) {
            let recs = records(&entries);
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("cdb");
            write_cdb(&path, &recs).unwrap();
            let cdb = UsersCdb::open(&path).unwrap().unwrap();
            let map = in_memory(&recs);
            for local in &locals {
                let want = resolve(|k| Ok(map.get(k).cloned()), local).unwrap();
                prop_assert_eq!(cdb.lookup(local).unwrap(), want.clone());
                let mem = UsersCdb::from_records(recs.clone());
                prop_assert_eq!(mem.lookup(local).unwrap(), want);
            }
        }
    }
}
