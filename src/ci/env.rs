//! The environment as the CI platforms set it: variables, and who is taking the lock.

use std::env;

use super::runs::CiRun;

/// Who is taking the lock, as the platform tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunInfo {
    pub build_id: String,
    pub job: String,
    /// The job as people know it (Azure DevOps: its display name, not the id).
    pub job_name: String,
    pub attempt: String,
    pub run_url: String,
    pub repository: String,
    pub git_ref: String,
    pub commit: String,
    pub actor: String,
    pub host: String,
    /// Where the run can be asked whether it is still going (GitHub Actions, Azure DevOps).
    pub ci_run: Option<CiRun>,
}

/// A value read from the environment, trimmed, empty treated as absent.
#[must_use]
pub fn var(name: &str) -> Option<String> {
    env::var(name)
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}
