//! The outbound queue runner: one pass over `ROOT/queue/` takes every file that is
//! due, sends local recipients back through the engine and delivery (resuming where
//! a partial delivery stopped), and groups remote recipients by message (group line,
//! sender) and destination, so each message goes once to each destination with all
//! its recipients there, over the pool's kept connections. Every file is settled on
//! its own recipient's result as soon as it is known (unlink, one bounce per message,
//! keep with back-off), and a file kept past `delay_warning_hours` gets one delay
//! notice. One runner per root at a time (a flock on `queue/.lock`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;

use super::dns::Dns;
use super::pool::{Job, Pool, PoolStats};
use super::route::Destination;
use super::settle::{self, Attempt, Settled};
use super::transport::Ctx;
use super::{RelayConfig, warn};
use crate::deliver::{DeliverEnv, Message, Outcome, deliver_local};
use crate::engine::{Engine, Resolution};
use crate::qmail::dotqmail::Instruction;
use crate::spool::envelope::Format;
use crate::spool::scan::{self, Spooled};

/// What one run did, for logs and `turnmail flush --queue`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    pub delivered: usize,
    pub bounced: usize,
    pub deferred: usize,
    pub skipped_backoff: usize,
    /// Delay notices queued.
    pub warned: usize,
    pub trouble: Vec<String>,
    /// Another runner held the queue's lock (another node, or the operator's
    /// `flush --queue`): nothing was looked at.
    pub busy: bool,
}

impl RunReport {
    fn count(&mut self, settled: &Settled) {
        match settled {
            Settled::Removed => self.delivered += 1,
            Settled::Bounced => self.bounced += 1,
            Settled::Kept => self.deferred += 1,
            Settled::Trouble(t) => self.trouble.push(t.clone()),
        }
    }
}

/// Called with what the settling of handed-off files did (metrics).
pub type Observer = Box<dyn Fn(&RunReport) + Send + Sync>;

pub struct QueueRunner {
    engine: Arc<Engine>,
    env: DeliverEnv,
    hostname: String,
    cfg: RelayConfig,
    pool: Arc<Pool>,
    /// Per file: attempts so far and when the next one is due.
    backoff: Mutex<HashMap<String, (u32, Instant)>>,
    /// `queue/.lock`, held while this process sends from the queue.
    lock: QueueLock,
    /// The files this process is sending now (by unique name): a pass leaves alone
    /// what was handed off, and a hand-off what a pass took.
    claimed: Mutex<HashSet<String>>,
    observer: Option<Observer>,
}

/// Files handed off and not yet settled, at most (their texts are held in memory).
const MAX_IN_FLIGHT: usize = 1000;

/// The wait after `attempts` failures: `first`, doubling, at most an hour.
fn backoff_after(first: u64, attempts: u32) -> Duration {
    Duration::from_secs(
        first
            .max(1)
            .saturating_mul(1 << attempts.saturating_sub(1).min(12))
            .min(3600),
    )
}

/// The files of one message for one destination.
struct Group {
    dest: Destination,
    files: Vec<Spooled>,
}

/// A pass's files, sorted by what is done with them.
#[derive(Default)]
struct Plan {
    local: Vec<(Spooled, Resolution)>,
    remote: Vec<Group>,
}

fn domain_of(rcpt: &[u8]) -> String {
    rcpt.iter()
        .rposition(|&b| b == b'@')
        .map(|i| String::from_utf8_lossy(&rcpt[i + 1..]).into_owned())
        .unwrap_or_default()
}

fn read_body(s: &Spooled) -> Result<Vec<u8>, String> {
    let mut data = crate::maildir::read_message(&s.entry.path, 1 << 30)
        .map_err(|e| format!("reading {}: {e}", s.entry.rel))?;
    let offset = s.envelope.body_offset.min(data.len());
    data.drain(..offset);
    Ok(data)
}

