//! What happened to a lock, as one event type, and where events go.
//!
//! A `LockEvent` is written through an `EventSink`. The audit trail (`AuditLog`: one JSON line
//! per event in a per-environment log, an append blob on Azure) is the first sink; statistics,
//! dashboards and notifications are more sinks of the same event. Sinks are best effort: a sink
//! that fails warns and never blocks or fails a deployment.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::numbering as fence;
use super::protocol::{Identity, LockView};
use super::record::LockRecord;
use super::ticket::Priority;
use crate::ci::RunInfo;
use crate::log;
use crate::store::Store;

/// Outside the lock prefix, so listings of locks skip it.
pub const AUDIT_PREFIX: &str = "deployment-audit-";

/// The log as it was before it was split into monthly segments; still read by `history`.
#[must_use]
pub fn key(environment: &str) -> String {
    format!("{AUDIT_PREFIX}{environment}")
}

/// Where the segments of an environment's log start: `deployment-audit-{env}..`. An environment
/// name never contains `..`, so no other environment's log or segment starts like this.
#[must_use]
pub fn segments_prefix(environment: &str) -> String {
    format!("{AUDIT_PREFIX}{environment}..")
}

/// The segment of month `month` (months since 1970-01): `deployment-audit-{env}..{YYYY-MM}`.
/// An append blob takes at most 50,000 appends, so the log starts a new one every month.
#[must_use]
pub fn segment_key(environment: &str, month: u32) -> String {
    format!(
        "{}{:04}-{:02}",
        segments_prefix(environment),
        1970 + month / 12,
        month % 12 + 1
    )
}

/// `YYYY-MM` → months since 1970-01.
fn parse_month(text: &str) -> Option<u32> {
    let (year, month) = text.split_once('-')?;
    let shaped = year.len() == 4
        && month.len() == 2
        && year
            .bytes()
            .chain(month.bytes())
            .all(|b| b.is_ascii_digit());
    let (year, month) = (year.parse::<u32>().ok()?, month.parse::<u32>().ok()?);
    (shaped && year >= 1970 && (1..=12).contains(&month)).then(|| (year - 1970) * 12 + month - 1)
}

/// What happened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum EventKind {
    /// A free lock was taken.
    #[default]
    Acquire,
    /// A stale lock was taken over.
    Steal,
    Release,
    /// A renewal failed (the store did not answer, or the lock was no longer ours).
    RenewFailed,
    /// The heartbeat found the lock gone or someone else's.
    Lost,
    ForceBreak,
    /// An acquire without a wait found the lock held.
    Blocked,
    /// An acquire's wait ran out.
    TimedOut,
    /// A freeze window was added (`freeze`) or every window removed (`unfreeze`).
    Freeze,
    Unfreeze,
    /// An acquire took the lock during a freeze with `--override-freeze`.
    FreezeOverride,
    /// An acquire entered the waiters' queue (with its place in `LockEvent::position`).
    Waiting,
    /// `wait` saw the lock free.
    Free,
    /// `status --stuck-after` found the lock held for longer than it was told.
    Stuck,
    /// A lock or queue ticket removed because its run ended, as the run's CI said.
    Reaped,
    /// A waiter left the queue because a newer run with its supersede key joined it.
    Superseded,
    /// A kind this version does not know (written by a newer one), kept as written.
    Other(String),
}

