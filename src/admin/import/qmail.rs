//! `turnmail import qmail --from QMAILROOT`: adopt an existing qmail tree (single-UID
//! virtual domains, serialmail sites). In place (`--root` is QMAILROOT) nothing of qmail's is moved: the text
//! files are validated and compiled, turnmail.toml names the site directories. Into a
//! fresh root, the control files, `users/assign` and `users/poppasswd` are copied; the
//! assign homes still point into the old tree, so every `.qmail` file and Maildir stays
//! where it is. Either way every virtualdomains line is traced to what receives its
//! mail (mailboxes, a serialmail site, or nothing turnmail can use), `.qmail` files
//! are read, and the report says what maps and what does not.
//!
//! One rewrite is made: vqpop's `DOMAIN:alias-vdom-PREFIX` lines, which reach the
//! `=PREFIX-user` assign lines through `~alias/.qmail-vdom-default` running
//! `|forward "$EXT2"` (vqpop), become the equivalent direct `DOMAIN:PREFIX`.

use std::path::{Path, PathBuf};

use super::Report;
use crate::admin::edit::{self, Edit, Kind};
use crate::admin::error::{AdminError, Result, invalid, io_at};
use crate::admin::{dotfiles, layout, lines};
use crate::qmail::assign::{AssignEntry, AssignKind};
use crate::qmail::dotqmail::{self, Instruction};
use crate::spool::site::SiteSettings;

/// The control files copied into a fresh root.
const CONTROL: [&str; 7] = [
    "me",
    "rcpthosts",
    "locals",
    "virtualdomains",
    "smtproutes",
    "morercpthosts",
    "defaultdomain",
];

