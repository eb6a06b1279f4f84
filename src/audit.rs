//! The audit trail: one JSON line per event in a per-environment log (an append blob on Azure),
//! and `history` to read it back. Appending is best effort: a failed append is a warning and never
//! blocks or fails a deployment.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::ci::RunInfo;
use crate::log;
use crate::protocol::Identity;
use crate::record::LockRecord;
use crate::store::Store;

/// Outside the lock prefix, so listings of locks skip it.
pub const AUDIT_PREFIX: &str = "deployment-audit-";

#[must_use]
pub fn key(environment: &str) -> String {
    format!("{AUDIT_PREFIX}{environment}")
}

/// One line of the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Event {
    /// By the store's clock.
    pub at: String,
    /// acquire, release, renew-failed, lost, steal, force-break, blocked, timed-out.
    pub event: String,
    pub environment: String,
    pub pipeline: String,
    pub build_id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub job: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub actor: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run_url: String,
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
}

impl Event {
    /// An event by the holder described in `record`.
    #[must_use]
    pub fn by(event: &str, record: &LockRecord, at: DateTime<Utc>) -> Self {
        Self {
            at: at.to_rfc3339_opts(SecondsFormat::Millis, true),
            event: event.to_owned(),
            environment: record.environment.clone(),
            pipeline: record.pipeline.clone(),
            build_id: record.build_id.clone(),
            job: record.job.clone(),
            actor: record.actor.clone(),
            run_url: record.run_url.clone(),
            fence: record.fence,
            reason: record.reason.clone(),
            ..Self::default()
        }
    }

    /// An event by a run that holds nothing (blocked, renewal failed, force-break).
    #[must_use]
    pub fn of(
        event: &str,
        environment: &str,
        me: &Identity,
        run: &RunInfo,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            at: at.to_rfc3339_opts(SecondsFormat::Millis, true),
            event: event.to_owned(),
            environment: environment.to_owned(),
            pipeline: me.pipeline.clone(),
            build_id: me.build_id.clone(),
            job: me.job.clone(),
            actor: run.actor.clone(),
            run_url: run.run_url.clone(),
            ..Self::default()
        }
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
}

/// Appends an event; on failure warns and carries on.
pub fn append(store: &dyn Store, event: &Event) {
    let mut line = match serde_json::to_vec(event) {
        Ok(l) => l,
        Err(e) => {
            log::warn(&format!("could not write the audit event: {e}"));
            return;
        }
    };
    line.push(b'\n');
    if let Err(e) = store.append(&key(&event.environment), &line) {
        log::warn(&format!(
            "could not append to the audit log of {} (the deployment is not affected): {e}",
            event.environment
        ));
    }
}

/// Reads the log, oldest first, with the store's time. Lines that are not events are skipped
/// with a note.
pub fn read(store: &dyn Store, environment: &str) -> anyhow::Result<(Vec<Event>, DateTime<Utc>)> {
    let read = store.get(&key(environment))?;
    let Some(blob) = read.blob else {
        return Ok((Vec::new(), read.now));
    };
    let mut events = Vec::new();
    let mut skipped = 0usize;
    for line in blob.data.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Event>(line) {
            Ok(e) => events.push(e),
            Err(_) => skipped += 1,
        }
    }
    if skipped > 0 {
        log::note(&format!(
            "skipped {skipped} line(s) of the audit log of {environment} that are not events"
        ));
    }
    Ok((events, read.now))
}

/// The event's time, for `--since` filters.
#[must_use]
pub fn time_of(event: &Event) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(&event.at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let e = Event::by("acquire", &record, at);
        let line = serde_json::to_string(&e).expect("json");
        assert!(!line.contains('\n'));
        let back: Event = serde_json::from_str(&line).expect("parse");
        assert_eq!(back, e);
        assert_eq!(time_of(&back), Some(at));
        assert_eq!(back.who(), "github build 42");
    }
}
