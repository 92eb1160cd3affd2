//! The five crontab(5) fields read as crontab does (numbers, `a-b`, `*/n`, `a-b/n`,
//! lists, month and weekday names in any case, weekday 0 or 7 for Sunday), each error
//! naming its field, and the expanded value sets written in the `cron` crate's spelling.

use std::fmt;

pub(super) const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
pub(super) const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
/// February counts 29 so a leap-day spec is accepted.
pub(super) const MAX_DAYS: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

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
    pub(super) const ALL: [FieldName; 5] = [
        FieldName::Minute,
        FieldName::Hour,
        FieldName::DayOfMonth,
        FieldName::Month,
        FieldName::DayOfWeek,
    ];

    pub(super) fn bounds(self) -> (u32, u32) {
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

/// A parsed field: the values as a bit set, and whether its text starts with `*`.
#[derive(Clone, Copy)]
pub(super) struct Parsed {
    pub(super) bits: u64,
    pub(super) star: bool,
}

/// Parses one field as crontab(5) does: a comma list of `*`, `*/n`, `v`, `a-b`, `a-b/n`.
pub(super) fn parse_field(field: FieldName, text: &str) -> Result<Parsed, CrontabError> {
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
pub(super) fn render(bits: u64, min: u32, max: u32, shift: u32) -> String {
    let values: Vec<u32> = (min..=max).filter(|v| bits & (1 << v) != 0).collect();
    if values.len() == (max - min + 1) as usize {
        return "*".to_owned();
    }
    let list: Vec<String> = values.iter().map(|v| (v + shift).to_string()).collect();
    list.join(",")
}
