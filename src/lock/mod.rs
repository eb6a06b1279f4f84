//! The lock: its record, the protocol's pure decisions, and the operations over a store
//! (acquire, release, renew, fence, queue, heartbeat), with the events they report.
//!
//! This layer knows the store, the clock and the run's details; never the configuration or the
//! command line, which decide the values passed in.

pub mod audit;
pub mod ci_api;
pub mod fence;
pub mod freeze;
pub mod heartbeat;
mod known;
pub mod locker;
pub mod logs;
mod numbering;
pub mod protocol;
pub mod queue;
pub mod reap;
pub mod reaper;
pub mod record;
mod release;
mod renew;
pub mod set;
pub mod slots;
pub mod stats;
pub mod ticket;
pub mod waiters;
pub mod watch;

pub use audit::{
    AuditLog, Discard, EventKind, EventSink, Fanout, LockEvent, audit_sink, operation_id,
};
pub use fence::Fenced;
pub use freeze::{FreezeView, Freezes, Window};
pub use locker::{Acquired, Holding, Locker, Waited, new_token};
pub use protocol::{Identity, LockView, Ownership};
pub use reap::Reaped;
pub use reaper::{Reaper, RunOracle};
pub use record::{Holder, LockRecord};
pub use release::Released;
pub use renew::Renewed;
pub use set::{Member, SetAcquired};
pub use ticket::Priority;
pub use watch::{Unwatched, WaitSeen, WaitWatch};

pub use record::{KEY_PREFIX, SEED_TIMEOUT_MINUTES, key};

#[cfg(test)]
mod set_tests;
#[cfg(test)]
mod tests;
