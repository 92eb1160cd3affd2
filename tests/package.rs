//! The Debian package, built by deploy/package.sh (cargo-deb) and installed on this
//! machine with dpkg: the system user, an empty mail root in /var/lib/turnmail whose
//! turnmail.toml links to the conffile, binary, checkpassword link, man pages and
//! completions in place, nothing enabled or started; then the operator's first
//! commands, the unit's own ExecStart run by hand (there is no systemd as init here)
//! until it drops to the mail user and takes a message over SMTP, a reinstall that
//! keeps every edit, and a purge that keeps the mail.
//!
//! It packages the debug binary `cargo test` has just built (a release build would
//! add minutes; deploy/package.sh without --binary is the release path, and the
//! package is the same apart from the binary). It installs a package system-wide, so
//! it runs as root under CI, or where TURNMAIL_PACKAGE_TEST=1 asks for it, and only on
//! a host with no turnmail package and no /var/lib/turnmail. It leaves the system user
//! turnmail behind, as a purge does.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::daemon::{Client, free_port};

const ROOT: &str = "/var/lib/turnmail";
const CONF: &str = "/etc/turnmail/turnmail.toml";
const UNIT: &str = "/usr/lib/systemd/system/turnmail.service";

fn run(cmd: &str, args: &[&str]) -> Output {
    Command::new(cmd)
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(cmd: &str, args: &[&str]) -> String {
    let o = run(cmd, args);
    assert!(o.status.success(), "{cmd} {args:?}: {}", text(&o));
    text(&o)
}

fn have(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

fn package_installed() -> bool {
    run("dpkg-query", &["-W", "-f=${Status}", "turnmail"])
        .stdout
        .starts_with(b"install ok")
}

/// Whether this machine may and can run the test (else a skip, a failure under CI).
fn ready() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if !ci && std::env::var_os("TURNMAIL_PACKAGE_TEST").is_none() {
        eprintln!(
            "skipped: installs a package system-wide (runs under CI=true, or with \
             TURNMAIL_PACKAGE_TEST=1 as root)"
        );
        return false;
    }
    if !common::is_root() {
        common::skip("dpkg -i needs root");
        return false;
    }
    for (cmd, args, what) in [
        (
            "cargo",
            &["deb", "--version"][..],
            "cargo-deb (cargo install --locked cargo-deb)",
        ),
        ("dpkg", &["--version"][..], "dpkg"),
        ("adduser", &["--version"][..], "adduser"),
        ("man", &["--version"][..], "man-db"),
        ("gzip", &["--version"][..], "gzip"),
        ("systemd-analyze", &["--version"][..], "systemd"),
    ] {
        if !have(cmd, args) {
            common::skip(&format!("{what} is not installed (tests/install-peers)"));
            return false;
        }
    }
    if package_installed() || Path::new(ROOT).exists() {
        common::skip(&format!(
            "a turnmail package or {ROOT} is on this host already: not installing over it"
        ));
        return false;
    }
    true
}

/// What the test put on the host, taken off again however it ends: the daemon it
/// started, the package (purged) and the mail root it left.
struct Host {
    daemon: Option<Child>,
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if package_installed() {
            let _ = run("dpkg", &["--purge", "turnmail"]);
        }
        let _ = std::fs::remove_dir_all(ROOT);
    }
}

/// Build the package with the debug binary; returns the .deb.
fn build(out: &Path) -> PathBuf {
    let t = Instant::now();
    let o = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/package.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_turnmail"), "--output"])
        .arg(out)
        .args(["--", "--fast"])
        .output()
        .unwrap();
    assert!(o.status.success(), "deploy/package.sh: {}", text(&o));
    eprintln!("deploy/package.sh took {:?}", t.elapsed());
    let stdout = String::from_utf8_lossy(&o.stdout);
    let deb = PathBuf::from(stdout.lines().last().unwrap_or_default());
    assert!(
        deb.starts_with(out) && deb.extension().is_some_and(|e| e == "deb"),
        "{stdout}"
    );
    deb
}

