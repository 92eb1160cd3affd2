//! The `turnmail` binary end to end: init, check, resolve, newu, serve --demo.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::{demo_root, touch_later, write};

fn turnmail(root: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("TURNMAIL_ROOT")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn init_prints_a_working_login_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("r");
    let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .args(["init"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(out.contains("joe@example.com"), "{out}");
    let pw = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("password:"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(pw.len(), 16);
    // The printed password is the one stored.
    let cfg = turnmail::config::Config::load(&root).unwrap();
    let (e, _) = turnmail::engine::Engine::open(&root, cfg).unwrap();
    assert!(
        e.snapshot()
            .accounts
            .authenticate(b"joe@example.com", pw.as_bytes(), Default::default())
            .is_ok()
    );
    let again = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("init")
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("refusing to touch it"), "{err}");
    assert!(err.contains("turnmail.toml, control/, users/"), "{err}");
}

/// What deploy/install.sh leaves: a directory with an operator's turnmail.toml. Neither
/// init (demo) nor setup (production) may touch it unless told to.
#[test]
fn init_and_setup_refuse_a_directory_holding_an_operators_file() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mine = "# mine\nuser = \"mail\"\n[smtp]\nlisten = [\"0.0.0.0:25\"]\n";
    std::fs::write(root.join("turnmail.toml"), mine).unwrap();
    for args in [vec!["init"], vec!["setup", "--hostname", "mx.example.net"]] {
        let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
            .args(&args)
            .arg(&root)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("(turnmail.toml)") && err.contains("--force"),
            "{err}"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("turnmail.toml")).unwrap(),
            mine
        );
        assert!(!root.join("control").exists());
    }
}

