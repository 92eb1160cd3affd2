//! POP accounts: `users/poppasswd` (checkpoppasswd's `login:hash:owner:home`), its
//! compiled `users/poppasswd.cdb`, the optional `users/secrets` for APOP and CRAM-MD5
//! (mode 0600, or 0640 for `[accounts] reader_group`), and the login forms every face
//! of turnmail accepts.
//!
//! `users/secrets` holds `login:secret` lines. A secret is plaintext (APOP and
//! CRAM-MD5; the secret may contain colons), or `{CRAM-MD5}` and 64 hex digits: the
//! HMAC-MD5 states of a secret in Dovecot's scheme (`cram.rs`), which serve CRAM-MD5
//! alone and do not give the secret back. `turnmail user secret` writes both forms.
//!
//! One table and one verification path serve POP3, ODMR, SMTP AUTH and the
//! checkpassword program, so a login behaves the same everywhere. Lookups go through
//! the cdb so that they cost the same at 100 accounts and at 100,000.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use super::cram;
use super::crypt;
use crate::qmail::control::read_lines;

/// Longest login accepted from a client, in bytes.
pub const MAX_LOGIN: usize = 255;
/// Longest password accepted from a client, in bytes.
pub const MAX_PASSWORD: usize = 512;

/// One parsed `users/poppasswd` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLine {
    pub line: usize,
    pub login: Vec<u8>,
    pub hash: Vec<u8>,
    pub owner: Vec<u8>,
    pub home: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("users/poppasswd line {line}: {reason}")]
pub struct PoppasswdError {
    pub line: usize,
    pub reason: &'static str,
}

/// Parse `users/poppasswd`. Empty lines and `#` comments are skipped; fields after the
/// fourth are ignored (vqpop-era files carry extra ones).
pub fn parse_poppasswd(text: &[u8]) -> Result<Vec<AccountLine>, PoppasswdError> {
    let mut out = Vec::new();
    for l in read_lines(text) {
        let err = |reason| PoppasswdError {
            line: l.line,
            reason,
        };
        if l.text.contains(&0) {
            return Err(err("NUL byte"));
        }
        let mut f = l.text.split(|&b| b == b':');
        let (Some(login), Some(hash), Some(owner), Some(home)) =
            (f.next(), f.next(), f.next(), f.next())
        else {
            return Err(err("expected login:hash:owner:home"));
        };
        if login.is_empty() {
            return Err(err("empty login"));
        }
        if owner.is_empty() {
            return Err(err("empty owner"));
        }
        // A line's trailing blanks are already gone; when fields follow the home, its
        // own trailing blanks go too, so both forms of a line mean the same path.
        let home = home.trim_ascii_end();
        if !home.starts_with(b"/") {
            return Err(err("home must be an absolute path"));
        }
        out.push(AccountLine {
            line: l.line,
            login: login.to_vec(),
            hash: hash.to_vec(),
            owner: owner.to_vec(),
            home: home.to_vec(),
        });
    }
    Ok(out)
}

/// Write account lines back in the canonical format.
pub fn write_poppasswd(lines: &[AccountLine]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in lines {
        for (i, f) in [&a.login, &a.hash, &a.owner, &a.home]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                out.push(b':');
            }
            out.extend_from_slice(f);
        }
        out.push(b'\n');
    }
    out
}

fn cdb_key(login: &[u8]) -> Vec<u8> {
    login.to_ascii_lowercase()
}

/// Compile poppasswd text into `cdb_path` (key: lowercased login; value
/// `login\0hash\0owner\0home`). The first line for a login wins. On a parse error the
/// old cdb is kept.
pub fn compile(text: &[u8], cdb_path: &Path) -> Result<usize, CompileError> {
    compile_with(text, cdb_path, &mut |_, _| {})
}

