//! The engine on a real mail root: rewriting, users/cdb, .qmail selection, safety
//! refusals and live reloads.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{demo_root, touch_later, write};
use turnmail::config::Config;
use turnmail::engine::{Engine, LoginContext, Resolution};
use turnmail::qmail::dotqmail::Instruction;

/// The engine as the one-shot commands open it: on the postgres backend it answers
/// from the database's accounts (an engine on texts has a version).
fn engine(root: &std::path::Path) -> Engine {
    let e = Engine::open_configured(root, Config::load(root).unwrap())
        .unwrap()
        .0;
    assert_eq!(e.version().is_some(), common::on_postgres());
    e
}

fn local(r: Resolution) -> Box<turnmail::engine::LocalTarget> {
    match r {
        Resolution::Local(t) => t,
        other => panic!("expected a local target, got {other:?}"),
    }
}

#[test]
fn demo_root_routes_users_sites_and_strangers() {
    let d = demo_root();
    let e = engine(&d.root);
    let t = local(e.resolve(b"joe@example.com", true).unwrap());
    assert_eq!(t.address, b"example.com-joe@example.com");
    assert_eq!(t.ext, b"joe");
    assert_eq!(
        t.instructions.instructions,
        vec![(1, Instruction::Maildir(b"./joe/Maildir/".to_vec()))]
    );
    // Case is folded for the .qmail lookup but kept in the address.
    let t = local(e.resolve(b"JOE@EXAMPLE.COM", true).unwrap());
    assert_eq!(t.address, b"example.com-JOE@EXAMPLE.COM");
    // Sites: everything goes through .qmail-default into the spool.
    let t = local(e.resolve(b"anyone@acme.example", true).unwrap());
    assert_eq!(t.address, b"site-acme-anyone@acme.example");
    assert_eq!(t.default_part.as_deref(), Some(&b"anyone"[..]));
    assert!(t.dotqmail.unwrap().ends_with("sites/acme/.qmail-default"));
    assert!(matches!(
        e.resolve(b"nobody@example.com", true).unwrap(),
        Resolution::Unknown { .. }
    ));
    assert_eq!(
        e.resolve(b"x@gmail.com", true).unwrap(),
        Resolution::NotOurs
    );
    // Subdomains are not accepted unless listed with a leading dot.
    assert_eq!(
        e.resolve(b"joe@sub.example.com", true).unwrap(),
        Resolution::NotOurs
    );
    // An empty local part in a virtual domain is rewritten to `example.com-@...`, so
    // it is not the trash address: only an empty local part of a locals domain is.
    assert!(matches!(
        e.resolve(b"@example.com", true).unwrap(),
        Resolution::Unknown { .. }
    ));
    assert_eq!(
        e.resolve(b"@mail.example.com", false).unwrap(),
        Resolution::Trash
    );
    assert!(matches!(
        e.resolve(b"joe", true).unwrap(),
        Resolution::BadAddress(_)
    ));
    assert!(matches!(
        e.resolve(b"joe@", true).unwrap(),
        Resolution::BadAddress(_)
    ));
}

#[test]
fn relay_tricks_are_never_ours() {
    let d = demo_root();
    let e = engine(&d.root);
    for probe in [
        &b"victim%gmail.com@gmail.com"[..],
        b"victim@gmail.com@",
        b"\"victim@gmail.com\"@gmail.com",
        b"gmail.com!victim@gmail.com",
        b"victim@[192.0.2.1]",
        b"victim@gmail.com.",
        b"victim@GMAIL.COM",
    ] {
        let r = e.resolve(probe, true).unwrap();
        assert!(
            matches!(r, Resolution::NotOurs | Resolution::BadAddress(_)),
            "{:?} -> {r:?}",
            String::from_utf8_lossy(probe)
        );
    }
    // %-hack and bang paths inside one of our domains stay local (and unknown).
    for probe in [
        &b"victim%gmail.com@example.com"[..],
        b"gmail.com!victim@example.com",
    ] {
        let r = e.resolve(probe, true).unwrap();
        assert!(matches!(r, Resolution::Unknown { .. }), "{r:?}");
    }
}

