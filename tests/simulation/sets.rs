//! Lock sets in the simulation: clients take sets of 2–3 environments, named in any order (the
//! set code sorts them), beside clients of one environment, with the same faults. Beside the
//! per-environment checks of every schedule (one holder within valid leases, fences increasing,
//! no false "lost"), a set acquire that comes back blocked holds no member, and every acquire
//! (two sets in opposite orders included) ends within its budget: no deadlock.

use std::time::Duration;

use deploy_lock::lock::{self, Holding, Identity, Locker, SetAcquired};

use super::client::{Got, Held, short};
use super::{Kind, Sim, Stopped, run_schedules, simulate};
use crate::support::proxy::XorShift;

/// The environments of the set schedules.
pub(super) const ENVS: [&str; 3] = ["ap", "eu", "us"];

/// One environment (sometimes) or a set of 2–3 in a random order.
pub(super) fn draw(rng: &mut XorShift) -> Vec<String> {
    let mut envs: Vec<String> = ENVS.iter().map(|&e| e.to_owned()).collect();
    for i in (1..envs.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        envs.swap(i, j);
    }
    let size = match rng.below(5) {
        0 | 1 => 1,
        2 | 3 => 2,
        _ => 3,
    };
    envs.truncate(size);
    envs
}

/// The set acquire; a blocked set must have given back every member it took.
pub(super) fn acquire(
    sim: &Sim,
    me: usize,
    locker: &Locker<'_>,
    names: &[&str],
    me_id: &Identity,
    holding: &Holding<'_>,
    wait: Option<Duration>,
) -> Result<Got, Stopped> {
    Ok(match locker.acquire_set(names, me_id, holding, wait) {
        Ok(SetAcquired::Taken { members, .. }) => Got::Held(
            members
                .into_iter()
                .map(|m| Held {
                    env: m.environment,
                    record: m.record,
                    etag: m.etag,
                })
                .collect(),
        ),
        Ok(SetAcquired::Cancelled { .. }) => Got::Cancelled,
        Ok(SetAcquired::Blocked {
            environment,
            timed_out,
            ..
        }) => {
            sim.with(me, |w| {
                let token = w.slots[me].token.clone();
                // A member is left ours only when the store failed our request to give it
                // back; it then expires after its ttl.
                let left: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|env| {
                        w.token_on_lock(env).as_deref() == Some(token.as_str())
                            && !w.slots[me].faulted.contains(&lock::key(env))
                    })
                    .collect();
                if !left.is_empty() {
                    w.fail(format!(
                        "c{me}'s set was refused on {environment} but it still holds {}",
                        left.join(",")
                    ));
                }
            })?;
            Got::Not(format!(
                "set blocked on {environment} (timed out: {timed_out})"
            ))
        }
        // The simulation's clients read no freeze windows.
        Ok(SetAcquired::Frozen { environment, .. }) => {
            Got::Not(format!("set frozen on {environment}"))
        }
        Err(e) => Got::Not(format!("set acquire failed: {}", short(&e))),
    })
}

#[test]
fn sets_keep_every_promise() {
    run_schedules(Kind::Sets, 800);
}

#[test]
fn a_sets_seed_replays_exactly() {
    let first = simulate(11, Kind::Sets);
    let second = simulate(11, Kind::Sets);
    assert_eq!(first, second);
}
