//! `ROOT/queue/`: the outbound spool for forwards, bounces, relayed mail and local
//! deliveries that failed temporarily. It is a Maildir of spool files (see
//! `envelope`), one recipient per file, so a retry never delivers to a recipient twice.

use std::path::{Path, PathBuf};

use super::envelope;
use crate::maildir::{DeliverError, Delivered, Maildir};

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
        if !self.maildir.path().join("new").is_dir()
            && let Err(e) = Maildir::create(self.maildir.path())
        {
            tracing::warn!(target: "queue", "creating {}: {e}", self.maildir.path().display());
        }
        let (rp, dt) = envelope::lines(sender, recipient);
        let mut parts: Vec<&[u8]> = Vec::with_capacity(message.len() + 2);
        parts.push(&rp);
        parts.push(&dt);
        parts.extend_from_slice(message);
        self.maildir.deliver(&parts)
    }

    pub fn new_dir(&self) -> PathBuf {
        self.maildir.path().join("new")
    }
}
