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
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::engine::Engine;
use crate::engine::accounts::{Accounts, AuthError, Authenticated, LoginContext, Owner};
use crate::policy::throttle::file::FileStore;
use crate::policy::throttle::{Outcome, Throttle};

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

/// What the caller wrote on fd 3. Login and password are both secrets (CPI); they are
/// zeroed when dropped.
pub struct Request {
    pub login: Vec<u8>,
    pub password: Vec<u8>,
    pub timestamp: Vec<u8>,
}

impl Drop for Request {
    fn drop(&mut self) {
        wipe(&mut self.login);
        wipe(&mut self.password);
    }
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request")
            .field("login", &printable(&self.login))
            .field("password", &"<redacted>")
            .field("timestamp", &printable(&self.timestamp))
            .finish()
    }
}

fn wipe(b: &mut [u8]) {
    b.iter_mut().for_each(|x| *x = 0);
    std::hint::black_box(b);
}

/// Why fd 3's data was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputError {
    /// More than 512 bytes: exit 1, as checkpassword 0.90.
    TooLong,
    /// Empty, or a missing NUL: exit 2.
    Malformed(&'static str),
}

impl InputError {
    pub fn exit_code(self) -> u8 {
        match self {
            InputError::TooLong => EXIT_BAD,
            InputError::Malformed(_) => EXIT_MISUSE,
        }
    }
}

/// Split `login\0password\0timestamp\0[more]`. Data after the third NUL is allowed and
/// ignored, as the interface says.
pub fn parse_input(data: &[u8]) -> Result<Request, InputError> {
    if data.len() > MAX_INPUT {
        return Err(InputError::TooLong);
    }
    if data.is_empty() {
        return Err(InputError::Malformed("empty input"));
    }
    let mut rest = data;
    let mut fields: [Vec<u8>; 3] = Default::default();
    for (field, missing) in fields.iter_mut().zip([
        "no NUL after the login",
        "no NUL after the password",
        "no NUL after the timestamp",
    ]) {
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(InputError::Malformed(missing))?;
        *field = rest[..nul].to_vec();
        rest = &rest[nul + 1..];
    }
    let [login, password, timestamp] = fields;
    Ok(Request {
        login,
        password,
        timestamp,
    })
}

/// Whether a login looks like APOP: a `<...>` challenge and a 32-hex-digit digest.
pub fn looks_like_apop(timestamp: &[u8], password: &[u8]) -> bool {
    timestamp.len() >= 2
        && timestamp.first() == Some(&b'<')
        && timestamp.last() == Some(&b'>')
        && password.len() == 32
        && password.iter().all(u8::is_ascii_hexdigit)
}

/// Which convention the caller follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// djb's interface (qmail-popup): become the owner, chdir home, exec PROG.
    Classic,
    /// Dovecot passdb password check: answer through checkpassword-reply.
    DovecotCheck,
    /// Dovecot `AUTHORIZED=1` lookup without a password; `credentials` holds SCHEME
    /// when `CREDENTIALS_LOOKUP=1` asks for the stored credential.
    DovecotLookup { credentials: Option<String> },
}

/// Choose the mode from PROG's file name and the environment.
pub fn detect_mode(prog: &OsStr, env: &dyn Fn(&str) -> Option<OsString>) -> Result<Mode, String> {
    let reply = Path::new(prog).file_name() == Some(OsStr::new(DOVECOT_REPLY));
    let authorized = env("AUTHORIZED");
    match (reply, authorized) {
        (true, Some(a)) if a == "1" => {
            let credentials =
                (env("CREDENTIALS_LOOKUP").as_deref() == Some(OsStr::new("1"))).then(|| {
                    env("SCHEME")
                        .unwrap_or_default()
                        .to_string_lossy()
                        .into_owned()
                });
            Ok(Mode::DovecotLookup { credentials })
        }
        (true, Some(a)) => Err(format!(
            "AUTHORIZED={} is not a lookup Dovecot makes",
            a.to_string_lossy()
        )),
        (true, None) => Ok(Mode::DovecotCheck),
        (false, Some(_)) => Err(format!(
            "AUTHORIZED is set but PROG {:?} is not Dovecot's {DOVECOT_REPLY}; password-less lookups only answer Dovecot",
            prog.to_string_lossy()
        )),
        (false, None) => Ok(Mode::Classic),
    }
}

