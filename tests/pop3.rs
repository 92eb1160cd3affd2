//! The POP3 listener with real clients: Python's poplib, raw pipelined sockets and
//! fetchmail. Sizes must equal the octets actually sent; UIDLs must survive sessions;
//! deletions happen only at QUIT.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use common::daemon::Daemon;
use common::{DemoRoot, demo_root, write};

/// Deliver `n` messages to joe with `turnmail deliver` (names carry ,S= and ,W=).
fn deliver_to_joe(d: &DemoRoot, bodies: &[&str]) {
    use std::io::Write;
    for b in bodies {
        let mut c = Command::new(env!("CARGO_BIN_EXE_turnmail"))
            .arg("--root")
            .arg(&d.root)
            .args(["deliver", "-f", "bob@example.org", "--", "joe@example.com"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(b.as_bytes()).unwrap();
        assert!(c.wait().unwrap().success());
    }
    // Files from the current second are not listed (qmail-pop3d's rule).
    std::thread::sleep(std::time::Duration::from_millis(1100));
}

/// Run a Python script with the POP3 address and joe's credentials in the environment;
/// returns its stdout (the script prints what the test checks).
fn python(s: &Daemon, d: &DemoRoot, script: &str) -> String {
    let o = Command::new("python3")
        .args(["-c", script])
        .env("HOST", "127.0.0.1")
        .env("PORT", s.pop3.port().to_string())
        .env("LOGIN", &d.report.login)
        .env("PW", &d.report.password)
        .output()
        .expect("python3");
    assert!(
        o.status.success(),
        "script failed:\n{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const BODIES: &[&str] = &[
    "Subject: one\n\nfirst body\n",
    "Subject: two\n\n.dotted line\n..two dots\nend\n",
    "Subject: three\n\nno final newline",
];

#[test]
fn poplib_sizes_uidl_top_and_retr() {
    let d = demo_root();
    deliver_to_joe(&d, BODIES);
    // A file as qmail-local writes it, without size tags in its name.
    let new = d.root.join("domains/example.com/joe/Maildir/new");
    write(
        &new.join("1000000000.12345.qmailhost"),
        "Return-Path: <a@b>\nDelivered-To: x\nSubject: old\n\nqmail era\n",
    );
    let mu = common::mail_user();
    let old = new.join("1000000000.12345.qmailhost");
    if nix::unistd::Uid::effective().is_root() {
        std::os::unix::fs::chown(&old, Some(mu.uid), Some(mu.gid)).unwrap();
    }
    // Delivered long ago (a file from the current second would not be listed yet).
    let then = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    common::set_mtime(&old, then);
    let s = Daemon::start(&d.root);
    let out = python(
        &s,
        &d,
        r#"
import os, poplib
p = poplib.POP3(os.environ["HOST"], int(os.environ["PORT"]))
p.user(os.environ["LOGIN"]); p.pass_(os.environ["PW"])
count, total = p.stat()
sizes = [int(l.split()[1]) for l in p.list()[1]]
uidls1 = [l.split()[1] for l in p.uidl()[1]]
sent = []
for i in range(1, count + 1):
    resp, lines, octets = p.retr(i)
    # octets counts the lines as sent (before unstuffing) plus CRLFs; recompute the
    # RFC 1939 size from the unstuffed lines.
    sent.append(sum(len(l) + 2 for l in lines))
top = p.top(3, 0)[1]
p.quit()
q = poplib.POP3(os.environ["HOST"], int(os.environ["PORT"]))
q.user(os.environ["LOGIN"]); q.pass_(os.environ["PW"])
uidls2 = [l.split()[1] for l in q.uidl()[1]]
q.quit()
print(count, total, sum(sizes))
print(sizes == sent, sizes, sent)
print(uidls1 == uidls2)
print(repr(top))
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    let first: Vec<u64> = lines[0]
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let listing: Vec<String> = ["new", "cur"]
        .iter()
        .flat_map(|sub| {
            std::fs::read_dir(d.root.join("domains/example.com/joe/Maildir").join(sub)).unwrap()
        })
        .map(|e| format!("{:?}", e.unwrap().path()))
        .collect();
    assert_eq!(first[0], 4, "{out}\n{listing:?}\n{}", s.log_text());
    assert_eq!(
        first[1], first[2],
        "STAT total equals the sum of LIST sizes: {out}"
    );
    assert!(
        lines[1].starts_with("True"),
        "sizes must equal the octets sent: {out}"
    );
    assert_eq!(lines[2], "True", "UIDLs survive sessions: {out}");
    assert!(
        lines[3].contains("b'Subject: two'") && lines[3].ends_with("b'']"),
        "TOP 3 0 (the oldest message is the qmail-era one) is the header and the blank line: {out}"
    );
    // After QUIT every listed message moved to cur/ with the S flag; UIDLs unchanged.
    let cur = d.root.join("domains/example.com/joe/Maildir/cur");
    assert_eq!(std::fs::read_dir(&cur).unwrap().count(), 4);
    assert!(
        std::fs::read_dir(&cur).unwrap().all(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(":2,S"))
    );
}

#[test]
fn deletions_apply_only_at_quit() {
    let d = demo_root();
    deliver_to_joe(&d, BODIES);
    let s = Daemon::start(&d.root);
    let out = python(
        &s,
        &d,
        r#"
import os, poplib
def login():
    p = poplib.POP3(os.environ["HOST"], int(os.environ["PORT"]))
    p.user(os.environ["LOGIN"]); p.pass_(os.environ["PW"])
    return p
p = login(); p.dele(1); p.sock.close()          # dropped: nothing deleted
p = login(); print(p.stat()[0]); p.dele(1); p.dele(2); print(p.stat()[0]); p.rset(); p.dele(3); p.quit()
p = login(); print(p.stat()[0]); p.quit()
"#,
    );
    let counts: Vec<&str> = out.lines().collect();
    assert_eq!(counts, vec!["3", "1", "2"], "{out}");
}

#[test]
fn apop_auth_plain_and_login_forms() {
    let d = demo_root();
    let secrets = d.root.join("users/secrets");
    write(&secrets, "joe@example.com:apop-secret\n");
    std::fs::set_permissions(&secrets, PermissionsExt::from_mode(0o600)).unwrap();
    let mu = common::mail_user();
    if nix::unistd::Uid::effective().is_root() {
        std::os::unix::fs::chown(&secrets, Some(mu.uid), Some(mu.gid)).unwrap();
    }
    common::accounts_changed(&d);
    common::config(&d, "default_domain = \"example.com\"\n");
    let s = Daemon::start(&d.root);
    let out = python(
        &s,
        &d,
        r#"
import os, poplib, base64, socket
H, P, L, W = os.environ["HOST"], int(os.environ["PORT"]), os.environ["LOGIN"], os.environ["PW"]
p = poplib.POP3(H, P); print(p.apop(L, "apop-secret")); p.quit()
for login in [L, "joe%example.com", "joe", "JOE@EXAMPLE.COM"]:
    p = poplib.POP3(H, P); p.user(login); print(p.pass_(W)); p.quit()
s = socket.create_connection((H, P)); f = s.makefile("rb")
f.readline()
s.sendall(b"AUTH PLAIN " + base64.b64encode(b"\0" + L.encode() + b"\0" + W.encode()) + b"\r\n")
print(f.readline().decode().strip())
s.sendall(b"QUIT\r\n"); print(f.readline().decode().strip())
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].contains("+OK"), "APOP: {out}");
    for l in &lines[1..5] {
        assert!(l.contains("+OK"), "login forms: {out}");
    }
    assert!(lines[5].starts_with("+OK"), "AUTH PLAIN: {out}");
}

#[test]
fn stls_and_pipelining() {
    let d = demo_root();
    deliver_to_joe(&d, BODIES);
    let s = Daemon::start(&d.root);
    let out = python(
        &s,
        &d,
        r#"
import os, poplib, ssl, socket
H, P, L, W = os.environ["HOST"], int(os.environ["PORT"]), os.environ["LOGIN"], os.environ["PW"]
p = poplib.POP3(H, P)
print("STLS" in [c for c in p.capa()])
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
p.stls(ctx); p.user(L); p.pass_(W); print(p.stat()[0]); p.quit()
# Every command of a session in one write; read until the final +OK of QUIT.
s = socket.create_connection((H, P))
s.sendall(("USER %s\r\nPASS %s\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\nNOOP\r\nQUIT\r\n" % (L, W)).encode())
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
print(data.count(b"\r\n+OK") + 1, data.endswith(b"+OK Logging out\r\n"))
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "True", "{out}");
    assert_eq!(lines[1], "3", "{out}");
    assert_eq!(lines[2], "10 True", "greeting + 9 replies, in order: {out}");
}

#[test]
fn brute_force_is_slowed_and_blocked_per_address() {
    let d = demo_root();
    common::config(&d, "[pop3]\nfailure_delay_ms = 200\nmax_failures = 10\n");
    let s = Daemon::start(&d.root);
    let out = python(
        &s,
        &d,
        r#"
import os, poplib, time, socket
H, P, L, W = os.environ["HOST"], int(os.environ["PORT"]), os.environ["LOGIN"], os.environ["PW"]
def attempt(pw, src="127.0.0.1"):
    sock = socket.create_connection((H, P), source_address=(src, 0))
    f = sock.makefile("rb"); f.readline()
    t = time.time()
    sock.sendall(("USER %s\r\nPASS %s\r\n" % (L, pw)).encode())
    f.readline(); r = f.readline().decode().strip()
    sock.close()
    return r, time.time() - t
bad = [attempt("wrong%d" % i) for i in range(12)]
print(min(t for _, t in bad) >= 0.19, all(r.startswith("-ERR [AUTH]") for r, _ in bad))
r, t = attempt(W)
print(r.startswith("-ERR"))            # the right password is refused while blocked
r, t = attempt(W, "127.0.0.2")
print(r.startswith("+OK"), t < 1.0)   # another address logs in at once
"#,
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["True True", "True", "True True"], "{out}");
    assert!(s.log_text().contains("blocked"), "{}", s.log_text());
    assert!(
        !s.log_text().contains("wrong1"),
        "passwords must never be logged"
    );
}

#[test]
fn fetchmail_pulls_and_deletes() {
    let d = demo_root();
    deliver_to_joe(&d, BODIES);
    let s = Daemon::start(&d.root);
    let home = d.dir.path().join("fetchhome");
    std::fs::create_dir(&home).unwrap();
    let out = home.join("out.mbox");
    let rc = home.join("fetchmailrc");
    write(
        &rc,
        &format!(
            "poll 127.0.0.1 protocol pop3 port {} user \"{}\" password \"{}\" sslproto '' mda \"/bin/sh -c 'cat >> {}'\" fetchall no keep\n",
            s.pop3.port(),
            d.report.login,
            d.report.password,
            out.display()
        ),
    );
    std::fs::set_permissions(&rc, PermissionsExt::from_mode(0o600)).unwrap();
    let o = Command::new("fetchmail")
        .arg("--fetchmailrc")
        .arg(&rc)
        .args(["--nosyslog", "--nodetach", "-v"])
        .env("HOME", &home)
        .env("FETCHMAILHOME", &home)
        .output()
        .expect("fetchmail (tests/install-peers installs it)");
    let log = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    let got = std::fs::read_to_string(&out).unwrap();
    for b in [
        "first body",
        ".dotted line",
        "..two dots",
        "no final newline",
    ] {
        assert!(got.contains(b), "{b:?} missing from {got}");
    }
    // `no keep`: fetched messages are deleted on the server.
    let md = d.root.join("domains/example.com/joe/Maildir");
    let left = std::fs::read_dir(md.join("new")).unwrap().count()
        + std::fs::read_dir(md.join("cur")).unwrap().count();
    assert_eq!(left, 0, "{log}");
}
