//! Several nodes on one mail root: three `turnmail serve` processes, each with its own
//! ports and `--node`, sharing one root as the nodes of an ISP share one on NFS. Mail
//! sent to all of them lands once; a site's mail goes out once whichever nodes flush;
//! a killed node's flush is finished by another; ETRN, ATRN, POP3's IN-USE, the
//! outbound queue and the login limits hold across nodes.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::daemon::Client;
use common::demo_root;
use common::sink::{Script, Sink};

#[test]
fn a_thousand_messages_to_three_nodes_land_once_each() {
    let d = demo_root();
    let ns = nodes(&d, 3);
    const TOTAL: usize = 1000;
    const CLIENTS_PER_NODE: usize = 4;
    send_spread(
        &ns,
        CLIENTS_PER_NODE,
        TOTAL,
        "bob@example.org",
        "joe@example.com",
        |i| format!("m{i}@cluster.test"),
    );
    let md = d.root.join("domains/example.com/joe/Maildir");
    let files = maildir_files(&md);
    assert_eq!(files.len(), TOTAL, "one file per message");
    let ids = ids_in(&md);
    assert_eq!(ids.len(), TOTAL);
    assert!(ids.values().all(|&c| c == 1), "a message twice");
    // Each node's name is in the unique names it made (the host part `NODE.HOST`).
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for n in ["n1", "n2", "n3"] {
        let part = format!(".{n}.");
        let count = names.iter().filter(|x| x.contains(&part)).count();
        assert!(
            count >= TOTAL / ns.len() - CLIENTS_PER_NODE,
            "{count} names carry {n}: {:?}",
            &names[..3]
        );
    }
}

#[test]
fn a_schedule_firing_on_every_node_flushes_each_message_once() {
    let d = demo_root();
    // Each reply a little late: the first node's flush is still running when the
    // others fire at the same minute.
    let sink = Sink::start(Script {
        delay: Duration::from_millis(20),
        ..Script::default()
    });
    site_setup(&d, &sink, "");
    common::config(&d, "[flush]\nschedule = \"* * * * *\"\njitter_secs = 0\n");
    let ns = nodes(&d, 3);
    // Every node is up before the mail is: the next minute fires on all three.
    scheduled_flush_sends_once(&d, &ns, &sink, 30);
}

#[test]
fn a_node_killed_mid_flush_leaves_the_rest_for_another_node() {
    let d = demo_root();
    let sink = Sink::start(Script {
        delay: Duration::from_millis(40),
        ..Script::default()
    });
    site_setup(&d, &sink, "");
    common::config(&d, "[flush]\nschedule = \"0 0 1 1 *\"\n");
    let mut ns = nodes(&d, 3);
    killed_flush_is_finished_by_another_node(&d, &mut ns, &sink, 20, || {}, || {});
}

