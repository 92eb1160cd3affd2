//! Password-guessing limits, the same for every face that checks a password (POP3,
//! SMTP AUTH, ODMR AUTH, `turnmail checkpassword`).
//!
//! Two counts are kept, both decaying with time only (a leaky bucket: a full count
//! drains over one window):
//! - per client (an IPv4 address, an IPv6 prefix): every attempt of every login;
//! - per client and login: the attempts at that one login.
//!
//! An attempt is charged when it *starts*, so attempts in flight count: however many
//! are sent at once, at most the limit is ever checked against a password per window.
//! An attempt that finds the count full only because others are still in flight is
//! told to wait ([`Refusal::busy`]) rather than blocked: those may yet succeed (and be
//! refunded), so a burst of good logins from one address queues instead of failing.
//! A good password refunds its own charge and clears that login's count from that
//! client, and nothing else: a known-good login interleaved with guesses at another
//! does not reset the client's count. Reaching a limit blocks the client (or the login
//! from that client) for a while; attempts while blocked are refused unchecked.
//!
//! This file is the pure rule over two [`Record`]s with explicit time; `memory.rs`
//! keeps records for the daemon, `file.rs` in a shared file for checkpassword processes.

pub mod file;
pub mod memory;
pub mod shared;

use std::io;
use std::net::IpAddr;
use std::time::Duration;

use super::client::ClientKey;

/// One step of the count, in thousandths of an attempt (decay is fractional).
const UNIT: u64 = 1000;

/// The limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Attempts from one client within a window that block it; 0 = no limit.
    pub max_failures: u32,
    /// Attempts at one login from one client within a window that block that login
    /// from that client; 0 = no limit.
    pub max_login_failures: u32,
    pub window: Duration,
    pub block: Duration,
}

/// What is known of one client, or of one login from one client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    /// The decaying count, in thousandths.
    pub level: u64,
    /// When `level` was last brought up to date (milliseconds on the store's clock).
    pub updated_ms: u64,
    /// Blocked until then; 0 = not blocked (or the end not yet logged).
    pub blocked_until_ms: u64,
    /// Attempts admitted and not yet finished.
    pub in_flight: u32,
    /// When the last attempt was admitted.
    pub flight_ms: u64,
}

/// In-flight attempts older than this were lost (a process killed mid-check): forget
/// them, or they would hold the count up for ever.
const FLIGHT_FORGOTTEN_MS: u64 = 30_000;

/// Which count a block or a release is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The client, for every login.
    Client,
    /// One login from the client.
    Login,
}

/// Something worth a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Blocked { scope: Scope, for_ms: u64 },
    Released { scope: Scope },
}

/// An attempt turned away before its password was checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub scope: Scope,
    /// Milliseconds until the block ends.
    pub remaining_ms: u64,
    /// Not blocked: the count is full of attempts still in flight. Ask again shortly.
    pub busy: bool,
}

/// How a checked attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The password was right.
    Success,
    /// The password or login was wrong.
    Failure,
    /// Nothing was decided (temporary trouble): the charge is refunded.
    Undecided,
}

impl Rules {
    fn window_ms(&self) -> u64 {
        (self.window.as_millis() as u64).max(1)
    }

    fn block_ms(&self) -> u64 {
        self.block.as_millis() as u64
    }

    /// Bring `r` up to `now`: drain the count, and end a block that is over.
    fn decay(&self, r: &mut Record, max: u32, now: u64) -> Option<Event> {
        // A clock that went back drains nothing (and does not stretch a block).
        let elapsed = now.saturating_sub(r.updated_ms);
        let drained =
            u128::from(elapsed) * u128::from(max) * u128::from(UNIT) / u128::from(self.window_ms());
        r.level = r
            .level
            .saturating_sub(u64::try_from(drained).unwrap_or(u64::MAX));
        if max > 0 {
            // Never more than a full count (a corrupt or foreign record).
            r.level = r.level.min((u64::from(max) + 1) * UNIT);
        }
        r.updated_ms = now;
        if r.in_flight > 0 && now.saturating_sub(r.flight_ms) > FLIGHT_FORGOTTEN_MS {
            r.level = r.level.saturating_sub(u64::from(r.in_flight) * UNIT);
            r.in_flight = 0;
        }
        // A block cannot last longer than the rules say from now (a corrupt or
        // foreign record, a clock that went back).
        r.blocked_until_ms = r.blocked_until_ms.min(now.saturating_add(self.block_ms()));
        if r.blocked_until_ms != 0 && r.blocked_until_ms <= now {
            // The count keeps what has not drained: a block shorter than the window
            // does not buy a fresh count.
            r.blocked_until_ms = 0;
            return Some(Event::Released {
                scope: Scope::Client,
            });
        }
        None
    }

