//! The command line: argument definitions only. `config` turns them into typed settings.

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};

pub const EXIT_CODES: &str = "\
Exit codes:
  0  ok (acquired, released, free)
  1  error: authentication, network, configuration or store
  2  usage or bad input; nothing was written to the store
  3  held by another run (also: releasing a lock another run holds)
  4  timed out waiting for the lock
  5  lock lost: stolen or broken while we held it
  6  superseded: a newer run with the same --supersede key is waiting; this one left the queue
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
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_AUTH",
        value_name = "METHOD"
    )]
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

    /// How many holders may share an environment (1-20): each takes a slot. Everyone sharing an
    /// environment must give the same number [default: 1, a plain lock].
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_CAPACITY",
        value_name = "N"
    )]
    pub capacity: Option<String>,

    /// Where a waiter stands in line: high goes ahead of every normal waiter (it never cuts a
    /// holder short) [default: normal].
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_PRIORITY",
        value_name = "high|normal"
    )]
    pub priority: Option<String>,

    /// Leave the queue (exit 6) when a newer run waits with the same KEY, instead of deploying an
    /// older commit after it; `true` in CI means the workflow or pipeline and the branch.
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_SUPERSEDE",
        value_name = "KEY"
    )]
    pub supersede: Option<String>,

    /// Do not take a fencing number (saves one request per acquire).
    #[arg(long, global = true, hide_env_values = true, env = "DEPLOY_LOCK_NO_FENCE", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_fence: bool,

    /// Do not append events to the environment's audit log (saves one request per operation).
    #[arg(long, global = true, hide_env_values = true, env = "DEPLOY_LOCK_NO_AUDIT", value_parser = clap::builder::FalseyValueParser::new())]
    pub no_audit: bool,

    /// Send lock events to a webhook: slack:URL, teams:URL, json:URL (CloudEvents 1.0), or an
    /// https:// URL (the format by its host). Repeatable; DEPLOY_LOCK_NOTIFY takes several,
    /// comma-separated.
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_NOTIFY",
        value_delimiter = ',',
        value_name = "TARGET"
    )]
    pub notify: Vec<String>,

    /// Which events --notify sends, comma-separated (acquired, released, blocked, waiting, stolen,
    /// broken, lost, timed-out, renew-failed, superseded, frozen, unfrozen, freeze-override, reaped,
    /// or all) [default: acquired,released,stolen,broken,lost].
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "DEPLOY_LOCK_NOTIFY_ON",
        value_delimiter = ',',
        value_name = "EVENTS"
    )]
    pub notify_on: Vec<String>,

    /// Send every lock event and the wait and hold times to Application Insights (its connection
    /// string; docs/monitoring.md).
    #[arg(
        long,
        global = true,
        hide_env_values = true,
        env = "APPLICATIONINSIGHTS_CONNECTION_STRING",
        value_name = "CONNECTION_STRING"
    )]
    pub app_insights: Option<String>,

    /// Print each store request (never secrets) to stderr.
    #[arg(long, global = true, hide_env_values = true, env = "DEPLOY_LOCK_DEBUG", value_parser = clap::builder::FalseyValueParser::new())]
    pub debug: bool,
}

/// The shared options every command that reaches the store uses.
const STORE_OPTIONS: &[&str] = &["store", "container", "auth", "ca_file", "output", "debug"];
const WHO: &[&str] = &["build_id", "job", "token"];
const EVENTS: &[&str] = &["no_audit", "notify", "notify_on", "app_insights"];
const TTL: &[&str] = &["ttl_minutes"];
const POLL: &[&str] = &["poll_seconds"];
const FENCE: &[&str] = &["no_fence"];

/// Which shared options, beyond [`STORE_OPTIONS`], each command uses.
const USES: &[(&str, &[&[&str]])] = &[
    ("check", &[WHO, TTL]),
    ("acquire", &[WHO, TTL, POLL, FENCE, EVENTS]),
    ("release", &[WHO, EVENTS]),
    ("wait", &[TTL, POLL, EVENTS]),
    ("force-break", &[WHO, EVENTS]),
    ("status", &[TTL, EVENTS]),
    ("renew", &[WHO, TTL, EVENTS]),
    ("run", &[WHO, TTL, POLL, FENCE, EVENTS]),
    ("history", &[]),
    ("freeze", &[WHO, EVENTS]),
    ("unfreeze", &[WHO, EVENTS]),
    ("freezes", &[]),
    ("stats", &[]),
    ("dashboard", &[]),
    ("reap", &[EVENTS]),
];

