//! Password guessing against the running daemon, as an attacker would try it: a
//! known-good account interleaved with guesses, many guesses at once, every port that
//! checks a password, and the log an operator reads. (checkpassword's shared counts:
//! tests/checkpassword.rs.)

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::daemon::{Client, Daemon};
use common::{DemoRoot, demo_root};

/// POP3 USER/PASS on a new connection; the reply to PASS.
fn pop3_login(addr: SocketAddr, login: &str, password: &str) -> String {
    pop3_login_from("127.0.0.1".parse().unwrap(), addr, login, password)
}

fn pop3_login_from(src: std::net::IpAddr, addr: SocketAddr, login: &str, password: &str) -> String {
    let mut c = Client::connect_from(src, addr);
    assert!(c.reply().starts_with("+OK"));
    assert!(c.cmd(&format!("USER {login}")).starts_with("+OK"));
    c.cmd(&format!("PASS {password}"))
}

fn plain(login: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{login}\0{password}"))
}

/// Another POP account of the demo root: `ann@example.com`, password `ann-secret`.
fn add_ann(d: &DemoRoot) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["user", "add", "ann@example.com", "--password-stdin"])
        .stdin_bytes(b"ann-secret\n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

trait StdinBytes {
    fn stdin_bytes(&mut self, input: &[u8]) -> std::process::Output;
}

impl StdinBytes for std::process::Command {
    fn stdin_bytes(&mut self, input: &[u8]) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }
}

fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

#[test]
fn a_good_login_interleaved_with_guesses_does_not_reset_the_count() {
    let d = demo_root();
    add_ann(&d);
    common::config(
        &d,
        "[logins]\nfailure_delay_ms = 20\nmax_failures = 10\nmax_failures_per_login = 0\n",
    );
    let s = Daemon::start(&d.root);
    let joe = d.report.password.clone();
    // 9 wrong passwords for ann, then joe's right one, over and over.
    let mut refused_joe_at = None;
    'rounds: for round in 0..5 {
        for i in 0..9 {
            let r = pop3_login(s.pop3, "ann@example.com", &format!("guess{round}-{i}"));
            assert!(r.starts_with("-ERR"), "{r}");
        }
        let r = pop3_login(s.pop3, "joe@example.com", &joe);
        if r.starts_with("-ERR") {
            refused_joe_at = Some(round);
            break 'rounds;
        }
    }
    let log = s.log_text();
    // The tenth wrong password blocks the address: the next round's guesses are refused
    // unchecked, and so is joe's right password.
    assert_eq!(refused_joe_at, Some(1), "{log}");
    assert_eq!(count(&log, "login failed"), 10, "{log}");
    assert_eq!(count(&log, "client blocked"), 1, "{log}");
    assert!(!log.contains("guess1-"), "passwords are never logged");
    // Another address is not affected.
    let r = pop3_login_from(
        "127.0.0.2".parse().unwrap(),
        s.pop3,
        "joe@example.com",
        &joe,
    );
    assert!(r.starts_with("+OK"), "{r}");
}

#[test]
fn parallel_guesses_are_checked_at_most_up_to_the_limit() {
    let d = demo_root();
    common::config(
        &d,
        "[logins]\nfailure_delay_ms = 300\nmax_failures = 10\nmax_failures_per_login = 0\n",
    );
    let s = Daemon::start(&d.root);
    let addr = s.pop3;
    // 50 connections send their guesses at one moment.
    let mut clients: Vec<Client> = (0..50)
        .map(|_| {
            let mut c = Client::connect(addr);
            assert!(c.reply().starts_with("+OK"));
            c
        })
        .collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(format!("USER joe@example.com\r\nPASS wrong{i}\r\n").as_bytes());
    }
    for c in &mut clients {
        assert!(c.reply().starts_with("+OK"));
        assert!(c.reply().starts_with("-ERR"));
    }
    let log = s.log_text();
    assert_eq!(count(&log, "login failed"), 10, "{log}");
    assert_eq!(count(&log, "login refused unchecked"), 40, "{log}");
}

#[test]
fn every_port_that_checks_a_password_shares_one_count() {
    let d = demo_root();
    common::config(
        &d,
        "[smtp]\nplaintext_auth = true\n[odmr]\nplaintext_auth = true\n[logins]\nfailure_delay_ms = 20\nmax_failures = 6\nmax_failures_per_login = 0\n",
    );
    let s = Daemon::start(&d.root);
    let joe = d.report.password.clone();
    for i in 0..3 {
        let mut c = Client::connect(s.addr);
        assert!(c.reply().starts_with("220"));
        assert!(c.cmd("EHLO attacker.example").starts_with("250"));
        let r = c.cmd(&format!(
            "AUTH PLAIN {}",
            plain("joe@example.com", &format!("s{i}"))
        ));
        assert!(r.starts_with("535"), "{r}");
    }
    for i in 0..3 {
        let mut c = Client::connect(s.odmr);
        assert!(c.reply().starts_with("220"));
        assert!(c.cmd("EHLO attacker.example").starts_with("250"));
        let r = c.cmd(&format!(
            "AUTH PLAIN {}",
            plain("joe@example.com", &format!("o{i}"))
        ));
        assert!(r.starts_with("535"), "{r}");
    }
    // Six failures in all, on two other ports: POP3 refuses the right password too.
    let r = pop3_login(s.pop3, "joe@example.com", &joe);
    assert!(r.starts_with("-ERR"), "{r}");
    let mut c = Client::connect(s.addr);
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO attacker.example").starts_with("250"));
    let r = c.cmd(&format!("AUTH PLAIN {}", plain("joe@example.com", &joe)));
    assert!(r.starts_with("535"), "{r}");
    let log = s.log_text();
    for service in ["service=\"smtp\"", "service=\"odmr\"", "service=\"pop3\""] {
        assert!(
            log.contains(service) || log.contains(&service.replace('"', "")),
            "{service}: {log}"
        );
    }
}