#[test]
fn setup_makes_an_empty_production_root_every_command_can_use() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .args([
            "setup",
            "--hostname",
            "mx.example.net",
            "--smtp",
            "127.0.0.1:2525",
            "--submission",
            "127.0.0.1:2587",
        ])
        .arg(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains("domain add") && out.contains("user add"),
        "{out}"
    );
    assert!(out.contains("POP3S (995) is off"), "{out}");
    assert!(out.contains("127.0.0.1:2587"), "{out}");
    let cfg = turnmail::config::Config::load(&root).unwrap();
    assert_eq!(cfg.smtp.listen, vec!["127.0.0.1:2525".parse().unwrap()]);
    assert_eq!(
        cfg.submission.listen,
        vec!["127.0.0.1:2587".parse().unwrap()]
    );
    // Port 465 without a certificate is left out, as POP3S is.
    assert!(cfg.submissions.listen.is_empty());
    assert_eq!(cfg.pop3.listen[0].port(), 110);
    assert!(cfg.pop3.listen_tls.is_empty());
    // No demo content; check names the one thing left to do.
    let status = turnmail(&root, &["status", "--json"]);
    assert!(status.status.success(), "{status:?}");
    let check = turnmail(&root, &["check"]);
    assert_eq!(check.status.code(), Some(1), "{}", stdout(&check));
    assert!(stdout(&check).contains("1 problem(s)") && stdout(&check).contains("domain add"));
    for args in [
        vec!["domain", "add", "example.net"],
        vec!["user", "add", "joe@example.net", "--generate"],
        vec![
            "site",
            "add",
            "beta",
            "--relayhost",
            "127.0.0.1:2626",
            "--domain",
            "beta.example",
        ],
    ] {
        let o = turnmail(&root, &args);
        assert!(o.status.success(), "{args:?}: {o:?}");
    }
    let check = turnmail(&root, &["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
    let users = stdout(&turnmail(&root, &["user", "list"]));
    assert!(
        users.contains("joe@example.net") && !users.contains("example.com"),
        "{users}"
    );
    // A certificate for testing, from the command line.
    let o = turnmail(&root, &["tls", "selfsigned"]);
    assert!(o.status.success(), "{o:?}");
    assert!(root.join("tls/cert.pem").is_file() && root.join("tls/key.pem").is_file());
    let again = turnmail(&root, &["tls", "selfsigned"]);
    assert_eq!(again.status.code(), Some(2));
}

#[test]
fn check_is_clean_on_a_fresh_root() {
    let d = demo_root();
    let o = turnmail(&d.root, &["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn check_reports_each_pitfall_with_file_and_line() {
    let d = demo_root();
    let r = &d.root;
    let mu = common::mail_user();
    let dhome = r.join("domains/example.com");
    // Domain both in locals and virtualdomains.
    write(&r.join("control/locals"), "mail.example.com\nexample.com\n");
    // uid 0 and an uppercase-ending wildcard; no final dot.
    write(
        &r.join("users/assign"),
        &format!(
            "+example.com-:{n}:{u}:{g}:{h}:-::\n=root:root:0:0:/root:::\n+Bad-X:{n}:{u}:{g}:{h}:-::\n",
            n = mu.name,
            u = mu.uid,
            g = mu.gid,
            h = dhome.display()
        ),
    );
    // A Maildir line without its trailing slash, and a world-writable .qmail.
    write(&dhome.join(".qmail-joe"), "./joe/Maildir\n");
    std::fs::set_permissions(
        dhome.join(".qmail-postmaster"),
        PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    // Missing rcpthosts; a site without RELAYHOST.
    std::fs::remove_file(r.join("control/rcpthosts")).unwrap();
    std::fs::remove_file(r.join("sites/acme/RELAYHOST")).unwrap();
    let o = turnmail(r, &["check"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for want in [
        "control/locals:2: example.com is in locals and in virtualdomains",
        "users/assign:4: file ends without a line starting with a dot",
        "control/rcpthosts: missing",
        "sites/acme: site directory without RELAYHOST",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // A secrets file others can read.
    write(&r.join("users/secrets"), "joe@example.com:s3cret\n");
    std::fs::set_permissions(r.join("users/secrets"), PermissionsExt::from_mode(0o644)).unwrap();
    // With the dot restored, the per-line assign lints and the Maildir line appear.
    let text = std::fs::read_to_string(r.join("users/assign")).unwrap() + ".\n";
    write(&r.join("users/assign"), &text);
    let out = stdout(&turnmail(r, &["check"]));
    for want in [
        "users/assign:2: uid 0",
        "users/assign:3: wildcard",
        ".qmail-joe:1: ./joe/Maildir has no trailing '/'",
        "users/cdb: older than users/assign",
        ".qmail-postmaster: group- or world-writable",
        "users/secrets: holds secrets but every user may read it (mode 644)",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn check_on_something_that_is_not_a_root_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = turnmail(dir.path(), &["check"]);
    assert_eq!(o.status.code(), Some(2));
    let dir2 = demo_root();
    write(&dir2.root.join("turnmail.toml"), "no_such_key = 1\n");
    assert_eq!(turnmail(&dir2.root, &["check"]).status.code(), Some(2));
}

#[test]
fn resolve_explains_and_sets_exit_codes() {
    let d = demo_root();
    let o = turnmail(&d.root, &["resolve", "joe@example.com"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(
        out.contains("delivered-to: example.com-joe@example.com"),
        "{out}"
    );
    assert!(out.contains(".qmail-joe"), "{out}");
    let o = turnmail(&d.root, &["resolve", "x@elsewhere.example"]);
    assert_eq!(o.status.code(), Some(100));
    assert!(stdout(&o).contains("not ours"));
    let o = turnmail(&d.root, &["resolve", "ghost@example.com"]);
    assert_eq!(o.status.code(), Some(100));
    assert!(stdout(&o).contains("unknown mailbox"));
    std::fs::set_permissions(
        d.root.join("domains/example.com"),
        PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let o = turnmail(&d.root, &["resolve", "joe@example.com"]);
    assert_eq!(o.status.code(), Some(111));
}

/// `resolve` says what a real RCPT TO gets, address by address, over a socket: the
/// same reply line, source routes and a bare postmaster included.
#[test]
fn resolve_agrees_with_smtp() {
    let d = demo_root();
    let daemon = common::daemon::Daemon::start(&d.root);
    for a in [
        "joe@example.com",
        "JOE@Example.COM",
        "@ext.test:joe@example.com",
        "@a.example,@b.example:joe@example.com",
        "postmaster",
        "Postmaster",
        "anyone@acme.example",
        "ghost@example.com",
        "victim@gmail.example",
        "joe",
        "joe@",
    ] {
        let mut c = daemon.connect();
        c.reply();
        c.cmd("EHLO test.example");
        assert!(c.cmd("MAIL FROM:<>").starts_with("250"));
        let smtp = c.cmd(&format!("RCPT TO:<{a}>"));
        let o = turnmail(&d.root, &["resolve", "--json", a]);
        let e: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(e["smtp_reply"], smtp.as_str(), "{a}: {e}");
        let want = if smtp.starts_with('2') { 0 } else { 100 };
        assert_eq!(o.status.code(), Some(want), "{a}: {e}");
        // The text form says the same.
        let text = stdout(&turnmail(&d.root, &["resolve", a]));
        assert!(text.contains(&format!("SMTP answers: {smtp}")), "{text}");
    }
}

#[test]
fn resolve_prints_paths_and_addresses_as_text() {
    let d = demo_root();
    let dhome = d.root.join("domains/example.com");
    write(
        &dhome.join(".qmail-team"),
        "./joe/Maildir/\n&ann@example.net\n./team.mbox\n",
    );
    let o = turnmail(&d.root, &["resolve", "team@example.com"]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for want in [
        "line 1: Maildir ./joe/Maildir/",
        "line 2: forward to ann@example.net",
        "line 3: mbox ./team.mbox",
        &format!("home:         {}", dhome.display()),
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("(["), "byte arrays in:\n{out}");
    let j: serde_json::Value = serde_json::from_slice(
        &turnmail(&d.root, &["resolve", "--json", "team@example.com"]).stdout,
    )
    .unwrap();
    assert_eq!(j["outcome"], "local");
    assert_eq!(j["local"]["instructions"][1]["kind"], "forward");
    assert_eq!(j["local"]["instructions"][1]["target"], "ann@example.net");
}

#[test]
fn check_json_lists_the_problems_with_stable_fields() {
    let d = demo_root();
    let o = turnmail(&d.root, &["check", "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["problems"], serde_json::json!([]));
    std::fs::remove_file(d.root.join("sites/acme/RELAYHOST")).unwrap();
    write(&d.root.join("control/locals"), "x\nexample.com\n");
    let o = turnmail(&d.root, &["check", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let problems = j["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["file"] == "control/locals" && p["line"] == 2),
        "{j}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p["file"] == "sites/acme" && p["line"].is_null()),
        "{j}"
    );
    assert!(problems.iter().all(|p| p["message"].is_string()));
}

#[test]
fn newu_compiles_and_keeps_the_old_cdb_on_errors() {
    let d = demo_root();
    let o = turnmail(&d.root, &["newu"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).contains("compiled"));
    let cdb_before = std::fs::read(d.root.join("users/cdb")).unwrap();
    write(&d.root.join("users/assign"), "=joe:joe:1:1:/h:::\n");
    touch_later(&d.root.join("users/assign"), 2);
    let o = turnmail(&d.root, &["newu"]);
    assert_eq!(o.status.code(), Some(111));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("line 2"),
        "{o:?}"
    );
    assert_eq!(std::fs::read(d.root.join("users/cdb")).unwrap(), cdb_before);

    // A big assign shows its progress, as plain lines when stderr is not a terminal.
    let mut big = std::fs::read_to_string(d.root.join("users/assign")).unwrap();
    big.truncate(big.find("=joe").unwrap());
    for i in 0..5000 {
        big.push_str(&format!("=u{i}:mail:8:8:/nonexistent:::\n"));
    }
    big.push_str(".\n");
    write(&d.root.join("users/assign"), &big);
    touch_later(&d.root.join("users/assign"), 3);
    let o = turnmail(&d.root, &["newu"]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("newu assign: 5001/5001 (100%)"), "{err}");
    assert!(stdout(&o).contains("(5000 entries)"), "{o:?}");
}

#[test]
fn commands_need_a_root() {
    let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("check")
        .env_remove("TURNMAIL_ROOT")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("TURNMAIL_ROOT"));
    // The environment variable works as well as --root.
    let d = demo_root();
    let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("check")
        .env("TURNMAIL_ROOT", &d.root)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
}

/// A mistyped --root gets one message and one exit code from every command, before
/// any of them looks for a mail user, a site or an account there.
#[test]
fn every_command_says_the_same_about_a_missing_root() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("no-such-root");
    let want = format!(
        "turnmail: {}: no mail root here (no control/ directory)",
        missing.display()
    );
    for args in [
        &["check"][..],
        &["check", "--json"],
        &["resolve", "joe@example.com"],
        &["newu"],
        &["flush", "acme"],
        &["flush", "--all"],
        &["status"],
        &["queue", "list"],
        &["user", "list"],
        &["user", "add", "joe@example.com", "--generate"],
        &["user", "secret", "joe@example.com", "--show"],
        &["domain", "add", "example.net"],
        &["alias", "list"],
        &["site", "list"],
        &["import", "poppasswd", "/dev/null"],
        &["tls", "selfsigned"],
        &["serve"],
    ] {
        let o = turnmail(&missing, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with(&want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}: {}", stdout(&o));
    }
    assert!(!missing.exists(), "a command created the missing root");
    // Behind qmail or Postfix the same words, with the caller's temporary code.
    let o = deliver(
        &missing,
        &["-f", "a@b.example", "--", "joe@example.com"],
        &[],
        b"x\n",
    );
    assert_eq!(o.status.code(), Some(75));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no mail root here"),
        "{o:?}"
    );
}

#[test]
fn init_and_setup_without_a_directory_say_so_once() {
    for cmd in ["init", "setup"] {
        let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
            .arg(cmd)
            .env_remove("TURNMAIL_ROOT")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2));
        assert_eq!(
            String::from_utf8_lossy(&o.stderr),
            format!("turnmail: {cmd} needs a directory: turnmail {cmd} DIR\n")
        );
    }
}

/// As root, on a root owned by root whose turnmail.toml names a user that does not
/// exist: the message points at turnmail.toml, not at a --user flag flush lacks.
#[test]
fn a_missing_mail_user_is_blamed_on_turnmail_toml() {
    if !common::root_or_skip("running as root") {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("r");
    std::fs::create_dir_all(root.join("control")).unwrap();
    write(
        &root.join("turnmail.toml"),
        "user = \"no-such-user-here\"\n",
    );
    let o = turnmail(&root, &["flush", "--all"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-user-here"), "{err}");
    assert!(
        err.contains("turnmail.toml") && !err.contains("--user"),
        "{err}"
    );
}

fn deliver(root: &std::path::Path, args: &[&str], env: &[(&str, &str)], input: &[u8]) -> Output {
    use std::io::Write;
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnmail"));
    c.arg("--root").arg(root).arg("deliver").args(args);
    for k in ["DEFAULT", "EXT", "HOST", "RECIPIENT", "SENDER"] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A deliver that refuses before reading (no root) closes the pipe: not an error here.
    let _ = child.stdin.take().unwrap().write_all(input);
    child.wait_with_output().unwrap()
}

#[test]
fn deliver_behind_postfix_pipe_uses_sysexits() {
    let d = demo_root();
    let new = d.root.join("domains/example.com/joe/Maildir/new");
    let o = deliver(
        &d.root,
        &["-f", "bob@example.org", "--", "joe@example.com"],
        &[],
        b"Subject: pipe\n\nhi\n",
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let f = std::fs::read_dir(&new)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        std::fs::read(f).unwrap(),
        b"Return-Path: <bob@example.org>\nDelivered-To: example.com-joe@example.com\nSubject: pipe\n\nhi\n"
    );
    let o = deliver(
        &d.root,
        &["-f", "a@b", "--", "ghost@example.com"],
        &[],
        b"x\n",
    );
    assert_eq!(o.status.code(), Some(67));
    // A looping message is a permanent failure (69); a broken mailbox is "try later" (75).
    let o = deliver(
        &d.root,
        &["--", "joe@example.com"],
        &[],
        b"Delivered-To: example.com-joe@example.com\n\nx\n",
    );
    assert_eq!(o.status.code(), Some(69));
    std::fs::set_permissions(
        d.root.join("domains/example.com"),
        PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let o = deliver(&d.root, &["--", "joe@example.com"], &[], b"x\n");
    assert_eq!(o.status.code(), Some(75));
}

#[test]
fn deliver_behind_qmail_reads_the_environment() {
    let d = demo_root();
    let env = [
        ("SENDER", "bob@example.org"),
        ("DEFAULT", "joe"),
        ("EXT", "tm-joe"),
        ("HOST", "example.com"),
    ];
    let o = deliver(&d.root, &[], &env, b"Subject: qmail\n\nhi\n");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let new = d.root.join("domains/example.com/joe/Maildir/new");
    let f = std::fs::read_dir(&new)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(
        std::fs::read(f)
            .unwrap()
            .starts_with(b"Return-Path: <bob@example.org>\n")
    );
    let o = deliver(
        &d.root,
        &[],
        &[("DEFAULT", "ghost"), ("HOST", "example.com")],
        b"x\n",
    );
    assert_eq!(o.status.code(), Some(100));
    let o = deliver(&d.root, &[], &[], b"x\n");
    assert_eq!(o.status.code(), Some(100));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no recipient"));
}

/// `serve --demo` as a new user runs it: the hints name the ports actually bound, each
/// log event is one line on stderr with the protocol's usual name, and a port already
/// taken stops it before any hint is printed.
#[test]
fn serve_demo_hints_use_the_ports_bound_and_log_each_event_once() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), PermissionsExt::from_mode(0o755)).unwrap();
    let dir = d.path().join("demo");
    let port = common::daemon::free_port;
    let (smtp, pop3, odmr) = (port(), port(), port());
    let serve = |extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_turnmail"));
        c.arg("serve")
            .arg("--demo")
            .arg(&dir)
            .args(["--smtp", &format!("127.0.0.1:{smtp}")])
            .args(["--pop3", &format!("127.0.0.1:{pop3}")])
            .args(["--odmr", &format!("127.0.0.1:{odmr}")])
            .args(["--submission", &format!("127.0.0.1:{}", port())])
            .args(["--submissions", &format!("127.0.0.1:{}", port())])
            .args(extra)
            .env_remove("TURNMAIL_ROOT")
            .env_remove("TURNMAIL_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };
    let mut child = serve(&[]).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("stop with Ctrl-C") {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 {
            let _ = child.kill();
            panic!("serve ended: {printed}{:?}", child.wait_with_output());
        }
        printed.push_str(&line);
    }
    // The hints work as printed: swaks' server is listening.
    assert!(
        printed.contains(&format!(
            "swaks --server 127.0.0.1:{smtp} --to joe@example.com"
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!("-P {pop3} -u joe@example.com")),
        "{printed}"
    );
    assert!(
        !printed.contains("2525") && !printed.contains("1110"),
        "{printed}"
    );
    assert!(std::net::TcpStream::connect(("127.0.0.1", smtp)).is_ok());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    for (name, p) in [("SMTP", smtp), ("POP3", pop3), ("ODMR", odmr)] {
        let want = format!("{name} listening on 127.0.0.1:{p}");
        assert_eq!(err.matches(&want).count(), 1, "{want}: {err}");
    }
    for l in err.lines() {
        assert_eq!(
            err.lines().filter(|x| *x == l).count(),
            1,
            "twice: {l}\n{err}"
        );
        for rust_name in ["Smtp ", "Pop3 ", "Odmr "] {
            assert!(!l.contains(rust_name), "{l}");
        }
    }
    // A port in use: the error, and no hints.
    let taken = std::net::TcpListener::bind(("127.0.0.1", smtp)).unwrap();
    let o = serve(&[]).output().unwrap();
    drop(taken);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    let out = stdout(&o);
    assert!(!out.contains("try, in another terminal"), "{out}");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains(&format!("binding SMTP on 127.0.0.1:{smtp}")),
        "{o:?}"
    );
}

/// The README's tour: mail for the site, then at once `turnmail flush acme --to ...`.
/// A listing leaves the current second alone, so flush waits for it instead of saying
/// "nothing queued" about a message delivered a moment ago.
#[test]
fn flush_right_after_delivery_takes_the_new_message() {
    let d = demo_root();
    let sink = common::sink::Sink::start(common::sink::Script::default());
    let to = sink.addr.to_string();
    for i in 1..=3 {
        let o = deliver(
            &d.root,
            &["-f", "a@b.example", "--", "anyone@acme.example"],
            &[],
            format!("Subject: {i}\n\nhello\n").as_bytes(),
        );
        assert!(o.status.success(), "{o:?}");
        let o = turnmail(&d.root, &["flush", "acme", "--to", &to]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{out}{o:?}");
        assert!(
            out.contains("acme: 1 delivered, 0 bounced, 0 kept"),
            "{out}"
        );
        assert_eq!(sink.messages().len(), i);
    }
}
