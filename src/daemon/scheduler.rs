//! One timer for all sites: a plan of the next firing of every site's crontab schedule
//! (site.toml, else the default), plus a per-site jitter so that thousands of sites on
//! the same schedule do not start in the same second. The plan is pure and takes the
//! time as an argument, so it is tested without sleeping; the loop only sleeps until
//! the earliest entry.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use super::flusher::Flusher;
use crate::schedule::{Crontab, jitter_for};
use crate::spool::site::Site;

/// Parse a site's schedule (site.toml, else the default) with its time zone.
pub fn site_schedule(site: &Site, default: &str) -> Result<Crontab, String> {
    let spec = site.settings.schedule.as_deref().unwrap_or(default);
    let mut c =
        Crontab::parse(spec).map_err(|e| format!("site {}: schedule {spec:?}: {e}", site.name))?;
    if let Some(tz) = &site.settings.timezone {
        let tz: chrono_tz::Tz = tz
            .parse()
            .map_err(|e| format!("site {}: timezone {tz:?}: {e}", site.name))?;
        c = c.with_timezone(tz);
    }
    Ok(c)
}

/// Distinct schedules remembered while taking due sites (a handful in practice).
const MEMO: usize = 16;

/// A next firing computed during one `take_due`: (from, schedule, next).
type Memo<'a> = (DateTime<Utc>, &'a Crontab, Option<DateTime<Utc>>);

/// Sites taken out of the plan because they are due, in firing order.
pub struct Due(BTreeSet<(DateTime<Utc>, String, DateTime<Utc>)>);

impl Due {
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|(_, n, _)| n.clone()).collect()
    }
}

/// When each site fires next.
#[derive(Default)]
pub struct Plan {
    schedules: HashMap<String, (Crontab, chrono::Duration)>,
    /// (fire time including jitter, site, the schedule's own time)
    queue: BTreeSet<(DateTime<Utc>, String, DateTime<Utc>)>,
}

impl Plan {
    /// Bring the plan in line with the current sites; keeps existing entries.
    pub fn update(
        &mut self,
        sites: &[Site],
        default: &str,
        max_jitter: u32,
        now: DateTime<Utc>,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let names: std::collections::HashSet<&str> =
            sites.iter().map(|s| s.name.as_str()).collect();
        self.schedules.retain(|n, _| names.contains(n.as_str()));
        self.queue.retain(|(_, n, _)| names.contains(n.as_str()));
        for s in sites {
            let c = match site_schedule(s, default) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let jitter = chrono::Duration::from_std(jitter_for(&s.name, max_jitter))
                .unwrap_or_else(|_| chrono::Duration::zero());
            let changed = self.schedules.get(&s.name).is_none_or(|(old, _)| old != &c);
            if changed {
                self.queue.retain(|(_, n, _)| n != &s.name);
                if let Some(t) = c.next_after(now) {
                    self.queue.insert((t + jitter, s.name.clone(), t));
                }
                self.schedules.insert(s.name.clone(), (c, jitter));
            }
        }
        problems
    }

    /// The earliest firing time.
    pub fn next_wake(&self) -> Option<DateTime<Utc>> {
        self.queue.first().map(|(t, _, _)| *t)
    }

    /// Sites due at `now`; each is rescheduled to its next firing.
    pub fn take_due(&mut self, now: DateTime<Utc>) -> Vec<String> {
        let due = self.split_due(now);
        let names = due.names();
        self.reschedule(due, now);
        names
    }

    /// Takes the sites due at `now` out of the plan at once, so that they can be handed
    /// out before thousands of them are rescheduled; give them back to `reschedule`.
    pub fn split_due(&mut self, now: DateTime<Utc>) -> Due {
        let first_later = (
            now + chrono::Duration::nanoseconds(1),
            String::new(),
            DateTime::<Utc>::MIN_UTC,
        );
        let later = self.queue.split_off(&first_later);
        Due(std::mem::replace(&mut self.queue, later))
    }

