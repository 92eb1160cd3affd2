//! Records in a file under `ROOT/run/`, for `turnmail checkpassword`: it runs once per
//! login, so its counts must outlive the process and be shared by all of them.
//!
//! The file has a fixed size (a header and [`SLOTS`] slots) and is read and rewritten
//! whole under an exclusive flock, which is held for microseconds. Keys are SipHash
//! values under a random key kept in the header, so clients cannot aim collisions. A
//! checksum covers the slots: a file that is short, foreign, torn by a crash or edited
//! counts for nothing and is started afresh (with a log line), never trusted.

use std::fs::File;
use std::hash::Hasher;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use siphasher::sip::SipHasher13;

use super::{Record, Rules, Scope, Store};
use crate::policy::client::ClientKey;
use crate::policy::runfile::{self, now_ms, random_key, u64_at};

/// The file's name under `ROOT/run/`.
pub const FILE_NAME: &str = "login-throttle";
/// Records the file holds; past it the least useful is forgotten.
pub const SLOTS: usize = 2048;

const MAGIC: &[u8; 8] = b"TMTHROT2";
const HEADER: usize = runfile::HEADER;
const SLOT: usize = 64;
const SIZE: usize = HEADER + SLOTS * SLOT;
const KIND_CLIENT: u8 = 1;
const KIND_LOGIN: u8 = 2;

/// The shared file of one mail root.
pub struct FileStore {
    path: PathBuf,
    rules: Rules,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    key: u64,
    kind: u8,
    client: Option<ClientKey>,
    record: Record,
}

struct Table {
    hash_key: [u8; 16],
    slots: Vec<Slot>,
}

impl FileStore {
    /// The store at `ROOT/run/login-throttle`.
    pub fn for_root(root: &Path, rules: Rules) -> FileStore {
        FileStore {
            path: root.join("run").join(FILE_NAME),
            rules,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Clients blocked now, by the file.
    pub fn blocked(&self) -> io::Result<usize> {
        let file = self.open()?;
        Self::lock(&file)?;
        let t = self.read_table(&file)?;
        let now = now_ms();
        Ok(t.slots
            .iter()
            .filter(|s| s.kind == KIND_CLIENT && s.record.blocked_until_ms > now)
            .count())
    }

    fn open(&self) -> io::Result<File> {
        runfile::open(&self.path)
    }

    fn lock(f: &File) -> io::Result<()> {
        runfile::lock(f)
    }

    fn read_table(&self, f: &File) -> io::Result<Table> {
        let bytes = runfile::read_all(f, SIZE)?;
        match Table::decode(&bytes) {
            Some(t) => Ok(t),
            None => {
                if !bytes.is_empty() {
                    tracing::warn!(target: "auth", file = %self.path.display(), "login counts are corrupt or of another format: starting afresh");
                }
                Ok(Table::fresh())
            }
        }
    }
}

impl Table {
    fn fresh() -> Table {
        Table {
            hash_key: random_key(),
            slots: vec![Slot::default(); SLOTS],
        }
    }

    fn hasher(&self) -> SipHasher13 {
        runfile::hasher(&self.hash_key)
    }

    fn key(&self, kind: u8, client: &ClientKey, login: &[u8]) -> u64 {
        let mut h = self.hasher();
        h.write_u8(kind);
        h.write(&client.bytes());
        if kind == KIND_LOGIN {
            h.write(login);
        }
        h.finish().max(1)
    }

    fn decode(b: &[u8]) -> Option<Table> {
        let mut t = Table {
            hash_key: runfile::open_frame(b, MAGIC, SLOTS, SIZE)?,
            slots: Vec::with_capacity(SLOTS),
        };
        for s in b[HEADER..].chunks_exact(SLOT) {
            let key = u64_at(s, 0);
            let kind = s[32];
            let len = usize::from(s[33]).min(18);
            let slot = Slot {
                key,
                kind,
                client: ClientKey::from_bytes(&s[34..34 + len]),
                record: Record {
                    level: u64_at(s, 8),
                    updated_ms: u64_at(s, 16),
                    blocked_until_ms: u64_at(s, 24),
                    in_flight: u32::from_le_bytes([s[52], s[53], s[54], s[55]]),
                    flight_ms: u64_at(s, 56),
                },
            };
            t.slots
                .push(if key == 0 || !matches!(kind, KIND_CLIENT | KIND_LOGIN) {
                    Slot::default()
                } else {
                    slot
                });
        }
        Some(t)
    }

    fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; SIZE];
        for (s, out) in self.slots.iter().zip(b[HEADER..].chunks_exact_mut(SLOT)) {
            if s.key == 0 {
                continue;
            }
            out[..8].copy_from_slice(&s.key.to_le_bytes());
            out[8..16].copy_from_slice(&s.record.level.to_le_bytes());
            out[16..24].copy_from_slice(&s.record.updated_ms.to_le_bytes());
            out[24..32].copy_from_slice(&s.record.blocked_until_ms.to_le_bytes());
            out[32] = s.kind;
            out[52..56].copy_from_slice(&s.record.in_flight.to_le_bytes());
            out[56..64].copy_from_slice(&s.record.flight_ms.to_le_bytes());
            if let Some(c) = s.client {
                let cb = c.bytes();
                let n = cb.len().min(18);
                out[33] = n as u8;
                out[34..34 + n].copy_from_slice(&cb[..n]);
            }
        }
        runfile::seal_frame(&mut b, MAGIC, SLOTS, &self.hash_key);
        b
    }

