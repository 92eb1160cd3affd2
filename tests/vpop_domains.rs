//! What a vpopmail host had besides mailboxes, over the real binary and daemon: alias
//! domains (SMTP delivery, POP3, checkpassword and SMTP AUTH logins as user@ALIAS),
//! per-domain limits, and bulletins (hard links, resumable without duplicates).

mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Client, Daemon};
use common::{DemoRoot, demo_root, turnmail};

fn ok(d: &DemoRoot, args: &[&str]) -> String {
    let o = turnmail(&d.root, args);
    assert!(o.status.success(), "{args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn refused(d: &DemoRoot, args: &[&str]) -> String {
    let o = turnmail(&d.root, args);
    assert!(!o.status.success(), "{args:?} should fail: {o:?}");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn add_user(d: &DemoRoot, address: &str, pw: &str) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["user", "add", address, "--password-stdin"])
        .env_remove("TURNMAIL_ROOT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{pw}\n").as_bytes())
        .unwrap();
    c.wait_with_output().unwrap()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn maildir(d: &DemoRoot, user: &str) -> PathBuf {
    d.root
        .join("domains/example.com")
        .join(user)
        .join("Maildir")
}

/// RCPT's reply, and when accepted the whole message's.
fn smtp(d: &Daemon, rcpt: &str, subject: &str) -> String {
    let mut c: Client = d.connect();
    assert!(c.reply().starts_with("220"));
    c.cmd("HELO test.example");
    c.cmd("MAIL FROM:<a@example.org>");
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    if !r.starts_with("250") {
        return r;
    }
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd(&format!("Subject: {subject}\r\n\r\nhello\r\n."));
    c.cmd("QUIT");
    r
}

/// RCPT's reply alone (the transaction is dropped).
fn rcpt(d: &Daemon, rcpt: &str) -> String {
    let mut c: Client = d.connect();
    assert!(c.reply().starts_with("220"));
    c.cmd("HELO test.example");
    c.cmd("MAIL FROM:<a@example.org>");
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    c.cmd("QUIT");
    r
}

/// A POP3 login with poplib and the message count (exit 3: refused).
fn pop(d: &Daemon, user: &str, pw: &str) -> (i32, String) {
    common::mailclients::poplib(d.pop3, user, pw)
}

/// Submission with AUTH by Python's smtplib (exit 3: refused).
fn submit(d: &Daemon, user: &str, pw: &str, to: &str) -> (i32, String) {
    common::mailclients::submit(d.submission, user, pw, to)
}