/// The command line with its help: each command's `--help` lists only the shared options it
/// uses. Every shared option stays accepted before or after any command, and its environment
/// variable keeps working.
#[must_use]
pub fn command() -> clap::Command {
    let command = Cli::command();
    let shared: Vec<clap::Arg> = command
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    USES.iter().fold(command, |command, (name, uses)| {
        command.mut_subcommand(name, |sub| {
            // A hidden copy is given to the command before the shared option is propagated to
            // it, which then leaves it alone.
            shared
                .iter()
                .filter(|a| {
                    let id = a.get_id().as_str();
                    !STORE_OPTIONS.contains(&id) && !uses.iter().any(|group| group.contains(&id))
                })
                .fold(sub, |sub, a| sub.arg(a.clone().hide(true)))
        })
    })
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
    #[command(
        after_help = "Examples:\n  deploy-lock check prod\n  deploy-lock check github prod --output json\n  deploy-lock check eu,us"
    )]
    Check(Target),
    /// Take ENV's lock. Exit 0 when taken (or already ours), 3 when held, 4 after --wait ran out.
    #[command(
        after_help = "Examples:\n  deploy-lock acquire prod --reason \"release 1.4\"\n  deploy-lock acquire github prod --wait 30\n  deploy-lock acquire eu,us --wait=10 --output json"
    )]
    Acquire(AcquireArgs),
    /// Release our lock on ENV. Someone else's is refused (exit 3); no lock at all is a warning (exit 0).
    #[command(
        after_help = "Examples:\n  deploy-lock release prod\n  deploy-lock release github prod --build-id 1234\n  deploy-lock release prod --token \"$DEPLOY_LOCK_TOKEN\""
    )]
    Release(Target),
    /// Wait until ENV's lock is free, then exit 0; exit 4 after MINUTES [default: DEPLOYMENT_TIMEOUT_MINUTES, 120].
    #[command(
        after_help = "Examples:\n  deploy-lock wait prod\n  deploy-lock wait prod 15\n  deploy-lock wait prod 90s --notify slack:https://hooks.slack.com/services/…"
    )]
    Wait(WaitArgs),
    /// Break ENV's lock whoever holds it, and record who did it and why.
    #[command(
        after_help = "Examples:\n  deploy-lock force-break prod --reason \"runner died, checked with the team\"\n  deploy-lock force-break prod --reason \"stuck\" --output json"
    )]
    ForceBreak(ForceBreakArgs),
    /// List every environment in the store with its holder. With --stuck-after, only the locks
    /// held longer than that, and exit 3 when there is one.
    #[command(
        after_help = "Examples:\n  deploy-lock status\n  deploy-lock status --output json\n  deploy-lock status --stuck-after 2h --notify teams:https://…"
    )]
    Status(StatusArgs),
    /// Extend our lock on ENV by another ttl. Exit 5 if it is no longer ours.
    #[command(
        after_help = "Examples:\n  deploy-lock renew prod\n  deploy-lock renew github prod --token \"$DEPLOY_LOCK_TOKEN\""
    )]
    Renew(Target),
    /// Take ENV's lock, run COMMAND while renewing it, release it when COMMAND ends, and exit
    /// with COMMAND's exit code (5 if the lock was lost meanwhile).
    #[command(
        after_help = "Examples:\n  deploy-lock run prod -- ./deploy.sh\n  deploy-lock run prod --wait 30 --reason \"release 1.4\" -- make deploy\n  deploy-lock run eu,us --on-lost kill -- ./deploy-both.sh"
    )]
    Run(RunArgs),
    /// Show ENV's audit log: acquisitions, releases, steals, force-breaks, blocked attempts.
    #[command(
        after_help = "Examples:\n  deploy-lock history prod\n  deploy-lock history prod --since 7d\n  deploy-lock history prod --since 2026-03-01T00:00:00Z --output json"
    )]
    History(HistoryArgs),
    /// Freeze ENV: no new acquire until the window ends (exit 3 naming the freeze), unless
    /// `acquire --override-freeze --reason TEXT`.
    #[command(
        after_help = "Examples:\n  deploy-lock freeze prod --for 2h --reason \"incident 42\"\n  deploy-lock freeze prod --until 2026-03-01T18:00:00+01:00 --reason \"quarter close\"\n  deploy-lock freeze prod --weekly \"Fri 16:00-Mon 08:00 +02:00\" --reason \"no weekend deploys\""
    )]
    Freeze(FreezeArgs),
    /// Remove every freeze window of ENV.
    #[command(after_help = "Examples:\n  deploy-lock unfreeze prod --reason \"incident resolved\"")]
    Unfreeze(UnfreezeArgs),
    /// List the freeze windows of every environment, and which are in force now.
    #[command(after_help = "Examples:\n  deploy-lock freezes\n  deploy-lock freezes --output json")]
    Freezes,
    /// Counts, wait and hold percentiles, by pipeline and hour of the week, from the audit logs.
    #[command(
        after_help = "Examples:\n  deploy-lock stats\n  deploy-lock stats prod --since 7d\n  deploy-lock stats --output json"
    )]
    Stats(StatsArgs),
    /// Write one self-contained HTML page of every environment (--out DIR), or publish it to the
    /// storage account's static website (--publish).
    #[command(
        after_help = "Examples:\n  deploy-lock dashboard --out site\n  deploy-lock dashboard --publish --since 14d"
    )]
    Dashboard(DashboardArgs),
    /// Remove the locks and queue tickets of runs that have ended, in every environment (or the
    /// given ones), asking GitHub or Azure DevOps with GITHUB_TOKEN/GH_TOKEN or SYSTEM_ACCESSTOKEN.
    #[command(
        after_help = "Examples:\n  GITHUB_TOKEN=… deploy-lock reap\n  deploy-lock reap prod staging --output json"
    )]
    Reap(ReapArgs),
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
    /// Take the lock even during a freeze; needs --reason, recorded in the audit log.
    #[arg(long)]
    pub override_freeze: bool,
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
pub struct StatsArgs {
    /// Environments to count [default: every environment with an audit log].
    #[arg(value_name = "ENV")]
    pub environments: Vec<String>,
    /// Only events since then: a duration back from now (30d, 12h) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", default_value = "30d")]
    pub since: String,
}

