//! The edit transaction every operator command goes through: an exclusive flock on
//! `ROOT/run/edit.lock` (waiting, with a timeout), reads that see the edits staged so
//! far, validation of every new text by parsing it back, atomic replacement of each
//! file (`fsutil`), then the compiled cdbs rebuilt from exactly the text just written,
//! all before the lock is released. Two `turnmail user add` runs therefore never read
//! the same old poppasswd, and a running daemon, which re-reads files whose inode or
//! mtime changed, only ever sees whole files in a valid state.
//!
//! Files are written in the order they were staged, so a command controls what the
//! daemon can observe in between: delivery routes (assign) before the domain is
//! accepted (rcpthosts) on the way in, and the reverse on the way out. When run as
//! root, a replaced file keeps its owner and mode, and a new file or directory
//! (`run/`, the lock file itself) takes the owner of its directory (`owner.rs`), so
//! the mail user can still read and edit everything. Reads take a shared lock and
//! create nothing ([`Edit::begin_read`]).

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::edit_db::DbAccounts;
use super::error::{AdminError, Result, io_at};
use crate::engine::aliastable;
use crate::engine::readers::{self, ReaderGroup};
use crate::engine::{Paths, accounts};
use crate::fsutil::{self, write_atomic};
use crate::qmail::{assign, dotqmail, users_cdb};
use crate::spool::sitetable::{self, SiteRows};

/// How long an edit waits for another one by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// What a staged file is, so that it can be parsed back before it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// users/assign: qmail-newu's rules; users/cdb is recompiled.
    Assign,
    /// users/poppasswd: users/poppasswd.cdb is recompiled.
    Poppasswd,
    /// users/secrets: its mode and group follow `[accounts] reader_group`.
    Secrets,
    /// A control file (rcpthosts, virtualdomains, ...): no NUL bytes.
    Control,
    /// A `.qmail` file.
    DotQmail,
    /// A site's site.toml.
    SiteToml,
    /// turnmail.toml.
    Config,
    /// Anything else (RELAYHOST, exported text).
    Plain,
}

struct Staged {
    path: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
    kind: Kind,
}

/// An open edit of a mail root; the lock is held until it is committed or dropped.
pub struct Edit {
    root: PathBuf,
    paths: Paths,
    /// None for a read that found no lock file it could open.
    _lock: Option<Flock<File>>,
    staged: Vec<Staged>,
    /// Opened by [`Edit::begin_read`]: nothing may be written.
    shared: bool,
    /// The accounts as the database holds them (`[accounts] backend = "postgres"`,
    /// `edit_db.rs`); None when the root's files are the accounts.
    db: Option<DbAccounts>,
    /// The database's alias table after this edit, when it changes it.
    aliases: Option<aliastable::Aliases>,
    /// The database's site table after this edit, when it changes it.
    sites: Option<SiteRows>,
}

/// What a commit did.
#[derive(Debug, Default)]
pub struct Committed {
    pub written: Vec<PathBuf>,
    /// Compiled cdbs and their number of entries.
    pub compiled: Vec<(PathBuf, usize)>,
    /// The accounts' new version in the database, when the edit stored them there.
    pub version: Option<u64>,
}

fn lock_path(root: &Path) -> PathBuf {
    root.join("run").join("edit.lock")
}

fn need_mail_root(root: &Path) -> Result<()> {
    Ok(crate::mailroot::require(root)?)
}

