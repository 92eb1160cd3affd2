//! Maildir++ quotas over real sockets: a full mailbox refused at RCPT (452 4.2.2, or
//! 552 5.2.2 when configured), a message that would cross the quota refused at
//! delivery, the warning sent once per crossing, POP3 (Python's poplib) reading a full
//! mailbox and its deletions lowering the usage, and Dovecot's quota plugin
//! (`doveadm quota get`, `doveadm expunge`) sharing the same `maildirsize`.

mod common;

use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Client, Daemon};
use common::{DemoRoot, demo_root, write};

const JOE: &str = "joe@example.com";

fn maildir(d: &DemoRoot) -> PathBuf {
    d.root.join("domains/example.com/joe/Maildir")
}

fn cli(d: &DemoRoot, args: &[&str]) -> String {
    let o = common::turnmail(&d.root, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "turnmail {args:?}: {text}");
    text
}

/// Usage as `turnmail user quota --json` reports it from maildirsize: (bytes, messages).
fn usage(d: &DemoRoot) -> (i64, i64) {
    let v: serde_json::Value =
        serde_json::from_str(&cli(d, &["user", "quota", JOE, "--json"])).expect("quota JSON");
    let u = &v["quota"]["usage"];
    (
        u["bytes"].as_i64().unwrap(),
        u["messages"].as_i64().unwrap(),
    )
}

/// Files in new/ and cur/.
fn messages(d: &DemoRoot) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(maildir(d).join(sub)).unwrap() {
            out.push(e.unwrap().path());
        }
    }
    out
}

fn body(n: usize) -> String {
    let line = "x".repeat(70);
    let mut b =
        String::from("From: bob@example.org\r\nTo: joe@example.com\r\nSubject: test\r\n\r\n");
    while b.len() < n {
        b.push_str(&line);
        b.push_str("\r\n");
    }
    b
}

/// One SMTP transaction to joe: the RCPT reply, and the reply to the data (None when
/// RCPT was refused).
fn smtp(daemon: &Daemon, size: usize) -> (String, Option<String>) {
    let mut c = Client::connect(daemon.addr);
    c.reply();
    c.cmd("EHLO client.example.org");
    assert!(c.cmd("MAIL FROM:<bob@example.org>").starts_with("250"));
    let rcpt = c.cmd(&format!("RCPT TO:<{JOE}>"));
    if !rcpt.starts_with("250") {
        c.cmd("QUIT");
        return (rcpt, None);
    }
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(body(size).as_bytes());
    let done = c.cmd(".");
    c.cmd("QUIT");
    (rcpt, Some(done))
}

