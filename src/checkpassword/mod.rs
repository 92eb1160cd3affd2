//! `turnmail checkpassword PROG [ARGS...]` (also installed as `turnmail-checkpassword`):
//! djb's checkpassword interface over turnmail's POP accounts, so that qmail-popup and
//! Dovecot 2.3 can serve the same virtual users as turnmail's own POP3 server.
//!
//! Why it exists: the built-in POP3 server runs as the single mail user, so it cannot
//! serve accounts owned by other uids, and some hosts keep qmail-popup/qmail-pop3d or
//! Dovecot for POP. Both authenticate through a checkpassword program; this one asks the
//! same engine (`users/poppasswd.cdb`, `users/secrets`, the same login forms and the same
//! uid-0 refusal) as every other face of turnmail, so a login behaves the same everywhere.
//!
//! **The interface** (checkpassword 0.90's exit codes): read fd 3 to EOF, at most 512
//! bytes, `login\0password\0timestamp\0`, then close it. 1 = bad login or password (also
//! 513 bytes or more: checkpassword 0.90 exits 1 there, not 2), 2 = misuse (no PROG,
//! empty input, a missing NUL, fd 3 not open), 111 = temporary trouble (no or unreadable
//! mail root, unreadable tables, chdir or exec failure). When the timestamp is a `<...>`
//! challenge, the "password" is 32 hex digits and the account has a secret, the password
//! is checked as an APOP digest first (qmail-popup sends its greeting's timestamp with
//! every login). Success: setgroups/setgid/setuid to the account's owner (only when
//! running as root; as any other uid only an account of that very uid can log in), chdir
//! to the home, set USER (the login as stored), HOME, SHELL (`/bin/sh`: virtual accounts
//! have no login shell, and PROG is chosen by the operator, not the user) and
//! MAILDIR=$HOME/Maildir, and exec PROG with a PATH search (default
//! `/usr/local/bin:/usr/bin:/bin` when PATH is unset, as it is under Dovecot). A
//! refused login (exit 1 after the account check) waits `[pop3] failure_delay_ms` (2 s)
//! first, like the POP3 server. The tables are opened with `Engine::open_readonly`: run
//! as root, compiling a stale cdb here would leave a root-owned file the daemon cannot
//! read.
//!
//! **Dovecot 2.3** appends the path of its `checkpassword-reply` helper to the command
//! line; a PROG of that name switches to Dovecot's conventions. Without `AUTHORIZED` it
//! is a passdb password check: no setuid (Dovecot runs us as its unprivileged user and
//! refuses scripts that switch uid), instead USER, HOME and `EXTRA="userdb_uid
//! userdb_gid"` go back through the reply program; 1 bad password or unknown user.
//! `AUTHORIZED=1` is a lookup without password (userdb, or passdb with
//! `CREDENTIALS_LOOKUP=1`): found → the same fields plus `AUTHORIZED=2`, exec the reply
//! program (which then exits 2, Dovecot's "found"); unknown user or a root-owned
//! account → 3. A credentials lookup also returns the account's `users/secrets` entry
//! in Dovecot's form: `password={PLAIN}secret` (Dovecot derives CRAM-MD5, APOP, ...
//! from it) or `password={CRAM-MD5}hex` for a secret stored as its HMAC-MD5 states
//! (Dovecot's own scheme, which serves CRAM-MD5 alone); without one no password field
//! is returned and Dovecot fails the login cleanly with "scheme not available" (a crypt
//! hash can serve no challenge-response mechanism, so it is never handed out). A password-less lookup only ever execs a program named
//! `checkpassword-reply`: `AUTHORIZED` with any other PROG is misuse (2), so a stray
//! variable in a qmail-popup environment cannot turn into a login without a password.
//! Dovecot applies its own `auth_failure_delay`, so no delay is added in Dovecot mode.
//!
//! **Logging.** Never on stdout (qmail-popup's fd 1 is the client). Log lines go to
//! stderr, which netqmail/notqmail's qmail-popup leaves alone for the log and Dovecot
//! sends to its log, *except* when stderr is the client's connection: qmail 1.03's
//! qmail-popup points fd 2 at the network (so do inetd-style launchers). That case is
//! recognised (fd 2 is a socket and the same open file as fd 0 or 1) and then nothing is
//! logged at all. `TURNMAIL_LOG` sets the filter (default `info`, `warn` under Dovecot,
//! which logs logins itself and files every stderr line under "Error"; `off` silences).
//! The password is never logged.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::auth::wipe;
use crate::config::Config;
use crate::engine::Engine;
use crate::engine::accounts::LoginContext;
use crate::policy::throttle::file::FileStore;
use crate::policy::throttle::{Outcome, Throttle};

