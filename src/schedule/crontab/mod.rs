//! crontab(5) time specs for site flushes, with the `cron` crate doing the calendar
//! arithmetic. Operators write the five fields they know from crontab (minute hour
//! day-of-month month day-of-week: numbers, `a-b`, `*/n`, `a-b/n`, lists, `jan`-`dec` and
//! `sun`-`sat` in any case, weekday 0 or 7 for Sunday) or a macro (`@hourly`, `@daily`,
//! `@midnight`, `@weekly`, `@monthly`, `@yearly`, `@annually`). The crate speaks Quartz
//! instead (a seconds field, 1 = Sunday, 0 rejected, day fields AND-ed), so this module
//! parses the crontab line itself, which lets every error name its field, and hands the
//! crate fully expanded value lists (`0 0,30 3 * * 1,6,7`); no weekday number, name,
//! step or Sunday-crossing range reaches the crate in crontab spelling. Day rule, as in
//! Vixie cron and cronie (`src/entry.c` sets `DOM_STAR`/`DOW_STAR` when a field's *first
//! character* is `*`; `find_jobs` in `src/cron.c` ANDs the day fields when either flag is
//! set, else ORs them): `0 0 1 * 1` fires on the 1st and on every Monday, but `0 0 */2 *
//! 1` only on odd-numbered Mondays, because `*/2` starts with `*`. The OR case is two crate
//! schedules whose earlier firing wins. Time zones follow cronie's main loop for its own
//! zone (the "DST begins" and "DST ends" cases in `src/cron.c`): when clocks spring forward,
//! a fixed-time spec (minute and hour fields not starting with `*`) whose time falls in the
//! skipped hour fires once at the jump (`30 2 * * *` runs at 03:00 CEST on 2026-03-29 in
//! Europe/Berlin), while `*`-led specs (`*/2 * * * *`, `0 * * * *`) fire only at times that
//! exist; when clocks fall back, a fixed-time spec fires at the first of the twice-occurring
//! times only (02:30 CEST on 2026-10-25, not 02:30 CET), while `*`-led specs keep firing
//! through the repeated hour. To get there, the crate is run in a fixed UTC offset for each
//! stretch between offset changes, and the boundaries are found by probing the zone. The
//! crate computes no year after 2100, so [`Crontab::next_after`] answers `None` past that.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Offset, TimeZone, Utc};
use chrono_tz::Tz;

mod fields;

pub use fields::{CrontabError, FieldName, FieldProblem};
use fields::{MAX_DAYS, Parsed, parse_field, render};

/// Offset changes are looked for at this spacing, then pinned to the second by bisection.
/// Real zones change offset months apart, so one change per probe interval is a safe bet.
const PROBE_SECS: i64 = 3600;
/// How far back a repeated (fall-back) hour can start; real DST shifts are at most 2 h.
const LOOKBACK_SECS: i64 = 4 * 3600;
/// Offset changes crossed in one search; the crate stops at 2100 long before this.
const MAX_TRANSITIONS: usize = 512;

/// One parsed crontab(5) time spec, evaluated in a time zone (UTC unless set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crontab {
    spec: String,
    tz: Tz,
    /// One schedule, or two (day-of-month, day-of-week) for Vixie's OR rule.
    schedules: Vec<cron::Schedule>,
    /// cronie's MIN_STAR|HR_STAR: such specs get no DST catch-up and run in both passes
    /// of a repeated hour.
    wildcard: bool,
}

