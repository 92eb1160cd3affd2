//! DKIM end to end: keys made by `turnmail domain dkim` (modes, owners, the TXT record
//! printed), messages signed by the library and checked by an independent verifier,
//! Debian's python3-dkim (dkimpy), handed the public keys from the printed records in
//! place of DNS; a tampered message fails there (so the check can fail); rotation
//! keeps the old selector published until its time is over; `turnmail check` flags
//! bad key files; `--remove` stops the signing.

mod common;

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use common::{demo_root, turnmail};
use turnmail::dkim::{Outcome, Signer};

const PYTHON: &str = "/usr/bin/python3";

fn ok(root: &Path, args: &[&str]) -> String {
    let o = turnmail(root, args);
    assert!(
        o.status.success(),
        "{args:?}: exit {:?}\n{}{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(root: &Path, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&ok(root, args)).unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// (owner name, TXT value) of every record the report asks to publish.
fn records(report: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let keys = std::iter::once(&report["active"]).chain(report["retired"].as_array().unwrap());
    for k in keys {
        if k.is_null() {
            continue;
        }
        let r = &k["record"];
        let strings: Vec<&str> = r["strings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        for s in &strings {
            assert!(s.len() <= 255, "a DNS string over 255 bytes: {}", s.len());
        }
        assert_eq!(strings.concat(), r["value"].as_str().unwrap());
        out.push((r["name"].as_str().unwrap().to_string(), strings.concat()));
    }
    out
}

/// The message as it goes on the wire: signature first, CRLF line ends.
fn wire(signature: &[u8], message: &[u8]) -> Vec<u8> {
    let mut all = signature.to_vec();
    all.extend_from_slice(message);
    let mut out = Vec::new();
    let mut enc = turnmail::client::Encoder::bdat();
    enc.encode(&all, &mut out);
    enc.finish(&mut out);
    out
}

const VERIFY: &str = r#"
import json, sys
import dkim
records = json.loads(sys.argv[1])
def dnsfunc(name, timeout=5):
    if isinstance(name, bytes):
        name = name.decode()
    value = records.get(name.rstrip('.'))
    return value.encode() if value is not None else None
message = sys.stdin.buffer.read()
print("PASS" if dkim.verify(message, dnsfunc=dnsfunc) else "FAIL")
"#;

/// dkimpy's verdict on `message`, the keys looked up in `records`; None (after
/// `common::skip`) when python3-dkim is not installed.
fn dkimpy(records: &[(String, String)], message: &[u8]) -> Option<bool> {
    let have = Command::new(PYTHON)
        .args(["-c", "import dkim, nacl"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !have {
        common::skip("python3-dkim (and python3-nacl) not installed: tests/install-peers");
        return None;
    }
    let map: serde_json::Map<String, serde_json::Value> = records
        .iter()
        .map(|(n, v)| (n.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let mut child = Command::new(PYTHON)
        .args(["-c", VERIFY, &serde_json::Value::Object(map).to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(message).unwrap();
    let o = child.wait_with_output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "dkimpy failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Some(out.trim() == "PASS")
}

#[test]
fn the_cli_makes_private_keys_and_prints_the_record() {
    let d = demo_root();
    let root = &d.root;
    let r = json(
        root,
        &[
            "domain",
            "dkim",
            "example.com",
            "--algorithm",
            "ed25519",
            "--json",
        ],
    );
    let sel = r["active"]["selector"].as_str().unwrap().to_string();
    assert!(sel.starts_with("tm"), "{sel}");
    assert_eq!(r["active"]["created"], true);
    assert_eq!(r["active"]["algorithm"], "ed25519");
    let value = r["active"]["record"]["value"].as_str().unwrap();
    assert!(value.starts_with("v=DKIM1; k=ed25519; p="), "{value}");
    assert_eq!(
        r["active"]["record"]["name"],
        format!("{sel}._domainkey.example.com")
    );

    let store = root.join("dkim");
    let dir = store.join("example.com");
    let key = dir.join(format!("{sel}.pem"));
    assert_eq!(mode(&store), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&dir.join("selectors")), 0o600);
    let owner = std::fs::metadata(root.join("users")).unwrap().uid();
    for p in [&store, &dir, &key] {
        assert_eq!(
            std::fs::metadata(p).unwrap().uid(),
            owner,
            "{}",
            p.display()
        );
    }
    assert!(
        std::fs::read_to_string(&key)
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );

    // Shown again, not made again; a second key needs --rotate.
    let text = ok(root, &["domain", "dkim", "example.com"]);
    assert!(
        text.contains(&format!("DKIM key {sel} (ed25519) signs")),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "{sel}._domainkey.example.com. IN TXT \"v=DKIM1; k=ed25519; p="
        )),
        "{text}"
    );
    let o = turnmail(
        root,
        &["domain", "dkim", "example.com", "--algorithm", "rsa"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--rotate"));

    // Unknown and alias domains get no key.
    let o = turnmail(root, &["domain", "dkim", "elsewhere.example"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not hosted here"));
    let vd = root.join("control/virtualdomains");
    let mut text = std::fs::read_to_string(&vd).unwrap();
    text.push_str("alias.example:example.com\n");
    std::fs::write(&vd, text).unwrap();
    let o = turnmail(root, &["domain", "dkim", "alias.example"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("alias of example.com"),
        "{:?}",
        o
    );
    assert!(!store.join("alias.example").exists());
    assert!(!store.join("elsewhere.example").exists());

    // RSA: the record is cut into strings DNS can carry.
    ok(root, &["domain", "add", "example.org"]);
    let r = json(
        root,
        &[
            "domain",
            "dkim",
            "example.org",
            "--algorithm",
            "rsa",
            "--selector",
            "R1",
            "--json",
        ],
    );
    assert_eq!(r["active"]["selector"], "r1");
    let strings = r["active"]["record"]["strings"].as_array().unwrap();
    assert!(strings.len() >= 2, "{strings:?}");
    assert!(
        r["active"]["record"]["value"]
            .as_str()
            .unwrap()
            .starts_with("v=DKIM1; k=rsa; p=MIIBIjAN")
    );
    let text = ok(root, &["domain", "dkim", "example.org"]);
    assert!(
        text.contains("r1._domainkey.example.org. IN TXT ( \"v=DKIM1; k=rsa; p="),
        "{text}"
    );
    assert_eq!(mode(&store.join("example.org/r1.pem")), 0o600);
    let o = turnmail(root, &["check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains("dkim/"),
        "check finds fault with fresh keys:\n{out}"
    );
}

/// Messages of every awkward shape, each signed and verified by dkimpy.
#[test]
fn dkimpy_verifies_what_we_sign() {
    let d = demo_root();
    let root = &d.root;
    ok(root, &["domain", "add", "example.org"]);
    let ed = json(
        root,
        &[
            "domain",
            "dkim",
            "example.com",
            "--algorithm",
            "ed25519",
            "--json",
        ],
    );
    let rsa = json(
        root,
        &[
            "domain",
            "dkim",
            "example.org",
            "--algorithm",
            "rsa",
            "--json",
        ],
    );
    let mut recs = records(&ed);
    recs.extend(records(&rsa));
    let signer = Signer::open(root);

    let mut long = b"From: Joe <joe@example.com>\nTo: ann@example.net\nSubject: long\n\n".to_vec();
    for i in 0..20_000 {
        long.extend_from_slice(format!("line {i} of a long body,   with  spaces \t\n").as_bytes());
    }
    let messages: Vec<(&str, Vec<u8>)> = vec![
        ("plain", b"From: joe@example.com\nTo: ann@example.net\nSubject: hi\nDate: Sat, 21 Nov 2026 13:30:00 +0000\nMessage-ID: <1@example.com>\n\nHello.\n".to_vec()),
        ("folded headers", b"From: \"Joe, the sender\"\n\t<joe@example.com>\nTo: ann@example.net,\n   bob@example.net\nSubject: a subject that goes on\n  and on over two lines\n\nbody\n".to_vec()),
        ("8-bit body", "From: joe@example.org\nSubject: =?utf-8?q?gr=C3=BC=C3=9Fe?=\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\nGrüße aus Köln — ½ € \u{1F600}\n".as_bytes().to_vec()),
        ("trailing blank lines", b"From: joe@example.org\nSubject: blanks\n\nbody  \n\n\n\n".to_vec()),
        ("no final newline", b"From: joe@example.com\nSubject: cut\n\nno newline at the end".to_vec()),
        ("empty body", b"From: joe@example.com\nSubject: empty\n".to_vec()),
        ("subdomain", b"From: robot@alerts.example.org\nSubject: via the parent\n\nx\n".to_vec()),
        ("long", long),
    ];
    for (what, m) in &messages {
        let signed = signer
            .sign_detailed(m)
            .unwrap()
            .unwrap_or_else(|| panic!("{what}: not signed"));
        assert!(!signed.header.contains(&b'\r'));
        let w = wire(&signed.header, m);
        let Some(pass) = dkimpy(&recs, &w) else {
            return;
        };
        assert!(
            pass,
            "{what}: dkimpy rejects our signature\n{}",
            String::from_utf8_lossy(&signed.header)
        );
    }

    // The verifier can say no: a changed body, a changed subject, a From added on top.
    let (_, m) = &messages[0];
    let sig = signer.sign(m).unwrap().unwrap();
    let good = wire(&sig, m);
    assert_eq!(dkimpy(&recs, &good), Some(true));
    let s = String::from_utf8_lossy(&good).into_owned();
    for (what, bad) in [
        ("body", s.replace("Hello.", "Hellp.")),
        ("subject", s.replace("Subject: hi", "Subject: ho")),
        (
            "second From",
            s.replace(
                "From: joe@example.com",
                "From: evil@example.net\r\nFrom: joe@example.com",
            ),
        ),
    ] {
        assert_eq!(
            dkimpy(&recs, bad.as_bytes()),
            Some(false),
            "a tampered {what} passed"
        );
    }
    // And with the wrong key published, the signature fails too.
    let wrong: Vec<(String, String)> = records(&ed)
        .into_iter()
        .map(|(n, _)| (n, records(&rsa)[0].1.clone()))
        .collect();
    assert_eq!(dkimpy(&wrong, &good), Some(false));

    // Mail from domains without keys, and malformed mail, is not signed.
    assert!(
        signer
            .sign(b"From: a@acme.example\n\nx\n")
            .unwrap()
            .is_none()
    );
    let r = signer.sign(b"Subject: no from\n\nx\n");
    assert_eq!(Outcome::of(&r), Outcome::Malformed);

    // A key made while the signer runs is used within a second (the signer looks at
    // a domain's `selectors` file at most once a second).
    ok(root, &["domain", "add", "later.example"]);
    ok(
        root,
        &["domain", "dkim", "later.example", "--algorithm", "ed25519"],
    );
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let later = signer
        .sign_detailed(b"From: a@later.example\n\nx\n")
        .unwrap()
        .expect("the new key signs");
    assert_eq!(later.domain, "later.example");
}

#[test]
fn rotation_keeps_the_old_selector_until_its_time() {
    let d = demo_root();
    let root = &d.root;
    let first = json(
        root,
        &[
            "domain",
            "dkim",
            "example.com",
            "--selector",
            "old",
            "--algorithm",
            "ed25519",
            "--json",
        ],
    );
    let rotated = json(
        root,
        &[
            "domain",
            "dkim",
            "example.com",
            "--rotate",
            "--selector",
            "new",
            "--keep-days",
            "3",
            "--json",
        ],
    );
    assert_eq!(rotated["active"]["selector"], "new");
    assert_eq!(rotated["active"]["created"], true);
    // Default algorithm: RSA.
    assert_eq!(rotated["active"]["algorithm"], "rsa");
    let retired = rotated["retired"].as_array().unwrap();
    assert_eq!(retired.len(), 1);
    assert_eq!(retired[0]["selector"], "old");
    let until = retired[0]["until"].as_u64().unwrap();
    let now = turnmail::datetime::now_unix();
    assert!(
        until > now + 3 * 86_400 - 120 && until <= now + 3 * 86_400,
        "{until}"
    );
    // The old record is printed unchanged as long as it is kept.
    assert_eq!(retired[0]["record"], first["active"]["record"]);
    let shown = ok(root, &["domain", "dkim", "example.com"]);
    assert!(
        shown.contains("old._domainkey.example.com. IN TXT"),
        "{shown}"
    );
    assert!(
        shown.contains("new._domainkey.example.com. IN TXT"),
        "{shown}"
    );
    let state = std::fs::read_to_string(root.join("dkim/example.com/selectors")).unwrap();
    assert!(
        state.contains("active new\n") && state.contains(&format!("retired old {until}\n")),
        "{state}"
    );

    // New mail is signed with the new key, and verifies with the records printed.
    let m = b"From: joe@example.com\nSubject: after the rotation\n\nx\n";
    let signed = Signer::open(root).sign_detailed(m).unwrap().unwrap();
    assert_eq!(signed.selector, "new");
    if dkimpy(&records(&rotated), &wire(&signed.header, m)) == Some(false) {
        panic!("the rotated key does not verify");
    }

    // Once its time is over (set back by hand here), the old selector is dropped
    // with its key, and the operator told to take its record out of DNS.
    std::fs::write(
        root.join("dkim/example.com/selectors"),
        state.replace(
            &format!("retired old {until}"),
            &format!("retired old {}", now - 1),
        ),
    )
    .unwrap();
    let check = turnmail(root, &["check"]);
    assert!(String::from_utf8_lossy(&check.stdout).contains("retired selector old expired"));
    let after = json(root, &["domain", "dkim", "example.com", "--json"]);
    assert_eq!(after["expired"][0], "old._domainkey.example.com");
    assert!(after["retired"].as_array().unwrap().is_empty());
    assert!(!root.join("dkim/example.com/old.pem").exists());
    let again = ok(root, &["domain", "dkim", "example.com"]);
    assert!(!again.contains("old._domainkey"), "{again}");
}

#[test]
fn check_flags_bad_key_files_and_remove_stops_signing() {
    let d = demo_root();
    let root = &d.root;
    let r = json(
        root,
        &[
            "domain",
            "dkim",
            "example.com",
            "--algorithm",
            "ed25519",
            "--json",
        ],
    );
    let sel = r["active"]["selector"].as_str().unwrap().to_string();
    let key = root.join(format!("dkim/example.com/{sel}.pem"));
    let check = |want: &str| {
        let o = turnmail(root, &["check"]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(out.contains(want), "check does not say {want:?}:\n{out}");
        assert_eq!(o.status.code(), Some(1));
    };
    std::fs::set_permissions(&key, PermissionsExt::from_mode(0o644)).unwrap();
    check("mode 0644: others can read private keys");
    std::fs::set_permissions(&key, PermissionsExt::from_mode(0o600)).unwrap();
    let pem = std::fs::read(&key).unwrap();
    std::fs::write(&key, b"not a key\n").unwrap();
    check("the active key cannot be used");
    std::fs::remove_file(&key).unwrap();
    check("the active key of example.com");
    std::fs::write(&key, pem).unwrap();
    std::fs::set_permissions(&key, PermissionsExt::from_mode(0o600)).unwrap();

    let m = b"From: joe@example.com\n\nx\n";
    let signer = Signer::open(root);
    assert!(signer.sign(m).unwrap().is_some());
    let text = ok(root, &["domain", "dkim", "example.com", "--remove"]);
    assert!(
        text.contains(&format!("{sel}._domainkey.example.com")),
        "{text}"
    );
    assert!(!root.join("dkim/example.com").exists());
    // The signer looks at the domain's keys at most once a second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert!(signer.sign(m).unwrap().is_none());
    let o = turnmail(root, &["domain", "dkim", "example.com", "--remove"]);
    assert_eq!(o.status.code(), Some(1));
}

/// One message submitted on 587 with smtplib (STARTTLS, AUTH); prints "sent".
const SUBMIT: &str = r#"
import smtplib, ssl, sys
host, port, user, pw, frm, to, body = sys.argv[1:8]
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP(host, int(port), timeout=20)
s.starttls(context=ctx)
s.login(user, pw)
s.sendmail(frm, [to], body.encode())
s.quit()
print("sent")
"#;

/// The queued copy for `to`, without its envelope lines (as the runner sends it).
fn queued_message(root: &Path, to: &str) -> Option<Vec<u8>> {
    for sub in ["new", "cur"] {
        let Ok(rd) = std::fs::read_dir(root.join("queue").join(sub)) else {
            continue;
        };
        for e in rd.flatten() {
            let f = std::fs::read(e.path()).unwrap();
            let text = String::from_utf8_lossy(&f);
            if !text.contains(&format!("\nDelivered-To: {to}\n")) {
                continue;
            }
            let mut rest = &f[..];
            while rest.starts_with(b"Return-Path:")
                || rest.starts_with(b"Delivered-To:")
                || rest.starts_with(b"X-Turnmail-Group:")
            {
                let end = rest.iter().position(|&b| b == b'\n').unwrap();
                rest = &rest[end + 1..];
            }
            return Some(rest.to_vec());
        }
    }
    None
}

#[test]
fn the_daemon_signs_what_customers_submit() {
    let d = demo_root();
    let root = &d.root;
    let r = json(
        root,
        &[
            "domain",
            "dkim",
            "example.com",
            "--algorithm",
            "ed25519",
            "--json",
        ],
    );
    let recs = records(&r);
    let closed = common::daemon::free_port();
    common::config(
        &d,
        &format!("[relay]\nsmarthost = \"127.0.0.1:{closed}\"\ninterval_secs = 3600\n"),
    );
    let s = common::daemon::Daemon::start(root);
    let submit = |from_header: &str, to: &str| {
        let body = format!(
            "From: Joe <{from_header}>\r\nTo: <{to}>\r\nSubject: signed?\r\n\r\nHello,\r\nsigned mail.\r\n"
        );
        let o = Command::new(PYTHON)
            .args([
                "-c",
                SUBMIT,
                &s.submission.ip().to_string(),
                &s.submission.port().to_string(),
                &d.report.login,
                &d.report.password,
                "joe@example.com",
                to,
                &body,
            ])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "sent",
            "{} {}",
            String::from_utf8_lossy(&o.stderr),
            s.log_text()
        );
    };
    let wait = |to: &str| {
        for _ in 0..50 {
            if let Some(m) = queued_message(root, to) {
                return m;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("nothing queued for {to}: {}", s.log_text());
    };

    submit("joe@example.com", "friend@remote.example");
    let m = wait("friend@remote.example");
    assert!(
        m.starts_with(b"DKIM-Signature: "),
        "{}",
        String::from_utf8_lossy(&m)
    );
    let Some(good) = dkimpy(&recs, &wire(b"", &m)) else {
        return;
    };
    assert!(good, "dkimpy refused the daemon's signature");
    // The same bytes with the body changed on the way fail: the check can fail.
    let mut bad = m.clone();
    let at = bad.windows(6).position(|w| w == b"signed").unwrap();
    bad[at] = b'S';
    assert_eq!(dkimpy(&recs, &wire(b"", &bad)), Some(false));

    // A From domain without a key goes out unsigned.
    submit("joe@elsewhere.example", "other@remote.example");
    let m = wait("other@remote.example");
    assert!(
        !m.starts_with(b"DKIM-Signature"),
        "{}",
        String::from_utf8_lossy(&m)
    );
}
