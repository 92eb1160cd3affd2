//! Outbound delivery end to end: mail enters the real daemon over SMTP, leaves through
//! `.qmail` forward lines into the outbound queue, and is sent to MX hosts that a real
//! DNS server on loopback (Debian's dnsmasq on a high port) names: scriptable sinks on
//! 127.0.0.2 and 127.0.0.3, sharing one port (`[relay] mx_port`).

mod common;

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::daemon::{Daemon, free_port};
use common::dnsmasq::Dnsmasq;
use common::sink::{Received, Script, Sink};
use common::{DemoRoot, demo_root, write};

/// The world of one test: DNS, two sinks' addresses (started by the test), the
/// daemon.
struct World {
    d: DemoRoot,
    _dns: Dnsmasq,
    port: u16,
    daemon: Daemon,
}

const SENDER: &str = "bob@bare.example";

fn records() -> Vec<String> {
    [
        "--mx-host=one.example,mx.one.example,10",
        "--host-record=mx.one.example,127.0.0.2",
        "--mx-host=two.example,mx.two.example,10",
        "--host-record=mx.two.example,127.0.0.3",
        // Both up: the lower preference wins.
        "--mx-host=pref.example,mx.one.example,10",
        "--mx-host=pref.example,mx.two.example,20",
        // The best MX refuses connections: the next one takes it.
        "--mx-host=down.example,mx.dead.example,5",
        "--host-record=mx.dead.example,127.0.0.6",
        "--mx-host=down.example,mx.two.example,10",
        // No MX: its own address (RFC 5321 §5.1).
        "--host-record=bare.example,127.0.0.2",
        "--mx-host=plain.example,mx.one.example,10",
    ]
    .map(String::from)
    .to_vec()
}

/// `.qmail-NAME` in example.com forwarding to `targets`.
fn forward(d: &DemoRoot, name: &str, targets: &[&str]) {
    let p = d.root.join(format!("domains/example.com/.qmail-{name}"));
    let text: String = targets.iter().map(|t| format!("&{t}\n")).collect();
    write(&p, &text);
    std::fs::set_permissions(&p, PermissionsExt::from_mode(0o600)).unwrap();
    if common::is_root() {
        let mu = common::mail_user();
        std::os::unix::fs::chown(&p, Some(mu.uid), Some(mu.gid)).unwrap();
    }
}

fn world(forwards: &[(&str, &[&str])], relay_extra: &str) -> Option<World> {
    let dns = Dnsmasq::start(&records())?;
    let d = demo_root();
    for (name, targets) in forwards {
        forward(&d, name, targets);
    }
    let port = free_port();
    common::config(
        &d,
        &format!(
            "[relay]\ndns = [\"127.0.0.1:{}\"]\nmx_port = {port}\ninterval_secs = 1\nretry_secs = 1\nidle_secs = 20\ntimeout_secs = 10\n{relay_extra}",
            dns.port
        ),
    );
    let daemon = Daemon::start(&d.root);
    Some(World {
        d,
        _dns: dns,
        port,
        daemon,
    })
}

impl World {
    fn sink(&self, ip: [u8; 4], script: Script) -> Sink {
        Sink::start_at(SocketAddr::from((ip, self.port)), script)
    }

    /// One message over SMTP from [`SENDER`] to `rcpt`.
    fn send(&self, rcpt: &str, subject: &str) {
        let mut c = self.daemon.connect();
        assert!(c.reply().starts_with("220"));
        assert!(c.cmd("EHLO client.example").starts_with("250"));
        assert!(c.cmd(&format!("MAIL FROM:<{SENDER}>")).starts_with("250"));
        let r = c.cmd(&format!("RCPT TO:<{rcpt}>"));
        assert!(r.starts_with("250"), "{r}");
        assert!(c.cmd("DATA").starts_with("354"));
        let r = c.cmd(&format!("Subject: {subject}\r\n\r\nbody of {subject}\r\n."));
        assert!(r.starts_with("250"), "{r}");
        c.cmd("QUIT");
    }

