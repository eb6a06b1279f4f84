//! Outcomes as the user sees them: text or JSON on stdout, error lines on stderr, and the CI
//! outputs (GitHub step outputs, Azure DevOps variables). The only place that prints outcomes.

pub mod insight;
pub mod json;
pub mod progress;
pub mod summary;
pub mod text;

pub use progress::Live;
pub use text::print_error;

use std::time::Duration;

use crate::ci::Platform;
use crate::cli::OutputFormat;
use crate::commands::Outcome;
use crate::commands::freeze::Change;
use crate::commands::outcome::{Handback, How, RenewEnd, WaitEnd};
use crate::config::Environment;
use crate::exit::Result;
use crate::human::{human, human_std};
use crate::lock::{Holder, LockView};
use crate::log;

/// Prints a failure: the error line on stderr and, for `--output json`, `{"error": …}` on stdout.
/// Returns its exit code.
pub fn print_failure(
    platform: Platform,
    format: OutputFormat,
    failure: &crate::exit::Failure,
) -> i32 {
    let code = print_error(platform, failure);
    if format == OutputFormat::Json {
        json::print_json(platform, &json::error_json(code, &failure.to_string()));
    }
    code
}

/// Prints outcomes for one platform in one format.
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    pub platform: Platform,
    pub format: OutputFormat,
    /// Reports a member of a lock set, whose JSON is printed with the set's.
    member: bool,
    /// Reporting for the action's or task's step: advice names the step's inputs.
    pub step: bool,
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
            lock.map(|l| text::run_url(&l.holder).to_owned())
                .unwrap_or_default(),
        ),
    ]
}

impl Reporter {
    #[must_use]
    pub fn new(platform: Platform, format: OutputFormat) -> Self {
        Self {
            platform,
            format,
            member: false,
            step: false,
        }
    }

    /// The same reporter for the action's or task's step.
    #[must_use]
    pub fn in_step(self) -> Self {
        Self { step: true, ..self }
    }

    fn text(self) -> bool {
        self.format == OutputFormat::Text
    }

    fn print(self, line: &str) {
        self.platform.print_line(line);
    }

    /// A line of text beside a JSON answer (`run`'s handback): on stderr, so that stdout holds
    /// only the one JSON object.
    fn say(self, line: &str) {
        if self.text() {
            self.print(line);
        } else {
            self.platform.eprint_line(line);
        }
    }

    fn error(self, title: &str, msg: &str) {
        eprintln!("{}", self.platform.error_line(title, msg));
    }

    fn print_json(self, outcome: &Outcome) {
        if self.format == OutputFormat::Json
            && !self.member
            && let Some(v) = json::outcome_json(outcome)
        {
            json::print_json(self.platform, &v);
        }
    }

