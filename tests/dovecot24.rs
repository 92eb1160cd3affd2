//! IMAP and POP3 through Dovecot 2.4 (Debian trixie's, in a root made by debootstrap and
//! cached, see common/trixie.rs) with contrib/dovecot-2.4/ on turnmail's accounts: the
//! checks tests/dovecot_imap.rs makes with this host's 2.3, plus 2.4's Maildir++ quota
//! on turnmail's `maildirsize`. Ignored in the normal suite (the first run downloads
//! the root): `tests/long/run dovecot24` runs it.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, free_port};
use common::mailclients::{eventually, imap, poplib, smtp_deliver, turnmail_stdin};
use common::trixie::{self, Trixie};
use common::{demo_root, mail_user, write};

const JOE: &str = "joe@example.com";

/// Dovecot 2.4's master in the foreground inside the trixie root, stopped when dropped
/// (also when the test fails); its work directory (configuration, sockets, log) is
/// under the shared directory, so the host reads the log.
struct Dovecot24<'a> {
    trixie: &'a Trixie,
    shared: PathBuf,
    child: Child,
    conf: PathBuf,
    log: PathBuf,
    imap: u16,
    pop3: SocketAddr,
}

impl<'a> Dovecot24<'a> {
    /// Dovecot installed as contrib/dovecot-2.4/ says: Debian's own /etc/dovecot (copied
    /// from the root) with its `auth-system.conf.ext` include commented out and
    /// turnmail.conf as conf.d/99-turnmail.conf (with the mail root's path and the
    /// mail user's uid); this instance's directories and loopback ports in local.conf,
    /// which Debian's dovecot.conf includes last.
    fn start(trixie: &'a Trixie, shared: &Path, root: &Path, first_uid: u32) -> Dovecot24<'a> {
        let work = shared.join("dovecot24");
        let etc = work.join("etc");
        std::fs::create_dir_all(etc.join("conf.d")).unwrap();
        let debian = trixie.root.join("etc/dovecot");
        std::fs::copy(debian.join("dovecot.conf"), etc.join("dovecot.conf")).unwrap();
        for e in std::fs::read_dir(debian.join("conf.d")).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() {
                std::fs::copy(e.path(), etc.join("conf.d").join(e.file_name())).unwrap();
            }
        }
        let auth = etc.join("conf.d/10-auth.conf");
        let text = std::fs::read_to_string(&auth).unwrap();
        assert!(text.contains("\n!include auth-system.conf.ext"), "{text}");
        write(
            &auth,
            &text.replace(
                "\n!include auth-system.conf.ext",
                "\n#!include auth-system.conf.ext",
            ),
        );
        let contrib = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/dovecot-2.4/turnmail.conf"),
        )
        .unwrap()
        .replace("/var/lib/turnmail", root.to_str().unwrap())
        .replace(
            "first_valid_uid = 100",
            &format!("first_valid_uid = {first_uid}"),
        );
        assert!(contrib.contains(&format!("first_valid_uid = {first_uid}")));
        write(&etc.join("conf.d/99-turnmail.conf"), &contrib);
        let (imap, pop3) = (free_port(), free_port());
        let log = work.join("dovecot.log");
        let conf = etc.join("dovecot.conf");
        write(
            &etc.join("local.conf"),
            &format!(
                "base_dir = {w}/run\nstate_dir = {w}/state\ninstance_name = turnmail-dovecot24-{imap}\n\
                 log_path = {log}\nlisten = 127.0.0.1\nssl = no\nauth_allow_cleartext = yes\n\
                 auth_verbose = yes\nauth_failure_delay = 0\n\
                 service imap-login {{\n  inet_listener imap {{\n    port = {imap}\n  }}\n  inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
                 service pop3-login {{\n  inet_listener pop3 {{\n    port = {pop3}\n  }}\n  inet_listener pop3s {{\n    port = 0\n  }}\n}}\n",
                w = work.display(),
                log = log.display(),
            ),
        );
        let stderr = work.join("dovecot.stderr");
        let child = trixie
            .command(
                shared,
                "/usr/sbin/dovecot",
                &["-F", "-c", conf.to_str().unwrap()],
            )
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let mut d = Dovecot24 {
            trixie,
            shared: shared.to_path_buf(),
            child,
            conf,
            log,
            imap,
            pop3: SocketAddr::from(([127, 0, 0, 1], pop3)),
        };
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", imap)).is_err()
            || TcpStream::connect(d.pop3).is_err()
        {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!(
                    "dovecot 2.4 exited ({status}): {}{}",
                    std::fs::read_to_string(&stderr).unwrap_or_default(),
                    d.log_text()
                );
            }
            assert!(t.elapsed() < Duration::from_secs(30), "{}", d.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `PROGRAM -c CONF ARGS...` (doveconf, doveadm) beside the running master: exit
    /// status, stdout, stderr.
    fn tool(&self, program: &str, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["-c", self.conf.to_str().unwrap()];
        all.extend_from_slice(args);
        let o: std::process::Output = self
            .trixie
            .enter(self.child.id(), program, &all)
            .output()
            .unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn doveadm(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.tool("/usr/bin/doveadm", args);
        assert!(ok, "doveadm {args:?}: {out}{err}\n{}", self.log_text());
        out
    }

    /// `doveadm quota get`: (type, value, limit) rows; STORAGE in KiB.
    fn quota(&self, user: &str) -> Vec<(String, String, String)> {
        let out = self.doveadm(&["-f", "tab", "quota", "get", "-u", user]);
        out.lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() >= 4).then(|| (f[1].to_string(), f[2].to_string(), f[3].to_string()))
            })
            .collect()
    }
}

