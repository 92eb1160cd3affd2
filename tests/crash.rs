//! Crash safety: SIGKILL at a random moment, each round followed by a full audit.
//!
//! * During acceptance: messages are sent over several connections; afterwards every
//!   message that got 250 is in its Maildir exactly once, none is there twice, and no
//!   partial file sits in new/.
//! * During a POP3 QUIT that deletes many messages: each deletion happened or not,
//!   nothing kept was lost, no file is partial or in both new/ and cur/.
//!
//! `TURNMAIL_CRASH_ROUNDS` sets the rounds (tests/long/run runs many);
//! `TURNMAIL_CRASH_SEED` replays a round's random kill points.

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::demo_root;

/// Send messages on one connection until an error; returns the sequence numbers that
/// were acknowledged with 250.
fn sender(
    addr: std::net::SocketAddr,
    thread: usize,
    acked: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    let mut reply = |r: &mut BufReader<TcpStream>| -> std::io::Result<String> {
        loop {
            line.clear();
            if r.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(line.clone());
            }
        }
    };
    reply(&mut r)?;
    w.write_all(b"EHLO crash.example\r\n")?;
    reply(&mut r)?;
    for n in 0..500 {
        let seq = format!("{thread}-{n}");
        w.write_all(
            b"MAIL FROM:<a@example.org>
RCPT TO:<joe@example.com>
DATA
",
        )?;
        for _ in 0..3 {
            reply(&mut r)?;
        }
        let msg = format!(
            "X-Seq: {seq}\r\nSubject: crash\r\n\r\n{}\r\nEND {seq}\r\n.\r\n",
            "x".repeat(3000)
        );
        w.write_all(msg.as_bytes())?;
        let res = reply(&mut r)?;
        if res.starts_with("250") {
            acked.lock().unwrap().push(seq);
        }
    }
    Ok(())
}

#[test]
fn kill_9_during_delivery_loses_nothing_that_was_acknowledged() {
    let mut rng = common::Rng::new("delivery crash rounds");
    for round in 0..common::crash_rounds() {
        let want = rng.range(1, 80) as usize;
        let extra = Duration::from_micros(rng.range(0, 5_000));
        delivery_round(round, want, extra);
    }
}

/// One round: kill the daemon once `want` messages were acknowledged, `extra` later.
fn delivery_round(round: usize, want: usize, extra: Duration) {
    let d = demo_root();
    let mut s = Daemon::start(&d.root);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let a = acked.clone();
            let addr = s.addr;
            std::thread::spawn(move || sender(addr, t, a))
        })
        .collect();
    let start = Instant::now();
    while acked.lock().unwrap().len() < want && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(extra);
    s.kill9();
    for t in threads {
        // Every sender must have been cut off by the kill (not finished normally).
        assert!(t.join().unwrap().is_err());
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= want, "only {} acknowledged", acked.len());

    // The daemon comes back on the same root and keeps working.
    let s2 = Daemon::start(&d.root);
    let (code, out) = common::daemon::tool(
        "swaks",
        &[
            "--server",
            &s2.addr.to_string(),
            "--to",
            "joe@example.com",
            "--header",
            "X-Seq: after",
        ],
    );
    assert_eq!(code, 0, "{out}");

    let new = d.root.join("domains/example.com/joe/Maildir/new");
    let mut seen: HashMap<String, usize> = HashMap::new();
    for e in std::fs::read_dir(&new).unwrap() {
        let f = std::fs::read_to_string(e.unwrap().path()).unwrap();
        let seq = f
            .lines()
            .find_map(|l| l.strip_prefix("X-Seq: "))
            .unwrap_or_else(|| panic!("no X-Seq in {f:?}"))
            .to_string();
        if seq != "after" {
            assert!(
                f.ends_with(&format!("\nEND {seq}\n")),
                "partial file in new/: {seq}"
            );
        }
        *seen.entry(seq).or_default() += 1;
    }
    for seq in &acked {
        assert_eq!(
            seen.get(seq),
            Some(&1),
            "acknowledged message {seq} must be delivered exactly once"
        );
    }
    for (seq, n) in &seen {
        assert_eq!(*n, 1, "{seq} delivered {n} times");
    }
    assert_eq!(seen.get("after"), Some(&1));
    eprintln!(
        "round {round}: killed after {} acknowledged, {} in the Maildir",
        acked.len(),
        seen.len() - 1
    );
}

