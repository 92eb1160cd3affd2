//! `ROOT/queue/`: the outbound spool for forwards, bounces, relayed mail and local
//! deliveries that failed temporarily. It is a Maildir of spool files (see
//! `envelope`), one recipient per file, so a retry never delivers to a recipient twice;
//! a local delivery stopped half-way is queued with what is left of it (`resume.rs`).

use std::path::{Path, PathBuf};

use crate::spool::{envelope, resume};
use crate::maildir::{DeliverError, Delivered, Maildir};
use crate::qmail::dotqmail::Instruction;

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
        self.write(None, sender, recipient, message)
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
        self.write(line.as_deref(), sender, recipient, message)
    }

    fn write(
        &self,
        first: Option<&[u8]>,
        sender: &[u8],
        recipient: &[u8],
        message: &[&[u8]],
    ) -> Result<Delivered, DeliverError> {
        if !self.maildir.path().join("new").is_dir()
            && let Err(e) = Maildir::create(self.maildir.path())
        {
            tracing::warn!(target: "queue", "creating {}: {e}", self.maildir.path().display());
        }
        let (rp, dt) = envelope::lines(sender, recipient);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(message.len() + 3);
        parts.extend(first);
        parts.push(&rp);
        parts.push(&dt);
        parts.extend_from_slice(message);
        self.maildir.deliver(&parts)
    }

    pub fn new_dir(&self) -> PathBuf {
        self.maildir.path().join("new")
    }
}
