//! A Debian trixie root holding Dovecot 2.4 (this host is bookworm, with 2.3), made once
//! by debootstrap and kept in a cache directory for later runs, and programs run inside
//! it: each in its own mount namespace (`unshare`) with the test's directory bind-mounted
//! at the same path and /proc mounted, then `chroot`. The mounts exist only in that
//! namespace: they end with its last process, whatever way the test ends, and the
//! host's mount table never sees them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const SUITE: &str = "trixie";
const PACKAGES: &str = "dovecot-core,dovecot-imapd,dovecot-pop3d";
const MIRROR: &str = "http://deb.debian.org/debian";

/// A finished root in the cache.
pub struct Trixie {
    /// The root directory (what `chroot` is given).
    pub root: PathBuf,
    /// How long it took to make, when this run made it.
    pub built_in: Option<std::time::Duration>,
}

/// The cache: `TURNMAIL_TRIXIE_CACHE`, else /var/tmp/turnmail-trixie-dovecot24. It holds
/// `root/` (the finished root), `stamp` (what `root/` was made from; another value means
/// make it again), `build/` while debootstrap runs and `debootstrap.log`.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("TURNMAIL_TRIXIE_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/turnmail-trixie-dovecot24"))
}

fn stamp_text(mirror: &str) -> String {
    format!("{SUITE} minbase {PACKAGES} {mirror}\n")
}

/// The cached root, made first when missing or made from something else (a build cut
/// short leaves no stamp). `Err` says why it cannot be had here: no root, no
/// debootstrap, or debootstrap failed (the tail of its log). Builds are serialised by a
/// lock on `CACHE/lock`, so parallel runs share one download.
pub fn ensure() -> Result<Trixie, String> {
    if !super::is_root() {
        return Err("debootstrap and chroot need root".into());
    }
    let mirror = std::env::var("TURNMAIL_DEBIAN_MIRROR").unwrap_or_else(|_| MIRROR.into());
    let cache = cache_dir();
    std::fs::create_dir_all(&cache).map_err(|e| format!("{}: {e}", cache.display()))?;
    let lock = std::fs::File::create(cache.join("lock")).map_err(|e| e.to_string())?;
    lock.lock()
        .map_err(|e| format!("lock {}: {e}", cache.display()))?;
    let root = cache.join("root");
    let stamp = cache.join("stamp");
    let want = stamp_text(&mirror);
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == want)
        && root.join("usr/sbin/dovecot").exists()
    {
        return Ok(Trixie {
            root,
            built_in: None,
        });
    }
    let debootstrap = ["/usr/sbin/debootstrap", "/sbin/debootstrap"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or("debootstrap is not installed (Debian package debootstrap; tests/install-peers)")?;
    let _ = std::fs::remove_file(&stamp);
    let build = cache.join("build");
    for old in [&build, &root] {
        if old.exists() {
            std::fs::remove_dir_all(old).map_err(|e| format!("{}: {e}", old.display()))?;
        }
    }
    let log_path = cache.join("debootstrap.log");
    let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let status = Command::new(debootstrap)
        .args(["--variant=minbase", &format!("--include={PACKAGES}"), SUITE])
        .arg(&build)
        .arg(&mirror)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .status()
        .map_err(|e| format!("{debootstrap}: {e}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(15).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return Err(format!(
            "debootstrap {SUITE} from {mirror} failed ({status}), {}:\n{}",
            log_path.display(),
            tail.join("\n")
        ));
    }
    std::fs::rename(&build, &root).map_err(|e| e.to_string())?;
    std::fs::write(&stamp, want).map_err(|e| e.to_string())?;
    Ok(Trixie {
        root,
        built_in: Some(started.elapsed()),
    })
}

impl Trixie {
    /// Give the root's account `name` (user and group) the host's uid and gid of that
    /// name, so files the host's commands give that group (a reader group) are readable
    /// by the root's processes running as it. Ids the host lacks stay as they are.
    pub fn align_ids(&self, name: &str) -> std::io::Result<()> {
        let uid = nix::unistd::User::from_name(name)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw());
        let gid = nix::unistd::Group::from_name(name)
            .ok()
            .flatten()
            .map(|g| g.gid.as_raw());
        // passwd: name:x:UID:GID:...; group: name:x:GID:...
        set_fields(&self.root.join("etc/passwd"), name, &[(2, uid), (3, gid)])?;
        set_fields(&self.root.join("etc/group"), name, &[(2, gid)])
    }

    /// A command running `program args...` inside the root, in a mount namespace of its
    /// own where `shared` (a host directory) is bind-mounted at its own path and /proc
    /// is mounted. The mount point is made in the root; [`Trixie::forget`] removes it.
    /// The command's process becomes `program` (no fork), so its pid is the program's.
    pub fn command(&self, shared: &Path, program: &str, args: &[&str]) -> Command {
        let _ = std::fs::create_dir_all(self.mount_point(shared));
        let mut c = Command::new("unshare");
        c.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(
                r#"set -e; r=$1; dir=$2; shift 2
mount --bind "$dir" "$r$dir"
mount -t proc proc "$r/proc"
exec chroot "$r" "$@""#,
            )
            .arg("sh")
            .arg(&self.root)
            .arg(shared)
            .arg(program)
            .args(args);
        c
    }

    /// A command running `program args...` in the namespace and root of the running
    /// process `pid` (one started by [`Trixie::command`]): its mounts are already there.
    pub fn enter(&self, pid: u32, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("--target")
            .arg(pid.to_string())
            .args(["--mount", "--root", "--wd", program])
            .args(args);
        c
    }

    fn mount_point(&self, shared: &Path) -> PathBuf {
        self.root.join(shared.strip_prefix("/").unwrap_or(shared))
    }

    /// Remove the mount point [`Trixie::command`] made for `shared` (empty on the host
    /// side: the mount was only ever in the command's namespace).
    pub fn forget(&self, shared: &Path) {
        let _ = std::fs::remove_dir(self.mount_point(shared));
    }
}

/// In the colon-separated file `path`, the line of `name`: each `(field, Some(id))`
/// set to `id`. The file is replaced only when that changes it.
fn set_fields(path: &Path, name: &str, fields: &[(usize, Option<u32>)]) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    let mut out = String::new();
    for line in text.lines() {
        let mut parts: Vec<String> = line.split(':').map(str::to_string).collect();
        if parts.first().is_some_and(|n| n == name) {
            for &(i, id) in fields {
                if let (Some(id), Some(p)) = (id, parts.get_mut(i)) {
                    *p = id.to_string();
                }
            }
        }
        out.push_str(&parts.join(":"));
        out.push('\n');
    }
    if out != text {
        let tmp = path.with_extension("turnmail-tmp");
        std::fs::File::create(&tmp)?.write_all(out.as_bytes())?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(())
}
