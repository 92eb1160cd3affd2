//! Files that are not what their place says: symlinks and FIFOs planted in a Maildir, a
//! site spool or the outbound queue (by anything running as the mail user, a `|program`
//! line say) are never read as messages; deliveries for an assign entry whose uid the
//! daemon cannot act as are deferred, not written as the mail user.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::daemon::Daemon;
use common::sink::{Script, Sink};
use common::{DemoRoot, demo_root, write};
use turnmail::maildir::Maildir;

/// Files in a mail root belong to its mail user (the daemon runs as that user).
fn own(path: &Path) {
    if nix::unistd::Uid::effective().is_root() {
        let mu = common::mail_user();
        std::os::unix::fs::lchown(path, Some(mu.uid), Some(mu.gid)).unwrap();
    }
}

/// `turnmail ARGS` on the root, killed (and the test failed) after 30 s: a reader that
/// opens a FIFO would otherwise hang the test.
fn turnmail(d: &DemoRoot, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("turnmail {args:?} hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn deliver_to_joe(d: &DemoRoot, body: &str) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["deliver", "-f", "bob@example.org", "--", "joe@example.com"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    assert!(c.wait().unwrap().success());
}

fn joe_maildir(d: &DemoRoot) -> std::path::PathBuf {
    d.root.join("domains/example.com/joe/Maildir")
}

fn symlink(target: &Path, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
    own(link);
}

fn fifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    own(path);
}

/// A file outside every spool that looks like a spool file: were it followed, its
/// bytes (the word SECRET) would be sent or delivered.
fn bait(d: &DemoRoot, rcpt: &str) -> std::path::PathBuf {
    let p = d.root.join("bait");
    write(
        &p,
        &format!("Return-Path: <eve@example.org>\nDelivered-To: {rcpt}\nSubject: bait\n\nSECRET\n"),
    );
    own(&p);
    common::set_mtime(&p, SystemTime::now() - Duration::from_secs(60));
    p
}

/// One POP3 reply: the status line, plus the lines up to "." for multi-line ones.
fn pop3_reply(r: &mut BufReader<TcpStream>, multi: bool) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        assert!(r.read_line(&mut line).unwrap() > 0, "closed: {all}");
        let end = line == ".\r\n" || (all.is_empty() && (!multi || line.starts_with("-ERR")));
        all.push_str(&line);
        if end {
            return all;
        }
    }
}

fn pop3_cmd(s: &mut TcpStream, r: &mut BufReader<TcpStream>, cmd: &str, multi: bool) -> String {
    s.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
    pop3_reply(r, multi)
}

