//! Customer sites: a directory holding `RELAYHOST` (`host[:port]`), a spool `Maildir/`
//! and optionally `site.toml`. Sites are found under the globs in turnmail.toml
//! (default `ROOT/sites/*`, or e.g. `/home/serialmail/*` on a converted host), so they
//! appear and disappear with their directories; on the `postgres` backend they are the
//! rows of the `sites` table instead (`site_rows.rs`), one [`Site`] and one
//! [`Discovery`] either way.
//!
//! This file owns the site's disk: reading its settings, taking its lock (a BSD flock
//! on RELAYHOST, the same lock `setlock -n` and `flock -n` take), scanning its spool and
//! quarantining files that are not in spool format.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use super::relayhost::Relayhost;
pub use super::routes::Routes;
pub use super::scan::{Scan, Spooled};
use super::stamp::Stamp;
use crate::maildir::Maildir;

/// Default age after which undeliverable mail is bounced (serialmail's 14 days).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(14 * 86_400);

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TlsPolicy {
    /// STARTTLS when the site offers it; plaintext otherwise.
    #[default]
    Opportunistic,
    /// Refuse to send without TLS.
    Required,
    Off,
}

/// `site.toml`: every key optional.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SiteSettings {
    /// Delivered-To prefix of this site's spool files (default: the local part of
    /// every users/assign `+` line whose home is the site's directory).
    pub prefix: Option<String>,
    /// Days before undeliverable mail is bounced (default 14).
    pub lifetime_days: Option<u64>,
    pub tls: TlsPolicy,
    /// Name to greet the site with (default: our host name).
    pub helo: Option<String>,
    /// Port to connect to when RELAYHOST names none (default 25).
    pub port: Option<u16>,
    /// Domains of the site besides those control/virtualdomains routes to it (for
    /// ETRN and ODMR).
    pub domains: Vec<String>,
    /// crontab(5) line for scheduled flushes (default from turnmail.toml).
    pub schedule: Option<String>,
    /// Time zone of the schedule, e.g. "Europe/Berlin" (default UTC).
    pub timezone: Option<String>,
    /// Flush a few seconds after new mail arrives.
    pub always_on: bool,
    /// Accounts allowed to ask for this site's mail (ETRN after AUTH, ODMR).
    pub accounts: Vec<String>,
    /// Who may start a flush with ETRN. The flush goes to RELAYHOST, except with
    /// `etrn_to_client`.
    pub etrn: EtrnPolicy,
    /// A dynamic-address site: ETRN after AUTH by one of `accounts` delivers to the
    /// address the client connects from (RELAYHOST's port, else `port`, else 25)
    /// instead of RELAYHOST. ETRN without AUTH still goes to RELAYHOST.
    pub etrn_to_client: bool,
    /// Networks allowed when `etrn = "networks"` (addresses or CIDR blocks).
    pub etrn_networks: Vec<String>,
    /// Addresses or networks whose SMTP sessions trigger a flush back to them when the
    /// session ends; the word `relayhost` stands for RELAYHOST's addresses.
    pub autoturn: Vec<String>,
    /// Addresses or networks (a static-address site's) that may relay mail out through
    /// turnmail, with senders of the site's domains.
    pub relay_networks: Vec<String>,
    /// TCP connections a flush opens at once (default 1, at most
    /// [`MAX_CONNECTIONS`]), fed from one walk of the spool: for a site whose server
    /// answers each command before it reads the next (no PIPELINING), as Postfix's
    /// per-destination concurrency does. ODMR's turned connection is always one.
    pub connections: Option<usize>,
}

/// The most connections a site may ask one flush for.
pub const MAX_CONNECTIONS: usize = 32;

