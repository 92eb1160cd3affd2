//! Nodes on one root and one PostgreSQL database: the database's advisory locks as the
//! senders' second lock (a lock held by another session keeps a site's flush and the
//! queue from running although the flocks are free; a database that is down sends
//! nothing and says why), and three `turnmail serve` nodes sharing the accounts, the
//! mail and the locks (edits seen at once, mail landing and leaving once, an outage
//! giving temporary failures everywhere and nothing lost).

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::daemon::Daemon;
use common::pg::Pg;
use common::sink::{Script, Sink};
use common::{DemoRoot, demo_root, turnmail, write};

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
/// cdbs removed). None when no PostgreSQL server is installed (a failure under CI).
fn pg_root(extra: &str) -> Option<(DemoRoot, Pg)> {
    let pg = Pg::start_new()?;
    let d = demo_root();
    common::config(&d, extra);
    let toml = d.root.join("turnmail.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!(
        "\n[accounts]\nbackend = \"postgres\"\n\n[postgres]\nurl = \"{}\"\nmax_stale_secs = 2\nconnect_timeout_secs = 2\n",
        pg.url()
    ));
    std::fs::write(&toml, text).unwrap();
    for args in [&["db", "init"][..], &["db", "import"][..]] {
        let o = turnmail(&d.root, args);
        assert!(o.status.success(), "{args:?}: {o:?}");
    }
    for cdb in ["users/cdb", "users/poppasswd.cdb"] {
        std::fs::remove_file(d.root.join(cdb)).unwrap();
    }
    Some((d, pg))
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

fn each_once(sink: &Sink, n: usize) {
    let counts = by_recipient(&sink.messages());
    assert_eq!(counts.len(), n, "every message arrived: {counts:?}");
    assert!(counts.values().all(|&c| c == 1), "twice: {counts:?}");
}

const NEVER: &str = "[flush]\nschedule = \"0 0 1 1 *\"\n";

#[test]
fn a_site_whose_database_lock_is_held_elsewhere_is_not_flushed_until_released() {
    let Some((d, pg)) = pg_root(NEVER) else {
        return;
    };
    let sink = Sink::start(Script::default());
    site_setup(&d, &sink, "");
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

/// The client may relay; remote.example is routed to `sink`.
fn relay_setup(d: &DemoRoot, sink: &Sink) {
    let rules = d.root.join("control/tcp.smtp");
    write(&rules, "127.0.0.1:allow,RELAYCLIENT=\"\"\n");
    std::fs::set_permissions(&rules, PermissionsExt::from_mode(0o644)).unwrap();
    let routes = d.root.join("control/smtproutes");
    write(
        &routes,
        &format!("remote.example:127.0.0.1:{}\n", sink.addr.port()),
    );
    own(&rules);
    own(&routes);
}

fn queued(d: &DemoRoot) -> usize {
    std::fs::read_dir(d.root.join("queue/new")).map_or(0, |r| r.count())
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
    assert!(sink.messages().is_empty(), "the queue ran under a held lock");
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
    assert!(sink.messages().is_empty(), "sent without the database's lock");
    assert_eq!(spooled(&d), 4);

    pg.start();
    wait_for("a flush once the database is back", Duration::from_secs(30), || {
        etrn(&daemon).starts_with("253") && {
            std::thread::sleep(Duration::from_millis(500));
            spooled(&d) == 0
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    each_once(&sink, 4);
}
