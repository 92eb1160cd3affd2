//! `turnmail import vpopmail --from DIR`: vpopmail's domains. Each
//! `DIR/domains/DOMAIN/vpasswd` line `name:hash:uid:gid:gecos:dir:quota` becomes a
//! poppasswd line whose home is the existing user directory, so the Maildir and its
//! file names (the POP UIDLs) stay exactly where they are; the new domain home
//! `ROOT/domains/DOMAIN` gets a `.qmail-NAME` pointing at that Maildir by absolute path.
//! The domain's `.qmail-*` files (aliases, and the `.qmail-default` that runs
//! vdelivermail) and a valias text export become forwarding files; quotas become
//! `users/quota` lines and `maildirsize` headers; program lines other than vdelivermail
//! and per-user flags are reported, not mapped. Alias domains (vaddaliasdomain) become
//! turnmail alias domains: those the old host's `users/assign` routes to another
//! domain's directory (`--assign`, its `+alias-:real:...:/home/vpopmail/domains/real:-::`
//! lines) and domain directories that are symbolic links to another one.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Report;
use super::poppasswd::{check_account, maildir_note};
use crate::admin::edit::{self, Edit, Kind};
use crate::admin::error::{AdminError, Result, io_at};
use crate::admin::mailuser::MailUser;
use crate::admin::progress::Progress;
use crate::admin::{domain, dotfiles, layout, names};
use crate::qmail::dotqmail::Instruction;

/// One vpopmail domain directory.
struct VDomain {
    name: String,
    dir: PathBuf,
}

/// Alias domains found: (alias, target), both vpopmail's names.
type AliasPairs = Vec<(String, String)>;

/// Split off the domains whose directory is a symbolic link to another domain's: they
/// are alias domains of it, not domains of their own with the same mailboxes.
fn split_linked(domains: Vec<VDomain>) -> (Vec<VDomain>, AliasPairs) {
    let canon = |d: &VDomain| d.dir.canonicalize().ok();
    let real: Vec<(PathBuf, String)> = domains
        .iter()
        .filter(|d| !d.dir.is_symlink())
        .filter_map(|d| canon(d).map(|c| (c, d.name.clone())))
        .collect();
    let mut kept = Vec::new();
    let mut pairs = Vec::new();
    for d in domains {
        let target = if d.dir.is_symlink() {
            canon(&d).and_then(|c| real.iter().find(|(rc, _)| *rc == c).map(|(_, n)| n.clone()))
        } else {
            None
        };
        match target {
            Some(t) if t != d.name => pairs.push((d.name, t)),
            _ => kept.push(d),
        }
    }
    (kept, pairs)
}

/// The alias domains of the old host's users/assign: `+NEW-` wildcard lines whose home
/// is the directory of an imported domain other than NEW.
fn assign_aliases(assign: &Path, domains: &[VDomain], report: &mut Report) -> Result<AliasPairs> {
    let text = crate::fsutil::read_limited(assign, 1 << 30).map_err(io_at(assign))?;
    let entries = crate::qmail::assign::parse(&text).map_err(|e| AdminError::BadFile {
        path: assign.to_path_buf(),
        reason: e.to_string(),
    })?;
    let dirs: Vec<(PathBuf, &str)> = domains
        .iter()
        .filter_map(|d| d.dir.canonicalize().ok().map(|c| (c, d.name.as_str())))
        .collect();
    let mut pairs = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e.kind == crate::qmail::assign::AssignKind::Wildcard)
    {
        let Some(prefix) = e.local.strip_suffix(b"-") else {
            continue;
        };
        let Ok(new) = names::domain(&String::from_utf8_lossy(prefix)) else {
            continue;
        };
        let home = layout::bytes_path(&e.home);
        let Some((_, target)) = home
            .canonicalize()
            .ok()
            .and_then(|h| dirs.iter().find(|(d, _)| *d == h))
        else {
            continue;
        };
        if new != *target && !domains.iter().any(|d| d.name == new) {
            pairs.push((new, target.to_string()));
        }
    }
    report.found(format!(
        "{} alias domain(s) in {}",
        pairs.len(),
        assign.display()
    ));
    Ok(pairs)
}

