//! The lock protocol in a deterministic simulation: several clients run the real `Locker` code
//! (acquire with the waiters' queue, fence, renew, release, steal) against the in-memory store, on
//! a virtual clock, with lost answers, failed writes, crashes, pauses and jumps of the local wall
//! clock. One seeded generator decides everything, so a failing seed replays exactly.
//!
//! Each client is a thread, but only one runs at a time: every store request and every sleep is a
//! point where the scheduler hands the turn to a client it picks with the generator. A request
//! travels (virtual time passes, others may run), is applied atomically, and its answer travels
//! back (others may run again). After every step the checker asserts:
//! - at most one holder: no two clients believe they hold the lock while both leases are valid
//!   (a lease lasts one ttl from the sending of the client's latest write that the store applied);
//! - fencing numbers strictly increase in the order the lock carried them;
//! - no holder is told its lock is lost while the lock carries its token;
//! - every acquire returns within its wait budget (plus a bounded slack), served or timed out;
//! - the whole run ends (no livelock) within a bound of steps and virtual time.
//!
//! `DEPLOY_LOCK_SIM_SEED=N` replays one seed with its trace; `DEPLOY_LOCK_SIM_RUNS=N` runs more
//! schedules than the default (which stays well under a minute).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deploy_lock::ci::RunInfo;
use deploy_lock::clock::Clock;
use deploy_lock::lock::record::Holder;
use deploy_lock::lock::{self, Acquired, Fenced, Holding, Identity, Locker, Released, Renewed};
use deploy_lock::store::memory::MemoryStore;
use deploy_lock::store::{Listing, Read, Store, StoreError, StoreResult, Written};

use crate::support::proxy::XorShift;

const ENV: &str = "prod";
/// Schedules per `cargo test` run.
const DEFAULT_RUNS: u64 = 1500;
const MAX_STEPS: u64 = 40_000;
const MAX_TIME: Duration = Duration::from_secs(4 * 3600);
const TRACE: usize = 400;

/// Why a client stopped: it crashed, or the simulation was aborted.
#[derive(Debug)]
struct Stopped;

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Runnable,
    Sleeping(Duration),
    Done,
    Crashed,
}

/// The knobs of one schedule, drawn from its seed.
#[derive(Debug, Clone, Copy)]
struct Params {
    clients: usize,
    rounds: u64,
    ttl: Duration,
    poll: Duration,
    /// Percent of requests that fail before, or lose their answer after, reaching the store.
    fault: u64,
    /// Per mille of scheduling points where a client crashes, pauses, or its wall clock jumps.
    crash: u64,
    pause: u64,
    jump: u64,
}

impl Params {
    fn draw(rng: &mut XorShift) -> Self {
        Self {
            clients: 2 + rng.below(4) as usize,
            rounds: 1 + rng.below(3),
            ttl: Duration::from_secs(2 + rng.below(9)),
            poll: Duration::from_millis(300 + rng.below(2700)),
            fault: rng.below(12),
            crash: rng.below(4),
            pause: rng.below(8),
            jump: rng.below(20),
        }
    }
}

struct Slot {
    state: State,
    /// Seconds added to the virtual time by this client's wall clock.
    wall_offset: i64,
    /// The client acts as the holder (between a successful acquire and its release or loss).
    believes: bool,
    /// Its acquisition's token, for the "lost while ours" check.
    token: String,
    /// When the client sent its latest write of the lock that the store applied.
    lease_from: Option<Duration>,
    /// How long the client was paused in all, which no wait budget can account for.
    paused: Duration,
}

struct World {
    now: Duration,
    turn: Option<usize>,
    slots: Vec<Slot>,
    rng: XorShift,
    params: Params,
    steps: u64,
    trace: VecDeque<String>,
    failure: Option<String>,
    /// Fencing numbers handed out, with when the lock came to carry them.
    fences: Vec<(Duration, u64)>,
    /// The store, to look at the lock from outside the protocol.
    store: Option<Arc<MemoryStore>>,
}

