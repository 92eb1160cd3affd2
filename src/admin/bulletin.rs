//! `turnmail domain bulletin DOMAIN|--all FILE` (vpopmail's `vpopbull`): one message
//! to every mailbox of a domain or of the root.
//!
//! The message is written once per file system and owner, durably like any delivery
//! (a `tmp/` file fsynced, linked into `new/`, `new/` fsynced); every other mailbox
//! gets a hard link to that file under the same name in its own `new/`, then its
//! `new/` fsynced. Where a link cannot be made (another file system, the first copy
//! already fetched and deleted) the message is written again.
//!
//! Resumable: `ROOT/run/bulletins/ID.journal` (ID: MD5 of the scope and the message)
//! records the mailboxes done, each line made durable after its delivery. The name in
//! `new/` is the same in every mailbox and on every run (the time the bulletin was
//! first started, `B` and the ID, the host), so a mailbox delivered to just before an
//! interruption, but not yet recorded, is recognised on the re-run by that name in
//! `new/` or `cur/`: no mailbox ever gets it twice. A finished bulletin's journal stays;
//! sending the same message again to the same mailboxes means removing it.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use super::edit::Edit;
use super::error::{AdminError, Result, invalid, io_at};
use super::{aliasdomain, layout, names, progress};
use crate::engine::accounts;
use crate::fsutil;
use crate::maildir;

/// Largest bulletin accepted.
pub const MAX_MESSAGE: u64 = 64 << 20;

#[derive(Debug, clap::Args)]
pub struct BulletinArgs {
    /// DOMAIN FILE, or only FILE with --all. FILE is a whole message (headers, a blank
    /// line, the body), delivered as it is.
    #[arg(num_args = 1..=2, value_name = "DOMAIN|FILE", required = true)]
    args: Vec<String>,
    /// Every mailbox of the root.
    #[arg(long)]
    all: bool,
}