#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EtrnPolicy {
    /// Any client (harmless: without AUTH the mail only goes to RELAYHOST).
    #[default]
    Anywhere,
    /// Only clients in `etrn_networks`.
    Networks,
    /// Only after AUTH by one of the site's `accounts`.
    Auth,
    Off,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    pub dir: PathBuf,
    pub relayhost: Option<Relayhost>,
    /// The Delivered-To prefixes of its spool files, longest first: site.toml's
    /// `prefix`, else every `+` line of users/assign whose home is `dir`. A file
    /// matching none is quarantined.
    pub prefixes: Vec<Vec<u8>>,
    /// Its domains, lowercased: site.toml's `domains` and every control/virtualdomains
    /// key (`domain` or `.suffix`) whose mail users/assign sends to `dir`.
    pub domains: Vec<String>,
    pub settings: SiteSettings,
}

impl Site {
    pub fn maildir(&self) -> Maildir {
        Maildir::new(self.dir.join("Maildir"))
    }

    pub fn relayhost_path(&self) -> PathBuf {
        self.dir.join("RELAYHOST")
    }

    pub fn lifetime(&self) -> Duration {
        self.settings
            .lifetime_days
            .map_or(DEFAULT_LIFETIME, |d| Duration::from_secs(d * 86_400))
    }

    /// The address to connect to, unless a trigger supplies one.
    pub fn target(&self) -> Option<String> {
        let port = self.settings.port.unwrap_or(25);
        self.relayhost.as_ref().map(|r| r.address(port))
    }

    /// The site's mail delivered to `ip` instead (AUTOTURN, ETRN to the client): the
    /// port of RELAYHOST, else `port`, else 25.
    pub fn target_at(&self, ip: std::net::IpAddr) -> String {
        let port = self
            .relayhost
            .as_ref()
            .and_then(|r| r.port)
            .or(self.settings.port)
            .unwrap_or(25);
        std::net::SocketAddr::new(ip, port).to_string()
    }

    /// TCP connections a flush opens at most (site.toml `connections`, default 1).
    pub fn connections(&self) -> usize {
        self.settings
            .connections
            .unwrap_or(1)
            .clamp(1, MAX_CONNECTIONS)
    }

    /// The account (a poppasswd login) may ask for this site's mail: it is listed in
    /// `accounts` (ODMR's ATRN and ETRN after AUTH use the same rule).
    pub fn entitles(&self, login: &str) -> bool {
        self.settings
            .accounts
            .iter()
            .any(|a| a.eq_ignore_ascii_case(login))
    }

    /// Whether one of its domains is `domain` or lies under it.
    fn has_domain_under(&self, domain: &str) -> bool {
        self.domains.iter().any(|x| {
            let x = x.trim_start_matches('.');
            x == domain
                || x.strip_suffix(domain)
                    .is_some_and(|head| head.ends_with('.'))
        })
    }
}

/// Sites and the problems met finding them (for logs and `turnmail check`).
#[derive(Debug, Default)]
pub struct Discovery {
    pub sites: Vec<Site>,
    pub problems: Vec<String>,
    /// What the discovery depended on, to tell cheaply whether to discover again.
    pub watch: Watch,
    /// users/assign and control/virtualdomains as read, to answer "which site
    /// receives this domain" as qmail would route it.
    pub routes: Routes,
    /// The accounts' version the sites were read at, when they are the rows of the
    /// database's `sites` table (`[accounts] backend = "postgres"`,
    /// `spool/site_rows.rs`); None for sites found on disk.
    pub version: Option<u64>,
}

/// The files and directories a discovery read, each with its stamp taken before it
/// was read: while none of them changed, discovering again would find the same
/// sites. That is users/assign (default prefixes), the directory each site pattern
/// starts from and the parents of what it matched (sites appearing or disappearing),
/// and each matched directory with its site.toml and RELAYHOST (edits, in place or by
/// rename). A few stats per site instead of reading and parsing every site's files.
#[derive(Debug, Default)]
pub struct Watch {
    entries: Vec<(PathBuf, Option<Stamp>)>,
}