    /// Reports an outcome: CI outputs, stdout and error lines.
    pub fn report(&self, outcome: &Outcome) -> Result<()> {
        let p = self.platform;
        match outcome {
            Outcome::Checked { env, state, lock } => {
                p.set_outputs(&holder_outputs(lock.as_ref()))?;
                self.print_json(outcome);
                if self.text() {
                    match lock {
                        None => self.print(&format!("{env} is free")),
                        Some(l) => {
                            let what = match state {
                                crate::commands::State::Ours => "is locked by us",
                                crate::commands::State::Stale => "has a stale lock",
                                _ => "is locked",
                            };
                            self.print(&format!("{env} {what}"));
                            for line in text::lock_lines(p, l) {
                                self.print(&line);
                            }
                        }
                    }
                }
            }
            Outcome::Acquired(a) => {
                let record = &a.record;
                let fence = record.fence.map(|f| f.to_string()).unwrap_or_default();
                p.set_outputs(&[
                    ("acquired", "true".into()),
                    ("holder", Holder::Current(record.clone()).describe()),
                    ("holder-url", record.run_url.clone()),
                    ("waited-seconds", a.waited.as_secs().to_string()),
                    ("fence", fence.clone()),
                    ("token", record.token.clone()),
                ])?;
                self.print_json(outcome);
                if self.text() {
                    let env = &a.env;
                    let holder = Holder::Current(record.clone()).describe();
                    let waited = if a.waited.as_secs() > 0 {
                        format!(", waited {}", human_std(a.waited))
                    } else {
                        String::new()
                    };
                    if a.reentrant {
                        let ttl = Duration::from_secs(record.ttl_seconds);
                        self.print(&format!(
                            "Still hold the deployment lock on {env} as {holder} (ttl {}{waited}): \
                             it is the outer holder's, which took it earlier, and it stays held \
                             when this {} ends; the outer holder releases it.",
                            human_std(ttl),
                            if a.releases_itself { "run" } else { "command" }
                        ));
                    } else {
                        self.print(&format!(
                            "Acquired the deployment lock on {env} as {holder} (ttl {}{waited}).",
                            human_std(a.ttl)
                        ));
                    }
                    self.print(&format!("  token      {}", record.token));
                    if !fence.is_empty() {
                        self.print(&format!("  fence      {fence}"));
                    }
                    if !a.releases_itself && !a.reentrant {
                        self.print(&format!(
                            "Release it with: deploy-lock release {} {env}{}",
                            a.pipeline, a.release_with
                        ));
                    }
                }
            }
            Outcome::Blocked(b) => {
                let mut outputs = vec![
                    ("acquired", "false".to_owned()),
                    ("waited-seconds", b.waited.as_secs().to_string()),
                ];
                outputs.extend(holder_outputs(Some(&b.lock)));
                p.set_outputs(&outputs)?;
                self.print_json(outcome);
                self.error(
                    "Deployment lock held",
                    &text::blocked_message(p, self.step, &b.env, &b.lock, b.timed_out, b.waited),
                );
                if self.text() {
                    for line in text::lock_lines(p, &b.lock) {
                        p.eprint_line(&line);
                    }
                }
                if let Some((actor, host)) = &b.same_user_and_host {
                    log::note(&format!(
                        "{} was taken by {actor} on {host} from another process (or without its \
                         token); outside CI every process is its own holder. To act as that \
                         holder, give its token: --token or DEPLOY_LOCK_TOKEN",
                        b.env
                    ));
                }
            }
            Outcome::Superseded { env, by, waited } => {
                p.set_outputs(&[
                    ("acquired", "false".into()),
                    ("superseded", "true".into()),
                    ("superseded-by", by.run_url.clone()),
                    ("waited-seconds", waited.as_secs().to_string()),
                ])?;
                self.print_json(outcome);
                // The action's and task's step says it once, with what became of its run.
                if !self.step {
                    eprintln!(
                        "{}",
                        p.notice_line("Superseded", &text::superseded_message(env, by, *waited))
                    );
                }
            }
            Outcome::AcquireInterrupted { waited, taken, .. } => {
                if !taken {
                    p.set_outputs(&[
                        ("acquired", "false".into()),
                        ("waited-seconds", waited.as_secs().to_string()),
                    ])?;
                }
            }
            Outcome::Released(r) => {
                let env = &r.env;
                match &r.how {
                    How::Released { lock, by } if self.text() => match by {
                        Some((actor, host)) => self.print(&format!(
                            "Released the deployment lock on {env}, taken by {actor} on {host} \
                             (held {}).",
                            human(lock.age)
                        )),
                        None => self.print(&format!(
                            "Released the deployment lock on {env} (held by {}, for {}).",
                            lock.holder.describe(),
                            human(lock.age)
                        )),
                    },
                    How::Refused {
                        lock,
                        pipeline,
                        build_id,
                    } => self.error(
                        "Not released",
                        &match &lock.holder {
                            // Our build under another pipeline type: the slip is the name.
                            Holder::Current(r)
                                if r.build_id == *build_id && r.pipeline != pipeline.as_str() =>
                            {
                                format!(
                                    "{env} is locked by {}, not by {pipeline} build {build_id}: \
                                     you took it as pipeline {}; run `deploy-lock release {} \
                                     {env}`",
                                    lock.holder.describe(),
                                    r.pipeline,
                                    r.pipeline
                                )
                            }
                            _ => format!(
                                "{env} is locked by {}, not by {pipeline} build {build_id}: not \
                                 released. Break it only if you are sure with `deploy-lock \
                                 force-break {env} --reason ...`{}",
                                lock.holder.describe(),
                                match text::run_url(&lock.holder) {
                                    "" => String::new(),
                                    url => format!(" — {url}"),
                                }
                            ),
                        },
                    ),
                    _ => {}
                }
                self.print_json(outcome);
            }
            Outcome::Waited(w) => {
                if let WaitEnd::TimedOut(lock) = &w.end {
                    self.error(
                        "Timed out",
                        &text::blocked_message(p, self.step, &w.env, lock, true, w.waited),
                    );
                }
                p.set_outputs(&[("waited-seconds", w.waited.as_secs().to_string())])?;
                self.print_json(outcome);
                if self.text() && matches!(w.end, WaitEnd::Free) {
                    self.print(&format!(
                        "{} is free (waited {})",
                        w.env,
                        human_std(w.waited)
                    ));
                }
            }
            // Reported once: the text (or the warning that there was nothing to break), or the
            // JSON object.
            Outcome::Broken { env, lock, reason } => {
                self.print_json(outcome);
                match lock {
                    Some(lock) if self.text() => {
                        self.print(&format!(
                            "Broke the deployment lock on {env}, held by {} (held {}); reason: \
                             {reason}",
                            lock.holder.describe(),
                            human(lock.age)
                        ));
                        for line in text::lock_lines(p, lock) {
                            self.print(&line);
                        }
                    }
                    None if self.text() => {
                        log::warn(&format!("there is no lock on {env} to break"));
                    }
                    _ => {}
                }
            }
            Outcome::Status {
                store,
                locks,
                stuck_after,
                queues,
                frozen,
            } => {
                self.print_json(outcome);
                if self.text() {
                    if let (true, Some(after)) = (locks.is_empty(), stuck_after) {
                        self.print(&format!(
                            "No lock in {store} is held longer than {}.",
                            human_std(*after)
                        ));
                    } else if locks.is_empty() {
                        self.print(&format!("No locks in {store}."));
                    } else {
                        for line in text::status_table(p, locks) {
                            self.print(&line);
                        }
                    }
                    for line in insight::queue_lines(p, locks, queues) {
                        self.print(&line);
                    }
                    for line in insight::freeze_lines(p, frozen) {
                        self.print(&line);
                    }
                }
            }
            Outcome::Stats(s) => {
                self.print_json(outcome);
                if self.text() {
                    for line in insight::stats_lines(p, s) {
                        self.print(&line);
                    }
                }
            }
            Outcome::Dashboard(d) => {
                self.print_json(outcome);
                if self.text() {
                    for line in insight::dashboard_lines(d) {
                        self.print(&line);
                    }
                }
            }
            Outcome::Renewed(r) => {
                let env = &r.env;
                match &r.end {
                    RenewEnd::Renewed(lock) if self.text() => self.print(&format!(
                        "Renewed the deployment lock on {env}: stale in {} unless renewed again.",
                        human(lock.ttl)
                    )),
                    RenewEnd::Renewed(_) => {}
                    RenewEnd::NotOurs { actor, host, .. } => self.error(
                        "Not renewed",
                        &format!(
                            "the lock on {env} was taken by {actor} on {host} from another \
                             process (or without its token), and outside CI every process is \
                             its own holder: renew it with its token (--token or \
                             DEPLOY_LOCK_TOKEN)"
                        ),
                    ),
                    RenewEnd::Lost(lock) => {
                        let msg = match lock {
                            Some(l) => format!(
                                "the lock on {env} is no longer ours: it is held by {}",
                                l.holder.describe()
                            ),
                            None => {
                                format!("the lock on {env} is gone (released, broken or expired)")
                            }
                        };
                        self.error("Deployment lock lost", &msg);
                    }
                    RenewEnd::NotHeld(lock) => {
                        let msg = match lock {
                            Some(l) => format!(
                                "the lock on {env} is held by {}, and nothing shows this caller holds it: nothing \
                                 was renewed. The holder renews with its token (--token or \
                                 DEPLOY_LOCK_TOKEN)",
                                l.holder.describe()
                            ),
                            None => format!(
                                "there is no lock on {env} to renew: it is gone (released, \
                                 broken or expired), or was never taken"
                            ),
                        };
                        self.error("Not renewed", &msg);
                    }
                }
                self.print_json(outcome);
            }
            Outcome::History { env, events } => {
                self.print_json(outcome);
                if self.text() {
                    if events.is_empty() {
                        self.print(&format!("No events for {env}."));
                    }
                    for e in events {
                        self.print(&text::history_line(e));
                    }
                }
            }
            Outcome::Reaped(r) => {
                self.print_json(outcome);
                if self.text() {
                    for line in text::reaped_lines(r) {
                        self.print(&line);
                    }
                }
            }
            Outcome::Ran(r) => {
                if let Some(outer) = &r.outer_holder {
                    self.say(&format!(
                        "The deployment lock on {} stays held: it is the outer holder's \
                         ({outer}), which releases it.",
                        r.env
                    ));
                }
                if let Some(handback) = &r.handback {
                    self.handback(&r.env, handback, Caller::Run);
                }
            }
            Outcome::Frozen {
                env,
                window,
                timed_out,
            } => {
                p.set_outputs(&[("acquired", "false".into()), ("frozen", "true".into())])?;
                self.print_json(outcome);
                let waited = if *timed_out {
                    " and the wait ran out before it ended"
                } else {
                    ""
                };
                self.error(
                    "Deployment frozen",
                    &format!(
                        "{env} is frozen ({}, by {}): {}{waited}. Deploy after it ends, or, if \
                         you must, `deploy-lock acquire {env} --override-freeze --reason ...` \
                         (recorded in the audit log)",
                        window.describe(),
                        window.by,
                        window.reason
                    ),
                );
            }
            Outcome::Freezes { rows, changed } => {
                self.print_json(outcome);
                if self.text() {
                    match changed {
                        Some(Change::Frozen(env)) => self.print(&format!("Froze {env}.")),
                        Some(Change::Unfrozen(env, n)) if *n > 0 => {
                            self.print(&format!("Removed {n} freeze window(s) of {env}."));
                        }
                        Some(Change::Cleared(env)) => {
                            self.print(&format!("Removed the unreadable freeze record of {env}."));
                        }
                        _ => {}
                    }
                    if changed.is_none() && rows.is_empty() {
                        self.print("No freezes.");
                    }
                    for (env, active, w) in rows {
                        let now = if *active { "in force" } else { "planned" };
                        self.print(&format!(
                            "{env:<20} {now:<9} {}  {} (by {})",
                            w.describe(),
                            w.reason,
                            w.by
                        ));
                    }
                }
            }
            Outcome::Each(members) => self.report_set(outcome, members)?,
        }
        Ok(())
    }

