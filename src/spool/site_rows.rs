//! Sites on the `postgres` backend: the rows of the database's `sites` table
//! (`sitetable.rs`), not the directories under `[sites] roots`. A row gives the name,
//! RELAYHOST and site.toml's settings; the spool and its lock stay on disk in the
//! row's directory (`ROOT/sites/NAME` unless the row names one). The RELAYHOST file is
//! still written there (the export after each commit): it is the flock every flush,
//! serialmail's `setlock` and every node take, but its text and site.toml's are not
//! read on this backend; `turnmail check` reports them when they differ from the row.

use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::relayhost::Relayhost;
use super::routes::Routes;
use super::site::{Discovery, SiteError, build_site, discover};
use super::sitetable::{self, SiteRow, SiteRows};
use crate::config::Config;
use crate::db::Backend;
use crate::engine::source::AccountTexts;

/// Where a row's site lives.
pub fn dir_of(root: &Path, name: &str, row: &SiteRow) -> PathBuf {
    match &row.dir {
        Some(d) => PathBuf::from(d),
        None => root
            .canonicalize()
            .unwrap_or_else(|_| root.to_path_buf())
            .join("sites")
            .join(name),
    }
}

/// The sites of the database's texts at `version` (users/assign and
/// control/virtualdomains for prefixes and domains, the site table for the rest).
pub fn discover_rows(root: &Path, texts: &AccountTexts, version: u64) -> Discovery {
    let mut d = Discovery {
        routes: Routes::parse(&texts.assign, Some(&texts.virtualdomains)),
        version: Some(version),
        ..Discovery::default()
    };
    let rows = match sitetable::parse(&texts.sites) {
        Ok(r) => r,
        Err(e) => {
            d.problems.push(format!("the database's sites: {e}"));
            return d;
        }
    };
    for (name, row) in &rows {
        let dir = dir_of(root, name, row);
        // Checked when the rows were read; a row that is not valid is named, never used.
        let built = sitetable::check_row(name, row).and_then(|settings| {
            let relayhost = row.relayhost.as_deref().and_then(Relayhost::parse);
            build_site(name.clone(), &dir, relayhost, settings, &d.routes).map_err(|e| match e {
                SiteError::Connections(m) => m,
                SiteError::NoPrefix => format!(
                    "no users/assign line has {} as its home; set prefix in its settings",
                    dir.display()
                ),
            })
        });
        match built {
            Ok(s) => {
                if !dir.join("Maildir").is_dir() {
                    d.problems.push(format!(
                        "site {name}: {} has no Maildir/: mail for it is deferred",
                        dir.display()
                    ));
                }
                d.sites.push(s);
            }
            Err(e) => d.problems.push(format!("site {name} (database row): {e}")),
        }
    }
    d
}

/// The sites as `config` keeps them: found on disk under `[sites] roots`, or on the
/// `postgres` backend read from the database (a database that cannot answer gives no
/// sites and says why in `problems`). For the commands; the daemon follows its
/// engine's texts instead.
pub fn discover_configured(root: &Path, config: &Config) -> Discovery {
    if config.accounts.backend != Backend::Postgres {
        return discover(root, &config.sites.roots);
    }
    let loaded =
        crate::db::blocking::with_store(&config.postgres, |s| async move { s.load_sites().await });
    match loaded {
        Ok((texts, version)) => discover_rows(root, &texts, version),
        Err(e) => Discovery {
            problems: vec![format!("sites: {e}")],
            ..Discovery::default()
        },
    }
}

/// The sites a files root holds (those `discover` finds under `patterns`, hand-made
/// ones included) as rows: RELAYHOST's first line, site.toml's keys, the directory
/// unless it is `ROOT/sites/NAME`. A site that cannot be a row (or that discovery
/// could not read) refuses the whole set, naming it (`turnmail db import`).
pub fn rows_from_root(root: &Path, patterns: &[String]) -> Result<SiteRows, String> {
    let found = discover(root, patterns);
    if let Some(p) = found.problems.first() {
        return Err(format!("sites: {p}"));
    }
    let mut rows = SiteRows::new();
    for site in &found.sites {
        let name = &site.name;
        let relayhost = match std::fs::read_to_string(site.relayhost_path()) {
            Ok(t) => Some(t.lines().next().unwrap_or("").trim().to_string()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("site {name}: RELAYHOST: {e}")),
        };
        let settings = match std::fs::read_to_string(site.dir.join("site.toml")) {
            Ok(t) => sitetable::settings_from_toml(&t).map_err(|e| format!("site {name}: {e}"))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => "{}".to_string(),
            Err(e) => return Err(format!("site {name}: site.toml: {e}")),
        };
        let dir = site.dir.canonicalize().unwrap_or_else(|_| site.dir.clone());
        let row = SiteRow {
            relayhost,
            dir: None,
            settings,
        };
        let row = SiteRow {
            dir: (dir_of(root, name, &row) != dir).then(|| dir.to_string_lossy().into_owned()),
            ..row
        };
        sitetable::check_row(name, &row)
            .map_err(|e| format!("site {name} ({}): {e}", dir.display()))?;
        rows.insert(name.clone(), row);
    }
    Ok(rows)
}

