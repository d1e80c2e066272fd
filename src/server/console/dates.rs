//! Dates in UTC for the console's pages and audit filters, from seconds since the Unix epoch
//! and back (the proleptic Gregorian calendar; H. Hinnant's `days_from_civil`). Written here:
//! two small functions do not warrant a date crate.

/// Days since 1970-01-01 of a date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let day_of_year =
        (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-12-03 14:30:05 UTC`.
pub(crate) fn format(seconds: u64) -> String {
    let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Seconds since the epoch of `2026-12-03`, `2026-12-03T14:30` (or with a space, or with
/// `:05` seconds), in UTC, or of a number of seconds; `None` for anything else.
pub(crate) fn parse(text: &str) -> Option<u64> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok();
    }
    let (date, time) = match text.split_once(['T', ' ']) {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    let number = |part: &str, digits: usize| {
        (part.len() == digits && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse::<u32>().ok())
            .flatten()
    };
    let mut parts = date.split('-');
    let (year, month, day) = (
        number(parts.next()?, 4)?,
        number(parts.next()?, 2)?,
        number(parts.next()?, 2)?,
    );
    if parts.next().is_some() || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let days = days_from_civil(i64::from(year), month, day);
    // 2026-02-30 would roll over into March: refuse it.
    if civil_from_days(days) != (i64::from(year), month, day) {
        return None;
    }
    let mut seconds = 0u32;
    if let Some(time) = time {
        let mut parts = time.split(':');
        let hours = number(parts.next()?, 2)?;
        let minutes = number(parts.next()?, 2)?;
        let secs = match parts.next() {
            Some(part) => number(part, 2)?,
            None => 0,
        };
        if parts.next().is_some() || hours > 23 || minutes > 59 || secs > 59 {
            return None;
        }
        seconds = hours * 3600 + minutes * 60 + secs;
    }
    u64::try_from(days * 86_400 + i64::from(seconds)).ok()
}

#[cfg(test)]
mod tests {
    use super::{format, parse};

    #[test]
    fn round_trips_and_known_dates() {
        assert_eq!(format(0), "1970-01-01 00:00:00 UTC");
        // `date -u -d 2026-12-03T14:30:05 +%s`
        assert_eq!(format(1_796_308_205), "2026-12-03 14:30:05 UTC");
        assert_eq!(parse("2026-12-03T14:30:05"), Some(1_796_308_205));
        assert_eq!(parse("2026-12-03 14:30"), Some(1_796_308_200));
        assert_eq!(parse("2024-02-29"), Some(1_709_164_800));
        assert_eq!(parse("1796308205"), Some(1_796_308_205));
        for day in (0..200_000u64).step_by(997) {
            let seconds = day * 86_400 + 3_723;
            let text = format(seconds);
            assert_eq!(
                parse(text.trim_end_matches(" UTC")),
                Some(seconds),
                "{text}"
            );
        }
        for bad in [
            "",
            "2026-13-01",
            "2026-02-30",
            "2025-02-29",
            "2026-1-01",
            "2026-12-03T24:00",
            "2026-12-03T10",
            "yesterday",
            "-5",
            "2026-12-03T10:00:00:00",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
