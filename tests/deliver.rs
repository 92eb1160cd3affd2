//! Local delivery of `.qmail` instructions on a real mail root.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{demo_root, write};
use turnmail::config::Config;
use turnmail::deliver::{DeliverEnv, Message, Outcome, deliver_local};
use turnmail::engine::{Engine, LocalTarget, Resolution};
use turnmail::maildir::Maildir;
use turnmail::outbound::queue::Queue;

fn env(root: &std::path::Path) -> DeliverEnv {
    DeliverEnv {
        queue: Queue::new(root),
        allow_programs: true,
        program_timeout: Duration::from_secs(5),
        mbox_lock_timeout: Duration::from_secs(2),
        quota: Default::default(),
    }
}

fn target(root: &std::path::Path, addr: &str) -> Box<LocalTarget> {
    let (e, _) = Engine::open_configured(root, Config::load(root).unwrap()).unwrap();
    // On the postgres backend from the database's accounts.
    assert_eq!(e.version().is_some(), common::on_postgres());
    match e.resolve(addr.as_bytes(), true).unwrap() {
        Resolution::Local(t) => t,
        other => panic!("{addr}: {other:?}"),
    }
}

/// Write a .qmail file with the modes qmail accepts, owned as the rest of the root.
fn dotqmail(root: &std::path::Path, name: &str, text: &str) {
    let p = root.join("domains/example.com").join(name);
    write(&p, text);
    std::fs::set_permissions(&p, PermissionsExt::from_mode(0o600)).unwrap();
    let mu = common::mail_user();
    if nix::unistd::Uid::effective().is_root() {
        std::os::unix::fs::chown(&p, Some(mu.uid), Some(mu.gid)).unwrap();
    }
}

