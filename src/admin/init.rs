//! `turnmail init DIR`: a complete, working mail root in one step, in the same layout
//! an existing qmail host uses, so that everything later commands and the daemon do can
//! be tried at once: one virtual domain with one POP user, one customer site.

use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::mailuser::MailUser;
use crate::engine::accounts;
use crate::engine::crypt;
use crate::fsutil::write_atomic;
use crate::maildir::Maildir;

/// What `init` needs to know; defaults make the demo root.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub hostname: String,
    pub domain: String,
    pub user: String,
    pub site: String,
    pub site_domain: String,
    pub site_relayhost: String,
    pub mail_user: MailUser,
    /// Write over files of a mail root already in the directory (they are named in
    /// the refusal otherwise).
    pub force: bool,
}

/// What `init` made, for the message printed to the operator.
#[derive(Debug)]
pub struct InitReport {
    pub root: PathBuf,
    pub login: String,
    pub password: String,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(
        "{} already holds files of a mail root ({}); refusing to touch it (--force writes over them)",
        .0.display(),
        .1.join(", ")
    )]
    Exists(PathBuf, Vec<&'static str>),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("hashing the demo password: {0}")]
    Crypt(#[from] crypt::CryptError),
}

pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> InitError + '_ {
    move |source| InitError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn mkdir(path: &Path, mode: u32) -> Result<(), InitError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(io_at(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_at(path))
}

pub(super) fn write(path: &Path, text: &str, mode: u32) -> Result<(), InitError> {
    write_atomic(path, text.as_bytes(), mode).map_err(io_at(path))
}

/// A random password of 16 characters without look-alikes (0/O, 1/l/I).
pub fn generate_password() -> io::Result<String> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut raw = [0u8; 64];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut raw)?;
    // Rejection sampling keeps the distribution uniform.
    let limit = 256 - 256 % ALPHABET.len();
    let pw: String = raw
        .iter()
        .filter(|&&b| (b as usize) < limit)
        .take(16)
        .map(|&b| ALPHABET[b as usize % ALPHABET.len()] as char)
        .collect();
    if pw.len() < 16 {
        return Err(io::Error::other("not enough random bytes"));
    }
    Ok(pw)
}

impl InitOptions {
    pub fn demo(mail_user: MailUser) -> InitOptions {
        InitOptions {
            hostname: "mail.example.com".into(),
            domain: "example.com".into(),
            user: "joe".into(),
            site: "acme".into(),
            site_domain: "acme.example".into(),
            site_relayhost: "127.0.0.1:2626".into(),
            mail_user,
            force: false,
        }
    }
}

/// Whether `root` already looks like a mail root.
pub fn is_mail_root(root: &Path) -> bool {
    root.join("control").is_dir() || root.join("users").join("assign").is_file()
}

/// Whether the mail root at `root` holds nothing yet: no domain accepted, no assign
/// entry, no account, no site (what `turnmail setup` and the package make).
pub fn is_empty_root(root: &Path) -> bool {
    let blank = |p: &str, ignore: &[&str]| {
        std::fs::read_to_string(root.join(p)).is_ok_and(|t| {
            t.lines()
                .map(str::trim)
                .all(|l| l.is_empty() || l.starts_with('#') || ignore.contains(&l))
        })
    };
    let no_entries =
        |p: &str| std::fs::read_dir(root.join(p)).map_or(true, |mut d| d.next().is_none());
    blank("control/rcpthosts", &[])
        && blank("control/virtualdomains", &[])
        && blank("users/assign", &["."])
        && std::fs::read_to_string(root.join("users/poppasswd"))
            .map_or(true, |t| t.trim().is_empty())
        && no_entries("domains")
        && no_entries("sites")
}

/// What `init` and `setup` create at the top of a root.
pub const ROOT_ENTRIES: [&str; 8] = [
    "turnmail.toml",
    "control/",
    "users/",
    "domains/",
    "sites/",
    "queue/",
    "run/",
    "tls/",
];

/// Make `root` and its directories (the spools' and run/ private); the root's
/// canonical path.
pub(super) fn make_root_dirs(root: &Path) -> Result<PathBuf, InitError> {
    mkdir(root, 0o755)?;
    let root = root.canonicalize().map_err(io_at(root))?;
    for (d, mode) in [
        ("control", 0o755),
        ("users", 0o755),
        ("domains", 0o755),
        ("sites", 0o755),
        ("queue", 0o700),
        ("run", 0o700),
    ] {
        mkdir(&root.join(d), mode)?;
    }
    Ok(root)
}

/// Which of [`ROOT_ENTRIES`] are in `root` already (a symlink counts, even dangling).
pub fn present(root: &Path) -> Vec<&'static str> {
    ROOT_ENTRIES
        .iter()
        .copied()
        .filter(|e| {
            root.join(e.trim_end_matches('/'))
                .symlink_metadata()
                .is_ok()
        })
        .collect()
}

/// Refuse a directory holding any file of a mail root, unless `force`.
pub fn refuse_existing(root: &Path, force: bool) -> Result<(), InitError> {
    let found = present(root);
    if found.is_empty() || force {
        return Ok(());
    }
    Err(InitError::Exists(root.to_path_buf(), found))
}

