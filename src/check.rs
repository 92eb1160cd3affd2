//! `turnmail check`: the pitfalls the qmail-era howtos warn about, found before they
//! lose mail. Each finding names a file and, where there is one, a line.
//!
//! Exit status of the command: 0 nothing found, 1 findings, 2 the root is unusable.
//! `--json` prints [`to_json`]: `{"root": DIR, "problems": [{"file", "line",
//! "message"}]}`, `file` relative to the root (absolute outside it), `line` null when
//! the finding is about a whole file.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::engine::{Paths, accounts, readers};
use crate::fsutil::is_newer;
use crate::qmail::assign;
use crate::qmail::control::{ControlFiles, read_lines};
use crate::qmail::dotqmail::{self, Instruction};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// The JSON form of a check's findings (stable field names, see the module docs).
pub fn to_json(root: &Path, findings: &[Finding]) -> serde_json::Value {
    serde_json::json!({
        "root": root.display().to_string(),
        "problems": findings
            .iter()
            .map(|f| serde_json::json!({
                "file": f.file.display().to_string(),
                "line": f.line,
                "message": f.message,
            }))
            .collect::<Vec<_>>(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum Unusable {
    #[error(transparent)]
    NotARoot(#[from] crate::mailroot::NotARoot),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

struct Out<'a> {
    root: &'a Path,
    findings: Vec<Finding>,
}

impl Out<'_> {
    fn add(&mut self, file: &Path, line: Option<usize>, message: impl Into<String>) {
        let file = file.strip_prefix(self.root).unwrap_or(file).to_path_buf();
        self.findings.push(Finding {
            file,
            line,
            message: message.into(),
        });
    }
}

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Lint the mail root; Err only when it cannot be examined at all.
pub fn check(root: &Path) -> Result<Vec<Finding>, Unusable> {
    crate::mailroot::require(root)?;
    let config = Config::load(root)?;
    let paths = Paths::new(root);
    let control = ControlFiles::load(&paths.control)?;
    let mut out = Out {
        root,
        findings: Vec::new(),
    };
    check_control(&paths, &control, &mut out);
    check_assign(&paths, &config, &mut out);
    check_poppasswd(&paths, &mut out);
    check_readers(root, &paths, &config, &mut out);
    check_secret_lines(&paths, &mut out);
    check_sites(root, &config, &mut out);
    check_dkim(root, &control, &mut out);
    check_relay_access(root, &config, &mut out);
    check_quotas(root, &paths, &mut out);
    check_database(root, &config, &mut out);
    check_cluster(root, &config, &mut out);
    Ok(out.findings)
}

/// With the accounts in PostgreSQL: the database answers (the account files checked
/// above are then its export).
fn check_database(root: &Path, config: &Config, out: &mut Out) {
    let info = crate::engine::backend::BackendInfo::ask(config);
    if let Some(e) = info.error {
        out.add(
            &root.join("turnmail.toml"),
            None,
            format!("[accounts] backend = \"postgres\": {e}"),
        );
    }
}

/// `[cluster] node`: a name that is no safe file name stops the daemon.
fn check_cluster(root: &Path, config: &Config, out: &mut Out) {
    if let Some(n) = &config.cluster.node
        && let Err(e) = crate::cluster::NodeName::parse(n)
    {
        out.add(
            &root.join("turnmail.toml"),
            None,
            format!("[cluster] {e}: the daemon will not start"),
        );
    }
}

/// tcp.smtp's bad and never-matching lines; listeners that cannot work.
fn check_relay_access(root: &Path, config: &Config, out: &mut Out) {
    let path = crate::submit::tcp_rules_path(root, config);
    if let Ok(text) = std::fs::read(&path) {
        let (_, lints) = crate::submit::read_tcp_rules(&text);
        for l in lints {
            out.add(&path, Some(l.line), l.message);
        }
    }
    if !config.submissions.listen.is_empty()
        && crate::tls::configured_paths(root, &config.tls).is_none()
    {
        out.add(
            &root.join("turnmail.toml"),
            None,
            "[submissions] listen needs a TLS certificate ([tls] or tls/cert.pem): the daemon will not start",
        );
    }
}

/// The DKIM key store (`dkim/lint.rs`); a domain is ours when virtualdomains names it
/// exactly or it is local.
fn check_dkim(root: &Path, control: &ControlFiles, out: &mut Out) {
    let hosted = |d: &str| {
        control.locals.contains(d.as_bytes())
            || control
                .virtualdomains
                .entries()
                .any(|v| v.key.eq_ignore_ascii_case(d.as_bytes()) && !v.prepend.is_empty())
    };
    for p in crate::dkim::lint::lint(root, &hosted, crate::datetime::now_unix()) {
        out.add(&p.file, p.line, p.message);
    }
}

fn check_control(paths: &Paths, control: &ControlFiles, out: &mut Out) {
    let rcpt = paths.control.join("rcpthosts");
    if !control.rcpthosts.exists() {
        out.add(&rcpt, None, "missing: no domain accepts mail (qmail would be an open relay here; turnmail accepts nothing)");
    } else if control.rcpthosts.is_empty() {
        out.add(
            &rcpt,
            None,
            "empty: no domain accepts mail yet (add one: turnmail domain add DOMAIN)",
        );
    }
    let locals_path = paths.control.join("locals");
    let mut locals: Vec<_> = control.locals.iter().collect();
    locals.sort_by_key(|&(_, l)| l);
    for (domain, line) in locals {
        if let Some(v) = control
            .virtualdomains
            .entries()
            .find(|v| v.key.eq_ignore_ascii_case(domain))
        {
            out.add(
                &locals_path,
                (line > 0).then_some(line),
                format!(
                    "{} is in locals and in virtualdomains (line {}): locals wins, so the virtual domain never receives mail",
                    show(domain),
                    v.line
                ),
            );
        }
    }
    for file in ["rcpthosts", "locals", "virtualdomains", "me"] {
        let p = paths.control.join(file);
        if let Ok(text) = std::fs::read(&p) {
            for l in read_lines(&text) {
                if l.text.ends_with(b"\r") {
                    out.add(
                        &p,
                        Some(l.line),
                        "line ends in a carriage return (DOS line end): it will never match",
                    );
                }
            }
        }
    }
}

fn check_assign(paths: &Paths, config: &Config, out: &mut Out) {
    let text = match std::fs::read(&paths.assign) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !paths.users_cdb.exists() {
                out.add(
                    &paths.assign,
                    None,
                    "missing: no virtual mailboxes are defined",
                );
            }
            return;
        }
        Err(e) => {
            out.add(&paths.assign, None, format!("unreadable: {e}"));
            return;
        }
    };
    let entries = match assign::parse(&text) {
        Ok(e) => e,
        Err(e) => {
            out.add(&paths.assign, Some(e.line), e.kind.to_string());
            return;
        }
    };
    for l in assign::lint(&entries) {
        out.add(&paths.assign, Some(l.line), l.message);
    }
    match is_newer(&paths.assign, &paths.users_cdb) {
        Some(true) => out.add(
            &paths.users_cdb,
            None,
            "older than users/assign: run `turnmail newu` (a running daemon recompiles by itself)",
        ),
        Some(false) => {}
        None => out.add(&paths.users_cdb, None, "missing: run `turnmail newu`"),
    }
    let mut homes: Vec<(&[u8], usize)> = Vec::new();
    for e in &entries {
        if !homes.iter().any(|(h, _)| *h == e.home.as_slice()) {
            homes.push((&e.home, e.line));
        }
    }
    for (home, line) in homes {
        if !home.starts_with(b"/") {
            continue;
        }
        check_home(Path::new(OsStr::from_bytes(home)), line, paths, config, out);
    }
}

fn check_home(home: &Path, line: usize, paths: &Paths, config: &Config, out: &mut Out) {
    let m = match std::fs::metadata(home) {
        Ok(m) => m,
        Err(e) => {
            out.add(
                &paths.assign,
                Some(line),
                format!("home directory {}: {e}", home.display()),
            );
            return;
        }
    };
    let mode = m.permissions().mode();
    if mode & 0o022 != 0 {
        out.add(
            home,
            None,
            format!(
                "home directory is group- or world-writable (mode {:o}): qmail defers all its mail",
                mode & 0o7777
            ),
        );
    }
    if mode & 0o1000 != 0 {
        out.add(
            home,
            None,
            "home directory is sticky: deliveries are deferred until the bit is cleared",
        );
    }
    let Ok(dir) = std::fs::read_dir(home) else {
        return;
    };
    let mut names: Vec<PathBuf> = dir
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.as_bytes().starts_with(b".qmail"))
        })
        .collect();
    names.sort();
    for p in names {
        let Ok(m) = std::fs::metadata(&p) else {
            continue;
        };
        if !m.is_file() {
            continue;
        }
        let fm = dotqmail::file_mode(m.mode());
        if fm.writable {
            out.add(
                &p,
                None,
                "group- or world-writable: qmail defers every delivery through it",
            );
        }
        let Ok(text) = std::fs::read(&p) else {
            out.add(&p, None, "unreadable");
            continue;
        };
        let parsed = match dotqmail::parse(&text, fm.forward_only) {
            Ok(d) => d,
            Err(e) => {
                out.add(&p, None, e.to_string());
                continue;
            }
        };
        for (l, ins) in &parsed.instructions {
            match ins {
                Instruction::Mbox(path) => {
                    let target = home.join(OsStr::from_bytes(path));
                    let last = path.rsplit(|&b| b == b'/').next().unwrap_or_default();
                    if target.is_dir() || last.eq_ignore_ascii_case(b"maildir") {
                        out.add(&p, Some(*l), format!("{} has no trailing '/': it is delivered as an mbox file, not a Maildir", show(path)));
                    }
                }
                Instruction::Maildir(path) => {
                    let target = home.join(OsStr::from_bytes(path));
                    if !target.join("new").is_dir() {
                        out.add(
                            &p,
                            Some(*l),
                            format!(
                                "Maildir {} does not exist (no new/): deliveries will be deferred",
                                show(path)
                            ),
                        );
                    }
                }
                Instruction::Program(_) if !config.allow_programs => {
                    out.add(
                        &p,
                        Some(*l),
                        "program line, but allow_programs = false in turnmail.toml",
                    );
                }
                _ => {}
            }
        }
    }
}

