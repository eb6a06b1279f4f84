//! Renewing a lock we hold: the heartbeat's and `renew`'s one conditional rewrite, and how a
//! renewal whose answer was lost is settled.

use std::time::Duration;

use super::locker::{Locker, MAX_UNANSWERED_WRITES, store_time, ttl_seconds};
use super::protocol::{self, Identity, LockView, RenewStep};
use super::record::key;
use crate::store::StoreError;

#[derive(Debug)]
pub enum Renewed {
    Renewed(LockView),
    Lost(Option<Box<LockView>>),
}

impl Locker<'_> {
    /// Extends our lock: rewrites it conditional on its version, which moves `Last-Modified`.
    /// `ttl` sets a new ttl; without one the lock keeps its own.
    ///
    /// A write whose answer was lost may have landed (the client's retry then meets 412), so a
    /// failed write is judged by reading the lock back: our token on a version newer than the
    /// one we wrote over means our renewal landed; our token on the same version means it did
    /// not, and it is tried again. Only a lock that is gone or someone else's was lost.
    pub fn renew(
        &self,
        environment: &str,
        me: &Identity,
        ttl: Option<Duration>,
    ) -> anyhow::Result<Renewed> {
        // Capacity: the slot of a shared environment that is ours (lock/slots.rs).
        if self.capacity > 1 {
            return self.renew_shared(environment, me, ttl);
        }
        let key = key(environment);
        let mut lock = self.read(environment)?;
        let mut last_error = None;
        for _ in 0..MAX_UNANSWERED_WRITES {
            let etag = match protocol::renew_step(lock.as_ref(), me) {
                RenewStep::Lost => return Ok(Renewed::Lost(lock.map(Box::new))),
                RenewStep::Rewrite { etag } => etag,
            };
            let Some(view) = lock else {
                return Ok(Renewed::Lost(None));
            };
            let mut record = match view.holder.record() {
                Some(r) => r.clone(),
                None => return Ok(Renewed::Lost(Some(Box::new(view)))),
            };
            // A record written by a first-request create may carry no acquisition time (no
            // store answer came before it): record the one its readers go by.
            if record.acquired_at.is_empty() {
                record.acquired_at = store_time(view.now - view.age);
            }
            match ttl {
                Some(ttl) => record.ttl_seconds = ttl_seconds(ttl),
                None if record.ttl_seconds == 0 => record.ttl_seconds = self.ttl_seconds(),
                None => {}
            }
            let wrote =
                match self
                    .store
                    .replace(&key, &record.to_bytes(), &record.metadata(), &etag)
                {
                    Ok(w) => {
                        self.saw(w.now);
                        let ttl = protocol::seconds(record.ttl_seconds);
                        return Ok(Renewed::Renewed(LockView {
                            last_modified: w.last_modified,
                            now: w.now,
                            expires_in: ttl,
                            ttl,
                            etag: w.etag,
                            ..view
                        }));
                    }
                    Err(StoreError::Conflict | StoreError::NotFound(_)) => None,
                    Err(StoreError::Transient(msg)) => Some(msg),
                    Err(e) => return Err(e.into()),
                };
            last_error = wrote.or(last_error);
            lock = self.read(environment)?;
            let ours = lock
                .as_ref()
                .and_then(|l| l.holder.record().map(|r| (l, r)))
                .filter(|(_, r)| r.token == record.token)
                .map(|(l, r)| l.etag != etag && r.ttl_seconds == record.ttl_seconds);
            match (ours, lock) {
                // A newer version of our own acquisition, as we wrote it: our write landed.
                (Some(true), Some(current)) => return Ok(Renewed::Renewed(current)),
                // Ours, but not as we wrote it (unchanged: the write did not land; or refreshed by
                // our own job with another ttl): write again over this version.
                (Some(_), current) => lock = current,
                // Gone, or someone else's.
                (None, current) => return Ok(Renewed::Lost(current.map(Box::new))),
            }
        }
        Err(anyhow::anyhow!(
            "{}; the lock on {environment} is still ours but could not be renewed",
            last_error.unwrap_or_else(|| "the lock kept changing while it was renewed".into())
        ))
    }
}