#[test]
fn full_mailbox_refused_at_rcpt_then_permanent_when_configured() {
    let d = demo_root();
    let daemon = Daemon::start(&d.root);
    for _ in 0..3 {
        assert!(smtp(&daemon, 2000).1.unwrap().starts_with("250"));
    }
    // A quota below what the mailbox holds: recalculated from the Maildir.
    cli(&d, &["user", "quota", JOE, "4000S"]);
    let (bytes, count) = usage(&d);
    assert_eq!(count, 3);
    assert!(bytes > 6000, "{bytes}");
    let md = maildir(&d);
    let mu = common::mail_user();
    let meta = std::fs::metadata(md.join("maildirsize")).unwrap();
    assert_eq!(
        meta.uid(),
        mu.uid,
        "maildirsize belongs to the mailbox's owner"
    );
    let (rcpt, _) = smtp(&daemon, 100);
    assert!(rcpt.starts_with("452 4.2.2"), "{rcpt}");
    assert_eq!(messages(&d).len(), 3);
    // `turnmail resolve` says what RCPT says, and why.
    let o = common::turnmail(&d.root, &["resolve", JOE]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(111), "{out}");
    assert!(
        out.contains("mailbox over quota") && out.contains("of 4000S"),
        "{out}"
    );
    assert!(out.contains("SMTP answers: 452 4.2.2"), "{out}");
    // Mail removed behind maildirsize's back: still "over" while the file is fresh,
    // recounted at RCPT once it is 15 minutes old.
    for p in messages(&d).iter().skip(1) {
        std::fs::remove_file(p).unwrap();
    }
    let (rcpt, _) = smtp(&daemon, 100);
    assert!(rcpt.starts_with("452 4.2.2"), "{rcpt}");
    common::set_mtime(
        &md.join("maildirsize"),
        std::time::SystemTime::now() - Duration::from_secs(16 * 60),
    );
    let (rcpt, data) = smtp(&daemon, 100);
    assert!(rcpt.starts_with("250"), "{rcpt}");
    assert!(data.unwrap().starts_with("250"));
    assert_eq!(usage(&d).1, 2);
    // Full again for what follows.
    cli(&d, &["user", "quota", JOE, "none"]);
    for _ in 0..3 {
        assert!(smtp(&daemon, 2000).1.unwrap().starts_with("250"));
    }
    cli(&d, &["user", "quota", JOE, "4000S"]);
    drop(daemon);

    common::config(&d, "[quota]\nover_quota = \"permanent\"\n");
    let daemon = Daemon::start(&d.root);
    let (rcpt, _) = smtp(&daemon, 100);
    assert!(rcpt.starts_with("552 5.2.2"), "{rcpt}");
    let o = common::turnmail(&d.root, &["resolve", JOE, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(o.status.code(), Some(100), "{v}");
    assert_eq!(v["outcome"], "over_quota", "{v}");
    assert!(
        v["smtp_reply"].as_str().unwrap().starts_with("552 5.2.2"),
        "{v}"
    );
    // Room made again: accepted.
    cli(&d, &["user", "quota", JOE, "none"]);
    assert!(!md.join("maildirsize").exists());
    let (rcpt, data) = smtp(&daemon, 100);
    assert!(rcpt.starts_with("250"), "{rcpt}");
    assert!(data.unwrap().starts_with("250"));
}

#[test]
fn a_message_that_would_cross_is_refused_at_delivery() {
    let d = demo_root();
    common::config(&d, "[quota]\nwarn_percent = 0\n");
    cli(&d, &["user", "quota", JOE, "5000S,10C"]);
    let daemon = Daemon::start(&d.root);
    let (rcpt, data) = smtp(&daemon, 3000);
    assert!(rcpt.starts_with("250") && data.unwrap().starts_with("250"));
    let before = usage(&d);
    assert_eq!(before.1, 1);
    // Under quota at RCPT, but this one would take it past 5000 bytes: deferred.
    let (rcpt, data) = smtp(&daemon, 3000);
    assert!(rcpt.starts_with("250"), "{rcpt}");
    let data = data.unwrap();
    assert!(data.starts_with("451"), "{data}");
    assert_eq!(messages(&d).len(), 1);
    assert_eq!(usage(&d), before);
    assert!(daemon.log_text().contains("over quota"));
    // A small one still fits, and is counted.
    let (_, data) = smtp(&daemon, 200);
    assert!(data.unwrap().starts_with("250"));
    let after = usage(&d);
    assert_eq!(after.1, 2);
    assert!(after.0 > before.0 + 200);
    // The sum in maildirsize agrees with a count of the files' sizes.
    let on_disk: u64 = messages(&d)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(after.0 as u64, on_disk);
    drop(daemon);

    // Bounced instead when over-quota mail is refused for good.
    common::config(
        &d,
        "[quota]\nover_quota = \"permanent\"\nwarn_percent = 0\n",
    );
    let daemon = Daemon::start(&d.root);
    let (rcpt, data) = smtp(&daemon, 3000);
    assert!(rcpt.starts_with("250"), "{rcpt}");
    let data = data.unwrap();
    assert!(data.starts_with("554"), "{data}");
    assert_eq!(messages(&d).len(), 2);

    // `turnmail check` notices a maildirsize whose limits are not users/quota's.
    write(&maildir(&d).join("maildirsize"), "1S\n0 0\n");
    let o = common::turnmail(&d.root, &["check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(
            "users/quota: joe@example.com: quota 5000S,10C here, but its maildirsize says 1S"
        ),
        "{out}"
    );
    cli(&d, &["user", "quota", JOE, "5000S,10C"]);
    let o = common::turnmail(&d.root, &["check"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains("users/quota"));
}

fn warnings(d: &DemoRoot) -> usize {
    messages(d)
        .iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains("Subject: Your mailbox is")
        })
        .count()
}

const POPLIB: &str = r#"
import poplib, sys
port, user, secret, dele = sys.argv[1:5]
p = poplib.POP3("127.0.0.1", int(port), timeout=30)
p.user(user)
p.pass_(secret)
n, size = p.stat()
print("count", n)
for i in range(1, n + 1):
    lines = p.retr(i)[1]
    print("retr", i, len(lines))
for entry in p.list()[1]:
    num, octets = entry.split()
    if dele == "big" and int(octets) > 4000:
        p.dele(int(num))
        print("dele", int(num))
p.quit()
"#;

/// Log in to turnmail's POP3 as joe, RETR everything, DELE the messages over 4000
/// octets when `dele` is "big", QUIT.
fn pop(daemon: &Daemon, d: &DemoRoot, dele: &str) -> String {
    // Files from the current second are not listed (qmail-pop3d's rule).
    std::thread::sleep(Duration::from_millis(1100));
    let o = Command::new("python3")
        .args([
            "-c",
            POPLIB,
            &daemon.pop3.port().to_string(),
            JOE,
            &d.report.password,
            dele,
        ])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "poplib: {text}");
    text
}

