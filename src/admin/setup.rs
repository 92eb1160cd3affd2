//! `turnmail setup DIR`: an empty production mail root, usable by every other command
//! at once: no domains, no users, no sites; the host's own name in `control/me`; the
//! production settings of `deploy/turnmail.toml.example`, with the listeners and the
//! certificate given on the command line. It refuses a directory that holds any file
//! of a mail root (an operator's turnmail.toml included) unless told to write over it.
//! With `--config PATH` the root's turnmail.toml is a link to a settings file kept
//! elsewhere (the Debian package's conffile, /etc/turnmail/turnmail.toml), so that the
//! package manager, not the root, looks after the operator's edits.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::init::{InitError, io_at, refuse_existing, write};
use super::mailuser::MailUser;
use crate::config::Config;

/// The documented production settings, the template of a new root's turnmail.toml.
pub const EXAMPLE: &str = include_str!("../../deploy/turnmail.toml.example");

/// Listeners given on the command line; an empty list keeps the example's.
#[derive(Debug, Clone, Default)]
pub struct Listeners {
    pub smtp: Vec<SocketAddr>,
    pub pop3: Vec<SocketAddr>,
    pub pop3s: Vec<SocketAddr>,
    pub odmr: Vec<SocketAddr>,
    pub submission: Vec<SocketAddr>,
    pub submissions: Vec<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct SetupOptions {
    /// The host's name (control/me, greetings, bounces).
    pub hostname: String,
    pub mail_user: MailUser,
    pub listeners: Listeners,
    /// PEM certificate chain and key (e.g. certbot's fullchain.pem and privkey.pem).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Write over a mail root's files already there.
    pub force: bool,
    /// An existing turnmail.toml (absolute path) that ROOT/turnmail.toml links to,
    /// instead of a file of its own; its listeners and [tls] are used as they are.
    pub config: Option<PathBuf>,
}

/// What was made, for the operator.
#[derive(Debug)]
pub struct SetupReport {
    pub root: PathBuf,
    pub config: Config,
    /// POP3S was asked for (by the example) but no certificate was given: its
    /// listeners are left out of turnmail.toml.
    pub pop3s_left_out: bool,
}

fn list(addrs: &[SocketAddr]) -> String {
    let quoted: Vec<String> = addrs.iter().map(|a| format!("\"{a}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// The example with this host's settings in. Line edits on the known lines of the
/// example; the result is parsed back and checked, so a changed example cannot
/// silently produce other settings.
pub fn production_config(o: &SetupOptions) -> Result<(String, bool), String> {
    // The header of the example speaks of the file as an example: say what this is.
    let header = format!(
        "# turnmail.toml of the mail root made by `turnmail setup` for {}.",
        o.hostname
    );
    settings(&o.mail_user.name, &o.listeners, o.tls.as_ref(), &header)
}

/// The production settings with no host in them, for a package to ship as a
/// configuration file: the example's listeners, mail user `user`, POP3S left out until
/// a certificate is set. `header` (comment lines) goes first.
pub fn packaged_config(user: &str, header: &str) -> Result<String, String> {
    settings(user, &Listeners::default(), None, header).map(|(text, _)| text)
}

fn settings(
    user: &str,
    l: &Listeners,
    tls: Option<&(PathBuf, PathBuf)>,
    header: &str,
) -> Result<(String, bool), String> {
    let mut section = String::new();
    let mut out = String::new();
    let mut pop3s_left_out = false;
    for line in EXAMPLE.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            section = t
                .split(']')
                .next()
                .unwrap_or("")
                .trim_start_matches('[')
                .to_string();
        }
        let key = t.split('=').next().unwrap_or("").trim();
        let replaced = match (section.as_str(), key) {
            ("", "user") if t.starts_with("user") => Some(format!("user = \"{user}\"")),
            ("smtp", "listen") if !l.smtp.is_empty() => Some(format!("listen = {}", list(&l.smtp))),
            ("pop3", "listen") if !l.pop3.is_empty() => Some(format!("listen = {}", list(&l.pop3))),
            ("odmr", "listen") if !l.odmr.is_empty() => Some(format!("listen = {}", list(&l.odmr))),
            ("pop3", "listen_tls") if tls.is_none() && l.pop3s.is_empty() => {
                pop3s_left_out = true;
                Some(format!(
                    "# {t}\n# (POP3S needs a certificate: [tls] below, or tls/cert.pem and tls/key.pem\n# in the root, `turnmail tls selfsigned` for testing; then uncomment this)"
                ))
            }
            ("submission", "listen") if !l.submission.is_empty() => {
                Some(format!("listen = {}", list(&l.submission)))
            }
            // Asked for by address: the certificate may be in the root's tls/.
            ("submissions", "listen") if !l.submissions.is_empty() => {
                Some(format!("listen = {}", list(&l.submissions)))
            }
            ("submissions", "listen") if tls.is_none() => Some(format!(
                "# {t}\n# (port 465 needs a certificate, as POP3S does; then uncomment this)"
            )),
            ("pop3", "listen_tls") if !l.pop3s.is_empty() => {
                Some(format!("listen_tls = {}", list(&l.pop3s)))
            }
            _ => None,
        };
        match replaced {
            Some(r) => out.push_str(&r),
            None => out.push_str(line),
        }
        out.push('\n');
        if section == "tls"
            && t.starts_with("[tls]")
            && let Some((cert, key)) = tls
        {
            out.push_str(&format!(
                "cert = \"{}\"\nkey = \"{}\"\n",
                cert.display(),
                key.display()
            ));
        }
    }
    let text = format!("{}\n{out}", header.trim_end());
    let c = Config::parse(&text).map_err(|e| format!("the settings made: {e}"))?;
    let check = |got: &[SocketAddr], want: &[SocketAddr], what: &str| {
        if !want.is_empty() && got != want {
            return Err(format!(
                "the settings made do not have the {what} listeners asked for"
            ));
        }
        Ok(())
    };
    check(&c.smtp.listen, &l.smtp, "SMTP")?;
    check(&c.pop3.listen, &l.pop3, "POP3")?;
    check(&c.pop3.listen_tls, &l.pop3s, "POP3S")?;
    check(&c.odmr.listen, &l.odmr, "ODMR")?;
    check(&c.submission.listen, &l.submission, "submission")?;
    check(&c.submissions.listen, &l.submissions, "submissions")?;
    if c.user != user || (tls.is_some() && c.tls.cert.is_none()) {
        return Err("the settings made are not the ones asked for".into());
    }
    if tls.is_none() && l.submissions.is_empty() && !c.submissions.listen.is_empty() {
        return Err("the settings made listen on port 465 without a certificate".into());
    }
    if tls.is_none() && l.pop3s.is_empty() && !c.pop3.listen_tls.is_empty() {
        return Err("the settings made listen for POP3S without a certificate".into());
    }
    Ok((text, pop3s_left_out))
}

/// Make the empty production root.
pub fn setup(root: &Path, o: &SetupOptions) -> Result<SetupReport, InitError> {
    refuse_existing(root, o.force)?;
    // The settings are settled before anything is made: a bad --config makes nothing.
    let linked = match &o.config {
        Some(path) => Some(linked_config(path, o)?),
        None => None,
    };
    if o.config.is_none() && o.pop3s_without_tls() {
        return Err(InitError::Io {
            path: root.to_path_buf(),
            source: std::io::Error::other(
                "POP3S listeners need a certificate: give --cert and --key too",
            ),
        });
    }
    let (text, pop3s_left_out) = match &linked {
        Some(_) => (String::new(), false),
        None => production_config(o).map_err(|e| InitError::Io {
            path: root.join("turnmail.toml"),
            source: std::io::Error::other(e),
        })?,
    };
    let root = super::init::make_root_dirs(root)?;
    let r = |p: &str| root.join(p);
    write(&r("control/me"), &format!("{}\n", o.hostname), 0o644)?;
    // Nothing is accepted until a domain is added: an empty rcpthosts refuses all.
    for f in ["rcpthosts", "virtualdomains", "locals"] {
        write(&r("control").join(f), "", 0o644)?;
    }
    write(&r("users/assign"), ".\n", 0o644)?;
    write(&r("users/poppasswd"), "", 0o640)?;
    crate::qmail::users_cdb::compile(b".\n", &r("users/cdb")).map_err(|e| InitError::Io {
        path: r("users/assign"),
        source: std::io::Error::other(e.to_string()),
    })?;
    crate::engine::accounts::compile(b"", &r("users/poppasswd.cdb")).map_err(|e| {
        InitError::Io {
            path: r("users/poppasswd"),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    let toml_path = r("turnmail.toml");
    let config = match (linked, &o.config) {
        (Some(config), Some(target)) => {
            // Only under --force can a file be there; the link replaces it.
            if toml_path.symlink_metadata().is_ok() {
                std::fs::remove_file(&toml_path).map_err(io_at(&toml_path))?;
            }
            std::os::unix::fs::symlink(target, &toml_path).map_err(io_at(&toml_path))?;
            config
        }
        _ => {
            write(&toml_path, &text, 0o644)?;
            Config::parse(&text).map_err(|e| InitError::Io {
                path: toml_path.clone(),
                source: std::io::Error::other(e.to_string()),
            })?
        }
    };
    // lchown: a linked settings file keeps its owner (root, for a package's conffile).
    if nix::unistd::Uid::effective().is_root() {
        super::init::chown_tree(&root, &o.mail_user)?;
    }
    Ok(SetupReport {
        root,
        config,
        pop3s_left_out,
    })
}

/// The settings file `--config` names: absolute (the link in the root points to it as
/// given), valid, and naming the mail user the root is made for, since the daemon
/// switches to that user and the tree is chowned to this one. Listeners and a
/// certificate come from the file, so none may be given besides.
fn linked_config(path: &Path, o: &SetupOptions) -> Result<Config, InitError> {
    let refuse = |m: String| InitError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(m),
    };
    let l = &o.listeners;
    if o.tls.is_some()
        || !(l.smtp.is_empty() && l.pop3.is_empty() && l.pop3s.is_empty() && l.odmr.is_empty())
    {
        return Err(refuse(
            "listeners and a certificate are set in this file, not besides it".into(),
        ));
    }
    if !path.is_absolute() {
        return Err(refuse(
            "the settings file must be given by an absolute path (the root links to it)".into(),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(io_at(path))?;
    let c = Config::parse(&text).map_err(|e| refuse(e.to_string()))?;
    if c.user != o.mail_user.name {
        return Err(refuse(format!(
            "it names user = \"{}\", not {}, the mail user of this root",
            c.user, o.mail_user.name
        )));
    }
    Ok(c)
}

impl SetupOptions {
    fn pop3s_without_tls(&self) -> bool {
        !self.listeners.pop3s.is_empty() && self.tls.is_none()
    }
}

/// The host's own name: the system's, fully qualified where the resolver knows it.
pub fn system_hostname() -> String {
    let short = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    if short.contains('.') {
        return short;
    }
    // /etc/hosts usually names the FQDN first on the host's own line.
    std::fs::read_to_string("/etc/hosts")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                let words: Vec<&str> = l.split('#').next()?.split_whitespace().collect();
                (words.len() > 1 && words[1..].contains(&short.as_str()))
                    .then(|| {
                        words[1..]
                            .iter()
                            .find(|w| w.contains('.'))
                            .map(|w| w.to_string())
                    })
                    .flatten()
            })
        })
        .unwrap_or(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> SetupOptions {
        SetupOptions {
            hostname: "mx.example.net".into(),
            mail_user: MailUser::current().unwrap_or(MailUser {
                name: "turnmail".into(),
                uid: 1000,
                gid: 1000,
            }),
            listeners: Listeners::default(),
            tls: None,
            force: false,
            config: None,
        }
    }

    #[test]
    fn the_example_becomes_this_hosts_settings() {
        let (text, left_out) = production_config(&opts()).unwrap();
        let c = Config::parse(&text).unwrap();
        assert!(left_out && c.pop3.listen_tls.is_empty());
        assert_eq!(c.smtp.listen.len(), 2);
        assert_eq!(c.smtp.listen[0].port(), 25);
        let mut o = opts();
        o.listeners.smtp = vec!["192.0.2.1:25".parse().unwrap()];
        o.listeners.odmr = vec!["127.0.0.1:1366".parse().unwrap()];
        o.tls = Some((
            "/etc/letsencrypt/live/mx/fullchain.pem".into(),
            "/etc/letsencrypt/live/mx/privkey.pem".into(),
        ));
        let (text, left_out) = production_config(&o).unwrap();
        let c = Config::parse(&text).unwrap();
        assert!(!left_out);
        assert_eq!(c.smtp.listen, o.listeners.smtp);
        assert_eq!(c.odmr.listen, o.listeners.odmr);
        assert_eq!(c.pop3.listen_tls.len(), 2);
        assert_eq!(
            c.tls.cert.as_deref(),
            Some(Path::new("/etc/letsencrypt/live/mx/fullchain.pem"))
        );
    }

    #[test]
    fn an_empty_root_is_made_and_a_second_run_refuses() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("r");
        let rep = setup(&root, &opts()).unwrap();
        assert_eq!(
            std::fs::read_to_string(root.join("control/me")).unwrap(),
            "mx.example.net\n"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("control/rcpthosts")).unwrap(),
            ""
        );
        assert!(root.join("users/cdb").is_file() && root.join("users/poppasswd.cdb").is_file());
        assert!(rep.pop3s_left_out);
        let e = setup(&root, &opts()).unwrap_err().to_string();
        assert!(e.contains("turnmail.toml") && e.contains("control/"), "{e}");
        // An operator's own turnmail.toml alone is enough to refuse, and stays as it was.
        let other = d.path().join("o");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("turnmail.toml"), "user = \"mine\"\n").unwrap();
        let e = setup(&other, &opts()).unwrap_err().to_string();
        assert!(e.contains("turnmail.toml") && e.contains("--force"), "{e}");
        assert_eq!(
            std::fs::read_to_string(other.join("turnmail.toml")).unwrap(),
            "user = \"mine\"\n"
        );
        let mut o = opts();
        o.force = true;
        setup(&other, &o).unwrap();
        assert!(other.join("control/me").is_file());
    }

    #[test]
    fn a_root_can_link_to_settings_kept_elsewhere() {
        let d = tempfile::tempdir().unwrap();
        let etc = d.path().join("turnmail.toml");
        let mut o = opts();
        let text = packaged_config(&o.mail_user.name, "# shipped by a package").unwrap();
        assert!(text.starts_with("# shipped by a package\n"));
        std::fs::write(&etc, &text).unwrap();
        o.config = Some(etc.clone());
        let root = d.path().join("r");
        let rep = setup(&root, &o).unwrap();
        assert_eq!(std::fs::read_link(root.join("turnmail.toml")).unwrap(), etc);
        let c = Config::load(&root).unwrap();
        assert_eq!(c.smtp.listen, rep.config.smtp.listen);
        assert_eq!(c.smtp.listen[0].port(), 25);
        assert!(c.pop3.listen_tls.is_empty() && !rep.pop3s_left_out);
        assert!(root.join("users/cdb").is_file());

        // Refused, and nothing made: a relative path, another user, a broken file,
        // listeners given besides the file.
        let other_user = d.path().join("other.toml");
        std::fs::write(&other_user, "user = \"someone-else\"\n").unwrap();
        let broken = d.path().join("broken.toml");
        std::fs::write(&broken, "user = 5\n").unwrap();
        let mut with_listener = o.clone();
        with_listener.listeners.smtp = vec!["127.0.0.1:2525".parse().unwrap()];
        for (bad, want) in [
            (
                SetupOptions {
                    config: Some("turnmail.toml".into()),
                    ..o.clone()
                },
                "absolute path",
            ),
            (
                SetupOptions {
                    config: Some(other_user),
                    ..o.clone()
                },
                "someone-else",
            ),
            (
                SetupOptions {
                    config: Some(broken),
                    ..o.clone()
                },
                "broken.toml",
            ),
            (with_listener, "not besides it"),
        ] {
            let fresh = d.path().join("fresh");
            let e = setup(&fresh, &bad).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
            assert!(!fresh.exists());
        }
    }
}
