//! Local delivery: carrying out a resolved recipient's `.qmail` instructions in order,
//! exactly as qmail-local does: the Delivered-To loop check first, Maildir and mbox and
//! program lines immediately, forwards collected and queued last with qmail's sender
//! rules. The first failing instruction stops everything and decides the outcome; a
//! temporary failure after deliveries were made says what is left to do
//! ([`Outcome::Partial`]), so that a retry resumes there instead of repeating them
//! (qmail-local starts over, and duplicates).
//!
//! This is blocking code (file and process I/O); async callers run it on a blocking
//! thread. The message is in memory with LF line ends.

pub mod inject;
pub mod mbox;
pub mod program;
pub mod transaction;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::Duration;

use crate::engine::LocalTarget;
use crate::maildir::Maildir;
use crate::outbound::dsn::DOUBLE_BOUNCE_SENDER;
use crate::outbound::queue::Queue;
use crate::qmail::dotqmail::{Instruction, safe_ext};
use crate::qmail::quote;

/// A message as delivery sees it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    pub sender: &'a [u8],
    /// The message with LF line ends (a Received line already on top).
    pub data: &'a [u8],
}

/// Settings and places delivery needs.
#[derive(Debug, Clone)]
pub struct DeliverEnv {
    pub queue: Queue,
    pub allow_programs: bool,
    pub program_timeout: Duration,
    pub mbox_lock_timeout: Duration,
    /// `[quota]`: what a delivery past a Maildir's quota does, the warning level.
    pub quota: crate::quota::QuotaSettings,
}

/// How one recipient's delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Everything done: counts of file (maildir+mbox), forward and program deliveries.
    Delivered {
        files: usize,
        forwards: usize,
        programs: usize,
    },
    /// Try again later: nothing was delivered.
    Temporary(String),
    /// Some deliveries were made (files written, programs run), then one failed
    /// temporarily: a retry must carry out `rest` only (the failed instruction, those
    /// after it, and forwards not queued yet), or it would repeat the copies made.
    Partial {
        why: String,
        rest: Vec<(usize, Instruction)>,
    },
    /// Give up and bounce, with an enhanced status code.
    Permanent {
        status: &'static str,
        reason: String,
    },
}

impl Outcome {
    fn temp(s: impl Into<String>) -> Outcome {
        Outcome::Temporary(s.into())
    }
}

