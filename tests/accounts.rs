//! APOP/CRAM-MD5 secrets and the account files' readers, end to end: `turnmail user
//! secret` on a demo root, the stored forms checked against Dovecot's, logins over real
//! sockets (SMTP AUTH CRAM-MD5, POP3 APOP) against a running daemon, and
//! `[accounts] reader_group` applied by edits and `newu` and accepted by `check`.

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Client, Daemon};
use common::demo_root;

fn run(root: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("TURNMAIL_ROOT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn ok(root: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let o = run(root, args, stdin);
    assert!(o.status.success(), "{args:?}: {o:?}");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn b64(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// SMTP AUTH CRAM-MD5 with `secret`, answered by the hmac crate; the reply code.
fn smtp_cram(d: &Daemon, login: &str, secret: &str) -> String {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let mut c = d.connect();
    c.reply();
    c.cmd("EHLO client.example");
    let challenge = c.cmd("AUTH CRAM-MD5");
    assert!(challenge.starts_with("334 "), "{challenge}");
    let challenge = base64::engine::general_purpose::STANDARD
        .decode(challenge[4..].trim())
        .unwrap();
    let mut mac = <Hmac<md5::Md5> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&challenge);
    let digest = hex(&mac.finalize().into_bytes());
    c.cmd(&b64(format!("{login} {digest}").as_bytes()))
}

/// POP3 APOP with `secret` against the greeting's timestamp; the reply.
fn pop3_apop(d: &Daemon, login: &str, secret: &str) -> String {
    use md5::Digest;
    let mut c = Client::connect(d.pop3);
    let greeting = c.reply();
    let ts = &greeting[greeting.find('<').unwrap()..=greeting.rfind('>').unwrap()];
    let digest = hex(&md5::Md5::digest(format!("{ts}{secret}").as_bytes()));
    c.cmd(&format!("APOP {login} {digest}"))
}

/// Retry `probe` until it answers `want` (the daemon reloads within a second).
fn eventually(what: &str, want: &str, probe: impl Fn() -> String) {
    let start = Instant::now();
    loop {
        let got = probe();
        if got.starts_with(want) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what}: still {got:?}, wanted {want}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn user_secret_sets_shows_and_clears_and_logins_follow() {
    let d = demo_root();
    let r = &d.root;
    let secrets = r.join("users/secrets");
    let joe = "joe@example.com";
    assert!(ok(r, &["user", "secret", joe, "--show"], None).contains("no secret"));

    // CRAM-MD5 only: Dovecot's form of RFC 2195's secret, never the secret itself.
    let out = ok(
        r,
        &["user", "secret", joe, "--stdin"],
        Some("tanstaaftanstaaf\n"),
    );
    assert!(out.contains("CRAM-MD5 only"), "{out}");
    let stored = std::fs::read_to_string(&secrets).unwrap();
    assert_eq!(
        stored,
        "joe@example.com:{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e7015116b\n"
    );
    assert_eq!(std::fs::metadata(&secrets).unwrap().mode() & 0o7777, 0o600);
    assert!(ok(r, &["user", "secret", joe, "--show"], None).contains("CRAM-MD5 only"));
    let list: serde_json::Value =
        serde_json::from_str(&ok(r, &["user", "list", "--json"], None)).unwrap();
    assert_eq!(list[0]["secret"], "cram-md5");
    let o = run(r, &["check"], None);
    assert_eq!(o.status.code(), Some(0), "{o:?}");

    let daemon = Daemon::start(r);
    assert!(smtp_cram(&daemon, joe, "tanstaaftanstaaf").starts_with("235"));
    assert!(smtp_cram(&daemon, joe, "tanstaaf").starts_with("535"));
    // No plaintext stored: APOP cannot work, not even with the right secret.
    assert!(pop3_apop(&daemon, joe, "tanstaaftanstaaf").starts_with("-ERR"));

    // --apop keeps the plaintext: both mechanisms, picked up by the running daemon.
    let out = ok(
        r,
        &["user", "secret", joe, "--stdin", "--apop"],
        Some("tanstaaftanstaaf\n"),
    );
    assert!(out.contains("APOP and CRAM-MD5"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&secrets).unwrap(),
        "joe@example.com:tanstaaftanstaaf\n",
        "one line per login, replaced in place"
    );
    eventually("APOP after --apop", "+OK", || {
        pop3_apop(&daemon, joe, "tanstaaftanstaaf")
    });
    assert!(smtp_cram(&daemon, joe, "tanstaaftanstaaf").starts_with("235"));

    // Cleared: both refused.
    assert!(ok(r, &["user", "secret", joe, "--clear"], None).contains("cleared"));
    eventually("CRAM-MD5 after --clear", "535", || {
        smtp_cram(&daemon, joe, "tanstaaftanstaaf")
    });
    assert!(pop3_apop(&daemon, joe, "tanstaaftanstaaf").starts_with("-ERR"));
    assert!(ok(r, &["user", "secret", joe, "--clear"], None).contains("had no secret"));

    // A generated secret is printed once and works.
    let out = ok(r, &["user", "secret", joe, "--generate"], None);
    let generated = out
        .lines()
        .find_map(|l| l.strip_prefix("secret: "))
        .unwrap()
        .to_string();
    eventually("a generated secret", "235", || {
        smtp_cram(&daemon, joe, &generated)
    });
    assert!(
        !std::fs::read_to_string(&secrets)
            .unwrap()
            .contains(&generated)
    );
}

#[test]
fn user_secret_refusals_and_removal_with_the_account() {
    let d = demo_root();
    let r = &d.root;
    // No account, no secret; nothing written.
    let o = run(
        r,
        &["user", "secret", "ghost@example.com", "--stdin"],
        Some("x\n"),
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no account ghost@example.com"));
    assert!(!r.join("users/secrets").exists());
    // No terminal and no source: says which flags there are.
    let o = run(r, &["user", "secret", "joe@example.com"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("use --stdin or --generate"),
        "{o:?}"
    );
    // A plaintext that would read as the stored form is refused.
    let o = run(
        r,
        &["user", "secret", "joe@example.com", "--stdin", "--apop"],
        Some("{cram-md5}abc\n"),
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    // --show and --clear take no secret.
    let o = run(
        r,
        &["user", "secret", "joe@example.com", "--show", "--clear"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    // A hand-edited line that cannot serve: check names it, and an edit refuses to
    // write a file with it rather than drop it silently.
    let secrets = r.join("users/secrets");
    common::write(&secrets, "# kept\nann@example.com:{CRAM-MD5}12\n");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = String::from_utf8_lossy(&run(r, &["check"], None).stdout).into_owned();
    assert!(
        out.contains("users/secrets:2: {CRAM-MD5} must be followed by 64 hex digits"),
        "{out}"
    );
    let o = run(
        r,
        &["user", "secret", "joe@example.com", "--stdin"],
        Some("s\n"),
    );
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    common::write(&secrets, "# kept\n");
    // Removing the mailbox removes its secret (the next owner of the login starts
    // without one), comments stay.
    ok(
        r,
        &["user", "secret", "joe@example.com", "--stdin", "--apop"],
        Some("s3cret\n"),
    );
    ok(r, &["user", "del", "joe@example.com", "--purge"], None);
    assert_eq!(std::fs::read_to_string(&secrets).unwrap(), "# kept\n");
}

fn dovecot_group() -> Option<(String, u32)> {
    let g = nix::unistd::Group::from_name("dovecot").ok().flatten();
    match g {
        Some(g) => Some((g.name, g.gid.as_raw())),
        None => {
            common::skip("no group dovecot (Debian package dovecot-core)");
            None
        }
    }
}

fn owner(p: &Path) -> (u32, u32, u32) {
    let m = std::fs::metadata(p).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

/// One rule for the account files' readers: what edits and `newu` make is what `check`
/// accepts, and what the mail user later writes keeps it.
#[test]
fn the_reader_group_is_applied_by_edits_and_newu_and_accepted_by_check() {
    if !common::root_or_skip("giving files another group") {
        return;
    }
    let Some((group, gid)) = dovecot_group() else {
        return;
    };
    let d = demo_root();
    let r = &d.root;
    let mu = common::mail_user();
    let users = r.join("users");
    let secrets = users.join("secrets");
    let cdb = users.join("poppasswd.cdb");
    ok(
        r,
        &["user", "secret", "joe@example.com", "--stdin"],
        Some("s3cret\n"),
    );
    // Without a reader group a group-readable secrets file is a problem, and an edit
    // leaves its mode alone.
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = String::from_utf8_lossy(&run(r, &["check"], None).stdout).into_owned();
    assert!(out.contains("reader_group"), "{out}");
    ok(
        r,
        &["user", "secret", "joe@example.com", "--stdin"],
        Some("s3cret\n"),
    );
    assert_eq!(owner(&secrets).2, 0o640);

    common::config(&d, &format!("[accounts]\nreader_group = \"{group}\"\n"));
    let o = run(r, &["check"], None);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains(&format!(
            "users/poppasswd.cdb: not readable by [accounts] reader_group {group}"
        )),
        "{out}"
    );
    // An edit as root gives both files the group, and users/ the setgid bit.
    ok(
        r,
        &["user", "add", "ann@example.com", "--password-stdin"],
        Some("pw\n"),
    );
    assert_eq!(owner(&secrets), (mu.uid, gid, 0o640));
    assert_eq!(owner(&cdb), (mu.uid, gid, 0o640));
    assert_eq!(owner(&users).1, gid);
    assert_ne!(owner(&users).2 & 0o2000, 0);
    let o = run(r, &["check"], None);
    assert_eq!(o.status.code(), Some(0), "{o:?}");

    // The mail user (the daemon, newu) recompiles: the group stays.
    let as_mail_user = |args: &[&str]| {
        Command::new("setpriv")
            .arg(format!("--reuid={}", mu.uid))
            .arg(format!("--regid={}", mu.gid))
            .arg("--clear-groups")
            .arg(env!("CARGO_BIN_EXE_turnmail"))
            .arg("--root")
            .arg(r)
            .args(args)
            .output()
            .unwrap()
    };
    let o = as_mail_user(&["newu"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(owner(&cdb), (mu.uid, gid, 0o640));
    let o = as_mail_user(&["user", "secret", "ann@example.com", "--generate"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(owner(&secrets), (mu.uid, gid, 0o640));

    // What check still refuses: others reading the secrets, another group reading them.
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = String::from_utf8_lossy(&run(r, &["check"], None).stdout).into_owned();
    assert!(out.contains("every user may read it"), "{out}");
    std::os::unix::fs::chown(&secrets, None, Some(mu.gid)).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = String::from_utf8_lossy(&run(r, &["check"], None).stdout).into_owned();
    assert!(
        out.contains(&format!("not by [accounts] reader_group {group}")),
        "{out}"
    );
    // newu puts it right.
    ok(r, &["newu"], None);
    assert_eq!(owner(&secrets), (mu.uid, gid, 0o640));
    assert_eq!(run(r, &["check"], None).status.code(), Some(0));

    // A group that does not exist is named, and stops edits of the account files.
    common::config(&d, "[accounts]\nreader_group = \"no-such-group-here\"\n");
    let out = String::from_utf8_lossy(&run(r, &["check"], None).stdout).into_owned();
    assert!(
        out.contains("turnmail.toml: [accounts] reader_group"),
        "{out}"
    );
    let o = run(r, &["user", "secret", "ann@example.com", "--clear"], None);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
}
