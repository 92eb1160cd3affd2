//! Attacks a public mail host gets, each with the exact reply turnmail gives: relay
//! tricks, command and header injection, path traversal, oversized input, slowloris.
//! (SMTP smuggling: tests/smtp.rs; POP3 brute force: tests/pop3.rs; ETRN floods:
//! tests/triggers.rs; checkpassword abuse: tests/checkpassword.rs.)

mod common;

use std::time::{Duration, Instant};

use common::daemon::{Client, Daemon};
use common::demo_root;

fn session(s: &Daemon) -> Client {
    let mut c = s.connect();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO attacker.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@attacker.example>").starts_with("250"));
    c
}

#[test]
fn open_relay_probes_are_refused() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let mut c = session(&s);
    for (rcpt, want) in [
        (
            "victim@gmail.com",
            "553 5.7.1 <victim@gmail.com>: Relaying denied",
        ),
        (
            "victim@GMAIL.COM",
            "553 5.7.1 <victim@GMAIL.COM>: Relaying denied",
        ),
        (
            "victim@[192.0.2.1]",
            "553 5.7.1 <victim@[192.0.2.1]>: Relaying denied",
        ),
        (
            "@a.example,@b.example:victim@gmail.com",
            "553 5.7.1 <victim@gmail.com>: Relaying denied",
        ),
        ("victim@gmail.com.", "501 5.1.3 Bad address syntax"),
        // Tricks inside one of our domains stay local (and unknown): never relayed.
        (
            "victim%gmail.com@example.com",
            "550 5.1.1 <victim%gmail.com@example.com>: Mailbox unavailable",
        ),
        (
            "\"victim@gmail.com\"@example.com",
            "550 5.1.1 <\"victim@gmail.com\"@example.com>: Mailbox unavailable",
        ),
        (
            "gmail.com!victim@example.com",
            "550 5.1.1 <gmail.com!victim@example.com>: Mailbox unavailable",
        ),
        (
            "victim@sub.example.com",
            "553 5.7.1 <victim@sub.example.com>: Relaying denied",
        ),
    ] {
        assert_eq!(c.cmd(&format!("RCPT TO:<{rcpt}>")), want, "{rcpt}");
    }
    // The one address without a domain every server must take (RFC 5321 4.5.1).
    assert_eq!(c.cmd("RCPT TO:<Postmaster>"), "250 2.1.5 Ok");
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(
        c.cmd("Subject: hi\r\n\r\nto the postmaster\r\n.")
            .starts_with("250")
    );
}

#[test]
fn injection_and_traversal_are_refused() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let mut c = session(&s);
    for (cmd, want) in [
        (
            "RCPT TO:<a@example.com>\rDATA",
            "501 5.5.4 Syntax: RCPT TO:<address>",
        ),
        (
            "RCPT TO:<joe@example.com\0x>",
            "501 5.1.3 Bad address syntax",
        ),
        (
            "RCPT TO:<../../etc/passwd@example.com>",
            "501 5.1.3 Bad address syntax",
        ),
        (
            "RCPT TO:<joe@example.com> NOTIFY=NEVER",
            "555 5.5.4 Unsupported parameter NOTIFY=NEVER",
        ),
        ("HELO a\0b", "501 5.5.4 Control characters in command"),
    ] {
        assert_eq!(c.cmd(cmd), want, "{cmd:?}");
    }
    assert_eq!(c.cmd("RSET"), "250 2.0.0 Ok");
    assert_eq!(
        c.cmd("ETRN #../../etc"),
        "501 5.5.4 Syntax Error in Parameters"
    );
    assert_eq!(c.cmd("ETRN @"), "501 5.5.4 Syntax: ETRN [@|#]node");
    // Site names from the command line never leave the site list.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["flush", "../../etc"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no site named"));
    // POP3 logins with path bytes are plain authentication failures.
    let mut p = Client::connect(s.pop3);
    assert!(p.reply().starts_with("+OK"));
    assert_eq!(p.cmd("USER ../../etc/passwd"), "+OK Send PASS");
    assert_eq!(p.cmd("PASS x"), "-ERR [AUTH] Authentication failed.");
}

#[test]
fn oversized_input_gets_protocol_errors_not_memory() {
    let d = demo_root();
    common::config(&d, "[limits]\nmax_message_size = 20000\n");
    let s = Daemon::start(&d.root);
    let mut c = session(&s);
    assert_eq!(
        c.cmd(&format!("NOOP {}", "x".repeat(100_000))),
        "500 5.5.2 Line too long"
    );
    assert!(c.cmd("RCPT TO:<joe@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    // A header line of 200 KiB and a body far over the size limit.
    c.send(format!("X-Big: {}\r\n\r\n", "h".repeat(200_000)).as_bytes());
    for _ in 0..50 {
        c.send(&[b'b'; 10_000]);
        c.send(b"\r\n");
    }
    let r = c.cmd(".");
    assert!(
        r.starts_with("552 5.3.4") || r.starts_with("554 5.6.0"),
        "{r}"
    );
    // The connection is still usable afterwards.
    assert_eq!(c.cmd("NOOP"), "250 2.0.0 Ok");
}

#[test]
fn slowloris_connections_are_dropped_and_others_served() {
    let d = demo_root();
    common::config(&d, "[limits]\nidle_timeout_secs = 2\n");
    let s = Daemon::start(&d.root);
    let mut slow: Vec<Client> = (0..20).map(|_| s.connect()).collect();
    for c in &mut slow {
        assert!(c.reply().starts_with("220"));
        c.send(b"EH");
    }
    // Meanwhile a normal client is served at once.
    let t = Instant::now();
    let (code, out) = common::daemon::tool(
        "swaks",
        &["--server", &s.addr.to_string(), "--to", "joe@example.com"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(t.elapsed() < Duration::from_secs(2));
    for c in &mut slow {
        assert_eq!(c.reply(), "421 4.4.2 Idle timeout, closing connection");
        assert!(c.closed());
    }
}