/// RELAYHOST's text for a row (None: the row has none).
fn relayhost_text(row: &SiteRow) -> Option<String> {
    row.relayhost.as_ref().map(|r| format!("{r}\n"))
}

/// Write `text` into the RELAYHOST file in place (never replaced by a rename: the
/// inode is the lock a running flush holds), created 0644 for the site directory's
/// owner when missing. Unchanged text is not written.
pub fn write_relayhost(path: &Path, text: &str) -> io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc_nofollow())
        .open(path)?;
    let mut old = String::new();
    let _ = (&f).take(4096).read_to_string(&mut old);
    if old == text {
        return Ok(());
    }
    f.set_len(0)?;
    f.rewind()?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    give_to_dir_owner(path)
}

fn libc_nofollow() -> i32 {
    nix::fcntl::OFlag::O_NOFOLLOW.bits()
}

/// When root writes a site's file, it belongs to whoever owns the site's directory.
fn give_to_dir_owner(path: &Path) -> io::Result<()> {
    if !crate::owner::running_as_root() {
        return Ok(());
    }
    let Some(dir) = path.parent() else {
        return Ok(());
    };
    let m = std::fs::metadata(dir)?;
    std::os::unix::fs::lchown(path, Some(m.uid()), Some(m.gid()))
}

/// Write every row's RELAYHOST and site.toml (only a row with settings has one) into
/// its directory under `root`; the directory and its Maildir are made when missing
/// (`owner`'s, 0700), with the `.qmail-default` that delivers into it. Returns what
/// could not be written, one line per site.
pub fn export(root: &Path, rows: &SiteRows, owner: (u32, u32)) -> Vec<String> {
    let mut problems = Vec::new();
    for (name, row) in rows {
        let dir = dir_of(root, name, row);
        if let Err(e) = export_one(&dir, row, owner) {
            problems.push(format!("site {name}: {}: {e}", dir.display()));
        }
    }
    problems
}

fn export_one(dir: &Path, row: &SiteRow, owner: (u32, u32)) -> io::Result<()> {
    let chown = |p: &Path| -> io::Result<()> {
        if crate::owner::running_as_root() {
            std::os::unix::fs::lchown(p, Some(owner.0), Some(owner.1))?;
        }
        Ok(())
    };
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        chown(dir)?;
        let qmail = dir.join(".qmail-default");
        crate::fsutil::write_atomic(&qmail, b"./Maildir/\n", 0o600)?;
        chown(&qmail)?;
    }
    if !dir.join("Maildir").is_dir() {
        crate::maildir::Maildir::create(dir.join("Maildir"))?;
        for sub in ["", "/new", "/cur", "/tmp"] {
            chown(&dir.join(format!("Maildir{sub}")))?;
        }
    }
    if let Some(text) = relayhost_text(row) {
        write_relayhost(&dir.join("RELAYHOST"), &text)?;
    }
    let toml_path = dir.join("site.toml");
    match sitetable::settings_to_toml(&row.settings).map_err(io::Error::other)? {
        Some(text) => {
            if std::fs::read_to_string(&toml_path).ok().as_deref() != Some(text.as_str()) {
                crate::fsutil::write_atomic(&toml_path, text.as_bytes(), 0o644)?;
                chown(&toml_path)?;
            }
        }
        None => match std::fs::remove_file(&toml_path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        },
    }
    Ok(())
}

