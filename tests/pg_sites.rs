//! Customer sites in a real PostgreSQL (`[accounts] backend = "postgres"`): `site add`
//! makes a row of the `sites` table and the site's directory; the running daemon
//! spools the site's domain into it and flushes it on ETRN and on its schedule; an
//! operator's `UPDATE sites` reaches the daemon within seconds; a site.toml or
//! RELAYHOST edited by hand is reported by `check` and not used; `site del` removes
//! the row and keeps the spool. `db import` of a files root with hand-made sites (one
//! outside the root without site.toml, one with) and `db export` back give the same
//! files.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::pg::Pg;
use common::sink::{Script, Sink};
use common::{DemoRoot, demo_root_files, turnmail};

fn run(root: &Path, args: &[&str]) -> (bool, String) {
    let o = turnmail(root, args);
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.success(), s)
}

fn ok(root: &Path, args: &[&str]) -> String {
    let (good, out) = run(root, args);
    assert!(good, "{args:?}: {out}");
    out
}

/// turnmail.toml with `extra`, then the accounts backend switched to the database at
/// `pg`, its schema made and the root imported.
fn to_postgres(d: &DemoRoot, pg: &Pg, extra: &str) {
    common::config(d, extra);
    let toml = d.root.join("turnmail.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!(
        "\n[accounts]\nbackend = \"postgres\"\n\n[postgres]\nurl = \"{}\"\nmax_stale_secs = 5\nconnect_timeout_secs = 2\n",
        pg.url()
    ));
    std::fs::write(&toml, text).unwrap();
    ok(&d.root, &["db", "init"]);
    ok(&d.root, &["db", "import"]);
}

fn within(what: &str, limit: Duration, f: impl FnMut() -> bool) -> Duration {
    within_logged(None, what, limit, f)
}

/// [`within`], the daemon's log shown when it fails.
fn within_logged(
    d: Option<&Daemon>,
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> bool,
) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < limit,
            "not within {limit:?}: {what}\n{}",
            d.map(Daemon::log_text).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    t.elapsed()
}

/// One message to `rcpt` over SMTP; RCPT's reply, or the message's when accepted.
fn send(d: &Daemon, rcpt: &str, subject: &str) -> String {
    common::mailclients::smtp_try(d, rcpt, subject)
}

fn etrn(d: &Daemon, arg: &str) -> String {
    let mut c = d.connect();
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO test.example");
    let r = c.cmd(&format!("ETRN {arg}"));
    c.cmd("QUIT");
    r
}

fn subjects(sink: &Sink) -> Vec<String> {
    sink.messages()
        .iter()
        .filter_map(|m| {
            String::from_utf8_lossy(&m.data)
                .lines()
                .find_map(|l| l.strip_prefix("Subject: ").map(str::to_string))
        })
        .collect()
}

fn spooled(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("Maildir/new")).map_or(0, |r| r.count())
}

