//! Statistics over lock events, pure: counts, wait and hold percentiles, by pipeline and by hour
//! of the week, and the holds a timeline draws. No I/O; the events come from any sink's reading.
//!
//! What counts: an acquisition is every taking of the lock (`acquire` and the takeover of a stale
//! lock, `steal`); blocked is every attempt that found it held (`blocked`, and `timed-out` waits);
//! a wait is the `waited_seconds` of an acquisition; a hold is the `held_seconds` of a release.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

use super::audit::{EventKind, LockEvent};

/// How often each thing happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub acquisitions: u64,
    pub blocked: u64,
    pub stolen: u64,
    pub broken: u64,
    pub lost: u64,
}

impl Counts {
    fn add(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Acquire => self.acquisitions += 1,
            EventKind::Steal => {
                self.acquisitions += 1;
                self.stolen += 1;
            }
            EventKind::Blocked | EventKind::TimedOut => self.blocked += 1,
            EventKind::ForceBreak => self.broken += 1,
            EventKind::Lost => self.lost += 1,
            _ => {}
        }
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// p50, p95 and the maximum of a set of durations in seconds (nearest rank); all `None` without
/// samples.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Percentiles {
    pub p50: Option<u64>,
    pub p95: Option<u64>,
    pub max: Option<u64>,
    pub samples: usize,
}

impl Percentiles {
    #[must_use]
    pub fn of(mut samples: Vec<u64>) -> Self {
        samples.sort_unstable();
        let rank = |p: usize| {
            // Nearest rank: the smallest value with at least p% of the samples at or below it.
            let n = samples.len();
            let i = (p * n).div_ceil(100).clamp(1, n.max(1)) - 1;
            samples.get(i).copied()
        };
        Self {
            p50: rank(50),
            p95: rank(95),
            max: samples.last().copied(),
            samples: samples.len(),
        }
    }
}

/// One environment's statistics over a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub counts: Counts,
    pub wait_seconds: Percentiles,
    pub hold_seconds: Percentiles,
    pub by_pipeline: BTreeMap<String, Counts>,
    /// Keyed by (weekday from Monday = 0, hour), in UTC; only hours with events.
    pub by_hour_of_week: BTreeMap<(u8, u8), Counts>,
}

/// The statistics of the events at or after `since` (all of them when `None`). Events without a
/// readable time count only when there is no `since`.
#[must_use]
pub fn stats(events: &[LockEvent], since: Option<DateTime<Utc>>) -> Stats {
    let mut s = Stats::default();
    let mut waits = Vec::new();
    let mut holds = Vec::new();
    for e in events {
        let at = e.time();
        if let Some(since) = since
            && at.is_none_or(|t| t < since)
        {
            continue;
        }
        s.counts.add(&e.kind);
        let pipeline = if e.pipeline.is_empty() {
            "unknown"
        } else {
            &e.pipeline
        };
        s.by_pipeline
            .entry(pipeline.to_owned())
            .or_default()
            .add(&e.kind);
        if let Some(t) = at {
            let slot = (t.weekday().num_days_from_monday() as u8, t.hour() as u8);
            s.by_hour_of_week.entry(slot).or_default().add(&e.kind);
        }
        match e.kind {
            EventKind::Acquire | EventKind::Steal => waits.extend(e.waited_seconds),
            EventKind::Release => {
                holds.extend(e.held_seconds.and_then(|h| u64::try_from(h).ok()));
            }
            _ => {}
        }
    }
    s.by_pipeline.retain(|_, c| !c.is_empty());
    s.by_hour_of_week.retain(|_, c| !c.is_empty());
    s.wait_seconds = Percentiles::of(waits);
    s.hold_seconds = Percentiles::of(holds);
    s
}

/// One past hold of a lock, for a timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Who held it (`LockEvent::who`).
    pub who: String,
    /// How it ended: `release` or `force-break`.
    pub ended_by: String,
}

/// The holds that ended at or after `since`: each release and force-break with its hold time.
#[must_use]
pub fn holds(events: &[LockEvent], since: DateTime<Utc>) -> Vec<Hold> {
    events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Release | EventKind::ForceBreak))
        .filter_map(|e| {
            let end = e.time()?;
            let held = e.held_seconds.filter(|h| *h >= 0)?;
            let who = if e.kind == EventKind::ForceBreak {
                e.other.clone()
            } else {
                e.who()
            };
            (end >= since).then(|| Hold {
                start: end - Duration::seconds(held),
                end,
                who,
                ended_by: e.kind.as_str().to_owned(),
            })
        })
        .collect()
}

