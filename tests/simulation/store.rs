//! The simulation's store and clock: every request of a client is a scheduling point and may meet
//! a fault; every sleep passes virtual time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deploy_lock::clock::Clock;
use deploy_lock::lock::KEY_PREFIX;
use deploy_lock::lock::queue::QUEUE_PREFIX;
use deploy_lock::lock::record::Holder;
use deploy_lock::store::memory::MemoryStore;
use deploy_lock::store::{Listing, Read, Store, StoreError, StoreResult, Written};

use super::{Sim, State, Stopped};

/// The longest a request or its answer travels.
const MAX_LATENCY: Duration = Duration::from_millis(300);

/// The longest a request takes there and back (pauses aside).
pub(super) const ROUND_TRIP: Duration = MAX_LATENCY.saturating_mul(2);

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
pub(super) struct SimStore {
    pub(super) sim: Arc<Sim>,
    pub(super) me: usize,
    pub(super) inner: Arc<MemoryStore>,
}

impl SimStore {
    fn latency(&self) -> Result<Duration, StoreError> {
        self.sim
            .with(self.me, |w| w.duration_below(MAX_LATENCY))
            .map_err(stopped)
    }

    /// Sends a request: it travels, is applied, and its answer travels back. `record` is the
    /// lock record a create or replace of a lock writes, to tell a take (the lock comes to carry
    /// another token) from a refresh, a renewal or a fencing write (the same token).
    fn request<T>(
        &self,
        verb: &str,
        key: &str,
        write: bool,
        record: Option<&[u8]>,
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
        let what = format!("{verb} {key}");
        if fault != Fault::None {
            let me = self.me;
            self.sim
                .with(me, |w| w.slots[me].faulted.insert(key.to_owned()))
                .map_err(stopped)?;
        }
        self.sim.point(self.me, self.latency()?).map_err(stopped)?;
        if fault == Fault::FailBefore {
            self.note(&format!("{what} → failed before the store"));
            return Err(StoreError::Transient("injected: request failed".into()));
        }
        let before = record.and_then(|_| self.inner.peek(key));
        let result = apply(&self.inner);
        let took =
            result.is_ok() && record.is_some_and(|r| token(Some(r)) != token(before.as_deref()));
        // A queue ticket as the store keeps it after a write, for the world's log of the queue.
        let ticket = (write && result.is_ok() && key.starts_with(QUEUE_PREFIX)).then(|| {
            self.inner
                .list(key)
                .ok()
                .and_then(|l| l.entries.into_iter().find(|e| e.key == key))
        });
        // A write of a lock starts a lease on its environment.
        let leased = key
            .strip_prefix(KEY_PREFIX)
            .filter(|_| write && verb != "delete");
        let outcome = match &result {
            Ok(_) => "ok",
            Err(StoreError::Conflict) => "conflict",
            Err(StoreError::NotFound(_)) => "not found",
            Err(_) => "error",
        };
        let me = self.me;
        self.sim
            .with(me, |w| {
                if let (Some(env), true) = (leased, result.is_ok()) {
                    w.slots[me].leases.insert(env.to_owned(), sent);
                }
                if let Some(entry) = ticket {
                    w.ticket_written(me, key, entry);
                }
                if took {
                    w.took(me, key);
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

/// The token of a lock record, if it is one of ours.
fn token(data: Option<&[u8]>) -> Option<String> {
    Holder::parse(data?).record().map(|r| r.token.clone())
}

fn stopped(_: Stopped) -> StoreError {
    StoreError::BadRequest("the client stopped".into())
}

impl Store for SimStore {
    fn get(&self, key: &str) -> StoreResult<Read> {
        let read = self.request(
            "get",
            key,
            false,
            None,
            |s| s.get(key),
            || StoreError::Conflict,
        );
        let me = self.me;
        self.sim
            .with(me, |w| w.freeze_read(me, key, &read))
            .map_err(stopped)?;
        read
    }

    fn create(
        &self,
        key: &str,
        data: &[u8],
        metadata: &std::collections::BTreeMap<String, String>,
    ) -> StoreResult<Written> {
        self.request(
            "create",
            key,
            true,
            key.starts_with(KEY_PREFIX).then_some(data),
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
            "replace",
            key,
            true,
            key.starts_with(KEY_PREFIX).then_some(data),
            |s| s.replace(key, data, metadata, etag),
            || StoreError::Conflict,
        )
    }

    fn delete(&self, key: &str, etag: &str) -> StoreResult<()> {
        self.request(
            "delete",
            key,
            true,
            None,
            |s| s.delete(key, etag),
            || StoreError::NotFound(key.to_owned()),
        )
    }

    fn list(&self, prefix: &str) -> StoreResult<Listing> {
        self.request(
            "list",
            prefix,
            false,
            None,
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

/// Client `me`'s clock and its view of the shared store.
pub(super) fn client_parts(
    sim: &Arc<Sim>,
    me: usize,
    store: &Arc<MemoryStore>,
) -> (SimClock, SimStore) {
    let clock = SimClock {
        sim: Arc::clone(sim),
        me,
    };
    let store = SimStore {
        sim: Arc::clone(sim),
        me,
        inner: Arc::clone(store),
    };
    (clock, store)
}

/// One client's virtual clock.
pub(super) struct SimClock {
    pub(super) sim: Arc<Sim>,
    pub(super) me: usize,
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
