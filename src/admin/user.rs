//! `turnmail user add|del|passwd|list`: POP mailboxes of a virtual domain, laid out
//! as `turnmail init` lays out its demo user: `HOME/USER/Maildir/` (0700), a
//! `.qmail-USER` file `./USER/Maildir/` (0600) in the domain home, and a poppasswd
//! line `user@domain:HASH:OWNER:HOME/USER` with a new yescrypt hash. The hash is made
//! before the edit lock is taken, so concurrent adds queue only for the file writes.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::edit::{self, Edit, Kind};
use super::error::{AdminError, Result, io_at};
use super::password::{self, NewPassword};
use super::{dotfiles, layout, lines, names, table};
use crate::engine::accounts::parse_secrets;
use crate::engine::crypt;
use crate::maildir::Maildir;

#[derive(Debug, clap::Args)]
pub struct PasswordArgs {
    /// Read the password from the first line of stdin.
    #[arg(long)]
    password_stdin: bool,
    /// Generate a password and print it.
    #[arg(long, conflicts_with = "password_stdin")]
    generate: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCmd {
    /// Add a POP mailbox: poppasswd line, Maildir, .qmail-USER.
    Add {
        /// The new mailbox and POP login, user@domain (the domain must exist).
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Remove a mailbox; its directory goes to ROOT/.deleted/DOMAIN/ unless --purge.
    Del {
        /// The mailbox, user@domain.
        address: String,
        /// Delete the mail too instead of keeping it in ROOT/.deleted/DOMAIN/.
        #[arg(long)]
        purge: bool,
    },
    /// Change a mailbox's password.
    Passwd {
        /// The mailbox, user@domain.
        address: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// List mailboxes (all, or of one domain) with their size.
    List {
        /// Only this domain's mailboxes.
        domain: Option<String>,
        /// Print the list as JSON (field names in README).
        #[arg(long)]
        json: bool,
    },
    /// Set, show or clear a mailbox's APOP/CRAM-MD5 secret (users/secrets).
    Secret(super::secret::SecretArgs),
    /// Show or set a mailbox's Maildir++ quota (users/quota and its maildirsize), or a
    /// domain's default (@DOMAIN).
    Quota(super::quota::QuotaArgs),
}

pub fn run(root: &Path, cmd: UserCmd) -> Result<()> {
    match cmd {
        UserCmd::Add { address, password } => {
            let (local, domain) = names::address(&address)?;
            let login = format!("{local}@{domain}");
            let pw = new_password(&password, &login)?;
            let home = add(root, &local, &domain, &pw)?;
            println!("added {login} (mailbox {}/Maildir)", home.display());
            if pw.generated {
                println!("password: {}", pw.text);
            }
            Ok(())
        }
        UserCmd::Del { address, purge } => del(root, &address, purge),
        UserCmd::Passwd { address, password } => {
            let (local, domain) = names::address(&address)?;
            let login = format!("{local}@{domain}");
            let pw = new_password(&password, &login)?;
            passwd(root, &login, &pw)?;
            println!("changed the password of {login}");
            if pw.generated {
                println!("password: {}", pw.text);
            }
            Ok(())
        }
        UserCmd::List { domain, json } => list(root, domain.as_deref(), json),
        UserCmd::Secret(args) => super::secret::run(root, args),
        UserCmd::Quota(args) => super::quota::run(root, args),
    }
}

fn new_password(a: &PasswordArgs, login: &str) -> Result<NewPassword> {
    let src = password::source(a.password_stdin, a.generate)?;
    password::get(src, login)
}

/// Add `local@domain` with password `pw`; returns the mailbox's home.
pub fn add(root: &Path, local: &str, domain: &str, pw: &NewPassword) -> Result<PathBuf> {
    let hash = crypt::hash_new(pw.text.as_bytes())?;
    let login = format!("{local}@{domain}");
    let mut edit = Edit::begin(root)?;
    super::aliasdomain::refuse_alias(&edit, domain)?;
    let dh = layout::need_domain(&edit, domain)?;
    super::limits::check_users(&edit, &dh)?;
    let (pw_text, accounts) = layout::read_poppasswd(&edit)?;
    if let Some(a) = accounts
        .iter()
        .find(|a| a.login.eq_ignore_ascii_case(login.as_bytes()))
    {
        return Err(AdminError::Exists(format!(
            "{login} (users/poppasswd line {})",
            a.line
        )));
    }
    let dotq = dh.home.join(names::dotqmail_name(local));
    if dotq.exists() {
        return Err(AdminError::Exists(format!(
            "{} (an alias or mailbox of that name; see `turnmail alias list {domain}`)",
            dotq.display()
        )));
    }
    let home = dh.home.join(local);
    if home.exists() {
        return Err(AdminError::Exists(format!(
            "{} (left from an earlier mailbox? move it away first)",
            home.display()
        )));
    }
    let owner = (dh.uid, dh.gid);
    let made = (|| {
        edit::make_dir(&home, 0o700, owner)?;
        Maildir::create(home.join("Maildir")).map_err(io_at(&home))?;
        edit::chown_tree(&home, owner.0, owner.1)?;
        edit::write_owned(
            &dotq,
            format!("./{local}/Maildir/\n").as_bytes(),
            0o600,
            owner,
        )
    })();
    let staged = made.and_then(|()| {
        let line = format!(
            "{login}:{hash}:{}:{}",
            layout::owner_name(dh.uid, &dh.user),
            home.display()
        );
        let p = edit.paths().poppasswd.clone();
        edit.stage(&p, lines::append(&pw_text, &line), 0o640, Kind::Poppasswd);
        edit.commit()
    });
    if let Err(e) = staged {
        // Leave nothing half made behind; the mailbox is new and empty.
        let _ = std::fs::remove_file(&dotq);
        let _ = std::fs::remove_dir_all(&home);
        return Err(e);
    }
    // A domain's default quota reaches the new mailbox's maildirsize.
    super::quota::apply_default(root, &login, &home.join("Maildir"))?;
    Ok(home)
}

pub fn passwd(root: &Path, login: &str, pw: &NewPassword) -> Result<()> {
    let hash = crypt::hash_new(pw.text.as_bytes())?;
    let mut edit = Edit::begin(root)?;
    let (text, accounts) = layout::read_poppasswd(&edit)?;
    let a = accounts
        .iter()
        .find(|a| a.login.eq_ignore_ascii_case(login.as_bytes()))
        .ok_or_else(|| AdminError::NotFound(format!("no account {login} in users/poppasswd")))?;
    let raw = text
        .split(|&b| b == b'\n')
        .nth(a.line - 1)
        .unwrap_or_default();
    // Keep every other field as written (vqpop-era lines carry more than four).
    let mut fields = raw.splitn(3, |&b| b == b':');
    let (Some(l), Some(_), Some(rest)) = (fields.next(), fields.next(), fields.next()) else {
        return Err(AdminError::BadFile {
            path: edit.paths().poppasswd.clone(),
            reason: format!("line {} is not login:hash:...", a.line),
        });
    };
    let line = [l, b":", hash.as_bytes(), b":", rest].concat();
    let p = edit.paths().poppasswd.clone();
    edit.stage(
        &p,
        lines::replace_line(&text, a.line, &line),
        0o640,
        Kind::Poppasswd,
    );
    edit.commit()?;
    Ok(())
}

pub fn del(root: &Path, address: &str, purge: bool) -> Result<()> {
    let (local, domain) = names::address(address)?;
    let login = format!("{local}@{domain}");
    let mut edit = Edit::begin(root)?;
    let (text, accounts) = layout::read_poppasswd(&edit)?;
    let found: Vec<_> = accounts
        .iter()
        .filter(|a| a.login.eq_ignore_ascii_case(login.as_bytes()))
        .collect();
    let dh = layout::find_domain(&edit, &domain)?;
    let dotq = dh
        .as_ref()
        .and_then(|d| dotfiles::read(&d.home.join(names::dotqmail_name(&local)), &local));
    if found.is_empty() && dotq.as_ref().is_none_or(|f| !f.is_mailbox()) {
        return Err(AdminError::NotFound(format!("no mailbox {login}")));
    }
    let homes: Vec<PathBuf> = found.iter().map(|a| layout::bytes_path(&a.home)).collect();
    let drop: Vec<usize> = found.iter().map(|a| a.line).collect();
    if !drop.is_empty() {
        let p = edit.paths().poppasswd.clone();
        edit.stage(
            &p,
            lines::remove_lines(&text, &drop),
            0o640,
            Kind::Poppasswd,
        );
    }
    // A secret left behind would serve whoever gets the login next.
    super::secret::stage_removal(&mut edit, &|l| l.eq_ignore_ascii_case(login.as_bytes()))?;
    // Nor its quota: a new mailbox of that name starts from the domain's default.
    super::quota::stage_removal(&mut edit, &login)?;
    let root_c = edit.root().canonicalize().map_err(io_at(root))?;
    // The .qmail file goes first, so new mail is refused rather than delivered into
    // a mailbox that is about to move.
    if let Some(f) = dotq.filter(|f| f.is_mailbox()) {
        std::fs::remove_file(&f.path).map_err(io_at(&f.path))?;
    }
    edit.commit()?;
    println!("removed {login}");
    if let Some(d) = &dh
        && let Some(f) = dotfiles::read(&d.home.join(".qmail-default"), "default")
        && f.summary().contains(&format!("./{local}/Maildir/"))
    {
        println!(
            "note: {login} was the catch-all of {domain}; set another with \
             `turnmail domain policy {domain} bounce|catchall:USER|forward:ADDR`"
        );
    }
    for home in homes {
        if !home.exists() {
            continue;
        }
        if purge {
            layout::purge_tree(&home)?;
            println!("purged {}", home.display());
        } else {
            let to = layout::move_to_deleted(&root_c, &domain, &local, &home)?;
            println!("mailbox kept in {}", to.display());
        }
    }
    Ok(())
}

#[derive(Debug, serde::Serialize)]
pub struct UserRow {
    pub login: String,
    pub messages: u64,
    pub bytes: u64,
    pub home: String,
    /// `apop`, `cram-md5` or null: what `user secret` set (`unknown` when the
    /// secrets file cannot be read by whoever lists).
    pub secret: Option<&'static str>,
    /// Limits (users/quota), where they come from, usage from maildirsize.
    pub quota: super::quota::Shown,
}

pub fn rows(root: &Path, domain: Option<&str>) -> Result<Vec<UserRow>> {
    let domain = domain.map(names::domain).transpose()?;
    let edit = super::domain::ReadOnly::new(root)?;
    let (_, accounts) = layout::read_poppasswd(&edit.0)?;
    // Only the mail user (and a reader group) may read the secrets; a listing run by
    // someone else still lists, saying it could not tell.
    let secrets = edit
        .0
        .read(&edit.0.paths().secrets)
        .ok()
        .map(|text| parse_secrets(&text.unwrap_or_default()));
    drop(edit);
    let quotas = super::quota::table_for_listing(root)?;
    let suffix = domain.map(|d| format!("@{d}"));
    let mut out: Vec<UserRow> = accounts
        .iter()
        .filter(|a| {
            suffix
                .as_ref()
                .is_none_or(|s| a.login.to_ascii_lowercase().ends_with(s.as_bytes()))
        })
        .map(|a| {
            let home = layout::bytes_path(&a.home);
            let (messages, bytes) = layout::maildir_usage(&home.join("Maildir"));
            let login = String::from_utf8_lossy(&a.login).into_owned();
            UserRow {
                quota: super::quota::shown(&quotas, &login, &home.join("Maildir")),
                login,
                messages,
                bytes,
                home: home.display().to_string(),
                secret: match &secrets {
                    Some(m) => m.get(&a.login.to_ascii_lowercase()).map(|s| s.kind()),
                    None => Some("unknown"),
                },
            }
        })
        .collect();
    out.sort_by(|a, b| a.login.cmp(&b.login));
    Ok(out)
}

fn list(root: &Path, domain: Option<&str>, json: bool) -> Result<()> {
    let rows = rows(root, domain)?;
    if json {
        table::print_json(&json!(rows));
        return Ok(());
    }
    let mut t = table::Table::new(&["LOGIN", "MESSAGES#", "SIZE#", "QUOTA", "SECRET", "HOME"]);
    for r in &rows {
        let q = &r.quota;
        let quota = match (q.limits.is_none(), q.usage) {
            (true, _) => "-".to_string(),
            (false, Some(u)) => format!("{} ({}%)", q.limits, u.percent()),
            (false, None) => q.limits.to_string(),
        };
        t.row(vec![
            r.login.clone(),
            r.messages.to_string(),
            table::human_bytes(r.bytes),
            quota,
            r.secret.unwrap_or("-").to_string(),
            r.home.clone(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}