/// [`compile`], calling `tick(done, total)` as records are written.
pub fn compile_with(
    text: &[u8],
    cdb_path: &Path,
    tick: &mut dyn FnMut(usize, usize),
) -> Result<usize, CompileError> {
    compile_for(text, cdb_path, None, tick)
}

/// [`compile_with`], the cdb given the `[accounts] reader_group` (`readers.rs`).
pub fn compile_for(
    text: &[u8],
    cdb_path: &Path,
    group: Option<&super::readers::ReaderGroup>,
    tick: &mut dyn FnMut(usize, usize),
) -> Result<usize, CompileError> {
    let lines = parse_poppasswd(text)?;
    let mode = super::readers::CDB_MODE;
    crate::fsutil::replace_with_group(cdb_path, mode, group, |f| {
        let mut m = cdb2::CDBMake::new(f.try_clone()?)?;
        for (i, a) in lines.iter().enumerate() {
            if i % crate::qmail::users_cdb::TICK_EVERY == 0 {
                tick(i, lines.len());
            }
            let (k, v) = record(a);
            m.add(&k, &v)?;
        }
        tick(lines.len(), lines.len());
        m.finish()?;
        Ok(())
    })?;
    Ok(lines.len())
}

/// One line's poppasswd.cdb record: key the lowercased login, value
/// `login\0hash\0owner\0home`.
fn record(a: &AccountLine) -> (Vec<u8>, Vec<u8>) {
    let mut v = Vec::with_capacity(a.login.len() + a.hash.len() + a.home.len() + 16);
    for (i, part) in [&a.login, &a.hash, &a.owner, &a.home]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            v.push(0);
        }
        v.extend_from_slice(part);
    }
    (cdb_key(&a.login), v)
}

#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error(transparent)]
    Parse(#[from] PoppasswdError),
    #[error("writing users/poppasswd.cdb: {0}")]
    Io(#[from] io::Error),
}

/// A Unix identity mail is stored and served as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Resolve an owner field: a user name (getpwnam) or a decimal uid (its passwd entry
/// gives the gid; without one the gid equals the uid).
pub fn resolve_owner(owner: &[u8]) -> io::Result<Option<Owner>> {
    let name = std::str::from_utf8(owner)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "owner is not UTF-8"))?;
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        let uid: u32 = name
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "uid out of range"))?;
        let gid = nix::unistd::User::from_uid(uid.into())
            .map_err(io::Error::from)?
            .map_or(uid, |u| u.gid.as_raw());
        return Ok(Some(Owner { uid, gid }));
    }
    Ok(nix::unistd::User::from_name(name)
        .map_err(io::Error::from)?
        .map(|u| Owner {
            uid: u.uid.as_raw(),
            gid: u.gid.as_raw(),
        }))
}

/// An account found for a login (not yet authenticated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The login as stored in poppasswd.
    pub login: Vec<u8>,
    pub hash: Vec<u8>,
    pub owner: Vec<u8>,
    pub home: PathBuf,
}

impl Account {
    pub fn maildir(&self) -> PathBuf {
        self.home.join("Maildir")
    }

    /// The domain part of the login, if it is an address.
    pub fn domain(&self) -> Option<&[u8]> {
        let at = self.login.iter().rposition(|&b| b == b'@')?;
        Some(&self.login[at + 1..])
    }
}

/// Where the client connected, for the "domain bound to the local IP" login form.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoginContext {
    pub local_ip: Option<IpAddr>,
}

/// Settings that shape login resolution.
#[derive(Debug, Clone, Default)]
pub struct LoginPolicy {
    pub default_domain: Option<String>,
    pub ip_domains: HashMap<IpAddr, String>,
    /// Alias domains (`aliasdomains.rs`): `user@alias` logs in as `user@target`.
    pub alias_domains: super::aliasdomains::AliasMap,
}

/// Why a login was refused; each maps to a distinct reply and exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("bad login or password")]
    Bad,
    #[error("login refused: account is owned by root")]
    Root,
    #[error("temporary trouble: {0}")]
    Temporary(String),
}

