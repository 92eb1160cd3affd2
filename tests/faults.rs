//! Faults around a running system: a full disk and a read-only file system under a
//! Maildir, sites that misbehave during a flush, DNS that fails for the outbound queue,
//! and users/cdb replaced while recipients are being looked up. Every fault must end in
//! a temporary failure with nothing partial on disk and nothing lost.
//!
//! The file-system tests mount a small tmpfs and so need root (and the right to mount);
//! without it they print why they are skipped.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::daemon::{Client, Daemon};
use common::sink::{Script, Sink};
use common::{DemoRoot, demo_root, write};
use turnmail::maildir::Maildir;

/// Files in a mail root belong to its mail user (the daemon runs as that user).
fn own(path: &Path) {
    if nix::unistd::Uid::effective().is_root() {
        let mu = common::mail_user();
        std::os::unix::fs::chown(path, Some(mu.uid), Some(mu.gid)).unwrap();
    }
}

fn turnmail(d: &DemoRoot, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

// ---------------------------------------------------------------------------------
// File-system faults under joe's Maildir.

/// A tmpfs mounted over a directory, unmounted when dropped.
struct Mount {
    path: PathBuf,
}

impl Mount {
    /// Mount a tmpfs of `size` on `path`, owned by the mail user; `Err` says why not.
    fn tmpfs(path: &Path, size: &str) -> Result<Mount, String> {
        if !nix::unistd::Uid::effective().is_root() {
            return Err("not running as root".into());
        }
        let mu = common::mail_user();
        let o = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!(
                "size={size},mode=0700,uid={},gid={}",
                mu.uid, mu.gid
            ))
            .arg("tmpfs")
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !o.status.success() {
            return Err(format!("mount -t tmpfs refused: {}", text(&o).trim()));
        }
        Ok(Mount {
            path: path.to_path_buf(),
        })
    }

    fn remount(&self, opts: &str) {
        let o = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(o.status.success(), "remount {opts}: {}", text(&o));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a daemon that is not dead yet): detach it anyway.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

fn joe_maildir(d: &DemoRoot) -> PathBuf {
    d.root.join("domains/example.com/joe/Maildir")
}

/// Put joe's Maildir on a fresh tmpfs of `size`; `None` (after saying why) when this
/// machine does not allow it.
fn maildir_on_tmpfs(d: &DemoRoot, size: &str) -> Option<Mount> {
    let md = joe_maildir(d);
    match Mount::tmpfs(&md, size) {
        Ok(m) => {
            Maildir::create(&md).unwrap();
            for sub in ["", "tmp", "new", "cur"] {
                own(&md.join(sub));
            }
            Some(m)
        }
        Err(why) => {
            common::skip(&why);
            None
        }
    }
}

fn names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Nothing of a message anywhere in joe's Maildir, not even litter in tmp/.
fn assert_maildir_empty(d: &DemoRoot, why: &str) {
    let md = joe_maildir(d);
    for sub in ["tmp", "new", "cur"] {
        let n = names(&md.join(sub));
        assert!(n.is_empty(), "{why}: {sub}/ holds {n:?}");
    }
}

fn queue_count(d: &DemoRoot) -> usize {
    std::fs::read_dir(d.root.join("queue/new")).map_or(0, |r| r.count())
}

/// An SMTP session that has said EHLO.
fn smtp(s: &Daemon) -> Client {
    let mut c = s.connect();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO faults.example").starts_with("250"));
    c
}

/// One message to `rcpt` on an open session; returns the reply to the final dot.
fn send(c: &mut Client, rcpt: &str, body: &str) -> String {
    assert!(c.cmd("MAIL FROM:<bob@example.org>").starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    assert!(r.starts_with("250"), "RCPT {rcpt}: {r}");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(body.as_bytes());
    c.cmd(".")
}

/// A message of about `kib` KiB whose last line proves it is complete.
fn big_body(tag: &str, kib: usize) -> String {
    let line = "x".repeat(76);
    let mut b = format!("Subject: {tag}\r\nX-Tag: {tag}\r\n\r\n");
    for _ in 0..kib * 1024 / 78 {
        b.push_str(&line);
        b.push_str("\r\n");
    }
    b.push_str(&format!("END {tag}\r\n"));
    b
}

/// A temporary failure with an RFC 3463 enhanced code (`4xx 4.y.z ...`).
fn assert_temporary(reply: &str) {
    let b = reply.as_bytes();
    assert!(
        b.len() > 6 && b[0] == b'4' && b[3] == b' ' && b[4] == b'4' && b[5] == b'.',
        "want a 4xx reply with an enhanced status code, got {reply:?}"
    );
}

/// The one file in joe's new/ is the complete message tagged `tag`.
fn assert_delivered_once(d: &DemoRoot, tag: &str) {
    let new = joe_maildir(d).join("new");
    let n = names(&new);
    assert_eq!(n.len(), 1, "{n:?}");
    let f = std::fs::read_to_string(new.join(&n[0])).unwrap();
    assert!(f.contains(&format!("X-Tag: {tag}\n")), "{f:.300}");
    assert!(f.ends_with(&format!("\nEND {tag}\n")), "partial: {f:.300}");
}

#[test]
fn a_full_disk_defers_and_leaves_nothing_partial() {
    let d = demo_root();
    let Some(_mount) = maildir_on_tmpfs(&d, "2m") else {
        return;
    };
    // Fill the file system, leaving less room than one message needs.
    let filler = joe_maildir(&d).join(".filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
    }
    let s = Daemon::start(&d.root);
    let mut c = smtp(&s);
    for round in 0..3 {
        let r = send(&mut c, "joe@example.com", &big_body("full", 200));
        eprintln!("full disk: {r}");
        assert_temporary(&r);
        assert_maildir_empty(&d, &format!("after a full-disk delivery, try {round}"));
    }
    assert_eq!(queue_count(&d), 0, "a deferred message is not queued");
    assert!(
        s.log_text().contains("No space left on device"),
        "the operator is told why: {}",
        s.log_text()
    );
    // The same session still works for a mailbox on another file system.
    assert!(send(&mut c, "anyone@acme.example", &big_body("site", 1)).starts_with("250"));
    // Room again: the very same message goes through, complete and once.
    std::fs::remove_file(&filler).unwrap();
    let r = send(&mut c, "joe@example.com", &big_body("full", 200));
    assert!(r.starts_with("250"), "{r}");
    assert_delivered_once(&d, "full");
    assert!(names(&joe_maildir(&d).join("tmp")).is_empty());
    assert_eq!(c.cmd("QUIT").get(..3), Some("221"));
}

/// Fill the file system holding `dir` (through a file in it), leaving less room than
/// a message needs; returns the filler, whose removal frees the space.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join(".filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    loop {
        match f.write_all(&chunk) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    filler
}

/// The messages in a Maildir's new/ carrying `X-Tag: TAG`, per tag.
fn tags_in(new: &Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for n in names(new) {
        let f = std::fs::read_to_string(new.join(&n)).unwrap();
        let tag = f
            .lines()
            .find_map(|l| l.strip_prefix("X-Tag: "))
            .unwrap_or("?")
            .to_string();
        *out.entry(tag).or_default() += 1;
    }
    out
}

#[test]
fn copies_written_before_a_full_disk_are_kept_and_the_rest_is_queued() {
    if !common::root_or_skip("a full tmpfs under one of several mailboxes") {
        return;
    }
    let d = demo_root();
    // team@example.com delivers into ann's Maildir (the root's file system), then
    // joe's (a tmpfs, full): several copies, the last one failing.
    let ann = d.root.join("domains/example.com/ann");
    std::fs::create_dir(&ann).unwrap();
    own(&ann);
    let ann_md = Maildir::create(ann.join("Maildir")).unwrap();
    for sub in ["", "tmp", "new", "cur"] {
        own(&ann_md.path().join(sub));
    }
    let team = d.root.join("domains/example.com/.qmail-team");
    write(&team, "./ann/Maildir/\n./joe/Maildir/\n");
    std::fs::set_permissions(&team, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    own(&team);
    let Some(_mount) = maildir_on_tmpfs(&d, "2m") else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: no tmpfs could be mounted for this test"
        );
        return;
    };
    let filler = fill(&joe_maildir(&d));
    let mut s = Daemon::start(&d.root);
    let mut c = smtp(&s);
    // The list alone: ann's copy is written, joe's is not. Answering 451 would make
    // the client send again, and ann would get it twice.
    let r = send(&mut c, "team@example.com", &big_body("t1", 200));
    assert!(r.starts_with("250"), "{r}");
    // The list and a site: the same, with another recipient in the transaction.
    assert!(c.cmd("MAIL FROM:<bob@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<team@example.com>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<anyone@acme.example>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(big_body("t2", 200).as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("250"), "{r}");
    assert_eq!(c.cmd("QUIT").get(..3), Some("221"));
    s.terminate();
    let once = |tags: &[&str]| -> BTreeMap<String, usize> {
        tags.iter().map(|t| (t.to_string(), 1)).collect()
    };
    assert_eq!(tags_in(&ann_md.path().join("new")), once(&["t1", "t2"]));
    assert_eq!(
        tags_in(&d.root.join("sites/acme/Maildir/new")),
        once(&["t2"])
    );
    assert_maildir_empty(&d, "joe's file system is full");
    // What is queued is joe's copy alone: the delivery resumes at .qmail line 2.
    let queued: Vec<String> = names(&d.root.join("queue/new"));
    assert_eq!(queued.len(), 2, "{queued:?}");
    for q in &queued {
        let f = std::fs::read(d.root.join("queue/new").join(q)).unwrap();
        assert!(
            f.starts_with(b"X-Turnmail-Resume: "),
            "{}",
            String::from_utf8_lossy(&f[..80])
        );
    }

    // Room again: the queue run delivers joe's copies, and only those.
    std::fs::remove_file(&filler).unwrap();
    // Queue files of the current second wait for the next scan.
    std::thread::sleep(Duration::from_millis(1100));
    let o = turnmail(&d, &["flush", "--queue"]);
    assert!(text(&o).contains("queue: 2 delivered"), "{}", text(&o));
    assert_eq!(tags_in(&joe_maildir(&d).join("new")), once(&["t1", "t2"]));
    assert_eq!(tags_in(&ann_md.path().join("new")), once(&["t1", "t2"]));
    assert_eq!(queue_count(&d), 0);
}

#[test]
fn a_read_only_file_system_defers_and_the_daemon_survives() {
    let d = demo_root();
    let Some(mount) = maildir_on_tmpfs(&d, "4m") else {
        return;
    };
    mount.remount("ro");
    let mut s = Daemon::start(&d.root);
    for i in 0..3 {
        // A new connection each time: every one must find the daemon alive.
        let mut c = smtp(&s);
        let r = send(&mut c, "joe@example.com", &big_body(&format!("ro{i}"), 20));
        eprintln!("read-only: {r}");
        assert_temporary(&r);
        assert!(c.cmd("QUIT").starts_with("221"));
    }
    assert_maildir_empty(&d, "on a read-only Maildir");
    assert_eq!(queue_count(&d), 0);
    assert!(
        s.log_text().contains("Read-only file system"),
        "{}",
        s.log_text()
    );
    assert!(s.child.try_wait().unwrap().is_none(), "the daemon died");
    // Other mailboxes were never affected.
    let mut c = smtp(&s);
    assert!(send(&mut c, "anyone@acme.example", &big_body("site", 1)).starts_with("250"));
    // Writable again: delivery works without a restart.
    mount.remount("rw");
    let r = send(&mut c, "joe@example.com", &big_body("rw", 20));
    assert!(r.starts_with("250"), "{r}");
    assert_delivered_once(&d, "rw");
    s.terminate();
}

// ---------------------------------------------------------------------------------
// Sites that misbehave during a flush.

#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Takes the transaction, then closes the connection in the middle of the data.
    DropsMidData,
    /// Takes the whole message, then answers 421 and closes.
    Answers421AfterData,
    /// Greets with 421 (too busy) and closes.
    Greets421,
    /// Stops answering after MAIL (the client's command timeout must end it).
    StallsAtRcpt,
    /// Answers the end of the data with bytes that are not an SMTP reply.
    GarbageAfterData,
}

/// A site that behaves like a normal SMTP server up to its one fault.
fn bad_site(how: Misbehaviour) -> (SocketAddr, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let c = conns.clone();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let _ = misbehave(s, how);
            });
        }
    });
    (addr, conns)
}

