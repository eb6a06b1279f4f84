//! Reaping over the store: the takeover of a lock whose holder's run ended (in `acquire`), and
//! one pass over an environment's lock and queue (`deploy-lock reap`). Whether a run ended is
//! `reaper.rs`'s to say; every write here is conditional on the version read.

use super::LockView;
use super::locker::Locker;
use super::protocol::AcquireStep;
use super::record::{Holder, KEY_PREFIX, key};
use super::ticket::{self, QUEUE_PREFIX, Ticket};
use crate::ci::runs::CiRun;
use crate::store::StoreError;

/// What one reaping pass over an environment removed.
#[derive(Debug, Clone, Default)]
pub struct Reaped {
    /// The lock's holder and its run's conclusion.
    pub lock: Option<(Box<LockView>, String)>,
    /// Queue tickets: key, run, conclusion.
    pub tickets: Vec<(String, CiRun, String)>,
}

impl Locker<'_> {
    /// A lock blocked by a holder whose run has ended is taken over like a stale one: the step
    /// becomes a takeover conditional on the version read, with the run's conclusion.
    pub(super) fn reap_step(
        &self,
        step: AcquireStep,
        lock: Option<&LockView>,
    ) -> (AcquireStep, Option<String>) {
        let (AcquireStep::Blocked, Some(reaper), Some(view)) = (&step, self.reaper, lock) else {
            return (step, None);
        };
        let Holder::Current(record) = &view.holder else {
            return (step, None);
        };
        match record
            .ci_run
            .as_ref()
            .and_then(|run| reaper.ended(&record.token, run))
        {
            Some(conclusion) => (
                AcquireStep::Steal {
                    etag: view.etag.clone(),
                },
                Some(conclusion),
            ),
            None => (step, None),
        }
    }

    /// One pass over `environment`: removes its lock and its queue tickets where the run has
    /// ended, each conditional on the version read. Without a reaper, nothing is asked.
    pub fn reap(&self, environment: &str) -> Result<Reaped, StoreError> {
        let mut removed = Reaped::default();
        let Some(reaper) = self.reaper else {
            return Ok(removed);
        };
        if let Some(view) = self.read(environment)?
            && let Holder::Current(record) = &view.holder
            && let Some(run) = &record.ci_run
            && let Some(conclusion) = reaper.ended(&record.token, run)
        {
            match self.store.delete(&key(environment), &view.etag) {
                Ok(()) => removed.lock = Some((Box::new(view), conclusion)),
                // Changed or gone since it was read: not the holder that ended.
                Err(StoreError::Conflict | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let prefix = format!("{QUEUE_PREFIX}{environment}.");
        for entry in self.store.list(&prefix)?.entries {
            let ours = entry
                .key
                .get(prefix.len()..)
                .and_then(Ticket::parse)
                .is_some();
            if !ours {
                continue;
            }
            if let Some((etag, run, conclusion)) = reaper.ticket_ended(self.store, &entry.key) {
                match self.store.delete(&entry.key, &etag) {
                    Ok(()) => removed.tickets.push((entry.key, run, conclusion)),
                    Err(StoreError::Conflict | StoreError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(removed)
    }
}

impl Locker<'_> {
    /// Every environment with a lock or a queue ticket in the store, sorted, each once.
    pub fn environments(&self) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self
            .store
            .list(KEY_PREFIX)?
            .entries
            .into_iter()
            .filter_map(|e| e.key.strip_prefix(KEY_PREFIX).map(str::to_owned))
            .collect();
        for entry in self.store.list(QUEUE_PREFIX)?.entries {
            let Some(rest) = entry.key.strip_prefix(QUEUE_PREFIX) else {
                continue;
            };
            if let Some((env, _)) = ticket::split(rest)
                && !env.is_empty()
            {
                names.push(env.to_owned());
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}
