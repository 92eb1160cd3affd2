//! Address resolution: qmail-send's rewriting, qmail-lspawn's users/cdb lookup and
//! qmail-local's choice of `.qmail` file, done once at RCPT time so that SMTP can say
//! "550 no such mailbox" before accepting a message instead of bouncing it later.
//!
//! The walk is: syntax → rcpthosts → locals/virtualdomains rewrite → users/cdb (or the
//! system accounts fallback) → home directory checks → `.qmail` candidates → parsed
//! instructions. Every failure is either permanent (a Resolution) or temporary
//! ([`ResolveError`]), exactly where qmail would defer.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::Snapshot;
use crate::qmail::control::{Rewrite, rewrite};
use crate::qmail::dotqmail::{self, DotQmail, DotQmailError};

/// Longest recipient address considered (RFC 5321 path limit).
pub const MAX_ADDRESS: usize = 256;

/// Where mail for an address goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The domain is not in rcpthosts: we do not accept mail for it (no relaying).
    NotOurs,
    /// The address cannot be an address (bytes, length, no domain).
    BadAddress(&'static str),
    /// Accepted by rcpthosts but neither local nor virtual: to be passed on.
    Relay { address: Vec<u8> },
    /// The empty local part: accepted and discarded, as qmail-lspawn does.
    Trash,
    /// Ours, but no mailbox answers to it.
    Unknown { reason: String },
    /// A local delivery target.
    Local(Box<LocalTarget>),
}

/// A resolved local recipient, with everything qmail-local would have been given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalTarget {
    /// The address as the client gave it.
    pub recipient: Vec<u8>,
    /// After virtualdomains rewriting: `local@domain` (the Delivered-To address).
    pub address: Vec<u8>,
    pub local: Vec<u8>,
    pub domain: Vec<u8>,
    pub user: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub dash: Vec<u8>,
    pub ext: Vec<u8>,
    /// The chosen `.qmail` file, or None when the default delivery applies.
    pub dotqmail: Option<PathBuf>,
    /// `$DEFAULT` when a `-default` file was chosen.
    pub default_part: Option<Vec<u8>>,
    pub instructions: DotQmail,
}

/// A temporary failure: the sender should try again later (451 4.3.0 / exit 111).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResolveError(pub String);

fn temp<E: std::fmt::Display>(what: &str) -> impl FnOnce(E) -> ResolveError + '_ {
    move |e| ResolveError(format!("{what}: {e}"))
}

/// Recipients must not carry bytes that could split protocol lines or file names.
pub fn address_is_sane(a: &[u8]) -> bool {
    !a.is_empty() && a.len() <= MAX_ADDRESS && !a.iter().any(|&b| b < b' ' || b == 0x7f)
}