pub fn run(
    root: &Path,
    from: &Path,
    sites: Option<&str>,
    schedule: Option<&str>,
    dry_run: bool,
) -> Result<Report> {
    let mut report = Report::new(&format!("qmail {}", from.display()), dry_run);
    if let Some(s) = schedule {
        crate::admin::site::check_schedule(s)?;
    }
    if !from.join("control").is_dir() {
        return Err(invalid(format!(
            "{} has no control/ directory",
            from.display()
        )));
    }
    let from = from.canonicalize().map_err(io_at(from))?;
    let in_place = root.canonicalize().is_ok_and(|r| r == from);
    let read = |rel: &str| -> Result<Option<Vec<u8>>> {
        let p = from.join(rel);
        match crate::fsutil::read_limited(&p, 1 << 30) {
            Ok(t) => Ok(Some(t)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&p)(e)),
        }
    };

    let mut backup: Option<Vec<u8>> = None;
    // users/assign must parse: qmail-newu would refuse it too.
    let assign_text = read("users/assign")?.unwrap_or_default();
    let entries = if assign_text.is_empty() {
        report.warn("no users/assign: only system accounts would receive mail");
        Vec::new()
    } else {
        crate::qmail::assign::parse(&assign_text).map_err(|e| AdminError::BadFile {
            path: from.join("users/assign"),
            reason: e.to_string(),
        })?
    };
    report.found(format!("users/assign: {} line(s)", entries.len()));
    for l in crate::qmail::assign::lint(&entries) {
        report.warn(format!("users/assign line {}: {}", l.line, l.message));
    }
    let mut vd_text = read("control/virtualdomains")?.unwrap_or_default();
    let rcpthosts = read("control/rcpthosts")?;
    match &rcpthosts {
        None => report.warn(
            "no control/rcpthosts: qmail relayed for everybody; turnmail accepts mail for \
             nobody until it exists",
        ),
        Some(t) => report.found(format!(
            "control/rcpthosts: {} domain(s)",
            crate::qmail::control::read_lines(t).len()
        )),
    }
    if from.join("control/morercpthosts").exists() {
        report.found(
            "control/morercpthosts (copied; its .cdb is rebuilt by qmail-newmrh, not by turnmail)",
        );
    }
    let locals = read("control/locals")?.unwrap_or_default();

    // vqpop's forward chain through ~alias, replaced by the direct prefix.
    let alias_home = from.join("alias");
    let mut rewrites: Vec<(usize, String)> = Vec::new();
    for (line, key, prefix) in layout::virtualdomains(&vd_text) {
        if has_route(&entries, &prefix) {
            continue;
        }
        if let Some(direct) = vqpop_prefix(&alias_home, &prefix)
            && has_route(&entries, &direct)
        {
            report.mapped(format!(
                "virtualdomains line {line}: {key}:{prefix} goes through ~alias |forward \"$EXT2\"; \
                 rewritten to the equivalent {key}:{direct}"
            ));
            rewrites.push((line, format!("{key}:{direct}")));
        }
    }
    for (line, new) in &rewrites {
        vd_text = lines::replace_line(&vd_text, *line, new.as_bytes());
    }

    // Every virtualdomains line: what receives its mail?
    let site_dirs = site_dirs(&from, sites, &mut report);
    let mut site_domains: Vec<(PathBuf, String)> = Vec::new();
    let vds = layout::virtualdomains(&vd_text);
    report.found(format!("control/virtualdomains: {} line(s)", vds.len()));
    for (line, key, prefix) in &vds {
        let shown = if key.is_empty() {
            "(catch-all)".to_string()
        } else {
            key.clone()
        };
        if crate::qmail::control::read_lines(&locals)
            .iter()
            .any(|l| l.text.eq_ignore_ascii_case(key.as_bytes()))
        {
            report.unmapped(format!(
                "virtualdomains line {line}: {shown} is also in control/locals, which wins: \
                 its virtual mail is never delivered"
            ));
            continue;
        }
        if prefix.is_empty() {
            continue; // an exception line: local delivery for that domain
        }
        match route_home(&entries, prefix) {
            None => report.unmapped(format!(
                "virtualdomains line {line}: {shown}:{prefix} has no users/assign line \
                 for {prefix}-…; \
                 qmail used system accounts (set system_accounts = true) or ~alias"
            )),
            Some((e, homes)) => {
                let home = layout::bytes_path(&e.home);
                if home.join("RELAYHOST").is_file() {
                    site_domains.push((home.clone(), key.clone()));
                    if !site_dirs.iter().any(|d| same_dir(d, &home)) {
                        report.warn(format!(
                            "{shown}: goes to the serialmail directory {} which --sites does \
                             not match; it is not flushed",
                            home.display()
                        ));
                    }
                } else {
                    report.mapped(format!(
                        "{shown}: {} assign line(s) for {prefix}-…, home {}",
                        homes,
                        home.display()
                    ));
                }
            }
        }
    }

    // .qmail files of every home.
    let mut homes: Vec<PathBuf> = entries
        .iter()
        .map(|e| layout::bytes_path(&e.home))
        .collect();
    homes.sort();
    homes.dedup();
    let (mut boxes, mut forwards, mut programs) = (0, 0, 0);
    for h in &homes {
        if !h.is_dir() {
            report.unmapped(format!(
                "home {} in users/assign does not exist",
                h.display()
            ));
            continue;
        }
        let mut files = dotfiles::scan(h);
        files.extend(dotfiles::read(&h.join(".qmail"), ""));
        for f in files {
            if let Some(e) = &f.error {
                report.unmapped(format!("{}: {e}", f.path.display()));
            } else if f.has_program() {
                programs += 1;
                report.warn(format!(
                    "{}: program delivery ({}); runs as the assign uid while allow_programs = true",
                    f.path.display(),
                    f.summary()
                ));
            } else if f.is_mailbox() {
                boxes += 1;
            } else if f.is_alias() {
                forwards += 1;
            }
        }
    }
    report.found(format!(
        ".qmail files: {boxes} mailbox(es), {forwards} forward(s), {programs} program(s)"
    ));

    // POP accounts: lines that do not parse are left out (and reported), so one bad
    // line does not keep the whole file from compiling.
    let mut poppasswd = read("users/poppasswd")?;
    if let Some(t) = poppasswd.take() {
        let mut kept = Vec::with_capacity(t.len());
        let mut count = 0;
        let mut dropped = false;
        for raw in t.split_inclusive(|&b| b == b'\n') {
            count += 1;
            let parsed = crate::engine::accounts::parse_poppasswd(raw);
            match parsed.as_deref() {
                Ok([a]) => {
                    let home = layout::bytes_path(&a.home);
                    if let Err(why) =
                        super::poppasswd::check_account(&a.login, &a.hash, &a.owner, &home)
                    {
                        report.unmapped(format!("users/poppasswd line {count}: {why}"));
                    } else if let Some(n) = super::poppasswd::maildir_note(&home) {
                        report.warn(format!("users/poppasswd line {count}: {n}"));
                    }
                }
                Ok(_) => {} // a comment or blank line
                Err(e) => {
                    report.unmapped(format!(
                        "users/poppasswd line {count}: {} (left out)",
                        e.reason
                    ));
                    dropped = true;
                    continue;
                }
            }
            kept.extend_from_slice(raw);
            if !raw.ends_with(b"\n") {
                kept.push(b'\n');
            }
        }
        report.found(format!("users/poppasswd: {count} line(s)"));
        if dropped && in_place {
            report.warn(
                "users/poppasswd rewritten without the lines left out; the original is kept \
                 as users/poppasswd.before-import",
            );
            backup = Some(t);
        }
        poppasswd = Some(kept);
    }

    // Serialmail sites.
    let mut site_writes: Vec<(PathBuf, String)> = Vec::new();
    for dir in &site_dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = entries.iter().find(|e| {
            e.kind == AssignKind::Wildcard && same_dir(&layout::bytes_path(&e.home), dir)
        });
        let Some(prefix) = prefix else {
            report.unmapped(format!(
                "site {}: no users/assign line has it as home, so no mail reaches it",
                dir.display()
            ));
            continue;
        };
        let rh = std::fs::read_to_string(dir.join("RELAYHOST")).unwrap_or_default();
        if crate::spool::site::Relayhost::parse(rh.lines().next().unwrap_or("")).is_none() {
            report.unmapped(format!(
                "site {}: RELAYHOST {:?} cannot be parsed",
                dir.display(),
                rh.trim()
            ));
            continue;
        }
        if !dir.join("Maildir/new").is_dir() {
            report.unmapped(format!("site {}: no Maildir/ spool", dir.display()));
            continue;
        }
        let queued = layout::spool_usage(&dir.join("Maildir")).0;
        let mut settings: SiteSettings = match std::fs::read_to_string(dir.join("site.toml")) {
            Ok(t) => toml::from_str(&t).map_err(|e| AdminError::BadFile {
                path: dir.join("site.toml"),
                reason: e.to_string(),
            })?,
            Err(_) => SiteSettings::default(),
        };
        let before = settings.clone();
        for (h, d) in &site_domains {
            if same_dir(h, dir)
                && !d.starts_with('.')
                && !d.is_empty()
                && !settings.domains.contains(d)
            {
                settings.domains.push(d.clone());
            }
        }
        if settings.schedule.is_none() {
            settings.schedule = schedule.map(str::to_string);
        }
        report.mapped(format!(
            "site {name}: relay {}, prefix {}, {queued} queued, domains {}{}",
            rh.trim(),
            String::from_utf8_lossy(&prefix.local),
            if settings.domains.is_empty() {
                "-".into()
            } else {
                settings.domains.join(" ")
            },
            settings
                .schedule
                .as_ref()
                .map(|s| format!(", schedule {s:?}"))
                .unwrap_or_else(|| ", no schedule (flush by hand or ETRN)".into())
        ));
        if settings != before {
            let t = toml::to_string(&settings).map_err(|e| invalid(e.to_string()))?;
            site_writes.push((dir.join("site.toml"), t));
        }
    }

    if dry_run {
        return Ok(report);
    }

    // Write: a fresh root gets the skeleton and copies; in place only what changed.
    if !in_place {
        // An empty root (turnmail setup, the package) is there to be filled.
        if crate::admin::init::is_mail_root(root) && !crate::admin::init::is_empty_root(root) {
            return Err(invalid(format!(
                "{} already holds a mail root with domains, users or sites: import into a \
                 fresh or empty one, or pass --root {} to adopt the tree in place",
                root.display(),
                from.display()
            )));
        }
        let owner = tree_owner(&from);
        for (d, mode) in [
            ("", 0o755),
            ("control", 0o755),
            ("users", 0o755),
            ("domains", 0o755),
            ("sites", 0o755),
            ("queue", 0o700),
            ("run", 0o700),
        ] {
            edit::make_dir(&root.join(d), mode, owner)?;
        }
    } else {
        let owner = tree_owner(&from);
        edit::make_dir(&root.join("run"), 0o700, owner)?;
    }
    let root_c = root.canonicalize().map_err(io_at(root))?;
    let mut edit = Edit::begin(&root_c)?;
    if !in_place {
        for f in CONTROL {
            if let Some(t) = read(&format!("control/{f}"))? {
                let t = if f == "virtualdomains" {
                    vd_text.clone()
                } else {
                    t
                };
                edit.stage(&root_c.join("control").join(f), t, 0o644, Kind::Control);
            }
        }
        if let Some(t) = read("control/morercpthosts.cdb")? {
            edit.stage(
                &root_c.join("control/morercpthosts.cdb"),
                t,
                0o644,
                Kind::Plain,
            );
        }
    } else if !rewrites.is_empty() {
        edit.stage(
            &root_c.join("control/virtualdomains"),
            vd_text.clone(),
            0o644,
            Kind::Control,
        );
    }
    // Staged even in place: the commit compiles users/cdb and users/poppasswd.cdb.
    if !assign_text.is_empty() {
        edit.stage(
            &root_c.join("users/assign"),
            assign_text,
            0o644,
            Kind::Assign,
        );
    }
    if let Some(t) = backup {
        edit.stage(
            &root_c.join("users/poppasswd.before-import"),
            t,
            0o600,
            Kind::Plain,
        );
    }
    if let Some(t) = poppasswd {
        edit.stage(&root_c.join("users/poppasswd"), t, 0o640, Kind::Poppasswd);
    }
    if let Some(glob) = sites {
        let full = if Path::new(glob).is_absolute() {
            glob.to_string()
        } else {
            from.join(glob).display().to_string()
        };
        // A root whose turnmail.toml links to the operator's (the package's conffile in
        // /etc/turnmail) has that file edited, not the link replaced.
        let cfg_path = root_c.join("turnmail.toml");
        let cfg_path = if cfg_path.is_symlink() {
            cfg_path.canonicalize().map_err(io_at(&cfg_path))?
        } else {
            cfg_path
        };
        let cfg = edit.read_or_empty(&cfg_path)?;
        let new = config_with_sites(
            &cfg,
            &full,
            &layout::owner_name(tree_owner(&from).0, "turnmail"),
        )?;
        edit.stage(&cfg_path, new, 0o644, Kind::Config);
        report.mapped(format!("turnmail.toml: [sites] roots include {full}"));
    }
    for (path, text) in &site_writes {
        edit.stage(path, text.clone().into_bytes(), 0o644, Kind::SiteToml);
    }
    edit.commit()?;
    Ok(report)
}