    /// The slot of `key`, taking a free one or the least useful if it is new (never
    /// the slot `keep`).
    fn slot(
        &mut self,
        key: u64,
        kind: u8,
        client: ClientKey,
        now: u64,
        keep: Option<usize>,
    ) -> usize {
        if let Some(i) = self.slots.iter().position(|s| s.key == key) {
            return i;
        }
        let i = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != keep)
            .min_by_key(|(_, s)| {
                (
                    s.key != 0,
                    s.record.blocked_until_ms > now,
                    s.record.level,
                    s.record.blocked_until_ms,
                )
            })
            .map_or(0, |(i, _)| i);
        self.slots[i] = Slot {
            key,
            kind,
            client: Some(client),
            record: Record {
                updated_ms: now,
                ..Record::default()
            },
        };
        i
    }

    /// Release ended blocks and free idle slots.
    fn sweep(&mut self, rules: &Rules, now: u64, released: &mut Vec<ClientKey>) {
        for s in self.slots.iter_mut().filter(|s| s.key != 0) {
            let scope = if s.kind == KIND_CLIENT {
                Scope::Client
            } else {
                Scope::Login
            };
            // A login's release is not logged here: the file keeps no login names.
            if rules.sweep(&mut s.record, scope, now).is_some()
                && scope == Scope::Client
                && let Some(c) = s.client
            {
                released.push(c);
            }
            if rules.is_idle(&s.record, scope, now) {
                *s = Slot::default();
            }
        }
    }
}

impl Store for FileStore {
    fn update<R>(
        &self,
        client: ClientKey,
        login: &[u8],
        released: &mut Vec<ClientKey>,
        f: impl FnOnce(&mut Record, &mut Record, u64) -> R,
    ) -> io::Result<R> {
        let file = self.open()?;
        Self::lock(&file)?;
        let mut t = self.read_table(&file)?;
        let now = now_ms();
        t.sweep(&self.rules, now, released);
        let ck = t.key(KIND_CLIENT, &client, login);
        let lk = t.key(KIND_LOGIN, &client, login);
        let ci = t.slot(ck, KIND_CLIENT, client, now, None);
        let li = t.slot(lk, KIND_LOGIN, client, now, Some(ci));
        let (mut c, mut l) = (t.slots[ci].record, t.slots[li].record);
        let r = f(&mut c, &mut l, now);
        t.slots[ci].record = c;
        t.slots[li].record = l;
        // The decision stands even when it cannot be kept: a blocked client stays
        // refused, only this attempt's charge is lost.
        if let Err(e) = file
            .write_all_at(&t.encode(), 0)
            .and_then(|()| file.set_len(SIZE as u64))
        {
            tracing::error!(target: "auth", file = %self.path.display(), "login counts not saved: {e}");
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Outcome, Throttle};
    use super::*;
    use std::time::Duration;

    fn store(dir: &Path) -> Throttle<FileStore> {
        std::fs::create_dir_all(dir.join("run")).unwrap();
        let rules = Rules {
            max_failures: 3,
            max_login_failures: 0,
            window: Duration::from_secs(600),
            block: Duration::from_secs(900),
        };
        Throttle {
            rules,
            ipv6_prefix: 64,
            store: FileStore::for_root(dir, rules),
        }
    }

    #[test]
    fn counts_survive_the_process_and_corruption_is_not_trusted() {
        let d = tempfile::tempdir().unwrap();
        let ip = "192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            // A new store each time: as a new checkpassword process would.
            let t = store(d.path());
            let a = t.admit(ip, b"ann", "test").unwrap();
            t.finish(a, Outcome::Failure);
        }
        let t = store(d.path());
        assert!(t.admit(ip, b"joe", "test").is_err());
        assert!(
            t.admit("192.0.2.8".parse().unwrap(), b"joe", "test")
                .is_ok()
        );
        let path = d.path().join("run").join(FILE_NAME);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), SIZE as u64);
        // One flipped byte: the whole file counts for nothing, and is rewritten whole.
        let mut b = std::fs::read(&path).unwrap();
        b[HEADER + 9] ^= 0x40;
        std::fs::write(&path, &b).unwrap();
        assert!(store(d.path()).admit(ip, b"joe", "test").is_ok());
        assert!(Table::decode(&std::fs::read(&path).unwrap()).is_some());
        // Garbage of any length, a symlink: never a panic, never followed.
        std::fs::write(&path, b"junk").unwrap();
        assert!(store(d.path()).admit(ip, b"joe", "test").is_ok());
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(d.path().join("elsewhere"), &path).unwrap();
        let a = store(d.path()).admit(ip, b"joe", "test").unwrap();
        assert!(!d.path().join("elsewhere").exists());
        store(d.path()).finish(a, Outcome::Failure);
    }

    #[test]
    fn a_full_table_keeps_its_blocks() {
        let d = tempfile::tempdir().unwrap();
        let t = store(d.path());
        let blocked = "198.51.100.1".parse().unwrap();
        for _ in 0..3 {
            let a = t.admit(blocked, b"ann", "test").unwrap();
            t.finish(a, Outcome::Failure);
        }
        for i in 0..(SLOTS as u32) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).into();
            let a = t.admit(ip, b"x", "test").unwrap();
            t.finish(a, Outcome::Failure);
        }
        assert!(t.admit(blocked, b"ann", "test").is_err());
        let b = std::fs::read(t.store.path()).unwrap();
        assert_eq!(b.len(), SIZE);
    }

    #[test]
    fn encode_decode_round_trip() {
        let mut t = Table::fresh();
        let c = ClientKey::of("2001:db8::1".parse().unwrap(), 64);
        let k = t.key(KIND_CLIENT, &c, b"");
        let i = t.slot(k, KIND_CLIENT, c, 5, None);
        t.slots[i].record.level = 7000;
        let back = Table::decode(&t.encode()).unwrap();
        assert_eq!(back.slots[i].key, k);
        assert_eq!(back.slots[i].client, Some(c));
        assert_eq!(back.slots[i].record.level, 7000);
    }
}
