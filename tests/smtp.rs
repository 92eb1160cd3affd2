//! `turnmail serve` over real sockets, with a raw client for exact conversations and
//! the real peers swaks and Python's smtplib.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use common::daemon::{Client, Daemon, tool};
use common::{DemoRoot, demo_root, write};

fn maildir_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn joe_new(d: &DemoRoot) -> Vec<Vec<u8>> {
    maildir_files(&d.root.join("domains/example.com/joe/Maildir/new"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A .qmail file as delivery requires (mode 0600, owned by the mail user).
fn dotqmail(d: &DemoRoot, name: &str, content: &str) {
    let p = d.root.join("domains/example.com").join(name);
    write(&p, content);
    std::fs::set_permissions(&p, PermissionsExt::from_mode(0o600)).unwrap();
    if nix::unistd::Uid::effective().is_root() {
        let mu = common::mail_user();
        std::os::unix::fs::chown(&p, Some(mu.uid), Some(mu.gid)).unwrap();
    }
}

fn hello(c: &mut Client) {
    assert!(c.reply().starts_with("220 "));
    let ehlo = c.cmd("EHLO client.example");
    assert!(ehlo.starts_with("250-"), "{ehlo}");
}

#[test]
fn swaks_delivers_to_a_pop_user() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let (code, out) = tool(
        "swaks",
        &[
            "--server",
            &s.addr.to_string(),
            "--from",
            "bob@example.org",
            "--to",
            "joe@example.com",
            "--body",
            "hello joe",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    let files = joe_new(&d);
    assert_eq!(files.len(), 1);
    let f = text(&files[0]);
    assert!(f.starts_with("Return-Path: <bob@example.org>\nDelivered-To: example.com-joe@example.com\nReceived: from "), "{f}");
    assert!(
        f.contains("by mail.example.com (turnmail) with ESMTP id"),
        "{f}"
    );
    assert!(f.contains("\n\nhello joe\n"), "{f}");
    assert!(!f.contains('\r'));
}

#[test]
fn site_spool_is_qmail_local_format_byte_for_byte() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    hello(&mut c);
    assert!(c.cmd("MAIL FROM:<bob@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<Anyone@Acme.Example>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd("Subject: x\r\n\r\n..dot-stuffed\r\nbody\r\n.");
    assert!(r.starts_with("250 2.0.0"), "{r}");
    let files = maildir_files(&d.root.join("sites/acme/Maildir/new"));
    assert_eq!(files.len(), 1);
    let f = text(&files[0]);
    assert!(f.starts_with("Return-Path: <bob@example.org>\nDelivered-To: site-acme-Anyone@Acme.Example\nReceived: "), "{f}");
    assert!(f.contains("Received: from client.example ([127.0.0.1])\n\tby mail.example.com (turnmail) with ESMTP id "), "{f}");
    assert!(
        f.ends_with(" +0000\nSubject: x\n\n.dot-stuffed\nbody\n"),
        "{f}"
    );
}

#[test]
fn refusals_at_rcpt_time() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    hello(&mut c);
    assert!(c.cmd("MAIL FROM:<spammer@example.net>").starts_with("250"));
    assert_eq!(
        c.cmd("RCPT TO:<victim@gmail.com>"),
        "553 5.7.1 <victim@gmail.com>: Relaying denied"
    );
    assert_eq!(
        c.cmd("RCPT TO:<nobody@example.com>"),
        "550 5.1.1 <nobody@example.com>: Mailbox unavailable"
    );
    assert_eq!(
        c.cmd("RCPT TO:<victim%gmail.com@example.com>"),
        "550 5.1.1 <victim%gmail.com@example.com>: Mailbox unavailable"
    );
    assert_eq!(
        c.cmd("RCPT TO:<@relay.example:victim@gmail.com>"),
        "553 5.7.1 <victim@gmail.com>: Relaying denied"
    );
    assert_eq!(c.cmd("DATA"), "554 5.5.1 No valid recipients");
    // A broken mailbox is a temporary failure with no internals in the reply.
    std::fs::set_permissions(
        d.root.join("domains/example.com"),
        PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let r = c.cmd("RCPT TO:<joe@example.com>");
    assert!(r.starts_with("451 4.3.0"), "{r}");
    assert!(!r.contains("/"), "{r}");
    // And the relay probe through swaks, the way an operator would check.
    let (code, out) = tool(
        "swaks",
        &[
            "--server",
            &s.addr.to_string(),
            "--to",
            "victim@gmail.com",
            "--quit-after",
            "RCPT",
        ],
    );
    assert_ne!(code, 0);
    assert!(out.contains("553 5.7.1"), "{out}");
}

#[test]
fn pipelined_transaction_in_one_write() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    hello(&mut c);
    c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<joe@example.com>\r\nRCPT TO:<nobody@example.com>\r\nRCPT TO:<x@gmail.com>\r\nRCPT TO:<postmaster@example.com>\r\nDATA\r\n");
    assert!(c.reply().starts_with("250 2.1.0"));
    assert!(c.reply().starts_with("250 2.1.5"));
    assert!(c.reply().starts_with("550 5.1.1"));
    assert!(c.reply().starts_with("553 5.7.1"));
    assert!(c.reply().starts_with("250 2.1.5"));
    assert!(c.reply().starts_with("354"));
    c.send(b"Subject: pipelined\r\n\r\nx\r\n.\r\nMAIL FROM:<b@example.org>\r\nRCPT TO:<joe@example.com>\r\nDATA\r\n");
    assert!(c.reply().starts_with("250 2.0.0"));
    assert!(c.reply().starts_with("250 2.1.0"));
    assert!(c.reply().starts_with("250 2.1.5"));
    assert!(c.reply().starts_with("354"));
    c.send(b"Subject: second\r\n\r\ny\r\n.\r\nQUIT\r\n");
    assert!(c.reply().starts_with("250 2.0.0"));
    assert!(c.reply().starts_with("221"));
    // joe got two messages, and postmaster (the same Maildir) one more.
    assert_eq!(joe_new(&d).len(), 3);
}

#[test]
fn bdat_chunks() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    hello(&mut c);
    c.send(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<joe@example.com>\r\nBDAT 14\r\nSubject: b\r\n\r\nBDAT 7 LAST\r\nchunk\r\n");
    assert!(c.reply().starts_with("250"));
    assert!(c.reply().starts_with("250"));
    assert_eq!(c.reply(), "250 2.0.0 14 octets received");
    assert!(c.reply().starts_with("250 2.0.0 Ok: queued"));
    let f = text(&joe_new(&d)[0]);
    assert!(f.ends_with("\nSubject: b\n\nchunk\n"), "{f}");
}

#[test]
fn starttls_with_swaks() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let (code, out) = tool(
        "swaks",
        &[
            "--server",
            &s.addr.to_string(),
            "--tls",
            "--to",
            "joe@example.com",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("TLS started"), "{out}");
    let f = text(&joe_new(&d)[0]);
    assert!(f.contains("with ESMTPS id"), "{f}");
    // Commands pipelined behind STARTTLS in the same packet are discarded.
    let mut c = s.connect();
    hello(&mut c);
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.org>\r\n");
    assert!(c.reply().starts_with("220 2.0.0"));
}

#[test]
fn limits_on_size_and_lines() {
    let d = demo_root();
    common::config(
        &d,
        "[limits]\nmax_message_size = 10000\nmax_line_length = 1000\n",
    );
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    let ehlo = {
        assert!(c.reply().starts_with("220"));
        c.cmd("EHLO x")
    };
    assert!(ehlo.contains("SIZE 10000"), "{ehlo}");
    assert_eq!(
        c.cmd("MAIL FROM:<a@example.org> SIZE=20000"),
        "552 5.3.4 Message size exceeds fixed maximum message size"
    );
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<joe@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let big = "x".repeat(70) + "\r\n";
    c.send(big.repeat(200).as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("552 5.3.4"), "{r}");
    // An over-long command line.
    let r = c.cmd(&format!("NOOP {}", "a".repeat(600)));
    assert!(r.starts_with("500 5.5.2"), "{r}");
    // An over-long text line.
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<joe@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("{}\r\n", "y".repeat(2000)).as_bytes());
    let r = c.cmd(".");
    assert!(r.starts_with("554 5.6.0"), "{r}");
    assert!(joe_new(&d).is_empty());
}

#[test]
fn smuggling_and_bare_line_ends_are_refused() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    hello(&mut c);
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<joe@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    // A bare "\n.\n" must not end the message, and the smuggled MAIL must not run.
    c.send(b"Subject: s\r\n\r\nhello\n.\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<postmaster@example.com>\r\nDATA\r\nsmuggled\r\n.\r\n");
    assert_eq!(c.reply(), "550 5.6.11 Message contains bare CR or LF");
    assert!(c.cmd("NOOP").starts_with("250"));
    assert!(joe_new(&d).is_empty());
}

#[test]
fn nul_and_8bit_bytes_pass_unchanged() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let script = format!(
        "import smtplib\ns = smtplib.SMTP('127.0.0.1', {})\ns.sendmail('a@example.org', ['joe@example.com'], b'Subject: 8bit\\r\\n\\r\\n\\xc3\\xa9t\\xc3\\xa9 \\x00nul\\r\\n', mail_options=['BODY=8BITMIME'])\ns.quit()\n",
        s.addr.port()
    );
    let (code, out) = tool("python3", &["-c", &script]);
    assert_eq!(code, 0, "{out}");
    let f = &joe_new(&d)[0];
    assert!(
        f.ends_with("\n\n\u{e9}t\u{e9} \0nul\n".as_bytes()),
        "{:?}",
        text(f)
    );
}

#[test]
fn loops_and_hop_counts() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let send = |c: &mut Client, body: &str| -> String {
        assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
        assert!(c.cmd("RCPT TO:<joe@example.com>").starts_with("250"));
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(body.as_bytes());
        c.cmd(".")
    };
    let mut c = s.connect();
    hello(&mut c);
    let r = send(
        &mut c,
        "Delivered-To: example.com-joe@example.com\r\nSubject: loop\r\n\r\nx\r\n",
    );
    assert!(r.starts_with("554"), "{r}");
    assert!(r.contains("looping"), "{r}");
    let hops = |n: usize| "Received: from a by b\r\n".repeat(n) + "Subject: hops\r\n\r\nx\r\n";
    // We add our own Received line: 98 + ours = 99 is still fine, 100 is a loop.
    assert!(send(&mut c, &hops(98)).starts_with("250"));
    let r = send(&mut c, &hops(100));
    assert!(r.starts_with("554 5.4.6"), "{r}");
    assert_eq!(joe_new(&d).len(), 1);
}

