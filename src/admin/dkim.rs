//! `turnmail domain dkim DOMAIN`: the domain's DKIM key (made on first use) and the
//! DNS records to publish; `--rotate` makes a new key active and keeps the old
//! selector published for `--keep-days`; `--remove` deletes the keys.
//!
//! Runs in the edit transaction like every domain command: under the edit lock, the
//! new key file is written before the `selectors` file that names it, both atomically
//! (`fsutil`), so the daemon's signer never meets a selector without its key. Retired
//! selectors whose time is over are dropped (and their key files deleted) by the next
//! run, which says which records to take out of DNS.

use std::path::Path;

use serde::Serialize;

use super::edit::{self, Edit, Kind};
use super::error::{AdminError, Result, invalid, io_at};
use super::{layout, names, table};
use crate::dkim::keys::{self, Algorithm, DIR_MODE, KEY_MODE};
use crate::dkim::state::{self, State};
use crate::dkim::txt::TxtRecord;

#[derive(Debug, clap::Args)]
pub struct DkimArgs {
    /// The domain whose mail is signed, e.g. example.net (its subdomains are signed
    /// with its key unless they have their own).
    pub domain: String,
    /// Key type of a new key: rsa (2048 bits, verified by every receiver) or ed25519
    /// (RFC 8463: short, but not yet verified by every receiver).
    #[arg(long, value_enum)]
    pub algorithm: Option<Algorithm>,
    /// Selector of a new key (one DNS label); default tmYYYYMMDD (today, UTC).
    #[arg(long)]
    pub selector: Option<String>,
    /// Make a new key the active one; the old selector stays published for
    /// --keep-days so that mail signed with it and still in flight verifies.
    #[arg(long)]
    pub rotate: bool,
    /// With --rotate: days the old selector stays valid (its TXT record published).
    #[arg(long, default_value_t = 7, requires = "rotate", value_name = "N")]
    pub keep_days: u64,
    /// Delete the domain's keys: its mail is no longer signed (prints the records to
    /// take out of DNS).
    #[arg(long, conflicts_with_all = ["rotate", "algorithm", "selector"])]
    pub remove: bool,
    /// Print the result as JSON (domain, active, retired, expired, removed).
    #[arg(long)]
    pub json: bool,
}

/// One selector and its record.
#[derive(Debug, Serialize)]
pub struct KeyView {
    pub selector: String,
    pub algorithm: Option<Algorithm>,
    /// Made by this run.
    pub created: bool,
    /// Retired: seconds since 1970 until which the record stays published.
    pub until: Option<u64>,
    pub record: Option<TxtRecord>,
    /// Why the record cannot be shown (a key file missing or unusable).
    pub problem: Option<String>,
}

/// What the command did and what DNS should hold.
#[derive(Debug, Serialize)]
pub struct Report {
    pub domain: String,
    pub active: Option<KeyView>,
    pub retired: Vec<KeyView>,
    /// Owner names of records no longer needed (retired selectors past their time).
    pub expired: Vec<String>,
    /// Owner names of the records of keys removed by `--remove`.
    pub removed: Vec<String>,
}

