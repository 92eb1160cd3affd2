//! `turnmail domain add|del|list` (and `dkim`, in `dkim.rs`): a virtual domain in the layout `turnmail init`
//! makes. Adding writes, in this order, the domain directory (mode 0700) with its
//! `.qmail-default` policy, the `+DOMAIN-` assign line, the `DOMAIN:DOMAIN`
//! virtualdomains line and finally the rcpthosts line, so the daemon never accepts
//! mail for a domain it cannot yet route. Removing goes the other way round and moves
//! the domain's mailboxes to `.deleted/` unless `--purge` is given.

use std::path::Path;

use serde_json::json;

use super::edit::{self, Edit, Kind};
use super::error::{AdminError, Result, invalid};
use super::layout::{self, DomainHome};
use super::{dotfiles, lines, names, table};
use crate::qmail::assign::{AssignEntry, AssignKind};
use crate::qmail::control::read_lines;

#[derive(Debug, clap::Subcommand)]
pub enum DomainCmd {
    /// Add a virtual domain: rcpthosts, virtualdomains, assign, its directory.
    Add {
        /// The domain, e.g. example.net.
        domain: String,
        /// Unknown addresses: bounce (no .qmail-default), catchall:USER (the mailbox
        /// USER@DOMAIN is added with it, password printed) or forward:ADDR.
        #[arg(long, default_value = "bounce")]
        policy: String,
    },
    /// Remove a domain; its mailboxes go to ROOT/.deleted/ unless --purge.
    Del {
        /// The domain to remove.
        domain: String,
        /// Delete the mailboxes instead of keeping them in .deleted/.
        #[arg(long)]
        purge: bool,
    },
    /// Change what happens to mail for unknown addresses of a domain.
    Policy {
        /// The domain.
        domain: String,
        /// bounce, catchall:USER (an existing mailbox) or forward:ADDR.
        policy: String,
    },
    /// The domain's DKIM key (made on first use) and the DNS record to publish;
    /// --rotate for a new key, --remove to stop signing.
    Dkim(super::dkim::DkimArgs),
    /// Alias domains (vaddaliasdomain): `alias add NEW TARGET` makes NEW deliver to
    /// and log in as TARGET's mailboxes; `alias remove NEW`.
    Alias {
        #[command(subcommand)]
        cmd: super::aliasdomain::AliasDomainCmd,
    },
    /// Show or set a domain's limits (vlimits): mailboxes, aliases, default and
    /// maximum quota.
    Limits(super::limits::LimitsArgs),
    /// Deliver one message to every mailbox of a domain (or --all), resumably.
    Bulletin(super::bulletin::BulletinArgs),
    /// Which senders the domain's accounts may use when they submit: `own` (their
    /// addresses and aliases) or `any` address of the domain (control/anysender).
    Senders(super::senders::SendersArgs),
    /// List the virtual domains.
    List {
        /// Print the list as JSON (field names in README).
        #[arg(long)]
        json: bool,
    },
}

/// What `.qmail-default` of a domain does with unknown addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    Bounce,
    CatchAll(String),
    Forward(String),
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Policy::Bounce => write!(f, "bounce"),
            Policy::CatchAll(u) => write!(f, "go to the mailbox {u}"),
            Policy::Forward(a) => write!(f, "forward to {a}"),
        }
    }
}

impl Policy {
    pub fn parse(s: &str) -> Result<Policy> {
        match s.split_once(':') {
            None if s == "bounce" => Ok(Policy::Bounce),
            Some(("catchall" | "catch-all", u)) => {
                Ok(Policy::CatchAll(names::local(u, "catch-all mailbox")?))
            }
            Some(("forward", a)) => Ok(Policy::Forward(names::forward_target(a)?)),
            _ => Err(invalid(format!(
                "policy {s:?}: expected bounce, catchall:USER or forward:ADDRESS"
            ))),
        }
    }

    /// The `.qmail-default` text, or None for bounce (no file).
    pub fn dotqmail(&self) -> Option<String> {
        match self {
            Policy::Bounce => None,
            Policy::CatchAll(u) => Some(format!("./{u}/Maildir/\n")),
            Policy::Forward(a) => Some(format!("&{a}\n")),
        }
    }
}

