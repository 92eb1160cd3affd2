//! Per-site flush schedules.
pub mod crontab;