fn misbehave(s: TcpStream, how: Misbehaviour) -> std::io::Result<()> {
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    if matches!(how, Misbehaviour::Greets421) {
        w.write_all(b"421 4.3.2 bad.example too busy, closing\r\n")?;
        return Ok(());
    }
    w.write_all(b"220 bad.example ESMTP\r\n")?;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let upper = line.trim_end().to_ascii_uppercase();
        if upper.starts_with("EHLO") {
            w.write_all(b"250-bad.example\r\n250 8BITMIME\r\n")?;
        } else if upper.starts_with("RCPT") && matches!(how, Misbehaviour::StallsAtRcpt) {
            // Hold the connection open, silent, well past the client's timeout.
            std::thread::sleep(Duration::from_secs(180));
            return Ok(());
        } else if upper == "DATA" {
            w.write_all(b"354 go ahead\r\n")?;
            let mut lines = 0;
            loop {
                let mut l = Vec::new();
                if r.read_until(b'\n', &mut l)? == 0 {
                    return Ok(());
                }
                lines += 1;
                if lines == 2 && matches!(how, Misbehaviour::DropsMidData) {
                    return Ok(());
                }
                if l == b".\r\n" {
                    break;
                }
            }
            match how {
                Misbehaviour::Answers421AfterData => {
                    w.write_all(b"421 4.4.2 bad.example connection lost\r\n")?;
                    return Ok(());
                }
                Misbehaviour::GarbageAfterData => {
                    w.write_all(b"HTTP/1.1 400 Bad Request\r\n\0\xff\xfe\r\n")?;
                }
                _ => w.write_all(b"250 2.0.0 queued\r\n")?,
            }
        } else if upper == "QUIT" {
            w.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else {
            w.write_all(b"250 ok\r\n")?;
        }
    }
}

