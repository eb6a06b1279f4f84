//! One client's life: a few rounds of acquire (one environment or a set; fail fast or waiting),
//! fence, hold with renewals, release.

use std::sync::Arc;
use std::time::Duration;

use deploy_lock::ci::RunInfo;
use deploy_lock::clock::Clock;
use deploy_lock::lock::record::LockRecord;
use deploy_lock::lock::slots::{slot_of, split_slot};
use deploy_lock::lock::{Acquired, Fenced, Holding, Identity, Locker, Priority, Released, Renewed};
use deploy_lock::store::memory::MemoryStore;

use super::store::{SimClock, client_parts};
use super::{ENV, Kind, Sim, Stopped, freezes, order, sets};

/// One lock the client holds.
pub(super) struct Held {
    pub(super) env: String,
    pub(super) record: LockRecord,
    pub(super) etag: String,
}

/// What an acquire ended with.
pub(super) enum Got {
    Held(Vec<Held>),
    /// Not taken: what to note.
    Not(String),
    Cancelled,
}

/// The environments of one round's acquire, in the order the client names them.
fn draw_members(sim: &Sim, me: usize, kind: Kind) -> Result<Vec<String>, Stopped> {
    sim.with(me, |w| match kind {
        Kind::Single | Kind::Capacity | Kind::Order => vec![ENV.to_owned()],
        // Slots of a shared environment are taken one environment at a time.
        Kind::Freezes if w.params.capacity > 1 => {
            sets::draw(&mut w.rng).into_iter().take(1).collect()
        }
        Kind::Sets | Kind::Freezes => sets::draw(&mut w.rng),
    })
}

pub(super) fn client(sim: &Arc<Sim>, me: usize, store: &Arc<MemoryStore>) -> Result<(), Stopped> {
    let (clock, store) = client_parts(sim, me, store);
    let (params, build_id) = sim.with(me, |w| (w.params, w.book.runs[me].clone()))?;
    // Clients are runs of their own, or two jobs of one run on two runners (`order::runs`).
    let run = RunInfo {
        build_id: build_id.clone(),
        job: "deploy".into(),
        attempt: "1".into(),
        host: format!("runner-{me}"),
        ..RunInfo::default()
    };
    let gate = freezes::Gate(freezes::overrides(me));
    let locker = Locker::new(&store, params.ttl, params.poll)
        .with_clock(&clock)
        .with_capacity(params.capacity);
    let locker = if params.kind == Kind::Freezes {
        locker.with_freeze_gate(&gate)
    } else {
        locker
    };
    for _ in 0..params.rounds {
        let members = draw_members(sim, me, params.kind)?;
        let (token, wait, (priority, supersede)) = sim.with(me, |w| {
            let token = format!("{:016x}{:016x}", w.rng.next_u64(), w.rng.next_u64());
            let wait = match w.rng.below(4) {
                0 => None,
                _ => Some(w.duration_below(params.ttl * 8)),
            };
            let order = match params.kind {
                Kind::Order => order::draw(&mut w.rng),
                _ => (Priority::Normal, None),
            };
            let slot = &mut w.slots[me];
            slot.token.clone_from(&token);
            slot.leases.clear();
            slot.faulted.clear();
            w.note(
                me,
                &format!(
                    "acquires {}, waiting up to {wait:?}, {} priority, key {:?}",
                    members.join(","),
                    order.0.as_str(),
                    order.1
                ),
            );
            (token, wait, order)
        })?;
        let holding = Holding {
            priority,
            supersede,
            ..Holding::new(&run, "simulated")
        };
        let me_id = Identity {
            pipeline: "github".into(),
            build_id: build_id.clone(),
            job: run.job.clone(),
            attempt: run.attempt.clone(),
            host: run.host.clone(),
            token: Some(token.clone()),
            shared_build_id: false,
        };
        let started = clock.elapsed();
        let paused_before = sim.with(me, |w| w.slots[me].paused)?;
        let got = if let [env] = members.as_slice() {
            let acquired = locker.acquire(env, &me_id, &holding, wait);
            if params.kind == Kind::Order {
                let round = order::Round {
                    run: build_id.clone(),
                    token: token.clone(),
                    priority,
                    key: supersede,
                    started,
                    wait,
                    paused_before,
                };
                sim.with(me, |w| w.judge(me, &round, &acquired))?;
            }
            got(env, acquired)
        } else {
            let names: Vec<&str> = members.iter().map(String::as_str).collect();
            sets::acquire(sim, me, &locker, &names, &me_id, &holding, wait)?
        };
        let took = clock.elapsed().saturating_sub(started);
        // The last try after the budget can meet a slow or failing store; bounded all the same.
        // Time the client spent paused is not the protocol's.
        let paused = sim.with(me, |w| w.slots[me].paused.saturating_sub(paused_before))?;
        let slack = params.poll * 2 + Duration::from_secs(30) + paused;
        if took > wait.unwrap_or_default() + slack {
            sim.with(me, |w| {
                w.fail(format!(
                    "c{me}'s acquire of {} took {:.1}s with a budget of {wait:?}",
                    members.join(","),
                    took.as_secs_f64()
                ));
            })?;
        }
        match got {
            Got::Held(mut held) => {
                sim.with(me, |w| {
                    for h in &held {
                        w.slots[me].believes.insert(h.env.clone());
                    }
                    w.note(me, "holds its locks");
                })?;
                hold(sim, me, &locker, &clock, &me_id, &mut held)?;
                for h in &held {
                    release(sim, me, &locker, &me_id, &h.env, &token)?;
                }
            }
            Got::Cancelled => return Err(Stopped),
            Got::Not(what) => sim.with(me, |w| w.note(me, &what))?,
        }
        let rest = sim.with(me, |w| w.duration_below(params.ttl))?;
        if !clock.sleep(rest) {
            return Err(Stopped);
        }
    }
    Ok(())
}

