//! deploy/turnmail.service checked by systemd's own tools: it parses without a single
//! complaint, and its hardening keeps the exposure systemd computes low. (Starting it
//! needs systemd as init, which a test machine or container usually lacks.)

mod common;

use std::process::Command;

fn unit_with_binary(dir: &std::path::Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/turnmail.service"
    ))
    .unwrap();
    assert!(text.contains("ExecStart=/usr/local/bin/turnmail serve"));
    let text = text.replace("/usr/local/bin/turnmail", env!("CARGO_BIN_EXE_turnmail"));
    let path = dir.join("turnmail.service");
    std::fs::write(&path, text).unwrap();
    path
}

fn have_systemd_analyze() -> bool {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        common::skip("systemd-analyze is not installed (Debian package systemd)");
    }
    ok
}

#[test]
fn the_unit_parses_cleanly_and_is_hardened() {
    if !have_systemd_analyze() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_binary(dir.path());
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    // verify exits 0 even for ignored lines; any message about the unit is a defect.
    assert!(o.status.success(), "{said}");
    assert!(!said.contains("turnmail.service"), "{said}");

    let o = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    let level: f64 = out
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for turnmail.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {out}"));
    // systemd rates 0-10; most distribution units of network daemons are above 6.
    assert!(level <= 4.0, "exposure {level}: {out}");
}

#[test]
fn a_broken_line_would_be_noticed() {
    if !have_systemd_analyze() {
        return;
    }
    // The check above can fail: the same unit with one bad value is reported.
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_with_binary(dir.path());
    let text = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("ProtectHome=read-only", "ProtectHome=sometimes");
    std::fs::write(&unit, text).unwrap();
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("turnmail.service"));
}
