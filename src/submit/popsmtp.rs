//! POP-before-SMTP (vpopmail's roaming users): a successful POP3 login records the
//! client's address, and for `window_secs` after it the SMTP and submission listeners
//! let that address relay.
//!
//! The record is `ROOT/run/pop-before-smtp`, written by the daemon's POP3 server and by
//! `turnmail checkpassword` (one process per login, under qmail-popup or Dovecot), read
//! by the daemon when an SMTP client connects. It has a fixed size ([`SLOTS`] slots
//! behind a header), is rewritten whole under an exclusive flock (the pieces of
//! `policy::runfile` the login counts use too), and carries a SipHash checksum under a
//! random key in its header: a file that is short, foreign, torn or edited grants
//! nothing and is started afresh by the next login. Expired entries are dropped at
//! every write; a full table forgets the entry expiring first.

use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::policy::runfile::{self, now_ms, random_key, u64_at};

/// The file's name under `ROOT/run/`.
pub const FILE_NAME: &str = "pop-before-smtp";
/// Addresses remembered at once.
pub const SLOTS: usize = 1024;

const MAGIC: &[u8; 8] = b"TMPBSMT1";
const HEADER: usize = runfile::HEADER;
const SLOT: usize = 96;
/// Longest login kept with an address (for the `account` sender check).
const MAX_LOGIN: usize = SLOT - 25;
const SIZE: usize = HEADER + SLOTS * SLOT;

/// One remembered login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub ip: IpAddr,
    pub expires_ms: u64,
    /// The login as stored in poppasswd (cut to [`MAX_LOGIN`] bytes; a cut login
    /// matches no sender).
    pub login: Vec<u8>,
}

/// The shared file of one mail root.
pub struct PopBeforeSmtp {
    path: PathBuf,
    window: Duration,
}

