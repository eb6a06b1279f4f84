//! Release and renewal of an acquisition whose current version we know (`run` and its own
//! heartbeat): one conditional request each, no read first (docs/design.md, "Requests"). A
//! version that moved, or an answer that was lost, falls back to the reading path in
//! `locker.rs`, which settles it by the token.

use chrono::{DateTime, Utc};

use super::locker::{Locker, Released};
use super::protocol::{Identity, LockView};
use super::record::{LockRecord, key};
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
                let blob = crate::store::Blob {
                    data: record.to_bytes(),
                    etag: etag.to_owned(),
                    last_modified: now,
                    created: None,
                    metadata: record.metadata(),
                };
                self.saw(now);
                Ok(Released::Released(Box::new(LockView::new(
                    &blob,
                    now,
                    self.foreign_ttl_chrono(),
                ))))
            }
            Err(StoreError::NotFound(_)) => Ok(Released::Absent),
            Err(StoreError::Conflict | StoreError::Transient(_)) => self.release(environment, me),
            Err(e) => Err(e.into()),
        }
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
                let blob = crate::store::Blob {
                    data: record.to_bytes(),
                    etag: w.etag,
                    last_modified: w.last_modified,
                    created: None,
                    metadata: record.metadata(),
                };
                Ok(Renewed::Renewed(LockView::new(
                    &blob,
                    w.now,
                    self.foreign_ttl_chrono(),
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
