//! `turnmail alias` with the accounts in PostgreSQL: an alias is a row of the
//! `aliases` table (vpopmail's valias way), edited in the same transaction as the
//! other account texts, and no `.qmail` file is written. A `.qmail-LOCAL` file already
//! in the domain's home keeps working where no row of its name exists, is listed, and
//! can still be removed; a user's own file (a mailbox delivery) is never shadowed.
//! Also the two directions between the table and files: a files root's alias files
//! as rows (`db import`), rows as files (`db export`).

use std::path::Path;

use super::alias::AliasRow;
use super::edit::{self, Edit};
use super::error::{AdminError, Result, invalid};
use super::layout::{self, DomainHome};
use super::{dotfiles, names};
use crate::engine::aliasdomains;
use crate::engine::aliastable::{self, Aliases};
use crate::engine::source::AccountTexts;
use crate::qmail::assign;

fn forwards(lines: &[String]) -> Option<Vec<String>> {
    lines
        .iter()
        .map(|l| l.strip_prefix('&').map(str::to_string))
        .collect()
}

/// Refuse to shadow a user's own `.qmail-LOCAL` (it delivers into a mailbox).
fn refuse_mailbox_file(dh: &DomainHome, local: &str) -> Result<()> {
    let path = dh.home.join(names::dotqmail_name(local));
    match dotfiles::read(&path, local) {
        Some(f) if !f.is_alias() => Err(invalid(format!(
            "{} is not an alias ({}); it is left alone",
            path.display(),
            f.summary()
        ))),
        _ => Ok(()),
    }
}

pub(super) fn add(
    mut edit: Edit,
    mut table: Aliases,
    dh: &DomainHome,
    local: &str,
    targets: Vec<String>,
) -> Result<()> {
    let domain = &dh.domain;
    let key = format!("{local}@{domain}");
    aliastable::check_address(&key).map_err(invalid)?;
    refuse_mailbox_file(dh, local)?;
    let mut all = match table.get(&key) {
        None => Vec::new(),
        Some(lines) => forwards(lines).ok_or_else(|| {
            invalid(format!(
                "{key} is a row of the aliases table that delivers into a mailbox \
                 ({}); it is left alone",
                lines.join(", ")
            ))
        })?,
    };
    if all.is_empty() {
        let n = table
            .keys()
            .filter(|k| {
                k.rsplit_once('@')
                    .is_some_and(|(l, d)| d == domain && l != "default")
            })
            .count();
        super::limits::check_alias_count(&edit, dh, n as u64)?;
    }
    let mut added = 0;
    for t in targets {
        if !all.iter().any(|x| x.eq_ignore_ascii_case(&t)) {
            all.push(t);
            added += 1;
        }
    }
    let lines: Vec<String> = all.iter().map(|t| format!("&{t}")).collect();
    for l in &lines {
        aliastable::check_line(l).map_err(|e| invalid(format!("{key}: {e}")))?;
    }
    table.insert(key.clone(), lines);
    edit.stage_aliases(table)?;
    edit.commit()?;
    println!("{key} forwards to {} ({added} added)", all.join(", "));
    Ok(())
}

/// Remove targets or the whole row; Ok(false) when no row has this name (the caller
/// looks for a `.qmail` file instead).
pub(super) fn del(
    mut edit: Edit,
    mut table: Aliases,
    dh: &DomainHome,
    local: &str,
    targets: &[String],
) -> Result<bool> {
    let key = format!("{local}@{}", dh.domain);
    let Some(lines) = table.get(&key) else {
        return Ok(false);
    };
    let mut left = forwards(lines).ok_or_else(|| {
        invalid(format!(
            "{key} delivers into a mailbox ({}); change it by SQL",
            lines.join(", ")
        ))
    })?;
    if targets.is_empty() {
        left.clear();
    } else {
        for t in targets {
            let t = names::forward_target(t)?;
            let before = left.len();
            left.retain(|x| !x.eq_ignore_ascii_case(&t));
            if left.len() == before {
                return Err(AdminError::NotFound(format!(
                    "{key} does not forward to {t}"
                )));
            }
        }
    }
    if left.is_empty() {
        table.remove(&key);
    } else {
        table.insert(key.clone(), left.iter().map(|t| format!("&{t}")).collect());
    }
    edit.stage_aliases(table)?;
    edit.commit()?;
    if left.is_empty() {
        println!("removed alias {key}");
    } else {
        println!("{key} forwards to {}", left.join(", "));
    }
    Ok(true)
}

