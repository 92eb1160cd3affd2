//! `turnmail alias add|del|list`: forwarding addresses of a virtual domain, each a
//! `.qmail-LOCAL` file in the domain home holding one `&TARGET` line per target, the
//! way qmail users have always written them. A file that delivers into a mailbox is a
//! user's, not an alias, and is never changed or removed here. With the accounts in
//! PostgreSQL the aliases are rows of its `aliases` table instead (`alias_db.rs`).

use std::path::Path;

use serde_json::json;

use super::edit::{self, Edit};
use super::error::{AdminError, Result, invalid, io_at};
use super::{dotfiles, layout, names, table};

#[derive(Debug, clap::Subcommand)]
pub enum AliasCmd {
    /// Forward ADDRESS to each TARGET (added to an existing alias).
    Add {
        /// The alias, user@domain of a virtual domain.
        address: String,
        /// Addresses to forward to (anywhere; a local one is delivered locally).
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Remove TARGETs from an alias, or the whole alias when none are given.
    Del {
        /// The alias, user@domain.
        address: String,
        /// Targets to stop forwarding to; none removes the alias.
        targets: Vec<String>,
    },
    /// List aliases (all, or of one domain).
    List {
        /// Only this domain's aliases.
        domain: Option<String>,
        /// Print the list as JSON (field names in README).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(root: &Path, cmd: AliasCmd) -> Result<()> {
    match cmd {
        AliasCmd::Add { address, targets } => add(root, &address, &targets),
        AliasCmd::Del { address, targets } => del(root, &address, &targets),
        AliasCmd::List { domain, json } => list(root, domain.as_deref(), json),
    }
}

fn render(targets: &[String]) -> String {
    targets.iter().map(|t| format!("&{t}\n")).collect()
}

pub fn add(root: &Path, address: &str, targets: &[String]) -> Result<()> {
    let (local, domain) = names::address(address)?;
    let targets: Vec<String> = targets
        .iter()
        .map(|t| names::forward_target(t))
        .collect::<Result<_>>()?;
    let edit = Edit::begin(root)?;
    super::aliasdomain::refuse_alias(&edit, &domain)?;
    let dh = layout::need_domain(&edit, &domain)?;
    if let Some(table) = edit.db_aliases()? {
        return super::alias_db::add(edit, table, &dh, &local, targets);
    }
    let path = dh.home.join(names::dotqmail_name(&local));
    let mut all = match dotfiles::read(&path, &local) {
        None => Vec::new(),
        Some(f) if f.is_alias() => f.forwards(),
        Some(f) => {
            return Err(invalid(format!(
                "{} is not an alias ({}); it is left alone",
                path.display(),
                f.summary()
            )));
        }
    };
    if all.is_empty() {
        super::limits::check_aliases(&edit, &dh)?;
    }
    let mut added = 0;
    for t in targets {
        if !all.iter().any(|x| x.eq_ignore_ascii_case(&t)) {
            all.push(t);
            added += 1;
        }
    }
    let text = render(&all);
    edit::validate(edit::Kind::DotQmail, text.as_bytes()).map_err(|reason| {
        AdminError::BadFile {
            path: path.clone(),
            reason,
        }
    })?;
    edit::write_owned(&path, text.as_bytes(), 0o600, (dh.uid, dh.gid))?;
    drop(edit);
    println!(
        "{local}@{domain} forwards to {} ({added} added)",
        all.join(", ")
    );
    Ok(())
}

pub fn del(root: &Path, address: &str, targets: &[String]) -> Result<()> {
    let (local, domain) = names::address(address)?;
    let mut edit = Edit::begin(root)?;
    super::aliasdomain::refuse_alias(&edit, &domain)?;
    let dh = layout::need_domain(&edit, &domain)?;
    if let Some(table) = edit.db_aliases()? {
        if super::alias_db::del(edit, table, &dh, &local, targets)? {
            return Ok(());
        }
        // No row of that name: an alias file of the home, removed as before.
        edit = Edit::begin(root)?;
    }
    let path = dh.home.join(names::dotqmail_name(&local));
    let f = dotfiles::read(&path, &local)
        .ok_or_else(|| AdminError::NotFound(format!("no alias {local}@{domain}")))?;
    if !f.is_alias() {
        return Err(invalid(format!(
            "{} is not an alias ({}); use `turnmail user del` for a mailbox",
            path.display(),
            f.summary()
        )));
    }
    let mut left = f.forwards();
    if targets.is_empty() {
        left.clear();
    } else {
        for t in targets {
            let t = names::forward_target(t)?;
            let before = left.len();
            left.retain(|x| !x.eq_ignore_ascii_case(&t));
            if left.len() == before {
                return Err(AdminError::NotFound(format!(
                    "{local}@{domain} does not forward to {t}"
                )));
            }
        }
    }
    if left.is_empty() {
        std::fs::remove_file(&path).map_err(io_at(&path))?;
        crate::fsutil::fsync_dir(&dh.home).map_err(io_at(&dh.home))?;
        println!("removed alias {local}@{domain}");
    } else {
        edit::write_owned(&path, render(&left).as_bytes(), 0o600, (dh.uid, dh.gid))?;
        println!("{local}@{domain} forwards to {}", left.join(", "));
    }
    drop(edit);
    Ok(())
}

#[derive(Debug, serde::Serialize)]
pub struct AliasRow {
    pub address: String,
    pub targets: Vec<String>,
}

pub fn rows(root: &Path, domain: Option<&str>) -> Result<Vec<AliasRow>> {
    let domain = domain.map(names::domain).transpose()?;
    let mut out = Vec::new();
    let domains: Vec<_> = super::domain::rows(root)?
        .into_iter()
        .filter(|r| domain.as_ref().is_none_or(|d| *d == r.domain))
        .collect();
    if let Some(d) = &domain
        && domains.is_empty()
    {
        return Err(AdminError::NotFound(format!("no domain {d}")));
    }
    let table = Edit::begin_read(root)?.db_aliases()?;
    for d in domains {
        if let Some(table) = &table {
            if d.alias_of.is_none() {
                out.extend(super::alias_db::rows_of(
                    table,
                    &d.domain,
                    d.home.as_deref().map(Path::new),
                ));
            }
            continue;
        }
        let Some(home) = d.home else { continue };
        for f in dotfiles::scan(Path::new(&home)) {
            if f.is_alias() {
                let address = if f.local == "default" {
                    format!("*@{} (unknown addresses)", d.domain)
                } else {
                    format!("{}@{}", f.local, d.domain)
                };
                out.push(AliasRow {
                    address,
                    targets: f.forwards(),
                });
            }
        }
    }
    Ok(out)
}

fn list(root: &Path, domain: Option<&str>, json: bool) -> Result<()> {
    let rows = rows(root, domain)?;
    if json {
        table::print_json(&json!(rows));
        return Ok(());
    }
    let mut t = table::Table::new(&["ALIAS", "FORWARDS TO"]);
    for r in &rows {
        t.row(vec![r.address.clone(), r.targets.join(", ")]);
    }
    print!("{}", t.render());
    Ok(())
}
