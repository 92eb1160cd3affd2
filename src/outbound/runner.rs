//! The outbound queue runner: takes `ROOT/queue/` files one by one, routes each on its
//! own (a local recipient back through the engine and delivery, anything else by SMTP)
//! and settles it with the bookkeeping shared with site spools. One runner per root at a
//! time (a flock on `queue/.lock`); retries back off per file.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use hickory_resolver::TokioResolver;

use super::route::route;
use super::{RelayConfig, transport};
use crate::deliver::{DeliverEnv, Message, Outcome, deliver_local};
use crate::engine::{Engine, Resolution};
use crate::qmail::dotqmail::Instruction;
use crate::spool::envelope::Format;
use crate::spool::scan::{self, Spooled};
use crate::outbound::settle::{self, Attempt, Settled};

/// What one run did, for logs and `turnmail flush --queue`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub delivered: usize,
    pub bounced: usize,
    pub deferred: usize,
    pub skipped_backoff: usize,
    pub trouble: Vec<String>,
}

pub struct QueueRunner {
    engine: std::sync::Arc<Engine>,
    env: DeliverEnv,
    hostname: String,
    cfg: RelayConfig,
    resolver: Option<TokioResolver>,
    /// Per file: attempts so far and when the next one is due.
    backoff: Mutex<HashMap<String, (u32, Instant)>>,
}

fn backoff_after(attempts: u32) -> Duration {
    // 1, 2, 4 ... minutes, at most an hour.
    Duration::from_secs(
        60u64
            .saturating_mul(1 << attempts.saturating_sub(1).min(6))
            .min(3600),
    )
}

