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

pub use record::{KEY_PREFIX, SEED_TIMEOUT_MINUTES, key};

#[cfg(test)]
mod tests;
