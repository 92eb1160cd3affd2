//! `|program` lines: `/bin/sh -c` in the home directory as the entry's uid/gid, with
//! qmail-local's environment, the message on a seekable stdin (without the envelope
//! lines, which the program gets as RPLINE/DTLINE), qmail's exit-code meanings and a
//! time limit after which the whole process group is killed.

use std::ffi::OsStr;
use std::io::{Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::engine::LocalTarget;
use crate::qmail::quote::{ext_n, host_n};

/// Output kept for the log and the bounce.
const MAX_REPORT: usize = 1000;

pub struct Run<'a> {
    pub command: &'a [u8],
    pub target: &'a LocalTarget,
    pub sender: &'a [u8],
    pub newsender: &'a [u8],
    pub data: &'a [u8],
    pub rpline: &'a [u8],
    pub dtline: &'a [u8],
    pub ufline: &'a [u8],
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Result {
    /// Exit 0.
    Continue,
    /// Exit 99: success, and skip the rest of the `.qmail` file.
    Stop,
    Permanent(String),
    Temporary(String),
}

/// qmail-local's reading of a program's exit code.
pub fn classify(code: Option<i32>, output: &str) -> Result {
    match code {
        Some(0) => Result::Continue,
        Some(99) => Result::Stop,
        Some(c @ (100 | 64 | 65 | 70 | 76 | 77 | 78 | 112)) => {
            Result::Permanent(format!("exit {c}: {output}"))
        }
        Some(c) => Result::Temporary(format!("exit {c}: {output}")),
        None => Result::Temporary(format!("program crashed: {output}")),
    }
}

fn env_vars(r: &Run) -> Vec<(&'static str, Vec<u8>)> {
    let t = r.target;
    let mut recipient = t.local.clone();
    recipient.push(b'@');
    recipient.extend_from_slice(&t.domain);
    let mut v = vec![
        ("USER", t.user.clone()),
        ("HOME", t.home.as_os_str().as_bytes().to_vec()),
        ("LOCAL", t.local.clone()),
        ("HOST", t.domain.clone()),
        ("RECIPIENT", recipient),
        ("SENDER", r.sender.to_vec()),
        ("NEWSENDER", r.newsender.to_vec()),
        ("EXT", t.ext.clone()),
        ("EXT2", ext_n(&t.ext, 2)),
        ("EXT3", ext_n(&t.ext, 3)),
        ("EXT4", ext_n(&t.ext, 4)),
        ("HOST2", host_n(&t.domain, 2)),
        ("HOST3", host_n(&t.domain, 3)),
        ("HOST4", host_n(&t.domain, 4)),
        ("DTLINE", r.dtline.to_vec()),
        ("RPLINE", r.rpline.to_vec()),
        ("UFLINE", r.ufline.to_vec()),
        ("PATH", b"/usr/local/bin:/usr/bin:/bin".to_vec()),
    ];
    if let Some(d) = &t.default_part {
        v.push(("DEFAULT", d.clone()));
    }
    v
}

/// Run one program line to completion (or its time limit).
pub fn run(r: &Run) -> Result {
    let t = r.target;
    let me = nix::unistd::Uid::effective();
    let my_gid = nix::unistd::Gid::effective().as_raw();
    if !me.is_root() && (me.as_raw() != t.uid || my_gid != t.gid) {
        return Result::Temporary(format!(
            "cannot run a program as uid {} gid {} while running as uid {} gid {my_gid}; give the entry the mail user's uid and gid or use `turnmail deliver` under qmail",
            t.uid,
            t.gid,
            me.as_raw()
        ));
    }
    // A seekable stdin, as qmail gives: an unlinked temporary file.
    let mut stdin = match tempfile::tempfile() {
        Ok(f) => f,
        Err(e) => return Result::Temporary(format!("temporary file for stdin: {e}")),
    };
    if let Err(e) = stdin.write_all(r.data).and_then(|()| stdin.rewind()) {
        return Result::Temporary(format!("writing stdin: {e}"));
    }
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(OsStr::from_bytes(r.command))
        .current_dir(&t.home)
        .env_clear()
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    for (k, v) in env_vars(r) {
        cmd.env(k, OsStr::from_bytes(&v));
    }
    if me.is_root() {
        crate::privilege::command_as(&mut cmd, t.uid, t.gid);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Result::Temporary(format!("unable to run /bin/sh: {e}")),
    };
    let pgid = child.id() as i32;
    // Collect stdout and stderr on threads so a chatty program cannot block on a full
    // pipe while we wait for it.
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|mut s| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let room = MAX_REPORT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            kept
        })
    })
    .collect();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let status = child.wait();
        let _ = tx.send(());
        status
    });
    let timed_out = rx.recv_timeout(r.timeout).is_err();
    if timed_out {
        // The whole group: the shell and anything it started.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pgid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let status = waiter.join();
    let mut output = Vec::new();
    for h in readers {
        if let Ok(k) = h.join() {
            output.extend(k);
        }
    }
    output.truncate(MAX_REPORT);
    let text: String = String::from_utf8_lossy(&output)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string();
    if timed_out {
        return Result::Temporary(format!("program timed out after {} s", r.timeout.as_secs()));
    }
    match status {
        Ok(Ok(s)) => classify(if s.signal().is_some() { None } else { s.code() }, &text),
        _ => Result::Temporary("lost track of the program".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_as_qmail() {
        assert_eq!(classify(Some(0), ""), Result::Continue);
        assert_eq!(classify(Some(99), ""), Result::Stop);
        for c in [100, 64, 65, 70, 76, 77, 78, 112] {
            assert!(matches!(classify(Some(c), ""), Result::Permanent(_)), "{c}");
        }
        for c in [1, 111, 75, 2] {
            assert!(matches!(classify(Some(c), ""), Result::Temporary(_)), "{c}");
        }
        assert!(matches!(classify(None, ""), Result::Temporary(_)));
    }
}