impl QueueRunner {
    pub fn new(
        engine: std::sync::Arc<Engine>,
        env: DeliverEnv,
        hostname: String,
        cfg: RelayConfig,
    ) -> QueueRunner {
        let resolver = match TokioResolver::builder_tokio().and_then(|b| b.build()) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(target: "relay", "no DNS resolver ({e}): mail needing MX lookups stays queued");
                None
            }
        };
        QueueRunner {
            engine,
            env,
            hostname,
            cfg,
            resolver,
            backoff: Mutex::new(HashMap::new()),
        }
    }

    fn due(&self, name: &str, now: Instant) -> bool {
        let b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        b.get(name).is_none_or(|(_, next)| *next <= now)
    }

    fn note(&self, name: &str, settled: &Settled) {
        let mut b = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        if matches!(settled, Settled::Kept | Settled::Trouble(_)) {
            let e = b.entry(name.to_string()).or_insert((0, Instant::now()));
            e.0 += 1;
            e.1 = Instant::now() + backoff_after(e.0);
        } else {
            b.remove(name);
        }
    }

    /// One pass over the queue. `force` ignores the backoff (an operator's flush).
    pub async fn run_once(&self, force: bool) -> RunReport {
        let mut report = RunReport::default();
        let qdir = self.env.queue.path().to_path_buf();
        if !qdir.join("new").is_dir() {
            return report;
        }
        let lock_path = qdir.join(".lock");
        let lock_file = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&lock_path)
        {
            Ok(f) => f,
            Err(e) => {
                report.trouble.push(format!("{}: {e}", lock_path.display()));
                return report;
            }
        };
        let mut lock = fd_lock::RwLock::new(lock_file);
        let Ok(_guard) = lock.try_write() else {
            return report; // another runner is at work
        };
        let now = SystemTime::now();
        let scanned = match scan::scan(self.env.queue.maildir(), Format::Queue, "queue", now) {
            Ok(s) => s,
            Err(e) => {
                report.trouble.push(format!("scanning the queue: {e}"));
                return report;
            }
        };
        let lifetime = Duration::from_secs(self.cfg.lifetime_days * 86_400);
        for s in scanned.ready {
            if !force && !self.due(&s.entry.unique, Instant::now()) {
                report.skipped_backoff += 1;
                continue;
            }
            let attempt = self.attempt(&s).await;
            let settled = settle::settle(
                &self.env,
                &self.hostname,
                &s,
                &attempt,
                lifetime,
                SystemTime::now(),
            );
            tracing::info!(
                target: "relay",
                file = %s.entry.rel,
                sender = %String::from_utf8_lossy(&s.envelope.sender),
                recipient = %String::from_utf8_lossy(&s.envelope.recipient),
                "{attempt:?} -> {settled:?}"
            );
            match &settled {
                Settled::Removed => report.delivered += 1,
                Settled::Bounced => report.bounced += 1,
                Settled::Kept => report.deferred += 1,
                Settled::Trouble(t) => report.trouble.push(t.clone()),
            }
            self.note(&s.entry.unique, &settled);
        }
        report
    }

    /// A delivery from the queue made in part: what is left replaces the file (which
    /// the caller then removes as delivered), keeping its age for the lifetime. Should
    /// that write fail, the file stays and its next attempt repeats the copies made.
    fn requeue(&self, s: &Spooled, rest: &[(usize, Instruction)], why: String) -> Attempt {
        let data = match crate::maildir::read_message(&s.entry.path, 1 << 30) {
            Ok(d) => d,
            Err(e) => return Attempt::Temporary(format!("{why}; re-reading {}: {e}", s.entry.rel)),
        };
        let body = data.get(s.envelope.body_offset..).unwrap_or_default();
        let e = &s.envelope;
        match self
            .env
            .queue
            .enqueue_rest(&e.sender, &e.recipient, rest, &[body])
        {
            Ok(d) => {
                let kept_age = std::fs::File::options()
                    .append(true)
                    .open(&d.path)
                    .and_then(|f| f.set_modified(s.entry.mtime));
                if let Err(err) = kept_age {
                    tracing::warn!(target: "relay", file = %d.name, "keeping the age of the requeued rest: {err}");
                }
                Attempt::Delivered(format!(
                    "delivered in part ({why}); the rest requeued as {}",
                    d.name
                ))
            }
            Err(err) => Attempt::Temporary(format!("{why}; cannot requeue the rest: {err}")),
        }
    }

    async fn attempt(&self, s: &Spooled) -> Attempt {
        let data = match crate::maildir::read_message(&s.entry.path, 1 << 30) {
            Ok(d) => d,
            Err(e) => return Attempt::Temporary(format!("reading {}: {e}", s.entry.rel)),
        };
        let body = data
            .get(s.envelope.body_offset..)
            .unwrap_or_default()
            .to_vec();
        let rcpt = s.envelope.recipient.clone();
        let engine = self.engine.clone();
        let resolved = tokio::task::spawn_blocking(move || engine.resolve(&rcpt, false)).await;
        let res = match resolved {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return Attempt::Temporary(e.to_string()),
            Err(e) => return Attempt::Temporary(format!("internal error: {e}")),
        };
        match res {
            Resolution::Local(mut t) => {
                // Queued half-way through: only what was left to do.
                if let Some(rest) = &s.envelope.resume {
                    t.instructions.instructions = rest.clone();
                }
                let env = self.env.clone();
                let sender = s.envelope.sender.clone();
                let now = crate::datetime::now_unix();
                let out = tokio::task::spawn_blocking(move || {
                    deliver_local(
                        &t,
                        &Message {
                            sender: &sender,
                            data: &body,
                        },
                        &env,
                        now,
                    )
                })
                .await;
                match out {
                    Ok(Outcome::Delivered { .. }) => Attempt::Delivered("delivered locally".into()),
                    Ok(Outcome::Temporary(why)) => Attempt::Temporary(why),
                    Ok(Outcome::Partial { why, rest }) => self.requeue(s, &rest, why),
                    Ok(Outcome::Permanent { status, reason }) => Attempt::Permanent {
                        status: status.into(),
                        reply: reason,
                        remote: false,
                    },
                    Err(e) => Attempt::Temporary(format!("internal error: {e}")),
                }
            }
            Resolution::Trash => Attempt::Delivered("trash address".into()),
            Resolution::Unknown { reason } => Attempt::Permanent {
                status: "5.1.1".into(),
                reply: reason,
                remote: false,
            },
            Resolution::BadAddress(why) => Attempt::Permanent {
                status: "5.1.3".into(),
                reply: why.into(),
                remote: false,
            },
            Resolution::NotOurs | Resolution::Relay { .. } => {
                let rcpt = &s.envelope.recipient;
                let domain = rcpt
                    .iter()
                    .rposition(|&b| b == b'@')
                    .map(|i| String::from_utf8_lossy(&rcpt[i + 1..]).into_owned())
                    .unwrap_or_default();
                let snap = self.engine.snapshot();
                let r = route(&snap.control.smtproutes, &self.cfg, &domain);
                transport::relay(
                    self.resolver.as_ref(),
                    &r,
                    &self.hostname,
                    &s.envelope.sender,
                    rcpt,
                    &body,
                    &self.cfg,
                )
                .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_an_hour() {
        assert_eq!(backoff_after(1), Duration::from_secs(60));
        assert_eq!(backoff_after(2), Duration::from_secs(120));
        assert_eq!(backoff_after(3), Duration::from_secs(240));
        assert_eq!(backoff_after(30), Duration::from_secs(3600));
    }
}
