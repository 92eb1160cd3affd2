//! `turnmail queue list|show|bounce|delete`: look at and act on single messages in the
//! outbound queue (`ROOT/queue/`) or in a site's spool (`--site SITE`).
//!
//! Listing and showing only read. Bouncing and deleting take the lock the sender of
//! that spool takes (the queue runner's `queue/.lock`, a site flush's RELAYHOST flock),
//! so a message is never returned to its sender while it is being sent as well. Ids
//! are the Maildir unique names (the file name up to `:`), matched exactly; anything
//! that could name a path outside the spool is refused before the disk is touched.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::spool::lock::SenderLock;
use serde_json::json;

use super::error::{AdminError, Result, invalid, io_at};
use super::table::{self, Table};
use crate::config::Config;
use crate::maildir::{Entry, Maildir};
use crate::outbound::dsn::Failure;
use crate::spool::envelope::{self, Envelope};

/// How long bounce and delete wait for a running flush or queue run.
const LOCK_WAIT: Duration = Duration::from_secs(10);

/// What `queue bounce` says in the DSN.
pub const OPERATOR_DIAGNOSTIC: &str = "returned by the operator";

#[derive(Debug, clap::Subcommand)]
pub enum QueueCmd {
    /// List messages: id, age, size, sender, recipient.
    List {
        /// A site's spool instead of the outbound queue.
        #[arg(long)]
        site: Option<String>,
        /// Print the list as JSON (field names in README).
        #[arg(long)]
        json: bool,
    },
    /// Print a message's envelope and header (the body too with --body).
    Show {
        /// The message's id, as `queue list` shows it.
        id: String,
        /// Look in a site's spool instead of the outbound queue.
        #[arg(long)]
        site: Option<String>,
        /// Print the whole message.
        #[arg(long)]
        body: bool,
        /// Print envelope and header as JSON (field names in README).
        #[arg(long)]
        json: bool,
    },
    /// Return a message to its sender now (a DSN goes into the outbound queue), then
    /// remove it.
    Bounce {
        /// The message's id, as `queue list` shows it.
        id: String,
        /// Look in a site's spool instead of the outbound queue.
        #[arg(long)]
        site: Option<String>,
    },
    /// Remove a message without telling anybody.
    Delete {
        /// The message's id, as `queue list` shows it.
        id: String,
        /// Look in a site's spool instead of the outbound queue.
        #[arg(long)]
        site: Option<String>,
    },
}

pub fn run(root: &Path, cmd: QueueCmd) -> Result<()> {
    match cmd {
        QueueCmd::List { site, json } => list(root, site.as_deref(), json),
        QueueCmd::Show {
            id,
            site,
            body,
            json,
        } => show(root, site.as_deref(), &id, body, json),
        QueueCmd::Bounce { id, site } => bounce(root, site.as_deref(), &id).map(|_| ()),
        QueueCmd::Delete { id, site } => delete(root, site.as_deref(), &id).map(|_| ()),
    }
}

/// One spool: where it is, its Delivered-To prefixes, and the lock its sender takes.
pub struct Spool {
    pub name: String,
    pub maildir: Maildir,
    pub prefixes: Vec<Vec<u8>>,
    lock: PathBuf,
    /// The outbound queue (whose files may start with a resume line).
    queue: bool,
    /// The site, for a site's spool (its lock is taken through `spool::lock`).
    site: Option<crate::spool::site::Site>,
}

impl Spool {
    fn format(&self) -> envelope::Format<'_> {
        if self.queue {
            envelope::Format::Queue
        } else {
            envelope::Format::Site(&self.prefixes)
        }
    }
}

