//! The Unix identity that owns a mail root and everything delivered into it (the single-UID
//! model of a virtual-domain qmail host). Started by an ordinary user, turnmail is that user; started as
//! root it uses the user named in turnmail.toml and never uid 0.

use nix::unistd::{Gid, Uid, User};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum MailUserError {
    #[error("looking up user {0}: {1}")]
    Lookup(String, nix::Error),
    #[error(
        "running as root, but none of the mail users {0} exists; create one (e.g. `useradd --system turnmail`) or pass --user"
    )]
    Missing(String),
    #[error("user {0} has uid 0; mail is never stored or served as root")]
    Root(String),
    /// For a command on an existing root, where only turnmail.toml names the user.
    #[error(
        "running as root, but the mail user {user} (`user` in {}/turnmail.toml, default turnmail) \
         does not exist and root owns the root directory; create the user \
         (`useradd --system {user}`) or set `user` in turnmail.toml",
        root.display()
    )]
    MissingForRoot {
        user: String,
        root: std::path::PathBuf,
    },
}

fn from_user(u: User) -> MailUser {
    MailUser {
        name: u.name,
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
    }
}

impl MailUser {
    /// The identity of this process, if it is not root.
    pub fn current() -> Option<MailUser> {
        let uid = Uid::current();
        if uid.is_root() {
            return None;
        }
        let name = User::from_uid(uid)
            .ok()
            .flatten()
            .map_or_else(|| uid.to_string(), |u| u.name);
        Some(MailUser {
            name,
            uid: uid.as_raw(),
            gid: Gid::current().as_raw(),
        })
    }

    /// Pick the mail user: the current user when not root; as root the first existing
    /// user among `candidates`.
    pub fn pick(candidates: &[&str]) -> Result<MailUser, MailUserError> {
        if let Some(me) = Self::current() {
            return Ok(me);
        }
        for name in candidates {
            match User::from_name(name) {
                Ok(Some(u)) if u.uid.is_root() => {
                    return Err(MailUserError::Root(name.to_string()));
                }
                Ok(Some(u)) => return Ok(from_user(u)),
                Ok(None) => {}
                Err(e) => return Err(MailUserError::Lookup(name.to_string(), e)),
            }
        }
        Err(MailUserError::Missing(candidates.join(", ")))
    }
}

impl MailUser {
    /// The user to become for work on `root` when started as root: the one named in
    /// turnmail.toml if it exists, else the (non-root) owner of the root directory
    /// itself, since the mail root belongs to its mail user (an imported qmail tree
    /// has no turnmail.toml).
    pub fn for_root(root: &std::path::Path, configured: &str) -> Result<MailUser, MailUserError> {
        if let Some(me) = Self::current() {
            return Ok(me);
        }
        match Self::pick(&[configured]) {
            Ok(u) => Ok(u),
            Err(MailUserError::Missing(_)) => {
                use std::os::unix::fs::MetadataExt;
                let missing = || MailUserError::MissingForRoot {
                    user: configured.to_string(),
                    root: root.to_path_buf(),
                };
                let Ok(m) = std::fs::metadata(root) else {
                    return Err(missing());
                };
                if m.uid() == 0 {
                    return Err(missing());
                }
                let name = User::from_uid(Uid::from_raw(m.uid()))
                    .ok()
                    .flatten()
                    .map_or_else(|| m.uid().to_string(), |u| u.name);
                Ok(MailUser {
                    name,
                    uid: m.uid(),
                    gid: m.gid(),
                })
            }
            Err(e) => Err(e),
        }
    }
}
