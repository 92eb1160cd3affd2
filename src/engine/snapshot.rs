//! One frozen set of tables, built from the mail root's compiled files or, for accounts
//! kept in a database, from the same texts held in memory. Both ways end in the same
//! types and the same lookups, so a face cannot tell them apart.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::availability::Availability;
use super::source::AccountTexts;
use super::{EngineError, Paths, accounts, aliasdomains, aliastable};
use crate::config::Config;
use crate::qmail::control::ControlFiles;
use crate::qmail::control::{Rewrite, rewrite};
use crate::qmail::dotqmail;
use crate::qmail::users_cdb::{self, UsersCdb};

/// Everything a lookup needs, frozen at one instant.
pub struct Snapshot {
    pub control: ControlFiles,
    pub users: Option<UsersCdb>,
    pub accounts: accounts::Accounts,
    pub config: Arc<Config>,
    /// Shared with the engine: while it is down, every lookup is a temporary failure.
    pub availability: Availability,
    /// The database's aliases by where their file would be: (home, `.qmail-EXT`
    /// name) → the file's text. Empty for the files backend.
    pub aliases: HashMap<(Vec<u8>, Vec<u8>), Vec<u8>>,
}

impl Snapshot {
    /// The compiled files of a mail root: control/, users/cdb, users/poppasswd.cdb,
    /// users/secrets.
    pub fn load(paths: &Paths, config: &Arc<Config>) -> Result<Snapshot, EngineError> {
        let control = ControlFiles::load(&paths.control)?;
        let users = UsersCdb::open(&paths.users_cdb)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", paths.users_cdb.display())))?;
        let policy = login_policy(&control, config);
        let accounts = accounts::Accounts::open(&paths.poppasswd_cdb, &paths.secrets, policy)?;
        Ok(Snapshot {
            control,
            users,
            accounts,
            config: config.clone(),
            availability: Availability::default(),
            aliases: HashMap::new(),
        })
    }

    /// The account texts compiled in memory (no cdb is written or read): `me`,
    /// `locals` and `smtproutes` still come from `control_dir`, rcpthosts and
    /// virtualdomains from `texts`. An empty assign text is no users/cdb at all, as a
    /// missing file is; an invalid text is an error (the caller keeps its old tables).
    pub fn from_texts(
        control_dir: &Path,
        texts: &AccountTexts,
        config: &Arc<Config>,
    ) -> Result<Snapshot, EngineError> {
        let control =
            ControlFiles::load_with(control_dir, &texts.rcpthosts, &texts.virtualdomains)?;
        let users = UsersCdb::from_text(&texts.assign)
            .map_err(|e| EngineError::Assign(users_cdb::CompileError::Parse(e)))?;
        let policy = login_policy(&control, config);
        let accounts = accounts::Accounts::from_texts(&texts.poppasswd, &texts.secrets, policy)
            .map_err(|e| EngineError::Poppasswd(accounts::CompileError::Parse(e)))?;
        let table = aliastable::parse(&texts.aliases).map_err(EngineError::Aliases)?;
        let aliases = alias_files(&control, users.as_ref(), &table);
        Ok(Snapshot {
            control,
            users,
            accounts,
            config: config.clone(),
            availability: Availability::default(),
            aliases,
        })
    }

    /// Share `availability` (the engine's) with this snapshot's lookups.
    pub fn with_availability(mut self, availability: &Availability) -> Snapshot {
        self.accounts = self.accounts.with_availability(availability.clone());
        self.availability = availability.clone();
        self
    }
}

/// Each alias where the files backend would have its file: `local@domain` rewritten
/// and looked up as a recipient is (the route's home, the first `.qmail` name tried).
/// An alias of a domain that has no route here leads nowhere and is left out.
fn alias_files(
    control: &ControlFiles,
    users: Option<&UsersCdb>,
    table: &aliastable::Aliases,
) -> HashMap<(Vec<u8>, Vec<u8>), Vec<u8>> {
    let mut out = HashMap::new();
    let Some(users) = users else {
        return out;
    };
    for (address, lines) in table {
        let Rewrite::Local { address, .. } =
            rewrite(address.as_bytes(), &control.locals, &control.virtualdomains)
        else {
            continue;
        };
        let at = address
            .iter()
            .rposition(|&b| b == b'@')
            .unwrap_or(address.len());
        let Ok(Some(a)) = users.lookup(&address[..at]) else {
            continue;
        };
        if let Some(first) = dotqmail::candidates(&a.dash, &a.ext).into_iter().next() {
            out.insert((a.home, first.name), aliastable::file_text(lines));
        }
    }
    out
}

