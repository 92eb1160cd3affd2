//! A host laid out by hand the way qmail + serialmail hosts are: no site.toml, only
//! control/virtualdomains, users/assign (two domains, each with its own id, pointing
//! at one site directory) and a site directory outside the mail root holding
//! RELAYHOST, Maildir/ and .qmail-default. The real daemon and CLI find the site by
//! its domains (ETRN by node, `@domain` and a `.suffix` entry; fetchmail's ODMR naming
//! a domain), flush both prefixes in one connection, and say the same in their output.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::daemon::{Client, Daemon};
use common::sink::{Script, Sink};
use common::write;

fn chown_tree(p: &Path) {
    if !common::is_root() {
        return;
    }
    let mu = common::mail_user();
    std::os::unix::fs::chown(p, Some(mu.uid), Some(mu.gid)).unwrap();
    if p.is_dir() {
        for e in std::fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path());
        }
    }
}

fn turnmail(root: &Path, args: &[&str]) -> (i32, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), s)
}

fn json(root: &Path, args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{args:?}: {o:?}");
    serde_json::from_slice(&o.stdout).unwrap()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Up to two seconds for `f`.
fn wait_briefly_for(mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The host: ROOT (qmail's control/ and users/, a turnmail.toml naming the site
/// directories), POP/example.com (a POP domain's home) and serialmail/SITE outside it.
struct Host {
    _dir: tempfile::TempDir,
    root: PathBuf,
    site: PathBuf,
}

fn host(sink: &Sink) -> Host {
    let dir = tempfile::Builder::new()
        .prefix("turnmail-handmade")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let t = dir.path();
    let root = t.join("qmail");
    let site = t.join("serialmail/some.example.com");
    let lone = t.join("serialmail/lone");
    for d in [
        root.join("control"),
        root.join("users"),
        t.join("popmail/example.com"),
        site.join("Maildir/new"),
        site.join("Maildir/cur"),
        site.join("Maildir/tmp"),
        lone.join("Maildir/new"),
        lone.join("Maildir/cur"),
        lone.join("Maildir/tmp"),
    ] {
        std::fs::create_dir_all(d).unwrap();
    }
    let mu = common::mail_user();
    let (u, g) = (mu.uid, mu.gid);
    write(&root.join("control/me"), "mail.example.net\n");
    write(
        &root.join("control/rcpthosts"),
        "example.com\n.example.com\nsecond.example.org\n",
    );
    write(
        &root.join("control/virtualdomains"),
        "example.com:example.com\n.example.com:example.com\n\
         some.example.com:some.example.com\n.some.example.com:some.example.com\n\
         second.example.org:second.example.org\n",
    );
    write(
        &root.join("users/assign"),
        &format!(
            "+example.com-:{n}:{u}:{g}:{pop}:-::\n\
             +some.example.com-:{n}:{u}:{g}:{site}:-::\n\
             +second.example.org-:{n}:{u}:{g}:{site}:-::\n\
             +lone-:{n}:{u}:{g}:{lone}:-::\n.\n",
            n = mu.name,
            pop = t.join("popmail/example.com").display(),
            site = site.display(),
            lone = lone.display(),
        ),
    );
    write(
        &root.join("turnmail.toml"),
        &format!(
            "user = \"{}\"\n[sites]\nroots = [\"{}/serialmail/*\"]\n",
            mu.name,
            t.display()
        ),
    );
    for s in [&site, &lone] {
        write(&s.join("RELAYHOST"), &format!("{}\n", sink.addr));
        write(&s.join(".qmail-default"), "./Maildir/\n");
    }
    chown_tree(t);
    let (code, out) = turnmail(&root, &["newu"]);
    assert_eq!(code, 0, "{out}");
    chown_tree(&root);
    Host {
        _dir: dir,
        root,
        site,
    }
}

/// Deliver one message through the daemon's SMTP listener.
fn send(s: &Daemon, rcpt: &str) {
    let mut c: Client = s.connect();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO client.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<bob@example.org>").starts_with("250"));
    let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
    assert!(r.starts_with("250"), "{rcpt}: {r}");
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd(&format!("Subject: to {rcpt}\r\n\r\nhello\r\n."));
    assert!(r.starts_with("250"), "{rcpt}: {r}");
    assert!(c.cmd("QUIT").starts_with("221"));
}

/// Files in the site's spool, dated back so that the next flush takes them (a
/// flush leaves files of the current second alone).
fn spool_files(h: &Host) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(h.site.join("Maildir").join(sub)).unwrap() {
            let p = e.unwrap().path();
            common::set_mtime(&p, SystemTime::now() - Duration::from_secs(5));
            out.push(p);
        }
    }
    out
}

fn recipients(sink: &Sink) -> Vec<String> {
    let mut to: Vec<String> = sink.messages().into_iter().map(|m| m.to).collect();
    to.sort();
    to
}

#[test]
fn a_hand_made_host_is_served_by_domain_with_every_prefix() {
    if !common::root_or_skip("a mail root owned by the mail user") {
        return;
    }
    let sink = Sink::start(Script {
        pipelining: true,
        ..Script::default()
    });
    let h = host(&sink);
    let r = &h.root;

    // What the operator sees: the site's domains come from virtualdomains; the
    // directory no domain reaches is named by check.
    let sites = json(r, &["site", "list", "--json"]);
    let some = sites
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["site"] == "some.example.com")
        .unwrap_or_else(|| panic!("{sites}"))
        .clone();
    assert_eq!(
        some["domains"],
        serde_json::json!([
            ".some.example.com",
            "second.example.org",
            "some.example.com"
        ])
    );
    assert_eq!(some["dir"], h.site.display().to_string());
    let (code, out) = turnmail(r, &["check"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no domain reaches site lone"), "{out}");
    assert!(out.contains("1 problem(s) found"), "{out}");

    let s = Daemon::start(r);
    send(&s, "joe@some.example.com");
    send(&s, "ann@second.example.org");
    // A file of a third prefix: set aside by the flush, never sent.
    let stray = h.site.join("Maildir/new/1700000000.M1P1.other");
    write(
        &stray,
        "Return-Path: <bob@example.org>\nDelivered-To: other.example-x@other.example\n\nx\n",
    );
    chown_tree(&stray);
    assert_eq!(spool_files(&h).len(), 3);
    let dts: Vec<String> = spool_files(&h)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .filter_map(|t| t.lines().nth(1).map(str::to_string))
        .collect();
    assert!(
        dts.contains(&"Delivered-To: some.example.com-joe@some.example.com".to_string())
            && dts.contains(&"Delivered-To: second.example.org-ann@second.example.org".to_string()),
        "{dts:?}"
    );

    // ETRN by node: both prefixes in one connection; the stray is quarantined.
    let mut c = s.connect();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO client.example").contains("ETRN"));
    assert_eq!(
        c.cmd("ETRN some.example.com"),
        "253 2.0.0 OK, 3 pending messages for node some.example.com started"
    );
    wait_for("both messages", || sink.messages().len() == 2);
    assert_eq!(
        recipients(&sink),
        ["ann@second.example.org", "joe@some.example.com"]
    );
    assert_eq!(
        sink.connections.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    wait_for("the spool to empty", || spool_files(&h).is_empty());
    assert!(
        h.site
            .join("Maildir/.quarantine/1700000000.M1P1.other")
            .is_file()
    );

    // ETRN @domain, and a host under the `.suffix` entry.
    send(&s, "ann@second.example.org");
    spool_files(&h);
    assert_eq!(
        c.cmd("ETRN @example.org"),
        "253 2.0.0 OK, 1 pending messages for node @example.org started"
    );
    wait_for("the third message", || sink.messages().len() == 3);
    // The flush settles the file and ends a moment after the sink has the message;
    // until then the answer is 252 (already running).
    wait_for("the third flush to end", || spool_files(&h).is_empty());
    let mut reply = c.cmd("ETRN host.some.example.com");
    for _ in 0..5 {
        if !reply.starts_with("252") {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
        reply = c.cmd("ETRN host.some.example.com");
    }
    assert_eq!(
        reply,
        "251 2.0.0 OK, no messages waiting for node host.some.example.com"
    );
    assert!(c.cmd("ETRN www.example.com").starts_with("458"));
    assert!(c.cmd("QUIT").starts_with("221"));

    // status shows the site with its domains and its last flush.
    wait_for("the flush's status", || {
        let st = json(r, &["status", "--json"]);
        st["sites"].as_array().unwrap().iter().any(|x| {
            x["site"] == "some.example.com"
                && x["queued"] == 0
                && x["last_result"]
                    .as_str()
                    .is_some_and(|l| l.contains("delivered"))
                && x["domains"].as_array().unwrap().len() == 3
        })
    });

    // ODMR: fetchmail names a domain; the account is the only site.toml line (read
    // by a daemon started afresh: a running one looks at site stamps every 30 s).
    drop(s);
    write(
        &h.site.join("site.toml"),
        "accounts = [\"cust@second.example.org\"]\n",
    );
    let hash = turnmail::engine::crypt::hash_new(b"odmr-pw").unwrap();
    let mu = common::mail_user();
    write(
        &r.join("users/poppasswd"),
        &format!(
            "cust@second.example.org:{hash}:{}:{}\n",
            mu.name,
            h.site.display()
        ),
    );
    write(
        &r.join("users/secrets"),
        "cust@second.example.org:odmr-secret\n",
    );
    std::fs::set_permissions(
        r.join("users/secrets"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    chown_tree(&h.site);
    chown_tree(r);
    let (code, out) = turnmail(r, &["newu"]);
    assert_eq!(code, 0, "{out}");
    chown_tree(r);
    let s = Daemon::start(r);
    send(&s, "joe@some.example.com");
    send(&s, "eve@second.example.org");
    spool_files(&h);
    let fm = h.root.parent().unwrap().join("fm");
    std::fs::create_dir(&fm).unwrap();
    let rc = fm.join("rc");
    write(
        &rc,
        &format!(
            "poll 127.0.0.1 protocol ODMR port {} user \"cust@second.example.org\" \
             password \"odmr-secret\" fetchdomains second.example.org smtphost 127.0.0.1/{}\n",
            s.odmr.port(),
            sink.addr.port()
        ),
    );
    std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    // fetchmail gives up on a reply it does not expect; once more then.
    let start = Instant::now();
    loop {
        let o = Command::new("fetchmail")
            .arg("--fetchmailrc")
            .arg(&rc)
            .args(["--nosyslog", "--nodetach", "-v"])
            .env("HOME", &fm)
            .env("FETCHMAILHOME", &fm)
            .output()
            .expect("fetchmail");
        let log =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        wait_briefly_for(|| sink.messages().len() == 5);
        if sink.messages().len() == 5 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "fetchmail never turned the connection: {log}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let to = recipients(&sink);
    assert!(
        to.contains(&"eve@second.example.org".to_string())
            && to.iter().filter(|t| *t == "joe@some.example.com").count() == 2,
        "{to:?}"
    );
    wait_for("the spool to empty", || spool_files(&h).is_empty());
}
