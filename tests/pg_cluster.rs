//! Nodes on one root and one PostgreSQL database: the database's advisory locks as the
//! senders' second lock (a lock held by another session keeps a site's flush and the
//! queue from running although the flocks are free; a database that is down sends
//! nothing and says why), and three `turnmail serve` nodes sharing the accounts, the
//! mail and the locks (edits seen at once, mail landing and leaving once, an outage
//! giving temporary failures everywhere and nothing lost).

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::daemon::Daemon;
use common::pg::Pg;
use common::sink::{Script, Sink};
use common::{DemoRoot, turnmail};

/// The key turnmail documents for a sender's lock (`db/advisory.rs`): "tm" in the top
/// 16 bits, FNV-1a 64 of `site:NAME` or `queue` folded to the low 48.
fn sender_key(what: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in what.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    ((0x746d_u64 << 48) | ((h ^ (h >> 48)) & 0xffff_ffff_ffff)) as i64
}

/// A demo root with `extra` settings whose accounts live in a fresh database (the
/// cdbs removed), and its server. None when no PostgreSQL server is installed (a
/// failure under CI).
fn pg_root(extra: &str) -> Option<(DemoRoot, Pg)> {
    let mut d = common::pg_demo_root(extra, "max_stale_secs = 2\n")?;
    for cdb in ["users/cdb", "users/poppasswd.cdb"] {
        std::fs::remove_file(d.root.join(cdb)).unwrap();
    }
    let pg = d.pg.take()?;
    Some((d, pg))
}

/// The sites' files as set up on disk into the database, where the postgres backend
/// reads sites from (the RELAYHOST file is only the lock there).
fn sites_to_db(d: &DemoRoot) {
    let o = turnmail(&d.root, &["db", "import", "--replace"]);
    assert!(o.status.success(), "db import: {o:?}");
}

/// Whether `flock -n` (util-linux) gets the RELAYHOST lock at once.
fn relayhost_flock_free(d: &DemoRoot) -> bool {
    let o = Command::new("flock")
        .arg("-n")
        .arg(d.root.join("sites/acme/RELAYHOST"))
        .arg("true")
        .output()
        .expect("flock(1)");
    o.status.success()
}

const NEVER: &str = "[flush]\nschedule = \"0 0 1 1 *\"\n";