    fn queued(&self) -> usize {
        ["new", "cur"]
            .iter()
            .map(|s| {
                std::fs::read_dir(self.d.root.join("queue").join(s))
                    .map(|r| r.count())
                    .unwrap_or(0)
            })
            .sum()
    }
}

/// Wait until `f` holds (up to 30 s).
fn wait_for(what: &str, w: &World, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}; daemon log:\n{}",
            w.daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn with_rcpt<'a>(got: &'a [Received], rcpt: &str) -> Vec<&'a Received> {
    got.iter()
        .filter(|m| m.rcpts.iter().any(|r| r == rcpt))
        .collect()
}

#[test]
fn one_transaction_for_three_recipients_a_refusal_bounced_and_one_connection() {
    let fwd: &[&str] = &["a@one.example", "gone@one.example", "c@one.example"];
    let later: &[&str] = &["d@one.example"];
    let Some(w) = world(&[("fwd", fwd), ("later", later)], "") else {
        return;
    };
    let mut script = Script {
        pipelining: true,
        ..Script::default()
    };
    script
        .rcpt_reply
        .insert("gone@one.example".into(), "550 5.1.1 no such user".into());
    let sink = w.sink([127, 0, 0, 2], script);
    w.send("fwd@example.com", "three");
    wait_for("the forward", &w, || {
        !with_rcpt(&sink.messages(), "a@one.example").is_empty()
    });
    let got = sink.messages();
    let three = with_rcpt(&got, "a@one.example");
    assert_eq!(three.len(), 1, "one transaction: {got:?}");
    // One MAIL with the three RCPTs; the sink kept the two it accepted.
    assert_eq!(three[0].rcpts, ["a@one.example", "c@one.example"]);
    assert_eq!(three[0].from, SENDER);
    let text = String::from_utf8_lossy(&three[0].data);
    assert!(text.contains("body of three"), "{text}");
    // The refused recipient is bounced to the sender (its domain has no MX: its
    // address takes the bounce), with the null sender, as RFC 3464 says.
    wait_for("the bounce", &w, || {
        !with_rcpt(&sink.messages(), SENDER).is_empty()
    });
    let got = sink.messages();
    let bounce = with_rcpt(&got, SENDER)[0].clone();
    assert_eq!(bounce.from, "");
    let b = String::from_utf8_lossy(&bounce.data);
    assert!(b.contains("report-type=delivery-status"), "{b}");
    assert!(
        b.contains(
            "Final-Recipient: rfc822; gone@one.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        ),
        "{b}"
    );
    assert!(b.contains("550 5.1.1 no such user"), "{b}");
    assert!(!b.contains("Final-Recipient: rfc822; a@one.example"), "{b}");
    // Queued later, in other runs: the connection to one.example is still open.
    for n in 0..3 {
        w.send("later@example.com", &format!("later {n}"));
        std::thread::sleep(Duration::from_millis(300));
    }
    wait_for("the later messages", &w, || {
        with_rcpt(&sink.messages(), "d@one.example").len() == 3
    });
    let got = sink.messages();
    let first_conn = three[0].connection;
    for m in with_rcpt(&got, "d@one.example") {
        assert_eq!(m.connection, first_conn, "reused connection: {got:?}");
    }
    wait_for("an empty queue", &w, || w.queued() == 0);
}

#[test]
fn an_unreachable_destination_is_retried_and_delivered_when_it_opens() {
    let Some(w) = world(&[("two", &["x@two.example"])], "") else {
        return;
    };
    w.send("two@example.com", "retry");
    // Nothing listens on mx.two.example yet: the message waits and is retried.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(w.queued(), 1, "{}", w.daemon.log_text());
    let sink = w.sink(
        [127, 0, 0, 3],
        Script {
            pipelining: true,
            chunking: true,
            ..Script::default()
        },
    );
    wait_for("the retried message", &w, || {
        !with_rcpt(&sink.messages(), "x@two.example").is_empty()
    });
    let got = sink.messages();
    assert_eq!(with_rcpt(&got, "x@two.example").len(), 1, "{got:?}");
    wait_for("an empty queue", &w, || w.queued() == 0);
    let log = w.daemon.log_text();
    assert!(
        log.contains("Temporary"),
        "the first attempts failed: {log}"
    );
}

#[test]
fn a_message_waiting_past_delay_warning_hours_warns_its_sender_once() {
    let Some(w) = world(&[("two", &["x@two.example"])], "delay_warning_hours = 1\n") else {
        return;
    };
    // The sender's domain (bare.example) takes the notice; mx.two.example is down.
    let senders = w.sink([127, 0, 0, 2], Script::default());
    w.send("two@example.com", "slow");
    wait_for("the queued message", &w, || w.queued() == 1);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        with_rcpt(&senders.messages(), SENDER).is_empty(),
        "no notice before its time"
    );
    // Queued two hours ago, as far as the queue can tell.
    for sub in ["new", "cur"] {
        for e in std::fs::read_dir(w.d.root.join("queue").join(sub))
            .unwrap()
            .flatten()
        {
            let o = std::process::Command::new("touch")
                .args(["-m", "-d", "2 hours ago"])
                .arg(e.path())
                .output()
                .unwrap();
            assert!(o.status.success(), "{o:?}");
        }
    }
    wait_for("the delay notice", &w, || {
        !with_rcpt(&senders.messages(), SENDER).is_empty()
    });
    let got = senders.messages();
    let notice = with_rcpt(&got, SENDER)[0].clone();
    assert_eq!(notice.from, "", "notices go out with the null sender");
    let n = String::from_utf8_lossy(&notice.data);
    assert!(n.contains("report-type=delivery-status"), "{n}");
    assert!(
        n.contains(
            "Final-Recipient: rfc822; x@two.example\r\nAction: delayed\r\nStatus: 4.4.7\r\n"
        ),
        "{n}"
    );
    assert!(
        n.contains("body of slow") || n.contains("Subject: slow"),
        "{n}"
    );
    // Several more attempts: still one notice, the message still queued, marked.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        with_rcpt(&senders.messages(), SENDER).len(),
        1,
        "warned once"
    );
    assert_eq!(w.queued(), 1);
    let marked: Vec<String> = std::fs::read_dir(w.d.root.join("queue/cur"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        marked.len() == 1
            && marked[0]
                .rsplit_once(":2,")
                .is_some_and(|(_, f)| f.contains('w')),
        "{marked:?}"
    );
    // The destination comes back: the message goes out, once.
    let sink = w.sink([127, 0, 0, 3], Script::default());
    wait_for("the delayed message", &w, || {
        !with_rcpt(&sink.messages(), "x@two.example").is_empty()
    });
    assert_eq!(with_rcpt(&sink.messages(), "x@two.example").len(), 1);
    wait_for("an empty queue", &w, || w.queued() == 0);
}