pub fn run(root: &Path, cmd: DomainCmd) -> Result<()> {
    match cmd {
        DomainCmd::Add { domain, policy } => {
            let policy = Policy::parse(&policy)?;
            // A catch-all needs its mailbox, which a new domain cannot have yet: the
            // domain comes first (unknown addresses bounced meanwhile), then the
            // mailbox, then the policy, so no moment routes mail to a missing Maildir.
            let first = match &policy {
                Policy::CatchAll(_) => Policy::Bounce,
                p => p.clone(),
            };
            let d = add(root, &domain, &first)?;
            println!("added domain {} (home {})", d.domain, d.home.display());
            if let Policy::CatchAll(user) = &policy {
                let pw = super::password::get(super::password::Source::Generate, user)?;
                let made = super::user::add(root, user, &d.domain, &pw)
                    .and_then(|_| set_policy(root, &d.domain, &policy));
                if let Err(e) = made {
                    return Err(invalid(format!(
                        "{e}; {} was added with unknown addresses bounced",
                        d.domain
                    )));
                }
                println!("added the catch-all mailbox {user}@{}", d.domain);
                println!("password: {}", pw.text);
            }
            Ok(())
        }
        DomainCmd::Del { domain, purge } => del(root, &domain, purge),
        DomainCmd::Policy { domain, policy } => set_policy(root, &domain, &Policy::parse(&policy)?),
        DomainCmd::List { json } => list(root, json),
        DomainCmd::Dkim(args) => super::dkim::run(root, args),
        DomainCmd::Alias { cmd } => super::aliasdomain::run(root, cmd),
        DomainCmd::Limits(args) => super::limits::run(root, args),
        DomainCmd::Bulletin(args) => super::bulletin::run(root, args),
        DomainCmd::Senders(args) => super::senders::run(root, args),
    }
}

/// Write (or, for bounce, remove) the domain's `.qmail-default`.
pub fn set_policy(root: &Path, domain: &str, policy: &Policy) -> Result<()> {
    let domain = names::domain(domain)?;
    let edit = Edit::begin(root)?;
    super::aliasdomain::refuse_alias(&edit, &domain)?;
    let dh = layout::need_domain(&edit, &domain)?;
    if let Policy::CatchAll(user) = policy
        && !dh.home.join(user).join("Maildir").join("new").is_dir()
    {
        return Err(AdminError::NotFound(format!(
            "no mailbox {user}@{domain} to catch unknown addresses: add it first \
             (turnmail user add {user}@{domain})"
        )));
    }
    let path = dh.home.join(".qmail-default");
    match policy.dotqmail() {
        Some(text) => edit::write_owned(&path, text.as_bytes(), 0o600, (dh.uid, dh.gid))?,
        None => match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(super::error::io_at(&path)(e)),
        },
    }
    drop(edit);
    println!("{domain}: unknown addresses now {policy}");
    Ok(())
}

/// Whether `domain` is in control/locals (or `me` when locals is missing).
pub fn is_local(edit: &Edit, domain: &str) -> Result<bool> {
    let control = &edit.paths().control;
    let text = match edit.read(&control.join("locals"))? {
        Some(t) => t,
        None => edit.read_or_empty(&control.join("me"))?,
    };
    Ok(read_lines(&text)
        .iter()
        .any(|l| l.text.eq_ignore_ascii_case(domain.as_bytes())))
}

/// Refuse a domain already routed somewhere or delivered locally.
pub fn check_free(edit: &Edit, domain: &str) -> Result<()> {
    if is_local(edit, domain)? {
        return Err(invalid(format!(
            "{domain} is in control/locals: local delivery would win over the virtual domain; \
             remove it from locals first"
        )));
    }
    let vd = edit.read_or_empty(&edit.paths().control.join("virtualdomains"))?;
    if let Some((line, _, p)) = layout::virtualdomains(&vd)
        .into_iter()
        .find(|(_, k, _)| k == domain)
    {
        return Err(AdminError::Exists(format!(
            "{domain} (control/virtualdomains line {line} routes it to {p})"
        )));
    }
    Ok(())
}