/// Put a message into acme's spool as qmail-local would, dated a minute ago.
fn spooled(d: &DemoRoot, rcpt: &str, body: &str) {
    let head = format!("Return-Path: <bob@example.org>\nDelivered-To: site-acme-{rcpt}\n");
    let got = Maildir::new(d.root.join("sites/acme/Maildir"))
        .deliver(&[head.as_bytes(), body.as_bytes()])
        .unwrap();
    own(&got.path);
    backdate(&got.path, 60);
}

fn backdate(path: &Path, secs: u64) {
    let t = SystemTime::now() - Duration::from_secs(secs);
    common::set_mtime(path, t);
}

/// Every spool file (new/ and cur/) by name, with its bytes.
fn spool_files(d: &DemoRoot) -> BTreeMap<String, Vec<u8>> {
    let md = d.root.join("sites/acme/Maildir");
    let mut out = BTreeMap::new();
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(md.join(sub)).unwrap() {
            let e = e.unwrap();
            out.insert(
                format!("{sub}/{}", e.file_name().to_string_lossy()),
                std::fs::read(e.path()).unwrap(),
            );
        }
    }
    out
}

fn site_fault_keeps_all_mail(how: Misbehaviour) {
    let d = demo_root();
    let n = 3;
    for i in 0..n {
        spooled(
            &d,
            &format!("m{i}@acme.example"),
            &format!("Subject: {i}\n\nbody {i}\n"),
        );
    }
    let before = spool_files(&d);
    assert_eq!(before.len(), n);
    let (addr, conns) = bad_site(how);
    let start = Instant::now();
    let o = turnmail(&d, &["flush", "acme", "--to", &addr.to_string()]);
    let out = text(&o);
    assert!(
        conns.load(Ordering::SeqCst) >= 1,
        "{how:?}: never connected: {out}"
    );
    assert_eq!(o.status.code(), Some(111), "{how:?}: {out}");
    assert_eq!(
        spool_files(&d),
        before,
        "{how:?}: every message stays in the spool, unchanged: {out}"
    );
    assert_eq!(queue_count(&d), 0, "{how:?}: nothing bounced: {out}");
    assert!(
        !out.contains("bounced") || out.contains("0 bounced"),
        "{how:?}: {out}"
    );
    eprintln!("{how:?}: flush ended after {:?}: {out}", start.elapsed());
    // The kept messages are whole: a good site gets every one of them.
    let sink = Sink::start(Script::default());
    let o = turnmail(&d, &["flush", "acme", "--to", &sink.addr.to_string()]);
    assert_eq!(o.status.code(), Some(0), "{how:?}: {}", text(&o));
    let mut got: Vec<String> = sink
        .messages()
        .into_iter()
        .map(|m| format!("{} {}", m.to, String::from_utf8_lossy(&m.data)))
        .collect();
    got.sort();
    let want: Vec<String> = (0..n)
        .map(|i| format!("m{i}@acme.example Subject: {i}\r\n\r\nbody {i}\r\n"))
        .collect();
    assert_eq!(got, want, "{how:?}");
    assert!(spool_files(&d).is_empty());
}