#[test]
fn one_login_is_blocked_before_the_whole_address_and_a_success_clears_it() {
    let d = demo_root();
    add_ann(&d);
    common::config(
        &d,
        "[logins]\nfailure_delay_ms = 20\nmax_failures = 20\nmax_failures_per_login = 3\n",
    );
    let s = Daemon::start(&d.root);
    let joe = d.report.password.clone();
    // Two typos and the right password: joe's own count starts afresh.
    for p in ["typo1", "typo2"] {
        assert!(pop3_login(s.pop3, "joe@example.com", p).starts_with("-ERR"));
    }
    assert!(pop3_login(s.pop3, "joe@example.com", &joe).starts_with("+OK"));
    for p in ["typo3", "typo4"] {
        assert!(pop3_login(s.pop3, "joe@example.com", p).starts_with("-ERR"));
    }
    assert!(pop3_login(s.pop3, "joe@example.com", &joe).starts_with("+OK"));
    // Three guesses at ann: ann is blocked from here, joe is not.
    for p in ["g1", "g2", "g3"] {
        assert!(pop3_login(s.pop3, "ann@example.com", p).starts_with("-ERR"));
    }
    assert!(pop3_login(s.pop3, "ann@example.com", "ann-secret").starts_with("-ERR"));
    assert!(pop3_login(s.pop3, "joe@example.com", &joe).starts_with("+OK"));
    let log = s.log_text();
    assert_eq!(count(&log, "login blocked from this client"), 1, "{log}");
    assert_eq!(count(&log, "client blocked"), 0, "{log}");
}

#[test]
fn blocks_and_releases_are_logged_once_each() {
    let d = demo_root();
    common::config(
        &d,
        "[logins]\nfailure_delay_ms = 10\nmax_failures = 3\nmax_failures_per_login = 0\nblock_secs = 1\nwindow_secs = 1\n",
    );
    let s = Daemon::start(&d.root);
    // Three are checked; with a 1 s window a little has drained by the third, so the
    // fourth is the one that finds the count full, starts the block, and is refused
    // unchecked.
    for i in 0..4 {
        assert!(pop3_login(s.pop3, "nobody@example.com", &format!("x{i}")).starts_with("-ERR"));
    }
    let t = Instant::now();
    while count(&s.log_text(), "client released") == 0 && t.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = s.log_text();
    assert_eq!(count(&log, "client blocked"), 1, "{log}");
    assert_eq!(count(&log, "client released"), 1, "{log}");
    assert_eq!(count(&log, "login refused unchecked"), 1, "{log}");
    // Each failure has its line, with the address and the login.
    let failed: Vec<&str> = log.lines().filter(|l| l.contains("login failed")).collect();
    assert_eq!(failed.len(), 3, "{log}");
    assert!(
        failed
            .iter()
            .all(|l| l.contains("127.0.0.1") && l.contains("nobody@example.com"))
    );
    // Released: the address may try again.
    let joe = d.report.password.clone();
    assert!(pop3_login(s.pop3, "joe@example.com", &joe).starts_with("+OK"));
}

#[test]
fn ipv6_clients_are_counted_by_their_64_for_connections_and_failures() {
    let Some(_addrs) = common::LoopbackAddrs::add(&[
        "2001:db8:6401::a",
        "2001:db8:6401::b",
        "2001:db8:6401::c",
        "2001:db8:6402::a",
    ]) else {
        return;
    };
    let d = demo_root();
    common::config(
        &d,
        "[smtp]\nplaintext_auth = true\n[limits]\nmax_connections_per_ip = 2\n[logins]\nfailure_delay_ms = 10\nmax_failures = 3\nmax_failures_per_login = 0\n",
    );
    let s = Daemon::start_at(
        &d.root,
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, common::daemon::free_port())),
    );
    let ip = |a: &str| a.parse::<std::net::IpAddr>().unwrap();
    // Two connections from two addresses of one /64 fill that client's slots.
    let mut held = Vec::new();
    for a in ["2001:db8:6401::a", "2001:db8:6401::b"] {
        let mut c = Client::connect_from(ip(a), s.addr);
        assert!(c.reply().starts_with("220"));
        held.push(c);
    }
    let mut third = Client::connect_from(ip("2001:db8:6401::c"), s.addr);
    let r = third.reply();
    assert!(r.starts_with("421") && r.contains("your address"), "{r}");
    let mut other = Client::connect_from(ip("2001:db8:6402::a"), s.addr);
    assert!(other.reply().starts_with("220"));
    drop(other);
    // Three wrong passwords from ::a block ::b's right one; another /64 logs in.
    let joe = d.report.password.clone();
    let auth = |c: &mut Client, pw: &str| {
        assert!(c.cmd("EHLO client.example").starts_with("250"));
        c.cmd(&format!("AUTH PLAIN {}", plain("joe@example.com", pw)))
    };
    for i in 0..3 {
        let r = auth(&mut held[0], &format!("w{i}"));
        assert!(r.starts_with("535"), "{r}");
    }
    let r = auth(&mut held[1], &joe);
    assert!(r.starts_with("535"), "{r}");
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    let mut c = Client::connect_from(ip("2001:db8:6402::a"), s.addr);
    assert!(c.reply().starts_with("220"));
    let r = auth(&mut c, &joe);
    assert!(r.starts_with("235"), "{r}");
    let log = s.log_text();
    assert!(log.contains("2001:db8:6401::/64"), "{log}");
}