impl EventKind {
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Self::Acquire => "acquire",
            Self::Steal => "steal",
            Self::Release => "release",
            Self::RenewFailed => "renew-failed",
            Self::Lost => "lost",
            Self::ForceBreak => "force-break",
            Self::Blocked => "blocked",
            Self::TimedOut => "timed-out",
            Self::Freeze => "freeze",
            Self::Unfreeze => "unfreeze",
            Self::FreezeOverride => "freeze-override",
            Self::Waiting => "waiting",
            Self::Free => "free",
            Self::Stuck => "stuck",
            Self::Reaped => "reaped",
            Self::Superseded => "superseded",
            Self::Other(s) => s,
        }
    }

    fn parse(s: &str) -> Self {
        [
            Self::Acquire,
            Self::Steal,
            Self::Release,
            Self::RenewFailed,
            Self::Lost,
            Self::ForceBreak,
            Self::Blocked,
            Self::TimedOut,
            Self::Freeze,
            Self::Unfreeze,
            Self::FreezeOverride,
            Self::Waiting,
            Self::Free,
            Self::Stuck,
            Self::Reaped,
            Self::Superseded,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .unwrap_or_else(|| Self::Other(s.to_owned()))
    }

    /// What someone saw or is doing while the lock stays as it was: notifications and Azure
    /// Monitor get these, the audit log (a record of what happened to the lock) does not.
    #[must_use]
    pub fn is_observation(&self) -> bool {
        matches!(self, Self::Waiting | Self::Free | Self::Stuck)
    }

    /// How the event's other party relates to it, for `history`.
    #[must_use]
    pub fn other_party(&self) -> &'static str {
        match self {
            Self::Steal => "took over from",
            Self::Reaped => "reaped the lock of",
            Self::Superseded => "superseded by",
            Self::ForceBreak => "broke the lock of",
            Self::Blocked | Self::TimedOut | Self::Waiting => "blocked by",
            Self::Lost | Self::RenewFailed => "now held by",
            _ => "other",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self::parse(&s))
    }
}

/// One event: what happened to which environment's lock, by whom, when by the store's clock,
/// how long was waited or held, and who the other party was.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockEvent {
    /// By the store's clock.
    pub at: String,
    #[serde(rename = "event")]
    pub kind: EventKind,
    pub environment: String,
    pub pipeline: String,
    pub build_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub job: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub actor: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_url: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fence: Option<u64>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waited_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_seconds: Option<i64>,
    /// The other party: who blocked us, whose stale lock we took, whose lock was broken.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub other: String,
    /// A waiter's place in the queue, 1 for the first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// `--priority high` (normal is not written).
    #[serde(default, skip_serializing_if = "Priority::is_normal")]
    pub priority: Priority,
    /// The acquisition the event belongs to ([`operation_id`] of its token), so its wait, hold
    /// and release line up; empty when there is none. Not in the audit log.
    #[serde(skip)]
    pub operation: String,
    /// `reaped`: how the other party's run ended, as its CI said (`cancelled`, `failed`, ...).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub conclusion: String,
    /// This event's position in its log segment is its acquisition's fencing number
    /// (docs/design.md, "Fencing"): the line carries no `fence`, readers derive it. Also tells
    /// the audit log that the event is in it already.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub fence_is_position: bool,
}

