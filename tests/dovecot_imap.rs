//! IMAP through Debian's Dovecot 2.3 (`dovecot-imapd`) on turnmail's accounts via the
//! passwd-file turnmail keeps (`users/dovecot-passwd`, contrib/dovecot-2.3/): a private
//! Dovecot instance, Python's imaplib as the client, the real `turnmail serve` for
//! SMTP delivery and POP3.

mod common;

use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, free_port};
use common::mailclients::{eventually, imap, poplib, smtp_deliver, turnmail_stdin};
use common::{demo_root, mail_user, write};

const DOVECOT: &str = "/usr/sbin/dovecot";
const IMAP: &str = "/usr/lib/dovecot/imap";

/// Dovecot's master in the foreground, stopped when dropped (also when a test fails).
struct Dovecot {
    child: Child,
    log: PathBuf,
    port: u16,
    _work: tempfile::TempDir,
}

impl Dovecot {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The 2.3 configuration of contrib/dovecot-2.3/, on a private loopback port.
    fn start(root: &Path, first_uid: u32) -> Dovecot {
        let work = tempfile::Builder::new()
            .prefix("turnmail-imap")
            .tempdir()
            .unwrap();
        let port = free_port();
        let log = work.path().join("dovecot.log");
        let conf = work.path().join("dovecot.conf");
        let contrib = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/dovecot-2.3/turnmail.conf"),
        )
        .unwrap()
        .replace("/var/lib/turnmail", root.to_str().unwrap())
        .replace(
            "first_valid_uid = 100",
            &format!("first_valid_uid = {first_uid}"),
        );
        write(
            &conf,
            &format!(
                "base_dir = {w}/run\nstate_dir = {w}/state\ninstance_name = turnmail-imap-{port}\n\
                 log_path = {log}\nlisten = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n\
                 auth_verbose = yes\nauth_failure_delay = 0\n\
                 {contrib}\n\
                 service imap-login {{\n  inet_listener imap {{\n    address = 127.0.0.1\n    port = {port}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
                 service pop3-login {{\n  inet_listener pop3 {{\n    port = 0\n  }}\n  inet_listener pop3s {{\n    port = 0\n  }}\n}}\n",
                w = work.path().display(),
                log = log.display(),
            ),
        );
        let child = Command::new(DOVECOT)
            .args(["-F", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.path().join("dovecot.stderr")).unwrap())
            .spawn()
            .unwrap();
        let mut d = Dovecot {
            child,
            log,
            port,
            _work: work,
        };
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!(
                    "dovecot exited ({status}): {}{}",
                    std::fs::read_to_string(d._work.path().join("dovecot.stderr"))
                        .unwrap_or_default(),
                    d.log_text()
                );
            }
            assert!(t.elapsed() < Duration::from_secs(20), "{}", d.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        common::terminate(&mut self.child);
    }
}

fn need_dovecot_imap() -> bool {
    if !(Path::new(DOVECOT).exists() && Path::new(IMAP).exists()) {
        common::skip("Dovecot's imap is not installed: run tests/install-peers (dovecot-imapd)");
        return false;
    }
    common::root_or_skip("Dovecot's master")
}

