//! Capacity: up to N holders share an environment (docs/design.md, Capacity).
//!
//! Each holder holds one slot, and each slot is an ordinary lock: slot 1 is the seed-compatible
//! blob `deployment-lock-{env}`, slot k ≥ 2 the blob `deployment-lock-{env}..{k}` (environment
//! names cannot contain `..`, so a slot never collides with an environment). The single-lock
//! operations do every write; this module only chooses the slot. An acquire tries the slots in
//! order with the fail-fast acquire; a waiter polls until a slot is free (it does not queue);
//! release and renew find the slot that is ours, slot 1 first, then by listing the others.
//!
//! N is the caller's statement: nothing in the store records it, so everyone sharing an
//! environment must use the same N. A caller with N = 1 only ever looks at slot 1, exactly as
//! before capacity existed.

use std::time::Duration;

use super::freeze::Admit;
use super::locker::{Acquired, Holding, Locker, Waited};
use super::protocol::{
    AcquireStep, Identity, LockView, ReleaseStep, RenewStep, acquire_step, release_step,
    renew_step, time_left,
};
use super::record::{KEY_PREFIX, key};
use super::release::Released;
use super::renew::Renewed;
use super::watch::WaitSeen;
use crate::log;
use crate::store::StoreError;

/// Between an environment's name and a slot number in a slot's blob name.
pub const SLOT_SEPARATOR: &str = "..";
/// The largest capacity: an acquire may try every slot.
pub const MAX_CAPACITY: u32 = 20;

/// The name a slot's lock goes by: the environment itself for slot 1, `{env}..{k}` after it.
#[must_use]
pub fn slot_name(environment: &str, slot: u32) -> String {
    if slot <= 1 {
        environment.to_owned()
    } else {
        format!("{environment}{SLOT_SEPARATOR}{slot}")
    }
}

/// The environment and slot a lock's name stands for; a plain environment is slot 1.
#[must_use]
pub fn split_slot(name: &str) -> (&str, u32) {
    match name.rsplit_once(SLOT_SEPARATOR) {
        Some((env, k)) if !env.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) => {
            match k.parse::<u32>() {
                Ok(slot) if slot >= 2 => (env, slot),
                _ => (name, 1),
            }
        }
        _ => (name, 1),
    }
}

/// The slot a record of `environment` was written for: its own name when that is a slot of
/// `environment`, else `environment` itself (slot 1, and every record written before capacity).
#[must_use]
pub fn slot_of(environment: &str, recorded: &str) -> String {
    if split_slot(recorded).0 == environment {
        recorded.to_owned()
    } else {
        environment.to_owned()
    }
}