/// Whether some assign line serves `PREFIX-…` addresses.
fn has_route(entries: &[AssignEntry], prefix: &str) -> bool {
    route_home(entries, prefix).is_some()
}

/// The entry for `PREFIX-` (the wildcard, else the first `=PREFIX-user` line) and the
/// number of entries serving that prefix.
fn route_home<'a>(entries: &'a [AssignEntry], prefix: &str) -> Option<(&'a AssignEntry, usize)> {
    let want = format!("{prefix}-").to_ascii_lowercase();
    let matching: Vec<&AssignEntry> = entries
        .iter()
        .filter(|e| e.local.to_ascii_lowercase().starts_with(want.as_bytes()))
        .collect();
    let first = matching
        .iter()
        .find(|e| e.kind == AssignKind::Wildcard && e.local.eq_ignore_ascii_case(want.as_bytes()))
        .or(matching.first())?;
    Some((first, matching.len()))
}

/// vqpop: `alias-vdom-acme` is handled by ~alias's `.qmail-vdom-…default` running
/// `|forward "$EXT2"`, which re-addresses `vdom-acme-USER` to `acme-USER`: the direct
/// prefix is `acme`.
fn vqpop_prefix(alias_home: &Path, prefix: &str) -> Option<String> {
    let rest = prefix.strip_prefix("alias-")?;
    let sample = format!("{rest}-user");
    let chosen = dotqmail::search(alias_home, b"-", sample.as_bytes()).ok()??;
    let parsed = dotqmail::parse(&chosen.content, chosen.mode.forward_only).ok()?;
    let [(_, Instruction::Program(p))] = parsed.instructions.as_slice() else {
        return None;
    };
    let p = String::from_utf8_lossy(p);
    if !(p.contains("forward") && p.contains("$EXT2")) {
        return None;
    }
    let ext2 = sample.split_once('-')?.1;
    ext2.strip_suffix("-user").map(str::to_string)
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Site directories matching `--sites` that hold a RELAYHOST.
fn site_dirs(from: &Path, sites: Option<&str>, report: &mut Report) -> Vec<PathBuf> {
    let Some(pat) = sites else { return Vec::new() };
    let full = if Path::new(pat).is_absolute() {
        pat.to_string()
    } else {
        from.join(pat).display().to_string()
    };
    let mut out = Vec::new();
    match glob::glob(&full) {
        Ok(paths) => {
            for p in paths.flatten() {
                if p.join("RELAYHOST").is_file() {
                    out.push(p);
                } else if p.is_dir() {
                    report.unmapped(format!(
                        "{}: matched --sites but has no RELAYHOST",
                        p.display()
                    ));
                }
            }
        }
        Err(e) => report.unmapped(format!("--sites {pat:?}: {e}")),
    }
    report.found(format!(
        "{} serialmail site director(y/ies) under {full}",
        out.len()
    ));
    out
}

/// Who owns the old tree's users/ (the owner the copies get when run as root).
fn tree_owner(from: &Path) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(from.join("users"))
        .or_else(|_| std::fs::metadata(from))
        .map_or((0, 0), |m| (m.uid(), m.gid()))
}