#[test]
fn a_site_that_drops_the_connection_mid_data_keeps_the_mail() {
    site_fault_keeps_all_mail(Misbehaviour::DropsMidData);
}

#[test]
fn a_site_that_answers_421_keeps_the_mail() {
    site_fault_keeps_all_mail(Misbehaviour::Answers421AfterData);
    site_fault_keeps_all_mail(Misbehaviour::Greets421);
}

#[test]
fn a_site_that_stalls_past_the_timeout_keeps_the_mail() {
    site_fault_keeps_all_mail(Misbehaviour::StallsAtRcpt);
}

#[test]
fn a_site_that_sends_garbage_keeps_the_mail() {
    site_fault_keeps_all_mail(Misbehaviour::GarbageAfterData);
}

// ---------------------------------------------------------------------------------
// DNS failure for the outbound queue.

/// A DNS server on `ip`:53 that answers every query SERVFAIL (a broken resolver, not a
/// missing domain). Stops when `stop` is set.
fn servfail_dns(ip: &str, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let sock = UdpSocket::bind((ip, 53))?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        while !stop.load(Ordering::SeqCst) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let q = &buf[..n];
            if n < 12 {
                continue;
            }
            // The question: QNAME labels up to the root label, then QTYPE and QCLASS.
            let mut i = 12;
            while i < n && q[i] != 0 {
                i += 1 + q[i] as usize;
            }
            let end = (i + 5).min(n);
            let mut r = Vec::with_capacity(end);
            r.extend_from_slice(&q[..2]);
            // QR, the opcode and RD copied; RA; RCODE 2 (SERVFAIL).
            r.push(0x80 | (q[2] & 0x79));
            r.push(0x80 | 2);
            r.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..end]);
            let _ = sock.send_to(&r, from);
        }
    });
    Ok(())
}

