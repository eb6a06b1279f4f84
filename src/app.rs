//! Runs one command: parse, configure, open the store, act, report, and map to an exit code.

use std::ffi::OsString;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches};
use serde_json::json;

use crate::audit::{self, Event};
use crate::ci::Platform;
use crate::cli::{AcquireArgs, Cli, Command, EXIT_CODES, OutputFormat};
use crate::config::{self, Config, StoreChoice};
use crate::error::{ExitCode, Failure, Result};
use crate::lock::{self, Acquired, Fenced, Holding, Locker, Released, Renewed, Waited};
use crate::protocol::{Identity, LockView, Ownership, from_another_attempt, ownership};
use crate::record::{Holder, LockRecord};
use crate::render::{self, human, human_std};
use crate::store::Store;
use crate::store::file::FileStore;
use crate::{log, step};

/// Exit code for a signal that ended a wait (128 + SIGINT, as shells report it).
pub const INTERRUPTED: i32 = 130;

/// Parses the arguments, runs the command, prints the outcome and returns the exit code.
pub fn main_with_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    let command = Cli::command().after_help(format!(
        "{EXIT_CODES}\n\nLocal store (the default outside CI): {}\nDocs: README.md, `deploy-lock <command> --help`",
        config::default_local_dir().display()
    ));
    let platform = Platform::detect();
    let cli = match command
        .try_get_matches_from(args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => {
            // A usage error quotes the arguments, which a workflow may have built from data.
            if platform.is_ci() {
                for line in e.render().to_string().lines() {
                    if e.use_stderr() {
                        platform.eprint_line(line);
                    } else {
                        platform.print_line(line);
                    }
                }
            } else {
                let _ = e.print();
            }
            return if e.use_stderr() {
                ExitCode::Usage.code()
            } else {
                ExitCode::Ok.code()
            };
        }
    };
    log::init(platform, cli.global.debug);
    // Masking comes before anything else is printed, so no later line can reveal a secret.
    for secret in config::secrets_in_env(&cli.global) {
        platform.mask(&secret);
    }
    let _ = ctrlc::set_handler(|| lock::CANCELLED.store(true, Ordering::SeqCst));
    let result = match &cli.command {
        Command::Step(args) => step::run(args.phase, &cli.global, platform),
        command => Config::from_args(&cli.global, platform).and_then(|cfg| {
            mask_store_secrets(&cfg);
            execute(command, &cfg)
        }),
    };
    match result {
        Ok(code) => code,
        Err(failure) => {
            eprintln!(
                "{}",
                platform.error_line("deploy-lock", &failure.to_string())
            );
            failure.code.code()
        }
    }
}

/// Masks every form of the store's secrets (decoded SAS signatures, key parts) on CI; the raw
/// environment values were masked before parsing.
pub fn mask_store_secrets(cfg: &Config) {
    if let StoreChoice::Azure(settings) = &cfg.store {
        for secret in crate::store::azure::secrets(settings) {
            cfg.platform.mask(&secret);
        }
    }
}

/// Opens the configured store.
pub fn open_store(cfg: &Config) -> Result<Box<dyn Store>> {
    match &cfg.store {
        StoreChoice::File(dir) => Ok(Box::new(FileStore::new(dir, &cfg.container))),
        StoreChoice::Azure(settings) => Ok(Box::new(crate::store::azure::open(settings)?)),
    }
}

/// `[PIPELINE] ENV` → (pipeline, environment), validated.
pub fn target(words: &[String], cfg: &Config) -> Result<(String, String)> {
    match words {
        [env] => Ok((
            cfg.default_pipeline.clone(),
            config::validate_environment(env)?,
        )),
        [pipeline, env] => Ok((
            config::validate_pipeline(pipeline)?,
            config::validate_environment(env)?,
        )),
        _ => Err(Failure::usage("give [PIPELINE] ENV, e.g. `github sandbox`")),
    }
}