/// turnmail.toml with `glob` added to `[sites] roots` (keeping the default `sites/*`),
/// and a `user` when none is set. An edit of the text, not a rewrite: the operator's
/// comments and layout stay.
fn config_with_sites(text: &[u8], glob: &str, user: &str) -> Result<Vec<u8>> {
    let s = std::str::from_utf8(text).map_err(|e| invalid(format!("turnmail.toml: {e}")))?;
    let mut doc: toml_edit::DocumentMut = s
        .parse()
        .map_err(|e| invalid(format!("turnmail.toml: {e}")))?;
    if !doc.contains_key("user") && user != "root" {
        // Before any table, where a top-level key must go.
        doc.insert("user", toml_edit::value(user));
    }
    let sites = doc
        .entry("sites")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
    let Some(sites) = sites.as_table_like_mut() else {
        return Err(invalid("turnmail.toml: [sites] is not a table"));
    };
    let roots = sites.entry("roots").or_insert_with(|| {
        let mut a = toml_edit::Array::new();
        a.push("sites/*");
        toml_edit::value(a)
    });
    let Some(roots) = roots.as_array_mut() else {
        return Err(invalid("turnmail.toml: sites.roots is not a list"));
    };
    if !roots.iter().any(|v| v.as_str() == Some(glob)) {
        roots.push(glob);
    }
    Ok(doc.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vqpop_chain_is_recognised() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(".qmail-vdom-default"), "|forward \"$EXT2\"\n").unwrap();
        assert_eq!(
            vqpop_prefix(d.path(), "alias-vdom-acme"),
            Some("acme".into())
        );
        assert_eq!(vqpop_prefix(d.path(), "acme"), None);
        std::fs::write(d.path().join(".qmail-vdom-default"), "|other\n").unwrap();
        assert_eq!(vqpop_prefix(d.path(), "alias-vdom-acme"), None);
    }

    #[test]
    fn sites_glob_is_added_once() {
        let t =
            config_with_sites(b"[smtp]\nlisten = [\"127.0.0.1:25\"]\n", "/s/*", "mail").unwrap();
        let again = config_with_sites(&t, "/s/*", "mail").unwrap();
        assert_eq!(t, again);
        let c = crate::config::Config::parse(std::str::from_utf8(&t).unwrap()).unwrap();
        assert_eq!(
            c.sites.roots,
            vec!["sites/*".to_string(), "/s/*".to_string()]
        );
        assert_eq!(c.user, "mail");
        // The operator's comments and other settings stay as they were.
        let mine = "# my host\nuser = \"turnmail\"\n\n[sites]\n# customers\nroots = [\"sites/*\"]  # keep\n\n[log]\nformat = \"json\"\n";
        let t = String::from_utf8(
            config_with_sites(mine.as_bytes(), "/home/serialmail/*", "mail").unwrap(),
        )
        .unwrap();
        assert!(t.starts_with("# my host\nuser = \"turnmail\"\n"), "{t}");
        assert!(
            t.contains("# customers\n") && t.contains("# keep") && t.contains("format = \"json\""),
            "{t}"
        );
        let c = crate::config::Config::parse(&t).unwrap();
        assert_eq!(
            c.sites.roots,
            vec!["sites/*".to_string(), "/home/serialmail/*".to_string()]
        );
        assert_eq!(c.user, "turnmail");
    }
}
