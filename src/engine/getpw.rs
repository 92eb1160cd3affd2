//! The system-accounts fallback (qmail-getpw), used only when `system_accounts = true`
//! and users/cdb has no entry: a local part names a Unix user, or a user plus a `-`
//! extension, and anything else goes to the `alias` user.

use std::os::unix::fs::MetadataExt;

use super::resolve::ResolveError;
use crate::qmail::users_cdb::Assignment;

/// qmail-getpw's definition of a mail user: non-root, short lowercase name, and a home
/// directory that exists and is owned by the user.
fn user(name: &str) -> Result<Option<Assignment>, ResolveError> {
    if name.is_empty() || name.len() >= 32 || name.bytes().any(|b| b.is_ascii_uppercase()) {
        return Ok(None);
    }
    let u = match nix::unistd::User::from_name(name) {
        Ok(Some(u)) => u,
        Ok(None) => return Ok(None),
        Err(e) => return Err(ResolveError(format!("getpwnam({name}): {e}"))),
    };
    if u.uid.is_root() {
        return Ok(None);
    }
    match std::fs::metadata(&u.dir) {
        Ok(m) if m.uid() == u.uid.as_raw() => {}
        _ => return Ok(None),
    }
    Ok(Some(Assignment {
        user: u.name.into_bytes(),
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir.into_os_string().into_encoded_bytes(),
        dash: Vec::new(),
        ext: Vec::new(),
    }))
}

/// Look up `local` among system accounts; None if not even `alias` exists.
pub fn lookup(local: &[u8]) -> Result<Option<Assignment>, ResolveError> {
    let lower = String::from_utf8_lossy(&local.to_ascii_lowercase()).into_owned();
    if lower.len() == local.len() {
        // Longest prefix ending at the end or at a '-' break character.
        let ends = (1..=lower.len())
            .rev()
            .filter(|&i| i == lower.len() || lower.as_bytes()[i] == b'-');
        for i in ends {
            if let Some(mut a) = user(&lower[..i])? {
                if i < local.len() {
                    a.dash = b"-".to_vec();
                    a.ext = local[i + 1..].to_vec();
                }
                return Ok(Some(a));
            }
        }
    }
    match user("alias")? {
        Some(mut a) => {
            a.dash = b"-".to_vec();
            a.ext = local.to_vec();
            Ok(Some(a))
        }
        None => Ok(None),
    }
}
