//! The main step: acquire (taking the lock and starting its heartbeat), check, wait, release or
//! force-break, as the `mode` input says.

use super::heartbeat;
use super::inputs::StepInputs;
use crate::ci::{self, Platform};
use crate::cli::GlobalArgs;
use crate::commands::{self, Command, Outcome, Target, acquire, force_break};
use crate::config::{self, Pipeline};
use crate::exit::{ExitCode, Failure, Result};
use crate::log;
use crate::report::{Live, Reporter, summary};

pub fn main_step(inputs: &StepInputs, global: &GlobalArgs, platform: Platform) -> Result<i32> {
    let environment = inputs.environment.as_deref().ok_or_else(|| {
        Failure::usage("the `environment` input is required, e.g. `environment: sandbox`")
    })?;
    let env = config::validate_environment(environment)?;
    let mut cfg = inputs.config(global, platform)?;
    let heartbeat = inputs.heartbeat.get(true)?;
    if heartbeat {
        cfg = cfg.with_heartbeat();
    }
    let pipeline = match &inputs.pipeline {
        Some(p) => config::validate_pipeline(p)?,
        None => Pipeline::of(platform),
    };
    let wait = match &inputs.wait_minutes {
        None => None,
        Some(v) => {
            let d = config::parse_minutes(v, "input wait-minutes")?;
            (!d.is_zero()).then_some(d)
        }
    };
    let reason = inputs.reason.clone().unwrap_or_default();
    let target = Target {
        pipeline: pipeline.clone(),
        env: env.clone(),
    };
    let mode = inputs
        .mode
        .as_deref()
        .unwrap_or("acquire")
        .to_ascii_lowercase();
    let command = match mode.as_str() {
        "acquire" => Command::Acquire(acquire::Request {
            target,
            wait,
            reason,
            releases_itself: true,
        }),
        "check" => Command::Check(target),
        "wait" => Command::Wait {
            env: env.clone(),
            timeout: match wait {
                Some(d) => d,
                None => commands::default_wait()?,
            },
        },
        "release" => Command::Release(target),
        "force-break" => Command::ForceBreak {
            env: env.clone(),
            reason: force_break::reason(
                &reason,
                "mode force-break needs the `reason` input: say why the lock is broken",
            )?,
        },
        other => {
            return Err(Failure::usage(format!(
                "input `mode` must be acquire, check, wait, release or force-break, not `{}`",
                ci::escape_controls(other)
            )));
        }
    };
    let fail_if_held = inputs.fail_if_held.get(false)?;
    let reporter = Reporter::new(platform, cfg.output).in_step();
    let live = Live::new(reporter);
    let outcome = command.execute(&cfg, &live)?;
    reporter.report(&outcome)?;
    if let Command::Acquire(_) = command {
        // Nested in an acquisition of this job: its holder renews and releases it.
        if let Outcome::Acquired(taken) = &outcome
            && !taken.reentrant
        {
            let record = &taken.record;
            let mut state = vec![
                ("environment", env.to_string()),
                ("pipeline", pipeline.to_string()),
                ("token", record.token.clone()),
            ];
            if heartbeat {
                let file = heartbeat::start(&env, &pipeline, &record.token, &cfg)?;
                state.push(("heartbeat", file.display().to_string()));
            }
            platform.save_state(&state)?;
        }
    }
    summary::step_summary(&cfg, &env, &outcome, wait, live.place())?;
    let code = outcome.exit_code();
    if mode == "check" && code == ExitCode::Held.code() && !fail_if_held {
        log::note(&format!(
            "deploy-lock: {env} is held; the step goes on (set the `{}` input to fail it)",
            if platform == Platform::AzureDevOps {
                "failIfHeld"
            } else {
                "fail-if-held"
            }
        ));
        return Ok(ExitCode::Ok.code());
    }
    Ok(code)
}
