//! `turnmail domain alias add|remove` (vpopmail's `vaddaliasdomain`): a domain that
//! receives and logs in exactly as another domain's mailboxes. qmail's way: a
//! virtualdomains line `NEW:PREFIX` routing to the target's own `+PREFIX-` assign line
//! (no assign line, directory or account of its own), and NEW in rcpthosts; logins as
//! `user@NEW` are `user@TARGET` by the engine's rule (`engine/aliasdomains.rs`), and
//! Dovecot's passwd-file gets a line for each. Removing the alias drops its two lines
//! and leaves the target as it was.

use std::path::Path;

use super::domain::{check_free, stage_route, stage_unrouting};
use super::edit::Edit;
use super::error::{AdminError, Result, invalid};
use super::{layout, names};
use crate::engine::aliasdomains;

#[derive(Debug, clap::Subcommand)]
pub enum AliasDomainCmd {
    /// Make NEW deliver to and log in as TARGET's mailboxes.
    Add {
        /// The alias domain, e.g. example.net.
        new: String,
        /// The domain whose mailboxes it serves (a domain of this root).
        target: String,
    },
    /// Stop serving an alias domain (its target is left as it is).
    Remove {
        /// The alias domain.
        alias: String,
    },
}

pub fn run(root: &Path, cmd: AliasDomainCmd) -> Result<()> {
    match cmd {
        AliasDomainCmd::Add { new, target } => {
            let (new, target) = add(root, &new, &target)?;
            println!("{new} is now an alias of {target}: user@{new} is user@{target}");
            Ok(())
        }
        AliasDomainCmd::Remove { alias } => {
            let (alias, target) = remove(root, &alias)?;
            println!("removed alias domain {alias} (was an alias of {target})");
            Ok(())
        }
    }
}

/// The alias domains of the edit's virtualdomains: alias → target.
pub fn aliases(edit: &Edit) -> Result<aliasdomains::AliasMap> {
    let vd = edit.read_or_empty(&edit.paths().control.join("virtualdomains"))?;
    let lines = layout::virtualdomains(&vd);
    Ok(aliasdomains::alias_map(
        lines.iter().map(|(_, k, p)| (k.as_bytes(), p.as_bytes())),
    ))
}

/// The target of `domain` if it is an alias domain.
pub fn target_of(edit: &Edit, domain: &str) -> Result<Option<String>> {
    Ok(aliases(edit)?
        .get(domain.as_bytes())
        .map(|t| String::from_utf8_lossy(t).into_owned()))
}

/// Mailboxes, aliases and the unknown-address policy are the target's: never edited
/// under an alias domain's name (its home is the target's).
pub fn refuse_alias(edit: &Edit, domain: &str) -> Result<()> {
    match target_of(edit, domain)? {
        Some(t) => Err(invalid(format!(
            "{domain} is an alias domain of {t}: add it to {t} (user@{domain} is user@{t})"
        ))),
        None => Ok(()),
    }
}

pub fn add(root: &Path, new: &str, target: &str) -> Result<(String, String)> {
    let new = names::domain(new)?;
    let target = names::domain(target)?;
    if new == target {
        return Err(invalid(format!("{new} cannot be an alias of itself")));
    }
    let mut edit = Edit::begin(root)?;
    if let Some(t) = target_of(&edit, &target)? {
        return Err(invalid(format!(
            "{target} is itself an alias of {t}: make {new} an alias of {t}"
        )));
    }
    let dh = layout::need_domain(&edit, &target)?;
    if dh.prefix.starts_with("site-") {
        return Err(invalid(format!(
            "{target} belongs to a site (prefix {}); alias domains serve mailboxes",
            dh.prefix
        )));
    }
    if !dh.prefix.eq_ignore_ascii_case(&target) {
        return Err(invalid(format!(
            "{target} is routed to the prefix {} (control/virtualdomains), not to its own \
             name: an alias domain needs its target's line to be {target}:{target}",
            dh.prefix
        )));
    }
    check_free(&edit, &new)?;
    let (_, accounts) = layout::read_poppasswd(&edit)?;
    let suffix = format!("@{new}");
    if let Some(a) = accounts
        .iter()
        .find(|a| a.login.to_ascii_lowercase().ends_with(suffix.as_bytes()))
    {
        return Err(AdminError::Exists(format!(
            "an account of {new} (users/poppasswd line {}); remove it first",
            a.line
        )));
    }
    // Routes first, rcpthosts last: mail for NEW is never accepted unroutable.
    stage_route(&mut edit, &new, &dh.prefix)?;
    edit.commit()?;
    Ok((new, target))
}

pub fn remove(root: &Path, alias: &str) -> Result<(String, String)> {
    let alias = names::domain(alias)?;
    let mut edit = Edit::begin(root)?;
    let Some(target) = target_of(&edit, &alias)? else {
        return Err(AdminError::NotFound(format!(
            "{alias} is not an alias domain here (see `turnmail domain list`)"
        )));
    };
    // rcpthosts first, then virtualdomains; the target's assign line stays (the
    // target still routes to it).
    stage_unrouting(&mut edit, &alias, &target)?;
    edit.commit()?;
    Ok((alias, target))
}
