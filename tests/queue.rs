//! `turnmail queue list|show|bounce|delete` with the real binary on a demo root: the
//! outbound queue and a site's spool, a bounce that lands in the queue as a DSN, and
//! ids that try to leave the spool.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{DemoRoot, demo_root, mail_user};
use turnmail::maildir::Maildir;
use turnmail::outbound::queue::Queue;

fn run(root: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnmail"));
    c.arg("--root")
        .arg(root)
        .args(args)
        .env_remove("TURNMAIL_ROOT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(root: &Path, args: &[&str]) -> String {
    let o = run(root, args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(root: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(root, args)).unwrap()
}

/// Hand the tree to the mail user, as on a real host (the command runs as that user
/// when started as root).
fn own(path: &Path) {
    let mu = mail_user();
    turnmail::admin::edit::chown_tree(path, mu.uid, mu.gid).unwrap();
}

const MESSAGE: &[u8] =
    b"From: bob@sender.example\nTo: joe@example.com\nSubject: queued test\n\nsecret body line\n";

fn enqueue(d: &DemoRoot, sender: &str, rcpt: &str) -> String {
    let q = Queue::new(&d.root);
    let done = q
        .enqueue(sender.as_bytes(), rcpt.as_bytes(), &[MESSAGE])
        .unwrap();
    own(&d.root);
    unique_of(&done.path)
}

/// A file in the acme site's spool, as qmail-local writes it.
fn spool_for_site(d: &DemoRoot, sender: &str, rcpt: &str) -> String {
    let md = Maildir::new(d.root.join("sites/acme/Maildir"));
    let rp = format!("Return-Path: <{sender}>\n");
    let dt = format!("Delivered-To: site-acme-{rcpt}\n");
    let done = md
        .deliver(&[rp.as_bytes(), dt.as_bytes(), MESSAGE])
        .unwrap();
    own(&d.root);
    unique_of(&done.path)
}

fn unique_of(p: &Path) -> String {
    let name = p.file_name().unwrap().to_string_lossy().into_owned();
    name.split(':').next().unwrap().to_string()
}

fn queue_files(root: &Path) -> Vec<String> {
    let mut v = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(rd) = std::fs::read_dir(root.join("queue").join(sub)) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if !n.starts_with('.') {
                    v.push(e.path().display().to_string());
                }
            }
        }
    }
    v
}

