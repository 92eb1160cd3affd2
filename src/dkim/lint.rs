//! What `turnmail check` says about the key store: modes that let others read a
//! private key, files the daemon cannot read, a missing or unusable active key,
//! retired selectors past their time, keys of domains no longer hosted here.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::keys::{self, DIR_MODE, KEY_MODE};
use super::state;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub message: String,
}

struct Out(Vec<Problem>);

impl Out {
    fn add(&mut self, file: &Path, line: Option<usize>, message: impl Into<String>) {
        self.0.push(Problem {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        });
    }
}

/// Lint `ROOT/dkim/`. `hosted` tells whether a domain is one of ours; `now` is the
/// time retired selectors are judged against.
pub fn lint(root: &Path, hosted: &dyn Fn(&str) -> bool, now: u64) -> Vec<Problem> {
    let mut out = Out(Vec::new());
    let store = keys::store_dir(root);
    let Ok(meta) = std::fs::symlink_metadata(&store) else {
        return out.0;
    };
    if !meta.is_dir() {
        out.add(&store, None, "not a directory: no DKIM key can be kept");
        return out.0;
    }
    loose_mode(&store, &meta, DIR_MODE, &mut out);
    let entries = match std::fs::read_dir(&store) {
        Ok(e) => e,
        Err(e) => {
            out.add(&store, None, format!("unreadable: {e}"));
            return out.0;
        }
    };
    let mut names: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    names.sort();
    for dir in names {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if name.starts_with('.') {
            continue; // temporary files of an edit
        }
        domain_dir(root, &dir, &name, hosted, now, &mut out);
    }
    out.0
}

fn domain_dir(
    root: &Path,
    dir: &Path,
    name: &str,
    hosted: &dyn Fn(&str) -> bool,
    now: u64,
    out: &mut Out,
) {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() || !super::from::is_dns_name(name) || name != name.to_ascii_lowercase() {
        out.add(
            dir,
            None,
            "not a domain's key directory: nothing signs with it",
        );
        return;
    }
    loose_mode(dir, &meta, DIR_MODE, out);
    if !hosted(name) {
        out.add(
            dir,
            None,
            format!(
                "{name} is not hosted here (not in control/virtualdomains or locals): \
                 remove its keys with `turnmail domain dkim {name} --remove`"
            ),
        );
    }
    let state_path = keys::state_path(root, name);
    let text = match crate::fsutil::read_limited(&state_path, state::MAX_STATE as u64) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            out.add(
                &state_path,
                None,
                format!("missing: mail from {name} is not signed (`turnmail domain dkim {name}`)"),
            );
            return;
        }
        Err(e) => {
            out.add(&state_path, None, format!("unreadable: {e}"));
            return;
        }
    };
    let st = match state::parse(&text) {
        Ok(s) => s,
        Err(e) => {
            out.add(
                &state_path,
                (e.line > 0).then_some(e.line),
                format!("unusable, nothing is signed: {}", e.reason),
            );
            return;
        }
    };
    match &st.active {
        None => out.add(
            &state_path,
            None,
            format!("no active selector: mail from {name} is not signed"),
        ),
        Some(sel) => key_file(root, name, sel, "the active key", meta.uid(), out),
    }
    for r in &st.retired {
        key_file(root, name, &r.selector, "a retired key", meta.uid(), out);
        if r.until <= now {
            out.add(
                &state_path,
                None,
                format!(
                    "retired selector {} expired {}: remove its TXT record and run \
                     `turnmail domain dkim {name}` to drop it",
                    r.selector,
                    crate::datetime::rfc5322(r.until)
                ),
            );
        }
    }
    // Key files no selector names (left by hand).
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut stray: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|n| n.strip_suffix(".pem").map(str::to_string))
            .filter(|s| state::selector(s).is_ok() && !st.contains(s))
            .collect();
        stray.sort();
        for s in stray {
            let p = keys::key_path(root, name, &s);
            if let Ok(m) = std::fs::symlink_metadata(&p) {
                loose_mode(&p, &m, KEY_MODE, out);
            }
        }
    }
}

fn key_file(root: &Path, domain: &str, selector: &str, what: &str, dir_uid: u32, out: &mut Out) {
    let path = keys::key_path(root, domain, selector);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) => {
            out.add(&path, None, format!("{what} of {domain} ({selector}): {e}"));
            return;
        }
    };
    loose_mode(&path, &meta, KEY_MODE, out);
    if meta.uid() != dir_uid {
        out.add(
            &path,
            None,
            format!(
                "owned by uid {} while its directory belongs to uid {dir_uid}: the daemon \
                 may not be able to read it",
                meta.uid()
            ),
        );
    }
    if let Err(e) = keys::read_key(&path, domain) {
        out.add(&path, None, format!("{what} cannot be used: {e}"));
    }
}

/// Group or other bits on a private key or its directory.
fn loose_mode(path: &Path, meta: &std::fs::Metadata, want: u32, out: &mut Out) {
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        out.add(
            path,
            None,
            format!("mode {mode:04o}: others can read private keys (chmod {want:04o})"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dkim::keys::{Algorithm, generate};

    fn setup() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        let dir = keys::domain_dir(d.path(), "example.net");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(keys::store_dir(d.path()), PermissionsExt::from_mode(0o700))
            .unwrap();
        std::fs::set_permissions(&dir, PermissionsExt::from_mode(0o700)).unwrap();
        let key = keys::key_path(d.path(), "example.net", "one");
        std::fs::write(&key, generate(Algorithm::Ed25519).unwrap()).unwrap();
        std::fs::set_permissions(&key, PermissionsExt::from_mode(0o600)).unwrap();
        std::fs::write(
            keys::state_path(d.path(), "example.net"),
            b"active one\nretired old 100\n",
        )
        .unwrap();
        d
    }

    fn messages(d: &Path) -> Vec<String> {
        lint(d, &|n| n == "example.net", 1000)
            .into_iter()
            .map(|p| format!("{}: {}", p.file.display(), p.message))
            .collect()
    }

    #[test]
    fn findings() {
        let d = setup();
        let m = messages(d.path());
        // The retired key file is missing and its time is over.
        assert_eq!(m.len(), 2, "{m:#?}");
        assert!(
            m.iter()
                .any(|l| l.contains("old.pem") && l.contains("retired key"))
        );
        assert!(m.iter().any(|l| l.contains("expired")));
        std::fs::write(keys::state_path(d.path(), "example.net"), b"active one\n").unwrap();
        assert!(messages(d.path()).is_empty());
        let key = keys::key_path(d.path(), "example.net", "one");
        std::fs::set_permissions(&key, PermissionsExt::from_mode(0o644)).unwrap();
        assert!(messages(d.path())[0].contains("mode 0644"));
        std::fs::write(&key, b"junk").unwrap();
        std::fs::set_permissions(&key, PermissionsExt::from_mode(0o600)).unwrap();
        assert!(messages(d.path())[0].contains("cannot be used"));
        std::fs::write(keys::state_path(d.path(), "example.net"), b"# none\n").unwrap();
        assert!(messages(d.path())[0].contains("no active selector"));
        std::fs::write(keys::state_path(d.path(), "example.net"), b"x y\n").unwrap();
        let p = lint(d.path(), &|_| true, 0);
        assert_eq!(p[0].line, Some(1), "{p:?}");
        let other = keys::domain_dir(d.path(), "gone.example");
        std::fs::create_dir(&other).unwrap();
        std::fs::set_permissions(&other, PermissionsExt::from_mode(0o700)).unwrap();
        assert!(messages(d.path()).iter().any(|l| l.contains("not hosted")));
    }
}