#[test]
fn pop3_never_lists_or_retrieves_a_symlink_and_a_fifo_does_not_hang_it() {
    let d = demo_root();
    deliver_to_joe(&d, "Subject: real\n\nthe one real message\n");
    let md = joe_maildir(&d);
    let poppasswd = d.root.join("users/poppasswd");
    let key = d.root.join("tls/key.pem");
    let hash = std::fs::read_to_string(&poppasswd).unwrap();
    let hash = hash.split(':').nth(1).unwrap().to_string();
    let key_text = std::fs::read_to_string(&key).unwrap();
    // With and without size tags (a name without ,W= makes the listing read the file),
    // in new/ and in cur/, to each secret.
    symlink(&poppasswd, &md.join("new/1000000001.M1P1Q1.evil,S=10,W=10"));
    symlink(&poppasswd, &md.join("new/1000000002.M1P1Q1.evil"));
    symlink(&key, &md.join("cur/1000000003.M1P1Q1.evil:2,S"));
    symlink(&key, &md.join("cur/1000000004.M1P1Q1.evil,S=1,W=1:2,"));
    fifo(&md.join("new/1000000005.M1P1Q1.fifo"));
    // Files of the current second are not listed: let the real one age.
    std::thread::sleep(Duration::from_millis(1100));

    let s = Daemon::start(&d.root);
    let stream = TcpStream::connect(s.pop3).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    assert!(pop3_reply(&mut r, false).starts_with("+OK"));
    let user = format!("USER {}", d.report.login);
    assert!(pop3_cmd(&mut w, &mut r, &user, false).starts_with("+OK"));
    let pass = format!("PASS {}", d.report.password);
    let login = pop3_cmd(&mut w, &mut r, &pass, false);
    assert!(login.starts_with("+OK"), "{login}");
    let stat = pop3_cmd(&mut w, &mut r, "STAT", false);
    assert!(stat.starts_with("+OK 1 "), "only the real message: {stat}");
    let list = pop3_cmd(&mut w, &mut r, "LIST", true);
    let uidl = pop3_cmd(&mut w, &mut r, "UIDL", true);
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(!uidl.contains("evil") && !uidl.contains("fifo"), "{uidl}");
    let mut seen = String::new();
    for i in 1..=5 {
        seen.push_str(&pop3_cmd(&mut w, &mut r, &format!("RETR {i}"), true));
        seen.push_str(&pop3_cmd(&mut w, &mut r, &format!("TOP {i} 5"), true));
    }
    assert!(seen.contains("the one real message"), "{seen}");
    assert!(!seen.contains(&hash), "a password hash went out: {seen}");
    assert!(!seen.contains("PRIVATE KEY") && !seen.contains(key_text.trim()));
    assert!(pop3_cmd(&mut w, &mut r, "QUIT", false).starts_with("+OK"));
    let log = s.log_text();
    assert!(
        log.contains("not a regular file (symlink)") && log.contains("not a regular file (FIFO)"),
        "the operator is told: {log}"
    );
    // The planted names are left alone (never followed, never deleted through).
    assert!(md.join("new/1000000002.M1P1Q1.evil").is_symlink());
    assert_eq!(
        std::fs::read_to_string(&poppasswd)
            .unwrap()
            .split(':')
            .nth(1),
        Some(&hash[..])
    );
}