/// flock(2) has no timeout: try without blocking and sleep in between.
fn lock_within(
    mut file: File,
    how: FlockArg,
    path: &Path,
    timeout: Duration,
) -> Result<Flock<File>> {
    let start = Instant::now();
    loop {
        match Flock::lock(file, how) {
            Ok(l) => return Ok(l),
            Err((f, nix::errno::Errno::EWOULDBLOCK)) => {
                if start.elapsed() >= timeout {
                    return Err(AdminError::LockTimeout {
                        path: path.to_path_buf(),
                        secs: timeout.as_secs(),
                    });
                }
                file = f;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err((_, e)) => return Err(io_at(path)(std::io::Error::from(e))),
        }
    }
}

impl Edit {
    /// Lock the root for editing, waiting up to [`DEFAULT_LOCK_TIMEOUT`].
    pub fn begin(root: &Path) -> Result<Edit> {
        Self::begin_with_timeout(root, DEFAULT_LOCK_TIMEOUT)
    }

    pub fn begin_with_timeout(root: &Path, timeout: Duration) -> Result<Edit> {
        Self::begin_on(root, timeout, true)
    }

    /// An edit of the root's files alone, even when turnmail.toml keeps the accounts
    /// in PostgreSQL: the account files are read from and written to the root (cdbs
    /// compiled), the database is not touched. For `turnmail db export`, which writes
    /// what it read from the database.
    pub fn begin_files(root: &Path) -> Result<Edit> {
        Self::begin_on(root, DEFAULT_LOCK_TIMEOUT, false)
    }

    fn begin_on(root: &Path, timeout: Duration, database: bool) -> Result<Edit> {
        need_mail_root(root)?;
        let run = root.join("run");
        crate::owner::create_dirs(&run, 0o700).map_err(io_at(&run))?;
        // A run/ left owned by root by an older version run as root: hand it back.
        crate::owner::adopt(&run).map_err(io_at(&run))?;
        let path = lock_path(root);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)
            .map_err(io_at(&path))?;
        crate::owner::adopt_file(&file, &path).map_err(io_at(&path))?;
        let lock = lock_within(file, FlockArg::LockExclusiveNonblock, &path, timeout)?;
        // Read under the lock: an edit of this root that committed before is seen.
        let db = if database {
            DbAccounts::open(root)?
        } else {
            None
        };
        Ok(Edit {
            root: root.to_path_buf(),
            paths: Paths::new(root),
            _lock: Some(lock),
            staged: Vec::new(),
            shared: false,
            db,
            aliases: None,
            sites: None,
        })
    }

    /// Open the root for reading only: a shared lock on `run/edit.lock`, so that a
    /// listing waits for an edit in progress and never sees half of a multi-file edit,
    /// while readers never wait for each other. Nothing is created: without the lock
    /// file (no edit ever ran) or without the right to open it (one left by root),
    /// the read goes ahead unlocked. Such an edit cannot be committed.
    pub fn begin_read(root: &Path) -> Result<Edit> {
        need_mail_root(root)?;
        let path = lock_path(root);
        let opened = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path);
        let lock = match opened {
            Ok(file) => Some(lock_within(
                file,
                FlockArg::LockSharedNonblock,
                &path,
                DEFAULT_LOCK_TIMEOUT,
            )?),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                None
            }
            Err(e) => return Err(io_at(&path)(e)),
        };
        let db = DbAccounts::open(root)?;
        Ok(Edit {
            root: root.to_path_buf(),
            paths: Paths::new(root),
            _lock: lock,
            staged: Vec::new(),
            shared: true,
            db,
            aliases: None,
            sites: None,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    /// The current content of `path`: what is staged for it, else the file (None when
    /// it does not exist).
    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        if let Some(s) = self.staged.iter().rev().find(|s| s.path == path) {
            return Ok(Some(s.bytes.clone()));
        }
        if let Some(text) = self.db.as_ref().and_then(|db| db.read(path)) {
            return Ok(text);
        }
        match fsutil::read_limited(path, 1 << 30) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(path)(e)),
        }
    }

    /// [`Edit::read`], with a missing file read as empty.
    pub fn read_or_empty(&self, path: &Path) -> Result<Vec<u8>> {
        Ok(self.read(path)?.unwrap_or_default())
    }

    /// Stage new content for `path`; `mode` applies when the file is new (an existing
    /// file keeps its mode). Staging the same path again replaces the content but
    /// keeps its place in the write order.
    pub fn stage(&mut self, path: &Path, bytes: Vec<u8>, mode: u32, kind: Kind) {
        if let Some(s) = self.staged.iter_mut().find(|s| s.path == path) {
            s.bytes = bytes;
            return;
        }
        self.staged.push(Staged {
            path: path.to_path_buf(),
            bytes,
            mode,
            kind,
        });
    }

    /// Whether anything is staged.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty() && self.aliases.is_none() && self.sites.is_none()
    }

    /// The database's alias table as this edit sees it (what is staged, else what was
    /// read); None for the files backend, whose aliases are `.qmail` files.
    pub fn db_aliases(&self) -> Result<Option<aliastable::Aliases>> {
        if let Some(a) = &self.aliases {
            return Ok(Some(a.clone()));
        }
        let Some(db) = &self.db else {
            return Ok(None);
        };
        aliastable::parse(db.aliases())
            .map(Some)
            .map_err(|e| AdminError::Invalid(format!("the database's aliases: {e}")))
    }

    /// Stage the database's whole alias table (committed with the account texts).
    pub fn stage_aliases(&mut self, aliases: aliastable::Aliases) -> Result<()> {
        if self.db.is_none() {
            return Err(AdminError::Invalid(
                "internal error: the alias table exists only with the postgres backend".into(),
            ));
        }
        self.aliases = Some(aliases);
        Ok(())
    }

    /// The database's site table as this edit sees it (what is staged, else what was
    /// read); None for the files backend, whose sites are directories.
    pub fn db_sites(&self) -> Result<Option<SiteRows>> {
        if let Some(s) = &self.sites {
            return Ok(Some(s.clone()));
        }
        let Some(db) = &self.db else {
            return Ok(None);
        };
        sitetable::parse(db.sites())
            .map(Some)
            .map_err(|e| AdminError::Invalid(format!("the database's sites: {e}")))
    }

    /// Stage the database's whole site table (committed with the account texts; the
    /// changed rows' RELAYHOST and site.toml exported after).
    pub fn stage_sites(&mut self, sites: SiteRows) -> Result<()> {
        if self.db.is_none() {
            return Err(AdminError::Invalid(
                "internal error: the site table exists only with the postgres backend".into(),
            ));
        }
        self.sites = Some(sites);
        Ok(())
    }

    /// Parse every staged text back; the first failure refuses the whole edit.
    pub fn validate(&self) -> Result<()> {
        for s in &self.staged {
            validate(s.kind, &s.bytes).map_err(|reason| AdminError::BadFile {
                path: s.path.clone(),
                reason: format!("the edited file would not parse, nothing written: {reason}"),
            })?;
        }
        Ok(())
    }

    /// Validate, write every staged file atomically in order, recompile the cdbs whose
    /// sources changed, then release the lock. With the accounts in the database, the
    /// account texts go there in one transaction instead (`commit_db`).
    pub fn commit(self) -> Result<Committed> {
        if self.shared && !self.staged.is_empty() {
            return Err(AdminError::Invalid(
                "internal error: an edit opened for reading cannot be committed".into(),
            ));
        }
        self.validate()?;
        let readers = self.readers()?;
        if let Some(db) = &self.db {
            return self.commit_db(db, readers.as_ref());
        }
        let mut done = Committed::default();
        for s in &self.staged {
            self.write(s, readers.as_ref(), true, &mut done)?;
        }
        self.refresh_dovecot(readers.as_ref())?;
        Ok(done)
    }

    /// The database backend's commit: the files staged before the first account file
    /// are written first, then the six texts go to the database in one transaction
    /// (refused when another editor committed since this edit read them), then the six
    /// files are exported, then the rest staged is written: the order a command chose
    /// still holds (a home before the route to it, a route removed before its home).
    fn commit_db(&self, db: &DbAccounts, readers: Option<&ReaderGroup>) -> Result<Committed> {
        let mut done = Committed::default();
        let first = self.staged.iter().position(|s| db.holds(&s.path));
        // Only aliases or sites changed: the database's commit comes after the files
        // staged.
        let tables = self.aliases.is_some() || self.sites.is_some();
        let first = first.or(tables.then_some(self.staged.len()));
        let Some(first) = first else {
            for s in &self.staged {
                self.write(s, readers, false, &mut done)?;
            }
            return Ok(done);
        };
        for s in &self.staged[..first] {
            self.write(s, readers, false, &mut done)?;
        }
        let mut new = db.merged(|p| {
            self.staged
                .iter()
                .find(|s| s.path == p)
                .map(|s| s.bytes.as_slice())
        });
        if let Some(a) = &self.aliases {
            new.aliases = aliastable::render(a);
        }
        if let Some(s) = &self.sites {
            new.sites = sitetable::render(s);
        }
        let version = db.commit(&new)?;
        tracing::info!(target: "admin", version, "accounts stored in the database");
        done.version = Some(version);
        for (path, bytes) in db.export(&new) {
            let staged = self.staged.iter().find(|s| s.path == path);
            if staged.is_none()
                && fsutil::read_limited(path, 1 << 30).ok().as_deref() == Some(bytes)
            {
                continue;
            }
            let kind = staged.map_or_else(|| export_kind(&self.paths, path), |s| s.kind);
            let mode = staged.map_or(
                match kind {
                    Kind::Poppasswd => 0o640,
                    Kind::Secrets => readers::secrets_mode(None),
                    _ => 0o644,
                },
                |s| s.mode,
            );
            let export = Staged {
                path: path.to_path_buf(),
                bytes: bytes.to_vec(),
                mode,
                kind,
            };
            if let Err(e) = self.write(&export, readers, false, &mut done) {
                // The database has the edit (so running the command again is wrong):
                // only its copy in the root is behind.
                return Err(AdminError::Invalid(format!(
                    "the accounts are stored in the database (version {version}), but \
                     writing their export failed: {e}; `turnmail db export` writes it again"
                )));
            }
        }
        if let Some(sites) = &self.sites {
            db.export_sites(&self.root, sites, version)?;
        }
        for s in self.staged[first..].iter().filter(|s| !db.holds(&s.path)) {
            self.write(s, readers, false, &mut done)?;
        }
        self.refresh_dovecot(readers)?;
        Ok(done)
    }

    /// Replace one file atomically; with `compile`, a users/assign or users/poppasswd
    /// is compiled to its cdb right after.
    fn write(
        &self,
        s: &Staged,
        readers: Option<&ReaderGroup>,
        compile: bool,
        done: &mut Committed,
    ) -> Result<()> {
        let old = std::fs::metadata(&s.path).ok();
        let mut mode = old
            .as_ref()
            .map_or(s.mode, |m| m.permissions().mode() & 0o7777);
        let mut group = None;
        if s.kind == Kind::Secrets && readers.is_some() {
            mode = readers::secrets_mode(readers);
            group = readers;
        }
        if let Some(dir) = s.path.parent()
            && !dir.exists()
        {
            crate::owner::create_dirs(dir, 0o755).map_err(io_at(dir))?;
        }
        // Run as root, the new file gets the owner of the one it replaces (or of
        // its directory) before it takes the name.
        fsutil::replace_with_group(&s.path, mode, group, |f| {
            std::io::Write::write_all(f, &s.bytes)
        })
        .map_err(io_at(&s.path))?;
        done.written.push(s.path.clone());
        if !compile {
            return Ok(());
        }
        let compiled = match s.kind {
            Kind::Assign => {
                let cdb = sibling(&s.path, "cdb");
                let n = users_cdb::compile(&s.bytes, &cdb).map_err(|e| AdminError::BadFile {
                    path: cdb.clone(),
                    reason: e.to_string(),
                })?;
                Some((cdb, n))
            }
            Kind::Poppasswd => {
                let cdb = sibling(&s.path, "poppasswd.cdb");
                let n = accounts::compile_for(&s.bytes, &cdb, readers, &mut |_, _| {}).map_err(
                    |e| AdminError::BadFile {
                        path: cdb.clone(),
                        reason: e.to_string(),
                    },
                )?;
                Some((cdb, n))
            }
            _ => None,
        };
        if let Some((cdb, n)) = compiled {
            done.compiled.push((cdb, n));
        }
        Ok(())
    }

    /// Regenerate Dovecot's passwd-file (`dovecot/passwd_file.rs`) when the accounts,
    /// the alias domains or the quotas changed, still under the lock.
    fn refresh_dovecot(&self, readers: Option<&ReaderGroup>) -> Result<()> {
        let vd = self.paths.control.join("virtualdomains");
        let quotas = self.root.join(crate::quota::table::PATH);
        let changed = self
            .staged
            .iter()
            .any(|s| s.kind == Kind::Poppasswd || s.path == vd || s.path == quotas);
        if !changed {
            return Ok(());
        }
        let group = match readers {
            Some(g) => Some(g.clone()),
            None => {
                let config = crate::config::Config::load(&self.root)?;
                readers::reader_group(&config).map_err(|e| AdminError::Invalid(e.to_string()))?
            }
        };
        let path = crate::dovecot::passwd_file::path(&self.root);
        crate::dovecot::passwd_file::refresh(&self.root, group.as_ref()).map_err(io_at(&path))?;
        Ok(())
    }
}

