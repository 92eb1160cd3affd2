//! UTC calendar dates without a time-zone library: qmail's mbox `From ` line and the
//! RFC 5322 `Date:` headers of bounces and Received lines.

pub const DAY_NAMES: [&[u8; 3]; 7] = [b"Sun", b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat"];
pub const MONTH_NAMES: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// A UTC calendar date, enough for qmail's `myctime`.
pub struct Civil {
    pub year: u64,
    /// 0-based, January = 0.
    pub month: usize,
    /// 1-based.
    pub day: u64,
    /// 0 = Sunday.
    pub weekday: usize,
}

/// Converts days since 1970-01-01 to a proleptic Gregorian date.
///
/// Counting from 0000-03-01 puts the leap day at the end of each year, so
/// every 400-year era has the same shape and no table of month lengths is
/// needed (months from March are 153 days per 5 months).
pub fn civil_from_days(days: u64) -> Civil {
    // 1970-01-01 was a Thursday.
    let weekday = ((days + 4) % 7) as usize;
    // 719_468 days separate 0000-03-01 from 1970-01-01.
    let shifted = days + 719_468;
    let era = shifted / 146_097;
    let day_of_era = shifted % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    // January and February belong to the following civil year.
    let (month, year_bump) = if month_from_march < 10 {
        (month_from_march + 2, 0)
    } else {
        (month_from_march - 10, 1)
    };
    Civil {
        year: era * 400 + year_of_era + year_bump,
        month: month as usize,
        day,
        weekday,
    }
}

/// An RFC 5322 date in UTC, e.g. `Sat, 21 Nov 2026 13:30:00 +0000`.
pub fn rfc5322(unix_time: u64) -> String {
    let c = civil_from_days(unix_time / 86_400);
    let s = unix_time % 86_400;
    format!(
        "{}, {} {} {} {:02}:{:02}:{:02} +0000",
        String::from_utf8_lossy(DAY_NAMES[c.weekday]),
        c.day,
        String::from_utf8_lossy(MONTH_NAMES[c.month]),
        c.year,
        s / 3600,
        s % 3600 / 60,
        s % 60
    )
}

/// Seconds since the epoch now (0 if the clock is before 1970).
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_agree_with_a_day_by_day_walk() {
        // Walk forward from 1970 counting month lengths the slow way.
        let mut year = 1970u64;
        let mut month = 0usize;
        let mut day = 1u64;
        for days in 0..(200 * 366) {
            let c = civil_from_days(days);
            assert_eq!((c.year, c.month, c.day), (year, month, day), "day {days}");
            assert_eq!(c.weekday, ((days + 4) % 7) as usize);
            let leap =
                year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
            let len = match month {
                1 if leap => 29,
                1 => 28,
                3 | 5 | 8 | 10 => 30,
                _ => 31,
            };
            day += 1;
            if day > len {
                day = 1;
                month += 1;
                if month == 12 {
                    month = 0;
                    year += 1;
                }
            }
        }
    }

    #[test]
    fn rfc5322_dates() {
        assert_eq!(rfc5322(0), "Thu, 1 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(rfc5322(1_795_786_200), "Fri, 27 Nov 2026 13:30:00 +0000");
    }
}
