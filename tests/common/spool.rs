//! Site spools for the flush tests: messages spooled as qmail-local writes them,
//! `turnmail flush` run on them, and the kill -9 round shared by the single and the
//! parallel flush.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use super::DemoRoot;
use super::sink::{Script, Sink};
use turnmail::maildir::Maildir;

pub fn flush(d: &DemoRoot, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .arg("flush")
        .args(args)
        .output()
        .unwrap()
}

pub fn spool(d: &DemoRoot) -> Maildir {
    Maildir::new(d.root.join("sites/acme/Maildir"))
}

/// Files in a mail root belong to its mail user (the flush runs as that user).
pub fn own(path: &std::path::Path) {
    if nix::unistd::Uid::effective().is_root() {
        let mu = super::mail_user();
        std::os::unix::fs::chown(path, Some(mu.uid), Some(mu.gid)).unwrap();
    }
}

/// Put a message into the site's spool exactly as qmail-local would, dated `age` ago.
pub fn spooled(d: &DemoRoot, sender: &str, rcpt: &str, body: &str, age: Duration) {
    let head = format!("Return-Path: <{sender}>\nDelivered-To: site-acme-{rcpt}\n");
    let got = spool(d)
        .deliver(&[head.as_bytes(), body.as_bytes()])
        .unwrap();
    own(&got.path);
    let t = SystemTime::now() - age - Duration::from_secs(2);
    super::set_mtime(&got.path, t);
}

pub fn left(d: &DemoRoot) -> usize {
    spool(d)
        .scan(SystemTime::now() + Duration::from_secs(5))
        .unwrap()
        .len()
}

pub fn queue_files(d: &DemoRoot) -> Vec<String> {
    std::fs::read_dir(d.root.join("queue/new"))
        .map(|r| {
            r.flatten()
                .map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// Add `extra` lines to the demo site's site.toml.
pub fn site_toml(d: &DemoRoot, extra: &str) {
    let path = d.root.join("sites/acme/site.toml");
    let mut text = std::fs::read_to_string(&path).unwrap_or_default();
    text.push_str(extra);
    std::fs::write(&path, text).unwrap();
    own(&path);
}

/// Write a spool file under a name of qmail-local's kind (no `,S=`/`,W=` sizes).
pub fn spooled_unnamed(d: &DemoRoot, rcpt: &str, body: &[u8], n: usize) {
    let mut bytes =
        format!("Return-Path: <bob@example.org>\nDelivered-To: site-acme-{rcpt}\n").into_bytes();
    bytes.extend_from_slice(body);
    let path = spool(d)
        .path()
        .join(format!("new/1700000000.M{n}P4242.qmail.example"));
    std::fs::write(&path, bytes).unwrap();
    own(&path);
    super::set_mtime(&path, SystemTime::now() - Duration::from_secs(5));
}

/// One crash round: a flush of `n` messages over `connections` connections killed
/// with SIGKILL after the site has taken a random number of them (and a random moment
/// more); then an audit of the spool, and a second flush that must deliver the rest,
/// repeating at most one message per connection (the one in flight on each).
pub fn crash_round(rng: &mut super::Rng, round: usize, connections: usize) {
    let d = super::demo_root();
    // Several connections are for sites without PIPELINING.
    let sink = Sink::start(Script {
        pipelining: connections == 1,
        chunking: false,
        delay: Duration::from_millis(5),
        ..Script::default()
    });
    if connections > 1 {
        site_toml(&d, &format!("connections = {connections}\n"));
    }
    let n = 60;
    let body = |i: usize| format!("Subject: {i}\n\n{}\nEND {i}\n", "x".repeat(2000));
    for i in 0..n {
        spooled(
            &d,
            "bob@example.org",
            &format!("m{i}@acme.example"),
            &body(i),
            Duration::ZERO,
        );
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["flush", "acme", "--to", &sink.addr.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let kill_at = rng.range(0, n as u64 * 9 / 10) as usize;
    let start = std::time::Instant::now();
    while sink.messages().len() < kill_at && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_micros(rng.range(0, 20_000)));
    child.kill().unwrap();
    child.wait().unwrap();
    let first = sink.messages().len();
    assert!(
        first < n,
        "round {round}: the flush should have been cut short"
    );
    // Audit: what is left in the spool is whole, and nothing is neither here nor there.
    let mut remaining = std::collections::HashSet::new();
    let md = d.root.join("sites/acme/Maildir");
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(md.join(sub)).unwrap() {
            let f = std::fs::read_to_string(e.unwrap().path()).unwrap();
            let to = f
                .lines()
                .find_map(|l| l.strip_prefix("Delivered-To: site-acme-"))
                .unwrap_or_else(|| panic!("round {round}: not a spool file: {f:.200}"))
                .to_string();
            let i: usize = to
                .strip_prefix('m')
                .and_then(|t| t.strip_suffix("@acme.example"))
                .and_then(|t| t.parse().ok())
                .unwrap();
            assert!(
                f.ends_with(&body(i)),
                "round {round}: partial spool file {to}"
            );
            assert!(
                remaining.insert(to.clone()),
                "round {round}: {to} twice in the spool"
            );
        }
    }
    assert!(
        std::fs::read_dir(md.join("tmp")).unwrap().count() == 0,
        "round {round}: litter in tmp/"
    );
    let taken: std::collections::HashSet<String> =
        sink.messages().into_iter().map(|m| m.to).collect();
    for i in 0..n {
        let to = format!("m{i}@acme.example");
        assert!(
            remaining.contains(&to) || taken.contains(&to),
            "round {round}: {to} lost"
        );
    }
    // Flush the rest; every message must now be at the site, at most one twice.
    let o = flush(&d, &["acme", "--to", &sink.addr.to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(left(&d), 0);
    let mut counts = std::collections::HashMap::new();
    for m in sink.messages() {
        let i: usize = m.to[1..m.to.find('@').unwrap()].parse().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&m.data),
            body(i).replace('\n', "\r\n"),
            "round {round}: {} arrived damaged",
            m.to
        );
        *counts.entry(m.to).or_insert(0) += 1;
    }
    assert_eq!(counts.len(), n, "round {round}: every message arrived");
    let dups = counts.values().filter(|&&c| c > 1).count();
    assert!(
        counts.values().all(|&c| c <= 2) && dups <= connections,
        "round {round}: {dups} duplicates over {connections} connection(s)"
    );
    eprintln!("round {round}: killed after {first} of {n} taken; {dups} repeated");
}