/// Stage the `+PREFIX-` assign line for `home` (unless one is there).
pub fn stage_assign(
    edit: &mut Edit,
    prefix: &str,
    home: &Path,
    mu: &super::mailuser::MailUser,
) -> Result<()> {
    let (assign_text, entries) = layout::read_assign(edit)?;
    if layout::wildcard(&entries, prefix).is_none() {
        let home_b = home.as_os_str().as_encoded_bytes();
        let e = AssignEntry::new(
            AssignKind::Wildcard,
            format!("{prefix}-").as_bytes(),
            [
                mu.name.as_bytes(),
                mu.uid.to_string().as_bytes(),
                mu.gid.to_string().as_bytes(),
                home_b,
                b"-",
                b"",
            ],
        );
        if !e.is_writable() {
            return Err(invalid(format!(
                "{} cannot be written to users/assign (':' or line end in a field)",
                home.display()
            )));
        }
        let line = String::from_utf8_lossy(&crate::qmail::assign::write(&[e]))
            .trim_end_matches(".\n")
            .trim_end()
            .to_string();
        let text = lines::assign_insert(&assign_text, &line).map_err(|e| AdminError::BadFile {
            path: edit.paths().assign.clone(),
            reason: e.to_string(),
        })?;
        let p = edit.paths().assign.clone();
        edit.stage(&p, text, 0o644, Kind::Assign);
    }
    Ok(())
}

/// Stage `domain`'s virtualdomains line to `prefix`, then its rcpthosts line: routes
/// first, acceptance last.
pub fn stage_route(edit: &mut Edit, domain: &str, prefix: &str) -> Result<()> {
    let vd_path = edit.paths().control.join("virtualdomains");
    let vd = edit.read_or_empty(&vd_path)?;
    edit.stage(
        &vd_path,
        lines::append(&vd, &format!("{domain}:{prefix}")),
        0o644,
        Kind::Control,
    );
    let rh_path = edit.paths().control.join("rcpthosts");
    let rh = edit.read_or_empty(&rh_path)?;
    if lines::control_matches(&rh, domain).is_empty() {
        edit.stage(&rh_path, lines::append(&rh, domain), 0o644, Kind::Control);
    }
    Ok(())
}

/// Stage the removal of every route of `domain` (and `.domain`): rcpthosts first, then
/// virtualdomains, then the assign line of `prefix` unless another domain still uses it.
pub fn stage_unrouting(edit: &mut Edit, domain: &str, prefix: &str) -> Result<()> {
    let dotted = format!(".{domain}");
    let rh_path = edit.paths().control.join("rcpthosts");
    if let Some(rh) = edit.read(&rh_path)? {
        let mut drop = lines::control_matches(&rh, domain);
        drop.extend(lines::control_matches(&rh, &dotted));
        if !drop.is_empty() {
            edit.stage(
                &rh_path,
                lines::remove_lines(&rh, &drop),
                0o644,
                Kind::Control,
            );
        }
    }
    let vd_path = edit.paths().control.join("virtualdomains");
    let vd = edit.read_or_empty(&vd_path)?;
    let mut drop = lines::virtualdomain_matches(&vd, domain);
    drop.extend(
        layout::virtualdomains(&vd)
            .into_iter()
            .filter(|(_, k, p)| *k == dotted && p == prefix)
            .map(|(l, _, _)| l),
    );
    let remaining = lines::remove_lines(&vd, &drop);
    edit.stage(&vd_path, remaining.clone(), 0o644, Kind::Control);
    let still_used = layout::virtualdomains(&remaining)
        .iter()
        .any(|(_, _, p)| p.eq_ignore_ascii_case(prefix));
    if !still_used {
        let (text, entries) = layout::read_assign(edit)?;
        if let Some(e) = layout::wildcard(&entries, prefix) {
            let t = lines::assign_remove(&text, &[e.line]);
            let p = edit.paths().assign.clone();
            edit.stage(&p, t, 0o644, Kind::Assign);
        }
    }
    Ok(())
}

