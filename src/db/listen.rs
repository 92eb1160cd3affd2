//! Keeping a process's copy of the accounts current: `LISTEN turnmail_accounts` on a
//! connection of its own, a reload (debounced) when a change is announced, a version
//! comparison every `check_secs` in case an announcement was lost, and, when the
//! connection is gone, reconnection with back-off. A copy older than
//! `max_stale_secs` without a live connection is declared unusable (lookups give
//! temporary failures) until the database is back and the accounts are loaded again.
//!
//! The timing is a pure state machine ([`Follow`], explicit clock, tested without a
//! database); [`follow`] carries out its steps.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_postgres::AsyncMessage;

use super::store::CHANNEL;
use super::{DbError, PgSettings, Store};
use crate::engine::source::AccountTexts;

/// Who holds the copy (the engine): told of new accounts and of an unusable copy.
pub trait CacheSink: Send + Sync {
    /// New accounts at `version`; also clears an earlier [`CacheSink::unavailable`].
    fn install(&self, texts: AccountTexts, version: u64);
    /// The copy may be stale: answer lookups with temporary failures until the next
    /// install.
    fn unavailable(&self, reason: String);
    /// The version installed now: a follower that finds the database at it does not
    /// load again. None: unknown (the first check loads).
    fn installed_version(&self) -> Option<u64> {
        None
    }
}

/// The follower's times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Notifications within this time after the first are one reload.
    pub debounce: Duration,
    pub check_every: Duration,
    pub max_stale: Duration,
    /// Reconnection waits start here and double up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Timing {
    pub fn from_settings(s: &PgSettings) -> Timing {
        Timing {
            debounce: Duration::from_millis(50),
            check_every: s.check_every(),
            max_stale: s.max_stale(),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        }
    }
}

/// What the follower should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Open the notification connection.
    Connect,
    /// Compare the database's version with the installed one ([`Follow::checked`]).
    Check,
    /// Load everything and install it ([`Follow::loaded`]).
    Load,
    /// Tell the sink its copy is unusable.
    Unavailable(String),
    /// Nothing is due before this time (or a notification, or the connection's end).
    Wait(Instant),
}

/// The follower's state; every method takes the current time.
#[derive(Debug)]
pub struct Follow {
    timing: Timing,
    connected: bool,
    /// Since when there has been no live connection (None while connected).
    down_since: Option<Instant>,
    next_connect: Instant,
    attempts: u32,
    load_at: Option<Instant>,
    next_check: Instant,
    installed: Option<u64>,
    /// Unavailable was said and no install has cleared it.
    signalled: bool,
    last_error: String,
}

