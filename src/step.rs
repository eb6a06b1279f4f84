//! `deploy-lock step main|post`: the whole behaviour of the GitHub Action and the Azure DevOps
//! task. The JavaScript shim only finds and runs the binary; inputs, outputs, state, masking and
//! results are handled here, where they are tested.

use std::time::Duration;

use crate::app::{self, INTERRUPTED};
use crate::ci::{self, Platform, azdo};
use crate::cli::{GlobalArgs, OutputFormat, StepPhase};
use crate::config::{self, AzureInputs, Config};
use crate::error::{ExitCode, Failure, Result};
use crate::lock::{Locker, Released};
use crate::log;
use crate::protocol::Identity;
use crate::render::human_std;
use crate::secret::Secret;

/// An input as the runner or agent passes it: GitHub keeps the hyphens of `storage-account`
/// (`INPUT_STORAGE-ACCOUNT`); Azure DevOps upper-cases the camelCase name (`INPUT_STORAGEACCOUNT`).
#[must_use]
pub fn input(name: &str) -> Option<String> {
    let github = format!("INPUT_{}", name.replace(' ', "_").to_ascii_uppercase());
    let azdo = format!("INPUT_{}", ci::camel_case(name).to_ascii_uppercase());
    ci::var(&github).or_else(|| ci::var(&azdo))
}

fn bool_input(name: &str, default: bool) -> Result<bool> {
    match input(name).map(|v| v.to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "true" | "yes" | "1" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "no" | "0" | "off") => Ok(false),
        Some(v) => Err(Failure::usage(format!(
            "input `{name}` must be true or false, not `{}`",
            ci::escape_controls(&v)
        ))),
    }
}

/// Secrets among the inputs, masked before anything else is printed.
fn mask_inputs(platform: Platform) {
    for name in [
        "account-key",
        "sas-token",
        "connection-string",
        "github-token",
    ] {
        if let Some(v) = input(name) {
            for part in config::secret_parts(&v) {
                platform.mask(&part);
            }
        }
    }
    if let Some((_, query)) = input("store").as_deref().and_then(|s| s.split_once('?')) {
        for part in config::secret_parts(query) {
            platform.mask(&part);
        }
    }
}

/// The config the inputs describe; options not given as inputs keep their environment values.
fn config_from_inputs(global: &GlobalArgs, platform: Platform) -> Result<Config> {
    let mut args = global.clone();
    let set = |slot: &mut Option<String>, name: &str| {
        if let Some(v) = input(name) {
            *slot = Some(v);
        }
    };
    set(&mut args.store, "store");
    set(&mut args.container, "container");
    set(&mut args.ttl_minutes, "lock-timeout-minutes");
    set(&mut args.poll_seconds, "poll-seconds");
    set(&mut args.job, "job");
    args.debug |= bool_input("debug", false)?;
    args.output = Some(OutputFormat::Text);
    let inputs = AzureInputs {
        connection_string: input("connection-string").map(Secret::new),
        account: input("storage-account"),
        account_key: input("account-key").map(Secret::new),
        sas_token: input("sas-token").map(Secret::new),
    };
    Config::build(&args, platform, &inputs)
}

/// Runs the action's or task's step and returns the process exit code.
pub fn run(phase: StepPhase, global: &GlobalArgs, platform: Platform) -> Result<i32> {
    mask_inputs(platform);
    if bool_input("debug", false).unwrap_or(false) {
        log::init(platform, true);
    }
    let result = match phase {
        StepPhase::Main => main_step(global, platform),
        StepPhase::Post => post_step(global, platform),
    };
    Ok(finish(platform, phase, result))
}

