//! Helpers shared by the integration tests: demo roots in temporary directories.
#![allow(dead_code)]

pub mod certs;
pub mod cluster;
pub mod daemon;
pub mod dnsmasq;
pub mod mailclients;
pub mod pg;
pub mod sink;
pub mod spool;
pub mod trixie;

use std::path::{Path, PathBuf};

use turnmail::admin::init::{self, InitOptions, InitReport};
use turnmail::admin::mailuser::MailUser;

/// A temporary mail root made by `init` (traversable by the mail user when the tests
/// run as root and the tree is chowned to it).
pub struct DemoRoot {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub report: InitReport,
    pub opts: InitOptions,
    /// The root's accounts database (`[accounts] backend = "postgres"`), stopped with
    /// the root; None on the files backend (or taken by a test that stops and starts
    /// it itself).
    pub pg: Option<pg::Pg>,
    /// Its `[postgres] url`; empty on the files backend.
    pub pg_url: String,
    /// More `[postgres]` settings of the root (`max_stale_secs = 2`, say), kept by
    /// [`config`].
    pub pg_keys: String,
}

/// The account backend the demo roots use: `TURNMAIL_TEST_ACCOUNTS` = `files` (the
/// default) or `postgres` (tests/run runs the faces' tests once more under it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accounts {
    Files,
    Postgres,
}

pub fn accounts() -> Accounts {
    match std::env::var("TURNMAIL_TEST_ACCOUNTS").as_deref() {
        Err(_) | Ok("") | Ok("files") => Accounts::Files,
        Ok("postgres") => Accounts::Postgres,
        Ok(other) => panic!("TURNMAIL_TEST_ACCOUNTS={other}: files or postgres"),
    }
}

pub fn on_postgres() -> bool {
    accounts() == Accounts::Postgres
}

/// A test that only makes sense on the files backend: true (after saying why on
/// stderr) when this run is on postgres, and the test returns.
pub fn files_only(why: &str) -> bool {
    if on_postgres() {
        eprintln!("not run on the postgres backend: {why}");
        return true;
    }
    false
}

pub fn mail_user() -> MailUser {
    MailUser::pick(&["turnmail", "mail", "nobody"]).expect("a mail user")
}

/// A demo root on the backend `TURNMAIL_TEST_ACCOUNTS` names.
pub fn demo_root() -> DemoRoot {
    demo_root_on(accounts())
}

/// A demo root on the files backend whatever the run's setting (for tests that set up
/// their own database).
pub fn demo_root_files() -> DemoRoot {
    demo_root_on(Accounts::Files)
}

pub fn demo_root_on(accounts: Accounts) -> DemoRoot {
    match accounts {
        Accounts::Files => files_demo_root(),
        Accounts::Postgres => pg_demo_root("", "")
            .unwrap_or_else(|| panic!("TURNMAIL_TEST_ACCOUNTS=postgres needs a PostgreSQL server")),
    }
}

/// A demo root whose accounts live in a fresh private PostgreSQL (`db init`, `db
/// import`), with the settings `extra` and more `[postgres]` settings `pg_keys`; None
/// (after [`skip`], a failure under CI) when no server is installed.
pub fn pg_demo_root(extra: &str, pg_keys: &str) -> Option<DemoRoot> {
    let pg = pg::Pg::start_new()?;
    let mut d = files_demo_root();
    d.pg_url = pg.url();
    d.pg = Some(pg);
    d.pg_keys = pg_keys.to_string();
    if extra.is_empty() {
        let toml = d.root.join("turnmail.toml");
        let mut text = std::fs::read_to_string(&toml).unwrap();
        text.push_str(&postgres_sections(&d, ""));
        write(&toml, &text);
    } else {
        config(&d, extra);
    }
    for args in [&["db", "init"][..], &["db", "import"][..]] {
        let o = turnmail(&d.root, args);
        assert!(o.status.success(), "turnmail {args:?}: {o:?}");
    }
    Some(d)
}

fn files_demo_root() -> DemoRoot {
    let dir = tempfile::Builder::new()
        .prefix("turnmail-test")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let root = dir.path().join("root");
    let opts = InitOptions::demo(mail_user());
    let report = init::init(&root, &opts).unwrap();
    let root = report.root.clone();
    DemoRoot {
        dir,
        root,
        report,
        opts,
        pg: None,
        pg_url: String::new(),
        pg_keys: String::new(),
    }
}

/// On the postgres backend, the `[accounts]` and `[postgres]` sections that keep the
/// root's database, merged with `extra` (a test's own settings, which may have an
/// `[accounts]` section of its own); on files, `extra` as it is.
fn postgres_sections(d: &DemoRoot, extra: &str) -> String {
    if d.pg_url.is_empty() {
        return extra.to_string();
    }
    assert!(
        !extra.contains("[postgres]"),
        "a test's own [postgres] section on the postgres backend"
    );
    const BACKEND: &str = "backend = \"postgres\"\n";
    let mut text = match extra.find("[accounts]\n") {
        Some(i) => {
            let at = i + "[accounts]\n".len();
            format!("{}{BACKEND}{}", &extra[..at], &extra[at..])
        }
        None => format!("{extra}\n[accounts]\n{BACKEND}"),
    };
    text.push_str(&format!(
        "\n[postgres]\nurl = \"{}\"\nconnect_timeout_secs = 2\n{}",
        d.pg_url, d.pg_keys
    ));
    text
}

