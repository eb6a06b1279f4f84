//! What a waiter sees while it waits, for whoever shows it: the locker tells a `WaitWatch` at
//! every look at the lock (the holder, our place in the waiters' queue, how long we waited).
//! The locker only tells; `report` decides what to print and when.

use std::time::Duration;

use super::freeze::Window;
use super::protocol::LockView;

/// One look at the lock during a wait.
#[derive(Debug, Clone, Copy)]
pub struct WaitSeen<'v> {
    /// The lock as just read (`None`: free, or unreadable this time).
    pub lock: Option<&'v LockView>,
    /// Our place in the waiters' queue and how many wait (1-based), once known.
    pub place: Option<(usize, usize)>,
    /// How long we have waited so far, by the local clock.
    pub elapsed: Duration,
    /// The freeze window we wait for, when a freeze stops us from taking a free lock.
    pub frozen: Option<&'v Window>,
}

/// Told what a waiter sees. Telling never fails and never changes how the wait goes.
pub trait WaitWatch {
    fn seen(&self, seen: &WaitSeen<'_>);
}

/// Nobody watches (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwatched;

impl WaitWatch for Unwatched {
    fn seen(&self, _: &WaitSeen<'_>) {}
}
