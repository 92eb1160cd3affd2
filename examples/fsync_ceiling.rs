//! The disk's durable-delivery ceiling, for `bench/`: what any Maildir writer can do on
//! this file system at a given concurrency, with no protocol and no parsing around it.
//!
//! Each delivery: create `tmp/NAME` (O_EXCL, mode 0600), write SIZE bytes, fsync, close,
//! rename (or with `--link`: link then unlink, as qmail-local and turnmail do) into
//! `new/NAME`, fsync `new/`. With `--unnamed`: turnmail's own protocol instead, an
//! unnamed file (`O_TMPFILE` in `tmp/`) written, fsynced and linked into `new/NAME`,
//! then `new/` fsynced. Messages go round-robin into MAILBOXES fresh Maildirs under
//! DIR; WRITERS threads each deliver every WRITERS-th message, all released at once.
//!
//! usage: fsync_ceiling DIR COUNT [WRITERS] [--mailboxes 100] [--size 4096] [--link|--unnamed]
//! prints: writers count seconds msg_per_s cpu_seconds

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::Instant;

struct Args {
    dir: PathBuf,
    count: usize,
    writers: usize,
    mailboxes: usize,
    size: usize,
    mode: Mode,
}

#[derive(Clone, Copy)]
enum Mode {
    Rename,
    Link,
    Unnamed,
}

fn usage() -> ! {
    eprintln!(
        "usage: fsync_ceiling DIR COUNT [WRITERS] [--mailboxes 100] [--size 4096] [--link|--unnamed]"
    );
    std::process::exit(2)
}

fn parse() -> Args {
    let mut pos = Vec::new();
    let (mut mailboxes, mut size, mut mode) = (100, 4096, Mode::Rename);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = || -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage())
        };
        match a.as_str() {
            "--mailboxes" => mailboxes = num(),
            "--size" => size = num(),
            "--link" => mode = Mode::Link,
            "--unnamed" => mode = Mode::Unnamed,
            _ if a.starts_with("--") => usage(),
            _ => pos.push(a),
        }
    }
    if pos.len() < 2 || pos.len() > 3 {
        usage()
    }
    let n = |s: &str| s.parse().unwrap_or_else(|_| usage());
    Args {
        dir: PathBuf::from(&pos[0]),
        count: n(&pos[1]),
        writers: pos.get(2).map_or(10, |w| n(w)),
        mailboxes: mailboxes.max(1),
        size,
        mode,
    }
}

/// User + system CPU seconds of this process (all threads), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 of stat(5) are 11 and 12 after the command name; USER_HZ is 100
    // on Linux whatever the kernel's HZ.
    (ticks(11) + ticks(12)) / 100.0
}

fn deliver_unnamed(md: &Path, name: &str, payload: &[u8]) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let mut f = OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE)
        .open(md.join("tmp"))?;
    f.write_all(payload)?;
    f.sync_all()?;
    nix::unistd::linkat(
        nix::fcntl::AT_FDCWD,
        format!("/proc/self/fd/{}", f.as_raw_fd()).as_str(),
        nix::fcntl::AT_FDCWD,
        &md.join("new").join(name),
        nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
    )?;
    drop(f);
    File::open(md.join("new"))?.sync_all()
}

fn deliver(md: &Path, name: &str, payload: &[u8], mode: Mode) -> std::io::Result<()> {
    let link = match mode {
        Mode::Unnamed => return deliver_unnamed(md, name, payload),
        Mode::Link => true,
        Mode::Rename => false,
    };
    let tmp = md.join("tmp").join(name);
    let new = md.join("new").join(name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(payload)?;
    f.sync_all()?;
    drop(f);
    if link {
        fs::hard_link(&tmp, &new)?;
    } else {
        fs::rename(&tmp, &new)?;
    }
    File::open(md.join("new"))?.sync_all()?;
    if link {
        fs::remove_file(&tmp)?;
    }
    Ok(())
}

fn main() {
    let a = parse();
    // DIR and its parents with the usual modes; only the Maildirs are private.
    fs::create_dir_all(&a.dir).unwrap_or_else(|e| panic!("{}: {e}", a.dir.display()));
    let mut dirs = Vec::new();
    for i in 0..a.mailboxes {
        let md = a.dir.join(format!("mb{i}")).join("Maildir");
        for sub in ["tmp", "new", "cur"] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(md.join(sub))
                .unwrap_or_else(|e| panic!("{}: {e}", md.display()));
        }
        dirs.push(md);
    }
    // The directories must be durable before the clock starts, as in a real mail root.
    for md in &dirs {
        for d in [md.join("new"), md.join("tmp"), md.clone()] {
            File::open(&d)
                .and_then(|f| f.sync_all())
                .expect("fsync dir");
        }
    }
    let line = [&[b'x'; 75][..], b"\r\n"].concat();
    let payload: Arc<Vec<u8>> = Arc::new(line.iter().copied().cycle().take(a.size).collect());
    let dirs = Arc::new(dirs);
    let start = Arc::new(Barrier::new(a.writers + 1));
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = Arc::new(host.trim().to_string());
    let pid = std::process::id();
    let handles: Vec<_> = (0..a.writers)
        .map(|w| {
            let (dirs, payload, start, host) =
                (dirs.clone(), payload.clone(), start.clone(), host.clone());
            let (count, writers, mode) = (a.count, a.writers, a.mode);
            std::thread::spawn(move || -> std::io::Result<usize> {
                start.wait();
                let mut done = 0;
                for i in (w..count).step_by(writers) {
                    let md = &dirs[i % dirs.len()];
                    deliver(md, &format!("{pid}.W{w}Q{i}.{host}"), &payload, mode)?;
                    done += 1;
                }
                Ok(done)
            })
        })
        .collect();
    let cpu0 = cpu_seconds();
    start.wait();
    let t0 = Instant::now();
    let mut done = 0;
    for h in handles {
        match h.join() {
            Ok(Ok(n)) => done += n,
            Ok(Err(e)) => {
                eprintln!("fsync_ceiling: {e}");
                std::process::exit(1)
            }
            Err(_) => std::process::exit(1),
        }
    }
    let dt = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let present: usize = dirs
        .iter()
        .map(|d| fs::read_dir(d.join("new")).map_or(0, |r| r.count()))
        .sum();
    if done != a.count || present != a.count {
        eprintln!("fsync_ceiling: {present} of {} delivered", a.count);
        std::process::exit(1)
    }
    println!(
        "{} {} {dt:.4} {:.1} {cpu:.3}",
        a.writers,
        a.count,
        a.count as f64 / dt
    );
}
