//! Durations as people read them: `1h 2m`, `5m 3s`, `42s`.

use std::time::Duration;

/// `1h 2m`, `5m 3s`, `42s`.
#[must_use]
pub fn human(d: chrono::Duration) -> String {
    let secs = d.num_seconds().unsigned_abs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let text = if h >= 48 {
        format!("{}d {}h", h / 24, h % 24)
    } else if h > 0 && m == 0 {
        format!("{h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 && s == 0 {
        format!("{m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    };
    if d < chrono::Duration::zero() {
        format!("-{text}")
    } else {
        text
    }
}

#[must_use]
pub fn human_std(d: Duration) -> String {
    human(chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::human;

    #[test]
    fn human_durations() {
        assert_eq!(human(chrono::Duration::seconds(42)), "42s");
        assert_eq!(human(chrono::Duration::seconds(303)), "5m 3s");
        assert_eq!(human(chrono::Duration::seconds(3720)), "1h 2m");
        assert_eq!(human(chrono::Duration::seconds(-61)), "-1m 1s");
        assert_eq!(human(chrono::Duration::hours(50)), "2d 2h");
        assert_eq!(human(chrono::Duration::minutes(30)), "30m");
        assert_eq!(human(chrono::Duration::hours(2)), "2h");
    }
}