impl World {
    fn note(&mut self, who: usize, what: &str) {
        if self.trace.len() == TRACE {
            self.trace.pop_front();
        }
        let line = format!("{:>9.3}s c{who} {what}", self.now.as_secs_f64());
        self.trace.push_back(line);
    }

    fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.failure = Some(why);
        }
        // Stop everyone: their requests fail and their sleeps end.
        for slot in &mut self.slots {
            if slot.state != State::Done {
                slot.state = State::Crashed;
            }
        }
        self.turn = None;
    }

    /// Safety: at most one client believes it holds the lock within a valid lease.
    fn check(&mut self) {
        let ttl = self.params.ttl;
        let now = self.now;
        let holders: Vec<String> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.believes && s.lease_from.is_some_and(|f| now < f + ttl))
            .map(|(i, s)| {
                let until = s.lease_from.map_or(0.0, |f| (f + ttl).as_secs_f64());
                format!("c{i} (lease until {until:.3}s)")
            })
            .collect();
        if holders.len() > 1 {
            self.fail(format!("two holders at once: {}", holders.join(", ")));
        }
        if self.steps > MAX_STEPS || self.now > MAX_TIME {
            self.fail(format!(
                "no end after {} steps and {:.0}s of virtual time",
                self.steps,
                self.now.as_secs_f64()
            ));
        }
    }

    /// Hands the turn to a runnable client picked by the generator, advancing virtual time to
    /// the next wake-up when everyone sleeps.
    fn pick(&mut self) {
        self.steps += 1;
        self.check();
        if self.failure.is_some() {
            return;
        }
        let mut runnable: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].state == State::Runnable)
            .collect();
        if runnable.is_empty() {
            let next = self
                .slots
                .iter()
                .filter_map(|s| match s.state {
                    State::Sleeping(until) => Some(until),
                    _ => None,
                })
                .min();
            let Some(next) = next else {
                self.turn = None;
                return;
            };
            self.now = self.now.max(next);
            for slot in &mut self.slots {
                if matches!(slot.state, State::Sleeping(until) if until <= self.now) {
                    slot.state = State::Runnable;
                }
            }
            runnable = (0..self.slots.len())
                .filter(|&i| self.slots[i].state == State::Runnable)
                .collect();
            // Virtual time moved: the safety check must see the new time.
            self.check();
            if self.failure.is_some() {
                return;
            }
        }
        let chosen = runnable[self.rng.below(runnable.len() as u64) as usize];
        self.turn = Some(chosen);
    }

    fn duration_below(&mut self, max: Duration) -> Duration {
        Duration::from_millis(self.rng.below(max.as_millis().max(1) as u64))
    }
}

struct Sim {
    world: Mutex<World>,
    turns: Condvar,
    epoch: DateTime<Utc>,
}

