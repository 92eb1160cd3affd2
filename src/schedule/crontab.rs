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

/// Offset changes are looked for at this spacing, then pinned to the second by bisection.
/// Real zones change offset months apart, so one change per probe interval is a safe bet.
const PROBE_SECS: i64 = 3600;
/// How far back a repeated (fall-back) hour can start; real DST shifts are at most 2 h.
const LOOKBACK_SECS: i64 = 4 * 3600;
/// Offset changes crossed in one search; the crate stops at 2100 long before this.
const MAX_TRANSITIONS: usize = 512;

const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
/// February counts 29 so a leap-day spec is accepted.
const MAX_DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/// One of the five crontab fields, named as operators know them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldName {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl FieldName {
    const ALL: [FieldName; 5] = [
        FieldName::Minute,
        FieldName::Hour,
        FieldName::DayOfMonth,
        FieldName::Month,
        FieldName::DayOfWeek,
    ];

    fn bounds(self) -> (u32, u32) {
        match self {
            FieldName::Minute => (0, 59),
            FieldName::Hour => (0, 23),
            FieldName::DayOfMonth => (1, 31),
            FieldName::Month => (1, 12),
            FieldName::DayOfWeek => (0, 7),
        }
    }

    /// Names accepted in the field and the number of the first one.
    fn names(self) -> (&'static [&'static str], u32) {
        match self {
            FieldName::Month => (&MONTH_NAMES, 1),
            FieldName::DayOfWeek => (&DAY_NAMES, 0),
            _ => (&[], 0),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            FieldName::Month => "a number or a month name (jan-dec)",
            FieldName::DayOfWeek => "a number or a day name (sun-sat)",
            _ => "a number",
        }
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldName::Minute => "minute",
            FieldName::Hour => "hour",
            FieldName::DayOfMonth => "day-of-month",
            FieldName::Month => "month",
            FieldName::DayOfWeek => "day-of-week",
        })
    }
}

/// What is wrong inside one field; shown after the field's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldProblem {
    /// A value outside the field's range, as written.
    OutOfRange { value: String, min: u32, max: u32 },
    /// Neither a number nor, where names are allowed, a name.
    NotAValue {
        value: String,
        item: String,
        expected: &'static str,
    },
    /// `a-b` with `a > b`: crontab ranges do not wrap around.
    Backwards { item: String, hint: &'static str },
    /// `/0`, which would never advance.
    ZeroStep { item: String },
    /// `a/n`: crontab steps apply to `*` or a range; implementations disagree on the
    /// meaning of `a/n` (Vixie drops the step silently), so it is refused.
    StepWithoutRange { item: String, suggestion: String },
    /// `1,,2`, a trailing comma, or an empty field.
    EmptyItem { field_text: String },
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldProblem::OutOfRange { value, min, max } => {
                write!(f, "{value} is out of range {min}-{max}")
            }
            FieldProblem::NotAValue {
                value,
                item,
                expected,
            } if value == item => write!(f, "\"{value}\" is not {expected}"),
            FieldProblem::NotAValue {
                value,
                item,
                expected,
            } => write!(f, "\"{value}\" in \"{item}\" is not {expected}"),
            FieldProblem::Backwards { item, hint } => write!(
                f,
                "range {item} runs backwards; crontab ranges do not wrap around{hint}"
            ),
            FieldProblem::ZeroStep { item } => {
                write!(f, "step 0 in \"{item}\" would never advance")
            }
            FieldProblem::StepWithoutRange { item, suggestion } => write!(
                f,
                "\"{item}\": a step needs * or a range before the slash, e.g. {suggestion}"
            ),
            FieldProblem::EmptyItem { field_text } => {
                write!(f, "empty list item in \"{field_text}\"")
            }
        }
    }
}

/// Why a schedule was refused, in words for the operator who wrote it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CrontabError {
    #[error(
        "empty schedule: write five fields (minute hour day-of-month month day-of-week) \
         or a macro such as @hourly"
    )]
    Empty,
    #[error(
        "{found} fields in \"{spec}\": a schedule has five \
         (minute hour day-of-month month day-of-week){hint}"
    )]
    FieldCount {
        spec: String,
        found: usize,
        hint: &'static str,
    },
    #[error(
        "@reboot has no meaning for a flush schedule (turnmail runs nothing at boot); \
         use a time such as @hourly or \"*/2 * * * *\""
    )]
    Reboot,
    #[error(
        "unknown macro \"{0}\": use @yearly, @annually, @monthly, @weekly, @daily, \
         @midnight or @hourly, or five crontab fields"
    )]
    UnknownMacro(String),
    #[error("\"{name}\" takes nothing after it, found \"{rest}\"")]
    MacroTrailing { name: String, rest: String },
    #[error("{field}: {problem}")]
    Field {
        field: FieldName,
        problem: FieldProblem,
    },
    #[error(
        "day-of-month: no day in \"{days}\" exists in month \"{months}\", \
         so the schedule would never fire"
    )]
    NeverFires { days: String, months: String },
    /// A bug here, not in the operator's spec: the expanded lists were refused.
    #[error(
        "internal error: the cron crate refused \"{expr}\", translated from \"{spec}\": {message}"
    )]
    Translation {
        spec: String,
        expr: String,
        message: String,
    },
}

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

