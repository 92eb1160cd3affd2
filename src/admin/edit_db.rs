//! The edit transaction on accounts kept in PostgreSQL (`[accounts] backend =
//! "postgres"`): the six account texts are read from the database when the edit
//! begins (with their version), reads of those six paths answer from them, and the
//! commit hands the new texts to `Store::commit` in one transaction, which refuses
//! when another editor moved the version on. The six files in the root are then
//! rewritten as an export, so that what reads them (site discovery, Dovecot's
//! passwd-file view, an operator's grep) keeps working; no cdb is compiled, the
//! engine never reads them in this mode.

use std::path::{Path, PathBuf};

use super::error::{AdminError, Result};
use crate::config::Config;
use crate::db::{Backend, PgSettings};
use crate::engine::source::{AccountTexts, FILES};
use crate::spool::sitetable::{self, SiteRows};

/// The accounts an edit read from the database.
pub(super) struct DbAccounts {
    settings: PgSettings,
    pub base_version: u64,
    texts: AccountTexts,
    /// The six paths, in [`FILES`]' order.
    paths: Vec<PathBuf>,
}

impl DbAccounts {
    /// The texts and version from the database when `root` keeps its accounts there;
    /// None for the files backend.
    pub fn open(root: &Path) -> Result<Option<DbAccounts>> {
        let config = Config::load(root)?;
        if config.accounts.backend != Backend::Postgres {
            return Ok(None);
        }
        let settings = config.postgres.clone();
        let (texts, base_version) =
            crate::db::blocking::with_store(&settings, |s| async move { s.load().await })
                .map_err(AdminError::Database)?;
        Ok(Some(DbAccounts {
            settings,
            base_version,
            texts,
            paths: FILES.iter().map(|(rel, _)| root.join(rel)).collect(),
        }))
    }

    /// The alias table's text as read.
    pub fn aliases(&self) -> &[u8] {
        &self.texts.aliases
    }

    /// The site table's text as read.
    pub fn sites(&self) -> &[u8] {
        &self.texts.sites
    }

    /// Write the RELAYHOST and site.toml of each row that differs from what was read
    /// (the export of the site table after a commit at `version`).
    pub fn export_sites(&self, root: &Path, sites: &SiteRows, version: u64) -> Result<()> {
        let before = sitetable::parse(&self.texts.sites).unwrap_or_default();
        let changed: SiteRows = sites
            .iter()
            .filter(|(n, r)| before.get(*n) != Some(*r))
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        let mu = super::layout::mail_user(root)?;
        let problems = crate::spool::site_rows::export(root, &changed, (mu.uid, mu.gid));
        if problems.is_empty() {
            return Ok(());
        }
        Err(AdminError::Invalid(format!(
            "the sites are stored in the database (version {version}), but writing their \
             files failed: {}; `turnmail db export` writes them again",
            problems.join("; ")
        )))
    }

    /// Whether `path` is one of the six account files.
    pub fn holds(&self, path: &Path) -> bool {
        self.paths.iter().any(|p| p == path)
    }

    /// The database's text for `path` (None when `path` is not an account file; an
    /// empty text reads as an absent file, as `AccountTexts` has it).
    pub fn read(&self, path: &Path) -> Option<Option<Vec<u8>>> {
        let i = self.paths.iter().position(|p| p == path)?;
        let t = FILES[i].1(&self.texts);
        Some((!t.is_empty()).then(|| t.clone()))
    }

    /// The six texts after the edit: what is staged for a path, else what was read.
    pub fn merged<'a>(&self, staged: impl Fn(&Path) -> Option<&'a [u8]>) -> AccountTexts {
        let mut out = self.texts.clone();
        let fields: [&mut Vec<u8>; 6] = [
            &mut out.assign,
            &mut out.poppasswd,
            &mut out.secrets,
            &mut out.rcpthosts,
            &mut out.virtualdomains,
            &mut out.quota,
        ];
        for (field, path) in fields.into_iter().zip(&self.paths) {
            if let Some(b) = staged(path) {
                *field = b.to_vec();
            }
        }
        out
    }

    /// Store `new` if the accounts are still at the version read: one transaction,
    /// announced to every daemon. Returns the new version.
    pub fn commit(&self, new: &AccountTexts) -> Result<u64> {
        let base = self.base_version;
        let new = new.clone();
        crate::db::blocking::with_store(&self.settings, move |s| async move {
            s.commit(base, &new).await
        })
        .map_err(AdminError::Database)
    }

    /// The paths and texts of the export, in [`FILES`]' order.
    pub fn export<'a>(
        &'a self,
        new: &'a AccountTexts,
    ) -> impl Iterator<Item = (&'a Path, &'a [u8])> {
        self.paths
            .iter()
            .zip(FILES)
            .map(move |(p, (_, field))| (p.as_path(), field(new).as_slice()))
    }
}