#[test]
fn mx_preference_next_mx_and_address_fallback() {
    let Some(w) = world(
        &[
            ("pref", &["p@pref.example"]),
            ("down", &["q@down.example"]),
            ("bare", &["r@bare.example"]),
        ],
        "",
    ) else {
        return;
    };
    let one = w.sink([127, 0, 0, 2], Script::default());
    let two = w.sink([127, 0, 0, 3], Script::default());
    w.send("pref@example.com", "pref");
    w.send("down@example.com", "down");
    w.send("bare@example.com", "bare");
    wait_for("three deliveries", &w, || {
        one.messages().len() + two.messages().len() == 3
    });
    let (one, two) = (one.messages(), two.messages());
    assert_eq!(with_rcpt(&one, "p@pref.example").len(), 1, "MX 10 over 20");
    assert_eq!(with_rcpt(&two, "q@down.example").len(), 1, "MX 5 refuses");
    assert_eq!(with_rcpt(&one, "r@bare.example").len(), 1, "no MX: A");
    wait_for("an empty queue", &w, || w.queued() == 0);
}

#[test]
fn required_tls_without_starttls_is_deferred_not_sent_in_clear() {
    let Some(w) = world(
        &[("plain", &["s@plain.example"]), ("one", &["t@one.example"])],
        "require_tls = [\"plain.example\"]\n",
    ) else {
        return;
    };
    // The sink offers no STARTTLS.
    let sink = w.sink([127, 0, 0, 2], Script::default());
    w.send("plain@example.com", "secret");
    w.send("one@example.com", "open");
    wait_for("the message allowed in clear", &w, || {
        !with_rcpt(&sink.messages(), "t@one.example").is_empty()
    });
    // Several retries later, still queued and never sent.
    std::thread::sleep(Duration::from_secs(4));
    assert!(with_rcpt(&sink.messages(), "s@plain.example").is_empty());
    assert_eq!(w.queued(), 1);
    let log = w.daemon.log_text();
    assert!(
        log.contains("TLS required but the server does not offer STARTTLS"),
        "{log}"
    );
}

