//! `turnmail site add|del|list`: customer sites that are not always connected, in the
//! serialmail layout `turnmail init` also uses: `sites/SITE/` (0700) with RELAYHOST,
//! a spool `Maildir/`, `.qmail-default` = `./Maildir/` and `site.toml` (domains and
//! schedule); a `+site-SITE-` assign line, and per domain a `D:site-SITE`
//! virtualdomains line and an rcpthosts line. Removing a site keeps its spool in
//! `.deleted/` unless `--purge`: held mail is somebody's mail. On the `postgres`
//! backend the site is also a row of the `sites` table, added and removed in the
//! edit's one transaction (the directory, its Maildir and RELAYHOST made on disk as
//! here; the row is what the daemons read).

use std::path::Path;
use std::time::SystemTime;

use serde_json::json;

use super::edit::{self, Edit, Kind};
use super::error::{AdminError, Result, invalid, io_at};
use super::{domain, layout, names, table};
use crate::maildir::Maildir;
use crate::spool::site::SiteSettings;
use crate::spool::sitetable;

#[derive(Debug, clap::Subcommand)]
pub enum SiteCmd {
    /// Add a site whose mail is held and flushed to its relay host.
    Add {
        /// The site's name: its directory under ROOT/sites/ (letters, digits, - . _).
        site: String,
        /// Where to flush: HOST[:PORT].
        #[arg(long, value_name = "HOST[:PORT]")]
        relayhost: String,
        /// crontab(5) schedule of flushes, e.g. "*/5 * * * *".
        #[arg(long)]
        schedule: Option<String>,
        /// A domain whose mail the site receives (repeatable).
        #[arg(long = "domain", value_name = "DOMAIN")]
        domains: Vec<String>,
    },
    /// Remove a site; its spool goes to ROOT/.deleted/sites/ unless --purge.
    Del {
        /// The site's name.
        site: String,
        /// Delete its spool (and the mail in it) instead of keeping it in ROOT/.deleted/.
        #[arg(long)]
        purge: bool,
    },
    /// List sites with their queue and last flush.
    List {
        /// Print JSON (one object per site; field names as in `status --json`).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(root: &Path, cmd: SiteCmd) -> Result<()> {
    match cmd {
        SiteCmd::Add {
            site,
            relayhost,
            schedule,
            domains,
        } => add(root, &site, &relayhost, schedule.as_deref(), &domains),
        SiteCmd::Del { site, purge } => del(root, &site, purge),
        SiteCmd::List { json } => list(root, json),
    }
}

pub fn check_schedule(s: &str) -> Result<()> {
    crate::schedule::crontab::Crontab::parse(s)
        .map(|_| ())
        .map_err(|e| invalid(format!("schedule {s:?}: {e}")))
}

pub fn add(
    root: &Path,
    site: &str,
    relayhost: &str,
    schedule: Option<&str>,
    domains: &[String],
) -> Result<()> {
    let name = names::local(site, "site name")?;
    let relayhost = names::relayhost(relayhost)?;
    if let Some(s) = schedule {
        check_schedule(s)?;
    }
    let domains: Vec<String> = domains
        .iter()
        .map(|d| names::domain(d))
        .collect::<Result<_>>()?;
    let mut edit = Edit::begin(root)?;
    for d in &domains {
        domain::check_free(&edit, d)?;
    }
    let prefix = layout::site_prefix(&name);
    let (_, entries) = layout::read_assign(&edit)?;
    if let Some(e) = layout::wildcard(&entries, &prefix) {
        return Err(AdminError::Exists(format!(
            "users/assign line {} (+{prefix}-)",
            e.line
        )));
    }
    let root_c = edit.root().canonicalize().map_err(io_at(root))?;
    let dir = root_c.join("sites").join(&name);
    if dir.exists() {
        return Err(AdminError::Exists(dir.display().to_string()));
    }
    let mu = layout::mail_user(&root_c)?;
    let owner = (mu.uid, mu.gid);
    let settings = SiteSettings {
        domains: domains.clone(),
        schedule: schedule.map(str::to_string),
        ..SiteSettings::default()
    };
    let toml_text = toml::to_string(&settings).map_err(|e| invalid(format!("site.toml: {e}")))?;
    edit::validate(Kind::SiteToml, toml_text.as_bytes()).map_err(|reason| AdminError::BadFile {
        path: dir.join("site.toml"),
        reason,
    })?;
    let made = (|| {
        edit::make_dir(&root_c.join("sites"), 0o755, owner)?;
        edit::make_dir(&dir, 0o700, owner)?;
        Maildir::create(dir.join("Maildir")).map_err(io_at(&dir))?;
        edit::chown_tree(&dir, owner.0, owner.1)?;
        edit::write_owned(
            &dir.join("RELAYHOST"),
            format!("{relayhost}\n").as_bytes(),
            0o644,
            owner,
        )?;
        edit::write_owned(&dir.join(".qmail-default"), b"./Maildir/\n", 0o600, owner)?;
        edit::write_owned(&dir.join("site.toml"), toml_text.as_bytes(), 0o644, owner)
    })();
    let done = made.and_then(|()| {
        domain::stage_assign(&mut edit, &prefix, &dir, &mu)?;
        for d in &domains {
            domain::stage_route(&mut edit, d, &prefix)?;
        }
        // On the postgres backend the site is a row, committed with its routes.
        if let Some(mut rows) = edit.db_sites()? {
            if rows.contains_key(&name) {
                return Err(AdminError::Exists(format!(
                    "site {name} (a row of the sites table)"
                )));
            }
            let settings = sitetable::settings_from_toml(&toml_text).map_err(invalid)?;
            rows.insert(
                name.clone(),
                sitetable::SiteRow {
                    relayhost: Some(relayhost.clone()),
                    dir: None,
                    settings,
                },
            );
            edit.stage_sites(rows)?;
        }
        edit.commit()
    });
    if let Err(e) = done {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    println!(
        "added site {name}: flushes to {relayhost}{}{}",
        if domains.is_empty() {
            String::new()
        } else {
            format!(", receives mail for {}", domains.join(", "))
        },
        schedule
            .map(|s| format!(", schedule {s:?}"))
            .unwrap_or_default()
    );
    if domains.is_empty() {
        // Such a site holds nothing, and ETRN and ODMR name sites by domain.
        println!(
            "note: no domain reaches site {name} yet: it receives no mail until a \
             control/virtualdomains line DOMAIN:{prefix} routes one here (and DOMAIN is in \
             rcpthosts); `turnmail site add` with --domain does both"
        );
    }
    Ok(())
}

pub fn del(root: &Path, site: &str, purge: bool) -> Result<()> {
    let name = names::local(site, "site name")?;
    let prefix = layout::site_prefix(&name);
    let mut edit = Edit::begin(root)?;
    let vd = edit.read_or_empty(&edit.paths().control.join("virtualdomains"))?;
    let domains: Vec<String> = layout::virtualdomains(&vd)
        .into_iter()
        .filter(|(_, _, p)| p.eq_ignore_ascii_case(&prefix))
        .map(|(_, k, _)| k)
        .collect();
    let (_, entries) = layout::read_assign(&edit)?;
    let mut dir = layout::wildcard(&entries, &prefix).map(|e| layout::bytes_path(&e.home));
    let mut row = false;
    if let Some(mut rows) = edit.db_sites()?
        && let Some(r) = rows.remove(&name)
    {
        dir = dir.or_else(|| Some(crate::spool::site_rows::dir_of(edit.root(), &name, &r)));
        edit.stage_sites(rows)?;
        row = true;
    }
    if dir.is_none() && domains.is_empty() && !row {
        return Err(AdminError::NotFound(format!(
            "no site {name} (no +{prefix}- assign line)"
        )));
    }
    for d in &domains {
        domain::stage_unrouting(&mut edit, d, &prefix)?;
    }
    if domains.is_empty() {
        let (text, entries) = layout::read_assign(&edit)?;
        if let Some(e) = layout::wildcard(&entries, &prefix) {
            let p = edit.paths().assign.clone();
            edit.stage(
                &p,
                super::lines::assign_remove(&text, &[e.line]),
                0o644,
                Kind::Assign,
            );
        }
    }
    let root_c = edit.root().canonicalize().map_err(io_at(root))?;
    // A hand-made site's own users/assign lines (not `+site-NAME-`) are not this
    // command's to remove: said, so that mail still routed there is not a surprise.
    let others: Vec<String> = match &dir {
        Some(d) if row => {
            let (_, entries) = layout::read_assign(&edit)?;
            let d = d.canonicalize().unwrap_or_else(|_| d.clone());
            entries
                .iter()
                .filter(|e| e.kind == crate::qmail::assign::AssignKind::Wildcard)
                .filter(|e| {
                    !e.local
                        .eq_ignore_ascii_case(format!("{prefix}-").as_bytes())
                })
                .filter(|e| {
                    let h = layout::bytes_path(&e.home);
                    h.canonicalize().unwrap_or(h) == d
                })
                .map(|e| format!("+{}", String::from_utf8_lossy(&e.local)))
                .collect()
        }
        _ => Vec::new(),
    };
    edit.commit()?;
    println!("removed site {name} ({} domain(s))", domains.len());
    if !others.is_empty() {
        println!(
            "note: users/assign still routes {} to its directory: mail for them is \
             deferred until those lines go (`turnmail domain del`)",
            others.join(" ")
        );
    }
    if let Some(dir) = dir.filter(|d| d.exists()) {
        let queued = layout::spool_usage(&dir.join("Maildir")).0;
        if purge {
            layout::purge_tree(&dir)?;
            println!(
                "purged {} ({queued} queued message(s) deleted)",
                dir.display()
            );
        } else {
            let to = layout::move_to_deleted(&root_c, "sites", &name, &dir)?;
            println!(
                "spool kept in {} ({queued} queued message(s))",
                to.display()
            );
        }
    }
    Ok(())
}

#[derive(Debug, serde::Serialize)]
pub struct SiteRow {
    pub site: String,
    pub dir: String,
    pub relayhost: Option<String>,
    pub domains: Vec<String>,
    /// The site's own schedule (site.toml); None: the default of `[flush] schedule`.
    pub schedule: Option<String>,
    /// The schedule in force, the site's own or the default.
    pub effective_schedule: String,
    pub queued: u64,
    /// Age of the oldest queued message, in seconds.
    pub oldest_secs: Option<u64>,
    pub last_attempt: Option<u64>,
    pub last_result: Option<String>,
    /// Unix time of the next scheduled flush.
    pub next_run: Option<i64>,
}

pub fn rows(root: &Path) -> Result<(Vec<SiteRow>, Vec<String>)> {
    let config = crate::config::Config::load(root)?;
    let found = crate::spool::site_rows::discover_configured(root, &config);
    let now = SystemTime::now();
    let status_dir = root.join("run/sites");
    let mut out = Vec::new();
    for s in &found.sites {
        let (queued, oldest) = layout::spool_usage(&s.dir.join("Maildir"));
        let status = crate::flush::status::read(&status_dir, &s.name);
        let schedule = s.settings.schedule.clone();
        let effective_schedule = schedule
            .clone()
            .unwrap_or_else(|| config.flush.schedule.clone());
        // The schedule's own time (a running daemon adds the site's jitter).
        let next_run = crate::daemon::scheduler::site_schedule(s, &config.flush.schedule)
            .ok()
            .and_then(|c| c.next_after(chrono::Utc::now()))
            .map(|t| t.timestamp());
        out.push(SiteRow {
            site: s.name.clone(),
            dir: s.dir.display().to_string(),
            relayhost: s.relayhost.as_ref().map(|r| match r.port {
                Some(p) => format!("{}:{p}", r.host),
                None => r.host.clone(),
            }),
            domains: s.domains.clone(),
            schedule,
            effective_schedule,
            queued,
            oldest_secs: oldest
                .and_then(|t| now.duration_since(t).ok())
                .map(|d| d.as_secs()),
            last_attempt: status.as_ref().map(|s| s.last_attempt),
            last_result: status.map(|s| s.last_result),
            next_run,
        });
    }
    Ok((out, found.problems))
}

fn list(root: &Path, json: bool) -> Result<()> {
    let (rows, problems) = rows(root)?;
    if json {
        table::print_json(&json!(rows));
    } else {
        print!("{}", site_table(&rows).render());
    }
    for p in problems {
        eprintln!("turnmail: {p}");
    }
    Ok(())
}

pub fn site_table(rows: &[SiteRow]) -> table::Table {
    let now = crate::datetime::now_unix();
    let mut t = table::Table::new(&[
        "SITE",
        "RELAYHOST",
        "QUEUED#",
        "OLDEST#",
        "LAST FLUSH",
        "NEXT FLUSH",
        "DOMAINS",
    ]);
    for r in rows {
        t.row(vec![
            r.site.clone(),
            r.relayhost.clone().unwrap_or_else(|| "(none)".into()),
            r.queued.to_string(),
            r.oldest_secs.map_or("-".into(), table::human_age),
            match (&r.last_attempt, &r.last_result) {
                (Some(at), Some(res)) => {
                    format!("{} ago: {res}", table::human_age(now.saturating_sub(*at)))
                }
                _ => "never".into(),
            },
            match r.next_run {
                Some(t) if t >= now as i64 => format!("in {}", table::human_age(t as u64 - now)),
                Some(_) => "due".into(),
                None => "-".into(),
            },
            r.domains.join(" "),
        ]);
    }
    t
}