/// Domains under DIR/domains, including vpopmail's hashed layout for many domains
/// (`domains/0/example.com`).
fn find_domains(from: &Path, report: &mut Report) -> Result<Vec<VDomain>> {
    let base = from.join("domains");
    let mut out = Vec::new();
    let mut dirs = vec![base.clone()];
    let rd = std::fs::read_dir(&base).map_err(io_at(&base))?;
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if p.is_dir() && name.len() == 1 && !p.join("vpasswd").exists() {
            dirs.push(p);
        }
    }
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if !p.join("vpasswd").is_file() {
                continue;
            }
            let raw = e.file_name().to_string_lossy().into_owned();
            match names::domain(&raw) {
                Ok(name) => out.push(VDomain { name, dir: p }),
                Err(e) => report.unmapped(format!("{}: {e}", p.display())),
            }
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// A parsed vpasswd line.
struct VUser {
    name: String,
    hash: Vec<u8>,
    flags: u64,
    dir: PathBuf,
    quota: String,
}

fn parse_vpasswd(line: &[u8]) -> std::result::Result<VUser, String> {
    let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    if f.len() < 6 {
        return Err("expected name:hash:uid:gid:gecos:dir:quota".into());
    }
    let name =
        names::local(&String::from_utf8_lossy(f[0]), "vpopmail user").map_err(|e| e.to_string())?;
    let dir = layout::bytes_path(f[5]);
    if !dir.is_absolute() {
        return Err("dir is not an absolute path".into());
    }
    // vpopmail keeps per-user flags (NO_POP, NO_SMTP, ...) in the gid field.
    let flags = std::str::from_utf8(f[3])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(VUser {
        name,
        hash: f[1].to_vec(),
        flags,
        dir,
        quota: f
            .get(6)
            .map(|q| String::from_utf8_lossy(q).into_owned())
            .unwrap_or_default(),
    })
}

/// The `.qmail` lines equivalent to one vdelivermail instruction (the last argument of
/// `| vdelivermail '' INSTRUCTION`): None for bounce-no-mailbox.
fn vdelivermail_default(program: &str) -> std::result::Result<Option<String>, String> {
    let last = program
        .split_whitespace()
        .last()
        .unwrap_or_default()
        .trim_matches(|c| c == '\'' || c == '"');
    match last {
        "bounce-no-mailbox" => Ok(None),
        "delete" => Err("vdelivermail 'delete' (discard unknown addresses): left as bounce".into()),
        t if t.starts_with('/') => {
            let t = t.trim_end_matches('/');
            let md = if t.ends_with("/Maildir") {
                t.to_string()
            } else {
                format!("{t}/Maildir")
            };
            Ok(Some(format!("{md}/\n")))
        }
        t if t.contains('@') => Ok(Some(format!(
            "&{}\n",
            names::forward_target(t).map_err(|e| e.to_string())?
        ))),
        t => Err(format!("vdelivermail instruction {t:?} not understood")),
    }
}

/// A domain `.qmail-X` file with paths made absolute against the vpopmail domain dir.
fn translate(f: &dotfiles::DotFile, vdir: &Path) -> std::result::Result<String, String> {
    if let Some(e) = &f.error {
        return Err(e.clone());
    }
    let mut out = String::new();
    for (_, i) in f.parsed.iter().flat_map(|p| p.instructions.iter()) {
        match i {
            Instruction::Forward(a) => out.push_str(&format!("&{}\n", String::from_utf8_lossy(a))),
            Instruction::Maildir(p) | Instruction::Mbox(p) => {
                let p = vdir.join(layout::bytes_path(p));
                let mut s = p.display().to_string();
                if matches!(i, Instruction::Maildir(_)) && !s.ends_with('/') {
                    s.push('/');
                }
                out.push_str(&s);
                out.push('\n');
            }
            Instruction::Program(p) => {
                return Err(format!("program line |{}", String::from_utf8_lossy(p)));
            }
        }
    }
    Ok(out)
}