/// A stable id for the acquisition that `token` names, which can be shown: one-way, so it
/// proves nothing about holding the lock (the token itself does), and the same in every process
/// that knows the token (the release in the post step, the heartbeat). 32 hex digits, the form
/// of a W3C trace id.
#[must_use]
pub fn operation_id(token: &str) -> String {
    use sha2::{Digest, Sha256};
    if token.is_empty() {
        return String::new();
    }
    let digest = Sha256::new()
        .chain_update(b"deploy-lock operation\0")
        .chain_update(token.as_bytes())
        .finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn store_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

impl LockEvent {
    /// An event by the holder described in `record`.
    #[must_use]
    pub fn by(kind: EventKind, record: &LockRecord, at: DateTime<Utc>) -> Self {
        Self {
            at: store_time(at),
            kind,
            // A slot's holder (lock/slots.rs) is recorded in its environment's log.
            environment: super::slots::split_slot(&record.environment).0.to_owned(),
            pipeline: record.pipeline.clone(),
            build_id: record.build_id.clone(),
            job: record.job.clone(),
            actor: record.actor.clone(),
            run_url: record.run_url.clone(),
            repository: record.repository.clone(),
            fence: record.fence,
            reason: record.reason.clone(),
            operation: operation_id(&record.token),
            ..Self::default()
        }
    }

    /// An event by a run that holds nothing (blocked, renewal failed, force-break).
    #[must_use]
    pub fn of(
        kind: EventKind,
        environment: &str,
        me: &Identity,
        run: &RunInfo,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            at: store_time(at),
            kind,
            environment: environment.to_owned(),
            pipeline: me.pipeline.clone(),
            build_id: me.build_id.clone(),
            job: me.job.clone(),
            actor: run.actor.clone(),
            run_url: run.run_url.clone(),
            repository: run.repository.clone(),
            operation: operation_id(me.token.as_deref().unwrap_or_default()),
            ..Self::default()
        }
    }

    /// The release of `lock`, with how long it was held by the store's clock.
    #[must_use]
    pub fn released(environment: &str, lock: &LockView, at: DateTime<Utc>) -> Self {
        let record = lock.holder.record().cloned().unwrap_or_else(|| LockRecord {
            environment: environment.to_owned(),
            pipeline: lock.holder.pipeline().to_owned(),
            build_id: lock.holder.build_id().to_owned(),
            ..LockRecord::default()
        });
        let mut event = Self::by(EventKind::Release, &record, at);
        event.held_seconds = Some(lock.age.num_seconds());
        event
    }

    /// `github build 42 (job deploy)`.
    #[must_use]
    pub fn who(&self) -> String {
        let mut s = format!("{} build {}", self.pipeline, self.build_id);
        if !self.job.is_empty() {
            s.push_str(&format!(" (job {})", self.job));
        }
        s
    }

    /// The event's time, for `--since` filters.
    #[must_use]
    pub fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(&self.at)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Where events go. Recording never fails the operation that reports the event.
pub trait EventSink {
    fn record(&self, event: &LockEvent);
}

/// Every event to each of several sinks, in order (the audit log first).
pub struct Fanout<'a> {
    sinks: Vec<Box<dyn EventSink + 'a>>,
}

impl<'a> Fanout<'a> {
    #[must_use]
    pub fn new(sinks: Vec<Box<dyn EventSink + 'a>>) -> Self {
        Self { sinks }
    }
}

impl EventSink for Fanout<'_> {
    fn record(&self, event: &LockEvent) {
        for sink in &self.sinks {
            sink.record(event);
        }
    }
}

/// Events dropped (`--no-audit`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Discard;

impl EventSink for Discard {
    fn record(&self, _event: &LockEvent) {}
}

/// The audit log of `store`, or nothing when the audit is off.
#[must_use]
pub fn audit_sink<'a>(store: &'a dyn Store, on: bool) -> Box<dyn EventSink + 'a> {
    if on {
        Box::new(AuditLog::new(store))
    } else {
        Box::new(Discard)
    }
}

/// The environment's audit log in the store.
pub struct AuditLog<'a> {
    store: &'a dyn Store,
}

impl<'a> AuditLog<'a> {
    #[must_use]
    pub fn new(store: &'a dyn Store) -> Self {
        Self { store }
    }

    /// Reads the log, oldest first, with the store's time: the log from before the monthly
    /// segments, then every segment in order. Lines that are not events are skipped with a note.
    pub fn read(&self, environment: &str) -> anyhow::Result<(Vec<LockEvent>, DateTime<Utc>)> {
        let read = self.store.get(&key(environment))?;
        let mut events = Vec::new();
        let mut skipped = 0usize;
        if let Some(blob) = read.blob {
            skipped += parse_log(&blob.data, None, &mut events);
        }
        let prefix = segments_prefix(environment);
        let listing = self.store.list(&prefix)?;
        for entry in &listing.entries {
            let Some(month) = entry.key.get(prefix.len()..).and_then(parse_month) else {
                continue;
            };
            if let Some(blob) = self.store.get(&entry.key)?.blob {
                skipped += parse_log(&blob.data, Some(month), &mut events);
            }
        }
        if skipped > 0 {
            log::note(&format!(
                "skipped {skipped} line(s) of the audit log of {environment} that are not events"
            ));
        }
        Ok((events, listing.now.max(read.now)))
    }
}

