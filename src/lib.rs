//! deploy-lock: one lock per environment, honoured by GitHub Actions, Azure DevOps and people at a
//! terminal, kept in Azure Blob Storage or a local directory.
//!
//! [`main`] is the whole program: parse → `Config` → `Command::execute` → report → exit code.
//! The layers, lowest first (a module imports only from its own layer or lower ones):
//! `exit`, `clock`, `signals`, `human`; `ci` and `log`; `store` (with `config::secrets`);
//! `lock`; `sinks`; `cli` and `config`; `commands`; `report`; `ci::step`; this file.
#![forbid(unsafe_code)]

pub mod ci;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod exit;
pub mod human;
pub mod lock;
pub mod log;
pub mod report;
pub mod secret;
pub mod signals;
pub mod sinks;
pub mod store;
#[cfg(test)]
mod testgen;

use std::ffi::OsString;

use clap::FromArgMatches;

use crate::ci::Platform;
use crate::cli::{Cli, EXIT_CODES};
use crate::commands::Command;
use crate::config::Config;
use crate::exit::{ExitCode, Result};
use crate::report::{Live, Reporter};

/// Runs the program on these arguments and returns its exit code.
pub fn main(args: impl IntoIterator<Item = OsString>) -> std::process::ExitCode {
    let code = run(args);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// Parses the arguments, runs the command, reports its outcome and returns the exit code. The
/// one place that prints errors.
fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let command = cli::command().after_help(format!(
        "{EXIT_CODES}\n\nLocal store (the default outside CI): {}\nDocs: README.md, `deploy-lock <command> --help`",
        config::default_local_dir().display()
    ));
    let platform = Platform::detect();
    let args: Vec<OsString> = args.into_iter().collect();
    let cli = match command
        .try_get_matches_from(&args)
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
            if e.use_stderr() && json_requested(&args) {
                // The error's own paragraph, without the usage line and the advice after it.
                let rendered = e.render().to_string();
                let paragraph: Vec<&str> = rendered
                    .lines()
                    .take_while(|l| !l.trim().is_empty())
                    .map(str::trim)
                    .collect();
                let joined = paragraph.join(" ");
                let message = joined.strip_prefix("error: ").unwrap_or(&joined);
                report::json::print_json(
                    platform,
                    &report::json::error_json(ExitCode::Usage.code(), message),
                );
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
    signals::install();
    if let cli::Command::Step(args) = &cli.command {
        return ci::step::run(args.phase, &cli.global, platform);
    }
    match execute(&cli, platform) {
        Ok(code) => code,
        Err(failure) => {
            report::print_failure(platform, cli.global.output.unwrap_or_default(), &failure)
        }
    }
}

/// Whether a command line that clap refused asked for JSON: `--output json`, `--output=json` or
/// DEPLOY_LOCK_OUTPUT=json, so that even a usage error is one JSON object on stdout.
fn json_requested(args: &[OsString]) -> bool {
    let words: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let given = words
        .iter()
        .zip(words.iter().skip(1).map(Some).chain(std::iter::once(None)))
        .filter_map(|(word, next)| match *word {
            "--output" => next.copied(),
            _ => word.strip_prefix("--output="),
        })
        .last();
    given.map_or_else(
        || std::env::var("DEPLOY_LOCK_OUTPUT").is_ok_and(|v| v.eq_ignore_ascii_case("json")),
        |v| v.eq_ignore_ascii_case("json"),
    )
}

fn execute(cli: &Cli, platform: Platform) -> Result<i32> {
    let cfg = Config::from_args(&cli.global, platform)?;
    cfg.mask_store_secrets();
    let command = Command::from_cli(&cli.command, &cfg)?;
    let reporter = Reporter::new(platform, cfg.output);
    let outcome = command.execute(&cfg, &Live::new(reporter))?;
    // `run` reported its acquisition before its command started; the rest is reported here.
    reporter.report(&outcome)?;
    Ok(outcome.exit_code())
}
