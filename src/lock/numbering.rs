//! How a fencing number is made of a month and a position in that month's audit log segment
//! (docs/design.md, "Fencing"): pure arithmetic, shared by the fencing step and by the readers
//! of the log.

use chrono::{DateTime, Datelike, Utc};

/// The bits of a fencing number that hold the position in the month's segment; the month
/// (months since 1970-01) is above them. An append blob holds at most 50,000 blocks of 4 MiB,
/// far below 2^40 bytes.
const POSITION_BITS: u32 = 40;

/// Months since 1970-01 of a store time.
#[must_use]
pub fn month_of(t: DateTime<Utc>) -> u32 {
    let months = (i64::from(t.year()) - 1970) * 12 + i64::from(t.month0());
    u32::try_from(months).unwrap_or(0)
}

/// The fencing number of the line appended at `position` of month `month`'s segment; None
/// past the position's bits.
#[must_use]
pub fn number(month: u32, position: u64) -> Option<u64> {
    (position < 1 << POSITION_BITS).then(|| (u64::from(month) << POSITION_BITS) | position)
}
