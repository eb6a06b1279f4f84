//! Time and chance as the lock logic sees them, passed in rather than read from globals, so the
//! same code runs against the system's clock in the binary and against a virtual clock in the
//! deterministic simulation (tests/simulation/).
//!
//! Only the local clock is here. Whether a lock is stale is always decided by the store's clock
//! (docs/design.md, "Clocks"); the local clock only measures how
//! long this process waited and paces its polling.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// The local clock, a source of jitter, and cancellation.
pub trait Clock: Sync {
    /// Monotonic time since an arbitrary start; never goes back.
    fn elapsed(&self) -> Duration;
    /// Sleeps for `d`; false when cancelled before or meanwhile.
    fn sleep(&self, d: Duration) -> bool;
    /// Whether a signal asked this process to stop.
    fn cancelled(&self) -> bool;
    /// The local wall clock: informational only, never compared with the store's.
    fn wall(&self) -> DateTime<Utc>;
    /// A number in `[0, 1)` for jitter.
    fn random(&self) -> f64;

    /// `d` ±20%, so that many waiters do not poll in lock-step.
    fn jitter(&self, d: Duration) -> Duration {
        d.mul_f64(0.8 + 0.4 * self.random())
    }
}

/// The operating system's clocks and random source, cancelled by a signal (`signals`).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The one system clock every caller without a clock of its own uses.
pub static SYSTEM: SystemClock = SystemClock;

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

impl Clock for SystemClock {
    fn elapsed(&self) -> Duration {
        start().elapsed()
    }

    /// Sleeps in short slices so a signal is noticed quickly.
    fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.cancelled() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(50)));
        }
    }

    fn cancelled(&self) -> bool {
        crate::signals::received()
    }

    fn wall(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn random(&self) -> f64 {
        let mut b = [0u8; 4];
        if getrandom::getrandom(&mut b).is_ok() {
            f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
        } else {
            0.5
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..100 {
            let j = SYSTEM.jitter(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(8) && j <= Duration::from_secs(12),
                "{j:?}"
            );
        }
    }

    #[test]
    fn elapsed_is_monotonic() {
        let a = SYSTEM.elapsed();
        assert!(SYSTEM.sleep(Duration::from_millis(5)));
        assert!(SYSTEM.elapsed() > a);
    }
}