#[test]
fn list_queue_and_site() {
    let d = demo_root();
    assert!(ok(&d.root, &["queue", "list"]).contains("empty"));
    assert_eq!(
        json(&d.root, &["queue", "list", "--json"]),
        serde_json::json!([])
    );

    let id = enqueue(&d, "bob@sender.example", "far@remote.example");
    let out = ok(&d.root, &["queue", "list"]);
    let mut lines = out.lines();
    let header = lines.next().unwrap();
    for col in ["ID", "AGE", "SIZE", "SENDER", "RECIPIENT"] {
        assert!(header.contains(col), "{out}");
    }
    let row = lines.next().unwrap();
    assert!(row.starts_with(&id), "{out}");
    assert!(row.contains("bob@sender.example"), "{out}");
    assert!(row.contains("far@remote.example"), "{out}");

    let v = json(&d.root, &["queue", "list", "--json"]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["sender"], "bob@sender.example");
    assert_eq!(rows[0]["recipient"], "far@remote.example");
    assert!(rows[0]["size"].as_u64().unwrap() > MESSAGE.len() as u64);

    // The site's spool: the Delivered-To prefix is taken off the recipient.
    let sid = spool_for_site(&d, "alice@example.net", "joe@acme.example");
    let v = json(&d.root, &["queue", "list", "--site", "acme", "--json"]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    assert_eq!(rows[0]["id"], sid.as_str());
    assert_eq!(rows[0]["sender"], "alice@example.net");
    assert_eq!(rows[0]["recipient"], "joe@acme.example");
    let out = ok(&d.root, &["queue", "list", "--site", "acme"]);
    assert!(
        out.contains(&sid) && out.contains("joe@acme.example"),
        "{out}"
    );
    // The queue listing is unchanged by the site's spool.
    assert_eq!(
        json(&d.root, &["queue", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let o = run(&d.root, &["queue", "list", "--site", "nosuch"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn show_prints_envelope_and_header() {
    let d = demo_root();
    let id = enqueue(&d, "bob@sender.example", "far@remote.example");
    let out = ok(&d.root, &["queue", "show", &id]);
    assert!(out.contains("sender:     <bob@sender.example>"), "{out}");
    assert!(out.contains("recipient:  <far@remote.example>"), "{out}");
    assert!(out.contains("Subject: queued test"), "{out}");
    assert!(!out.contains("secret body line"), "{out}");
    let out = ok(&d.root, &["queue", "show", &id, "--body"]);
    assert!(out.contains("secret body line"), "{out}");
    let v = json(&d.root, &["queue", "show", &id, "--json"]);
    assert_eq!(v["id"], id.as_str());
    assert!(
        v["header"]
            .as_str()
            .unwrap()
            .contains("Subject: queued test")
    );

    let sid = spool_for_site(&d, "alice@example.net", "joe@acme.example");
    let out = ok(&d.root, &["queue", "show", &sid, "--site", "acme"]);
    assert!(out.contains("recipient:  <joe@acme.example>"), "{out}");
    // Not in the outbound queue.
    let o = run(&d.root, &["queue", "show", &sid]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

#[test]
fn bounce_queues_a_dsn_and_removes_the_original() {
    let d = demo_root();
    let sid = spool_for_site(&d, "alice@example.net", "joe@acme.example");
    let out = ok(&d.root, &["queue", "bounce", &sid, "--site", "acme"]);
    assert!(out.contains("returned"), "{out}");
    assert!(
        json(&d.root, &["queue", "list", "--site", "acme", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    let files = queue_files(&d.root);
    assert_eq!(files.len(), 1, "{files:?}");
    let dsn = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        dsn.starts_with("Return-Path: <>\nDelivered-To: alice@example.net\n"),
        "{dsn}"
    );
    assert!(dsn.contains("returned by the operator"), "{dsn}");
    assert!(dsn.contains("joe@acme.example"), "{dsn}");
    assert!(dsn.contains("message/delivery-status"), "{dsn}");
    assert!(dsn.contains("Subject: queued test"), "{dsn}");

    // A message in the outbound queue bounces the same way.
    let v = json(&d.root, &["queue", "list", "--json"]);
    let dsn_id = v[0]["id"].as_str().unwrap().to_string();
    let id = enqueue(&d, "bob@sender.example", "far@remote.example");
    ok(&d.root, &["queue", "bounce", &id]);
    let v = json(&d.root, &["queue", "list", "--json"]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{v}");
    assert!(rows.iter().all(|r| r["id"] != id.as_str()));
    assert!(rows.iter().any(|r| r["id"] == dsn_id.as_str()));
    assert!(
        rows.iter()
            .any(|r| r["recipient"] == "bob@sender.example" && r["sender"] == "")
    );
}

#[test]
fn delete_removes_only_that_message() {
    let d = demo_root();
    let a = enqueue(&d, "bob@sender.example", "one@remote.example");
    let b = enqueue(&d, "bob@sender.example", "two@remote.example");
    let out = ok(&d.root, &["queue", "delete", &a]);
    assert!(
        out.contains(&a) && out.contains("one@remote.example"),
        "{out}"
    );
    let v = json(&d.root, &["queue", "list", "--json"]);
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], b.as_str());
    // Gone means gone: a second delete is "not found", and no DSN was queued.
    let o = run(&d.root, &["queue", "delete", &a]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    let sid = spool_for_site(&d, "alice@example.net", "joe@acme.example");
    ok(&d.root, &["queue", "delete", &sid, "--site", "acme"]);
    assert!(
        json(&d.root, &["queue", "list", "--site", "acme", "--json"])
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(queue_files(&d.root).len(), 1);
}

#[test]
fn bad_ids_are_refused() {
    let d = demo_root();
    let id = enqueue(&d, "bob@sender.example", "far@remote.example");
    // A file outside the spool that a path id would reach.
    std::fs::write(d.root.join("victim"), "keep me").unwrap();
    for bad in [
        "../victim",
        "../../victim",
        "new/x",
        "..",
        &format!("new/{id}"),
        &format!("{id}/.."),
    ] {
        for cmd in ["show", "bounce", "delete"] {
            let o = run(&d.root, &["queue", cmd, bad]);
            assert_eq!(o.status.code(), Some(1), "{cmd} {bad}: {}", text(&o));
            assert!(
                String::from_utf8_lossy(&o.stderr).contains("bad message id"),
                "{cmd} {bad}: {}",
                text(&o)
            );
        }
    }
    assert!(d.root.join("victim").exists());
    // Prefixes do not match: ids are exact.
    let o = run(&d.root, &["queue", "delete", &id[..id.len() - 1]]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert_eq!(
        json(&d.root, &["queue", "list", "--json"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
}