impl Sim {
    fn new(seed: u64) -> Self {
        let mut rng = XorShift::new(seed);
        let params = Params::draw(&mut rng);
        let slots = (0..params.clients)
            .map(|_| Slot {
                state: State::Runnable,
                wall_offset: 0,
                believes: false,
                token: String::new(),
                lease_from: None,
                paused: Duration::ZERO,
            })
            .collect();
        Self {
            world: Mutex::new(World {
                now: Duration::ZERO,
                turn: None,
                slots,
                rng,
                params,
                steps: 0,
                trace: VecDeque::new(),
                failure: None,
                fences: Vec::new(),
                store: None,
            }),
            turns: Condvar::new(),
            epoch: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
        }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        self.world
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn now(&self) -> DateTime<Utc> {
        self.epoch + self.world().now
    }

    /// Blocks until it is `me`'s turn; `Stopped` once `me` crashed or the run was aborted.
    fn wait_turn<'a>(
        &'a self,
        me: usize,
        mut w: MutexGuard<'a, World>,
    ) -> Result<MutexGuard<'a, World>, Stopped> {
        loop {
            if w.slots[me].state == State::Crashed {
                return Err(Stopped);
            }
            if w.turn == Some(me) {
                return Ok(w);
            }
            w = self
                .turns
                .wait(w)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    fn start(&self) {
        let mut w = self.world();
        w.pick();
        drop(w);
        self.turns.notify_all();
    }

    /// A scheduling point of the running client `me`: it may crash here, pause, see its wall
    /// clock jump; then it sleeps `sleep` of virtual time (or just yields) and waits for its turn.
    fn point(&self, me: usize, sleep: Duration) -> Result<(), Stopped> {
        let mut w = self.wait_turn(me, self.world())?;
        let p = w.params;
        if w.rng.below(1000) < p.crash {
            w.note(me, "crashes");
            let slot = &mut w.slots[me];
            slot.state = State::Crashed;
            slot.believes = false;
            w.pick();
            drop(w);
            self.turns.notify_all();
            return Err(Stopped);
        }
        let mut sleep = sleep;
        if w.rng.below(1000) < p.pause {
            let pause = w.duration_below(p.ttl * 2);
            w.note(me, &format!("pauses for {:.3}s", pause.as_secs_f64()));
            w.slots[me].paused += pause;
            sleep += pause;
        }
        if w.rng.below(1000) < p.jump {
            let jump = w.rng.below(10 * 3600).cast_signed() - 5 * 3600;
            w.slots[me].wall_offset = jump;
            w.note(me, &format!("wall clock jumps to {jump:+}s"));
        }
        let now = w.now;
        w.slots[me].state = if sleep.is_zero() {
            State::Runnable
        } else {
            State::Sleeping(now + sleep)
        };
        w.pick();
        self.turns.notify_all();
        self.wait_turn(me, w).map(drop)
    }

    fn finish(&self, me: usize) {
        let mut w = self.world();
        if w.slots[me].state == State::Crashed {
            return;
        }
        w.slots[me].state = State::Done;
        w.slots[me].believes = false;
        w.note(me, "done");
        w.pick();
        drop(w);
        self.turns.notify_all();
    }

    /// Runs `f` on the world while it is `me`'s turn.
    fn with<T>(&self, me: usize, f: impl FnOnce(&mut World) -> T) -> Result<T, Stopped> {
        let mut w = self.wait_turn(me, self.world())?;
        let value = f(&mut w);
        if w.failure.is_some() {
            // Everyone was stopped: wake them so they see it.
            drop(w);
            self.turns.notify_all();
        }
        Ok(value)
    }

    /// The lock's current token, read outside the protocol.
    fn token_on_lock(w: &World) -> Option<String> {
        let data = w.store.as_ref()?.peek(&lock::key(ENV))?;
        Holder::parse(&data).record().map(|r| r.token.clone())
    }
}

/// What a request meets on its way.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Never reaches the store.
    FailBefore,
    /// Applied, but the answer is lost.
    LoseAnswer,
    /// Applied, the answer is lost, and the client's retry meets its own write: 409/412/404.
    RetryMeetsItself,
}

/// One client's view of the shared store: every request is scheduled and may meet a fault.
struct SimStore {
    sim: Arc<Sim>,
    me: usize,
    inner: Arc<MemoryStore>,
}

impl SimStore {
    fn latency(&self) -> Result<Duration, StoreError> {
        self.sim
            .with(self.me, |w| w.duration_below(Duration::from_millis(300)))
            .map_err(stopped)
    }

