//! Byte-for-byte compatibility of users/cdb with djb's cdb tools (Debian's freecdb).
//!
//! qmail reads and writes users/cdb with djb's cdb code, so "compatible" is only proved
//! against an independent implementation: the same records built by `cdbmake` must
//! give an identical file, our reader must resolve addresses in their file, and their
//! `cdbget`/`cdbdump` must read every record of ours.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use turnmail::qmail::{assign, users_cdb};

struct Tools {
    cdbmake: PathBuf,
    cdbget: PathBuf,
    cdbdump: PathBuf,
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The freecdb tools, or None if the test is to be skipped. A missing tool fails the
/// test unless TURNMAIL_SKIP_INTEROP=1, so that a CI image without freecdb cannot pass
/// silently.
fn tools() -> Option<Tools> {
    let found = (
        find_on_path("cdbmake"),
        find_on_path("cdbget"),
        find_on_path("cdbdump"),
    );
    if let (Some(cdbmake), Some(cdbget), Some(cdbdump)) = found {
        return Some(Tools {
            cdbmake,
            cdbget,
            cdbdump,
        });
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if !ci && std::env::var_os("TURNMAIL_SKIP_INTEROP").as_deref() == Some(OsStr::new("1")) {
        println!(
            "freecdb_interop: skipped: cdbmake/cdbget/cdbdump not on PATH and TURNMAIL_SKIP_INTEROP=1"
        );
        return None;
    }
    panic!(
        "cdbmake, cdbget and cdbdump must be on PATH for this test: apt-get install freecdb \
         (or set TURNMAIL_SKIP_INTEROP=1 to skip it)"
    );
}

/// An assign file exercising everything that reaches the cdb: many keys (so every hash
/// table and some collisions are used), uppercase locals, an uppercase-ending wildcard,
/// duplicate keys, 8-bit bytes, an odd type byte and text after the 7th colon.
fn assign_text() -> Vec<u8> {
    let mut t: Vec<u8> = Vec::new();
    t.extend_from_slice(
        b"=joe:joe:507:100:/home/joe:::\n\
          +joe-:joe:507:100:/home/joe:-::\n\
          +:alias:7790:2108:/var/qmail/alias:-::\n\
          =Mary:mary:508:100:/home/mary:::\n\
          =MARY:dup:509:100:/home/dup:::\n\
          +Sales-:sales:510:100:/home/sales:-:s-:\n\
          +Joe-X:joe:507:100:/home/joe:-:x-:\n\
          +autoturn-:qmaild:7770:2108:/var/qmail/autoturn:-::\n\
          =caf\xe9:cafe:511:100:/home/caf\xe9:::\n\
          +\xc3\xa9t\xc3\xa9.:ete:512:100:/home/ete:-::\n\
          +vpop.example-:vpop.example:89:89:/home/vpopmail/domains/vpop.example:-::\n\
          =with space:sp:513:100:/home/sp:-:ext:ignored: text\n\
          #comment:c:514:100:/c:::\n\
          =joe:second:515:100:/x:::\n\
          +joe-:second:516:100:/x:-::\n",
    );
    for i in 0..300 {
        t.extend_from_slice(
            format!("=user{i}:user{i}:{}:100:/home/user{i}:::\n", 1000 + i).as_bytes(),
        );
    }
    for i in 0..60 {
        t.extend_from_slice(
            format!("+List{i}-:list{i}:{}:100:/home/list{i}:-::\n", 2000 + i).as_bytes(),
        );
    }
    t.extend_from_slice(b".\n");
    t
}

/// Records in cdbmake's input format: `+klen,dlen:key->data` LF per record, then LF.
fn cdbmake_input(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in records {
        out.extend_from_slice(format!("+{},{}:", k.len(), v.len()).as_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(b"->");
        out.extend_from_slice(v);
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

fn run_cdbmake(tools: &Tools, input: &[u8], target: &Path) {
    let tmp = target.with_extension("tmp");
    let mut child = Command::new(&tools.cdbmake)
        .arg(target)
        .arg(&tmp)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let status = child.wait().unwrap();
    assert!(status.success(), "cdbmake failed: {status}");
}

/// `cdbget key [skip] < cdb`: (exit code, stdout).
fn cdbget(tools: &Tools, cdb: &Path, key: &[u8], skip: Option<usize>) -> (i32, Vec<u8>) {
    let mut cmd = Command::new(&tools.cdbget);
    cmd.arg(OsStr::from_bytes(key));
    if let Some(n) = skip {
        cmd.arg(n.to_string());
    }
    let out = cmd.stdin(File::open(cdb).unwrap()).output().unwrap();
    (out.status.code().unwrap_or(-1), out.stdout)
}

#[test]
fn users_cdb_matches_freecdb() {
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.cdb");
    let theirs = dir.path().join("theirs.cdb");

    let text = assign_text();
    let entries = assign::parse(&text).unwrap();
    assert_eq!(users_cdb::compile(&text, &ours).unwrap(), entries.len());
    let records = users_cdb::records(&entries);
    assert_eq!(records.len(), 15 + 300 + 60 + 1);
    // The wildchar record, lowercased ('x' from "+Joe-X"), 8-bit byte kept.
    assert_eq!(records.last().unwrap(), &(Vec::new(), b"-x.".to_vec()));
    let input = cdbmake_input(&records);
    run_cdbmake(&tools, &input, &theirs);

    // (a) == (b): the same records give the same bytes.
    let ours_bytes = std::fs::read(&ours).unwrap();
    let theirs_bytes = std::fs::read(&theirs).unwrap();
    assert!(
        ours_bytes == theirs_bytes,
        "our users/cdb differs from cdbmake's"
    );

    // Their tools read all of ours: cdbdump gives back every record in order
    // (including the empty key and the NUL-terminated simple keys, which cdbget
    // cannot be asked for)...
    let dump = Command::new(&tools.cdbdump)
        .stdin(File::open(&ours).unwrap())
        .output()
        .unwrap();
    assert!(dump.status.success());
    assert!(
        dump.stdout == input,
        "cdbdump of our file differs from the input"
    );

    // ...and cdbget finds the first record for every key it can be given.
    let mut checked = 0;
    for (i, (key, value)) in records.iter().enumerate() {
        if key.is_empty() || key.contains(&0) {
            continue;
        }
        let earlier = records[..i].iter().filter(|(k, _)| k == key).count();
        let (code, out) = cdbget(&tools, &ours, key, (earlier > 0).then_some(earlier));
        assert_eq!(code, 0, "cdbget {:?}", String::from_utf8_lossy(key));
        assert!(out == *value, "cdbget {:?}", String::from_utf8_lossy(key));
        checked += 1;
    }
    assert!(checked > 60);
    assert_eq!(
        cdbget(&tools, &ours, b"!nosuchkey", None),
        (100, Vec::new())
    );
    // Lookups through the first record of a duplicate key get the first line.
    assert_eq!(
        cdbget(&tools, &ours, b"!joe-", None).1,
        b"joe\x00507\x00100\x00/home/joe\x00-\x00"
    );

    // Our reader resolves addresses in their file.
    let cdb = users_cdb::UsersCdb::open(&theirs).unwrap().unwrap();
    // (local, user, uid, ext)
    type Expect = (&'static [u8], &'static [u8], u32, &'static [u8]);
    let expect: &[Expect] = &[
        (b"joe", b"joe", 507, b""),
        (b"JOE", b"joe", 507, b""),
        (b"joe-direct", b"joe", 507, b"direct"),
        (b"JOE-Direct", b"joe", 507, b"Direct"),
        (b"joe-xtra", b"joe", 507, b"x-tra"),
        (b"JOE-XTRA", b"joe", 507, b"x-TRA"),
        (b"mary", b"mary", 508, b""),
        (b"MARY", b"mary", 508, b""),
        (b"sales-Report", b"sales", 510, b"s-Report"),
        (
            b"autoturn-1.2.3.4-whatever",
            b"qmaild",
            7770,
            b"1.2.3.4-whatever",
        ),
        (b"caf\xe9", b"cafe", 511, b""),
        (b"CAF\xe9", b"cafe", 511, b""),
        (b"caf\xc9", b"alias", 7790, b"caf\xc9"),
        (b"\xc3\xa9t\xc3\xa9.Stuff", b"ete", 512, b"Stuff"),
        (b"vpop.example-info", b"vpop.example", 89, b"info"),
        (b"with space", b"sp", 513, b"ext"),
        (b"comment", b"c", 514, b""),
        (b"user0", b"user0", 1000, b""),
        (b"User299", b"user299", 1299, b""),
        (b"user300", b"alias", 7790, b"user300"),
        (b"list7-Foo", b"list7", 2007, b"Foo"),
        (b"list7", b"alias", 7790, b"list7"),
        (b"nobody-home", b"alias", 7790, b"nobody-home"),
        (b"", b"alias", 7790, b""),
    ];
    for &(local, user, uid, ext) in expect {
        let got = cdb.lookup(local).unwrap().unwrap();
        let what = String::from_utf8_lossy(local);
        assert_eq!(got.user, user, "{what}");
        assert_eq!(got.uid, uid, "{what}");
        assert_eq!(got.ext, ext, "{what}");
    }
    // Every simple line resolves to its own record in their file, unless an earlier
    // line took the same key.
    for (i, e) in entries.iter().enumerate() {
        let first = entries[..i].iter().all(|p| {
            p.kind != assign::AssignKind::Simple || !p.local.eq_ignore_ascii_case(&e.local)
        });
        if e.kind == assign::AssignKind::Simple && first {
            let got = cdb.lookup(&e.local).unwrap().unwrap();
            assert_eq!(got.user, e.user);
            assert_eq!((got.uid, got.gid), (e.uid_num(), e.gid_num()));
            assert_eq!(
                (got.home.as_slice(), got.dash.as_slice()),
                (&e.home[..], &e.dash[..])
            );
            assert_eq!(got.ext, e.ext);
        }
    }
}

#[test]
fn empty_assign_matches_freecdb() {
    // The smallest users/cdb: only the (empty) wildchar record.
    let Some(tools) = tools() else { return };
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.cdb");
    let theirs = dir.path().join("theirs.cdb");
    assert_eq!(users_cdb::compile(b".\n", &ours).unwrap(), 0);
    run_cdbmake(&tools, b"+0,0:->\n\n", &theirs);
    assert!(std::fs::read(&ours).unwrap() == std::fs::read(&theirs).unwrap());
    let cdb = users_cdb::UsersCdb::open(&theirs).unwrap().unwrap();
    assert_eq!(cdb.lookup(b"anyone").unwrap(), None);
}