/// `Mon` … `Sun` for a weekday counted from Monday = 0.
#[must_use]
pub fn weekday_name(day: u8) -> &'static str {
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
        .get(usize::from(day))
        .copied()
        .unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, pipeline: &str, at: &str) -> LockEvent {
        LockEvent {
            at: at.into(),
            kind,
            environment: "prod".into(),
            pipeline: pipeline.into(),
            build_id: "1".into(),
            ..LockEvent::default()
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let p = Percentiles::of((1..=100).rev().collect());
        assert_eq!(
            (p.p50, p.p95, p.max, p.samples),
            (Some(50), Some(95), Some(100), 100)
        );
        let p = Percentiles::of(vec![7]);
        assert_eq!((p.p50, p.p95, p.max), (Some(7), Some(7), Some(7)));
        let p = Percentiles::of(vec![1, 2, 3, 1000]);
        assert_eq!((p.p50, p.p95, p.max), (Some(2), Some(1000), Some(1000)));
        assert_eq!(Percentiles::of(Vec::new()), Percentiles::default());
    }

    #[test]
    fn counts_by_kind_pipeline_and_hour_of_the_week() {
        // 2025-09-29 is a Monday.
        let mut acquired = event(EventKind::Acquire, "github", "2025-09-29T09:15:00Z");
        acquired.waited_seconds = Some(40);
        let mut stolen = event(EventKind::Steal, "azdevops", "2025-09-29T09:45:00Z");
        stolen.waited_seconds = Some(0);
        let mut released = event(EventKind::Release, "github", "2025-09-30T10:00:00Z");
        released.held_seconds = Some(600);
        let events = vec![
            event(EventKind::Acquire, "github", "2025-09-01T09:00:00Z"),
            acquired,
            stolen,
            event(EventKind::Blocked, "github", "2025-09-29T09:20:00Z"),
            event(EventKind::TimedOut, "", "2025-10-05T23:59:59Z"),
            event(EventKind::ForceBreak, "local", "2025-09-30T10:00:00Z"),
            event(EventKind::Lost, "github", "2025-09-30T10:00:00Z"),
            event(
                EventKind::Other("future".into()),
                "github",
                "2025-09-30T10:00:00Z",
            ),
            released,
            event(EventKind::Acquire, "github", "not a time"),
        ];
        let since = DateTime::parse_from_rfc3339("2025-09-29T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let s = stats(&events, Some(since));
        let want = Counts {
            acquisitions: 2,
            blocked: 2,
            stolen: 1,
            broken: 1,
            lost: 1,
        };
        assert_eq!(s.counts, want);
        assert_eq!(s.wait_seconds.max, Some(40));
        assert_eq!(s.wait_seconds.p50, Some(0));
        assert_eq!(s.hold_seconds.p50, Some(600));
        assert_eq!(s.by_pipeline["github"].acquisitions, 1);
        assert_eq!(s.by_pipeline["github"].blocked, 1);
        assert_eq!(s.by_pipeline["azdevops"].stolen, 1);
        assert_eq!(s.by_pipeline["unknown"].blocked, 1);
        assert_eq!(s.by_pipeline["local"].broken, 1);
        assert_eq!(s.by_hour_of_week[&(0, 9)].acquisitions, 2);
        assert_eq!(s.by_hour_of_week[&(0, 9)].blocked, 1);
        assert_eq!(s.by_hour_of_week[&(6, 23)].blocked, 1);
        assert_eq!(s.by_hour_of_week[&(1, 10)].broken, 1);
        assert_eq!(weekday_name(6), "Sun");
        // Without a window, every event counts, the unreadable time too.
        assert_eq!(stats(&events, None).counts.acquisitions, 4);
    }

    #[test]
    fn holds_come_from_releases_and_breaks() {
        let mut released = event(EventKind::Release, "github", "2025-09-30T10:00:00Z");
        released.held_seconds = Some(600);
        let mut broken = event(EventKind::ForceBreak, "local", "2025-09-30T12:00:00Z");
        broken.held_seconds = Some(60);
        broken.other = "azdevops build 9".into();
        let mut old = released.clone();
        old.at = "2025-09-01T00:00:00Z".into();
        let since = DateTime::parse_from_rfc3339("2025-09-29T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let h = holds(&[old, released, broken], since);
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].start.to_rfc3339(), "2025-09-30T09:50:00+00:00");
        assert_eq!(h[0].who, "github build 1");
        assert_eq!(
            (h[1].who.as_str(), h[1].ended_by.as_str()),
            ("azdevops build 9", "force-break")
        );
    }
}
