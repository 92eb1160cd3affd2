//! Aliases in a real PostgreSQL (`[accounts] backend = "postgres"`): `turnmail alias`
//! edits the `aliases` table (no `.qmail` file written) and the running daemon routes
//! by it within a second; an operator's SQL is announced the same way; a `.qmail`
//! alias file already in a domain's home keeps working where no row has its name;
//! `db import` turns a files root's alias files into rows and `db export` writes them
//! back as files.

mod common;

use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::pg::Pg;
use common::{DemoRoot, demo_root_files, turnmail};

fn ok(d: &DemoRoot, args: &[&str]) -> String {
    let o = turnmail(&d.root, args);
    assert!(o.status.success(), "{args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Switch a demo root to the database at `pg` and import its accounts.
fn to_postgres(d: &DemoRoot, pg: &Pg) {
    let toml = d.root.join("turnmail.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!(
        "\n[accounts]\nbackend = \"postgres\"\n\n[postgres]\nurl = \"{}\"\nmax_stale_secs = 5\nconnect_timeout_secs = 2\n",
        pg.url()
    ));
    std::fs::write(&toml, text).unwrap();
    ok(d, &["db", "init"]);
    ok(d, &["db", "import"]);
}

fn home(d: &DemoRoot) -> std::path::PathBuf {
    d.root.join("domains/example.com")
}

fn maildir_count(d: &DemoRoot, user: &str) -> usize {
    let md = home(d).join(user).join("Maildir");
    ["new", "cur"]
        .iter()
        .map(|s| std::fs::read_dir(md.join(s)).map_or(0, |r| r.count()))
        .sum()
}

/// RCPT's reply; when accepted, the whole message's reply.
fn smtp(d: &Daemon, rcpt: &str) -> String {
    common::mailclients::smtp_try(d, rcpt, "to an alias")
}

/// Poll `f` until it holds; how long that took (fails after `limit`).
fn within(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

#[test]
fn aliases_live_in_the_table_and_reach_the_running_daemon() {
    let Some(pg) = Pg::start_new() else { return };
    let d = demo_root_files();
    to_postgres(&d, &pg);
    let daemon = Daemon::start(&d.root);
    let before = maildir_count(&d, "joe");
    assert!(smtp(&daemon, "info@example.com").starts_with("550"));

    // Added by the CLI: a row, no file, delivered to its target within a second.
    let out = ok(&d, &["alias", "add", "Info@example.com", "joe@example.com"]);
    assert!(
        out.contains("info@example.com forwards to joe@example.com"),
        "{out}"
    );
    assert!(!home(&d).join(".qmail-info").exists());
    let rows = pg.psql("SELECT domain, local, array_to_string(lines, ',') FROM aliases");
    assert!(rows.contains("example.com|info|&joe@example.com"), "{rows}");
    let t = within("the alias is accepted", Duration::from_secs(1), || {
        smtp(&daemon, "info@example.com").starts_with("250")
    });
    eprintln!("an alias added by the CLI was routed {t:?} after the edit");
    // The forward is queued and the daemon runs the queue at once: joe's Maildir.
    within("the forward delivered", Duration::from_secs(10), || {
        maildir_count(&d, "joe") == before + 1
    });
    assert_eq!(maildir_count(&d, "joe"), before + 1);
    let list = ok(&d, &["alias", "list"]);
    assert!(
        list.contains("info@example.com") && list.contains("joe@example.com"),
        "{list}"
    );

    // A second target goes into the same row; deleting the alias makes RCPT 550.
    ok(
        &d,
        &["alias", "add", "info@example.com", "ann@elsewhere.example"],
    );
    let rows = pg.psql("SELECT array_to_string(lines, ',') FROM aliases WHERE local = 'info'");
    assert!(
        rows.contains("&joe@example.com,&ann@elsewhere.example"),
        "{rows}"
    );
    let out = ok(&d, &["alias", "del", "info@example.com"]);
    assert!(out.contains("removed alias info@example.com"), "{out}");
    within(
        "the deleted alias is refused",
        Duration::from_secs(1),
        || smtp(&daemon, "info@example.com").starts_with("550"),
    );
    assert_eq!(pg.psql("SELECT count(*) FROM aliases"), "0\n");
    assert!(!home(&d).join(".qmail-info").exists());

    // A row written by an operator's SQL is announced by its trigger.
    pg.psql("INSERT INTO aliases (domain, local, lines) VALUES ('example.com', 'sql', '{&joe@example.com}')");
    within("the SQL alias is accepted", Duration::from_secs(1), || {
        smtp(&daemon, "sql@example.com").starts_with("250")
    });

    // A user's own .qmail file (a mailbox) is never shadowed by an alias.
    let o = turnmail(
        &d.root,
        &["alias", "add", "joe@example.com", "x@elsewhere.example"],
    );
    assert!(!o.status.success(), "{o:?}");

    // An alias file already in the home still answers where no row has its name,
    // is listed, and the row of the same name outranks it.
    let legacy = home(&d).join(".qmail-legacy");
    std::fs::write(&legacy, "&joe@example.com\n").unwrap();
    std::fs::set_permissions(&legacy, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    if common::is_root() {
        // The daemon reads it as the mail user, as it reads the domain's other files.
        let mu = common::mail_user();
        std::os::unix::fs::chown(&legacy, Some(mu.uid), Some(mu.gid)).unwrap();
    }
    let r = smtp(&daemon, "legacy@example.com");
    assert!(r.starts_with("250"), "{r}");
    let list = ok(&d, &["alias", "list", "example.com"]);
    assert!(list.contains("legacy@example.com (.qmail file)"), "{list}");
    assert!(list.contains("sql@example.com"), "{list}");
    ok(
        &d,
        &[
            "alias",
            "add",
            "legacy@example.com",
            "ann@elsewhere.example",
        ],
    );
    let list = ok(&d, &["alias", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let legacy_row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["address"]
                .as_str()
                .is_some_and(|a| a.starts_with("legacy@"))
        })
        .unwrap();
    assert_eq!(
        legacy_row["targets"],
        serde_json::json!(["ann@elsewhere.example"])
    );
    // `alias del` of a name with no row removes the file, as the files backend does.
    ok(&d, &["alias", "del", "legacy@example.com"]);
    assert!(legacy.exists(), "the row went first");
    ok(&d, &["alias", "del", "legacy@example.com"]);
    assert!(!legacy.exists());
    within("the legacy alias is gone", Duration::from_secs(1), || {
        smtp(&daemon, "legacy@example.com").starts_with("550")
    });

    // `domain list` counts the rows; removing the domain removes them in its commit.
    let v: serde_json::Value =
        serde_json::from_str(&ok(&d, &["domain", "list", "--json"])).unwrap();
    let row = v
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["domain"] == "example.com")
        .unwrap();
    assert_eq!(row["aliases"], 1, "{row}");
    ok(&d, &["domain", "del", "example.com"]);
    assert_eq!(pg.psql("SELECT count(*) FROM aliases"), "0\n");
}

#[test]
fn import_and_export_carry_a_files_roots_alias_files() {
    let Some(pg) = Pg::start_new() else { return };
    let d = demo_root_files();
    // Made by the files backend: two .qmail alias files.
    ok(
        &d,
        &[
            "alias",
            "add",
            "sales@example.com",
            "joe@example.com",
            "ann@elsewhere.example",
        ],
    );
    ok(
        &d,
        &["alias", "add", "help.desk@example.com", "joe@example.com"],
    );
    let sales = home(&d).join(".qmail-sales");
    let desk = home(&d).join(".qmail-help:desk");
    let sales_text = std::fs::read_to_string(&sales).unwrap();
    assert_eq!(sales_text, "&joe@example.com\n&ann@elsewhere.example\n");
    assert!(desk.exists());

    to_postgres(&d, &pg);
    let rows = pg.psql(
        "SELECT local || '@' || domain || '=' || array_to_string(lines, ',') FROM aliases ORDER BY 1",
    );
    assert!(
        rows.contains("help.desk@example.com=&joe@example.com"),
        "{rows}"
    );
    assert!(
        rows.contains("sales@example.com=&joe@example.com,&ann@elsewhere.example"),
        "{rows}"
    );
    // The users' own files (mailbox deliveries) are not aliases.
    assert!(
        !rows
            .lines()
            .any(|l| l.starts_with("joe@") || l.starts_with("postmaster@")),
        "{rows}"
    );
    let status = ok(&d, &["db", "status"]);
    assert!(status.contains("aliases"), "{status}");

    // Export writes them back as the same files.
    std::fs::remove_file(&sales).unwrap();
    std::fs::remove_file(&desk).unwrap();
    ok(&d, &["db", "export"]);
    assert_eq!(std::fs::read_to_string(&sales).unwrap(), sales_text);
    assert_eq!(
        std::fs::read_to_string(&desk).unwrap(),
        "&joe@example.com\n"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&sales).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    // Imported again from the exported files: the same rows.
    ok(&d, &["db", "import", "--replace"]);
    let again = pg.psql(
        "SELECT local || '@' || domain || '=' || array_to_string(lines, ',') FROM aliases ORDER BY 1",
    );
    assert_eq!(again, rows);
}
