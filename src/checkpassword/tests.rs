use super::*;
use crate::engine::accounts::{Accounts, Owner};
use crate::engine::accounts::{LoginPolicy, compile};
use crate::engine::crypt;

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
    let v: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| {
        v.iter()
            .find(|(kk, _)| kk == k)
            .map(|(_, vv)| OsString::from(vv))
    }
}

#[test]
fn input_parsing_follows_checkpassword_090() {
    let r = parse_input(b"joe\0secret\0<1.2@h>\0").unwrap();
    assert_eq!(
        (&r.login[..], &r.password[..], &r.timestamp[..]),
        (&b"joe"[..], &b"secret"[..], &b"<1.2@h>"[..])
    );
    // Dovecot's form (empty timestamp) and trailing extra data.
    assert!(parse_input(b"joe\0pw\0\0").is_ok());
    assert!(parse_input(b"joe\0pw\0\0more stuff").is_ok());
    assert_eq!(
        parse_input(b"").unwrap_err(),
        InputError::Malformed("empty input")
    );
    for bad in [&b"joe"[..], b"joe\0pw", b"joe\0pw\0ts"] {
        assert_eq!(parse_input(bad).unwrap_err().exit_code(), EXIT_MISUSE);
    }
    let mut max = vec![b'a'; MAX_INPUT];
    max[10] = 0;
    max[20] = 0;
    max[MAX_INPUT - 1] = 0;
    assert!(parse_input(&max).is_ok());
    max.push(0);
    assert_eq!(parse_input(&max).unwrap_err(), InputError::TooLong);
    assert_eq!(InputError::TooLong.exit_code(), EXIT_BAD);
    assert!(format!("{:?}", parse_input(b"u\0hunter2\0\0").unwrap()).contains("redacted"));
    assert!(!format!("{:?}", parse_input(b"u\0hunter2\0\0").unwrap()).contains("hunter2"));
}

#[test]
fn apop_shape() {
    let d = b"c4c9334bac560ecc979e58001b3e22fb";
    assert!(looks_like_apop(b"<1896.697170952@dbc.mtview.ca.us>", d));
    assert!(looks_like_apop(b"<x>", b"C4C9334BAC560ECC979E58001B3E22FB"));
    assert!(!looks_like_apop(b"", d));
    assert!(!looks_like_apop(b"<", d));
    assert!(!looks_like_apop(b"1896.697170952@dbc", d));
    assert!(!looks_like_apop(b"<x>", &d[..31]));
    assert!(!looks_like_apop(
        b"<x>",
        b"g4c9334bac560ecc979e58001b3e22fb"
    ));
}

#[test]
fn modes() {
    let reply = OsStr::new("/usr/lib/dovecot/checkpassword-reply");
    let pop = OsStr::new("qmail-pop3d");
    assert_eq!(detect_mode(pop, &env_of(&[])), Ok(Mode::Classic));
    assert_eq!(detect_mode(reply, &env_of(&[])), Ok(Mode::DovecotCheck));
    assert_eq!(
        detect_mode(reply, &env_of(&[("AUTHORIZED", "1")])),
        Ok(Mode::DovecotLookup { credentials: None })
    );
    assert_eq!(
        detect_mode(
            reply,
            &env_of(&[
                ("AUTHORIZED", "1"),
                ("CREDENTIALS_LOOKUP", "1"),
                ("SCHEME", "CRAM-MD5")
            ])
        ),
        Ok(Mode::DovecotLookup {
            credentials: Some("CRAM-MD5".into())
        })
    );
    // A password-less lookup never execs anything but Dovecot's reply program.
    assert!(detect_mode(pop, &env_of(&[("AUTHORIZED", "1")])).is_err());
    assert!(detect_mode(reply, &env_of(&[("AUTHORIZED", "2")])).is_err());
}