pub fn add(root: &Path, domain: &str, policy: &Policy) -> Result<DomainHome> {
    let domain = names::domain(domain)?;
    let mut edit = Edit::begin(root)?;
    check_free(&edit, &domain)?;
    let mu = layout::mail_user(root)?;
    let (_, entries) = layout::read_assign(&edit)?;
    if let Some(e) = layout::wildcard(&entries, &domain) {
        return Err(AdminError::Exists(format!(
            "users/assign line {} (+{domain}-)",
            e.line
        )));
    }
    let root = edit
        .root()
        .canonicalize()
        .map_err(super::error::io_at(root))?;
    let home = root.join("domains").join(&domain);
    if home.exists() {
        return Err(AdminError::Exists(format!(
            "{} (left from an earlier domain? move it away first)",
            home.display()
        )));
    }
    let owner = (mu.uid, mu.gid);
    edit::make_dir(&root.join("domains"), 0o755, owner)?;
    edit::make_dir(&home, 0o700, owner)?;
    if let Some(text) = policy.dotqmail() {
        edit::write_owned(&home.join(".qmail-default"), text.as_bytes(), 0o600, owner)?;
    }
    stage_assign(&mut edit, &domain, &home, &mu)?;
    stage_route(&mut edit, &domain, &domain)?;
    edit.commit()?;
    Ok(DomainHome {
        domain: domain.clone(),
        prefix: domain,
        home,
        user: mu.name,
        uid: mu.uid,
        gid: mu.gid,
    })
}

pub fn del(root: &Path, domain: &str, purge: bool) -> Result<()> {
    let domain = names::domain(domain)?;
    let mut edit = Edit::begin(root)?;
    let vd = edit.read_or_empty(&edit.paths().control.join("virtualdomains"))?;
    let Some((_, _, prefix)) = layout::virtualdomains(&vd)
        .into_iter()
        .find(|(_, k, _)| *k == domain)
    else {
        return Err(AdminError::NotFound(format!(
            "{domain} is not in control/virtualdomains"
        )));
    };
    if let Some(site) = prefix.strip_prefix("site-") {
        return Err(invalid(format!(
            "{domain} belongs to site {site}; use `turnmail site del`"
        )));
    }
    // An alias's home is its target's: removing it as a domain would take the
    // target's mailboxes along.
    if let Some(t) = super::aliasdomain::target_of(&edit, &domain)? {
        return Err(invalid(format!(
            "{domain} is an alias domain of {t}; remove it with `turnmail domain alias \
             remove {domain}` ({t} and its mailboxes stay)"
        )));
    }
    let mut served: Vec<String> = super::aliasdomain::aliases(&edit)?
        .into_iter()
        .filter(|(_, t)| *t == domain.as_bytes())
        .map(|(a, _)| String::from_utf8_lossy(&a).into_owned())
        .collect();
    if !served.is_empty() {
        served.sort();
        return Err(invalid(format!(
            "{domain} has alias domains ({}): remove them first (turnmail domain alias remove)",
            served.join(", ")
        )));
    }
    let home = layout::find_domain(&edit, &domain)?;
    stage_unrouting(&mut edit, &domain, &prefix)?;
    // The domain's accounts go with it.
    let (pw_text, accounts) = layout::read_poppasswd(&edit)?;
    let suffix = format!("@{domain}");
    let drop: Vec<usize> = accounts
        .iter()
        .filter(|a| a.login.to_ascii_lowercase().ends_with(suffix.as_bytes()))
        .map(|a| a.line)
        .collect();
    if !drop.is_empty() {
        let p = edit.paths().poppasswd.clone();
        edit.stage(
            &p,
            lines::remove_lines(&pw_text, &drop),
            0o640,
            Kind::Poppasswd,
        );
    }
    super::secret::stage_removal(&mut edit, &|l| {
        l.to_ascii_lowercase().ends_with(suffix.as_bytes())
    })?;
    // With the accounts in the database, its aliases' rows go in the same commit.
    if let Some(mut table) = edit.db_aliases()? {
        let before = table.len();
        table.retain(|k, _| !k.ends_with(&suffix));
        if table.len() != before {
            edit.stage_aliases(table)?;
        }
    }
    let root_c = edit
        .root()
        .canonicalize()
        .map_err(super::error::io_at(root))?;
    edit.commit()?;
    println!("removed domain {domain} ({} account(s))", drop.len());
    if let Some(h) = home {
        let ours = h.home.starts_with(root_c.join("domains"));
        if !h.home.exists() {
        } else if !ours {
            println!(
                "left {} in place (not under this root's domains/)",
                h.home.display()
            );
        } else if purge {
            layout::purge_tree(&h.home)?;
            println!("purged {}", h.home.display());
        } else {
            let to = layout::move_to_deleted(&root_c, "domains", &domain, &h.home)?;
            println!("mailboxes kept in {}", to.display());
        }
    }
    Ok(())
}

