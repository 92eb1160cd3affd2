//! The operator commands end to end with the real binary on temporary roots: domain,
//! user, alias, site, status, the edit lock under 8 concurrent writers, a running
//! daemon picking edits up, and imports from fixture trees laid out as
//! qmail hosts lay them out (single UID, vqpop, vpopmail, serialmail).

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use common::{demo_root, mail_user};
use turnmail::config::Config;
use turnmail::engine::Engine;

fn run(root: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnmail"));
    c.arg("--root")
        .arg(root)
        .args(args)
        .env_remove("TURNMAIL_ROOT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        let mut i = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            i.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn ok(root: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let o = run(root, args, stdin);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json(root: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(root, args, None)).unwrap()
}

fn authenticates(root: &Path, login: &str, pw: &str) -> bool {
    let (e, _) = Engine::open(root, Config::load(root).unwrap()).unwrap();
    e.snapshot()
        .accounts
        .authenticate(login.as_bytes(), pw.as_bytes(), Default::default())
        .is_ok()
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn deliver(root: &Path, rcpt: &str) -> Output {
    run(
        root,
        &["deliver", "-f", "a@b.example", "--", rcpt],
        Some("Subject: test\n\nhello\n"),
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn domain_user_alias_lifecycle() {
    let d = demo_root();
    let r = &d.root;
    // A catch-all policy comes with its mailbox (password printed): the new root
    // checks clean, and mail for unknown addresses lands there.
    let out = ok(
        r,
        &["domain", "add", "Shop.Example", "--policy", "catchall:info"],
        None,
    );
    let info_pw = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_string();
    assert!(authenticates(r, "info@shop.example", &info_pw), "{out}");
    let o = run(r, &["check"], None);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = deliver(r, "nobody-here@shop.example");
    assert!(o.status.success(), "{}", text(&o));
    let home = r.join("domains/shop.example");
    assert_eq!(files_in(&home.join("info/Maildir/new")).len(), 1);
    assert_eq!(mode(&home), 0o700);
    assert_eq!(
        std::fs::read_to_string(home.join(".qmail-default")).unwrap(),
        "./info/Maildir/\n"
    );
    let rh = std::fs::read_to_string(r.join("control/rcpthosts")).unwrap();
    assert!(rh.lines().any(|l| l == "shop.example"), "{rh}");
    let vd = std::fs::read_to_string(r.join("control/virtualdomains")).unwrap();
    assert!(vd.lines().any(|l| l == "shop.example:shop.example"), "{vd}");
    let assign = std::fs::read_to_string(r.join("users/assign")).unwrap();
    let mu = mail_user();
    let want = format!(
        "+shop.example-:{}:{}:{}:{}:-::",
        mu.name,
        mu.uid,
        mu.gid,
        home.display()
    );
    assert!(assign.lines().any(|l| l == want), "{assign}");
    assert!(assign.ends_with("\n.\n"), "{assign}");

    // A user: password from stdin, Maildir, .qmail-USER, poppasswd line.
    ok(
        r,
        &["user", "add", "ann@shop.example", "--password-stdin"],
        Some("s3cret pw\n"),
    );
    assert_eq!(mode(&home.join("ann")), 0o700);
    assert_eq!(mode(&home.join(".qmail-ann")), 0o600);
    assert_eq!(
        std::fs::read_to_string(home.join(".qmail-ann")).unwrap(),
        "./ann/Maildir/\n"
    );
    let pw = std::fs::read_to_string(r.join("users/poppasswd")).unwrap();
    let line = pw
        .lines()
        .find(|l| l.starts_with("ann@shop.example:"))
        .unwrap();
    assert!(line.contains(":$y$"), "{line}");
    assert!(line.ends_with(&format!(":{}:{}", mu.name, home.join("ann").display())));
    let out = ok(r, &["resolve", "ann@shop.example"], None);
    assert!(
        out.contains(&format!(
            ".qmail file:  {}",
            home.join(".qmail-ann").display()
        )),
        "{out}"
    );
    assert!(authenticates(r, "ann@shop.example", "s3cret pw"));
    let o = deliver(r, "ann@shop.example");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(files_in(&home.join("ann/Maildir/new")).len(), 1);

    // Generated password, printed once.
    let out = ok(r, &["user", "add", "carl@shop.example", "--generate"], None);
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix("password: "))
        .unwrap()
        .to_string();
    assert!(authenticates(r, "carl@shop.example", &generated));
    // No password source and no terminal: refused, nothing written.
    let o = run(r, &["user", "add", "bob@shop.example"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(!home.join("bob").exists());
    // Duplicates and unknown domains are refused.
    assert_eq!(
        run(r, &["user", "add", "ann@shop.example", "--generate"], None)
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        run(r, &["user", "add", "x@nowhere.example", "--generate"], None)
            .status
            .code(),
        Some(1)
    );

    // passwd changes the hash only.
    ok(
        r,
        &["user", "passwd", "ann@shop.example", "--password-stdin"],
        Some("other\n"),
    );
    assert!(authenticates(r, "ann@shop.example", "other"));
    assert!(!authenticates(r, "ann@shop.example", "s3cret pw"));

    // list --json: login, size, messages.
    let v = json(r, &["user", "list", "shop.example", "--json"]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["login"], "ann@shop.example");
    assert_eq!(rows[0]["messages"], 1);
    assert!(rows[0]["bytes"].as_u64().unwrap() > 0);
    let table = ok(r, &["user", "list"], None);
    assert!(table.starts_with("LOGIN"), "{table}");

    // Aliases.
    ok(
        r,
        &[
            "alias",
            "add",
            "sales@shop.example",
            "a@x.example",
            "&b@y.example",
        ],
        None,
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".qmail-sales")).unwrap(),
        "&a@x.example\n&b@y.example\n"
    );
    let out = ok(r, &["resolve", "sales@shop.example"], None);
    assert!(out.contains("line 1: forward to a@x.example"), "{out}");
    let v = json(r, &["alias", "list", "--json"]);
    assert_eq!(v[0]["address"], "sales@shop.example");
    for bad in [
        vec!["alias", "add", "x@shop.example", ""],
        vec!["alias", "add", "x@shop.example", "|rm -rf /"],
        vec!["alias", "add", "x@shop.example", "a\u{1}b@c"],
        vec!["alias", "del", "ann@shop.example"],
    ] {
        let o = run(r, &bad, None);
        assert_eq!(o.status.code(), Some(1), "{bad:?}: {}", text(&o));
    }
    assert!(home.join(".qmail-ann").exists());
    ok(
        r,
        &["alias", "del", "sales@shop.example", "a@x.example"],
        None,
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".qmail-sales")).unwrap(),
        "&b@y.example\n"
    );
    ok(r, &["alias", "del", "sales@shop.example"], None);
    assert!(!home.join(".qmail-sales").exists());

    // del keeps the mail in .deleted/ unless --purge.
    ok(r, &["user", "del", "ann@shop.example"], None);
    assert!(!home.join("ann").exists() && !home.join(".qmail-ann").exists());
    let kept = files_in(&r.join(".deleted/shop.example"));
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with("ann-"));
    assert_eq!(
        files_in(
            &r.join(".deleted/shop.example")
                .join(&kept[0])
                .join("Maildir/new")
        )
        .len(),
        1
    );
    assert!(!authenticates(r, "ann@shop.example", "other"));
    let out = ok(r, &["resolve", "ann@shop.example"], None);
    assert!(out.contains(".qmail-default"), "catch-all: {out}");
    let out = ok(r, &["user", "del", "info@shop.example", "--purge"], None);
    assert!(out.contains("catch-all"), "{out}");
    // A catch-all may only point at a mailbox that is there.
    let o = run(
        r,
        &["domain", "policy", "shop.example", "catchall:info"],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("turnmail user add info@shop.example"),
        "{}",
        text(&o)
    );
    ok(
        r,
        &["domain", "policy", "shop.example", "catchall:carl"],
        None,
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".qmail-default")).unwrap(),
        "./carl/Maildir/\n"
    );
    ok(r, &["domain", "policy", "shop.example", "bounce"], None);
    assert!(!home.join(".qmail-default").exists());
    assert!(!r.join(".deleted/shop.example").join("info").exists());

    ok(r, &["check"], None);
    let v = json(r, &["domain", "list", "--json"]);
    assert_eq!(v.as_array().unwrap().len(), 2);
    ok(r, &["domain", "del", "shop.example"], None);
    assert!(!home.exists());
    assert_eq!(files_in(&r.join(".deleted/domains")).len(), 1);
    let rh = std::fs::read_to_string(r.join("control/rcpthosts")).unwrap();
    assert!(!rh.contains("shop.example"));
    let o = run(r, &["resolve", "x@shop.example"], None);
    assert_eq!(o.status.code(), Some(100));
    ok(r, &["check"], None);
}