/// Resolve `recipient` against a snapshot. With `check_rcpthosts` (SMTP), domains not
/// in rcpthosts are [`Resolution::NotOurs`]; local injection (`turnmail deliver`)
/// skips that check as qmail-inject does.
pub fn resolve(
    snap: &Snapshot,
    recipient: &[u8],
    check_rcpthosts: bool,
) -> Result<Resolution, ResolveError> {
    if !address_is_sane(recipient) {
        return Ok(Resolution::BadAddress(
            "address has control bytes or is too long",
        ));
    }
    // Tables that may be stale answer nothing, not even "not ours".
    snap.availability.check().map_err(ResolveError)?;
    let Some(at) = recipient.iter().rposition(|&b| b == b'@') else {
        return Ok(Resolution::BadAddress("address must include a domain"));
    };
    let domain = &recipient[at + 1..];
    if domain.is_empty() {
        return Ok(Resolution::BadAddress("address must include a domain"));
    }
    if check_rcpthosts
        && !snap
            .control
            .rcpthosts
            .accepts(domain)
            .map_err(temp("reading morercpthosts.cdb"))?
    {
        return Ok(Resolution::NotOurs);
    }
    let address = match rewrite(
        recipient,
        &snap.control.locals,
        &snap.control.virtualdomains,
    ) {
        Rewrite::Remote => {
            return Ok(Resolution::Relay {
                address: recipient.to_vec(),
            });
        }
        Rewrite::Local { address, .. } => address,
    };
    // Split the rewritten address at its last '@' (qmail's spawn.c).
    let at = address
        .iter()
        .rposition(|&b| b == b'@')
        .unwrap_or(address.len());
    let local = address[..at].to_vec();
    let domain = address.get(at + 1..).unwrap_or_default().to_vec();
    if dotqmail::is_trash(&local) {
        return Ok(Resolution::Trash);
    }
    let assignment = match &snap.users {
        Some(cdb) => cdb.lookup(&local).map_err(temp("reading users/cdb"))?,
        None => None,
    };
    let a = match assignment {
        Some(a) => a,
        None if snap.config.system_accounts => match super::getpw::lookup(&local)? {
            Some(a) => a,
            None => {
                return Ok(Resolution::Unknown {
                    reason: "no users/assign entry and no system account".into(),
                });
            }
        },
        None => {
            return Ok(Resolution::Unknown {
                reason: "no users/assign entry".into(),
            });
        }
    };
    if a.uid == 0 {
        return Err(ResolveError(
            "users/assign entry has uid 0: refusing to deliver as root".into(),
        ));
    }
    if !a.home.starts_with(b"/") {
        return Err(ResolveError(format!(
            "home {:?} is not an absolute path",
            String::from_utf8_lossy(&a.home)
        )));
    }
    let home = PathBuf::from(OsStr::from_bytes(&a.home));
    check_home(&home)?;
    let mut target = LocalTarget {
        recipient: recipient.to_vec(),
        address: address.clone(),
        local,
        domain,
        user: a.user,
        uid: a.uid,
        gid: a.gid,
        home,
        dash: a.dash,
        ext: a.ext,
        dotqmail: None,
        default_part: None,
        instructions: DotQmail::default(),
    };
    // The database's aliases, asked before the disk name by name (none on files).
    let home_key = target.home.as_os_str().as_bytes().to_vec();
    let chosen = dotqmail::search_with(&target.home, &target.dash, &target.ext, |name| {
        if snap.aliases.is_empty() {
            return None;
        }
        snap.aliases
            .get(&(home_key.clone(), name.to_vec()))
            .cloned()
    })
    .map_err(|e| ResolveError(format!("{}: {e}", target.home.display())))?;
    if let Some(c) = chosen {
        let path = target.home.join(OsStr::from_bytes(&c.candidate.name));
        target.instructions = if c.content.is_empty() {
            // An empty file means the default delivery, and clears forward-only.
            default_instructions(snap)?
        } else {
            dotqmail::parse(&c.content, c.mode.forward_only)
                .map_err(|e| dotqmail_error(&path, e))?
        };
        target.dotqmail = Some(path);
        target.default_part = c.candidate.default_part;
        return Ok(Resolution::Local(Box::new(target)));
    }
    if !target.dash.is_empty() {
        return Ok(Resolution::Unknown {
            reason: "no mailbox here by that name".into(),
        });
    }
    target.instructions = default_instructions(snap)?;
    Ok(Resolution::Local(Box::new(target)))
}

fn default_instructions(snap: &Snapshot) -> Result<DotQmail, ResolveError> {
    dotqmail::default_instructions(snap.config.default_delivery.as_bytes())
        .map_err(|e| ResolveError(format!("default_delivery in turnmail.toml: {e}")))
}

fn dotqmail_error(path: &Path, e: DotQmailError) -> ResolveError {
    ResolveError(format!("{}: {e}", path.display()))
}

/// qmail-local's checks on the home directory: it must exist, must not be writable by
/// group or others, and a sticky home means "the user is editing .qmail: defer".
fn check_home(home: &Path) -> Result<(), ResolveError> {
    let m = std::fs::metadata(home)
        .map_err(|e| ResolveError(format!("home directory {}: {e}", home.display())))?;
    let mode = m.permissions().mode();
    if mode & 0o1000 != 0 {
        return Err(ResolveError(format!(
            "home directory {} is sticky: user is editing .qmail (#4.2.1)",
            home.display()
        )));
    }
    if mode & 0o022 != 0 {
        return Err(ResolveError(format!(
            "home directory {} is group- or world-writable (#4.7.0)",
            home.display()
        )));
    }
    Ok(())
}
