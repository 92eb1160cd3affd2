//! `turnmail import poppasswd FILE`: the password files of the qmail POP recipes.
//! checkpoppasswd's `login:hash:owner:home` lines (single-UID hosts; extra fields of
//! vqpop-era files kept) are merged as they are; vqpop's per-domain `user:hash` lines
//! (vqpop's, with `--domain D`) get the home that this root's tables give the address
//! `user@D`. Hashes are never touched: any crypt(3) format keeps working. Lines whose
//! account could not log in (no hash, unknown or root owner, a login that could smuggle
//! bytes) or that clash with an existing account are reported, not imported.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Report;
use crate::admin::edit::{Edit, Kind};
use crate::admin::error::{Result, io_at};
use crate::admin::progress::Progress;
use crate::admin::{layout, names};
use crate::engine::accounts;
use crate::qmail::control::read_lines;

/// One account ready to be appended.
pub struct Mapped {
    pub login: String,
    pub line: Vec<u8>,
    pub home: PathBuf,
}

/// Check an account the way the engine will use it; Err is the reason it cannot work.
pub fn check_account(
    login: &[u8],
    hash: &[u8],
    owner: &[u8],
    home: &Path,
) -> std::result::Result<(), String> {
    if !accounts::login_is_sane(login) {
        return Err("login contains blanks, control bytes, '/', ':' or '..'".into());
    }
    if hash.is_empty() {
        return Err("empty password hash: the account could never log in".into());
    }
    match accounts::resolve_owner(owner) {
        Ok(Some(o)) if o.uid == 0 => {
            Err("owner is root: turnmail never serves mail as root".into())
        }
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!(
            "owner {:?} is not a user on this machine",
            String::from_utf8_lossy(owner)
        )),
        Err(e) => Err(format!("owner: {e}")),
    }?;
    if !home.is_absolute() {
        return Err("home is not an absolute path".into());
    }
    Ok(())
}

/// A note when the Maildir the POP server will open is not there.
pub fn maildir_note(home: &Path) -> Option<String> {
    if home.join("Maildir/new").is_dir() {
        None
    } else if home.join("new").is_dir() && home.join("cur").is_dir() {
        Some(format!(
            "{} is itself a Maildir; turnmail serves HOME/Maildir (make HOME its parent \
             and rename, or symlink HOME/Maildir to it)",
            home.display()
        ))
    } else {
        Some(format!("no Maildir at {}/Maildir yet", home.display()))
    }
}

