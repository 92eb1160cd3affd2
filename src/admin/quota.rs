//! `turnmail user quota ADDRESS [LIMITS|none]` and `@DOMAIN` defaults: the limits go
//! into `users/quota` (in the edit transaction), then into the `maildirsize` header
//! of each mailbox they apply to, recalculated, which is where deliveries, the RCPT
//! check and Dovecot's quota plugin read them. Without LIMITS: the mailbox's limits,
//! where they come from, and its usage.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::edit::{Edit, Kind};
use super::error::{Result, invalid, io_at};
use super::{layout, names, table};
use crate::quota::table::{self as qtable, Source, Table};
use crate::quota::{Limits, Usage, disk};

#[derive(Debug, clap::Args)]
pub struct QuotaArgs {
    /// The mailbox (user@domain), or @DOMAIN for the domain's default.
    address: String,
    /// New limits: 10M, 1G, 10000000S, 1000C, 10M,1000C, or none (NOQUOTA). A
    /// mailbox's `none` overrides its domain's default; `default` drops the mailbox's
    /// own line so the domain's default applies again. Without it, show the quota.
    limits: Option<String>,
    /// Show as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(root: &Path, a: QuotaArgs) -> Result<()> {
    let domain_default = a.address.starts_with('@');
    let key = if domain_default {
        format!("@{}", names::domain(&a.address[1..])?)
    } else {
        let (local, domain) = names::address(&a.address)?;
        format!("{local}@{domain}")
    };
    match a.limits.as_deref() {
        None => show(root, &key, a.json),
        Some(text) => {
            let new = if text.eq_ignore_ascii_case("default") {
                if domain_default {
                    return Err(invalid(
                        "`default` is for a mailbox; use `none` to drop a domain's default",
                    ));
                }
                None
            } else {
                Some(Limits::parse_operator(text).map_err(|e| invalid(e.to_string()))?)
            };
            let changed = set(root, &key, new)?;
            for (login, u) in &changed {
                match u {
                    Some(u) => println!(
                        "{login}: quota {}, using {} bytes in {} messages ({}%)",
                        u.limits,
                        u.bytes,
                        u.messages,
                        u.percent()
                    ),
                    None => println!("{login}: no quota"),
                }
            }
            if changed.is_empty() {
                println!("{key}: quota recorded (no mailboxes to update)");
            }
            Ok(())
        }
    }
}

/// Record `key`'s limits (`None`: drop a mailbox's own line) and bring the
/// `maildirsize` of every mailbox they now apply to in line. Returns each mailbox
/// updated with its new usage.
pub fn set(root: &Path, key: &str, new: Option<Limits>) -> Result<Vec<(String, Option<Usage>)>> {
    let mut edit = Edit::begin(root)?;
    let path = root.join(qtable::PATH);
    let text = edit.read_or_empty(&path)?;
    let mut t = qtable::parse(&text).map_err(|e| invalid(e.to_string()))?;
    let (_, accounts) = layout::read_poppasswd(&edit)?;
    let homes: Vec<(String, PathBuf)> = accounts
        .iter()
        .map(|a| {
            (
                String::from_utf8_lossy(&a.login).to_ascii_lowercase(),
                layout::bytes_path(&a.home),
            )
        })
        .collect();
    let affected: Vec<&(String, PathBuf)> = match key.strip_prefix('@') {
        Some(d) => {
            if layout::find_domain(&edit, d)?.is_none() {
                return Err(super::error::AdminError::NotFound(format!("domain {d}")));
            }
            match new {
                Some(l) => t.domains.insert(d.to_string(), l),
                None => t.domains.remove(d),
            };
            let suffix = format!("@{d}");
            homes.iter().filter(|(l, _)| l.ends_with(&suffix)).collect()
        }
        None => {
            let Some(h) = homes.iter().find(|(l, _)| l == key) else {
                return Err(super::error::AdminError::NotFound(format!(
                    "mailbox {key} (see `turnmail user list`)"
                )));
            };
            refuse_past_max_quota(&edit, key, new.as_ref())?;
            match new {
                Some(l) => t.mailboxes.insert(key.to_string(), l),
                None => t.mailboxes.remove(key),
            };
            vec![h]
        }
    };
    edit.stage(&path, qtable::render(&t), 0o644, Kind::Plain);
    edit.commit()?;
    // users/quota is the record; each maildirsize now follows it. A mailbox whose
    // file cannot be written is reported, the others still done.
    let mut out = Vec::new();
    for (login, home) in affected {
        let md = home.join("Maildir");
        if !md.is_dir() {
            continue;
        }
        let (limits, _) = t.effective(login);
        let u = disk::set_limits(&md, &limits).map_err(io_at(&md))?;
        out.push((login.clone(), u));
    }
    Ok(out)
}