fn execute(command: &Command, cfg: &Config) -> Result<i32> {
    // Validate every argument before the store is opened: bad input never reaches the store.
    match command {
        Command::Check(t) => {
            let (pipeline, env) = target(&t.words, cfg)?;
            let store = open_store(cfg)?;
            check(cfg, &*store, &pipeline, &env)
        }
        Command::Acquire(args) => {
            let (pipeline, env, wait) = acquire_args(args, cfg)?;
            let store = open_store(cfg)?;
            let reason = args.reason.clone().unwrap_or_default();
            let request = Want {
                pipeline: &pipeline,
                env: &env,
                wait,
                reason: &reason,
                releases_itself: false,
            };
            acquire(cfg, &*store, &request).map(|o| o.code)
        }
        Command::Release(t) => {
            let (pipeline, env) = target(&t.words, cfg)?;
            let store = open_store(cfg)?;
            release(cfg, &*store, &pipeline, &env)
        }
        Command::Wait(args) => {
            let env = config::validate_environment(&args.environment)?;
            let timeout = match &args.minutes {
                Some(m) => config::parse_minutes(m, "wait MINUTES")?,
                None => default_wait()?,
            };
            let store = open_store(cfg)?;
            wait(cfg, &*store, &env, timeout)
        }
        Command::ForceBreak(args) => {
            let env = config::validate_environment(&args.environment)?;
            let reason = args.reason.trim();
            if reason.is_empty() {
                return Err(Failure::usage(
                    "force-break needs --reason TEXT: say why, it is recorded and shown",
                ));
            }
            let store = open_store(cfg)?;
            force_break(cfg, &*store, &env, reason)
        }
        Command::Status => {
            let store = open_store(cfg)?;
            status(cfg, &*store)
        }
        Command::Renew(t) => {
            let (pipeline, env) = target(&t.words, cfg)?;
            let store = open_store(cfg)?;
            renew(cfg, &*store, &pipeline, &env)
        }
        Command::Run(args) => crate::run::run(cfg, args),
        Command::History(args) => {
            let env = config::validate_environment(&args.environment)?;
            let since = args.since.as_deref().map(parse_since).transpose()?;
            let store = open_store(cfg)?;
            history(cfg, &*store, &env, since)
        }
        Command::Step(_) => Err(Failure::usage("`step` is run by the action and the task")),
    }
}

/// `DEPLOYMENT_TIMEOUT_MINUTES`, or 120.
pub fn default_wait() -> Result<Duration> {
    match crate::ci::var("DEPLOYMENT_TIMEOUT_MINUTES") {
        Some(v) => config::parse_minutes(&v, "DEPLOYMENT_TIMEOUT_MINUTES"),
        None => config::parse_minutes(
            &config::DEFAULT_WAIT_MINUTES.to_string(),
            "DEPLOYMENT_TIMEOUT_MINUTES",
        ),
    }
}

fn acquire_args(args: &AcquireArgs, cfg: &Config) -> Result<(String, String, Option<Duration>)> {
    let wait = match args.wait.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(default_wait()?),
        Some(v) => Some(config::parse_minutes(v, "--wait").map_err(|_| {
            Failure::usage(format!(
                "--wait `{}` is not a number of minutes: write `--wait` after the environment \
                 (`acquire github sandbox --wait`), or give the time as `--wait=30`",
                crate::ci::escape_controls(v)
            ))
        })?),
    };
    let (pipeline, env) = target(&args.target.words, cfg)?;
    Ok((pipeline, env, wait))
}

fn locker<'a>(cfg: &Config, store: &'a dyn Store) -> Locker<'a> {
    Locker::new(store, cfg.ttl, cfg.poll).with_foreign_ttl(cfg.foreign_ttl)
}

