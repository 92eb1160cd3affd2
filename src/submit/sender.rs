//! Which envelope senders a client that relays may use.
//!
//! - An authenticated account (AUTH, or the login behind a POP-before-SMTP record when
//!   the operator asks for `account` checks): its own login when that is an address;
//!   any address whose mail reaches the account's mailbox (a `.qmail` line delivering
//!   into its Maildir, or forwarding to its login: its aliases); and any address of
//!   its domain when that domain is listed in `control/anysender` (one domain a line,
//!   qmail's control file rules).
//! - A site relaying from its `relay_networks`: the site's domains (and their
//!   subdomains for `.suffix` entries).
//! - A client relaying by a tcp.smtp rule or POP-before-SMTP: by `[relay_access]
//!   sender_check`: `off` anything, `domain` a domain we accept mail for (rcpthosts)
//!   or a site's domain, `account` (POP-before-SMTP) the login's addresses as above.
//! - The null sender `<>` is allowed to all of them: RFC 5321 §4.5.5 reserves it for
//!   notifications (vacation replies, bounces a customer's own server makes), which
//!   are legitimately submitted; the limits still count it.
//!
//! Everything else is refused with `553 5.7.1` and a text naming what was checked.

use std::path::{Component, Path, PathBuf};

use crate::engine::Resolution;
use crate::qmail::dotqmail::Instruction;

/// Who is sending, as far as the sender check cares.
#[derive(Debug, Clone)]
pub enum Identity {
    /// An account: its login as stored in poppasswd and its home (the Maildir's
    /// parent).
    Account { login: Vec<u8>, home: PathBuf },
    /// A site and its domains (lowercase; `.suffix` entries cover subdomains).
    Site { name: String, domains: Vec<String> },
    /// Only an address: any of our domains will do.
    Ours,
    /// No check at all.
    Anything,
}

/// What the check needs from the engine.
pub trait Lookup {
    /// `domain` is one we accept mail for (rcpthosts).
    fn is_ours(&self, domain: &[u8]) -> bool;
    /// Where mail for `address` goes (local delivery view), or None on trouble.
    fn resolve(&self, address: &[u8]) -> Option<Resolution>;
    /// `domain` is listed in control/anysender.
    fn any_sender(&self, domain: &[u8]) -> bool;
    /// The Maildir line qmail-local uses when no `.qmail` file is found.
    fn default_delivery(&self) -> &[u8];
}

/// `Ok` when `identity` may use `sender`; otherwise the reason for the 553.
pub fn check(sender: &[u8], identity: &Identity, lookup: &dyn Lookup) -> Result<(), String> {
    if sender.is_empty() {
        return Ok(());
    }
    let domain = domain_of(sender);
    match identity {
        Identity::Anything => Ok(()),
        Identity::Ours => match domain {
            Some(d) if lookup.is_ours(d) => Ok(()),
            _ => Err("sender address is not of a domain of this server".into()),
        },
        Identity::Site { name, domains } => match domain {
            Some(d) if site_has(domains, d) => Ok(()),
            _ => Err(format!("sender address is not of a domain of site {name}")),
        },
        Identity::Account { login, home } => {
            if sender.eq_ignore_ascii_case(login) {
                return Ok(());
            }
            if let (Some(d), Some(own)) = (domain, domain_of(login))
                && d.eq_ignore_ascii_case(own)
                && lookup.any_sender(own)
            {
                return Ok(());
            }
            if reaches_account(sender, login, home, lookup) {
                return Ok(());
            }
            Err(format!(
                "sender address is not one of {}'s addresses",
                String::from_utf8_lossy(login)
            ))
        }
    }
}

fn domain_of(address: &[u8]) -> Option<&[u8]> {
    let at = address.iter().rposition(|&b| b == b'@')?;
    let d = &address[at + 1..];
    (!d.is_empty()).then_some(d)
}

fn site_has(domains: &[String], d: &[u8]) -> bool {
    let d = String::from_utf8_lossy(d).to_ascii_lowercase();
    domains.iter().any(|s| match s.strip_prefix('.') {
        Some(suffix) => d.ends_with(&format!(".{suffix}")),
        None => *s == d,
    })
}