#[test]
fn a_site_in_the_table_spools_flushes_and_follows_sql() {
    let Some(pg) = Pg::start_new() else { return };
    let d = demo_root_files();
    to_postgres(&d, &pg, "[flush]\njitter_secs = 0\ngrace_ms = 0\n");
    let first = Sink::start(Script::default());
    let second = Sink::start(Script::default());
    let daemon = Daemon::start(&d.root);

    // Added by the CLI: a row, a directory with its spool and RELAYHOST lock file.
    let out = ok(
        &d.root,
        &[
            "site",
            "add",
            "shop",
            "--relayhost",
            &first.addr.to_string(),
            "--schedule",
            "* * * * *",
            "--domain",
            "shop.example",
        ],
    );
    assert!(out.contains("added site shop"), "{out}");
    let row = pg.psql(
        "SELECT relayhost, dir IS NULL, settings->>'schedule' FROM sites WHERE name = 'shop'",
    );
    assert_eq!(row, format!("{}|t|* * * * *\n", first.addr));
    let dir = d.root.canonicalize().unwrap().join("sites/shop");
    assert_eq!(
        std::fs::read_to_string(dir.join("RELAYHOST")).unwrap(),
        format!("{}\n", first.addr)
    );
    let list = ok(&d.root, &["site", "list"]);
    assert!(
        list.contains("shop") && list.contains("shop.example"),
        "{list}"
    );

    // Mail for its domain is spooled there, and ETRN flushes it to the row's relay host.
    within("RCPT for the site's domain", Duration::from_secs(3), || {
        send(&daemon, "x@shop.example", "one").starts_with("250")
    });
    assert_eq!(spooled(&dir), 1);
    // A scan leaves the current second's files alone.
    std::thread::sleep(Duration::from_millis(1100));
    within(
        "the site known to the daemon",
        Duration::from_secs(3),
        || etrn(&daemon, "shop.example").starts_with("25"),
    );
    within_logged(
        Some(&daemon),
        "the ETRN flush",
        Duration::from_secs(10),
        || subjects(&first) == ["one"],
    );

    // An operator's SQL moves the site to another relay host; the daemon follows.
    let (_, before) = run(&d.root, &["check"]);
    assert!(!before.contains("sites/shop"), "{before}");
    pg.psql(&format!(
        "UPDATE sites SET relayhost = '{}' WHERE name = 'shop'",
        second.addr
    ));
    // A site.toml edited by hand is not read: ETRN stays allowed.
    std::fs::write(dir.join("site.toml"), "etrn = \"off\"\n").unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(send(&daemon, "x@shop.example", "two").starts_with("250"));
    // A scan leaves the current second's files alone.
    std::thread::sleep(Duration::from_millis(1100));
    let r = etrn(&daemon, "shop.example");
    assert!(r.starts_with("25"), "{r}");
    within_logged(
        Some(&daemon),
        "the flush to the new relay host",
        Duration::from_secs(10),
        || subjects(&second) == ["two"],
    );
    assert_eq!(subjects(&first), ["one"], "nothing more to the old one");
    // `check` says both files differ from the row (RELAYHOST is behind the SQL edit).
    let (_, check) = run(&d.root, &["check"]);
    assert!(
        check.contains("sites/shop/site.toml") && check.contains("do not take effect"),
        "{check}"
    );
    assert!(
        check.contains("sites/shop/RELAYHOST") && check.contains(&second.addr.to_string()),
        "{check}"
    );
    // `db export` writes the row back over both.
    ok(&d.root, &["db", "export"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("RELAYHOST")).unwrap(),
        format!("{}\n", second.addr)
    );
    assert!(
        std::fs::read_to_string(dir.join("site.toml"))
            .unwrap()
            .contains("schedule = \"* * * * *\"")
    );

    // Its schedule (every minute) flushes what ETRN did not.
    assert!(send(&daemon, "y@shop.example", "three").starts_with("250"));
    let t = within_logged(
        Some(&daemon),
        "the scheduled flush",
        Duration::from_secs(75),
        || subjects(&second).contains(&"three".to_string()),
    );
    eprintln!("the scheduled flush came {t:?} after the message");

    // Removed: the row is gone, the domain refused, the spool kept.
    assert!(send(&daemon, "z@shop.example", "four").starts_with("250"));
    let queued = ok(&d.root, &["queue", "list", "--site", "shop"]);
    assert!(queued.contains("z@shop.example"), "{queued}");
    let out = ok(&d.root, &["site", "del", "shop"]);
    assert!(
        out.contains("removed site shop") && out.contains("1 queued"),
        "{out}"
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM sites WHERE name = 'shop'"),
        "0\n"
    );
    assert!(!dir.exists());
    within(
        "the removed site's domain refused",
        Duration::from_secs(3),
        || send(&daemon, "x@shop.example", "five").starts_with("55"),
    );
    within(
        "ETRN of the removed site refused",
        Duration::from_secs(3),
        || etrn(&daemon, "#shop").starts_with("45"),
    );
}