impl Follow {
    /// Not connected yet; the copy (at `installed`) counts as fresh from `now`.
    pub fn new(timing: Timing, now: Instant, installed: Option<u64>) -> Follow {
        Follow {
            timing,
            connected: false,
            down_since: Some(now),
            next_connect: now,
            attempts: 0,
            load_at: None,
            next_check: now,
            installed,
            signalled: false,
            last_error: "not connected yet".into(),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected
    }

    pub fn is_unavailable(&self) -> bool {
        self.signalled
    }

    pub fn next(&mut self, now: Instant) -> Step {
        if !self.connected {
            let stale_at = self.down_since.map(|d| d + self.timing.max_stale);
            if let Some(at) = stale_at
                && !self.signalled
                && now >= at
            {
                self.signalled = true;
                return Step::Unavailable(format!(
                    "no connection to the accounts database for {} s: {}",
                    self.timing.max_stale.as_secs(),
                    self.last_error
                ));
            }
            if now >= self.next_connect {
                return Step::Connect;
            }
            let wake = match stale_at {
                Some(at) if !self.signalled => at.min(self.next_connect),
                _ => self.next_connect,
            };
            return Step::Wait(wake);
        }
        if let Some(at) = self.load_at
            && now >= at
        {
            self.load_at = None;
            return Step::Load;
        }
        if now >= self.next_check {
            self.next_check = now + self.timing.check_every;
            return Step::Check;
        }
        Step::Wait(
            self.load_at
                .map_or(self.next_check, |l| l.min(self.next_check)),
        )
    }

    /// The notification connection is up (and listening): check at once, since
    /// changes made while it was down were announced to nobody.
    pub fn connected(&mut self, now: Instant) {
        self.connected = true;
        self.down_since = None;
        self.attempts = 0;
        self.next_check = now;
    }

    /// The database is at `version`: load unless that is what is installed (and
    /// the sink was not told its copy is unusable).
    pub fn checked(&mut self, now: Instant, version: u64) {
        if self.signalled || self.installed != Some(version) {
            self.load_at = Some(now);
        }
    }

    /// A change was announced: load soon, once for a burst.
    pub fn notified(&mut self, now: Instant) {
        if self.load_at.is_none() {
            self.load_at = Some(now + self.timing.debounce);
        }
    }

    /// `version` was loaded and installed (which clears unavailability).
    pub fn loaded(&mut self, now: Instant, version: u64) {
        self.installed = Some(version);
        self.signalled = false;
        self.next_check = now + self.timing.check_every;
    }

    /// A load gave records that cannot be installed: the installed copy stays, and
    /// the next check (or announcement) tries again.
    pub fn load_refused(&mut self, now: Instant) {
        self.next_check = now + self.timing.check_every;
    }

    /// The connection was lost, could not be made, or an operation failed.
    pub fn failed(&mut self, now: Instant, reason: String) {
        if self.connected {
            self.connected = false;
            self.down_since = Some(now);
        }
        self.attempts = self.attempts.saturating_add(1);
        let wait = self
            .timing
            .backoff_min
            .saturating_mul(1 << self.attempts.saturating_sub(1).min(16))
            .min(self.timing.backoff_max);
        self.next_connect = now + wait;
        self.load_at = None;
        self.last_error = reason;
    }
}

/// What the notification connection reports.
enum Event {
    Notified,
    Lost(String),
}

/// The dedicated `LISTEN` connection; dropping it closes it.
struct Listener {
    client: tokio_postgres::Client,
    events: mpsc::UnboundedReceiver<Event>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    async fn open(settings: &PgSettings, target: &str) -> Result<Listener, DbError> {
        let config = settings.pg_config().map_err(DbError::Config)?;
        let unavailable = |e: tokio_postgres::Error| DbError::from_pg(target, &e);
        let tls = super::tls::Tls::for_settings(settings)?;
        let (tx, events) = mpsc::unbounded_channel();
        let on_message = move |m: Option<Result<AsyncMessage, tokio_postgres::Error>>| match m {
            Some(Ok(AsyncMessage::Notification(n))) if n.channel() == CHANNEL => {
                tx.send(Event::Notified).is_ok()
            }
            Some(Ok(_)) => true,
            Some(Err(e)) => {
                let _ = tx.send(Event::Lost(e.to_string()));
                false
            }
            None => {
                let _ = tx.send(Event::Lost("the server closed the connection".into()));
                false
            }
        };
        let (client, task) = tokio::time::timeout(
            settings.connect_timeout(),
            super::tls::connect(&config, &tls, on_message),
        )
        .await
        .map_err(|_| DbError::Unavailable {
            target: target.to_string(),
            reason: "no connection within connect_timeout_secs".into(),
        })?
        .map_err(unavailable)?;
        let listener = Listener {
            client,
            events,
            task,
        };
        tokio::time::timeout(
            settings.connect_timeout(),
            listener.client.batch_execute(&format!("LISTEN {CHANNEL}")),
        )
        .await
        .map_err(|_| DbError::Unavailable {
            target: target.to_string(),
            reason: "LISTEN got no answer".into(),
        })?
        .map_err(unavailable)?;
        Ok(listener)
    }