/// Find PROG as pathexec does: a name with a `/` is used as given, otherwise the first
/// executable `dir/PROG` along PATH (DEFAULT_PATH when unset). Empty and relative PATH
/// entries are skipped: the search runs after the chdir to the account's home.
pub fn search_path(
    prog: &OsStr,
    path: Option<&OsStr>,
    is_executable: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if prog.is_empty() {
        return None;
    }
    if prog.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(prog));
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    path.as_bytes()
        .split(|&b| b == b':')
        .filter(|d| d.starts_with(b"/"))
        .map(|d| Path::new(OsStr::from_bytes(d)).join(prog))
        .find(|p| is_executable(p))
}

/// The identity this process runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Process {
    pub uid: u32,
    pub euid: u32,
}

impl Process {
    pub fn current() -> Process {
        Process {
            uid: nix::unistd::getuid().as_raw(),
            euid: nix::unistd::geteuid().as_raw(),
        }
    }
}

/// What to do before exec'ing PROG after a successful check.
#[derive(Debug)]
pub struct Plan {
    /// The login as stored in poppasswd.
    pub login: Vec<u8>,
    /// setgroups/setgid/setuid to this owner first (only when running as root).
    pub become_owner: Option<Owner>,
    pub chdir: Option<PathBuf>,
    /// Variables to set for PROG (the rest of the environment is passed on).
    pub env: Vec<(OsString, OsString)>,
}

/// How loudly a refusal is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// An everyday failure: a wrong password, an unknown login.
    Info,
    /// A good reason the operator should know: a root-owned account, the wrong uid.
    Warn,
    /// Trouble: the tables, the owner, the environment.
    Error,
}

/// A refusal: the exit code and the reason for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u8,
    pub why: String,
    pub level: Level,
}

fn refuse(code: u8, why: impl Into<String>) -> Refusal {
    let level = match code {
        EXIT_TEMPORARY => Level::Error,
        _ => Level::Info,
    };
    Refusal {
        code,
        why: why.into(),
        level,
    }
}

fn warn(code: u8, why: impl Into<String>) -> Refusal {
    Refusal {
        level: Level::Warn,
        ..refuse(code, why)
    }
}

