//! The daemon's store of login counts: in memory for a single host; in the root's
//! `run/login-throttle` file (the one checkpassword processes share) for a node of
//! several, so that a client guessing through every node is counted once. The file
//! costs a flock and a read and write of a small fixed-size file per attempt, and it
//! keeps [`super::file::SLOTS`] records: past that, the least useful are forgotten.

use std::io;
use std::path::Path;

use super::file::FileStore;
use super::memory::MemoryStore;
use super::{Record, Rules, Store};
use crate::policy::client::ClientKey;

pub enum DaemonStore {
    Memory(MemoryStore),
    File(FileStore),
}

impl DaemonStore {
    /// The file at `root` when `shared`, else memory.
    pub fn new(root: &Path, rules: Rules, shared: bool) -> DaemonStore {
        if shared {
            DaemonStore::File(FileStore::for_root(root, rules))
        } else {
            DaemonStore::Memory(MemoryStore::default())
        }
    }

    /// Drop idle records and return the clients whose block ended (memory only: the
    /// file is swept by every update, which reports them).
    pub fn sweep(&self, rules: &Rules) -> Vec<ClientKey> {
        match self {
            DaemonStore::Memory(m) => m.sweep(rules),
            DaemonStore::File(_) => Vec::new(),
        }
    }

    /// Clients blocked now.
    pub fn blocked(&self) -> usize {
        match self {
            DaemonStore::Memory(m) => m.blocked(),
            DaemonStore::File(f) => f.blocked().unwrap_or(0),
        }
    }
}

impl Store for DaemonStore {
    fn update<R>(
        &self,
        client: ClientKey,
        login: &[u8],
        released: &mut Vec<ClientKey>,
        f: impl FnOnce(&mut Record, &mut Record, u64) -> R,
    ) -> io::Result<R> {
        match self {
            DaemonStore::Memory(m) => m.update(client, login, released, f),
            DaemonStore::File(s) => s.update(client, login, released, f),
        }
    }
}