/// The outbound queue, or the spool of the site named `site`.
pub fn open(root: &Path, site: Option<&str>) -> Result<Spool> {
    match site {
        None => {
            let q = crate::outbound::queue::Queue::new(root);
            Ok(Spool {
                name: "queue".into(),
                maildir: q.maildir().clone(),
                prefixes: Vec::new(),
                lock: q.path().join(".lock"),
                queue: true,
                site: None,
            })
        }
        Some(name) => {
            let config = Config::load(root)?;
            let found = crate::spool::site_rows::discover_configured(root, &config);
            let s = found.get(name).ok_or_else(|| {
                let mut msg = format!("no site named {name:?}");
                if !found.problems.is_empty() {
                    msg.push_str(&format!(" ({})", found.problems.join("; ")));
                }
                AdminError::NotFound(msg)
            })?;
            Ok(Spool {
                name: format!("site {}", s.name),
                maildir: s.maildir(),
                prefixes: s.prefixes.clone(),
                lock: s.relayhost_path(),
                queue: false,
                site: Some(s.clone()),
            })
        }
    }
}

/// Refuse ids that are not a plain Maildir unique name.
pub fn check_id(id: &str) -> Result<()> {
    if id.is_empty()
        || id == "."
        || id.contains('/')
        || id.contains("..")
        || id.contains(':')
        || id.starts_with('.')
        || id.chars().any(|c| c.is_control())
    {
        return Err(invalid(format!(
            "bad message id {id:?}: use the id `turnmail queue list` shows"
        )));
    }
    Ok(())
}

/// One queued message as listed.
#[derive(Debug, Clone)]
pub struct Message {
    pub entry: Entry,
    /// None when the file is not in spool format (the sender quarantines it).
    pub envelope: Option<Envelope>,
}

impl Message {
    fn sender(&self) -> String {
        self.envelope.as_ref().map_or("?".into(), |e| {
            String::from_utf8_lossy(&e.sender).into_owned()
        })
    }

    fn recipient(&self) -> String {
        self.envelope.as_ref().map_or("?".into(), |e| {
            String::from_utf8_lossy(&e.recipient).into_owned()
        })
    }

    fn age_secs(&self, now: SystemTime) -> u64 {
        now.duration_since(self.entry.mtime)
            .map_or(0, |d| d.as_secs())
    }

    fn to_json(&self, now: SystemTime) -> serde_json::Value {
        json!({
            "id": self.entry.unique,
            "file": self.entry.rel,
            "age_secs": self.age_secs(now),
            "size": self.entry.size,
            "sender": self.envelope.as_ref().map(|_| self.sender()),
            "recipient": self.envelope.as_ref().map(|_| self.recipient()),
        })
    }
}

/// Every message in the spool, oldest first (including those of this second). Read
/// only: files not in spool format are listed with no envelope, never moved.
pub fn messages(spool: &Spool) -> Result<Vec<Message>> {
    let md = &spool.maildir;
    if !md.path().join("new").is_dir() {
        return Ok(Vec::new());
    }
    let later = SystemTime::now() + Duration::from_secs(2);
    let entries = md.scan(later).map_err(io_at(md.path()))?;
    Ok(entries
        .into_iter()
        .filter_map(|entry| {
            // Never through a symlink or into a FIFO: such names are not listed.
            let head =
                crate::maildir::read_head(&entry.path, crate::spool::scan::HEAD_LIMIT).ok()?;
            let envelope = envelope::parse_in(&head, spool.format());
            Some(Message { entry, envelope })
        })
        .collect())
}

/// The message with unique name `id`.
pub fn find(spool: &Spool, id: &str) -> Result<Message> {
    check_id(id)?;
    messages(spool)?
        .into_iter()
        .find(|m| m.entry.unique == id)
        .ok_or_else(|| AdminError::NotFound(format!("no message {id:?} in the {}", spool.name)))
}

pub fn list(root: &Path, site: Option<&str>, json_out: bool) -> Result<()> {
    let spool = open(root, site)?;
    let msgs = messages(&spool)?;
    let now = SystemTime::now();
    if json_out {
        let rows: Vec<_> = msgs.iter().map(|m| m.to_json(now)).collect();
        table::print_json(&json!(rows));
        return Ok(());
    }
    if msgs.is_empty() {
        println!("{}: empty", spool.name);
        return Ok(());
    }
    let mut t = Table::new(&["ID", "AGE#", "SIZE#", "SENDER", "RECIPIENT"]);
    for m in &msgs {
        let sender = match &m.envelope {
            Some(e) if e.sender.is_empty() => "<>".to_string(),
            _ => m.sender(),
        };
        t.row(vec![
            m.entry.unique.clone(),
            table::human_age(m.age_secs(now)),
            table::human_bytes(m.entry.size),
            sender,
            m.recipient(),
        ]);
    }
    print!("{}", t.render());
    Ok(())
}

