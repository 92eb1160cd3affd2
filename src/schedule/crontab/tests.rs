use super::fields::{DAY_NAMES, MONTH_NAMES};
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