pub fn run(root: &Path, args: DkimArgs) -> Result<()> {
    let domain = names::domain(&args.domain)?;
    let now = crate::datetime::now_unix();
    let report = if args.remove {
        remove(root, &domain)?
    } else {
        let new = NewKey {
            algorithm: args.algorithm,
            selector: args.selector.clone(),
            rotate: args.rotate,
            keep_secs: args.keep_days.saturating_mul(86_400),
        };
        ensure(root, &domain, &new, now)?
    };
    if args.json {
        table::print_json(&serde_json::json!(report));
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}

/// What `ensure` may create.
#[derive(Debug, Default)]
pub struct NewKey {
    pub algorithm: Option<Algorithm>,
    pub selector: Option<String>,
    pub rotate: bool,
    pub keep_secs: u64,
}

/// Make the first key (or, with `rotate`, a new active one), drop expired selectors,
/// and report every record to publish.
pub fn ensure(root: &Path, domain: &str, new: &NewKey, now: u64) -> Result<Report> {
    let mut edit = Edit::begin(root)?;
    need_signing_domain(&edit, domain)?;
    let state_path = keys::state_path(root, domain);
    let mut st = match edit.read(&state_path)? {
        Some(text) => state::parse(&text).map_err(|e| AdminError::BadFile {
            path: state_path.clone(),
            reason: e.to_string(),
        })?,
        None => State::default(),
    };
    let expired = st.expire(now);
    let mut created = None;
    if st.active.is_none() || new.rotate {
        let selector = match &new.selector {
            Some(s) => state::selector(s).map_err(AdminError::Invalid)?,
            None => default_selector(root, domain, &st, now),
        };
        if st.contains(&selector) || keys::key_path(root, domain, &selector).exists() {
            return Err(AdminError::Exists(format!(
                "selector {selector} of {domain} (choose another with --selector)"
            )));
        }
        let algorithm = new.algorithm.unwrap_or(Algorithm::Rsa);
        let pem = keys::generate(algorithm).map_err(AdminError::Invalid)?;
        let mu = layout::mail_user(root)?;
        let owner = (mu.uid, mu.gid);
        edit::make_dir(&keys::store_dir(root), DIR_MODE, owner)?;
        edit::make_dir(&keys::domain_dir(root, domain), DIR_MODE, owner)?;
        edit.stage(
            &keys::key_path(root, domain, &selector),
            pem.into_bytes(),
            KEY_MODE,
            Kind::Plain,
        );
        st.rotate(selector.clone(), now.saturating_add(new.keep_secs));
        created = Some(selector);
    } else if new.algorithm.is_some() || new.selector.is_some() {
        return Err(invalid(format!(
            "{domain} already has a key (selector {}); add --rotate to make a new one",
            st.active.as_deref().unwrap_or("?")
        )));
    }
    if created.is_some() || !expired.is_empty() {
        edit.stage(
            &state_path,
            state::write(&st, domain),
            KEY_MODE,
            Kind::Plain,
        );
    }
    edit.commit()?;
    // No selector names them any more: the keys can go.
    for r in &expired {
        let p = keys::key_path(root, domain, &r.selector);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_at(&p)(e)),
        }
    }
    Ok(Report {
        domain: domain.to_string(),
        active: st
            .active
            .as_ref()
            .map(|s| view(root, domain, s, None, created.as_deref() == Some(s))),
        retired: st
            .retired
            .iter()
            .map(|r| view(root, domain, &r.selector, Some(r.until), false))
            .collect(),
        expired: expired
            .iter()
            .map(|r| format!("{}._domainkey.{domain}", r.selector))
            .collect(),
        removed: Vec::new(),
    })
}

fn view(root: &Path, domain: &str, selector: &str, until: Option<u64>, created: bool) -> KeyView {
    let key = keys::read_key(&keys::key_path(root, domain, selector), domain);
    KeyView {
        selector: selector.to_string(),
        algorithm: key.as_ref().ok().map(|k| k.algorithm),
        created,
        until,
        record: key
            .as_ref()
            .ok()
            .map(|k| TxtRecord::new(domain, selector, k)),
        problem: key.err().map(|e| e.to_string()),
    }
}

/// `tmYYYYMMDD`, with a letter after it when a selector of that day exists.
fn default_selector(root: &Path, domain: &str, st: &State, now: u64) -> String {
    let c = crate::datetime::civil_from_days(now / 86_400);
    let base = format!("tm{:04}{:02}{:02}", c.year, c.month + 1, c.day);
    let free = |s: &str| !st.contains(s) && !keys::key_path(root, domain, s).exists();
    if free(&base) {
        return base;
    }
    (b'b'..=b'z')
        .map(|l| format!("{base}{}", l as char))
        .find(|s| free(s))
        .unwrap_or_else(|| format!("{base}-{now}"))
}

/// Keys are made only for our own domains, and not for an alias: an alias's mail is
/// its own domain's mail (its virtualdomains line routes to another domain's
/// mailboxes), signed with that domain's key.
pub fn need_signing_domain(edit: &Edit, domain: &str) -> Result<()> {
    if super::domain::is_local(edit, domain)? {
        return Ok(());
    }
    let vd = edit.read_or_empty(&edit.paths().control.join("virtualdomains"))?;
    let lines = layout::virtualdomains(&vd);
    let Some((_, _, prefix)) = lines.iter().rev().find(|(_, k, _)| k == domain) else {
        return Err(AdminError::NotFound(format!(
            "{domain} is not hosted here (not in control/virtualdomains or locals): \
             keys are made only for our own domains (turnmail domain add {domain})"
        )));
    };
    if !prefix.eq_ignore_ascii_case(domain)
        && lines
            .iter()
            .any(|(_, k, _)| k != domain && k.eq_ignore_ascii_case(prefix))
    {
        return Err(invalid(format!(
            "{domain} is an alias of {prefix} (control/virtualdomains routes it to \
             {prefix}'s mailboxes): give {prefix} a key (turnmail domain dkim {prefix}), \
             or make {domain} a domain of its own"
        )));
    }
    layout::need_domain(edit, domain)?;
    Ok(())
}

