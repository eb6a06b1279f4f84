//! A superseded acquire in the action or the task: the step must never succeed, or the job's
//! later steps would deploy an older commit without the lock. It asks its own CI to cancel its
//! own run (so the run ends as cancelled, as GitHub's concurrency groups show a superseded run)
//! and waits for the runner or agent to stop it; when that does not happen within a bound, or
//! the run cannot be cancelled, the step fails (exit 6) with advice on how to get the cancel.
//!
//! The request goes only to the run's own API (`GITHUB_API_URL`, `SYSTEM_COLLECTIONURI`), with
//! the run's own token, through the store's one HTTP layer; nothing read from the store chooses
//! where it goes.

use std::time::Duration;

use crate::ci::runs::CiRun;
use crate::ci::{self, Platform};
use crate::clock::{Clock, SYSTEM};
use crate::config::{self, Config, StoreChoice};
use crate::exit::{ExitCode, Failure, Result};
use crate::human::human_std;
use crate::lock::ci_api::CiApi;
use crate::lock::waiters::Waiter;

/// How long the step waits for the runner or agent to stop it after its run was cancelled.
const DEFAULT_WAIT: Duration = Duration::from_secs(120);
/// Overrides `DEFAULT_WAIT` (tests keep it short).
const WAIT_VAR: &str = "DEPLOY_LOCK_CANCEL_WAIT_SECONDS";
/// Cancels this step's own run after `by` superseded it, and waits to be stopped. Returns only
/// an exit code that fails the step: interrupted (the runner stopped it) or superseded.
pub fn cancel_own_run(cfg: &Config, platform: Platform, by: &Waiter) -> Result<i32> {
    let who = match by.run_url.as_str() {
        "" => by.describe(),
        url => url.to_owned(),
    };
    let wait = match ci::var(WAIT_VAR) {
        Some(v) => config::parse_duration(&v, 1.0, WAIT_VAR)?,
        None => DEFAULT_WAIT,
    };
    if let Err(why) = request_cancel(cfg, platform) {
        return Err(Failure::new(
            ExitCode::Superseded,
            anyhow::anyhow!(
                "superseded by {who}, and this run could not be cancelled ({why}), so the step \
                 fails: the job's later steps must not deploy an older commit without the lock. \
                 {}",
                advice(platform)
            ),
        ));
    }
    eprintln!(
        "{}",
        platform.notice_line(
            "Superseded",
            &format!(
                "superseded by {who}; this run was cancelled so that it does not deploy an older \
                 commit"
            )
        )
    );
    if !SYSTEM.sleep(wait) {
        return Ok(ExitCode::Interrupted.code());
    }
    Err(Failure::new(
        ExitCode::Superseded,
        anyhow::anyhow!(
            "superseded by {who}: this run was asked to cancel itself, but the {} did not stop \
             this step within {}, so the step fails: the job's later steps must not deploy an \
             older commit without the lock",
            if platform == Platform::AzureDevOps {
                "agent"
            } else {
                "runner"
            },
            human_std(wait)
        ),
    ))
}

/// Asks the run's own CI to cancel it; why not, when it could not.
fn request_cancel(cfg: &Config, platform: Platform) -> std::result::Result<(), String> {
    let run = match platform {
        Platform::GitHub => CiRun::github(ci::var),
        Platform::AzureDevOps => CiRun::azdo(ci::var),
        Platform::Local => None,
    }
    .ok_or("the run's id and repository or project are not in the environment")?;
    let has_token = match platform {
        Platform::GitHub => cfg.ci_api.github.is_some(),
        _ => cfg.ci_api.azdo.is_some(),
    };
    if !has_token {
        return Err("no token for this run's CI API".into());
    }
    let ca_file = match &cfg.store {
        StoreChoice::Azure(settings) => settings.ca_file.as_deref(),
        StoreChoice::File(_) => None,
    };
    CiApi::new(cfg.ci_api.clone(), ca_file)?.cancel(&run)
}

/// How to let a superseded run end as cancelled instead of failed.
fn advice(platform: Platform) -> &'static str {
    match platform {
        Platform::AzureDevOps => {
            "To have a superseded build cancelled instead, allow the project's build service \
             \"Stop builds\" on this pipeline; the task uses the job's SystemVssConnection token \
             (or map it: `env: SYSTEM_ACCESSTOKEN: $(System.AccessToken)`)."
        }
        _ => {
            "To have a superseded run cancelled instead, give the job `permissions: actions: \
             write` and keep the `github-token` input at its default (`${{ github.token }}`)."
        }
    }
}
