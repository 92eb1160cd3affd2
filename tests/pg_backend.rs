//! The accounts in a real PostgreSQL (`[accounts] backend = "postgres"`), served by the
//! real daemon: SMTP delivery, POP3, SMTP AUTH, ODMR AUTH and checkpassword answer
//! from the database's accounts (the root's cdbs are removed), CLI edits reach a
//! running daemon through NOTIFY within a second, a database that stops gives
//! temporary failures on every face (never "no such user") and full service comes
//! back by itself, and two daemons on one root and one database see the same edits.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::daemon::{Client, Daemon};
use common::pg::Pg;
use common::{DemoRoot, demo_root_files, turnmail};

/// How long the daemons may answer from their copy without the database.
const MAX_STALE_SECS: u64 = 2;

/// A demo root whose accounts were imported into a fresh database, with the
/// backend switched to it and the compiled cdbs removed (so nothing can answer
/// from them). None when no PostgreSQL server is installed (a failure under CI).
fn db_root() -> Option<(DemoRoot, Pg)> {
    let pg = Pg::start_new()?;
    let d = demo_root_files();
    let toml = d.root.join("turnmail.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!(
        "\n[odmr]\nplaintext_auth = true\n\n[accounts]\nbackend = \"postgres\"\n\n[postgres]\nurl = \"{}\"\nmax_stale_secs = {MAX_STALE_SECS}\nconnect_timeout_secs = 2\n",
        pg.url()
    ));
    std::fs::write(&toml, text).unwrap();
    ok(&d, &["db", "init"]);
    ok(&d, &["db", "import"]);
    for cdb in ["users/cdb", "users/poppasswd.cdb"] {
        std::fs::remove_file(d.root.join(cdb)).unwrap();
    }
    Some((d, pg))
}

fn ok(d: &DemoRoot, args: &[&str]) -> String {
    let o = turnmail(&d.root, args);
    assert!(o.status.success(), "{args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `turnmail ARGS --password-stdin` given `pw`.
fn with_password(d: &DemoRoot, args: &[&str], pw: &str) -> std::process::Output {
    let mut a = args.to_vec();
    a.push("--password-stdin");
    common::mailclients::turnmail_with_stdin(&d.root, &a, &format!("{pw}\n"))
}

fn maildir_count(d: &DemoRoot, user: &str) -> usize {
    let md = d
        .root
        .join("domains/example.com")
        .join(user)
        .join("Maildir");
    ["new", "cur"]
        .iter()
        .map(|s| std::fs::read_dir(md.join(s)).map_or(0, |r| r.count()))
        .sum()
}

/// RCPT's reply; when accepted, the whole message's reply.
fn smtp(d: &Daemon, rcpt: &str, subject: &str) -> String {
    common::mailclients::smtp_try(d, rcpt, subject)
}

const POPLIB: &str = r#"
import poplib, sys
host, port, user, password = sys.argv[1:5]
p = poplib.POP3(host, int(port), timeout=30)
try:
    p.user(user)
    p.pass_(password)
except poplib.error_proto as e:
    print("refused", e.args[0].decode(errors="replace"))
    sys.exit(3)
n, size = p.stat()
print("count", n)
for i in range(1, n + 1):
    for line in p.retr(i)[1]:
        if line.startswith(b"Subject:"):
            print(line.decode())
p.quit()
"#;

/// A POP3 session by Python's poplib: login, STAT, RETR of each message.
fn pop(d: &Daemon, user: &str, pw: &str) -> (i32, String) {
    python(
        POPLIB,
        &[
            &d.pop3.ip().to_string(),
            &d.pop3.port().to_string(),
            user,
            pw,
        ],
    )
}

/// Submission with AUTH by Python's smtplib.
fn submit(d: &Daemon, user: &str, pw: &str, to: &str) -> (i32, String) {
    common::mailclients::submit(d.submission, user, pw, to)
}

fn python(script: &str, args: &[&str]) -> (i32, String) {
    let o = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
    )
}

/// ODMR's AUTH PLAIN reply.
fn odmr_auth(d: &Daemon, user: &str, pw: &str) -> String {
    let mut c = Client::connect(d.odmr);
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO test.example");
    let token = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pw}"));
    let r = c.cmd(&format!("AUTH PLAIN {token}"));
    c.cmd("QUIT");
    r
}

