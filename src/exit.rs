//! How the program ends: the exit codes, and `Failure`, the one error type, which carries the
//! code it ends the program with.

use std::fmt;

/// Exit codes, the same on every platform and documented in `--help` and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok = 0,
    /// Auth, network, configuration or store errors.
    Error = 1,
    /// Usage or bad input: nothing was written to the store.
    Usage = 2,
    /// The lock is held by someone else.
    Held = 3,
    /// Waiting for the lock ran out of time.
    TimedOut = 4,
    /// The lock was stolen or broken while we held it.
    Lost = 5,
    /// A newer run with the same `--supersede` key joined the queue: this one left it.
    Superseded = 6,
    /// A signal (SIGINT, SIGTERM) ended the command: 128 + SIGINT, as shells report it.
    Interrupted = 130,
}

impl ExitCode {
    #[must_use]
    pub fn code(self) -> i32 {
        self as i32
    }
}

impl From<ExitCode> for std::process::ExitCode {
    fn from(code: ExitCode) -> Self {
        Self::from(code as u8)
    }
}

/// An error that carries the exit code it ends the program with.
#[derive(Debug)]
pub struct Failure {
    pub code: ExitCode,
    pub error: anyhow::Error,
}

impl Failure {
    pub fn new(code: ExitCode, error: impl Into<anyhow::Error>) -> Self {
        Self {
            code,
            error: error.into(),
        }
    }

    pub fn usage(msg: impl fmt::Display) -> Self {
        Self::new(ExitCode::Usage, anyhow::anyhow!("{msg}"))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Self::new(ExitCode::Error, error)
    }
}

pub type Result<T, E = Failure> = std::result::Result<T, E>;