/// What differs on disk from the rows (a RELAYHOST or site.toml edited by hand on a
/// `postgres` root, which does not take effect): one (path, message) per file.
pub fn differences(root: &Path, rows: &SiteRows) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for (name, row) in rows {
        let dir = dir_of(root, name, row);
        let rh = dir.join("RELAYHOST");
        let on_disk = std::fs::read_to_string(&rh).ok();
        let first = on_disk
            .as_deref()
            .map(|t| t.lines().next().unwrap_or("").trim().to_string());
        match (&row.relayhost, first) {
            (Some(r), Some(f)) if *r != f => out.push((
                rh,
                format!(
                    "says {f:?}, the database's row for site {name} {r:?}: the row is what \
                     counts (`turnmail db export` writes it)"
                ),
            )),
            (Some(_), None) => out.push((
                rh,
                format!(
                    "missing: site {name} cannot be locked or flushed (`turnmail db export` writes it)"
                ),
            )),
            _ => {}
        }
        let path = dir.join("site.toml");
        let file = std::fs::read_to_string(&path).ok();
        let row_settings = sitetable::settings_of(&row.settings).ok();
        let file_settings = file
            .as_deref()
            .map(|t| toml::from_str::<super::site::SiteSettings>(t).map_err(|e| e.to_string()));
        let says = match (&file_settings, &row_settings) {
            (None, _) => None,
            (Some(Err(e)), _) => Some(format!("does not parse ({e}) and is not read")),
            (Some(Ok(f)), Some(r)) if f == r => None,
            (Some(Ok(_)), _) => Some("differs".to_string()),
        };
        if let Some(says) = says {
            out.push((
                path,
                format!(
                    "{says} from the database's row for site {name}: edits here do not take \
                     effect on the postgres backend (the row is what counts: change it with \
                     SQL, or `turnmail db export` to write it here)"
                ),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(root: &Path, sites: &str) -> AccountTexts {
        let home = root.canonicalize().unwrap().join("sites/acme");
        AccountTexts {
            assign: format!("+site-acme-:u:1:1:{}:-::\n.\n", home.display()).into_bytes(),
            virtualdomains: b"acme.example:site-acme\n".to_vec(),
            sites: sites.as_bytes().to_vec(),
            ..AccountTexts::default()
        }
    }

    #[test]
    fn rows_are_the_sites_and_the_files_are_not_read() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        let dir = r.join("sites/acme");
        std::fs::create_dir_all(dir.join("Maildir/new")).unwrap();
        std::fs::write(dir.join("RELAYHOST"), "old.example\n").unwrap();
        std::fs::write(dir.join("site.toml"), "schedule = \"@daily\"\n").unwrap();
        let t = texts(
            r,
            "acme\tmx.acme.example:2525\t\t{\"schedule\":\"*/5 * * * *\"}\n",
        );
        let found = discover_rows(r, &t, 7);
        assert_eq!(found.version, Some(7));
        let s = found.get("acme").unwrap();
        assert_eq!(s.relayhost.as_ref().unwrap().port, Some(2525));
        assert_eq!(s.settings.schedule.as_deref(), Some("*/5 * * * *"));
        assert_eq!(s.prefixes, [b"site-acme-".to_vec()]);
        assert_eq!(s.domains, ["acme.example"]);
        let rows = sitetable::parse(&t.sites).unwrap();
        let diffs = differences(r, &rows);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        // The export writes the row back; RELAYHOST keeps its inode (the lock).
        let ino = std::fs::metadata(dir.join("RELAYHOST")).unwrap().ino();
        assert!(export(r, &rows, (0, 0)).is_empty());
        assert_eq!(std::fs::metadata(dir.join("RELAYHOST")).unwrap().ino(), ino);
        assert_eq!(
            std::fs::read_to_string(dir.join("RELAYHOST")).unwrap(),
            "mx.acme.example:2525\n"
        );
        assert!(differences(r, &rows).is_empty());
    }

    #[test]
    fn a_row_that_cannot_be_used_is_named() {
        let d = tempfile::tempdir().unwrap();
        let found = discover_rows(d.path(), &texts(d.path(), "acme\t\t\t{\"x\":1}\n"), 1);
        assert!(found.sites.is_empty());
        assert!(found.problems[0].contains("sites"), "{:?}", found.problems);
        // No users/assign line reaches a row's directory: named, not used.
        let found = discover_rows(d.path(), &texts(d.path(), "other\t\t\t{}\n"), 1);
        assert!(found.sites.is_empty());
        assert!(
            found.problems[0].contains("site other"),
            "{:?}",
            found.problems
        );
    }
}
