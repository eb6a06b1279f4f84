//! Freezes in the simulation: clients take one environment or a set (as in `sets.rs`; in half
//! the schedules one environment shared by two holders, as in `capacity.rs`) with a freeze gate, while a freezer client puts freeze windows in force and takes them away, through
//! the same faulty store. Beside the checks of every schedule, each write that takes a lock (a
//! create, or a takeover of another holder's record) by a client that does not override freezes
//! comes after that client's read of the environment's freeze windows found none in force, and
//! no later take used that read again. A client that overrides is never stopped.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deploy_lock::clock::Clock;
use deploy_lock::lock::freeze::{FREEZE_PREFIX, FreezeGate, Freezes, When, freeze_key};
use deploy_lock::lock::slots::split_slot;
use deploy_lock::lock::{KEY_PREFIX, Window};
use deploy_lock::store::memory::MemoryStore;
use deploy_lock::store::{Read, Store, StoreResult};

use super::store::{SimStore, client_parts};
use super::{Kind, Sim, Stopped, World, run_schedules, sets, simulate};

/// How often the freezer puts a window in force or takes it away.
const FLIPS: u32 = 8;

/// The gate of a simulated client: it overrides every window, or none.
pub(super) struct Gate(pub(super) bool);

impl FreezeGate for Gate {
    fn overrides(&self, _: &str, _: &Window, _: DateTime<Utc>) -> bool {
        self.0
    }
}

/// What the freeze checks met in one schedule: reads that found a window in force, and takes
/// that rested on a read that found none.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Seen {
    pub(super) frozen: u64,
    pub(super) admitted: u64,
}

/// Whether client `me` overrides freezes: one in four.
pub(super) fn overrides(me: usize) -> bool {
    me % 4 == 3
}

impl World {
    /// A freeze read of client `me` was answered: what it found is what its next take of that
    /// environment may rely on.
    pub(super) fn freeze_read(&mut self, me: usize, key: &str, read: &StoreResult<Read>) {
        let Some(env) = key.strip_prefix(FREEZE_PREFIX) else {
            return;
        };
        let open = matches!(read, Ok(r) if r.blob.is_none());
        if matches!(read, Ok(r) if r.blob.is_some()) {
            self.seen.frozen += 1;
        }
        // A read that failed is no ground for a take either.
        self.slots[me].admitted.insert(env.to_owned(), open);
    }

    /// Client `me`'s write that took the lock `key` was applied: it must rest on a read of the
    /// freeze windows that found none, each read good for one take.
    pub(super) fn took(&mut self, me: usize, key: &str) {
        if self.params.kind != Kind::Freezes || overrides(me) {
            return;
        }
        // A slot's take rests on its environment's freeze windows.
        let Some(env) = key.strip_prefix(KEY_PREFIX).map(|name| split_slot(name).0) else {
            return;
        };
        match self.slots[me].admitted.remove(env) {
            Some(true) => self.seen.admitted += 1,
            None => self.fail(format!(
                "c{me} took {env} without reading its freeze windows since its last take"
            )),
            Some(false) => self.fail(format!(
                "c{me} took {env} although its latest read of the freeze windows found one in \
                 force, or failed"
            )),
        }
    }
}

/// The freezer: `FLIPS` times it waits, then puts a window in force on one environment (from an
/// hour back to ten hours ahead, by the store's clock) or removes the one there. At its end it
/// removes every window, so that only its crash leaves a freeze in force.
pub(super) fn freezer(sim: &Arc<Sim>, me: usize, store: &Arc<MemoryStore>) -> Result<(), Stopped> {
    let (clock, store) = client_parts(sim, me, store);
    let ttl = sim.with(me, |w| w.params.ttl)?;
    for _ in 0..FLIPS {
        let (pause, env) = sim.with(me, |w| {
            let env = sets::draw(&mut w.rng).swap_remove(0);
            (w.duration_below(ttl * 4), env)
        })?;
        if !clock.sleep(pause) {
            return Err(Stopped);
        }
        flip(&store, &env, true);
    }
    for env in sets::ENVS {
        flip(&store, env, false);
    }
    Ok(())
}

/// Puts a window in force on `env` (only with `add`), or removes the one there. A request that
/// meets a fault is not retried: the next flip decides again.
fn flip(store: &SimStore, env: &str, add: bool) {
    let key = freeze_key(env);
    let Ok(read) = store.get(&key) else {
        return;
    };
    match read.blob {
        Some(blob) => {
            let _ = store.delete(&key, &blob.etag);
        }
        None if add => {
            let _ = store.create(&key, &window(read.now), &BTreeMap::new());
        }
        None => {}
    }
}

/// A freeze record with one window in force from an hour before `now` to ten hours after it.
fn window(now: DateTime<Utc>) -> Vec<u8> {
    let freezes = Freezes {
        schema: 1,
        windows: vec![Window {
            when: When::Once {
                from: now.timestamp() - 3600,
                until: now.timestamp() + 10 * 3600,
            },
            reason: "simulated".into(),
            by: "freezer".into(),
            created_at: String::new(),
        }],
    };
    serde_json::to_vec(&freezes).unwrap_or_default()
}

#[test]
fn freezes_keep_every_promise() {
    let tally = run_schedules(Kind::Freezes, 600);
    // The schedules met windows in force and took locks after reads that found none.
    assert!(tally.frozen > 0 && tally.admitted > 0, "{tally:?}");
}

#[test]
fn a_freezes_seed_replays_exactly() {
    let first = simulate(19, Kind::Freezes);
    let second = simulate(19, Kind::Freezes);
    assert_eq!(first, second);
}