#[test]
fn forward_program_and_mbox_through_smtp() {
    let d = demo_root();
    dotqmail(
        &d,
        ".qmail-multi",
        "./multi.mbox\n|cat > prog.out\n&elsewhere@example.org\n",
    );
    let s = Daemon::start(&d.root);
    let (code, out) = tool(
        "swaks",
        &[
            "--server",
            &s.addr.to_string(),
            "--from",
            "bob@example.org",
            "--to",
            "multi@example.com",
            "--body",
            "all three",
        ],
    );
    assert_eq!(code, 0, "{out}");
    let home = d.root.join("domains/example.com");
    assert!(
        std::fs::read_to_string(home.join("multi.mbox"))
            .unwrap()
            .contains("all three")
    );
    assert!(
        std::fs::read_to_string(home.join("prog.out"))
            .unwrap()
            .contains("all three")
    );
    let q = maildir_files(&d.root.join("queue/new"));
    assert_eq!(q.len(), 1);
    assert!(text(&q[0]).starts_with("Return-Path: <bob@example.org>\nDelivered-To: elsewhere@example.org\nDelivered-To: example.com-multi@example.com\n"));
}

#[test]
fn partial_failures_queue_the_rest_and_bounce() {
    let d = demo_root();
    dotqmail(&d, ".qmail-later", "|exit 111\n");
    dotqmail(&d, ".qmail-never", "|exit 100\n");
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    hello(&mut c);
    // All recipients fail temporarily: 451 and nothing kept.
    assert!(c.cmd("MAIL FROM:<bob@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<later@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(c.cmd("Subject: t\r\n\r\nx\r\n.").starts_with("451 4.3.0"));
    assert!(maildir_files(&d.root.join("queue/new")).is_empty());
    // Mixed: joe delivered, `later` queued for retry, `never` bounced: 250.
    assert!(c.cmd("MAIL FROM:<bob@example.org>").starts_with("250"));
    for r in ["joe", "later", "never"] {
        assert!(
            c.cmd(&format!("RCPT TO:<{r}@example.com>"))
                .starts_with("250")
        );
    }
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(c.cmd("Subject: t\r\n\r\nx\r\n.").starts_with("250 2.0.0"));
    assert_eq!(joe_new(&d).len(), 1);
    let q: Vec<String> = maildir_files(&d.root.join("queue/new"))
        .iter()
        .map(|f| text(f))
        .collect();
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(q.iter().any(|f| {
        f.starts_with("Return-Path: <bob@example.org>\nDelivered-To: later@example.com\n")
    }));
    let bounce = q
        .iter()
        .find(|f| f.starts_with("Return-Path: <>\nDelivered-To: bob@example.org\n"))
        .expect("a bounce");
    assert!(
        bounce.contains("Final-Recipient: rfc822; never@example.com"),
        "{bounce}"
    );
    // All fail permanently: 554 and no bounce (no backscatter).
    assert!(c.cmd("MAIL FROM:<bob@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<never@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(c.cmd("Subject: t\r\n\r\nx\r\n.").starts_with("554"));
    assert_eq!(maildir_files(&d.root.join("queue/new")).len(), 2);
}

#[test]
fn edits_are_picked_up_without_a_restart() {
    let d = demo_root();
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    hello(&mut c);
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<joe@new.example>").starts_with("553"));
    write(
        &d.root.join("control/rcpthosts"),
        "example.com\nacme.example\nnew.example\n",
    );
    write(
        &d.root.join("control/virtualdomains"),
        "example.com:example.com\nacme.example:site-acme\nnew.example:example.com\n",
    );
    common::accounts_changed(&d);
    // The daemon checks its files once a second (or hears of the database's commit);
    // allow a loaded machine some slack.
    let start = std::time::Instant::now();
    loop {
        let r = c.cmd("RCPT TO:<joe@new.example>");
        if r.starts_with("250") {
            break;
        }
        assert!(r.starts_with("553"), "{r}");
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "edit not picked up: {r}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn connection_limits_and_graceful_shutdown() {
    let d = demo_root();
    common::config(&d, "[limits]\nmax_connections_per_ip = 2\n");
    let mut s = Daemon::start(&d.root);
    let mut a = s.connect();
    let mut b = s.connect();
    assert!(a.reply().starts_with("220"));
    assert!(b.reply().starts_with("220"));
    let mut c = s.connect();
    assert!(c.reply().starts_with("421 4.7.0"));
    assert!(c.closed());
    drop(b);
    // SIGTERM with a session open: the daemon waits for it (bounded) and exits.
    assert!(a.cmd("EHLO x").starts_with("250"));
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        a.cmd("QUIT")
    });
    let took = s.terminate();
    assert!(took < Duration::from_secs(25), "{took:?}");
    assert!(t.join().unwrap().starts_with("221"));
}
