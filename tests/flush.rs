//! Flushing site spools with `turnmail flush` against a scriptable fake site: every
//! capability mix, per-message outcomes, locks, quarantine, lifetime bounces, spools
//! in qmail's exact format, and a kill -9 in the middle of a flush.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use common::demo_root;
use common::sink::{Script, Sink};
use common::spool::*;

#[test]
fn every_capability_mix_delivers_every_message() {
    // One root: each flush leaves the spool empty for the next.
    let d = demo_root();
    for (pipelining, chunking) in [(true, true), (true, false), (false, true), (false, false)] {
        let sink = Sink::start(Script {
            pipelining,
            chunking,
            ..Script::default()
        });
        for i in 0..20 {
            spooled(
                &d,
                "bob@example.org",
                &format!("u{i}@acme.example"),
                &format!("Subject: {i}\n\n.leading dot\nline\n"),
                Duration::ZERO,
            );
        }
        // One message without a final newline: completed, not fatal.
        spooled(
            &d,
            "",
            "last@acme.example",
            "Subject: partial\n\nno newline",
            Duration::ZERO,
        );
        let o = flush(&d, &["acme", "--to", &sink.addr.to_string()]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        let got = sink.messages();
        assert_eq!(got.len(), 21, "pipelining={pipelining} chunking={chunking}");
        let m = got.iter().find(|m| m.to == "u3@acme.example").unwrap();
        assert_eq!(m.from, "bob@example.org");
        assert_eq!(m.data, b"Subject: 3\r\n\r\n.leading dot\r\nline\r\n");
        let p = got.iter().find(|m| m.to == "last@acme.example").unwrap();
        assert_eq!(p.from, "");
        assert_eq!(p.data, b"Subject: partial\r\n\r\nno newline\r\n");
        assert_eq!(left(&d), 0);
        assert!(
            stdout(&o).contains("21 delivered, 0 bounced, 0 kept"),
            "{}",
            stdout(&o)
        );
    }
    // On the run's account backend (on postgres the flushes took the site's advisory
    // lock too).
    common::assert_on_backend(&d);
}

#[test]
fn per_message_outcomes_bounce_keep_and_deliver() {
    let d = demo_root();
    let mut script = Script {
        pipelining: true,
        chunking: false,
        ..Script::default()
    };
    script
        .rcpt_reply
        .insert("gone@acme.example".into(), "550 5.1.1 no such user".into());
    script
        .rcpt_reply
        .insert("later@acme.example".into(), "451 4.2.0 try later".into());
    script
        .data_reply
        .insert("spam@acme.example".into(), "554 5.7.1 rejected".into());
    let sink = Sink::start(script);
    for r in ["ok1", "gone", "later", "spam", "ok2"] {
        spooled(
            &d,
            "bob@example.org",
            &format!("{r}@acme.example"),
            "Subject: x\n\nbody\n",
            Duration::ZERO,
        );
    }
    let o = flush(&d, &["acme", "--to", &sink.addr.to_string()]);
    assert_eq!(o.status.code(), Some(111), "{}", stdout(&o));
    let got: Vec<String> = sink.messages().into_iter().map(|m| m.to).collect();
    assert_eq!(got, vec!["ok1@acme.example", "ok2@acme.example"]);
    assert_eq!(left(&d), 1, "only the 451 stays");
    let bounces = queue_files(&d);
    assert_eq!(bounces.len(), 2, "{bounces:?}");
    for b in &bounces {
        assert!(
            b.starts_with("Return-Path: <>\nDelivered-To: bob@example.org\n"),
            "{b}"
        );
        assert!(b.contains("Action: failed"));
    }
    assert!(
        bounces
            .iter()
            .any(|b| b.contains("Final-Recipient: rfc822; gone@acme.example")
                && b.contains("550 5.1.1 no such user"))
    );
    let out = stdout(&o);
    assert!(out.contains("<later@acme.example> kept"), "{out}");
    // Status for `turnmail status`.
    let st = std::fs::read_to_string(d.root.join("run/sites/acme.json")).unwrap();
    assert!(st.contains("2 delivered, 2 bounced, 1 kept"), "{st}");
}

#[test]
fn a_bounce_that_bounces_goes_to_the_postmaster() {
    let d = demo_root();
    let mut script = Script {
        pipelining: true,
        chunking: true,
        ..Script::default()
    };
    script
        .rcpt_reply
        .insert("gone@acme.example".into(), "550 5.1.1 no such user".into());
    let sink = Sink::start(script);
    spooled(
        &d,
        "",
        "gone@acme.example",
        "Subject: a bounce\n\nx\n",
        Duration::ZERO,
    );
    let o = flush(&d, &["acme", "--to", &sink.addr.to_string()]);
    assert_eq!(o.status.code(), Some(100), "{}", stdout(&o));
    let q = queue_files(&d);
    assert_eq!(q.len(), 1);
    assert!(
        q[0].starts_with("Return-Path: <#@[]>\nDelivered-To: postmaster@mail.example.com\n"),
        "{}",
        q[0]
    );
}

#[test]
fn nothing_queued_means_no_connection_and_old_mail_bounces_unsent() {
    let d = demo_root();
    let sink = Sink::start(Script::default());
    let o = flush(&d, &["acme", "--to", &sink.addr.to_string()]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        sink.connections.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    // Older than the 14-day lifetime: bounced without any connection attempt.
    spooled(
        &d,
        "bob@example.org",
        "old@acme.example",
        "Subject: old\n\nx\n",
        Duration::from_secs(15 * 86_400),
    );
    let o = flush(&d, &["acme", "--to", "127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(100), "{}", stdout(&o));
    assert_eq!(left(&d), 0);
    let q = queue_files(&d);
    assert!(
        q[0].contains("This message is too old. Giving up."),
        "{}",
        q[0]
    );
    // An unreachable site keeps its mail and says so.
    spooled(
        &d,
        "bob@example.org",
        "new@acme.example",
        "Subject: new\n\nx\n",
        Duration::ZERO,
    );
    let o = flush(&d, &["acme", "--to", "127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(111));
    assert!(stdout(&o).contains("not flushed"), "{}", stdout(&o));
    assert_eq!(left(&d), 1);
}

#[test]
fn a_lock_held_by_setlock_skips_the_flush() {
    let d = demo_root();
    let sink = Sink::start(Script::default());
    spooled(
        &d,
        "a@b.example",
        "x@acme.example",
        "Subject: x\n\nx\n",
        Duration::ZERO,
    );
    let mut holder = Command::new("setlock")
        .arg("-n")
        .arg(d.root.join("sites/acme/RELAYHOST"))
        .args(["sh", "-c", "echo held; exec sleep 30"])
        .stdout(std::process::Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("setlock (daemontools)");
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "held");
    }
    let o = flush(&d, &["acme", "--to", &sink.addr.to_string()]);
    assert_eq!(o.status.code(), Some(111));
    assert!(
        stdout(&o).contains("another flush holds the lock"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        sink.connections.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(holder.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    holder.wait().unwrap();
    assert_eq!(
        flush(&d, &["acme", "--to", &sink.addr.to_string()])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn malformed_files_are_quarantined_and_qmail_spools_flush() {
    let d = demo_root();
    let sink = Sink::start(Script {
        pipelining: true,
        ..Script::default()
    });
    let md = spool(&d);
    // Exactly what qmail-local writes: RPLINE, DTLINE, then the message as received.
    let qmail = b"Return-Path: <\"needs quoting!\"@the.example>\nDelivered-To: site-acme-Joe@acme.example\nReceived: (qmail 1234 invoked by uid 0); 1 Jan 2026 00:00:00 -0000\nSubject: q\n\nbody\n";
    own(&md.deliver(&[qmail]).unwrap().path);
    own(&md
        .deliver(&[b"Subject: no envelope at all

x
"])
        .unwrap()
        .path);
    std::thread::sleep(Duration::from_millis(1100));
    let o = flush(&d, &["acme", "--to", &sink.addr.to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].from, "\"needs quoting!\"@the.example");
    assert_eq!(got[0].to, "Joe@acme.example");
    assert!(got[0].data.starts_with(b"Received: (qmail 1234"));
    assert_eq!(
        std::fs::read_dir(md.path().join(".quarantine"))
            .unwrap()
            .count(),
        1
    );
}

#[test]
fn kill_9_during_a_flush_loses_nothing_and_repeats_at_most_one() {
    let mut rng = common::Rng::new("flush crash rounds");
    for round in 0..common::crash_rounds() {
        crash_round(&mut rng, round, 1);
    }
}

#[test]
fn large_messages_stream_through_and_results_keep_only_the_first_lines() {
    let d = demo_root();
    // Over the 64 KiB read ahead: the tail is read from the file as it is sent.
    let mut big = String::from("Subject: big\n\n");
    for i in 0..4000 {
        big.push_str(&format!(
            ".line {i} of a message larger than the read-ahead\n"
        ));
    }
    spooled(
        &d,
        "bob@example.org",
        "big@acme.example",
        &big,
        Duration::ZERO,
    );
    let n = 120;
    for i in 0..n {
        spooled(
            &d,
            "bob@example.org",
            &format!("m{i}@acme.example"),
            &format!("Subject: {i}\n\nx\n"),
            Duration::ZERO,
        );
    }
    for (pipelining, chunking) in [(true, true), (true, false)] {
        let sink = Sink::start(Script {
            pipelining,
            chunking,
            ..Script::default()
        });
        let o = flush(&d, &["acme", "--to", &sink.addr.to_string()]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        let got = sink.messages();
        assert_eq!(got.len(), n + 1);
        let m = got.iter().find(|m| m.to == "big@acme.example").unwrap();
        assert_eq!(m.data, big.replace('\n', "\r\n").as_bytes());
        // The operator sees every message as it is settled.
        let out = stdout(&o);
        assert_eq!(out.matches(" delivered: 250 ").count(), n + 1, "{out}");
        // Put everything back for the second mode.
        for r in &got {
            let body = String::from_utf8(r.data.clone())
                .unwrap()
                .replace("\r\n", "\n");
            spooled(&d, &r.from, &r.to, &body, Duration::ZERO);
        }
    }
    // A result keeps the first lines and counts the rest.
    let sink = Sink::start(Script {
        pipelining: true,
        chunking: true,
        ..Script::default()
    });
    let o = flush(&d, &["acme", "--json", "--to", &sink.addr.to_string()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let done = &v["result"]["Done"];
    assert_eq!(done["delivered"], n + 1);
    assert_eq!(done["lines"].as_array().unwrap().len(), 100);
    assert_eq!(done["lines_omitted"], n + 1 - 100);
}

#[test]
fn size_is_declared_as_the_octets_sent_with_crlf() {
    let d = demo_root();
    // Named by our delivery (with ,W=), named by qmail-local (counted), and one over
    // the read-ahead named by qmail-local (its tail counted from the file).
    let mut long = String::from("Subject: long\n\n");
    for i in 0..3000 {
        long.push_str(&format!(
            ".{i} a line of a message longer than the read-ahead\n"
        ));
    }
    for (pipelining, chunking) in [(true, false), (true, true)] {
        spooled(
            &d,
            "bob@example.org",
            "named@acme.example",
            "Subject: w\n\n.dot\nline\n",
            Duration::ZERO,
        );
        spooled_unnamed(
            &d,
            "crlf@acme.example",
            b"Subject: c\r\n\r\nkept\r\nno end",
            1,
        );
        spooled_unnamed(&d, "long@acme.example", long.as_bytes(), 2);
        let sink = Sink::start(Script {
            pipelining,
            chunking,
            ..Script::default()
        });
        let o = flush(&d, &["acme", "--to", &sink.addr.to_string()]);
        assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
        let got = sink.messages();
        assert_eq!(got.len(), 3);
        for m in &got {
            // The sink's data is what came after 354 (or in BDAT), unstuffed.
            assert_eq!(
                m.size,
                Some(m.data.len() as u64),
                "{} (chunking={chunking})",
                m.to
            );
        }
        let long_got = got.iter().find(|m| m.to == "long@acme.example").unwrap();
        assert!(long_got.data.len() > 128 * 1024);
    }
}