    /// The version, asked on this connection (which proves it alive too).
    async fn version(&self, settings: &PgSettings, target: &str) -> Result<u64, DbError> {
        let row = tokio::time::timeout(
            settings.connect_timeout(),
            self.client
                .query_one("SELECT version FROM turnmail_state", &[]),
        )
        .await
        .map_err(|_| DbError::Unavailable {
            target: target.to_string(),
            reason: "the version query got no answer".into(),
        })?
        .map_err(|e| DbError::from_pg(target, &e))?;
        let v: i64 = row
            .try_get(0)
            .map_err(|e| DbError::Invalid(format!("turnmail_state.version: {e}")))?;
        u64::try_from(v).map_err(|_| DbError::Invalid(format!("turnmail_state.version is {v}")))
    }
}

/// Follow the database for `sink`, forever (spawn it; abort the task to stop).
pub async fn follow(store: Store, settings: PgSettings, sink: Arc<dyn CacheSink>) {
    let target = store.target().to_string();
    let mut plan = Follow::new(
        Timing::from_settings(&settings),
        Instant::now(),
        sink.installed_version(),
    );
    let mut listener: Option<Listener> = None;
    loop {
        match plan.next(Instant::now()) {
            Step::Connect => match Listener::open(&settings, &target).await {
                Ok(l) => {
                    tracing::info!(target = %target, "accounts database: listening for changes");
                    listener = Some(l);
                    plan.connected(Instant::now());
                }
                Err(e) => plan.failed(Instant::now(), e.to_string()),
            },
            Step::Check => {
                let r = match &listener {
                    Some(l) => l.version(&settings, &target).await,
                    None => store.version().await,
                };
                match r {
                    Ok(v) => plan.checked(Instant::now(), v),
                    Err(e) => lost(&mut plan, &mut listener, e),
                }
            }
            Step::Load => match store.load().await {
                Ok((texts, version)) => {
                    let s = Arc::clone(&sink);
                    // Building the tables of 100,000 accounts takes a while: not on
                    // the runtime's threads.
                    if let Err(e) =
                        tokio::task::spawn_blocking(move || s.install(texts, version)).await
                    {
                        tracing::error!(error = %e, "accounts database: installing version {version} failed");
                        plan.load_refused(Instant::now());
                    } else {
                        tracing::info!(version, "accounts database: installed");
                        plan.loaded(Instant::now(), version);
                    }
                }
                Err(e) if e.is_temporary() => lost(&mut plan, &mut listener, e),
                Err(e) => {
                    tracing::error!(error = %e, "accounts database: the accounts cannot be loaded; keeping the copy in use");
                    plan.load_refused(Instant::now());
                }
            },
            Step::Unavailable(reason) => {
                tracing::error!(%reason, "accounts database: copy too old, lookups fail temporarily");
                let s = Arc::clone(&sink);
                let _ = tokio::task::spawn_blocking(move || s.unavailable(reason)).await;
            }
            Step::Wait(until) => {
                let event = async {
                    match listener.as_mut() {
                        Some(l) => l.events.recv().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    ev = event => match ev {
                        Some(Event::Notified) => plan.notified(Instant::now()),
                        Some(Event::Lost(why)) => lost(
                            &mut plan,
                            &mut listener,
                            DbError::Unavailable { target: target.clone(), reason: why },
                        ),
                        None => lost(
                            &mut plan,
                            &mut listener,
                            DbError::Unavailable { target: target.clone(), reason: "connection task ended".into() },
                        ),
                    },
                }
            }
        }
    }
}

fn lost(plan: &mut Follow, listener: &mut Option<Listener>, e: DbError) {
    if plan.is_connected() {
        tracing::warn!(error = %e, "accounts database: connection lost");
    }
    *listener = None;
    plan.failed(Instant::now(), e.to_string());
}

/// [`follow`] on its own task.
pub fn spawn(
    store: Store,
    settings: PgSettings,
    sink: Arc<dyn CacheSink>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(follow(store, settings, sink))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            debounce: Duration::from_millis(50),
            check_every: Duration::from_secs(30),
            max_stale: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(1),
        }
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn starts_by_connecting_then_checks_and_skips_a_load_of_the_installed_version() {
        let t0 = Instant::now();
        let mut f = Follow::new(timing(), t0, Some(7));
        assert_eq!(f.next(t0), Step::Connect);
        f.connected(t0);
        assert_eq!(f.next(t0), Step::Check);
        f.checked(t0, 7);
        assert_eq!(f.next(t0), Step::Wait(ms(t0, 30_000)));
        // A version that moved is loaded.
        assert_eq!(f.next(ms(t0, 30_000)), Step::Check);
        f.checked(ms(t0, 30_000), 8);
        assert_eq!(f.next(ms(t0, 30_000)), Step::Load);
        f.loaded(ms(t0, 30_010), 8);
        assert_eq!(f.next(ms(t0, 30_010)), Step::Wait(ms(t0, 60_010)));
    }

    #[test]
    fn a_burst_of_notifications_is_one_load_after_the_debounce() {
        let t0 = Instant::now();
        let mut f = Follow::new(timing(), t0, None);
        f.connected(t0);
        assert_eq!(f.next(t0), Step::Check);
        f.checked(t0, 1);
        assert_eq!(f.next(t0), Step::Load);
        f.loaded(t0, 1);
        f.notified(ms(t0, 100));
        f.notified(ms(t0, 120));
        f.notified(ms(t0, 140));
        assert_eq!(f.next(ms(t0, 140)), Step::Wait(ms(t0, 150)));
        assert_eq!(f.next(ms(t0, 150)), Step::Load);
        f.loaded(ms(t0, 160), 4);
        assert_eq!(f.next(ms(t0, 160)), Step::Wait(ms(t0, 30_160)));
    }

    #[test]
    fn reconnects_with_back_off_and_goes_unavailable_after_max_stale() {
        let t0 = Instant::now();
        let mut f = Follow::new(timing(), t0, Some(3));
        f.connected(t0);
        f.checked(t0, 3);
        f.failed(ms(t0, 1000), "connection reset".into());
        assert!(!f.is_connected());
        // 100, 200, 400, 800, then 1000 ms (capped) between attempts.
        let mut now = ms(t0, 1000);
        let mut waits = Vec::new();
        for _ in 0..6 {
            let Step::Wait(at) = f.next(now) else {
                panic!("expected a wait");
            };
            waits.push(at - now);
            now = at;
            assert_eq!(f.next(now), Step::Connect);
            f.failed(now, "no such file".into());
        }
        let ms_ = |n| Duration::from_millis(n);
        assert_eq!(
            waits,
            [ms_(100), ms_(200), ms_(400), ms_(800), ms_(1000), ms_(1000)]
        );
        // Down since 1 s; at 6 s (5 s down) the copy is declared unusable, once.
        assert_eq!(f.next(ms(t0, 4500)), Step::Wait(ms(t0, 5500)));
        assert_eq!(f.next(ms(t0, 5500)), Step::Connect);
        f.failed(ms(t0, 5500), "no such file".into());
        assert_eq!(f.next(ms(t0, 5500)), Step::Wait(ms(t0, 6000)));
        match f.next(ms(t0, 6000)) {
            Step::Unavailable(why) => {
                assert!(why.contains("no such file") && why.contains("5 s"), "{why}")
            }
            s => panic!("{s:?}"),
        }
        assert!(f.is_unavailable());
        assert_eq!(f.next(ms(t0, 6000)), Step::Wait(ms(t0, 6500)));
        assert_eq!(f.next(ms(t0, 6500)), Step::Connect);
        // Back: the same version is loaded anyway, which clears the state.
        f.connected(ms(t0, 6000));
        assert_eq!(f.next(ms(t0, 6000)), Step::Check);
        f.checked(ms(t0, 6000), 3);
        assert_eq!(f.next(ms(t0, 6000)), Step::Load);
        f.loaded(ms(t0, 6010), 3);
        assert!(!f.is_unavailable());
    }

    #[test]
    fn a_short_outage_is_not_unavailable() {
        let t0 = Instant::now();
        let mut f = Follow::new(timing(), t0, Some(1));
        f.connected(t0);
        f.checked(t0, 1);
        f.failed(ms(t0, 100), "reset".into());
        assert_eq!(f.next(ms(t0, 200)), Step::Connect);
        f.connected(ms(t0, 200));
        assert_eq!(f.next(ms(t0, 200)), Step::Check);
        f.checked(ms(t0, 200), 1);
        // The wait is for the next check; no unavailability at any time later.
        assert_eq!(f.next(ms(t0, 10_000)), Step::Wait(ms(t0, 30_200)));
        assert!(!f.is_unavailable());
    }

    #[test]
    fn never_connecting_at_start_is_unavailable_after_max_stale() {
        let t0 = Instant::now();
        let mut f = Follow::new(timing(), t0, Some(1));
        let mut now = t0;
        let mut said = 0;
        while now < ms(t0, 8000) {
            match f.next(now) {
                Step::Connect => f.failed(now, "refused".into()),
                Step::Wait(at) => now = at,
                Step::Unavailable(_) => {
                    said += 1;
                    assert!(now >= ms(t0, 5000) && now < ms(t0, 5100), "{:?}", now - t0);
                }
                s => panic!("{s:?}"),
            }
        }
        assert_eq!(said, 1);
    }
}