impl Locker<'_> {
    /// Takes a free slot of `environment`, re-entrant in a slot that is already ours; waits up
    /// to `wait` for any slot when given.
    pub(super) fn acquire_shared(
        &self,
        environment: &str,
        me: &Identity,
        holding: &Holding<'_>,
        wait: Option<Duration>,
    ) -> anyhow::Result<Acquired> {
        let started = self.clock.elapsed();
        let one = self.single();
        // Nested: refreshed in the slot that is ours, never a second slot for one holder.
        let ours = self.our_slot(environment, |l| {
            matches!(acquire_step(Some(l), me), AcquireStep::Refresh { .. })
        })?;
        if let Some(slot) = ours {
            let acquired = one.acquire(&slot, me, holding, None);
            self.saw(one.store_now());
            return acquired;
        }
        let mut told = false;
        loop {
            // One read of the freeze windows for each pass over the slots.
            match self.admit(environment, time_left(wait, self.since(started)))? {
                Admit::Go => {}
                admit @ Admit::Wait { left, .. } => {
                    admit.note(environment, &mut told);
                    if !self.pause(self.poll, left) {
                        return Ok(Acquired::Cancelled {
                            waited: self.since(started),
                        });
                    }
                    continue;
                }
                Admit::Frozen(window) => {
                    return Ok(Acquired::Frozen {
                        window,
                        waited: self.since(started),
                        timed_out: wait.is_some(),
                    });
                }
            }
            let mut held: Option<Box<LockView>> = None;
            for k in 1..=self.capacity {
                let acquired = one.acquire(&slot_name(environment, k), me, holding, None);
                self.saw(one.store_now());
                match acquired? {
                    Acquired::Taken {
                        record,
                        etag,
                        reentrant,
                        stolen_from,
                        reaped,
                        ..
                    } => {
                        return Ok(Acquired::Taken {
                            record,
                            etag,
                            reentrant,
                            stolen_from,
                            reaped,
                            waited: self.since(started),
                        });
                    }
                    Acquired::Blocked { lock, .. } => {
                        held.get_or_insert(lock);
                    }
                    Acquired::Cancelled { .. } => {
                        return Ok(Acquired::Cancelled {
                            waited: self.since(started),
                        });
                    }
                    // Slots are taken fail-fast, and only a waiter in a queue is superseded;
                    // the freeze windows were read for the whole pass.
                    Acquired::Superseded { .. } | Acquired::Frozen { .. } => {
                        return Err(anyhow::anyhow!(
                            "internal error: a slot of {environment} was superseded or frozen on its own"
                        ));
                    }
                }
            }
            let Some(lock) = held else {
                return Err(anyhow::anyhow!(
                    "internal error: no slot of {environment} tried"
                ));
            };
            let Some(left) = time_left(wait, self.since(started)) else {
                return Ok(Acquired::Blocked {
                    lock,
                    waited: self.since(started),
                    timed_out: wait.is_some(),
                });
            };
            self.watch_slots(&lock, started);
            if !self.pause(self.poll, left) {
                return Ok(Acquired::Cancelled {
                    waited: self.since(started),
                });
            }
        }
    }

    /// Releases the slot of `environment` that is ours; none ours is answered as slot 1 would.
    pub(super) fn release_shared(
        &self,
        environment: &str,
        me: &Identity,
    ) -> anyhow::Result<Released> {
        let slot = self.our_slot(environment, |l| {
            matches!(release_step(Some(l), me), ReleaseStep::Delete { .. })
        })?;
        let one = self.single();
        let released = one.release(slot.as_deref().unwrap_or(environment), me);
        self.saw(one.store_now());
        released
    }

    /// Renews the slot of `environment` that is ours; none ours is lost, as slot 1 would say.
    pub(super) fn renew_shared(
        &self,
        environment: &str,
        me: &Identity,
        ttl: Option<Duration>,
    ) -> anyhow::Result<Renewed> {
        let slot = self.our_slot(environment, |l| {
            matches!(renew_step(Some(l), me), RenewStep::Rewrite { .. })
        })?;
        let one = self.single();
        let renewed = one.renew(slot.as_deref().unwrap_or(environment), me, ttl);
        self.saw(one.store_now());
        renewed
    }

    /// Waits until any slot of `environment` is free (or stale), up to `timeout`.
    pub(super) fn wait_shared(
        &self,
        environment: &str,
        timeout: Duration,
    ) -> anyhow::Result<Waited> {
        let started = self.clock.elapsed();
        loop {
            let mut held: Option<LockView> = None;
            for k in 1..=self.capacity {
                match self.read(&slot_name(environment, k)) {
                    Ok(Some(l)) if !l.is_stale() => {
                        held.get_or_insert(l);
                    }
                    Ok(_) => {
                        return Ok(Waited::Free {
                            waited: self.since(started),
                        });
                    }
                    Err(StoreError::Transient(msg)) => log::warn(&format!(
                        "could not look at the lock on {environment} ({msg}); still waiting"
                    )),
                    Err(e) => return Err(e.into()),
                }
            }
            let left = timeout.saturating_sub(self.since(started));
            if left.is_zero() {
                let Some(lock) = held else {
                    return Err(anyhow::anyhow!(
                        "could not read the lock on {environment} before the wait ran out"
                    ));
                };
                return Ok(Waited::TimedOut {
                    lock: Box::new(lock),
                    waited: self.since(started),
                });
            }
            if let Some(lock) = &held {
                self.watch_slots(lock, started);
            }
            if !self.pause(self.poll, left) {
                return Ok(Waited::Cancelled {
                    waited: self.since(started),
                });
            }
        }
    }

    /// Tells the wait's watcher about a held slot, as a single lock's wait does.
    fn watch_slots(&self, lock: &LockView, started: Duration) {
        self.watch.seen(&WaitSeen {
            lock: Some(lock),
            place: None,
            elapsed: self.since(started),
            frozen: None,
        });
    }

    /// The slot of `environment` whose lock `ours` accepts: slot 1 first (one read), then the
    /// others by one listing of `deployment-lock-{env}..` and a read of each.
    fn our_slot(
        &self,
        environment: &str,
        ours: impl Fn(&LockView) -> bool,
    ) -> anyhow::Result<Option<String>> {
        if self.read(environment)?.as_ref().is_some_and(&ours) {
            return Ok(Some(environment.to_owned()));
        }
        let prefix = key(&format!("{environment}{SLOT_SEPARATOR}"));
        let listing = self.store.list(&prefix)?;
        self.saw(listing.now);
        for entry in listing.entries {
            let Some(name) = entry.key.strip_prefix(KEY_PREFIX) else {
                continue;
            };
            let (env, slot) = split_slot(name);
            if env != environment || slot < 2 {
                continue;
            }
            if self.read(name)?.as_ref().is_some_and(&ours) {
                return Ok(Some(name.to_owned()));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_round_trip_and_plain_names_are_slot_one() {
        assert_eq!(slot_name("prod", 1), "prod");
        assert_eq!(slot_name("prod", 2), "prod..2");
        for k in 1..=MAX_CAPACITY {
            assert_eq!(split_slot(&slot_name("prod", k)), ("prod", k));
        }
        for plain in [
            "prod", "prod..", "..2", "prod..1", "prod..0", "prod..x", "a..b..c",
        ] {
            assert_eq!(split_slot(plain), (plain, 1), "{plain}");
        }
        assert_eq!(slot_of("prod", "prod..3"), "prod..3");
        assert_eq!(slot_of("prod", "staging..3"), "prod");
        assert_eq!(slot_of("prod", "prod"), "prod");
    }
}
