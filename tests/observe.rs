//! Watching the running daemon as an operator does: `turnmail status` through the
//! control socket, the Prometheus metrics listener scraped under load and checked by
//! Debian's `promtool`, and the alert rules in deploy/ checked by it too.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::daemon::{Daemon, free_port, tool};
use common::{demo_root, turnmail};

/// `GET path` on `addr`: (status line, body).
fn get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap_or((&all, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// promtool on stdin, as `promtool check metrics` reads it.
fn promtool_check_metrics(text: &str) -> (i32, String) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => panic!("promtool is required (tests/install-peers installs prometheus): {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    let mut out = String::from_utf8_lossy(&o.stdout).into_owned();
    out.push_str(&String::from_utf8_lossy(&o.stderr));
    (o.status.code().unwrap_or(-1), out)
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn status_and_metrics_show_the_running_daemon_under_load() {
    let d = demo_root();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let s = Daemon::start_with(&d.root, &["--metrics", &metrics.to_string()]);

    // Some of everything: messages (accepted and refused), a good and a bad login,
    // mail held for the site, an ETRN.
    let deliveries: Vec<_> = (0..8)
        .map(|i| {
            let addr = s.addr.to_string();
            std::thread::spawn(move || {
                let to = if i % 2 == 0 {
                    "joe@example.com"
                } else {
                    "x@acme.example"
                };
                tool(
                    "swaks",
                    &[
                        "--server",
                        &addr,
                        "--to",
                        to,
                        "--from",
                        "a@example.org",
                        "--silent",
                        "2",
                    ],
                )
            })
        })
        .collect();
    // Scrape while the load runs: every scrape is a valid exposition.
    for _ in 0..3 {
        let (status, body) = get(metrics, "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
        let (code, out) = promtool_check_metrics(&body);
        assert_eq!(code, 0, "promtool: {out}\n{body}");
    }
    for t in deliveries {
        let (code, out) = t.join().unwrap();
        assert_eq!(code, 0, "{out}");
    }
    let mut c = s.connect();
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO client.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.org>").starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<victim@elsewhere.example>")
            .starts_with("553")
    );
    assert!(c.cmd("RCPT TO:<nobody@example.com>").starts_with("550"));
    assert!(c.cmd("RSET").starts_with("250"));
    let r = c.cmd("ETRN acme.example");
    assert!(r.starts_with("25"), "{r}");
    let mut p = common::daemon::Client::connect(s.pop3);
    assert!(p.reply().starts_with("+OK"));
    assert!(p.cmd("USER joe@example.com").starts_with("+OK"));
    assert!(p.cmd("PASS wrong").starts_with("-ERR"));
    assert!(p.cmd("USER joe@example.com").starts_with("+OK"));
    assert!(
        p.cmd(&format!("PASS {}", d.report.password))
            .starts_with("+OK")
    );

    let (_, body) = get(metrics, "/metrics");
    let (code, out) = promtool_check_metrics(&body);
    assert_eq!(code, 0, "promtool: {out}\n{body}");
    assert_eq!(
        value(&body, "turnmail_smtp_messages_total{result=\"accepted\"}"),
        Some(8.0),
        "{body}"
    );
    assert_eq!(
        value(
            &body,
            "turnmail_smtp_recipients_refused_total{reason=\"relaying_denied\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &body,
            "turnmail_smtp_recipients_refused_total{reason=\"unknown\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &body,
            "turnmail_logins_total{service=\"pop3\",result=\"failure\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &body,
            "turnmail_logins_total{service=\"pop3\",result=\"success\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(&body, "turnmail_turn_requests_total{kind=\"etrn\"}"),
        Some(1.0)
    );
    // The four site messages wait (the demo site's RELAYHOST does not answer).
    let queued = value(&body, "turnmail_site_queued_messages{site=\"acme\"}");
    assert_eq!(queued, Some(4.0), "{body}");
    assert!(value(&body, "turnmail_delivery_duration_seconds_count").unwrap_or(0.0) >= 8.0);
    assert!(value(&body, "turnmail_connections_total{listener=\"smtp\"}").unwrap_or(0.0) >= 9.0);
    // Anything but /metrics is refused.
    assert!(get(metrics, "/").0.contains("404"));

    // turnmail status, human and JSON, through the control socket.
    let o = turnmail(&d.root, &["status"]);
    assert!(o.status.success(), "{o:?}");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("daemon     running: pid"), "{text}");
    assert!(text.contains(&format!("SMTP     {}", s.addr)), "{text}");
    assert!(text.contains("8 accepted"), "{text}");
    assert!(text.contains("NEXT FLUSH"), "{text}");
    let o = turnmail(&d.root, &["status", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let daemon = &j["daemon"];
    assert_eq!(daemon["pid"], s.child.id());
    let listening = daemon["listening"].as_array().unwrap();
    assert!(
        listening
            .iter()
            .any(|l| l["service"] == "metrics" && l["address"] == metrics.to_string())
    );
    let logins = daemon["counters"]["logins"].as_array().unwrap();
    let failures: u64 = logins
        .iter()
        .filter(|c| c["labels"]["result"] == "failure")
        .map(|c| c["value"].as_u64().unwrap())
        .sum();
    assert_eq!(failures, 1);
    // Every site has its next flush: the demo site is on the default schedule.
    let site = &daemon["sites"][0];
    assert_eq!(site["name"], "acme");
    assert!(site["next_run"].is_string(), "{site}");
    assert!(j["sites"][0]["next_run"].is_i64(), "{}", j["sites"]);
    assert_eq!(j["sites"][0]["effective_schedule"], "*/2 * * * *");

    // Without a daemon: said so, and the file-side facts are still there.
    drop(s);
    let o = turnmail(&d.root, &["status", "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(j["daemon"].is_null());
    assert!(j["sites"][0]["next_run"].is_i64());
    let o = turnmail(&d.root, &["status"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("daemon     not running"));
}

#[test]
fn the_alert_rules_are_valid() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/turnmail-alerts.yml");
    let (code, out) = tool("promtool", &["check", "rules", rules]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("SUCCESS: 6 rules found"), "{out}");
}
