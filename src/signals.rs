//! SIGINT and SIGTERM (Ctrl-C on Windows): the handler only records that a signal came. The lock
//! logic learns of it through `Clock::cancelled()`; nothing else reads the flag.

use std::sync::atomic::{AtomicBool, Ordering};

static RECEIVED: AtomicBool = AtomicBool::new(false);

/// Installs the handler; called once at start. A second installation (tests) is harmless.
pub fn install() {
    let _ = ctrlc::set_handler(|| RECEIVED.store(true, Ordering::SeqCst));
}

/// Whether a signal asked this process to stop.
#[must_use]
pub fn received() -> bool {
    RECEIVED.load(Ordering::SeqCst)
}