/// The account files against `[accounts] reader_group` (`engine::readers`): the
/// secrets readable by the mail user and that group only, poppasswd.cdb readable by
/// the group, users/ set up so that the daemon's recompiles keep it.
fn check_readers(root: &Path, paths: &Paths, config: &Config, out: &mut Out) {
    let group = match readers::reader_group(config) {
        Ok(g) => g,
        Err(e) => {
            out.add(&root.join("turnmail.toml"), None, e.to_string());
            return;
        }
    };
    if let Ok(m) = std::fs::metadata(&paths.secrets) {
        let mode = m.permissions().mode() & 0o777;
        let fix = "`turnmail newu` (as root) gives it the group and mode 0640";
        match &group {
            _ if mode & 0o007 != 0 => out.add(
                &paths.secrets,
                None,
                format!("holds secrets but every user may read it (mode {mode:o}): chmod o-rwx"),
            ),
            None if mode & 0o070 != 0 => out.add(
                &paths.secrets,
                None,
                format!(
                    "holds secrets but is mode {mode:o}: make it 0600 (chmod 600), or name the \
                     group that must read it as [accounts] reader_group in turnmail.toml"
                ),
            ),
            Some(g) if m.gid() != g.gid && mode & 0o070 != 0 => out.add(
                &paths.secrets,
                None,
                format!(
                    "readable by group {}, not by [accounts] reader_group {}: {fix}",
                    group_name(m.gid()),
                    g.name
                ),
            ),
            Some(g) if m.gid() != g.gid || mode & 0o040 == 0 => out.add(
                &paths.secrets,
                None,
                format!(
                    "not readable by [accounts] reader_group {} (group {}, mode {mode:o}): {fix}",
                    g.name,
                    group_name(m.gid())
                ),
            ),
            _ => {}
        }
    }
    // Dovecot's passwd-file holds the same hashes as poppasswd.cdb.
    let dovecot = crate::dovecot::passwd_file::path(root);
    if let Ok(m) = std::fs::metadata(&dovecot)
        && m.permissions().mode() & 0o007 != 0
    {
        out.add(
            &dovecot,
            None,
            "holds password hashes but every user may read it: chmod o-rwx",
        );
    }
    let Some(g) = group else {
        return;
    };
    for path in [&paths.poppasswd_cdb, &dovecot] {
        if let Ok(m) = std::fs::metadata(path)
            && (m.gid() != g.gid || m.permissions().mode() & 0o040 == 0)
        {
            out.add(
                path,
                None,
                format!(
                    "not readable by [accounts] reader_group {} (group {}): run `turnmail newu` (as root)",
                    g.name,
                    group_name(m.gid())
                ),
            );
        }
    }
    let users = crate::fsutil::parent_dir(&paths.poppasswd);
    if let Ok(m) = std::fs::metadata(users) {
        let inherits = m.gid() == g.gid && m.permissions().mode() & 0o2000 != 0;
        if !inherits && !is_member(&config.user, &g) {
            out.add(
                users,
                None,
                format!(
                    "not setgid {0}, and the mail user {1} is not in group {0}: the daemon's own \
                     recompiles of poppasswd.cdb would fail; run `turnmail newu` once as root",
                    g.name, config.user
                ),
            );
        }
    }
}