#[test]
fn warning_once_per_crossing_and_pop3_dele_makes_room() {
    let d = demo_root();
    cli(&d, &["user", "quota", JOE, "20000S"]);
    let daemon = Daemon::start(&d.root);
    // 47%: no warning.
    assert!(smtp(&daemon, 9000).1.unwrap().starts_with("250"));
    assert_eq!(warnings(&d), 0);
    // Past 90%: one warning, delivered into the mailbox and counted.
    assert!(smtp(&daemon, 9000).1.unwrap().starts_with("250"));
    assert_eq!(warnings(&d), 1);
    assert!(maildir(&d).join("quotawarn").exists());
    assert_eq!(usage(&d).1, 3);
    // Still past it: no second warning.
    assert!(smtp(&daemon, 50).1.unwrap().starts_with("250"));
    assert_eq!(warnings(&d), 1);
    // A message that would cross is refused at delivery, so a mailbox reaches "over"
    // when its quota is lowered below what it holds: RCPT refuses then.
    let (_, data) = smtp(&daemon, 3000);
    assert!(data.unwrap().starts_with("451"));
    cli(&d, &["user", "quota", JOE, "5000S"]);
    let (rcpt, _) = smtp(&daemon, 50);
    assert!(rcpt.starts_with("452 4.2.2"), "{rcpt}");
    assert_eq!(warnings(&d), 1);
    // POP3 still reads everything of a full mailbox.
    let n = messages(&d).len();
    let out = pop(&daemon, &d, "big");
    assert!(out.contains(&format!("count {n}")), "{out}");
    assert_eq!(out.matches("retr ").count(), n, "{out}");
    assert_eq!(out.matches("dele ").count(), 2, "{out}");
    cli(&d, &["user", "quota", JOE, "20000S"]);
    // The two big ones went at QUIT: usage down, the warning forgotten, mail accepted.
    let (bytes, count) = usage(&d);
    assert_eq!(count as usize, n - 2);
    assert!(bytes < 5000, "{bytes}");
    assert!(!maildir(&d).join("quotawarn").exists());
    let (rcpt, data) = smtp(&daemon, 200);
    assert!(rcpt.starts_with("250") && data.unwrap().starts_with("250"));
    assert_eq!(warnings(&d), 1);
    // The next crossing warns again: one message taking it to about 94%.
    let (b, _) = usage(&d);
    let size = (19000 - b - 400) as usize;
    assert!(smtp(&daemon, size).1.unwrap().starts_with("250"));
    assert_eq!(warnings(&d), 2);
}

