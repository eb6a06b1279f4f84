//! The lock protocol in a deterministic simulation: several clients run the real `Locker` code
//! (acquire with the waiters' queue, lock sets, fence, renew, release, steal) against the
//! in-memory store, on a virtual clock, with lost answers, failed writes, crashes, pauses and
//! jumps of the local wall clock. One seeded generator decides everything, so a failing seed
//! replays exactly.
//!
//! Each client is a thread, but only one runs at a time: every store request and every sleep is a
//! point where the scheduler hands the turn to a client it picks with the generator. A request
//! travels (virtual time passes, others may run), is applied atomically, and its answer travels
//! back (others may run again). After every step the checker asserts, per environment:
//! - at most one holder: no two clients believe they hold an environment's lock while both leases
//!   are valid (a lease lasts one ttl from the sending of the client's latest write of that lock
//!   that the store applied);
//! - fencing numbers strictly increase in the order the lock carried them;
//! - no holder is told its lock is lost while the lock carries its token;
//! - every acquire returns within its wait budget (plus a bounded slack), served or timed out;
//! - the whole run ends (no livelock) within a bound of steps and virtual time.
//!
//! `single` runs one environment; `sets` adds clients that take sets of environments (in any
//! order) beside single-environment ones; `order` gives clients priorities and supersede keys
//! and checks what those promise; `freezes` puts freeze windows in force and removes them while
//! clients take locks through a freeze gate. `DEPLOY_LOCK_SIM_SEED=N` replays one seed with its
//! trace; `DEPLOY_LOCK_SIM_RUNS=N` runs more schedules than the default (which stays well under a
//! minute).

mod capacity;
mod client;
mod freezes;
mod order;
mod sets;
mod store;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deploy_lock::lock::{self, record::Holder};
use deploy_lock::store::memory::MemoryStore;

use crate::support::proxy::XorShift;

/// The environment of the single-environment schedules.
const ENV: &str = "prod";
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

/// What the clients of a schedule take.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// Every client takes `ENV`.
    Single,
    /// Clients take one environment or a set of 2–3, in any order, of `sets::ENVS`.
    Sets,
    /// Every client takes a slot of `ENV`, shared by `capacity::CAPACITY` holders.
    Capacity,
    /// Every client takes `ENV` with a priority and sometimes a supersede key (`order.rs`).
    Order,
    /// Clients take what `Sets` clients take (one environment, shared by two holders, in half
    /// the schedules) through a freeze gate, while a freezer puts windows in force and removes
    /// them (`freezes.rs`).
    Freezes,
}

/// The knobs of one schedule, drawn from its seed.
#[derive(Debug, Clone, Copy)]
struct Params {
    kind: Kind,
    /// How many holders share an environment: 1 but for `Kind::Capacity`.
    capacity: u32,
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
    fn draw(rng: &mut XorShift, kind: Kind) -> Self {
        let params = Self {
            kind,
            // Half the freeze schedules share each environment between two holders.
            capacity: match kind {
                Kind::Capacity => capacity::CAPACITY,
                Kind::Freezes if rng.below(2) == 0 => capacity::CAPACITY,
                _ => 1,
            },
            clients: 2 + rng.below(4) as usize + usize::from(kind == Kind::Order),
            rounds: 1 + rng.below(3),
            ttl: Duration::from_secs(2 + rng.below(9)),
            poll: Duration::from_millis(300 + rng.below(2700)),
            fault: rng.below(12),
            crash: rng.below(4),
            pause: rng.below(8),
            jump: rng.below(20),
        };
        // Half the priority schedules meet no fault, where the queue's order is promised.
        if kind == Kind::Order && rng.below(2) == 0 {
            return Self {
                fault: 0,
                crash: 0,
                pause: 0,
                ..params
            };
        }
        params
    }
}

struct Slot {
    state: State,
    /// Seconds added to the virtual time by this client's wall clock.
    wall_offset: i64,
    /// The environments the client acts as the holder of (between a successful acquire and its
    /// release or loss).
    believes: BTreeSet<String>,
    /// Its acquisition's token (one for every member of a set), for the "lost while ours" check.
    token: String,
    /// Per environment, when the client sent its latest write of that lock that the store applied.
    leases: BTreeMap<String, Duration>,
    /// Keys on which a request of this client met an injected fault during its current acquire.
    faulted: BTreeSet<String>,
    /// How long the client was paused in all, which no wait budget can account for.
    paused: Duration,
    /// Per environment, whether the client's latest read of its freeze windows found none in
    /// force and no take used it yet (`freezes.rs`).
    admitted: BTreeMap<String, bool>,
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
    /// Per environment, the fencing numbers handed out, with when the lock came to carry them.
    fences: BTreeMap<String, Vec<(Duration, u64)>>,
    /// The store, to look at the locks from outside the protocol.
    store: Option<Arc<MemoryStore>>,
    /// The queue's tickets as the store kept them, and each client's run (`order.rs`).
    book: order::Book,
    /// What the freeze checks met (`freezes.rs`).
    seen: freezes::Seen,
}

