//! What reaches a site directory, read from qmail's own files the way qmail routes
//! mail there: `control/virtualdomains` turns `user@domain` into `ID-user`, and the
//! longest `+` wildcard of `users/assign` that `ID-user` starts with names the home.
//! A site made by hand (no site.toml) is known only through these lines, so its
//! domains and its Delivered-To prefixes are computed here, once per discovery, and
//! every face (ETRN, ODMR's ATRN, AUTOTURN's logs, `site list`, `status`, `check`)
//! reads them from the discovered [`Site`](super::site::Site).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::qmail::assign::{self, AssignKind};
use crate::qmail::control::VirtualDomains;

/// One `+local` line of users/assign.
#[derive(Debug, Clone)]
struct Wildcard {
    /// The local part as written: the Delivered-To prefix of what it receives.
    local: Vec<u8>,
    /// Lowercased, as qmail-lspawn compares.
    lower: Vec<u8>,
    /// The home, canonical when it exists.
    home: PathBuf,
}

/// users/assign's wildcards and control/virtualdomains, as one discovery read them.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    /// In file order: of two equal keys the first is the one users/cdb returns.
    wildcards: Vec<Wildcard>,
    vds: VirtualDomains,
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

impl Routes {
    /// Read `ROOT/users/assign` and `ROOT/control/virtualdomains`; a missing or broken
    /// file routes nothing (`turnmail check` reports broken ones).
    pub fn load(root: &Path) -> Routes {
        let assign = std::fs::read(root.join("users/assign")).unwrap_or_default();
        let vd = std::fs::read(root.join("control/virtualdomains")).ok();
        Routes::parse(&assign, vd.as_deref())
    }

    pub fn parse(assign: &[u8], virtualdomains: Option<&[u8]>) -> Routes {
        let wildcards = assign::parse(assign)
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.kind == AssignKind::Wildcard)
            .map(|e| Wildcard {
                lower: e.local.to_ascii_lowercase(),
                home: canonical(Path::new(OsStr::from_bytes(&e.home))),
                local: e.local,
            })
            .collect();
        Routes {
            wildcards,
            vds: VirtualDomains::parse(virtualdomains),
        }
    }

    /// The wildcard that receives `ID-anything`: the longest whose local part starts
    /// `ID-` (qmail-lspawn's longest-prefix rule), the first of equals.
    fn wildcard_for(&self, id: &[u8]) -> Option<&Wildcard> {
        let mut local = id.to_ascii_lowercase();
        local.push(b'-');
        let mut best: Option<&Wildcard> = None;
        for w in &self.wildcards {
            if local.starts_with(&w.lower) && best.is_none_or(|b| w.lower.len() > b.lower.len()) {
                best = Some(w);
            }
        }
        best
    }

    /// The Delivered-To prefixes of the mail users/assign sends to `dir`: the local
    /// part of every `+` line whose home it is, longest first (of two that both fit a
    /// file, the longer is the one qmail chose).
    pub fn prefixes(&self, dir: &Path) -> Vec<Vec<u8>> {
        let dir = canonical(dir);
        let mut out: Vec<Vec<u8>> = Vec::new();
        for w in self.wildcards.iter().filter(|w| w.home == dir) {
            if !out.contains(&w.local) {
                out.push(w.local.clone());
            }
        }
        out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        out
    }

    /// The virtualdomains keys whose mail reaches `dir`: domains and `.suffix`
    /// entries (lowercased, sorted), not single addresses or the empty key.
    pub fn domains(&self, dir: &Path) -> Vec<String> {
        let dir = canonical(dir);
        let mut out: Vec<String> = self
            .vds
            .entries()
            .filter(|v| !v.key.is_empty() && !v.key.contains(&b'@') && !v.prepend.is_empty())
            .filter(|v| self.wildcard_for(&v.prepend).is_some_and(|w| w.home == dir))
            .map(|v| String::from_utf8_lossy(&v.key).to_ascii_lowercase())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The virtualdomains key qmail uses for mail to `domain` (the domain itself,
    /// else its longest `.suffix`), lowercased; None when no domain entry applies.
    pub fn key_for(&self, domain: &str) -> Option<String> {
        let mut address = b"@".to_vec();
        address.extend_from_slice(domain.as_bytes());
        self.vds
            .find(&address)
            .filter(|v| !v.key.is_empty() && !v.key.contains(&b'@') && !v.prepend.is_empty())
            .map(|v| String::from_utf8_lossy(&v.key).to_ascii_lowercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(dir: &Path) -> Routes {
        let d = dir.display();
        let assign = format!(
            "+example.com-:popusr:510:51:{d}/pop:-::\n\
             +some.example.com-:popusr:510:51:{d}/some:-::\n\
             +second.example.org-:popusr:510:51:{d}/some:-::\n\
             +other-:popusr:510:51:{d}/other:-::\n\
             +other-x-:popusr:510:51:{d}/some:-::\n.\n"
        );
        let vd = "example.com:example.com\n.example.com:example.com\n\
                  some.example.com:some.example.com\n.Some.Example.com:some.example.com\n\
                  second.example.org:second.example.org\nuser@x.example:some.example.com\n\
                  other.example:other\nexcept.example.com:\n";
        Routes::parse(assign.as_bytes(), Some(vd.as_bytes()))
    }

    #[test]
    fn domains_and_prefixes_of_a_directory() {
        let t = tempfile::tempdir().unwrap();
        for d in ["pop", "some", "other"] {
            std::fs::create_dir(t.path().join(d)).unwrap();
        }
        let r = routes(t.path());
        let some = t.path().join("some");
        assert_eq!(
            r.domains(&some),
            [
                ".some.example.com",
                "second.example.org",
                "some.example.com"
            ]
        );
        assert_eq!(r.domains(&t.path().join("other")), ["other.example"]);
        // Longest first: `other-x-` files are this directory's, not `other`'s.
        assert_eq!(
            r.prefixes(&some),
            [
                b"second.example.org-".to_vec(),
                b"some.example.com-".to_vec(),
                b"other-x-".to_vec()
            ]
        );
        // The same directory through another spelling of its path.
        let dotted = t.path().join("pop/../some");
        assert_eq!(r.prefixes(&dotted).len(), 3);
    }

    #[test]
    fn the_key_qmail_would_use() {
        let t = tempfile::tempdir().unwrap();
        let r = routes(t.path());
        assert_eq!(
            r.key_for("some.example.com").as_deref(),
            Some("some.example.com")
        );
        assert_eq!(
            r.key_for("a.some.example.com").as_deref(),
            Some(".some.example.com")
        );
        assert_eq!(
            r.key_for("www.example.com").as_deref(),
            Some(".example.com")
        );
        // An exception line (empty id) is not virtual; unknown domains have no key.
        assert_eq!(r.key_for("except.example.com"), None);
        assert_eq!(r.key_for("nowhere.example"), None);
        assert_eq!(r.key_for("x.example"), None);
    }
}
