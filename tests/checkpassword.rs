//! `turnmail checkpassword` as real processes with a real fd 3 pipe: every exit code,
//! the 512-byte limit, APOP, uid 0, the probe program's identity and environment,
//! Dovecot's conventions with a fake and the real checkpassword-reply, and Dovecot 2.3
//! itself serving POP3 through it (fetched with Python's poplib).

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{DemoRoot, demo_root, mail_user, write};

const BIN: &str = env!("CARGO_BIN_EXE_turnmail");
/// Runs "$@" with the test's stdin pipe as fd 3 and /dev/null as fd 0, as qmail-popup
/// and Dovecot hand the login over.
const FD3: &str = r#"exec "$@" 3<&0 </dev/null"#;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A shell script in the demo root's world-readable parent directory.
fn script(d: &DemoRoot, name: &str, body: &str) -> PathBuf {
    let dir = d.dir.path().join("bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = dir.join(name);
    write(&p, &format!("#!/bin/sh\n{body}"));
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// Prints who and where it runs, and what it was given.
fn probe(d: &DemoRoot) -> PathBuf {
    script(
        d,
        "probe",
        r#"echo "uid=$(id -u)"
echo "gid=$(id -g)"
echo "groups=$(id -G)"
echo "cwd=$(pwd -P)"
echo "USER=$USER"
echo "HOME=$HOME"
echo "SHELL=$SHELL"
echo "MAILDIR=$MAILDIR"
echo "args=$*"
if [ -e /proc/$$/fd/3 ]; then echo fd3=open; else echo fd3=closed; fi
"#,
    )
}

fn parse_kv(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

struct Run {
    out: Output,
    elapsed: Duration,
}

impl Run {
    fn code(&self) -> Option<i32> {
        self.out.status.code()
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
}

/// Run `argv` under `sh -c FD3` with `input` written into the fd 3 pipe.
fn run_with_fd3(argv: &[&std::ffi::OsStr], input: &[u8], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(FD3).arg("sh").args(argv);
    for k in [
        "TURNMAIL_ROOT",
        "TURNMAIL_LOG",
        "AUTHORIZED",
        "CREDENTIALS_LOOKUP",
        "SCHEME",
        "TCPLOCALIP",
    ] {
        cmd.env_remove(k);
    }
    cmd.env("TURNMAIL_CHECKPASSWORD_DELAY_MS", "0");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let t = Instant::now();
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        // The program may exit before reading everything (513 bytes): ignore EPIPE.
        let _ = stdin.write_all(input);
    }
    let out = child.wait_with_output().unwrap();
    Run {
        out,
        elapsed: t.elapsed(),
    }
}

/// `turnmail --root ROOT checkpassword PROG...` with `input` on fd 3.
fn cpw(root: &Path, input: &[u8], prog: &[&str], env: &[(&str, &str)]) -> Run {
    let mut argv: Vec<&std::ffi::OsStr> = vec![
        BIN.as_ref(),
        "--root".as_ref(),
        root.as_os_str(),
        "checkpassword".as_ref(),
    ];
    argv.extend(prog.iter().map(|p| std::ffi::OsStr::new(*p)));
    run_with_fd3(&argv, input, env)
}

fn input(login: &str, password: &str, timestamp: &str) -> Vec<u8> {
    format!("{login}\0{password}\0{timestamp}\0").into_bytes()
}

fn home(d: &DemoRoot) -> PathBuf {
    d.root.join("domains/example.com/joe")
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn good_login_runs_prog_as_the_owner_in_its_home() {
    let d = demo_root();
    let probe = probe(&d);
    let mu = mail_user();
    // Any case: USER is the login as stored.
    let r = cpw(
        &d.root,
        &input(
            "JOE@Example.COM",
            &d.report.password,
            "<123.456@mail.example.com>",
        ),
        &[s(&probe), "Maildir", "--flag"],
        &[],
    );
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    let v = parse_kv(&r.stdout());
    assert_eq!(v["uid"], mu.uid.to_string());
    assert_eq!(v["gid"], mu.gid.to_string());
    if is_root() {
        // setgroups to just the owner's gid.
        assert_eq!(v["groups"], mu.gid.to_string());
    }
    assert_eq!(v["cwd"], s(&home(&d)));
    assert_eq!(v["USER"], "joe@example.com");
    assert_eq!(v["HOME"], s(&home(&d)));
    assert_eq!(v["SHELL"], "/bin/sh");
    assert_eq!(v["MAILDIR"], s(&home(&d).join("Maildir")));
    assert_eq!(v["args"], "Maildir --flag");
    assert_eq!(v["fd3"], "closed", "fd 3 is closed before PROG runs");
    // The log says who logged in, never the password, and stays off stdout.
    assert!(r.stderr().contains("joe@example.com"), "{}", r.stderr());
    assert!(!r.stderr().contains(&d.report.password));
    assert!(!r.stdout().contains("login"), "{}", r.stdout());
    common::assert_on_backend(&d);
}

#[test]
fn prog_is_found_on_path_and_on_the_default_path_when_path_is_unset() {
    let d = demo_root();
    let p = probe(&d);
    let dir = p.parent().unwrap().to_str().unwrap();
    let pw = input("joe@example.com", &d.report.password, "");
    let r = cpw(
        &d.root,
        &pw,
        &["probe"],
        &[("PATH", &format!("/nonexistent:{dir}:/usr/bin:/bin"))],
    );
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    assert!(r.stdout().contains("USER=joe@example.com"));
    // As under Dovecot: no PATH at all; printenv lives in /usr/bin.
    let mut argv: Vec<&std::ffi::OsStr> = vec![
        "env".as_ref(),
        "-u".as_ref(),
        "PATH".as_ref(),
        BIN.as_ref(),
        "--root".as_ref(),
        d.root.as_os_str(),
        "checkpassword".as_ref(),
    ];
    argv.extend([
        std::ffi::OsStr::new("printenv"),
        std::ffi::OsStr::new("MAILDIR"),
    ]);
    let r = run_with_fd3(&argv, &pw, &[]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    assert_eq!(r.stdout().trim(), s(&home(&d).join("Maildir")));
    // Not found anywhere: temporary.
    let r = cpw(&d.root, &pw, &["no-such-program-here"], &[]);
    assert_eq!(r.code(), Some(111), "{}", r.stderr());
}

#[test]
fn every_exit_code() {
    let d = demo_root();
    let p = probe(&d);
    let probe = s(&p);
    let pw = &d.report.password;
    let cases: Vec<(&str, Vec<u8>, Vec<&str>, i32)> = vec![
        (
            "bad password",
            input("joe@example.com", "wrong", ""),
            vec![probe],
            1,
        ),
        (
            "unknown login",
            input("ann@example.com", pw, ""),
            vec![probe],
            1,
        ),
        ("empty login", input("", pw, ""), vec![probe], 1),
        ("no PROG", input("joe@example.com", pw, ""), vec![], 2),
        ("empty input", Vec::new(), vec![probe], 2),
        (
            "no NUL after the login",
            b"joe@example.com".to_vec(),
            vec![probe],
            2,
        ),
        (
            "no NUL after the password",
            format!("joe@example.com\0{pw}").into_bytes(),
            vec![probe],
            2,
        ),
        (
            "no NUL after the timestamp",
            format!("joe@example.com\0{pw}\0<1@x>").into_bytes(),
            vec![probe],
            2,
        ),
    ];
    for (what, data, prog, want) in cases {
        let r = cpw(&d.root, &data, &prog, &[]);
        assert_eq!(r.code(), Some(want), "{what}: {}", r.stderr());
        assert!(r.out.stdout.is_empty(), "{what}: nothing on stdout");
        assert!(!r.stderr().contains(pw.as_str()), "{what}: password logged");
    }
    // A password-less lookup may only answer Dovecot's reply program.
    let r = cpw(
        &d.root,
        &input("joe@example.com", "", ""),
        &[probe],
        &[("AUTHORIZED", "1")],
    );
    assert_eq!(r.code(), Some(2), "{}", r.stderr());
    assert!(r.out.stdout.is_empty());
    // fd 3 not open at all.
    let r = run_with_fd3(
        &[
            "sh".as_ref(),
            "-c".as_ref(),
            r#"exec "$@" 3<&-"#.as_ref(),
            "sh".as_ref(),
            BIN.as_ref(),
            "--root".as_ref(),
            d.root.as_os_str(),
            "checkpassword".as_ref(),
            probe.as_ref(),
        ],
        b"",
        &[],
    );
    assert_eq!(r.code(), Some(2), "{}", r.stderr());
}

#[test]
fn the_512_byte_limit() {
    let d = demo_root();
    let p = probe(&d);
    let head = format!("joe@example.com\0{}\0<", d.report.password);
    // Exactly 512 bytes: a long timestamp ending in ">\0".
    let mut ok = head.clone().into_bytes();
    ok.resize(510, b'x');
    ok.extend_from_slice(b">\0");
    assert_eq!(ok.len(), 512);
    let r = cpw(&d.root, &ok, &[s(&p)], &[]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    // 513 bytes: exit 1, as checkpassword 0.90.
    let mut long = head.into_bytes();
    long.resize(511, b'x');
    long.extend_from_slice(b">\0");
    assert_eq!(long.len(), 513);
    let r = cpw(&d.root, &long, &[s(&p)], &[]);
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    assert!(r.out.stdout.is_empty());
    // Far more than that (the writer gets EPIPE): still 1.
    let r = cpw(&d.root, &vec![b'a'; 100_000], &[s(&p)], &[]);
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
}

#[test]
fn temporary_failures_are_111() {
    let d = demo_root();
    let p = probe(&d);
    let data = input("joe@example.com", &d.report.password, "");
    // A mail root that is not there.
    let r = cpw(&d.root.join("missing"), &data, &[s(&p)], &[]);
    assert_eq!(r.code(), Some(111), "{}", r.stderr());
    // No mail root named at all.
    let r = run_with_fd3(
        &[BIN.as_ref(), "checkpassword".as_ref(), s(&p).as_ref()],
        &data,
        &[],
    );
    assert_eq!(r.code(), Some(111), "{}", r.stderr());
    assert!(r.stderr().contains("no mail root"), "{}", r.stderr());
    // The postgres backend's account source failing: the database stopped.
    if common::on_postgres() {
        let mut d2 = demo_root();
        d2.pg.as_mut().unwrap().stop();
        let r = cpw(
            &d2.root,
            &input("joe@example.com", &d2.report.password, ""),
            &[s(&p)],
            &[],
        );
        assert_eq!(r.code(), Some(111), "{}", r.stderr());
    } else {
        // The files backend's account tables failing.
        // An unreadable account table (a directory where the cdb belongs).
        let d2 = demo_root();
        let cdb = d2.root.join("users/poppasswd.cdb");
        std::fs::remove_file(&cdb).unwrap();
        std::fs::create_dir(&cdb).unwrap();
        let r = cpw(
            &d2.root,
            &input("joe@example.com", &d2.report.password, ""),
            &[s(&p)],
            &[],
        );
        assert_eq!(r.code(), Some(111), "{}", r.stderr());
        // A source that was never compiled.
        std::fs::remove_dir(&cdb).unwrap();
        let r = cpw(
            &d2.root,
            &input("joe@example.com", &d2.report.password, ""),
            &[s(&p)],
            &[],
        );
        assert_eq!(r.code(), Some(111), "{}", r.stderr());
        assert!(r.stderr().contains("turnmail newu"), "{}", r.stderr());
    }
    // An invalid turnmail.toml.
    write(&d.root.join("turnmail.toml"), "no_such_key = 1\n");
    let r = cpw(&d.root, &data, &[s(&p)], &[]);
    assert_eq!(r.code(), Some(111), "{}", r.stderr());
    if !is_root() && !common::on_postgres() {
        // Root reads everything, so this case only exists for other users.
        let d3 = demo_root();
        let f = d3.root.join("users/poppasswd.cdb");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o000)).unwrap();
        let r = cpw(
            &d3.root,
            &input("joe@example.com", &d3.report.password, ""),
            &[s(&p)],
            &[],
        );
        assert_eq!(r.code(), Some(111), "{}", r.stderr());
    }
}

/// The log says "login" only when PROG is about to run: a good password whose home is
/// gone, or whose PROG cannot be found, is logged as the trouble it is, never as a
/// login.
#[test]
fn the_login_is_logged_only_when_prog_runs() {
    let d = demo_root();
    let p = probe(&d);
    let data = input("joe@example.com", &d.report.password, "");
    let env = [("TCPREMOTEIP", "192.0.2.1"), ("TURNMAIL_LOG", "info")];
    let logged_in = |r: &Run| {
        r.stderr()
            .lines()
            .any(|l| l.contains("INFO") && l.contains(" login"))
    };
    let r = cpw(&d.root, &data, &[s(&p)], &env);
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    assert!(logged_in(&r), "{}", r.stderr());
    let r = cpw(&d.root, &data, &["/nonexistent/prog"], &env);
    assert_eq!(r.code(), Some(111), "{}", r.stderr());
    assert!(!logged_in(&r), "{}", r.stderr());
    let gone = d.dir.path().join("moved-away");
    std::fs::rename(home(&d), &gone).unwrap();
    let r = cpw(&d.root, &data, &[s(&p)], &env);
    assert_eq!(r.code(), Some(111), "{}", r.stderr());
    assert!(r.stderr().contains("chdir"), "{}", r.stderr());
    assert!(!logged_in(&r), "{}", r.stderr());
}

#[test]
fn failures_wait_the_delay_from_env_or_config() {
    let d = demo_root();
    let p = probe(&d);
    let bad = input("joe@example.com", "wrong", "");
    let r = cpw(
        &d.root,
        &bad,
        &[s(&p)],
        &[("TURNMAIL_CHECKPASSWORD_DELAY_MS", "300")],
    );
    assert_eq!(r.code(), Some(1));
    assert!(r.elapsed >= Duration::from_millis(300), "{:?}", r.elapsed);
    // Without the override: [pop3] failure_delay_ms, as the POP3 server.
    common::config(&d, "[pop3]\nfailure_delay_ms = 400\n");
    let mut argv: Vec<&std::ffi::OsStr> = vec![
        "env".as_ref(),
        "-u".as_ref(),
        "TURNMAIL_CHECKPASSWORD_DELAY_MS".as_ref(),
    ];
    argv.extend([
        BIN.as_ref(),
        "--root".as_ref(),
        d.root.as_os_str(),
        "checkpassword".as_ref(),
        s(&p).as_ref(),
    ]);
    let r = run_with_fd3(&argv, &bad, &[]);
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    assert!(r.elapsed >= Duration::from_millis(400), "{:?}", r.elapsed);
}

#[test]
fn apop_with_a_stored_secret() {
    let d = demo_root();
    let p = probe(&d);
    let secrets = d.root.join("users/secrets");
    write(&secrets, "joe@example.com:tanstaaf\n");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    if is_root() {
        let mu = mail_user();
        std::os::unix::fs::chown(&secrets, Some(mu.uid), Some(mu.gid)).unwrap();
    }
    common::accounts_changed(&d);
    // RFC 1939's example: MD5("<1896.697170952@dbc.mtview.ca.us>tanstaaf").
    let ts = "<1896.697170952@dbc.mtview.ca.us>";
    let r = cpw(
        &d.root,
        &input("joe@example.com", "c4c9334bac560ecc979e58001b3e22fb", ts),
        &[s(&p)],
        &[],
    );
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    assert!(r.stdout().contains("USER=joe@example.com"));
    let r = cpw(
        &d.root,
        &input("joe@example.com", "c4c9334bac560ecc979e58001b3e22fc", ts),
        &[s(&p)],
        &[],
    );
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    // The same challenge with another timestamp is refused (no replay).
    let r = cpw(
        &d.root,
        &input(
            "joe@example.com",
            "c4c9334bac560ecc979e58001b3e22fb",
            "<1897.697170952@dbc.mtview.ca.us>",
        ),
        &[s(&p)],
        &[],
    );
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    // qmail-popup sends its timestamp with USER/PASS too: a plain password still works.
    let r = cpw(
        &d.root,
        &input("joe@example.com", &d.report.password, ts),
        &[s(&p)],
        &[],
    );
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
}

#[test]
fn root_owned_accounts_are_refused() {
    let d = demo_root();
    let p = probe(&d);
    let hash = turnmail::engine::crypt::hash_with_prefix(b"rootpw", "$1$").unwrap();
    let text = format!(
        "{}boss@example.com:{hash}:root:/root\nzero@example.com:{hash}:0:/root\n",
        std::fs::read_to_string(d.root.join("users/poppasswd")).unwrap()
    );
    write(&d.root.join("users/poppasswd"), &text);
    turnmail::engine::accounts::compile(text.as_bytes(), &d.root.join("users/poppasswd.cdb"))
        .unwrap();
    common::accounts_changed(&d);
    for login in ["boss@example.com", "zero@example.com"] {
        let r = cpw(&d.root, &input(login, "rootpw", ""), &[s(&p)], &[]);
        assert_eq!(r.code(), Some(1), "{login}: {}", r.stderr());
        assert!(r.out.stdout.is_empty());
        assert!(r.stderr().contains("owned by root"), "{}", r.stderr());
    }
}

/// `setpriv` runs the checkpassword as another uid than root.
fn as_uid(uid: u32, gid: u32, root: &Path, data: &[u8], prog: &str) -> Run {
    let uid = uid.to_string();
    let gid = gid.to_string();
    run_with_fd3(
        &[
            "setpriv".as_ref(),
            format!("--reuid={uid}").as_ref(),
            format!("--regid={gid}").as_ref(),
            "--clear-groups".as_ref(),
            BIN.as_ref(),
            "--root".as_ref(),
            root.as_os_str(),
            "checkpassword".as_ref(),
            prog.as_ref(),
        ],
        data,
        &[],
    )
}

#[test]
fn not_root_only_the_owners_own_uid_can_log_in() {
    if !is_root() {
        common::skip(
            "needs root to run the program as other uids (the probe test covers the owner's own uid)",
        );
        return;
    }
    let d = demo_root();
    let p = probe(&d);
    let mu = mail_user();
    let data = input("joe@example.com", &d.report.password, "");
    // As the owner itself: no switch needed, the login goes through.
    let r = as_uid(mu.uid, mu.gid, &d.root, &data, s(&p));
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    let v = parse_kv(&r.stdout());
    assert_eq!(v["uid"], mu.uid.to_string());
    assert_eq!(v["cwd"], s(&home(&d)));
    // As somebody else: refused with a log line saying why.
    std::fs::set_permissions(
        d.root.join("users/poppasswd.cdb"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let r = as_uid(65534, 65534, &d.root, &data, s(&p));
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    assert!(r.stderr().contains("run it as root"), "{}", r.stderr());
    assert!(r.out.stdout.is_empty());
}

#[test]
fn invoked_as_turnmail_checkpassword() {
    let d = demo_root();
    let p = probe(&d);
    let link = d.dir.path().join("turnmail-checkpassword");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    let data = input("joe@example.com", &d.report.password, "");
    let r = run_with_fd3(
        &[
            link.as_os_str(),
            "--root".as_ref(),
            d.root.as_os_str(),
            s(&p).as_ref(),
            "x".as_ref(),
        ],
        &data,
        &[],
    );
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    assert!(r.stdout().contains("args=x"), "{}", r.stdout());
    // The root from the environment, as under qmail-popup.
    let r = run_with_fd3(
        &[link.as_os_str(), s(&p).as_ref()],
        &data,
        &[("TURNMAIL_ROOT", s(&d.root))],
    );
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    // `--help` is not an option here but a PROG (not found: 111), and nothing at all
    // reaches stdout, which qmail-popup connects to the client.
    let r = run_with_fd3(
        &[link.as_os_str(), "--help".as_ref()],
        &data,
        &[("TURNMAIL_ROOT", s(&d.root))],
    );
    assert_eq!(r.code(), Some(111), "{}", r.stderr());
    assert!(r.out.stdout.is_empty());
    let r = run_with_fd3(&[link.as_os_str()], &data, &[]);
    assert_eq!(r.code(), Some(2));
    assert!(r.out.stdout.is_empty());
}

#[test]
fn nothing_reaches_the_client_when_stderr_is_its_socket() {
    // qmail 1.03's qmail-popup: fds 0, 1 and 2 all on the client's connection.
    let d = demo_root();
    let p = probe(&d);
    let data_file = d.dir.path().join("fd3-input");
    std::fs::write(&data_file, input("joe@example.com", "wrong", "")).unwrap();
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(r#"f=$1; shift; exec "$@" 3<"$f""#)
        .arg("sh")
        .arg(&data_file)
        .arg(BIN)
        .arg("--root")
        .arg(&d.root)
        .args(["checkpassword", s(&p)])
        .env("TURNMAIL_CHECKPASSWORD_DELAY_MS", "0")
        .env("TURNMAIL_LOG", "debug")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(
            theirs.try_clone().unwrap(),
        )))
        .stdout(Stdio::from(std::os::fd::OwnedFd::from(
            theirs.try_clone().unwrap(),
        )))
        .stderr(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    ours.set_nonblocking(true).unwrap();
    let mut got = Vec::new();
    let _ = (&ours).read_to_end(&mut got);
    assert!(
        got.is_empty(),
        "the client saw: {:?}",
        String::from_utf8_lossy(&got)
    );
    // The same failure with stderr on a pipe (netqmail, multilog) is logged.
    let r = cpw(
        &d.root,
        &input("joe@example.com", "wrong", ""),
        &[s(&p)],
        &[],
    );
    assert_eq!(r.code(), Some(1));
    assert!(r.stderr().contains("login failed"), "{}", r.stderr());
}

/// A stand-in for Dovecot's checkpassword-reply: records its environment and exits as
/// the real one does (2 when AUTHORIZED=2, else 0).
fn fake_reply(d: &DemoRoot) -> (PathBuf, PathBuf) {
    let dir = d.dir.path().join("libexec");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("reply.env");
    let p = dir.join("checkpassword-reply");
    write(
        &p,
        &format!(
            "#!/bin/sh\nenv > {}\n[ \"$AUTHORIZED\" = 2 ] && exit 2\nexit 0\n",
            out.display()
        ),
    );
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    (p, out)
}

/// The environment Dovecot 2.3 gives a checkpassword program (no PATH, no HOME).
const DOVECOT_ENV: &[(&str, &str)] = &[
    ("ORIG_UID", "104"),
    ("SERVICE", "pop3"),
    ("PROTO", "TCP"),
    ("TCPLOCALIP", "127.0.0.1"),
    ("TCPREMOTEIP", "127.0.0.1"),
    ("AUTH_USER", "joe@example.com"),
    ("AUTH_MECH", "PLAIN"),
];

fn dovecot_run(d: &DemoRoot, reply: &Path, data: &[u8], extra: &[(&str, &str)]) -> Run {
    let mut argv: Vec<&std::ffi::OsStr> = vec![
        "env".as_ref(),
        "-u".as_ref(),
        "PATH".as_ref(),
        "-u".as_ref(),
        "HOME".as_ref(),
    ];
    argv.extend([
        BIN.as_ref(),
        "--root".as_ref(),
        d.root.as_os_str(),
        "checkpassword".as_ref(),
        reply.as_os_str(),
    ]);
    let mut env: Vec<(&str, &str)> = DOVECOT_ENV.to_vec();
    env.extend_from_slice(extra);
    // Dovecot mode never waits: Dovecot has its own auth_failure_delay.
    env.push(("TURNMAIL_CHECKPASSWORD_DELAY_MS", "5000"));
    run_with_fd3(&argv, data, &env)
}

#[test]
fn dovecot_mode_with_a_fake_reply_program() {
    let d = demo_root();
    let (reply, out) = fake_reply(&d);
    let mu = mail_user();
    let read_env = || parse_kv(&std::fs::read_to_string(&out).unwrap_or_default());

    // userdb lookup: AUTHORIZED=1, `user\0\0\0`.
    let r = dovecot_run(&d, &reply, b"joe@example.com\0\0\0", &[("AUTHORIZED", "1")]);
    assert_eq!(
        r.code(),
        Some(2),
        "the reply program's 'found': {}",
        r.stderr()
    );
    let e = read_env();
    assert_eq!(e["AUTHORIZED"], "2");
    assert_eq!(e["USER"], "joe@example.com");
    assert_eq!(e["HOME"], s(&home(&d)));
    assert_eq!(e["EXTRA"], "userdb_uid userdb_gid");
    assert_eq!(e["userdb_uid"], mu.uid.to_string());
    assert_eq!(e["userdb_gid"], mu.gid.to_string());
    assert!(!e.contains_key("password"));
    std::fs::remove_file(&out).unwrap();

    // Unknown user: 3, and the reply program never runs.
    let r = dovecot_run(&d, &reply, b"ann@example.com\0\0\0", &[("AUTHORIZED", "1")]);
    assert_eq!(r.code(), Some(3), "{}", r.stderr());
    assert!(!out.exists());

    // Password check: no AUTHORIZED; the ids come back instead of a setuid.
    let data = input("joe@example.com", &d.report.password, "");
    let r = dovecot_run(&d, &reply, &data, &[]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    // Dovecot logs the login itself; our stderr lines would land under its "Error".
    assert_eq!(r.stderr(), "", "quiet below warn in Dovecot mode");
    let e = read_env();
    assert!(!e.contains_key("AUTHORIZED"));
    assert_eq!(e["USER"], "joe@example.com");
    assert_eq!(e["HOME"], s(&home(&d)));
    assert_eq!(e["EXTRA"], "userdb_uid userdb_gid");
    assert_eq!(e["userdb_uid"], mu.uid.to_string());
    assert_eq!(e["userdb_gid"], mu.gid.to_string());
    std::fs::remove_file(&out).unwrap();

    // Bad password and unknown user: 1 at once (no delay of ours in Dovecot mode).
    for data in [
        input("joe@example.com", "wrong", ""),
        input("ann@example.com", "wrong", ""),
    ] {
        let r = dovecot_run(&d, &reply, &data, &[]);
        assert_eq!(r.code(), Some(1), "{}", r.stderr());
        assert!(r.elapsed < Duration::from_secs(3), "{:?}", r.elapsed);
        assert!(!out.exists());
    }

    // Credentials lookup (CRAM-MD5, APOP): the secret as {PLAIN} when there is one.
    let creds = [
        ("AUTHORIZED", "1"),
        ("CREDENTIALS_LOOKUP", "1"),
        ("SCHEME", "CRAM-MD5"),
    ];
    let r = dovecot_run(&d, &reply, b"joe@example.com\0\0\0", &creds);
    assert_eq!(r.code(), Some(2), "{}", r.stderr());
    let e = read_env();
    assert!(!e.contains_key("password"), "no secret, no credential");
    assert_eq!(e["EXTRA"], "userdb_uid userdb_gid");
    write(&d.root.join("users/secrets"), "joe@example.com:tanstaaf\n");
    common::accounts_changed(&d);
    let r = dovecot_run(&d, &reply, b"joe@example.com\0\0\0", &creds);
    assert_eq!(r.code(), Some(2), "{}", r.stderr());
    let e = read_env();
    assert_eq!(e["password"], "{PLAIN}tanstaaf");
    assert_eq!(e["EXTRA"], "userdb_uid userdb_gid password");
    assert!(!r.stderr().contains("tanstaaf"));
}

const DOVECOT_REPLY: &str = "/usr/lib/dovecot/checkpassword-reply";
const DOVECOT: &str = "/usr/sbin/dovecot";

fn need_dovecot() {
    assert!(
        Path::new(DOVECOT).exists() && Path::new(DOVECOT_REPLY).exists(),
        "Dovecot 2.3 is not installed ({DOVECOT}, {DOVECOT_REPLY}): run tests/install-peers \
         (Debian package dovecot-pop3d)"
    );
}

#[test]
fn dovecot_mode_with_the_real_checkpassword_reply() {
    need_dovecot();
    let d = demo_root();
    let mu = mail_user();
    let reply_out = d.dir.path().join("fd4");
    let uid = nix::unistd::getuid().to_string();
    // Dovecot reads the reply from fd 4.
    let run = |data: &[u8], env: &[(&str, &str)]| {
        let mut argv: Vec<&std::ffi::OsStr> = vec![
            "sh".as_ref(),
            "-c".as_ref(),
            r#"f=$1; shift; exec "$@" 4>"$f""#.as_ref(),
            "sh".as_ref(),
            reply_out.as_os_str(),
        ];
        argv.extend([
            BIN.as_ref(),
            "--root".as_ref(),
            d.root.as_os_str(),
            "checkpassword".as_ref(),
            DOVECOT_REPLY.as_ref(),
        ]);
        // checkpassword-reply insists on Dovecot's ORIG_UID being its own uid.
        let mut e = DOVECOT_ENV.to_vec();
        e.retain(|(k, _)| *k != "ORIG_UID");
        e.push(("ORIG_UID", uid.as_str()));
        e.extend_from_slice(env);
        run_with_fd3(&argv, data, &e)
    };
    let want = format!(
        "user=joe@example.com\tuserdb_home={}\tuserdb_uid={}\tuserdb_gid={}\t",
        home(&d).display(),
        mu.uid,
        mu.gid
    );
    let r = run(b"joe@example.com\0\0\0", &[("AUTHORIZED", "1")]);
    assert_eq!(r.code(), Some(2), "{}", r.stderr());
    assert_eq!(std::fs::read_to_string(&reply_out).unwrap(), want);
    let r = run(&input("ghost", &d.report.password, ""), &[]);
    // An unknown login fails like a wrong password.
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    // The demo root's default domain makes a bare login work.
    let r = run(&input("joe", &d.report.password, ""), &[]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    let r = run(&input("joe@example.com", &d.report.password, ""), &[]);
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    assert_eq!(std::fs::read_to_string(&reply_out).unwrap(), want);
}

/// Dovecot's master in the foreground; stopped (SIGTERM, then SIGKILL) when dropped,
/// also when the test fails.
struct Dovecot {
    child: Child,
    log: PathBuf,
}

impl Dovecot {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        common::terminate(&mut self.child);
    }
}

const POPLIB: &str = r#"
import poplib, sys
host, port, user, secret, how = sys.argv[1:6]
p = poplib.POP3(host, int(port), timeout=30)
print("greeting", p.getwelcome().decode())
try:
    if how == "apop":
        p.apop(user, secret)
    elif how == "cram":
        import base64, hmac
        challenge = base64.b64decode(p._shortcmd("AUTH CRAM-MD5")[2:])
        digest = hmac.new(secret.encode(), challenge, "md5").hexdigest()
        p._shortcmd(base64.b64encode(f"{user} {digest}".encode()).decode())
    else:
        p.user(user)
        p.pass_(secret)
except poplib.error_proto as e:
    print("refused", e)
    sys.exit(3)
n, size = p.stat()
print("count", n)
for i in range(1, n + 1):
    for line in p.retr(i)[1]:
        print("line", line.decode())
p.quit()
"#;

fn poplib(port: u16, user: &str, secret: &str, how: &str) -> (i32, String) {
    let o = Command::new("python3")
        .args([
            "-c",
            POPLIB,
            "127.0.0.1",
            &port.to_string(),
            user,
            secret,
            how,
        ])
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

#[test]
fn dovecot_pop3_through_turnmail_checkpassword() {
    need_dovecot();
    if !is_root() {
        common::skip("Dovecot's master must start as root");
        return;
    }
    let d = demo_root();
    let mu = mail_user();
    let dovecot_gid = nix::unistd::Group::from_name("dovecot")
        .unwrap()
        .expect("group dovecot (made by the dovecot-core package)")
        .gid;
    // The arrangement contrib/dovecot-checkpassword.conf documents: `[accounts]
    // reader_group = "dovecot"`, applied by the edits that set the secrets (run as root
    // here: they make users/ setgid dovecot and give the account files that group).
    common::config(&d, "[accounts]\nreader_group = \"dovecot\"\n");
    let turnmail = |args: &[&str], stdin: &str| {
        let mut c = Command::new(BIN)
            .arg("--root")
            .arg(&d.root)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{args:?}: {o:?}");
    };
    // joe: a plaintext secret (APOP and CRAM-MD5); ann: CRAM-MD5 only, stored as the
    // HMAC-MD5 states Dovecot's own CRAM-MD5 scheme uses.
    turnmail(
        &["user", "secret", "joe@example.com", "--stdin", "--apop"],
        "tanstaaf\n",
    );
    turnmail(
        &["user", "add", "ann@example.com", "--password-stdin"],
        "ann-pw\n",
    );
    turnmail(
        &["user", "secret", "ann@example.com", "--stdin"],
        "ann's secret\n",
    );
    let users = d.root.join("users");
    use std::os::unix::fs::MetadataExt;
    for f in ["poppasswd.cdb", "secrets"] {
        let m = std::fs::metadata(users.join(f)).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (mu.uid, dovecot_gid.as_raw(), 0o640),
            "{f}"
        );
    }
    // The mail user recompiles the tables: the new poppasswd.cdb inherits group dovecot.
    let o = Command::new("setpriv")
        .arg(format!("--reuid={}", mu.uid))
        .arg(format!("--regid={}", mu.gid))
        .arg("--clear-groups")
        .arg(BIN)
        .arg("--root")
        .arg(&d.root)
        .arg("newu")
        .output()
        .unwrap();
    assert!(o.status.success(), "newu: {o:?}");
    let meta = std::fs::metadata(users.join("poppasswd.cdb")).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (mu.uid, dovecot_gid.as_raw(), 0o640)
    );
    // And check accepts exactly this.
    let o = Command::new(BIN)
        .arg("--root")
        .arg(&d.root)
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    // One message waiting in joe's Maildir.
    let msg = home(&d).join("Maildir/new/1700000000.M1P1.test");
    write(
        &msg,
        "From: a@example.org\nTo: joe@example.com\nSubject: via dovecot\n\nhello through checkpassword\n",
    );
    std::os::unix::fs::chown(&msg, Some(mu.uid), Some(mu.gid)).unwrap();

    let work = tempfile::Builder::new()
        .prefix("turnmail-dovecot")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let link = work.path().join("turnmail-checkpassword");
    std::os::unix::fs::symlink(BIN, &link).unwrap();
    // The login counts file, writable by Dovecot's group, in a run/ it may traverse
    // (contrib/).
    let counts = d.root.join("run/login-throttle");
    let run = counts.parent().unwrap();
    std::fs::create_dir_all(run).unwrap();
    nix::unistd::chown(run, None, Some(dovecot_gid)).unwrap();
    std::fs::set_permissions(run, std::fs::Permissions::from_mode(0o710)).unwrap();
    std::fs::write(&counts, b"").unwrap();
    nix::unistd::chown(&counts, Some(mu.uid.into()), Some(dovecot_gid)).unwrap();
    std::fs::set_permissions(&counts, std::fs::Permissions::from_mode(0o660)).unwrap();
    let port = common::daemon::free_port();
    let log = work.path().join("dovecot.log");
    let conf = work.path().join("dovecot.conf");
    let driver_args = format!("{} --root {}", link.display(), d.root.display());
    write(
        &conf,
        &format!(
            r#"base_dir = {w}/run
state_dir = {w}/state
instance_name = turnmail-test-{port}
log_path = {log}
protocols = pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain apop cram-md5
auth_verbose = yes
auth_failure_delay = 0
first_valid_uid = {uid}
mail_location = maildir:~/Maildir
passdb {{
  driver = checkpassword
  args = {driver_args}
}}
userdb {{
  driver = checkpassword
  args = {driver_args}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
"#,
            w = work.path().display(),
            log = log.display(),
            uid = mu.uid,
        ),
    );
    let child = Command::new(DOVECOT)
        .args(["-F", "-c"])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(work.path().join("dovecot.stderr")).unwrap())
        .spawn()
        .unwrap();
    let mut dovecot = Dovecot { child, log };
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = dovecot.child.try_wait() {
            panic!(
                "dovecot exited ({status}): {}{}",
                std::fs::read_to_string(work.path().join("dovecot.stderr")).unwrap_or_default(),
                dovecot.log_text()
            );
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "dovecot did not listen: {}",
            dovecot.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // USER/PASS: passdb password check, then the userdb lookup, then pop3 as the owner.
    let (code, out) = poplib(port, "joe@example.com", &d.report.password, "pass");
    assert_eq!(code, 0, "{out}\n--- dovecot log:\n{}", dovecot.log_text());
    assert!(out.contains("count 1"), "{out}");
    assert!(out.contains("line Subject: via dovecot"), "{out}");
    assert!(out.contains("line hello through checkpassword"), "{out}");

    // APOP: Dovecot asks for the credential (CREDENTIALS_LOOKUP, SCHEME=PLAIN).
    let (code, out) = poplib(port, "joe@example.com", "tanstaaf", "apop");
    assert_eq!(code, 0, "{out}\n--- dovecot log:\n{}", dovecot.log_text());
    assert!(out.contains("count 1"), "{out}");

    // CRAM-MD5: Dovecot asks for the credential with SCHEME=CRAM-MD5 and gets
    // {PLAIN}secret for joe, {CRAM-MD5}states for ann; both serve it.
    let (code, out) = poplib(port, "joe@example.com", "tanstaaf", "cram");
    assert_eq!(code, 0, "{out}\n--- dovecot log:\n{}", dovecot.log_text());
    assert!(out.contains("count 1"), "{out}");
    let (code, out) = poplib(port, "ann@example.com", "ann's secret", "cram");
    assert_eq!(code, 0, "{out}\n--- dovecot log:\n{}", dovecot.log_text());
    assert!(out.contains("count 0"), "{out}");
    // ann has no plaintext: no APOP, and a wrong secret is refused.
    for (how, secret) in [("apop", "ann's secret"), ("cram", "wrong")] {
        let (code, out) = poplib(port, "ann@example.com", secret, how);
        assert_eq!(
            code,
            3,
            "{how}: {out}\n--- dovecot log:\n{}",
            dovecot.log_text()
        );
    }

    // A wrong password and an unknown user: Dovecot's [AUTH] failure.
    for (user, pw) in [("joe@example.com", "wrong"), ("nobody@example.com", "x")] {
        let (code, out) = poplib(port, user, pw, "pass");
        assert_eq!(code, 3, "{out}\n--- dovecot log:\n{}", dovecot.log_text());
        assert!(out.contains("[AUTH]"), "{out}");
    }
    let log = dovecot.log_text();
    eprintln!("--- dovecot log:\n{log}");
    assert!(log.contains("Login failed (status=1)"), "{log}");
    // Dovecot's checkpassword (user dovecot) counted in the shared file.
    assert!(!log.contains("limits not"), "{log}");
    assert_eq!(std::fs::metadata(&counts).unwrap().len(), 64 + 2048 * 64);
    assert!(
        !log.contains("INFO"),
        "only warnings and errors of ours: {log}"
    );
    assert!(
        !log.contains(&d.report.password),
        "the password reached Dovecot's log"
    );
    drop(dovecot);
}

#[test]
fn unreadable_secrets_fail_loudly_not_silently() {
    if !is_root() {
        common::skip("needs root to run the program as another uid");
        return;
    }
    if common::files_only(
        "on postgres the secrets come from the database, not a file whose mode hides them",
    ) {
        return;
    }
    // Dovecot's user can read the account table but not the 0600 secrets: every login
    // is a temporary failure naming the file, never a silent loss of APOP.
    let d = demo_root();
    let (reply, out) = fake_reply(&d);
    std::fs::set_permissions(
        d.root.join("users/poppasswd.cdb"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let secrets = d.root.join("users/secrets");
    write(&secrets, "joe@example.com:tanstaaf\n");
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = as_uid(
        65534,
        65534,
        &d.root,
        &input("joe@example.com", &d.report.password, ""),
        s(&reply),
    );
    assert_eq!(r.code(), Some(111), "{}", r.stderr());
    assert!(r.stderr().contains("users/secrets"), "{}", r.stderr());
    assert!(!out.exists());
}

/// Whole processes, one per login as under qmail-popup: the counts live in
/// ROOT/run/login-throttle, so a block holds across them, never trusting a broken file.
#[test]
fn failures_count_across_processes_in_a_shared_file() {
    let d = demo_root();
    let p = probe(&d);
    common::config(
        &d,
        "[logins]\nmax_failures = 3\nmax_failures_per_login = 0\n",
    );
    let from = |ip: &str, pw: &str| {
        cpw(
            &d.root,
            &input("joe@example.com", pw, ""),
            &[s(&p)],
            &[("TCPREMOTEIP", ip)],
        )
    };
    // 20 wrong passwords at once, each its own process: at most 3 are checked.
    let children: Vec<_> = (0..20)
        .map(|i| {
            let d = d.root.clone();
            let p = p.clone();
            std::thread::spawn(move || {
                cpw(
                    &d,
                    &input("joe@example.com", &format!("wrong{i}"), ""),
                    &[s(&p)],
                    &[("TCPREMOTEIP", "192.0.2.9")],
                )
            })
        })
        .collect();
    let runs: Vec<Run> = children.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(runs.iter().all(|r| r.code() == Some(1)));
    let stderr: String = runs.iter().map(|r| r.stderr()).collect();
    let checked = stderr.matches("login failed").count();
    assert_eq!(checked, 3, "{stderr}");
    assert_eq!(stderr.matches("refused unchecked").count(), 17, "{stderr}");
    assert_eq!(stderr.matches("client blocked").count(), 1, "{stderr}");
    // The right password from that address is refused now; from another it works.
    let r = from("192.0.2.9", &d.report.password);
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    assert!(r.stderr().contains("refused unchecked"), "{}", r.stderr());
    assert!(!r.stdout().contains("uid="), "PROG must not run");
    let r = from("192.0.2.10", &d.report.password);
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    // The file belongs to the mail root's owner, even when root made it.
    let state = d.root.join("run/login-throttle");
    let meta = std::fs::metadata(&state).unwrap();
    let owner = std::fs::metadata(&d.root).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (owner.uid(), owner.gid()));
    assert_eq!(meta.mode() & 0o777, 0o660);
    // A file torn or edited by hand counts for nothing: the block is gone, and the
    // file is written afresh.
    let mut bytes = std::fs::read(&state).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&state, &bytes).unwrap();
    let r = from("192.0.2.9", &d.report.password);
    assert_eq!(r.code(), Some(0), "{}", r.stderr());
    assert!(r.stderr().contains("corrupt"), "{}", r.stderr());
    std::fs::write(&state, b"\xff garbage").unwrap();
    let r = from("192.0.2.9", "wrong-again");
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    assert_eq!(std::fs::metadata(&state).unwrap().len() as usize, n);
}

/// Under Dovecot, CRAM-MD5 and APOP are checked by Dovecot with the secret a
/// credentials lookup hands it: a client blocked after failed passwords gets no secret
/// either, so it cannot go on guessing through a challenge-response mechanism.
#[test]
fn a_blocked_client_gets_no_credentials_from_a_dovecot_lookup() {
    let d = demo_root();
    common::config(
        &d,
        "[logins]\nmax_failures = 2\nmax_failures_per_login = 0\n",
    );
    write(&d.root.join("users/secrets"), "joe@example.com:tanstaaf\n");
    common::accounts_changed(&d);
    let (reply, out) = fake_reply(&d);
    let creds = [
        ("AUTHORIZED", "1"),
        ("CREDENTIALS_LOOKUP", "1"),
        ("SCHEME", "CRAM-MD5"),
    ];
    // Lookups are not counted: many in a row still get the secret.
    for _ in 0..4 {
        let r = dovecot_run(&d, &reply, b"joe@example.com\0\0\0", &creds);
        assert_eq!(r.code(), Some(2), "{}", r.stderr());
    }
    let env = parse_kv(&std::fs::read_to_string(&out).unwrap_or_default());
    assert_eq!(env["password"], "{PLAIN}tanstaaf", "the lookup's secret");
    // Two wrong passwords through PLAIN block the client (TCPREMOTEIP 127.0.0.1).
    for _ in 0..2 {
        let r = dovecot_run(&d, &reply, &input("joe@example.com", "wrong", ""), &[]);
        assert_eq!(r.code(), Some(1), "{}", r.stderr());
    }
    std::fs::remove_file(&out).ok();
    let r = dovecot_run(&d, &reply, b"joe@example.com\0\0\0", &creds);
    assert_eq!(r.code(), Some(1), "{}", r.stderr());
    assert!(r.stderr().contains("refused unchecked"), "{}", r.stderr());
    assert!(
        !out.exists(),
        "the reply program never ran: no secret handed out"
    );
}
