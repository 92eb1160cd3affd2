//! The engine: one place that answers "where does this address go?" and "is this login
//! good?" for every face of turnmail (SMTP, local delivery, POP3, ODMR, checkpassword).
//!
//! An [`Engine`] holds an immutable [`Snapshot`] of the tables behind an `Arc`; readers
//! take the current snapshot and keep it for as long as they need. The tables come from
//! one of two account sources:
//!
//! * the mail root's files (the default): text files are the source of truth, a changed
//!   `users/assign` or `users/poppasswd` is compiled to its cdb here by
//!   [`Engine::reload_if_changed`], and an invalid text keeps the old cdb and reports
//!   the line;
//! * texts held in memory (`[accounts] backend = "postgres"`, `memory.rs`): the database
//!   hands the same six texts with a version, [`Engine::install`] builds the snapshot
//!   from them without any cdb, and [`Engine::set_unavailable`] turns every lookup into
//!   a temporary failure while the database cannot vouch for them.
//!
//! Either way the same parsers, lookups and login rules answer (`snapshot.rs`).

pub mod accounts;
pub mod aliasdomains;
pub mod aliastable;
pub mod availability;
pub mod backend;
pub mod cram;
pub mod crypt;
pub mod getpw;
mod memory;
pub mod readers;
pub mod resolve;
pub mod snapshot;
pub mod source;

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crate::config::Config;
use crate::qmail::users_cdb;

pub use accounts::{AuthError, Authenticated, LoginContext};
pub use resolve::{LocalTarget, Resolution, ResolveError};
pub use snapshot::Snapshot;

/// Where the engine's files live under a mail root.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub control: PathBuf,
    pub assign: PathBuf,
    pub users_cdb: PathBuf,
    pub poppasswd: PathBuf,
    pub poppasswd_cdb: PathBuf,
    pub secrets: PathBuf,
}

impl Paths {
    pub fn new(root: &Path) -> Paths {
        let users = root.join("users");
        Paths {
            root: root.to_path_buf(),
            control: root.join("control"),
            assign: users.join("assign"),
            users_cdb: users.join("cdb"),
            poppasswd: users.join("poppasswd"),
            poppasswd_cdb: users.join("poppasswd.cdb"),
            secrets: users.join("secrets"),
        }
    }

    /// The control files read beside texts held in memory (`memory.rs`): the
    /// account files themselves are not the engine's source then.
    fn watched_control(&self) -> Vec<PathBuf> {
        ["me", "locals", "smtproutes"]
            .iter()
            .map(|f| self.control.join(f))
            .collect()
    }

    /// Files whose change means the snapshot must be rebuilt.
    fn watched(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = [
            "me",
            "rcpthosts",
            "morercpthosts.cdb",
            "locals",
            "virtualdomains",
            "smtproutes",
        ]
        .iter()
        .map(|f| self.control.join(f))
        .collect();
        v.extend([
            self.assign.clone(),
            self.users_cdb.clone(),
            self.poppasswd.clone(),
            self.poppasswd_cdb.clone(),
            self.secrets.clone(),
        ]);
        v
    }
}

/// A file's identity for change detection: (device, inode, size, mtime in ns).
type Stamp = Option<(u64, u64, u64, i128)>;