impl Edit {
    /// The reader group of the account files, when this edit writes one of them (run
    /// as root, `users/` is made setgid to it first, and the account files given it:
    /// see `engine::readers`).
    fn readers(&self) -> Result<Option<ReaderGroup>> {
        let touches = |k| self.staged.iter().any(|s| s.kind == k);
        if !touches(Kind::Poppasswd) && !touches(Kind::Secrets) {
            return Ok(None);
        }
        let config = crate::config::Config::load(&self.root)?;
        let group =
            readers::reader_group(&config).map_err(|e| AdminError::Invalid(e.to_string()))?;
        if let Some(g) = &group {
            let users = fsutil::parent_dir(&self.paths.poppasswd);
            readers::prepare_users_dir(users, g).map_err(io_at(users))?;
            // The account files this edit does not rewrite follow the rule too.
            let cdb = &self.paths.poppasswd_cdb;
            readers::conform(cdb, readers::CDB_MODE, Some(g)).map_err(io_at(cdb))?;
            let secrets = &self.paths.secrets;
            let mode = readers::secrets_mode(Some(g));
            readers::conform(secrets, mode, Some(g)).map_err(io_at(secrets))?;
        }
        Ok(group)
    }
}

/// What an exported account file is, for the rules of its writing (secrets' mode).
fn export_kind(paths: &Paths, path: &Path) -> Kind {
    if path == paths.assign {
        Kind::Assign
    } else if path == paths.poppasswd {
        Kind::Poppasswd
    } else if path == paths.secrets {
        Kind::Secrets
    } else {
        Kind::Control
    }
}