    /// Whether `r` (a record of `scope`) holds anything worth keeping at `now`; a
    /// block that has ended still counts until its release is logged.
    pub fn is_idle(&self, r: &Record, scope: Scope, now: u64) -> bool {
        let mut r = *r;
        let max = match scope {
            Scope::Client => self.max_failures,
            Scope::Login => self.max_login_failures,
        };
        self.decay(&mut r, max, now).is_none() && r.level == 0 && r.blocked_until_ms == 0
    }

    /// Start an attempt: refuse it if a block holds or the attempt would pass a limit
    /// (which starts a block), else charge it to both counts.
    pub fn admit(
        &self,
        client: &mut Record,
        login: &mut Record,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Result<(), Refusal> {
        self.bring_up(client, login, now, events);
        for (r, scope, max) in [
            (&mut *client, Scope::Client, self.max_failures),
            (&mut *login, Scope::Login, self.max_login_failures),
        ] {
            if r.blocked_until_ms > now {
                return Err(Refusal {
                    scope,
                    remaining_ms: r.blocked_until_ms - now,
                    busy: false,
                });
            }
            if max > 0 && r.level + UNIT > u64::from(max) * UNIT {
                if r.in_flight > 0 {
                    return Err(Refusal {
                        scope,
                        remaining_ms: 0,
                        busy: true,
                    });
                }
                self.block(r, scope, now, events);
                return Err(Refusal {
                    scope,
                    remaining_ms: self.block_ms(),
                    busy: false,
                });
            }
        }
        for r in [&mut *client, &mut *login] {
            r.level = r.level.saturating_add(UNIT);
            r.in_flight = r.in_flight.saturating_add(1);
            r.flight_ms = now;
        }
        Ok(())
    }

    /// End an attempt [`Rules::admit`] let through.
    pub fn finish(
        &self,
        client: &mut Record,
        login: &mut Record,
        outcome: Outcome,
        now: u64,
        events: &mut Vec<Event>,
    ) {
        self.bring_up(client, login, now, events);
        client.in_flight = client.in_flight.saturating_sub(1);
        login.in_flight = login.in_flight.saturating_sub(1);
        match outcome {
            Outcome::Success => {
                client.level = client.level.saturating_sub(UNIT);
                // Only other attempts at this login still in flight keep counting.
                login.level = u64::from(login.in_flight) * UNIT;
                login.blocked_until_ms = 0;
            }
            Outcome::Undecided => {
                client.level = client.level.saturating_sub(UNIT);
                login.level = login.level.saturating_sub(UNIT);
            }
            Outcome::Failure => {
                for (r, scope, max) in [
                    (&mut *client, Scope::Client, self.max_failures),
                    (&mut *login, Scope::Login, self.max_login_failures),
                ] {
                    if max > 0 && r.level >= u64::from(max) * UNIT && r.blocked_until_ms <= now {
                        self.block(r, scope, now, events);
                    }
                }
            }
        }
    }

    fn bring_up(&self, client: &mut Record, login: &mut Record, now: u64, ev: &mut Vec<Event>) {
        if let Some(e) = self.decay(client, self.max_failures, now) {
            ev.push(e);
        }
        if self.decay(login, self.max_login_failures, now).is_some() {
            ev.push(Event::Released {
                scope: Scope::Login,
            });
        }
    }

    fn block(&self, r: &mut Record, scope: Scope, now: u64, events: &mut Vec<Event>) {
        r.blocked_until_ms = now.saturating_add(self.block_ms()).max(now + 1);
        events.push(Event::Blocked {
            scope,
            for_ms: self.block_ms(),
        });
    }

    /// Bring one record of `scope` up to `now` on its own (a sweep): its release, if due.
    pub fn sweep(&self, r: &mut Record, scope: Scope, now: u64) -> Option<Event> {
        let max = match scope {
            Scope::Client => self.max_failures,
            Scope::Login => self.max_login_failures,
        };
        self.decay(r, max, now).map(|_| Event::Released { scope })
    }
}

/// Where the records live: in the daemon's memory, or in a file shared by processes.
pub trait Store {
    /// Runs `f` on the record of `client` and that of `login` from it, with the
    /// store's present time, under the store's lock. A store that finds blocks of
    /// other clients over on the way reports them in `released`.
    fn update<R>(
        &self,
        client: ClientKey,
        login: &[u8],
        released: &mut Vec<ClientKey>,
        f: impl FnOnce(&mut Record, &mut Record, u64) -> R,
    ) -> io::Result<R>;
}

/// The limits over a store, with the log lines every face shares.
pub struct Throttle<S> {
    pub rules: Rules,
    pub ipv6_prefix: u8,
    pub store: S,
}

/// An attempt under way: give it back to [`Throttle::finish`].
#[derive(Debug)]
pub struct Ticket {
    client: ClientKey,
    login: Vec<u8>,
    service: &'static str,
    /// False when the store could not be used (the attempt was let through uncounted).
    counted: bool,
}

impl Ticket {
    pub fn client(&self) -> ClientKey {
        self.client
    }
}

impl<S: Store> Throttle<S> {
    /// Start an attempt at `login` from `ip` on `service` (for the log).
    pub fn admit(
        &self,
        ip: IpAddr,
        login: &[u8],
        service: &'static str,
    ) -> Result<Ticket, Refusal> {
        let client = ClientKey::of(ip, self.ipv6_prefix);
        let key = login_key(login);
        let mut events = Vec::new();
        let mut released = Vec::new();
        let r = self.store.update(client, &key, &mut released, |c, l, now| {
            self.rules.admit(c, l, now, &mut events)
        });
        log_released(&released, service);
        let counted = match r {
            Ok(r) => {
                log_events(client, login, service, &events);
                r?;
                true
            }
            Err(e) => {
                // Failing closed here would shut every account out over one bad file.
                tracing::error!(target: "auth", service, client = %client, "login limits not applied: {e}");
                false
            }
        };
        Ok(Ticket {
            client,
            login: key,
            service,
            counted,
        })
    }

