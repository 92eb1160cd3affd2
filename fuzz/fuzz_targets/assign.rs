//! users/assign: parse, write, lint, compile to users/cdb and look up.
//!
//! Invariants:
//! - an accepted file gives entries numbered 1..=n, every one `is_writable`, with
//!   `kind == Wildcard` exactly when the type byte is `+`;
//! - `write` then `parse` gives the same entries back (type byte made canonical), and
//!   `write` of that is a fixed point;
//! - `lint` only names lines that exist, in order;
//! - `records` has one record per entry plus the empty wildcard-character key, keys and
//!   values shaped as qmail-newu writes them;
//! - the records written as a real cdb and read back with `UsersCdb::lookup` resolve
//!   every simple local (in any case) to the first simple entry for it;
//! - a refused file reports a line that exists;
//! - an input of cdb size that is not an assign file is opened as a (corrupt) users/cdb
//!   and looked up in: errors are fine, panics are not.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use turnmail::qmail::assign::{self, AssignEntry, AssignKind, scan_ulong};
use turnmail::qmail::users_cdb::{self, Assignment, UsersCdb};

/// Entries above this count are not compiled to a cdb, to keep each run cheap.
const MAX_CDB_ENTRIES: usize = 64;

static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();

unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

/// libFuzzer ends with exit(), which never drops statics: remove the scratch directory.
extern "C" fn remove_scratch() {
    if let Some((dir, _)) = DIR.get() {
        let _ = std::fs::remove_dir_all(dir.path());
    }
}

/// A scratch directory for the cdb, on tmpfs when there is one (write_cdb fsyncs).
fn scratch() -> &'static PathBuf {
    &DIR.get_or_init(|| {
        // SAFETY: registers a plain function that only touches an initialised static.
        unsafe { atexit(remove_scratch) };
        let shm = std::path::Path::new("/dev/shm");
        let dir = if shm.is_dir() {
            tempfile::Builder::new()
                .prefix("turnmail-fuzz-")
                .tempdir_in(shm)
        } else {
            tempfile::Builder::new().prefix("turnmail-fuzz-").tempdir()
        }
        .expect("scratch directory");
        let path = dir.path().join("users.cdb");
        (dir, path)
    })
    .1
}

fn canonical(e: &AssignEntry) -> AssignEntry {
    AssignEntry {
        type_byte: if e.kind == AssignKind::Wildcard {
            b'+'
        } else {
            b'='
        },
        ..e.clone()
    }
}

fn check_records(entries: &[AssignEntry]) {
    let recs = users_cdb::records(entries);
    assert_eq!(recs.len(), entries.len() + 1);
    let mut wild_last = Vec::new();
    for (e, (key, value)) in entries.iter().zip(&recs) {
        let mut want = vec![b'!'];
        want.extend(e.local.to_ascii_lowercase());
        match e.kind {
            AssignKind::Simple => want.push(0),
            AssignKind::Wildcard => {
                if let Some(&b) = e.local.last() {
                    let b = b.to_ascii_lowercase();
                    if !wild_last.contains(&b) {
                        wild_last.push(b);
                    }
                }
            }
        }
        assert_eq!(key, &want);
        let mut v = Vec::new();
        for (i, f) in [&e.user, &e.uid, &e.gid, &e.home, &e.dash, &e.ext]
            .iter()
            .enumerate()
        {
            if i > 0 {
                v.push(0);
            }
            v.extend_from_slice(f);
        }
        assert_eq!(value, &v);
    }
    let (k, v) = recs.last().unwrap();
    assert!(k.is_empty());
    assert_eq!(v, &wild_last);
}

fn expected(e: &AssignEntry) -> Assignment {
    Assignment {
        user: e.user.clone(),
        uid: scan_ulong(&e.uid),
        gid: scan_ulong(&e.gid),
        home: e.home.clone(),
        dash: e.dash.clone(),
        ext: e.ext.clone(),
    }
}

fn check_cdb(entries: &[AssignEntry]) {
    let path = scratch();
    users_cdb::write_cdb(path, &users_cdb::records(entries)).expect("write_cdb");
    let cdb = UsersCdb::open(path).expect("open").expect("cdb exists");
    for (i, e) in entries.iter().enumerate() {
        if e.kind != AssignKind::Simple {
            continue;
        }
        let lower = e.local.to_ascii_lowercase();
        // The first simple entry for this local is the one every reader must find.
        let first = entries[..i]
            .iter()
            .find(|p| p.kind == AssignKind::Simple && p.local.to_ascii_lowercase() == lower)
            .unwrap_or(e);
        let want = Some(expected(first));
        for probe in [e.local.clone(), e.local.to_ascii_uppercase(), lower.clone()] {
            let got = cdb.lookup(&probe).expect("lookup in a cdb we wrote");
            assert_eq!(got, want, "lookup({probe:?})");
        }
    }
}

/// Open arbitrary bytes as a users/cdb: a corrupt file may be refused, never panic.
fn check_corrupt_cdb(data: &[u8]) {
    let path = scratch();
    std::fs::write(path, data).expect("write scratch");
    if let Ok(Some(cdb)) = UsersCdb::open(path) {
        for probe in [&b""[..], b"joe", b"joe-ext", &data[..data.len().min(16)]] {
            let _ = cdb.lookup(probe);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match assign::parse(data) {
        Ok(entries) => {
            for (i, e) in entries.iter().enumerate() {
                assert_eq!(e.line, i + 1);
                assert!(e.is_writable(), "{e:?}");
                assert_eq!(e.kind == AssignKind::Wildcard, e.type_byte == b'+');
                assert_ne!(e.type_byte, b'.');
            }
            let text = assign::write(&entries);
            let again = assign::parse(&text).expect("written text parses");
            let canon: Vec<AssignEntry> = entries.iter().map(canonical).collect();
            assert_eq!(again, canon);
            assert_eq!(assign::write(&again), text);

            let lints = assign::lint(&entries);
            let mut prev = 0;
            for l in &lints {
                assert!(l.line >= 1 && l.line <= entries.len());
                assert!(l.line >= prev);
                prev = l.line;
                let _ = l.to_string();
            }

            check_records(&entries);
            if entries.len() <= MAX_CDB_ENTRIES {
                check_cdb(&entries);
            }
        }
        Err(e) => {
            assert!(e.line >= 1);
            let lfs = data.iter().filter(|&&b| b == b'\n').count();
            assert!(lfs + 1 >= e.line, "{e:?} but only {lfs} LFs");
            let _ = e.to_string();
            // records() takes any entries, including fields no file could hold.
            let mut pieces = data.splitn(8, |&b| b == b':');
            let mut next = || pieces.next().unwrap_or_default();
            let local = next();
            let f = [next(), next(), next(), next(), next(), next()];
            let built = [
                AssignEntry::new(AssignKind::Wildcard, local, f),
                AssignEntry::new(AssignKind::Simple, local, f),
            ];
            check_records(&built);
            if data.len() >= 2048 {
                check_corrupt_cdb(data);
            }
        }
    }
});