fn files(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

const MSG: &[u8] = b"Subject: hello\n\nbody\n";

#[test]
fn maildir_delivery_writes_qmail_lines_on_top() {
    let d = demo_root();
    let t = target(&d.root, "joe@example.com");
    let msg = Message {
        sender: b"bob@example.org",
        data: MSG,
    };
    assert_eq!(
        deliver_local(&t, &msg, &env(&d.root), 0),
        Outcome::Delivered {
            files: 1,
            forwards: 0,
            programs: 0
        }
    );
    let got = files(&d.root.join("domains/example.com/joe/Maildir/new"));
    assert_eq!(
        got,
        vec![b"Return-Path: <bob@example.org>\nDelivered-To: example.com-joe@example.com\nSubject: hello\n\nbody\n".to_vec()]
    );
    // Sites get exactly qmail-local's spool format.
    let t = target(&d.root, "anyone@acme.example");
    deliver_local(
        &t,
        &Message {
            sender: b"",
            data: MSG,
        },
        &env(&d.root),
        0,
    );
    let got = files(&d.root.join("sites/acme/Maildir/new"));
    assert_eq!(
        got,
        vec![b"Return-Path: <>\nDelivered-To: site-acme-anyone@acme.example\nSubject: hello\n\nbody\n".to_vec()]
    );
}

#[test]
fn a_message_carrying_our_delivered_to_is_a_loop() {
    let d = demo_root();
    let t = target(&d.root, "joe@example.com");
    let data = b"Delivered-To: example.com-joe@example.com\nSubject: x\n\nb\n";
    let out = deliver_local(
        &t,
        &Message {
            sender: b"a@b",
            data,
        },
        &env(&d.root),
        0,
    );
    assert!(
        matches!(
            out,
            Outcome::Permanent {
                status: "5.4.6",
                ..
            }
        ),
        "{out:?}"
    );
    assert!(files(&d.root.join("domains/example.com/joe/Maildir/new")).is_empty());
}

#[test]
fn mbox_program_and_forward_lines() {
    let d = demo_root();
    dotqmail(
        &d.root,
        ".qmail-list-default",
        "./list.mbox\n|echo \"$RECIPIENT|$EXT|$EXT2|$DEFAULT|$SENDER|$HOST2|$USER\" > prog.out; cat > prog.in\n&fwd@example.org\nother@example.net\n",
    );
    // qmail looks for the owner file by the full extension, not by the -default name.
    dotqmail(
        &d.root,
        ".qmail-list-announce-owner",
        "&owner@example.org\n",
    );
    let t = target(&d.root, "list-Announce@example.com");
    let out = deliver_local(
        &t,
        &Message {
            sender: b"bob@example.org",
            data: MSG,
        },
        &env(&d.root),
        0,
    );
    assert_eq!(
        out,
        Outcome::Delivered {
            files: 1,
            forwards: 2,
            programs: 1
        }
    );
    let home = d.root.join("domains/example.com");
    let mbox = std::fs::read_to_string(home.join("list.mbox")).unwrap();
    assert_eq!(
        mbox,
        "From bob@example.org Thu Jan 01 00:00:00 1970\nReturn-Path: <bob@example.org>\nDelivered-To: example.com-list-Announce@example.com\nSubject: hello\n\nbody\n\n"
    );
    assert_eq!(
        std::fs::read_to_string(home.join("prog.out")).unwrap(),
        "example.com-list-Announce@example.com|list-Announce|Announce|announce|bob@example.org|example|mail\n"
            .replace("|mail\n", &format!("|{}\n", common::mail_user().name))
            .replace("|announce|", "|Announce|")
    );
    assert_eq!(std::fs::read(home.join("prog.in")).unwrap(), MSG);
    // Forwards: one queue file per recipient, from the list owner, with our DTLINE,
    // both under one group line (they leave as one message).
    let q = files(&d.root.join("queue/new"));
    assert_eq!(q.len(), 2);
    let mut groups = std::collections::HashSet::new();
    for (f, to) in q.iter().zip(["fwd@example.org", "other@example.net"]) {
        let text = String::from_utf8_lossy(f);
        let (group, rest) = text.split_once('\n').unwrap();
        assert!(group.starts_with("X-Turnmail-Group: "), "{text}");
        groups.insert(group.to_string());
        let want = format!(
            "Return-Path: <example.com-list-Announce-owner@example.com>\nDelivered-To: {to}\nDelivered-To: example.com-list-Announce@example.com\nSubject: hello\n\nbody\n"
        );
        assert_eq!(rest, want);
    }
    assert_eq!(groups.len(), 1);
}

#[test]
fn program_exit_codes_timeouts_and_the_switch() {
    let d = demo_root();
    let run = |text: &str, e: &DeliverEnv| {
        dotqmail(&d.root, ".qmail-p", text);
        let t = target(&d.root, "p@example.com");
        deliver_local(
            &t,
            &Message {
                sender: b"a@b",
                data: MSG,
            },
            e,
            0,
        )
    };
    let e = env(&d.root);
    assert!(matches!(run("|exit 100\n", &e), Outcome::Permanent { .. }));
    assert!(matches!(run("|exit 111\n", &e), Outcome::Temporary(_)));
    assert!(matches!(run("|kill -9 $$\n", &e), Outcome::Temporary(_)));
    // 99 stops the file after that line: the Maildir line is not reached.
    assert_eq!(
        run("|exit 99\n./joe/Maildir/\n", &e),
        Outcome::Delivered {
            files: 0,
            forwards: 0,
            programs: 1
        }
    );
    // A failure stops everything before it reaches forwards.
    assert!(matches!(
        run("&x@example.org\n|exit 111\n", &e),
        Outcome::Temporary(_)
    ));
    assert!(files(&d.root.join("queue/new")).is_empty());
    let quick = DeliverEnv {
        program_timeout: Duration::from_millis(300),
        ..env(&d.root)
    };
    let start = std::time::Instant::now();
    match run("|sleep 30 & sleep 30\n", &quick) {
        Outcome::Temporary(m) => assert!(m.contains("timed out"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(start.elapsed() < Duration::from_secs(10));
    let off = DeliverEnv {
        allow_programs: false,
        ..env(&d.root)
    };
    assert!(matches!(
        run("|true\n", &off),
        Outcome::Permanent {
            status: "5.7.1",
            ..
        }
    ));
}

#[test]
fn a_missing_maildir_defers_and_leaves_nothing() {
    let d = demo_root();
    dotqmail(&d.root, ".qmail-gone", "./gone/Maildir/\n");
    let t = target(&d.root, "gone@example.com");
    let out = deliver_local(
        &t,
        &Message {
            sender: b"a@b",
            data: MSG,
        },
        &env(&d.root),
        0,
    );
    assert!(matches!(out, Outcome::Temporary(_)), "{out:?}");
    std::fs::create_dir(d.root.join("domains/example.com/gone")).unwrap();
    Maildir::create(d.root.join("domains/example.com/gone/Maildir")).unwrap();
    if nix::unistd::Uid::effective().is_root() {
        let mu = common::mail_user();
        let p = d.root.join("domains/example.com/gone");
        for sub in ["", "Maildir", "Maildir/tmp", "Maildir/new", "Maildir/cur"] {
            std::os::unix::fs::chown(p.join(sub), Some(mu.uid), Some(mu.gid)).unwrap();
        }
    }
    let out = deliver_local(
        &t,
        &Message {
            sender: b"a@b",
            data: MSG,
        },
        &env(&d.root),
        0,
    );
    assert!(matches!(out, Outcome::Delivered { .. }), "{out:?}");
}

/// Make `domains/example.com/NAME/Maildir`, owned as the rest of the root.
fn mailbox(root: &std::path::Path, name: &str) -> Maildir {
    let home = root.join("domains/example.com").join(name);
    std::fs::create_dir(&home).unwrap();
    let md = Maildir::create(home.join("Maildir")).unwrap();
    if nix::unistd::Uid::effective().is_root() {
        let mu = common::mail_user();
        for sub in ["", "Maildir", "Maildir/tmp", "Maildir/new", "Maildir/cur"] {
            std::os::unix::fs::chown(home.join(sub), Some(mu.uid), Some(mu.gid)).unwrap();
        }
    }
    md
}

#[test]
fn a_delivery_stopped_half_way_is_queued_with_only_what_is_left() {
    use turnmail::deliver::transaction::{RecipientResult, Verdict, deliver_message};
    use turnmail::qmail::dotqmail::Instruction;
    let d = demo_root();
    let ann = mailbox(&d.root, "ann");
    // Line 2 forwards (queued last), line 3 is written, line 4 cannot be yet.
    dotqmail(
        &d.root,
        ".qmail-team",
        "# the team\n&far@example.org\n./ann/Maildir/\n./cid/Maildir/\n",
    );
    let t = target(&d.root, "team@example.com");
    let msg = Message {
        sender: b"a@b",
        data: MSG,
    };
    match deliver_local(&t, &msg, &env(&d.root), 0) {
        Outcome::Partial { rest, .. } => assert_eq!(
            rest,
            vec![
                (2, Instruction::Forward(b"far@example.org".to_vec())),
                (4, Instruction::Maildir(b"./cid/Maildir/".to_vec())),
            ]
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(files(&ann.path().join("new")).len(), 1);

    // Over the transaction (SMTP's and `turnmail deliver`'s): accepted, not 451,
    // with the rest in the queue.
    let res = Resolution::Local(t);
    let report = deliver_message(
        &env(&d.root),
        "mx.example.com",
        b"a@b",
        &[(b"team@example.com".to_vec(), res)],
        MSG,
        0,
    );
    assert_eq!(report.verdict, Verdict::Accepted, "{report:?}");
    assert!(matches!(report.recipients[0].1, RecipientResult::Queued(_)));
    assert_eq!(files(&ann.path().join("new")).len(), 2);
    let queued = files(&d.root.join("queue/new"));
    assert_eq!(queued.len(), 1);
    assert!(queued[0].starts_with(b"X-Turnmail-Resume: "));

    // cid's mailbox appears: the queue run writes cid's copy and the forward, and
    // does not write ann's again.
    let cid = mailbox(&d.root, "cid");
    if nix::unistd::Uid::effective().is_root() {
        // Written by this test as root; the queue run is the mail user's.
        let mu = common::mail_user();
        for e in std::fs::read_dir(d.root.join("queue/new")).unwrap() {
            std::os::unix::fs::chown(e.unwrap().path(), Some(mu.uid), Some(mu.gid)).unwrap();
        }
    }
    std::thread::sleep(Duration::from_millis(1100));
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(["flush", "--queue"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    // The forward's relay has nowhere to go here: it stays queued, deferred.
    assert!(out.contains("queue: 1 delivered"), "{out}");
    assert_eq!(files(&ann.path().join("new")).len(), 2);
    let got = files(&cid.path().join("new"));
    assert_eq!(got.len(), 1);
    assert!(got[0].ends_with(MSG));
    let left = files(&d.root.join("queue/new"));
    assert_eq!(left.len(), 1, "the forward");
    assert!(String::from_utf8_lossy(&left[0]).contains("Delivered-To: far@example.org\n"));
}