fn group_name(gid: u32) -> String {
    nix::unistd::Group::from_gid(gid.into())
        .ok()
        .flatten()
        .map_or_else(|| gid.to_string(), |g| g.name)
}

/// Whether `user` may give files group `g` (its primary group, or a member).
fn is_member(user: &str, g: &readers::ReaderGroup) -> bool {
    let primary = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .is_some_and(|u| u.gid.as_raw() == g.gid);
    primary
        || nix::unistd::Group::from_gid(g.gid.into())
            .ok()
            .flatten()
            .is_some_and(|gr| gr.mem.iter().any(|m| m == user))
}

fn check_secret_lines(paths: &Paths, out: &mut Out) {
    let Ok(text) = std::fs::read(&paths.secrets) else {
        return;
    };
    for e in accounts::check_secrets(&text) {
        out.add(&paths.secrets, Some(e.line), e.reason);
    }
}

fn check_poppasswd(paths: &Paths, out: &mut Out) {
    let Ok(text) = std::fs::read(&paths.poppasswd) else {
        return;
    };
    let lines = match accounts::parse_poppasswd(&text) {
        Ok(l) => l,
        Err(e) => {
            out.add(&paths.poppasswd, Some(e.line), e.reason);
            return;
        }
    };
    for a in &lines {
        match accounts::resolve_owner(&a.owner) {
            Ok(Some(o)) if o.uid == 0 => out.add(
                &paths.poppasswd,
                Some(a.line),
                format!(
                    "owner {} is root: this account can never log in",
                    show(&a.owner)
                ),
            ),
            Ok(Some(_)) => {}
            Ok(None) => out.add(
                &paths.poppasswd,
                Some(a.line),
                format!("owner {} does not exist", show(&a.owner)),
            ),
            Err(e) => out.add(
                &paths.poppasswd,
                Some(a.line),
                format!("owner {}: {e}", show(&a.owner)),
            ),
        }
        if a.hash.is_empty() {
            out.add(
                &paths.poppasswd,
                Some(a.line),
                format!(
                    "{} has an empty password hash: it can never log in",
                    show(&a.login)
                ),
            );
        }
        let home = Path::new(OsStr::from_bytes(&a.home));
        if !home.join("Maildir").join("new").is_dir() {
            out.add(
                &paths.poppasswd,
                Some(a.line),
                format!(
                    "{} has no Maildir at {}/Maildir",
                    show(&a.login),
                    home.display()
                ),
            );
        }
    }
    if is_newer(&paths.poppasswd, &paths.poppasswd_cdb) == Some(true) {
        out.add(
            &paths.poppasswd_cdb,
            None,
            "older than users/poppasswd: run `turnmail newu`",
        );
    }
}