const DOVECOT: &str = "/usr/sbin/dovecot";
const DOVEADM: &str = "/usr/bin/doveadm";

struct Dovecot {
    child: Child,
    conf: PathBuf,
    log: PathBuf,
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        common::terminate(&mut self.child);
    }
}

impl Dovecot {
    /// A private Dovecot whose userdb is a passwd-file naming joe's home, with the
    /// quota plugin's Maildir++ backend and no limits of its own: Dovecot takes the
    /// limits from the maildirsize header, as it does for Courier's mailboxes.
    fn start(d: &DemoRoot, work: &Path, extra: &str) -> Dovecot {
        let mu = common::mail_user();
        let users = work.join("users");
        write(
            &users,
            &format!(
                "{JOE}::{}:{}::{}::{extra}\n",
                mu.uid,
                mu.gid,
                d.root.join("domains/example.com/joe").display()
            ),
        );
        let port = common::daemon::free_port();
        let log = work.join("dovecot.log");
        let conf = work.join("dovecot.conf");
        write(
            &conf,
            &format!(
                r#"base_dir = {w}/run
state_dir = {w}/state
instance_name = turnmail-quota-{port}
log_path = {log}
protocols = pop3
listen = 127.0.0.1
ssl = no
first_valid_uid = {uid}
mail_location = maildir:~/Maildir
mail_plugins = quota
passdb {{
  driver = static
  args = nopassword=y
}}
userdb {{
  driver = passwd-file
  args = {users}
}}
plugin {{
  quota = maildir:User quota
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"#,
                w = work.display(),
                log = log.display(),
                uid = mu.uid,
                users = users.display(),
            ),
        );
        let child = Command::new(DOVECOT)
            .args(["-F", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("dovecot.stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut dc = Dovecot { child, conf, log };
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = dc.child.try_wait() {
                panic!(
                    "dovecot exited ({status}): {}{}",
                    std::fs::read_to_string(work.join("dovecot.stderr")).unwrap_or_default(),
                    std::fs::read_to_string(&dc.log).unwrap_or_default()
                );
            }
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "dovecot did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        dc
    }

    fn doveadm(&self, args: &[&str]) -> String {
        let o = Command::new(DOVEADM)
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.status.success(),
            "doveadm {args:?}: {text}\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
        text
    }

    /// `doveadm quota get`: (type, value, limit) rows; STORAGE in KiB.
    fn quota(&self) -> Vec<(String, String, String)> {
        let out = self.doveadm(&["-f", "tab", "quota", "get", "-u", JOE]);
        out.lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() >= 4).then(|| (f[1].to_string(), f[2].to_string(), f[3].to_string()))
            })
            .collect()
    }
}

#[test]
fn dovecot_reads_turnmails_maildirsize_and_turnmail_reads_dovecots() {
    if !Path::new(DOVECOT).exists() || !Path::new(DOVEADM).exists() {
        common::skip("Dovecot is not installed (dovecot-core, dovecot-pop3d)");
        return;
    }
    if !common::root_or_skip("a private Dovecot instance") {
        return;
    }
    let d = demo_root();
    cli(&d, &["user", "quota", JOE, "100K,5C"]);
    let daemon = Daemon::start(&d.root);
    for _ in 0..3 {
        assert!(smtp(&daemon, 9000).1.unwrap().starts_with("250"));
    }
    let (bytes, count) = usage(&d);
    assert_eq!(count, 3);
    let work = tempfile::Builder::new()
        .prefix("turnmail-quota-dovecot")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let dc = Dovecot::start(&d, work.path(), "");
    let q = dc.quota();
    let storage = q.iter().find(|r| r.0 == "STORAGE").expect("STORAGE row");
    let msgs = q.iter().find(|r| r.0 == "MESSAGE").expect("MESSAGE row");
    assert_eq!(storage.2, "100", "the limit from turnmail's header: {q:?}");
    assert_eq!(storage.1, ((bytes + 1023) / 1024).to_string(), "{q:?}");
    assert_eq!(msgs.1, "3", "{q:?}");
    assert_eq!(msgs.2, "5", "{q:?}");
    // Dovecot's own count of the Maildir, written into maildirsize, equals turnmail's.
    dc.doveadm(&["quota", "recalc", "-u", JOE]);
    assert_eq!(usage(&d), (bytes, count));

    // Dovecot removes one message and appends its line; turnmail reads the result.
    dc.doveadm(&["expunge", "-u", JOE, "mailbox", "INBOX", "1"]);
    let (after_bytes, after_count) = usage(&d);
    assert_eq!(
        after_count,
        2,
        "{}",
        std::fs::read_to_string(maildir(&d).join("maildirsize")).unwrap()
    );
    assert!(after_bytes < bytes);
    let q = dc.quota();
    let msgs = q.iter().find(|r| r.0 == "MESSAGE").unwrap();
    assert_eq!(msgs.1, "2");
    // Both count the same after turnmail delivers again.
    assert!(smtp(&daemon, 9000).1.unwrap().starts_with("250"));
    let (b, c) = usage(&d);
    let q = dc.quota();
    assert_eq!(
        q.iter().find(|r| r.0 == "MESSAGE").unwrap().1,
        c.to_string()
    );
    assert_eq!(
        q.iter().find(|r| r.0 == "STORAGE").unwrap().1,
        ((b + 1023) / 1024).to_string()
    );
    // Two more reach the 5-message limit Dovecot also sees; RCPT then refuses.
    assert!(smtp(&daemon, 100).1.unwrap().starts_with("250"));
    assert!(smtp(&daemon, 100).1.unwrap().starts_with("250"));
    let (rcpt, _) = smtp(&daemon, 100);
    assert!(rcpt.starts_with("452 4.2.2"), "{rcpt}");
    // The fifth reached 100% of the message limit, so a warning came too (counted
    // by both).
    let (_, c) = usage(&d);
    assert_eq!(c, 6);
    let q = dc.quota();
    let m = q.iter().find(|r| r.0 == "MESSAGE").unwrap();
    assert_eq!((m.1.as_str(), m.2.as_str()), ("6", "5"), "{q:?}");
}

#[test]
fn dovecot_given_turnmails_quota_rule_keeps_the_same_header() {
    if !Path::new(DOVECOT).exists() || !Path::new(DOVEADM).exists() {
        common::skip("Dovecot is not installed (dovecot-core, dovecot-pop3d)");
        return;
    }
    if !common::root_or_skip("a private Dovecot instance") {
        return;
    }
    let d = demo_root();
    cli(&d, &["user", "quota", JOE, "200K,7C"]);
    let header = std::fs::read_to_string(maildir(&d).join("maildirsize")).unwrap();
    // What a passwd-file view of the accounts gives Dovecot for this mailbox.
    let limits = turnmail::quota::table::account_quota(&d.root, JOE).unwrap();
    let rule = limits.dovecot_rule().expect("a rule");
    assert_eq!(rule, "*:bytes=204800:messages=7");
    // The passwd-file's fields carry 2.4's limits too, which 2.3 leaves alone.
    let fields = turnmail::dovecot::passwd_file::limits_fields(&limits).expect("fields");
    assert!(
        fields.contains("userdb_quota_storage_size=204800B"),
        "{fields}"
    );
    let work = tempfile::Builder::new()
        .prefix("turnmail-quota-dovecot")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let dc = Dovecot::start(&d, work.path(), &fields);
    let q = dc.quota();
    let s = q.iter().find(|r| r.0 == "STORAGE").expect("STORAGE row");
    let m = q.iter().find(|r| r.0 == "MESSAGE").expect("MESSAGE row");
    assert_eq!((s.2.as_str(), m.2.as_str()), ("200", "7"), "{q:?}");
    // Dovecot, which keeps the header in line with its own limits, found nothing to change.
    dc.doveadm(&["quota", "recalc", "-u", JOE]);
    let after = std::fs::read_to_string(maildir(&d).join("maildirsize")).unwrap();
    assert_eq!(after.lines().next(), header.lines().next());
    assert_eq!(after.lines().next(), Some("204800S,7C"));
}