fn stamp(path: &Path) -> Stamp {
    std::fs::metadata(path).ok().map(|m| {
        (
            m.dev(),
            m.ino(),
            m.size(),
            m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        )
    })
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Assign(#[from] users_cdb::CompileError),
    #[error("{0}")]
    Poppasswd(#[from] accounts::CompileError),
    #[error("{0}")]
    Aliases(aliastable::AliasTextError),
}

/// What a (re)load did, for logs and `turnmail newu`.
#[derive(Debug, Default)]
pub struct LoadReport {
    /// Sources compiled to their cdb: (source, number of entries).
    pub compiled: Vec<(PathBuf, usize)>,
    /// Sources that could not be compiled; the old cdb stays in use.
    pub errors: Vec<String>,
    /// Whether a new snapshot was installed.
    pub reloaded: bool,
}

pub struct Engine {
    paths: Paths,
    config: Arc<Config>,
    current: RwLock<Arc<Snapshot>>,
    stamps: Mutex<HashMap<PathBuf, Stamp>>,
    /// Shared with every snapshot: down while tables from a database may be stale.
    availability: availability::Availability,
    /// The database backend's texts (`memory.rs`); None for the mail root's files.
    memory: Option<Mutex<memory::Held>>,
}

/// Compile `source` into `cdb` when the source is newer than the cdb (or `force`).
fn sync_one<F>(source: &Path, cdb: &Path, force: bool, report: &mut LoadReport, compile: F)
where
    F: FnOnce(&[u8], &Path) -> Result<usize, String>,
{
    if !source.exists() {
        return;
    }
    // A missing cdb is stale too.
    let stale = crate::fsutil::is_newer(source, cdb).unwrap_or(true);
    if !stale && !force {
        return;
    }
    let text = match crate::fsutil::read_limited(source, 1 << 30) {
        Ok(t) => t,
        Err(e) => {
            report.errors.push(format!("{}: {e}", source.display()));
            return;
        }
    };
    match compile(&text, cdb) {
        Ok(n) => report.compiled.push((source.to_path_buf(), n)),
        Err(e) => report
            .errors
            .push(format!("{e} (keeping the previous {})", cdb.display())),
    }
}

/// Compile poppasswd for `config`'s readers (`readers.rs`).
fn compile_accounts(
    text: &[u8],
    cdb: &Path,
    config: &Config,
    tick: &mut dyn FnMut(usize, usize),
) -> Result<usize, String> {
    let group = readers::reader_group(config).map_err(|e| e.to_string())?;
    let n = accounts::compile_for(text, cdb, group.as_ref(), tick).map_err(|e| e.to_string())?;
    // Dovecot's view of the same accounts never lags behind the cdb.
    let users = crate::fsutil::parent_dir(cdb);
    let root = crate::fsutil::parent_dir(users);
    crate::dovecot::passwd_file::write(root, text, group.as_ref()).map_err(|e| e.to_string())?;
    Ok(n)
}

impl Engine {
    /// Open the engine on a mail root: compile stale cdbs, then load a snapshot.
    pub fn open(root: &Path, config: Config) -> Result<(Engine, LoadReport), EngineError> {
        Self::open_with(root, config, true)
    }

    /// Open on the compiled tables as they are, compiling nothing. For programs that run
    /// as another user than the mail root's owner (`turnmail checkpassword` as root under
    /// qmail-popup, or as Dovecot's user): a cdb they compiled would belong to them and
    /// could lock the daemon out of it, and they usually cannot write `users/` anyway.
    pub fn open_readonly(root: &Path, config: Config) -> Result<Engine, EngineError> {
        Self::open_with(root, config, false).map(|(engine, _)| engine)
    }

    fn open_with(
        root: &Path,
        config: Config,
        compile: bool,
    ) -> Result<(Engine, LoadReport), EngineError> {
        let paths = Paths::new(root);
        let config = Arc::new(config);
        let mut report = LoadReport::default();
        if compile {
            Self::sync_compiled(&paths, &config, false, &mut report);
        }
        let availability = availability::Availability::default();
        let snapshot = Snapshot::load(&paths, &config)?.with_availability(&availability);
        let stamps = paths
            .watched()
            .into_iter()
            .map(|p| {
                let s = stamp(&p);
                (p, s)
            })
            .collect();
        report.reloaded = true;
        Ok((
            Engine {
                paths,
                config,
                current: RwLock::new(Arc::new(snapshot)),
                stamps: Mutex::new(stamps),
                availability,
                memory: None,
            },
            report,
        ))
    }

    pub fn paths(&self) -> &Paths {
        &self.paths
    }

    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The current snapshot; cheap (one Arc clone).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn sync_compiled(paths: &Paths, config: &Config, force: bool, report: &mut LoadReport) {
        sync_one(&paths.assign, &paths.users_cdb, force, report, |t, c| {
            users_cdb::compile(t, c).map_err(|e| e.to_string())
        });
        sync_one(
            &paths.poppasswd,
            &paths.poppasswd_cdb,
            force,
            report,
            |t, c| compile_accounts(t, c, config, &mut |_, _| {}),
        );
        Self::sync_dovecot(paths, config, report);
    }

    /// Dovecot's passwd-file, when it is missing or older than its sources (a root
    /// from before it existed, a hand edit of virtualdomains or users/quota): rewritten.
    fn sync_dovecot(paths: &Paths, config: &Config, report: &mut LoadReport) {
        use crate::dovecot::passwd_file;
        let file = passwd_file::path(&paths.root);
        let vd = paths.control.join("virtualdomains");
        let quotas = paths.root.join(crate::quota::table::PATH);
        let stale = !file.exists()
            || [&paths.poppasswd, &vd, &quotas]
                .iter()
                .any(|s| crate::fsutil::is_newer(s, &file) == Some(true));
        if !stale || !paths.poppasswd.exists() {
            return;
        }
        let written = readers::reader_group(config)
            .map_err(|e| e.to_string())
            .and_then(|g| passwd_file::refresh(&paths.root, g.as_ref()).map_err(|e| e.to_string()));
        match written {
            // Not a cdb: logged, not counted among the compiles.
            Ok(n) => tracing::info!(target: "engine", "wrote {} ({n} lines)", file.display()),
            Err(e) => report.errors.push(format!("{}: {e}", file.display())),
        }
    }

    /// Compile users/assign and users/poppasswd now, as `turnmail newu` does, without
    /// loading anything; `tick(source, done, total)` reports progress.
    pub fn compile_sources(
        root: &Path,
        config: &Config,
        tick: &mut dyn FnMut(&Path, usize, usize),
    ) -> LoadReport {
        let paths = Paths::new(root);
        let mut report = LoadReport::default();
        sync_one(
            &paths.assign,
            &paths.users_cdb,
            true,
            &mut report,
            |t, c| {
                users_cdb::compile_with(t, c, &mut |d, n| tick(&paths.assign, d, n))
                    .map_err(|e| e.to_string())
            },
        );
        sync_one(
            &paths.poppasswd,
            &paths.poppasswd_cdb,
            true,
            &mut report,
            |t, c| compile_accounts(t, c, config, &mut |d, n| tick(&paths.poppasswd, d, n)),
        );
        report
    }

    /// Rebuild the snapshot if any source or compiled file changed since the last
    /// load. Cheap when nothing changed (a stat per file). Errors keep the old
    /// snapshot and are returned in the report.
    pub fn reload_if_changed(&self) -> LoadReport {
        self.reload_inner(false)
    }

    /// Recompile both sources now and reload (what `turnmail newu` and SIGHUP do).
    pub fn reload(&self) -> LoadReport {
        self.reload_inner(true)
    }

    fn reload_inner(&self, force: bool) -> LoadReport {
        if self.memory.is_some() {
            return self.reload_memory(force);
        }
        let mut report = LoadReport::default();
        let mut stamps = match self.stamps.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let now: HashMap<PathBuf, Stamp> = self
            .paths
            .watched()
            .into_iter()
            .map(|p| {
                let s = stamp(&p);
                (p, s)
            })
            .collect();
        if !force && now == *stamps {
            return report;
        }
        // Only retry a failed compile when its source changed again.
        let src_changed = |p: &Path| now.get(p) != stamps.get(p);
        if force || src_changed(&self.paths.assign) || src_changed(&self.paths.users_cdb) {
            sync_one(
                &self.paths.assign,
                &self.paths.users_cdb,
                force,
                &mut report,
                |t, c| users_cdb::compile(t, c).map_err(|e| e.to_string()),
            );
        }
        if force || src_changed(&self.paths.poppasswd) || src_changed(&self.paths.poppasswd_cdb) {
            sync_one(
                &self.paths.poppasswd,
                &self.paths.poppasswd_cdb,
                force,
                &mut report,
                |t, c| compile_accounts(t, c, &self.config, &mut |_, _| {}),
            );
        }
        Self::sync_dovecot(&self.paths, &self.config, &mut report);
        match Snapshot::load(&self.paths, &self.config) {
            Ok(s) => {
                let s = s.with_availability(&self.availability);
                match self.current.write() {
                    Ok(mut g) => *g = Arc::new(s),
                    Err(p) => *p.into_inner() = Arc::new(s),
                }
                report.reloaded = true;
            }
            Err(e) => report
                .errors
                .push(format!("reload failed, keeping the old tables: {e}")),
        }
        // Record stamps after compiling, so our own cdb writes do not trigger again.
        *stamps = self
            .paths
            .watched()
            .into_iter()
            .map(|p| {
                let s = stamp(&p);
                (p, s)
            })
            .collect();
        for e in &report.errors {
            tracing::error!(target: "engine", "{e}");
        }
        for (p, n) in &report.compiled {
            tracing::info!(target: "engine", "compiled {} ({n} entries)", p.display());
        }
        report
    }

    /// Where mail for `recipient` goes (see [`resolve::resolve`]).
    pub fn resolve(
        &self,
        recipient: &[u8],
        check_rcpthosts: bool,
    ) -> Result<Resolution, ResolveError> {
        resolve::resolve(&self.snapshot(), recipient, check_rcpthosts)
    }
}
