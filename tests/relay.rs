//! The outbound queue: forwards and bounces leave through `control/smtproutes` to a
//! fake remote MTA on loopback (never a real MX), with per-message outcomes.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};

use common::sink::{Script, Sink};
use common::{DemoRoot, demo_root, write};

fn turnmail(d: &DemoRoot, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(&d.root)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(stdin).unwrap();
    c.wait_with_output().unwrap()
}

fn setup(d: &DemoRoot, sink: &Sink) {
    let p = d.root.join("domains/example.com/.qmail-fwd");
    write(&p, "&out@remote.example\n&gone@remote.example\n");
    std::fs::set_permissions(&p, PermissionsExt::from_mode(0o600)).unwrap();
    write(
        &d.root.join("control/smtproutes"),
        &format!(
            "remote.example:127.0.0.1:{}\nexample.org:127.0.0.1:{}\n",
            sink.addr.port(),
            sink.addr.port()
        ),
    );
    if nix::unistd::Uid::effective().is_root() {
        let mu = common::mail_user();
        for f in [p, d.root.join("control/smtproutes")] {
            std::os::unix::fs::chown(&f, Some(mu.uid), Some(mu.gid)).unwrap();
        }
    }
}

#[test]
fn forwards_leave_through_smtproutes_and_refusals_bounce() {
    let d = demo_root();
    let mut script = Script {
        pipelining: true,
        ..Script::default()
    };
    script.rcpt_reply.insert(
        "gone@remote.example".into(),
        "550 5.1.1 no such user".into(),
    );
    let sink = Sink::start(script);
    setup(&d, &sink);
    let o = turnmail(
        &d,
        &["deliver", "-f", "bob@example.org", "--", "fwd@example.com"],
        b"Subject: fwd\n\nforwarded body\n",
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // Files from the current second wait for the next run.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = turnmail(&d, &["flush", "--queue"], b"");
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("queue: 1 delivered, 1 bounced"), "{out}");
    let got = sink.messages();
    let fwd = got
        .iter()
        .find(|m| m.rcpts.iter().any(|r| r == "out@remote.example"))
        .expect("the forward");
    assert_eq!(fwd.from, "bob@example.org");
    let text = String::from_utf8_lossy(&fwd.data);
    assert!(
        text.starts_with("Delivered-To: example.com-fwd@example.com\r\n"),
        "{text}"
    );
    assert!(text.contains("forwarded body\r\n"));
    // The bounce for gone@ is in the queue, addressed to the original sender; the next
    // run sends it (example.org routes to the same fake MTA) with the null sender.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = turnmail(&d, &["flush", "--queue"], b"");
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    let bounce = sink
        .messages()
        .into_iter()
        .find(|m| m.to == "bob@example.org")
        .expect("the bounce");
    assert_eq!(bounce.from, "");
    let b = String::from_utf8_lossy(&bounce.data);
    assert!(
        b.contains("Final-Recipient: rfc822; gone@remote.example"),
        "{b}"
    );
    assert!(
        b.contains("Status: 5.1.1") && b.contains("5.1.1 no such user"),
        "{b}"
    );
    assert_eq!(
        std::fs::read_dir(d.root.join("queue/new")).unwrap().count(),
        0
    );
}

#[test]
fn an_unreachable_route_keeps_the_mail() {
    let d = demo_root();
    let sink = Sink::start(Script::default());
    setup(&d, &sink);
    write(
        &d.root.join("control/smtproutes"),
        "remote.example:127.0.0.1:1\n",
    );
    let o = turnmail(
        &d,
        &["deliver", "-f", "bob@example.org", "--", "fwd@example.com"],
        b"Subject: x\n\ny\n",
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let o = turnmail(&d, &["flush", "--queue"], b"");
    assert_eq!(o.status.code(), Some(111), "{o:?}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2 deferred"),
        "{o:?}"
    );
    assert_eq!(
        std::fs::read_dir(d.root.join("queue/new")).unwrap().count(),
        2
    );
}