/// A parsed field: the values as a bit set, and whether its text starts with `*`.
#[derive(Clone, Copy)]
struct Parsed {
    bits: u64,
    star: bool,
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

/// Parses one field as crontab(5) does: a comma list of `*`, `*/n`, `v`, `a-b`, `a-b/n`.
fn parse_field(field: FieldName, text: &str) -> Result<Parsed, CrontabError> {
    let fail = |problem| CrontabError::Field { field, problem };
    let (min, max) = field.bounds();
    let mut bits = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(fail(FieldProblem::EmptyItem {
                field_text: text.to_owned(),
            }));
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(parse_step(field, item, step)?)),
            None => (item, None),
        };
        let (start, end) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, b) = (parse_value(field, item, a)?, parse_value(field, item, b)?);
            if a > b {
                return Err(fail(FieldProblem::Backwards {
                    item: item.to_owned(),
                    hint: if field == FieldName::DayOfWeek {
                        " (Sunday can also be written 7, as in fri-7)"
                    } else {
                        ""
                    },
                }));
            }
            (a, b)
        } else {
            let value = parse_value(field, item, range)?;
            if let Some(step) = step {
                return Err(fail(FieldProblem::StepWithoutRange {
                    item: item.to_owned(),
                    suggestion: format!("{value}-{max}/{step}"),
                }));
            }
            (value, value)
        };
        let step = usize::try_from(step.unwrap_or(1)).unwrap_or(usize::MAX);
        for value in (start..=end).step_by(step) {
            bits |= 1 << value;
        }
    }
    Ok(Parsed {
        bits,
        star: text.starts_with('*'),
    })
}

fn parse_step(field: FieldName, item: &str, text: &str) -> Result<u32, CrontabError> {
    let fail = |problem| CrontabError::Field { field, problem };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail(FieldProblem::NotAValue {
            value: text.to_owned(),
            item: item.to_owned(),
            expected: "a step (a number after the slash)",
        }));
    }
    // A step too long for u32 only ever selects the start, like any step past the end.
    let step = text.parse::<u32>().unwrap_or(u32::MAX);
    if step == 0 {
        return Err(fail(FieldProblem::ZeroStep {
            item: item.to_owned(),
        }));
    }
    Ok(step)
}

fn parse_value(field: FieldName, item: &str, text: &str) -> Result<u32, CrontabError> {
    let fail = |problem| CrontabError::Field { field, problem };
    let (min, max) = field.bounds();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(value) if (min..=max).contains(&value) => Ok(value),
            _ => Err(fail(FieldProblem::OutOfRange {
                value: text.to_owned(),
                min,
                max,
            })),
        };
    }
    let (names, first) = field.names();
    names
        .iter()
        .zip(first..)
        .find(|(name, _)| name.eq_ignore_ascii_case(text))
        .map(|(_, value)| value)
        .ok_or_else(|| {
            fail(FieldProblem::NotAValue {
                value: text.to_owned(),
                item: item.to_owned(),
                expected: field.expected(),
            })
        })
}