fn read_whole(m: &Message) -> Result<Vec<u8>> {
    crate::maildir::read_message(&m.entry.path, 1 << 30).map_err(|e| io_at(&m.entry.path)(e.into()))
}

/// The header of `message` (up to and without the empty line).
fn header_of(message: &[u8]) -> &[u8] {
    if message.starts_with(b"\n") {
        return b"";
    }
    match message.windows(2).position(|w| w == b"\n\n") {
        Some(i) => &message[..=i],
        None => message,
    }
}

pub fn show(root: &Path, site: Option<&str>, id: &str, body: bool, json_out: bool) -> Result<()> {
    let spool = open(root, site)?;
    let m = find(&spool, id)?;
    let data = read_whole(&m)?;
    let offset = m.envelope.as_ref().map_or(0, |e| e.body_offset);
    let message = data.get(offset..).unwrap_or_default();
    let shown = if body { message } else { header_of(message) };
    let now = SystemTime::now();
    if json_out {
        let mut v = m.to_json(now);
        v["path"] = json!(m.entry.path.display().to_string());
        v[if body { "message" } else { "header" }] = json!(String::from_utf8_lossy(shown));
        table::print_json(&v);
        return Ok(());
    }
    println!("id:         {}", m.entry.unique);
    println!("spool:      {}", spool.name);
    println!("file:       {}", m.entry.path.display());
    println!(
        "age:        {} ({} s)",
        table::human_age(m.age_secs(now)),
        m.age_secs(now)
    );
    println!("size:       {} bytes", m.entry.size);
    match &m.envelope {
        Some(e) => {
            println!("sender:     <{}>", m.sender());
            println!("recipient:  <{}>", m.recipient());
            if let Some(rest) = &e.resume {
                let lines: Vec<String> = rest.iter().map(|(n, _)| n.to_string()).collect();
                println!(
                    "resumes:    at .qmail line(s) {} (the lines before were delivered)",
                    lines.join(", ")
                );
            }
        }
        None => println!("envelope:   none (not in spool format; it will be quarantined)"),
    }
    println!();
    print!("{}", String::from_utf8_lossy(shown));
    if !body && shown.len() < message.len() {
        println!(
            "\n[{} more bytes of body; --body prints them]",
            message.len() - shown.len() - 1
        );
    }
    Ok(())
}

/// Take the lock of whoever sends from this spool, waiting a little.
fn lock(spool: &Spool) -> Result<SenderLock> {
    let start = Instant::now();
    loop {
        let tried = match (&spool.site, spool.lock.parent()) {
            (Some(site), _) => crate::spool::lock::try_site(site),
            (None, Some(dir)) => crate::spool::lock::try_queue(dir),
            (None, None) => Err(std::io::Error::other("no queue directory")),
        };
        match tried {
            Ok(Some(l)) => return Ok(l),
            Ok(None) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(None) => {
                return Err(AdminError::LockTimeout {
                    path: spool.lock.clone(),
                    secs: LOCK_WAIT.as_secs(),
                });
            }
            Err(source) => {
                return Err(AdminError::Io {
                    path: spool.lock.clone(),
                    source,
                });
            }
        }
    }
}

fn unlink(m: &Message) -> Result<()> {
    std::fs::remove_file(&m.entry.path).map_err(io_at(&m.entry.path))?;
    if let Some(dir) = m.entry.path.parent() {
        crate::fsutil::fsync_dir(dir).map_err(io_at(dir))?;
    }
    Ok(())
}

