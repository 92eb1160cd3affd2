//! What starts a flush in the daemon: ETRN (every RFC 1985 reply), AUTOTURN, always-on
//! sites, the operator through the control socket, and ODMR (fetchmail); racing
//! triggers produce one flush.

mod common;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::cluster::{add_account, own};
use common::daemon::{Client, Daemon};
use common::sink::{Script, Sink};
use common::{DemoRoot, demo_root, write};
use turnmail::maildir::Maildir;

/// Point the demo site at `sink` and give it `extra` site.toml settings.
fn site_setup(d: &DemoRoot, sink: &Sink, extra: &str) {
    write(
        &d.root.join("sites/acme/RELAYHOST"),
        &format!("{}\n", sink.addr),
    );
    write(
        &d.root.join("sites/acme/site.toml"),
        &format!("domains = [\"acme.example\"]\n{extra}"),
    );
    own(&d.root.join("sites/acme/site.toml"));
}

fn spool_n(d: &DemoRoot, n: usize) {
    spool_to(d, "acme", "acme.example", n);
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

fn ehlo(c: &mut Client) -> String {
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO client.example")
}

#[test]
fn etrn_replies_per_rfc_1985() {
    let d = demo_root();
    let sink = Sink::start(Script {
        pipelining: true,
        chunking: true,
        delay: Duration::from_millis(200),
        ..Script::default()
    });
    site_setup(&d, &sink, "");
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    assert!(ehlo(&mut c).contains("ETRN"));
    assert_eq!(c.cmd("ETRN"), "501 5.5.4 Syntax: ETRN [@|#]node");
    assert_eq!(c.cmd("ETRN a b"), "501 5.5.4 Syntax: ETRN [@|#]node");
    assert_eq!(
        c.cmd("ETRN nowhere.example"),
        "458 4.1.2 Unable to queue messages for node nowhere.example"
    );
    assert_eq!(
        c.cmd("ETRN acme.example"),
        "251 2.0.0 OK, no messages waiting for node acme.example"
    );
    spool_n(&d, 3);
    assert_eq!(
        c.cmd("ETRN @example"),
        "253 2.0.0 OK, 3 pending messages for node @example started"
    );
    // The flush is running (the site answers slowly): a second request starts nothing.
    assert_eq!(
        c.cmd("ETRN #acme"),
        "252 2.0.0 OK, pending messages for node #acme started"
    );
    wait_for("the site to receive 3 messages", || {
        sink.messages().len() == 3
    });
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(
        c.cmd("ETRN acme.example").starts_with("503"),
        "not inside a transaction"
    );
    assert_eq!(sink.messages().len(), 3, "each message once");
}

#[test]
fn etrn_policy_and_rate_limit() {
    let d = demo_root();
    let sink = Sink::start(Script::default());
    site_setup(
        &d,
        &sink,
        "etrn = \"networks\"\netrn_networks = [\"192.0.2.0/24\"]\n",
    );
    common::config(&d, "[flush]\netrn_per_minute = 3\n");
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    ehlo(&mut c);
    assert_eq!(
        c.cmd("ETRN acme.example"),
        "459 4.7.1 Node acme.example not allowed: your address may not ask for this node's mail"
    );
    assert!(c.cmd("ETRN other.example").starts_with("458"));
    assert!(c.cmd("ETRN other.example").starts_with("458"));
    let r = c.cmd("ETRN acme.example");
    assert!(
        r.starts_with("458") && r.contains("too many requests"),
        "{r}"
    );
}

#[test]
fn autoturn_flushes_back_to_a_registered_address_only() {
    let d = demo_root();
    // The customer's MTA (the sink) lives at 127.0.0.3; its sessions come from there.
    let sink = Sink::start_on(
        "127.0.0.3",
        Script {
            pipelining: true,
            ..Script::default()
        },
    );
    site_setup(&d, &sink, "autoturn = [\"127.0.0.3\"]\n");
    spool_n(&d, 2);
    let s = Daemon::start(&d.root);
    // Sessions from other addresses (the test's own 127.0.0.1, and 127.0.0.2) trigger
    // nothing.
    session_from("127.0.0.2", s.addr);
    let mut c = s.connect();
    ehlo(&mut c);
    assert!(c.cmd("QUIT").starts_with("221"));
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(sink.messages().len(), 0);
    // A session from the registered address flushes back to it once it ends.
    session_from("127.0.0.3", s.addr);
    wait_for("AUTOTURN to deliver", || sink.messages().len() == 2);
}

#[test]
fn autoturn_relayhost_means_the_addresses_relayhost_names() {
    let d = demo_root();
    let sink = Sink::start(Script {
        pipelining: true,
        ..Script::default()
    });
    site_setup(&d, &sink, "autoturn = [\"relayhost\"]\n");
    // A name, so that the daemon has to look it up: localhost is 127.0.0.1, where the
    // sink listens and where the test's sessions come from.
    write(
        &d.root.join("sites/acme/RELAYHOST"),
        &format!("localhost:{}\n", sink.addr.port()),
    );
    let s = Daemon::start(&d.root);
    // Starting, the test's harness connected from 127.0.0.1: that turned an empty
    // spool. The mail comes after.
    std::thread::sleep(Duration::from_millis(500));
    spool_n(&d, 2);
    session_from("127.0.0.2", s.addr);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(sink.messages().len(), 0);
    session_from("127.0.0.1", s.addr);
    wait_for("AUTOTURN to RELAYHOST's address", || {
        sink.messages().len() == 2
    });
}

/// An SMTP session (greeting, QUIT) from the local address `src`.
fn session_from(src: &str, to: std::net::SocketAddr) {
    let script = format!(
        "import socket\ns=socket.create_connection(('{}',{}),source_address=('{src}',0))\nf=s.makefile('rb')\nf.readline()\ns.sendall(b'QUIT\\r\\n')\nf.readline()\n",
        to.ip(),
        to.port()
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
}

#[test]
fn always_on_sites_flush_after_new_mail() {
    let d = demo_root();
    let sink = Sink::start(Script {
        pipelining: true,
        ..Script::default()
    });
    site_setup(&d, &sink, "always_on = true\n");
    common::config(
        &d,
        "[flush]\nalways_on_delay_secs = 1\nschedule = \"0 0 1 1 *\"\n",
    );
    let s = Daemon::start(&d.root);
    let (code, out) = common::daemon::tool(
        "swaks",
        &["--server", &s.addr.to_string(), "--to", "news@acme.example"],
    );
    assert_eq!(code, 0, "{out}");
    wait_for("the always-on flush", || {
        sink.messages().iter().any(|m| m.to == "news@acme.example")
    });
}

#[test]
fn operator_flush_goes_through_the_daemon_and_races_make_one_flush() {
    let d = demo_root();
    let sink = Sink::start(Script {
        pipelining: true,
        delay: Duration::from_millis(30),
        ..Script::default()
    });
    site_setup(&d, &sink, "");
    spool_n(&d, 10);
    let s = Daemon::start(&d.root);
    // Two operators and an ETRN at once: one flush, each message delivered once.
    let flush = || {
        let root = d.root.clone();
        std::thread::spawn(move || {
            Command::new(env!("CARGO_BIN_EXE_turnmail"))
                .arg("--root")
                .arg(root)
                .args(["flush", "acme"])
                .output()
                .unwrap()
        })
    };
    let (a, b) = (flush(), flush());
    let mut c = s.connect();
    ehlo(&mut c);
    let etrn = c.cmd("ETRN acme.example");
    let (a, b) = (a.join().unwrap(), b.join().unwrap());
    let outs = [
        String::from_utf8_lossy(&a.stdout).into_owned(),
        String::from_utf8_lossy(&b.stdout).into_owned(),
    ];
    // Whoever came first flushed; the others were told a flush is running.
    let flushed = outs.iter().filter(|o| o.contains("10 delivered")).count()
        + usize::from(etrn.starts_with("253"));
    let told = outs
        .iter()
        .filter(|o| o.contains("already running"))
        .count()
        + usize::from(etrn.starts_with("252"));
    assert_eq!((flushed, told), (1, 2), "{outs:?} {etrn}");
    wait_for("all 10 messages", || sink.messages().len() >= 10);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sink.messages().len(), 10, "no message twice");
    // The operator's flush takes the daemon's path when a daemon runs.
    spool_n(&d, 2);
    let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["flush", "acme"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2 delivered"),
        "{o:?}"
    );
    assert!(
        s.log_text().contains("reason=\"operator\""),
        "{}",
        s.log_text()
    );
}

#[test]
fn odmr_with_fetchmail_and_refusals() {
    let d = demo_root();
    let sink = Sink::start(Script {
        pipelining: true,
        ..Script::default()
    });
    site_setup(&d, &sink, "accounts = [\"acme@acme.example\"]\n");
    // The customer's ODMR account: a password for PLAIN and a secret for CRAM-MD5.
    let mu = common::mail_user();
    let hash = turnmail::engine::crypt::hash_new(b"odmr-pw").unwrap();
    let pw = d.root.join("users/poppasswd");
    let mut text = std::fs::read_to_string(&pw).unwrap();
    text.push_str(&format!(
        "acme@acme.example:{hash}:{}:{}\n",
        mu.name,
        d.root.join("sites/acme").display()
    ));
    write(&pw, &text);
    let secrets = d.root.join("users/secrets");
    write(&secrets, "acme@acme.example:odmr-secret\n");
    std::fs::set_permissions(
        &secrets,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    own(&pw);
    own(&secrets);
    let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .arg("newu")
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    let s = Daemon::start(&d.root);
    let home = d.dir.path().join("fm");
    std::fs::create_dir(&home).unwrap();
    let run = |user: &str, pass: &str, domains: &str| {
        let rc = home.join("rc");
        write(
            &rc,
            &format!(
                "poll 127.0.0.1 protocol ODMR port {} user \"{user}\" password \"{pass}\" fetchdomains {domains} smtphost 127.0.0.1/{}\n",
                s.odmr.port(),
                sink.addr.port()
            ),
        );
        std::fs::set_permissions(&rc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        let o = Command::new("fetchmail")
            .arg("--fetchmailrc")
            .arg(&rc)
            .args(["--nosyslog", "--nodetach", "-v"])
            .env("HOME", &home)
            .env("FETCHMAILHOME", &home)
            .output()
            .expect("fetchmail");
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr),
        )
    };
    // Nothing waiting: 453.
    let (_, log) = run("acme@acme.example", "odmr-secret", "acme.example");
    assert!(log.contains("453"), "{log}");
    // Wrong password, and a domain the account is not entitled to.
    let (_, log) = run("acme@acme.example", "wrong", "acme.example");
    assert!(log.contains("535"), "{log}");
    spool_n(&d, 3);
    let (_, log) = run("acme@acme.example", "odmr-secret", "other.example");
    assert!(log.contains("450"), "{log}");
    assert_eq!(sink.messages().len(), 0);
    // Success: the connection turns around and the mail reaches the customer's MTA.
    let (code, log) = run("acme@acme.example", "odmr-secret", "acme.example");
    assert!(log.contains("250"), "{log}");
    wait_for("ODMR delivery", || sink.messages().len() == 3);
    let _ = code;
}

/// Spool `n` messages for `site` (whose assign prefix is `site-SITE-`) to `DOMAIN`.
fn spool_to(d: &DemoRoot, site: &str, domain: &str, n: usize) {
    let md = Maildir::new(d.root.join(format!("sites/{site}/Maildir")));
    for i in 0..n {
        let head =
            format!("Return-Path: <bob@example.org>\nDelivered-To: site-{site}-u{i}@{domain}\n");
        let got = md
            .deliver(&[head.as_bytes(), b"Subject: t\n\nbody\n"])
            .unwrap();
        own(&got.path);
        // Old enough for the flush's listing, which leaves out files of this second.
        let old = SystemTime::now() - Duration::from_secs(5);
        common::set_mtime(&got.path, old);
    }
}

fn spooled(d: &DemoRoot, site: &str) -> usize {
    Maildir::new(d.root.join(format!("sites/{site}/Maildir")))
        .list(SystemTime::now() + Duration::from_secs(1))
        .unwrap()
        .len()
}

/// An ODMR customer: authenticate, send ATRN with `args`, and if it turns, be the
/// MTA on the same connection. The ATRN reply and what was received.
fn odmr_customer(
    addr: std::net::SocketAddr,
    args: &str,
    script: &Script,
) -> (String, Option<common::sink::Served>) {
    use std::io::{BufRead, BufReader, Write};
    let s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut w = s.try_clone().unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut reply = || {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            assert!(r.read_line(&mut line).unwrap() > 0, "closed after {all:?}");
            all.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return all;
            }
        }
    };
    assert!(reply().starts_with("220"));
    w.write_all(b"EHLO customer.example\r\n").unwrap();
    assert!(reply().contains("ATRN"));
    w.write_all(format!("{}\r\n", auth_plain("acme@acme.example", "odmr-pw")).as_bytes())
        .unwrap();
    let auth = reply();
    assert!(auth.starts_with("235"), "{auth}");
    w.write_all(format!("ATRN{args}\r\n").as_bytes()).unwrap();
    let atrn = reply();
    if !atrn.starts_with("250") {
        return (atrn, None);
    }
    // Nothing buffered beyond the 250: the daemon waits for our greeting.
    drop(r);
    let served = common::sink::serve(s, script);
    (atrn, Some(served))
}