/// One row of `domain list`.
#[derive(Debug, serde::Serialize)]
pub struct DomainRow {
    pub domain: String,
    pub prefix: String,
    pub home: Option<String>,
    pub users: usize,
    pub aliases: usize,
    pub policy: String,
    pub accepted: bool,
    /// The domain whose mailboxes this alias domain serves.
    pub alias_of: Option<String>,
}

pub fn rows(root: &Path) -> Result<Vec<DomainRow>> {
    let edit = ReadOnly::new(root)?;
    let vd = edit
        .0
        .read_or_empty(&edit.0.paths().control.join("virtualdomains"))?;
    let rh = edit
        .0
        .read_or_empty(&edit.0.paths().control.join("rcpthosts"))?;
    let (_, accounts) = layout::read_poppasswd(&edit.0)?;
    let (_, entries) = layout::read_assign(&edit.0)?;
    let alias_map = super::aliasdomain::aliases(&edit.0)?;
    let table = edit.0.db_aliases()?;
    let mut out = Vec::new();
    for (_, key, prefix) in layout::virtualdomains(&vd) {
        if prefix.starts_with("site-") || key.is_empty() || key.starts_with('.') {
            continue;
        }
        let home = layout::wildcard(&entries, &prefix).map(|e| layout::bytes_path(&e.home));
        if home.as_ref().is_some_and(|h| h.join("RELAYHOST").exists()) {
            continue; // an adopted serialmail site
        }
        let suffix = format!("@{key}");
        let users = accounts
            .iter()
            .filter(|a| a.login.to_ascii_lowercase().ends_with(suffix.as_bytes()))
            .count();
        let alias_of = alias_map
            .get(key.as_bytes())
            .map(|t| String::from_utf8_lossy(t).into_owned());
        // An alias domain's mailboxes and aliases are its target's: not counted twice.
        let files = match (&alias_of, home.as_deref()) {
            (None, Some(h)) => dotfiles::scan(h),
            _ => Vec::new(),
        };
        let policy = match &alias_of {
            Some(t) => format!("as {t}"),
            None => files
                .iter()
                .find(|f| f.local == "default")
                .map_or_else(|| "bounce".to_string(), |f| f.summary()),
        };
        let aliases = match (&table, &alias_of) {
            // The table's rows, and the home's alias files no row shadows.
            (Some(t), None) => {
                super::alias_db::rows_of(t, &key, None)
                    .iter()
                    .filter(|r| !r.address.starts_with("*@"))
                    .count()
                    + files
                        .iter()
                        .filter(|f| {
                            f.is_alias()
                                && f.local != "default"
                                && !t.contains_key(&format!(
                                    "{}@{key}",
                                    f.local.to_ascii_lowercase()
                                ))
                        })
                        .count()
            }
            _ => files
                .iter()
                .filter(|f| f.is_alias() && f.local != "default")
                .count(),
        };
        out.push(DomainRow {
            alias_of,
            accepted: crate::qmail::control::RcptHosts::parse(Some(&rh))
                .accepts(key.as_bytes())
                .unwrap_or(false),
            domain: key,
            prefix,
            home: home.map(|h| h.display().to_string()),
            users,
            aliases,
            policy,
        });
    }
    out.sort_by(|a, b| a.domain.cmp(&b.domain));
    Ok(out)
}

fn list(root: &Path, json: bool) -> Result<()> {
    let rows = rows(root)?;
    if json {
        table::print_json(&json!(rows));
        return Ok(());
    }
    let mut t = table::Table::new(&[
        "DOMAIN",
        "USERS#",
        "ALIASES#",
        "UNKNOWN",
        "RCPTHOSTS",
        "HOME",
    ]);
    for r in &rows {
        t.row(vec![
            r.domain.clone(),
            r.users.to_string(),
            r.aliases.to_string(),
            r.policy.clone(),
            if r.accepted { "yes" } else { "NO" }.into(),
            match &r.alias_of {
                Some(t) => format!("(alias of {t})"),
                None => r
                    .home
                    .clone()
                    .unwrap_or_else(|| "(no +PREFIX- assign line)".into()),
            },
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

/// Reading without editing takes the lock shared, so a list never sees a half-done
/// multi-file edit (e.g. assign written, rcpthosts not yet); it creates nothing and
/// never waits for another reader.
pub struct ReadOnly(pub Edit);

impl ReadOnly {
    pub fn new(root: &Path) -> Result<ReadOnly> {
        Ok(ReadOnly(Edit::begin_read(root)?))
    }
}
