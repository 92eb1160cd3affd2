//! Sending mail through turnmail: the submission ports (587 with STARTTLS and AUTH, 465
//! with implicit TLS) driven by swaks and Python's smtplib, POP-before-SMTP after
//! poplib and after `turnmail checkpassword` run as qmail-popup runs it, tcp.smtp
//! rules, the sender policy, the sending limits, and port 25 refusing to relay as
//! before. A relayed message must land in ROOT/queue with its envelope; the outbound
//! runner's smarthost is a closed port, so it stays there.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::checkpassword;
use std::process::Command;

use common::daemon::{Client, Daemon, free_port, tool};
use common::dnsmasq::Dnsmasq;
use common::{DemoRoot, demo_root, write};

/// Settings every test here starts from: relayed mail waits in the queue.
fn start(d: &DemoRoot, extra: &str) -> Daemon {
    start_with(d, extra, &[])
}

/// The metrics page of a daemon started with `--metrics ADDR`.
fn metrics(addr: &str) -> String {
    use std::io::Read;
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
    let mut page = String::new();
    c.read_to_string(&mut page).unwrap();
    page
}

fn start_with(d: &DemoRoot, extra: &str, args: &[&str]) -> Daemon {
    let closed = free_port();
    common::config(
        d,
        &format!(
            "default_domain = \"example.com\"\n[relay]\nsmarthost = \"127.0.0.1:{closed}\"\ninterval_secs = 3600\n{extra}"
        ),
    );
    Daemon::start_with(&d.root, args)
}

/// The spool files in ROOT/queue (new and cur).
fn queued(d: &DemoRoot) -> Vec<String> {
    let mut v = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(d.root.join("queue").join(sub)) {
            for e in rd.flatten() {
                v.push(String::from_utf8_lossy(&std::fs::read(e.path()).unwrap()).into_owned());
            }
        }
    }
    v.sort();
    v
}