#[test]
fn odmr_turns_every_site_of_the_account_in_one_session() {
    let d = demo_root();
    let sink = Sink::start(Script::default());
    site_setup(&d, &sink, "accounts = [\"acme@acme.example\"]\n");
    // A second site of the same account, with its own domain and spool.
    let beta = d.root.join("sites/beta");
    for dir in ["", "Maildir", "Maildir/new", "Maildir/cur", "Maildir/tmp"] {
        std::fs::create_dir_all(beta.join(dir)).unwrap();
        own(&beta.join(dir));
    }
    write(&beta.join("RELAYHOST"), &format!("{}\n", sink.addr));
    write(
        &beta.join("site.toml"),
        "domains = [\"beta.example\"]\nprefix = \"site-beta-\"\naccounts = [\"acme@acme.example\"]\n",
    );
    own(&beta.join("RELAYHOST"));
    own(&beta.join("site.toml"));
    add_account(&d, "acme@acme.example", "odmr-pw");
    common::config(&d, "[odmr]\nplaintext_auth = true\n");
    spool_to(&d, "acme", "acme.example", 2);
    spool_to(&d, "beta", "beta.example", 3);
    let s = Daemon::start(&d.root);

    // One ATRN that turns: 250, then one session (one EHLO, QUIT) carrying these
    // recipients, sorted.
    let turned = |args: &str| {
        let (atrn, served) = odmr_customer(s.odmr, args, &Script::default());
        assert!(atrn.starts_with("250"), "{atrn}");
        let served = served.unwrap();
        assert!(served.quit);
        assert_eq!(served.ehlos, 1);
        let mut to = served.recipients();
        to.sort();
        to
    };

    // Naming one domain turns for its site only.
    assert_eq!(
        turned(" beta.example"),
        ["u0@beta.example", "u1@beta.example", "u2@beta.example"]
    );
    wait_for("beta's spool to empty", || spooled(&d, "beta") == 0);
    assert_eq!(spooled(&d, "acme"), 2);

    // No argument: every site of the account with mail, in one session.
    spool_to(&d, "beta", "beta.example", 1);
    assert_eq!(
        turned(""),
        ["u0@acme.example", "u0@beta.example", "u1@acme.example"]
    );
    wait_for("both spools to empty", || {
        spooled(&d, "acme") == 0 && spooled(&d, "beta") == 0
    });
    // Each message is logged under its own site, and each site has its own result.
    wait_for("both sites' results", || {
        let log = s.log_text();
        ["acme", "beta"].iter().all(|site| {
            log.lines()
                .any(|l| l.contains("flushed over ODMR: 0") && l.contains(&format!("site={site}")))
        })
    });
    let log = s.log_text();
    assert!(
        log.contains("ATRN turns for 2 of 2 sites with mail: acme,beta"),
        "{log}"
    );
    for (site, rcpt) in [("acme", "u1@acme.example"), ("beta", "u0@beta.example")] {
        assert!(
            log.lines().any(|l| l.contains(&format!("site={site} "))
                && l.contains(&format!("recipient={rcpt} "))),
            "{log}"
        );
    }
    let status =
        |site: &str| turnmail::flush::status::read(&d.root.join("run/sites"), site).unwrap();
    assert_eq!(status("acme").last_delivered, 2);
    assert_eq!(status("beta").last_delivered, 1);
    assert!(sink.messages().is_empty());
    assert_eq!(
        sink.connections.load(std::sync::atomic::Ordering::SeqCst),
        0
    );

    // Nothing left: 453.
    let (atrn, _) = odmr_customer(s.odmr, "", &Script::default());
    assert!(atrn.starts_with("453"), "{atrn}");

    // A site whose flush lock another process holds is left out; all of them: 450.
    spool_to(&d, "acme", "acme.example", 1);
    spool_to(&d, "beta", "beta.example", 1);
    let lock_of = |site: &str| {
        let f = std::fs::File::open(d.root.join(format!("sites/{site}/RELAYHOST"))).unwrap();
        fd_lock::RwLock::new(f)
    };
    let mut beta_lock = lock_of("beta");
    let held = beta_lock.try_write().unwrap();
    assert_eq!(turned(""), ["u0@acme.example"]);
    wait_for("acme's spool to empty", || spooled(&d, "acme") == 0);
    spool_to(&d, "acme", "acme.example", 1);
    let mut acme_lock = lock_of("acme");
    let held_too = acme_lock.try_write().unwrap();
    let (atrn, _) = odmr_customer(s.odmr, "", &Script::default());
    assert!(atrn.starts_with("450 4.7.0"), "{atrn}");
    drop((held, held_too));
    assert_eq!((spooled(&d, "acme"), spooled(&d, "beta")), (1, 1));

    // The customer gives up in the middle of the second site: the first site's mail
    // is gone, the second's stays for the next ATRN.
    let script = Script {
        data_reply: [(
            "u0@beta.example".to_string(),
            "421 4.3.0 closing".to_string(),
        )]
        .into(),
        ..Script::default()
    };
    let (atrn, served) = odmr_customer(s.odmr, "", &script);
    assert!(atrn.starts_with("250"), "{atrn}");
    assert_eq!(served.unwrap().recipients(), ["u0@acme.example"]);
    wait_for("acme's spool to empty", || spooled(&d, "acme") == 0);
    wait_for("beta's result", || {
        status("beta").last_kept == 1 && status("acme").last_delivered == 1
    });
    assert_eq!(spooled(&d, "beta"), 1);
    let (atrn, served) = odmr_customer(s.odmr, "", &Script::default());
    assert!(atrn.starts_with("250"), "{atrn}");
    assert_eq!(served.unwrap().recipients(), ["u0@beta.example"]);
    wait_for("beta's spool to empty", || spooled(&d, "beta") == 0);
}

