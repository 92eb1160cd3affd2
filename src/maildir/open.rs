//! The one way a message file is opened for reading: POP3, the spool listing's readers,
//! the flush, the outbound queue and `turnmail queue` all come here.
//!
//! A Maildir's `new/` and `cur/` can be written by anything running as the mail user (a
//! `|program` line, a mail reader), so a name there may be a symlink to a secret
//! (`users/poppasswd`, the TLS key), a FIFO that would block an open forever, a device
//! or a directory. None of them is a message: the last path component is never
//! followed (`O_NOFOLLOW`), the open never waits for a writer (`O_NONBLOCK`, cleared
//! again for the reads), and only a regular file is handed back, judged by `fstat` on
//! the open descriptor, so a name swapped after a listing cannot slip through.
//!
//! Hard links are not caught: a hard link in a Maildir is a file its owner could read
//! anyway (the kernel's protected_hardlinks refuses links to other users' files).

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Why a message file was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Something other than a regular file sits under the message's name.
    #[error("not a regular file ({0}), refused")]
    NotRegular(&'static str),
    /// The file is larger than the reader's limit.
    #[error("larger than {0} bytes")]
    TooLarge(u64),
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl OpenError {
    /// Whether the file simply is not there (any more): not worth a log line.
    pub fn is_not_found(&self) -> bool {
        matches!(self, OpenError::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

impl From<OpenError> for io::Error {
    fn from(e: OpenError) -> io::Error {
        match e {
            OpenError::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
        }
    }
}

/// What a non-regular file type is called in log lines.
pub fn kind_name(t: std::fs::FileType) -> &'static str {
    if t.is_symlink() {
        "symlink"
    } else if t.is_dir() {
        "directory"
    } else if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() || t.is_char_device() {
        "device"
    } else if t.is_file() {
        "regular file"
    } else {
        "unknown type"
    }
}

/// Open the message at `path` for reading: a regular file, never through a symlink,
/// never blocking on a FIFO. `O_NONBLOCK` stays set: it means nothing for a regular
/// file (reads of one never return EAGAIN), and clearing it would cost two system
/// calls for every message a POP3 client retrieves.
pub fn open_message(path: &Path) -> Result<File, OpenError> {
    open_message_sized(path).map(|(f, _)| f)
}

/// [`open_message`], with the file's length from the same `fstat` (a reader that
/// stops at it saves the read that would only say end of file).
pub fn open_message_sized(path: &Path) -> Result<(File, u64), OpenError> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            // O_NOFOLLOW's answer for a symlink as the last component.
            Some(libc::ELOOP) => OpenError::NotRegular("symlink"),
            _ => OpenError::Io(e),
        })?;
    let meta = file.metadata()?;
    let t = meta.file_type();
    if !t.is_file() {
        return Err(OpenError::NotRegular(kind_name(t)));
    }
    Ok((file, meta.len()))
}

/// Read up to `limit` bytes of the message at `path` (its head).
pub fn read_head(path: &Path, limit: usize) -> Result<Vec<u8>, OpenError> {
    let mut head = Vec::with_capacity(limit.min(8192));
    open_message(path)?
        .take(limit as u64)
        .read_to_end(&mut head)?;
    Ok(head)
}

/// Read the whole message at `path`, refusing one larger than `limit` bytes.
pub fn read_message(path: &Path, limit: u64) -> Result<Vec<u8>, OpenError> {
    let (f, len) = open_message_sized(path)?;
    // Room for the whole file up front (and one byte more, to see its end): two reads,
    // not one per doubling of a growing buffer.
    let mut buf = Vec::with_capacity(len.min(limit).saturating_add(1) as usize);
    let n = f.take(limit + 1).read_to_end(&mut buf)?;
    if n as u64 > limit {
        return Err(OpenError::TooLarge(limit));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_open() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        std::fs::write(p("msg"), b"hello\n").unwrap();
        std::fs::write(p("secret"), b"hash\n").unwrap();
        std::os::unix::fs::symlink(p("secret"), p("link")).unwrap();
        std::fs::create_dir(p("dir")).unwrap();
        nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

        assert_eq!(read_message(&p("msg"), 100).unwrap(), b"hello\n");
        assert_eq!(read_head(&p("msg"), 3).unwrap(), b"hel");
        for (name, kind) in [("link", "symlink"), ("dir", "directory"), ("fifo", "FIFO")] {
            match open_message(&p(name)) {
                Err(OpenError::NotRegular(k)) => assert_eq!(k, kind, "{name}"),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert!(open_message(&p("missing")).unwrap_err().is_not_found());
        assert!(matches!(
            read_message(&p("msg"), 5),
            Err(OpenError::TooLarge(5))
        ));
        let e: io::Error = OpenError::NotRegular("FIFO").into();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_regular_file_reads_whole_and_its_length_comes_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m");
        let body = vec![b'x'; 300_000];
        std::fs::write(&p, &body).unwrap();
        let (mut f, len) = open_message_sized(&p).unwrap();
        assert_eq!(len, body.len() as u64);
        // O_NONBLOCK stays set, and means nothing for a regular file.
        let mut got = Vec::new();
        f.read_to_end(&mut got).unwrap();
        assert_eq!(got, body);
    }
}
