//! The main step: acquire (taking the lock and starting its heartbeat), check, wait, release or
//! force-break, as the `mode` input says. `environment: eu,us` names a lock set: every member is
//! taken (or none), one heartbeat renews them all, and the post step releases each.

use super::inputs::StepInputs;
use super::{cancel, heartbeat};
use crate::ci::{self, Platform};
use crate::cli::GlobalArgs;
use crate::clock::{Clock, SYSTEM};
use crate::commands::versions;
use crate::commands::{self, Command, Outcome, Target, acquire, force_break, set};
use crate::config::{self, Pipeline};
use crate::exit::{ExitCode, Failure, Result};
use crate::log;
use crate::report::{Live, Reporter, summary};

pub fn main_step(inputs: &StepInputs, global: &GlobalArgs, platform: Platform) -> Result<i32> {
    let environment = inputs.environment.as_deref().ok_or_else(|| {
        Failure::usage("the `environment` input is required, e.g. `environment: sandbox`")
    })?;
    let members = set::members(environment)?;
    let env = match &members {
        Some(envs) => envs.first().cloned().ok_or_else(|| {
            Failure::usage("the `environment` input names no environment, e.g. `eu,us`")
        })?,
        None => config::validate_environment(environment)?,
    };
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
    let override_freeze = inputs.override_freeze.get(false)?;
    if override_freeze && reason.trim().is_empty() {
        return Err(Failure::usage(
            "input `override-freeze` needs the `reason` input: say why, it is recorded in the \
             audit log",
        ));
    }
    let target = Target {
        pipeline: pipeline.clone(),
        env: env.clone(),
    };
    let mode = inputs
        .mode
        .as_deref()
        .unwrap_or("acquire")
        .to_ascii_lowercase();
    let command = match (mode.as_str(), members) {
        ("acquire", Some(envs)) => Command::AcquireSet(set::Request {
            targets: set::Targets {
                pipeline: pipeline.clone(),
                envs,
            },
            wait,
            reason,
            override_freeze,
        }),
        ("check", Some(envs)) => Command::CheckSet(set::Targets {
            pipeline: pipeline.clone(),
            envs,
        }),
        ("release", Some(envs)) => Command::ReleaseSet(set::Targets {
            pipeline: pipeline.clone(),
            envs,
        }),
        ("wait", Some(envs)) => Command::WaitSet {
            envs,
            timeout: match wait {
                Some(d) => d,
                None => commands::default_wait()?,
            },
        },
        ("force-break", Some(_)) => {
            return Err(Failure::usage(
                "mode force-break breaks one lock: give one environment, not a list",
            ));
        }
        ("acquire", None) => Command::Acquire(acquire::Request {
            target,
            wait,
            reason,
            releases_itself: true,
            override_freeze,
        }),
        ("check", None) => Command::Check(target),
        ("wait", None) => Command::Wait {
            env: env.clone(),
            timeout: match wait {
                Some(d) => d,
                None => commands::default_wait()?,
            },
        },
        ("release", None) => Command::Release(target),
        ("force-break", None) => Command::ForceBreak {
            env: env.clone(),
            reason: force_break::reason(
                &reason,
                "mode force-break needs the `reason` input: say why the lock is broken",
            )?,
        },
        (other, _) => {
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
    if let Command::Acquire(_) | Command::AcquireSet(_) = command {
        // Nested in an acquisition of this job: its holder renews and releases it.
        let taken: Vec<&commands::outcome::Acquisition> = match &outcome {
            Outcome::Acquired(taken) => vec![taken],
            Outcome::Each(members) => members
                .iter()
                .filter_map(|m| match m {
                    Outcome::Acquired(a) => Some(a),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        let ours: Vec<_> = taken.into_iter().filter(|t| !t.reentrant).collect();
        if !ours.is_empty() {
            // A set's members, comma-separated in name order, as `run` exports them.
            let joined = |f: &dyn Fn(&commands::outcome::Acquisition) -> String| {
                ours.iter().map(|t| f(t)).collect::<Vec<_>>().join(",")
            };
            let environments = joined(&|t| t.env.to_string());
            let tokens = joined(&|t| t.record.token.clone());
            let mut state = vec![
                ("environment", environments.clone()),
                ("pipeline", pipeline.to_string()),
                ("token", tokens.clone()),
            ];
            // The versions our writes left, for the heartbeat's renewals and the post step's
            // release (`known.rs`); without them both read first.
            let first = ours.first().map_or("", |t| t.record.token.as_str());
            let version_file = versions::file(&heartbeat::job_temp_dir(), first);
            let versions: Vec<versions::Version> = ours
                .iter()
                .map(|t| versions::Version::acquired(&t.env, &t.record, &t.etag, SYSTEM.wall()))
                .collect();
            match versions::write(&version_file, &versions) {
                Ok(()) => state.push(("version", version_file.display().to_string())),
                Err(e) => log::debug(&format!("cannot keep the lock's version: {e}")),
            }
            if heartbeat {
                let file =
                    heartbeat::start(&environments, &pipeline, &tokens, &version_file, &cfg)?;
                state.push(("heartbeat", file.display().to_string()));
            }
            platform.save_state(&state)?;
        }
    }
    summary::step_summary(&cfg, &env, &outcome, wait, live.place())?;
    if let Outcome::Superseded { by, .. } = &outcome {
        return cancel::cancel_own_run(&cfg, platform, by);
    }
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