fn turnmail(args: &[&str]) -> Output {
    run("/usr/bin/turnmail", &[&["--root", ROOT][..], args].concat())
}

fn checks_the_installed_files(uid: u32) {
    // The binary and the name checkpassword answers to.
    assert!(ok("/usr/bin/turnmail", &["--version"]).starts_with("turnmail "));
    assert_eq!(
        std::fs::read_link("/usr/bin/turnmail-checkpassword").unwrap(),
        Path::new("turnmail")
    );
    // The config: a conffile, and what the root's turnmail.toml is.
    let conffiles = ok(
        "dpkg-query",
        &["-W", "--showformat=${Conffiles}", "turnmail"],
    );
    assert!(conffiles.contains(&format!(" {CONF} ")), "{conffiles}");
    assert_eq!(
        std::fs::read_link(Path::new(ROOT).join("turnmail.toml")).unwrap(),
        Path::new(CONF)
    );
    let conf = std::fs::metadata(CONF).unwrap();
    assert_eq!((conf.uid(), conf.mode() & 0o777), (0, 0o644));

    // The root: empty, the mail user's, and check names the one thing to do.
    for d in ["control", "users", "domains", "sites", "queue", "run"] {
        let m = std::fs::metadata(Path::new(ROOT).join(d)).unwrap();
        assert!(m.is_dir() && m.uid() == uid, "{d}");
    }
    assert!(Path::new(ROOT).join("users/cdb").is_file());
    assert_eq!(
        std::fs::read_to_string(Path::new(ROOT).join("control/rcpthosts")).unwrap(),
        ""
    );
    let o = turnmail(&["check"]);
    let said = text(&o);
    assert_eq!(o.status.code(), Some(1), "{said}");
    assert!(
        said.contains("control/rcpthosts") && said.contains("1 problem(s) found"),
        "{said}"
    );

    // Man pages: exactly the ones the installed binary generates from its own CLI,
    // gzipped, and man renders them.
    let generated = tempfile::tempdir().unwrap();
    let dir = generated.path().to_str().unwrap();
    ok("/usr/bin/turnmail", &["generate", "man", dir]);
    let mut pages = 0;
    for e in std::fs::read_dir(generated.path()).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let installed = format!("/usr/share/man/man1/{name}.gz");
        let o = run("gzip", &["-dc", &installed]);
        assert!(o.status.success(), "{installed}: {}", text(&o));
        assert_eq!(o.stdout, std::fs::read(&p).unwrap(), "{installed}");
        pages += 1;
    }
    assert!(pages > 30, "{pages} man pages");
    for (page, want) in [
        ("turnmail", "turnmail-domain(1)"),
        ("turnmail-domain-add", "--policy"),
        ("turnmail-serve", "TURNMAIL_ROOT"),
        ("turnmail-checkpassword", "PROG"),
    ] {
        let o = Command::new("man")
            .args(["-l", &format!("/usr/share/man/man1/{page}.1.gz")])
            .env("LC_ALL", "C")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && shown.contains(want),
            "{page}: {shown}"
        );
    }
    let installed_pages = std::fs::read_dir("/usr/share/man/man1")
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().starts_with("turnmail"))
        })
        .count();
    assert_eq!(installed_pages, pages);

    // Completions where each shell looks for them; bash loads its script.
    let o = run(
        "bash",
        &[
            "-c",
            "source /usr/share/bash-completion/completions/turnmail && complete -p turnmail",
        ],
    );
    assert!(
        o.status.success() && text(&o).contains("_turnmail"),
        "{}",
        text(&o)
    );
    let zsh = std::fs::read_to_string("/usr/share/zsh/vendor-completions/_turnmail").unwrap();
    assert!(zsh.starts_with("#compdef turnmail"), "{zsh:.80}");
    let fish =
        std::fs::read_to_string("/usr/share/fish/vendor_completions.d/turnmail.fish").unwrap();
    assert!(fish.contains("complete -c turnmail"), "{fish:.80}");
    // The hidden packaging command is offered by none of them.
    assert!(!zsh.contains("generate:") && !fish.contains("-a \"generate\""));
}