/// The holder outputs every command sets on CI.
fn holder_outputs(lock: Option<&LockView>) -> Vec<(&'static str, String)> {
    vec![
        (
            "holder",
            lock.map(|l| l.holder.describe()).unwrap_or_default(),
        ),
        (
            "holder-url",
            lock.map(|l| render::run_url(&l.holder).to_owned())
                .unwrap_or_default(),
        ),
    ]
}

pub fn check(cfg: &Config, store: &dyn Store, pipeline: &str, env: &str) -> Result<i32> {
    let lock = locker(cfg, store).read(env)?;
    let me = cfg.identity(pipeline);
    let (state, code) = match &lock {
        None => ("free", ExitCode::Ok),
        Some(l) if ownership(&l.holder, &me) == Ownership::Ours => ("ours", ExitCode::Ok),
        Some(l) if l.is_stale() => ("stale", ExitCode::Ok),
        Some(_) => ("held", ExitCode::Held),
    };
    cfg.platform.set_outputs(&holder_outputs(lock.as_ref()))?;
    if cfg.output == OutputFormat::Json {
        render::print_json(cfg.platform, &render::lock_json(env, state, lock.as_ref()));
        return Ok(code.code());
    }
    let p = cfg.platform;
    match &lock {
        None => p.print_line(&format!("{env} is free")),
        Some(l) => {
            let what = match state {
                "ours" => "is locked by us",
                "stale" => "has a stale lock",
                _ => "is locked",
            };
            p.print_line(&format!("{env} {what}"));
            for line in render::lock_lines(p, l) {
                p.print_line(&line);
            }
        }
    }
    Ok(code.code())
}

/// What `acquire` did, for the caller (the CLI or the action step).
pub struct AcquireOutcome {
    pub code: i32,
    pub acquired: Option<crate::record::LockRecord>,
    /// The lock was already ours (nested in the acquisition that took it): the caller must not
    /// release it, and must not shorten its ttl.
    pub reentrant: bool,
}

/// What an acquire asks for.
pub struct Want<'a> {
    pub pipeline: &'a str,
    pub env: &'a str,
    pub wait: Option<Duration>,
    pub reason: &'a str,
    /// The caller releases the lock itself (`run`, the action's post step): no release hint.
    pub releases_itself: bool,
}