    /// End an attempt.
    pub fn finish(&self, ticket: Ticket, outcome: Outcome) {
        if !ticket.counted {
            return;
        }
        let mut events = Vec::new();
        let mut released = Vec::new();
        let r = self
            .store
            .update(ticket.client, &ticket.login, &mut released, |c, l, now| {
                self.rules.finish(c, l, outcome, now, &mut events)
            });
        log_released(&released, ticket.service);
        match r {
            Ok(()) => log_events(ticket.client, &ticket.login, ticket.service, &events),
            Err(e) => {
                tracing::error!(target: "auth", service = ticket.service, client = %ticket.client, "login limits not updated: {e}")
            }
        }
    }
}

/// A login as a log line shows it: no control characters, at most 100 characters.
pub fn shown(login: &[u8]) -> String {
    String::from_utf8_lossy(login)
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect()
}

fn log_events(client: ClientKey, login: &[u8], service: &'static str, events: &[Event]) {
    for e in events {
        match e {
            Event::Blocked {
                scope: Scope::Client,
                for_ms,
            } => {
                tracing::warn!(target: "auth", service, client = %client, "client blocked for {} s: too many failed logins", for_ms / 1000)
            }
            Event::Blocked {
                scope: Scope::Login,
                for_ms,
            } => {
                tracing::warn!(target: "auth", service, client = %client, login = %shown(login), "login blocked from this client for {} s: too many failed attempts", for_ms / 1000)
            }
            Event::Released {
                scope: Scope::Client,
            } => {
                tracing::info!(target: "auth", service, client = %client, "client released: its block is over")
            }
            Event::Released {
                scope: Scope::Login,
            } => {
                tracing::info!(target: "auth", service, client = %client, login = %shown(login), "login released from this client: its block is over")
            }
        }
    }
}

/// Log the ends of blocks noticed on other clients.
pub fn log_released(clients: &[ClientKey], service: &'static str) {
    for c in clients {
        tracing::info!(target: "auth", service, client = %c, "client released: its block is over");
    }
}

/// How long an attempt waits for attempts in flight before it is refused.
pub const BUSY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// How often a waiting attempt asks again.
pub const BUSY_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// The log line of a refusal.
pub fn refusal_text(r: &Refusal) -> String {
    match (r.busy, r.scope) {
        (true, _) => "too many attempts at once from this client".to_string(),
        (false, Scope::Client) => format!(
            "this client is blocked for {} s more after repeated failures",
            r.remaining_ms.div_ceil(1000)
        ),
        (false, Scope::Login) => format!(
            "this login is blocked from this client for {} s more after repeated failures",
            r.remaining_ms.div_ceil(1000)
        ),
    }
}

/// The login as counted: ASCII case folded (logins are looked up that way), at most
/// 255 bytes, so that `Joe` and `joe` share one count.
pub fn login_key(login: &[u8]) -> Vec<u8> {
    login
        .iter()
        .take(255)
        .map(|b| b.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(max: u32, per_login: u32) -> Rules {
        Rules {
            max_failures: max,
            max_login_failures: per_login,
            window: Duration::from_secs(600),
            block: Duration::from_secs(900),
        }
    }

    /// Admit and finish one attempt at `now`; `Err` when refused.
    fn attempt(
        r: &Rules,
        c: &mut Record,
        l: &mut Record,
        outcome: Outcome,
        now: u64,
    ) -> Result<Vec<Event>, Refusal> {
        let mut ev = Vec::new();
        r.admit(c, l, now, &mut ev)?;
        r.finish(c, l, outcome, now, &mut ev);
        Ok(ev)
    }

    #[test]
    fn a_good_login_elsewhere_does_not_clear_the_clients_count() {
        let r = rules(10, 0);
        let (mut c, mut ann, mut joe) = (Record::default(), Record::default(), Record::default());
        let mut checked = 0;
        'rounds: for round in 0..5u64 {
            for i in 0..9u64 {
                let t = round * 10 + i;
                match attempt(&r, &mut c, &mut ann, Outcome::Failure, t) {
                    Ok(_) => checked += 1,
                    Err(_) => break 'rounds,
                }
            }
            let _ = attempt(&r, &mut c, &mut joe, Outcome::Success, round * 10 + 9);
        }
        assert_eq!(checked, 10, "only the limit is ever checked");
        assert!(c.blocked_until_ms > 0);
        // joe too is refused while the client is blocked.
        let e = attempt(&r, &mut c, &mut joe, Outcome::Success, 100).unwrap_err();
        assert_eq!(e.scope, Scope::Client);
    }

    #[test]
    fn attempts_in_flight_count() {
        let r = rules(10, 0);
        let (mut c, mut l) = (Record::default(), Record::default());
        let mut ev = Vec::new();
        let tries: Vec<_> = (0..50)
            .map(|_| r.admit(&mut c, &mut l, 5, &mut ev))
            .collect();
        assert_eq!(tries.iter().filter(|t| t.is_ok()).count(), 10);
        // The others wait: those in flight may yet succeed.
        assert!(tries.iter().skip(10).all(|t| t.is_err_and(|e| e.busy)));
        assert!(ev.is_empty());
        // They fail: the next attempt is blocked, not told to wait.
        for _ in 0..10 {
            r.finish(&mut c, &mut l, Outcome::Failure, 6, &mut ev);
        }
        let e = r.admit(&mut c, &mut l, 7, &mut ev).unwrap_err();
        assert!(!e.busy && e.scope == Scope::Client);
        assert_eq!(
            ev,
            vec![Event::Blocked {
                scope: Scope::Client,
                for_ms: 900_000
            }]
        );
        // Had they succeeded, the waiting ones would have got their turn.
        let (mut c, mut l) = (Record::default(), Record::default());
        for _ in 0..10 {
            r.admit(&mut c, &mut l, 5, &mut ev).unwrap();
        }
        assert!(r.admit(&mut c, &mut l, 5, &mut ev).unwrap_err().busy);
        r.finish(&mut c, &mut l, Outcome::Success, 5, &mut ev);
        r.admit(&mut c, &mut l, 5, &mut ev).unwrap();
    }

    #[test]
    fn success_clears_only_its_own_login_and_refunds_its_charge() {
        let r = rules(10, 3);
        let (mut c, mut joe) = (Record::default(), Record::default());
        attempt(&r, &mut c, &mut joe, Outcome::Failure, 0).unwrap();
        attempt(&r, &mut c, &mut joe, Outcome::Failure, 0).unwrap();
        attempt(&r, &mut c, &mut joe, Outcome::Success, 0).unwrap();
        assert_eq!(joe.level, 0);
        assert_eq!(c.level, 2 * UNIT, "the client's failures stay");
        // A third wrong password for one login blocks that login only.
        let mut ann = Record::default();
        for _ in 0..3 {
            attempt(&r, &mut c, &mut ann, Outcome::Failure, 1).unwrap();
        }
        assert!(ann.blocked_until_ms > 0 && c.blocked_until_ms == 0);
        let e = attempt(&r, &mut c, &mut ann, Outcome::Success, 2).unwrap_err();
        assert_eq!(e.scope, Scope::Login);
        attempt(&r, &mut c, &mut joe, Outcome::Success, 2).unwrap();
    }

    #[test]
    fn counts_decay_with_time_and_blocks_end_with_a_release() {
        let r = rules(10, 0);
        let (mut c, mut l) = (Record::default(), Record::default());
        for _ in 0..9 {
            attempt(&r, &mut c, &mut l, Outcome::Failure, 0).unwrap();
        }
        // Half a window later half the count has drained: 6 more are checked, and the
        // sixth failure starts a block.
        let mut n = 0;
        while attempt(&r, &mut c, &mut l, Outcome::Failure, 300_000).is_ok() {
            n += 1;
        }
        assert_eq!(n, 6);
        assert_eq!(r.sweep(&mut c, Scope::Client, 300_000 + 899_999), None);
        assert_eq!(
            r.sweep(&mut c, Scope::Client, 300_000 + 900_000),
            Some(Event::Released {
                scope: Scope::Client
            })
        );
        assert!(r.is_idle(&c, Scope::Client, 300_000 + 900_000));
        attempt(&r, &mut c, &mut l, Outcome::Failure, 1_300_000).unwrap();
    }

    #[test]
    fn a_block_shorter_than_the_window_buys_no_fresh_count() {
        let r = Rules {
            block: Duration::from_secs(60),
            ..rules(10, 0)
        };
        let (mut c, mut l) = (Record::default(), Record::default());
        let mut checked = 0;
        // Guess for one whole window, as fast as blocks allow.
        let mut t = 0;
        while t < 600_000 {
            if attempt(&r, &mut c, &mut l, Outcome::Failure, t).is_ok() {
                checked += 1;
            }
            t += 1000;
        }
        // The 10 of the first block, then what drains: 10 a window in all, plus the
        // drain over the window (a leaky bucket's steady rate).
        assert!(checked <= 20, "{checked} checked in one window");
    }

    #[test]
    fn attempts_lost_in_flight_are_forgotten() {
        let r = rules(2, 0);
        let (mut c, mut l) = (Record::default(), Record::default());
        let mut ev = Vec::new();
        r.admit(&mut c, &mut l, 0, &mut ev).unwrap();
        r.admit(&mut c, &mut l, 0, &mut ev).unwrap();
        assert!(r.admit(&mut c, &mut l, 1, &mut ev).unwrap_err().busy);
        // Never finished (the process was killed): after a while they no longer count.
        r.admit(&mut c, &mut l, FLIGHT_FORGOTTEN_MS + 1, &mut ev)
            .unwrap();
    }

    #[test]
    fn undecided_attempts_are_refunded_and_zero_means_no_limit() {
        let r = rules(2, 0);
        let (mut c, mut l) = (Record::default(), Record::default());
        for t in 0..10 {
            attempt(&r, &mut c, &mut l, Outcome::Undecided, t).unwrap();
        }
        let r = rules(0, 0);
        for t in 0..100 {
            attempt(&r, &mut c, &mut l, Outcome::Failure, t).unwrap();
        }
    }

    #[test]
    fn records_from_elsewhere_cannot_block_for_longer_than_the_rules() {
        let r = rules(10, 0);
        let mut c = Record {
            level: u64::MAX,
            updated_ms: u64::MAX,
            blocked_until_ms: u64::MAX,
            in_flight: u32::MAX,
            flight_ms: 0,
        };
        let mut l = Record::default();
        let e = attempt(&r, &mut c, &mut l, Outcome::Failure, 1000).unwrap_err();
        assert!(e.remaining_ms <= 900_000);
    }
}