fn os(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

fn kv(k: &str, v: impl Into<OsString>) -> (OsString, OsString) {
    (OsString::from(k), v.into())
}

/// Check a password login (or an APOP digest), mapping engine errors to exit codes.
fn verify(accounts: &Accounts, req: &Request, ctx: LoginContext) -> Result<Authenticated, Refusal> {
    let map = |e: AuthError| match e {
        AuthError::Bad => refuse(EXIT_BAD, "bad login or password"),
        AuthError::Root => warn(EXIT_BAD, "the account is owned by root"),
        AuthError::Temporary(t) => refuse(EXIT_TEMPORARY, t),
    };
    if looks_like_apop(&req.timestamp, &req.password) {
        let account = accounts.find(&req.login, ctx).map_err(map)?;
        if let Some(account) = account
            && accounts.has_apop_secret(&account)
        {
            match accounts.authenticate_apop(&req.login, &req.timestamp, &req.password, ctx) {
                Ok(a) => return Ok(a),
                // A 32-hex-digit plaintext password is possible: try it as one.
                Err(AuthError::Bad) => {}
                Err(e) => return Err(map(e)),
            }
        }
    }
    accounts
        .authenticate(&req.login, &req.password, ctx)
        .map_err(map)
}

/// Fields handed to checkpassword-reply: USER, HOME and the userdb ids through EXTRA.
fn dovecot_env(
    login: &[u8],
    home: &Path,
    owner: Owner,
    credential: Option<Vec<u8>>,
) -> Result<Vec<(OsString, OsString)>, Refusal> {
    // checkpassword-reply refuses a TAB in USER or HOME; Dovecot refuses an LF.
    let bad = |b: &[u8]| b.iter().any(|&c| c == b'\t' || c == b'\n' || c == 0);
    if bad(login) || bad(home.as_os_str().as_bytes()) {
        return Err(refuse(
            EXIT_TEMPORARY,
            "login or home contains a TAB, LF or NUL, which Dovecot's reply cannot carry",
        ));
    }
    let mut extra = String::from("userdb_uid userdb_gid");
    let mut env = vec![
        kv("USER", os(login)),
        kv("HOME", home.as_os_str()),
        kv("userdb_uid", owner.uid.to_string()),
        kv("userdb_gid", owner.gid.to_string()),
    ];
    if let Some(credential) = credential {
        if bad(&credential) {
            return Err(refuse(
                EXIT_TEMPORARY,
                "the account's secret contains a TAB, LF or NUL, which Dovecot's reply cannot carry",
            ));
        }
        env.push(kv("password", OsString::from_vec(credential)));
        extra.push_str(" password");
    }
    env.push(kv("EXTRA", extra));
    Ok(env)
}

/// The core: given the account tables, what the caller sent, the mode and who we are,
/// decide what to run (or how to refuse). Touches no process state.
pub fn decide(
    accounts: &Accounts,
    req: &Request,
    mode: &Mode,
    me: Process,
    ctx: LoginContext,
) -> Result<Plan, Refusal> {
    match mode {
        Mode::Classic => {
            let a = verify(accounts, req, ctx)?;
            let become_owner = if me.euid == 0 {
                Some(a.owner)
            } else if me.uid == a.owner.uid && me.euid == a.owner.uid {
                None
            } else {
                return Err(warn(
                    EXIT_BAD,
                    format!(
                        "the account is owned by uid {} but this program runs as uid {}; run it as root (qmail-popup does) or as that uid",
                        a.owner.uid, me.euid
                    ),
                ));
            };
            let home = a.account.home.clone();
            let maildir = a.account.maildir();
            Ok(Plan {
                env: vec![
                    kv("USER", os(&a.account.login)),
                    kv("HOME", home.as_os_str()),
                    kv("SHELL", SHELL),
                    kv("MAILDIR", maildir.as_os_str()),
                ],
                login: a.account.login,
                become_owner,
                chdir: Some(home),
            })
        }
        Mode::DovecotCheck => {
            let a = verify(accounts, req, ctx)?;
            Ok(Plan {
                env: dovecot_env(&a.account.login, &a.account.home, a.owner, None)?,
                login: a.account.login,
                become_owner: None,
                chdir: None,
            })
        }
        Mode::DovecotLookup { credentials } => {
            let temp = |e: AuthError| refuse(EXIT_TEMPORARY, e.to_string());
            let account = accounts
                .find(&req.login, ctx)
                .map_err(temp)?
                .ok_or_else(|| refuse(EXIT_UNKNOWN_USER, "unknown user"))?;
            let owner = crate::engine::accounts::resolve_owner(&account.owner)
                .map_err(|e| refuse(EXIT_TEMPORARY, format!("looking up owner: {e}")))?
                .ok_or_else(|| {
                    refuse(
                        EXIT_TEMPORARY,
                        format!(
                            "owner {:?} of the account does not exist",
                            printable(&account.owner)
                        ),
                    )
                })?;
            if owner.uid == 0 {
                return Err(warn(EXIT_UNKNOWN_USER, "the account is owned by root"));
            }
            let credential = match credentials {
                Some(scheme) if !scheme.is_empty() => accounts
                    .stored_secret(&account)
                    .map(|s| s.dovecot_credential()),
                _ => None,
            };
            let mut env = dovecot_env(&account.login, &account.home, owner, credential)?;
            env.push(kv("AUTHORIZED", "2"));
            Ok(Plan {
                login: account.login.clone(),
                become_owner: None,
                chdir: None,
                env,
            })
        }
    }
}

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

/// File identity of a descriptor: (is a socket, device, inode).
pub type FdIdentity = (bool, u64, u64);

/// Whether stderr is the client's connection (qmail 1.03's qmail-popup, inetd): a socket
/// that is the same open file as stdin or stdout. A closed stderr counts too: there is
/// nowhere to log.
pub fn stderr_reaches_client(
    stderr: Option<FdIdentity>,
    stdin: Option<FdIdentity>,
    stdout: Option<FdIdentity>,
) -> bool {
    let Some((sock, dev, ino)) = stderr else {
        return true;
    };
    sock && [stdin, stdout]
        .into_iter()
        .flatten()
        .any(|(_, d, i)| d == dev && i == ino)
}

fn identity<F: std::os::fd::AsFd>(fd: F) -> Option<FdIdentity> {
    use nix::sys::stat::{SFlag, fstat};
    let st = fstat(fd).ok()?;
    let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    Some((kind == SFlag::S_IFSOCK, st.st_dev, st.st_ino))
}

/// Start logging to stderr unless stderr is the client. The default filter is `info`,
/// but `warn` under Dovecot, which logs logins and failures itself and files every line
/// a checkpassword program writes under "Error".
fn init_logging(default_filter: &str) {
    if stderr_reaches_client(
        identity(io::stderr()),
        identity(io::stdin()),
        identity(io::stdout()),
    ) {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env("TURNMAIL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Dovecot and multilog stamp lines themselves.
    let _ = tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .try_init();
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
mod tests {
    use super::*;
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
}