    /// Sends a request: it travels, is applied, and its answer travels back.
    fn request<T>(
        &self,
        what: &str,
        write: bool,
        apply: impl FnOnce(&MemoryStore) -> StoreResult<T>,
        retried: impl FnOnce() -> StoreError,
    ) -> StoreResult<T> {
        let (sent, fault) = self
            .sim
            .with(self.me, |w| {
                let p = w.params.fault;
                let fault = match w.rng.below(100) {
                    r if r < p => Fault::FailBefore,
                    r if write && r < 2 * p => Fault::LoseAnswer,
                    r if write && r < 3 * p => Fault::RetryMeetsItself,
                    _ => Fault::None,
                };
                (w.now, fault)
            })
            .map_err(stopped)?;
        self.sim.point(self.me, self.latency()?).map_err(stopped)?;
        if fault == Fault::FailBefore {
            self.note(&format!("{what} → failed before the store"));
            return Err(StoreError::Transient("injected: request failed".into()));
        }
        let result = apply(&self.inner);
        let lock_write = write && what.contains(&lock::key(ENV)) && !what.starts_with("delete");
        let outcome = match &result {
            Ok(_) => "ok",
            Err(StoreError::Conflict) => "conflict",
            Err(StoreError::NotFound(_)) => "not found",
            Err(_) => "error",
        };
        let me = self.me;
        self.sim
            .with(me, |w| {
                if lock_write && result.is_ok() {
                    w.slots[me].lease_from = Some(sent);
                }
                w.note(me, &format!("{what} → {outcome} ({fault:?})"));
            })
            .map_err(stopped)?;
        self.sim.point(self.me, self.latency()?).map_err(stopped)?;
        match fault {
            Fault::LoseAnswer => Err(StoreError::Transient("injected: answer lost".into())),
            Fault::RetryMeetsItself if result.is_ok() => Err(retried()),
            _ => result,
        }
    }

    fn note(&self, what: &str) {
        let _ = self.sim.with(self.me, |w| w.note(self.me, what));
    }
}

fn stopped(_: Stopped) -> StoreError {
    StoreError::BadRequest("the client stopped".into())
}

impl Store for SimStore {
    fn get(&self, key: &str) -> StoreResult<Read> {
        self.request(
            &format!("get {key}"),
            false,
            |s| s.get(key),
            || StoreError::Conflict,
        )
    }

    fn create(
        &self,
        key: &str,
        data: &[u8],
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> StoreResult<Written> {
        self.request(
            &format!("create {key}"),
            true,
            |s| s.create(key, data, metadata),
            || StoreError::Conflict,
        )
    }

    fn replace(
        &self,
        key: &str,
        data: &[u8],
        metadata: &std::collections::BTreeMap<String, String>,
        etag: &str,
    ) -> StoreResult<Written> {
        self.request(
            &format!("replace {key}"),
            true,
            |s| s.replace(key, data, metadata, etag),
            || StoreError::Conflict,
        )
    }

    fn delete(&self, key: &str, etag: &str) -> StoreResult<()> {
        self.request(
            &format!("delete {key}"),
            true,
            |s| s.delete(key, etag),
            || StoreError::NotFound(key.to_owned()),
        )
    }

    fn list(&self, prefix: &str) -> StoreResult<Listing> {
        self.request(
            &format!("list {prefix}"),
            false,
            |s| s.list(prefix),
            || StoreError::Conflict,
        )
    }

    fn append(&self, key: &str, line: &[u8]) -> StoreResult<u64> {
        self.inner.append(key, line)
    }

    fn describe(&self) -> String {
        "simulated store".into()
    }
}

/// One client's virtual clock.
struct SimClock {
    sim: Arc<Sim>,
    me: usize,
}

impl Clock for SimClock {
    fn elapsed(&self) -> Duration {
        self.sim.world().now
    }

    fn sleep(&self, d: Duration) -> bool {
        self.sim.point(self.me, d).is_ok()
    }

    fn cancelled(&self) -> bool {
        self.sim.world().slots[self.me].state == State::Crashed
    }

    fn wall(&self) -> DateTime<Utc> {
        let w = self.sim.world();
        self.sim.epoch + w.now + chrono::Duration::seconds(w.slots[self.me].wall_offset)
    }