/// The root's accounts are on the run's backend: `turnmail status --json` names it
/// (and, on postgres, the database answered with its version). For tests that start
/// no daemon (a daemon's start checks its own log).
pub fn assert_on_backend(d: &DemoRoot) {
    let o = turnmail(&d.root, &["status", "--json"]);
    assert!(o.status.success(), "turnmail status --json: {o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let a = &v["accounts"];
    match accounts() {
        Accounts::Files => assert_eq!(a["backend"], "files", "{v}"),
        Accounts::Postgres => {
            assert_eq!(a["backend"], "postgres", "{v}");
            assert!(a["version"].is_u64(), "the database answered: {v}");
        }
    }
}

/// After a test edited the account files by hand (users/assign, poppasswd, secrets,
/// quota, control/rcpthosts, virtualdomains): on postgres they are loaded into the
/// database (`db import --replace`, a commit that a running daemon hears of through
/// NOTIFY); on files nothing is needed (the engine's stat watch sees the files).
pub fn accounts_changed(d: &DemoRoot) {
    if !d.pg_url.is_empty() {
        let o = turnmail(&d.root, &["db", "import", "--replace"]);
        assert!(o.status.success(), "turnmail db import --replace: {o:?}");
    }
}

pub fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

/// Bump a file's mtime into the future so change detection sees it even within one
/// clock tick of the previous write.
pub fn touch_later(path: &Path, secs: u64) {
    set_mtime(
        path,
        std::time::SystemTime::now() + std::time::Duration::from_secs(secs),
    );
}

/// Set a file's mtime (to date a spooled message back, say: scans leave the current
/// second alone).
pub fn set_mtime(path: &Path, t: std::time::SystemTime) {
    std::fs::File::options()
        .append(true)
        .open(path)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_modified(t))
        .unwrap();
}

/// Replace turnmail.toml, keeping the mail user `init` chose (needed when tests run as
/// root: the daemon switches to that user) and, on postgres, the accounts database.
pub fn config(d: &DemoRoot, extra: &str) {
    let mu = mail_user();
    write(
        &d.root.join("turnmail.toml"),
        &format!("user = \"{}\"\n{}", mu.name, postgres_sections(d, extra)),
    );
}

/// How many crash rounds a crash test runs: `TURNMAIL_CRASH_ROUNDS` (tests/long/run
/// sets many), else a couple so that the normal suite stays quick.
pub fn crash_rounds() -> usize {
    std::env::var("TURNMAIL_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(2)
}

/// A small xorshift generator for random kill points: seeded from
/// `TURNMAIL_CRASH_SEED` (to replay a failure) or the clock, and it prints its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(what: &str) -> Rng {
        let seed = std::env::var("TURNMAIL_CRASH_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            });
        eprintln!("{what}: TURNMAIL_CRASH_SEED={seed}");
        Rng(seed | 1)
    }

    /// A number in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if hi <= lo {
            lo
        } else {
            lo + self.0 % (hi - lo)
        }
    }
}

pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// A test that cannot run here. Under CI (`CI` set to `true` or `1`) that is a failure:
/// CI installs every peer and runs as root, so a missing one is a broken machine, not a
/// reason to pass. In a local run (without root, say) it is a skip, said on stderr.
pub fn skip(why: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("cannot run under CI: {why}");
    }
    eprintln!("skipped: {why}");
}

/// Addresses added to `lo` for one test, removed when dropped (needs root).
pub struct LoopbackAddrs(Vec<String>);

impl LoopbackAddrs {
    /// Add each of `addrs` (IPv6, no prefix) to `lo`; `None` (after [`skip`]) if that
    /// cannot be done here.
    pub fn add(addrs: &[&str]) -> Option<LoopbackAddrs> {
        if !is_root() {
            skip("adding addresses to lo needs root");
            return None;
        }
        let mut added = LoopbackAddrs(Vec::new());
        for a in addrs {
            let o = std::process::Command::new("ip")
                .args([
                    "-6",
                    "addr",
                    "add",
                    &format!("{a}/128"),
                    "dev",
                    "lo",
                    "nodad",
                ])
                .output();
            match o {
                Ok(o) if o.status.success() => added.0.push(a.to_string()),
                Ok(o) => {
                    skip(&format!(
                        "ip addr add {a}: {}",
                        String::from_utf8_lossy(&o.stderr)
                    ));
                    return None;
                }
                Err(e) => {
                    skip(&format!("cannot run ip (Debian package iproute2): {e}"));
                    return None;
                }
            }
        }
        Some(added)
    }
}

impl Drop for LoopbackAddrs {
    fn drop(&mut self) {
        for a in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["-6", "addr", "del", &format!("{a}/128"), "dev", "lo"])
                .output();
        }
    }
}

/// Whether a test that needs root may go on: true as root; otherwise [`skip`] (a
/// failure under CI) and false.
pub fn root_or_skip(what: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(&format!("{what} needs root"));
    false
}

/// `turnmail --root ROOT ARGS...` (TURNMAIL_ROOT unset), its output.
pub fn turnmail(root: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("TURNMAIL_ROOT")
        .output()
        .unwrap()
}

/// Stop a peer the test started (Dovecot, a sink): SIGTERM, up to 10 s to exit, then
/// SIGKILL; always reaped.
pub fn terminate(child: &mut std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_secs(10) {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `turnmail checkpassword /bin/true` as qmail-popup runs it (login and password on
/// fd 3, the client's address in TCPREMOTEIP, no failure delay); its exit status.
pub fn checkpassword(root: &Path, user: &str, pw: &str, remote: &str) -> std::process::ExitStatus {
    use std::io::Write;
    let mut c = std::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(r#"exec "$@" 3<&0 </dev/null"#)
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_turnmail"))
        .arg("--root")
        .arg(root)
        .args(["checkpassword", "/bin/true"])
        .env_remove("TURNMAIL_ROOT")
        .env("TCPREMOTEIP", remote)
        .env("TURNMAIL_CHECKPASSWORD_DELAY_MS", "0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(format!("{user}\0{pw}\0\0").as_bytes())
        .unwrap();
    c.wait().unwrap()
}