fn login_policy(control: &ControlFiles, config: &Config) -> accounts::LoginPolicy {
    accounts::LoginPolicy {
        default_domain: config.default_domain.clone(),
        ip_domains: config.ip_domains.clone(),
        alias_domains: aliasdomains::alias_map(
            control
                .virtualdomains
                .entries()
                .map(|v| (v.key.as_slice(), v.prepend.as_slice())),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::LoginContext;
    use proptest::prelude::*;

    fn small() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop::sample::select(b"aAbB-.".to_vec()), 0..4)
            .prop_map(|v| String::from_utf8(v).unwrap_or_default())
    }

    /// An assign text: simple and wildcard lines (repeated locals included), the dot.
    fn assign_text() -> impl Strategy<Value = String> {
        proptest::collection::vec((any::<bool>(), small(), small(), 1u32..4), 0..8).prop_map(|v| {
            let mut t = String::new();
            for (i, (wild, local, pre, uid)) in v.into_iter().enumerate() {
                let c = if wild { '+' } else { '=' };
                t.push_str(&format!("{c}{local}:u{i}:{uid}:7:/h{i}:-:{pre}:\n"));
            }
            t.push_str(".\n");
            t
        })
    }

    /// A poppasswd text: logins that differ only in case, blank and comment lines.
    fn poppasswd_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(("[aAbB]{1,2}@[xX]", "[a-z0-9$./]{0,12}", 0u8..3), 0..8).prop_map(
            |v| {
                let mut t = String::new();
                for (i, (login, hash, extra)) in v.into_iter().enumerate() {
                    match extra {
                        0 => t.push_str("# comment\n\n"),
                        1 => t.push_str(&format!("{login}:{hash}:{i}:/home/{i}:extra\n")),
                        _ => {}
                    }
                    t.push_str(&format!("{login}:{hash}:o{i}:/home/{i}\n"));
                }
                t
            },
        )
    }

    fn root_with(
        texts: &AccountTexts,
        config: &Arc<Config>,
    ) -> (tempfile::TempDir, Snapshot, Snapshot) {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::create_dir_all(&paths.control).unwrap();
        std::fs::create_dir_all(paths.assign.parent().unwrap()).unwrap();
        std::fs::write(paths.control.join("me"), "mx.example\n").unwrap();
        for (rel, field) in super::super::source::FILES {
            std::fs::write(dir.path().join(rel), field(texts)).unwrap();
        }
        users_cdb::compile(&texts.assign, &paths.users_cdb).unwrap();
        accounts::compile(&texts.poppasswd, &paths.poppasswd_cdb).unwrap();
        let files = Snapshot::load(&paths, config).unwrap();
        let memory = Snapshot::from_texts(&paths.control, texts, config).unwrap();
        (dir, files, memory)
    }

    proptest! {
        // Each case writes and fsyncs real files, so fewer of them.
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn file_and_memory_snapshots_answer_alike(
            assign in assign_text(),
            poppasswd in poppasswd_text(),
            locals in proptest::collection::vec(small(), 1..8),
            logins in proptest::collection::vec("[aAbBc]{1,2}(@[xXy])?", 1..8),
        ) {
            let texts = AccountTexts {
                assign: assign.into_bytes(),
                poppasswd: poppasswd.into_bytes(),
                secrets: b"a@x:s1\nA@X:s2\nb@x:{CRAM-MD5}00\n".to_vec(),
                rcpthosts: b"x\n.y\n".to_vec(),
                virtualdomains: b"y:a\n".to_vec(),
                quota: Vec::new(),
                aliases: Vec::new(),
                sites: Vec::new(),
            };
            let config = Arc::new(Config { default_domain: Some("x".into()), ..Config::default() });
            let (_dir, files, memory) = root_with(&texts, &config);
            for local in &locals {
                let f = files.users.as_ref().map(|u| u.lookup(local.as_bytes()).unwrap());
                let m = memory.users.as_ref().map(|u| u.lookup(local.as_bytes()).unwrap());
                prop_assert_eq!(f, m, "local {:?}", local);
            }
            for login in &logins {
                let ctx = LoginContext::default();
                let f = files.accounts.find(login.as_bytes(), ctx).unwrap();
                let m = memory.accounts.find(login.as_bytes(), ctx).unwrap();
                if let Some(a) = &f {
                    prop_assert_eq!(
                        files.accounts.stored_secret(a).map(|s| s.dovecot_credential()),
                        memory.accounts.stored_secret(a).map(|s| s.dovecot_credential())
                    );
                }
                prop_assert_eq!(f, m, "login {:?}", login);
                let domain = login.rsplit('@').next().unwrap_or_default();
                prop_assert_eq!(
                    files.control.rcpthosts.accepts(domain.as_bytes()).unwrap(),
                    memory.control.rcpthosts.accepts(domain.as_bytes()).unwrap()
                );
            }
        }
    }

    #[test]
    fn empty_assign_is_no_table_and_bad_texts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(Config::default());
        let s = Snapshot::from_texts(dir.path(), &AccountTexts::default(), &config).unwrap();
        assert!(s.users.is_none());
        assert!(s.accounts.is_loaded());
        assert!(!s.control.rcpthosts.accepts(b"x").unwrap());
        let bad = AccountTexts {
            assign: b"=a:u:1:1:/h:::\n".to_vec(),
            ..AccountTexts::default()
        };
        assert!(matches!(
            Snapshot::from_texts(dir.path(), &bad, &config),
            Err(EngineError::Assign(_))
        ));
        let bad = AccountTexts {
            poppasswd: b"a@x:h\n".to_vec(),
            ..AccountTexts::default()
        };
        assert!(matches!(
            Snapshot::from_texts(dir.path(), &bad, &config),
            Err(EngineError::Poppasswd(_))
        ));
    }

    #[test]
    fn unavailable_lookups_are_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let config = Arc::new(Config::default());
        let texts = AccountTexts {
            poppasswd: b"a@x:h:1:/h\n".to_vec(),
            ..AccountTexts::default()
        };
        let a = Availability::default();
        let s = Snapshot::from_texts(dir.path(), &texts, &config)
            .unwrap()
            .with_availability(&a);
        let ctx = LoginContext::default();
        assert!(s.accounts.find(b"a@x", ctx).unwrap().is_some());
        a.set_unavailable("database down");
        assert!(matches!(
            s.accounts.find(b"a@x", ctx),
            Err(crate::engine::AuthError::Temporary(_))
        ));
        assert!(matches!(
            s.accounts.authenticate(b"nobody@x", b"pw", ctx),
            Err(crate::engine::AuthError::Temporary(_))
        ));
        assert!(super::super::resolve::resolve(&s, b"a@x", true).is_err());
        a.set_available();
        assert!(s.accounts.find(b"a@x", ctx).unwrap().is_some());
    }

    #[test]
    fn aliases_answer_before_the_homes_files_and_defaults_still_catch() {
        use crate::engine::resolve::{Resolution, resolve};
        use crate::qmail::dotqmail::Instruction;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("dom");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::create_dir(dir.path().join("control")).unwrap();
        let write = |name: &str, text: &str| {
            let p = home.join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        };
        write(".qmail-info", "&file@elsewhere.org\n");
        write(".qmail-default", "&catchall@elsewhere.org\n");
        let texts = AccountTexts {
            assign: format!("+example.com-:u:1000:1000:{}:-::\n.\n", home.display()).into_bytes(),
            rcpthosts: b"example.com\nalias.org\n".to_vec(),
            virtualdomains: b"example.com:example.com\nalias.org:example.com\n".to_vec(),
            aliases: b"info@example.com:&table@elsewhere.org\nbox@example.com:./box/Maildir/\n"
                .to_vec(),
            ..AccountTexts::default()
        };
        let config = Arc::new(Config::default());
        let snap = Snapshot::from_texts(&dir.path().join("control"), &texts, &config).unwrap();
        let first = |address: &str| match resolve(&snap, address.as_bytes(), true).unwrap() {
            Resolution::Local(t) => t.instructions.instructions[0].1.clone(),
            other => panic!("{address}: {other:?}"),
        };
        let fwd = |a: &str| Instruction::Forward(a.as_bytes().to_vec());
        // The row outranks the file of its own name, in any case, through the alias domain.
        assert_eq!(first("info@example.com"), fwd("table@elsewhere.org"));
        assert_eq!(first("INFO@Example.COM"), fwd("table@elsewhere.org"));
        assert_eq!(first("info@alias.org"), fwd("table@elsewhere.org"));
        assert_eq!(
            first("box@example.com"),
            Instruction::Maildir(b"./box/Maildir/".to_vec())
        );
        // What no row names still reaches the disk's catch-all.
        assert_eq!(first("nobody@example.com"), fwd("catchall@elsewhere.org"));
        // Without the catch-all, an address that no row names is unknown.
        std::fs::remove_file(home.join(".qmail-default")).unwrap();
        assert!(matches!(
            resolve(&snap, b"nobody@example.com", true).unwrap(),
            Resolution::Unknown { .. }
        ));
        // A bad alias text is refused (the caller keeps its old tables).
        let bad = AccountTexts {
            aliases: b"info@example.com:|rm -rf /\n".to_vec(),
            ..texts
        };
        assert!(Snapshot::from_texts(&dir.path().join("control"), &bad, &config).is_err());
    }
}