fn auth_plain(login: &str, password: &str) -> String {
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD.encode(format!("\0{login}\0{password}"));
    format!("AUTH PLAIN {blob}")
}

/// Accounts for the AUTH tests: the site's own and one that is not the site's; PLAIN
/// without TLS allowed on this loopback listener, and a short failure delay.
fn auth_setup(d: &DemoRoot) {
    add_account(d, "acme@acme.example", "site-pw");
    add_account(d, "other@acme.example", "other-pw");
    common::config(
        d,
        "[smtp]\nplaintext_auth = true\n[pop3]\nfailure_delay_ms = 400\n",
    );
}

#[test]
fn etrn_after_auth_for_an_auth_policy_site() {
    let d = demo_root();
    let sink = Sink::start(Script {
        pipelining: true,
        ..Script::default()
    });
    site_setup(
        &d,
        &sink,
        "etrn = \"auth\"\naccounts = [\"acme@acme.example\"]\n",
    );
    auth_setup(&d);
    spool_n(&d, 2);
    let s = Daemon::start(&d.root);
    let mut c = s.connect();
    let offer = ehlo(&mut c);
    assert!(offer.contains("250 AUTH PLAIN LOGIN CRAM-MD5"), "{offer}");
    assert!(
        offer.contains("offers ETRN after AUTH: an account entitled to a site may have its mail delivered to the address it connects from"),
        "{offer}"
    );
    // Before AUTH the site refuses, with the RFC 1985 code.
    assert_eq!(
        c.cmd("ETRN acme.example"),
        "459 4.7.1 Node acme.example not allowed: authentication required (AUTH first)"
    );
    // A wrong password is refused after the failure delay, and logged.
    let t = Instant::now();
    assert_eq!(
        c.cmd(&auth_plain("acme@acme.example", "wrong")),
        "535 5.7.8 Authentication credentials invalid"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        c.cmd(&auth_plain("acme@acme.example", "site-pw")),
        "235 2.7.0 Authentication successful"
    );
    // AUTH identifies the site's account; it does not make a relay.
    assert!(c.cmd("MAIL FROM:<acme@acme.example>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<victim@gmail.com>").starts_with("553 5.7.1"));
    assert!(c.cmd("RSET").starts_with("250"));
    assert_eq!(
        c.cmd("ETRN acme.example"),
        "253 2.0.0 OK, 2 pending messages for node acme.example started"
    );
    wait_for("the site to receive 2 messages", || {
        sink.messages().len() == 2
    });
    // Another account, right password, not the site's: refused.
    spool_n(&d, 1);
    let mut c = s.connect();
    ehlo(&mut c);
    assert!(
        c.cmd(&auth_plain("other@acme.example", "other-pw"))
            .starts_with("235")
    );
    assert_eq!(
        c.cmd("ETRN acme.example"),
        "459 4.7.1 Node acme.example not allowed: this account may not ask for this node's mail"
    );
    // Three failed exchanges end the connection.
    let mut c = s.connect();
    ehlo(&mut c);
    for _ in 0..2 {
        assert!(
            c.cmd(&auth_plain("acme@acme.example", "guess"))
                .starts_with("535")
        );
    }
    assert!(
        c.cmd(&auth_plain("acme@acme.example", "guess"))
            .starts_with("535")
    );
    assert_eq!(
        c.reply(),
        "421 4.7.0 Too many authentication failures, closing connection"
    );
    assert!(c.closed());
    let log = s.log_text();
    assert!(log.contains("login failed"), "{log}");
    assert!(!log.contains("site-pw") && !log.contains("guess"), "{log}");
    assert_eq!(sink.messages().len(), 2);
}