    /// Puts sites taken by `split_due` back at their next firing.
    pub fn reschedule(&mut self, due: Due, now: DateTime<Utc>) {
        let Plan { schedules, queue } = self;
        // Thousands of sites fall due together on the same schedule: compute each
        // distinct next firing once, not once per site.
        let mut memo: Vec<Memo> = Vec::new();
        for (_, name, base) in due.0 {
            let Some((c, jitter)) = schedules.get(&name) else {
                continue;
            };
            let from = base.max(now - *jitter);
            let next = match memo.iter().find(|(f, m, _)| *f == from && *m == c) {
                Some((_, _, next)) => *next,
                None => {
                    let next = c.next_after(from);
                    if memo.len() < MEMO {
                        memo.push((from, c, next));
                    }
                    next
                }
            };
            if let Some(next) = next {
                queue.insert((next + *jitter, name, next));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Next firing of a site (for `turnmail status`).
    pub fn next_for(&self, name: &str) -> Option<DateTime<Utc>> {
        self.queue
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(t, _, _)| *t)
    }
}

/// How often the sites' stamps are compared to what their discovery saw (a few stats
/// per site); they are discovered again only when something changed.
const CHECK: Duration = Duration::from_secs(30);

/// How often the engine's version is compared to the sites' when they are the
/// database's rows.
const VERSION_POLL: Duration = Duration::from_secs(1);

/// How often the sites are discovered again and their spools looked into regardless,
/// in case a change left no stamp behind (two edits within one clock tick).
const SWEEP: Duration = Duration::from_secs(600);

/// The scheduler loop: sleep until the earliest due site or the next check of the
/// sites. Due sites are handed to the flusher, which looks into their spools off this
/// task.
pub async fn run(
    flusher: Arc<Flusher>,
    plan: Arc<std::sync::Mutex<Plan>>,
    default: String,
    max_jitter: u32,
    mut stop: watch::Receiver<bool>,
) {
    let mut next_check = tokio::time::Instant::now();
    let mut next_sweep = next_check + SWEEP;
    let mut planned = None;
    loop {
        // Sites kept in the database change with the engine's version: looked at
        // every second (a comparison of two numbers), discovered again when it moved.
        if flusher.version_moved() {
            next_check = tokio::time::Instant::now();
        }
        if tokio::time::Instant::now() >= next_check {
            let sweep = tokio::time::Instant::now() >= next_sweep;
            if sweep {
                flusher.forget_spools();
                next_sweep = tokio::time::Instant::now() + SWEEP;
            }
            flusher.refresh_if_changed(sweep).await;
            // Also after a discovery made for someone else (the operator's flush).
            if planned != Some(flusher.generation()) {
                planned = Some(flusher.generation());
                let sites = flusher.sites();
                let problems = plan.lock().unwrap_or_else(|p| p.into_inner()).update(
                    &sites.sites,
                    &default,
                    max_jitter,
                    Utc::now(),
                );
                for p in problems {
                    tracing::warn!(target: "schedule", "{p}");
                }
            }
            next_check = tokio::time::Instant::now() + CHECK;
        }
        let now = Utc::now();
        let due = plan
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .split_due(now);
        let names = due.names();
        if !names.is_empty() {
            flusher.start_due(names);
        }
        plan.lock()
            .unwrap_or_else(|p| p.into_inner())
            .reschedule(due, now);
        let wake = plan.lock().unwrap_or_else(|p| p.into_inner()).next_wake();
        let until_due = wake
            .and_then(|w| (w - Utc::now()).to_std().ok())
            .unwrap_or(CHECK);
        let mut sleep =
            until_due.min(next_check.saturating_duration_since(tokio::time::Instant::now()));
        if flusher.follows_engine() {
            sleep = sleep.min(VERSION_POLL);
        }
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::site::SiteSettings;

    fn site(name: &str, schedule: Option<&str>) -> Site {
        Site {
            name: name.into(),
            dir: std::path::PathBuf::from("/nonexistent").join(name),
            relayhost: None,
            prefixes: vec![b"p-".to_vec()],
            domains: Vec::new(),
            settings: SiteSettings {
                schedule: schedule.map(str::to_string),
                ..SiteSettings::default()
            },
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn sites_fire_on_their_schedules_without_sleeping() {
        let mut p = Plan::default();
        let t0 = at("2026-11-21T10:00:30Z");
        let problems = p.update(
            &[
                site("a", None),
                site("b", Some("0 * * * *")),
                site("bad", Some("61 * * * *")),
            ],
            "*/2 * * * *",
            0,
            t0,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(p.next_wake(), Some(at("2026-11-21T10:02:00Z")));
        assert!(p.take_due(at("2026-11-21T10:01:59Z")).is_empty());
        assert_eq!(p.take_due(at("2026-11-21T10:02:00Z")), vec!["a"]);
        assert_eq!(p.next_for("a"), Some(at("2026-11-21T10:04:00Z")));
        // A daemon that wakes late fires a site once, not once per missed slot.
        assert_eq!(p.take_due(at("2026-11-21T11:00:10Z")), vec!["a", "b"]);
        assert_eq!(p.next_for("a"), Some(at("2026-11-21T11:02:00Z")));
        assert_eq!(p.next_for("b"), Some(at("2026-11-21T12:00:00Z")));
        // Removed sites leave the plan.
        p.update(
            &[site("b", Some("0 * * * *"))],
            "*/2 * * * *",
            0,
            at("2026-11-21T11:00:20Z"),
        );
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn jitter_spreads_sites_within_the_bound() {
        let mut p = Plan::default();
        let t0 = at("2026-11-21T10:00:30Z");
        let sites: Vec<Site> = (0..1000).map(|i| site(&format!("s{i}"), None)).collect();
        p.update(&sites, "*/2 * * * *", 30, t0);
        let base = at("2026-11-21T10:02:00Z");
        let mut seconds = std::collections::HashSet::new();
        for s in &sites {
            let t = p.next_for(&s.name).unwrap();
            assert!(
                t >= base && t <= base + chrono::Duration::seconds(30),
                "{t}"
            );
            seconds.insert(t.timestamp());
        }
        assert!(
            seconds.len() > 20,
            "sites should not all start in the same second"
        );
    }
}
