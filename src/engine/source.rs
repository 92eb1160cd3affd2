//! The account side's source texts, in qmail's file formats, whatever holds them: the
//! mail root's files (the default backend) or a database (`src/db/`), which hands the
//! engine the same texts so that one set of parsers and one lookup path serves both.

use std::io;
use std::path::Path;

/// The texts of the files that make up the accounts, byte for byte as the mail root
/// holds them (an absent file is an empty text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountTexts {
    /// `users/assign`
    pub assign: Vec<u8>,
    /// `users/poppasswd`
    pub poppasswd: Vec<u8>,
    /// `users/secrets`
    pub secrets: Vec<u8>,
    /// `control/rcpthosts`
    pub rcpthosts: Vec<u8>,
    /// `control/virtualdomains`
    pub virtualdomains: Vec<u8>,
    /// `users/quota`
    pub quota: Vec<u8>,
    /// The alias table of the database (`engine/aliastable.rs`): no file of its own,
    /// always empty when read from a root (the files backend's aliases are `.qmail`
    /// files, read where they are).
    pub aliases: Vec<u8>,
    /// The site table of the database (`spool/sitetable.rs`): no file of its own,
    /// always empty when read from a root (the files backend's sites are directories
    /// found by `spool::site::discover`).
    pub sites: Vec<u8>,
}

/// One text of [`AccountTexts`].
pub type Field = fn(&AccountTexts) -> &Vec<u8>;

/// Which text lives in which file, relative to the mail root.
pub const FILES: [(&str, Field); 6] = [
    ("users/assign", |t| &t.assign),
    ("users/poppasswd", |t| &t.poppasswd),
    ("users/secrets", |t| &t.secrets),
    ("control/rcpthosts", |t| &t.rcpthosts),
    ("control/virtualdomains", |t| &t.virtualdomains),
    ("users/quota", |t| &t.quota),
];

/// The largest text read from a file (users/assign of a very large host included).
const MAX_TEXT: u64 = 1 << 30;

impl AccountTexts {
    /// Read the texts from a mail root's files; a missing file is an empty text.
    pub fn read(root: &Path) -> io::Result<AccountTexts> {
        let read = |rel: &str| match crate::fsutil::read_limited(&root.join(rel), MAX_TEXT) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io::Error::new(
                e.kind(),
                format!("{}: {e}", root.join(rel).display()),
            )),
        };
        Ok(AccountTexts {
            assign: read("users/assign")?,
            poppasswd: read("users/poppasswd")?,
            secrets: read("users/secrets")?,
            rcpthosts: read("control/rcpthosts")?,
            virtualdomains: read("control/virtualdomains")?,
            quota: read("users/quota")?,
            aliases: Vec::new(),
            sites: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_takes_each_file_and_missing_ones_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("users")).unwrap();
        std::fs::create_dir_all(dir.path().join("control")).unwrap();
        std::fs::write(dir.path().join("users/assign"), b"+x-:u:1:1:/h:-::\n.\n").unwrap();
        std::fs::write(dir.path().join("control/rcpthosts"), b"example.com\n").unwrap();
        let t = AccountTexts::read(dir.path()).unwrap();
        assert_eq!(t.assign, b"+x-:u:1:1:/h:-::\n.\n");
        assert_eq!(t.rcpthosts, b"example.com\n");
        assert!(t.poppasswd.is_empty() && t.secrets.is_empty() && t.quota.is_empty());
        for (rel, field) in FILES {
            assert_eq!(
                field(&t).is_empty(),
                !dir.path().join(rel).exists(),
                "{rel}"
            );
        }
    }
}
