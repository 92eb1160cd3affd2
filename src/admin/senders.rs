//! `turnmail domain senders DOMAIN [own|any]`: which envelope senders the domain's
//! authenticated accounts may use on submission. `own` (the default) is the account's
//! own address and its aliases; `any` is any address of the domain, for offices that
//! send as `info@` or `sales@` from everyone's client. `any` is a line in
//! `control/anysender`, which the daemon rereads when it changes.

use std::path::Path;

use super::edit::{Edit, Kind};
use super::error::Result;
use super::{layout, lines, names};

/// The file, relative to the mail root.
pub const PATH: &str = "control/anysender";

#[derive(clap::Args, Debug)]
pub struct SendersArgs {
    /// The domain.
    pub domain: String,
    /// `own`: an account sends as itself and its aliases; `any`: as any address of
    /// the domain. Without it, the current setting is shown.
    #[arg(value_parser = ["own", "any"])]
    pub setting: Option<String>,
}

pub fn run(root: &Path, args: SendersArgs) -> Result<()> {
    let domain = names::domain(&args.domain)?;
    let path = root.join(PATH);
    let Some(setting) = args.setting else {
        let edit = Edit::begin_read(root)?;
        layout::need_domain(&edit, &domain)?;
        let text = edit.read_or_empty(&path)?;
        let any = !lines::control_matches(&text, &domain).is_empty();
        println!("{domain}: {}", describe(any));
        return Ok(());
    };
    let any = setting == "any";
    let mut edit = Edit::begin(root)?;
    super::aliasdomain::refuse_alias(&edit, &domain)?;
    layout::need_domain(&edit, &domain)?;
    let text = edit.read_or_empty(&path)?;
    let listed = lines::control_matches(&text, &domain);
    let new = match (any, listed.is_empty()) {
        (true, true) => lines::append(&text, &domain),
        (false, false) => lines::remove_lines(&text, &listed),
        // Already so.
        _ => {
            println!("{domain}: {}", describe(any));
            return Ok(());
        }
    };
    edit.stage(&path, new, 0o644, Kind::Control);
    edit.commit()?;
    println!("{domain}: {}", describe(any));
    Ok(())
}

fn describe(any: bool) -> &'static str {
    if any {
        "accounts may send as any address of the domain"
    } else {
        "accounts send as their own addresses and aliases"
    }
}