impl Watch {
    fn add(&mut self, path: PathBuf) {
        let stamp = Stamp::of(&path);
        self.entries.push((path, stamp));
    }

    /// Something the discovery read may have changed since.
    pub fn changed(&self) -> bool {
        self.entries.iter().any(|(p, s)| Stamp::of(p) != *s)
    }
}

/// The directory whose entries a glob pattern lists first: the one holding its first
/// wildcard component (for a pattern without wildcards, the parent of the path).
fn pattern_base(pattern: &Path) -> PathBuf {
    let mut base = PathBuf::new();
    for c in pattern.components() {
        if c.as_os_str().to_string_lossy().contains(['*', '?', '[']) {
            return base;
        }
        base.push(c);
    }
    base.parent().map(Path::to_path_buf).unwrap_or(base)
}

impl Discovery {
    pub fn get(&self, name: &str) -> Option<&Site> {
        self.sites.iter().find(|s| s.name == name)
    }

    /// The sites that receive mail for `domain` (lowercase): those listing it, and the
    /// one whose domains hold the virtualdomains key qmail uses for it (the domain
    /// itself or its longest `.suffix`). ETRN's node and ATRN's domains.
    pub fn receiving(&self, domain: &str) -> Vec<&Site> {
        let key = self.routes.key_for(domain);
        self.sites
            .iter()
            .filter(|s| {
                s.domains
                    .iter()
                    .any(|x| x == domain || key.as_deref() == Some(x.as_str()))
            })
            .collect()
    }

    /// The sites that receive mail for `domain` or any domain under it (ETRN
    /// `@domain`).
    pub fn receiving_under(&self, domain: &str) -> Vec<&Site> {
        let direct = self.receiving(domain);
        self.sites
            .iter()
            .filter(|s| s.has_domain_under(domain) || direct.iter().any(|d| d.name == s.name))
            .collect()
    }
}

/// Find every site under `patterns` (relative patterns are under `root`).
pub fn discover(root: &Path, patterns: &[String]) -> Discovery {
    let mut d = Discovery::default();
    d.watch.add(root.join("users/assign"));
    d.watch.add(root.join("control/virtualdomains"));
    d.routes = Routes::load(root);
    let mut parents = std::collections::HashSet::new();
    for pat in patterns {
        let full = if Path::new(pat).is_absolute() {
            pat.clone()
        } else {
            root.join(pat).to_string_lossy().into_owned()
        };
        d.watch.add(pattern_base(Path::new(&full)));
        let paths = match glob::glob(&full) {
            Ok(p) => p,
            Err(e) => {
                d.problems.push(format!("site pattern {pat:?}: {e}"));
                continue;
            }
        };
        for dir in paths.flatten() {
            if let Some(parent) = dir.parent()
                && parents.insert(parent.to_path_buf())
            {
                d.watch.add(parent.to_path_buf());
            }
            if dir.is_dir() {
                for f in ["site.toml", "RELAYHOST"] {
                    d.watch.add(dir.join(f));
                }
                d.watch.add(dir.clone());
            }
            if !dir.is_dir() || !(dir.join("RELAYHOST").exists() || dir.join("Maildir").is_dir()) {
                continue;
            }
            match load_site(&dir, &d.routes) {
                Ok(s) => {
                    if d.sites.iter().any(|x| x.name == s.name) {
                        d.problems.push(format!(
                            "{}: a site named {:?} was already found; ignored",
                            dir.display(),
                            s.name
                        ));
                    } else {
                        d.sites.push(s);
                    }
                }
                Err(e) => d.problems.push(format!("{}: {e}", dir.display())),
            }
        }
    }
    d.sites.sort_by(|a, b| a.name.cmp(&b.name));
    d
}

