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

fn install_sh(args: &[std::ffi::OsString]) -> std::process::Output {
    Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/install.sh"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_turnmail"))
        .args(args)
        .output()
        .unwrap()
}

/// deploy/install.sh into a scratch prefix, root and unit directory: it ends with an
/// empty mail root every command can use and the next three commands; run again it
/// touches nothing; over what an earlier install.sh left (a lone turnmail.toml) it
/// keeps that file in force.
#[test]
fn install_sh_ends_with_a_working_empty_root_and_the_next_three_commands() {
    if !common::is_root() {
        common::skip("install.sh needs root");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let mu = common::mail_user();
    let d = tempfile::tempdir().unwrap();
    let (prefix, root, units) = (
        d.path().join("prefix"),
        d.path().join("root"),
        d.path().join("units"),
    );
    let args = |root: &std::path::Path| -> Vec<std::ffi::OsString> {
        vec![
            "--prefix".into(),
            prefix.clone().into(),
            "--root".into(),
            root.into(),
            "--user".into(),
            mu.name.clone().into(),
            "--unit-dir".into(),
            units.clone().into(),
        ]
    };
    let o = install_sh(&args(&root));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let bin = prefix.join("bin/turnmail");
    let (b, r) = (bin.display(), root.display());
    let last: Vec<&str> = out.lines().rev().take(4).collect();
    assert_eq!(
        last,
        [
            "  systemctl enable --now turnmail",
            &format!("  {b} --root {r} user add joe@example.net"),
            &format!("  {b} --root {r} domain add example.net"),
            "next:",
        ],
        "{out}"
    );
    assert_eq!(out.matches("next:").count(), 1, "{out}");
    assert!(out.contains("created an empty mail root"), "{out}");
    assert_eq!(
        std::fs::read_link(prefix.join("bin/turnmail-checkpassword")).unwrap(),
        std::path::Path::new("turnmail")
    );
    assert_eq!(
        std::fs::metadata(root.join("control")).unwrap().uid(),
        mu.uid
    );
    let turnmail = |root: &std::path::Path, args: &[&str]| {
        Command::new(&bin)
            .arg("--root")
            .arg(root)
            .args(args)
            .output()
            .unwrap()
    };
    // Every command works on it; check names the one thing left to do.
    let check = turnmail(&root, &["check"]);
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(said.contains("control/rcpthosts") && said.contains("1 problem(s)"));
    assert!(
        turnmail(&root, &["domain", "add", "example.net"])
            .status
            .success()
    );
    assert_eq!(turnmail(&root, &["check"]).status.code(), Some(0));

    // The unit, rewritten for this prefix and root.
    let unit = std::fs::read_to_string(units.join("turnmail.service")).unwrap();
    assert!(unit.contains(&format!("\nExecStart={b} serve\n")), "{unit}");
    assert!(unit.contains(&format!("\nEnvironment=TURNMAIL_ROOT={r}\n")));
    assert!(unit.contains(&format!("\nAssertPathIsDirectory={r}/control\n")));
    let settings: Vec<&str> = unit.lines().filter(|l| !l.starts_with('#')).collect();
    assert!(
        settings
            .iter()
            .all(|l| !l.contains("/var/lib/turnmail") && !l.contains("/usr/local")),
        "{settings:?}"
    );
    if have_systemd_analyze() {
        let o = Command::new("systemd-analyze")
            .arg("verify")
            .arg(units.join("turnmail.service"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() && !said.contains("turnmail.service"),
            "{said}"
        );
    }

    // Again: the root is left as it is.
    let o = install_sh(&args(&root));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("exists; left as it is"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("control/rcpthosts")).unwrap(),
        "example.net\n"
    );

    // What an earlier install.sh left: the operator's turnmail.toml stays in force.
    let old = d.path().join("old");
    std::fs::create_dir(&old).unwrap();
    let mine = format!("# mine\nuser = \"{}\"\n", mu.name);
    std::fs::write(old.join("turnmail.toml"), &mine).unwrap();
    let o = install_sh(&args(&old));
    assert!(o.status.success(), "{o:?}");
    assert_eq!(
        std::fs::read_to_string(old.join("turnmail.toml")).unwrap(),
        mine
    );
    assert!(old.join("turnmail.toml.setup").is_file() && old.join("users/cdb").is_file());
    assert_eq!(turnmail(&old, &["check"]).status.code(), Some(1));
}