mod decide;
mod input;
mod logging;
mod mode;

pub use decide::{Level, Plan, Process, Refusal, decide};
pub use input::{InputError, Request, looks_like_apop, parse_input};
use logging::init_logging;
pub use logging::{FdIdentity, stderr_reaches_client};
pub use mode::{Mode, detect_mode, search_path};

/// The most the interface allows on fd 3.
pub const MAX_INPUT: usize = 512;
/// PATH searched for PROG when the environment has none (Dovecot passes none).
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";
/// The name of Dovecot's reply helper (`PKG_LIBEXECDIR/checkpassword-reply`).
pub const DOVECOT_REPLY: &str = "checkpassword-reply";
/// The name under which the binary acts as `turnmail checkpassword` (a symlink).
pub const PROGRAM_NAME: &str = "turnmail-checkpassword";
/// Overrides the failure delay in milliseconds (tests).
pub const DELAY_ENV: &str = "TURNMAIL_CHECKPASSWORD_DELAY_MS";
/// $SHELL given to PROG.
pub const SHELL: &str = "/bin/sh";

/// Exit codes (checkpassword 0.90 and Dovecot's driver).
pub const EXIT_BAD: u8 = 1;
pub const EXIT_MISUSE: u8 = 2;
pub const EXIT_UNKNOWN_USER: u8 = 3;
pub const EXIT_TEMPORARY: u8 = 111;

/// A login or value safe for a log line: no control characters, at most 100 chars.
pub fn printable(b: &[u8]) -> String {
    String::from_utf8_lossy(b)
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect()
}

/// The failure delay: `TURNMAIL_CHECKPASSWORD_DELAY_MS` if set and numeric, else the
/// daemon's `[logins] failure_delay_ms`.
pub fn failure_delay(env_value: Option<&OsStr>, config: &Config) -> Duration {
    let ms = env_value
        .and_then(|v| v.to_str())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(config.login_settings().failure_delay_ms);
    Duration::from_millis(ms)
}

fn env_var(k: &str) -> Option<OsString> {
    std::env::var_os(k)
}

/// If this process was started as `turnmail-checkpassword`, run as
/// `turnmail checkpassword` (an optional leading `--root DIR`, else $TURNMAIL_ROOT) and
/// return its exit code. Called first thing in `main`, before argument parsing, so that
/// nothing (not even a usage message) can reach a qmail-popup client.
pub fn dispatch_by_name() -> Option<ExitCode> {
    let mut args = std::env::args_os();
    let argv0 = args.next()?;
    if Path::new(&argv0).file_name() != Some(OsStr::new(PROGRAM_NAME)) {
        return None;
    }
    let mut rest: Vec<OsString> = args.collect();
    let mut root = None;
    if rest.first().map(|a| a.as_os_str()) == Some(OsStr::new("--root")) && rest.len() >= 2 {
        root = Some(PathBuf::from(rest.remove(1)));
        rest.remove(0);
    } else if let Some(r) = rest
        .first()
        .and_then(|a| a.as_bytes().strip_prefix(b"--root="))
    {
        root = Some(PathBuf::from(OsStr::from_bytes(r)));
        rest.remove(0);
    }
    let root = root.or_else(|| env_var("TURNMAIL_ROOT").map(PathBuf::from));
    Some(main(root, rest))
}

/// `turnmail checkpassword PROG [ARGS...]`: returns only on failure (success execs PROG).
pub fn main(root: Option<PathBuf>, args: Vec<OsString>) -> ExitCode {
    // Before this process opens any file of its own (see take_inherited_fd3).
    let fd3 = crate::privilege::take_inherited_fd3();
    let dovecot = args
        .first()
        .is_some_and(|p| Path::new(p).file_name() == Some(OsStr::new(DOVECOT_REPLY)));
    init_logging(if dovecot { "warn" } else { "info" });
    ExitCode::from(run(root, args, fd3))
}