fn load_site(dir: &Path, routes: &Routes) -> Result<Site, String> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or("no directory name")?;
    let settings: SiteSettings = match std::fs::read_to_string(dir.join("site.toml")) {
        Ok(t) => toml::from_str(&t).map_err(|e| format!("site.toml: {e}"))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => SiteSettings::default(),
        Err(e) => return Err(format!("site.toml: {e}")),
    };
    let relayhost = match std::fs::read_to_string(dir.join("RELAYHOST")) {
        Ok(t) => {
            let first = t.lines().next().unwrap_or("");
            Some(
                Relayhost::parse(first)
                    .ok_or_else(|| format!("RELAYHOST: cannot parse {first:?}"))?,
            )
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("RELAYHOST: {e}")),
    };
    build_site(name, dir, relayhost, settings, routes).map_err(|e| match e {
        SiteError::Connections(m) => format!("site.toml: {m}"),
        SiteError::NoPrefix => {
            "no users/assign line has this directory as its home; set prefix in site.toml".into()
        }
    })
}

/// Why a site's settings and routes do not make a site.
#[derive(Debug)]
pub(super) enum SiteError {
    Connections(String),
    NoPrefix,
}

/// A site from what its files or its row say, its prefixes and domains found through
/// `routes` (both discoveries).
pub(super) fn build_site(
    name: String,
    dir: &Path,
    relayhost: Option<Relayhost>,
    settings: SiteSettings,
    routes: &Routes,
) -> Result<Site, SiteError> {
    if let Some(n) = settings.connections
        && !(1..=MAX_CONNECTIONS).contains(&n)
    {
        return Err(SiteError::Connections(format!(
            "connections = {n}: between 1 and {MAX_CONNECTIONS}"
        )));
    }
    let prefixes = match &settings.prefix {
        Some(p) => vec![p.as_bytes().to_vec()],
        None => routes.prefixes(dir),
    };
    if prefixes.is_empty() {
        return Err(SiteError::NoPrefix);
    }
    let mut domains: Vec<String> = settings
        .domains
        .iter()
        .map(|d| d.to_ascii_lowercase())
        .collect();
    for d in routes.domains(dir) {
        if !domains.contains(&d) {
            domains.push(d);
        }
    }
    Ok(Site {
        name,
        dir: dir.to_path_buf(),
        relayhost,
        prefixes,
        domains,
        settings,
    })
}

/// The site's flush lock, held until dropped (see `lock.rs`).
pub type SiteLock = super::lock::SenderLock;

/// Take the RELAYHOST lock without waiting. Ok(None): someone else holds it
/// (another flush, on this node or another, `setlock -n`, `flock -n`).
pub fn try_lock(site: &Site) -> io::Result<Option<SiteLock>> {
    super::lock::try_site(site)
}