#[test]
fn path_search() {
    let exists = |p: &Path| p == Path::new("/usr/bin/qmail-pop3d");
    let s = |prog: &str, path: Option<&str>| {
        search_path(OsStr::new(prog), path.map(OsStr::new), &exists)
    };
    assert_eq!(
        s("qmail-pop3d", None),
        Some(PathBuf::from("/usr/bin/qmail-pop3d"))
    );
    assert_eq!(
        s("qmail-pop3d", Some("/opt:/usr/bin")),
        Some(PathBuf::from("/usr/bin/qmail-pop3d"))
    );
    assert_eq!(s("qmail-pop3d", Some("/opt")), None);
    // Relative and empty entries are never searched.
    assert_eq!(s("qmail-pop3d", Some(":.:bin")), None);
    assert_eq!(
        s("./x/y", Some("/opt")),
        Some(PathBuf::from("./x/y")),
        "a name with a slash is used as given"
    );
    assert_eq!(s("", None), None);
}

#[test]
fn stderr_on_the_client_socket_is_recognised() {
    let sock = Some((true, 1, 42));
    let pipe = Some((false, 2, 7));
    // qmail 1.03: fd 0, 1 and 2 are the same socket.
    assert!(stderr_reaches_client(sock, sock, sock));
    assert!(stderr_reaches_client(sock, None, sock));
    // netqmail under tcpserver: fd 2 is multilog's pipe.
    assert!(!stderr_reaches_client(pipe, sock, sock));
    // A different socket (journald's stream) is a log.
    assert!(!stderr_reaches_client(Some((true, 1, 43)), sock, sock));
    assert!(stderr_reaches_client(None, sock, sock));
}

#[test]
fn delay_from_env_or_config() {
    let c = Config::default();
    assert_eq!(failure_delay(None, &c), Duration::from_millis(2000));
    assert_eq!(
        failure_delay(Some(OsStr::new("0")), &c),
        Duration::from_millis(0)
    );
    assert_eq!(
        failure_delay(Some(OsStr::new("junk")), &c),
        Duration::from_millis(2000)
    );
}

fn me_owner() -> (String, Owner) {
    let uid = nix::unistd::getuid();
    let name = if uid.is_root() {
        "nobody".to_string()
    } else {
        nix::unistd::User::from_uid(uid).unwrap().unwrap().name
    };
    let o = crate::engine::accounts::resolve_owner(name.as_bytes())
        .unwrap()
        .unwrap();
    (name, o)
}

fn tables(lines: &str, secrets: &str) -> (tempfile::TempDir, Accounts) {
    let d = tempfile::tempdir().unwrap();
    compile(lines.as_bytes(), &d.path().join("p.cdb")).unwrap();
    std::fs::write(d.path().join("s"), secrets).unwrap();
    let a = Accounts::open(
        &d.path().join("p.cdb"),
        &d.path().join("s"),
        LoginPolicy {
            default_domain: Some("x.example".into()),
            ..Default::default()
        },
    )
    .unwrap();
    (d, a)
}

fn req(login: &str, pw: &str, ts: &str) -> Request {
    parse_input(format!("{login}\0{pw}\0{ts}\0").as_bytes()).unwrap()
}

