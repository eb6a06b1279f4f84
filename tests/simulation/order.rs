//! Priority and supersede keys in the simulation: every client waits for one environment with a
//! priority (some high) and sometimes a supersede key from a small set, so keys collide; clients
//! are different runs (build ids), but sometimes two of them are jobs of one run. The world logs
//! every version of every queue ticket as the store kept it (who joined when, until when), and
//! beside the checks of every schedule (one holder within valid leases, fences increasing, no
//! false "lost", every acquire within its budget) it checks:
//! - a superseded acquire holds nothing, and returns only when a newer ticket of another run with
//!   its key was live in the queue while it waited (so a run never supersedes itself);
//! - every acquire ends taken, timed out (its budget spent), superseded, or — only when one of
//!   its own requests met a fault — failed;
//! - priority: a normal waiter that none of the faults touched (no injected fault on its
//!   requests, no pause) does not take the lock before its budget runs out while a high ticket
//!   has been live in the queue for longer than `bound`. The queue is advisory: a waiter that
//!   met a fault races as without a queue, and a normal waiter's last try after its budget is a
//!   race too; the conditional create still decides who wins, so those cost fairness, never
//!   safety (the checks of every schedule hold for them).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use deploy_lock::lock::queue::{QUEUE_PREFIX, cadence};
use deploy_lock::lock::ticket::{Ticket, split};
use deploy_lock::lock::waiters::Waiter;
use deploy_lock::lock::{Acquired, Priority};
use deploy_lock::store::Entry;

use super::store::ROUND_TRIP;
use super::{ENV, Kind, Params, World, run_schedules, simulate};
use crate::support::proxy::XorShift;

/// The supersede keys clients draw from: few, so they collide.
const KEYS: [&str; 2] = ["deploy.yml@main", "deploy.yml@release"];

/// What one acquire of a client asks for, and when it started.
pub(super) struct Round {
    pub(super) run: String,
    pub(super) token: String,
    pub(super) priority: Priority,
    pub(super) key: Option<&'static str>,
    pub(super) started: Duration,
    pub(super) wait: Option<Duration>,
    pub(super) paused_before: Duration,
}

/// A priority (a third high) and a supersede key (half the time) for one acquire.
pub(super) fn draw(rng: &mut XorShift) -> (Priority, Option<&'static str>) {
    let priority = if rng.below(3) == 0 {
        Priority::High
    } else {
        Priority::Normal
    };
    let key = match rng.below(4) {
        0 | 1 => None,
        k => Some(KEYS[(k % 2) as usize]),
    };
    (priority, key)
}

/// The build id of each client: its own, but for `Kind::Order` clients 0 and 1 are often two
/// jobs of one run.
pub(super) fn runs(rng: &mut XorShift, params: &Params) -> Vec<String> {
    let shared = params.kind == Kind::Order && rng.below(2) == 0;
    (0..params.clients)
        .map(|me| {
            let of = if shared && me == 1 { 0 } else { me };
            format!("{}", 1000 + of)
        })
        .collect()
}

/// How long a high ticket must have been live before no undisturbed normal waiter may take the
/// lock ahead of it.
///
/// A waiter tries the lock only when its latest listing of the queue showed it first, and a
/// normal waiter listed behind a live high ticket is not first. So the bound is how old that
/// listing can be when the waiter sends its create. A waiter that can try is the first
/// (`queue::cadence(0, ..)`): it lists when it refreshes, every `refresh_every`
/// (`HEAD_REFRESH_EVERY`) wakes of the head's poll, and on every wake while it has a supersede
/// key. Between a listing and its create it sleeps fewer than `refresh_every` wakes (counted as
/// a whole refresh, each wake jittered by up to a fifth) and sends at most these requests, each
/// a round trip: the listing's answer, a delete of each dead ticket it saw (one per other
/// client at most), a refresh of its own ticket when its place needs one, and on each wake a
/// read of the lock and a read after a create it lost. Pauses and faults are excluded (they cost
/// fairness, never safety).
///
/// "Live" is what the queue's listing judges: the ticket's version in the store was written
/// within its ticket ttl (`ticket::ticket_ttl` of the refresh its metadata declares, three
/// refreshes), by the store's clock, and was replaced, not deleted, before that. A waiter whose
/// ticket lapsed between refreshes (in the simulation, when slow answers delay its refreshes
/// past that ttl) is skipped and its ticket removed as a dead one's, until it puts it back; it
/// counts again from then.
fn bound(params: &Params) -> Duration {
    let head = cadence(0, 1, params.poll);
    let others = u32::try_from(params.clients - 1).unwrap_or(u32::MAX);
    let requests = 1 + others + 1 + 2 * head.refresh_every;
    head.refresh().mul_f64(1.2) + ROUND_TRIP * requests
}

