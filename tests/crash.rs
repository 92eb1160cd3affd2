//! Crash safety of acceptance: messages are sent over several connections while the
//! daemon is killed with SIGKILL; afterwards every message that got 250 is in its
//! Maildir exactly once, none is there twice, and no partial file sits in new/.

mod common;

use std::collections::HashMap;
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
    while acked.lock().unwrap().len() < 60 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.kill9();
    for t in threads {
        // Every sender must have been cut off by the kill (not finished normally).
        assert!(t.join().unwrap().is_err());
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 60, "only {} acknowledged", acked.len());

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
}