/// What the single-environment acquire (with the waiters' queue when it waits) ended with.
fn got(env: &str, acquired: anyhow::Result<Acquired>) -> Got {
    match acquired {
        // Held by the name of its lock: a slot of `env` under capacity.
        Ok(Acquired::Taken { record, etag, .. }) => Got::Held(vec![Held {
            env: slot_of(env, &record.environment),
            record,
            etag,
        }]),
        Ok(Acquired::Cancelled { .. }) => Got::Cancelled,
        other => Got::Not(format!("acquire: {}", short(&other))),
    }
}

/// Gives the lock of `env` back; a refusal while the lock carries our token is a failure.
fn release(
    sim: &Sim,
    me: usize,
    locker: &Locker<'_>,
    me_id: &Identity,
    env: &str,
    token: &str,
) -> Result<(), Stopped> {
    sim.with(me, |w| w.slots[me].believes.remove(env))?;
    let released = locker.release(split_slot(env).0, me_id);
    sim.with(me, |w| {
        if let Ok(Released::Refused(_)) = released
            && w.token_on_lock(env).as_deref() == Some(token)
        {
            w.fail(format!(
                "c{me}'s release of {env} was refused while the lock is its own"
            ));
        }
        w.slots[me].leases.remove(env);
        w.note(me, &format!("released {env}: {}", short(&released)));
    })
}

/// Fences each fresh acquisition (most of the time), then holds them for a while, renewing every
/// member every third of the ttl like the heartbeat, until done or told a member is lost (which
/// ends the hold, as a lost lock ends `run`).
fn hold(
    sim: &Arc<Sim>,
    me: usize,
    locker: &Locker<'_>,
    clock: &SimClock,
    me_id: &Identity,
    held: &mut [Held],
) -> Result<(), Stopped> {
    let ttl = sim.with(me, |w| w.params.ttl)?;
    for h in held.iter_mut() {
        if !sim.with(me, |w| w.rng.chance(70))? {
            continue;
        }
        match locker.fence(split_slot(&h.env).0, &mut h.record, &h.etag, None) {
            Ok(Fenced::Fenced { fence, .. }) => sim.with(me, |w| w.fenced(me, &h.env, fence))?,
            Ok(Fenced::Lost(_)) => return lost(sim, me, &h.env, "fencing"),
            Err(e) => sim.with(me, |w| w.note(me, &format!("fence failed: {e:#}")))?,
        }
    }
    let hold_for = sim.with(me, |w| w.duration_below(ttl * 3))?;
    let every = ttl / 3;
    let mut so_far = Duration::ZERO;
    while so_far < hold_for {
        if !clock.sleep(every) {
            return Err(Stopped);
        }
        so_far += every;
        for h in held.iter() {
            match locker.renew(split_slot(&h.env).0, me_id, None) {
                Ok(Renewed::Renewed(_)) => {
                    sim.with(me, |w| w.note(me, &format!("renewed {}", h.env)))?;
                }
                Ok(Renewed::Lost(_)) => return lost(sim, me, &h.env, "renewing"),
                Err(e) => sim.with(me, |w| w.note(me, &format!("renew failed: {e:#}")))?,
            }
        }
    }
    Ok(())
}

/// The client was told its lock on `env` is lost: true only when the lock no longer carries its
/// token.
fn lost(sim: &Sim, me: usize, env: &str, while_doing: &str) -> Result<(), Stopped> {
    sim.with(me, |w| {
        let mine = w.slots[me].token.clone();
        if w.token_on_lock(env).as_deref() == Some(mine.as_str()) {
            w.fail(format!(
                "c{me} was told its lock on {env} is lost while {while_doing}, but the lock \
                 carries its token"
            ));
        }
        w.slots[me].believes.remove(env);
        w.note(me, &format!("lost the lock on {env} while {while_doing}"));
    })
}

pub(super) fn short<T: std::fmt::Debug>(value: &T) -> String {
    let text = format!("{value:?}");
    text.chars().take(120).collect()
}
