//! Slow clients (slowloris): a byte at a time, a crawling message, a session that never
//! ends, a reader that takes a message at a trickle. Each must end at its deadline
//! (`policy/deadline.rs`) on every listener, however the bytes are spaced.

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::daemon::{Client, Daemon};
use common::demo_root;

/// Send `bytes` one at a time, `gap` apart, until the server closes; how long that took.
fn drip(c: &mut Client, bytes: &[u8], gap: Duration) -> Duration {
    let t = Instant::now();
    for b in bytes.iter().cycle() {
        if c.w.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(gap);
        if t.elapsed() > Duration::from_secs(20) {
            panic!("still open after 20 s");
        }
        // The server's reply (421) or EOF means it gave up.
        let mut probe = [0u8; 256];
        c.w.set_nonblocking(true).unwrap();
        let r = c.w.peek(&mut probe);
        c.w.set_nonblocking(false).unwrap();
        if matches!(r, Ok(n) if n > 0) || matches!(r, Ok(0)) {
            break;
        }
    }
    t.elapsed()
}

/// What the server said last before closing.
fn rest(c: &mut Client) -> String {
    let mut s = String::new();
    let _ = c.r.read_to_string(&mut s);
    s
}

fn start(extra: &str) -> (common::DemoRoot, Daemon) {
    let d = demo_root();
    common::config(&d, extra);
    let s = Daemon::start(&d.root);
    (d, s)
}

const DEADLINES: &str = "[limits]\nidle_timeout_secs = 5\nline_deadline_secs = 1\nmin_transfer_rate = 1000\ntransfer_grace_secs = 1\n[pop3]\nidle_timeout_secs = 5\n[odmr]\nidle_timeout_secs = 5\n";

#[test]
fn smtp_a_command_line_a_byte_at_a_time_ends_at_the_line_deadline() {
    let (_d, s) = start(DEADLINES);
    let mut c = s.connect();
    assert!(c.reply().starts_with("220"));
    // A byte every 200 ms: far within the 5 s idle limit each time.
    let took = drip(&mut c, b"EHLO slow.example.com", Duration::from_millis(200));
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(rest(&mut c).starts_with("421"));
    assert!(
        s.log_text().contains("a command line took too long"),
        "{}",
        s.log_text()
    );
}

#[test]
fn smtp_message_data_below_the_minimum_rate_is_cut_off() {
    let (_d, s) = start(DEADLINES);
    let mut c = s.connect();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO slow.example.com").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@slow.example.com>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<joe@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    // 50 bytes a second against a minimum of 1,000 after 1 s of grace.
    let took = drip(
        &mut c,
        b"Subject: x\r\n\r\nslow\r\n",
        Duration::from_millis(20),
    );
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(rest(&mut c).starts_with("421"));
    assert!(
        s.log_text().contains("message data arrived too slowly"),
        "{}",
        s.log_text()
    );
    // Nothing of it was delivered.
    let new = _d.root.join("domains/example.com/joe/Maildir/new");
    assert_eq!(std::fs::read_dir(new).unwrap().count(), 0);
}

#[test]
fn smtp_a_fast_message_within_the_rate_is_delivered() {
    let (_d, s) = start(DEADLINES);
    let mut c = s.connect();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO fast.example.com").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@fast.example.com>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<joe@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    // Half a second of thought within the grace, then the rest at once.
    std::thread::sleep(Duration::from_millis(500));
    let body = "x".repeat(70) + "\r\n";
    c.send(body.repeat(2000).as_bytes());
    assert!(c.cmd(".").starts_with("250"));
}

#[test]
fn smtp_a_session_ends_at_its_deadline_however_busy() {
    let (_d, s) = start("[limits]\nsession_deadline_secs = 2\n");
    let mut c = s.connect();
    assert!(c.reply().starts_with("220"));
    let t = Instant::now();
    let last = loop {
        c.send(b"NOOP\r\n");
        let r = c.reply();
        if !r.starts_with("250") {
            break r;
        }
        std::thread::sleep(Duration::from_millis(200));
        assert!(t.elapsed() < Duration::from_secs(10), "never ended");
    };
    assert!(last.starts_with("421"), "{last}");
    assert!(
        t.elapsed() >= Duration::from_millis(1800),
        "{:?}",
        t.elapsed()
    );
    assert!(s.log_text().contains("the session lasted too long"));
}