/// The environments that have an audit log, from one listing, in name order: the log of
/// earlier versions (`deployment-audit-{env}`) and the monthly segments (`{env}..{YYYY-MM}`) each
/// name their environment once.
pub fn logged_environments(store: &dyn Store) -> anyhow::Result<Vec<String>> {
    let listing = store.list(AUDIT_PREFIX)?;
    let mut envs: Vec<String> = listing
        .entries
        .into_iter()
        .filter_map(|e| {
            let rest = e.key.strip_prefix(AUDIT_PREFIX)?;
            Some(
                rest.split_once("..")
                    .map_or(rest, |(env, _)| env)
                    .to_owned(),
            )
        })
        .collect();
    envs.sort();
    envs.dedup();
    Ok(envs)
}

/// The kind of the line the fencing step appends when the audit is off: it only holds a place.
const FENCE_MARK: &str = "fence";

/// A line that only takes a fencing number (the audit is off): no holder details.
#[must_use]
pub fn fence_mark(environment: &str, at: DateTime<Utc>) -> LockEvent {
    LockEvent {
        at: store_time(at),
        kind: EventKind::Other(FENCE_MARK.to_owned()),
        environment: environment.to_owned(),
        fence_is_position: true,
        ..LockEvent::default()
    }
}

/// Parses one log's lines into `events`; returns how many were not events. In a segment of
/// `month`, an event whose position is its fencing number gets that number; a fencing line
/// appended twice (an append retried after its answer was lost) counts once, and the lines
/// that only hold a fencing number are not events.
fn parse_log(data: &[u8], month: Option<u32>, events: &mut Vec<LockEvent>) -> usize {
    let mut skipped = 0;
    let mut offset = 0u64;
    let mut last_fenced: Option<&[u8]> = None;
    for line in data.split(|b| *b == b'\n') {
        let at = offset;
        offset += line.len() as u64 + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(mut event) = serde_json::from_slice::<LockEvent>(line) else {
            skipped += 1;
            continue;
        };
        if event.fence_is_position {
            if last_fenced == Some(line) {
                continue;
            }
            last_fenced = Some(line);
            if let Some(month) = month {
                event.fence = event.fence.or_else(|| fence::number(month, at));
            }
        }
        if event.kind != EventKind::Other(FENCE_MARK.to_owned()) {
            events.push(event);
        }
    }
    skipped
}

