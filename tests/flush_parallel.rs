//! A site flushed over several connections at once (site.toml `connections`), for
//! sites whose server does not offer PIPELINING: one lock, one walk of the spool
//! handing each message to one connection, each message settled on its own reply.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::demo_root;
use common::sink::{Script, Sink};
use common::spool::*;

/// Exit code of `setlock -n` on the site's RELAYHOST: 111 while a flush holds it.
fn setlock_code(d: &common::DemoRoot) -> Option<i32> {
    Command::new("setlock")
        .arg("-n")
        .arg(d.root.join("sites/acme/RELAYHOST"))
        .arg("true")
        .stderr(Stdio::null())
        .status()
        .expect("setlock (daemontools)")
        .code()
}

#[test]
fn four_connections_share_one_walk_one_lock_and_settle_each_message_on_its_reply() {
    let d = demo_root();
    let n = 40;
    let mut script = Script {
        delay: Duration::from_millis(15),
        ..Script::default()
    };
    script
        .rcpt_reply
        .insert("m3@acme.example".into(), "550 5.1.1 no such user".into());
    script
        .data_reply
        .insert("m5@acme.example".into(), "451 4.3.0 try later".into());
    let sink = Sink::start(script);
    site_toml(&d, "connections = 4\n");
    for i in 0..n {
        spooled(
            &d,
            "bob@example.org",
            &format!("m{i}@acme.example"),
            &format!("Subject: {i}\n\nbody {i}\n"),
            Duration::ZERO,
        );
    }
    let child = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["flush", "acme", "--to", &sink.addr.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While it runs: the RELAYHOST lock is held throughout, and a file leaves the
    // spool only after the site took it (the spool counted first, then the site).
    let start = Instant::now();
    let mut samples = 0;
    let mut lock_seen = false;
    while sink.messages().len() < n - 2 && start.elapsed() < Duration::from_secs(30) {
        let spooled_now = left(&d);
        let accepted = sink.messages().len();
        // m3 is unlinked on its 550 (bounced); nothing else before its 250.
        assert!(
            n - spooled_now <= accepted + 1,
            "{} files gone, {accepted} accepted",
            n - spooled_now
        );
        if accepted > 0 && accepted < n - 4 {
            lock_seen |= setlock_code(&d) == Some(111);
            samples += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().unwrap();
    let out = stdout(&o);
    assert!(samples > 0 && lock_seen, "the flush held the lock: {out}");
    assert_eq!(o.status.code(), Some(111), "one kept: {out}");
    assert!(out.contains("38 delivered, 1 bounced, 1 kept"), "{out}");
    // Every message once, spread over the four connections.
    let got = sink.messages();
    let mut by_conn: HashMap<usize, usize> = HashMap::new();
    let mut seen = std::collections::HashSet::new();
    for m in &got {
        assert!(seen.insert(m.to.clone()), "{} twice", m.to);
        *by_conn.entry(m.connection).or_default() += 1;
    }
    assert_eq!(got.len(), n - 2);
    assert_eq!(sink.connections.load(Ordering::SeqCst), 4);
    assert_eq!(by_conn.len(), 4, "{by_conn:?}");
    assert!(by_conn.values().all(|&c| c >= 3), "{by_conn:?}");
    // The 451 stays in the spool, the 550 bounced to the sender; the lock is free.
    assert_eq!(left(&d), 1);
    assert_eq!(queue_files(&d).len(), 1);
    assert!(queue_files(&d)[0].contains("bob@example.org"));
    assert_eq!(setlock_code(&d), Some(0));
}

#[test]
fn a_site_allowing_fewer_connections_still_gets_everything() {
    let d = demo_root();
    let sink = Sink::start(Script {
        max_connections: Some(2),
        delay: Duration::from_millis(5),
        ..Script::default()
    });
    site_toml(&d, "connections = 6\n");
    for i in 0..30 {
        spooled(
            &d,
            "bob@example.org",
            &format!("m{i}@acme.example"),
            "Subject: x\n\nx\n",
            Duration::ZERO,
        );
    }
    let o = flush(&d, &["acme", "--to", &sink.addr.to_string()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("30 delivered, 0 bounced, 0 kept"), "{out}");
    assert_eq!(sink.messages().len(), 30);
    assert_eq!(sink.connections.load(Ordering::SeqCst), 6);
    assert_eq!(left(&d), 0);
}

#[test]
fn never_more_connections_than_messages_and_a_bad_count_is_refused() {
    let d = demo_root();
    let sink = Sink::start(Script::default());
    site_toml(&d, "connections = 8\n");
    for i in 0..2 {
        spooled(
            &d,
            "bob@example.org",
            &format!("m{i}@acme.example"),
            "Subject: x\n\nx\n",
            Duration::ZERO,
        );
    }
    let o = flush(&d, &["acme", "--to", &sink.addr.to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert_eq!(sink.connections.load(Ordering::SeqCst), 2);
    site_toml(&d, "connections = 0\n");
    let o = flush(&d, &["acme", "--to", &sink.addr.to_string()]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stdout(&o).contains("connections = 0"), "{}", stdout(&o));
}

#[test]
fn kill_9_during_a_parallel_flush_repeats_at_most_one_per_connection() {
    let mut rng = common::Rng::new("parallel flush crash rounds");
    for round in 0..common::crash_rounds() {
        crash_round(&mut rng, round, 3);
    }
}