/// Create a demo mail root at `root` (which may exist but must hold none of a mail
/// root's files, unless `force`).
pub fn init(root: &Path, o: &InitOptions) -> Result<InitReport, InitError> {
    refuse_existing(root, o.force)?;
    let root = make_root_dirs(root)?;
    let r = |p: &str| root.join(p);
    let mu = &o.mail_user;
    write(&r("control/me"), &format!("{}\n", o.hostname), 0o644)?;
    write(&r("control/locals"), &format!("{}\n", o.hostname), 0o644)?;
    write(
        &r("control/rcpthosts"),
        &format!("{}\n{}\n", o.domain, o.site_domain),
        0o644,
    )?;
    write(
        &r("control/virtualdomains"),
        &format!(
            "{d}:{d}\n{sd}:site-{s}\n",
            d = o.domain,
            sd = o.site_domain,
            s = o.site
        ),
        0o644,
    )?;

    // The domain: its home holds one .qmail file per mailbox.
    let dhome = r("domains").join(&o.domain);
    mkdir(&dhome, 0o700)?;
    let uhome = dhome.join(&o.user);
    mkdir(&uhome, 0o700)?;
    Maildir::create(uhome.join("Maildir")).map_err(io_at(&uhome))?;
    let mbox_line = format!("./{}/Maildir/\n", o.user);
    write(&dhome.join(format!(".qmail-{}", o.user)), &mbox_line, 0o600)?;
    write(&dhome.join(".qmail-postmaster"), &mbox_line, 0o600)?;

    // The site: a spool Maildir flushed to RELAYHOST.
    let shome = r("sites").join(&o.site);
    mkdir(&shome, 0o700)?;
    Maildir::create(shome.join("Maildir")).map_err(io_at(&shome))?;
    write(
        &shome.join("RELAYHOST"),
        &format!("{}\n", o.site_relayhost),
        0o644,
    )?;
    write(&shome.join(".qmail-default"), "./Maildir/\n", 0o600)?;
    write(
        &shome.join("site.toml"),
        &format!("domains = [\"{}\"]\n", o.site_domain),
        0o644,
    )?;

    let assign = format!(
        "+{d}-:{n}:{u}:{g}:{dh}:-::\n+site-{s}-:{n}:{u}:{g}:{sh}:-::\n.\n",
        d = o.domain,
        s = o.site,
        n = mu.name,
        u = mu.uid,
        g = mu.gid,
        dh = dhome.display(),
        sh = shome.display(),
    );
    write(&r("users/assign"), &assign, 0o644)?;
    let password = generate_password().map_err(io_at(Path::new("/dev/urandom")))?;
    let login = format!("{}@{}", o.user, o.domain);
    let hash = crypt::hash_new(password.as_bytes())?;
    write(
        &r("users/poppasswd"),
        &format!("{login}:{hash}:{}:{}\n", mu.name, uhome.display()),
        0o640,
    )?;
    write(&r("turnmail.toml"), &demo_config(mu, &o.domain), 0o644)?;
    crate::qmail::users_cdb::compile(assign.as_bytes(), &r("users/cdb")).map_err(|e| {
        InitError::Io {
            path: r("users/assign"),
            source: io::Error::other(e.to_string()),
        }
    })?;
    let pw_text = std::fs::read(r("users/poppasswd")).map_err(io_at(&r("users/poppasswd")))?;
    accounts::compile(&pw_text, &r("users/poppasswd.cdb")).map_err(|e| InitError::Io {
        path: r("users/poppasswd"),
        source: io::Error::other(e.to_string()),
    })?;
    crate::dovecot::passwd_file::write(&root, &pw_text, None)
        .map_err(io_at(&crate::dovecot::passwd_file::path(&root)))?;
    crate::tls::generate_self_signed(&root, &o.hostname).map_err(io_at(&r("tls")))?;
    if nix::unistd::Uid::effective().is_root() {
        chown_tree(&root, mu)?;
    }
    Ok(InitReport {
        root,
        login,
        password,
    })
}

fn demo_config(mu: &MailUser, domain: &str) -> String {
    let mut s = String::new();
    s.push_str("# turnmail settings for this mail root. Every key is optional; see\n");
    s.push_str("# deploy/turnmail.toml.example for all keys and their defaults.\n\n");
    s.push_str(&format!(
        "# Unix user that owns the mail when turnmail is started as root.\nuser = \"{}\"\n\n",
        mu.name
    ));
    s.push_str("# Bare POP logins and `<postmaster>` without a domain mean this domain.\n");
    s.push_str(&format!("default_domain = \"{domain}\"\n\n"));
    s.push_str("[smtp]\nlisten = [\"127.0.0.1:2525\"]\n\n");
    s.push_str("# Mail clients send here (587 and 465 in production): STARTTLS and AUTH, or\n");
    s.push_str("# TLS from the start.\n");
    s.push_str("[submission]\nlisten = [\"127.0.0.1:5587\"]\n\n");
    s.push_str("[submissions]\nlisten = [\"127.0.0.1:5465\"]\n");
    s
}

/// Give the whole tree to the mail user (init run as root).
pub(super) fn chown_tree(path: &Path, mu: &MailUser) -> Result<(), InitError> {
    super::edit::chown_tree(path, mu.uid, mu.gid).map_err(|e| match e {
        super::error::AdminError::Io { path, source } => InitError::Io { path, source },
        other => InitError::Io {
            path: path.to_path_buf(),
            source: io::Error::other(other.to_string()),
        },
    })
}
