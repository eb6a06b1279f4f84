//! The command line: argument definitions only. `config` turns them into typed settings.

use clap::{Args, Parser, Subcommand, ValueEnum};

pub const EXIT_CODES: &str = "\
Exit codes:
  0  ok (acquired, released, free)
  1  error: authentication, network, configuration or store
  2  usage or bad input; nothing was written to the store
  3  held by another run (also: releasing a lock another run holds)
  4  timed out waiting for the lock
  5  lock lost: stolen or broken while we held it
  130 interrupted (SIGINT/SIGTERM) before the lock was taken; nothing left behind";

#[derive(Debug, Parser)]
#[command(
    name = "deploy-lock",
    version,
    about = "One deployment lock per environment, shared by GitHub Actions, Azure DevOps and people at a terminal.",
    long_about = None,
    disable_help_subcommand = true,
    args_override_self = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Default, Args)]
pub struct GlobalArgs {
    /// Lock store: `file:PATH` for a local directory, or an Azure container URL
    /// (`https://ACCOUNT.blob.core.windows.net/CONTAINER`, `http://127.0.0.1:10000/ACCOUNT/CONTAINER`).
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_STORE",
        value_name = "URL"
    )]
    pub store: Option<String>,

    /// Container (Azure) or subdirectory (local store) that holds the locks [default: deployment-locks].
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_CONTAINER",
        value_name = "NAME"
    )]
    pub container: Option<String>,

    /// A lock not renewed for this long is stale and may be taken over (minutes; fractions allowed,
    /// or a unit: 90s, 5m, 2h) [default: 30].
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "LOCK_TIMEOUT_MINUTES",
        value_name = "MINUTES"
    )]
    pub ttl_minutes: Option<String>,

    /// How often to look again while waiting [default: 30s; jittered].
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_POLL_SECONDS",
        value_name = "SECONDS"
    )]
    pub poll_seconds: Option<String>,

    /// Who holds the lock: callers with the same build id (and job) are one holder [default:
    /// GITHUB_RUN_ID, BUILD_BUILDID, BUILD_BUILDNUMBER; else user@host, which never makes two
    /// processes one holder].
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_BUILD_ID",
        value_name = "ID"
    )]
    pub build_id: Option<String>,

    /// The job within the run; another job of the same run is blocked [default: GITHUB_JOB, SYSTEM_JOBID].
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_JOB",
        value_name = "NAME"
    )]
    pub job: Option<String>,

    /// The token printed by `acquire` (`run` exports it to its command): act as exactly that
    /// acquisition's holder, to release, renew or nest in it.
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_TOKEN",
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// How to sign in to Azure Storage: auto, key, sas, connection-string, github-oidc,
    /// azure-devops-oidc, managed-identity, azure-cli or token (see docs/entra-id.md) [default: auto].
    #[arg(long, global = true, env = "DEPLOY_LOCK_AUTH", value_name = "METHOD")]
    pub auth: Option<String>,

    /// Extra trusted CA certificates (PEM), for TLS-inspecting proxies and the emulator over HTTPS.
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_CA_FILE",
        value_name = "PATH"
    )]
    pub ca_file: Option<String>,

    /// Output format.
    #[arg(
        long,
        global = true,
        value_enum,
        hide_env_values = true,
        env = "DEPLOY_LOCK_OUTPUT",
        value_name = "FORMAT"
    )]
    pub output: Option<OutputFormat>,

    /// Do not take a fencing number (saves one request per acquire).
    #[arg(long, global = true, hide_env_values = true, env = "DEPLOY_LOCK_NO_FENCE", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_fence: bool,

    /// Do not append events to the environment's audit log (saves one request per operation).
    #[arg(long, global = true, hide_env_values = true, env = "DEPLOY_LOCK_NO_AUDIT", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_audit: bool,

    /// Print each store request (never secrets) to stderr.
    #[arg(long, global = true, hide_env_values = true, env = "DEPLOY_LOCK_DEBUG", value_parser = clap::builder::FalseyValueParser::new())]
    pub debug: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum OutputFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show who holds ENV's lock. Exit 0 when free (or ours, or stale), 3 when held.
    Check(Target),
    /// Take ENV's lock. Exit 0 when taken (or already ours), 3 when held, 4 after --wait ran out.
    Acquire(AcquireArgs),
    /// Release our lock on ENV. Someone else's is refused (exit 3); no lock at all is a warning (exit 0).
    Release(Target),
    /// Wait until ENV's lock is free, then exit 0; exit 4 after MINUTES [default: DEPLOYMENT_TIMEOUT_MINUTES, 120].
    Wait(WaitArgs),
    /// Break ENV's lock whoever holds it, and record who did it and why.
    ForceBreak(ForceBreakArgs),
    /// List every environment in the store with its holder.
    Status,
    /// Extend our lock on ENV by another ttl. Exit 5 if it is no longer ours.
    Renew(Target),
    /// Take ENV's lock, run COMMAND while renewing it, release it when COMMAND ends, and exit
    /// with COMMAND's exit code (5 if the lock was lost meanwhile).
    Run(RunArgs),
    /// Show ENV's audit log: acquisitions, releases, steals, force-breaks, blocked attempts.
    History(HistoryArgs),
    /// Run by the GitHub Action and the Azure DevOps task: read the step's inputs and act.
    #[command(hide = true)]
    Step(StepArgs),
}