/// The crate's spelling of a value set: `*` when full, else a list, each value + `shift`.
fn render(bits: u64, min: u32, max: u32, shift: u32) -> String {
    let values: Vec<u32> = (min..=max).filter(|v| bits & (1 << v) != 0).collect();
    if values.len() == (max - min + 1) as usize {
        return "*".to_owned();
    }
    let list: Vec<String> = values.iter().map(|v| (v + shift).to_string()).collect();
    list.join(",")
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
mod tests {
    use super::*;
    use chrono::{Datelike, NaiveDateTime, Timelike, Weekday};
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(spec: &str, from: &str) -> DateTime<Utc> {
        Crontab::parse(spec).unwrap().next_after(at(from)).unwrap()
    }

    /// The first `n` firings after `from`.
    fn firings(tab: &Crontab, from: &str, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = at(from);
        for _ in 0..n {
            t = tab.next_after(t).unwrap();
            out.push(t);
        }
        out
    }

    fn sources(tab: &Crontab) -> Vec<&str> {
        tab.schedules.iter().map(|s| s.source()).collect()
    }

    fn error(spec: &str) -> String {
        Crontab::parse(spec).unwrap_err().to_string()
    }

    #[test]
    fn every_two_minutes_from_half_past() {
        assert_eq!(
            next("*/2 * * * *", "2026-05-04T10:00:30Z"),
            at("2026-05-04T10:02:00Z")
        );
        // Strictly after: a firing instant itself is not returned.
        assert_eq!(
            next("*/2 * * * *", "2026-05-04T10:02:00Z"),
            at("2026-05-04T10:04:00Z")
        );
        assert_eq!(
            next("*/2 * * * *", "2026-05-04T10:01:59.999Z"),
            at("2026-05-04T10:02:00Z")
        );
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        // 2026-05-06 is a Wednesday.
        for spec in ["0 3 * * 0", "0 3 * * 7", "0 3 * * sun", "0 3 * * SUN"] {
            assert_eq!(
                next(spec, "2026-05-06T12:00:00Z"),
                at("2026-05-10T03:00:00Z"),
                "{spec}"
            );
        }
    }

    #[test]
    fn one_is_monday_not_quartz_sunday() {
        let t = next("0 3 * * 1", "2026-05-06T12:00:00Z");
        assert_eq!(t, at("2026-05-11T03:00:00Z"));
        assert_eq!(t.weekday(), Weekday::Mon);
        assert_eq!(
            next("0 3 * * 6", "2026-05-06T12:00:00Z").weekday(),
            Weekday::Sat
        );
    }

    #[test]
    fn both_day_fields_restricted_is_or() {
        let tab = Crontab::parse("0 0 1 * 1").unwrap();
        assert_eq!(sources(&tab), ["0 0 0 1 * ?", "0 0 0 ? * 2"]);
        // From Thu 2026-01-29: the 1st (a Sunday), then Mondays, then the 1st again.
        assert_eq!(
            firings(&tab, "2026-01-29T00:00:00Z", 6),
            [
                at("2026-02-01T00:00:00Z"), // Sunday the 1st
                at("2026-02-02T00:00:00Z"), // Monday
                at("2026-02-09T00:00:00Z"),
                at("2026-02-16T00:00:00Z"),
                at("2026-02-23T00:00:00Z"),
                at("2026-03-01T00:00:00Z"), // Sunday the 1st again
            ]
        );
    }

    #[test]
    fn a_field_starting_with_star_makes_the_day_rule_and() {
        // cronie entry.c: DOM_STAR is set when the field's first character is '*', so
        // `*/2` counts as unrestricted and the fields are AND-ed: odd days that are Mondays.
        let tab = Crontab::parse("0 0 */2 * 1").unwrap();
        assert_eq!(tab.schedules.len(), 1);
        let got = firings(&tab, "2026-01-01T00:00:00Z", 4);
        assert_eq!(
            got,
            [
                at("2026-01-05T00:00:00Z"),
                at("2026-01-19T00:00:00Z"),
                at("2026-02-09T00:00:00Z"),
                at("2026-02-23T00:00:00Z"),
            ]
        );
        for t in got {
            assert_eq!(t.weekday(), Weekday::Mon);
            assert_eq!(t.day() % 2, 1);
        }
        // Same in the day-of-week field: the 1st only when it is a Sun/Tue/Thu/Sat.
        assert_eq!(
            firings(
                &Crontab::parse("0 0 1 * */2").unwrap(),
                "2025-12-31T12:00:00Z",
                4
            ),
            [
                at("2026-01-01T00:00:00Z"), // Thursday
                at("2026-02-01T00:00:00Z"), // Sunday
                at("2026-03-01T00:00:00Z"), // Sunday
                at("2026-08-01T00:00:00Z"), // Saturday; Apr-Jul start on Wed/Fri/Mon/Wed
            ]
        );
        // A list led by `*` is a star too; one led by a number is not, even if full.
        assert_eq!(Crontab::parse("0 0 *,5 * 1").unwrap().schedules.len(), 1);
        let daily = Crontab::parse("0 0 1-31 * 1").unwrap();
        assert_eq!(daily.schedules.len(), 2);
        assert_eq!(
            firings(&daily, "2026-01-01T00:00:00Z", 2),
            [at("2026-01-02T00:00:00Z"), at("2026-01-03T00:00:00Z")]
        );
    }

    #[test]
    fn names_in_month_and_weekday_fields() {
        let tab = Crontab::parse("0 9 * jan-mar mon-fri").unwrap();
        assert_eq!(sources(&tab), ["0 0 9 * 1,2,3 2,3,4,5,6"]);
        assert_eq!(
            Crontab::parse("0 9 * JAN-Mar Mon-FRI").unwrap().schedules,
            tab.schedules
        );
        // Fri 2026-03-27 09:00, then Mon 3/30, 3/31, then next January.
        assert_eq!(
            firings(&tab, "2026-03-27T08:00:00Z", 4),
            [
                at("2026-03-27T09:00:00Z"),
                at("2026-03-30T09:00:00Z"),
                at("2026-03-31T09:00:00Z"),
                at("2027-01-01T09:00:00Z"),
            ]
        );
    }

    #[test]
    fn weekday_range_through_seven_crosses_into_sunday() {
        let tab = Crontab::parse("0 12 * * 5-7").unwrap();
        assert_eq!(sources(&tab), ["0 0 12 * * 1,6,7"]);
        let days: Vec<Weekday> = firings(&tab, "2026-05-04T00:00:00Z", 4)
            .iter()
            .map(|t| t.weekday())
            .collect();
        assert_eq!(
            days,
            [Weekday::Fri, Weekday::Sat, Weekday::Sun, Weekday::Fri]
        );
        // Steps over 0-7: */2 is Sun, Tue, Thu, Sat; 1-7/2 is Mon, Wed, Fri, Sun.
        assert_eq!(
            sources(&Crontab::parse("0 0 * * */2").unwrap()),
            ["0 0 0 * * 1,3,5,7"]
        );
        assert_eq!(
            sources(&Crontab::parse("0 0 * * 1-7/2").unwrap()),
            ["0 0 0 * * 1,2,4,6"]
        );
        assert_eq!(
            sources(&Crontab::parse("0 0 * * 0-7").unwrap()),
            ["0 0 0 * * *"]
        );
    }

    #[test]
    fn the_31st_skips_short_months() {
        let tab = Crontab::parse("0 0 31 * *").unwrap();
        assert_eq!(
            firings(&tab, "2026-01-31T00:00:00Z", 3),
            [
                at("2026-03-31T00:00:00Z"),
                at("2026-05-31T00:00:00Z"),
                at("2026-07-31T00:00:00Z"),
            ]
        );
    }

    #[test]
    fn leap_day() {
        let tab = Crontab::parse("0 0 29 2 *").unwrap();
        assert_eq!(
            firings(&tab, "2026-01-01T00:00:00Z", 2),
            [at("2028-02-29T00:00:00Z"), at("2032-02-29T00:00:00Z")]
        );
        // The crate computes no year after 2100.
        assert_eq!(tab.next_after(at("2096-03-01T00:00:00Z")), None);
    }

    #[test]
    fn macros_equal_their_expansions() {
        let pairs = [
            ("@yearly", "0 0 1 1 *"),
            ("@annually", "0 0 1 1 *"),
            ("@monthly", "0 0 1 * *"),
            ("@weekly", "0 0 * * 0"),
            ("@daily", "0 0 * * *"),
            ("@midnight", "0 0 * * *"),
            ("@hourly", "0 * * * *"),
        ];
        for (name, expansion) in pairs {
            let a = Crontab::parse(name).unwrap();
            let b = Crontab::parse(expansion).unwrap();
            assert_eq!(a.spec(), name);
            assert_eq!(a.wildcard, b.wildcard, "{name}");
            for from in [
                "2026-01-01T00:00:00Z",
                "2026-06-17T13:45:12Z",
                "2027-12-31T23:59:59Z",
            ] {
                assert_eq!(
                    firings(&a, from, 5),
                    firings(&b, from, 5),
                    "{name} from {from}"
                );
            }
        }
        assert_eq!(
            next("@weekly", "2026-05-06T00:00:00Z").weekday(),
            Weekday::Sun
        );
    }

    #[test]
    fn spec_display_and_from_str() {
        let tab: Crontab = "  */5 * * * mon-fri ".parse().unwrap();
        assert_eq!(tab.spec(), "*/5 * * * mon-fri");
        assert_eq!(tab.to_string(), "*/5 * * * mon-fri");
        assert_eq!(tab.timezone(), Tz::UTC);
        assert_eq!(
            tab.clone()
                .with_timezone(chrono_tz::Europe::Berlin)
                .timezone(),
            chrono_tz::Europe::Berlin
        );
        // Tabs separate fields too; leading zeros are numbers.
        assert_eq!(
            sources(&Crontab::parse("05\t03 * * *").unwrap()),
            ["0 5 3 * * *"]
        );
    }

    #[test]
    fn site_time_zone() {
        let berlin = Crontab::parse("0 3 * * *")
            .unwrap()
            .with_timezone(chrono_tz::Europe::Berlin);
        // 03:00 CET in winter, 03:00 CEST in summer.
        assert_eq!(
            berlin.next_after(at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-11T02:00:00Z"))
        );
        assert_eq!(
            berlin.next_after(at("2026-07-10T12:00:00Z")),
            Some(at("2026-07-11T01:00:00Z"))
        );
        let new_york = Crontab::parse("30 22 * * fri")
            .unwrap()
            .with_timezone(chrono_tz::America::New_York);
        // Friday 22:30 EDT is Saturday 02:30 UTC.
        assert_eq!(
            new_york.next_after(at("2026-05-06T00:00:00Z")),
            Some(at("2026-05-09T02:30:00Z"))
        );
    }

    fn berlin(spec: &str) -> Crontab {
        Crontab::parse(spec)
            .unwrap()
            .with_timezone(chrono_tz::Europe::Berlin)
    }

    #[test]
    fn spring_forward_in_berlin() {
        // 2026-03-29: 02:00 CET (01:00 UTC) becomes 03:00 CEST; 02:xx does not exist.
        // A fixed-time spec due at 02:30 runs once at the jump, as cronie does.
        let tab = berlin("30 2 * * *");
        assert_eq!(
            firings(&tab, "2026-03-28T12:00:00Z", 3),
            [
                at("2026-03-29T01:00:00Z"), // 03:00 CEST, the catch-up
                at("2026-03-30T00:30:00Z"), // 02:30 CEST
                at("2026-03-31T00:30:00Z"),
            ]
        );
        // A spec due at 03:00 anyway runs once, not twice.
        assert_eq!(
            firings(&berlin("0 3 * * *"), "2026-03-28T12:00:00Z", 2),
            [at("2026-03-29T01:00:00Z"), at("2026-03-30T01:00:00Z")]
        );
        // `*`-led specs get no catch-up: only times that exist.
        assert_eq!(
            firings(&berlin("*/30 * * * *"), "2026-03-29T00:15:00Z", 3),
            [
                at("2026-03-29T00:30:00Z"), // 01:30 CET
                at("2026-03-29T01:00:00Z"), // 03:00 CEST
                at("2026-03-29T01:30:00Z"),
            ]
        );
        assert_eq!(
            berlin("*/15 2 * * *").next_after(at("2026-03-28T12:00:00Z")),
            Some(at("2026-03-30T00:00:00Z"))
        );
    }

    #[test]
    fn fall_back_in_berlin() {
        // 2026-10-25: 03:00 CEST (01:00 UTC) becomes 02:00 CET; 02:xx happens twice.
        // A fixed-time spec runs at the first 02:30 only.
        let tab = berlin("30 2 * * *");
        assert_eq!(
            firings(&tab, "2026-10-24T12:00:00Z", 2),
            [at("2026-10-25T00:30:00Z"), at("2026-10-26T01:30:00Z")]
        );
        // Also when asked from inside the second pass (a daemon started at 02:10 CET).
        assert_eq!(
            tab.next_after(at("2026-10-25T01:10:00Z")),
            Some(at("2026-10-26T01:30:00Z"))
        );
        // `*`-led specs run through the repeated hour.
        assert_eq!(
            firings(&berlin("*/30 * * * *"), "2026-10-24T23:45:00Z", 6),
            [
                at("2026-10-25T00:00:00Z"), // 02:00 CEST
                at("2026-10-25T00:30:00Z"), // 02:30 CEST
                at("2026-10-25T01:00:00Z"), // 02:00 CET
                at("2026-10-25T01:30:00Z"), // 02:30 CET
                at("2026-10-25T02:00:00Z"), // 03:00 CET
                at("2026-10-25T02:30:00Z"),
            ]
        );
        assert_eq!(
            firings(&berlin("0 * * * *"), "2026-10-24T23:30:00Z", 3),
            [
                at("2026-10-25T00:00:00Z"),
                at("2026-10-25T01:00:00Z"),
                at("2026-10-25T02:00:00Z"),
            ]
        );
        // Asked from the second pass, a `*`-led spec continues in it.
        assert_eq!(
            berlin("*/2 * * * *").next_after(at("2026-10-25T01:10:30Z")),
            Some(at("2026-10-25T01:12:00Z"))
        );
        // And the first pass does not jump over the second one.
        assert_eq!(
            berlin("*/2 * * * *").next_after(at("2026-10-25T00:58:30Z")),
            Some(at("2026-10-25T01:00:00Z"))
        );
    }

    #[test]
    fn errors_name_the_field_and_the_reason() {
        assert_eq!(error("60 * * * *"), "minute: 60 is out of range 0-59");
        assert_eq!(error("* 24 * * *"), "hour: 24 is out of range 0-23");
        assert_eq!(error("* * 0 * *"), "day-of-month: 0 is out of range 1-31");
        assert_eq!(error("* * * 13 *"), "month: 13 is out of range 1-12");
        assert_eq!(error("* * * * 8"), "day-of-week: 8 is out of range 0-7");
        assert_eq!(
            error("* * * * 99999999999"),
            "day-of-week: 99999999999 is out of range 0-7"
        );
        assert_eq!(
            error("* * *"),
            "3 fields in \"* * *\": a schedule has five (minute hour day-of-month month day-of-week)"
        );
        assert_eq!(
            error("0 */2 * * * * /usr/bin/true"),
            "7 fields in \"0 */2 * * * * /usr/bin/true\": a schedule has five \
             (minute hour day-of-month month day-of-week); no seconds field and no command"
        );
        assert_eq!(
            error("@reboot"),
            "@reboot has no meaning for a flush schedule (turnmail runs nothing at boot); \
             use a time such as @hourly or \"*/2 * * * *\""
        );
        assert!(error("@every 2m").starts_with("unknown macro \"@every\""));
        assert_eq!(
            error("@daily now"),
            "\"@daily\" takes nothing after it, found \"now\""
        );
        assert_eq!(
            error("garbage in every field ok"),
            "minute: \"garbage\" is not a number"
        );
        assert_eq!(
            error("0 0 * foo *"),
            "month: \"foo\" is not a number or a month name (jan-dec)"
        );
        assert_eq!(
            error("0 0 * * mon-funday"),
            "day-of-week: \"funday\" in \"mon-funday\" is not a number or a day name (sun-sat)"
        );
        assert_eq!(error("mon * * * *"), "minute: \"mon\" is not a number");
        assert_eq!(
            error("0 0 * * fri-sun"),
            "day-of-week: range fri-sun runs backwards; crontab ranges do not wrap around \
             (Sunday can also be written 7, as in fri-7)"
        );
        assert_eq!(
            error("50-10 * * * *"),
            "minute: range 50-10 runs backwards; crontab ranges do not wrap around"
        );
        assert_eq!(
            error("*/0 * * * *"),
            "minute: step 0 in \"*/0\" would never advance"
        );
        assert_eq!(
            error("5/15 * * * *"),
            "minute: \"5/15\": a step needs * or a range before the slash, e.g. 5-59/15"
        );
        assert_eq!(
            error("*/x * * * *"),
            "minute: \"x\" in \"*/x\" is not a step (a number after the slash)"
        );
        assert_eq!(error("1,,2 * * * *"), "minute: empty list item in \"1,,2\"");
        assert_eq!(error("? * * * *"), "minute: \"?\" is not a number");
        assert_eq!(
            error("0 0 30 2 *"),
            "day-of-month: no day in \"30\" exists in month \"2\", so the schedule would never fire"
        );
        assert_eq!(
            error(" "),
            "empty schedule: write five fields (minute hour day-of-month month day-of-week) \
             or a macro such as @hourly"
        );
        assert!(matches!(
            Crontab::parse("* * * * 8"),
            Err(CrontabError::Field {
                field: FieldName::DayOfWeek,
                problem: FieldProblem::OutOfRange { min: 0, max: 7, .. }
            })
        ));
    }

    #[test]
    fn an_impossible_day_of_month_is_dropped_under_or() {
        // Vixie ORs: the 31st of February never comes, Mondays in February do.
        let tab = Crontab::parse("0 0 31 2 1").unwrap();
        assert_eq!(sources(&tab), ["0 0 0 ? 2 2"]);
        assert_eq!(
            tab.next_after(at("2026-01-01T00:00:00Z")),
            Some(at("2026-02-02T00:00:00Z"))
        );
        // Large steps just select the start, as in cronie.
        assert_eq!(
            sources(&Crontab::parse("*/100 * * * *").unwrap()),
            ["0 0 * * * *"]
        );
    }

    #[test]
    fn jitter_is_fixed_per_key_and_spread() {
        assert_eq!(jitter_for("example.org", 0), Duration::ZERO);
        let a = jitter_for("example.org", 60);
        assert_eq!(a, jitter_for("example.org", 60));
        assert!(a < Duration::from_secs(60));
        // Pinned: changing the hash would move every site's start time on upgrade.
        assert_eq!(jitter_for("example.org", 60), Duration::from_millis(48_101));
        let mut buckets = [0u32; 60];
        for i in 0..10_000 {
            let j = jitter_for(&format!("site{i}.example"), 60);
            assert!(j < Duration::from_secs(60));
            buckets[j.as_secs() as usize] += 1;
        }
        // ~167 per second; no second should hold even twice that.
        assert!(
            buckets.iter().all(|&n| (100..300).contains(&n)),
            "{buckets:?}"
        );
    }

    // ---- reference evaluators for the property tests ----

    #[derive(Clone, Debug)]
    enum Item {
        Star,
        StarStep(u32),
        One(u32),
        Range(u32, u32),
        RangeStep(u32, u32, u32),
    }

    #[derive(Clone, Debug)]
    struct Spec {
        fields: [Vec<Item>; 5],
        names: bool,
    }

    /// The value sets and star flags of a spec, computed from crontab(5) directly.
    struct Reference {
        sets: [u64; 5],
        dom_star: bool,
        dow_star: bool,
        wildcard: bool,
    }

    impl Spec {
        fn render(&self) -> String {
            let mut out = Vec::new();
            for (i, items) in self.fields.iter().enumerate() {
                let value = |v: u32| -> String {
                    match i {
                        3 if self.names => MONTH_NAMES[v as usize - 1].to_owned(),
                        4 if self.names && v <= 6 => DAY_NAMES[v as usize].to_uppercase(),
                        _ => v.to_string(),
                    }
                };
                let rendered: Vec<String> = items
                    .iter()
                    .map(|item| match *item {
                        Item::Star => "*".to_owned(),
                        Item::StarStep(n) => format!("*/{n}"),
                        Item::One(v) => value(v),
                        Item::Range(a, b) => format!("{}-{}", value(a), value(b)),
                        Item::RangeStep(a, b, n) => format!("{}-{}/{n}", value(a), value(b)),
                    })
                    .collect();
                out.push(rendered.join(","));
            }
            out.join(" ")
        }

        fn reference(&self) -> Reference {
            let mut sets = [0u64; 5];
            for (i, items) in self.fields.iter().enumerate() {
                let (lo, hi) = FieldName::ALL[i].bounds();
                for item in items {
                    let (a, b, n) = match *item {
                        Item::Star => (lo, hi, 1),
                        Item::StarStep(n) => (lo, hi, n),
                        Item::One(v) => (v, v, 1),
                        Item::Range(a, b) => (a, b, 1),
                        Item::RangeStep(a, b, n) => (a, b, n),
                    };
                    let mut v = a;
                    while v <= b {
                        sets[i] |= 1 << v;
                        v += n;
                    }
                }
            }
            if sets[4] & (1 << 7) != 0 {
                sets[4] |= 1;
            }
            let star = |i: usize| matches!(self.fields[i][0], Item::Star | Item::StarStep(_));
            Reference {
                sets,
                dom_star: star(2),
                dow_star: star(4),
                wildcard: star(0) || star(1),
            }
        }
    }

    impl Reference {
        /// Whether a wall-clock minute matches, by crontab(5)'s rules.
        fn matches(&self, wall: NaiveDateTime) -> bool {
            let has = |i: usize, v: u32| self.sets[i] & (1 << v) != 0;
            let dom = has(2, wall.day());
            let dow = has(4, wall.weekday().num_days_from_sunday());
            has(0, wall.minute())
                && has(1, wall.hour())
                && has(3, wall.month())
                && if self.dom_star || self.dow_star {
                    dom && dow
                } else {
                    dom || dow
                }
        }
    }

    fn wall_of(minute: i64) -> NaiveDateTime {
        DateTime::from_timestamp(minute * 60, 0)
            .unwrap()
            .naive_utc()
    }

    /// The first UTC minute after `t` (seconds) that matches, looking `horizon` minutes on.
    fn brute_force_utc(r: &Reference, t: i64, horizon: i64) -> Option<i64> {
        let first = t.div_euclid(60) + 1;
        (first..first + horizon)
            .find(|&m| r.matches(wall_of(m)))
            .map(|m| m * 60)
    }

    /// cronie's main loop (src/cron.c) run minute by minute with `tz` as its system zone:
    /// the first firing after `t`, simulating from four hours before it.
    fn cronie_loop(r: &Reference, tz: Tz, t: i64, horizon: i64) -> Option<i64> {
        let offset_min = |m: i64| {
            let utc = DateTime::from_timestamp(m * 60, 0).unwrap().naive_utc();
            i64::from(tz.offset_from_utc_datetime(&utc).fix().local_minus_utc()) / 60
        };
        let start = t.div_euclid(60) - 240;
        let mut virtual_time = start - 1 + offset_min(start - 1);
        for m in start..t.div_euclid(60) + 1 + horizon {
            let clock = m + offset_min(m);
            let diff = clock - virtual_time;
            let fires = if diff == 1 || !(-180..=180).contains(&diff) {
                virtual_time = clock;
                r.matches(wall_of(clock))
            } else if diff > 5 {
                // "DST begins": wildcard jobs for now, fixed jobs for every minute missed.
                let missed = (virtual_time + 1..=clock).any(|v| r.matches(wall_of(v)));
                virtual_time = clock;
                (r.wildcard && r.matches(wall_of(clock))) || (!r.wildcard && missed)
            } else if diff > 0 {
                let any = (virtual_time + 1..=clock).any(|v| r.matches(wall_of(v)));
                virtual_time = clock;
                any
            } else {
                // "DST ends": wildcard jobs only; virtual time waits for the clock.
                r.wildcard && r.matches(wall_of(clock))
            };
            if fires && m * 60 > t {
                return Some(m * 60);
            }
        }
        None
    }

    fn items(lo: u32, hi: u32) -> impl Strategy<Value = Vec<Item>> {
        let span = hi - lo + 1;
        let item = prop_oneof![
            2 => Just(Item::Star),
            2 => (1..=span).prop_map(Item::StarStep),
            3 => (lo..=hi).prop_map(Item::One),
            2 => (lo..=hi, lo..=hi).prop_map(|(a, b)| Item::Range(a.min(b), a.max(b))),
            2 => (lo..=hi, lo..=hi, 1..=span)
                .prop_map(|(a, b, n)| Item::RangeStep(a.min(b), a.max(b), n)),
        ];
        prop::collection::vec(item, 1..=3)
    }

    fn specs() -> impl Strategy<Value = Spec> {
        specs_with(items(0, 23))
    }

    fn specs_with(hours: impl Strategy<Value = Vec<Item>>) -> impl Strategy<Value = Spec> {
        let month = prop_oneof![3 => Just(vec![Item::Star]), 1 => items(1, 12)];
        (
            items(0, 59),
            hours,
            items(1, 31),
            month,
            items(0, 7),
            any::<bool>(),
        )
            .prop_map(|(a, b, c, d, e, names)| Spec {
                fields: [a, b, c, d, e],
                names,
            })
            // Specs that never fire are refused at parse time; tested above.
            .prop_filter("fires at some point", |s| {
                let r = s.reference();
                let possible = (1..=12).any(|m: u32| {
                    r.sets[3] & (1 << m) != 0
                        && (1..=MAX_DAYS[m as usize - 1]).any(|d| r.sets[2] & (1 << d) != 0)
                });
                possible || !(r.dom_star || r.dow_star)
            })
    }

    const HORIZON_MIN: i64 = 4 * 24 * 60;

    proptest! {
        #[test]
        fn utc_matches_brute_force(spec in specs(), t in 1_767_225_600i64..1_893_456_000) {
            let text = spec.render();
            let tab = Crontab::parse(&text).unwrap();
            let r = spec.reference();
            let mut from = t;
            for _ in 0..3 {
                let got = tab.next_after(DateTime::from_timestamp(from, 0).unwrap());
                let want = brute_force_utc(&r, from, HORIZON_MIN);
                match (got, want) {
                    (Some(g), Some(w)) => prop_assert_eq!(g.timestamp(), w, "{} after {}", text, from),
                    (got, None) => prop_assert!(
                        got.is_none_or(|g| g.timestamp() >= (from.div_euclid(60) + 1 + HORIZON_MIN) * 60),
                        "{} after {}: {:?}", text, from, got
                    ),
                    (None, Some(w)) => prop_assert!(false, "{} after {}: none, want {}", text, from, w),
                }
                let Some(g) = got else { break };
                prop_assert!(g.timestamp() > from);
                from = g.timestamp();
            }
        }

    }

    proptest! {
        // The interesting instants are a small slice of the range; more cases find them.
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn zones_match_cronie_loop(
            // Half the specs with hours near the local time of the changes (01:00-03:00).
            spec in specs_with(prop_oneof![items(0, 23), items(0, 4)]),
            zone in 0usize..3,
            transition in 0usize..2,
            // Half the instants near the change, where the skipped or repeated hour is.
            delta in prop_oneof![-2 * 86_400i64..2 * 86_400, -3 * 3600i64..3 * 3600],
        ) {
            // 2026 offset changes: Berlin, New York, Lord Howe (a 30-minute shift).
            let (tz, changes) = [
                (chrono_tz::Europe::Berlin, [1_774_746_000i64, 1_792_890_000]),
                (chrono_tz::America::New_York, [1_772_953_200, 1_793_512_800]),
                (chrono_tz::Australia::Lord_Howe, [1_775_314_800, 1_791_041_400]),
            ][zone];
            let t = changes[transition] + delta;
            let text = spec.render();
            let tab = Crontab::parse(&text).unwrap().with_timezone(tz);
            let r = spec.reference();
            let horizon = 2 * 24 * 60;
            let got = tab.next_after(DateTime::from_timestamp(t, 0).unwrap());
            let want = cronie_loop(&r, tz, t, horizon);
            match want {
                Some(w) => prop_assert_eq!(got.map(|g| g.timestamp()), Some(w), "{} in {} after {}", text, tz, t),
                None => prop_assert!(
                    got.is_none_or(|g| g.timestamp() >= (t.div_euclid(60) + 1 + horizon) * 60),
                    "{} in {} after {}: {:?}", text, tz, t, got
                ),
            }
        }
    }
}