/// What a schedule did, summed over schedules: enough to tell that the checks had cases.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Tally {
    steps: u64,
    fences: usize,
    superseded: u64,
    priority_cases: u64,
    frozen: u64,
    admitted: u64,
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

    /// Safety: per environment, at most one client believes it holds the lock within a valid
    /// lease.
    fn check(&mut self) {
        let ttl = self.params.ttl;
        let now = self.now;
        let envs: BTreeSet<String> = self
            .slots
            .iter()
            .flat_map(|s| s.believes.iter().cloned())
            .collect();
        for env in envs {
            let holders: Vec<String> = self
                .slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| {
                    let from = *s.leases.get(&env)?;
                    (s.believes.contains(&env) && now < from + ttl)
                        .then(|| format!("c{i} (lease until {:.3}s)", (from + ttl).as_secs_f64()))
                })
                .collect();
            if holders.len() > 1 {
                self.fail(format!(
                    "two holders of {env} at once: {}",
                    holders.join(", ")
                ));
            }
        }
        self.check_capacity();
        if self.steps > MAX_STEPS || self.now > MAX_TIME {
            self.fail(format!(
                "no end after {} steps and {:.0}s of virtual time",
                self.steps,
                self.now.as_secs_f64()
            ));
        }
    }

    /// Fencing numbers of `env` strictly increase in the order the lock carried them.
    fn fenced(&mut self, me: usize, env: &str, fence: u64) {
        // The number counts from when the lock carried it, which may be long before a paused
        // client reports it: order by that time.
        let at = self.slots[me].leases.get(env).copied().unwrap_or(self.now);
        let fences = self.fences.entry(env.to_owned()).or_default();
        let out_of_order = fences
            .iter()
            .any(|&(t, f)| (t <= at && f >= fence) || (t > at && f <= fence));
        fences.push((at, fence));
        if out_of_order {
            let seen = format!("{:?}", self.fences[env]);
            self.fail(format!(
                "c{me} got fence {fence} on {env} at {at:?} after {seen}"
            ));
        }
        self.note(me, &format!("fenced {env} {fence}"));
    }

    /// The token on `env`'s lock, read outside the protocol.
    fn token_on_lock(&self, env: &str) -> Option<String> {
        let data = self.store.as_ref()?.peek(&lock::key(env))?;
        Holder::parse(&data).record().map(|r| r.token.clone())
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
    fn new(seed: u64, kind: Kind) -> Self {
        let mut rng = XorShift::new(seed);
        let params = Params::draw(&mut rng, kind);
        let runs = order::runs(&mut rng, &params);
        let epoch = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        // A freeze schedule has one more client: the freezer, last.
        let slots = (0..params.clients + usize::from(kind == Kind::Freezes))
            .map(|_| Slot {
                state: State::Runnable,
                wall_offset: 0,
                believes: BTreeSet::new(),
                token: String::new(),
                leases: BTreeMap::new(),
                faulted: BTreeSet::new(),
                paused: Duration::ZERO,
                admitted: BTreeMap::new(),
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
                fences: BTreeMap::new(),
                store: None,
                book: order::Book::new(epoch, runs),
                seen: freezes::Seen::default(),
            }),
            turns: Condvar::new(),
            epoch,
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
            slot.believes.clear();
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
        w.slots[me].believes.clear();
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
}

/// Runs one schedule; the failure with the end of its trace.
fn simulate(seed: u64, kind: Kind) -> Result<Tally, String> {
    let sim = Arc::new(Sim::new(seed, kind));
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
                let done = if kind == Kind::Freezes && me + 1 == clients {
                    freezes::freezer(sim, me, store)
                } else {
                    client::client(sim, me, store)
                };
                if done.is_ok() {
                    sim.finish(me);
                }
            });
        }
        sim.start();
    });
    let mut w = sim.world();
    w.store = None;
    match w.failure.take() {
        None => Ok(Tally {
            steps: w.steps,
            fences: w.fences.values().map(Vec::len).sum(),
            superseded: w.book.superseded,
            priority_cases: w.book.priority_cases,
            frozen: w.seen.frozen,
            admitted: w.seen.admitted,
        }),
        Some(why) => {
            let trace: Vec<String> = w.trace.iter().cloned().collect();
            let test = match kind {
                Kind::Single => "simulation::simulation_keeps_every_promise",
                Kind::Sets => "simulation::sets::",
                Kind::Capacity => "simulation::capacity::",
                Kind::Order => "simulation::order::",
                Kind::Freezes => "simulation::freezes::",
            };
            Err(format!(
                "seed {seed}: {why}\nparams: {:?}\nlast {} steps:\n{}\nreplay: \
                 DEPLOY_LOCK_SIM_SEED={seed} cargo test --test integration {test}",
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

/// Runs `default_runs` schedules of `kind` (or the ones the environment asks for); panics with
/// the first failure's trace. What they did, summed.
fn run_schedules(kind: Kind, default_runs: u64) -> Tally {
    let seeds: Vec<u64> = match env_u64("DEPLOY_LOCK_SIM_SEED") {
        Some(seed) => vec![seed],
        None => (1..=env_u64("DEPLOY_LOCK_SIM_RUNS").unwrap_or(default_runs)).collect(),
    };
    let mut sum = Tally::default();
    for seed in seeds {
        match simulate(seed, kind) {
            Ok(t) => {
                sum.steps += t.steps;
                sum.fences += t.fences;
                sum.superseded += t.superseded;
                sum.priority_cases += t.priority_cases;
                sum.frozen += t.frozen;
                sum.admitted += t.admitted;
            }
            Err(report) => panic!("{report}"),
        }
    }
    // The schedules exercise the protocol, not just start and stop.
    assert!(sum.steps > 0 && sum.fences > 0, "{sum:?}");
    sum
}

#[test]
fn simulation_keeps_every_promise() {
    run_schedules(Kind::Single, 1500);
}

#[test]
fn a_seed_replays_exactly() {
    let first = simulate(7, Kind::Single);
    let second = simulate(7, Kind::Single);
    assert_eq!(first, second);
}