#[test]
fn a_dns_failure_keeps_outbound_mail_queued() {
    if !nix::unistd::Uid::effective().is_root() {
        common::skip("not running as root (needs a private mount namespace)");
        return;
    }
    let d = demo_root();
    let stop = Arc::new(AtomicBool::new(false));
    let dns_ip = "127.0.0.77";
    if let Err(e) = servfail_dns(dns_ip, stop.clone()) {
        common::skip(&format!("cannot listen on {dns_ip}:53: {e}"));
        return;
    }
    // One forward routed by MX lookup, one through smtproutes to a relay host whose
    // address lookup fails.
    let p = d.root.join("domains/example.com/.qmail-fwd");
    write(&p, "&out@remote.example.net\n&via@routed.example.net\n");
    own(&p);
    let routes = d.root.join("control/smtproutes");
    write(&routes, "routed.example.net:relay.broken.example.net:25\n");
    own(&routes);
    let resolv = d.dir.path().join("resolv.conf");
    write(
        &resolv,
        &format!("nameserver {dns_ip}\noptions timeout:1 attempts:1\n"),
    );
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["deliver", "-f", "bob@example.org", "--", "fwd@example.com"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"Subject: fwd\n\nforwarded body\n")
        .unwrap();
    assert!(c.wait().unwrap().success());
    let queue = d.root.join("queue/new");
    let queued = names(&queue);
    assert_eq!(queued.len(), 2, "{queued:?}");
    for n in &queued {
        // Files from the current second wait for the next run: make them older.
        backdate(&queue.join(n), 60);
    }
    let before: BTreeMap<String, Vec<u8>> = queued
        .iter()
        .map(|n| (n.clone(), std::fs::read(queue.join(n)).unwrap()))
        .collect();
    // The queue run sees only our broken resolver (a private mount namespace).
    let bin = env!("CARGO_BIN_EXE_turnmail");
    let o = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" /etc/resolv.conf && shift && exec "$@""#)
        .arg("sh")
        .arg(&resolv)
        .arg(bin)
        .arg("--root")
        .arg(&d.root)
        .args(["flush", "--queue"])
        .output();
    stop.store(true, Ordering::SeqCst);
    let o = match o {
        Ok(o) => o,
        Err(e) => {
            common::skip(&format!("cannot run unshare: {e}"));
            return;
        }
    };
    let out = text(&o);
    if out.contains("unshare failed") || out.contains("mount:") {
        common::skip(&format!("no private mount namespace here: {out}"));
        return;
    }
    eprintln!("queue run with a broken resolver: {out}");
    assert_eq!(o.status.code(), Some(111), "{out}");
    assert!(out.contains("2 deferred"), "{out}");
    assert!(out.contains("0 bounced"), "{out}");
    // Both stay queued, unchanged, and no bounce was written.
    let after: BTreeMap<String, Vec<u8>> = names(&queue)
        .iter()
        .map(|n| (n.clone(), std::fs::read(queue.join(n)).unwrap()))
        .collect();
    assert_eq!(after, before, "{out}");
    // The reason is recorded for the operator.
    assert!(
        out.contains("DNS lookup of remote.example.net") && out.contains("Server Failure"),
        "the MX lookup's trouble is reported: {out}"
    );
    assert!(
        out.contains("Temporary(\"relay.broken.example.net:25"),
        "the relay host's lookup trouble is reported: {out}"
    );
}