impl EventSink for AuditLog<'_> {
    /// Appends the event as one line; on failure warns and carries on. Observations are not
    /// recorded.
    fn record(&self, event: &LockEvent) {
        if event.kind.is_observation() {
            return;
        }
        let mut line = match serde_json::to_vec(event) {
            Ok(l) => l,
            Err(e) => {
                log::warn(&format!("could not write the audit event: {e}"));
                return;
            }
        };
        line.push(b'\n');
        if event.fence_is_position {
            // Appended by the fencing step already: its position is the fencing number.
            return;
        }
        let log = event.time().map_or_else(
            || key(&event.environment),
            |t| segment_key(&event.environment, fence::month_of(t)),
        );
        if let Err(e) = self.store.append(&log, &line) {
            log::warn(&format!(
                "could not append to the audit log of {} (the deployment is not affected): {e}",
                event.environment
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[test]
    fn events_round_trip_as_one_line() {
        let record = LockRecord {
            environment: "prod".into(),
            pipeline: "github".into(),
            build_id: "42".into(),
            reason: "line\nbreak".into(),
            fence: Some(3),
            ..LockRecord::default()
        };
        let at = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let e = LockEvent::by(EventKind::Acquire, &record, at);
        let line = serde_json::to_string(&e).expect("json");
        assert!(!line.contains('\n'));
        assert!(line.contains(r#""event":"acquire""#), "{line}");
        let back: LockEvent = serde_json::from_str(&line).expect("parse");
        assert_eq!(back, e);
        assert_eq!(back.time(), Some(at));
        assert_eq!(back.who(), "github build 42");
    }

    #[test]
    fn unknown_kinds_are_kept_as_written() {
        let e: LockEvent =
            serde_json::from_str(r#"{"event":"renamed","environment":"x"}"#).expect("parse");
        assert_eq!(e.kind, EventKind::Other("renamed".into()));
        assert_eq!(EventKind::parse("renew-failed"), EventKind::RenewFailed);
    }

    #[test]
    fn the_audit_log_reads_back_what_it_recorded() {
        let store = MemoryStore::new();
        let log = AuditLog::new(&store);
        let me = Identity {
            pipeline: "github".into(),
            build_id: "7".into(),
            ..Identity::default()
        };
        let at = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        log.record(&LockEvent::of(
            EventKind::Blocked,
            "prod",
            &me,
            &RunInfo::default(),
            at,
        ));
        log.record(&LockEvent::of(
            EventKind::TimedOut,
            "prod",
            &me,
            &RunInfo::default(),
            at,
        ));
        for observation in [EventKind::Waiting, EventKind::Free, EventKind::Stuck] {
            log.record(&LockEvent::of(
                observation,
                "prod",
                &me,
                &RunInfo::default(),
                at,
            ));
        }
        let (events, _) = log.read("prod").expect("read");
        let kinds: Vec<_> = events.iter().map(|e| e.kind.clone()).collect();
        assert_eq!(
            kinds,
            [EventKind::Blocked, EventKind::TimedOut],
            "observations are not in the audit log"
        );
    }

    #[test]
    fn history_derives_fences_counts_a_retried_fencing_line_once_and_hides_place_holders() {
        use crate::lock::numbering::{month_of, number};
        let store = MemoryStore::new();
        let at = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
        let month = month_of(at);
        let record = LockRecord {
            environment: "prod".into(),
            pipeline: "github".into(),
            build_id: "1".into(),
            ..LockRecord::default()
        };
        let mut fenced = LockEvent::by(EventKind::Acquire, &record, at);
        fenced.fence_is_position = true;
        let mut line = serde_json::to_vec(&fenced).expect("json");
        line.push(b'\n');
        let segment = segment_key("prod", month);
        let first = store.append(&segment, &line).expect("append");
        // The same append once more, as after a lost answer.
        store.append(&segment, &line).expect("append");
        let mut mark = serde_json::to_vec(&fence_mark("prod", at)).expect("json");
        mark.push(b'\n');
        store.append(&segment, &mark).expect("append");
        let old = LockEvent::by(EventKind::Release, &record, at);
        let mut old_line = serde_json::to_vec(&old).expect("json");
        old_line.push(b'\n');
        store.append(&key("prod"), &old_line).expect("append");
        // Another environment whose name extends this one's is not read.
        store
            .append(&key("prod.2023-11"), &old_line)
            .expect("append");
        let (events, _) = AuditLog::new(&store).read("prod").expect("read");
        let kinds: Vec<_> = events.iter().map(|e| e.kind.clone()).collect();
        assert_eq!(kinds, [EventKind::Release, EventKind::Acquire]);
        assert_eq!(events[1].fence, number(month, first));
    }

    #[test]
    fn segment_names_never_meet_another_environments_log() {
        assert_eq!(parse_month("2025-09"), Some(55 * 12 + 8));
        for bad in [
            "2025-13", "2025-00", "1969-12", "25-09", "2025-9", "2025-09x",
        ] {
            assert_eq!(parse_month(bad), None, "{bad}");
        }
        // Environment names never contain `..` (config/names.rs), so `prod..` starts no other
        // environment's log, and `prod.2025-09` is that environment's own.
        assert!(segment_key("prod", 0).starts_with(&segments_prefix("prod")));
        assert!(!key("prod.2025-09").starts_with(&segments_prefix("prod")));
    }
}
