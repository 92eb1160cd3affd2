//! `ROOT/queue/`: the outbound spool for forwards, bounces, relayed mail and local
//! deliveries that failed temporarily. It is a Maildir of spool files (see
//! `envelope`), one recipient per file, so a retry never delivers to a recipient twice;
//! a local delivery stopped half-way is queued with what is left of it (`resume.rs`),
//! and the files of one message with several recipients share a group line
//! (`spool/group.rs`) so that they leave together.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::maildir::{DeliverError, DeliverStep, Delivered, Entry, Maildir};
use crate::qmail::dotqmail::Instruction;
use crate::spool::envelope::Format;
use crate::spool::scan::Spooled;
use crate::spool::{envelope, group, resume};

#[derive(Debug, Clone)]
pub struct Queue {
    maildir: Maildir,
}

impl Queue {
    pub fn new(root: &Path) -> Queue {
        Queue {
            maildir: Maildir::new(root.join("queue")),
        }
    }

    pub fn path(&self) -> &Path {
        self.maildir.path()
    }

    pub fn maildir(&self) -> &Maildir {
        &self.maildir
    }

    /// Durably add one message for one recipient. The parts are the message (LF line
    /// ends); the envelope lines are added here.
    pub fn enqueue(
        &self,
        sender: &[u8],
        recipient: &[u8],
        message: &[&[u8]],
    ) -> Result<Delivered, DeliverError> {
        self.write(None, None, sender, recipient, message)
    }

    /// Durably add one message for several recipients: one file each, sharing a
    /// fresh group token (one recipient: a plain file). All or nothing: when a write
    /// fails, the files already written are removed again, so the caller's temporary
    /// failure is not followed by a second copy on the retry.
    pub fn enqueue_group(
        &self,
        sender: &[u8],
        recipients: &[&[u8]],
        message: &[&[u8]],
    ) -> Result<Vec<Delivered>, DeliverError> {
        self.write_group(sender, recipients, message)
            .map(|(_, done)| done)
    }

    /// As [`Queue::enqueue_group`], and each file also as a scan of the queue would
    /// find it, so that the caller can send it at once without reading it back.
    pub fn enqueue_group_spooled(
        &self,
        sender: &[u8],
        recipients: &[&[u8]],
        message: &[&[u8]],
    ) -> Result<(Vec<Delivered>, Vec<Spooled>), DeliverError> {
        let (line, done) = self.write_group(sender, recipients, message)?;
        let now = SystemTime::now();
        let spooled = done
            .iter()
            .zip(recipients)
            .filter_map(|(d, r)| spooled(d, line.as_deref(), sender, r, now))
            .collect();
        Ok((done, spooled))
    }