/// Read fd 3 to EOF or 513 bytes (one more than allowed, to tell "too long"), retrying
/// on EINTR, then close it.
fn read_fd3(fd: std::os::fd::OwnedFd) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(MAX_INPUT + 1);
    std::fs::File::from(fd)
        .take(MAX_INPUT as u64 + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

fn run(root: Option<PathBuf>, args: Vec<OsString>, fd3: Option<std::os::fd::OwnedFd>) -> u8 {
    let Some((prog, prog_args)) = args.split_first() else {
        tracing::warn!(target: "checkpassword", "usage: turnmail checkpassword PROG [ARGS...]");
        return EXIT_MISUSE;
    };
    let mode = match detect_mode(prog, &env_var) {
        Ok(m) => m,
        Err(why) => {
            tracing::warn!(target: "checkpassword", "misuse: {why}");
            return EXIT_MISUSE;
        }
    };
    let Some(fd3) = fd3 else {
        tracing::warn!(target: "checkpassword", "misuse: fd 3 is not open (the caller must write login\\0password\\0timestamp\\0 there)");
        return EXIT_MISUSE;
    };
    let mut data = match read_fd3(fd3) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(target: "checkpassword", "reading fd 3: {e}");
            return EXIT_TEMPORARY;
        }
    };
    let parsed = parse_input(&data);
    wipe(&mut data);
    let req = match parsed {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(target: "checkpassword", "refused input on fd 3: {e:?}");
            return e.exit_code();
        }
    };
    let client = env_var("TCPREMOTEIP")
        .map(|v| printable(v.as_bytes()))
        .unwrap_or_default();
    let login = printable(&req.login);

    let Some(root) = root else {
        tracing::error!(target: "checkpassword", "no mail root: pass --root DIR or set TURNMAIL_ROOT");
        return EXIT_TEMPORARY;
    };
    let (engine, config) = match open_engine(&root, &req.login) {
        Ok(x) => x,
        Err(e) => {
            tracing::error!(target: "checkpassword", root = %root.display(), "{e}");
            return EXIT_TEMPORARY;
        }
    };
    let ctx = LoginContext {
        local_ip: env_var("TCPLOCALIP").and_then(|v| v.to_str()?.parse().ok()),
    };
    // Password checks count against the same limits as the daemon's logins, in a file
    // every checkpassword process of this root shares.
    // Without the client's address there is nobody to count (the launcher sets
    // TCPREMOTEIP: tcpserver, Dovecot).
    let client_ip =
        env_var("TCPREMOTEIP").and_then(|v| v.to_str()?.parse::<std::net::IpAddr>().ok());
    // A credentials lookup hands Dovecot the secret, and Dovecot checks the client's
    // CRAM-MD5 or APOP answer itself and never tells us how it went: a blocked client
    // gets no secret, but the lookup itself is not counted (Dovecot's own auth
    // penalty counts those failures). A plain userdb lookup follows a login and
    // reveals nothing: not limited.
    let counts = match &mode {
        Mode::DovecotLookup { credentials } => credentials.is_some(),
        _ => true,
    };
    let throttle = client_ip
        .filter(|_| counts)
        .map(|ip| (ip, shared_throttle(&root, &config)));
    let waited = std::time::Instant::now();
    let admitted = throttle.as_ref().map(|(ip, t)| {
        loop {
            match t.admit(*ip, &req.login, "checkpassword") {
                // Attempts in flight in other processes may succeed: wait for them.
                Err(r) if r.busy && waited.elapsed() < crate::policy::throttle::BUSY_WAIT => {
                    std::thread::sleep(crate::policy::throttle::BUSY_POLL);
                }
                r => break r,
            }
        }
    });
    let ticket = match admitted {
        Some(Ok(ticket)) => Some(ticket),
        Some(Err(r)) => {
            tracing::warn!(target: "checkpassword", client = %client, login = %login, "login refused unchecked: {}", crate::policy::throttle::refusal_text(&r));
            if mode == Mode::Classic {
                std::thread::sleep(failure_delay(env_var(DELAY_ENV).as_deref(), &config));
            }
            return EXIT_BAD;
        }
        None => None,
    };
    let decision = decide(
        &engine.snapshot().accounts,
        &req,
        &mode,
        Process::current(),
        ctx,
    );
    drop(req);
    drop(engine);
    if let (Some((_, t)), Some(ticket)) = (&throttle, ticket) {
        let outcome = match &decision {
            _ if matches!(mode, Mode::DovecotLookup { .. }) => Outcome::Undecided,
            Ok(_) => Outcome::Success,
            Err(r) if r.code == EXIT_BAD => Outcome::Failure,
            Err(_) => Outcome::Undecided,
        };
        t.finish(ticket, outcome);
    }
    let plan = match decision {
        Ok(p) => p,
        Err(r) => {
            match r.level {
                Level::Error => {
                    tracing::error!(target: "checkpassword", client = %client, login = %login, "login trouble: {}", r.why)
                }
                Level::Warn => {
                    tracing::warn!(target: "checkpassword", client = %client, login = %login, "login refused: {}", r.why)
                }
                Level::Info => {
                    tracing::info!(target: "checkpassword", client = %client, login = %login, "login failed: {}", r.why)
                }
            }
            if mode == Mode::Classic && r.code == EXIT_BAD {
                std::thread::sleep(failure_delay(env_var(DELAY_ENV).as_deref(), &config));
            }
            return r.code;
        }
    };
    let who = printable(&plan.login);
    // POP-before-SMTP: a password proven from this address opens it for relaying.
    // Written before the identity changes, while the root's run/ is surely writable.
    if !matches!(mode, Mode::DovecotLookup { .. })
        && let Some(ip) = client_ip
    {
        let pop = crate::submit::pop_store(&root, &config);
        crate::submit::record_pop_login(pop.as_ref(), ip, &plan.login);
    }
    if let Some(o) = plan.become_owner
        && let Err(e) = crate::privilege::become_user(o.uid, o.gid)
    {
        tracing::error!(target: "checkpassword", login = %who, "cannot become uid {} gid {}: {e}", o.uid, o.gid);
        return EXIT_BAD;
    }
    if let Some(home) = &plan.chdir
        && let Err(e) = std::env::set_current_dir(home)
    {
        tracing::error!(target: "checkpassword", login = %who, "chdir {}: {e}", home.display());
        return EXIT_TEMPORARY;
    }
    let is_executable =
        |p: &Path| p.is_file() && nix::unistd::access(p, nix::unistd::AccessFlags::X_OK).is_ok();
    let Some(path) = search_path(prog, env_var("PATH").as_deref(), &is_executable) else {
        tracing::error!(target: "checkpassword", "cannot run {:?}: not found", prog.to_string_lossy());
        return EXIT_TEMPORARY;
    };
    // A name with a slash is taken as given: it must be there too before "login".
    if !is_executable(&path) {
        tracing::error!(target: "checkpassword", "cannot run {}: not an executable file", path.display());
        return EXIT_TEMPORARY;
    }
    // Only now is the login a success: the owner, the home and PROG are all there.
    match &mode {
        Mode::DovecotLookup { .. } => {
            tracing::debug!(target: "checkpassword", login = %who, "lookup answered")
        }
        _ => tracing::info!(target: "checkpassword", client = %client, login = %who, "login"),
    }
    let err = std::process::Command::new(&path)
        .arg0(prog)
        .args(prog_args)
        .envs(plan.env)
        .exec();
    tracing::error!(target: "checkpassword", "cannot run {}: {err}", path.display());
    EXIT_TEMPORARY
}

