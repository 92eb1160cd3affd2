//! What the Dovecot tests (2.3 on this host, 2.4 in a trixie root) drive from outside:
//! Python's imaplib and poplib as the clients, SMTP delivery through the real daemon,
//! `turnmail` commands reading stdin, and waiting for an effect.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::daemon::{Client, Daemon};

/// Log in, list the subjects of INBOX; with `delete`, delete the message whose subject
/// has it and expunge; then the quota of INBOX (`quota` line, the QUOTA response).
/// Exit 3 when the login is refused.
const IMAPLIB: &str = r#"
import imaplib, sys
port, user, password, delete = sys.argv[1:5]
m = imaplib.IMAP4("127.0.0.1", int(port), timeout=30)
try:
    m.login(user, password)
except imaplib.IMAP4.error as e:
    print("refused", e)
    sys.exit(3)
typ, data = m.select("INBOX")
print("exists", int(data[0]))
typ, data = m.search(None, "ALL")
for num in data[0].split():
    typ, d = m.fetch(num, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subject = d[0][1].decode().strip()
    print("message", num.decode(), subject)
    if delete and delete in subject:
        m.store(num, "+FLAGS", "\\Deleted")
        print("deleted", num.decode())
m.expunge()
typ, data = m.getquotaroot("INBOX")
for q in data[1]:
    if q:
        print("quota", q.decode())
m.logout()
"#;

/// [`IMAPLIB`] against `127.0.0.1:port`: its exit code and output.
pub fn imap(port: u16, user: &str, password: &str, delete: &str) -> (i32, String) {
    let o = Command::new("python3")
        .args(["-c", IMAPLIB, &port.to_string(), user, password, delete])
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// Log in with USER/PASS, count the messages and print their Subject lines. Exit 3 when
/// the login is refused.
const POPLIB: &str = r#"
import poplib, sys
host, port, user, password = sys.argv[1:5]
p = poplib.POP3(host, int(port), timeout=30)
try:
    p.user(user)
    p.pass_(password)
except poplib.error_proto as e:
    print("refused", e)
    sys.exit(3)
n, size = p.stat()
print("count", n)
for i in range(1, n + 1):
    for line in p.top(i, 0)[1]:
        if line.startswith(b"Subject:"):
            print(line.decode())
p.quit()
"#;

/// [`POPLIB`] against `addr`: its exit code and output.
pub fn poplib(addr: std::net::SocketAddr, user: &str, password: &str) -> (i32, String) {
    let o = Command::new("python3")
        .args([
            "-c",
            POPLIB,
            &addr.ip().to_string(),
            &addr.port().to_string(),
            user,
            password,
        ])
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// One message through the daemon's SMTP listener: RCPT's reply when refused, else the
/// reply to the message.
pub fn smtp_try(d: &Daemon, rcpt: &str, subject: &str) -> String {
    let mut c: Client = d.connect();
    assert!(c.reply().starts_with("220"));
    c.cmd("HELO test.example");
    c.cmd("MAIL FROM:<a@example.org>");
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    if !r.starts_with("250") {
        c.cmd("QUIT");
        return r;
    }
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd(&format!("Subject: {subject}\r\n\r\nhello\r\n."));
    c.cmd("QUIT");
    r
}

/// One message through the daemon's SMTP listener; panics unless it is accepted.
pub fn smtp_deliver(d: &Daemon, rcpt: &str, subject: &str) {
    let mut c: Client = d.connect();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("HELO test.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    assert!(r.starts_with("250"), "RCPT {rcpt}: {r}");
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd(&format!(
        "From: a@example.org\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\nbody of {subject}\r\n."
    ));
    assert!(r.starts_with("250"), "DATA: {r}");
    c.cmd("QUIT");
}

/// `turnmail --root ROOT ARGS...` with `stdin` as its input; panics unless it succeeds.
pub fn turnmail_stdin(root: &Path, args: &[&str], stdin: &str) {
    let o = turnmail_with_stdin(root, args, stdin);
    assert!(o.status.success(), "{args:?}: {o:?}");
}

/// `turnmail --root ROOT ARGS...` with `stdin` as its input: what it did, success or not.
pub fn turnmail_with_stdin(root: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("TURNMAIL_ROOT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

/// STARTTLS, AUTH as `user`, one message to `to`, by Python's smtplib. Exit 3 when the
/// login is refused; prints `sent` when the message was accepted.
const SUBMIT: &str = r#"
import smtplib, ssl, sys
host, port, user, pw, to = sys.argv[1:6]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, int(port), timeout=20)
s.starttls(context=ctx)
try:
    s.login(user, pw)
except smtplib.SMTPAuthenticationError as e:
    print("auth refused", e.smtp_code)
    sys.exit(3)
s.sendmail(user, [to], b"Subject: submitted\r\n\r\nhello\r\n")
s.quit()
print("sent")
"#;

/// [`SUBMIT`] against the submission port `addr`: its exit code and output.
pub fn submit(addr: std::net::SocketAddr, user: &str, pw: &str, to: &str) -> (i32, String) {
    let o = Command::new("python3")
        .args(["-c", SUBMIT])
        .args([
            &addr.ip().to_string(),
            &addr.port().to_string(),
            user,
            pw,
            to,
        ])
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// `f` until it exits with `code`, for up to 5 s (then its last result).
pub fn eventually(f: impl Fn() -> (i32, String), code: i32) -> (i32, String) {
    let t = Instant::now();
    loop {
        let r = f();
        if r.0 == code || t.elapsed() > Duration::from_secs(5) {
            return r;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