#[test]
fn domain_add_refuses_bad_names_locals_and_duplicates() {
    let d = demo_root();
    let r = &d.root;
    for bad in ["../etc", ".x.example", "a/b", "a..b", "a\nb", "x:y"] {
        let o = run(r, &["domain", "add", bad], None);
        assert_eq!(o.status.code(), Some(1), "{bad:?}: {}", text(&o));
    }
    let o = run(r, &["domain", "add", "mail.example.com"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("locals"));
    let o = run(r, &["domain", "add", "example.com"], None);
    assert_eq!(o.status.code(), Some(1));
    let o = run(
        r,
        &["domain", "add", "x.example", "--policy", "forward:|prog"],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    ok(
        r,
        &[
            "domain",
            "add",
            "fwd.example",
            "--policy",
            "forward:boss@x.example",
        ],
        None,
    );
    assert_eq!(
        std::fs::read_to_string(r.join("domains/fwd.example/.qmail-default")).unwrap(),
        "&boss@x.example\n"
    );
    ok(r, &["domain", "add", "plain.example"], None);
    assert!(!r.join("domains/plain.example/.qmail-default").exists());
    let o = run(r, &["resolve", "nobody@plain.example"], None);
    assert_eq!(o.status.code(), Some(100), "bounce policy: {}", text(&o));
    // A broken users/assign is never edited.
    let assign = r.join("users/assign");
    let before = std::fs::read(&assign).unwrap();
    std::fs::write(&assign, b"+broken\n.\n").unwrap();
    let o = run(r, &["domain", "add", "new.example"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(std::fs::read(&assign).unwrap(), b"+broken\n.\n");
    std::fs::write(&assign, before).unwrap();
}

#[test]
fn sites_add_list_del_and_status() {
    let d = demo_root();
    let r = &d.root;
    ok(
        r,
        &[
            "site",
            "add",
            "beta",
            "--relayhost",
            "10.1.2.3:2526",
            "--schedule",
            "*/5 * * * *",
            "--domain",
            "beta.example",
            "--domain",
            "beta2.example",
        ],
        None,
    );
    let dir = r.join("sites/beta");
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(
        std::fs::read_to_string(dir.join("RELAYHOST")).unwrap(),
        "10.1.2.3:2526\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(".qmail-default")).unwrap(),
        "./Maildir/\n"
    );
    assert!(dir.join("Maildir/new").is_dir());
    let vd = std::fs::read_to_string(r.join("control/virtualdomains")).unwrap();
    assert!(
        vd.contains("beta.example:site-beta\nbeta2.example:site-beta\n"),
        "{vd}"
    );
    let o = deliver(r, "someone@beta2.example");
    assert!(o.status.success(), "{}", text(&o));
    let v = json(r, &["site", "list", "--json"]);
    let beta = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "beta")
        .unwrap()
        .clone();
    assert_eq!(beta["queued"], 1);
    assert_eq!(beta["relayhost"], "10.1.2.3:2526");
    assert_eq!(beta["schedule"], "*/5 * * * *");
    assert!(beta["next_run"].as_i64().is_some());
    assert_eq!(
        beta["domains"],
        serde_json::json!(["beta.example", "beta2.example"])
    );
    let o = run(r, &["site", "add", "bad", "--relayhost", "a b"], None);
    assert_eq!(o.status.code(), Some(1));
    let o = run(
        r,
        &[
            "site",
            "add",
            "bad",
            "--relayhost",
            "h",
            "--schedule",
            "99 * * * *",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    let o = run(
        r,
        &[
            "site",
            "add",
            "dup",
            "--relayhost",
            "h",
            "--domain",
            "beta.example",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));

    let st = json(r, &["status", "--json"]);
    assert_eq!(st["users"]["count"], 1);
    assert_eq!(st["sites"].as_array().unwrap().len(), 2);
    assert_eq!(st["queue"]["queued"], 0);
    let human = ok(r, &["status"], None);
    assert!(
        human.contains("beta") && human.contains("10.1.2.3:2526"),
        "{human}"
    );

    // A site no domain reaches: said when it is added, and by check.
    let out = ok(r, &["site", "add", "gamma", "--relayhost", "h"], None);
    assert!(out.contains("no domain reaches site gamma"), "{out}");
    let o = run(r, &["check"], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no domain reaches site gamma"),
        "{}",
        text(&o)
    );
    ok(r, &["site", "del", "gamma", "--purge"], None);

    ok(r, &["site", "del", "beta"], None);
    assert!(!dir.exists());
    let kept = files_in(&r.join(".deleted/sites"));
    assert_eq!(kept.len(), 1);
    assert_eq!(
        files_in(&r.join(".deleted/sites").join(&kept[0]).join("Maildir/new")).len(),
        1,
        "the held message is kept"
    );
    let vd = std::fs::read_to_string(r.join("control/virtualdomains")).unwrap();
    assert!(!vd.contains("beta"), "{vd}");
    assert!(
        !std::fs::read_to_string(r.join("users/assign"))
            .unwrap()
            .contains("site-beta")
    );
    ok(r, &["check"], None);
}

#[test]
fn eight_concurrent_user_adds_lose_no_line() {
    let d = demo_root();
    let r = d.root.clone();
    let children: Vec<_> = (0..8)
        .map(|i| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_turnmail"))
                .arg("--root")
                .arg(&r)
                .args([
                    "user",
                    "add",
                    &format!("u{i}@example.com"),
                    "--password-stdin",
                ])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("pw{i}\n").as_bytes())
                .unwrap();
            c
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
    }
    let pw = std::fs::read_to_string(r.join("users/poppasswd")).unwrap();
    assert_eq!(pw.lines().count(), 9, "{pw}");
    for i in 0..8 {
        assert!(authenticates(
            &r,
            &format!("u{i}@example.com"),
            &format!("pw{i}")
        ));
        assert!(r.join(format!("domains/example.com/.qmail-u{i}")).is_file());
    }
    assert!(authenticates(&r, "joe@example.com", &d.report.password));
}

#[test]
fn a_running_daemon_picks_up_edits() {
    let d = demo_root();
    let r = &d.root;
    // Not the default POP3 port: other daemons may run on this machine.
    let pop = common::daemon::free_port();
    common::config(&d, &format!("[pop3]\nlisten = [\"127.0.0.1:{pop}\"]\n"));
    let daemon = Daemon::start(r);
    let mut c = daemon.connect();
    c.reply();
    c.cmd("EHLO client.example");
    c.cmd("MAIL FROM:<a@b.example>");
    let first = c.cmd("RCPT TO:<new@live.example>");
    assert!(first.starts_with("553"), "{first}");
    c.cmd("QUIT");
    ok(r, &["domain", "add", "live.example"], None);
    ok(
        r,
        &["user", "add", "new@live.example", "--password-stdin"],
        Some("pw\n"),
    );
    let start = Instant::now();
    loop {
        let mut c = daemon.connect();
        c.reply();
        c.cmd("EHLO client.example");
        c.cmd("MAIL FROM:<a@b.example>");
        let reply = c.cmd("RCPT TO:<new@live.example>");
        if reply.starts_with("250") {
            assert!(c.cmd("DATA").starts_with("354"));
            c.send(b"Subject: live\r\n\r\nhello\r\n.\r\n");
            let r2 = c.reply();
            assert!(r2.starts_with("250"), "{r2}");
            c.cmd("QUIT");
            break;
        }
        c.cmd("QUIT");
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "daemon did not pick up the edit: {reply}\n{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        files_in(&r.join("domains/live.example/new/Maildir/new")).len(),
        1
    );
}

// ---------------------------------------------------------------------------------
// Imports from fixture trees laid out as qmail hosts lay them out.

fn put(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A Maildir holding one message already read by a POP client (its name is its UIDL).
fn old_maildir(dir: &Path, uidl: &str) {
    for s in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(dir.join(s)).unwrap();
    }
    let f = dir.join("cur").join(format!("{uidl}:2,S"));
    put(&f, "Subject: old\n\nold mail\n");
    let day_ago = std::time::SystemTime::now() - Duration::from_secs(86_400);
    common::set_mtime(&f, day_ago);
}

/// Hand a fixture tree to the mail user, as on a real host (deliveries never run as
/// root).
fn own(path: &Path) {
    let mu = mail_user();
    turnmail::admin::edit::chown_tree(path, mu.uid, mu.gid).unwrap();
}

fn tempdir() -> tempfile::TempDir {
    let t = tempfile::Builder::new()
        .prefix("turnmail-import")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(t.path(), PermissionsExt::from_mode(0o755)).unwrap();
    t
}

fn md5(pw: &str) -> String {
    turnmail::engine::crypt::hash_with_prefix(pw.as_bytes(), "$1$").unwrap()
}

/// `turnmail check` findings, asserting that each is one of `expected`.
fn check_only(root: &Path, expected: &[&str]) {
    let o = run(root, &["check"], None);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", text(&o));
    for l in out
        .lines()
        .filter(|l| !l.ends_with("problem(s) found") && !l.contains("no problems found"))
    {
        assert!(
            expected.iter().any(|e| l.contains(e)),
            "unexpected finding: {l}\n{out}"
        );
    }
}

fn new_maildir_count(dir: &Path) -> usize {
    files_in(&dir.join("new")).len()
}

#[test]
fn import_qmail_single_uid_with_checkpoppasswd() {
    // Seeds 000/002: virtualdomains domain.com:domain-com, one =domain-com-joe line per
    // address, homes under popboxes/, checkpoppasswd's users/poppasswd.
    let t = tempdir();
    let q = t.path().join("var/qmail");
    let mu = mail_user();
    let joe = t.path().join("popboxes/domain-com/joe");
    old_maildir(&joe.join("Maildir"), "1000000000.1.oldhost");
    put(&joe.join(".qmail"), "./Maildir/\n");
    put(&q.join("control/me"), "mail.isp.example\n");
    put(&q.join("control/rcpthosts"), "domain.com\n");
    put(&q.join("control/virtualdomains"), "domain.com:domain-com\n");
    put(
        &q.join("users/assign"),
        &format!(
            "=domain-com-joe:{n}:{u}:{g}:{h}:::\n.\n",
            n = mu.name,
            u = mu.uid,
            g = mu.gid,
            h = joe.display()
        ),
    );
    let pwfile = format!(
        "testid:{}:{}:{}\nbroken line\nnohash::{}:{}\n",
        md5("testpw"),
        mu.name,
        joe.display(),
        mu.name,
        joe.display()
    );
    put(&q.join("users/poppasswd"), &pwfile);
    own(t.path());
    std::fs::set_permissions(q.join("users/poppasswd"), PermissionsExt::from_mode(0o640)).unwrap();

    let root = t.path().join("turnmail");
    // A dry run writes nothing.
    let out = ok(
        &root,
        &[
            "import",
            "qmail",
            "--from",
            q.to_str().unwrap(),
            "--dry-run",
        ],
        None,
    );
    assert!(
        out.contains("dry run") && out.contains("turnmail check"),
        "{out}"
    );
    assert!(!root.exists());
    let o = run(
        &root,
        &["import", "qmail", "--from", q.to_str().unwrap()],
        None,
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("could not map"), "{out}");
    assert!(
        out.contains("users/poppasswd line 3"),
        "empty hash reported: {out}"
    );
    check_only(&root, &["poppasswd"]);
    // Mail lands in the existing Maildir; the old message and its name stay.
    let o = deliver(&root, "joe@domain.com");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(new_maildir_count(&joe.join("Maildir")), 1);
    assert_eq!(
        files_in(&joe.join("Maildir/cur")),
        vec!["1000000000.1.oldhost:2,S"]
    );
    // The crypt hash was kept: the old password still works.
    assert!(authenticates(&root, "testid", "testpw"));

    // The same poppasswd merged into another root with import poppasswd.
    let d = demo_root();
    let file = t.path().join("poppasswd.txt");
    put(&file, &pwfile);
    let out = ok(
        &d.root,
        &["import", "poppasswd", file.to_str().unwrap(), "--dry-run"],
        None,
    );
    assert!(out.contains("1 account(s)"), "{out}");
    assert!(!authenticates(&d.root, "testid", "testpw"));
    let out = ok(
        &d.root,
        &["import", "poppasswd", file.to_str().unwrap()],
        None,
    );
    assert!(out.contains("txt:2:") && out.contains("txt:3:"), "{out}");
    assert!(authenticates(&d.root, "testid", "testpw"));
    assert!(authenticates(
        &d.root,
        "joe@example.com",
        &d.report.password
    ));
    // Importing again maps nothing new and loses nothing.
    ok(
        &d.root,
        &["import", "poppasswd", file.to_str().unwrap()],
        None,
    );
    let pw = std::fs::read_to_string(d.root.join("users/poppasswd")).unwrap();
    assert_eq!(pw.lines().count(), 2, "{pw}");
}

#[test]
fn import_qmail_vqpop_per_domain_directories() {
    // Seed 001: acme.com:alias-vdom-acme, ~alias/.qmail-vdom-default |forward "$EXT2",
    // =acme-joeuser lines with homes under /var/mailhome/DOMAIN/j/USER, and vqpop's
    // per-domain user:hash password lists.
    let t = tempdir();
    let q = t.path().join("var/qmail");
    let mu = mail_user();
    let home = t.path().join("var/mailhome/acme.com/j/joeuser");
    old_maildir(&home.join("Maildir"), "900000000.77.oldpop");
    put(&q.join("control/rcpthosts"), "acme.com\n");
    put(
        &q.join("control/virtualdomains"),
        "acme.com:alias-vdom-acme\n",
    );
    put(&q.join("alias/.qmail-vdom-default"), "|forward \"$EXT2\"\n");
    put(
        &q.join("users/assign"),
        &format!(
            "=acme-joeuser:{n}:{u}:{g}:{h}:::\n.\n",
            n = mu.name,
            u = mu.uid,
            g = mu.gid,
            h = home.display()
        ),
    );
    own(t.path());
    let root = t.path().join("turnmail");
    let out = ok(
        &root,
        &["import", "qmail", "--from", q.to_str().unwrap()],
        None,
    );
    assert!(out.contains("acme.com:acme"), "{out}");
    let vd = std::fs::read_to_string(root.join("control/virtualdomains")).unwrap();
    assert_eq!(vd, "acme.com:acme\n");
    let list = t.path().join("acme.users");
    put(
        &list,
        &format!("joeuser:{}\nghost:{}\n", md5("joepass"), md5("x")),
    );
    let o = run(
        &root,
        &[
            "import",
            "poppasswd",
            list.to_str().unwrap(),
            "--domain",
            "acme.com",
        ],
        None,
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("ghost@acme.com"), "unmapped ghost: {out}");
    assert!(authenticates(&root, "joeuser@acme.com", "joepass"));
    let pw = std::fs::read_to_string(root.join("users/poppasswd")).unwrap();
    assert!(pw.contains(&format!(":{}\n", home.display())), "{pw}");
    let o = deliver(&root, "joeuser@acme.com");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(new_maildir_count(&home.join("Maildir")), 1);
    check_only(&root, &[]);
}

#[test]
fn import_vpopmail_keeps_maildirs_and_uidls() {
    // Seed 003: ~vpopmail/domains/DOMAIN/vpasswd, user dirs with Maildirs, domain
    // .qmail-default running vdelivermail, .qmail-* aliases, a valias export.
    let t = tempdir();
    let v = t.path().join("home/vpopmail");
    let dom = v.join("domains/stilen.com");
    old_maildir(&dom.join("joe/Maildir"), "1111111111.22.vpop");
    old_maildir(&dom.join("ann/Maildir"), "1111111112.23.vpop");
    put(
        &dom.join("vpasswd"),
        &format!(
            "joe:{}:1:0:Joe:{}:NOQUOTA\nann:{}:1:0:Ann:{}:50M\nlost:{}:1:0:Lost:{}:NOQUOTA\nbad line\n",
            md5("joepw"),
            dom.join("joe").display(),
            md5("annpw"),
            dom.join("ann").display(),
            md5("x"),
            dom.join("lost").display()
        ),
    );
    put(
        &dom.join(".qmail-default"),
        "| /home/vpopmail/bin/vdelivermail '' bounce-no-mailbox\n",
    );
    put(&dom.join(".qmail-sales"), "&joe@stilen.com\n");
    put(&dom.join(".qmail-list"), "|/usr/bin/ezmlm-send ~/list\n");
    put(&v.join("valias.txt"), "info@stilen.com -> ann@stilen.com\n");
    // Alias domains as vaddaliasdomain left them: an assign line routing stilen.net to
    // stilen.com's directory, and (older hosts) a domain directory that is a link.
    let assign = t.path().join("var/qmail/users/assign");
    put(
        &assign,
        &format!(
            "+stilen.com-:stilen.com:89:89:{d}:-::\n+stilen.net-:stilen.com:89:89:{d}:-::\n.\n",
            d = dom.display()
        ),
    );
    std::os::unix::fs::symlink("stilen.com", v.join("domains/stilen.org")).unwrap();
    own(t.path());
    let d = demo_root();
    let r = &d.root;
    let out = ok(
        r,
        &[
            "import",
            "vpopmail",
            "--from",
            v.to_str().unwrap(),
            "--dry-run",
        ],
        None,
    );
    assert!(out.contains("dry run"), "{out}");
    assert!(!r.join("domains/stilen.com").exists());
    let o = run(
        r,
        &[
            "import",
            "vpopmail",
            "--from",
            v.to_str().unwrap(),
            "--assign",
            assign.to_str().unwrap(),
        ],
        None,
    );
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    for want in [
        "lost@stilen.com",
        "vpasswd:4",
        ".qmail-list",
        "quota 50M as 52428800S",
        "2 mailbox(es)",
        "alias domain stilen.net of stilen.com",
        "alias domain stilen.org of stilen.com",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    // vpopmail's quota field: users/quota and the Maildir's maildirsize header.
    let q = std::fs::read_to_string(r.join("users/quota")).unwrap();
    assert!(q.contains("ann@stilen.com:52428800S\n"), "{q}");
    assert!(!q.contains("joe@stilen.com"), "{q}");
    let md = std::fs::read_to_string(dom.join("ann/Maildir/maildirsize")).unwrap();
    assert!(md.starts_with("52428800S\n"), "{md}");
    assert!(authenticates(r, "joe@stilen.com", "joepw"));
    assert!(authenticates(r, "ann@stilen.com", "annpw"));
    let pw = std::fs::read_to_string(r.join("users/poppasswd")).unwrap();
    assert!(
        pw.contains(&format!(":{}\n", dom.join("joe").display())),
        "{pw}"
    );
    let o = deliver(r, "joe@stilen.com");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(new_maildir_count(&dom.join("joe/Maildir")), 1);
    assert_eq!(
        files_in(&dom.join("joe/Maildir/cur")),
        vec!["1111111111.22.vpop:2,S"]
    );
    let out = ok(r, &["resolve", "sales@stilen.com"], None);
    assert!(out.contains("forward to "), "{out}");
    let out = ok(r, &["resolve", "info@stilen.com"], None);
    assert!(out.contains("forward to "), "valias: {out}");
    assert_eq!(
        std::fs::read_to_string(r.join("domains/stilen.com/.qmail-info")).unwrap(),
        "&ann@stilen.com\n"
    );
    let o = run(r, &["resolve", "nobody@stilen.com"], None);
    assert_eq!(
        o.status.code(),
        Some(100),
        "bounce-no-mailbox: {}",
        text(&o)
    );
    check_only(r, &[]);
    // The alias domains log in and deliver as stilen.com's mailboxes, and are not
    // domains of their own with copies of its accounts.
    assert!(authenticates(r, "joe@stilen.net", "joepw"));
    assert!(authenticates(r, "ann@stilen.org", "annpw"));
    let o = deliver(r, "joe@stilen.org");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(new_maildir_count(&dom.join("joe/Maildir")), 2);
    let pw = std::fs::read_to_string(r.join("users/poppasswd")).unwrap();
    assert!(
        !pw.contains("stilen.org") && !pw.contains("stilen.net"),
        "{pw}"
    );
    let v = json(r, &["user", "list", "stilen.com", "--json"]);
    assert_eq!(v[0]["login"], "ann@stilen.com");
    assert_eq!(v[1]["messages"], 3);
    // Fetched over POP3: the old message keeps its UIDL, so clients do not fetch it again.
    // (Messages of the current second are listed from the next second on.)
    std::thread::sleep(Duration::from_millis(1100));
    let uidls = pop3_uidls(r, "joe@stilen.com", "joepw");
    assert_eq!(uidls.len(), 3, "{uidls:?}");
    assert!(
        uidls.contains(&"1111111111.22.vpop".to_string()),
        "{uidls:?}"
    );
}

/// Start `turnmail serve` with a POP3 listener, log in and return the UIDL list.
fn pop3_uidls(root: &Path, login: &str, pw: &str) -> Vec<String> {
    use std::io::{BufRead, BufReader};
    use std::net::TcpStream;
    let smtp = common::daemon::free_port();
    let pop = common::daemon::free_port();
    let odmr = common::daemon::free_port();
    let log = std::fs::File::create(root.with_extension("pop3-log")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(root)
        .args(["serve", "--smtp", &format!("127.0.0.1:{smtp}")])
        .args(["--pop3", &format!("127.0.0.1:{pop}")])
        .args(["--odmr", &format!("127.0.0.1:{odmr}")])
        .args([
            "--submission",
            &format!("127.0.0.1:{}", common::daemon::free_port()),
        ])
        .args([
            "--submissions",
            &format!("127.0.0.1:{}", common::daemon::free_port()),
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let start = Instant::now();
    let s = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", pop)) {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no POP3 listener"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let mut line = || {
        let mut l = String::new();
        r.read_line(&mut l).unwrap();
        l.trim_end().to_string()
    };
    assert!(line().starts_with("+OK"));
    let mut out = Vec::new();
    for cmd in [format!("USER {login}"), format!("PASS {pw}"), "UIDL".into()] {
        w.write_all(format!("{cmd}\r\n").as_bytes()).unwrap();
        let first = line();
        assert!(first.starts_with("+OK"), "{cmd}: {first}");
        if cmd == "UIDL" {
            loop {
                let l = line();
                if l == "." {
                    break;
                }
                out.push(l.split_whitespace().nth(1).unwrap_or_default().to_string());
            }
        }
    }
    w.write_all(b"QUIT\r\n").unwrap();
    let _ = child.kill();
    let _ = child.wait();
    out
}

#[test]
fn import_qmail_in_place_with_serialmail_sites() {
    // Seed 004: +DOMAIN- lines into /home/popmail/e/ex1/DOMAINS/DOMAIN with absolute
    // Maildir lines, a serialmail site directory with RELAYHOST flushed from cron.
    let t = tempdir();
    let q = t.path().join("var/qmail");
    let mu = mail_user();
    let ex1 = t.path().join("home/popmail/e/ex1");
    let dhome = ex1.join("DOMAINS/example.net");
    let popbox = ex1.join("POP/ex1-0001");
    old_maildir(&popbox, "1200000000.5.old");
    put(
        &dhome.join(".qmail-joe"),
        &format!("{}/\n", popbox.display()),
    );
    put(&dhome.join(".qmail-postmaster"), "&joe@example.net\n");
    let site = t.path().join("home/serialmail/some.example.net");
    put(&site.join("RELAYHOST"), "some.example.net\n");
    put(&site.join(".qmail-default"), "./Maildir/\n");
    for s in ["tmp", "new", "cur"] {
        std::fs::create_dir_all(site.join("Maildir").join(s)).unwrap();
    }
    put(&q.join("control/me"), "mail.isp.example\n");
    put(&q.join("control/locals"), "mail.isp.example\n");
    put(&q.join("control/rcpthosts"), "example.net\n.example.net\n");
    put(
        &q.join("control/virtualdomains"),
        "example.net:example.net\n.example.net:example.net\nsome.example.net:some.example.net\n",
    );
    let ids = format!("{}:{}:{}", mu.name, mu.uid, mu.gid);
    put(
        &q.join("users/assign"),
        &format!(
            "+example.net-:{ids}:{}:-::\n+some.example.net-:{ids}:{}:-::\n.\n",
            dhome.display(),
            site.display()
        ),
    );
    put(
        &q.join("users/poppasswd"),
        &format!(
            "ex1-0001:{}:{}:{}\n",
            md5("popw"),
            mu.name,
            popbox.display()
        ),
    );
    own(t.path());
    std::fs::set_permissions(q.join("users/poppasswd"), PermissionsExt::from_mode(0o640)).unwrap();
    let glob = format!("{}/home/serialmail/*", t.path().display());
    let args = [
        "import",
        "qmail",
        "--from",
        q.to_str().unwrap(),
        "--sites",
        &glob,
        "--schedule",
        "*/2 * * * *",
    ];
    let o = run(&q, &args, None);
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("site some.example.net"), "{out}");
    assert!(out.contains("is itself a Maildir"), "{out}");
    // Adopted in place: nothing of qmail's moved, the cdbs compiled, sites configured.
    assert!(q.join("users/cdb").is_file() && q.join("users/poppasswd.cdb").is_file());
    let cfg = std::fs::read_to_string(q.join("turnmail.toml")).unwrap();
    assert!(cfg.contains(&glob), "{cfg}");
    let st = std::fs::read_to_string(site.join("site.toml")).unwrap();
    assert!(
        st.contains("*/2 * * * *") && st.contains("some.example.net"),
        "{st}"
    );
    let v = json(&q, &["site", "list", "--json"]);
    assert_eq!(v[0]["site"], "some.example.net");
    assert_eq!(v[0]["schedule"], "*/2 * * * *");
    check_only(&q, &["poppasswd"]);
    // Mail for the site is held in its spool; mail for joe lands in the POP box.
    let o = deliver(&q, "anyone@some.example.net");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(new_maildir_count(&site.join("Maildir")), 1);
    let o = deliver(&q, "joe@example.net");
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(new_maildir_count(&popbox), 1);
    let v = json(&q, &["site", "list", "--json"]);
    assert_eq!(v[0]["queued"], 1);
    // Running the import again changes nothing.
    let o = run(&q, &args, None);
    assert!(o.status.success(), "{}", text(&o));
    let cfg2 = std::fs::read_to_string(q.join("turnmail.toml")).unwrap();
    assert_eq!(cfg, cfg2);
}

/// The way MIGRATING.md goes with the package: an empty root (turnmail setup, whose
/// turnmail.toml links to the operator's settings file), then `import qmail` into it.
/// A root that already holds domains is refused; the settings file keeps its comments
/// and stays the one the link points to.
#[test]
fn import_qmail_into_the_empty_root_setup_made() {
    let t = tempdir();
    let q = t.path().join("var/qmail");
    let mu = mail_user();
    let site = t.path().join("serialmail/acme");
    put(&site.join("RELAYHOST"), "mail.acme.example:25\n");
    put(&site.join(".qmail-default"), "./Maildir/\n");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(site.join("Maildir").join(sub)).unwrap();
    }
    put(&q.join("control/me"), "mail.isp.example\n");
    put(&q.join("control/rcpthosts"), "acme.example\n");
    put(&q.join("control/virtualdomains"), "acme.example:acme\n");
    put(
        &q.join("users/assign"),
        &format!(
            "+acme-:{n}:{u}:{g}:{h}:-::\n.\n",
            n = mu.name,
            u = mu.uid,
            g = mu.gid,
            h = site.display()
        ),
    );
    own(t.path());
    let etc = t.path().join("etc-turnmail.toml");
    let mine = format!(
        "# the operator's settings\nuser = \"{}\"\n\n[log]\n# json for the collector\nformat = \"json\"\n",
        mu.name
    );
    put(&etc, &mine);
    let root = t.path().join("lib/turnmail");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .args([
            "setup",
            "--hostname",
            "mx.isp.example",
            "--user",
            &mu.name,
            "--config",
        ])
        .arg(&etc)
        .arg(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let glob = format!("{}/*", site.parent().unwrap().display());
    let out = ok(
        &root,
        &[
            "import",
            "qmail",
            "--from",
            q.to_str().unwrap(),
            "--sites",
            &glob,
        ],
        None,
    );
    assert!(out.contains("site acme"), "{out}");
    assert_eq!(std::fs::read_link(root.join("turnmail.toml")).unwrap(), etc);
    let now = std::fs::read_to_string(&etc).unwrap();
    assert!(now.starts_with("# the operator's settings\n"), "{now}");
    assert!(now.contains("# json for the collector"), "{now}");
    let c = turnmail::config::Config::load(&root).unwrap();
    assert!(c.sites.roots.contains(&glob), "{:?}", c.sites.roots);
    let list = ok(&root, &["site", "list"], None);
    assert!(
        list.contains("acme") && list.contains("acme.example"),
        "{list}"
    );
    // Now that it holds a domain, a second import into it is refused.
    let o = run(
        &root,
        &["import", "qmail", "--from", q.to_str().unwrap()],
        None,
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("already holds a mail root with domains"),
        "{}",
        text(&o)
    );
}
