//! Giving a lock back: `release` (ours, by token or by run) and `force-break` (whoever holds it),
//! each a delete conditional on the version read, and how a delete whose answer was lost is
//! settled.

use super::locker::Locker;
use super::protocol::{Identity, LockView, ReleaseStep, release_step};
use super::record::key;
use crate::store::StoreError;

#[derive(Debug)]
pub enum Released {
    Released(Box<LockView>),
    Absent,
    Refused(Box<LockView>),
}

impl Locker<'_> {
    /// Releases our lock: by token when we have one, else any lock of our run.
    pub fn release(&self, environment: &str, me: &Identity) -> anyhow::Result<Released> {
        // Capacity: the slot of a shared environment that is ours (lock/slots.rs).
        if self.capacity > 1 {
            return self.release_shared(environment, me);
        }
        self.release_after(environment, me, false)
    }

    /// `release`, after a delete of ours that may have landed (`tried_delete`: its answer was
    /// lost, or a retry of it met another version) or before any.
    pub(super) fn release_after(
        &self,
        environment: &str,
        me: &Identity,
        mut tried_delete: bool,
    ) -> anyhow::Result<Released> {
        let key = key(environment);
        // A lock refreshed by ourselves between read and delete moves the version; a few rounds
        // settle it, and anything else is a real conflict.
        let mut last_error = None;
        for _ in 0..5 {
            let lock = self.read(environment)?;
            match release_step(lock.as_ref(), me) {
                ReleaseStep::Absent => return Ok(Released::Absent),
                // Once we tried to delete our own lock, a lock that is not ours means ours is
                // gone: the delete landed although its answer was lost (a retried delete then
                // meets the next holder's version), or it was taken over. Either way nothing of
                // ours is left to release; refusing would report a failure that did not happen.
                ReleaseStep::Refuse if tried_delete => return Ok(Released::Absent),
                ReleaseStep::Refuse => {
                    return Ok(lock.map_or(Released::Absent, |l| Released::Refused(Box::new(l))));
                }
                ReleaseStep::Delete { etag } => {
                    tried_delete = true;
                    match self.store.delete(&key, &etag) {
                        Ok(()) => {
                            return Ok(
                                lock.map_or(Released::Absent, |l| Released::Released(Box::new(l)))
                            );
                        }
                        Err(StoreError::NotFound(_)) => return Ok(Released::Absent),
                        Err(StoreError::Conflict) => {}
                        // The delete may have landed: the next read tells.
                        Err(StoreError::Transient(msg)) => last_error = Some(msg),
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        if let Some(msg) = last_error {
            return Err(anyhow::anyhow!(
                "{msg}; the lock on {environment} may still be held: run the release again, or \
                 see `deploy-lock check {environment}`"
            ));
        }
        Err(anyhow::anyhow!(
            "the lock on {environment} kept changing while we released it; check who holds it \
             with `deploy-lock check {environment}`"
        ))
    }

    /// Deletes the lock whoever holds it, conditional on the version read (so a lock taken
    /// between our read and delete is not broken by accident).
    pub fn force_break(&self, environment: &str) -> anyhow::Result<Option<LockView>> {
        let key = key(environment);
        for _ in 0..5 {
            let Some(lock) = self.read(environment)? else {
                return Ok(None);
            };
            match self.store.delete(&key, &lock.etag) {
                Ok(()) => return Ok(Some(lock)),
                Err(StoreError::NotFound(_)) => return Ok(None),
                Err(StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Err(anyhow::anyhow!(
            "the lock on {environment} kept changing while we tried to break it; someone is \
             actively using it: check it with `deploy-lock check {environment}`"
        ))
    }
}