impl PopBeforeSmtp {
    pub fn for_root(root: &Path, window: Duration) -> PopBeforeSmtp {
        PopBeforeSmtp {
            path: root.join("run").join(FILE_NAME),
            window,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remember that `login` logged in from `ip` now.
    pub fn record(&self, ip: IpAddr, login: &[u8]) -> io::Result<()> {
        let f = runfile::open(&self.path)?;
        runfile::lock(&f)?;
        let now = now_ms();
        let mut t = self.read(&f)?.unwrap_or_else(Table::fresh);
        t.entries.retain(|e| e.expires_ms > now);
        t.insert(Entry {
            ip: canonical(ip),
            expires_ms: now.saturating_add(self.window.as_millis() as u64),
            login: login[..login.len().min(MAX_LOGIN)].to_vec(),
        });
        f.write_all_at(&t.encode(), 0)?;
        f.set_len(SIZE as u64)
    }

    /// The login recorded for `ip`, if its window is still open.
    pub fn lookup(&self, ip: IpAddr) -> io::Result<Option<Entry>> {
        let Some(f) = runfile::open_existing(&self.path)? else {
            return Ok(None);
        };
        runfile::lock_shared(&f)?;
        let Some(t) = self.read(&f)? else {
            return Ok(None);
        };
        let (ip, now) = (canonical(ip), now_ms());
        Ok(t.entries
            .into_iter()
            .filter(|e| e.ip == ip && e.expires_ms > now)
            .max_by_key(|e| e.expires_ms))
    }

    fn read(&self, f: &File) -> io::Result<Option<Table>> {
        let bytes = runfile::read_all(f, SIZE)?;
        let t = Table::decode(&bytes);
        if t.is_none() && !bytes.is_empty() {
            tracing::warn!(target: "auth", file = %self.path.display(), "POP-before-SMTP records are corrupt or of another format: not used");
        }
        Ok(t)
    }
}

/// IPv4-mapped IPv6 as IPv4, so both spellings of one client agree.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

struct Table {
    hash_key: [u8; 16],
    entries: Vec<Entry>,
}

impl Table {
    fn fresh() -> Table {
        Table {
            hash_key: random_key(),
            entries: Vec::new(),
        }
    }

    fn insert(&mut self, e: Entry) {
        self.entries.retain(|x| x.ip != e.ip);
        if self.entries.len() >= SLOTS
            && let Some(i) = (0..self.entries.len()).min_by_key(|&i| self.entries[i].expires_ms)
        {
            self.entries.swap_remove(i);
        }
        self.entries.push(e);
    }

    fn decode(b: &[u8]) -> Option<Table> {
        let mut t = Table {
            hash_key: runfile::open_frame(b, MAGIC, SLOTS, SIZE)?,
            entries: Vec::new(),
        };
        for s in b[HEADER..].chunks_exact(SLOT) {
            let expires_ms = u64_at(s, 16);
            if expires_ms == 0 {
                continue;
            }
            let octets: [u8; 16] = s[..16].try_into().ok()?;
            let len = usize::from(s[24]).min(MAX_LOGIN);
            t.entries.push(Entry {
                ip: canonical(IpAddr::V6(Ipv6Addr::from(octets))),
                expires_ms,
                login: s[25..25 + len].to_vec(),
            });
        }
        Some(t)
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SIZE];
        for (e, out) in self.entries.iter().zip(b[HEADER..].chunks_exact_mut(SLOT)) {
            let v6 = match e.ip {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out[..16].copy_from_slice(&v6.octets());
            out[16..24].copy_from_slice(&e.expires_ms.max(1).to_le_bytes());
            let n = e.login.len().min(MAX_LOGIN);
            out[24] = n as u8;
            out[25..25 + n].copy_from_slice(&e.login[..n]);
        }
        runfile::seal_frame(&mut b, MAGIC, SLOTS, &self.hash_key);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path, secs: u64) -> PopBeforeSmtp {
        std::fs::create_dir_all(dir.join("run")).unwrap();
        PopBeforeSmtp::for_root(dir, Duration::from_secs(secs))
    }

    #[test]
    fn a_login_opens_its_address_for_the_window_only() {
        let d = tempfile::tempdir().unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let s = store(d.path(), 600);
        assert_eq!(s.lookup(ip).unwrap(), None);
        s.record(ip, b"joe@example.com").unwrap();
        // Another process (a new store) sees it; another address does not.
        let e = store(d.path(), 600).lookup(ip).unwrap().unwrap();
        assert_eq!(e.login, b"joe@example.com");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert!(s.lookup(mapped).unwrap().is_some());
        assert!(s.lookup("192.0.2.8".parse().unwrap()).unwrap().is_none());
        // A zero window has closed by the time anyone looks.
        let z = store(d.path(), 0);
        z.record("198.51.100.1".parse().unwrap(), b"ann").unwrap();
        assert!(z.lookup("198.51.100.1".parse().unwrap()).unwrap().is_none());
        assert!(z.lookup(ip).unwrap().is_some());
        assert_eq!(std::fs::metadata(s.path()).unwrap().len(), SIZE as u64);
    }

    #[test]
    fn a_corrupt_file_grants_nothing_and_is_started_afresh() {
        let d = tempfile::tempdir().unwrap();
        let ip: IpAddr = "2001:db8::1".parse().unwrap();
        let s = store(d.path(), 600);
        s.record(ip, b"joe").unwrap();
        let mut b = std::fs::read(s.path()).unwrap();
        b[HEADER + 3] ^= 1;
        std::fs::write(s.path(), &b).unwrap();
        assert!(s.lookup(ip).unwrap().is_none());
        std::fs::write(s.path(), b"junk").unwrap();
        assert!(s.lookup(ip).unwrap().is_none());
        s.record(ip, b"joe").unwrap();
        assert!(s.lookup(ip).unwrap().is_some());
        // Never followed through a link.
        std::fs::remove_file(s.path()).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), s.path()).unwrap();
        assert!(s.record(ip, b"joe").is_err());
        assert!(s.lookup(ip).is_err());
        assert!(!d.path().join("elsewhere").exists());
    }

    #[test]
    fn a_full_table_stays_bounded() {
        let mut t = Table::fresh();
        for i in 0..(SLOTS as u32 + 10) {
            t.insert(Entry {
                ip: std::net::Ipv4Addr::from(0x0a00_0000 + i).into(),
                expires_ms: 1000 + u64::from(i),
                login: vec![b'x'; 200.min(MAX_LOGIN)],
            });
        }
        assert_eq!(t.entries.len(), SLOTS);
        let back = Table::decode(&t.encode()).unwrap();
        assert_eq!(back.entries.len(), SLOTS);
        assert!(back.entries.iter().all(|e| e.expires_ms >= 1010));
    }
}