/// Delete the keys of `domain`: the selectors file first (the signer stops), then the
/// key files, then the directory.
pub fn remove(root: &Path, domain: &str) -> Result<Report> {
    let edit = Edit::begin(root)?;
    let dir = keys::domain_dir(root, domain);
    if std::fs::symlink_metadata(&dir).is_err() {
        return Err(AdminError::NotFound(format!("{domain} has no DKIM keys")));
    }
    let st = match edit.read(&keys::state_path(root, domain))? {
        Some(text) => state::parse(&text).unwrap_or_default(),
        None => State::default(),
    };
    let mut selectors: Vec<String> = st.selectors().map(str::to_string).collect();
    let state_path = keys::state_path(root, domain);
    match std::fs::remove_file(&state_path) {
        Ok(()) => crate::fsutil::fsync_dir(&dir).map_err(io_at(&dir))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at(&state_path)(e)),
    }
    for e in std::fs::read_dir(&dir).map_err(io_at(&dir))? {
        let e = e.map_err(io_at(&dir))?;
        let path = e.path();
        if e.file_type().map_err(io_at(&path))?.is_dir() {
            continue; // not ours: left, and the directory with it
        }
        if let Some(sel) = e
            .file_name()
            .to_str()
            .and_then(|n| n.strip_suffix(".pem"))
            .filter(|s| !selectors.iter().any(|x| x == s))
        {
            selectors.push(sel.to_string());
        }
        std::fs::remove_file(&path).map_err(io_at(&path))?;
    }
    std::fs::remove_dir(&dir).map_err(io_at(&dir))?;
    crate::fsutil::fsync_dir(&keys::store_dir(root)).map_err(io_at(&keys::store_dir(root)))?;
    drop(edit);
    Ok(Report {
        domain: domain.to_string(),
        active: None,
        retired: Vec::new(),
        expired: Vec::new(),
        removed: selectors
            .iter()
            .map(|s| format!("{s}._domainkey.{domain}"))
            .collect(),
    })
}

/// The report in words, records in zone file syntax.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let line = |out: &mut String, k: &KeyView| match (&k.record, &k.problem) {
        (Some(rec), _) => out.push_str(&format!("  {}\n", rec.zone_line())),
        (None, p) => out.push_str(&format!(
            "  {}._domainkey.{}: no record ({})\n",
            k.selector,
            r.domain,
            p.as_deref().unwrap_or("key unreadable")
        )),
    };
    if !r.removed.is_empty() {
        out.push_str(&format!(
            "{}: DKIM keys removed; mail from it is no longer signed.\n\
             Take these records out of DNS:\n",
            r.domain
        ));
        for n in &r.removed {
            out.push_str(&format!("  {n}\n"));
        }
        return out;
    }
    if let Some(a) = &r.active {
        let alg = a.algorithm.map_or("?", Algorithm::as_str);
        if a.created {
            out.push_str(&format!(
                "{}: new DKIM key {} ({alg}) signs its mail from now on.\n",
                r.domain, a.selector
            ));
        } else {
            out.push_str(&format!(
                "{}: DKIM key {} ({alg}) signs its mail.\n",
                r.domain, a.selector
            ));
        }
        out.push_str("Publish in DNS:\n");
        line(&mut out, a);
    }
    if !r.retired.is_empty() {
        out.push_str("Keep publishing (retired; mail signed with them may still be in flight):\n");
        for k in &r.retired {
            line(&mut out, k);
            if let Some(u) = k.until {
                out.push_str(&format!("    until {}\n", crate::datetime::rfc5322(u)));
            }
        }
    }
    if !r.expired.is_empty() {
        out.push_str("No longer needed; take out of DNS:\n");
        for n in &r.expired {
            out.push_str(&format!("  {n}\n"));
        }
    }
    out
}