pub fn acquire(cfg: &Config, store: &dyn Store, want: &Want<'_>) -> Result<AcquireOutcome> {
    let Want {
        pipeline,
        env,
        wait,
        reason,
        releases_itself,
    } = *want;
    // Before any request: a reason too long to record writes nothing.
    config::validate_reason(reason)?;
    let me = cfg.identity(pipeline);
    let holding = Holding {
        run: &cfg.run,
        reason,
    };
    let locker = locker(cfg, store);
    if wait.is_some() {
        log::note(&format!(
            "waiting up to {} for the lock on {env}",
            human_std(wait.unwrap_or_default())
        ));
    }
    let outcome = locker.acquire(env, &me, &holding, wait)?;
    let p = cfg.platform;
    match outcome {
        Acquired::Taken {
            mut record,
            etag,
            reentrant,
            stolen_from,
            waited,
        } => {
            if lock::cancelled() {
                if reentrant {
                    log::warn(&format!(
                        "interrupted: the lock on {env} stays held by the holder that took it"
                    ));
                } else {
                    // The signal came while the lock was being taken: give it back before exiting.
                    let mine = Identity {
                        token: Some(record.token.clone()),
                        ..me.clone()
                    };
                    let _ = locker.release(env, &mine);
                    log::warn(&format!("interrupted: the lock on {env} was given back"));
                }
                return Ok(AcquireOutcome {
                    code: INTERRUPTED,
                    acquired: None,
                    reentrant,
                });
            }
            if cfg.fence && record.fence.is_none() {
                match locker.fence(env, &mut record, &etag) {
                    Ok(Fenced::Fenced { .. }) => {}
                    Ok(Fenced::Lost(now)) => {
                        let who = now.map_or_else(|| "nobody".into(), |l| l.holder.describe());
                        return Err(Failure::new(
                            ExitCode::Lost,
                            anyhow::anyhow!(
                                "the lock on {env} was taken over (now held by {who}) before it \
                                 could be confirmed; this process stalled for longer than the \
                                 ttl ({}). Try again",
                                human_std(cfg.ttl)
                            ),
                        ));
                    }
                    Err(e) => log::warn(&format!(
                        "the lock on {env} is held, but without a fencing number: {e:#}"
                    )),
                }
            }
            if let Some(previous) = &stolen_from {
                if from_another_attempt(previous, &me) {
                    log::note(&format!(
                        "took over the lock on {env} from an earlier attempt of this job ({})",
                        previous.describe()
                    ));
                } else {
                    log::warn(&format!(
                        "took over a stale lock on {env} from {}",
                        previous.describe()
                    ));
                }
            }
            if cfg.audit && !reentrant {
                let mut event = Event::by(
                    if stolen_from.is_some() {
                        "steal"
                    } else {
                        "acquire"
                    },
                    &record,
                    locker.store_now(),
                );
                event.waited_seconds = Some(waited.as_secs());
                event.other = stolen_from
                    .as_ref()
                    .map(Holder::describe)
                    .unwrap_or_default();
                audit::append(store, &event);
            }
            let fence = record.fence.map(|f| f.to_string()).unwrap_or_default();
            p.set_outputs(&[
                ("acquired", "true".into()),
                ("holder", Holder::Current(record.clone()).describe()),
                ("holder-url", record.run_url.clone()),
                ("waited-seconds", waited.as_secs().to_string()),
                ("fence", fence.clone()),
                ("token", record.token.clone()),
            ])?;
            if cfg.output == OutputFormat::Json {
                render::print_json(
                    p,
                    &json!({
                        "environment": env,
                        "state": "acquired",
                        "acquired": true,
                        "reentrant": reentrant,
                        "token": record.token,
                        "fence": record.fence,
                        "ttl_seconds": record.ttl_seconds,
                        "waited_seconds": waited.as_secs(),
                        "stolen_from": stolen_from.as_ref().map(render::holder_json),
                        "holder": render::holder_json(&Holder::Current(record.clone())),
                    }),
                );
            } else {
                let holder = Holder::Current(record.clone()).describe();
                let waited = if waited.as_secs() > 0 {
                    format!(", waited {}", human_std(waited))
                } else {
                    String::new()
                };
                if reentrant {
                    let ttl = Duration::from_secs(record.ttl_seconds);
                    p.print_line(&format!(
                        "Still hold the deployment lock on {env} as {holder} (ttl {}{waited}): it \
                         is the outer holder's, which took it earlier, and it stays held when this \
                         {} ends; the outer holder releases it.",
                        human_std(ttl),
                        if releases_itself { "run" } else { "command" }
                    ));
                } else {
                    p.print_line(&format!(
                        "Acquired the deployment lock on {env} as {holder} (ttl {}{waited}).",
                        human_std(cfg.ttl)
                    ));
                }
                p.print_line(&format!("  token      {}", record.token));
                if !fence.is_empty() {
                    p.print_line(&format!("  fence      {fence}"));
                }
                if !releases_itself && !reentrant {
                    p.print_line(&format!(
                        "Release it with: deploy-lock release {pipeline} {env}"
                    ));
                }
            }
            Ok(AcquireOutcome {
                code: 0,
                acquired: Some(record),
                reentrant,
            })
        }
        Acquired::Blocked {
            lock,
            waited,
            timed_out,
        } => {
            let mut outputs = vec![
                ("acquired", "false".to_owned()),
                ("waited-seconds", waited.as_secs().to_string()),
            ];
            outputs.extend(holder_outputs(Some(&lock)));
            p.set_outputs(&outputs)?;
            let (code, state) = if timed_out {
                (ExitCode::TimedOut, "timed-out")
            } else {
                (ExitCode::Held, "held")
            };
            if cfg.audit {
                let mut event = Event::of(
                    if timed_out { "timed-out" } else { "blocked" },
                    env,
                    &me,
                    &cfg.run,
                    locker.store_now(),
                );
                reason.clone_into(&mut event.reason);
                event.waited_seconds = Some(waited.as_secs());
                event.other = lock.holder.describe();
                audit::append(store, &event);
            }
            if cfg.output == OutputFormat::Json {
                let mut v = render::lock_json(env, state, Some(&lock));
                v["acquired"] = json!(false);
                v["waited_seconds"] = json!(waited.as_secs());
                render::print_json(p, &v);
            }
            eprintln!(
                "{}",
                p.error_line(
                    "Deployment lock held",
                    &blocked_message(env, &lock, timed_out, waited)
                )
            );
            if cfg.output == OutputFormat::Text {
                for line in render::lock_lines(p, &lock) {
                    p.eprint_line(&line);
                }
            }
            if ownership(&lock.holder, &me) == Ownership::SameUserAndHost {
                log::note(&format!(
                    "{env} was taken by {} on {} from another process (or without its token); \
                     outside CI every process is its own holder. To act as that holder, give its \
                     token: --token or DEPLOY_LOCK_TOKEN",
                    cfg.run.actor, cfg.run.host
                ));
            }
            Ok(AcquireOutcome {
                code: code.code(),
                acquired: None,
                reentrant: false,
            })
        }
        Acquired::Cancelled { waited } => {
            p.set_outputs(&[
                ("acquired", "false".into()),
                ("waited-seconds", waited.as_secs().to_string()),
            ])?;
            log::warn(&format!(
                "interrupted after waiting {}; no lock on {env} was taken",
                human_std(waited)
            ));
            Ok(AcquireOutcome {
                code: INTERRUPTED,
                acquired: None,
                reentrant: false,
            })
        }
    }
}

