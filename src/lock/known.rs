//! Release and renewal of an acquisition whose current version we know (`run` and its own
//! heartbeat, the action's steps, a version remembered on this machine): one conditional request
//! each, no read first (docs/design.md, "Requests"). A version that moved, or an answer that was
//! lost, falls back to the reading path in `locker.rs`, which settles it by the token.

use chrono::{DateTime, Utc};

use super::locker::Locker;
use super::protocol::{self, Identity, LockView, ReleaseStep, RenewStep};
use super::record::{LockRecord, key};
use super::release::Released;
use super::renew::Renewed;
use crate::store::StoreError;

impl Locker<'_> {
    /// Releases the acquisition `record` whose current version `etag` we know (`run`, after its
    /// own heartbeat stopped): one conditional delete, no read. A version that moved or an
    /// unanswered delete falls back to `release`, which reads and decides. `now` is the store's
    /// time as the caller estimates it, for the view of the released lock.
    pub fn release_known(
        &self,
        environment: &str,
        me: &Identity,
        record: &LockRecord,
        etag: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Released> {
        match self
            .store
            .delete(&key(known_key(environment, record)), etag)
        {
            Ok(()) => {
                self.saw(now);
                Ok(Released::Released(Box::new(
                    self.view_of(record, etag, now, now),
                )))
            }
            Err(StoreError::NotFound(_)) => Ok(Released::Absent),
            // The version moved, or the answer was lost. The delete may have landed (a retry
            // after a lost answer meets the next holder's version): reading tells whether
            // anything of ours is left, as after a delete of the reading path.
            Err(StoreError::Conflict | StoreError::Transient(_)) if self.capacity <= 1 => {
                self.release_after(environment, me, true)
            }
            Err(StoreError::Conflict | StoreError::Transient(_)) => self.release(environment, me),
            Err(e) => Err(e.into()),
        }
    }

    /// Releases with a version remembered from an earlier process: the same decision as after a
    /// read (is the caller allowed to release this holder?) taken on the remembered record, then
    /// one conditional delete. A caller that may not release it, or a version that moved, takes
    /// the reading path.
    pub fn release_remembered(
        &self,
        environment: &str,
        me: &Identity,
        record: &LockRecord,
        etag: &str,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Released> {
        let view = self.view_of(record, etag, now, now);
        match protocol::release_step(Some(&view), me) {
            ReleaseStep::Delete { .. } => self.release_known(environment, me, record, etag, now),
            ReleaseStep::Refuse | ReleaseStep::Absent => self.release(environment, me),
        }
    }

    /// Renews with a version remembered from an earlier process, when the remembered record is
    /// the caller's (as `renew` decides after a read): one conditional write; else the reading
    /// path.
    /// `ttl` sets a new ttl (by the reading path); without one the lock keeps its own.
    pub fn renew_remembered(
        &self,
        environment: &str,
        me: &Identity,
        remembered: (&LockRecord, &str),
        ttl: Option<std::time::Duration>,
        now: DateTime<Utc>,
    ) -> anyhow::Result<Renewed> {
        let (record, etag) = remembered;
        let view = self.view_of(record, etag, now, now);
        match protocol::renew_step(Some(&view), me) {
            // A new ttl is written by the reading path, which also keeps it when it falls back.
            RenewStep::Rewrite { .. } if ttl.is_none() => {
                self.renew_known(environment, me, record, etag)
            }
            RenewStep::Rewrite { .. } | RenewStep::Lost => self.renew(environment, me, ttl),
        }
    }

    /// A lock as if read: `record` at version `etag`, written at `last_modified`, by the store's
    /// time `now`.
    fn view_of(
        &self,
        record: &LockRecord,
        etag: &str,
        last_modified: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> LockView {
        let blob = crate::store::Blob {
            data: record.to_bytes(),
            etag: etag.to_owned(),
            last_modified,
            created: None,
            metadata: record.metadata(),
        };
        LockView::new(&blob, now, self.foreign_ttl_chrono())
    }

    /// Renews our lock whose current version we know: one conditional write, no read. Anything
    /// but success falls back to `renew`, which reads first and settles a lost answer.
    pub fn renew_known(
        &self,
        environment: &str,
        me: &Identity,
        record: &LockRecord,
        etag: &str,
    ) -> anyhow::Result<Renewed> {
        let key = key(known_key(environment, record));
        match self
            .store
            .replace(&key, &record.to_bytes(), &record.metadata(), etag)
        {
            Ok(w) => {
                self.saw(w.now);
                Ok(Renewed::Renewed(self.view_of(
                    record,
                    &w.etag,
                    w.last_modified,
                    w.now,
                )))
            }
            Err(StoreError::Conflict | StoreError::NotFound(_) | StoreError::Transient(_)) => {
                self.renew(environment, me, None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Where a lock whose record we know lives: its record names the slot it took (capacity,
/// `slots.rs`), else the environment's own lock.
fn known_key<'r>(environment: &'r str, record: &'r LockRecord) -> &'r str {
    if record.environment.is_empty() {
        environment
    } else {
        &record.environment
    }
}