#[test]
fn hand_made_sites_are_imported_and_exported_back() {
    let Some(pg) = Pg::start_new() else { return };
    let d = demo_root_files();
    // A converted serialmail host's site outside the root: RELAYHOST and Maildir only.
    let outside = d.dir.path().join("serialmail/cust");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(outside.join("Maildir").join(sub)).unwrap();
    }
    std::fs::write(outside.join("RELAYHOST"), "mx.cust.example:2525\n").unwrap();
    let mu = common::mail_user();
    if common::is_root() {
        for p in [
            outside.clone(),
            outside.join("RELAYHOST"),
            outside.join("Maildir"),
        ] {
            std::os::unix::fs::chown(&p, Some(mu.uid), Some(mu.gid)).unwrap();
        }
    }
    let assign = d.root.join("users/assign");
    let text = std::fs::read_to_string(&assign).unwrap();
    let line = format!(
        "+cust.example-:{}:{}:{}:{}:-::\n",
        mu.name,
        mu.uid,
        mu.gid,
        outside.canonicalize().unwrap().display()
    );
    std::fs::write(&assign, text.replacen(".\n", &format!("{line}.\n"), 1)).unwrap();
    let vd = d.root.join("control/virtualdomains");
    let mut text = std::fs::read_to_string(&vd).unwrap();
    text.push_str("cust.example:cust.example\n");
    std::fs::write(&vd, text).unwrap();
    let pattern = format!("{}/serialmail/*", d.dir.path().display());
    let files: Vec<(std::path::PathBuf, String)> = [
        outside.join("RELAYHOST"),
        d.root.join("sites/acme/RELAYHOST"),
        d.root.join("sites/acme/site.toml"),
    ]
    .into_iter()
    .map(|p| {
        let t = std::fs::read_to_string(&p).unwrap();
        (p, t)
    })
    .collect();

    to_postgres(
        &d,
        &pg,
        &format!("[sites]\nroots = [\"sites/*\", \"{pattern}\"]\n"),
    );
    let rows =
        pg.psql("SELECT name, relayhost, coalesce(dir, '-'), settings::text FROM sites ORDER BY 1");
    assert_eq!(
        rows,
        format!(
            "acme|127.0.0.1:2626|-|{{\"domains\": [\"acme.example\"]}}\n\
             cust|mx.cust.example:2525|{}|{{}}\n",
            outside.canonicalize().unwrap().display()
        )
    );
    let st = ok(&d.root, &["db", "status"]);
    assert!(st.contains("sites: 2"), "{st}");
    // The commands see the rows, as they saw the directories.
    let list = ok(&d.root, &["site", "list"]);
    assert!(
        list.contains("cust")
            && list.contains("mx.cust.example:2525")
            && list.contains("cust.example"),
        "{list}"
    );
    let (_, check) = run(&d.root, &["check"]);
    assert!(!check.contains("do not take effect"), "{check}");

    // Exported back: the files as they were (the hand-made site gets no site.toml).
    for (p, _) in &files {
        std::fs::remove_file(p).unwrap();
    }
    ok(&d.root, &["db", "export"]);
    for (p, t) in &files {
        assert_eq!(&std::fs::read_to_string(p).unwrap(), t, "{}", p.display());
    }
    assert!(!outside.join("site.toml").exists());
    // And imported again from them, the same rows.
    ok(&d.root, &["db", "import", "--replace"]);
    assert_eq!(
        pg.psql("SELECT name, relayhost, coalesce(dir, '-'), settings::text FROM sites ORDER BY 1"),
        rows
    );

    // A site the table cannot hold is refused by name, and nothing is imported.
    let bad = d.root.join("sites/Bad");
    std::fs::create_dir_all(bad.join("Maildir/new")).unwrap();
    std::fs::write(bad.join("RELAYHOST"), "mx.bad.example\n").unwrap();
    std::fs::write(bad.join("site.toml"), "prefix = \"bad-\"\n").unwrap();
    let (good, out) = run(&d.root, &["db", "import", "--replace"]);
    assert!(
        !good && out.contains("\"Bad\"") && out.contains("nothing imported"),
        "{out}"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM sites"), "2\n");
    std::fs::remove_dir_all(&bad).unwrap();

    // The hand-made site removed: its row goes, its spool is kept, and the routing
    // lines it was found by (not `site add`'s own) are named.
    let out = ok(&d.root, &["site", "del", "cust"]);
    assert!(
        out.contains("removed site cust") && out.contains("+cust.example-"),
        "{out}"
    );
    assert_eq!(pg.psql("SELECT name FROM sites"), "acme\n");
    assert!(!outside.exists());

    // A hand-made site made after the import is not served, and `check` says so.
    let late = d.dir.path().join("serialmail/late");
    std::fs::create_dir_all(late.join("Maildir/new")).unwrap();
    std::fs::write(late.join("RELAYHOST"), "mx.late.example\n").unwrap();
    std::fs::write(late.join("site.toml"), "prefix = \"late-\"\n").unwrap();
    let (_, check) = run(&d.root, &["check"]);
    assert!(
        check.contains("site late is not served on the postgres backend"),
        "{check}"
    );
    assert!(!ok(&d.root, &["site", "list"]).contains("late"));
}