// ---------------------------------------------------------------------------------
// users/cdb replaced while the daemon looks recipients up.

const CHURN_USERS: usize = 8;

/// users/assign with the demo's lines, one exact entry per churn user, and `filler`
/// entries that differ between generations (so every cdb is laid out differently).
fn churn_assign(d: &DemoRoot, generation: usize, filler: usize) -> String {
    let mu = common::mail_user();
    let root = d.root.display();
    let mut a = String::new();
    let line = |local: &str, home: &str| {
        format!(
            "={local}:{}:{}:{}:{root}/homes/{home}:::\n",
            mu.name, mu.uid, mu.gid
        )
    };
    for k in 0..filler {
        a.push_str(&line(&format!("churn-g{generation}x{k}"), "trap"));
    }
    for u in 0..CHURN_USERS {
        a.push_str(&line(&format!("churn-u{u}"), &format!("u{u}")));
    }
    a.push_str(&format!(
        "+example.com-:{}:{}:{}:{root}/domains/example.com:-::\n",
        mu.name, mu.uid, mu.gid
    ));
    a.push_str(&format!(
        "+site-acme-:{}:{}:{}:{root}/sites/acme:-::\n.\n",
        mu.name, mu.uid, mu.gid
    ));
    a
}

/// Clients looking up and sending to churn users (and to addresses that never exist)
/// until `stop`; each records every reply it got that was not the expected one.
fn churn_client(
    addr: SocketAddr,
    id: usize,
    stop: Arc<AtomicBool>,
    bad: Arc<Mutex<Vec<String>>>,
    sent: Arc<Mutex<HashMap<String, usize>>>,
    temp: Arc<AtomicUsize>,
) {
    let mut c = Client::connect(addr);
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO churn.example").starts_with("250"));
    let mut n = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let u = (id + n) % CHURN_USERS;
        assert!(c.cmd("MAIL FROM:<bob@example.org>").starts_with("250"));
        let nobody = c.cmd(&format!("RCPT TO:<nobody{n}@churn.example>"));
        if nobody.starts_with("451 4.3.0 ") {
            temp.fetch_add(1, Ordering::Relaxed);
        } else if !nobody.starts_with("550 5.1.1 ") {
            bad.lock().unwrap().push(format!("nobody{n}: {nobody}"));
        }
        let r = c.cmd(&format!("RCPT TO:<u{u}@churn.example>"));
        if r.starts_with("451 4.3.0 ") {
            temp.fetch_add(1, Ordering::Relaxed);
            assert!(c.cmd("RSET").starts_with("250"));
            continue;
        }
        if !r.starts_with("250 ") {
            bad.lock().unwrap().push(format!("u{u}: {r}"));
            assert!(c.cmd("RSET").starts_with("250"));
            continue;
        }
        // Every few lookups a message, to see where it lands.
        if n % 4 == 0 {
            assert!(c.cmd("DATA").starts_with("354"));
            let tag = format!("c{id}-{n}");
            let r = c.cmd(&format!("X-For: u{u}\r\nX-Tag: {tag}\r\n\r\nbody\r\n."));
            if r.starts_with("250") {
                sent.lock().unwrap().insert(tag, u);
            } else {
                bad.lock().unwrap().push(format!("DATA to u{u}: {r}"));
            }
        } else {
            assert!(c.cmd("RSET").starts_with("250"));
        }
    }
    let _ = c.cmd("QUIT");
}

