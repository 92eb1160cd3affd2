//! What `turnmail check` says about quotas: a `users/quota` that does not parse, and
//! mailboxes whose `maildirsize` header does not carry the limits `users/quota` gives
//! them (so deliveries and Dovecot enforce something else).

use std::path::Path;

use super::disk;
use super::table::{self, Source};

/// Findings as (line of users/quota if any, message).
pub fn check(
    root: &Path,
    accounts: &[(String, std::path::PathBuf)],
) -> Vec<(Option<usize>, String)> {
    let mut out = Vec::new();
    let text = match crate::fsutil::read_limited(&root.join(table::PATH), table::MAX_LEN) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
        Err(e) => {
            out.push((None, format!("cannot read: {e}")));
            return out;
        }
    };
    let t = match table::parse(&text) {
        Ok(t) => t,
        Err(e) => {
            out.push((Some(e.line), e.reason));
            return out;
        }
    };
    for (login, home) in accounts {
        let (limits, source) = t.effective(login);
        if source == Source::None {
            continue;
        }
        let md = home.join("Maildir");
        if !md.is_dir() {
            continue;
        }
        let fix = match source {
            Source::Domain => format!("run `turnmail user quota {login} default`"),
            _ => format!("run `turnmail user quota {login} {limits}`"),
        };
        match disk::peek(&md) {
            Ok(Some(u)) if u.limits == limits => {}
            Ok(Some(u)) => out.push((
                None,
                format!(
                    "{login}: quota {limits} here, but its maildirsize says {}: {fix}",
                    u.limits
                ),
            )),
            Ok(None) if limits.is_none() => {}
            Ok(None) => out.push((
                None,
                format!("{login}: quota {limits} here, but its Maildir has no readable maildirsize: {fix}"),
            )),
            Err(e) => out.push((None, format!("{login}: maildirsize: {e}"))),
        }
    }
    out
}