#[test]
fn an_authenticated_smarthost_gets_the_login_only_under_verified_tls() {
    // The provider's relay: another turnmail, whose submission port wants AUTH, with a
    // certificate from a private CA.
    let up = demo_root();
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = common::certs::ca_and_leaf(certs.path());
    for (from, to) in [(&cert, "tls/cert.pem"), (&key, "tls/key.pem")] {
        let dst = up.root.join(to);
        std::fs::copy(from, &dst).unwrap();
        if common::is_root() {
            let mu = common::mail_user();
            std::os::unix::fs::chown(&dst, Some(mu.uid), Some(mu.gid)).unwrap();
        }
    }
    let closed = free_port();
    common::config(
        &up,
        &format!("[relay]\nsmarthost = \"127.0.0.1:{closed}\"\ninterval_secs = 3600\n"),
    );
    let upstream = Daemon::start(&up.root);
    let (user, pw) = (up.report.login.clone(), up.report.password.clone());

    // This host: remote mail goes to the relay with the login; no CA configured yet.
    let d = demo_root();
    forward(
        &d,
        "out",
        &["friend@remote.example", "other@remote.example"],
    );
    let relay = |ca: &str| {
        format!(
            "[relay]\nsmarthost = \"127.0.0.1:{}\"\nsmarthost_user = \"{user}\"\nsmarthost_password = \"{pw}\"\n{ca}interval_secs = 1\nretry_secs = 1\ntimeout_secs = 10\n",
            upstream.submission.port()
        )
    };
    common::config(&d, &relay(""));
    let mut daemon = Daemon::start(&d.root);
    let mut c = daemon.connect();
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO client.example");
    // The relay lets the account send as itself only.
    assert!(c.cmd(&format!("MAIL FROM:<{user}>")).starts_with("250"));
    assert!(c.cmd("RCPT TO:<out@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(
        c.cmd("Subject: via the ISP\r\n\r\nbody\r\n.")
            .starts_with("250")
    );
    c.cmd("QUIT");
    let up_queue = |root: &std::path::Path| -> Vec<String> {
        ["new", "cur"]
            .iter()
            .flat_map(|s| {
                std::fs::read_dir(root.join("queue").join(s))
                    .into_iter()
                    .flatten()
            })
            .flatten()
            .map(|e| String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned())
            .collect()
    };
    // The relay's certificate is not from a public CA: nothing is sent, the login
    // never leaves, the mail stays queued.
    std::thread::sleep(Duration::from_secs(3));
    assert!(up_queue(&up.root).is_empty(), "{}", upstream.log_text());
    let log = daemon.log_text();
    assert!(
        log.contains("certificate") || log.contains("UnknownIssuer"),
        "{log}"
    );
    assert!(
        !upstream.log_text().contains("AUTH"),
        "{}",
        upstream.log_text()
    );
    let queued: usize = ["new", "cur"]
        .iter()
        .map(|s| {
            std::fs::read_dir(d.root.join("queue").join(s))
                .map(|r| r.count())
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(queued, 2);
    // Told the provider's CA: STARTTLS, AUTH, both recipients in one transaction.
    daemon.terminate();
    common::config(
        &d,
        &relay(&format!("smarthost_ca = \"{}\"\n", ca.display())),
    );
    let daemon = Daemon::start(&d.root);
    let start = Instant::now();
    while up_queue(&up.root).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not relayed:\n{}\n---\n{}",
            daemon.log_text(),
            upstream.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let got = up_queue(&up.root);
    assert_eq!(got.len(), 2, "{got:?}");
    for m in &got {
        assert!(m.contains("with ESMTPSA"), "{m}");
        assert!(m.contains(&format!("authenticated as {user}")), "{m}");
        assert!(m.contains("Subject: via the ISP"), "{m}");
    }
    // One transaction: the relay queued the two recipients as one group.
    let group = |m: &str| m.lines().next().unwrap_or("").to_string();
    assert!(
        group(&got[0]).starts_with("X-Turnmail-Group:"),
        "{}",
        got[0]
    );
    assert_eq!(group(&got[0]), group(&got[1]));
    let start = Instant::now();
    while up_queue(&d.root).len()
        + ["new", "cur"]
            .iter()
            .map(|s| {
                std::fs::read_dir(d.root.join("queue").join(s))
                    .map(|r| r.count())
                    .unwrap_or(0)
            })
            .sum::<usize>()
        > 0
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{}",
            daemon.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn relayed_mail_goes_out_at_once_but_never_while_another_runner_holds_the_queue() {
    // The sender is a stranger's address: no sender policy here.
    let Some(w) = world(&[], "\n[relay_access]\nsender_check = \"off\"\n") else {
        return;
    };
    // The test's client may relay, as a customer's network would.
    let rules = w.d.root.join("control/tcp.smtp");
    write(&rules, "127.0.0.1:allow,RELAYCLIENT=\"\"\n:allow\n");
    let sink = w.sink(
        [127, 0, 0, 2],
        Script {
            pipelining: true,
            ..Script::default()
        },
    );
    // Sent as soon as it is queued, by the session that queued it: no queue pass.
    w.send("first@one.example", "at once");
    wait_for("the relayed message", &w, || {
        !with_rcpt(&sink.messages(), "first@one.example").is_empty()
    });
    wait_for("an empty queue", &w, || w.queued() == 0);
    let log = w.daemon.log_text();
    assert!(log.contains("-> Removed"), "{log}");
    assert!(!log.contains("queue run:"), "sent without a pass: {log}");
    // Another process sending from the queue (`turnmail flush --queue`) holds its
    // lock: the daemon leaves the new file alone until it is let go.
    let lock_path = w.d.root.join("queue/.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&lock_path)
        .unwrap();
    if common::is_root() {
        let mu = common::mail_user();
        std::os::unix::fs::chown(&lock_path, Some(mu.uid), Some(mu.gid)).unwrap();
    }
    lock.lock().unwrap();
    w.send("second@one.example", "after the lock");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        with_rcpt(&sink.messages(), "second@one.example").is_empty(),
        "sent while another runner held the queue: {}",
        w.daemon.log_text()
    );
    assert_eq!(w.queued(), 1);
    lock.unlock().unwrap();
    wait_for("the message after the lock", &w, || {
        !with_rcpt(&sink.messages(), "second@one.example").is_empty()
    });
    wait_for("an empty queue", &w, || w.queued() == 0);
    assert_eq!(with_rcpt(&sink.messages(), "second@one.example").len(), 1);
}