#[test]
fn imap_and_pop3_on_the_same_accounts() {
    if !need_dovecot_imap() {
        return;
    }
    let d = demo_root();
    let mu = mail_user();
    let dovecot_gid = nix::unistd::Group::from_name("dovecot")
        .unwrap()
        .expect("group dovecot (made by dovecot-core)")
        .gid
        .as_raw();
    common::config(&d, "[accounts]\nreader_group = \"dovecot\"\n");
    let o = common::turnmail(&d.root, &["newu"]);
    assert!(o.status.success(), "newu: {o:?}");
    // The passwd-file: written by newu (as the mail user, in users/ setgid dovecot),
    // readable by Dovecot's group only.
    let file = d.root.join("users/dovecot-passwd");
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mode() & 0o7777),
        (mu.uid, dovecot_gid, 0o640)
    );
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("joe@example.com:{CRYPT}$")
                && l.contains(&format!(":{}:{}::", mu.uid, mu.gid))
                && l.contains("/domains/example.com/joe:")),
        "{text}"
    );

    let daemon = Daemon::start(&d.root);
    smtp_deliver(&daemon, "joe@example.com", "first");
    smtp_deliver(&daemon, "joe@example.com", "second");
    let dovecot = Dovecot::start(&d.root, mu.uid);

    // IMAP sees what turnmail delivered and deletes one.
    let pw = &d.report.password;
    let (code, out) = imap(dovecot.port, "joe@example.com", pw, "first");
    assert_eq!(code, 0, "{out}\n--- dovecot log:\n{}", dovecot.log_text());
    assert!(out.contains("exists 2"), "{out}");
    assert!(
        out.contains("Subject: first") && out.contains("Subject: second"),
        "{out}"
    );
    assert!(out.contains("deleted"), "{out}");
    // turnmail's POP3 sees the same mailbox: only the second is left. (POP3 lists
    // messages from before the current second: let it pass.)
    std::thread::sleep(Duration::from_millis(1100));
    let (code, out) = poplib(daemon.pop3, "joe@example.com", pw);
    assert_eq!(code, 0, "{out}\n{}", daemon.log_text());
    assert!(out.contains("count 1"), "{out}");
    assert!(
        out.contains("Subject: second") && !out.contains("Subject: first"),
        "{out}"
    );
    // And a message delivered after Dovecot indexed the Maildir shows up there.
    smtp_deliver(&daemon, "joe@example.com", "third");
    let (code, out) = imap(dovecot.port, "joe@example.com", pw, "");
    assert_eq!(code, 0, "{out}\n{}", dovecot.log_text());
    assert!(
        out.contains("exists 2") && out.contains("Subject: third"),
        "{out}"
    );

    // A wrong password is refused.
    let (code, out) = imap(dovecot.port, "joe@example.com", "wrong", "");
    assert_eq!(code, 3, "{out}");

    // A new password works at once, in Dovecot (no reload) and in turnmail; the old
    // one no longer does.
    turnmail_stdin(
        &d.root,
        &["user", "passwd", "joe@example.com", "--password-stdin"],
        "brand new pw\n",
    );
    // Dovecot checks the file's stamp at most about once a second.
    let (code, out) = eventually(
        || imap(dovecot.port, "joe@example.com", "brand new pw", ""),
        0,
    );
    assert_eq!(code, 0, "{out}\n{}", dovecot.log_text());
    let (code, out) = imap(dovecot.port, "joe@example.com", pw, "");
    assert_eq!(code, 3, "old password: {out}");
    let (code, out) = poplib(daemon.pop3, "joe@example.com", "brand new pw");
    assert_eq!(code, 0, "{out}");
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!((m.gid(), m.mode() & 0o7777), (dovecot_gid, 0o640));

    // An alias domain: Dovecot serves user@ALIAS as the target's mailbox, once the
    // command has run, and no longer once it is removed.
    let o = common::turnmail(
        &d.root,
        &["domain", "alias", "add", "example.net", "example.com"],
    );
    assert!(o.status.success(), "{o:?}");
    let (code, out) = eventually(
        || imap(dovecot.port, "joe@example.net", "brand new pw", ""),
        0,
    );
    assert_eq!(code, 0, "{out}\n{}", dovecot.log_text());
    assert!(
        out.contains("exists 2") && out.contains("Subject: third"),
        "{out}"
    );
    let o = common::turnmail(&d.root, &["domain", "alias", "remove", "example.net"]);
    assert!(o.status.success(), "{o:?}");
    let (code, out) = eventually(
        || imap(dovecot.port, "joe@example.net", "brand new pw", ""),
        3,
    );
    assert_eq!(code, 3, "{out}");
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!((m.gid(), m.mode() & 0o7777), (dovecot_gid, 0o640));
}
