//! The accounts database against a real PostgreSQL (a private server per test, see
//! common/pg.rs): the schema made and migrated, a mail root imported and exported
//! back, commits and their conflicts, changes announced to a follower, the records a
//! login needs, and a server that stops and comes back.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::pg::Pg;
use common::{demo_root_files, turnmail};
use turnmail::db::model::Records;
use turnmail::db::{CacheSink, DbError, PgSettings, Store, blocking, schema};
use turnmail::engine::source::AccountTexts;

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `turnmail --root ROOT db ARGS --url URL`, which must succeed; its output.
fn db_ok(root: &Path, pg: &Pg, args: &[&str]) -> String {
    let o = db(root, pg, args);
    assert!(o.status.success(), "db {args:?}: {}", out(&o));
    out(&o)
}

fn db(root: &Path, pg: &Pg, args: &[&str]) -> std::process::Output {
    let url = pg.url();
    let mut all = vec!["db"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--url", &url]);
    turnmail(root, &all)
}

fn ok(root: &Path, args: &[&str]) -> String {
    let o = turnmail(root, args);
    assert!(o.status.success(), "{args:?}: {}", out(&o));
    out(&o)
}

fn settings(pg: &Pg) -> PgSettings {
    PgSettings {
        max_stale_secs: 1,
        connect_timeout_secs: 2,
        ..PgSettings::with_url(&pg.url())
    }
}

/// Run `f` on a store connected to `pg`, from this synchronous test.
fn store<T, F, Fut>(pg: &Pg, f: F) -> Result<T, DbError>
where
    T: Send,
    F: FnOnce(Store) -> Fut + Send,
    Fut: std::future::Future<Output = Result<T, DbError>> + Send,
{
    blocking::with_store(&settings(pg), f)
}

/// A demo root with a second domain, an alias domain, users, a secret and quotas.
fn populated_root() -> common::DemoRoot {
    let d = demo_root_files();
    let r = &d.root;
    ok(r, &["domain", "add", "example.org"]);
    ok(r, &["domain", "alias", "add", "example.net", "example.com"]);
    ok(r, &["user", "add", "ann@example.com", "--generate"]);
    ok(r, &["user", "add", "Bob@example.org", "--generate"]);
    ok(r, &["user", "add", "joe@example.org", "--generate"]);
    ok(
        r,
        &["user", "secret", "ann@example.com", "--apop", "--generate"],
    );
    ok(r, &["user", "quota", "ann@example.com", "10M"]);
    d
}

/// The account records of a files root, without its sites.
fn accounts_of(root: &Path) -> Records {
    Records::from_texts(&AccountTexts::read(root).unwrap()).unwrap()
}

/// The records of a files root, its sites included (what `db import` reads).
fn records_of(root: &Path) -> Records {
    let mut r = Records::from_texts(&AccountTexts::read(root).unwrap()).unwrap();
    let config = turnmail::config::Config::load(root).unwrap();
    r.sites = turnmail::spool::site_rows::rows_from_root(root, &config.sites.roots).unwrap();
    r
}

#[test]
fn init_twice_changes_nothing_and_status_tells_the_versions() {
    let Some(pg) = Pg::start_new() else { return };
    let d = demo_root_files();
    let first = db_ok(&d.root, &pg, &["init"]);
    assert!(first.contains("applied step 1, 2, 3, 4, 5"), "{first}");
    let again = db_ok(&d.root, &pg, &["init"]);
    assert!(again.contains("nothing to do"), "{again}");
    let st = db_ok(&d.root, &pg, &["status"]);
    assert!(
        st.contains(&format!("schema: version {}", schema::LATEST)),
        "{st}"
    );
    assert!(
        st.contains("mailboxes: 0") && st.contains("reachable: yes"),
        "{st}"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM turnmail_schema"), "5\n");
    let js = db_ok(&d.root, &pg, &["status", "--json"]);
    let v: serde_json::Value = serde_json::from_str(js.trim()).unwrap();
    assert_eq!(v["schema_version"], schema::LATEST);
    assert_eq!(v["version"], 0);
}

#[test]
fn two_hosts_initialising_at_once_apply_each_step_once() {
    let Some(pg) = Pg::start_new() else { return };
    let d = demo_root_files();
    let outs: Vec<std::process::Output> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..3)
            .map(|_| sc.spawn(|| db(&d.root, &pg, &["init"])))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outs {
        assert!(o.status.success(), "{}", out(o));
    }
    assert_eq!(
        pg.psql("SELECT string_agg(version::text, ',' ORDER BY version) FROM turnmail_schema"),
        "1,2,3,4,5\n"
    );
    assert_eq!(pg.psql("SELECT count(*) FROM turnmail_state"), "1\n");
}

/// The schema steps up to `step` applied to the fresh database, as a program that knew
/// only those would; the steps applied.
fn migrate_to(pg: &Pg, step: i32) -> Vec<i32> {
    let s = settings(pg);
    blocking::run(async move {
        let store = Store::new(&s)?;
        let mut c = store.client().await?;
        schema::migrate(&mut c, store.target(), step, true).await
    })
    .unwrap()
    .unwrap()
}

#[test]
fn migrate_brings_an_older_schema_up_and_a_newer_one_is_refused() {
    let Some(pg) = Pg::start_new() else { return };
    let d = demo_root_files();
    // A database made by a program that knew step 1 only.
    let applied = migrate_to(&pg, 1);
    assert_eq!(applied, [1]);
    pg.psql("INSERT INTO mailboxes VALUES ('old@example.com', 'h', 'turnmail', '/h')");
    let s = settings(&pg);
    let e = blocking::run(async move { Store::connect(&s).await.map(|_| ()) })
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(e, DbError::Schema(_)) && e.to_string().contains("db migrate"),
        "{e}"
    );
    let o = db(&d.root, &pg, &["status"]);
    assert_eq!(o.status.code(), Some(1), "{}", out(&o));
    assert!(
        out(&o).contains("version 1") && out(&o).contains("db migrate"),
        "{}",
        out(&o)
    );
    let m = db_ok(&d.root, &pg, &["migrate"]);
    assert!(m.contains("applied step 2, 3, 4, 5"), "{m}");
    // The rows stayed, the views of step 2 are there.
    assert_eq!(
        pg.psql("SELECT login, quota_source FROM accounts"),
        "old@example.com|none\n"
    );
    assert!(db_ok(&d.root, &pg, &["migrate"]).contains("nothing to do"));
    // A database from a newer program is refused, by every command.
    pg.psql("INSERT INTO turnmail_schema (version, name) VALUES (99, 'future')");
    for args in [
        &["migrate"][..],
        &["status"],
        &["init"],
        &["export", "--to", "/nonexistent"],
    ] {
        let o = db(&d.root, &pg, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", out(&o));
        assert!(
            out(&o).contains("newer than this program"),
            "{args:?}: {}",
            out(&o)
        );
    }
}

#[test]
fn migrate_from_step_4_adds_the_sites_table_and_its_trigger() {
    let Some(pg) = Pg::start_new() else { return };
    let d = demo_root_files();
    // A database made by the program before sites were in it, with its accounts.
    let applied = migrate_to(&pg, 4);
    assert_eq!(applied, [1, 2, 3, 4]);
    pg.psql("INSERT INTO aliases (domain, local, lines) VALUES ('example.com', 'old', '{&joe@example.com}')");
    let before = pg.psql("SELECT version FROM turnmail_state");
    let m = db_ok(&d.root, &pg, &["migrate"]);
    assert!(m.contains("applied step 5"), "{m}");
    assert_eq!(pg.psql("SELECT count(*) FROM aliases"), "1\n");
    assert!(db_ok(&d.root, &pg, &["status"]).contains("sites: 0"));
    // An operator's row is announced like every other table's, and read back as a site.
    pg.psql(
        "INSERT INTO sites (name, relayhost, settings) \
         VALUES ('shop', 'mx.shop.example:2525', '{\"schedule\": \"@hourly\"}')",
    );
    assert_ne!(pg.psql("SELECT version FROM turnmail_state"), before);
    let (records, _) = store(&pg, |s| async move { s.load_records().await }).unwrap();
    let row = &records.sites["shop"];
    assert_eq!(row.relayhost.as_deref(), Some("mx.shop.example:2525"));
    assert_eq!(row.settings, r#"{"schedule":"@hourly"}"#);
    // What the table accepts but the program cannot read is refused by name.
    for bad in [
        "INSERT INTO sites (name) VALUES ('Shop')",
        "INSERT INTO sites (name, dir) VALUES ('x', 'relative')",
        "INSERT INTO sites (name, settings) VALUES ('x', '[1]')",
        "INSERT INTO sites (name, settings) VALUES ('x', '{\"lifetme_days\": 3}')",
    ] {
        assert!(pg.psql_result(bad).is_err(), "{bad}");
    }
    pg.psql("UPDATE sites SET settings = '{\"lifetime_days\": \"three\"}'");
    let e = store(&pg, |s| async move { s.load_records().await }).unwrap_err();
    assert!(
        e.to_string().contains("shop") && e.to_string().contains("lifetime_days"),
        "{e}"
    );
}

#[test]
fn a_root_imported_and_exported_keeps_every_entry() {
    let Some(pg) = Pg::start_new() else { return };
    let d = populated_root();
    db_ok(&d.root, &pg, &["init"]);
    let o = db_ok(&d.root, &pg, &["import"]);
    assert!(
        o.contains("4 mailboxes") && o.contains("accounts version 1"),
        "{o}"
    );
    // The operator's views see the same accounts.
    assert_eq!(
        pg.psql("SELECT login, quota_bytes, quota_source, has_secret FROM accounts ORDER BY 1"),
        "ann@example.com|10485760|mailbox|t\nbob@example.org||none|f\njoe@example.com||none|f\njoe@example.org||none|f\n"
    );
    assert_eq!(
        pg.psql("SELECT domain, target FROM alias_domains"),
        "example.net|example.com\n"
    );
    // A second import needs --replace.
    let again = db(&d.root, &pg, &["import"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(out(&again).contains("--replace"), "{}", out(&again));
    let o = db_ok(&d.root, &pg, &["import", "--replace"]);
    assert!(o.contains("accounts version 1"), "nothing changed: {o}");
    // Exported into an empty directory, it reads back as the same entries, and the
    // compiled cdbs are there.
    let other = tempfile::tempdir().unwrap();
    let to = other.path().join("copy");
    let o = db_ok(&d.root, &pg, &["export", "--to", to.to_str().unwrap()]);
    assert!(o.contains("version 1"), "{o}");
    assert_eq!(accounts_of(&to), accounts_of(&d.root));
    assert!(to.join("users/cdb").exists() && to.join("users/poppasswd.cdb").exists());
    // The site's files are in the copy's sites/ (users/assign's homes still name the
    // source root, as every home does).
    for f in ["RELAYHOST", "site.toml"] {
        assert_eq!(
            std::fs::read_to_string(to.join("sites/acme").join(f)).unwrap(),
            std::fs::read_to_string(d.root.join("sites/acme").join(f)).unwrap(),
            "{f}"
        );
    }
    assert!(to.join("sites/acme/Maildir/new").is_dir());
    // A user removed in the source and imported again leaves the database and the
    // next export.
    ok(&d.root, &["user", "del", "joe@example.org"]);
    db_ok(&d.root, &pg, &["import", "--replace"]);
    assert_eq!(pg.psql("SELECT count(*) FROM mailboxes"), "3\n");
    assert_eq!(pg.psql("SELECT version FROM turnmail_state"), "2\n");
    db_ok(&d.root, &pg, &["export", "--to", to.to_str().unwrap()]);
    assert_eq!(accounts_of(&to), accounts_of(&d.root));
}

#[test]
fn import_refuses_a_root_the_database_cannot_hold() {
    let Some(pg) = Pg::start_new() else { return };
    let d = demo_root_files();
    db_ok(&d.root, &pg, &["init"]);
    let pw = d.root.join("users/poppasswd");
    let mut text = std::fs::read(&pw).unwrap();
    text.extend_from_slice(b"bad\xff@example.com:h:turnmail:/h\n");
    std::fs::write(&pw, text).unwrap();
    let o = db(&d.root, &pg, &["import"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out(&o).contains("UTF-8") && out(&o).contains("nothing imported"),
        "{}",
        out(&o)
    );
    assert_eq!(pg.psql("SELECT count(*) FROM mailboxes"), "0\n");
}

#[test]
fn commits_write_differences_and_a_stale_base_is_a_conflict() {
    let Some(pg) = Pg::start_new() else { return };
    let d = populated_root();
    db_ok(&d.root, &pg, &["init"]);
    db_ok(&d.root, &pg, &["import"]);
    let (texts, v) = store(&pg, move |s: Store| async move { s.load().await }).unwrap();
    assert_eq!(v, 1);
    assert_eq!(Records::from_texts(&texts).unwrap(), records_of(&d.root));
    // Nothing changed: the same version, no bump.
    let same = texts.clone();
    assert_eq!(
        store(&pg, move |s: Store| async move { s.commit(1, &same).await }).unwrap(),
        1
    );
    // One changed line: one row rewritten, the rest untouched (their ctid stays).
    let before = pg.psql("SELECT ctid FROM mailboxes WHERE login = 'ann@example.com'");
    let mut changed = texts.clone();
    let pw = String::from_utf8(changed.poppasswd.clone()).unwrap();
    changed.poppasswd = pw
        .replace("bob@example.org:", "Bob@example.org:")
        .into_bytes();
    changed.rcpthosts.extend_from_slice(b"new.example\n");
    let c2 = changed.clone();
    assert_eq!(
        store(&pg, move |s: Store| async move { s.commit(1, &c2).await }).unwrap(),
        2
    );
    assert_eq!(
        pg.psql("SELECT ctid FROM mailboxes WHERE login = 'ann@example.com'"),
        before
    );
    assert_eq!(
        pg.psql("SELECT login FROM mailboxes WHERE login ILIKE 'bob@%'"),
        "Bob@example.org\n"
    );
    // An editor that read version 1 is refused, and nothing of its edit is written.
    let mut late = texts.clone();
    late.rcpthosts.extend_from_slice(b"late.example\n");
    let e = store(&pg, move |s: Store| async move { s.commit(1, &late).await }).unwrap_err();
    assert_eq!(
        e,
        DbError::Conflict {
            base: 1,
            current: 2
        }
    );
    assert!(e.is_temporary());
    assert_eq!(
        pg.psql("SELECT count(*) FROM rcpthosts WHERE name = 'late.example'"),
        "0\n"
    );
    // Text that does not parse is refused before the database is asked.
    let mut bad = texts;
    bad.assign = b"=x:no-dot-line\n".to_vec();
    let e = store(&pg, move |s: Store| async move { s.commit(2, &bad).await }).unwrap_err();
    assert!(matches!(e, DbError::Invalid(_)), "{e}");
    // Two editors at once on one base: exactly one wins.
    let (t, v) = store(&pg, move |s: Store| async move { s.load().await }).unwrap();
    let results: Vec<Result<u64, DbError>> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..2)
            .map(|i| {
                let mut t = t.clone();
                t.rcpthosts
                    .extend_from_slice(format!("racer{i}.example\n").as_bytes());
                let pg = &pg;
                sc.spawn(move || store(pg, move |s: Store| async move { s.commit(v, &t).await }))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Err(DbError::Conflict { .. })))
    );
    // An operator's SQL moves the version on too: an editor that read before it is
    // refused instead of writing over it.
    let (t, v) = store(&pg, move |s: Store| async move { s.load().await }).unwrap();
    pg.psql("INSERT INTO rcpthosts VALUES ('sql.example')");
    assert_eq!(
        pg.psql("SELECT version FROM turnmail_state"),
        format!("{}\n", v + 1)
    );
    let e = store(&pg, move |s: Store| async move { s.commit(v, &t).await }).unwrap_err();
    assert_eq!(
        e,
        DbError::Conflict {
            base: v,
            current: v + 1
        }
    );
    assert_eq!(
        pg.psql("SELECT count(*) FROM rcpthosts WHERE name = 'sql.example'"),
        "1\n"
    );
}

/// A sink that records what the follower tells it.
#[derive(Default)]
struct Recorder {
    installs: Mutex<Vec<(u64, AccountTexts, Instant)>>,
    unavailable: Mutex<Vec<(String, Instant)>>,
}

impl CacheSink for Recorder {
    fn install(&self, texts: AccountTexts, version: u64) {
        self.installs
            .lock()
            .unwrap()
            .push((version, texts, Instant::now()));
    }
    fn unavailable(&self, reason: String) {
        self.unavailable
            .lock()
            .unwrap()
            .push((reason, Instant::now()));
    }
}

impl Recorder {
    fn last_version(&self) -> Option<u64> {
        self.installs.lock().unwrap().last().map(|i| i.0)
    }
    fn wait_for(&self, what: &str, limit: Duration, cond: impl Fn(&Recorder) -> bool) -> Duration {
        let t = Instant::now();
        while !cond(self) {
            assert!(t.elapsed() < limit, "{what} not within {limit:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        t.elapsed()
    }
}

/// A runtime following the database for `sink`.
fn follower(pg: &Pg, sink: Arc<Recorder>) -> tokio::runtime::Runtime {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let s = settings(pg);
    rt.spawn(async move {
        let store = Store::new(&s).unwrap();
        turnmail::db::cache::follow(store, s, sink).await
    });
    rt
}

#[test]
fn a_commit_is_announced_and_installed_by_a_follower_within_a_second() {
    let Some(pg) = Pg::start_new() else { return };
    let d = populated_root();
    db_ok(&d.root, &pg, &["init"]);
    db_ok(&d.root, &pg, &["import"]);
    let sink = Arc::new(Recorder::default());
    let _rt = follower(&pg, sink.clone());
    // No version known: the first check loads.
    sink.wait_for("the first install", Duration::from_secs(5), |s| {
        s.last_version() == Some(1)
    });
    // check_secs is 30: only the notification can bring the next version this soon.
    let (mut t, v) = store(&pg, move |s: Store| async move { s.load().await }).unwrap();
    t.poppasswd
        .extend_from_slice(b"new@example.com:$1$x$y:turnmail:/var/mail/new\n");
    let committed = Instant::now();
    let t2 = t.clone();
    assert_eq!(
        store(&pg, move |s: Store| async move { s.commit(v, &t2).await }).unwrap(),
        2
    );
    sink.wait_for("the announced version", Duration::from_secs(1), |s| {
        s.last_version() == Some(2)
    });
    let installs = sink.installs.lock().unwrap();
    let (_, texts, at) = installs.last().unwrap();
    assert!(*at - committed < Duration::from_secs(1));
    assert_eq!(
        Records::from_texts(texts).unwrap(),
        Records::from_texts(&t).unwrap()
    );
    assert!(sink.unavailable.lock().unwrap().is_empty());
    // An operator's SQL is announced by the tables' triggers and followed too.
    drop(installs);
    pg.psql("DELETE FROM mailboxes WHERE login = 'new@example.com'");
    sink.wait_for("the operator's change", Duration::from_secs(1), |s| {
        s.last_version() == Some(3)
    });
}

#[test]
fn load_for_login_gives_only_what_one_login_needs() {
    let Some(pg) = Pg::start_new() else { return };
    let d = populated_root();
    db_ok(&d.root, &pg, &["init"]);
    db_ok(&d.root, &pg, &["import"]);
    let get = |login: &'static str| {
        let t = store(&pg, move |s: Store| async move {
            s.load_for_login(login.as_bytes()).await
        })
        .unwrap();
        let r = Records::from_texts(&t).unwrap();
        let mut logins: Vec<String> = r.mailboxes.values().map(|m| m.login.clone()).collect();
        logins.sort();
        (logins, r)
    };
    let (l, r) = get("ann@example.com");
    assert_eq!(l, ["ann@example.com"]);
    assert!(r.secrets.contains_key("ann@example.com") && r.secrets.len() == 1);
    assert!(r.mailbox_quotas.contains_key("ann@example.com"));
    assert!(
        r.domains.contains_key("example.net"),
        "every virtualdomains line"
    );
    assert!(r.routes.is_empty() && r.rcpthosts.is_empty());
    // Through the alias domain, in another case, with % for @.
    assert_eq!(get("ANN%example.net").0, ["ann@example.com"]);
    // A bare login: every domain's account of that name (the default and IP-bound
    // domains are the engine's to choose).
    assert_eq!(get("joe").0, ["joe@example.com", "joe@example.org"]);
    assert_eq!(get("BOB@Example.ORG").0, ["bob@example.org"]);
    // LIKE's wildcards in a login are literal.
    assert!(get("j_e").0.is_empty());
    assert!(get("%").0.is_empty());
    assert!(get("nobody@example.com").0.is_empty());
}

#[test]
fn a_stopped_database_is_unavailable_at_once_and_service_resumes_when_it_is_back() {
    let Some(mut pg) = Pg::start_new() else {
        return;
    };
    let d = populated_root();
    db_ok(&d.root, &pg, &["init"]);
    db_ok(&d.root, &pg, &["import"]);
    let sink = Arc::new(Recorder::default());
    let rt = follower(&pg, sink.clone());
    sink.wait_for("the first install", Duration::from_secs(5), |s| {
        s.last_version() == Some(1)
    });
    // A store made while the server ran, used after it stopped.
    let s = settings(&pg);
    let kept = rt.block_on(Store::connect(&s)).unwrap();
    rt.block_on(kept.version()).unwrap();
    pg.stop();
    let t = Instant::now();
    let e = rt.block_on(kept.load()).unwrap_err();
    assert!(matches!(e, DbError::Unavailable { .. }), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        e.to_string().contains(pg.socket_dir().to_str().unwrap()),
        "{e}"
    );
    // The command line says so with exit 111.
    let o = db(&d.root, &pg, &["status"]);
    assert_eq!(o.status.code(), Some(111), "{}", out(&o));
    assert!(out(&o).contains("database unavailable"), "{}", out(&o));
    // The follower's copy is declared unusable once max_stale_secs (1) passed.
    let took = sink.wait_for("unavailable", Duration::from_secs(4), |s| {
        !s.unavailable.lock().unwrap().is_empty()
    });
    assert!(took >= Duration::from_millis(500), "{took:?}");
    let (why, _) = sink.unavailable.lock().unwrap()[0].clone();
    assert!(why.contains("no connection"), "{why}");
    // Back: the follower reconnects and installs (the same version), which clears it.
    pg.start();
    let back = Instant::now();
    let n = sink.installs.lock().unwrap().len();
    sink.wait_for(
        "the install after the outage",
        Duration::from_secs(5),
        |s| s.installs.lock().unwrap().len() > n,
    );
    assert_eq!(sink.last_version(), Some(1));
    assert!(back.elapsed() < Duration::from_secs(5));
    assert_eq!(sink.unavailable.lock().unwrap().len(), 1, "said once");
    // The kept store's pool replaces its dead connections by itself.
    let mut ok_again = false;
    for _ in 0..3 {
        if rt.block_on(kept.version()).is_ok() {
            ok_again = true;
            break;
        }
    }
    assert!(ok_again);
    // And a change made now is followed as before.
    let (mut t, v) = rt.block_on(kept.load()).unwrap();
    t.rcpthosts.extend_from_slice(b"after.example\n");
    assert_eq!(rt.block_on(kept.commit(v, &t)).unwrap(), 2);
    sink.wait_for("the change after the outage", Duration::from_secs(1), |s| {
        s.last_version() == Some(2)
    });
}

/// One random edit of `r`: a record of some table added, changed or removed.
fn mutate(r: &mut Records, rng: &mut common::Rng, step: usize) {
    use turnmail::db::model::{Mailbox, Route};
    use turnmail::quota::spec::Limits;
    let n = rng.range(0, 1000);
    match rng.range(0, 9) {
        0 => {
            // A route inserted anywhere moves the ones after it.
            let at = rng.range(0, r.routes.len() as u64 + 1) as usize;
            r.routes.insert(
                at,
                Route {
                    wildcard: n.is_multiple_of(2),
                    local: format!("r{n}-"),
                    user: "turnmail".into(),
                    uid: "107".into(),
                    gid: "110".into(),
                    home: format!("/h/{n}"),
                    dash: "-".into(),
                    ext: String::new(),
                },
            );
        }
        1 if !r.routes.is_empty() => {
            let at = rng.range(0, r.routes.len() as u64) as usize;
            r.routes.remove(at);
        }
        2 => {
            let login = format!("U{n}@Example.com");
            let m = Mailbox {
                login: if n.is_multiple_of(3) {
                    login.to_ascii_lowercase()
                } else {
                    login
                },
                hash: format!("$1$s{step}$h"),
                owner: "turnmail".into(),
                home: format!("/h/u{n}"),
            };
            r.mailboxes.insert(m.login.to_ascii_lowercase(), m);
        }
        3 if !r.mailboxes.is_empty() => {
            let k = r
                .mailboxes
                .keys()
                .nth(n as usize % r.mailboxes.len())
                .cloned()
                .unwrap();
            r.mailboxes.remove(&k);
        }
        4 => {
            r.secrets
                .insert(format!("u{n}@example.com"), format!("s{step}"));
        }
        5 => {
            r.rcpthosts.insert(format!("d{}.example", n % 20));
            if n.is_multiple_of(3) {
                r.rcpthosts.remove(&format!("d{}.example", (n + 1) % 20));
            }
        }
        6 => {
            let d = format!("d{}.example", n % 20);
            let prefix = if n.is_multiple_of(2) {
                d.clone()
            } else {
                "example.com".to_string()
            };
            r.domains.insert(d, prefix);
        }
        7 => {
            let l = Limits {
                bytes: (n.is_multiple_of(2)).then_some(n + 1),
                messages: (n.is_multiple_of(3)).then_some(step as u64 + 1),
            };
            if n.is_multiple_of(4) {
                r.domain_quotas.insert(format!("d{}.example", n % 20), l);
            } else {
                r.mailbox_quotas.insert(format!("u{n}@example.com"), l);
            }
        }
        _ => {
            if let Some(k) = r.mailbox_quotas.keys().next().cloned() {
                r.mailbox_quotas.remove(&k);
            }
            if n.is_multiple_of(2)
                && let Some(k) = r.domains.keys().next().cloned()
            {
                r.domains.remove(&k);
            }
        }
    }
}

#[test]
fn any_series_of_commits_loads_back_as_committed() {
    let Some(pg) = Pg::start_new() else { return };
    let d = populated_root();
    db_ok(&d.root, &pg, &["init"]);
    db_ok(&d.root, &pg, &["import"]);
    let mut rng = common::Rng::new("db commits");
    let s = settings(&pg);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::connect(&s).await.unwrap();
        let (mut r, mut v) = store.load_records().await.unwrap();
        for step in 0..60 {
            for _ in 0..rng.range(1, 4) {
                mutate(&mut r, &mut rng, step);
            }
            let nv = store.commit_records(v, &r).await.unwrap();
            let (back, bv) = store.load_records().await.unwrap();
            assert_eq!(bv, nv);
            assert_eq!(back, r, "step {step}");
            // The texts a reader gets say the same.
            let (texts, _) = store.load().await.unwrap();
            assert_eq!(Records::from_texts(&texts).unwrap(), r, "step {step}");
            v = nv;
        }
    });
}