/// A mailbox's own limits may not be larger than its domain's `max_quota`
/// (`turnmail domain limits`), nor unlimited when there is one.
fn refuse_past_max_quota(edit: &Edit, login: &str, new: Option<&Limits>) -> Result<()> {
    let (Some(l), Some((_, domain))) = (new, login.rsplit_once('@')) else {
        return Ok(());
    };
    let Some(dh) = layout::find_domain(edit, domain)? else {
        return Ok(());
    };
    let Some(max) = super::limits::read(edit, &dh)?.max_quota else {
        return Ok(());
    };
    match l.bytes {
        Some(b) if b <= max => Ok(()),
        _ => Err(invalid(format!(
            "{domain} allows at most {} per mailbox (turnmail domain limits {domain})",
            super::table::human_bytes(max)
        ))),
    }
}

/// Drop a removed mailbox's line from `users/quota` in `edit` (nothing staged when it
/// has none).
pub fn stage_removal(edit: &mut Edit, login: &str) -> Result<()> {
    let path = edit.root().join(qtable::PATH);
    let text = edit.read_or_empty(&path)?;
    let mut t = qtable::parse(&text).map_err(|e| invalid(e.to_string()))?;
    if t.mailboxes.remove(&login.to_ascii_lowercase()).is_some() {
        edit.stage(&path, qtable::render(&t), 0o644, Kind::Plain);
    }
    Ok(())
}

/// Write the `maildirsize` of a new mailbox when its domain has a default.
pub fn apply_default(root: &Path, login: &str, maildir: &Path) -> Result<()> {
    let t = qtable::load(root).map_err(io_at(&root.join(qtable::PATH)))?;
    let (limits, _) = t.effective(login);
    if !limits.is_none() {
        disk::set_limits(maildir, &limits).map_err(io_at(maildir))?;
    }
    Ok(())
}

/// One mailbox's quota as listings show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Shown {
    pub limits: Limits,
    pub source: Source,
    /// From `maildirsize`, when the mailbox has one.
    pub usage: Option<Usage>,
}

/// The quota table, read for a listing (an unreadable table is an error).
pub fn table_for_listing(root: &Path) -> Result<Table> {
    qtable::load(root).map_err(io_at(&root.join(qtable::PATH)))
}

pub fn shown(t: &Table, login: &str, maildir: &Path) -> Shown {
    let (limits, source) = t.effective(login);
    Shown {
        limits,
        source,
        usage: disk::peek(maildir).ok().flatten(),
    }
}

fn show(root: &Path, key: &str, json: bool) -> Result<()> {
    let t = table_for_listing(root)?;
    if let Some(d) = key.strip_prefix('@') {
        let l = t.domains.get(d).copied();
        if json {
            table::print_json(&json!({ "domain": d, "default": l.map(|l| json!(l)) }));
        } else {
            match l {
                Some(l) => println!("@{d}: default quota {l}"),
                None => println!("@{d}: no default quota"),
            }
        }
        return Ok(());
    }
    let edit = super::domain::ReadOnly::new(root)?;
    let (_, accounts) = layout::read_poppasswd(&edit.0)?;
    drop(edit);
    let Some(a) = accounts
        .iter()
        .find(|a| a.login.eq_ignore_ascii_case(key.as_bytes()))
    else {
        return Err(super::error::AdminError::NotFound(format!("mailbox {key}")));
    };
    let md = layout::bytes_path(&a.home).join("Maildir");
    let s = shown(&t, key, &md);
    if json {
        table::print_json(&json!({ "login": key, "quota": s }));
        return Ok(());
    }
    let source = match s.source {
        Source::Mailbox => "its own",
        Source::Domain => "the domain's default",
        Source::None => "none set",
    };
    println!("{key}: quota {} ({source})", s.limits);
    match s.usage {
        Some(u) => println!(
            "using {} in {} messages ({}% of the quota)",
            table::human_bytes(u.bytes.max(0) as u64),
            u.messages,
            u.percent()
        ),
        None => println!("no maildirsize in {}", md.display()),
    }
    Ok(())
}
