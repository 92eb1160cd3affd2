//! Postfix as the customer's receiving MTA: a private Postfix instance (its own
//! config, queue and log in a temporary directory, smtpd on free loopback ports)
//! takes a site's spool from `turnmail flush`, once offering CHUNKING+PIPELINING
//! (BDAT) and once PIPELINING only (DATA, dot-stuffing), and delivers each message
//! into a Maildir through virtual(8). Every message must arrive with its envelope
//! (Postfix writes Return-Path and Delivered-To) and its text intact; a recipient
//! Postfix refuses must come back to the sender as a bounce.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant, SystemTime};

use common::daemon::free_port;
use common::{DemoRoot, demo_root, mail_user};
use turnmail::maildir::Maildir;

const DOMAIN: &str = "acme.example";

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Postfix's `postfix` command, installing the package through tests/install-peers if
/// it is missing; None (with the reason printed) only when it cannot be had.
fn postfix_command() -> Option<PathBuf> {
    let found = || {
        ["/usr/sbin/postfix", "/usr/bin/postfix"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    };
    if let Some(p) = found() {
        return Some(p);
    }
    if !is_root() {
        common::skip("postfix_interop: Postfix is not installed and only root can install it");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/install-peers");
    let o = Command::new(&script).output();
    let p = found();
    if p.is_none() {
        let why = match o {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => e.to_string(),
        };
        common::skip(&format!(
            "postfix_interop: Postfix could not be installed: {why}"
        ));
    }
    p
}

/// A private Postfix instance, stopped when dropped.
struct Postfix {
    cmd: PathBuf,
    etc: PathBuf,
    mail: PathBuf,
    log: PathBuf,
    /// smtpd offering CHUNKING and PIPELINING, and one offering PIPELINING only.
    chunking: u16,
    pipelining: u16,
    _dir: tempfile::TempDir,
}

impl Postfix {
    fn start(cmd: PathBuf) -> Postfix {
        let dir = tempfile::Builder::new()
            .prefix("turnmail-postfix")
            .tempdir()
            .unwrap();
        let top = dir.path();
        let (etc, mail, queue, data, log) = (
            top.join("etc"),
            top.join("mail"),
            top.join("queue"),
            top.join("data"),
            top.join("maillog"),
        );
        for d in [&etc, &mail, &queue, &data] {
            std::fs::create_dir_all(d).unwrap();
        }
        // Postfix refuses to run from a directory others can write to.
        for d in [top, &etc, &queue] {
            std::fs::set_permissions(d, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
        let postfix_user = nix::unistd::User::from_name("postfix")
            .unwrap()
            .expect("user postfix (made by the postfix package)");
        std::os::unix::fs::chown(&data, Some(postfix_user.uid.as_raw()), None).unwrap();
        let mu = mail_user();
        std::os::unix::fs::chown(&mail, Some(mu.uid), Some(mu.gid)).unwrap();
        let chunking = free_port();
        let pipelining = loop {
            let p = free_port();
            if p != chunking {
                break p;
            }
        };
        let main_cf = format!(
            "# A private instance for tests/postfix_interop.rs; loopback only.
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.test.example
mydomain = test.example
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
# No client is trusted to relay: mail for other domains is refused (5.7.1).
mynetworks = 192.0.2.1/32
smtpd_relay_restrictions = reject_unauth_destination
relayhost =
alias_maps =
alias_database =
local_recipient_maps =
# Headers as sent: no Message-ID or Date added for loopback clients.
local_header_rewrite_clients =
biff = no
append_dot_mydomain = no
smtputf8_enable = no
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {mail}
virtual_mailbox_maps = static:site/Maildir/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
virtual_minimum_uid = {uid}
maillog_file = {log}
maillog_file_prefixes = {top}
",
            queue = queue.display(),
            data = data.display(),
            mail = mail.display(),
            uid = mu.uid,
            gid = mu.gid,
            log = log.display(),
            top = top.display(),
        );
        std::fs::write(etc.join("main.cf"), main_cf).unwrap();
        // Debian's services without chroot, and two smtpd listeners on loopback.
        let master_cf = format!(
            "127.0.0.1:{chunking} inet n - n - - smtpd
127.0.0.1:{pipelining} inet n - n - - smtpd -o smtpd_discard_ehlo_keywords=chunking
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
        );
        std::fs::write(etc.join("master.cf"), master_cf).unwrap();
        let pf = Postfix {
            cmd,
            etc,
            mail,
            log,
            chunking,
            pipelining,
            _dir: dir,
        };
        let o = pf.run("start");
        assert!(o.status.success(), "postfix start: {}", text(&o));
        for port in [chunking, pipelining] {
            pf.wait_listening(port);
        }
        pf
    }

    fn run(&self, what: &str) -> Output {
        Command::new(&self.cmd)
            .arg("-c")
            .arg(&self.etc)
            .arg(what)
            .output()
            .unwrap()
    }

    fn wait_listening(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Postfix did not listen on {port}: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn maildir(&self) -> Maildir {
        Maildir::new(self.mail.join("site/Maildir"))
    }

    /// The messages virtual(8) delivered, once there are `n` (within a deadline).
    fn delivered(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self
                .maildir()
                .scan(SystemTime::now() + Duration::from_secs(5))
                .unwrap_or_default();
            if got.len() >= n {
                return got
                    .iter()
                    .map(|e| String::from_utf8_lossy(&std::fs::read(&e.path).unwrap()).into_owned())
                    .collect();
            }
            assert!(
                Instant::now() < deadline,
                "Postfix delivered {} of {n} messages: {}",
                got.len(),
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        let _ = self.run("stop");
    }
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// A message in the site's spool as qmail-local writes it, dated a little back (a
/// flush leaves the current second alone).
fn spooled(d: &DemoRoot, sender: &str, rcpt: &str, body: &str) {
    let md = Maildir::new(d.root.join("sites/acme/Maildir"));
    let head = format!("Return-Path: <{sender}>\nDelivered-To: site-acme-{rcpt}\n");
    let got = md.deliver(&[head.as_bytes(), body.as_bytes()]).unwrap();
    let mu = mail_user();
    std::os::unix::fs::chown(&got.path, Some(mu.uid), Some(mu.gid)).unwrap();
    let t = SystemTime::now() - Duration::from_secs(2);
    common::set_mtime(&got.path, t);
}

fn left(d: &DemoRoot) -> usize {
    Maildir::new(d.root.join("sites/acme/Maildir"))
        .scan(SystemTime::now() + Duration::from_secs(5))
        .unwrap()
        .len()
}

fn rcpt(i: usize, tag: &str) -> String {
    format!("user{i}-{tag}@{DOMAIN}")
}

fn headers(i: usize, tag: &str) -> String {
    format!(
        "From: sender{i}@origin.example\nTo: {}\nSubject: interop {i}\n",
        rcpt(i, tag)
    )
}

/// Dot lines (stuffed for DATA), 8-bit bytes, no final line end.
fn text_part(i: usize) -> String {
    format!(
        ".a line starting with a dot\n..two dots\n.\nline with 8-bit bytes: caf\u{e9}\nend of {i}"
    )
}

fn body(i: usize, tag: &str) -> String {
    format!("{}\n{}", headers(i, tag), text_part(i))
}

/// Flushes 40 messages and one Postfix refuses to `port`; checks what Postfix
/// delivered and what turnmail did with each spool file. `tag` makes the recipients
/// of this flush unique.
fn flush_to(pf: &Postfix, port: u16, mode: &str, tag: &str) {
    let d = demo_root();
    let n = 40;
    for i in 0..n {
        spooled(
            &d,
            &format!("sender{i}@origin.example"),
            &rcpt(i, tag),
            &body(i, tag),
        );
    }
    spooled(
        &d,
        "bob@origin.example",
        "someone@elsewhere.example",
        "Subject: not for this site\n\nx\n",
    );
    let before = pf
        .maildir()
        .scan(SystemTime::now() + Duration::from_secs(5))
        .map_or(0, |v| v.len());
    let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["flush", "acme", "--to", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    let out = text(&o);
    // 100: everything settled, and the refused message bounced.
    assert_eq!(o.status.code(), Some(100), "{mode}: {out}");
    assert!(
        out.contains(&format!("{n} delivered, 1 bounced, 0 kept")),
        "{mode}: {out}"
    );
    assert!(
        out.contains("<someone@elsewhere.example> bounced: 554 5.7.1"),
        "{mode}: {out}"
    );
    assert_eq!(left(&d), 0, "{mode}: the spool is empty");
    // The bounce went to the sender, with Postfix's reason.
    let bounces: Vec<String> = std::fs::read_dir(d.root.join("queue/new"))
        .unwrap()
        .flatten()
        .map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned())
        .collect();
    assert_eq!(bounces.len(), 1, "{mode}: {bounces:?}");
    assert!(
        bounces[0].starts_with("Return-Path: <>\nDelivered-To: bob@origin.example\n")
            && bounces[0].contains("Relay access denied"),
        "{mode}: {}",
        bounces[0]
    );
    let all = pf.delivered(before + n);
    assert_eq!(all.len(), before + n, "{mode}: nothing more than sent");
    for i in 0..n {
        let rcpt = rcpt(i, tag);
        let m = all
            .iter()
            .find(|m| m.contains(&format!("\nDelivered-To: {rcpt}\n")))
            .unwrap_or_else(|| panic!("{mode}: no message for {rcpt}"));
        assert!(
            m.starts_with(&format!("Return-Path: <sender{i}@origin.example>\n")),
            "{mode}: {m}"
        );
        // Headers and text as spooled (the last line completed), after Postfix's own
        // Received line.
        assert!(m.contains(&headers(i, tag)), "{mode}: {m:?}");
        let tail = format!("\n\n{}\n", text_part(i));
        assert!(m.ends_with(&tail), "{mode}: {m:?}");
    }
    // Postfix logged one acceptance per message, from turnmail's connection.
    let log = pf.log_text();
    let queued = log.matches("status=sent (delivered to maildir)").count();
    assert!(queued >= before + n, "{mode}: {queued} deliveries logged");
}

#[test]
fn postfix_takes_a_site_flush_with_bdat_and_with_data() {
    if !is_root() {
        common::skip("postfix_interop: a private Postfix instance must start as root");
        return;
    }
    let Some(cmd) = postfix_command() else {
        return;
    };
    let pf = Postfix::start(cmd);
    flush_to(&pf, pf.chunking, "CHUNKING+PIPELINING", "bdat");
    flush_to(&pf, pf.pipelining, "PIPELINING", "data");
    // Postfix saw BDAT on one listener and DATA on the other.
    let log = pf.log_text();
    assert!(log.contains(" bdat=40/41 "), "{log}");
    assert!(log.contains(" bdat=40/41 "), "{log}");
    assert!(log.contains(" data=40/41 "), "{log}");
}