/// The authenticated account with its resolved owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub account: Account,
    pub owner: Owner,
}

/// The account tables of one engine snapshot.
#[derive(Default)]
pub struct Accounts {
    table: Option<Table>,
    secrets: HashMap<Vec<u8>, Secret>,
    policy: LoginPolicy,
    availability: super::availability::Availability,
}

/// poppasswd.cdb, or the same records in memory (accounts kept in a database).
enum Table {
    File(cdb2::CDB),
    Memory(HashMap<Vec<u8>, Vec<u8>>),
}

/// One account's APOP/CRAM-MD5 secret, as stored in `users/secrets`.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The secret itself: APOP and CRAM-MD5.
    Plain(Vec<u8>),
    /// Its HMAC-MD5 states: CRAM-MD5 only.
    CramMd5(cram::Context),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({})", self.kind())
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        if let Secret::Plain(v) = self {
            v.iter_mut().for_each(|b| *b = 0);
            std::hint::black_box(v);
        }
    }
}

impl Secret {
    /// Read a stored value. None for a `{CRAM-MD5}` value without its 64 hex digits,
    /// which can serve nothing (and is not a plaintext secret either).
    pub fn parse(value: &[u8]) -> Option<Secret> {
        if cram::has_prefix(value) {
            return cram::Context::parse_stored(value).map(Secret::CramMd5);
        }
        Some(Secret::Plain(value.to_vec()))
    }

    /// What it serves: `apop` (plaintext: APOP and CRAM-MD5) or `cram-md5` (only that).
    pub fn kind(&self) -> &'static str {
        match self {
            Secret::Plain(_) => "apop",
            Secret::CramMd5(_) => "cram-md5",
        }
    }

    /// The HMAC-MD5 states, made from the plaintext when that is what is stored.
    pub fn cram_context(&self) -> cram::Context {
        match self {
            Secret::Plain(p) => cram::Context::from_secret(p),
            Secret::CramMd5(c) => c.clone(),
        }
    }

    /// The credential in Dovecot's `{SCHEME}value` form, for its checkpassword
    /// credentials lookup: `{PLAIN}secret` (Dovecot derives every scheme from it) or
    /// `{CRAM-MD5}hex` (which serves only CRAM-MD5).
    pub fn dovecot_credential(&self) -> Vec<u8> {
        match self {
            Secret::Plain(p) => [b"{PLAIN}".as_slice(), p].concat(),
            Secret::CramMd5(c) => c.stored().into_bytes(),
        }
    }
}

/// A login is refused before any lookup when it could smuggle path or protocol bytes.
pub fn login_is_sane(login: &[u8]) -> bool {
    !login.is_empty()
        && login.len() <= MAX_LOGIN
        && !login
            .iter()
            .any(|&b| b <= b' ' || b == 0x7f || b == b'/' || b == b':')
        && !login.windows(2).any(|w| w == b"..")
}