#[test]
fn path_tricks_in_local_parts_are_neutralised() {
    let d = demo_root();
    let dhome = d.root.join("domains/example.com");
    // A file outside the domain home that a `..` walk would reach.
    write(
        &d.root.join("domains/.qmail-example.com-x"),
        "&evil@example.org\n",
    );
    std::fs::create_dir(dhome.join(".qmail-a")).unwrap();
    write(&dhome.join(".qmail-a/b"), "&evil@example.org\n");
    let e = engine(&d.root);
    for probe in [
        &b"../x@example.com"[..],
        b"..@example.com",
        b"a/b@example.com",
        b"a/../b@example.com",
    ] {
        let r = e.resolve(probe, true).unwrap();
        assert!(
            matches!(r, Resolution::Unknown { .. }),
            "{:?} -> {r:?}",
            String::from_utf8_lossy(probe)
        );
    }
    // Dots become colons in file names: joe.smith looks for .qmail-joe:smith.
    write(&dhome.join(".qmail-joe:smith"), "./joe/Maildir/\n");
    std::fs::set_permissions(
        dhome.join(".qmail-joe:smith"),
        PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let t = local(e.resolve(b"Joe.Smith@example.com", true).unwrap());
    assert!(t.dotqmail.unwrap().ends_with(".qmail-joe:smith"));
    for probe in [&b"a\r\nb@example.com"[..], b"a\0b@example.com"] {
        assert!(matches!(
            e.resolve(probe, true).unwrap(),
            Resolution::BadAddress(_)
        ));
    }
    let long = format!("{}@example.com", "a".repeat(300));
    assert!(matches!(
        e.resolve(long.as_bytes(), true).unwrap(),
        Resolution::BadAddress(_)
    ));
}

#[test]
fn unsafe_configurations_defer_instead_of_delivering() {
    let d = demo_root();
    let dhome = d.root.join("domains/example.com");
    let e = engine(&d.root);
    // A writable .qmail file.
    let q = dhome.join(".qmail-joe");
    std::fs::set_permissions(&q, PermissionsExt::from_mode(0o622)).unwrap();
    let err = e.resolve(b"joe@example.com", true).unwrap_err();
    assert!(err.0.contains("writable"), "{err}");
    std::fs::set_permissions(&q, PermissionsExt::from_mode(0o600)).unwrap();
    // A writable home.
    std::fs::set_permissions(&dhome, PermissionsExt::from_mode(0o777)).unwrap();
    assert!(
        e.resolve(b"joe@example.com", true)
            .unwrap_err()
            .0
            .contains("writable")
    );
    // A sticky home (the user is editing).
    std::fs::set_permissions(&dhome, PermissionsExt::from_mode(0o1700)).unwrap();
    assert!(
        e.resolve(b"joe@example.com", true)
            .unwrap_err()
            .0
            .contains("sticky")
    );
    std::fs::set_permissions(&dhome, PermissionsExt::from_mode(0o700)).unwrap();
    // A blank first line.
    write(&q, "\n./joe/Maildir/\n");
    assert!(
        e.resolve(b"joe@example.com", true)
            .unwrap_err()
            .0
            .contains("blank")
    );
    // The x bit makes a file forward-only: a Maildir line in it defers.
    write(&q, "./joe/Maildir/\n");
    std::fs::set_permissions(&q, PermissionsExt::from_mode(0o700)).unwrap();
    assert!(e.resolve(b"joe@example.com", true).is_err());
    std::fs::set_permissions(&q, PermissionsExt::from_mode(0o600)).unwrap();
    assert!(e.resolve(b"joe@example.com", true).is_ok());
}

#[test]
fn uid_zero_is_refused_and_edits_reload_live() {
    let d = demo_root();
    let e = engine(&d.root);
    let assign = d.root.join("users/assign");
    let mu = common::mail_user();
    let dhome = d.root.join("domains/example.com");
    // Add a root-owned entry and a new domain; the engine picks both up by itself.
    write(
        &d.root.join("control/rcpthosts"),
        "example.com\nacme.example\nroot.example\nnew.example\n",
    );
    write(
        &d.root.join("control/virtualdomains"),
        "example.com:example.com\nacme.example:site-acme\nroot.example:root\nnew.example:example.com\n",
    );
    write(
        &assign,
        &format!(
            "+example.com-:{n}:{u}:{g}:{h}:-::\n+site-acme-:{n}:{u}:{g}:{s}:-::\n+root-:root:0:0:/root:-::\n.\n",
            n = mu.name,
            u = mu.uid,
            g = mu.gid,
            h = dhome.display(),
            s = d.root.join("sites/acme").display()
        ),
    );
    touch_later(&assign, 2);
    if common::on_postgres() {
        // The database's path: the edit committed, then installed as the daemon's
        // follower does on NOTIFY.
        assert!(reload_from_db(&d, &e).status.success());
    } else {
        let r = e.reload_if_changed();
        assert!(r.reloaded && r.errors.is_empty(), "{r:?}");
        assert_eq!(r.compiled.len(), 1);
    }
    let err = e.resolve(b"x@root.example", true).unwrap_err();
    assert!(err.0.contains("uid 0"), "{err}");
    assert!(matches!(
        e.resolve(b"joe@new.example", true).unwrap(),
        Resolution::Local(_)
    ));
    if !common::on_postgres() {
        // Nothing changed: no reload.
        assert!(!e.reload_if_changed().reloaded);
    }
    // An invalid assign keeps the old tables and reports the line.
    write(&assign, "+broken:line\n.\n");
    touch_later(&assign, 4);
    if common::on_postgres() {
        // Refused before the database: nothing committed, nothing to install.
        let o = reload_from_db(&d, &e);
        assert!(!o.status.success(), "{o:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("line 1"),
            "{o:?}"
        );
    } else {
        let r = e.reload_if_changed();
        assert_eq!(r.compiled.len(), 0);
        assert!(r.errors.iter().any(|m| m.contains("line 1")), "{r:?}");
        // Not retried until it changes again.
        assert!(e.reload_if_changed().errors.is_empty());
    }
    assert!(matches!(
        e.resolve(b"joe@new.example", true).unwrap(),
        Resolution::Local(_)
    ));
}

/// On postgres: `db import --replace` of the hand-edited files, then what the database
/// holds installed into `e`; the import's output.
fn reload_from_db(d: &common::DemoRoot, e: &Engine) -> std::process::Output {
    let o = common::turnmail(&d.root, &["db", "import", "--replace"]);
    let config = Config::load(&d.root).unwrap();
    let (texts, version) =
        turnmail::db::blocking::with_store(&config.postgres, |s| async move { s.load().await })
            .unwrap();
    e.install(texts, version).unwrap();
    assert_eq!(e.version(), Some(version));
    o
}

#[test]
fn logins_through_the_engine() {
    let d = demo_root();
    let e = engine(&d.root);
    let s = e.snapshot();
    let ctx = LoginContext::default();
    let ok = s
        .accounts
        .authenticate(d.report.login.as_bytes(), d.report.password.as_bytes(), ctx)
        .unwrap();
    assert_eq!(
        ok.account.maildir(),
        d.root.join("domains/example.com/joe/Maildir")
    );
    assert!(
        s.accounts
            .authenticate(b"joe%example.com", d.report.password.as_bytes(), ctx)
            .is_ok()
    );
    assert!(
        s.accounts
            .authenticate(b"joe@example.com", b"wrong", ctx)
            .is_err()
    );
    assert!(
        s.accounts
            .authenticate(b"../../etc/passwd", b"x", ctx)
            .is_err()
    );
}

#[test]
fn system_accounts_fallback_is_off_by_default() {
    let d = demo_root();
    write(&d.root.join("control/locals"), "mail.example.com\n");
    write(
        &d.root.join("control/rcpthosts"),
        "example.com\nmail.example.com\n",
    );
    common::accounts_changed(&d);
    let e = engine(&d.root);
    assert!(matches!(
        e.resolve(b"nobody@mail.example.com", true).unwrap(),
        Resolution::Unknown { .. }
    ));
}