/// Scan the site's spool (see [`super::scan::scan`]).
pub fn scan(site: &Site, now: SystemTime) -> io::Result<Scan> {
    super::scan::scan(
        &site.maildir(),
        super::envelope::Format::Site(&site.prefixes),
        &site.name,
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;

    #[test]
    fn pattern_bases() {
        let b = |p: &str| pattern_base(Path::new(p));
        assert_eq!(b("/r/sites/*"), PathBuf::from("/r/sites"));
        assert_eq!(b("/home/*/serialmail"), PathBuf::from("/home"));
        assert_eq!(b("/r/sites/acme"), PathBuf::from("/r/sites"));
        assert_eq!(b("/r/s?tes/[ab]*"), PathBuf::from("/r"));
    }

    #[test]
    fn the_watch_notices_what_discovery_depends_on() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let long_ago = SystemTime::now() - Duration::from_secs(60);
        let age = |p: &Path| File::open(p).unwrap().set_modified(long_ago).unwrap();
        let site = r.join("sites/a");
        std::fs::create_dir_all(site.join("Maildir")).unwrap();
        std::fs::write(site.join("RELAYHOST"), "127.0.0.1\n").unwrap();
        std::fs::write(site.join("site.toml"), "prefix = \"a-\"\n").unwrap();
        for p in [r.join("sites"), site.clone(), site.join("site.toml")] {
            age(&p);
        }
        let pats = ["sites/*".to_string()];
        let d = discover(r, &pats);
        assert_eq!(d.sites.len(), 1, "{:?}", d.problems);
        assert!(!d.watch.changed());
        // An edit in place, a new site and users/assign are each noticed.
        std::fs::write(site.join("site.toml"), "prefix = \"b-\"\n").unwrap();
        assert!(d.watch.changed());
        let d = discover(r, &pats);
        assert_eq!(d.sites[0].prefixes, [b"b-"]);
        age(&r.join("sites"));
        let d = discover(r, &pats);
        std::fs::create_dir(r.join("sites/b")).unwrap();
        assert!(d.watch.changed());
        let d = discover(r, &pats);
        std::fs::create_dir_all(r.join("users")).unwrap();
        std::fs::write(r.join("users/assign"), ".\n").unwrap();
        assert!(d.watch.changed());
    }

    #[test]
    fn a_hand_made_site_has_every_prefix_and_domain_that_reaches_it() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let site = r.join("serialmail/cust");
        std::fs::create_dir_all(site.join("Maildir")).unwrap();
        std::fs::write(site.join("RELAYHOST"), "mx.cust.example\n").unwrap();
        std::fs::create_dir_all(r.join("users")).unwrap();
        std::fs::create_dir_all(r.join("control")).unwrap();
        let home = site.display();
        std::fs::write(
            r.join("users/assign"),
            format!(
                "+cust.example-:popusr:510:51:{home}:-::\n\
                 +cust2.example-:popusr:510:51:{home}/:-::\n.\n"
            ),
        )
        .unwrap();
        std::fs::write(
            r.join("control/virtualdomains"),
            "cust.example:cust.example\n.cust.example:cust.example\n",
        )
        .unwrap();
        let pats = [format!("{}/serialmail/*", r.display())];
        let d = discover(r, &pats);
        assert!(d.problems.is_empty(), "{:?}", d.problems);
        let s = d.get("cust").unwrap();
        assert_eq!(
            s.prefixes,
            [b"cust2.example-".to_vec(), b"cust.example-".to_vec()]
        );
        assert_eq!(s.domains, [".cust.example", "cust.example"]);
        assert_eq!(d.receiving("a.cust.example")[0].name, "cust");
        // A second domain for it in virtualdomains is seen by the watch.
        std::fs::write(
            r.join("control/virtualdomains"),
            "cust.example:cust.example\ncust2.example:cust2.example\n",
        )
        .unwrap();
        File::open(r.join("control/virtualdomains"))
            .unwrap()
            .set_modified(SystemTime::now() + Duration::from_secs(5))
            .unwrap();
        assert!(d.watch.changed());
        let d = discover(r, &pats);
        assert_eq!(
            d.get("cust").unwrap().domains,
            ["cust.example", "cust2.example"]
        );
        assert!(d.receiving("a.cust.example").is_empty());
    }

    #[test]
    fn the_deploy_example_parses() {
        let s: SiteSettings = toml::from_str(include_str!("../../deploy/site.toml.example"))
            .expect("deploy/site.toml.example");
        assert_eq!(s.etrn, EtrnPolicy::Auth);
        assert!(s.etrn_to_client);
        assert_eq!(s.accounts, ["acme@acme.example"]);
    }

    #[test]
    fn site_toml_is_strict() {
        assert!(
            toml::from_str::<SiteSettings>(
                "lifetime_days = 3\ntls = \"required\"\ndomains = [\"a.example\"]\n"
            )
            .is_ok()
        );
        assert!(toml::from_str::<SiteSettings>("lifetme_days = 3\n").is_err());
        assert!(toml::from_str::<SiteSettings>("tls = \"maybe\"\n").is_err());
    }
}