/// Processes running the installed binary.
fn running_turnmails() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let e = e.ok()?;
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let exe = std::fs::read_link(e.path().join("exe")).ok()?;
            exe.starts_with("/usr/bin/turnmail").then_some(pid)
        })
        .collect()
}

/// The unit's value of `key` (the last one: later lines win in systemd).
fn unit_value(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .next_back()
        .map(str::to_string)
}

/// Listen on loopback high ports instead of 25, 110, 366 and 587: an edit of the conffile,
/// as an operator would make one.
fn listen_on_loopback(smtp: SocketAddr, pop3: SocketAddr, odmr: SocketAddr, metrics: SocketAddr) {
    let old = std::fs::read_to_string(CONF).unwrap();
    let mut edited = 0;
    let new: Vec<String> = old
        .lines()
        .map(|l| {
            // The metrics listener, off in the conffile, as README's production section
            // turns it on.
            if l.starts_with("# listen = \"127.0.0.1:9325\"") {
                edited += 1;
                return format!("listen = \"{metrics}\"");
            }
            let to = if !l.starts_with("listen = [") {
                None
            } else if l.contains(":25\"") {
                Some(smtp)
            } else if l.contains(":110\"") {
                Some(pop3)
            } else if l.contains(":366\"") {
                Some(odmr)
            } else if l.contains(":587\"") {
                // Submission: a free loopback port, not the host's 587.
                let port = std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map_or(0, |a| a.port());
                edited += 1;
                return format!("listen = [\"127.0.0.1:{port}\"]");
            } else {
                None
            };
            match to {
                Some(a) => {
                    edited += 1;
                    format!("listen = [\"{a}\"]")
                }
                None => l.to_string(),
            }
        })
        .collect();
    assert_eq!(edited, 5, "{old}");
    std::fs::write(CONF, new.join("\n") + "\n").unwrap();
}

/// Run the unit's ExecStart with the unit's Environment, as systemd would (as root).
fn start_the_units_command(unit: &str, log: &Path) -> Child {
    let exec = unit_value(unit, "ExecStart").expect("ExecStart");
    let mut words = exec.split_whitespace();
    let program = words.next().unwrap();
    assert_eq!(program, "/usr/bin/turnmail");
    let mut cmd = Command::new(program);
    cmd.args(words)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    for l in unit.lines() {
        if let Some((k, v)) = l
            .strip_prefix("Environment=")
            .and_then(|kv| kv.split_once('='))
        {
            cmd.env(k, v);
        }
    }
    cmd.spawn().unwrap()
}

fn wait_for_listener(child: &mut Child, addr: SocketAddr, log: &Path) {
    let start = Instant::now();
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the daemon exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no listener");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn uids_of(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .unwrap()
        .to_string()
}

