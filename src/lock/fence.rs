//! Fencing numbers (docs/design.md, "Fencing"): a per-environment counter, incremented after the
//! lock was taken and recorded in the lock conditional on the version our acquisition created.

use std::time::Duration;

use super::locker::{Locker, MAX_UNANSWERED_WRITES};
use super::protocol::LockView;
use super::record::{FENCE_PREFIX, LockRecord, key};
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
    /// Gives a fresh acquisition its fencing number.
    ///
    /// The counter is incremented *after* the lock was taken, and the number only counts once it
    /// is written into the lock conditional on the version our acquisition created. So a holder
    /// that stalls between taking the lock and recording its number, and meanwhile loses the
    /// lock, finds out here instead of using a number that a later holder's could be below.
    pub fn fence(
        &self,
        environment: &str,
        record: &mut LockRecord,
        etag: &str,
    ) -> anyhow::Result<Fenced> {
        let number = self.next_fence(environment)?;
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

    /// Increments the environment's counter by compare-and-swap and returns the new value.
    fn next_fence(&self, environment: &str) -> anyhow::Result<u64> {
        let key = format!("{FENCE_PREFIX}{environment}");
        let no_metadata = std::collections::BTreeMap::new();
        let mut unanswered = 0;
        for _ in 0..50 {
            let read = self.store.get(&key)?;
            self.saw(read.now);
            let attempt = match read.blob {
                None => self.store.create(&key, b"1", &no_metadata).map(|_| 1),
                Some(blob) => {
                    let current = std::str::from_utf8(&blob.data)
                        .ok()
                        .and_then(|t| t.trim().parse::<u64>().ok())
                        .ok_or_else(|| {
                            anyhow::anyhow!(
                                "the fencing counter {key} does not hold a number; it must only \
                                 ever be written by deploy-lock"
                            )
                        })?;
                    let next = current
                        .checked_add(1)
                        .ok_or_else(|| anyhow::anyhow!("the fencing counter {key} is exhausted"))?;
                    self.store
                        .replace(&key, next.to_string().as_bytes(), &no_metadata, &blob.etag)
                        .map(|_| next)
                }
            };
            match attempt {
                Ok(n) => return Ok(n),
                // Someone else incremented first, or our answer was lost: read and try again.
                // A number whose answer we lost is skipped, never handed out twice.
                Err(StoreError::Conflict) => {
                    self.clock
                        .sleep(self.clock.jitter(Duration::from_millis(5)));
                }
                // Each already used the client's retries: a store that never answers writes
                // ends this soon, as it ends an acquire.
                Err(StoreError::Transient(msg)) => {
                    unanswered += 1;
                    if unanswered >= MAX_UNANSWERED_WRITES {
                        return Err(anyhow::anyhow!(
                            "{msg}; the fencing counter {key} could not be written"
                        ));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(anyhow::anyhow!(
            "the fencing counter of {environment} is too contended; try again"
        ))
    }
}
