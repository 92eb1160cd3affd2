//! When each site is flushed: per-site schedules evaluated inside the daemon, with no
//! system cron. A schedule is a crontab(5) time spec ([`crontab::Crontab`]) in the site's
//! optional time zone; the timer asks it for the next firing after the last one and adds
//! a per-site jitter ([`crontab::jitter_for`]) so thousands of sites on the same spec do
//! not all connect in the same second.

pub mod crontab;

pub use crontab::{Crontab, CrontabError, FieldName, FieldProblem, jitter_for};