/// One version of a ticket as the store kept it, from its write until it was replaced or
/// deleted.
struct Version {
    from: Duration,
    until: Option<Duration>,
    /// Ended by a replace (the ticket stayed in the queue), not a delete.
    replaced: bool,
    entry: Entry,
}

/// A ticket and every version of it.
struct Logged {
    owner: usize,
    ticket: Ticket,
    versions: Vec<Version>,
}

/// The queue tickets the store kept, and what the checks saw.
pub(super) struct Book {
    epoch: DateTime<Utc>,
    /// Each client's run (build id).
    pub(super) runs: Vec<String>,
    tickets: BTreeMap<String, Logged>,
    /// Superseded acquires, and handovers while a high ticket had been live for longer than the
    /// bound (the priority check's cases).
    pub(super) superseded: u64,
    pub(super) priority_cases: u64,
}

impl Book {
    pub(super) fn new(epoch: DateTime<Utc>, runs: Vec<String>) -> Self {
        Self {
            epoch,
            runs,
            tickets: BTreeMap::new(),
            superseded: 0,
            priority_cases: 0,
        }
    }

    /// Whether `version` was live at `at` by the queue's judgement (the store's whole-second
    /// clock).
    fn live(&self, logged: &Logged, version: &Version, at: Duration) -> bool {
        let now = (self.epoch + at).trunc_subsecs(0);
        version.from <= at
            && version.until.is_none_or(|u| at <= u)
            && logged.ticket.is_live(&version.entry, now)
    }

    /// Whether the ticket was live at some moment of `from..=to`.
    fn live_during(&self, logged: &Logged, from: Duration, to: Duration) -> bool {
        logged.versions.iter().any(|v| {
            let at = v.from.max(from);
            at <= to && self.live(logged, v, at)
        })
    }

    /// Since when the ticket has been live without a break at `at`: each version live until the
    /// replace that followed it.
    fn live_since(&self, logged: &Logged, at: Duration) -> Option<Duration> {
        let mut i = logged
            .versions
            .iter()
            .rposition(|v| self.live(logged, v, at))?;
        while i > 0 {
            let before = &logged.versions[i - 1];
            let from = logged.versions[i].from;
            if !(before.replaced && before.until == Some(from) && self.live(logged, before, from)) {
                break;
            }
            i -= 1;
        }
        Some(logged.versions[i].from)
    }
}

impl World {
    /// A write of a queue ticket was applied: `entry` is the ticket as the store keeps it now
    /// (None: deleted).
    pub(super) fn ticket_written(&mut self, me: usize, key: &str, entry: Option<Entry>) {
        let Some((_, ticket)) = key.strip_prefix(QUEUE_PREFIX).and_then(split) else {
            return;
        };
        let now = self.now;
        let logged = self
            .book
            .tickets
            .entry(key.to_owned())
            .or_insert_with(|| Logged {
                owner: me,
                ticket,
                versions: Vec::new(),
            });
        if let Some(last) = logged.versions.last_mut()
            && last.until.is_none()
        {
            last.until = Some(now);
            last.replaced = entry.is_some();
        }
        if let Some(entry) = entry {
            logged.versions.push(Version {
                from: now,
                until: None,
                replaced: false,
                entry,
            });
        }
    }