fn env_map(p: &Plan) -> std::collections::HashMap<String, String> {
    p.env
        .iter()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

#[test]
fn decisions() {
    let (name, owner) = me_owner();
    let h = crypt::hash_with_prefix(b"pw", "$1$").unwrap();
    let (_d, a) = tables(
        &format!(
            "joe@x.example:{h}:{name}:/m/joe\nann@x.example:*:{name}:/m/ann\nboss@x.example:{h}:root:/m/boss\nsam@x.example:{h}:{name}:/m/sam\n"
        ),
        &format!(
            "ann@x.example:tanstaaf\njoe@x.example:{}\n",
            crate::engine::cram::Context::from_secret(b"joe's").stored()
        ),
    );
    let ctx = LoginContext::default();
    let root = Process { uid: 0, euid: 0 };
    let same = Process {
        uid: owner.uid,
        euid: owner.uid,
    };
    let other = Process {
        uid: owner.uid.wrapping_add(1),
        euid: owner.uid.wrapping_add(1),
    };

    // Classic, as root: become the owner, chdir home, the four variables.
    let p = decide(&a, &req("joe", "pw", ""), &Mode::Classic, root, ctx).unwrap();
    assert_eq!(p.login, b"joe@x.example");
    assert_eq!(p.become_owner, Some(owner));
    assert_eq!(p.chdir.as_deref(), Some(Path::new("/m/joe")));
    let e = env_map(&p);
    assert_eq!(e["USER"], "joe@x.example");
    assert_eq!(e["HOME"], "/m/joe");
    assert_eq!(e["SHELL"], "/bin/sh");
    assert_eq!(e["MAILDIR"], "/m/joe/Maildir");
    // Already the owner: no switch. Another uid: refused.
    let p = decide(&a, &req("joe", "pw", ""), &Mode::Classic, same, ctx).unwrap();
    assert_eq!(p.become_owner, None);
    let r = decide(&a, &req("joe", "pw", ""), &Mode::Classic, other, ctx).unwrap_err();
    assert_eq!(r.code, EXIT_BAD);
    assert!(r.why.contains("run it as root"), "{}", r.why);
    // Bad password, unknown login, root-owned: 1.
    for (l, pw) in [("joe", "px"), ("nobody@x.example", "pw"), ("boss", "pw")] {
        let r = decide(&a, &req(l, pw, ""), &Mode::Classic, root, ctx).unwrap_err();
        assert_eq!(r.code, EXIT_BAD, "{l}");
    }
    // APOP (RFC 1939's example secret and digest).
    let ts = "<1896.697170952@dbc.mtview.ca.us>";
    let good = "c4c9334bac560ecc979e58001b3e22fb";
    assert!(decide(&a, &req("ann", good, ts), &Mode::Classic, root, ctx).is_ok());
    let bad = "c4c9334bac560ecc979e58001b3e22fc";
    assert_eq!(
        decide(&a, &req("ann", bad, ts), &Mode::Classic, root, ctx)
            .unwrap_err()
            .code,
        EXIT_BAD
    );

    // Dovecot password check: no switch, the ids through EXTRA.
    let p = decide(&a, &req("joe", "pw", ""), &Mode::DovecotCheck, other, ctx).unwrap();
    assert_eq!(p.become_owner, None);
    assert_eq!(p.chdir, None);
    let e = env_map(&p);
    assert_eq!(e["USER"], "joe@x.example");
    assert_eq!(e["EXTRA"], "userdb_uid userdb_gid");
    assert_eq!(e["userdb_uid"], owner.uid.to_string());
    assert_eq!(e["userdb_gid"], owner.gid.to_string());
    assert!(!e.contains_key("AUTHORIZED"));
    assert_eq!(
        decide(&a, &req("nope", "pw", ""), &Mode::DovecotCheck, other, ctx)
            .unwrap_err()
            .code,
        EXIT_BAD
    );

    // Dovecot lookups.
    let lookup = Mode::DovecotLookup { credentials: None };
    let p = decide(&a, &req("joe@x.example", "", ""), &lookup, other, ctx).unwrap();
    let e = env_map(&p);
    assert_eq!(e["AUTHORIZED"], "2");
    assert_eq!(e["HOME"], "/m/joe");
    assert!(!e.contains_key("password"));
    for l in ["nope@x.example", "boss@x.example"] {
        assert_eq!(
            decide(&a, &req(l, "", ""), &lookup, other, ctx)
                .unwrap_err()
                .code,
            EXIT_UNKNOWN_USER,
            "{l}"
        );
    }
    let creds = Mode::DovecotLookup {
        credentials: Some("CRAM-MD5".into()),
    };
    let e = env_map(&decide(&a, &req("ann", "", ""), &creds, other, ctx).unwrap());
    assert_eq!(e["password"], "{PLAIN}tanstaaf");
    assert_eq!(e["EXTRA"], "userdb_uid userdb_gid password");
    // A secret kept as its HMAC-MD5 states goes out in Dovecot's CRAM-MD5 scheme.
    let e = env_map(&decide(&a, &req("joe", "", ""), &creds, other, ctx).unwrap());
    assert_eq!(
        e["password"],
        crate::engine::cram::Context::from_secret(b"joe's").stored()
    );
    // No secret: no password field (Dovecot says "scheme not available"); the
    // crypt hash is never handed out.
    let e = env_map(&decide(&a, &req("sam", "", ""), &creds, other, ctx).unwrap());
    assert!(!e.contains_key("password"));
    assert_eq!(e["EXTRA"], "userdb_uid userdb_gid");
}