    /// A lock set: each member as it would be on its own, one JSON array for the whole set, and
    /// the members' tokens and fencing numbers as comma-separated outputs in member order.
    fn report_set(self, outcome: &Outcome, members: &[Outcome]) -> Result<()> {
        self.print_json(outcome);
        let member = Self {
            member: true,
            ..self
        };
        for m in members {
            member.report(m)?;
        }
        let acquired: Vec<_> = members
            .iter()
            .filter_map(|m| match m {
                Outcome::Acquired(a) => Some(&a.record),
                _ => None,
            })
            .collect();
        if !acquired.is_empty() && acquired.len() == members.len() {
            let list = |f: &dyn Fn(&crate::lock::LockRecord) -> String| {
                acquired.iter().map(|r| f(r)).collect::<Vec<_>>().join(",")
            };
            self.platform.set_outputs(&[
                ("environments", list(&|r| r.environment.clone())),
                ("token", list(&|r| r.token.clone())),
                (
                    "fence",
                    list(&|r| r.fence.map(|f| f.to_string()).unwrap_or_default()),
                ),
            ])?;
        }
        Ok(())
    }

    /// What giving back a lock found, as `run` or the action's post step says it.
    pub fn handback(&self, env: &Environment, handback: &Handback, caller: Caller) {
        match handback {
            Handback::Released(lock) => self.say(&format!(
                "Released the deployment lock on {env} (held {}).",
                human(lock.age)
            )),
            Handback::Absent => log::warn(&match caller {
                Caller::Run => format!("the lock on {env} was already gone"),
                Caller::PostStep => format!(
                    "the lock on {env} was already gone (released by a later step, broken, or \
                     expired)"
                ),
            }),
            Handback::HeldByOther(lock) => log::warn(&match caller {
                Caller::Run => format!(
                    "the lock on {env} is held by {} now; left alone",
                    lock.holder.describe()
                ),
                Caller::PostStep => format!(
                    "the lock on {env} is now held by {}, not by this job: left alone",
                    lock.holder.describe()
                ),
            }),
            // Warned about where it happened: the lock expires after its ttl.
            Handback::Failed(_) => {}
        }
    }
}

/// Who gives a lock back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Run,
    PostStep,
}

impl Reporter {
    /// The lock was lost while `run`'s command runs.
    pub fn lost(&self, env: &Environment, now_held_by: &str, kill: bool) {
        self.error(
            "Deployment lock lost",
            &format!(
                "the lock on {env} was lost while the command runs (now held by \
                 {now_held_by}); {}",
                if kill {
                    "stopping the command (--on-lost kill)"
                } else {
                    "the command keeps running (--on-lost warn)"
                }
            ),
        );
    }
}
