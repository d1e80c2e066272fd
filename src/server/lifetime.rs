//! [`TokenLifetime`]: how long a token lives, written as `1y 2m 3w 7d 5h 30min 15s` or
//! `unlimited`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long an issued token lives: a duration, or `unlimited` (no `exp` claim).
///
/// Parsed from a sequence of `<number><unit>` parts, separated by optional spaces, where the
/// number may have a fraction (`1.5h`) and the unit is one of `y` (365 days), `m` (month, 30
/// days), `w`, `d`, `h`, `min` and `s`; or from the word `unlimited`. Note `m` is a month and
/// `min` a minute. Each unit may appear once, from the largest to the smallest.
///
/// ```
/// use std::time::Duration;
/// use tower_oauth2::server::TokenLifetime;
///
/// let lifetime: TokenLifetime = "1h 30min".parse()?;
/// assert_eq!(lifetime, TokenLifetime::Limited(Duration::from_secs(5400)));
/// assert_eq!("1.5h".parse::<TokenLifetime>()?, lifetime);
/// assert_eq!("unlimited".parse::<TokenLifetime>()?, TokenLifetime::Unlimited);
///
/// let err = "1h 30x".parse::<TokenLifetime>().unwrap_err();
/// assert_eq!(err.to_string(), "invalid lifetime \"1h 30x\": unknown unit `x` (at byte 5)");
/// # Ok::<(), tower_oauth2::server::LifetimeError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenLifetime {
    /// The token expires this long after it is issued.
    Limited(Duration),
    /// The token carries no `exp`. Validators accept such tokens only when told to
    /// ([`allow_missing_exp`](crate::dangerous::DangerousBuilderExt::allow_missing_exp)).
    Unlimited,
}

impl TokenLifetime {
    /// The duration, or `None` for [`TokenLifetime::Unlimited`].
    pub fn duration(self) -> Option<Duration> {
        match self {
            TokenLifetime::Limited(duration) => Some(duration),
            TokenLifetime::Unlimited => None,
        }
    }
}

/// A lifetime that does not parse. The message names the bad part and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifetimeError {
    input: String,
    at: usize,
    reason: String,
}

impl LifetimeError {
    fn new(input: &str, at: usize, reason: impl Into<String>) -> Self {
        Self {
            input: input.to_owned(),
            at,
            reason: reason.into(),
        }
    }

    /// The byte offset of the bad part in the input.
    pub fn position(&self) -> usize {
        self.at
    }
}

impl fmt::Display for LifetimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid lifetime {:?}: {} (at byte {})",
            self.input, self.reason, self.at
        )
    }
}

impl std::error::Error for LifetimeError {}

/// The units, largest first, with their length in seconds.
const UNITS: [(&str, f64); 7] = [
    ("y", 365.0 * 86_400.0),
    ("m", 30.0 * 86_400.0),
    ("w", 7.0 * 86_400.0),
    ("d", 86_400.0),
    ("h", 3_600.0),
    ("min", 60.0),
    ("s", 1.0),
];

/// Lifetimes beyond this many seconds (about 1,000 years) are refused.
const MAX_SECONDS: f64 = 1000.0 * 365.0 * 86_400.0;

impl FromStr for TokenLifetime {
    type Err = LifetimeError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.trim() == "unlimited" {
            return Ok(TokenLifetime::Unlimited);
        }
        let bytes = input.as_bytes();
        let mut at = 0;
        let mut total = 0.0;
        let mut last_unit: Option<usize> = None;
        let mut parts = 0;
        loop {
            while at < bytes.len() && bytes[at] == b' ' {
                at += 1;
            }
            if at == bytes.len() {
                break;
            }
            let number_start = at;
            while at < bytes.len() && (bytes[at].is_ascii_digit() || bytes[at] == b'.') {
                at += 1;
            }
            let number = &input[number_start..at];
            if number.is_empty() {
                let what = input[at..]
                    .chars()
                    .next()
                    .map_or(String::new(), |c| c.to_string());
                return Err(LifetimeError::new(
                    input,
                    at,
                    format!("expected a number, found `{what}`"),
                ));
            }
            let value: f64 = number.parse().map_err(|_| {
                LifetimeError::new(input, number_start, format!("`{number}` is not a number"))
            })?;
            let unit_start = at;
            while at < bytes.len() && bytes[at].is_ascii_alphabetic() {
                at += 1;
            }
            let unit = &input[unit_start..at];
            let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
                let reason = if unit.is_empty() {
                    format!("`{number}` has no unit (y, m, w, d, h, min, s)")
                } else {
                    format!("unknown unit `{unit}`")
                };
                return Err(LifetimeError::new(input, unit_start, reason));
            };
            if last_unit.is_some_and(|last| index <= last) {
                return Err(LifetimeError::new(
                    input,
                    unit_start,
                    format!("unit `{unit}` repeated or out of order (largest first)"),
                ));
            }
            last_unit = Some(index);
            total += value * UNITS[index].1;
            parts += 1;
        }
        if parts == 0 {
            return Err(LifetimeError::new(
                input,
                0,
                "empty: expected e.g. `1h` or `unlimited`",
            ));
        }
        if total > MAX_SECONDS {
            return Err(LifetimeError::new(
                input,
                0,
                "longer than 1000 years: use `unlimited`",
            ));
        }
        let duration = Duration::from_secs_f64(total);
        if duration < Duration::from_secs(1) {
            return Err(LifetimeError::new(input, 0, "shorter than one second"));
        }
        Ok(TokenLifetime::Limited(duration))
    }
}

