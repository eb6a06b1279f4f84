//! Messages to stderr: warnings, notes and `--debug` tracing. Every message passes through the
//! CI platform's escaping, so text from the store or the environment can never become a workflow
//! or logging command.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::ci::Platform;

static DEBUG: AtomicBool = AtomicBool::new(false);
static PLATFORM: OnceLock<Platform> = OnceLock::new();

/// Sets how messages are escaped and whether debug messages are shown. Called once at start.
pub fn init(platform: Platform, debug: bool) {
    let _ = PLATFORM.set(platform);
    DEBUG.store(debug, Ordering::Relaxed);
}

#[must_use]
pub fn platform() -> Platform {
    PLATFORM.get().copied().unwrap_or(Platform::Local)
}

#[must_use]
pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// A debug line (only with `--debug`). Callers must never pass a secret.
pub fn debug(msg: &str) {
    if debug_enabled() {
        eprintln!("debug: {}", platform().escape(msg));
    }
}

/// A warning: an annotation on GitHub, `task.logissue` on Azure DevOps, `warning:` locally.
pub fn warn(msg: &str) {
    eprintln!("{}", platform().warning_line(msg));
}

/// A plain informational line on stderr.
pub fn note(msg: &str) {
    eprintln!("{}", platform().escape(msg));
}