/// "sandbox is locked by github build 42 … — https://…": the line an annotation shows.
#[must_use]
pub fn blocked_message(env: &str, lock: &LockView, timed_out: bool, waited: Duration) -> String {
    let mut msg = if timed_out {
        format!(
            "gave up after waiting {} for {env}: still locked by {}",
            human_std(waited),
            lock.holder.describe()
        )
    } else {
        format!(
            "{env} is locked by {} (held {}, stale in {})",
            lock.holder.describe(),
            human(lock.age),
            human(lock.expires_in)
        )
    };
    let url = render::run_url(&lock.holder);
    if !url.is_empty() {
        msg.push_str(&format!(" — {url}"));
    }
    if let Holder::Unknown { why } = &lock.holder {
        msg.push_str(&format!(
            "; the lock blob is not readable ({why}): inspect it, and if nobody holds it, \
             `deploy-lock force-break {env} --reason ...`"
        ));
    }
    if !timed_out {
        msg.push_str(&format!(
            ". Wait for it with `deploy-lock acquire {env} --wait`, or see `deploy-lock check {env}`"
        ));
    }
    msg
}

pub fn release(cfg: &Config, store: &dyn Store, pipeline: &str, env: &str) -> Result<i32> {
    let me = cfg.identity(pipeline);
    let p = cfg.platform;
    let locker = locker(cfg, store);
    let outcome = locker.release(env, &me)?;
    let (state, code) = match &outcome {
        Released::Released(lock) => {
            if cfg.audit {
                audit_release(store, env, lock, locker.store_now());
            }
            if cfg.output == OutputFormat::Text {
                if ownership(&lock.holder, &me) == Ownership::SameUserAndHost {
                    p.print_line(&format!(
                        "Released the deployment lock on {env}, taken by {} on {} (held {}).",
                        cfg.run.actor,
                        cfg.run.host,
                        human(lock.age)
                    ));
                } else {
                    p.print_line(&format!(
                        "Released the deployment lock on {env} (held by {}, for {}).",
                        lock.holder.describe(),
                        human(lock.age)
                    ));
                }
            }
            ("released", ExitCode::Ok)
        }
        Released::Absent => {
            log::warn(&format!(
                "there is no lock on {env} to release; nothing to do"
            ));
            ("free", ExitCode::Ok)
        }
        Released::Refused(lock) => {
            eprintln!(
                "{}",
                p.error_line(
                    "Not released",
                    &format!(
                        "{env} is locked by {}, not by {pipeline} build {}: not released. \
                         Break it only if you are sure with `deploy-lock force-break {env} --reason ...`{}",
                        lock.holder.describe(),
                        me.build_id,
                        match render::run_url(&lock.holder) {
                            "" => String::new(),
                            url => format!(" — {url}"),
                        }
                    )
                )
            );
            ("refused", ExitCode::Held)
        }
    };
    if cfg.output == OutputFormat::Json {
        let lock = match &outcome {
            Released::Refused(l) | Released::Released(l) => Some(&**l),
            Released::Absent => None,
        };
        render::print_json(p, &render::lock_json(env, state, lock));
    }
    Ok(code.code())
}