/// The exact bytes of POP3 crash message `seq`.
fn pop_body(seq: usize) -> String {
    format!(
        "Return-Path: <a@example.org>\nX-Seq: {seq}\n\n{}\nEND {seq}\n",
        "y".repeat(500)
    )
}

/// Put `n` messages into joe's Maildir, a fifth of them already seen (in cur/), all
/// delivered a while ago so that POP3 lists them. The unique name carries the number.
fn fill_maildir(md: &std::path::Path, n: usize) {
    let mu = common::mail_user();
    let then = std::time::SystemTime::now() - Duration::from_secs(3600);
    for seq in 0..n {
        let body = pop_body(seq);
        let unique = format!("1700000000.M{seq}P1Q1.crash,S={}", body.len());
        let path = if seq % 5 == 0 {
            md.join("cur").join(format!("{unique}:2,S"))
        } else {
            md.join("new").join(&unique)
        };
        std::fs::write(&path, &body).unwrap();
        std::os::unix::fs::chown(&path, Some(mu.uid), Some(mu.gid)).unwrap();
        common::set_mtime(&path, then);
    }
}

/// A raw POP3 line reader/writer.
struct Pop {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Pop {
    fn connect(addr: std::net::SocketAddr) -> Pop {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let w = s.try_clone().unwrap();
        let mut p = Pop {
            r: BufReader::new(s),
            w,
        };
        assert!(p.line().unwrap().starts_with("+OK"));
        p
    }

    fn line(&mut self) -> std::io::Result<String> {
        let mut l = String::new();
        if self.r.read_line(&mut l)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(l.trim_end().to_string())
    }

    fn cmd(&mut self, c: &str) -> String {
        self.w.write_all(format!("{c}\r\n").as_bytes()).unwrap();
        self.line().unwrap()
    }

    fn login(&mut self, d: &common::DemoRoot) {
        assert!(
            self.cmd(&format!("USER {}", d.report.login))
                .starts_with("+OK")
        );
        let r = self.cmd(&format!("PASS {}", d.report.password));
        assert!(r.starts_with("+OK"), "{r}");
    }

    /// UIDL: message number → the sequence number in its unique name.
    fn numbers(&mut self) -> Vec<(usize, usize)> {
        assert!(self.cmd("UIDL").starts_with("+OK"));
        let mut out = Vec::new();
        loop {
            let l = self.line().unwrap();
            if l == "." {
                return out;
            }
            let (num, uidl) = l.split_once(' ').unwrap();
            let seq = uidl
                .strip_prefix("1700000000.M")
                .and_then(|u| u.split_once('P'))
                .unwrap()
                .0;
            out.push((num.parse().unwrap(), seq.parse().unwrap()));
        }
    }
}

/// Where each message of joe's Maildir is now: sequence number → paths holding it.
/// Panics on a file that is not one of ours or not complete.
fn audit_maildir(md: &std::path::Path, round: usize) -> HashMap<usize, Vec<String>> {
    let mut at: HashMap<usize, Vec<String>> = HashMap::new();
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(md.join(sub)).unwrap() {
            let e = e.unwrap();
            let name = e.file_name().to_string_lossy().into_owned();
            let f = std::fs::read_to_string(e.path()).unwrap();
            let seq: usize = f
                .lines()
                .find_map(|l| l.strip_prefix("X-Seq: "))
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("round {round}: foreign file {sub}/{name}"));
            assert_eq!(f, pop_body(seq), "round {round}: {sub}/{name} is damaged");
            let unique = name.split(':').next().unwrap_or_default();
            assert!(
                unique.starts_with(&format!("1700000000.M{seq}P")),
                "round {round}: {sub}/{name} holds message {seq}"
            );
            if sub == "cur" {
                assert!(name.ends_with(":2,S"), "round {round}: flags of {name}");
            }
            at.entry(seq).or_default().push(format!("{sub}/{name}"));
        }
    }
    assert_eq!(
        std::fs::read_dir(md.join("tmp")).unwrap().count(),
        0,
        "round {round}: POP3 never writes tmp/"
    );
    at
}

