//! kill -9 rounds while the outbound queue is being sent: messages with two or three
//! recipients each (one queue file per recipient, one transaction per message) go
//! through `turnmail flush --queue` to a sink through smtproutes, and the sender is
//! killed at a random point. Nothing may be lost, every file left must be whole, and
//! after a second run only the recipients of one transaction may have arrived twice.
//! The same rounds with mail relayed over SMTP and sent by the daemon as soon as it is
//! queued: the daemon is killed while those transactions are under way, then started
//! again.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::sink::{Script, Sink};
use common::{demo_root, write};
use turnmail::outbound::queue::Queue;

fn body(i: usize) -> String {
    format!("Subject: {i}\n\n{}\nEND {i}\n", "x".repeat(2000))
}

fn recipients(i: usize) -> Vec<String> {
    (0..2 + i % 2)
        .map(|k| format!("m{i}-{k}@remote.example"))
        .collect()
}

fn flush_queue(root: &std::path::Path) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(root)
        .args(["flush", "--queue"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn round(rng: &mut common::Rng, round: usize) {
    let d = demo_root();
    let sink = Sink::start(Script {
        pipelining: true,
        delay: Duration::from_millis(3),
        ..Script::default()
    });
    write(
        &d.root.join("control/smtproutes"),
        &format!("remote.example:127.0.0.1:{}\n", sink.addr.port()),
    );
    let q = Queue::new(&d.root);
    let n = 40;
    let mut group_of: HashMap<String, usize> = HashMap::new();
    for i in 0..n {
        let rcpts = recipients(i);
        for r in &rcpts {
            group_of.insert(r.clone(), i);
        }
        let refs: Vec<&[u8]> = rcpts.iter().map(|r| r.as_bytes()).collect();
        q.enqueue_group(b"bob@example.org", &refs, &[body(i).as_bytes()])
            .unwrap();
    }
    if common::is_root() {
        let mu = common::mail_user();
        let _ = Command::new("chown")
            .args(["-R", &format!("{}:{}", mu.uid, mu.gid)])
            .arg(d.root.join("queue"))
            .arg(d.root.join("control/smtproutes"))
            .status();
    }
    let mut child = flush_queue(&d.root);
    let kill_at = rng.range(0, n as u64 * 9 / 10) as usize;
    let start = Instant::now();
    while sink.messages().len() < kill_at && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_micros(rng.range(0, 10_000)));
    child.kill().unwrap();
    child.wait().unwrap();
    let first = sink.messages().len();
    // Audit: every recipient is queued whole, or arrived.
    let mut remaining = HashSet::new();
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(d.root.join("queue").join(sub)).unwrap() {
            let f = std::fs::read_to_string(e.unwrap().path()).unwrap();
            let to = f
                .lines()
                .find_map(|l| l.strip_prefix("Delivered-To: "))
                .unwrap_or_else(|| panic!("round {round}: not a queue file: {f:.200}"))
                .to_string();
            let i = group_of[&to];
            assert!(f.ends_with(&body(i)), "round {round}: partial file {to}");
            assert!(remaining.insert(to.clone()), "round {round}: {to} twice");
        }
    }
    let taken: HashSet<String> = sink.messages().into_iter().flat_map(|m| m.rcpts).collect();
    for r in group_of.keys() {
        assert!(
            remaining.contains(r) || taken.contains(r),
            "round {round}: {r} lost"
        );
    }
    // Send the rest: every recipient there, at most one transaction twice.
    let status = flush_queue(&d.root).wait().unwrap();
    assert_eq!(status.code(), Some(0), "round {round}");
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in sink.messages() {
        let i = group_of[&m.rcpts[0]];
        assert_eq!(
            String::from_utf8_lossy(&m.data),
            body(i).replace('\n', "\r\n"),
            "round {round}: damaged"
        );
        // One transaction carries one message's recipients only.
        assert!(m.rcpts.iter().all(|r| group_of[r] == i), "round {round}");
        for r in m.rcpts {
            *counts.entry(r).or_insert(0) += 1;
        }
    }
    assert_eq!(counts.len(), group_of.len(), "round {round}: all arrived");
    let twice: HashSet<usize> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(r, _)| group_of[r])
        .collect();
    assert!(
        counts.values().all(|&c| c <= 2) && twice.len() <= 1,
        "round {round}: messages {twice:?} repeated"
    );
    eprintln!(
        "round {round}: killed after {first} of {n} transactions; {} repeated",
        twice.len()
    );
}

#[test]
fn kill_9_while_sending_the_queue_loses_nothing_and_repeats_one_transaction_at_most() {
    let mut rng = common::Rng::new("outbound crash rounds");
    for r in 0..common::crash_rounds().max(3) {
        round(&mut rng, r);
    }
}

