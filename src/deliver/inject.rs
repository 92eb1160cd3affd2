//! `turnmail deliver`: one message from stdin, delivered by the same engine and rules as
//! SMTP, for use behind another MTA. Two calling conventions, two sets of exit codes:
//!
//! * behind qmail, as a `.qmail` program line (`|turnmail deliver`): the recipient comes
//!   from qmail-local's environment and the exit code is qmail's (0, 100, 111);
//! * as Postfix's pipe(8) transport (`turnmail deliver -f SENDER -- RECIPIENT...`): the
//!   exit code is a sysexits code (0, 67 unknown user, 69 unavailable, 75 try later).

use std::time::Duration;

use super::DeliverEnv;
use super::transaction::{self, Verdict};
use crate::engine::{Engine, Resolution};
use crate::outbound::queue::Queue;

/// Which caller's exit codes to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    Qmail,
    Sysexits,
}

/// How one invocation ended, before it becomes an exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InjectResult {
    Delivered,
    Temporary(String),
    Permanent(String),
    UnknownUser(String),
    Usage(String),
}

impl InjectResult {
    pub fn exit_code(&self, c: Convention) -> u8 {
        match (self, c) {
            (InjectResult::Delivered, _) => 0,
            (InjectResult::Temporary(_), Convention::Qmail) => 111,
            (InjectResult::Temporary(_), Convention::Sysexits) => 75,
            (InjectResult::Permanent(_) | InjectResult::UnknownUser(_), Convention::Qmail) => 100,
            (InjectResult::Permanent(_), Convention::Sysexits) => 69,
            (InjectResult::UnknownUser(_), Convention::Sysexits) => 67,
            (InjectResult::Usage(_), Convention::Qmail) => 100,
            (InjectResult::Usage(_), Convention::Sysexits) => 64,
        }
    }

    pub fn message(&self) -> Option<&str> {
        match self {
            InjectResult::Delivered => None,
            InjectResult::Temporary(m)
            | InjectResult::Permanent(m)
            | InjectResult::UnknownUser(m)
            | InjectResult::Usage(m) => Some(m),
        }
    }
}

/// The recipient qmail-local describes in the environment: `$DEFAULT@$HOST` when a
/// `-default` file chose us (the catch-all case), else `$EXT@$HOST`, else `$RECIPIENT`.
pub fn qmail_recipient(get: impl Fn(&str) -> Option<String>) -> Option<String> {
    let host = get("HOST").filter(|h| !h.is_empty());
    for var in ["DEFAULT", "EXT"] {
        if let (Some(v), Some(h)) = (get(var).filter(|v| !v.is_empty()), &host) {
            return Some(format!("{v}@{h}"));
        }
    }
    get("RECIPIENT").filter(|r| !r.is_empty())
}

/// Deliver `data` from `sender` to `recipients` through the engine (no rcpthosts check:
/// the calling MTA already accepted the message).
pub fn inject(
    engine: &Engine,
    hostname: &str,
    sender: &[u8],
    recipients: &[Vec<u8>],
    data: &[u8],
    now: u64,
) -> InjectResult {
    if recipients.is_empty() {
        return InjectResult::Usage("no recipient given".into());
    }
    if data.len() as u64 > engine.config().limits.max_message_size {
        return InjectResult::Permanent("message is larger than max_message_size".into());
    }
    let mut resolved = Vec::with_capacity(recipients.len());
    for r in recipients {
        match engine.resolve(r, false) {
            Ok(res @ (Resolution::Local(_) | Resolution::Trash | Resolution::Relay { .. })) => {
                resolved.push((r.clone(), res))
            }
            Ok(Resolution::Unknown { reason }) => {
                return InjectResult::UnknownUser(format!(
                    "{}: {reason}",
                    String::from_utf8_lossy(r)
                ));
            }
            Ok(other) => {
                return InjectResult::Permanent(format!(
                    "{}: {other:?}",
                    String::from_utf8_lossy(r)
                ));
            }
            Err(e) => return InjectResult::Temporary(e.to_string()),
        }
    }
    let config = engine.config();
    let env = DeliverEnv {
        queue: Queue::new(&engine.paths().root),
        allow_programs: config.allow_programs,
        program_timeout: Duration::from_secs(config.limits.program_timeout_secs),
        mbox_lock_timeout: Duration::from_secs(30),
        quota: config.quota.clone(),
    };
    let report = transaction::deliver_message(&env, hostname, sender, &resolved, data, now);
    match report.verdict {
        Verdict::Accepted => InjectResult::Delivered,
        Verdict::Temporary(m) => InjectResult::Temporary(m),
        Verdict::Permanent(m) => InjectResult::Permanent(m),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        use Convention::*;
        let t = |r: InjectResult| (r.exit_code(Qmail), r.exit_code(Sysexits));
        assert_eq!(t(InjectResult::Delivered), (0, 0));
        assert_eq!(t(InjectResult::Temporary(String::new())), (111, 75));
        assert_eq!(t(InjectResult::Permanent(String::new())), (100, 69));
        assert_eq!(t(InjectResult::UnknownUser(String::new())), (100, 67));
        assert_eq!(t(InjectResult::Usage(String::new())), (100, 64));
    }

    #[test]
    fn recipient_from_qmail_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            qmail_recipient(env(&[
                ("DEFAULT", "joe"),
                ("EXT", "tm-joe"),
                ("HOST", "example.com")
            ])),
            Some("joe@example.com".into())
        );
        assert_eq!(
            qmail_recipient(env(&[("EXT", "joe"), ("HOST", "example.com")])),
            Some("joe@example.com".into())
        );
        assert_eq!(
            qmail_recipient(env(&[("RECIPIENT", "a@b")])),
            Some("a@b".into())
        );
        assert_eq!(qmail_recipient(env(&[])), None);
    }
}