#[test]
fn users_cdb_replaced_during_lookups_never_misroutes() {
    let d = demo_root();
    let mu = common::mail_user();
    // A domain whose every address is an exact users/assign entry.
    write(
        &d.root.join("control/virtualdomains"),
        "example.com:example.com\nacme.example:site-acme\nchurn.example:churn\n",
    );
    write(
        &d.root.join("control/rcpthosts"),
        "example.com\nacme.example\nchurn.example\n",
    );
    for h in (0..CHURN_USERS)
        .map(|u| format!("u{u}"))
        .chain(["trap".to_string()])
    {
        let home = d.root.join("homes").join(&h);
        std::fs::create_dir_all(&home).unwrap();
        Maildir::create(home.join("Maildir")).unwrap();
        write(&home.join(".qmail"), "./Maildir/\n");
    }
    turnmail::admin::edit::chown_tree(&d.root, mu.uid, mu.gid).unwrap();
    let assign = d.root.join("users/assign");
    write(&assign, &churn_assign(&d, 0, 10));
    own(&assign);
    assert!(turnmail(&d, &["newu"]).status.success());
    // The clients refuse-probe on purpose (an unknown address every round): this test is
    // about lookups, not about the harvesting limits, which would slow and stop them.
    common::config(
        &d,
        "[smtp]\nrcpt_hard_error_limit = 0\nrcpt_error_delay_ms = 0\n",
    );
    let mut s = Daemon::start(&d.root);

    let stop = Arc::new(AtomicBool::new(false));
    let bad = Arc::new(Mutex::new(Vec::new()));
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let temp = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|id| {
            let (stop, bad, sent, temp) = (stop.clone(), bad.clone(), sent.clone(), temp.clone());
            let addr = s.addr;
            std::thread::spawn(move || churn_client(addr, id, stop, bad, sent, temp))
        })
        .collect();
    // Rewrite assign in place (readers may see it half written) and recompile, again
    // and again, with a different layout each time.
    let start = Instant::now();
    let mut generations = 0;
    while start.elapsed() < Duration::from_secs(6) {
        generations += 1;
        write(
            &assign,
            &churn_assign(&d, generations, 1 + generations * 7 % 300),
        );
        common::touch_later(&assign, generations as u64);
        let o = turnmail(&d, &["newu"]);
        assert!(o.status.success(), "newu: {}", text(&o));
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("a client thread failed");
    }
    let bad = bad.lock().unwrap().clone();
    assert!(bad.is_empty(), "wrong answers: {bad:?}");
    let sent = sent.lock().unwrap().clone();
    eprintln!(
        "{generations} generations of users/cdb, {} messages, {} temporary failures",
        sent.len(),
        temp.load(Ordering::Relaxed)
    );
    assert!(generations >= 5, "only {generations} rewrites");
    assert!(sent.len() >= 20, "only {} messages", sent.len());
    assert!(s.child.try_wait().unwrap().is_none(), "the daemon died");
    assert!(!s.log_text().contains("panicked"), "{}", s.log_text());

    // Every accepted message is in its own user's Maildir, exactly once.
    let mut found: HashMap<String, usize> = HashMap::new();
    for h in (0..CHURN_USERS)
        .map(|u| format!("u{u}"))
        .chain(["trap".to_string()])
    {
        let new = d.root.join("homes").join(&h).join("Maildir/new");
        for e in std::fs::read_dir(&new).unwrap() {
            let f = std::fs::read_to_string(e.unwrap().path()).unwrap();
            let tag = f
                .lines()
                .find_map(|l| l.strip_prefix("X-Tag: "))
                .unwrap()
                .to_string();
            assert!(f.contains(&format!("\nX-For: {h}\n")), "in {h}: {f}");
            assert!(found.insert(tag.clone(), 1).is_none(), "{tag} twice");
        }
    }
    assert_eq!(found.len(), sent.len());
    for tag in sent.keys() {
        assert!(found.contains_key(tag), "{tag} lost");
    }
    // Still answering with the last tables.
    let mut c = smtp(&s);
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<u1@churn.example>").starts_with("250"));
    s.terminate();
}