/// A release event with how long the lock was held, by the store's clock.
pub fn audit_release(
    store: &dyn Store,
    env: &str,
    lock: &LockView,
    now: chrono::DateTime<chrono::Utc>,
) {
    let record = lock.holder.record().cloned().unwrap_or_else(|| LockRecord {
        environment: env.to_owned(),
        pipeline: lock.holder.pipeline().to_owned(),
        build_id: lock.holder.build_id().to_owned(),
        ..LockRecord::default()
    });
    let mut event = Event::by("release", &record, now);
    event.held_seconds = Some(lock.age.num_seconds());
    audit::append(store, &event);
}

pub fn wait(cfg: &Config, store: &dyn Store, env: &str, timeout: Duration) -> Result<i32> {
    let p = cfg.platform;
    let outcome = locker(cfg, store).wait_free(env, timeout)?;
    let (state, code, lock, waited) = match outcome {
        Waited::Free { waited } => ("free", ExitCode::Ok.code(), None, waited),
        Waited::TimedOut { lock, waited } => {
            eprintln!(
                "{}",
                p.error_line("Timed out", &blocked_message(env, &lock, true, waited))
            );
            ("timed-out", ExitCode::TimedOut.code(), Some(lock), waited)
        }
        Waited::Cancelled { waited } => ("interrupted", INTERRUPTED, None, waited),
    };
    p.set_outputs(&[("waited-seconds", waited.as_secs().to_string())])?;
    if cfg.output == OutputFormat::Json {
        let mut v = render::lock_json(env, state, lock.as_deref());
        v["waited_seconds"] = json!(waited.as_secs());
        render::print_json(p, &v);
    } else if state == "free" {
        p.print_line(&format!("{env} is free (waited {})", human_std(waited)));
    }
    Ok(code)
}

pub fn force_break(cfg: &Config, store: &dyn Store, env: &str, reason: &str) -> Result<i32> {
    config::validate_reason(reason)?;
    let p = cfg.platform;
    let locker = locker(cfg, store);
    let broken = locker.force_break(env)?;
    let who = format!("{} build {}", cfg.default_pipeline, cfg.run.build_id);
    if cfg.audit
        && let Some(lock) = &broken
    {
        let mut event = Event::of(
            "force-break",
            env,
            &cfg.identity(&cfg.default_pipeline),
            &cfg.run,
            locker.store_now(),
        );
        reason.clone_into(&mut event.reason);
        event.other = lock.holder.describe();
        event.held_seconds = Some(lock.age.num_seconds());
        audit::append(store, &event);
    }
    match &broken {
        Some(lock) => {
            log::warn(&format!(
                "broke the lock on {env} held by {} (held {}); by {who}, reason: {reason}",
                lock.holder.describe(),
                human(lock.age)
            ));
            if cfg.output == OutputFormat::Text {
                p.print_line(&format!(
                    "Broke the deployment lock on {env}, held by {}.",
                    lock.holder.describe()
                ));
                for line in render::lock_lines(p, lock) {
                    p.print_line(&line);
                }
            }
        }
        None => log::warn(&format!("there is no lock on {env} to break")),
    }
    if cfg.output == OutputFormat::Json {
        let state = if broken.is_some() { "broken" } else { "free" };
        let mut v = render::lock_json(env, state, broken.as_ref());
        v["reason"] = json!(reason);
        render::print_json(p, &v);
    }
    Ok(0)
}

