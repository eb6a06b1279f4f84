//! Capacity in the simulation: every client takes a slot of one environment shared by two
//! holders, with the same faults. Beside the per-slot checks of every schedule (one holder of a
//! slot within valid leases, fences increasing per slot, no false "lost", every acquire within
//! its budget), at most `CAPACITY` clients hold the environment within valid leases, and no
//! client holds two of its slots.

use std::collections::BTreeMap;

use deploy_lock::lock::slots::split_slot;

use super::{Kind, World, run_schedules, simulate};

/// How many holders share the environment in these schedules.
pub(super) const CAPACITY: u32 = 2;

impl World {
    /// Per environment, at most `params.capacity` holders within valid leases, each in one slot.
    pub(super) fn check_capacity(&mut self) {
        let ttl = self.params.ttl;
        let now = self.now;
        let mut holders: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut twice = None;
        for (i, s) in self.slots.iter().enumerate() {
            let mut mine: BTreeMap<&str, u32> = BTreeMap::new();
            for name in &s.believes {
                let Some(&from) = s.leases.get(name) else {
                    continue;
                };
                if now >= from + ttl {
                    continue;
                }
                let (env, slot) = split_slot(name);
                holders
                    .entry(env.to_owned())
                    .or_default()
                    .push(format!("c{i} (slot {slot})"));
                if let Some(other) = mine.insert(env, slot) {
                    twice = Some(format!("c{i} holds slots {other} and {slot} of {env}"));
                }
            }
        }
        if let Some(why) = twice {
            self.fail(why);
        }
        for (env, who) in holders {
            if who.len() > self.params.capacity as usize {
                self.fail(format!(
                    "{} holders of {env} at once with capacity {}: {}",
                    who.len(),
                    self.params.capacity,
                    who.join(", ")
                ));
            }
        }
    }
}

#[test]
fn capacity_keeps_every_promise() {
    run_schedules(Kind::Capacity, 400);
}

#[test]
fn a_capacity_seed_replays_exactly() {
    let first = simulate(13, Kind::Capacity);
    let second = simulate(13, Kind::Capacity);
    assert_eq!(first, second);
}