/// `turnmail checkpassword /bin/true` as qmail-popup runs it; its exit code.
fn checkpassword(root: &Path, user: &str, pw: &str) -> i32 {
    common::checkpassword(root, user, pw, "127.0.0.9")
        .code()
        .unwrap_or(-1)
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(15), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn alias_domain_delivers_and_logs_in_as_its_target() {
    let d = demo_root();
    let pw = d.report.password.clone();
    let assign_before = read(&d.root.join("users/assign"));
    let out = ok(
        &d,
        &["domain", "alias", "add", "example.net", "example.com"],
    );
    assert!(
        out.contains("example.net is now an alias of example.com"),
        "{out}"
    );
    // qmail's way: a virtualdomains line to the target's prefix, rcpthosts; nothing else.
    assert!(read(&d.root.join("control/virtualdomains")).contains("example.net:example.com\n"));
    assert!(read(&d.root.join("control/rcpthosts")).contains("example.net\n"));
    assert_eq!(read(&d.root.join("users/assign")), assign_before);
    // Dovecot's passwd-file has the alias's login too.
    let dp = read(&d.root.join("users/dovecot-passwd"));
    assert!(
        dp.lines().any(|l| l.starts_with("joe@example.net:{CRYPT}")),
        "{dp}"
    );
    // Shown as such.
    let list: serde_json::Value =
        serde_json::from_str(&ok(&d, &["domain", "list", "--json"])).unwrap();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["domain"] == "example.net")
        .unwrap()
        .clone();
    assert_eq!(row["alias_of"], "example.com", "{list}");
    assert!(ok(&d, &["domain", "list"]).contains("(alias of example.com)"));
    // Mailboxes and aliases are the target's: refused under the alias's name.
    let e = refused(&d, &["user", "add", "ann@example.net", "--generate"]);
    assert!(e.contains("alias domain of example.com"), "{e}");
    let e = refused(
        &d,
        &["alias", "add", "sales@example.net", "joe@example.com"],
    );
    assert!(e.contains("alias domain of example.com"), "{e}");
    let e = refused(
        &d,
        &["domain", "policy", "example.net", "forward:x@example.org"],
    );
    assert!(e.contains("alias domain of example.com"), "{e}");
    let e = refused(&d, &["domain", "del", "example.com"]);
    assert!(e.contains("has alias domains (example.net)"), "{e}");
    // Removing the alias as if it were a domain would take the target's home along.
    let e = refused(&d, &["domain", "del", "example.net"]);
    assert!(
        e.contains("turnmail domain alias remove example.net"),
        "{e}"
    );
    assert!(maildir(&d, "joe").join("new").is_dir());
    let e = refused(
        &d,
        &["domain", "alias", "add", "example.org", "example.net"],
    );
    assert!(e.contains("itself an alias of example.com"), "{e}");

    let daemon = Daemon::start(&d.root);
    // SMTP to user@ALIAS lands in the target's mailbox.
    let r = smtp(&daemon, "joe@example.net", "to the alias");
    assert!(r.starts_with("250"), "{r}");
    let new = files(&maildir(&d, "joe").join("new"));
    assert_eq!(new.len(), 1, "{new:?}");
    assert!(read(&new[0]).contains("Subject: to the alias"));
    // POP3, checkpassword and SMTP AUTH as user@ALIAS are the target's account. (POP3
    // lists messages from before the current second: let it pass.)
    std::thread::sleep(Duration::from_millis(1100));
    let (code, out) = pop(&daemon, "joe@example.net", &pw);
    assert_eq!(code, 0, "{out}\n{}", daemon.log_text());
    assert!(out.contains("count 1"), "{out}");
    assert_eq!(pop(&daemon, "joe@example.net", "wrong").0, 3);
    assert_eq!(checkpassword(&d.root, "joe@example.net", &pw), 0);
    assert_eq!(checkpassword(&d.root, "joe@example.net", "wrong"), 1);
    let (code, out) = submit(&daemon, "joe@example.net", &pw, "joe@example.com");
    assert_eq!(code, 0, "{out}\n{}", daemon.log_text());
    assert_eq!(out.trim(), "sent");
    // (POP3 moved the first one to cur/.)
    let all = || {
        let md = maildir(&d, "joe");
        files(&md.join("new")).len() + files(&md.join("cur")).len()
    };
    wait_for("the submitted message", || all() == 2);

    // Removed: the alias's lines go, the target stays as it was.
    ok(&d, &["domain", "alias", "remove", "example.net"]);
    assert!(!read(&d.root.join("control/virtualdomains")).contains("example.net"));
    assert!(!read(&d.root.join("control/rcpthosts")).contains("example.net"));
    assert_eq!(read(&d.root.join("users/assign")), assign_before);
    assert!(!read(&d.root.join("users/dovecot-passwd")).contains("@example.net"));
    // rcpthosts goes first and virtualdomains after it: the daemon may see the one
    // a reload before the other.
    wait_for("the daemon to drop the alias", || {
        !rcpt(&daemon, "joe@example.net").starts_with("250")
            && pop(&daemon, "joe@example.net", &pw).0 == 3
    });
    assert_eq!(checkpassword(&d.root, "joe@example.net", &pw), 1);
    std::thread::sleep(Duration::from_millis(1100));
    let (code, out) = pop(&daemon, "joe@example.com", &pw);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("count 2"), "{out}");
    let e = refused(&d, &["domain", "alias", "remove", "example.net"]);
    assert!(e.contains("not an alias domain"), "{e}");

    // An alias made by hand, qmail's way: the daemon picks it up for logins and
    // rewrites Dovecot's passwd-file.
    let vd = d.root.join("control/virtualdomains");
    let text = read(&vd) + "example.org:example.com\n";
    common::write(&vd, &text);
    common::touch_later(&vd, 2);
    let dp = d.root.join("users/dovecot-passwd");
    wait_for("the passwd-file after a hand edit", || {
        read(&dp).contains("joe@example.org:{CRYPT}")
    });
    assert_eq!(pop(&daemon, "joe@example.org", &pw).0, 0);
}