impl Drop for Dovecot24<'_> {
    fn drop(&mut self) {
        common::terminate(&mut self.child);
        self.trixie.forget(&self.shared);
    }
}

/// The trixie root, or None after `common::skip` (a failure under CI).
fn trixie_root() -> Option<Trixie> {
    match trixie::ensure() {
        Ok(t) => {
            if let Some(took) = t.built_in {
                eprintln!(
                    "made the trixie root {} in {:.0} s",
                    t.root.display(),
                    took.as_secs_f64()
                );
            }
            Some(t)
        }
        Err(why) => {
            common::skip(&format!("no Debian trixie root with Dovecot 2.4: {why}"));
            None
        }
    }
}

/// `turnmail`'s usage of joe's Maildir: (bytes, messages) from `maildirsize`.
fn usage(root: &Path) -> (i64, i64) {
    let u = turnmail::quota::disk::peek(&root.join("domains/example.com/joe/Maildir"))
        .unwrap()
        .expect("a maildirsize");
    (u.bytes, u.messages)
}

fn row<'r>(q: &'r [(String, String, String)], kind: &str) -> &'r (String, String, String) {
    q.iter()
        .find(|r| r.0 == kind)
        .unwrap_or_else(|| panic!("no {kind} row: {q:?}"))
}

/// One message to joe through the daemon: the RCPT reply (the message is sent when it
/// is a 250, and must then be accepted).
fn rcpt_then_data(daemon: &Daemon, subject: &str) -> String {
    let mut c = daemon.connect();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("HELO test.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{JOE}>"));
    if r.starts_with("250") {
        assert!(c.cmd("DATA").starts_with("354"));
        let d = c.cmd(&format!("Subject: {subject}\r\n\r\nfiller\r\n."));
        assert!(d.starts_with("250"), "DATA: {d}");
    }
    c.cmd("QUIT");
    r
}