/// `[PIPELINE] ENV`, as the seed script takes them.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// `[PIPELINE] ENV`: pipeline type (github, azdevops, local, …; detected when omitted) and environment.
    #[arg(value_name = "[PIPELINE] ENV", num_args = 1..=2, required = true)]
    pub words: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct AcquireArgs {
    #[command(flatten)]
    pub target: Target,
    /// Wait for the lock instead of failing at once, up to MINUTES [default: DEPLOYMENT_TIMEOUT_MINUTES, 120].
    /// Write it after ENV, or as --wait=MINUTES.
    #[arg(long, value_name = "MINUTES", num_args = 0..=1, default_missing_value = "")]
    pub wait: Option<String>,
    /// Why you deploy; recorded in the lock and shown by `check`.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    /// Wait for the lock up to MINUTES instead of failing at once [default: DEPLOYMENT_TIMEOUT_MINUTES, 120].
    #[arg(long, value_name = "MINUTES", num_args = 0..=1, default_missing_value = "")]
    pub wait: Option<String>,
    /// Why you deploy; recorded in the lock.
    #[arg(long, value_name = "TEXT")]
    pub reason: Option<String>,
    /// What to do if the lock is lost while COMMAND runs: warn and let it finish, or stop it.
    #[arg(long, value_enum, default_value_t = OnLost::Warn)]
    pub on_lost: OnLost,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnLost {
    Warn,
    Kill,
}

#[derive(Debug, Clone, Args)]
pub struct HistoryArgs {
    /// Environment whose log to show.
    #[arg(value_name = "ENV")]
    pub environment: String,
    /// Only events since then: a duration back from now (90m, 2h, 7d) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct WaitArgs {
    /// Environment to wait for.
    #[arg(value_name = "ENV")]
    pub environment: String,
    /// How long to wait (minutes, or 90s, 2h).
    #[arg(value_name = "MINUTES")]
    pub minutes: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ForceBreakArgs {
    /// Environment whose lock to break.
    #[arg(value_name = "ENV")]
    pub environment: String,
    /// Why the lock is broken; recorded and shown.
    #[arg(long, value_name = "TEXT", required = true)]
    pub reason: String,
}

#[derive(Debug, Clone, Args)]
pub struct StepArgs {
    /// Which step of the action or task runs.
    #[arg(value_enum)]
    pub phase: StepPhase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StepPhase {
    Main,
    Post,
    /// Started detached by `main`: renews the lock until `post` stops it or the lock is gone.
    Heartbeat,
}