#[test]
fn limits_are_stored_shown_and_enforced() {
    let d = demo_root();
    ok(
        &d,
        &[
            "domain",
            "limits",
            "example.com",
            "--max-users",
            "2",
            "--max-aliases",
            "1",
            "--default-quota",
            "50M",
            "--max-quota",
            "1G",
        ],
    );
    // vpopmail's file, where vpopmail keeps it.
    let file = read(&d.root.join("domains/example.com/.qmailadmin-limits"));
    assert!(file.contains("maxpopaccounts: 2\n"), "{file}");
    assert!(file.contains("default_quota: 52428800\n"), "{file}");
    let j: serde_json::Value =
        serde_json::from_str(&ok(&d, &["domain", "limits", "example.com", "--json"])).unwrap();
    assert_eq!(j["limits"]["max_users"], 2, "{j}");
    assert_eq!(j["limits"]["max_aliases"], 1, "{j}");
    assert_eq!(j["limits"]["default_quota"], 52_428_800u64, "{j}");
    assert_eq!(j["limits"]["max_quota"], 1u64 << 30, "{j}");
    // joe is the first mailbox; one more fits, a third does not.
    assert!(add_user(&d, "ann@example.com", "pw-ann").status.success());
    let o = add_user(&d, "bob@example.com", "pw-bob");
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("has 2 mailbox(es), its limit is 2"), "{e}");
    assert!(!maildir(&d, "bob").exists());
    // One alias; more targets for it are fine, a second alias is not.
    ok(
        &d,
        &["alias", "add", "sales@example.com", "joe@example.com"],
    );
    ok(
        &d,
        &["alias", "add", "sales@example.com", "ann@example.com"],
    );
    let e = refused(&d, &["alias", "add", "info@example.com", "joe@example.com"]);
    assert!(e.contains("its limit is 1"), "{e}");
    let e = refused(
        &d,
        &["domain", "limits", "example.com", "--default-quota", "2G"],
    );
    assert!(e.contains("larger than the maximum quota"), "{e}");
    let e = refused(
        &d,
        &["domain", "limits", "example.com", "--max-users", "many"],
    );
    assert!(e.contains("expected a number"), "{e}");
    ok(
        &d,
        &[
            "domain",
            "limits",
            "example.com",
            "--max-users",
            "unlimited",
        ],
    );
    assert!(add_user(&d, "bob@example.com", "pw-bob").status.success());
    let out = ok(&d, &["domain", "limits", "example.com"]);
    assert!(out.contains("max users:     unlimited"), "{out}");
    // The default quota is the one deliveries enforce (users/quota's domain line, each
    // Maildir's maildirsize); a mailbox's own quota stays under the maximum.
    let quota = read(&d.root.join("users/quota"));
    assert!(quota.contains("@example.com:52428800S"), "{quota}");
    let size = read(&maildir(&d, "joe").join("maildirsize"));
    assert!(size.starts_with("52428800S\n"), "{size}");
    let e = refused(&d, &["user", "quota", "joe@example.com", "2G"]);
    assert!(e.contains("at most 1.0 GiB per mailbox"), "{e}");
    let e = refused(&d, &["user", "quota", "joe@example.com", "1000C"]);
    assert!(e.contains("at most"), "{e}");
    ok(&d, &["user", "quota", "joe@example.com", "500M"]);
}

/// The bulletin copies in a Maildir (new/ and cur/), by the bulletin id in the name.
fn copies(md: &Path, id: &str) -> Vec<PathBuf> {
    let mut v = files(&md.join("new"));
    v.extend(files(&md.join("cur")));
    v.retain(|p| p.file_name().unwrap().to_string_lossy().contains(id));
    v
}

fn journal_of(out: &str) -> PathBuf {
    PathBuf::from(
        out.lines()
            .find_map(|l| l.strip_prefix("journal: "))
            .unwrap_or_else(|| panic!("no journal line: {out}")),
    )
}

/// The `B` + 16 hex digits of a bulletin's names, from its journal's name.
fn bulletin_id(journal: &Path) -> String {
    let stem = journal.file_stem().unwrap().to_string_lossy().into_owned();
    format!(".B{}.", &stem[..16])
}