/// One mailbox to reach.
#[derive(Debug, Clone)]
struct Target {
    login: String,
    maildir: PathBuf,
    owner: accounts::Owner,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Outcome {
    pub mailboxes: usize,
    /// Written as a new file.
    pub written: usize,
    /// Hard links to a file already written.
    pub linked: usize,
    /// Done by an earlier run (journal, or the message already there).
    pub already: usize,
    /// Mailboxes that could not be reached, with why.
    pub failed: Vec<(String, String)>,
    pub journal: PathBuf,
}

pub fn run(root: &Path, a: BulletinArgs) -> Result<()> {
    let (domain, file) = match (a.all, a.args.as_slice()) {
        (true, [file]) => (None, file),
        (false, [domain, file]) => (Some(domain.as_str()), file),
        (true, _) => return Err(invalid("with --all give only the message FILE")),
        (false, _) => return Err(invalid("give DOMAIN and the message FILE (or --all FILE)")),
    };
    let path = Path::new(file);
    let message = fsutil::read_limited(path, MAX_MESSAGE + 1).map_err(io_at(path))?;
    if message.len() as u64 > MAX_MESSAGE {
        return Err(invalid(format!(
            "{file} is larger than {} MiB",
            MAX_MESSAGE >> 20
        )));
    }
    let o = send(root, domain, &message)?;
    println!(
        "bulletin: {} mailbox(es): {} written, {} linked, {} already had it",
        o.mailboxes, o.written, o.linked, o.already
    );
    println!("journal: {}", o.journal.display());
    if !o.failed.is_empty() {
        for (login, why) in &o.failed {
            eprintln!("not delivered to {login}: {why}");
        }
        return Err(AdminError::Io {
            path: o.journal.clone(),
            source: io::Error::other(format!(
                "{} mailbox(es) not reached; run the same command again to finish",
                o.failed.len()
            )),
        });
    }
    Ok(())
}

/// The message as stored: LF line ends (a file written with CRLF is converted).
fn normalise(message: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(message.len());
    let mut i = 0;
    while i < message.len() {
        if message[i] == b'\r' && message.get(i + 1) == Some(&b'\n') {
            i += 1;
            continue;
        }
        out.push(message[i]);
        i += 1;
    }
    let first = out.split(|&b| b == b'\n').next().unwrap_or_default();
    if out.is_empty() || !first.contains(&b':') || first.starts_with(b" ") {
        return Err(invalid(
            "the bulletin must be a whole message, starting with its header lines",
        ));
    }
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    Ok(out)
}

/// The mailboxes of `domain` (an alias domain's are its target's), or of the root.
fn targets(root: &Path, domain: Option<&str>) -> Result<(String, Vec<Target>)> {
    let edit = Edit::begin_read(root)?;
    let scope = match domain {
        None => None,
        Some(d) => {
            let d = names::domain(d)?;
            let d = aliasdomain::target_of(&edit, &d)?.unwrap_or(d);
            layout::need_domain(&edit, &d)?;
            Some(d)
        }
    };
    let (_, accounts) = layout::read_poppasswd(&edit)?;
    drop(edit);
    let suffix = scope.as_ref().map(|d| format!("@{d}"));
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for a in &accounts {
        let login = String::from_utf8_lossy(&a.login).to_ascii_lowercase();
        if suffix
            .as_ref()
            .is_some_and(|s| !login.ends_with(s.as_str()))
        {
            continue;
        }
        let maildir = layout::bytes_path(&a.home).join("Maildir");
        if !seen.insert(maildir.clone()) {
            continue;
        }
        let Some(owner) = accounts::resolve_owner(&a.owner).ok().flatten() else {
            continue;
        };
        out.push(Target {
            login,
            maildir,
            owner,
        });
    }
    out.sort_by(|a, b| a.login.cmp(&b.login));
    let scope = scope.map_or_else(|| "all".to_string(), |d| format!("domain {d}"));
    Ok((scope, out))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The journal: a header with the bulletin's start time, then one maildir per line.
struct Journal {
    file: File,
    path: PathBuf,
    created: u64,
    done: HashSet<PathBuf>,
    resumed: bool,
}

impl Journal {
    fn open(root: &Path, id: &str) -> io::Result<Journal> {
        let dir = root.join("run").join("bulletins");
        crate::owner::create_dirs(&dir, 0o700)?;
        let path = dir.join(format!("{id}.journal"));
        let text = match fsutil::read_limited(&path, 1 << 30) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&path)?;
        crate::owner::adopt_file(&file, &path)?;
        let mut done = HashSet::new();
        let mut created = None;
        if let Some(t) = &text {
            // Only whole lines count: a line cut by a crash is as if never written.
            let complete = &t[..t.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1)];
            for (i, l) in complete.split(|&b| b == b'\n').enumerate() {
                if i == 0 {
                    created = std::str::from_utf8(l)
                        .ok()
                        .and_then(|s| s.strip_prefix("turnmail-bulletin "))
                        .and_then(|s| s.trim().parse().ok());
                } else if !l.is_empty() {
                    done.insert(layout::bytes_path(l));
                }
            }
        }
        let resumed = created.is_some();
        let created = match created {
            Some(c) => c,
            None => {
                let now = crate::datetime::now_unix();
                // An empty or torn journal: start it again.
                file.set_len(0)?;
                file.write_all(format!("turnmail-bulletin {now}\n").as_bytes())?;
                file.sync_all()?;
                fsutil::fsync_dir(&dir)?;
                now
            }
        };
        Ok(Journal {
            file,
            path,
            created,
            done,
            resumed,
        })
    }

    fn record(&mut self, maildir: &Path) -> io::Result<()> {
        let mut line = maildir.as_os_str().as_encoded_bytes().to_vec();
        line.push(b'\n');
        self.file.write_all(&line)?;
        self.file.sync_data()?;
        self.done.insert(maildir.to_path_buf());
        Ok(())
    }
}

/// Whether `maildir` already holds the message named `name` (in new/, or in cur/ with
/// or without flags).
fn already_there(maildir: &Path, name: &str) -> io::Result<bool> {
    if std::fs::symlink_metadata(maildir.join("new").join(name)).is_ok() {
        return Ok(true);
    }
    let flagged = format!("{name}:");
    for e in std::fs::read_dir(maildir.join("cur"))? {
        let e = e?;
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n == name || n.starts_with(&flagged) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Write the message into `maildir` as `new/NAME`, durably: `tmp/NAME` (O_EXCL, 0600),
/// fsync, link to `new/NAME`, fsync `new/`, remove `tmp/NAME`. Returns false when
/// `new/NAME` was already there.
fn write_new(maildir: &Path, name: &str, message: &[u8]) -> io::Result<bool> {
    let tmp = maildir.join("tmp").join(name);
    let new = maildir.join("new").join(name);
    let _ = std::fs::remove_file(&tmp); // left by an interrupted run: ours
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)?;
    let written = f.write_all(message).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let linked = std::fs::hard_link(&tmp, &new);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    }
    fsutil::fsync_dir(&maildir.join("new"))?;
    Ok(true)
}