fn sibling(path: &Path, name: &str) -> PathBuf {
    fsutil::parent_dir(path).join(name)
}

/// Check that `bytes` reads back as a file of `kind`.
pub fn validate(kind: Kind, bytes: &[u8]) -> std::result::Result<(), String> {
    match kind {
        Kind::Assign => assign::parse(bytes).map(|_| ()).map_err(|e| e.to_string()),
        Kind::Poppasswd => accounts::parse_poppasswd(bytes)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Kind::Secrets => match accounts::check_secrets(bytes).first() {
            Some(e) => Err(e.to_string()),
            None => Ok(()),
        },
        Kind::Control | Kind::Plain => {
            if bytes.contains(&0) {
                Err("contains a NUL byte".into())
            } else {
                Ok(())
            }
        }
        Kind::DotQmail => dotqmail::parse(bytes, false)
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Kind::SiteToml => std::str::from_utf8(bytes)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                toml::from_str::<crate::spool::site::SiteSettings>(t).map_err(|e| e.to_string())
            })
            .map(|_| ()),
        Kind::Config => std::str::from_utf8(bytes)
            .map_err(|e| e.to_string())
            .and_then(|t| crate::config::Config::parse(t).map_err(|e| e.to_string()))
            .map(|_| ()),
    }
}