#[test]
fn the_debian_package_installs_an_empty_root_and_starts_nothing() {
    if !ready() {
        return;
    }
    let mut host = Host { daemon: None };
    let out = tempfile::tempdir().unwrap();
    let deb = build(out.path());
    let deb = deb.to_str().unwrap();

    // Install: the postinst made the user and the root and said what to do next.
    let said = ok("dpkg", &["-i", deb]);
    assert!(
        said.contains(&format!("created an empty mail root in {ROOT}"))
            && said.contains("domain add")
            && said.contains("systemctl enable --now turnmail"),
        "{said}"
    );
    let user = nix::unistd::User::from_name("turnmail")
        .unwrap()
        .expect("the turnmail user");
    let uid = user.uid.as_raw();
    assert!(uid < 1000, "a system user: {uid}");
    assert_eq!(user.dir, Path::new(ROOT));
    assert_eq!(user.shell, Path::new("/usr/sbin/nologin"));
    checks_the_installed_files(uid);

    // Nothing started, nothing enabled.
    assert_eq!(running_turnmails(), Vec::<i32>::new());
    assert!(
        std::fs::symlink_metadata("/etc/systemd/system/multi-user.target.wants/turnmail.service")
            .is_err()
    );

    // The packaged unit: systemd finds nothing to say about it, it runs the packaged
    // binary, and its guard holds on the root the package made.
    let o = run("systemd-analyze", &["verify", UNIT]);
    assert!(
        o.status.success() && !text(&o).contains("turnmail.service"),
        "{}",
        text(&o)
    );
    let unit = std::fs::read_to_string(UNIT).unwrap();
    assert_eq!(
        unit_value(&unit, "AssertPathIsDirectory").as_deref(),
        Some("/var/lib/turnmail/control")
    );
    assert!(Path::new(ROOT).join("control").is_dir());

    // The operator's next commands, as printed.
    assert!(turnmail(&["domain", "add", "example.net"]).status.success());
    let mut add = Command::new("/usr/bin/turnmail")
        .args([
            "--root",
            ROOT,
            "user",
            "add",
            "joe@example.net",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    add.stdin
        .take()
        .unwrap()
        .write_all(b"package-test-pw\n")
        .unwrap();
    assert!(add.wait().unwrap().success());
    let site = turnmail(&[
        "site",
        "add",
        "acme",
        "--relayhost",
        "127.0.0.1:9",
        "--domain",
        "acme.example",
    ]);
    assert!(site.status.success(), "{}", text(&site));
    let o = turnmail(&["check"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    // The checkpassword link logs a POP user in (and runs PROG as the mail user).
    let mut cp = Command::new("sh")
        .args([
            "-c",
            r#"exec "$@" 3<&0 </dev/null"#,
            "sh",
            "/usr/bin/turnmail-checkpassword",
            "/usr/bin/id",
            "-u",
        ])
        .env("TURNMAIL_ROOT", ROOT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    cp.stdin
        .take()
        .unwrap()
        .write_all(b"joe@example.net\0package-test-pw\0\0")
        .unwrap();
    let o = cp.wait_with_output().unwrap();
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), uid.to_string());

    // The unit's command, started by hand on ports given in the conffile.
    let lo = |p| SocketAddr::from(([127, 0, 0, 1], p));
    let (smtp, pop3, odmr) = (lo(free_port()), lo(free_port()), lo(free_port()));
    let metrics = lo(free_port());
    listen_on_loopback(smtp, pop3, odmr, metrics);
    let log = out.path().join("daemon.log");
    let child = host.daemon.insert(start_the_units_command(&unit, &log));
    let pid = child.id();
    wait_for_listener(child, smtp, &log);
    let mut c = Client::connect(smtp);
    assert!(c.reply().starts_with("220 "));
    // Greeting means accepting, which begins after the switch (binding is before it).
    let want = format!("Uid:\t{uid}\t{uid}\t{uid}\t{uid}");
    assert_eq!(uids_of(pid), want);
    assert!(c.cmd("EHLO client.example").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<ann@client.example>").starts_with("250"));
    assert!(
        c.cmd("RCPT TO:<victim@elsewhere.example>")
            .starts_with("553")
    );
    assert!(c.cmd("RCPT TO:<joe@example.net>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    let r = c.cmd("Subject: hello\r\n\r\nfrom the package test\r\n.");
    assert!(r.starts_with("250"), "{r}");
    assert!(c.cmd("QUIT").starts_with("221"));
    let new = Path::new(ROOT).join("domains/example.net/joe/Maildir/new");
    let files: Vec<_> = std::fs::read_dir(&new).unwrap().collect();
    assert_eq!(files.len(), 1);
    let msg = files[0].as_ref().unwrap().metadata().unwrap();
    assert_eq!(msg.uid(), uid);
    assert_eq!(
        msg.permissions().mode() & 0o077,
        0,
        "not readable by others"
    );
    // Fetched by POP3, as the customer's mail client does (a Maildir lists a message
    // once its second is over, as qmail's maildir_scan does).
    std::thread::sleep(Duration::from_millis(1100));
    let mut p = Client::connect(pop3);
    assert!(p.reply().starts_with("+OK"));
    assert!(p.cmd("USER joe@example.net").starts_with("+OK"));
    assert!(p.cmd("PASS package-test-pw").starts_with("+OK"));
    assert!(p.cmd("STAT").starts_with("+OK 1 "));
    p.send(b"RETR 1\r\n");
    let mut body = String::new();
    loop {
        let mut line = String::new();
        use std::io::BufRead;
        assert!(p.r.read_line(&mut line).unwrap() > 0);
        if line == ".\r\n" {
            break;
        }
        body.push_str(&line);
    }
    assert!(body.contains("from the package test"), "{body}");
    assert!(p.cmd("QUIT").starts_with("+OK"));
    // turnmail status --json sees the daemon and its counters.
    let o = turnmail(&["status", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["daemon"]["pid"], pid, "{j}");
    let count = |family: &str, key: &str, value: &str| -> u64 {
        j["daemon"]["counters"][family]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["labels"][key] == value)
            .map(|c| c["value"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(count("messages", "result", "accepted"), 1, "{j}");
    assert_eq!(
        count("recipients_refused", "reason", "relaying_denied"),
        1,
        "{j}"
    );
    assert_eq!(count("logins", "result", "success"), 1, "{j}");
    assert!(j["daemon"]["sites"][0]["next_run"].is_string(), "{j}");
    // The metrics page passes promtool.
    let mut m = std::net::TcpStream::connect(metrics).unwrap();
    m.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    std::io::Read::read_to_string(&mut m, &mut page).unwrap();
    let (head, page) = page.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (tests/install-peers installs prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(page.as_bytes())
        .unwrap();
    let o = promtool.wait_with_output().unwrap();
    assert!(o.status.success(), "promtool: {}\n{page}", text(&o));
    assert!(
        page.contains("turnmail_smtp_messages_total{result=\"accepted\"} 1"),
        "{page}"
    );
    // SIGTERM, as systemctl stop sends.
    let mut child = host.daemon.take().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "still running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");

    // A reinstall (an upgrade runs the same scripts) keeps the conffile's edit and
    // every file of the root.
    let edited = std::fs::read_to_string(CONF).unwrap();
    ok("dpkg", &["-i", deb]);
    assert_eq!(std::fs::read_to_string(CONF).unwrap(), edited);
    assert_eq!(
        std::fs::read_link(Path::new(ROOT).join("turnmail.toml")).unwrap(),
        Path::new(CONF)
    );
    assert_eq!(
        std::fs::read_to_string(Path::new(ROOT).join("control/rcpthosts")).unwrap(),
        "example.net\nacme.example\n"
    );
    assert_eq!(std::fs::read_dir(&new).unwrap().count(), 0);
    let cur = Path::new(ROOT).join("domains/example.net/joe/Maildir/cur");
    assert_eq!(
        std::fs::read_dir(&cur).unwrap().count(),
        1,
        "read, kept in cur/"
    );
    assert_eq!(running_turnmails(), Vec::<i32>::new());

    // Purge: the package's files, its conffile and the link to it go; the mail, the
    // accounts and the user stay.
    let said = ok("dpkg", &["--purge", "turnmail"]);
    assert!(said.contains("kept"), "{said}");
    assert!(!package_installed());
    for gone in [
        "/usr/bin/turnmail",
        "/usr/bin/turnmail-checkpassword",
        CONF,
        "/etc/turnmail",
        UNIT,
        "/usr/share/man/man1/turnmail.1.gz",
        "/usr/share/bash-completion/completions/turnmail",
        "/var/lib/turnmail/turnmail.toml",
    ] {
        assert!(std::fs::symlink_metadata(gone).is_err(), "{gone} is left");
    }
    assert_eq!(
        std::fs::read_to_string(Path::new(ROOT).join("control/rcpthosts")).unwrap(),
        "example.net\nacme.example\n"
    );
    assert!(
        std::fs::read_to_string(Path::new(ROOT).join("users/poppasswd"))
            .unwrap()
            .starts_with("joe@example.net:")
    );
    assert_eq!(std::fs::read_dir(&cur).unwrap().count(), 1);
    assert!(nix::unistd::User::from_name("turnmail").unwrap().is_some());
    drop(host);
    assert!(!Path::new(ROOT).exists());
}