/// `alias@domain -> target` lines (also `alias@domain target`), grouped by alias.
fn read_valias(
    path: &Path,
    report: &mut Report,
) -> Result<BTreeMap<(String, String), Vec<String>>> {
    let text = crate::fsutil::read_limited(path, 1 << 28).map_err(io_at(path))?;
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for l in crate::qmail::control::read_lines(&text) {
        let t = String::from_utf8_lossy(&l.text).into_owned();
        let (a, target) = match t.split_once("->") {
            Some((a, b)) => (a.trim().to_string(), b.trim().to_string()),
            None => match t.split_whitespace().collect::<Vec<_>>().as_slice() {
                [a, b] => (a.to_string(), b.to_string()),
                _ => {
                    report.unmapped(format!(
                        "{}:{}: expected alias@domain -> target",
                        path.display(),
                        l.line
                    ));
                    continue;
                }
            },
        };
        match (names::address(&a), names::forward_target(&target)) {
            (Ok(addr), Ok(t)) => out.entry(addr).or_default().push(t),
            (Err(e), _) | (_, Err(e)) => {
                report.unmapped(format!("{}:{}: {e}", path.display(), l.line));
            }
        }
    }
    Ok(out)
}

pub fn run(
    root: &Path,
    from: &Path,
    valias: Option<&Path>,
    assign: Option<&Path>,
    dry_run: bool,
) -> Result<Report> {
    let mut report = Report::new(&format!("vpopmail {}", from.display()), dry_run);
    let (vdomains, mut alias_domains) = split_linked(find_domains(from, &mut report)?);
    report.found(format!("{} domain(s) with a vpasswd file", vdomains.len()));
    match assign {
        Some(a) => alias_domains.extend(assign_aliases(a, &vdomains, &mut report)?),
        None => report.warn(
            "no --assign: alias domains that vaddaliasdomain wrote into users/assign are not \
             looked for (pass the old host's, e.g. --assign /var/qmail/users/assign)"
                .to_string(),
        ),
    }
    alias_domains.sort();
    alias_domains.dedup();
    let valias_path = valias
        .map(Path::to_path_buf)
        .or_else(|| Some(from.join("valias.txt")).filter(|p| p.is_file()));
    let mut valiases = match &valias_path {
        Some(p) => {
            let v = read_valias(p, &mut report)?;
            report.found(format!("{} valias address(es) in {}", v.len(), p.display()));
            v
        }
        None => BTreeMap::new(),
    };
    let mut edit = Edit::begin(root)?;
    let mut quotas: Vec<(String, crate::quota::Limits, PathBuf)> = Vec::new();
    let root_c = edit.root().canonicalize().map_err(io_at(root))?;
    let (pw_text, existing) = layout::read_poppasswd(&edit)?;
    let mut pw_out = pw_text;
    let mut total_users = 0;
    let total_lines: u64 = vdomains
        .iter()
        .map(|d| {
            std::fs::read(d.dir.join("vpasswd"))
                .map_or(0, |t| t.split(|&b| b == b'\n').count() as u64)
        })
        .sum();
    let mut progress = Progress::new("import vpopmail", total_lines);
    let mut imported: Vec<String> = Vec::new();
    for vd in &vdomains {
        let d = &vd.name;
        if let Err(e) = domain::check_free(&edit, d) {
            report.unmapped(format!("domain {d}: {e}"));
            continue;
        }
        let meta = std::fs::metadata(&vd.dir).map_err(io_at(&vd.dir))?;
        let mu = if meta.uid() == 0 {
            let mu = layout::mail_user(&root_c)?;
            report.warn(format!(
                "{} is owned by root; mail for {d} will be delivered as {}",
                vd.dir.display(),
                mu.name
            ));
            mu
        } else {
            MailUser {
                name: layout::owner_name(meta.uid(), &meta.uid().to_string()),
                uid: meta.uid(),
                gid: meta.gid(),
            }
        };
        let owner = (mu.uid, mu.gid);
        let home = root_c.join("domains").join(d);
        if home.exists() {
            report.unmapped(format!("domain {d}: {} already exists", home.display()));
            continue;
        }
        // Mailboxes.
        let vpasswd = vd.dir.join("vpasswd");
        let text = crate::fsutil::read_limited(&vpasswd, 1 << 30).map_err(io_at(&vpasswd))?;
        let mut files: Vec<(String, String)> = Vec::new();
        let mut users = 0;
        for l in crate::qmail::control::read_lines(&text) {
            progress.inc(1);
            let at = |why: String| format!("{}:{}: {why}", vpasswd.display(), l.line);
            let u = match parse_vpasswd(&l.text) {
                Ok(u) => u,
                Err(why) => {
                    report.unmapped(at(why));
                    continue;
                }
            };
            let login = format!("{}@{d}", u.name);
            if let Err(why) = check_account(login.as_bytes(), &u.hash, mu.name.as_bytes(), &u.dir) {
                report.unmapped(at(why));
                continue;
            }
            if existing
                .iter()
                .any(|a| a.login.eq_ignore_ascii_case(login.as_bytes()))
            {
                report.unmapped(at(format!("{login} already has an account here")));
                continue;
            }
            if let Some(n) = maildir_note(&u.dir) {
                report.unmapped(at(format!("{login}: {n}")));
                continue;
            }
            if u.flags != 0 {
                report.warn(format!(
                    "{login}: vpopmail flags {} (e.g. NO_POP) not carried over",
                    u.flags
                ));
            }
            // vpopmail's quota field (`NOQUOTA`, `10000000S`, `10000000S,1000C`, `50M`)
            // becomes the mailbox's line in users/quota and its maildirsize header.
            if !u.quota.is_empty() {
                match crate::quota::Limits::parse_operator(&u.quota) {
                    Ok(l) if l.is_none() => {}
                    Ok(l) => {
                        report.mapped(format!("{login}: quota {} as {l}", u.quota));
                        quotas.push((login.to_ascii_lowercase(), l, u.dir.join("Maildir")));
                    }
                    Err(e) => report.unmapped(at(format!("{login}: {e}"))),
                }
            }
            if u.dir.join(".qmail").is_file() {
                report.unmapped(format!(
                    "{}: a per-user .qmail (run by vdelivermail) is not imported",
                    u.dir.join(".qmail").display()
                ));
            }
            files.push((
                names::dotqmail_name(&u.name),
                format!("{}/\n", u.dir.join("Maildir").display()),
            ));
            pw_out = crate::admin::lines::append(
                &pw_out,
                &format!(
                    "{login}:{}:{}:{}",
                    String::from_utf8_lossy(&u.hash),
                    mu.name,
                    u.dir.display()
                ),
            );
            users += 1;
        }
        // The domain's own .qmail files.
        let mut aliases = 0;
        for f in dotfiles::scan(&vd.dir) {
            let name = names::dotqmail_name(&f.local);
            if f.local == "default" {
                let prog = f
                    .parsed
                    .iter()
                    .flat_map(|p| p.instructions.iter())
                    .find_map(|(_, i)| match i {
                        Instruction::Program(p) => Some(String::from_utf8_lossy(p).into_owned()),
                        _ => None,
                    });
                match prog {
                    Some(p) if p.contains("vdelivermail") => match vdelivermail_default(&p) {
                        Ok(Some(t)) => files.push((".qmail-default".into(), t)),
                        Ok(None) => {}
                        Err(why) => report.unmapped(format!("{}: {why}", f.path.display())),
                    },
                    _ => match translate(&f, &vd.dir) {
                        Ok(t) => files.push((".qmail-default".into(), t)),
                        Err(why) => report.unmapped(format!("{}: {why}", f.path.display())),
                    },
                }
                continue;
            }
            if files.iter().any(|(n, _)| *n == name) {
                report.unmapped(format!(
                    "{}: clashes with the mailbox of the same name",
                    f.path.display()
                ));
                continue;
            }
            match translate(&f, &vd.dir) {
                Ok(t) => {
                    files.push((name, t));
                    aliases += 1;
                }
                Err(why) => report.unmapped(format!("{}: {why}", f.path.display())),
            }
        }
        // valias entries of this domain.
        let keys: Vec<(String, String)> =
            valiases.keys().filter(|(_, dd)| dd == d).cloned().collect();
        for k in keys {
            let targets = valiases.remove(&k).unwrap_or_default();
            let name = names::dotqmail_name(&k.0);
            if files.iter().any(|(n, _)| *n == name) {
                report.unmapped(format!(
                    "valias {}@{}: clashes with a mailbox or .qmail file",
                    k.0, k.1
                ));
                continue;
            }
            files.push((name, targets.iter().map(|t| format!("&{t}\n")).collect()));
            aliases += 1;
        }
        for (name, text) in &files {
            if let Err(why) = edit::validate(Kind::DotQmail, text.as_bytes()) {
                return Err(AdminError::BadFile {
                    path: home.join(name),
                    reason: why,
                });
            }
        }
        report.mapped(format!(
            "domain {d}: {users} mailbox(es), {aliases} alias(es), home {}",
            home.display()
        ));
        total_users += users;
        imported.push(d.clone());
        if dry_run {
            continue;
        }
        edit::make_dir(&root_c.join("domains"), 0o755, owner)?;
        edit::make_dir(&home, 0o700, owner)?;
        for (name, text) in &files {
            edit::write_owned(&home.join(name), text.as_bytes(), 0o600, owner)?;
        }
        domain::stage_assign(&mut edit, d, &home, &mu)?;
        domain::stage_route(&mut edit, d, d)?;
    }
    progress.finish();
    for ((l, d), _) in valiases {
        report.unmapped(format!("valias {l}@{d}: domain {d} was not imported"));
    }
    if !dry_run {
        let p = edit.paths().poppasswd.clone();
        let qpath = root.join(crate::quota::table::PATH);
        if !quotas.is_empty() {
            let text = edit.read_or_empty(&qpath)?;
            let mut t = crate::quota::table::parse(&text).map_err(|e| AdminError::BadFile {
                path: qpath.clone(),
                reason: e.to_string(),
            })?;
            for (login, l, _) in &quotas {
                t.mailboxes.insert(login.clone(), *l);
            }
            edit.stage(&qpath, crate::quota::table::render(&t), 0o644, Kind::Plain);
        }
        edit.stage(&p, pw_out, 0o640, Kind::Poppasswd);
        edit.commit()?;
        for (_, l, md) in &quotas {
            crate::quota::disk::set_limits(md, l).map_err(io_at(md))?;
        }
    }
    for (new, target) in alias_domains {
        if !imported.contains(&target) {
            report.unmapped(format!(
                "alias domain {new} of {target}: {target} was not imported"
            ));
            continue;
        }
        if dry_run {
            report.mapped(format!("alias domain {new} of {target}"));
            continue;
        }
        match crate::admin::aliasdomain::add(root, &new, &target) {
            Ok(_) => report.mapped(format!("alias domain {new} of {target}")),
            Err(e) => report.unmapped(format!("alias domain {new} of {target}: {e}")),
        }
    }
    report.found(format!("{total_users} mailbox(es) mapped in total"));
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vpasswd_lines() {
        let u =
            parse_vpasswd(b"Joe:$1$x$y:1:8:Joe Bloggs:/home/vpopmail/domains/d/joe:5M").unwrap();
        assert_eq!(u.name, "joe");
        assert_eq!(u.flags, 8);
        assert_eq!(u.quota, "5M");
        assert!(parse_vpasswd(b"joe:x:1:0:g").is_err());
        assert!(parse_vpasswd(b"../x:h:1:0:g:/d:NOQUOTA").is_err());
        assert!(parse_vpasswd(b"x:h:1:0:g:rel/dir:NOQUOTA").is_err());
    }

    #[test]
    fn vdelivermail_instructions() {
        let v = |s| vdelivermail_default(s);
        assert_eq!(
            v("/home/vpopmail/bin/vdelivermail '' bounce-no-mailbox"),
            Ok(None)
        );
        assert_eq!(
            v("vdelivermail '' boss@x.example"),
            Ok(Some("&boss@x.example\n".into()))
        );
        assert_eq!(
            v("vdelivermail '' /home/vpopmail/domains/d/postmaster"),
            Ok(Some(
                "/home/vpopmail/domains/d/postmaster/Maildir/\n".into()
            ))
        );
        assert!(v("vdelivermail '' delete").is_err());
    }
}
