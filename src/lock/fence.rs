//! Fencing numbers (docs/design.md, "Fencing"): the position at which the acquisition's event
//! is appended to the environment's audit log, recorded in the lock conditional on the version
//! our acquisition created.

use chrono::{DateTime, Utc};

use super::audit::{self, LockEvent};
use super::locker::Locker;
pub use super::numbering::{month_of, number};
use super::protocol::LockView;
use super::record::{LockRecord, key};
use crate::store::StoreError;

/// What the fencing step after an acquisition found.
#[derive(Debug)]
pub enum Fenced {
    /// The lock now carries this number, and is still ours.
    Fenced { fence: u64, etag: String },
    /// The lock was taken from us before the number could be recorded.
    Lost(Option<Box<LockView>>),
}

impl Locker<'_> {
    /// Gives a fresh acquisition its fencing number: appends `event` (the acquisition's event;
    /// without one, a line that only holds a place) to the audit log segment of the month of
    /// the write that took the lock, and records the position in the lock.
    ///
    /// Appends to one segment take strictly increasing positions, and the number only counts
    /// once it is written into the lock conditional on the version our acquisition created. So
    /// a holder that stalls between taking the lock and recording its number, and meanwhile
    /// loses the lock, finds out here instead of using a number that a later holder's could be
    /// below. An append whose answer was lost is tried once more; its position is skipped.
    pub fn fence(
        &self,
        environment: &str,
        record: &mut LockRecord,
        etag: &str,
        event: Option<&LockEvent>,
    ) -> anyhow::Result<Fenced> {
        let taken = DateTime::parse_from_rfc3339(&record.acquired_at)
            .map_or_else(|_| self.store_now(), |t| t.with_timezone(&Utc));
        let month = month_of(taken);
        let line = match event {
            Some(e) => LockEvent {
                fence_is_position: true,
                fence: None,
                ..e.clone()
            },
            None => audit::fence_mark(environment, self.store_now()),
        };
        let mut bytes = serde_json::to_vec(&line)?;
        bytes.push(b'\n');
        let log = audit::segment_key(environment, month);
        let position = match self.store.append(&log, &bytes) {
            Err(StoreError::Transient(_)) => self.store.append(&log, &bytes),
            other => other,
        }?;
        let number = number(month, position).ok_or_else(|| {
            anyhow::anyhow!("the audit log segment {log} is full; no fencing number")
        })?;
        record.fence = Some(number);
        // Capacity: the number is the environment's; the lock it goes into is our slot's.
        let environment = &super::slots::slot_of(environment, &record.environment);
        let key = key(environment);
        let mut etag = etag.to_owned();
        for _ in 0..5 {
            match self
                .store
                .replace(&key, &record.to_bytes(), &record.metadata(), &etag)
            {
                Ok(w) => {
                    self.saw(w.now);
                    return Ok(Fenced::Fenced {
                        fence: number,
                        etag: w.etag,
                    });
                }
                Err(StoreError::Conflict | StoreError::NotFound(_) | StoreError::Transient(_)) => {
                    // A retried write may have landed; the token tells whether it is still ours.
                    let lock = self.read(environment)?;
                    match lock
                        .as_ref()
                        .and_then(|l| l.holder.record().map(|r| (l, r)))
                    {
                        Some((l, r)) if r.token == record.token => {
                            if r.fence == Some(number) {
                                return Ok(Fenced::Fenced {
                                    fence: number,
                                    etag: l.etag.clone(),
                                });
                            }
                            etag.clone_from(&l.etag);
                        }
                        _ => return Ok(Fenced::Lost(lock.map(Box::new))),
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(anyhow::anyhow!(
            "the lock on {environment} kept changing while its fencing number was recorded"
        ))
    }
}