/// Waits a little for `n` queued files (delivery is synchronous, but the runner may
/// be moving one).
fn wait_queued(d: &DemoRoot, n: usize) -> Vec<String> {
    for _ in 0..50 {
        let q = queued(d);
        if q.len() >= n {
            return q;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    queued(d)
}

fn python(script: &str, args: &[&str]) -> (i32, String) {
    let mut a = vec!["-c", script];
    a.extend_from_slice(args);
    tool("python3", &a)
}

/// Submits one message with smtplib: `mode` is `starttls` (587) or `ssl` (465) or
/// `plain`; login only when a password is given. Prints what happened.
const SMTPLIB: &str = r#"
import smtplib, ssl, sys
host, port, mode, src, user, pw, frm, to = sys.argv[1:9]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
src = (src, 0) if src else None
try:
    if mode == "ssl":
        s = smtplib.SMTP_SSL(host, int(port), context=ctx, source_address=src, timeout=20)
    else:
        s = smtplib.SMTP(host, int(port), source_address=src, timeout=20)
        if mode == "starttls":
            s.starttls(context=ctx)
    if pw:
        s.login(user, pw)
    s.sendmail(frm, to.split(","), b"Subject: submitted\r\n\r\nhello out there\r\n")
    s.quit()
    print("sent")
except smtplib.SMTPRecipientsRefused as e:
    print("refused", list(e.recipients.values())[0])
except smtplib.SMTPSenderRefused as e:
    print("sender", e.smtp_code, e.smtp_error.decode())
except smtplib.SMTPResponseException as e:
    print("error", e.smtp_code, e.smtp_error.decode())
"#;

#[allow(clippy::too_many_arguments)]
fn smtplib(
    addr: std::net::SocketAddr,
    mode: &str,
    src: &str,
    auth: Option<(&str, &str)>,
    from: &str,
    to: &str,
) -> String {
    let (user, pw) = auth.unwrap_or(("", ""));
    let (code, out) = python(
        SMTPLIB,
        &[
            &addr.ip().to_string(),
            &addr.port().to_string(),
            mode,
            src,
            user,
            pw,
            from,
            to,
        ],
    );
    assert_eq!(code, 0, "{out}");
    out.trim().to_string()
}

fn login(d: &DemoRoot) -> (String, String) {
    (d.report.login.clone(), d.report.password.clone())
}

#[test]
fn smtplib_submits_on_587_and_465_and_the_relay_is_queued() {
    let d = demo_root();
    let s = start(&d, "");
    let (user, pw) = login(&d);
    let out = smtplib(
        s.submission,
        "starttls",
        "",
        Some((&user, &pw)),
        "joe@example.com",
        "friend@remote.example",
    );
    assert_eq!(out, "sent", "{}", s.log_text());
    let out = smtplib(
        s.submissions,
        "ssl",
        "",
        Some((&user, &pw)),
        "joe@example.com",
        "other@remote.example",
    );
    assert_eq!(out, "sent", "{}", s.log_text());
    let q = wait_queued(&d, 2);
    assert_eq!(q.len(), 2, "{q:?}");
    for (f, to) in q
        .iter()
        .zip(["friend@remote.example", "other@remote.example"])
    {
        assert!(
            f.starts_with(&format!(
                "Return-Path: <joe@example.com>\nDelivered-To: {to}\nReceived: from "
            )),
            "{f}"
        );
        assert!(f.contains("with ESMTPSA"), "{f}");
        assert!(f.contains(&format!("(authenticated as {user})")), "{f}");
        assert!(!f.contains(&pw), "the password is in the message: {f}");
        assert!(f.ends_with("\n\nhello out there\n"), "{f}");
    }
    // Local recipients are delivered as ever.
    let out = smtplib(
        s.submission,
        "starttls",
        "",
        Some((&user, &pw)),
        "joe@example.com",
        "joe@example.com",
    );
    assert_eq!(out, "sent");
}

#[test]
fn swaks_submits_with_starttls_and_with_implicit_tls() {
    let d = demo_root();
    let s = start(&d, "");
    let (user, pw) = login(&d);
    for (addr, tls) in [(s.submission, "--tls"), (s.submissions, "--tlsc")] {
        let (code, out) = tool(
            "swaks",
            &[
                "--server",
                &addr.to_string(),
                tls,
                "--auth",
                "PLAIN",
                "--auth-user",
                &user,
                "--auth-password",
                &pw,
                "--from",
                "joe@example.com",
                "--to",
                "someone@remote.example",
            ],
        );
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("235 2.7.0"), "{out}");
        assert!(out.contains("250 2.0.0 Ok: queued as"), "{out}");
    }
    assert_eq!(wait_queued(&d, 2).len(), 2);
}

#[test]
fn submission_wants_tls_for_plain_and_auth_before_mail() {
    let d = demo_root();
    let s = start(&d, "");
    let mut c = Client::connect(s.submission);
    assert!(c.reply().starts_with("220 "));
    let ehlo = c.cmd("EHLO laptop");
    assert!(
        ehlo.contains("STARTTLS") && !ehlo.contains("ETRN"),
        "{ehlo}"
    );
    assert!(
        ehlo.contains("AUTH CRAM-MD5") && !ehlo.contains("PLAIN"),
        "{ehlo}"
    );
    let r = c.cmd("AUTH PLAIN AGpvZUBleGFtcGxlLmNvbQBzZWNyZXQ=");
    assert!(r.starts_with("538 5.7.11"), "{r}");
    assert_eq!(
        c.cmd("MAIL FROM:<joe@example.com>"),
        "530 5.7.0 Authentication required"
    );
    // swaks agrees: AUTH PLAIN without TLS is refused.
    let (user, pw) = login(&d);
    let (code, out) = tool(
        "swaks",
        &[
            "--server",
            &s.submission.to_string(),
            "--auth",
            "PLAIN",
            "--auth-user",
            &user,
            "--auth-password",
            &pw,
            "--to",
            "someone@remote.example",
        ],
    );
    assert_ne!(code, 0, "{out}");
    assert!(queued(&d).is_empty());
}

#[test]
fn port_25_refuses_foreign_recipients_after_auth_unless_auth_relay() {
    let d = demo_root();
    let (user, pw) = login(&d);
    let s = start(&d, "");
    let out = smtplib(
        s.addr,
        "starttls",
        "",
        Some((&user, &pw)),
        "joe@example.com",
        "friend@remote.example",
    );
    assert!(out.starts_with("refused (553, b'5.7.1"), "{out}");
    let out = smtplib(
        s.addr,
        "plain",
        "",
        None,
        "x@remote.example",
        "friend@remote.example",
    );
    assert!(out.starts_with("refused (553"), "{out}");
    assert!(queued(&d).is_empty());
    drop(s);
    let s = start(&d, "[smtp]\nauth_relay = true\n");
    let out = smtplib(
        s.addr,
        "starttls",
        "",
        Some((&user, &pw)),
        "joe@example.com",
        "friend@remote.example",
    );
    assert_eq!(out, "sent", "{}", s.log_text());
    let q = wait_queued(&d, 1);
    assert!(q[0].contains("with ESMTPSA"), "{}", q[0]);
}

const POPLIB: &str = r#"
import poplib, sys
host, port, src, user, pw = sys.argv[1:6]
p = poplib.POP3(host, int(port), timeout=20)
# poplib has no source address: bind by hand when asked.
if src:
    import socket
    p.sock.close()
    sock = socket.create_connection((host, int(port)), 20, (src, 0))
    p.sock = sock; p.file = sock.makefile('rb'); p.welcome = p._getresp()
p.user(user); p.pass_(pw); print(p.stat()); p.quit()
"#;

#[test]
fn pop_before_smtp_opens_the_address_for_its_window() {
    let d = demo_root();
    let (user, pw) = login(&d);
    let s = start(&d, "[pop_before_smtp]\nenabled = true\nwindow_secs = 3\n");
    let to = "friend@remote.example";
    // Before any login: refused.
    let out = smtplib(s.addr, "plain", "127.0.0.1", None, "joe@example.com", to);
    assert!(out.starts_with("refused (553"), "{out}");
    let (code, out) = python(
        POPLIB,
        &[
            "127.0.0.1",
            &s.pop3.port().to_string(),
            "127.0.0.1",
            &user,
            &pw,
        ],
    );
    assert_eq!(code, 0, "{out}");
    // The same address relays on port 25 and sends without AUTH on 587 ...
    let out = smtplib(s.addr, "plain", "127.0.0.1", None, "joe@example.com", to);
    assert_eq!(out, "sent", "{}", s.log_text());
    let out = smtplib(
        s.submission,
        "plain",
        "127.0.0.1",
        None,
        "joe@example.com",
        to,
    );
    assert_eq!(out, "sent", "{}", s.log_text());
    // ... another loopback address does not ...
    let out = smtplib(s.addr, "plain", "127.0.0.2", None, "joe@example.com", to);
    assert!(out.starts_with("refused (553"), "{out}");
    let out = smtplib(
        s.submission,
        "plain",
        "127.0.0.2",
        None,
        "joe@example.com",
        to,
    );
    assert!(out.starts_with("sender 530"), "{out}");
    // ... and after the window nobody does.
    std::thread::sleep(Duration::from_secs(4));
    let out = smtplib(s.addr, "plain", "127.0.0.1", None, "joe@example.com", to);
    assert!(out.starts_with("refused (553"), "{out}");
    assert_eq!(wait_queued(&d, 2).len(), 2);
    assert!(
        s.log_text().contains("may relay: POP before SMTP"),
        "{}",
        s.log_text()
    );
}

/// `turnmail checkpassword PROG` with the login on fd 3, as qmail-popup runs it under
/// tcpserver (TCPREMOTEIP set).

#[test]
fn pop_before_smtp_through_checkpassword() {
    let d = demo_root();
    let (user, pw) = login(&d);
    let s = start(&d, "[pop_before_smtp]\nenabled = true\n");
    let to = "friend@remote.example";
    // A wrong password opens nothing.
    assert!(!checkpassword(&d.root, &user, "wrong", "127.0.0.3").success());
    let out = smtplib(s.addr, "plain", "127.0.0.3", None, "joe@example.com", to);
    assert!(out.starts_with("refused (553"), "{out}");
    assert!(checkpassword(&d.root, &user, &pw, "127.0.0.3").success());
    let out = smtplib(s.addr, "plain", "127.0.0.3", None, "joe@example.com", to);
    assert_eq!(out, "sent", "{}", s.log_text());
    let out = smtplib(s.addr, "plain", "127.0.0.4", None, "joe@example.com", to);
    assert!(out.starts_with("refused (553"), "{out}");
    // The shared file is the root's, fixed in size.
    let m = std::fs::metadata(d.root.join("run/pop-before-smtp")).unwrap();
    assert!(m.len() > 0);
}

#[test]
fn tcp_smtp_rules_deny_allow_and_relay_and_are_reread() {
    let d = demo_root();
    let rules = d.root.join("control/tcp.smtp");
    write(
        &rules,
        "# as on the old host\n127.0.0.5:deny\n127.0.0.6:allow,RELAYCLIENT=\"\"\n127.0.0.7-9:allow,RELAYCLIENT=\"\"\n127.:allow\n",
    );
    std::fs::set_permissions(&rules, PermissionsExt::from_mode(0o644)).unwrap();
    let s = start(&d, "");
    let to = "friend@remote.example";
    let mut c = Client::connect_from("127.0.0.5".parse().unwrap(), s.addr);
    let r = c.reply();
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert!(c.closed());
    let out = smtplib(s.addr, "plain", "127.0.0.6", None, "joe@example.com", to);
    assert_eq!(out, "sent", "{}", s.log_text());
    let out = smtplib(s.addr, "plain", "127.0.0.8", None, "joe@example.com", to);
    assert_eq!(out, "sent");
    let out = smtplib(s.addr, "plain", "127.0.0.10", None, "joe@example.com", to);
    assert!(out.starts_with("refused (553"), "{out}");
    // Edited: .5 may now relay, .6 is denied.
    write(&rules, "127.0.0.6:deny\n127.0.0.5:allow,RELAYCLIENT=\"\"\n");
    common::touch_later(&rules, 5);
    let out = smtplib(s.addr, "plain", "127.0.0.5", None, "joe@example.com", to);
    assert_eq!(out, "sent", "{}", s.log_text());
    let mut c = Client::connect_from("127.0.0.6".parse().unwrap(), s.addr);
    assert!(c.reply().starts_with("421 4.7.0"));
    assert_eq!(wait_queued(&d, 3).len(), 3);
    // `turnmail check` points at a rule it cannot honour and at a broken one.
    write(
        &rules,
        "joe@127.0.0.1:allow,RELAYCLIENT=\"\"\n1.2.3:permit\n",
    );
    let o = common::turnmail(&d.root, &["check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("tcp.smtp:1") && out.contains("tcp.smtp:2"),
        "{out}"
    );
}

/// Addresses of TEST-NET-2 on the loopback interface for one test: the resolver
/// answers every 127.in-addr.arpa name with "localhost" itself (RFC 6761), so clients
/// with reverse names from a real DNS server need addresses of their own.
struct LoopbackAddresses(Vec<String>);

impl LoopbackAddresses {
    fn add(addresses: &[&str]) -> Option<LoopbackAddresses> {
        if !common::is_root() {
            common::skip("adding addresses to the loopback interface needs root");
            return None;
        }
        let mut added = LoopbackAddresses(Vec::new());
        for a in addresses {
            let o = Command::new("ip")
                .args(["addr", "add", &format!("{a}/32"), "dev", "lo"])
                .output()
                .expect("running ip (iproute2)");
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success() || err.contains("exists"),
                "ip addr add {a}: {err}"
            );
            added.0.push(a.to_string());
        }
        Some(added)
    }
}

impl Drop for LoopbackAddresses {
    fn drop(&mut self) {
        for a in &self.0 {
            let _ = Command::new("ip")
                .args(["addr", "del", &format!("{a}/32"), "dev", "lo"])
                .output();
        }
    }
}

#[test]
fn tcp_smtp_rules_name_clients_by_their_confirmed_reverse_names() {
    let Some(_addrs) = LoopbackAddresses::add(&[
        "198.51.100.21",
        "198.51.100.22",
        "198.51.100.23",
        "198.51.100.24",
        "198.51.100.25",
    ]) else {
        return;
    };
    let Some(dns) = Dnsmasq::start(&[
        "--local=/100.51.198.in-addr.arpa/".to_string(),
        "--host-record=relay.customer.example,198.51.100.21".to_string(),
        "--host-record=b.office.customer.example,198.51.100.22".to_string(),
        "--host-record=spam.bad.example,198.51.100.23".to_string(),
        // A PTR record whose name does not lead back to the address: no name.
        "--ptr-record=24.100.51.198.in-addr.arpa,liar.customer.example".to_string(),
    ]) else {
        return;
    };
    let d = demo_root();
    write(
        &d.root.join("control/tcp.smtp"),
        "=relay.customer.example:allow,RELAYCLIENT=\"\"\n\
         =.customer.example:allow,RELAYCLIENT=\"\"\n\
         =.bad.example:deny\n\
         :allow\n",
    );
    let s = start(&d, &format!("dns = [\"127.0.0.1:{}\"]\n", dns.port));
    let to = "friend@remote.example";
    // The exact name, then a suffix of another name.
    let out = smtplib(
        s.addr,
        "plain",
        "198.51.100.21",
        None,
        "joe@example.com",
        to,
    );
    assert_eq!(out, "sent", "{}", s.log_text());
    let out = smtplib(
        s.addr,
        "plain",
        "198.51.100.22",
        None,
        "joe@example.com",
        to,
    );
    assert_eq!(out, "sent", "{}", s.log_text());
    // A denied domain's host is turned away at connect.
    let mut c = Client::connect_from("198.51.100.23".parse().unwrap(), s.addr);
    let r = c.reply();
    assert!(r.starts_with("421 4.7.0"), "{r}");
    assert!(c.closed());
    // Unconfirmed and missing names fall through to the empty rule: no relaying.
    for src in ["198.51.100.24", "198.51.100.25"] {
        let out = smtplib(s.addr, "plain", src, None, "joe@example.com", to);
        assert!(out.starts_with("refused (553"), "{src}: {out}");
    }
    assert_eq!(wait_queued(&d, 2).len(), 2);
    let log = s.log_text();
    assert!(
        log.contains("tcp.smtp line 1") && log.contains("tcp.smtp line 2"),
        "{log}"
    );
    assert!(log.contains("spam.bad.example"), "{log}");
}

#[test]
fn sender_policy_refuses_others_addresses() {
    let d = demo_root();
    let (user, pw) = login(&d);
    // An alias forwarding to joe is joe's to send as.
    let p = d.root.join("domains/example.com/.qmail-sales");
    write(&p, &format!("&{user}\n"));
    std::fs::set_permissions(&p, PermissionsExt::from_mode(0o600)).unwrap();
    if common::is_root() {
        let mu = common::mail_user();
        std::os::unix::fs::chown(&p, Some(mu.uid), Some(mu.gid)).unwrap();
    }
    let rules = d.root.join("control/tcp.smtp");
    write(&rules, "127.0.0.11:allow,RELAYCLIENT=\"\"\n");
    let s = start(&d, "");
    let to = "friend@remote.example";
    let auth = Some((user.as_str(), pw.as_str()));
    // What the account gets when it sends as `from` on 587.
    let submit_as = |from: &str| smtplib(s.submission, "starttls", "", auth, from, to);
    let out = submit_as("boss@bank.example");
    assert!(out.starts_with("sender 553 5.7.1"), "{out}");
    assert!(out.contains("not one of"), "{out}");
    let out = submit_as("someone@example.com");
    assert!(out.starts_with("sender 553 5.7.1"), "{out}");
    let out = submit_as("sales@example.com");
    assert_eq!(out, "sent", "{}", s.log_text());
    let out = submit_as("");
    assert_eq!(out, "sent", "the null sender");
    // A tcp.smtp client (sender_check "domain" by default): our domains only.
    let out = smtplib(s.addr, "plain", "127.0.0.11", None, "x@bank.example", to);
    assert!(out.starts_with("sender 553 5.7.1"), "{out}");
    let out = smtplib(
        s.addr,
        "plain",
        "127.0.0.11",
        None,
        "anyone@example.com",
        to,
    );
    assert_eq!(out, "sent");
    // The domain setting, by the command: any address of joe's domain.
    let o = common::turnmail(&d.root, &["domain", "senders", "example.com", "any"]);
    assert!(o.status.success(), "{o:?}");
    let shown = common::turnmail(&d.root, &["domain", "senders", "example.com"]);
    assert!(
        String::from_utf8_lossy(&shown.stdout).contains("any address"),
        "{shown:?}"
    );
    common::touch_later(&d.root.join("control/anysender"), 2);
    let out = submit_as("someone@example.com");
    assert_eq!(out, "sent", "{}", s.log_text());
    // And back: own addresses only.
    let o = common::turnmail(&d.root, &["domain", "senders", "example.com", "own"]);
    assert!(o.status.success(), "{o:?}");
    common::touch_later(&d.root.join("control/anysender"), 4);
    let out = submit_as("someone@example.com");
    assert!(out.starts_with("sender 553 5.7.1"), "{out}");
    // Not one of ours: refused with a clear message.
    let o = common::turnmail(&d.root, &["domain", "senders", "bank.example", "any"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bank.example"),
        "{o:?}"
    );
}

#[test]
fn limits_answer_451() {
    let d = demo_root();
    let (user, pw) = login(&d);
    let s = start(
        &d,
        "[submission_limits]\nmessages_per_hour = 2\nrecipients_per_message = 2\n",
    );
    let auth = Some((user.as_str(), pw.as_str()));
    let out = smtplib(
        s.submission,
        "starttls",
        "",
        auth,
        "joe@example.com",
        "a@remote.example,b@remote.example,c@remote.example",
    );
    // smtplib sends when some recipients are accepted; the third got 451 4.7.1.
    assert_eq!(out, "sent", "{}", s.log_text());
    assert!(
        s.log_text().contains("more than 2 recipients"),
        "{}",
        s.log_text()
    );
    let out = smtplib(
        s.submission,
        "starttls",
        "",
        auth,
        "joe@example.com",
        "d@remote.example",
    );
    assert_eq!(out, "sent");
    let out = smtplib(
        s.submission,
        "starttls",
        "",
        auth,
        "joe@example.com",
        "e@remote.example",
    );
    assert!(out.starts_with("sender 451 4.7.1"), "{out}");
    assert!(s.log_text().contains("more than 2 messages in an hour"));
    assert_eq!(wait_queued(&d, 3).len(), 3);
    // Port 25 without a grant is not limited: local mail flows.
    let out = smtplib(
        s.addr,
        "plain",
        "",
        None,
        "x@remote.example",
        "joe@example.com",
    );
    assert_eq!(out, "sent");
}

#[test]
fn a_site_relays_from_its_networks_with_its_own_senders() {
    let d = demo_root();
    let st = d.root.join("sites/acme/site.toml");
    let mut text = std::fs::read_to_string(&st).unwrap();
    text.push_str("relay_networks = [\"127.0.0.12/32\", \"office.acme.example\"]\n");
    write(&st, &text);
    // On the postgres backend the site is a row: loaded from the files again.
    common::accounts_changed(&d);
    // A name is no network: check says so, and it is ignored.
    let o = common::turnmail(&d.root, &["check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("\"office.acme.example\" is not an address"),
        "{out}"
    );
    let m = format!("127.0.0.1:{}", free_port());
    let s = start_with(&d, "", &["--metrics", &m]);
    let to = "partner@remote.example";
    let out = smtplib(
        s.addr,
        "plain",
        "127.0.0.12",
        None,
        "office@acme.example",
        to,
    );
    assert_eq!(out, "sent", "{}", s.log_text());
    let out = smtplib(s.addr, "plain", "127.0.0.12", None, "joe@example.com", to);
    assert!(out.starts_with("sender 553 5.7.1"), "{out}");
    assert!(out.contains("site acme"), "{out}");
    let out = smtplib(
        s.addr,
        "plain",
        "127.0.0.13",
        None,
        "office@acme.example",
        to,
    );
    assert!(out.starts_with("refused (553"), "{out}");
    let q = wait_queued(&d, 1);
    assert_eq!(q.len(), 1);
    assert!(
        q[0].starts_with(
            "Return-Path: <office@acme.example>\nDelivered-To: partner@remote.example\n"
        ),
        "{}",
        q[0]
    );
    // The metrics count the relayed message and the refused sender.
    let page = metrics(&m);
    assert!(
        page.contains("turnmail_submissions_total{result=\"accepted\"} 1"),
        "{page}"
    );
    assert!(
        page.contains("turnmail_submissions_total{result=\"sender\"} 1"),
        "{page}"
    );
}

#[test]
fn a_qmail_forward_starts_a_queue_run_at_once() {
    // Queue runs every hour here: a forward must not wait for the next one.
    let d = demo_root();
    let p = d.root.join("domains/example.com/.qmail-away");
    write(&p, "&friend@remote.example\n");
    std::fs::set_permissions(&p, PermissionsExt::from_mode(0o600)).unwrap();
    if common::is_root() {
        let mu = common::mail_user();
        std::os::unix::fs::chown(&p, Some(mu.uid), Some(mu.gid)).unwrap();
    }
    let s = start(&d, "");
    let mut c = Client::connect(s.addr);
    assert!(c.reply().starts_with("220"));
    c.cmd("HELO client.example");
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<away@example.com>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    assert!(c.cmd("Subject: fwd\r\n\r\nhi\r\n.").starts_with("250"));
    c.cmd("QUIT");
    // The smarthost is a closed port: the forward's attempt fails, within seconds.
    let start = std::time::Instant::now();
    let attempted = |log: &str| {
        log.lines()
            .any(|l| l.contains("relay:") && l.contains("recipient=friend@remote.example"))
    };
    while !attempted(&s.log_text()) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no attempt at the forward: {}",
            s.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_recipient_limit_counts_one_transaction_not_the_session() {
    let d = demo_root();
    write(
        &d.root.join("control/tcp.smtp"),
        "127.0.0.12:allow,RELAYCLIENT=\"\"\n",
    );
    let s = start(&d, "[submission_limits]\nrecipients_per_message = 2\n");
    let mut c = Client::connect_from("127.0.0.12".parse().unwrap(), s.addr);
    assert!(c.reply().starts_with("220"));
    c.cmd("EHLO client.example");
    for round in 0..3 {
        assert!(c.cmd("MAIL FROM:<joe@example.com>").starts_with("250"));
        for n in 0..2 {
            let r = c.cmd(&format!("RCPT TO:<r{round}x{n}@remote.example>"));
            assert!(r.starts_with("250"), "round {round}, recipient {n}: {r}");
        }
        let r = c.cmd("RCPT TO:<one-too-many@remote.example>");
        assert!(r.starts_with("451 4.7.1"), "round {round}: {r}");
        assert!(c.cmd("RSET").starts_with("250"));
    }
    c.cmd("QUIT");
}
