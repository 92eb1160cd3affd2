//! Which convention the caller follows (qmail-popup's, or Dovecot's passdb and userdb
//! through `checkpassword-reply`), and finding PROG along PATH as pathexec does.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{DEFAULT_PATH, DOVECOT_REPLY};

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
