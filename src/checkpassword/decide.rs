//! The core of a login: given the account tables, what the caller sent, the mode and
//! who we are, what to run or how to refuse. Touches no process state.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::input::{Request, looks_like_apop};
use super::mode::Mode;
use super::{EXIT_BAD, EXIT_TEMPORARY, EXIT_UNKNOWN_USER, SHELL, printable};
use crate::engine::accounts::{Accounts, AuthError, Authenticated, LoginContext, Owner};

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
