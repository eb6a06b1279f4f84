//! Freeze windows: times when an environment takes no new deployments (docs/design.md, Freezes).
//!
//! They live beside the lock, in the blob `deployment-freeze-{env}`, so every client — GitHub,
//! Azure DevOps, a terminal — honours the same ones. A window is one-off (from, until: the
//! store's times) or weekly (`Fri 16:00-Mon 08:00 +02:00`: days and times at an explicit UTC
//! offset, and it may span the week's end). Whether a window is active is judged at the store's
//! time, by the pure functions here.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration as Span, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::locker::Locker;
use crate::log;
use crate::store::{Read, StoreError, Written};

/// Outside `KEY_PREFIX`, so listings of locks skip it.
pub const FREEZE_PREFIX: &str = "deployment-freeze-";
const SCHEMA: u32 = 1;
const WEEK: u32 = 7 * 24 * 60;
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

#[must_use]
pub fn freeze_key(environment: &str) -> String {
    format!("{FREEZE_PREFIX}{environment}")
}

/// Every freeze window of one environment, as its blob holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freezes {
    pub schema: u32,
    pub windows: Vec<Window>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    #[serde(flatten)]
    pub when: When,
    pub reason: String,
    /// Who froze it (`pipeline build` or `user@host`), and when by the store's clock.
    pub by: String,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum When {
    /// Seconds since the Unix epoch, by the store's clock.
    Once {
        from: i64,
        until: i64,
    },
    Weekly(Weekly),
}

/// A weekly window in minutes of the week (Monday 00:00 = 0) at a UTC offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weekly {
    pub start: u32,
    pub end: u32,
    pub offset_minutes: i32,
}

impl Weekly {
    /// `Fri 16:00-Mon 08:00 +02:00` (the offset is required: a freeze means the same moment
    /// for every runner, whatever its time zone).
    pub fn parse(text: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "weekly window `{}`: write it as `DAY HH:MM-DAY HH:MM ±HH:MM`, e.g. \
                 `Fri 16:00-Mon 08:00 +02:00` (days Mon..Sun, an explicit UTC offset)",
                crate::ci::escape_controls(text)
            )
        };
        let (span, offset) = text.trim().rsplit_once(' ').ok_or_else(usage)?;
        let (from, to) = span.split_once('-').ok_or_else(usage)?;
        let start = minute_of_week(from).ok_or_else(usage)?;
        let end = minute_of_week(to).ok_or_else(usage)?;
        let offset_minutes = parse_offset(offset).ok_or_else(usage)?;
        if start == end {
            return Err(format!("{}: it starts where it ends", usage()));
        }
        Ok(Self {
            start,
            end,
            offset_minutes,
        })
    }

    /// Whether `t` falls in the window: start inclusive, end exclusive; across the week's end
    /// when the end comes before the start.
    #[must_use]
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        let local = t + Span::minutes(i64::from(self.offset_minutes));
        let m =
            local.weekday().num_days_from_monday() * 24 * 60 + local.hour() * 60 + local.minute();
        if self.start < self.end {
            (self.start..self.end).contains(&m)
        } else {
            m >= self.start || m < self.end
        }
    }

    #[must_use]
    pub fn describe(&self) -> String {
        let at = |m: u32| {
            let day = DAYS[(m / (24 * 60)) as usize % 7];
            let mut day = day.to_owned();
            day[..1].make_ascii_uppercase();
            format!("{day} {:02}:{:02}", (m / 60) % 24, m % 60)
        };
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let off = self.offset_minutes.unsigned_abs();
        format!(
            "weekly {}-{} {sign}{:02}:{:02}",
            at(self.start),
            at(self.end),
            off / 60,
            off % 60
        )
    }
}