fn checkpassword(root: &Path, user: &str, pw: &str) -> i32 {
    common::checkpassword(root, user, pw, "127.0.0.9")
        .code()
        .unwrap_or(-1)
}

/// `turnmail deliver`, qmail's way (RECIPIENT in the environment) or Postfix's
/// (recipients as arguments); its exit code.
fn deliver(root: &Path, rcpt: &str, postfix: bool) -> i32 {
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnmail"));
    c.arg("--root")
        .arg(root)
        .arg("deliver")
        .args(["-f", "bob@example.org"]);
    if postfix {
        c.args(["--", rcpt]);
    } else {
        c.env("RECIPIENT", rcpt);
    }
    let mut child = c
        .env_remove("TURNMAIL_ROOT")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Subject: injected\n\nhello\n")
        .unwrap();
    child.wait().unwrap().code().unwrap_or(-1)
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

/// POP3 lists a message only once its second is over: log in until `needle` shows.
fn pop_sees(d: &Daemon, user: &str, pw: &str, needle: &str) -> String {
    let mut out = String::new();
    within(
        &format!("{user} sees {needle}"),
        Duration::from_secs(3),
        || {
            let (code, o) = pop(d, user, pw);
            out = o;
            code == 0 && out.contains(needle)
        },
    );
    out
}

/// RCPT's reply alone (no message is sent).
fn rcpt(d: &Daemon, rcpt: &str) -> String {
    let mut c: Client = d.connect();
    assert!(c.reply().starts_with("220"));
    c.cmd("HELO test.example");
    c.cmd("MAIL FROM:<a@example.org>");
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    c.cmd("QUIT");
    r
}

fn password(d: &DemoRoot) -> String {
    d.report.password.clone()
}

#[test]
fn every_face_answers_from_the_database_and_edits_arrive_by_notify() {
    let Some((d, _pg)) = db_root() else { return };
    let daemon = Daemon::start(&d.root);
    let joe = "joe@example.com";
    let pw = password(&d);

    // SMTP delivery to a database account; unknown addresses stay unknown.
    let r = smtp(&daemon, joe, "first");
    assert!(r.starts_with("250"), "{r}\n{}", daemon.log_text());
    assert_eq!(maildir_count(&d, "joe"), 1);
    let r = smtp(&daemon, "nobody@example.com", "x");
    assert!(r.starts_with("550"), "{r}");
    let r = smtp(&daemon, "x@not-ours.example", "x");
    assert!(r.starts_with("553") || r.starts_with("550"), "{r}");

    // POP3 login and RETR, SMTP AUTH, ODMR AUTH, checkpassword.
    let out = pop_sees(&daemon, joe, &pw, "Subject: first");
    assert!(out.contains("count 1"), "{out}");
    let (code, out) = pop(&daemon, joe, "wrong");
    assert_eq!(code, 3, "{out}");
    let (code, out) = submit(&daemon, joe, &pw, joe);
    assert_eq!(code, 0, "{out}\n{}", daemon.log_text());
    let r = odmr_auth(&daemon, joe, &pw);
    assert!(r.starts_with("235"), "{r}");
    assert_eq!(checkpassword(&d.root, joe, &pw), 0);
    assert_eq!(checkpassword(&d.root, joe, "wrong"), 1);
    assert_eq!(checkpassword(&d.root, "nobody@example.com", "x"), 1);
    // `turnmail deliver` loads the accounts from the database too.
    assert_eq!(deliver(&d.root, joe, true), 0);
    assert_eq!(maildir_count(&d, "joe"), 3);

    // A mailbox added by the CLI logs in on the running daemon within a second.
    let o = with_password(&d, &["user", "add", "ann@example.com"], "ann-secret-1");
    assert!(o.status.success(), "{o:?}");
    let t = within("ann logs in", Duration::from_secs(1), || {
        pop(&daemon, "ann@example.com", "ann-secret-1").0 == 0
    });
    eprintln!("a new mailbox logged in {t:?} after the edit");
    // The edit exported the files, and the database holds the account.
    let exported = std::fs::read_to_string(d.root.join("users/poppasswd")).unwrap();
    assert!(exported.contains("ann@example.com:"), "{exported}");
    // Dovecot's passwd-file view follows the export.
    let dovecot = std::fs::read_to_string(d.root.join("users/dovecot-passwd")).unwrap();
    assert!(dovecot.contains("ann@example.com:"), "{dovecot}");
    assert!(!d.root.join("users/poppasswd.cdb").exists());
    assert_eq!(
        smtp(&daemon, "ann@example.com", "to ann").get(..3),
        Some("250")
    );

    // A new password replaces the old one on the daemon within a second.
    let o = with_password(&d, &["user", "passwd", joe], "joe-new-pass-2");
    assert!(o.status.success(), "{o:?}");
    within("the new password works", Duration::from_secs(1), || {
        pop(&daemon, joe, "joe-new-pass-2").0 == 0
    });
    assert_eq!(pop(&daemon, joe, &pw).0, 3);
    assert_eq!(checkpassword(&d.root, joe, "joe-new-pass-2"), 0);
    assert_eq!(checkpassword(&d.root, joe, &pw), 1);

    // A hand edit of the exported files is no source in this mode.
    std::fs::write(d.root.join("users/poppasswd"), "").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(pop(&daemon, joe, "joe-new-pass-2").0, 0);

    // check and status name the backend and its version.
    let out = ok(&d, &["status"]);
    assert!(out.contains("accounts   postgres"), "{out}");
    assert!(out.contains("the daemon has version"), "{out}");
    let o = turnmail(&d.root, &["check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("accounts: postgres"), "{out}");
}

#[test]
fn a_stopped_database_gives_temporary_failures_then_service_resumes() {
    let Some((d, mut pg)) = db_root() else { return };
    let daemon = Daemon::start(&d.root);
    let joe = "joe@example.com";
    let pw = password(&d);
    assert!(smtp(&daemon, joe, "before").starts_with("250"));
    assert_eq!(maildir_count(&d, "joe"), 1);

    pg.stop();
    let stopped = Instant::now();
    // Within max_stale_secs (and a check's worth), RCPT is a temporary failure.
    let limit = Duration::from_secs(MAX_STALE_SECS + 3);
    within("RCPT 451 after the database stopped", limit, || {
        rcpt(&daemon, joe).starts_with("451 4.3.0")
    });
    eprintln!("temporary failures after {:?}", stopped.elapsed());
    // Every face: temporary, never "no such user" or a bad password.
    for to in [joe, "nobody@example.com", "x@not-ours.example"] {
        let r = smtp(&daemon, to, "x");
        assert!(r.starts_with("451 4.3.0"), "{to}: {r}");
    }
    let (code, out) = pop(&daemon, joe, &pw);
    assert!(code == 3 && out.contains("[SYS/TEMP]"), "{out}");
    let (code, out) = pop(&daemon, "nobody@example.com", "x");
    assert!(code == 3 && out.contains("[SYS/TEMP]"), "{out}");
    let (code, out) = submit(&daemon, joe, &pw, joe);
    assert!(code == 3 && out.contains("454"), "{out}");
    let r = odmr_auth(&daemon, joe, &pw);
    assert!(r.starts_with("454"), "{r}");
    assert_eq!(checkpassword(&d.root, joe, &pw), 111);
    assert_eq!(deliver(&d.root, joe, false), 111);
    assert_eq!(deliver(&d.root, joe, true), 75);
    let o = with_password(&d, &["user", "add", "ann@example.com"], "ann-secret-1");
    assert_eq!(o.status.code(), Some(111), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("database unavailable"), "{err}");
    assert_eq!(maildir_count(&d, "joe"), 1, "nothing delivered while down");

    pg.start();
    let t = within("service back", Duration::from_secs(10), || {
        rcpt(&daemon, joe).starts_with("250")
    });
    assert!(smtp(&daemon, joe, "after").starts_with("250"));
    eprintln!("full service {t:?} after the database started");
    let out = pop_sees(&daemon, joe, &pw, "Subject: after");
    assert!(out.contains("Subject: before"), "{out}");
    assert_eq!(maildir_count(&d, "joe"), 2, "no message lost, none doubled");
    assert_eq!(checkpassword(&d.root, joe, &pw), 0);
    assert_eq!(deliver(&d.root, joe, true), 0);
    assert_eq!(maildir_count(&d, "joe"), 3);
}

#[test]
fn a_daemon_started_while_the_database_is_down_serves_once_it_is_up() {
    let Some((d, mut pg)) = db_root() else { return };
    pg.stop();
    let daemon = Daemon::start(&d.root);
    let r = rcpt(&daemon, "joe@example.com");
    assert!(r.starts_with("451 4.3.0"), "{r}");
    pg.start();
    within(
        "service after the database started",
        Duration::from_secs(10),
        || rcpt(&daemon, "joe@example.com").starts_with("250"),
    );
    assert_eq!(pop(&daemon, "joe@example.com", &password(&d)).0, 0);
}

#[test]
fn two_daemons_on_one_root_and_database_see_the_same_edits() {
    let Some((d, _pg)) = db_root() else { return };
    let a = Daemon::start(&d.root);
    let b = Daemon::start(&d.root);
    let o = with_password(&d, &["user", "add", "ann@example.com"], "ann-secret-1");
    assert!(o.status.success(), "{o:?}");
    for (name, node) in [("a", &a), ("b", &b)] {
        within(
            &format!("ann logs in on node {name}"),
            Duration::from_secs(1),
            || pop(node, "ann@example.com", "ann-secret-1").0 == 0,
        );
    }
    // Mail accepted by one node is read on the other.
    assert!(smtp(&a, "ann@example.com", "via a").starts_with("250"));
    pop_sees(&b, "ann@example.com", "ann-secret-1", "Subject: via a");
    let o = turnmail(&d.root, &["user", "del", "ann@example.com"]);
    assert!(o.status.success(), "{o:?}");
    for node in [&a, &b] {
        within("ann is gone", Duration::from_secs(1), || {
            smtp(node, "ann@example.com", "x").starts_with("550")
        });
    }
}

#[test]
fn an_edit_that_raced_another_stores_and_writes_nothing() {
    use turnmail::admin::edit::{Edit, Kind};
    let Some((d, pg)) = db_root() else { return };
    let pw_path = d.root.join("users/poppasswd");
    let before = std::fs::read(&pw_path).unwrap();
    let mut edit = Edit::begin(&d.root).unwrap();
    // Reads answer from the database, not the file.
    std::fs::write(&pw_path, "").unwrap();
    let text = edit.read_or_empty(&pw_path).unwrap();
    assert!(String::from_utf8_lossy(&text).contains("joe@example.com:"));
    let mut new = text.clone();
    new.extend_from_slice(b"raced@example.com:x:1:/nonexistent\n");
    edit.stage(&pw_path, new, 0o640, Kind::Poppasswd);
    // Another node's editor commits meanwhile.
    pg.psql("UPDATE turnmail_state SET version = version + 1");
    let e = edit.commit().unwrap_err();
    assert!(e.to_string().contains("changed meanwhile"), "{e}");
    assert_eq!(turnmail::admin::exit_code(&e), 111);
    assert_eq!(std::fs::read(&pw_path).unwrap(), b"", "no export written");
    let o = ok(&d, &["user", "list"]);
    assert!(!o.contains("raced@"), "{o}");
    // The next edit reads the database afresh and goes through.
    std::fs::write(&pw_path, before).unwrap();
    let o = with_password(&d, &["user", "add", "ann@example.com"], "ann-secret-1");
    assert!(o.status.success(), "{o:?}");
    assert!(ok(&d, &["user", "list"]).contains("ann@example.com"));
}

#[test]
fn sighup_loads_the_accounts_again() {
    let Some((d, pg)) = db_root() else { return };
    let daemon = Daemon::start(&d.root);
    let pw = password(&d);
    assert_eq!(pop(&daemon, "joe@example.com", &pw).0, 0);
    // A change made behind turnmail's back: with triggers off (a replication role), no
    // version bump and no notification.
    pg.psql(
        "SET session_replication_role = replica; \
         DELETE FROM mailboxes WHERE login = 'joe@example.com'",
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        pop(&daemon, "joe@example.com", &pw).0,
        0,
        "the copy is kept"
    );
    let pid = nix::unistd::Pid::from_raw(daemon.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    within(
        "the deleted mailbox is refused",
        Duration::from_secs(2),
        || {
            let (code, out) = pop(&daemon, "joe@example.com", &pw);
            code == 3 && !out.contains("SYS/TEMP")
        },
    );
}

#[test]
fn an_accounts_change_made_in_sql_reaches_dovecots_passwd_file() {
    let Some((d, pg)) = db_root() else { return };
    let file = d.root.join("users/dovecot-passwd");
    let _ = std::fs::remove_file(&file);
    let daemon = Daemon::start(&d.root);
    // Written at start from the database's accounts.
    within(
        "the passwd-file written at start",
        Duration::from_secs(5),
        || std::fs::read_to_string(&file).is_ok_and(|t| t.contains("joe@example.com:{CRYPT}")),
    );
    // A mailbox added by the operator's own SQL (the trigger announces it): the daemon
    // that installs the new version writes the file, as an edit would.
    let (home, hash, owner) = {
        let row = pg.psql(
            "SELECT home || '|' || password_hash || '|' || owner FROM mailboxes \
             WHERE login = 'joe@example.com'",
        );
        let mut p = row.trim().splitn(3, '|');
        (
            p.next().unwrap().replace("/joe", "/sql"),
            p.next().unwrap().to_string(),
            p.next().unwrap().to_string(),
        )
    };
    pg.psql(&format!(
        "INSERT INTO mailboxes (login, password_hash, owner, home) \
         VALUES ('sql@example.com', '{hash}', '{owner}', '{home}')"
    ));
    within(
        "the SQL mailbox in the passwd-file",
        Duration::from_secs(5),
        || std::fs::read_to_string(&file).is_ok_and(|t| t.contains("sql@example.com:{CRYPT}")),
    );
    assert!(
        daemon.log_text().contains("dovecot-passwd"),
        "{}",
        daemon.log_text()
    );
    pg.psql("DELETE FROM mailboxes WHERE login = 'sql@example.com'");
    within("the SQL mailbox gone again", Duration::from_secs(5), || {
        std::fs::read_to_string(&file)
            .is_ok_and(|t| !t.contains("sql@example.com") && t.contains("joe@example.com"))
    });
}

#[test]
fn a_database_on_another_host_is_reached_over_verified_tls() {
    let Some(mut pg) = Pg::start_new() else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::certs::ca_and_leaf(certs.path());
    let port = pg.serve_tls(&cert, &key);
    let d = demo_root_files();
    let toml = d.root.join("turnmail.toml");
    let base = std::fs::read_to_string(&toml).unwrap();
    let tls_url = format!("postgres://turnmail@localhost:{port}/turnmail?sslmode=require");
    let configure = |extra: &str| {
        std::fs::write(
            &toml,
            format!(
                "{base}\n[accounts]\nbackend = \"postgres\"\n\n[postgres]\nurl = \"{tls_url}\"\nconnect_timeout_secs = 3\n{extra}"
            ),
        )
        .unwrap();
    };
    // A certificate nobody vouches for: refused, nothing done.
    configure("");
    let o = turnmail(&d.root, &["db", "init"]);
    let text = format!("{o:?}");
    assert!(!o.status.success(), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");
    // Plain TCP: the server takes TLS only, so the connections below were encrypted.
    let plain = format!("postgres://turnmail@localhost:{port}/turnmail?sslmode=disable");
    let o = turnmail(&d.root, &["db", "status", "--url", &plain]);
    let text = format!("{o:?}");
    assert!(
        !o.status.success() && text.contains("no encryption"),
        "{text}"
    );
    // With the private CA: the schema, the import, and a daemon whose pool and
    // notification listener use TLS.
    configure(&format!("ca_file = \"{}\"\n", ca.display()));
    ok(&d, &["db", "init"]);
    ok(&d, &["db", "import"]);
    for cdb in ["users/cdb", "users/poppasswd.cdb"] {
        std::fs::remove_file(d.root.join(cdb)).unwrap();
    }
    let daemon = Daemon::start(&d.root);
    assert_eq!(pop(&daemon, "joe@example.com", &password(&d)).0, 0);
    let o = with_password(&d, &["user", "add", "ann@example.com"], "ann-secret-1");
    assert!(o.status.success(), "{o:?}");
    within("ann logs in", Duration::from_secs(2), || {
        pop(&daemon, "ann@example.com", "ann-secret-1").0 == 0
    });
    let sessions = pg.psql("SELECT count(*) FROM pg_stat_ssl WHERE ssl");
    assert!(
        sessions.trim().parse::<u32>().unwrap() >= 2,
        "the daemon's pool and listener over TLS: {sessions}"
    );
}