/// The login limits of `root`, counted in `ROOT/run/login-throttle`.
fn shared_throttle(root: &Path, config: &Config) -> Throttle<FileStore> {
    let rules = crate::policy::login_rules(config);
    Throttle {
        rules,
        ipv6_prefix: config.limits.ipv6_prefix,
        store: FileStore::for_root(root, rules),
    }
}

/// Open the mail root's tables read-only, refusing a root that is not there (an
/// unmounted or mistyped root must not look like "no such account"). With the
/// accounts in PostgreSQL, only what `login` needs is read from the database (one
/// short read-only transaction); a database that cannot answer is an error, which
/// the caller turns into exit 111.
fn open_engine(root: &Path, login: &[u8]) -> Result<(Engine, Config), String> {
    crate::mailroot::require(root).map_err(|e| e.to_string())?;
    let config = Config::load(root).map_err(|e| e.to_string())?;
    if config.accounts.backend == crate::db::Backend::Postgres {
        let login = login.to_vec();
        let texts = crate::db::blocking::with_store(&config.postgres, move |s| async move {
            s.load_for_login(&login).await
        })
        .map_err(|e| e.to_string())?;
        // The texts of one login carry no version of their own.
        let engine =
            Engine::open_with_texts(root, config.clone(), texts, 0).map_err(|e| e.to_string())?;
        return Ok((engine, config));
    }
    let engine = Engine::open_readonly(root, config.clone()).map_err(|e| e.to_string())?;
    let paths = engine.paths();
    if paths.poppasswd.exists() && !paths.poppasswd_cdb.exists() {
        return Err(format!(
            "{} is missing: run `turnmail newu` as the mail user",
            paths.poppasswd_cdb.display()
        ));
    }
    if crate::fsutil::is_newer(&paths.poppasswd, &paths.poppasswd_cdb) == Some(true) {
        tracing::warn!(
            target: "checkpassword",
            "{} is older than {}: using it anyway; run `turnmail newu` as the mail user",
            paths.poppasswd_cdb.display(),
            paths.poppasswd.display()
        );
    }
    Ok((engine, config))
}

#[cfg(test)]
mod tests;