impl QueueRunner {
    pub fn new(
        engine: Arc<Engine>,
        env: DeliverEnv,
        hostname: String,
        cfg: RelayConfig,
    ) -> QueueRunner {
        let dns = match Dns::new(&cfg.dns) {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::warn!(target: "relay", "no DNS resolver ({e}): mail needing MX lookups stays queued");
                None
            }
        };
        let connector = match crate::tls::site_connector() {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(target: "relay", "no TLS client ({e}): STARTTLS is not used");
                None
            }
        };
        let verified = cfg.smarthost_user.as_ref().and_then(|_| {
            let ca = cfg.smarthost_ca.as_ref().map(|p| engine.paths().root.join(p));
            crate::tls::verified_connector(ca.as_deref())
                .map_err(|e| tracing::error!(target: "relay", "no verifying TLS client for the smarthost ({e}): its mail stays queued"))
                .ok()
        });
        let pool = Pool::new(Ctx {
            dns,
            helo: hostname.clone(),
            cfg: cfg.clone(),
            connector,
            verified,
        });
        QueueRunner {
            lock: QueueLock::new(env.queue.path().join(".lock")),
            engine,
            env,
            hostname,
            cfg,
            pool,
            backoff: Mutex::new(HashMap::new()),
            claimed: Mutex::new(HashSet::new()),
            observer: None,
        }
    }

    /// Tell `observer` what settling handed-off files did (passes report themselves).
    pub fn with_observer(mut self, observer: Observer) -> QueueRunner {
        self.observer = Some(observer);
        self
    }

    /// Connections opened and reused so far.
    pub fn pool_stats(&self) -> &PoolStats {
        &self.pool.stats
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
            e.1 = Instant::now() + backoff_after(self.cfg.retry_secs, e.0);
        } else {
            b.remove(name);
        }
    }

    fn lifetime(&self) -> Duration {
        Duration::from_secs(self.cfg.lifetime_days.saturating_mul(86_400))
    }

    /// One pass over the queue. `force` ignores the backoff (an operator's flush).
    pub async fn run_once(&self, force: bool) -> RunReport {
        let mut report = RunReport::default();
        let qdir = self.env.queue.path().to_path_buf();
        if !qdir.join("new").is_dir() {
            return report;
        }
        match self.lock.acquire(1) {
            Ok(true) => {}
            Ok(false) => {
                // Another process's runner is at work: look again soon.
                report.busy = true;
                return report;
            }
            Err(e) => {
                report.trouble.push(e);
                return report;
            }
        }
        let _lock = Held(&self.lock);
        // Queue files appear in new/ whole (linked there complete), so the current
        // second need not settle first: mail queued a moment ago goes now.
        let now = SystemTime::now() + Duration::from_secs(1);
        let env = self.env.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            scan::scan(env.queue.maildir(), Format::Queue, "queue", now)
        })
        .await;
        let scanned = match scanned {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                report.trouble.push(format!("scanning the queue: {e}"));
                return report;
            }
            Err(e) => {
                report.trouble.push(format!("scanning the queue: {e}"));
                return report;
            }
        };
        let mut due = Vec::with_capacity(scanned.ready.len());
        let at = Instant::now();
        let mut claims = Claims {
            runner: self,
            names: Vec::new(),
        };
        {
            let mut claimed = lock(&self.claimed);
            for s in scanned.ready {
                if claimed.contains(&s.entry.unique) {
                    continue; // handed off and on its way
                }
                if force || self.due(&s.entry.unique, at) {
                    claimed.insert(s.entry.unique.clone());
                    claims.names.push(s.entry.unique.clone());
                    due.push(s);
                } else {
                    report.skipped_backoff += 1;
                }
            }
        }
        if due.is_empty() {
            return report;
        }
        let engine = self.engine.clone();
        let cfg = self.cfg.clone();
        let plan = tokio::task::spawn_blocking(move || plan(&engine, &cfg, due)).await;
        let plan = match plan {
            Ok(p) => p,
            Err(e) => {
                report.trouble.push(format!("internal error: {e}"));
                return report;
            }
        };
        // Remote groups first: they go out on the pool's tasks while local
        // deliveries run here.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut pending = 0usize;
        for g in plan.remote {
            pending += 1;
            self.submit(g, tx.clone());
        }
        drop(tx);
        for (s, res) in plan.local {
            let attempt = self.attempt_local(&s, res).await;
            self.finish(&[s], &[attempt], &mut report);
        }
        while pending > 0 {
            let Some((files, attempts, settled)) = rx.recv().await else {
                break;
            };
            pending -= 1;
            self.account(&files, &attempts, &settled, &mut report);
            self.warn_if_due(&files, &attempts, &settled, &mut report);
        }
        report
    }

    /// Send one group through the pool; its files are settled the moment its
    /// results come, on the pool's task, then reported through `done`.
    fn submit(&self, g: Group, done: mpsc::UnboundedSender<Outcomes>) {
        let Some(first) = g.files.first() else {
            return;
        };
        if !first.entry.path.exists() {
            // Sent and removed by a hand-off since the listing: nothing to do.
            return;
        }
        let body = match read_body(first) {
            Ok(b) => b,
            Err(why) => {
                let attempts = vec![Attempt::Temporary(why); g.files.len()];
                let settled = vec![Settled::Kept; g.files.len()];
                let _ = done.send((g.files, attempts, settled));
                return;
            }
        };
        self.send_group(g, body, move |outcomes| {
            let _ = done.send(outcomes);
        });
    }

    /// Hand one group and its text to the pool; its files are settled the moment
    /// its results come, on the pool's task, then given to `then`.
    fn send_group(&self, g: Group, body: Vec<u8>, then: impl FnOnce(Outcomes) + Send + 'static) {
        let Some(first) = g.files.first() else {
            return;
        };
        let env = self.env.clone();
        let hostname = self.hostname.clone();
        let lifetime = self.lifetime();
        let sender = first.envelope.sender.clone();
        let recipients = g
            .files
            .iter()
            .map(|s| s.envelope.recipient.clone())
            .collect();
        let files = g.files;
        let on_result = Box::new(move |attempts: Vec<Attempt>| {
            let pairs: Vec<(&Spooled, &Attempt)> = files.iter().zip(&attempts).collect();
            let settled =
                settle::settle_group(&env, &hostname, &pairs, lifetime, SystemTime::now());
            then((files, attempts, settled));
        });
        self.pool.send(
            g.dest,
            Job {
                sender,
                recipients,
                body,
                on_result,
            },
        );
    }

    /// Send the queue files of one message at once, as an SMTP session has just
    /// queued them (durably: they are in `new/`), instead of waiting for a pass to
    /// find and read them: `files` one recipient each, all relayed, `body` the text
    /// after their envelope lines. Each is settled on its own result as in a pass.
    /// False when they are left to a pass (the caller wakes one): another process
    /// is sending from the queue (its lock is taken), a pass already took one of
    /// them, [`MAX_IN_FLIGHT`] files are on their way already, or they need a
    /// smarthost login.
    pub fn offer(self: &Arc<Self>, files: Vec<Spooled>, body: Vec<u8>) -> bool {
        if files.is_empty() || self.authenticated() {
            return false;
        }
        {
            let mut claimed = lock(&self.claimed);
            // A destination slower than the mail coming in: what waits stays on disk
            // for passes, not in memory here.
            if claimed.len() + files.len() > MAX_IN_FLIGHT
                || files.iter().any(|s| claimed.contains(&s.entry.unique))
            {
                return false;
            }
            for s in &files {
                claimed.insert(s.entry.unique.clone());
            }
        }
        let snap = self.engine.snapshot();
        let mut groups: Vec<Group> = Vec::new();
        for s in files {
            let dest = Destination::of(
                &snap.control.smtproutes,
                &self.cfg,
                &domain_of(&s.envelope.recipient),
            );
            match groups.iter_mut().find(|g| g.dest == dest) {
                Some(g) => g.files.push(s),
                None => groups.push(Group {
                    dest,
                    files: vec![s],
                }),
            }
        }
        let held = match self.lock.acquire(groups.len()) {
            Ok(true) => true,
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(target: "relay", "{e}");
                false
            }
        };
        if !held {
            let mut claimed = lock(&self.claimed);
            for g in &groups {
                for s in &g.files {
                    claimed.remove(&s.entry.unique);
                }
            }
            return false;
        }
        let n = groups.len();
        let mut body = Some(body);
        for (i, g) in groups.into_iter().enumerate() {
            // Each group's claims and share of the lock end with its results, or
            // with the job should the pool drop it unanswered.
            let inflight = InFlight {
                runner: self.clone(),
                names: g.files.iter().map(|s| s.entry.unique.clone()).collect(),
            };
            let text = if i + 1 == n {
                body.take().unwrap_or_default()
            } else {
                body.clone().unwrap_or_default()
            };
            self.send_group(g, text, move |(files, attempts, settled)| {
                inflight.settled(&files, &attempts, &settled);
            });
        }
        true
    }

    fn authenticated(&self) -> bool {
        self.cfg.smarthost_user.is_some() && self.cfg.smarthost_password.is_some()
    }

    /// Settle files here (local and one-by-one sends) and account for them.
    fn finish(&self, files: &[Spooled], attempts: &[Attempt], report: &mut RunReport) {
        let pairs: Vec<(&Spooled, &Attempt)> = files.iter().zip(attempts).collect();
        let settled = settle::settle_group(
            &self.env,
            &self.hostname,
            &pairs,
            self.lifetime(),
            SystemTime::now(),
        );
        self.account(files, attempts, &settled, report);
        self.warn_if_due(files, attempts, &settled, report);
    }

    fn account(
        &self,
        files: &[Spooled],
        attempts: &[Attempt],
        settled: &[Settled],
        report: &mut RunReport,
    ) {
        for ((s, attempt), settled) in files.iter().zip(attempts).zip(settled) {
            tracing::info!(
                target: "relay",
                file = %s.entry.rel,
                sender = %String::from_utf8_lossy(&s.envelope.sender),
                recipient = %String::from_utf8_lossy(&s.envelope.recipient),
                "{attempt:?} -> {settled:?}"
            );
            report.count(settled);
            self.note(&s.entry.unique, settled);
        }
    }

    fn warn_if_due(
        &self,
        files: &[Spooled],
        attempts: &[Attempt],
        settled: &[Settled],
        report: &mut RunReport,
    ) {
        if self.cfg.delay_warning_hours == 0 {
            return;
        }
        let after = Duration::from_secs(self.cfg.delay_warning_hours.saturating_mul(3600));
        let kept: Vec<(&Spooled, &Attempt)> = files
            .iter()
            .zip(attempts)
            .zip(settled)
            .filter(|(_, st)| matches!(st, Settled::Kept))
            .map(|(p, _)| p)
            .collect();
        match warn::warn(&self.env, &self.hostname, &kept, after, SystemTime::now()) {
            Ok(true) => report.warned += 1,
            Ok(false) => {}
            Err(t) => report.trouble.push(t),
        }
    }

    /// A delivery from the queue made in part: what is left replaces the file (which
    /// the caller then removes as delivered), keeping its age for the lifetime. Should
    /// that write fail, the file stays and its next attempt repeats the copies made.
    fn requeue(&self, s: &Spooled, rest: &[(usize, Instruction)], why: String) -> Attempt {
        let body = match read_body(s) {
            Ok(b) => b,
            Err(e) => return Attempt::Temporary(format!("{why}; re-{e}")),
        };
        let e = &s.envelope;
        match self
            .env
            .queue
            .enqueue_rest(&e.sender, &e.recipient, rest, &[&body])
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

    async fn attempt_local(&self, s: &Spooled, res: Resolution) -> Attempt {
        match res {
            Resolution::Local(mut t) => {
                let body = match read_body(s) {
                    Ok(b) => b,
                    Err(e) => return Attempt::Temporary(e),
                };
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
            // Sorted out by `plan`; a resolution that failed lands here as deferred.
            Resolution::NotOurs | Resolution::Relay { .. } => {
                Attempt::Temporary("not a local recipient".into())
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The flock on `queue/.lock` (interoperating with other processes' runners, such as
/// `turnmail flush --queue`), shared by this process's senders: a pass holds a share
/// while it runs, each handed-off group until its result; the last share to go
/// unlocks it.
struct QueueLock {
    path: std::path::PathBuf,
    state: Mutex<(Option<crate::spool::lock::SenderLock>, usize)>,
}

impl QueueLock {
    fn new(path: std::path::PathBuf) -> QueueLock {
        QueueLock {
            path,
            state: Mutex::new((None, 0)),
        }
    }

    /// Take `shares`; Ok(false) when another process holds the lock.
    fn acquire(&self, shares: usize) -> Result<bool, String> {
        let mut state = lock(&self.state);
        if state.1 == 0 {
            // The one way a sender's lock is taken (with the backend's second lock).
            let dir = crate::fsutil::parent_dir(&self.path);
            match crate::spool::lock::try_queue(dir) {
                Ok(Some(l)) => state.0 = Some(l),
                Ok(None) => return Ok(false),
                Err(e) => return Err(format!("locking {}: {e}", self.path.display())),
            }
        }
        state.1 += shares;
        Ok(true)
    }

    fn release(&self) {
        let mut state = lock(&self.state);
        state.1 = state.1.saturating_sub(1);
        if state.1 == 0 {
            // Closing the file lets the lock go.
            state.0 = None;
        }
    }
}

/// A pass's share of the queue lock.
struct Held<'a>(&'a QueueLock);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// The files a pass took, given back when it ends.
struct Claims<'a> {
    runner: &'a QueueRunner,
    names: Vec<String>,
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        let mut claimed = lock(&self.runner.claimed);
        for n in &self.names {
            claimed.remove(n);
        }
    }
}

/// One handed-off group on its way: its files' claims and its share of the lock.
struct InFlight {
    runner: Arc<QueueRunner>,
    names: Vec<String>,
}

impl InFlight {
    /// Account for the settled files as a pass does (log line, back-off, delay
    /// notice), then let them go.
    fn settled(self, files: &[Spooled], attempts: &[Attempt], settled: &[Settled]) {
        let r = &self.runner;
        let mut report = RunReport::default();
        r.account(files, attempts, settled, &mut report);
        r.warn_if_due(files, attempts, settled, &mut report);
        if !report.trouble.is_empty() {
            tracing::warn!(target: "relay", "sending at once: {:?}", report.trouble);
        }
        if let Some(observe) = &r.observer {
            observe(&report);
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut claimed = lock(&self.runner.claimed);
            for n in &self.names {
                claimed.remove(n);
            }
        }
        self.runner.lock.release();
    }
}

/// What a group's files came to: the files, their attempts, what was done.
type Outcomes = (Vec<Spooled>, Vec<Attempt>, Vec<Settled>);

/// Sort the due files: local ones (with their resolution), remote ones grouped by
/// message and destination (in the order of their first file).
fn plan(engine: &Engine, cfg: &RelayConfig, due: Vec<Spooled>) -> Plan {
    let mut plan = Plan::default();
    let snap = engine.snapshot();
    let mut index: HashMap<(Vec<u8>, Vec<u8>, Destination), usize> = HashMap::new();
    for s in due {
        let res = match engine.resolve(&s.envelope.recipient, false) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(target: "relay", file = %s.entry.rel, "resolving: {e}");
                plan.local.push((s, Resolution::NotOurs));
                continue;
            }
        };
        if !matches!(res, Resolution::NotOurs | Resolution::Relay { .. }) {
            plan.local.push((s, res));
            continue;
        }
        let domain = domain_of(&s.envelope.recipient);
        let dest = Destination::of(&snap.control.smtproutes, cfg, &domain);
        let token = s
            .envelope
            .group
            .clone()
            .unwrap_or_else(|| s.entry.unique.as_bytes().to_vec());
        let key = (token, s.envelope.sender.clone(), dest.clone());
        match index.get(&key) {
            Some(&i) => plan.remote[i].files.push(s),
            None => {
                index.insert(key, plan.remote.len());
                plan.remote.push(Group {
                    dest,
                    files: vec![s],
                });
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_lock_is_shared_here_and_keeps_other_holders_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".lock");
        let ours = QueueLock::new(path.clone());
        // Another open file description: what another process's runner holds.
        let other = || {
            std::fs::File::options()
                .create(true)
                .append(true)
                .open(&path)
                .unwrap()
        };
        assert_eq!(ours.acquire(1), Ok(true));
        assert_eq!(ours.acquire(2), Ok(true), "shares in one process");
        assert!(other().try_lock().is_err());
        ours.release();
        ours.release();
        assert!(other().try_lock().is_err(), "one share left");
        ours.release();
        let theirs = other();
        theirs.try_lock().unwrap();
        assert_eq!(ours.acquire(1), Ok(false), "held elsewhere");
        drop(theirs);
        assert_eq!(ours.acquire(1), Ok(true));
        ours.release();
    }

    #[test]
    fn backoff_grows_to_an_hour() {
        assert_eq!(backoff_after(60, 1), Duration::from_secs(60));
        assert_eq!(backoff_after(60, 2), Duration::from_secs(120));
        assert_eq!(backoff_after(60, 3), Duration::from_secs(240));
        assert_eq!(backoff_after(60, 30), Duration::from_secs(3600));
        assert_eq!(backoff_after(1, 3), Duration::from_secs(4));
        assert_eq!(backoff_after(0, 1), Duration::from_secs(1));
    }
}