/// Remove message `id`; returns what was removed.
pub fn delete(root: &Path, site: Option<&str>, id: &str) -> Result<Message> {
    check_id(id)?;
    let spool = open(root, site)?;
    let _lock = lock(&spool)?;
    let m = find(&spool, id)?;
    unlink(&m)?;
    tracing::info!(
        target: "queue",
        spool = %spool.name,
        id = %m.entry.unique,
        sender = %m.sender(),
        recipient = %m.recipient(),
        size = m.entry.size,
        "deleted by the operator"
    );
    println!(
        "{}: deleted {} from <{}> to <{}> ({})",
        spool.name,
        m.entry.unique,
        m.sender(),
        m.recipient(),
        table::human_bytes(m.entry.size)
    );
    Ok(m)
}

/// Return message `id` to its sender (a DSN into the outbound queue), then remove it.
pub fn bounce(root: &Path, site: Option<&str>, id: &str) -> Result<Message> {
    check_id(id)?;
    let spool = open(root, site)?;
    let config = Config::load(root)?;
    let _lock = lock(&spool)?;
    let m = find(&spool, id)?;
    let Some(env) = &m.envelope else {
        return Err(invalid(format!(
            "{id} has no envelope (not in spool format): nobody to return it to; use delete"
        )));
    };
    let data = read_whole(&m)?;
    let original = data.get(env.body_offset..).unwrap_or_default();
    let hostname = hostname(root, &config);
    let deliver_env = crate::deliver::DeliverEnv {
        queue: crate::outbound::queue::Queue::new(root),
        allow_programs: config.allow_programs,
        program_timeout: Duration::from_secs(config.limits.program_timeout_secs),
        mbox_lock_timeout: Duration::from_secs(30),
        quota: config.quota.clone(),
    };
    let failure = Failure {
        recipient: env.recipient.clone(),
        status: "5.0.0".into(),
        diagnostic: OPERATOR_DIAGNOSTIC.into(),
        diagnostic_type: "x-local",
    };
    crate::outbound::bounce::queue_bounce(
        &deliver_env,
        &hostname,
        &env.sender,
        &[failure],
        original,
        crate::datetime::now_unix(),
        Some("The postmaster returned this message to you."),
    )
    .map_err(|e| AdminError::Io {
        path: deliver_env.queue.path().to_path_buf(),
        source: std::io::Error::other(format!("queueing the bounce: {e}")),
    })?;
    unlink(&m)?;
    tracing::info!(
        target: "queue",
        spool = %spool.name,
        id = %m.entry.unique,
        sender = %m.sender(),
        recipient = %m.recipient(),
        "bounced by the operator"
    );
    let to = if env.sender.is_empty() {
        format!("postmaster@{hostname} (it was a bounce)")
    } else if env.sender == crate::outbound::dsn::DOUBLE_BOUNCE_SENDER {
        "nobody (a double bounce is dropped)".to_string()
    } else {
        format!("<{}>", m.sender())
    };
    println!(
        "{}: returned {} (to <{}>) to {to}, and removed it",
        spool.name,
        m.entry.unique,
        m.recipient()
    );
    Ok(m)
}

/// The name bounces are signed with: turnmail.toml, then control/me, then the system's.
fn hostname(root: &Path, config: &Config) -> String {
    if let Some(h) = &config.hostname {
        return h.clone();
    }
    if let Ok(me) = std::fs::read_to_string(root.join("control/me"))
        && let Some(line) = me.lines().next().map(str::trim).filter(|l| !l.is_empty())
    {
        return line.to_string();
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "../x",
            "x..y",
            "/etc/passwd",
            "a:2,S",
            ".lock",
        ] {
            assert!(check_id(bad).is_err(), "{bad:?}");
        }
        assert!(check_id("1700000000.M1P2Q3.host").is_ok());
    }

    #[test]
    fn header() {
        assert_eq!(header_of(b"A: b\nC: d\n\nbody\n"), b"A: b\nC: d\n");
        assert_eq!(header_of(b"A: b\n"), b"A: b\n");
        assert_eq!(header_of(b"\nbody"), b"");
    }
}
