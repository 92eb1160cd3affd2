//! Several `turnmail serve` processes ("nodes") on one shared mail root.
//!
//! A node is named by `[cluster] node` in turnmail.toml or by `--node` (the
//! `TURNMAIL_NODE` variable), which wins, so that machines sharing one turnmail.toml can
//! still tell themselves apart. Without a name the root is a single host's: every path
//! is what it always was.
//!
//! What lives under `ROOT/run/`, and whose it is:
//! - per node, in `run/NODE/`: the control socket (each daemon answers for itself) and
//!   `serve.lock`, held while the daemon runs, so that two processes never serve under
//!   one node name (they would take each other's control socket);
//! - shared by every node: `edit.lock` (operator edits), `pop-before-smtp` and
//!   `login-throttle` (a client's logins count wherever it connects), `sites/*.json`
//!   (a site's last flush, whichever node ran it), `bulletins/` (operator journals).
//!
//! Cross-node exclusion otherwise rests on flocks of files in the root (a site's
//! RELAYHOST, `queue/.lock`, a Maildir's `.turnmail-pop3.lock`); see ARCHITECTURE.md,
//! "Several nodes on one root", for what that asks of shared storage.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Longest node name: the control socket's path must fit a `sockaddr_un` (108 bytes).
pub const MAX_NODE_LEN: usize = 32;

/// A node's name: 1 to [`MAX_NODE_LEN`] of `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit (so never `.`, `..` or an option-like `-x`). It is a directory
/// name under `run/` and part of every Maildir name the node writes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeName(String);

/// Why a text is not a node name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "node name {shown:?}: {why} (1 to {MAX_NODE_LEN} of A-Z a-z 0-9 . _ -, starting with a letter or digit)"
)]
pub struct BadNodeName {
    shown: String,
    why: &'static str,
}

impl NodeName {
    pub fn parse(s: &str) -> Result<NodeName, BadNodeName> {
        let bad = |why| BadNodeName {
            shown: s.chars().take(MAX_NODE_LEN + 8).collect(),
            why,
        };
        if s.is_empty() {
            return Err(bad("empty"));
        }
        if s.len() > MAX_NODE_LEN {
            return Err(bad("too long"));
        }
        if !s.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(bad("must start with a letter or digit"));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad("has a character outside the allowed set"));
        }
        Ok(NodeName(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The node a process is: `--node` when given, else `[cluster] node`, else none.
pub fn effective(
    cli: Option<&str>,
    configured: Option<&str>,
) -> Result<Option<NodeName>, BadNodeName> {
    cli.or(configured).map(NodeName::parse).transpose()
}

/// The directory of a process's own runtime files: `ROOT/run/NODE/`, or `ROOT/run/`
/// for a single host.
pub fn run_dir(root: &Path, node: Option<&NodeName>) -> PathBuf {
    let run = root.join("run");
    match node {
        Some(n) => run.join(n.as_str()),
        None => run,
    }
}

/// The daemon's control socket.
pub fn control_socket(root: &Path, node: Option<&NodeName>) -> PathBuf {
    run_dir(root, node).join("control.sock")
}

/// Held while a named node serves: the flock of `run/NODE/serve.lock`.
#[derive(Debug)]
pub struct NodeLock {
    _file: nix::fcntl::Flock<File>,
}

/// Why a node could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("node {node} is already running on this mail root ({path} is locked)")]
    Running { node: NodeName, path: PathBuf },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Claim `node` for this process (its run directory made when missing). A second
/// `turnmail serve` under the same name is refused rather than left to take over the
/// first one's control socket.
pub fn claim(root: &Path, node: &NodeName) -> Result<NodeLock, ClaimError> {
    let dir = run_dir(root, Some(node));
    let path = dir.join("serve.lock");
    let io_err = |source| ClaimError::Io {
        path: path.clone(),
        source,
    };
    crate::owner::create_dirs(&dir, 0o700).map_err(io_err)?;
    let f = File::options()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io_err)?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(NodeLock { _file: l }),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(ClaimError::Running {
            node: node.clone(),
            path,
        }),
        Err((_, e)) => Err(io_err(io::Error::from(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names() {
        for good in ["n1", "mx-2.example", "A_b", "0"] {
            assert_eq!(NodeName::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "", ".", "..", "-n", "_n", "a/b", "a b", "nöde", "a:b", "a\0",
        ] {
            assert!(NodeName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(NodeName::parse(&"a".repeat(MAX_NODE_LEN)).is_ok());
        let e = NodeName::parse(&"a".repeat(MAX_NODE_LEN + 1)).unwrap_err();
        assert!(e.to_string().contains("too long"), "{e}");
    }

    #[test]
    fn paths() {
        let root = Path::new("/srv/mail");
        assert_eq!(
            control_socket(root, None),
            Path::new("/srv/mail/run/control.sock")
        );
        let n = NodeName::parse("n2").unwrap();
        assert_eq!(
            control_socket(root, Some(&n)),
            Path::new("/srv/mail/run/n2/control.sock")
        );
    }

    #[test]
    fn the_command_line_wins() {
        let e = effective(Some("cli"), Some("file")).unwrap().unwrap();
        assert_eq!(e.as_str(), "cli");
        assert_eq!(
            effective(None, Some("file")).unwrap().unwrap().as_str(),
            "file"
        );
        assert_eq!(effective(None, None).unwrap(), None);
        assert!(effective(None, Some("a/b")).is_err());
    }

    #[test]
    fn one_process_per_node() {
        let d = tempfile::tempdir().unwrap();
        let n = NodeName::parse("n1").unwrap();
        let held = claim(d.path(), &n).unwrap();
        // flock conflicts between descriptors, so a second open in this process
        // stands for a second process.
        assert!(matches!(
            claim(d.path(), &n),
            Err(ClaimError::Running { .. })
        ));
        claim(d.path(), &NodeName::parse("n2").unwrap()).unwrap();
        drop(held);
        claim(d.path(), &n).unwrap();
    }

    proptest! {
        /// A name that parses is one path component of safe bytes.
        #[test]
        fn parsed_names_are_plain_components(s in "\\PC{0,40}") {
            if let Ok(n) = NodeName::parse(&s) {
                let p = Path::new("run").join(n.as_str());
                prop_assert_eq!(p.components().count(), 2);
                prop_assert!(n.as_str() != "." && n.as_str() != "..");
                prop_assert!(n.as_str().len() <= MAX_NODE_LEN);
            }
        }
    }
}