    /// Judges what one acquire of `me` returned, by the promises of priority and supersede.
    pub(super) fn judge(&mut self, me: usize, round: &Round, got: &anyhow::Result<Acquired>) {
        let slot = &self.slots[me];
        let undisturbed =
            slot.faulted.is_empty() && slot.paused.saturating_sub(round.paused_before).is_zero();
        let took = self.now.saturating_sub(round.started);
        match got {
            Ok(Acquired::Superseded { by, .. }) => self.superseded(me, round, by),
            Ok(Acquired::Taken {
                reentrant: false, ..
            }) => self.handed_over(me, round, undisturbed),
            Ok(Acquired::Blocked { timed_out, .. }) => {
                if let Some(wait) = round.wait
                    && !(*timed_out && took >= wait)
                {
                    self.fail(format!(
                        "c{me}'s wait of {wait:?} ended blocked after {took:?} (timed out: \
                         {timed_out})"
                    ));
                }
            }
            Err(e) if undisturbed => {
                self.fail(format!(
                    "c{me}'s acquire failed though no fault met it: {e:#}"
                ));
            }
            _ => {}
        }
    }

    /// A superseded acquire holds nothing, and a newer ticket of another run with its key was
    /// live while it waited.
    fn superseded(&mut self, me: usize, round: &Round, by: &Waiter) {
        self.book.superseded += 1;
        if self.token_on_lock(ENV).as_deref() == Some(round.token.as_str()) {
            self.fail(format!(
                "c{me} was superseded while the lock carries its token"
            ));
            return;
        }
        let book = &self.book;
        let ours = book
            .tickets
            .values()
            .find(|t| t.owner == me && t.ticket.token == round.token);
        let Some(ours) = ours.filter(|_| round.key.is_some()) else {
            self.fail(format!(
                "c{me} was superseded without a ticket or a key ({:?})",
                round.key
            ));
            return;
        };
        let joined = ours.versions.first().map_or(round.started, |v| v.from);
        let newer = book.tickets.values().any(|t| {
            t.ticket.supersede == ours.ticket.supersede
                && t.ticket.newer_than(&ours.ticket)
                && book.runs[t.owner] != round.run
                && book.runs[t.owner] == by.build_id
                && book.live_during(t, joined, self.now)
        });
        if !newer || by.build_id == round.run {
            self.fail(format!(
                "c{me} (run {}, key {:?}) was superseded by {} without a newer live waiter of \
                 another run with its key",
                round.run,
                round.key,
                by.describe()
            ));
        }
    }

    /// The lock passed to `me`: an undisturbed normal waiter before its budget ran out takes
    /// it only when no high ticket of another client has been live for longer than the bound.
    fn handed_over(&mut self, me: usize, round: &Round, undisturbed: bool) {
        let (Some(wait), Some(&sent)) = (round.wait, self.slots[me].leases.get(ENV)) else {
            return;
        };
        let bound = bound(&self.params);
        if !undisturbed || sent >= round.started + wait {
            return;
        }
        let book = &self.book;
        let ahead: Vec<String> = book
            .tickets
            .values()
            .filter(|t| t.owner != me && t.ticket.priority == Priority::High)
            .filter_map(|t| {
                let since = book.live_since(t, sent)?;
                (since + bound < sent).then(|| format!("c{} since {since:?}", t.owner))
            })
            .collect();
        if ahead.is_empty() {
            return;
        }
        self.book.priority_cases += 1;
        if round.priority == Priority::Normal {
            self.fail(format!(
                "c{me}, a normal waiter, took the lock at {sent:?} while high waiters were live \
                 for longer than {bound:?}: {}",
                ahead.join(", ")
            ));
        }
    }
}

#[test]
fn priority_and_supersede_keep_every_promise() {
    let tally = run_schedules(Kind::Order, 1000);
    // The schedules exercise both promises, not only the common checks (one replayed seed
    // may not).
    if std::env::var_os("DEPLOY_LOCK_SIM_SEED").is_none() {
        assert!(
            tally.superseded > 0 && tally.priority_cases > 0,
            "{tally:?}"
        );
    }
}

#[test]
fn an_order_seed_replays_exactly() {
    let first = simulate(17, Kind::Order);
    let second = simulate(17, Kind::Order);
    assert_eq!(first, second);
}