impl Crontab {
    /// Parses five crontab(5) fields or a macro. Surrounding whitespace is ignored;
    /// fields are separated by spaces or tabs.
    pub fn parse(spec: &str) -> Result<Crontab, CrontabError> {
        let spec = spec.trim();
        let tokens: Vec<&str> = spec.split_ascii_whitespace().collect();
        let Some(first) = tokens.first() else {
            return Err(CrontabError::Empty);
        };
        let fields: Vec<&str> = if first.starts_with('@') {
            let expansion = match *first {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                "@reboot" => return Err(CrontabError::Reboot),
                other => return Err(CrontabError::UnknownMacro(other.to_owned())),
            };
            if tokens.len() > 1 {
                return Err(CrontabError::MacroTrailing {
                    name: (*first).to_owned(),
                    rest: tokens[1..].join(" "),
                });
            }
            expansion.split(' ').collect()
        } else {
            tokens
        };
        if fields.len() != 5 {
            return Err(CrontabError::FieldCount {
                spec: spec.to_owned(),
                found: fields.len(),
                hint: if fields.len() > 5 {
                    "; no seconds field and no command"
                } else {
                    ""
                },
            });
        }
        let mut parsed = [Parsed {
            bits: 0,
            star: false,
        }; 5];
        for ((slot, name), text) in parsed.iter_mut().zip(FieldName::ALL).zip(&fields) {
            *slot = parse_field(name, text)?;
        }
        let [minute, hour, dom, month, dow] = parsed;

        // Sunday is 0 and 7 in crontab; the crate has one Sunday (Quartz 1).
        let dow_bits = (dow.bits & 0x7f) | (dow.bits >> 7);
        let dom_possible = (1..=12u32).any(|m| {
            month.bits & (1 << m) != 0
                && MAX_DAYS.get(m as usize - 1).is_some_and(|&max| {
                    let days_in_month = ((1u64 << (max + 1)) - 1) & !1;
                    dom.bits & days_in_month != 0
                })
        });

        let min_list = render(minute.bits, 0, 59, 0);
        let hour_list = render(hour.bits, 0, 23, 0);
        let dom_list = render(dom.bits, 1, 31, 0);
        let month_list = render(month.bits, 1, 12, 0);
        let dow_list = render(dow_bits, 0, 6, 1);
        let mut exprs = Vec::new();
        if dom.star || dow.star {
            // Vixie ANDs the day fields here, as the crate does.
            if !dom_possible {
                return Err(CrontabError::NeverFires {
                    days: fields[2].to_owned(),
                    months: fields[3].to_owned(),
                });
            }
            exprs.push(format!(
                "0 {min_list} {hour_list} {dom_list} {month_list} {dow_list}"
            ));
        } else {
            // Both restricted: a day matches when either field does (Vixie's OR), so the
            // earlier of two schedules wins. A day-of-month half that can never occur
            // (`31 2`) adds nothing and is left out.
            if dom_possible {
                exprs.push(format!(
                    "0 {min_list} {hour_list} {dom_list} {month_list} ?"
                ));
            }
            exprs.push(format!(
                "0 {min_list} {hour_list} ? {month_list} {dow_list}"
            ));
        }
        let schedules = exprs
            .into_iter()
            .map(|expr| {
                cron::Schedule::from_str(&expr).map_err(|e| CrontabError::Translation {
                    spec: spec.to_owned(),
                    message: e.to_string(),
                    expr,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Crontab {
            spec: spec.to_owned(),
            tz: Tz::UTC,
            schedules,
            wildcard: minute.star || hour.star,
        })
    }

    /// Evaluates the schedule in `tz` (the site's wall clock) instead of UTC.
    pub fn with_timezone(self, tz: Tz) -> Crontab {
        Crontab { tz, ..self }
    }

    /// The zone the schedule is evaluated in.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The spec as written (trimmed), for logs and `turnmail status`.
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The next firing strictly after `t`, on a whole minute; `None` if there is none
    /// before the end of 2100. Stateless: the scheduler passes the last firing (or now).
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // Firings are whole minutes, so "after the whole second" is "after t".
        let t = t.timestamp();
        let mut from = t;
        let mut offset = self.offset_at(t)?;
        if !self.wildcard
            && let Some(resume) = self.repeated_until(t)
        {
            from = resume;
        }
        for _ in 0..MAX_TRANSITIONS {
            let candidate = self.next_in_offset(from, offset)?;
            let Some((change, new_offset)) = self.first_change(from, candidate, offset) else {
                return DateTime::from_timestamp(candidate, 0);
            };
            let shift = i64::from(new_offset) - i64::from(offset);
            if shift > 0 {
                // Spring forward: wall times [change+offset, change+new_offset) do not
                // exist. A fixed-time spec due in them runs once at the jump, as cronie's
                // "DST begins" case does.
                if !self.wildcard && candidate < change + shift {
                    return DateTime::from_timestamp(ceil_minute(change), 0);
                }
                from = change - 1;
            } else {
                // Fall back: the wall clock repeats the last -shift seconds. `*`-led specs
                // run through them again; fixed-time ones already ran (cronie's "DST ends").
                from = if self.wildcard {
                    change - 1
                } else {
                    change - shift - 1
                };
            }
            offset = new_offset;
        }
        None
    }

    /// If `t` lies in the second pass of a repeated (fall-back) stretch of wall time, the
    /// last second of it, so fixed-time specs do not run twice.
    fn repeated_until(&self, t: i64) -> Option<i64> {
        let back = t - LOOKBACK_SECS;
        let (change, after) = self.first_change(back, t, self.offset_at(back)?)?;
        let before = self.offset_at(change - 1)?;
        let end = change + i64::from(before) - i64::from(after) - 1;
        (end > t).then_some(end)
    }

    /// The crate's next firing after `from` on a wall clock `offset` seconds east of UTC.
    fn next_in_offset(&self, from: i64, offset: i32) -> Option<i64> {
        let zone = FixedOffset::east_opt(offset)?;
        let start = DateTime::from_timestamp(from, 0)?.with_timezone(&zone);
        self.schedules
            .iter()
            .filter_map(|s| s.after(&start).next())
            .map(|d| d.timestamp())
            .min()
    }

    /// The first second in `(from, to]` whose UTC offset is not `offset`, with its offset.
    fn first_change(&self, from: i64, to: i64, offset: i32) -> Option<(i64, i32)> {
        let mut low = from;
        while low < to {
            let high = (low + PROBE_SECS).min(to);
            if self.offset_at(high)? != offset {
                let mut high = high;
                while high - low > 1 {
                    let mid = low + (high - low) / 2;
                    if self.offset_at(mid)? != offset {
                        high = mid;
                    } else {
                        low = mid;
                    }
                }
                return Some((high, self.offset_at(high)?));
            }
            low = high;
        }
        None
    }

    fn offset_at(&self, secs: i64) -> Option<i32> {
        let instant = DateTime::from_timestamp(secs, 0)?;
        Some(
            self.tz
                .offset_from_utc_datetime(&instant.naive_utc())
                .fix()
                .local_minus_utc(),
        )
    }
}

impl FromStr for Crontab {
    type Err = CrontabError;

    fn from_str(spec: &str) -> Result<Crontab, CrontabError> {
        Crontab::parse(spec)
    }
}

impl fmt::Display for Crontab {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

fn ceil_minute(secs: i64) -> i64 {
    secs + (60 - secs.rem_euclid(60)) % 60
}

/// A delay in `[0, max_secs)` seconds, in milliseconds, fixed for `key` (the site's name)
/// across restarts and builds, so sites sharing a spec spread over the window instead of
/// connecting in the same second. The scheduler adds it to each firing; keep `max_secs`
/// below the schedule's period (e.g. 60 for `*/2 * * * *`).
pub fn jitter_for(key: &str, max_secs: u32) -> Duration {
    // FNV-1a then a 64-bit finalizer: fixed constants, unlike std's hashers, whose
    // algorithm may change between Rust releases.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^= hash >> 33;
    let window_ms = u64::from(max_secs) * 1000;
    // Multiply-shift: the high bits of hash * window, evenly spread over the window.
    let millis = (u128::from(hash) * u128::from(window_ms)) >> 64;
    Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

#[cfg(test)]
mod tests;