pub fn status(cfg: &Config, store: &dyn Store) -> Result<i32> {
    let p = cfg.platform;
    let locks = locker(cfg, store).status()?;
    // Names come from the store's listing: anyone who can write to the container chooses them.
    let valid = |env: &str| config::validate_environment(env).is_ok();
    let state = |lock: &std::result::Result<LockView, crate::store::StoreError>| match lock {
        Ok(l) if l.is_stale() => "stale",
        Ok(_) => "held",
        Err(_) => "unreadable",
    };
    if cfg.output == OutputFormat::Json {
        let all: Vec<_> = locks
            .iter()
            .map(|(env, lock)| {
                let mut v = match lock {
                    Ok(l) => render::lock_json(env, state(lock), Some(l)),
                    Err(e) => json!({
                        "environment": env,
                        "state": state(lock),
                        "problem": e.to_string(),
                    }),
                };
                if !valid(env) {
                    v["invalid_name"] = json!(true);
                }
                v
            })
            .collect();
        render::print_json(p, &json!(all));
        return Ok(0);
    }
    if locks.is_empty() {
        p.print_line(&format!("No locks in {}.", store.describe()));
        return Ok(0);
    }
    let rows: Vec<[String; 5]> = locks
        .iter()
        .map(|(env, lock)| {
            let name = if valid(env) {
                env.clone()
            } else {
                format!("(invalid name) {}", p.escape(env))
            };
            let (holder, age, run) = match lock {
                Ok(l) => (
                    p.escape(&l.holder.describe()),
                    human(l.age),
                    p.escape(render::run_url(&l.holder)),
                ),
                Err(e) => (p.escape(&e.to_string()), String::new(), String::new()),
            };
            [name, state(lock).to_owned(), holder, age, run]
        })
        .collect();
    let header = ["ENVIRONMENT", "STATE", "HOLDER", "AGE", "RUN"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    p.print_line(&line(&header.map(String::from)));
    for row in &rows {
        p.print_line(&line(row));
    }
    Ok(0)
}

pub fn renew(cfg: &Config, store: &dyn Store, pipeline: &str, env: &str) -> Result<i32> {
    let me = cfg.identity(pipeline);
    let locker = locker(cfg, store);
    // Without `--ttl-minutes` (or LOCK_TIMEOUT_MINUTES) the lock keeps its own ttl.
    match locker.renew(env, &me, cfg.ttl_given.then_some(cfg.ttl))? {
        Renewed::Renewed(lock) => {
            if cfg.output == OutputFormat::Json {
                render::print_json(
                    cfg.platform,
                    &render::lock_json(env, "renewed", Some(&lock)),
                );
            } else {
                cfg.platform.print_line(&format!(
                    "Renewed the deployment lock on {env}: stale in {} unless renewed again.",
                    human(lock.ttl)
                ));
            }
            Ok(0)
        }
        Renewed::Lost(Some(lock))
            if me.token.is_none() && ownership(&lock.holder, &me) == Ownership::SameUserAndHost =>
        {
            eprintln!(
                "{}",
                cfg.platform.error_line(
                    "Not renewed",
                    &format!(
                        "the lock on {env} was taken by {} on {} from another process (or \
                         without its token), and outside CI every process is its own holder: \
                         renew it with its token (--token or DEPLOY_LOCK_TOKEN)",
                        cfg.run.actor, cfg.run.host
                    )
                )
            );
            if cfg.output == OutputFormat::Json {
                render::print_json(cfg.platform, &render::lock_json(env, "held", Some(&lock)));
            }
            Ok(ExitCode::Held.code())
        }
        Renewed::Lost(lock) => {
            if cfg.audit {
                let mut event = Event::of("renew-failed", env, &me, &cfg.run, locker.store_now());
                event.other = lock
                    .as_ref()
                    .map(|l| l.holder.describe())
                    .unwrap_or_default();
                audit::append(store, &event);
            }
            let msg = match &lock {
                Some(l) => format!(
                    "the lock on {env} is no longer ours: it is held by {}",
                    l.holder.describe()
                ),
                None => format!("the lock on {env} is gone (released, broken or expired)"),
            };
            eprintln!("{}", cfg.platform.error_line("Deployment lock lost", &msg));
            if cfg.output == OutputFormat::Json {
                render::print_json(
                    cfg.platform,
                    &render::lock_json(env, "lost", lock.as_deref()),
                );
            }
            Ok(ExitCode::Lost.code())
        }
    }
}

/// `--since`: an RFC 3339 time, or a duration back from now (`90m`, `2h`, minutes).
fn parse_since(text: &str) -> Result<Since> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(Since::At(t.with_timezone(&chrono::Utc)));
    }
    config::parse_minutes(text, "--since")
        .map(Since::Ago)
        .map_err(|_| {
            Failure::usage(format!(
                "--since `{}` is neither a time (2025-09-27T17:30:00Z) nor a duration (90m, 2h)",
                crate::ci::escape_controls(text)
            ))
        })
}