#[derive(Debug, Clone, Args)]
pub struct DashboardArgs {
    /// Write the page to DIR/index.html.
    #[arg(long, value_name = "DIR")]
    pub out: Option<std::path::PathBuf>,
    /// Write the page to the storage account's static website (`$web/deploy-lock/index.html`).
    #[arg(long)]
    pub publish: bool,
    /// How far back the timeline and the statistics reach: a duration (7d, 48h) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", default_value = "7d")]
    pub since: String,
}

#[derive(Debug, Clone, Args)]
pub struct ReapArgs {
    /// Environments to look at [default: every one in the store].
    #[arg(value_name = "ENV")]
    pub environments: Vec<String>,
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
pub struct StatusArgs {
    /// List only the locks held longer than this (minutes, or 90s, 2h, 1d), exit 3 when there is
    /// one, and send a `stuck` event for each to --notify.
    #[arg(long, value_name = "DURATION")]
    pub stuck_after: Option<String>,
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
pub struct FreezeArgs {
    /// Environment to freeze.
    #[arg(value_name = "ENV")]
    pub environment: String,
    /// For this long from now (minutes, or 90m, 2h, 1d).
    #[arg(long = "for", value_name = "DURATION")]
    pub for_: Option<String>,
    /// Until this time (RFC 3339 with its offset: 2026-03-01T18:00:00+01:00).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Every week: "Fri 16:00-Mon 08:00 +02:00" (an explicit UTC offset is required).
    #[arg(long, value_name = "WINDOW")]
    pub weekly: Option<String>,
    /// Why; shown to everyone who is refused.
    #[arg(long, value_name = "TEXT", required = true)]
    pub reason: String,
}

#[derive(Debug, Clone, Args)]
pub struct UnfreezeArgs {
    /// Environment whose freezes to remove.
    #[arg(value_name = "ENV")]
    pub environment: String,
    /// Why; recorded in the audit log.
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