    /// The files of one message and their group line (none for one recipient).
    fn write_group(
        &self,
        sender: &[u8],
        recipients: &[&[u8]],
        message: &[&[u8]],
    ) -> Result<(Option<Vec<u8>>, Vec<Delivered>), DeliverError> {
        let line = match recipients {
            [] => return Ok((None, Vec::new())),
            [one] => {
                return self.enqueue(sender, one, message).map(|d| (None, vec![d]));
            }
            _ => group::line(new_token().as_bytes()),
        };
        let mut done = Vec::with_capacity(recipients.len());
        for r in recipients {
            match self.write(line.as_deref(), None, sender, r, message) {
                Ok(d) => done.push(d),
                Err(e) => {
                    for d in &done {
                        if let Err(rm) = std::fs::remove_file(&d.path) {
                            tracing::warn!(target: "queue", file = %d.name, "removing a queued copy after a failed group write: {rm} (it will be sent)");
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok((line, done))
    }

    /// Durably add a local delivery of which only `rest` is left to do (see
    /// `resume.rs`). A `rest` too long for its line is queued as a whole delivery
    /// instead, with a log line: its retry repeats the copies already made, which is
    /// better than losing the ones not made.
    pub fn enqueue_rest(
        &self,
        sender: &[u8],
        recipient: &[u8],
        rest: &[(usize, Instruction)],
        message: &[&[u8]],
    ) -> Result<Delivered, DeliverError> {
        let line = resume::line(rest);
        if line.is_none() {
            tracing::warn!(
                target: "queue",
                recipient = %String::from_utf8_lossy(recipient),
                "{} instructions left are too many to resume; the whole delivery is queued and its retry repeats the copies already made",
                rest.len()
            );
        }
        self.write(None, line.as_deref(), sender, recipient, message)
    }

    fn write(
        &self,
        group: Option<&[u8]>,
        first: Option<&[u8]>,
        sender: &[u8],
        recipient: &[u8],
        message: &[&[u8]],
    ) -> Result<Delivered, DeliverError> {
        let (rp, dt) = envelope::lines(sender, recipient);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(message.len() + 4);
        parts.extend(group);
        parts.extend(first);
        parts.push(&rp);
        parts.push(&dt);
        parts.extend_from_slice(message);
        if let Some(spare) = super::spare::of(self.maildir.path()).take() {
            match self.maildir.deliver_over(&spare, &parts) {
                Ok(d) => return Ok(d),
                // The spare is gone with its trouble; a new file may still do.
                Err(e) => tracing::debug!(target: "queue", "writing over a spare file: {e}"),
            }
        }
        match self.maildir.deliver(&parts) {
            // The queue is made when first needed (a failed step leaves nothing).
            Err(e)
                if e.io_error().kind() == std::io::ErrorKind::NotFound
                    && matches!(e.step(), DeliverStep::CreateTmp | DeliverStep::Link) =>
            {
                if let Err(e) = Maildir::create(self.maildir.path()) {
                    tracing::warn!(target: "queue", "creating {}: {e}", self.maildir.path().display());
                }
                self.maildir.deliver(&parts)
            }
            done => done,
        }
    }

    pub fn new_dir(&self) -> PathBuf {
        self.maildir.path().join("new")
    }
}

/// A file just written as a scan finds it: its envelope read back from the lines
/// written (the same parser, so the same result), its time taken as now.
fn spooled(
    d: &Delivered,
    group: Option<&[u8]>,
    sender: &[u8],
    recipient: &[u8],
    now: SystemTime,
) -> Option<Spooled> {
    let (rp, dt) = envelope::lines(sender, recipient);
    let mut head = Vec::with_capacity(group.map_or(0, <[u8]>::len) + rp.len() + dt.len());
    head.extend(group.unwrap_or_default());
    head.extend_from_slice(&rp);
    head.extend_from_slice(&dt);
    let envelope = envelope::parse_in(&head, Format::Queue)?;
    Some(Spooled {
        entry: Entry {
            rel: format!("new/{}", d.name),
            unique: d.name.clone(),
            path: d.path.clone(),
            mtime: now,
            size: d.size,
            in_new: true,
        },
        envelope,
    })
}

/// A group token no other message has: time, process, a counter and 64 random bits
/// (a token shared by mistake would send one message's text to another's recipients).
fn new_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!(
        "{secs}.{}.{}.{:016x}",
        crate::pid::pid(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand::random::<u64>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::envelope::{Format, parse_in};

    #[test]
    fn a_group_shares_one_token_and_a_single_recipient_has_none() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::new(dir.path());
        let got = q
            .enqueue_group(b"s@x", &[b"a@y", b"b@y", b"c@z"], &[b"Subject: x\n\nhi\n"])
            .unwrap();
        assert_eq!(got.len(), 3);
        let envs: Vec<_> = got
            .iter()
            .map(|d| parse_in(&std::fs::read(&d.path).unwrap(), Format::Queue).unwrap())
            .collect();
        let token = envs[0].group.clone().unwrap();
        assert!(envs.iter().all(|e| e.group.as_ref() == Some(&token)));
        let rcpts: Vec<_> = envs.iter().map(|e| e.recipient.clone()).collect();
        assert_eq!(rcpts, [b"a@y".to_vec(), b"b@y".to_vec(), b"c@z".to_vec()]);
        let other = q
            .enqueue_group(b"s@x", &[b"a@y", b"b@y"], &[b"x\n"])
            .unwrap();
        let e = parse_in(&std::fs::read(&other[0].path).unwrap(), Format::Queue).unwrap();
        assert_ne!(e.group, Some(token));
        let one = q.enqueue_group(b"s@x", &[b"a@y"], &[b"x\n"]).unwrap();
        let e = parse_in(&std::fs::read(&one[0].path).unwrap(), Format::Queue).unwrap();
        assert_eq!(e.group, None);
    }

    #[test]
    fn files_handed_back_are_what_a_scan_of_the_queue_finds() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::new(dir.path());
        let text: &[u8] = b"Subject: x\n\nhi\n";
        for rcpts in [&[&b"a@y"[..], b"\"odd name\"@z"][..], &[b"one@y"]] {
            let (done, spooled) = q.enqueue_group_spooled(b"s@x", rcpts, &[text]).unwrap();
            assert_eq!(done.len(), rcpts.len());
            assert_eq!(spooled.len(), rcpts.len());
            for (d, s) in done.iter().zip(&spooled) {
                let on_disk = std::fs::read(&d.path).unwrap();
                let scanned = parse_in(&on_disk, Format::Queue).unwrap();
                assert_eq!(s.envelope.sender, scanned.sender);
                assert_eq!(s.envelope.recipient, scanned.recipient);
                assert_eq!(s.envelope.group, scanned.group);
                assert_eq!(s.envelope.body_offset, scanned.body_offset);
                assert_eq!(&on_disk[s.envelope.body_offset..], text);
                assert_eq!(s.entry.path, d.path);
                assert_eq!(s.entry.rel, format!("new/{}", d.name));
                assert_eq!(s.entry.unique, d.name);
                assert_eq!(s.entry.size, on_disk.len() as u64);
            }
        }
    }
}