fn shown(local: &str, domain: &str) -> String {
    if local == "default" {
        format!("*@{domain} (unknown addresses)")
    } else {
        format!("{local}@{domain}")
    }
}

/// The rows of `domain`, then its home's alias files that no row shadows.
pub(super) fn rows_of(table: &Aliases, domain: &str, home: Option<&Path>) -> Vec<AliasRow> {
    let mut out = Vec::new();
    for (key, lines) in table {
        if let Some((l, d)) = key.rsplit_once('@')
            && d == domain
        {
            out.push(AliasRow {
                address: shown(l, d),
                targets: lines
                    .iter()
                    .map(|x| x.strip_prefix('&').unwrap_or(x).to_string())
                    .collect(),
            });
        }
    }
    for f in home.map(dotfiles::scan).unwrap_or_default() {
        let key = format!("{}@{domain}", f.local.to_ascii_lowercase());
        if f.is_alias() && !table.contains_key(&key) {
            out.push(AliasRow {
                address: format!("{} (.qmail file)", shown(&f.local, domain)),
                targets: f.forwards(),
            });
        }
    }
    out
}

/// The alias files of a files root's domains (those `turnmail alias list` shows), as
/// the table's rows; `texts` are that root's account files.
pub fn from_files(texts: &AccountTexts) -> std::result::Result<Aliases, String> {
    let entries = if texts.assign.is_empty() {
        Vec::new()
    } else {
        assign::parse(&texts.assign).map_err(|e| e.to_string())?
    };
    let vd = layout::virtualdomains(&texts.virtualdomains);
    let alias_domains =
        aliasdomains::alias_map(vd.iter().map(|(_, k, p)| (k.as_bytes(), p.as_bytes())));
    let mut out = Aliases::new();
    for (_, domain, prefix) in &vd {
        if prefix.starts_with("site-")
            || domain.is_empty()
            || domain.starts_with('.')
            || domain.contains('@')
            || alias_domains.contains_key(domain.as_bytes())
        {
            continue;
        }
        let Some(e) = layout::wildcard(&entries, prefix) else {
            continue;
        };
        let home = layout::bytes_path(&e.home);
        if home.join("RELAYHOST").exists() {
            continue; // an adopted serialmail site
        }
        for f in dotfiles::scan(&home).into_iter().filter(|f| f.is_alias()) {
            let key = format!("{}@{domain}", f.local.to_ascii_lowercase());
            aliastable::check_address(&key).map_err(|e| format!("{}: {e}", f.path.display()))?;
            out.insert(key, f.forwards().iter().map(|t| format!("&{t}")).collect());
        }
    }
    Ok(out)
}

/// Write each row as its domain's `.qmail-LOCAL` file (mode 0600, the domain's
/// owner) in the files root `edit` opened; a row of a domain that root lacks is
/// named in the error.
pub fn to_files(edit: &Edit, table: &Aliases) -> Result<usize> {
    let mut n = 0;
    for (key, lines) in table {
        let Some((local, domain)) = key.rsplit_once('@') else {
            continue;
        };
        let dh = layout::need_domain(edit, domain)?;
        let path = dh.home.join(names::dotqmail_name(local));
        let text = aliastable::file_text(lines);
        edit::validate(edit::Kind::DotQmail, &text).map_err(|reason| AdminError::BadFile {
            path: path.clone(),
            reason,
        })?;
        edit::write_owned(&path, &text, 0o600, (dh.uid, dh.gid))?;
        n += 1;
    }
    Ok(n)
}