impl Accounts {
    /// Open `poppasswd.cdb` (missing is fine: no accounts) and `secrets` (optional).
    pub fn open(cdb_path: &Path, secrets_path: &Path, policy: LoginPolicy) -> io::Result<Accounts> {
        let cdb = match cdb2::CDB::open(cdb_path) {
            Ok(c) => Some(c),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", cdb_path.display()),
                ));
            }
        };
        let secrets = match crate::fsutil::read_limited(secrets_path, 64 << 20) {
            Ok(text) => parse_secrets(&text),
            Err(e) if e.kind() == io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", secrets_path.display()),
                ));
            }
        };
        Ok(Accounts {
            table: cdb.map(Table::File),
            secrets,
            policy,
            availability: Default::default(),
        })
    }

    /// The tables of a poppasswd and a secrets text, in memory: the records
    /// poppasswd.cdb would hold (first line of a login wins), the secrets as read from
    /// the file.
    pub fn from_texts(
        poppasswd: &[u8],
        secrets: &[u8],
        policy: LoginPolicy,
    ) -> Result<Accounts, PoppasswdError> {
        let lines = parse_poppasswd(poppasswd)?;
        let mut map = HashMap::with_capacity(lines.len());
        for a in &lines {
            let (k, v) = record(a);
            map.entry(k).or_insert(v);
        }
        Ok(Accounts {
            table: Some(Table::Memory(map)),
            secrets: parse_secrets(secrets),
            policy,
            availability: Default::default(),
        })
    }

    /// Share the engine's availability: while it is unavailable every lookup is a
    /// temporary failure, never "no such account".
    pub fn with_availability(mut self, availability: super::availability::Availability) -> Self {
        self.availability = availability;
        self
    }

    fn get(&self, key: &[u8]) -> Result<Option<Account>, AuthError> {
        let v = match &self.table {
            None => return Ok(None),
            Some(Table::File(cdb)) => match cdb.get(&cdb_key(key)) {
                None => return Ok(None),
                Some(v) => {
                    v.map_err(|e| AuthError::Temporary(format!("reading poppasswd.cdb: {e}")))?
                }
            },
            Some(Table::Memory(map)) => match map.get(&cdb_key(key)) {
                None => return Ok(None),
                Some(v) => v.clone(),
            },
        };
        let mut f = v.split(|&b| b == 0);
        match (f.next(), f.next(), f.next(), f.next()) {
            (Some(login), Some(hash), Some(owner), Some(home)) => Ok(Some(Account {
                login: login.to_vec(),
                hash: hash.to_vec(),
                owner: owner.to_vec(),
                home: PathBuf::from(
                    <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(home),
                ),
            })),
            _ => Err(AuthError::Temporary(
                "malformed poppasswd.cdb record".into(),
            )),
        }
    }

    /// The account stored under `login`, else under its alias domain's target.
    fn get_or_alias(&self, login: &[u8]) -> Result<Option<Account>, AuthError> {
        if let Some(a) = self.get(login)? {
            return Ok(Some(a));
        }
        match super::aliasdomains::canonical(login, &self.policy.alias_domains) {
            Some(target) => self.get(&target),
            None => Ok(None),
        }
    }

    /// Find the account for a login in any accepted form: `user@domain`,
    /// `user%domain`, a bare login as stored, or a bare user plus the domain bound to
    /// the local IP address, then plus the default domain; `user@alias` of an alias
    /// domain is `user@target` (an account stored under the alias itself wins).
    pub fn find(&self, login: &[u8], ctx: LoginContext) -> Result<Option<Account>, AuthError> {
        self.availability.check().map_err(AuthError::Temporary)?;
        if !login_is_sane(login) {
            return Ok(None);
        }
        let mut login = login.to_vec();
        if !login.contains(&b'@')
            && let Some(p) = login.iter().position(|&b| b == b'%')
        {
            login[p] = b'@';
        }
        if let Some(a) = self.get_or_alias(&login)? {
            return Ok(Some(a));
        }
        if login.contains(&b'@') {
            return Ok(None);
        }
        let bound = ctx.local_ip.and_then(|ip| self.policy.ip_domains.get(&ip));
        for domain in bound.into_iter().chain(self.policy.default_domain.as_ref()) {
            let mut full = login.clone();
            full.push(b'@');
            full.extend_from_slice(domain.as_bytes());
            if let Some(a) = self.get_or_alias(&full)? {
                return Ok(Some(a));
            }
        }
        Ok(None)
    }

    /// Check a plaintext password. Unknown logins cost the same crypt(3) time as known
    /// ones; owners that resolve to uid 0 never authenticate.
    pub fn authenticate(
        &self,
        login: &[u8],
        password: &[u8],
        ctx: LoginContext,
    ) -> Result<Authenticated, AuthError> {
        if password.len() > MAX_PASSWORD {
            return Err(AuthError::Bad);
        }
        let Some(account) = self.find(login, ctx)? else {
            crypt::verify_dummy(password);
            return Err(AuthError::Bad);
        };
        if !crypt::verify(password, &account.hash) {
            return Err(AuthError::Bad);
        }
        self.finish(account)
    }

    /// APOP (RFC 1939): `digest` is hex MD5 of the greeting's timestamp followed by the
    /// account's stored secret. Accounts without a secret cannot use APOP.
    pub fn authenticate_apop(
        &self,
        login: &[u8],
        timestamp: &[u8],
        digest: &[u8],
        ctx: LoginContext,
    ) -> Result<Authenticated, AuthError> {
        let account = self.find(login, ctx)?.ok_or(AuthError::Bad)?;
        let Some(Secret::Plain(secret)) = self.secret(&account.login) else {
            return Err(AuthError::Bad);
        };
        let mut h = Md5::new();
        h.update(timestamp);
        h.update(secret);
        let want = hex(&h.finalize());
        if !bool::from(want.as_bytes().ct_eq(&digest.to_ascii_lowercase())) {
            return Err(AuthError::Bad);
        }
        self.finish(account)
    }

    /// CRAM-MD5 (RFC 2195): `digest` is hex HMAC-MD5 of the challenge keyed by the
    /// account's stored secret (computed from the plaintext or resumed from the stored
    /// HMAC-MD5 states).
    pub fn authenticate_cram_md5(
        &self,
        login: &[u8],
        challenge: &[u8],
        digest: &[u8],
        ctx: LoginContext,
    ) -> Result<Authenticated, AuthError> {
        let account = self.find(login, ctx)?.ok_or(AuthError::Bad)?;
        let secret = self.secret(&account.login).ok_or(AuthError::Bad)?;
        let want = hex(&secret.cram_context().hmac(challenge));
        if !bool::from(want.as_bytes().ct_eq(&digest.to_ascii_lowercase())) {
            return Err(AuthError::Bad);
        }
        self.finish(account)
    }

    /// Whether the account has a plaintext secret (APOP possible).
    pub fn has_apop_secret(&self, account: &Account) -> bool {
        matches!(self.secret(&account.login), Some(Secret::Plain(_)))
    }

    /// The account's stored secret (a credential either way). Only for handing to a
    /// trusted authentication server that derives its own digests from it (Dovecot's
    /// checkpassword credentials lookup); never log it.
    pub fn stored_secret(&self, account: &Account) -> Option<&Secret> {
        self.secret(&account.login)
    }

    fn secret(&self, login: &[u8]) -> Option<&Secret> {
        self.secrets.get(&cdb_key(login))
    }

    fn finish(&self, account: Account) -> Result<Authenticated, AuthError> {
        let owner = resolve_owner(&account.owner)
            .map_err(|e| AuthError::Temporary(format!("looking up owner: {e}")))?
            .ok_or_else(|| {
                AuthError::Temporary(format!(
                    "owner {:?} of {:?} does not exist",
                    String::from_utf8_lossy(&account.owner),
                    String::from_utf8_lossy(&account.login)
                ))
            })?;
        if owner.uid == 0 {
            return Err(AuthError::Root);
        }
        Ok(Authenticated { account, owner })
    }

    pub fn is_loaded(&self) -> bool {
        self.table.is_some()
    }
}