/// One message from `bob@example.org` to `rcpt`, relayed through the daemon at
/// `addr` (a new connection); true when DATA got its 250. Any trouble (the daemon
/// killed under it) is false.
fn relay_one(addr: std::net::SocketAddr, rcpt: &str, text: &str) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let Ok(s) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let Ok(mut w) = s.try_clone() else {
        return false;
    };
    let mut r = BufReader::new(s);
    let mut reply = || -> Option<String> {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return Some(all);
            }
        }
    };
    let data = format!("{}.\r\n", text.replace('\n', "\r\n"));
    let steps: [(&str, &str); 5] = [
        ("", "220"),
        ("EHLO client.example\r\n", "250"),
        ("MAIL FROM:<bob@example.org>\r\n", "250"),
        (&format!("RCPT TO:<{rcpt}>\r\n"), "250"),
        ("DATA\r\n", "354"),
    ];
    for (send, want) in steps {
        if !send.is_empty() && w.write_all(send.as_bytes()).is_err() {
            return false;
        }
        if !reply().is_some_and(|l| l.starts_with(want)) {
            return false;
        }
    }
    if w.write_all(data.as_bytes()).is_err() {
        return false;
    }
    let accepted = reply().is_some_and(|l| l.starts_with("250"));
    let _ = w.write_all(b"QUIT\r\n");
    accepted
}

fn queue_files(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(dir) = std::fs::read_dir(root.join("queue").join(sub)) {
            for e in dir.flatten() {
                // A running daemon may send and remove a file between the listing and
                // the read: what is gone is no longer queued.
                match std::fs::read_to_string(e.path()) {
                    Ok(text) => out.push(text),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => panic!("{}: {err}", e.path().display()),
                }
            }
        }
    }
    out
}

fn relay_round(rng: &mut common::Rng, round: usize) {
    let d = demo_root();
    let sink = Sink::start(Script {
        pipelining: true,
        delay: Duration::from_millis(3),
        ..Script::default()
    });
    write(
        &d.root.join("control/smtproutes"),
        &format!("remote.example:127.0.0.1:{}\n", sink.addr.port()),
    );
    write(
        &d.root.join("control/tcp.smtp"),
        "127.0.0.1:allow,RELAYCLIENT=\"\"\n:allow\n",
    );
    common::config(&d, "[relay_access]\nsender_check = \"off\"\n");
    let mut daemon = common::daemon::Daemon::start(&d.root);
    let n = 30;
    let kill_after = rng.range(1, n as u64 - 5) as usize;
    let mut accepted = Vec::new();
    for i in 0..n {
        let rcpt = format!("r{i}@remote.example");
        if relay_one(daemon.addr, &rcpt, &body(i)) {
            accepted.push((rcpt, i));
        }
        if i + 1 == kill_after {
            // Killed while the last ones are on their way to the sink.
            std::thread::sleep(Duration::from_micros(rng.range(0, 8_000)));
            daemon.kill9();
            break;
        }
    }
    assert_eq!(
        accepted.len(),
        kill_after,
        "round {round}: {}",
        daemon.log_text()
    );
    let first = sink.messages().len();
    // Every accepted message is at the sink, or whole in the queue.
    let taken: HashSet<String> = sink.messages().into_iter().flat_map(|m| m.rcpts).collect();
    let mut queued = HashSet::new();
    for f in queue_files(&d.root) {
        let to = f
            .lines()
            .find_map(|l| l.strip_prefix("Delivered-To: "))
            .unwrap_or_else(|| panic!("round {round}: not a queue file: {f:.200}"))
            .to_string();
        let i = accepted
            .iter()
            .find(|(r, _)| *r == to)
            .unwrap_or_else(|| panic!("round {round}: {to} queued, never accepted"))
            .1;
        assert!(
            f.ends_with(&body(i)),
            "round {round}: partial file {to}: {:?}",
            &f[f.len().saturating_sub(60)..]
        );
        queued.insert(to);
    }
    for (r, _) in &accepted {
        assert!(
            queued.contains(r) || taken.contains(r),
            "round {round}: {r} lost"
        );
    }
    // Started again, the daemon sends what is left: all there, one repeated at most.
    let daemon = common::daemon::Daemon::start(&d.root);
    let start = Instant::now();
    while !queue_files(&d.root).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "round {round}: queue not emptied: {}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut counts: HashMap<String, usize> = HashMap::new();
    for m in sink.messages() {
        let (_, i) = accepted
            .iter()
            .find(|(r, _)| *r == m.rcpts[0])
            .unwrap_or_else(|| panic!("round {round}: {:?} never accepted", m.rcpts));
        let text = String::from_utf8_lossy(&m.data);
        assert!(
            text.ends_with(&body(*i).replace('\n', "\r\n")),
            "round {round}: damaged"
        );
        for r in m.rcpts {
            *counts.entry(r).or_insert(0) += 1;
        }
    }
    assert_eq!(counts.len(), accepted.len(), "round {round}: all arrived");
    let twice = counts.values().filter(|&&c| c > 1).count();
    assert!(
        counts.values().all(|&c| c <= 2) && twice <= 1,
        "round {round}: {twice} repeated"
    );
    eprintln!(
        "round {round}: killed after {kill_after} accepted, {first} at the sink; {twice} repeated"
    );
}

#[test]
fn kill_9_while_relayed_mail_is_sent_at_once_loses_nothing_and_repeats_one_at_most() {
    let mut rng = common::Rng::new("relay crash rounds");
    for r in 0..common::crash_rounds().max(3) {
        relay_round(&mut rng, r);
    }
}