impl fmt::Display for TokenLifetime {
    /// The canonical form: the largest units first (`1d 2h`), seconds with their fraction when
    /// there is one (`1h 0.25s`), or `unlimited`. It parses back to the same lifetime.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let TokenLifetime::Limited(duration) = self else {
            return f.write_str("unlimited");
        };
        let mut rest = duration.as_secs();
        let nanos = duration.subsec_nanos();
        let mut first = true;
        for (name, seconds) in UNITS {
            // Each unit's length is a whole number of seconds.
            let seconds = seconds as u64;
            if seconds == 1 {
                break;
            }
            if rest >= seconds {
                if !first {
                    f.write_str(" ")?;
                }
                write!(f, "{}{name}", rest / seconds)?;
                rest %= seconds;
                first = false;
            }
        }
        if rest > 0 || nanos > 0 || first {
            if !first {
                f.write_str(" ")?;
            }
            write!(f, "{rest}")?;
            if nanos > 0 {
                let fraction = format!("{nanos:09}");
                write!(f, ".{}", fraction.trim_end_matches('0'))?;
            }
            f.write_str("s")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Result<TokenLifetime, LifetimeError> {
        Ok(TokenLifetime::Limited(Duration::from_secs(n)))
    }

    #[test]
    fn fractions_of_a_second_display_and_parse_back() {
        for (text, shown) in [
            ("1.5s", "1.5s"),
            ("1h 0.25s", "1h 0.25s"),
            ("2.125s", "2.125s"),
            ("1.5h", "1h 30min"),
            ("1d 0.5s", "1d 0.5s"),
        ] {
            let lifetime: TokenLifetime = text.parse().expect(text);
            assert_eq!(lifetime.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<TokenLifetime>(), Ok(lifetime), "{shown}");
        }
    }

    #[test]
    fn parses_every_unit_and_fractions() {
        let day = 86_400;
        let table: [(&str, Result<TokenLifetime, LifetimeError>); 12] = [
            ("15s", secs(15)),
            ("30min", secs(1_800)),
            ("5h", secs(18_000)),
            ("7d", secs(7 * day)),
            ("3w", secs(21 * day)),
            ("2m", secs(60 * day)),
            ("1y", secs(365 * day)),
            (
                "1y 2m 3w 7d 5h 30min 15s",
                secs((365 + 60 + 21 + 7) * day + 18_000 + 1_800 + 15),
            ),
            ("1h30min", secs(5_400)),
            ("1.5h", secs(5_400)),
            ("  2d  ", secs(2 * day)),
            ("unlimited", Ok(TokenLifetime::Unlimited)),
        ];
        for (input, expected) in table {
            assert_eq!(input.parse::<TokenLifetime>(), expected, "{input}");
        }
    }

    #[test]
    fn errors_point_at_the_bad_part() {
        let table = [
            ("", 0, "empty"),
            ("   ", 0, "empty"),
            ("1x", 1, "unknown unit `x`"),
            ("1h 30", 5, "`30` has no unit"),
            ("h", 0, "expected a number, found `h`"),
            ("1h -5min", 3, "expected a number, found `-`"),
            ("1.2.3h", 0, "`1.2.3` is not a number"),
            ("30min 1h", 7, "out of order"),
            ("1h 2h", 4, "repeated"),
            ("1M", 1, "unknown unit `M`"),
            ("1mins", 1, "unknown unit `mins`"),
            ("2000y", 0, "longer than 1000 years"),
            ("0.1s", 0, "shorter than one second"),
            ("unlimited 1h", 0, "expected a number, found `u`"),
        ];
        for (input, at, needle) in table {
            let err = input.parse::<TokenLifetime>().err();
            let err = err.unwrap_or_else(|| LifetimeError::new("", usize::MAX, "parsed"));
            assert_eq!(err.position(), at, "{input}: {err}");
            assert!(err.to_string().contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn display_is_canonical_and_parses_back() {
        for input in [
            "1y 2m 3w 7d 5h 30min 15s",
            "90min",
            "1.5d",
            "unlimited",
            "3600s",
        ] {
            let lifetime: TokenLifetime = input.parse().unwrap_or(TokenLifetime::Unlimited);
            let shown = lifetime.to_string();
            assert_eq!(
                shown.parse::<TokenLifetime>(),
                Ok(lifetime),
                "{input} -> {shown}"
            );
        }
        assert_eq!(
            "90min".parse::<TokenLifetime>().map(|l| l.to_string()),
            Ok("1h 30min".to_owned())
        );
        assert_eq!(TokenLifetime::Unlimited.duration(), None);
    }
}