/// users/quota, and maildirsize headers that disagree with it (`quota/lint.rs`).
fn check_quotas(root: &Path, paths: &Paths, out: &mut Out) {
    let accounts: Vec<(String, std::path::PathBuf)> = std::fs::read(&paths.poppasswd)
        .ok()
        .and_then(|t| accounts::parse_poppasswd(&t).ok())
        .unwrap_or_default()
        .iter()
        .map(|a| {
            (
                show(&a.login).to_ascii_lowercase(),
                Path::new(OsStr::from_bytes(&a.home)).to_path_buf(),
            )
        })
        .collect();
    let file = root.join(crate::quota::table::PATH);
    for (line, message) in crate::quota::lint::check(root, &accounts) {
        out.add(&file, line, message);
    }
}

/// The sites of the database's rows, and each RELAYHOST or site.toml on disk that
/// differs from its row (edited by hand: not read on this backend).
fn db_sites(root: &Path, config: &Config, out: &mut Out) -> crate::spool::site::Discovery {
    use crate::spool::{site_rows, sitetable};
    let loaded =
        crate::db::blocking::with_store(&config.postgres, |s| async move { s.load_sites().await });
    let (texts, version) = match loaded {
        Ok(l) => l,
        Err(e) => {
            out.add(
                &root.join("turnmail.toml"),
                None,
                format!("the database's sites: {e}"),
            );
            return crate::spool::site::Discovery::default();
        }
    };
    if let Ok(rows) = sitetable::parse(&texts.sites) {
        for (path, message) in site_rows::differences(root, &rows) {
            out.add(&path, None, message);
        }
        // Hand-made sites elsewhere under [sites] roots that were never imported (those
        // under ROOT/sites/ are named with the other directories there).
        let sites_dir = root.join("sites");
        let sites_dir = sites_dir.canonicalize().unwrap_or(sites_dir);
        for s in crate::spool::site::discover(root, &config.sites.roots).sites {
            let parent = s
                .dir
                .parent()
                .map(|p| p.canonicalize().unwrap_or(p.to_path_buf()));
            if !rows.contains_key(&s.name) && parent.as_deref() != Some(sites_dir.as_path()) {
                out.add(
                    &s.dir,
                    None,
                    format!(
                        "a site directory under [sites] roots without a row in the database's \
                         sites table: site {} is not served on the postgres backend (`turnmail \
                         db import` of this root takes it in)",
                        s.name
                    ),
                );
            }
        }
    }
    site_rows::discover_rows(root, &texts, version)
}