fn rfc(seconds: i64) -> String {
    DateTime::from_timestamp(seconds, 0).map_or_else(
        || seconds.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

fn minute_of_week(text: &str) -> Option<u32> {
    let (day, time) = text.trim().split_once(' ')?;
    let day = day.trim().to_ascii_lowercase();
    let d = DAYS
        .iter()
        .position(|&x| day.get(..3) == Some(x) && day.len() >= 3)?;
    let (h, m) = time.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then(|| (d as u32 * 24 * 60 + h * 60 + m) % WEEK)
}

fn parse_offset(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (h, m) = rest.split_once(':')?;
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    (h.unsigned_abs() <= 14 && (0..60).contains(&m)).then_some(sign * (h * 60 + m))
}

impl Window {
    /// Whether the window is in force at `t` (the store's time).
    #[must_use]
    pub fn active_at(&self, t: DateTime<Utc>) -> bool {
        match &self.when {
            When::Once { from, until } => (*from..*until).contains(&t.timestamp()),
            When::Weekly(w) => w.contains(t),
        }
    }

    /// A one-off window that ended before `t` is history; a weekly one never ends.
    #[must_use]
    pub fn over_at(&self, t: DateTime<Utc>) -> bool {
        matches!(&self.when, When::Once { until, .. } if *until <= t.timestamp())
    }

    #[must_use]
    pub fn describe(&self) -> String {
        match &self.when {
            When::Once { from, until } => format!("from {} until {}", rfc(*from), rfc(*until)),
            When::Weekly(w) => w.describe(),
        }
    }
}

impl Freezes {
    /// The first window in force at `t`.
    #[must_use]
    pub fn active_at(&self, t: DateTime<Utc>) -> Option<&Window> {
        self.windows.iter().find(|w| w.active_at(t))
    }

    /// The freeze record of `environment`. An unreadable one stops every acquire of it (whether
    /// a window is in force cannot be told), so the error says how to clear it.
    fn parse(environment: &str, data: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(data).map_err(|e| {
            StoreError::BadRequest(format!(
                "the freeze record of {environment} is not readable ({e}), so no acquire of \
                 {environment} can tell whether it is frozen; clear the record with \
                 `deploy-lock unfreeze {environment} --reason ...` and freeze again if needed"
            ))
        })
    }
}

/// How an acquire treats a window in force: the lock layer reads the windows right before it
/// takes a lock; the command decides whether its caller overrides them, and records it.
pub trait FreezeGate {
    /// `window` of `environment` is in force at the store's `now`: whether to take the lock
    /// anyway.
    fn overrides(&self, environment: &str, window: &Window, now: DateTime<Utc>) -> bool;
}

/// What the freeze windows say about taking a lock now.
pub(super) enum Admit {
    Go,
    /// A window is in force (None: the windows could not be read) and time is left: wait, then
    /// look again.
    Wait {
        left: std::time::Duration,
        window: Option<Box<Window>>,
    },
    /// A window is in force and no time is left.
    Frozen(Box<Window>),
}

impl Admit {
    /// Says once per acquire (`told`) that it waits for a freeze to end.
    pub(super) fn note(&self, environment: &str, told: &mut bool) {
        if let Admit::Wait {
            window: Some(window),
            ..
        } = self
            && !*told
        {
            log::note(&format!(
                "{environment} is frozen ({}: {}); waiting for the freeze to end",
                window.describe(),
                window.reason
            ));
            *told = true;
        }
    }
}

/// What `remove_freezes` removed: the windows, or a record that could not be read.
#[derive(Debug, Default)]
pub struct Removed {
    pub windows: Vec<Window>,
    pub unreadable: bool,
}

/// An environment's freezes as read, with the store's time and the blob's version.
#[derive(Debug, Clone)]
pub struct FreezeView {
    pub freezes: Freezes,
    pub now: DateTime<Utc>,
    pub etag: Option<String>,
}

impl FreezeView {
    fn of(environment: &str, read: Read) -> Result<Self, StoreError> {
        Ok(match read.blob {
            None => Self {
                freezes: Freezes::default(),
                now: read.now,
                etag: None,
            },
            Some(b) => Self {
                freezes: Freezes::parse(environment, &b.data)?,
                now: read.now,
                etag: Some(b.etag),
            },
        })
    }
}

impl Locker<'_> {
    /// Before a write that would take a lock of `environment` (docs/design.md, "Freezes"): one
    /// read of its freeze windows, none without a gate. `left` is what remains of the wait (None:
    /// no wait, or it ran out).
    pub(super) fn admit(
        &self,
        environment: &str,
        left: Option<std::time::Duration>,
    ) -> Result<Admit, StoreError> {
        let Some(gate) = self.freeze_gate else {
            return Ok(Admit::Go);
        };
        let view = match (self.freezes(environment), left) {
            (Ok(view), _) => view,
            // Not knowing whether a window is in force never takes the lock; a waiter looks again.
            (Err(StoreError::Transient(msg)), Some(left)) => {
                log::warn(&format!(
                    "could not read the freeze windows of {environment} ({msg}); still waiting"
                ));
                return Ok(Admit::Wait { left, window: None });
            }
            (Err(e), _) => return Err(e),
        };
        let Some(window) = view.freezes.active_at(view.now) else {
            return Ok(Admit::Go);
        };
        if gate.overrides(environment, window, view.now) {
            return Ok(Admit::Go);
        }
        let window = Box::new(window.clone());
        Ok(match left {
            None => Admit::Frozen(window),
            Some(left) => Admit::Wait {
                left,
                window: Some(window),
            },
        })
    }

    /// The environment's freeze windows (none when it has no freeze record).
    pub fn freezes(&self, environment: &str) -> Result<FreezeView, StoreError> {
        let read = self.store.get(&freeze_key(environment))?;
        self.saw(read.now);
        FreezeView::of(environment, read)
    }

    /// Adds a window (made from the store's time by `make`); one-off windows that are over are
    /// dropped meanwhile. Conditional on the version read, so concurrent freezes all land.
    pub fn add_freeze(
        &self,
        environment: &str,
        make: &dyn Fn(DateTime<Utc>) -> Window,
    ) -> anyhow::Result<(Window, FreezeView)> {
        let key = freeze_key(environment);
        for _ in 0..5 {
            let mut view = self.freezes(environment)?;
            let window = make(view.now);
            let now = view.now;
            view.freezes.windows.retain(|w| !w.over_at(now));
            view.freezes.windows.push(window.clone());
            view.freezes.schema = SCHEMA;
            let data = serde_json::to_vec(&view.freezes)?;
            let meta = std::collections::BTreeMap::new();
            let written: Result<Written, StoreError> = match &view.etag {
                None => self.store.create(&key, &data, &meta),
                Some(etag) => self.store.replace(&key, &data, &meta, etag),
            };
            match written {
                Ok(_) => return Ok((window, view)),
                Err(StoreError::Conflict | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(anyhow::anyhow!(
            "the freezes of {environment} kept changing while we added one; try again"
        ))
    }

    /// Removes every window of the environment; the windows removed.
    pub fn remove_freezes(&self, environment: &str) -> anyhow::Result<Removed> {
        let key = freeze_key(environment);
        for _ in 0..5 {
            let read = self.store.get(&key)?;
            self.saw(read.now);
            let Some(blob) = read.blob else {
                return Ok(Removed::default());
            };
            // An unreadable record is removed too: it is what stops every acquire.
            let windows = Freezes::parse(environment, &blob.data).map(|f| f.windows);
            match self.store.delete(&key, &blob.etag) {
                Ok(()) => {
                    return Ok(Removed {
                        unreadable: windows.is_err(),
                        windows: windows.unwrap_or_default(),
                    });
                }
                Err(StoreError::NotFound(_)) => return Ok(Removed::default()),
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(anyhow::anyhow!(
            "the freezes of {environment} kept changing while we removed them; try again"
        ))
    }

    /// Every environment with a freeze record, in name order.
    pub fn all_freezes(&self) -> anyhow::Result<Vec<(String, Result<FreezeView, StoreError>)>> {
        let listing = self.store.list(FREEZE_PREFIX)?;
        let envs: Vec<String> = listing
            .entries
            .iter()
            .filter_map(|e| e.key.strip_prefix(FREEZE_PREFIX).map(str::to_owned))
            .collect();
        let keys: Vec<String> = envs.iter().map(|e| freeze_key(e)).collect();
        // Concurrently where the store can (Azure: a small pool of connections).
        let reads = self.store.get_many(&keys);
        Ok(envs
            .into_iter()
            .zip(reads)
            .map(|(env, read)| {
                let view = read.and_then(|read| {
                    self.saw(read.now);
                    FreezeView::of(&env, read)
                });
                (env, view)
            })
            .collect())
    }

    /// The window in force now, per environment that has one (the first, if several are); a
    /// record that cannot be read is said in a warning and left out.
    pub fn freezes_in_force(&self) -> anyhow::Result<BTreeMap<String, Window>> {
        Ok(self
            .all_freezes()?
            .into_iter()
            .filter_map(|(env, view)| match view {
                Ok(view) => view.freezes.active_at(view.now).cloned().map(|w| (env, w)),
                Err(e) => {
                    log::warn(&e.to_string());
                    None
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn weekly(spec: &str) -> Window {
        Window {
            when: When::Weekly(Weekly::parse(spec).expect("spec")),
            reason: "r".into(),
            by: "b".into(),
            created_at: String::new(),
        }
    }

    #[test]
    fn a_weekly_window_across_the_weeks_end_at_an_explicit_offset() {
        let w = weekly("Fri 16:00-Mon 08:00 +02:00");
        // 2026-01-02 is a Friday. 16:00 at +02:00 is 14:00 UTC.
        assert!(!w.active_at(at("2026-01-02T13:59:00Z")));
        assert!(w.active_at(at("2026-01-02T14:00:00Z")));
        assert!(w.active_at(at("2026-01-03T12:00:00Z")), "Saturday");
        assert!(w.active_at(at("2026-01-04T23:59:00Z")), "Sunday night");
        // Monday 08:00 at +02:00 is 06:00 UTC: the end is not part of the window.
        assert!(w.active_at(at("2026-01-05T05:59:00Z")));
        assert!(!w.active_at(at("2026-01-05T06:00:00Z")));
        assert!(!w.active_at(at("2026-01-07T12:00:00Z")), "Wednesday");
    }

    #[test]
    fn a_negative_offset_moves_the_window_to_the_next_utc_day() {
        let w = weekly("Sun 20:00-Sun 23:00 -05:00");
        // Sunday 20:00 at -05:00 is Monday 01:00 UTC.
        assert!(w.active_at(at("2026-01-05T01:00:00Z")));
        assert!(!w.active_at(at("2026-01-04T21:00:00Z")));
        assert_eq!(
            Weekly::parse("sun 20:00-sunday 23:00 -05:00")
                .expect("spec")
                .describe(),
            "weekly Sun 20:00-Sun 23:00 -05:00"
        );
    }

    #[test]
    fn a_one_off_window_is_in_force_from_its_start_until_its_end() {
        let w = Window {
            when: When::Once {
                from: at("2026-03-01T10:00:00Z").timestamp(),
                until: at("2026-03-01T12:00:00Z").timestamp(),
            },
            reason: String::new(),
            by: String::new(),
            created_at: String::new(),
        };
        assert!(!w.active_at(at("2026-03-01T09:59:59Z")));
        assert!(w.active_at(at("2026-03-01T10:00:00Z")));
        assert!(!w.active_at(at("2026-03-01T12:00:00Z")));
        assert!(w.over_at(at("2026-03-01T12:00:00Z")));
    }

    #[test]
    fn weekly_specs_without_an_offset_or_with_bad_parts_are_refused() {
        for bad in [
            "Fri 16:00-Mon 08:00",
            "Fri 16:00-Mon 08:00 CET",
            "Fri 16:00 Mon 08:00 +02:00",
            "Fri 24:00-Mon 08:00 +02:00",
            "Xyz 16:00-Mon 08:00 +02:00",
            "Fri 16:00-Fri 16:00 +00:00",
            "Fri 16:00-Mon 08:00 +15:00",
            "",
        ] {
            assert!(Weekly::parse(bad).is_err(), "{bad}");
        }
    }
}