/// One round: a session marks a random half of `n` messages deleted and sends QUIT;
/// the daemon is killed at a random moment while UPDATE runs (or just before or after).
/// The guarantee (src/daemon/pop3_conn.rs): UPDATE unlinks each deleted message, then
/// renames each kept one from new/ to cur/ with `:2,S`; each step is atomic and
/// nothing else is touched, and `+OK` comes only after all of it.
fn pop3_quit_round(rng: &mut common::Rng, round: usize) -> (usize, usize) {
    let n = 600;
    let d = demo_root();
    let md = d.root.join("domains/example.com/joe/Maildir");
    fill_maildir(&md, n);
    let mut s = Daemon::start(&d.root);
    let mut p = Pop::connect(s.pop3);
    p.login(&d);
    let numbers = p.numbers();
    assert_eq!(numbers.len(), n, "round {round}: every message listed");
    let deleted: HashSet<usize> = numbers
        .iter()
        .filter(|_| rng.range(0, 2) == 0)
        .map(|&(_, seq)| seq)
        .collect();
    // Every DELE in one write, then their replies.
    let mut batch = String::new();
    for (num, seq) in &numbers {
        if deleted.contains(seq) {
            batch.push_str(&format!("DELE {num}\r\n"));
        }
    }
    p.w.write_all(batch.as_bytes()).unwrap();
    for _ in 0..deleted.len() {
        assert!(p.line().unwrap().starts_with("+OK"));
    }
    p.w.write_all(b"QUIT\r\n").unwrap();
    std::thread::sleep(Duration::from_micros(rng.range(0, 3_000)));
    s.kill9();
    // The reply, if the daemon sent it before dying.
    p.r.get_ref()
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let quit = p.line().unwrap_or_default();

    let at = audit_maildir(&md, round);
    let mut gone = 0;
    for seq in 0..n {
        let places = at.get(&seq).map_or(&[][..], |v| v.as_slice());
        assert!(
            places.len() <= 1,
            "round {round}: message {seq} is in two places: {places:?}"
        );
        if deleted.contains(&seq) {
            gone += usize::from(places.is_empty());
        } else {
            assert_eq!(places.len(), 1, "round {round}: kept message {seq} lost");
        }
    }
    if quit.starts_with("+OK") {
        assert_eq!(
            gone,
            deleted.len(),
            "round {round}: +OK before every deletion"
        );
        assert!(
            at.values().flatten().all(|p| p.starts_with("cur/")),
            "round {round}: +OK before every kept message was marked seen"
        );
    }
    // The maildrop is usable after the crash and lists exactly what is left.
    let s2 = Daemon::start(&d.root);
    let mut p = Pop::connect(s2.pop3);
    p.login(&d);
    let stat = p.cmd("STAT");
    assert!(
        stat.starts_with(&format!("+OK {} ", n - gone)),
        "round {round}: {stat}"
    );
    assert!(p.cmd("QUIT").starts_with("+OK"));
    eprintln!(
        "round {round}: {gone} of {} deletions applied before the kill{}",
        deleted.len(),
        if quit.is_empty() {
            ""
        } else {
            " (QUIT answered)"
        }
    );
    (gone, deleted.len())
}

#[test]
fn kill_9_during_pop3_quit_applies_each_deletion_fully_or_not_at_all() {
    let mut rng = common::Rng::new("POP3 QUIT crash rounds");
    let (mut none, mut partial, mut all) = (0, 0, 0);
    for round in 0..common::crash_rounds() {
        match pop3_quit_round(&mut rng, round) {
            (0, _) => none += 1,
            (g, d) if g == d => all += 1,
            _ => partial += 1,
        }
    }
    eprintln!("kills before UPDATE: {none}, during: {partial}, after: {all}");
}