pub fn run(root: &Path, file: &Path, domain: Option<&str>, dry_run: bool) -> Result<Report> {
    let mut report = Report::new(&format!("poppasswd {}", file.display()), dry_run);
    let text = crate::fsutil::read_limited(file, 1 << 30).map_err(io_at(file))?;
    let domain = domain.map(names::domain).transpose()?;
    let engine = match &domain {
        Some(_) => Some(open_engine(root)?),
        None => None,
    };
    let mut edit = Edit::begin(root)?;
    let (pw_text, existing) = layout::read_poppasswd(&edit)?;
    let mut known: HashMap<Vec<u8>, (usize, Vec<u8>)> = existing
        .iter()
        .map(|a| (a.login.to_ascii_lowercase(), (a.line, a.hash.clone())))
        .collect();
    let lines = read_lines(&text);
    report.found(format!("{} account line(s)", lines.len()));
    let mut progress = Progress::new("import poppasswd", lines.len() as u64);
    let mut mapped: Vec<Mapped> = Vec::new();
    let mut same = 0;
    for l in &lines {
        progress.inc(1);
        let at = |why: String| format!("{}:{}: {why}", file.display(), l.line);
        let fields: Vec<&[u8]> = l.text.split(|&b| b == b':').collect();
        let m = if fields.len() >= 4 && fields[3].trim_ascii().starts_with(b"/") {
            let home = layout::bytes_path(fields[3].trim_ascii());
            Mapped {
                login: String::from_utf8_lossy(fields[0]).into_owned(),
                line: l.text.clone(),
                home,
            }
        } else if (2..=3).contains(&fields.len()) {
            let (Some(d), Some(engine)) = (&domain, &engine) else {
                report.unmapped(at("user:hash line: give --domain to say whose it is".into()));
                continue;
            };
            match vqpop_line(engine, fields[0], fields[1], d) {
                Ok(m) => m,
                Err(why) => {
                    report.unmapped(at(why));
                    continue;
                }
            }
        } else {
            report.unmapped(at("neither login:hash:owner:/home nor user:hash".into()));
            continue;
        };
        let parsed = accounts::parse_poppasswd(&[&m.line[..], b"\n"].concat());
        let Ok(Some(a)) = parsed.map(|v| v.into_iter().next()) else {
            report.unmapped(at("does not parse as a poppasswd line".into()));
            continue;
        };
        if let Err(why) = check_account(&a.login, &a.hash, &a.owner, &m.home) {
            report.unmapped(at(why));
            continue;
        }
        let key = a.login.to_ascii_lowercase();
        if let Some((line, hash)) = known.get(&key) {
            if *hash == a.hash {
                same += 1;
            } else {
                report.unmapped(at(format!(
                    "{} already has an account here (users/poppasswd line {line}) with another hash",
                    m.login
                )));
            }
            continue;
        }
        if let Some(n) = maildir_note(&m.home) {
            report.warn(format!("{}: {n}", m.login));
        }
        known.insert(key, (0, a.hash.clone()));
        mapped.push(m);
    }
    progress.finish();
    if same > 0 {
        report.found(format!(
            "{same} account(s) already present with the same hash"
        ));
    }
    report.mapped(format!("{} account(s) into users/poppasswd", mapped.len()));
    if !dry_run && !mapped.is_empty() {
        let mut out = pw_text;
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        for m in &mapped {
            out.extend_from_slice(&m.line);
            out.push(b'\n');
        }
        let p = edit.paths().poppasswd.clone();
        edit.stage(&p, out, 0o640, Kind::Poppasswd);
        edit.commit()?;
    }
    Ok(report)
}

fn open_engine(root: &Path) -> Result<crate::engine::Engine> {
    let config = crate::config::Config::load(root)?;
    crate::engine::Engine::open(root, config)
        .map(|(e, _)| e)
        .map_err(|e| crate::admin::error::AdminError::BadFile {
            path: root.join("users"),
            reason: e.to_string(),
        })
}

/// A vqpop `user:hash` line of domain `d`: the home is where this root delivers mail
/// for `user@d`; the owner is whoever owns that home.
fn vqpop_line(
    engine: &crate::engine::Engine,
    user: &[u8],
    hash: &[u8],
    d: &str,
) -> std::result::Result<Mapped, String> {
    let user = String::from_utf8_lossy(user);
    let user = names::local(&user, "user").map_err(|e| e.to_string())?;
    let login = format!("{user}@{d}");
    let t = match engine.resolve(login.as_bytes(), false) {
        Ok(crate::engine::Resolution::Local(t)) => t,
        Ok(other) => {
            return Err(format!(
                "{login} does not resolve to a mailbox here: {other:?}"
            ));
        }
        Err(e) => return Err(format!("{login}: {e}")),
    };
    // The account's home is the directory holding the Maildir that mail goes to.
    let Some(maildir) = t
        .instructions
        .instructions
        .iter()
        .find_map(|(_, i)| match i {
            crate::qmail::dotqmail::Instruction::Maildir(p) => {
                Some(t.home.join(layout::bytes_path(p)))
            }
            _ => None,
        })
    else {
        return Err(format!("{login} is not delivered into a Maildir here"));
    };
    let home = match maildir.components().next_back() {
        Some(c) if c.as_os_str() == "Maildir" => maildir.parent().map(Path::to_path_buf),
        _ => None,
    }
    .ok_or_else(|| format!("{login}: mailbox {} is not HOME/Maildir", maildir.display()))?;
    let owner = std::fs::metadata(&home)
        .map(|m| layout::owner_name(m.uid(), &m.uid().to_string()))
        .map_err(|e| format!("{}: {e}", home.display()))?;
    let line = [
        login.as_bytes(),
        b":",
        hash,
        b":",
        owner.as_bytes(),
        b":",
        home.as_os_str().as_encoded_bytes(),
    ]
    .concat();
    Ok(Mapped { login, line, home })
}