/// Whether the header of `data` already holds exactly our Delivered-To line.
pub fn is_looping(data: &[u8], dtline: &[u8]) -> bool {
    let mut i = 0;
    while i < data.len() {
        let end = data[i..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(data.len(), |p| i + p + 1);
        let line = &data[i..end];
        if line.len() <= 1 {
            return false;
        }
        if line == dtline {
            return true;
        }
        i = end;
    }
    false
}

/// qmail's NEWSENDER: bounces keep their sender; a `-owner` file next to the chosen
/// `.qmail` makes the list owner the sender of forwards.
fn new_sender(t: &LocalTarget, sender: &[u8]) -> Vec<u8> {
    if sender.is_empty() || sender == DOUBLE_BOUNCE_SENDER {
        return sender.to_vec();
    }
    let mut name = b".qmail".to_vec();
    name.extend_from_slice(&t.dash);
    name.extend_from_slice(&safe_ext(&t.ext));
    name.extend_from_slice(b"-owner");
    if !name.contains(&b'/') && t.home.join(OsStr::from_bytes(&name)).is_file() {
        let mut s = t.local.clone();
        s.extend_from_slice(b"-owner@");
        s.extend_from_slice(&t.domain);
        return s;
    }
    sender.to_vec()
}

fn path_in_home(t: &LocalTarget, p: &[u8]) -> PathBuf {
    t.home.join(OsStr::from_bytes(p))
}

/// Maildir and mbox lines write as the entry's uid/gid (see `privilege::files_as`):
/// a process that cannot act as that user defers the message, as qmail-lspawn would
/// never write as anyone else. A file written as the mail user instead would sit in
/// the user's mailbox unreadable to its owner.
fn files_as(t: &LocalTarget) -> Result<crate::privilege::FilesAs, Outcome> {
    crate::privilege::files_as(t.uid, t.gid).map_err(|e| {
        tracing::warn!(
            target: "deliver",
            address = %String::from_utf8_lossy(&t.address),
            user = %String::from_utf8_lossy(&t.user),
            uid = t.uid,
            gid = t.gid,
            euid = e.euid,
            egid = e.egid,
            "deferred: the users/assign entry names another uid/gid than this process can write as"
        );
        Outcome::temp(format!(
            "{e} (users/assign entry {}); give the entry the mail user's uid and gid, or deliver through `turnmail deliver` under qmail",
            String::from_utf8_lossy(&t.user)
        ))
    })
}

/// Checked before any instruction runs, so that a program line before a Maildir line
/// is not run again on every retry of a delivery that can never write its files.
fn cannot_write_as(t: &LocalTarget) -> Option<Outcome> {
    let writes_files = t
        .instructions
        .instructions
        .iter()
        .any(|(_, i)| matches!(i, Instruction::Maildir(_) | Instruction::Mbox(_)));
    if !writes_files {
        return None;
    }
    files_as(t).err()
}

/// Deliver one message to one resolved local recipient.
pub fn deliver_local(t: &LocalTarget, msg: &Message, env: &DeliverEnv, now: u64) -> Outcome {
    let dtline = quote::dtline(&t.address);
    if is_looping(msg.data, &dtline) {
        return Outcome::Permanent {
            status: "5.4.6",
            reason: "This message is looping: it already has my Delivered-To line.".into(),
        };
    }
    if let Some(refused) = cannot_write_as(t) {
        return refused;
    }
    let rpline = quote::rpline(msg.sender);
    let all = &t.instructions.instructions;
    let mut forwards: Vec<(usize, &[u8])> = Vec::new();
    // Deliveries made so far: files written, programs that succeeded.
    let (mut files, mut programs) = (0, 0);
    for (at, (line, ins)) in all.iter().enumerate() {
        let done = files + programs;
        match ins {
            Instruction::Maildir(p) => {
                let md = Maildir::new(path_in_home(t, p));
                let parts: [&[u8]; 3] = [&rpline, &dtline, msg.data];
                let written = match files_as(t) {
                    Ok(_as) => match maildir_with_quota(t, &md, &parts, env) {
                        Ok(w) => w,
                        Err(full) => return stopped(all, at, done, full),
                    },
                    Err(refused) => return stopped(all, at, done, refused),
                };
                if let Err(e) = written {
                    let why = format!("maildir delivery (.qmail line {line}): {e}");
                    return stopped(all, at, done, Outcome::Temporary(why));
                }
                files += 1;
            }
            Instruction::Mbox(p) => {
                let uf = quote::ufline(msg.sender, now);
                let written = match files_as(t) {
                    Ok(_as) => mbox::deliver(
                        &path_in_home(t, p),
                        &[&uf, &rpline, &dtline],
                        msg.data,
                        env.mbox_lock_timeout,
                    ),
                    Err(refused) => return stopped(all, at, done, refused),
                };
                if let Err(e) = written {
                    let why = format!("mbox delivery (.qmail line {line}): {e}");
                    return stopped(all, at, done, Outcome::Temporary(why));
                }
                files += 1;
            }
            Instruction::Program(cmd) => {
                if !env.allow_programs {
                    return Outcome::Permanent {
                        status: "5.7.1",
                        reason: "program deliveries are disabled on this host".into(),
                    };
                }
                let newsender = new_sender(t, msg.sender);
                let run = program::Run {
                    command: cmd,
                    target: t,
                    sender: msg.sender,
                    newsender: &newsender,
                    data: msg.data,
                    rpline: &rpline,
                    dtline: &dtline,
                    ufline: &quote::ufline(msg.sender, now),
                    timeout: env.program_timeout,
                };
                match program::run(&run) {
                    program::Result::Continue => programs += 1,
                    program::Result::Stop => {
                        programs += 1;
                        break;
                    }
                    program::Result::Temporary(e) => {
                        let why = format!("program (.qmail line {line}): {e}");
                        return stopped(all, at, done, Outcome::Temporary(why));
                    }
                    program::Result::Permanent(e) => {
                        return Outcome::Permanent {
                            status: "5.2.0",
                            reason: format!("program (.qmail line {line}): {e}"),
                        };
                    }
                }
            }
            Instruction::Forward(a) => forwards.push((*line, a)),
        }
    }
    if !forwards.is_empty() {
        // One group: the forwards of one .qmail leave in one transaction per
        // destination, and are queued all or none.
        let newsender = new_sender(t, msg.sender);
        let to: Vec<&[u8]> = forwards.iter().map(|(_, a)| *a).collect();
        if let Err(e) = env
            .queue
            .enqueue_group(&newsender, &to, &[&dtline, msg.data])
        {
            let why = format!("queueing {} forwards: {e}", to.len());
            let rest: Vec<(usize, Instruction)> = forwards
                .iter()
                .map(|(line, a)| (*line, Instruction::Forward(a.to_vec())))
                .collect();
            return partial_or(files + programs, rest, why);
        }
    }
    Outcome::Delivered {
        files,
        forwards: forwards.len(),
        programs,
    }
}

/// A Maildir delivery under the Maildir's quota (`quota/`): refused when the
/// message would take the mailbox past a limit, recorded in `maildirsize` once
/// written, and followed by the warning message when this delivery crossed the
/// warning level. Runs as the entry's user, so `maildirsize` stays the owner's.
fn maildir_with_quota(
    t: &LocalTarget,
    md: &Maildir,
    parts: &[&[u8]],
    env: &DeliverEnv,
) -> Result<Result<crate::maildir::Delivered, crate::maildir::DeliverError>, Outcome> {
    use crate::quota::enforce;
    let size: u64 = parts.iter().map(|p| p.len() as u64).sum();
    let now = std::time::SystemTime::now();
    let before = match enforce::before_delivery(md.path(), size, now) {
        Ok(u) => u,
        Err(u) => {
            let why = format!(
                "mailbox {} is full ({} of {}, {} messages): a {size}-byte message does not fit",
                String::from_utf8_lossy(&t.address),
                u.bytes,
                u.limits,
                u.messages,
            );
            tracing::info!(target: "deliver", maildir = %md.path().display(), "over quota: {why}");
            return Err(match env.quota.over_quota {
                crate::quota::OverQuota::Temporary => Outcome::Temporary(why),
                crate::quota::OverQuota::Permanent => Outcome::Permanent {
                    status: "5.2.2",
                    reason: why,
                },
            });
        }
    };
    let written = md.deliver(parts);
    if written.is_ok() && enforce::after_delivery(md.path(), before, size, env.quota.warn_percent) {
        let address = String::from_utf8_lossy(&t.address);
        let domain = String::from_utf8_lossy(&t.domain);
        if let Some(u) = crate::quota::disk::peek(md.path()).ok().flatten() {
            let warning = enforce::warning_message(&address, &domain, &u, now);
            match md.deliver(&[&warning]) {
                Ok(d) => {
                    let _ = crate::quota::disk::record(md.path(), d.size as i64, 1);
                    tracing::info!(target: "deliver", maildir = %md.path().display(), percent = u.percent(), "quota warning delivered");
                }
                Err(e) => {
                    // Not delivered: the next delivery past the level tries again.
                    crate::quota::disk::clear_warning(md.path());
                    tracing::warn!(target: "deliver", maildir = %md.path().display(), "quota warning not delivered: {e}");
                }
            }
        }
    }
    Ok(written)
}

/// A temporary failure (`failed`) at instruction `at` after `done` deliveries: with
/// none made, the failure as it is; else a [`Outcome::Partial`] whose rest is what was
/// not done: the forwards met so far (they are queued at the end) and every
/// instruction from `at` on, in file order.
fn stopped(all: &[(usize, Instruction)], at: usize, done: usize, failed: Outcome) -> Outcome {
    let Outcome::Temporary(why) = failed else {
        return failed;
    };
    let forwards_before = all[..at]
        .iter()
        .filter(|(_, i)| matches!(i, Instruction::Forward(_)));
    let rest = forwards_before.chain(&all[at..]).cloned().collect();
    partial_or(done, rest, why)
}

fn partial_or(done: usize, rest: Vec<(usize, Instruction)>, why: String) -> Outcome {
    if done == 0 {
        Outcome::Temporary(why)
    } else {
        Outcome::Partial { why, rest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_check_matches_qmail() {
        let dt = b"Delivered-To: x-joe@example.com\n";
        assert!(is_looping(
            b"Received: a\nDelivered-To: x-joe@example.com\n\nbody\n",
            dt
        ));
        // Only the header counts, and only byte-identical lines.
        assert!(!is_looping(
            b"Subject: x\n\nDelivered-To: x-joe@example.com\n",
            dt
        ));
        assert!(!is_looping(b"delivered-to: x-joe@example.com\n\n", dt));
        assert!(!is_looping(b"Delivered-To: x-joe@example.com\r\n\n", dt));
        assert!(!is_looping(b"", dt));
        assert!(is_looping(b"Delivered-To: x-joe@example.com\n", dt));
    }
}