/// Maps the outcome to the platform's convention. GitHub fails a step by its exit code; Azure
/// DevOps reads a non-zero exit as an infrastructure failure, so there the result is reported with
/// `task.complete` and the process exits 0.
fn finish(platform: Platform, phase: StepPhase, result: Result<i32>) -> i32 {
    let (code, message) = match result {
        Ok(code) => (code, String::new()),
        Err(failure) => {
            let text = failure.to_string();
            if phase == StepPhase::Post {
                log::warn(&format!("release in the post step failed: {text}"));
                (0, String::new())
            } else {
                eprintln!("{}", platform.error_line("deploy-lock", &text));
                (failure.code.code(), text)
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
        c if c == INTERRUPTED => (
            "Failed",
            "cancelled while waiting for the deployment lock".into(),
        ),
        _ if !message.is_empty() => ("Failed", message),
        _ => ("Failed", format!("deploy-lock exited with {code}")),
    };
    println!("{}", azdo::complete(result, &msg));
    0
}

fn main_step(global: &GlobalArgs, platform: Platform) -> Result<i32> {
    let environment = input("environment").ok_or_else(|| {
        Failure::usage("the `environment` input is required, e.g. `environment: sandbox`")
    })?;
    let environment = config::validate_environment(&environment)?;
    let cfg = config_from_inputs(global, platform)?;
    let pipeline = match input("pipeline") {
        Some(p) => config::validate_pipeline(&p)?,
        None => platform.pipeline().to_owned(),
    };
    let mode = input("mode").unwrap_or_else(|| "acquire".into());
    let wait = match input("wait-minutes") {
        None => None,
        Some(v) => {
            let d = config::parse_minutes(&v, "input wait-minutes")?;
            (!d.is_zero()).then_some(d)
        }
    };
    let reason = input("reason").unwrap_or_default();
    match mode.to_ascii_lowercase().as_str() {
        "acquire" => {
            let store = app::open_store(&cfg)?;
            let outcome = app::acquire(&cfg, &*store, &pipeline, &environment, wait, &reason)?;
            if let Some(record) = &outcome.acquired {
                platform.save_state(&[
                    ("environment", environment.clone()),
                    ("pipeline", pipeline.clone()),
                    ("token", record.token.clone()),
                ])?;
            }
            summary(&cfg, &environment, &outcome, wait)?;
            Ok(outcome.code)
        }
        "check" => app::check(&cfg, &*app::open_store(&cfg)?, &pipeline, &environment),
        "wait" => {
            let timeout = match wait {
                Some(d) => d,
                None => app::default_wait()?,
            };
            app::wait(&cfg, &*app::open_store(&cfg)?, &environment, timeout)
        }
        "release" => {
            let store = app::open_store(&cfg)?;
            app::release(&cfg, &*store, &pipeline, &environment)
        }
        "force-break" => {
            if reason.trim().is_empty() {
                return Err(Failure::usage(
                    "mode force-break needs the `reason` input: say why the lock is broken",
                ));
            }
            app::force_break(&cfg, &*app::open_store(&cfg)?, &environment, reason.trim())
        }
        other => Err(Failure::usage(format!(
            "input `mode` must be acquire, check, wait, release or force-break, not `{}`",
            ci::escape_controls(other)
        ))),
    }
}

fn summary(
    cfg: &Config,
    environment: &str,
    outcome: &app::AcquireOutcome,
    wait: Option<Duration>,
) -> Result<()> {
    let e = |s: &str| s.replace('|', "\\|").replace(['\n', '\r'], " ");
    let mut md = format!("### Deployment lock: `{}`\n\n", e(environment));
    match &outcome.acquired {
        Some(record) => md.push_str(&format!(
            "| | |\n|---|---|\n| Outcome | acquired |\n| Holder | {} |\n| Lock ttl | {} |\n",
            e(&crate::record::Holder::Current(record.clone()).describe()),
            human_std(cfg.ttl)
        )),
        None => md.push_str(&format!(
            "| | |\n|---|---|\n| Outcome | not acquired (exit {}) |\n| Waited | {} |\n\nSee the error annotation for who holds the lock and a link to their run.\n",
            outcome.code,
            wait.map_or_else(|| "no (wait-minutes: 0)".into(), human_std)
        )),
    }
    cfg.platform.summary(&md)?;
    Ok(())
}

fn post_step(global: &GlobalArgs, platform: Platform) -> Result<i32> {
    let (Some(environment), Some(token)) = (
        platform.load_state("environment"),
        platform.load_state("token"),
    ) else {
        log::note("deploy-lock: this step took no lock, so there is nothing to release");
        return Ok(0);
    };
    if !bool_input("release", true)? {
        log::note(&format!(
            "deploy-lock: release is false, so the lock on {environment} stays held; release it \
             later with `deploy-lock release {environment} --token {token}`"
        ));
        return Ok(0);
    }
    let environment = config::validate_environment(&environment)?;
    let cfg = config_from_inputs(global, platform)?;
    let pipeline = platform
        .load_state("pipeline")
        .unwrap_or_else(|| platform.pipeline().to_owned());
    let me = Identity {
        token: Some(token),
        ..cfg.identity(&pipeline)
    };
    let store = app::open_store(&cfg)?;
    let locker = Locker {
        store: &*store,
        ttl: cfg.ttl,
        poll: cfg.poll,
    };
    match locker.release(&environment, &me)? {
        Released::Released(_) => println!("Released the deployment lock on {environment}."),
        Released::Absent => log::warn(&format!(
            "the lock on {environment} was already gone (released by a later step, broken, or \
             expired)"
        )),
        Released::Refused(lock) => log::warn(&format!(
            "the lock on {environment} is now held by {}, not by this job: left alone",
            lock.holder.describe()
        )),
    }
    Ok(0)
}