/// Mail to `sender` lands in the account's Maildir, or is forwarded to its login.
fn reaches_account(sender: &[u8], login: &[u8], home: &Path, lookup: &dyn Lookup) -> bool {
    let Some(Resolution::Local(t)) = lookup.resolve(sender) else {
        return false;
    };
    let own = home.join("Maildir");
    let mine = normal(&own);
    let maildir = |line: &[u8]| normal(&t.home.join(bytes_path(line))) == mine;
    if t.dotqmail.is_none() {
        return maildir(lookup.default_delivery());
    }
    t.instructions.instructions.iter().any(|(_, i)| match i {
        Instruction::Maildir(p) => maildir(p),
        Instruction::Forward(a) => a.eq_ignore_ascii_case(login),
        _ => false,
    })
}

fn bytes_path(b: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(b))
}

/// The path's components without `.` (and so without a trailing slash).
fn normal(p: &Path) -> Vec<Component<'_>> {
    p.components().filter(|c| *c != Component::CurDir).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::LocalTarget;
    use crate::qmail::dotqmail::DotQmail;

    struct Fake;

    fn target(home: &str, dotqmail: bool, lines: Vec<Instruction>) -> Resolution {
        Resolution::Local(Box::new(LocalTarget {
            recipient: vec![],
            address: vec![],
            local: vec![],
            domain: vec![],
            user: vec![],
            uid: 1,
            gid: 1,
            home: home.into(),
            dash: vec![],
            ext: vec![],
            dotqmail: dotqmail.then(|| PathBuf::from("x")),
            default_part: None,
            instructions: DotQmail {
                instructions: lines.into_iter().map(|i| (1, i)).collect(),
                forward_only: false,
            },
        }))
    }

    impl Lookup for Fake {
        fn is_ours(&self, d: &[u8]) -> bool {
            d.eq_ignore_ascii_case(b"example.com")
        }
        fn resolve(&self, a: &[u8]) -> Option<Resolution> {
            Some(match a {
                b"joe@example.com" | b"j.doe@example.com" => target(
                    "/r/domains/example.com",
                    true,
                    vec![Instruction::Maildir(b"./joe/Maildir/".to_vec())],
                ),
                b"sales@example.com" => target(
                    "/r/domains/example.com",
                    true,
                    vec![Instruction::Forward(b"Joe@example.com".to_vec())],
                ),
                b"ann@example.com" => target(
                    "/r/domains/example.com",
                    true,
                    vec![Instruction::Maildir(b"./ann/Maildir/".to_vec())],
                ),
                b"sys@example.com" => target("/r/domains/example.com/joe", false, vec![]),
                _ => Resolution::NotOurs,
            })
        }
        fn any_sender(&self, d: &[u8]) -> bool {
            d == b"example.org"
        }
        fn default_delivery(&self) -> &[u8] {
            b"./Maildir/"
        }
    }

    #[test]
    fn an_account_sends_as_itself_its_aliases_or_its_domain_when_allowed() {
        let joe = Identity::Account {
            login: b"joe@example.com".to_vec(),
            home: "/r/domains/example.com/joe".into(),
        };
        for ok in [
            &b"joe@example.com"[..],
            b"JOE@example.com",
            b"j.doe@example.com",
            b"sales@example.com",
            b"sys@example.com",
            b"",
        ] {
            assert_eq!(
                check(ok, &joe, &Fake),
                Ok(()),
                "{}",
                String::from_utf8_lossy(ok)
            );
        }
        for bad in [&b"ann@example.com"[..], b"boss@example.net", b"nobody"] {
            let e = check(bad, &joe, &Fake).unwrap_err();
            assert!(e.contains("joe@example.com"), "{e}");
        }
        let bob = Identity::Account {
            login: b"bob@example.org".to_vec(),
            home: "/r/domains/example.org/bob".into(),
        };
        assert_eq!(check(b"anyone@EXAMPLE.org", &bob, &Fake), Ok(()));
        assert!(check(b"anyone@example.com", &bob, &Fake).is_err());
    }

    #[test]
    fn sites_and_address_clients() {
        let site = Identity::Site {
            name: "acme".into(),
            domains: vec!["acme.example".into(), ".acme.test".into()],
        };
        assert_eq!(check(b"x@ACME.example", &site, &Fake), Ok(()));
        assert_eq!(check(b"x@mail.acme.test", &site, &Fake), Ok(()));
        assert!(check(b"x@acme.test", &site, &Fake).is_err());
        assert!(check(b"x@example.com", &site, &Fake).is_err());
        assert_eq!(check(b"x@example.com", &Identity::Ours, &Fake), Ok(()));
        assert!(check(b"x@gmail.example", &Identity::Ours, &Fake).is_err());
        assert_eq!(
            check(b"x@gmail.example", &Identity::Anything, &Fake),
            Ok(())
        );
    }
}
