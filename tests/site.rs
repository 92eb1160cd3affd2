//! Site discovery, the RELAYHOST lock against setlock and flock(1), and spool scans.

mod common;

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use common::{demo_root, write};
use turnmail::spool::site::{self, try_lock};

#[test]
fn demo_site_is_discovered_with_its_prefix() {
    let d = demo_root();
    let found = site::discover(&d.root, &["sites/*".to_string()]);
    assert!(found.problems.is_empty(), "{:?}", found.problems);
    let s = found.get("acme").unwrap();
    assert_eq!(s.prefixes, [b"site-acme-"]);
    assert_eq!(s.target().as_deref(), Some("127.0.0.1:2626"));
    assert_eq!(s.settings.domains, vec!["acme.example".to_string()]);
    // A directory without an assign line or prefix is reported, not guessed.
    let odd = d.root.join("sites/odd");
    std::fs::create_dir_all(odd.join("Maildir")).unwrap();
    write(&odd.join("RELAYHOST"), "odd.example\n");
    let found = site::discover(&d.root, &["sites/*".to_string()]);
    assert!(
        found
            .problems
            .iter()
            .any(|p| p.contains("set prefix in site.toml")),
        "{:?}",
        found.problems
    );
    write(&odd.join("site.toml"), "prefix = \"odd-\"\n");
    assert_eq!(
        site::discover(&d.root, &["sites/*".to_string()])
            .get("odd")
            .unwrap()
            .prefixes,
        [b"odd-"]
    );
}

/// Wait until a lock holder says it holds the lock (it prints "held" once locked).
fn held(mut child: std::process::Child) -> std::process::Child {
    use std::io::BufRead;
    let out = child.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(out).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "held");
    child
}

#[test]
fn relayhost_lock_interoperates_with_flock_and_setlock() {
    let d = demo_root();
    let s = site::discover(&d.root, &["sites/*".to_string()])
        .get("acme")
        .unwrap()
        .clone();
    let rh = s.relayhost_path();
    // Kill a holder's whole process group: flock(1) passes the lock to its child.
    let release = |mut child: std::process::Child| {
        let pg = nix::unistd::Pid::from_raw(child.id() as i32);
        nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL).unwrap();
        child.wait().unwrap();
        // The group's other members (flock's child holds the descriptor too) may not
        // be gone yet: the lock is free only once the last of them has exited.
        let start = std::time::Instant::now();
        while try_lock(&s).unwrap().is_none() {
            assert!(start.elapsed() < std::time::Duration::from_secs(10));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    };
    // flock(1) holds it: we skip.
    // `--`: GNU getopt would otherwise take sh's `-c` as flock's own option.
    let holder = Command::new("flock")
        .args(["-n", "--"])
        .arg(&rh)
        .args(["sh", "-c", "echo held; exec sleep 30"])
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("flock(1) from util-linux");
    let holder = held(holder);
    assert!(try_lock(&s).unwrap().is_none());
    release(holder);
    // daemontools setlock holds it: we skip.
    let holder = Command::new("setlock")
        .args(["-n"])
        .arg(&rh)
        .args(["sh", "-c", "echo held; exec sleep 30"])
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("setlock from daemontools (tests/install-peers installs it)");
    let holder = held(holder);
    assert!(try_lock(&s).unwrap().is_none());
    release(holder);
    // We hold it: setlock -n exits 111, flock -n exits 1; after we drop it, both get it.
    let lock = try_lock(&s).unwrap().expect("free now");
    assert_eq!(
        Command::new("setlock")
            .arg("-n")
            .arg(&rh)
            .arg("true")
            .status()
            .unwrap()
            .code(),
        Some(111)
    );
    assert_eq!(
        Command::new("flock")
            .arg("-n")
            .arg(&rh)
            .arg("true")
            .status()
            .unwrap()
            .code(),
        Some(1)
    );
    drop(lock);
    assert_eq!(
        Command::new("setlock")
            .arg("-n")
            .arg(&rh)
            .arg("true")
            .status()
            .unwrap()
            .code(),
        Some(0)
    );
}

#[test]
fn scans_keep_spool_files_and_quarantine_the_rest() {
    let d = demo_root();
    let s = site::discover(&d.root, &["sites/*".to_string()])
        .get("acme")
        .unwrap()
        .clone();
    let md = s.maildir();
    md.deliver(&[
        b"Return-Path: <a@b>\nDelivered-To: site-acme-joe@acme.example\n",
        b"Subject: ok\n\nx\n",
    ])
    .unwrap();
    md.deliver(&[b"Subject: no envelope\n\nx\n"]).unwrap();
    md.deliver(&[b"Return-Path: <a@b>\nDelivered-To: other-joe@acme.example\n\nx\n"])
        .unwrap();
    let later = SystemTime::now() + Duration::from_secs(2);
    let scan = site::scan(&s, later).unwrap();
    assert_eq!(scan.ready.len(), 1);
    assert_eq!(scan.ready[0].envelope.recipient, b"joe@acme.example");
    assert_eq!(scan.quarantined.len(), 2);
    assert_eq!(
        std::fs::read_dir(md.path().join(".quarantine"))
            .unwrap()
            .count(),
        2
    );
    // Quarantined files are not offered again.
    assert_eq!(site::scan(&s, later).unwrap().quarantined.len(), 0);
    // Files from the current second are left for the next scan (maildirserial's rule).
    md.deliver(&[b"Return-Path: <a@b>\nDelivered-To: site-acme-x@acme.example\n\nx\n"])
        .unwrap();
    let is_new = |r: &site::Spooled| r.envelope.recipient == b"x@acme.example";
    assert!(
        !site::scan(&s, SystemTime::now())
            .unwrap()
            .ready
            .iter()
            .any(is_new)
    );
    assert!(site::scan(&s, later).unwrap().ready.iter().any(is_new));
}