/// Where `history` starts.
#[derive(Debug, Clone, Copy)]
pub enum Since {
    At(chrono::DateTime<chrono::Utc>),
    Ago(Duration),
}

pub fn history(cfg: &Config, store: &dyn Store, env: &str, since: Option<Since>) -> Result<i32> {
    let p = cfg.platform;
    let (events, now) = audit::read(store, env)?;
    let cutoff = since.map(|s| match s {
        Since::At(t) => t,
        Since::Ago(d) => now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX),
    });
    let events: Vec<_> = events
        .into_iter()
        .filter(|e| match (cutoff, audit::time_of(e)) {
            (Some(c), Some(t)) => t >= c,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .collect();
    if cfg.output == OutputFormat::Json {
        render::print_json(p, &json!(events));
        return Ok(0);
    }
    if events.is_empty() {
        p.print_line(&format!("No events for {env}."));
        return Ok(0);
    }
    for e in &events {
        let mut details = Vec::new();
        if let Some(w) = e.waited_seconds.filter(|w| *w > 0) {
            details.push(format!(
                "waited {}",
                human(chrono::Duration::seconds(
                    i64::try_from(w).unwrap_or(i64::MAX)
                ))
            ));
        }
        if let Some(h) = e.held_seconds {
            details.push(format!("held {}", human(chrono::Duration::seconds(h))));
        }
        if let Some(f) = e.fence {
            details.push(format!("fence {f}"));
        }
        if !e.other.is_empty() {
            let what = match e.event.as_str() {
                "steal" => "took over from",
                "force-break" => "broke the lock of",
                "blocked" | "timed-out" => "blocked by",
                "lost" | "renew-failed" => "now held by",
                _ => "other",
            };
            details.push(format!("{what} {}", e.other));
        }
        if !e.reason.is_empty() {
            details.push(format!("reason: {}", e.reason));
        }
        p.print_line(
            format!(
                "{:<24}  {:<12}  {:<30}  {}",
                e.at,
                e.event,
                e.who(),
                details.join(", ")
            )
            .trim_end(),
        );
    }
    Ok(0)
}
