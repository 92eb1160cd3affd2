//! mbox delivery as qmail-local does it: flock (bounded wait), the `From ` line and the
//! envelope lines, `>From ` quoting, a completed last line and a blank separator line,
//! fsync; on any error the file is truncated back so no partial message remains.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Whether `line` starts with `>*From ` and so needs one more `>`.
fn needs_quote(line: &[u8]) -> bool {
    let rest = &line[line.iter().take_while(|&&b| b == b'>').count()..];
    rest.starts_with(b"From ")
}

fn lock(f: &File, timeout: Duration) -> io::Result<()> {
    let start = Instant::now();
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "file has been locked for {} seconds straight",
                        timeout.as_secs()
                    ),
                ));
            }
            Err(TryLockError::Error(e)) => return Err(e),
        }
    }
}

fn write_message(f: &File, head: &[&[u8]], data: &[u8]) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(64 << 10, f);
    for h in head {
        w.write_all(h)?;
    }
    for line in data.split_inclusive(|&b| b == b'\n') {
        if needs_quote(line) {
            w.write_all(b">")?;
        }
        w.write_all(line)?;
    }
    if !data.is_empty() && !data.ends_with(b"\n") {
        w.write_all(b"\n")?;
    }
    w.write_all(b"\n")?;
    w.flush()
}

/// Append one message to the mbox at `path`.
pub fn deliver(path: &Path, head: &[&[u8]], data: &[u8], lock_timeout: Duration) -> io::Result<()> {
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    lock(&f, lock_timeout)?;
    let before = f.metadata()?.len();
    let result = write_message(&f, head, data).and_then(|()| f.sync_all());
    if let Err(e) = result {
        // Leave the mailbox exactly as it was.
        let _ = f.set_len(before);
        let _ = f.sync_all();
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_quoting_and_separator() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mbox");
        deliver(
            &p,
            &[
                b"From a@b Thu Jan 01 00:00:00 1970\n",
                b"Return-Path: <a@b>\n",
            ],
            b"Subject: x\n\nFrom here\n>From there\nFromage\nno newline",
            Duration::from_secs(1),
        )
        .unwrap();
        deliver(
            &p,
            &[b"From c@d Thu Jan 01 00:00:00 1970\n"],
            b"second\n",
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            b"From a@b Thu Jan 01 00:00:00 1970\nReturn-Path: <a@b>\nSubject: x\n\n>From here\n>>From there\nFromage\nno newline\n\nFrom c@d Thu Jan 01 00:00:00 1970\nsecond\n\n"
        );
    }

    #[test]
    fn a_held_lock_times_out_and_writes_nothing() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("mbox");
        std::fs::write(&p, b"old\n").unwrap();
        let holder = File::open(&p).unwrap();
        holder.lock().unwrap();
        let e = deliver(&p, &[b"From x\n"], b"y\n", Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert_eq!(std::fs::read(&p).unwrap(), b"old\n");
    }

    #[test]
    fn quoting_rule() {
        assert!(needs_quote(b"From x"));
        assert!(needs_quote(b">>From x"));
        assert!(!needs_quote(b"From"));
        assert!(!needs_quote(b" From x"));
    }
}