#[test]
fn a_symlink_or_fifo_in_a_site_spool_is_quarantined_never_sent() {
    let d = demo_root();
    let sink = Sink::start(Script {
        pipelining: true,
        ..Script::default()
    });
    let md = Maildir::new(d.root.join("sites/acme/Maildir"));
    let real = md
        .deliver(&[b"Return-Path: <bob@example.org>\nDelivered-To: site-acme-joe@acme.example\nSubject: real\n\nreal\n"])
        .unwrap();
    own(&real.path);
    common::set_mtime(&real.path, SystemTime::now() - Duration::from_secs(60));
    let target = bait(&d, "site-acme-joe@acme.example");
    symlink(&target, &md.path().join("new/1000000001.M1P1Q1.evil"));
    symlink(&target, &md.path().join("cur/1000000002.M1P1Q1.evil:2,"));
    fifo(&md.path().join("new/1000000003.M1P1Q1.fifo"));

    // The operator's view does not read through the link either.
    let show = turnmail(
        &d,
        &[
            "queue",
            "show",
            "--site",
            "acme",
            "--body",
            "1000000001.M1P1Q1.evil",
        ],
    );
    assert!(!text(&show).contains("SECRET"), "{}", text(&show));
    let list = turnmail(&d, &["queue", "list", "--site", "acme"]);
    assert!(!text(&list).contains("eve@example.org"), "{}", text(&list));

    let o = turnmail(&d, &["flush", "acme", "--to", &sink.addr.to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let got = sink.messages();
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(
        got.iter()
            .all(|m| !String::from_utf8_lossy(&m.data).contains("SECRET"))
    );
    let q = md.path().join(".quarantine");
    for name in ["1000000001.M1P1Q1.evil", "1000000002.M1P1Q1.evil:2,"] {
        assert!(q.join(name).is_symlink(), "{name} quarantined as it was");
    }
    let fifo_type = std::fs::symlink_metadata(q.join("1000000003.M1P1Q1.fifo")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fifo_type.file_type()
    ));
    assert!(std::fs::read_to_string(&target).unwrap().contains("SECRET"));
    assert!(
        text(&o).contains("quarantined: not a regular file"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_symlink_in_the_outbound_queue_is_quarantined_never_delivered() {
    let d = demo_root();
    let queue = Maildir::create(d.root.join("queue")).unwrap();
    for sub in ["", "tmp", "new", "cur"] {
        own(&queue.path().join(sub));
    }
    let target = bait(&d, "joe@example.com");
    symlink(&target, &queue.path().join("new/1000000001.M1P1Q1.evil"));
    fifo(&queue.path().join("new/1000000002.M1P1Q1.fifo"));
    let o = turnmail(&d, &["flush", "--queue"]);
    assert!(text(&o).contains("0 delivered"), "{}", text(&o));
    let new = joe_maildir(&d).join("new");
    for e in std::fs::read_dir(&new).unwrap() {
        let body = std::fs::read_to_string(e.unwrap().path()).unwrap();
        assert!(
            !body.contains("SECRET"),
            "delivered through the link: {body}"
        );
    }
    let q = queue.path().join(".quarantine");
    assert!(q.join("1000000001.M1P1Q1.evil").is_symlink());
    assert!(q.join("1000000002.M1P1Q1.fifo").exists());
}

// ---------------------------------------------------------------------------------
// Commands run as root leave nothing in the root that its owner cannot use.

/// `turnmail ARGS` as `uid`/`gid` (through setpriv), with `stdin`.
fn turnmail_as(d: &DemoRoot, who: Option<(u32, u32)>, args: &[&str], stdin: &str) -> Output {
    let mut cmd = match who {
        Some((uid, gid)) => {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={uid}"))
                .arg(format!("--regid={gid}"))
                .arg("--clear-groups")
                .arg(env!("CARGO_BIN_EXE_turnmail"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_turnmail")),
    };
    let mut child = cmd
        .arg("--root")
        .arg(&d.root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux) runs this test");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Every path under `dir` (itself included) whose owner is not `uid`.
fn not_owned_by(dir: &Path, uid: u32) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let mut bad = Vec::new();
    let m = std::fs::symlink_metadata(dir).unwrap();
    if m.uid() != uid {
        bad.push(format!(
            "{} (uid {}, mode {:o})",
            dir.display(),
            m.uid(),
            m.mode()
        ));
    }
    if m.is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            bad.extend(not_owned_by(&e.unwrap().path(), uid));
        }
    }
    bad
}

fn ok(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(0), "{what}: {}", text(o));
}

#[test]
fn commands_run_as_root_leave_the_root_usable_by_its_owner() {
    if !common::root_or_skip("running commands as root and as the root's owner") {
        return;
    }
    let d = demo_root();
    let mu = common::mail_user();
    let owner = Some((mu.uid, mu.gid));
    let run = d.root.join("run");
    assert_eq!(not_owned_by(&d.root, mu.uid), Vec::<String>::new(), "init");

    // Read-only commands as root create nothing (no lock file).
    ok(&turnmail_as(&d, None, &["status"], ""), "status as root");
    ok(
        &turnmail_as(&d, None, &["user", "list"], ""),
        "user list as root",
    );
    let lock = run.join("edit.lock");
    assert!(!lock.exists(), "a read made {}", lock.display());
    assert_eq!(
        not_owned_by(&d.root, mu.uid),
        Vec::<String>::new(),
        "after reads"
    );
    ok(
        &turnmail_as(&d, owner, &["status"], ""),
        "status as the owner",
    );

    // Edits and a recompiling resolve as root: everything new is the owner's.
    ok(
        &turnmail_as(
            &d,
            None,
            &["user", "add", "ann@example.com", "--password-stdin"],
            "pw-ann\n",
        ),
        "user add as root",
    );
    common::touch_later(&d.root.join("users/assign"), 2);
    common::touch_later(&d.root.join("users/poppasswd"), 2);
    ok(
        &turnmail_as(&d, None, &["resolve", "joe@example.com"], ""),
        "resolve as root",
    );
    assert_eq!(
        not_owned_by(&d.root, mu.uid),
        Vec::<String>::new(),
        "after root's commands"
    );
    for o in [
        turnmail_as(&d, owner, &["status"], ""),
        turnmail_as(
            &d,
            owner,
            &["user", "add", "bob@example.com", "--password-stdin"],
            "pw-bob\n",
        ),
        turnmail_as(&d, owner, &["user", "list"], ""),
    ] {
        ok(&o, "a command as the owner after root's");
    }

    // What an older version left (run/ and the lock owned by root, 0700 and 0600):
    // reads as the owner still work, and root's next edit hands both back.
    for (p, mode) in [(run.clone(), 0o700), (run.join("edit.lock"), 0o600)] {
        std::os::unix::fs::chown(&p, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    }
    ok(
        &turnmail_as(&d, owner, &["status"], ""),
        "status as the owner, root's lock",
    );
    ok(
        &turnmail_as(
            &d,
            None,
            &["user", "passwd", "ann@example.com", "--password-stdin"],
            "pw2\n",
        ),
        "user passwd as root",
    );
    assert_eq!(
        not_owned_by(&d.root, mu.uid),
        Vec::<String>::new(),
        "healed"
    );
    ok(
        &turnmail_as(
            &d,
            owner,
            &["user", "add", "cat@example.com", "--password-stdin"],
            "pw-cat\n",
        ),
        "user add as the owner after the heal",
    );
    assert_eq!(
        not_owned_by(&d.root, mu.uid),
        Vec::<String>::new(),
        "at the end"
    );
}

// ---------------------------------------------------------------------------------
// Deliveries never write as another uid than the users/assign entry names.

#[test]
fn mail_for_an_entry_with_another_uid_is_deferred_and_nothing_is_written() {
    let d = demo_root();
    // eve's entry names a uid the daemon cannot act as (it runs as the mail user),
    // though her home and Maildir are the mail user's and so writable to it.
    let me = nix::unistd::Uid::effective().as_raw();
    let other = if me == 65534 { 65533 } else { 65534 };
    let home = d.root.join("domains/example.com/eve");
    std::fs::create_dir(&home).unwrap();
    own(&home);
    let md = Maildir::create(home.join("Maildir")).unwrap();
    for sub in ["", "tmp", "new", "cur"] {
        own(&md.path().join(sub));
    }
    let assign = d.root.join("users/assign");
    let text = std::fs::read_to_string(&assign).unwrap();
    let line = format!(
        "=example.com-eve:eve:{other}:{other}:{}:::\n",
        home.display()
    );
    write(&assign, &(line + &text));
    own(&assign);
    common::touch_later(&assign, 2);

    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO uid.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<bob@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<eve@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: for eve\r\n\r\nhello\r\n");
    let r = c.cmd(".");
    assert!(r.starts_with("451 4."), "{r}");
    // Joe's entry is the mail user's: the same session delivers to him.
    assert!(c.cmd("MAIL FROM:<bob@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<joe@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: for joe\r\n\r\nhello\r\n");
    assert!(c.cmd(".").starts_with("250"));
    for sub in ["tmp", "new", "cur"] {
        let n = std::fs::read_dir(md.path().join(sub)).unwrap().count();
        assert_eq!(n, 0, "eve's {sub}/ was written");
    }
    assert_eq!(
        std::fs::read_dir(joe_maildir(&d).join("new"))
            .unwrap()
            .count(),
        1
    );
    let log = s.log_text();
    assert!(
        log.contains("deferred: the users/assign entry names another uid/gid")
            && log.contains(&format!("uid={other}")),
        "{log}"
    );
    assert!(c.cmd("QUIT").starts_with("221"));
}