#[test]
fn bulletin_hard_links_and_resumes_without_duplicates() {
    let d = demo_root();
    assert!(add_user(&d, "ann@example.com", "a").status.success());
    assert!(add_user(&d, "bob@example.com", "b").status.success());
    let users = ["ann", "bob", "joe"];
    let msg = d.dir.path().join("bulletin.txt");
    common::write(
        &msg,
        "From: postmaster@example.com\r\nSubject: maintenance tonight\r\n\r\nThe server restarts at 2am.\r\n",
    );
    let out = ok(
        &d,
        &["domain", "bulletin", "example.com", msg.to_str().unwrap()],
    );
    assert!(
        out.contains("3 mailbox(es): 1 written, 2 linked, 0 already had it"),
        "{out}"
    );
    let journal = journal_of(&out);
    let id = bulletin_id(&journal);
    // One file, three names: the same inode in every new/, owned by the mail user.
    let mut inodes = Vec::new();
    for u in users {
        let c = copies(&maildir(&d, u), &id);
        assert_eq!(c.len(), 1, "{u}: {c:?}");
        let m = std::fs::metadata(&c[0]).unwrap();
        assert_eq!(m.nlink(), 3, "{u}");
        assert_eq!(m.uid(), common::mail_user().uid);
        inodes.push(m.ino());
        let text = read(&c[0]);
        assert!(text.starts_with("From: postmaster@example.com\nSubject: maintenance"));
        assert!(!text.contains('\r'));
    }
    assert!(inodes.windows(2).all(|w| w[0] == w[1]), "{inodes:?}");
    // Run again: nobody gets it twice.
    let out = ok(
        &d,
        &["domain", "bulletin", "example.com", msg.to_str().unwrap()],
    );
    assert!(
        out.contains("0 written, 0 linked, 3 already had it"),
        "{out}"
    );
    for u in users {
        assert_eq!(copies(&maildir(&d, u), &id).len(), 1, "{u}");
    }

    // An interrupted bulletin: the journal records ann only; bob was never reached;
    // joe was reached but not recorded (the crash came in between) and has read it
    // since (moved to cur/ with flags).
    let msg2 = d.dir.path().join("bulletin2.txt");
    common::write(&msg2, "Subject: second notice\n\nagain\n");
    let out = ok(
        &d,
        &["domain", "bulletin", "example.com", msg2.to_str().unwrap()],
    );
    let journal2 = journal_of(&out);
    let id2 = bulletin_id(&journal2);
    let text = read(&journal2);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("turnmail-bulletin "));
    assert!(lines[1].ends_with("/ann/Maildir"), "{text}");
    std::fs::write(&journal2, format!("{}\n{}\n", lines[0], lines[1])).unwrap();
    for p in copies(&maildir(&d, "bob"), &id2) {
        std::fs::remove_file(p).unwrap();
    }
    let joe = copies(&maildir(&d, "joe"), &id2).remove(0);
    let seen = maildir(&d, "joe").join("cur").join(format!(
        "{}:2,S",
        joe.file_name().unwrap().to_string_lossy()
    ));
    std::fs::rename(&joe, &seen).unwrap();
    let out = ok(
        &d,
        &["domain", "bulletin", "example.com", msg2.to_str().unwrap()],
    );
    assert!(
        out.contains("3 mailbox(es): 1 written, 0 linked, 2 already had it"),
        "{out}"
    );
    for u in users {
        assert_eq!(copies(&maildir(&d, u), &id2).len(), 1, "{u}");
    }
    assert_eq!(read(&journal2).lines().count(), 4);

    // --all reaches every mailbox of the root; a domain that does not exist is refused.
    let out = ok(&d, &["domain", "bulletin", "--all", msg2.to_str().unwrap()]);
    assert!(out.contains("3 mailbox(es)"), "{out}");
    let e = refused(
        &d,
        &[
            "domain",
            "bulletin",
            "nowhere.example",
            msg2.to_str().unwrap(),
        ],
    );
    assert!(e.contains("nowhere.example"), "{e}");
    let e = refused(&d, &["domain", "bulletin", "--all", "a", "b"]);
    assert!(e.contains("only the message FILE"), "{e}");
}