#[test]
fn a_site_whose_database_lock_is_held_elsewhere_is_not_flushed_until_released() {
    let Some((d, pg)) = pg_root(NEVER) else {
        return;
    };
    let sink = Sink::start(Script::default());
    site_setup(&d, &sink, "");
    sites_to_db(&d);
    spool_n(&d, 5);
    let held = pg.hold_advisory_lock(sender_key("site:acme"));
    assert!(relayhost_flock_free(&d), "the flock is not what refuses");

    // The operator's one-shot flush (no daemon running).
    let o = turnmail(&d.root, &["flush", "acme"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("another flush holds the lock"), "{o:?}");
    assert_eq!(o.status.code(), Some(111));

    // The daemon: ETRN is told a flush runs, the operator asking it too.
    let daemon = Daemon::start(&d.root);
    let r = etrn(&daemon);
    assert!(r.starts_with("252"), "ETRN while the lock is held: {r}");
    let o = turnmail(&d.root, &["flush", "acme"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("another flush holds the lock"), "{o:?}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(sink.messages().is_empty(), "sent while the lock was held");
    assert_eq!(spooled(&d), 5);

    drop(held);
    assert!(!pg.advisory_lock_held(sender_key("site:acme")));
    let r = etrn(&daemon);
    assert!(r.starts_with("253"), "ETRN once released: {r}");
    wait_for("the flush", Duration::from_secs(30), || spooled(&d) == 0);
    std::thread::sleep(Duration::from_millis(500));
    each_once(&sink, 5);
    // The lock went back with the flush.
    assert!(!pg.advisory_lock_held(sender_key("site:acme")));
}

#[test]
fn queued_mail_waits_while_the_queues_database_lock_is_held_elsewhere() {
    let Some((d, pg)) = pg_root("") else { return };
    let sink = Sink::start(Script::default());
    relay_setup(&d, &sink);
    let held = pg.hold_advisory_lock(sender_key("queue"));
    let daemon = Daemon::start(&d.root);
    let ids: Vec<String> = (0..3).map(|i| format!("q{i}@pglock.test")).collect();
    send_all(daemon.addr, "joe@example.com", "out@remote.example", &ids);
    assert_eq!(queued(&d), 3);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        sink.messages().is_empty(),
        "the queue ran under a held lock"
    );
    assert_eq!(queued(&d), 3, "the queue is left as it was");
    // The operator's commands wait for it too.
    let id = std::fs::read_dir(d.root.join("queue/new"))
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .file_name();
    let o = turnmail(&d.root, &["queue", "delete", id.to_str().unwrap()]);
    assert!(!o.status.success(), "deleted under a held lock: {o:?}");
    assert_eq!(queued(&d), 3);

    drop(held);
    wait_for("the queue's run", Duration::from_secs(20), || {
        sink.messages().len() >= 3 && queued(&d) == 0
    });
    std::thread::sleep(Duration::from_millis(500));
    let mut seen = HashMap::new();
    for m in sink.messages() {
        let id = message_id(&String::from_utf8_lossy(&m.data)).expect("a Message-ID");
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.values().all(|&c| c == 1), "{seen:?}");
}

#[test]
fn a_flush_due_while_the_database_is_down_sends_nothing_and_says_why() {
    let Some((d, mut pg)) = pg_root(NEVER) else {
        return;
    };
    let sink = Sink::start(Script::default());
    site_setup(&d, &sink, "");
    sites_to_db(&d);
    spool_n(&d, 4);
    let daemon = Daemon::start(&d.root);
    pg.stop();
    let r = etrn(&daemon);
    assert!(r.starts_with('2'), "ETRN: {r}");
    wait_for(
        "the flush's failure in the log",
        Duration::from_secs(15),
        || daemon.log_text().contains("advisory lock"),
    );
    let log = daemon.log_text();
    assert!(log.contains("database unavailable"), "{log}");
    assert!(
        sink.messages().is_empty(),
        "sent without the database's lock"
    );
    assert_eq!(spooled(&d), 4);

    pg.start();
    wait_for(
        "a flush once the database is back",
        Duration::from_secs(30),
        || {
            etrn(&daemon).starts_with("253") && {
                std::thread::sleep(Duration::from_millis(500));
                spooled(&d) == 0
            }
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    each_once(&sink, 4);
}

/// A POP3 login by Python's poplib: exit code (0 in, 3 refused) and what it printed.
fn pop(node: &Daemon, user: &str, pw: &str) -> (i32, String) {
    common::mailclients::poplib(node.pop3, user, pw)
}

fn add_user(d: &DemoRoot, node: &str, user: &str, pw: &str) {
    let args = ["--node", node, "user", "add", user, "--password-stdin"];
    let o = common::mailclients::turnmail_with_stdin(&d.root, &args, &format!("{pw}\n"));
    assert!(o.status.success(), "user add: {o:?}");
}

#[test]
fn three_nodes_on_one_database_share_accounts_mail_and_flushes() {
    let Some((d, _pg)) = pg_root("[flush]\nschedule = \"* * * * *\"\njitter_secs = 0\n") else {
        return;
    };
    let sink = Sink::start(Script {
        delay: Duration::from_millis(20),
        ..Script::default()
    });
    site_setup(&d, &sink, "");
    sites_to_db(&d);
    let ns = nodes(&d, 3);
    for n in &ns {
        assert!(n.log_text().contains("advisory locks"), "{}", n.log_text());
    }

    // A user added through node 1's command logs in on node 2 within a second.
    add_user(&d, "n1", "ann@example.com", "ann-secret-1");
    let t = Instant::now();
    wait_for("ann on node 2", Duration::from_secs(1), || {
        pop(&ns[1], "ann@example.com", "ann-secret-1").0 == 0
    });
    eprintln!("ann logged in on node 2 {:?} after the edit", t.elapsed());

    // 1,000 messages to all three nodes at once land once each.
    const TOTAL: usize = 1000;
    send_spread(&ns, 4, TOTAL, "bob@example.org", "ann@example.com", |i| {
        format!("m{i}@pgcluster.test")
    });
    let ids = ids_in(&d.root.join("domains/example.com/ann/Maildir"));
    assert_eq!(ids.len(), TOTAL, "every message");
    assert!(ids.values().all(|&c| c == 1), "a message twice");

    // A site's mail, with the schedule firing on all three nodes: sent once.
    scheduled_flush_sends_once(&d, &ns, &sink, 30);
}

#[test]
fn a_node_killed_mid_flush_leaves_its_database_lock_and_the_rest_to_another_node() {
    let Some((d, pg)) = pg_root(NEVER) else {
        return;
    };
    // Slower replies than cluster.rs's: the lock is looked at (psql) before the kill.
    let sink = Sink::start(Script {
        delay: Duration::from_millis(80),
        ..Script::default()
    });
    site_setup(&d, &sink, "");
    sites_to_db(&d);
    let mut ns = nodes(&d, 3);
    let key = sender_key("site:acme");
    assert!(!pg.advisory_lock_held(key));
    let flushing = || {
        assert!(
            pg.advisory_lock_held(key),
            "node 1's flush holds the site's advisory lock"
        )
    };
    killed_flush_is_finished_by_another_node(&d, &mut ns, &sink, 20, flushing, || {
        // The dead node's session ended with its connection: the server let the
        // lock go by itself (nobody unlocked it).
        wait_for(
            "the killed node's advisory lock released",
            Duration::from_secs(10),
            || !pg.advisory_lock_held(key),
        );
    });
    // Node 2's flush took the lock and gave it back.
    assert!(!pg.advisory_lock_held(key));
}

#[test]
fn three_nodes_fail_temporarily_while_the_database_is_down_and_lose_nothing() {
    let Some((d, mut pg)) = pg_root(NEVER) else {
        return;
    };
    let ns = nodes(&d, 3);
    let joe = "joe@example.com";
    let pw = d.report.password.clone();
    for (i, n) in ns.iter().enumerate() {
        send_all(
            n.addr,
            "bob@example.org",
            joe,
            &[format!("before{i}@pg.test")],
        );
    }

    pg.stop();
    let stopped = Instant::now();
    for (i, n) in ns.iter().enumerate() {
        wait_for(
            &format!("RCPT 451 on node {}", i + 1),
            Duration::from_secs(6),
            || rcpt(n, joe).starts_with("451 4.3.0"),
        );
    }
    // For the rest of ten seconds: temporary on every face of every node, never "no
    // such user" or a bad password.
    while stopped.elapsed() < Duration::from_secs(10) {
        for n in &ns {
            let r = rcpt(n, joe);
            assert!(r.starts_with("451 4.3.0"), "RCPT while down: {r}");
            let (code, out) = pop(n, joe, &pw);
            assert!(
                code == 3 && out.contains("[SYS/TEMP]"),
                "POP3 while down: {out}"
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    pg.start();
    let back = Instant::now();
    for n in &ns {
        wait_for("service back", Duration::from_secs(10), || {
            rcpt(n, joe).starts_with("250")
        });
    }
    eprintln!(
        "all three nodes serving {:?} after the start",
        back.elapsed()
    );
    for (i, n) in ns.iter().enumerate() {
        send_all(
            n.addr,
            "bob@example.org",
            joe,
            &[format!("after{i}@pg.test")],
        );
    }
    let ids = ids_in(&d.root.join("domains/example.com/joe/Maildir"));
    assert_eq!(ids.len(), 6, "{ids:?}");
    assert!(ids.values().all(|&c| c == 1), "{ids:?}");
    for (i, n) in ns.iter().enumerate() {
        // POP3 lists a message once its second is over.
        wait_for(
            &format!("POP3 on node {}", i + 1),
            Duration::from_secs(3),
            || {
                let (code, out) = pop(n, joe, &pw);
                code == 0 && out.contains("count 6")
            },
        );
    }
}