/// `users/secrets`: `login:secret` lines (the secret may contain colons); the first
/// line of a login wins. What cannot serve (no colon, a `{CRAM-MD5}` value without its
/// digits) is skipped here; [`check_secrets`] names it.
pub fn parse_secrets(text: &[u8]) -> HashMap<Vec<u8>, Secret> {
    let mut m = HashMap::new();
    for l in read_lines(text) {
        if let Some(c) = l.text.iter().position(|&b| b == b':')
            && let Some(secret) = Secret::parse(&l.text[c + 1..])
        {
            m.entry(cdb_key(&l.text[..c])).or_insert(secret);
        }
    }
    m
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("users/secrets line {line}: {reason}")]
pub struct SecretsError {
    pub line: usize,
    pub reason: &'static str,
}

/// Every line of `users/secrets` that cannot serve, for edits (which refuse to write
/// one) and `turnmail check`.
pub fn check_secrets(text: &[u8]) -> Vec<SecretsError> {
    let mut out = Vec::new();
    for l in read_lines(text) {
        let err = |reason| SecretsError {
            line: l.line,
            reason,
        };
        match l.text.iter().position(|&b| b == b':') {
            None => out.push(err("expected login:secret")),
            Some(0) => out.push(err("empty login")),
            Some(_) if l.text.contains(&0) => out.push(err("NUL byte")),
            Some(c) if l.text.len() == c + 1 => out.push(err("empty secret")),
            Some(c) if Secret::parse(&l.text[c + 1..]).is_none() => {
                out.push(err("{CRAM-MD5} must be followed by 64 hex digits"))
            }
            Some(_) => {}
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A non-root owner: this user, or `nobody` when the tests run as root (root-owned
    /// accounts are refused by design).
    fn me() -> String {
        let uid = nix::unistd::getuid();
        if uid.is_root() {
            return "nobody".into();
        }
        nix::unistd::User::from_uid(uid).unwrap().unwrap().name
    }

    fn setup(lines: &str, secrets: &str, policy: LoginPolicy) -> (tempfile::TempDir, Accounts) {
        let d = tempfile::tempdir().unwrap();
        compile(lines.as_bytes(), &d.path().join("p.cdb")).unwrap();
        std::fs::write(d.path().join("s"), secrets).unwrap();
        let a = Accounts::open(&d.path().join("p.cdb"), &d.path().join("s"), policy).unwrap();
        (d, a)
    }

    #[test]
    fn parse_errors_name_the_line() {
        assert_eq!(
            parse_poppasswd(b"a:b:c:/h\n\nbad\n").unwrap_err(),
            PoppasswdError {
                line: 3,
                reason: "expected login:hash:owner:home"
            }
        );
        assert_eq!(
            parse_poppasswd(b":h:o:/x\n").unwrap_err().reason,
            "empty login"
        );
        assert_eq!(
            parse_poppasswd(b"a:h:o:rel\n").unwrap_err().reason,
            "home must be an absolute path"
        );
        assert_eq!(
            parse_poppasswd(b"a:h\0:o:/x\n").unwrap_err().reason,
            "NUL byte"
        );
        let ok = parse_poppasswd(
            b"# c\ntestid:DmIMm9e5Hc8ic:popuser:/var/qmail/popboxes/domain-com/joe:extra\n",
        )
        .unwrap();
        assert_eq!(ok[0].login, b"testid");
        assert_eq!(ok[0].home, b"/var/qmail/popboxes/domain-com/joe");
    }

    #[test]
    fn login_forms() {
        let owner = me();
        let h = crypt::hash_with_prefix(b"pw", "$1$").unwrap();
        let text = format!(
            "joe@example.com:{h}:{owner}:/m/joe\nann@other.example:{h}:{owner}:/m/ann\ntestid:{h}:{owner}:/m/t\n"
        );
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let policy = LoginPolicy {
            default_domain: Some("example.com".into()),
            ip_domains: [(ip, "other.example".to_string())].into(),
            alias_domains: [(b"example.net".to_vec(), b"example.com".to_vec())].into(),
        };
        let (_d, a) = setup(&text, "", policy);
        let none = LoginContext::default();
        let bound = LoginContext { local_ip: Some(ip) };
        let login = |l: &str, c| a.find(l.as_bytes(), c).unwrap().map(|x| x.login);
        assert_eq!(
            login("joe@example.com", none),
            Some(b"joe@example.com".to_vec())
        );
        assert_eq!(
            login("JOE@Example.COM", none),
            Some(b"joe@example.com".to_vec())
        );
        assert_eq!(
            login("joe%example.com", none),
            Some(b"joe@example.com".to_vec())
        );
        assert_eq!(login("testid", none), Some(b"testid".to_vec()));
        assert_eq!(login("joe", none), Some(b"joe@example.com".to_vec()));
        assert_eq!(login("ann", none), None);
        assert_eq!(login("ann", bound), Some(b"ann@other.example".to_vec()));
        assert_eq!(login("joe@nowhere", none), None);
        // An alias domain's logins are its target's.
        assert_eq!(
            login("Joe@Example.NET", none),
            Some(b"joe@example.com".to_vec())
        );
        assert_eq!(
            login("joe%example.net", none),
            Some(b"joe@example.com".to_vec())
        );
        assert_eq!(login("ann@example.net", none), None);
        assert!(a.authenticate(b"joe@example.net", b"pw", none).is_ok());
        for bad in ["", "../etc", "a/b", "a b", "a\0b", "a:b", "a\r\nb"] {
            assert_eq!(login(bad, none), None, "{bad:?}");
        }
        assert_eq!(login(&"x".repeat(300), none), None);
        assert!(a.authenticate(b"joe", b"pw", none).is_ok());
        assert_eq!(a.authenticate(b"joe", b"px", none), Err(AuthError::Bad));
        assert_eq!(a.authenticate(b"nobody", b"pw", none), Err(AuthError::Bad));
    }

    #[test]
    fn root_owned_accounts_never_authenticate() {
        let h = crypt::hash_with_prefix(b"pw", "$1$").unwrap();
        let (_d, a) = setup(
            &format!("r@x:{h}:root:/r\nz@x:{h}:0:/z\nghost@x:{h}:no-such-user-here:/g\n"),
            "",
            LoginPolicy::default(),
        );
        let c = LoginContext::default();
        assert_eq!(a.authenticate(b"r@x", b"pw", c), Err(AuthError::Root));
        assert_eq!(a.authenticate(b"z@x", b"pw", c), Err(AuthError::Root));
        assert!(matches!(
            a.authenticate(b"ghost@x", b"pw", c),
            Err(AuthError::Temporary(_))
        ));
    }

    #[test]
    fn apop_and_cram_md5() {
        let owner = me();
        let (_d, a) = setup(
            &format!("joe@x:*:{owner}:/m/joe\nann@x:*:{owner}:/m/ann\n"),
            "joe@x:tanstaaf\n",
            LoginPolicy::default(),
        );
        let c = LoginContext::default();
        // RFC 1939's APOP example.
        let ts = b"<1896.697170952@dbc.mtview.ca.us>";
        assert!(
            a.authenticate_apop(b"joe@x", ts, b"c4c9334bac560ecc979e58001b3e22fb", c)
                .is_ok()
        );
        assert_eq!(
            a.authenticate_apop(b"joe@x", ts, b"c4c9334bac560ecc979e58001b3e22fc", c),
            Err(AuthError::Bad)
        );
        assert_eq!(
            a.authenticate_apop(b"ann@x", ts, b"c4c9334bac560ecc979e58001b3e22fb", c),
            Err(AuthError::Bad)
        );
        // RFC 2195's CRAM-MD5 example.
        let (_d2, b) = setup(
            &format!("tim:*:{owner}:/m/tim\n"),
            "tim:tanstaaftanstaaf\n",
            LoginPolicy::default(),
        );
        assert!(
            b.authenticate_cram_md5(
                b"tim",
                b"<1896.697170952@postoffice.reston.mci.net>",
                b"b913a602c7eda7a495b4e6e7334d3890",
                c
            )
            .is_ok()
        );
        // Password login against a `*` hash never succeeds.
        assert_eq!(a.authenticate(b"joe@x", b"*", c), Err(AuthError::Bad));
    }

    #[test]
    fn a_stored_cram_md5_context_serves_cram_md5_alone() {
        let owner = me();
        let ctx = cram::Context::from_secret(b"tanstaaftanstaaf").stored();
        let (_d, a) = setup(
            &format!("tim:*:{owner}:/m/tim\nann:*:{owner}:/m/ann\n"),
            &format!("tim:{ctx}\nann:{{CRAM-MD5}}0123\n"),
            LoginPolicy::default(),
        );
        let c = LoginContext::default();
        let challenge = b"<1896.697170952@postoffice.reston.mci.net>";
        let good = b"b913a602c7eda7a495b4e6e7334d3890";
        assert!(a.authenticate_cram_md5(b"tim", challenge, good, c).is_ok());
        assert_eq!(
            a.authenticate_cram_md5(b"tim", challenge, b"b913a602c7eda7a495b4e6e7334d3891", c),
            Err(AuthError::Bad)
        );
        // No plaintext, no APOP: not even with the context's own text.
        let tim = a.find(b"tim", c).unwrap().unwrap();
        assert!(!a.has_apop_secret(&tim));
        assert_eq!(a.stored_secret(&tim).unwrap().kind(), "cram-md5");
        assert_eq!(
            a.stored_secret(&tim).unwrap().dovecot_credential(),
            ctx.as_bytes()
        );
        // A prefix without its digits serves nothing, and is named.
        assert_eq!(
            a.authenticate_cram_md5(b"ann", challenge, good, c),
            Err(AuthError::Bad)
        );
        let errs =
            check_secrets(format!("tim:{ctx}\nann:{{CRAM-MD5}}0123\nbad\nx:\n:y\n").as_bytes());
        let lines: Vec<(usize, &str)> = errs.iter().map(|e| (e.line, e.reason)).collect();
        assert_eq!(
            lines,
            vec![
                (2, "{CRAM-MD5} must be followed by 64 hex digits"),
                (3, "expected login:secret"),
                (4, "empty secret"),
                (5, "empty login")
            ]
        );
    }

    #[test]
    fn first_line_wins_and_missing_cdb_means_no_accounts() {
        let owner = me();
        let h1 = crypt::hash_with_prefix(b"one", "$1$").unwrap();
        let h2 = crypt::hash_with_prefix(b"two", "$1$").unwrap();
        let (_d, a) = setup(
            &format!("dup@x:{h1}:{owner}:/a\nDUP@x:{h2}:{owner}:/b\n"),
            "",
            LoginPolicy::default(),
        );
        let c = LoginContext::default();
        assert!(a.authenticate(b"dup@x", b"one", c).is_ok());
        assert_eq!(a.authenticate(b"dup@x", b"two", c), Err(AuthError::Bad));
        let d = tempfile::tempdir().unwrap();
        let empty = Accounts::open(
            &d.path().join("no.cdb"),
            &d.path().join("no"),
            LoginPolicy::default(),
        )
        .unwrap();
        assert!(!empty.is_loaded());
        assert_eq!(empty.authenticate(b"a@b", b"c", c), Err(AuthError::Bad));
    }

    proptest! {
        #[test]
        fn poppasswd_never_panics(data in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = parse_poppasswd(&data);
            let _ = parse_secrets(&data);
            let _ = login_is_sane(&data);
        }

        #[test]
        fn poppasswd_round_trips(lines in proptest::collection::vec(
            ("[a-z0-9@.%_-]{1,20}", "[!-9;-~]{0,30}", "[a-z0-9]{1,8}", "/[a-z0-9/._-]{0,30}"), 0..20)) {
            let v: Vec<AccountLine> = lines.iter().enumerate().map(|(i, (l, h, o, p))| AccountLine {
                line: i + 1, login: l.as_bytes().to_vec(), hash: h.as_bytes().to_vec(),
                owner: o.as_bytes().to_vec(), home: p.as_bytes().to_vec(),
            }).collect();
            prop_assert_eq!(parse_poppasswd(&write_poppasswd(&v)).unwrap(), v);
        }
    }
}
