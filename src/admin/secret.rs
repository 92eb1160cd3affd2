//! `turnmail user secret ADDRESS`: the APOP/CRAM-MD5 secret of a mailbox, in
//! `users/secrets`, through the edit transaction like every other edit (locked,
//! validated, atomic, mode and group from `[accounts] reader_group`).
//!
//! CRAM-MD5 needs only the HMAC-MD5 states of the secret (`engine::cram`), so that is
//! what is stored (`login:{CRAM-MD5}hex`) unless `--apop` asks for APOP too, which
//! needs the plaintext (`login:secret`). The secret comes from a prompt, stdin or is
//! generated, never from the command line; it is never printed unless generated.

use std::path::Path;

use super::edit::{Edit, Kind};
use super::error::{AdminError, Result, invalid};
use super::password::{self, NewPassword};
use super::{layout, lines, names};
use crate::engine::accounts::{Secret, parse_secrets};
use crate::engine::cram;
use crate::qmail::control::read_lines;

#[derive(Debug, clap::Args)]
pub struct SecretArgs {
    /// The mailbox (user@domain) whose secret to set, show or clear.
    address: String,
    /// Store the secret itself so that APOP works too; without this only its CRAM-MD5
    /// form (HMAC-MD5 states, which do not give the secret back) is stored.
    #[arg(long)]
    apop: bool,
    /// Read the secret from the first line of stdin.
    #[arg(long, conflicts_with = "generate")]
    stdin: bool,
    /// Generate a secret and print it.
    #[arg(long)]
    generate: bool,
    /// Say whether a secret is set and what it serves (the secret is never shown).
    #[arg(long, conflicts_with_all = ["apop", "stdin", "generate", "clear"])]
    show: bool,
    /// Remove the secret: APOP and CRAM-MD5 logins of this mailbox stop working.
    #[arg(long, conflicts_with_all = ["apop", "stdin", "generate"])]
    clear: bool,
}

pub fn run(root: &Path, a: SecretArgs) -> Result<()> {
    let (local, domain) = names::address(&a.address)?;
    let login = format!("{local}@{domain}");
    if a.show {
        println!("{login}: {}", describe(show(root, &login)?.as_ref()));
        return Ok(());
    }
    if a.clear {
        if clear(root, &login)? {
            println!("cleared the secret of {login}: APOP and CRAM-MD5 now refused");
        } else {
            println!("{login} had no secret");
        }
        return Ok(());
    }
    let src = password::source_for(a.stdin, a.generate, "--stdin", "secret")?;
    let secret = password::get_named(src, "APOP/CRAM-MD5 secret", &login)?;
    let stored = set(root, &login, &secret, a.apop)?;
    println!("set the secret of {login}: {}", describe(Some(&stored)));
    if secret.generated {
        println!("secret: {}", secret.text);
    }
    Ok(())
}

/// What a secret serves, for people.
pub fn describe(s: Option<&Secret>) -> &'static str {
    match s {
        None => "no secret (APOP and CRAM-MD5 refused)",
        Some(Secret::Plain(_)) => "APOP and CRAM-MD5 (stored in plaintext)",
        Some(Secret::CramMd5(_)) => "CRAM-MD5 only (stored as HMAC-MD5 states; --apop for APOP)",
    }
}

/// The lines of `text` holding a secret of a login `which` picks.
fn lines_where(text: &[u8], which: &dyn Fn(&[u8]) -> bool) -> Vec<usize> {
    read_lines(text)
        .iter()
        .filter(|l| {
            l.text
                .iter()
                .position(|&b| b == b':')
                .is_some_and(|c| which(&l.text[..c]))
        })
        .map(|l| l.line)
        .collect()
}

/// Set `login`'s secret; returns what was stored.
pub fn set(root: &Path, login: &str, secret: &NewPassword, apop: bool) -> Result<Secret> {
    let value = if apop {
        // A plaintext that reads as a stored CRAM-MD5 form would not be one.
        if cram::has_prefix(secret.text.as_bytes()) {
            return Err(invalid(format!(
                "a secret may not begin with {}",
                cram::PREFIX
            )));
        }
        secret.text.clone()
    } else {
        cram::Context::from_secret(secret.text.as_bytes()).stored()
    };
    let mut edit = Edit::begin(root)?;
    let (_, accounts) = layout::read_poppasswd(&edit)?;
    let Some(account) = accounts
        .iter()
        .find(|a| a.login.eq_ignore_ascii_case(login.as_bytes()))
    else {
        return Err(AdminError::NotFound(format!(
            "no account {login} in users/poppasswd"
        )));
    };
    let stored_login = String::from_utf8_lossy(&account.login).into_owned();
    let path = edit.paths().secrets.clone();
    let text = edit.read_or_empty(&path)?;
    let line = format!("{stored_login}:{value}");
    let old = lines_where(&text, &|l| l.eq_ignore_ascii_case(login.as_bytes()));
    let new = match old.split_first() {
        Some((first, rest)) => {
            lines::remove_lines(&lines::replace_line(&text, *first, line.as_bytes()), rest)
        }
        None => lines::append(&text, &line),
    };
    edit.stage(&path, new, 0o600, Kind::Secrets);
    edit.commit()?;
    Secret::parse(value.as_bytes()).ok_or_else(|| invalid("internal error: unreadable secret"))
}

/// `login`'s secret as the engine reads it.
pub fn show(root: &Path, login: &str) -> Result<Option<Secret>> {
    let edit = Edit::begin_read(root)?;
    let text = edit.read_or_empty(&edit.paths().secrets)?;
    Ok(parse_secrets(&text).remove(login.to_ascii_lowercase().as_bytes()))
}

/// Remove `login`'s secret; false when it had none.
pub fn clear(root: &Path, login: &str) -> Result<bool> {
    let mut edit = Edit::begin(root)?;
    let staged = stage_removal(&mut edit, &|l| l.eq_ignore_ascii_case(login.as_bytes()))?;
    if staged {
        edit.commit()?;
    }
    Ok(staged)
}

/// Stage the removal of the secrets of every login `gone` says is gone (with its
/// account); false when there were none.
pub fn stage_removal(edit: &mut Edit, gone: &dyn Fn(&[u8]) -> bool) -> Result<bool> {
    let path = edit.paths().secrets.clone();
    let Some(text) = edit.read(&path)? else {
        return Ok(false);
    };
    let drop = lines_where(&text, gone);
    if drop.is_empty() {
        return Ok(false);
    }
    edit.stage(
        &path,
        lines::remove_lines(&text, &drop),
        0o600,
        Kind::Secrets,
    );
    Ok(true)
}