/// Running as root: hand a directory tree made by a command to the mail user.
pub fn chown_tree(path: &Path, uid: u32, gid: u32) -> Result<()> {
    if !nix::unistd::Uid::effective().is_root() {
        return Ok(());
    }
    let meta = std::fs::symlink_metadata(path).map_err(io_at(path))?;
    // A file with another name elsewhere (a hard link someone planted) may be a
    // root-owned file outside the root: never hand that over.
    if meta.is_file() && meta.nlink() > 1 && meta.uid() != uid {
        tracing::warn!(path = %path.display(), "not given to the mail user: it has other hard links");
        return Ok(());
    }
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_at(path))?;
    if meta.is_dir() {
        for e in std::fs::read_dir(path).map_err(io_at(path))? {
            let e = e.map_err(io_at(path))?;
            chown_tree(&e.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Make a directory (and missing parents) with exactly `mode`, for the mail user:
/// run as root, a directory made here (or one an older version left owned by root)
/// is given `owner`, missing parents the owner of theirs. What someone else already
/// owns is left alone (other domains' homes under `domains/`, say).
pub fn make_dir(path: &Path, mode: u32, owner: (u32, u32)) -> Result<()> {
    let existed = std::fs::metadata(path).ok();
    crate::owner::create_dirs(path, mode).map_err(io_at(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_at(path))?;
    let rootowned = existed.as_ref().is_none_or(|m| m.uid() == 0);
    if crate::owner::running_as_root() && rootowned {
        std::os::unix::fs::lchown(path, Some(owner.0), Some(owner.1)).map_err(io_at(path))?;
    }
    Ok(())
}

/// Write a small file that belongs to one mailbox or site (a `.qmail` file, RELAYHOST)
/// atomically, for the mail user.
pub fn write_owned(path: &Path, bytes: &[u8], mode: u32, owner: (u32, u32)) -> Result<()> {
    write_atomic(path, bytes, mode).map_err(io_at(path))?;
    chown_tree(path, owner.0, owner.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("control")).unwrap();
        std::fs::create_dir(d.path().join("users")).unwrap();
        d
    }

    #[test]
    fn second_edit_waits_then_times_out() {
        let d = root();
        let first = Edit::begin(d.path()).unwrap();
        let e = Edit::begin_with_timeout(d.path(), Duration::from_millis(50));
        assert!(matches!(e, Err(AdminError::LockTimeout { .. })));
        drop(first);
        assert!(Edit::begin_with_timeout(d.path(), Duration::from_millis(50)).is_ok());
    }

    #[test]
    fn invalid_text_writes_nothing() {
        let d = root();
        let assign = d.path().join("users/assign");
        std::fs::write(&assign, b".\n").unwrap();
        let mut e = Edit::begin(d.path()).unwrap();
        e.stage(&assign, b"+x-:u:1:1:/h:-::\n".to_vec(), 0o644, Kind::Assign);
        assert!(matches!(e.commit(), Err(AdminError::BadFile { .. })));
        assert_eq!(std::fs::read(&assign).unwrap(), b".\n");
    }

    #[test]
    fn commit_writes_in_order_and_compiles() {
        let d = root();
        let assign = d.path().join("users/assign");
        let pw = d.path().join("users/poppasswd");
        let mut e = Edit::begin(d.path()).unwrap();
        e.stage(
            &assign,
            b"+x-:u:1:1:/h:-::\n.\n".to_vec(),
            0o644,
            Kind::Assign,
        );
        e.stage(&pw, b"a@x:h:u:/h/a\n".to_vec(), 0o640, Kind::Poppasswd);
        assert_eq!(e.read(&pw).unwrap().unwrap(), b"a@x:h:u:/h/a\n");
        let c = e.commit().unwrap();
        assert_eq!(c.written, vec![assign, pw.clone()]);
        assert_eq!(c.compiled.len(), 2);
        assert!(d.path().join("users/cdb").is_file());
        let mode = std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }
}