#[test]
fn etrn_after_auth_delivers_to_the_client_address_of_a_dynamic_site() {
    let d = demo_root();
    // The customer's MTA listens on its current (dynamic) address, 127.0.0.4; the
    // RELAYHOST on file is stale (TEST-NET, never reached), only its port counts.
    let sink = Sink::start_on(
        "127.0.0.4",
        Script {
            pipelining: true,
            ..Script::default()
        },
    );
    site_setup(
        &d,
        &sink,
        "etrn = \"auth\"\naccounts = [\"acme@acme.example\"]\netrn_to_client = true\n",
    );
    write(
        &d.root.join("sites/acme/RELAYHOST"),
        &format!("192.0.2.1:{}\n", sink.addr.port()),
    );
    auth_setup(&d);
    spool_n(&d, 2);
    let s = Daemon::start(&d.root);
    // Python's smtplib from 127.0.0.4: login, then ETRN.
    let script = format!(
        "import smtplib\n\
         s=smtplib.SMTP('{}',{},source_address=('127.0.0.4',0))\n\
         s.ehlo('site.example')\n\
         s.user,s.password='acme@acme.example','site-pw'\n\
         print(s.auth('PLAIN',s.auth_plain))\n\
         print(s.docmd('ETRN','acme.example'))\n\
         s.quit()\n",
        s.addr.ip(),
        s.addr.port()
    );
    let o = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert!(
        out.contains("(235, b'2.7.0 Authentication successful')"),
        "{out}"
    );
    let expected = format!(
        "(253, b'2.0.0 OK, 2 pending messages for node acme.example started, delivering to 127.0.0.4:{}')",
        sink.addr.port()
    );
    assert!(out.contains(&expected), "{out}");
    wait_for("delivery to the client's address", || {
        sink.messages().len() == 2
    });
}