#[test]
fn etrn_and_the_operator_on_one_node_see_another_nodes_flush() {
    let d = demo_root();
    let sink = Sink::start(Script {
        delay: Duration::from_millis(100),
        ..Script::default()
    });
    site_setup(&d, &sink, "");
    common::config(&d, "[flush]\nschedule = \"0 0 1 1 *\"\n");
    let ns = nodes(&d, 3);
    // About ten seconds of flushing: time for the other nodes to be asked meanwhile.
    const N: usize = 20;
    spool_n(&d, N);
    let r = etrn(&ns[0]);
    assert!(r.starts_with("253"), "{r}");
    // Node 1's flush holds the site's lock once its connection is up.
    wait_for("node 1's connection", Duration::from_secs(20), || {
        sink.connections.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
    let r = etrn(&ns[1]);
    assert!(
        r.starts_with("252"),
        "ETRN on node 2 while node 1 flushes: {r}"
    );
    // The operator asking node 3's daemon is told the same.
    let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["--node", "n3", "flush", "acme"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("another flush holds the lock"),
        "{o:?} {}",
        ns[2].log_text()
    );
    assert!(ns[2].log_text().contains("reason=\"operator\""));
    wait_for("all of them", Duration::from_secs(90), || spooled(&d) == 0);
    std::thread::sleep(Duration::from_millis(500));
    let counts = by_recipient(&sink.messages());
    assert_eq!(counts.len(), N);
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");
    // Each node answers for itself on its own control socket.
    for (i, n) in ns.iter().enumerate() {
        let name = format!("n{}", i + 1);
        assert!(d.root.join(format!("run/{name}/control.sock")).exists());
        let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
            .arg("--root")
            .arg(&d.root)
            .args(["status", "--json", "--node", &name])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["daemon"]["node"], name.as_str(), "{v}");
        assert_eq!(v["daemon"]["pid"], n.child.id(), "{v}");
    }
    assert!(!d.root.join("run/control.sock").exists());
}

#[test]
fn pop3_in_use_holds_across_nodes() {
    let d = demo_root();
    common::config(&d, "[pop3]\nsession_lock = true\n");
    let ns = nodes(&d, 2);
    let (user, pass) = (&d.report.login, &d.report.password);
    let mut first = Pop::connect(ns[0].pop3);
    let r = first.login(user, pass);
    assert!(r.starts_with("+OK"), "{r}");
    let mut second = Pop::connect(ns[1].pop3);
    let r = second.login(user, pass);
    assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
    assert!(first.cmd("QUIT").starts_with("+OK"));
    let mut third = Pop::connect(ns[1].pop3);
    let r = third.login(user, pass);
    assert!(r.starts_with("+OK"), "after the first session ended: {r}");
}

#[test]
fn login_limits_count_a_client_on_every_node() {
    let d = demo_root();
    common::config(
        &d,
        "[logins]\nmax_failures = 4\nmax_failures_per_login = 0\nfailure_delay_ms = 10\n",
    );
    let ns = nodes(&d, 3);
    let (user, pass) = (&d.report.login, &d.report.password);
    for n in &ns[..2] {
        for _ in 0..2 {
            let r = Pop::connect(n.pop3).login(user, "wrong");
            assert!(r.starts_with("-ERR"), "{r}");
        }
    }
    // Four failures from this address, two on each of two nodes: the third node
    // refuses even the right password.
    let r = Pop::connect(ns[2].pop3).login(user, pass);
    assert!(r.starts_with("-ERR"), "the limit did not reach node 3: {r}");
    assert!(
        ns[2].log_text().contains("login refused unchecked"),
        "{}",
        ns[2].log_text()
    );
}

#[test]
fn queued_mail_leaves_once_whichever_nodes_run_the_queue() {
    let d = demo_root();
    let sink = Sink::start(Script {
        pipelining: true,
        ..Script::default()
    });
    // This client may relay (as a customer's network would).
    relay_setup(&d, &sink);
    let ns = nodes(&d, 3);
    const N: usize = 90;
    send_spread(&ns, 1, N, "joe@example.com", "out@remote.example", |i| {
        format!("q{i}@cluster.test")
    });
    let start = Instant::now();
    while sink.messages().len() < N {
        if start.elapsed() > Duration::from_secs(60) {
            let logs: Vec<String> = ns.iter().map(|n| n.log_text()).collect();
            let left = queued(&d);
            panic!(
                "{} of {N} messages reached the sink, {left} queued; logs:\n{}",
                sink.messages().len(),
                logs.join("\n----\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_secs(2));
    let got = sink.messages();
    let mut ids = HashMap::new();
    for m in &got {
        let text = String::from_utf8_lossy(&m.data);
        let id = message_id(&text).expect("a Message-ID");
        *ids.entry(id).or_insert(0usize) += 1;
    }
    assert_eq!(ids.len(), N, "every message");
    let twice: Vec<_> = ids.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert_eq!(got.len(), N);
    assert_eq!(queued(&d), 0, "the queue is empty");
}

#[test]
fn a_second_process_under_one_node_name_is_refused() {
    let d = demo_root();
    let _n = nodes(&d, 1);
    let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["serve", "--node", "n1"])
        .args([
            "--smtp",
            &format!("127.0.0.1:{}", common::daemon::free_port()),
        ])
        .args([
            "--pop3",
            &format!("127.0.0.1:{}", common::daemon::free_port()),
        ])
        .args([
            "--odmr",
            &format!("127.0.0.1:{}", common::daemon::free_port()),
        ])
        .args([
            "--submission",
            &format!("127.0.0.1:{}", common::daemon::free_port()),
        ])
        .args([
            "--submissions",
            &format!("127.0.0.1:{}", common::daemon::free_port()),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("node n1 is already running"), "{err}");
    // A bad name is linted, and refused by serve.
    common::config(&d, "[cluster]\nnode = \"../x\"\n");
    let o = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["check"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("[cluster] node name \"../x\""), "{o:?}");
    assert!(!o.status.success(), "{o:?}");
}

#[test]
fn a_delivery_by_the_command_carries_the_node_name() {
    let d = demo_root();
    let c = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .env("TURNMAIL_NODE", "n7")
        .args(["deliver", "-f", "bob@example.org", "--", "joe@example.com"])
        .stdin(std::process::Stdio::piped())
        .output_with_stdin(b"Subject: by hand\n\nbody\n");
    assert!(c.status.success(), "{c:?}");
    let md = d.root.join("domains/example.com/joe/Maildir");
    let names: Vec<String> = maildir_files(&md)
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 1);
    assert!(names[0].contains(".n7."), "{names:?}");
}

#[test]
fn atrn_on_one_node_leaves_a_site_another_node_flushes() {
    let d = demo_root();
    let sink = Sink::start(Script {
        delay: Duration::from_millis(100),
        ..Script::default()
    });
    site_setup(&d, &sink, "accounts = [\"acme@acme.example\"]\n");
    // The site's ODMR account.
    add_account(&d, "acme@acme.example", "odmr-pw");
    common::config(
        &d,
        "[odmr]\nplaintext_auth = true\n[flush]\nschedule = \"0 0 1 1 *\"\n",
    );
    let ns = nodes(&d, 2);
    spool_n(&d, 20);
    let r = etrn(&ns[0]);
    assert!(r.starts_with("253"), "{r}");
    wait_for("node 1's connection", Duration::from_secs(20), || {
        sink.connections.load(std::sync::atomic::Ordering::SeqCst) >= 1
    });
    // The customer's ATRN on node 2: its only site is being flushed by node 1.
    let mut c = Client::connect(ns[1].odmr);
    assert!(c.reply().starts_with("220"));
    assert!(c.cmd("EHLO customer.example").contains("ATRN"));
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD.encode("\0acme@acme.example\0odmr-pw");
    let r = c.cmd(&format!("AUTH PLAIN {blob}"));
    assert!(r.starts_with("235"), "{r}");
    let r = c.cmd("ATRN");
    assert!(
        r.starts_with("450 4.7.0"),
        "ATRN on node 2 while node 1 flushes: {r}"
    );
    wait_for("node 1's flush", Duration::from_secs(60), || {
        spooled(&d) == 0
    });
    let counts = by_recipient(&sink.messages());
    assert_eq!(counts.len(), 20);
    assert!(counts.values().all(|&c| c == 1), "{counts:?}");
}
