//! Errors that end the program, each with the exit code it maps to.

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
}

impl ExitCode {
    #[must_use]
    pub fn code(self) -> i32 {
        self as i32
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
