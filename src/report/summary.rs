//! The action's and task's step results: the job summary, and how a step's result reaches the
//! platform (GitHub reads the exit code; Azure DevOps reads `task.complete`).

use std::time::Duration;

use crate::ci::{Platform, azdo};
use crate::commands::Outcome;
use crate::config::{Config, Environment};
use crate::exit::{ExitCode, Result};
use crate::human::human_std;
use crate::lock::Holder;
use crate::log;

/// The job summary of an acquire step.
pub fn step_summary(
    cfg: &Config,
    environment: &Environment,
    outcome: &Outcome,
    wait: Option<Duration>,
) -> Result<()> {
    // The environment name is validated; the holder comes from the environment and the store.
    let mut md = format!("### Deployment lock: `{environment}`\n\n");
    match outcome {
        Outcome::Acquired(taken) => md.push_str(&format!(
            "| | |\n|---|---|\n| Outcome | acquired |\n| Holder | {} |\n| Lock ttl | {} |\n",
            cfg.platform
                .markdown_cell(&Holder::Current(taken.record.clone()).describe()),
            human_std(cfg.ttl)
        )),
        other => md.push_str(&format!(
            "| | |\n|---|---|\n| Outcome | not acquired (exit {}) |\n| Waited | {} |\n\nSee the error annotation for who holds the lock and a link to their run.\n",
            other.exit_code(),
            wait.map_or_else(|| "no (wait-minutes: 0)".into(), human_std)
        )),
    }
    cfg.platform.summary(&md)?;
    Ok(())
}

/// Maps a step's result to the platform's convention and returns the process exit code.
/// GitHub fails a step by its exit code; Azure DevOps reads a non-zero exit as an
/// infrastructure failure, so there the result is reported with `task.complete` and the process
/// exits 0. A failed post step is a warning: the lock then expires after its ttl.
pub fn finish(platform: Platform, post: bool, result: Result<i32>) -> i32 {
    let (code, message) = match result {
        Ok(code) => (code, String::new()),
        Err(failure) => {
            let text = failure.to_string();
            if post {
                log::warn(&format!("release in the post step failed: {text}"));
                (0, String::new())
            } else {
                (super::text::print_error(platform, &failure), text)
            }
        }
    };
    if platform != Platform::AzureDevOps {
        return code;
    }
    let (result, msg) = match code {
        0 => ("Succeeded", "deploy-lock finished".to_owned()),
        c if c == ExitCode::Held.code() => (
            "Failed",
            "the deployment lock is held by another run".into(),
        ),
        c if c == ExitCode::TimedOut.code() => {
            ("Failed", "timed out waiting for the deployment lock".into())
        }
        c if c == ExitCode::Interrupted.code() => (
            "Failed",
            "cancelled while waiting for the deployment lock".into(),
        ),
        _ if !message.is_empty() => ("Failed", message),
        _ => ("Failed", format!("deploy-lock exited with {code}")),
    };
    println!("{}", azdo::complete(result, &msg));
    0
}
