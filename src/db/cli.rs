//! `turnmail db init|migrate|status|import|export`: the accounts database from the
//! command line. Errors name the database (never its password); a database that
//! cannot be reached exits 111 (try again), other failures 1, a missing root 2.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{DbError, PgSettings, Store, blocking, model::Records, schema};
use crate::admin::edit::{Edit, Kind};
use crate::engine::source::AccountTexts;

#[derive(clap::Args, Debug, Clone)]
pub struct Conn {
    /// The database, as a libpq string (`host=/var/run/postgresql dbname=turnmail`)
    /// or a postgres:// URL, instead of turnmail.toml's [postgres] url.
    #[arg(long)]
    pub url: Option<String>,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum DbCmd {
    /// Make turnmail's tables in the database (run again, it changes nothing).
    Init {
        #[command(flatten)]
        conn: Conn,
    },
    /// Apply the schema steps this program has and the database lacks.
    Migrate {
        #[command(flatten)]
        conn: Conn,
    },
    /// Whether the database answers, its schema and accounts versions, rows per table.
    Status {
        #[command(flatten)]
        conn: Conn,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Load a mail root's account files (users/assign, users/poppasswd, users/secrets,
    /// users/quota, control/rcpthosts, control/virtualdomains) into the database in
    /// one transaction.
    Import {
        /// The mail root to read (default: --root).
        from: Option<PathBuf>,
        /// Replace the accounts a database already holds.
        #[arg(long)]
        replace: bool,
        #[command(flatten)]
        conn: Conn,
    },
    /// Write the account files from the database, as an edit of the mail root writes
    /// them (atomically, cdbs compiled).
    Export {
        /// The directory to write (default: --root); made a mail root if it is none.
        #[arg(long)]
        to: Option<PathBuf>,
        #[command(flatten)]
        conn: Conn,
    },
}

/// A command's failure and its exit status.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: u8,
}

impl From<DbError> for Failure {
    fn from(e: DbError) -> Failure {
        let code = if e.is_temporary() { 111 } else { 1 };
        Failure {
            message: e.to_string(),
            code,
        }
    }
}

fn fail(message: impl Into<String>, code: u8) -> Failure {
    Failure {
        message: message.into(),
        code,
    }
}

/// Run one `turnmail db` command; `root` is --root (it may be unset).
pub fn run(root: Option<&Path>, cmd: DbCmd) -> ExitCode {
    match dispatch(root, cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("turnmail: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// The database settings: the root's [postgres], the url replaced by --url.
pub fn settings(root: Option<&Path>, conn: &Conn) -> Result<PgSettings, Failure> {
    let mut s = match root {
        Some(r) if r.join("turnmail.toml").exists() => crate::config::Config::load(r)
            .map_err(|e| fail(e.to_string(), 1))?
            .postgres
            .clone(),
        _ => PgSettings::default(),
    };
    if let Some(u) = &conn.url {
        s.url = u.clone();
    } else if root.is_none() {
        return Err(fail(
            "which database? pass --url, or --root of a mail root whose turnmail.toml has [postgres] url",
            2,
        ));
    }
    s.validate().map_err(|e| fail(e, 1))?;
    Ok(s)
}

fn dispatch(root: Option<&Path>, cmd: DbCmd) -> Result<(), Failure> {
    match cmd {
        DbCmd::Init { conn } => {
            let s = settings(root, &conn)?;
            let applied = migrate(&s, true)?;
            say_applied(&s, &applied, "initialised");
            Ok(())
        }
        DbCmd::Migrate { conn } => {
            let s = settings(root, &conn)?;
            let applied = migrate(&s, false)?;
            say_applied(&s, &applied, "migrated");
            Ok(())
        }
        DbCmd::Status { conn, json } => status(&settings(root, &conn)?, json),
        DbCmd::Import {
            from,
            replace,
            conn,
        } => {
            let from = from
                .or_else(|| root.map(Path::to_path_buf))
                .ok_or_else(|| fail("import from which mail root? pass ROOT or --root", 2))?;
            crate::mailroot::require(&from).map_err(|e| fail(e.to_string(), 2))?;
            let s = settings(root.or(Some(&from)), &conn)?;
            import(&s, &from, replace)
        }
        DbCmd::Export { to, conn } => {
            let to = to
                .or_else(|| root.map(Path::to_path_buf))
                .ok_or_else(|| fail("export to which directory? pass --to DIR or --root", 2))?;
            let s = settings(root, &conn)?;
            export(&s, &to)
        }
    }
}

fn say_applied(s: &PgSettings, applied: &[i32], what: &str) {
    if applied.is_empty() {
        println!(
            "{}: schema already at version {} (nothing to do)",
            s.target(),
            schema::LATEST
        );
    } else {
        let steps: Vec<String> = applied.iter().map(|v| v.to_string()).collect();
        println!(
            "{}: {what}, schema at version {} (applied step {})",
            s.target(),
            schema::LATEST,
            steps.join(", ")
        );
    }
}

/// `db init` (`create`) or `db migrate`: the missing steps, each in a transaction.
pub fn migrate(s: &PgSettings, create: bool) -> Result<Vec<i32>, DbError> {
    let s = s.clone();
    blocking::run(async move {
        let store = Store::new(&s)?;
        let mut c = store.client().await?;
        schema::migrate(&mut c, store.target(), schema::LATEST, create).await
    })?
}

fn status(s: &PgSettings, json: bool) -> Result<(), Failure> {
    let target = s.target();
    let s2 = s.clone();
    let probe: Result<(Option<i32>, Option<super::store::Status>), DbError> =
        blocking::run(async move {
            let store = Store::new(&s2)?;
            let c = store.client().await?;
            let version = schema::current(&c, store.target()).await?;
            drop(c);
            match schema::require_latest(version) {
                Ok(()) => Ok((version, Some(store.status().await?))),
                Err(_) => Ok((version, None)),
            }
        })?;
    let (schema_version, st) = match probe {
        Ok(p) => p,
        Err(e) => {
            if json {
                let v = serde_json::json!({
                    "database": target,
                    "reachable": !e.is_temporary(),
                    "error": e.to_string(),
                });
                println!("{v}");
            } else {
                println!("database: {target}\nreachable: no ({e})");
            }
            return Err(e.into());
        }
    };
    if json {
        let counts: serde_json::Map<String, serde_json::Value> = st
            .iter()
            .flat_map(|st| st.counts.iter())
            .map(|(t, n)| (t.to_string(), (*n).into()))
            .collect();
        let v = serde_json::json!({
            "database": target,
            "reachable": true,
            "schema_version": schema_version,
            "program_schema_version": schema::LATEST,
            "version": st.as_ref().map(|s| s.version),
            "counts": counts,
        });
        println!("{v}");
    } else {
        println!("database: {target}\nreachable: yes");
        match schema_version {
            None => println!("schema: none (run `turnmail db init`)"),
            Some(v) => println!("schema: version {v} (this program: {})", schema::LATEST),
        }
        if let Some(st) = &st {
            println!("accounts version: {}", st.version);
            for (t, n) in &st.counts {
                println!("{t}: {n}");
            }
        }
    }
    schema::require_latest(schema_version).map_err(Failure::from)
}

/// The records of a mail root's account files.
pub fn read_root(from: &Path) -> Result<Records, Failure> {
    let mut texts = AccountTexts::read(from).map_err(|e| fail(e.to_string(), 111))?;
    // The domains' alias files become rows of the aliases table.
    let aliases = crate::admin::alias_db::from_files(&texts)
        .map_err(|e| fail(format!("{}: {e}; nothing imported", from.display()), 1))?;
    texts.aliases = crate::engine::aliastable::render(&aliases);
    // Its sites (directories with RELAYHOST, Maildir, site.toml) become rows.
    let config = crate::config::Config::load(from)
        .map_err(|e| fail(format!("{}: {e}; nothing imported", from.display()), 1))?;
    let sites = crate::spool::site_rows::rows_from_root(from, &config.sites.roots)
        .map_err(|e| fail(format!("{}: {e}; nothing imported", from.display()), 1))?;
    texts.sites = crate::spool::sitetable::render(&sites);
    Records::from_texts(&texts)
        .map_err(|e| fail(format!("{}: {e}; nothing imported", from.display()), 1))
}

fn import(s: &PgSettings, from: &Path, replace: bool) -> Result<(), Failure> {
    let records = read_root(from)?;
    let s2 = s.clone();
    let r = records.clone();
    let outcome = blocking::with_store(&s2, |store| async move {
        let (old, version) = store.load_records().await?;
        if !old.is_empty() && !replace {
            return Ok(Err(old));
        }
        Ok(Ok(store.commit_records(version, &r).await?))
    })?;
    match outcome {
        Ok(version) => {
            let counts: Vec<String> = records
                .counts()
                .iter()
                .map(|(t, n)| format!("{n} {t}"))
                .collect();
            println!(
                "imported {} into {}: {} (accounts version {version})",
                from.display(),
                s.target(),
                counts.join(", ")
            );
            Ok(())
        }
        Err(old) => Err(fail(
            format!(
                "{} already holds accounts ({} mailboxes, {} domains): pass --replace to replace them",
                s.target(),
                old.mailboxes.len(),
                old.domains.len()
            ),
            1,
        )),
    }
}

/// The six files and how an edit writes each (mode when new, kind).
pub const FILES: [(&str, u32, Kind); 6] = [
    ("users/assign", 0o644, Kind::Assign),
    ("users/poppasswd", 0o640, Kind::Poppasswd),
    ("users/secrets", 0o600, Kind::Secrets),
    ("control/virtualdomains", 0o644, Kind::Control),
    ("control/rcpthosts", 0o644, Kind::Control),
    ("users/quota", 0o644, Kind::Plain),
];

/// Write `texts` into the mail root `to` through an edit (atomic replacement, cdbs
/// and Dovecot's view rebuilt, owners kept): assign and virtualdomains before
/// rcpthosts, so a daemon reading the files never accepts mail it cannot route.
pub fn write_root(to: &Path, texts: &AccountTexts) -> Result<(), crate::admin::AdminError> {
    let mut edit = Edit::begin_files(to)?;
    for (rel, mode, kind) in FILES {
        let text = match rel {
            "users/assign" => &texts.assign,
            "users/poppasswd" => &texts.poppasswd,
            "users/secrets" => &texts.secrets,
            "control/virtualdomains" => &texts.virtualdomains,
            "control/rcpthosts" => &texts.rcpthosts,
            _ => &texts.quota,
        };
        edit.stage(&to.join(rel), text.clone(), mode, kind);
    }
    edit.commit()?;
    // The aliases table's rows as the domains' .qmail files, once their homes are known.
    let table = crate::engine::aliastable::parse(&texts.aliases)
        .map_err(|e| crate::admin::AdminError::Invalid(e.to_string()))?;
    if !table.is_empty() {
        let edit = Edit::begin_files(to)?;
        crate::admin::alias_db::to_files(&edit, &table)?;
    }
    // Each site's directory, Maildir, RELAYHOST and site.toml.
    let sites = crate::spool::sitetable::parse(&texts.sites)
        .map_err(|e| crate::admin::AdminError::Invalid(e.to_string()))?;
    if !sites.is_empty() {
        let mu = crate::admin::layout::mail_user(to)?;
        let problems = crate::spool::site_rows::export(to, &sites, (mu.uid, mu.gid));
        if !problems.is_empty() {
            return Err(crate::admin::AdminError::Invalid(problems.join("; ")));
        }
    }
    Ok(())
}

fn export(s: &PgSettings, to: &Path) -> Result<(), Failure> {
    let s2 = s.clone();
    let (texts, version) = blocking::with_store(&s2, |store| async move { store.load().await })?;
    if crate::mailroot::require(to).is_err() {
        for d in ["control", "users"] {
            let dir = to.join(d);
            crate::owner::create_dirs(&dir, 0o755)
                .map_err(|e| fail(format!("{}: {e}", dir.display()), 1))?;
        }
    }
    write_root(to, &texts).map_err(|e| fail(e.to_string(), crate::admin::exit_code(&e)))?;
    println!(
        "exported accounts version {version} from {} to {}",
        s.target(),
        to.display()
    );
    Ok(())
}