#[test]
#[ignore = "downloads a Debian trixie root: run by tests/long/run dovecot24"]
fn dovecot_24_serves_imap_and_pop3_on_turnmails_accounts() {
    let Some(trixie) = trixie_root() else {
        return;
    };
    let Some(dovecot_gid) = nix::unistd::Group::from_name("dovecot")
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
    else {
        common::skip("no group dovecot on this host (dovecot-core: tests/install-peers)");
        return;
    };
    // The account files' reader group is the host's dovecot: the root's Dovecot runs
    // its auth process with the same ids.
    trixie.align_ids("dovecot").unwrap();
    let d = demo_root();
    let mu = mail_user();
    common::config(&d, "[accounts]\nreader_group = \"dovecot\"\n");
    let o = common::turnmail(&d.root, &["newu"]);
    assert!(o.status.success(), "newu: {o:?}");
    let o = common::turnmail(&d.root, &["user", "quota", JOE, "100K,20C"]);
    assert!(o.status.success(), "user quota: {o:?}");
    let file = d.root.join("users/dovecot-passwd");
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!((m.gid(), m.mode() & 0o7777), (dovecot_gid, 0o640));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("userdb_quota_storage_size=102400B userdb_quota_message_count=20"),
        "{text}"
    );

    let daemon = Daemon::start(&d.root);
    smtp_deliver(&daemon, JOE, "first");
    smtp_deliver(&daemon, JOE, "second");
    let dc = Dovecot24::start(&trixie, d.dir.path(), &d.root, mu.uid);

    // 2.4 takes the configuration as it is: no error, no warning.
    let (ok, out, err) = dc.tool("/usr/bin/doveconf", &["-n"]);
    assert!(ok && err.trim().is_empty(), "doveconf -n: {err}\n{out}");
    assert!(out.starts_with("# 2.4."), "{out}");
    assert!(out.contains("driver = maildir"), "{out}");
    // The bare-login setting the file's comment names exists in 2.4.
    let (ok, out, err) = dc.tool("/usr/bin/doveconf", &["auth_default_domain"]);
    assert!(ok, "{out}{err}");

    // IMAP sees what turnmail delivered and deletes one; the quota is turnmail's.
    let pw = &d.report.password;
    let (code, out) = imap(dc.imap, JOE, pw, "first");
    assert_eq!(code, 0, "{out}\n--- dovecot log:\n{}", dc.log_text());
    assert!(out.contains("exists 2"), "{out}");
    assert!(
        out.contains("Subject: first") && out.contains("Subject: second"),
        "{out}"
    );
    assert!(out.contains("deleted"), "{out}");
    assert!(out.contains("quota \"User quota\" (STORAGE "), "{out}");
    assert!(out.contains(" 100 MESSAGE 1 20)"), "{out}");
    // turnmail's POP3 sees the same mailbox: only the second is left. (POP3 lists
    // messages from before the current second: let it pass.)
    std::thread::sleep(Duration::from_millis(1100));
    let (code, out) = poplib(daemon.pop3, JOE, pw);
    assert_eq!(code, 0, "{out}\n{}", daemon.log_text());
    assert!(out.contains("count 1"), "{out}");
    assert!(
        out.contains("Subject: second") && !out.contains("Subject: first"),
        "{out}"
    );
    // A message delivered after Dovecot indexed the Maildir shows up there, in IMAP
    // and in Dovecot's POP3.
    smtp_deliver(&daemon, JOE, "third");
    let (code, out) = imap(dc.imap, JOE, pw, "");
    assert_eq!(code, 0, "{out}\n{}", dc.log_text());
    assert!(
        out.contains("exists 2") && out.contains("Subject: third"),
        "{out}"
    );
    let (code, out) = poplib(dc.pop3, JOE, pw);
    assert_eq!(code, 0, "{out}\n{}", dc.log_text());
    assert!(
        out.contains("count 2")
            && out.contains("Subject: second")
            && out.contains("Subject: third"),
        "{out}"
    );

    // doveadm reads turnmail's maildirsize: the limits and the usage both count, and
    // Dovecot's own recount leaves turnmail's header and figures as they were.
    let (bytes, count) = usage(&d.root);
    assert_eq!(count, 2);
    let q = dc.quota(JOE);
    let (s, msgs) = (row(&q, "STORAGE"), row(&q, "MESSAGE"));
    assert_eq!(s.2, "100", "{q:?}");
    assert_eq!(s.1, ((bytes + 1023) / 1024).to_string(), "{q:?}");
    assert_eq!((msgs.1.as_str(), msgs.2.as_str()), ("2", "20"), "{q:?}");
    dc.doveadm(&["quota", "recalc", "-u", JOE]);
    let maildirsize = d.root.join("domains/example.com/joe/Maildir/maildirsize");
    let header = std::fs::read_to_string(&maildirsize).unwrap();
    assert_eq!(header.lines().next(), Some("102400S,20C"), "{header}");
    assert_eq!(usage(&d.root), (bytes, count));
    // Filling the mailbox: turnmail's RCPT refuses once the message limit is reached
    // (its 90% warning counts too), and Dovecot counts the same messages.
    let mut refused = None;
    for i in 0..25 {
        let r = rcpt_then_data(&daemon, &format!("filler {i}"));
        if !r.starts_with("250") {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("RCPT refused before 25 more messages");
    assert!(r.starts_with("452 4.2.2"), "{r}");
    let (_, count) = usage(&d.root);
    assert!(count >= 20, "{count}");
    let q = dc.quota(JOE);
    let msgs = row(&q, "MESSAGE");
    assert_eq!(
        (msgs.1.clone(), msgs.2.as_str()),
        (count.to_string(), "20"),
        "{q:?}"
    );

    // A wrong password is refused.
    let (code, out) = imap(dc.imap, JOE, "wrong", "");
    assert_eq!(code, 3, "{out}");

    // A new password works at once, in Dovecot (no reload) and in turnmail; the old
    // one no longer does.
    turnmail_stdin(
        &d.root,
        &["user", "passwd", JOE, "--password-stdin"],
        "brand new pw\n",
    );
    let (code, out) = eventually(|| imap(dc.imap, JOE, "brand new pw", ""), 0);
    assert_eq!(code, 0, "{out}\n{}", dc.log_text());
    let (code, out) = imap(dc.imap, JOE, pw, "");
    assert_eq!(code, 3, "old password: {out}");
    let (code, out) = poplib(dc.pop3, JOE, "brand new pw");
    assert_eq!(code, 0, "{out}");
    let (code, out) = poplib(daemon.pop3, JOE, "brand new pw");
    assert_eq!(code, 0, "{out}");
    let m = std::fs::metadata(&file).unwrap();
    assert_eq!((m.gid(), m.mode() & 0o7777), (dovecot_gid, 0o640));

    // An alias domain: Dovecot serves user@ALIAS as the target's mailbox, with its
    // quota, once the command has run, and no longer once it is removed.
    let o = common::turnmail(
        &d.root,
        &["domain", "alias", "add", "example.net", "example.com"],
    );
    assert!(o.status.success(), "{o:?}");
    let (code, out) = eventually(|| imap(dc.imap, "joe@example.net", "brand new pw", ""), 0);
    assert_eq!(code, 0, "{out}\n{}", dc.log_text());
    assert!(out.contains("Subject: third"), "{out}");
    assert!(out.contains(" 100 MESSAGE "), "{out}");
    let o = common::turnmail(&d.root, &["domain", "alias", "remove", "example.net"]);
    assert!(o.status.success(), "{o:?}");
    let (code, out) = eventually(|| imap(dc.imap, "joe@example.net", "brand new pw", ""), 3);
    assert_eq!(code, 3, "{out}");
    // Through all of it, turnmail's header stayed.
    let header = std::fs::read_to_string(&maildirsize).unwrap();
    assert_eq!(header.lines().next(), Some("102400S,20C"), "{header}");
}