/// Site directories: those under `ROOT/sites/` and every site `[sites] roots` finds
/// (on the `postgres` backend: every row of the sites table).
fn check_sites(root: &Path, config: &Config, out: &mut Out) {
    let postgres = config.accounts.backend == crate::db::Backend::Postgres;
    let found = if postgres {
        db_sites(root, config, out)
    } else {
        crate::spool::site::discover(root, &config.sites.roots)
    };
    let source = if postgres {
        "the database's sites"
    } else {
        "[sites] roots"
    };
    for p in &found.problems {
        out.add(&root.join("turnmail.toml"), None, format!("{source}: {p}"));
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("sites"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    for s in &found.sites {
        if !dirs.contains(&s.dir) {
            dirs.push(s.dir.clone());
        }
    }
    dirs.sort();
    for s in dirs {
        let canonical = s.canonicalize().unwrap_or_else(|_| s.clone());
        if postgres && !found.sites.iter().any(|x| x.dir == s || x.dir == canonical) {
            out.add(
                &s,
                None,
                "site directory without a row in the database's sites table: not a site on \
                 the postgres backend (`turnmail site add`, or `turnmail db import` of a root \
                 holding it)",
            );
            continue;
        }
        if !s.join("RELAYHOST").is_file() {
            out.add(
                &s,
                None,
                "site directory without RELAYHOST: its mail can never be flushed",
            );
        }
        if !s.join("Maildir").join("new").is_dir() {
            out.add(
                &s,
                None,
                "site directory without Maildir/: mail for it is deferred",
            );
        }
        if let Some(site) = found.sites.iter().find(|x| x.dir == s) {
            for n in &site.settings.relay_networks {
                if crate::net::Net::parse(n).is_none() {
                    out.add(
                        &s.join("site.toml"),
                        None,
                        format!(
                            "relay_networks: {n:?} is not an address or CIDR block; it is ignored"
                        ),
                    );
                }
            }
        }
        if let Some(site) = found.sites.iter().find(|x| x.dir == s)
            && site.domains.is_empty()
        {
            out.add(
                &s,
                None,
                format!(
                    "no domain reaches site {}: no control/virtualdomains line leads here \
                     through users/assign and site.toml lists none, so it receives no mail \
                     and ETRN and ODMR cannot name it by domain",
                    site.name
                ),
            );
        }
    }
}
