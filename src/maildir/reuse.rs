//! Delivery into a file already in `tmp/`: a spare file the outbound queue kept from
//! a message already sent (`outbound/spare.rs`), written over from its start, cut to
//! the new length, fsynced, then moved into `new/` exactly as qmail's `tmp/` file is.
//!
//! It saves the file system an inode allocated and freed per message (on ext4 without
//! a journal the allocator also steps over every inode freed in the last minutes,
//! which makes a busy queue slower the longer it runs), at the price of a rename to
//! take the spare and the rename into `new/` instead of a link. Until the rename into
//! `new/` nothing of it is a message: a crash leaves a `tmp/` file that
//! [`super::Maildir::clean_tmp`] removes.

use std::ffi::OsStr;
use std::fs::{OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{
    DeliverError, DeliverStep, Delivered, MAX_LINK_ATTEMPTS, discard, link_into_new, next_name,
    write_all_parts,
};
use crate::fsutil::fsync_dir;

pub(super) fn deliver(
    maildir: &Path,
    tmp_name: &OsStr,
    parts: &[&[u8]],
    size: u64,
    crlf: u64,
    fault: &dyn Fn(DeliverStep) -> io::Result<()>,
) -> Result<Delivered, DeliverError> {
    let tmp_path = maildir.join("tmp").join(tmp_name);
    let written = write_over(&tmp_path, parts, size, fault);
    if let Err((step, e)) = written {
        discard(&tmp_path);
        return Err(DeliverError::at(step, tmp_path, e));
    }
    let new_dir = maildir.join("new");
    let mut attempt = 0;
    let (name, new_path) = loop {
        attempt += 1;
        let name = next_name(size, crlf);
        let new_path = new_dir.join(&name);
        match link_into_new(&tmp_path, &new_path, fault) {
            Ok(gone) => {
                if !gone {
                    discard(&tmp_path);
                }
                break (name, new_path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < MAX_LINK_ATTEMPTS => {}
            Err(e) => {
                discard(&tmp_path);
                return Err(DeliverError::at(DeliverStep::Link, new_path, e));
            }
        }
    };
    if let Err(e) = fault(DeliverStep::FsyncNew).and_then(|()| fsync_dir(&new_dir)) {
        discard(&new_path);
        return Err(DeliverError::at(DeliverStep::FsyncNew, new_dir, e));
    }
    Ok(Delivered {
        name,
        path: new_path,
        size,
        crlf_size: crlf,
    })
}

/// Overwrite the file at `path` with `parts` (exactly `size` bytes) and fsync it. Only
/// a plain file with no other name is written: a hard link elsewhere would be
/// changed too.
fn write_over(
    path: &Path,
    parts: &[&[u8]],
    size: u64,
    fault: &dyn Fn(DeliverStep) -> io::Result<()>,
) -> Result<(), (DeliverStep, io::Error)> {
    let opened = fault(DeliverStep::CreateTmp).and_then(|()| {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() || meta.nlink() != 1 {
            return Err(io::Error::other("not a plain file with one name"));
        }
        if meta.mode() & 0o7777 != 0o600 {
            file.set_permissions(Permissions::from_mode(0o600))?;
        }
        Ok((file, meta.len()))
    });
    let (mut file, old_len) = opened.map_err(|e| (DeliverStep::CreateTmp, e))?;
    fault(DeliverStep::Write)
        .and_then(|()| write_all_parts(&mut file, parts))
        .and_then(|()| {
            if old_len > size {
                file.set_len(size)
            } else {
                Ok(())
            }
        })
        .map_err(|e| (DeliverStep::Write, e))?;
    fault(DeliverStep::Fsync)
        .and_then(|()| file.sync_all())
        .map_err(|e| (DeliverStep::Fsync, e))
}
