//! The lock: its record, the protocol's pure decisions, and the operations over a store
//! (acquire, release, renew, fence, queue, heartbeat), with the events they report.
//!
//! This layer knows the store, the clock and the run's details; never the configuration or the
//! command line, which decide the values passed in.

pub mod audit;
pub mod fence;
pub mod heartbeat;
pub mod locker;
pub mod protocol;
pub mod queue;
pub mod record;

pub use audit::{AuditLog, Discard, EventKind, EventSink, LockEvent, audit_sink};
pub use fence::Fenced;
pub use locker::{Acquired, Holding, Locker, Released, Renewed, Waited, new_token};
pub use protocol::{Identity, LockView, Ownership};
pub use record::{Holder, LockRecord};

/// Blob names the seed script uses, so both can run side by side.
pub const KEY_PREFIX: &str = "deployment-lock-";
/// The per-environment fencing counter; outside `KEY_PREFIX`, so listings of locks skip it.
pub const FENCE_PREFIX: &str = "deployment-fence-";

/// The seed script's stale timeout (its `LOCK_TIMEOUT_MINUTES` default), for locks it wrote.
pub const SEED_TIMEOUT_MINUTES: f64 = 30.0;

/// The lock blob's name for an environment.
#[must_use]
pub fn key(environment: &str) -> String {
    format!("{KEY_PREFIX}{environment}")
}

#[cfg(test)]
mod tests;
