//! The one duration parser: a number in the option's unit (minutes or seconds), or a number with
//! its own unit: `90s`, `5m`, `2h`, `7d`. Every duration option and input goes through it.

use std::time::Duration;

use crate::ci;
use crate::exit::{Failure, Result};

/// Longest duration we accept anywhere: a week. Longer is a typo, and would overflow clocks.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

pub(super) fn minutes(m: f64) -> Duration {
    Duration::from_secs_f64(m * 60.0)
}

/// Minutes, as the seed's variables are: `30`, `0.5`; or with a unit: `90s`, `5m`, `2h`, `7d`.
pub fn parse_minutes(text: &str, what: &str) -> Result<Duration> {
    parse_duration(text, 60.0, what)
}

/// A duration in `unit_seconds` units unless it carries its own unit (`s`, `m`, `h`, `d`).
pub fn parse_duration(text: &str, unit_seconds: f64, what: &str) -> Result<Duration> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1.0),
        Some((i, 'm')) => (&t[..i], 60.0),
        Some((i, 'h')) => (&t[..i], 3600.0),
        Some((i, 'd')) => (&t[..i], 86400.0),
        _ => (t, unit_seconds),
    };
    let bad = || {
        Failure::usage(format!(
            "{what}: `{}` is not a duration; give a number of {} (fractions allowed) or a value \
             with a unit such as 90s, 5m, 2h or 1d",
            ci::escape_controls(text),
            if (unit_seconds - 60.0).abs() < f64::EPSILON {
                "minutes"
            } else {
                "seconds"
            }
        ))
    };
    let value: f64 = number.trim().parse().map_err(|_| bad())?;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    let secs = value * scale;
    if secs > MAX_DURATION.as_secs_f64() {
        return Err(Failure::usage(format!(
            "{what}: `{}` is longer than a week; durations are at most 7 days",
            ci::escape_controls(text)
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unit_is_accepted_everywhere() {
        for unit in [1.0, 60.0] {
            assert_eq!(parse_duration("7d", unit, "t").expect("7d"), MAX_DURATION);
            assert_eq!(
                parse_duration("1.5h", unit, "t").expect("1.5h"),
                Duration::from_secs(5400)
            );
        }
        assert_eq!(
            parse_minutes("2", "t").expect("2"),
            Duration::from_secs(120)
        );
        assert!(parse_minutes("8d", "t").is_err());
    }
}