    fn random(&self) -> f64 {
        let mut w = self.sim.world();
        // A crashed client runs on unscheduled for a moment; it must not move the generator.
        if w.turn != Some(self.me) {
            return 0.5;
        }
        w.rng.below(1 << 20) as f64 / f64::from(1 << 20)
    }
}

/// One client's life: a few rounds of acquire (fail fast or waiting), fence, hold with renewals,
/// release.
fn client(sim: &Arc<Sim>, me: usize, store: &Arc<MemoryStore>) -> Result<(), Stopped> {
    let clock = SimClock {
        sim: Arc::clone(sim),
        me,
    };
    let store = SimStore {
        sim: Arc::clone(sim),
        me,
        inner: Arc::clone(store),
    };
    let params = sim.with(me, |w| w.params)?;
    let run = RunInfo::default();
    let holding = Holding {
        run: &run,
        reason: "simulated",
    };
    let locker = Locker::new(&store, params.ttl, params.poll).with_clock(&clock);
    for _ in 0..params.rounds {
        let (token, wait) = sim.with(me, |w| {
            let token = format!("{:016x}{:016x}", w.rng.next_u64(), w.rng.next_u64());
            let wait = match w.rng.below(4) {
                0 => None,
                _ => Some(w.duration_below(params.ttl * 8)),
            };
            w.slots[me].token.clone_from(&token);
            w.slots[me].lease_from = None;
            w.note(me, &format!("acquires, waiting up to {wait:?}"));
            (token, wait)
        })?;
        let me_id = Identity {
            pipeline: "github".into(),
            build_id: format!("{}", 1000 + me),
            job: "deploy".into(),
            attempt: "1".into(),
            host: format!("runner-{me}"),
            token: Some(token.clone()),
            shared_build_id: false,
        };
        let started = clock.elapsed();
        let paused_before = sim.with(me, |w| w.slots[me].paused)?;
        let outcome = locker.acquire(ENV, &me_id, &holding, wait);
        let took = clock.elapsed().saturating_sub(started);
        // The last try after the budget can meet a slow or failing store; bounded all the same.
        // Time the client spent paused is not the protocol's.
        let paused = sim.with(me, |w| w.slots[me].paused.saturating_sub(paused_before))?;
        let slack = params.poll * 2 + Duration::from_secs(30) + paused;
        if took > wait.unwrap_or_default() + slack {
            sim.with(me, |w| {
                w.fail(format!(
                    "c{me}'s acquire took {:.1}s with a budget of {wait:?}",
                    took.as_secs_f64()
                ));
            })?;
        }
        match outcome {
            Ok(Acquired::Taken {
                mut record, etag, ..
            }) => {
                sim.with(me, |w| {
                    w.slots[me].believes = true;
                    w.note(me, "holds the lock");
                })?;
                hold(sim, me, &locker, &clock, &me_id, &mut record, &etag)?;
                sim.with(me, |w| w.slots[me].believes = false)?;
                let released = locker.release(ENV, &me_id);
                sim.with(me, |w| {
                    if let Ok(Released::Refused(_)) = released
                        && Sim::token_on_lock(w).as_deref() == Some(token.as_str())
                    {
                        w.fail(format!(
                            "c{me}'s release was refused while the lock is its own"
                        ));
                    }
                    w.slots[me].lease_from = None;
                    w.note(me, &format!("released: {}", short(&released)));
                })?;
            }
            Ok(Acquired::Cancelled { .. }) => return Err(Stopped),
            other => sim.with(me, |w| w.note(me, &format!("acquire: {}", short(&other))))?,
        }
        let rest = sim.with(me, |w| w.duration_below(params.ttl))?;
        if !clock.sleep(rest) {
            return Err(Stopped);
        }
    }
    Ok(())
}

/// Fences the fresh acquisition (most of the time), then holds it for a while, renewing every
/// third of the ttl like the heartbeat, until done or told the lock is lost.
fn hold(
    sim: &Arc<Sim>,
    me: usize,
    locker: &Locker<'_>,
    clock: &SimClock,
    me_id: &Identity,
    record: &mut deploy_lock::lock::record::LockRecord,
    etag: &str,
) -> Result<(), Stopped> {
    let ttl = sim.with(me, |w| w.params.ttl)?;
    if sim.with(me, |w| w.rng.chance(70))? {
        match locker.fence(ENV, record, etag, None) {
            Ok(Fenced::Fenced { fence, .. }) => sim.with(me, |w| {
                // The number counts from when the lock carried it, which may be long before a
                // paused client reports it: order by that time.
                let at = w.slots[me].lease_from.unwrap_or(w.now);
                let out_of_order = w
                    .fences
                    .iter()
                    .any(|&(t, f)| (t <= at && f >= fence) || (t > at && f <= fence));
                if out_of_order {
                    w.fail(format!(
                        "c{me} got fence {fence} at {at:?} after {:?}",
                        w.fences
                    ));
                }
                w.fences.push((at, fence));
                w.note(me, &format!("fenced {fence}"));
            })?,
            Ok(Fenced::Lost(_)) => return lost(sim, me, "fencing"),
            Err(e) => sim.with(me, |w| w.note(me, &format!("fence failed: {e:#}")))?,
        }
    }
    let hold_for = sim.with(me, |w| w.duration_below(ttl * 3))?;
    let every = ttl / 3;
    let mut held = Duration::ZERO;
    while held < hold_for {
        if !clock.sleep(every) {
            return Err(Stopped);
        }
        held += every;
        match locker.renew(ENV, me_id, None) {
            Ok(Renewed::Renewed(_)) => sim.with(me, |w| w.note(me, "renewed"))?,
            Ok(Renewed::Lost(_)) => return lost(sim, me, "renewing"),
            Err(e) => sim.with(me, |w| w.note(me, &format!("renew failed: {e:#}")))?,
        }
    }
    Ok(())
}

/// The client was told its lock is lost: true only when the lock no longer carries its token.
fn lost(sim: &Arc<Sim>, me: usize, while_doing: &str) -> Result<(), Stopped> {
    sim.with(me, |w| {
        let mine = w.slots[me].token.clone();
        if Sim::token_on_lock(w).as_deref() == Some(mine.as_str()) {
            w.fail(format!(
                "c{me} was told its lock is lost while {while_doing}, but the lock carries its token"
            ));
        }
        w.slots[me].believes = false;
        w.note(me, &format!("lost the lock while {while_doing}"));
    })
}

fn short<T: std::fmt::Debug>(value: &T) -> String {
    let text = format!("{value:?}");
    text.chars().take(120).collect()
}

/// Runs one schedule; the failure with the end of its trace.
fn simulate(seed: u64) -> Result<(u64, usize), String> {
    let sim = Arc::new(Sim::new(seed));
    let clock_sim = Arc::clone(&sim);
    let store = Arc::new(MemoryStore::with_clock(Box::new(move || clock_sim.now())));
    let clients = {
        let mut w = sim.world();
        w.store = Some(Arc::clone(&store));
        w.slots.len()
    };
    std::thread::scope(|scope| {
        for me in 0..clients {
            let sim = &sim;
            let store = &store;
            scope.spawn(move || {
                if client(sim, me, store).is_ok() {
                    sim.finish(me);
                }
            });
        }
        sim.start();
    });
    let mut w = sim.world();
    w.store = None;
    match w.failure.take() {
        None => Ok((w.steps, w.fences.len())),
        Some(why) => {
            let trace: Vec<String> = w.trace.iter().cloned().collect();
            Err(format!(
                "seed {seed}: {why}\nparams: {:?}\nlast {} steps:\n{}\nreplay: \
                 DEPLOY_LOCK_SIM_SEED={seed} cargo test --test integration simulation",
                w.params,
                trace.len(),
                trace.join("\n")
            ))
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

#[test]
fn simulation_keeps_every_promise() {
    let seeds: Vec<u64> = match env_u64("DEPLOY_LOCK_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("DEPLOY_LOCK_SIM_RUNS").unwrap_or(DEFAULT_RUNS)).collect(),
    };
    let (mut steps, mut fences) = (0, 0);
    for seed in seeds {
        match simulate(seed) {
            Ok((s, f)) => {
                steps += s;
                fences += f;
            }
            Err(report) => panic!("{report}"),
        }
    }
    // The schedules exercise the protocol, not just start and stop.
    assert!(steps > 0 && fences > 0, "steps {steps}, fences {fences}");
}

#[test]
fn a_seed_replays_exactly() {
    let first = simulate(7);
    let second = simulate(7);
    assert_eq!(first, second);
}