#[test]
fn pop3_and_odmr_command_lines_have_the_same_deadline() {
    let (_d, s) = start(DEADLINES);
    for (addr, greeting) in [(s.pop3, "+OK"), (s.odmr, "220")] {
        let mut c = Client::connect(addr);
        assert!(c.reply().starts_with(greeting));
        let took = drip(
            &mut c,
            b"USER someone@example.com",
            Duration::from_millis(200),
        );
        assert!(took < Duration::from_secs(3), "{addr}: {took:?}");
    }
    let log = s.log_text();
    assert_eq!(
        log.matches("a command line took too long").count(),
        2,
        "{log}"
    );
}

#[test]
fn pop3_a_reader_slower_than_the_minimum_rate_is_dropped() {
    let d = demo_root();
    common::config(
        &d,
        "[limits]\nmin_transfer_rate = 10000000\ntransfer_grace_secs = 1\n",
    );
    // One large message in joe's Maildir: far more than socket buffers hold.
    let new = d.root.join("domains/example.com/joe/Maildir/new");
    let line = "y".repeat(999) + "\n";
    let body = format!("Subject: big\n\n{}", line.repeat(40_000));
    let f = new.join("1700000000.M1P1.test");
    std::fs::write(&f, &body).unwrap();
    common::set_mtime(&f, std::time::SystemTime::now() - Duration::from_secs(60));
    if common::is_root() {
        let mu = common::mail_user();
        std::os::unix::fs::chown(&f, Some(mu.uid), Some(mu.gid)).unwrap();
    }
    let s = Daemon::start(&d.root);
    let mut c = Client::connect(s.pop3);
    assert!(c.reply().starts_with("+OK"));
    assert!(c.cmd("USER joe@example.com").starts_with("+OK"));
    assert!(
        c.cmd(&format!("PASS {}", d.report.password))
            .starts_with("+OK")
    );
    c.send(b"RETR 1\r\n");
    // Read nothing for a while: the server cannot keep up its pace.
    std::thread::sleep(Duration::from_secs(4));
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let t = Instant::now();
    loop {
        match c.r.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "got {got}: {}",
            s.log_text()
        );
    }
    assert!(got < body.len(), "got the whole message ({got} bytes)");
    assert!(
        s.log_text().contains("took the message too slowly"),
        "{}",
        s.log_text()
    );
    // Nothing changed in the Maildir.
    assert!(f.exists());
    let _: SocketAddr = s.pop3;
}

#[test]
fn smtp_the_session_deadline_counts_across_starttls() {
    let (_d, s) = start("[limits]\nsession_deadline_secs = 3\n");
    // Python's smtplib: STARTTLS after 2 s, then NOOPs until the server gives up.
    let script = r#"
import smtplib, ssl, sys, time
t0 = time.time()
c = smtplib.SMTP(sys.argv[1], int(sys.argv[2]), timeout=20)
c.ehlo()
time.sleep(2)
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
c.starttls(context=ctx)
c.ehlo()
try:
    while time.time() - t0 < 15:
        code, _ = c.noop()
        if code != 250:
            break
        time.sleep(0.2)
except smtplib.SMTPServerDisconnected:
    pass
print(round(time.time() - t0, 1))
"#;
    let o = std::process::Command::new("python3")
        .args(["-c", script, "127.0.0.1", &s.addr.port().to_string()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let secs: f64 = out
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("{out} {}", String::from_utf8_lossy(&o.stderr)));
    // 3 s from connecting, not 3 s from the handshake (that would be 5).
    assert!((2.5..4.5).contains(&secs), "ended after {secs} s");
    assert!(s.log_text().contains("the session lasted too long"));
}