/// How one mailbox was reached.
enum Reached {
    Written(PathBuf),
    Linked,
    Already,
}

fn reach(
    t: &Target,
    name: &str,
    message: &[u8],
    source: Option<&PathBuf>,
    check_first: bool,
) -> std::result::Result<Reached, String> {
    let _as = crate::privilege::files_as(t.owner.uid, t.owner.gid).map_err(|e| e.to_string())?;
    let new_dir = t.maildir.join("new");
    if !new_dir.is_dir() {
        return Err(format!("{} is not a Maildir", t.maildir.display()));
    }
    if check_first && already_there(&t.maildir, name).map_err(|e| e.to_string())? {
        return Ok(Reached::Already);
    }
    let target = new_dir.join(name);
    if let Some(src) = source {
        match std::fs::hard_link(src, &target) {
            Ok(()) => {
                fsutil::fsync_dir(&new_dir).map_err(|e| format!("{}: {e}", new_dir.display()))?;
                return Ok(Reached::Linked);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(Reached::Already),
            // Gone (fetched and deleted), another file system, a link limit: write it.
            Err(_) => {}
        }
    }
    match write_new(&t.maildir, name, message) {
        Ok(true) => Ok(Reached::Written(target)),
        Ok(false) => Ok(Reached::Already),
        Err(e) => Err(format!("{}: {e}", t.maildir.display())),
    }
}

/// Deliver `message` to every mailbox of `domain` (None: of the root).
pub fn send(root: &Path, domain: Option<&str>, message: &[u8]) -> Result<Outcome> {
    let message = normalise(message)?;
    let (scope, targets) = targets(root, domain)?;
    let mut h = Md5::new();
    h.update(scope.as_bytes());
    h.update([0]);
    h.update(&message);
    let id = hex(&h.finalize());
    let jdir = root.join("run/bulletins");
    let mut journal = Journal::open(root, &id).map_err(io_at(&jdir))?;
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let crlf = maildir::crlf_size(&[&message]);
    let name = format!(
        "{}.B{}.{},S={},W={crlf}",
        journal.created,
        &id[..16],
        maildir::escape_host(&host),
        message.len()
    );
    let mut out = Outcome {
        mailboxes: targets.len(),
        journal: journal.path.clone(),
        ..Outcome::default()
    };
    // One written copy per (file system, owner): links never cross either.
    let mut sources: std::collections::HashMap<(u64, u32, u32), PathBuf> = Default::default();
    let mut bar = progress::Progress::new("bulletin", targets.len() as u64);
    for t in &targets {
        if journal.done.contains(&t.maildir) {
            out.already += 1;
            bar.inc(1);
            continue;
        }
        let dev = std::fs::metadata(&t.maildir).map(|m| m.dev()).unwrap_or(0);
        let key = (dev, t.owner.uid, t.owner.gid);
        match reach(t, &name, &message, sources.get(&key), journal.resumed) {
            Ok(r) => {
                match r {
                    Reached::Written(p) => {
                        out.written += 1;
                        sources.insert(key, p);
                    }
                    Reached::Linked => out.linked += 1,
                    Reached::Already => out.already += 1,
                }
                journal.record(&t.maildir).map_err(io_at(&journal.path))?;
            }
            Err(why) => out.failed.push((t.login.clone(), why)),
        }
        bar.inc(1);
    }
    bar.finish();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_shape() {
        assert_eq!(
            normalise(b"Subject: x\r\n\r\nbody").unwrap(),
            b"Subject: x\n\nbody\n"
        );
        assert!(normalise(b"").is_err());
        assert!(normalise(b"just text\n").is_err());
    }
}
