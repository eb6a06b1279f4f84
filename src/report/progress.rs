//! What a waiter shows while it waits: the holder at once (who, since when, its run, why), then
//! at least every 30 s and whenever something changes the elapsed time against the budget, the
//! holder, our place in line and an estimate from the environment's recent hold times. On GitHub
//! inside a collapsible group; on Azure DevOps with `task.setprogress` as well; in a terminal on
//! one line that updates in place. Everything goes to stderr, so stdout keeps only the outcome.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use super::Reporter;
use crate::ci::Platform;
use crate::commands::{Outcome, Progress};
use crate::config::Environment;
use crate::exit::Result;
use crate::human::{human, human_std};
use crate::lock::{Holder, LockView, WaitSeen};

/// The longest a waiter stays silent.
pub const REPORT_EVERY: Duration = Duration::from_secs(30);

/// Where the lines go and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    GitHub,
    AzureDevOps,
    /// A terminal: one line updated in place.
    Terminal,
    /// A log or a pipe: one line per report.
    Plain,
}

impl Surface {
    #[must_use]
    pub fn of(platform: Platform, stderr_is_tty: bool) -> Self {
        match platform {
            Platform::GitHub => Self::GitHub,
            Platform::AzureDevOps => Self::AzureDevOps,
            Platform::Local if stderr_is_tty => Self::Terminal,
            Platform::Local => Self::Plain,
        }
    }

    fn platform(self) -> Platform {
        match self {
            Self::GitHub => Platform::GitHub,
            Self::AzureDevOps => Platform::AzureDevOps,
            Self::Terminal | Self::Plain => Platform::Local,
        }
    }
}

/// The state of one wait's report. The rendering is pure: each event returns the text to write.
#[derive(Debug)]
pub struct WaitReport {
    surface: Surface,
    env: String,
    budget: Duration,
    typical_hold: Option<Duration>,
    /// When we last reported, and what we reported about.
    last_at: Option<Duration>,
    last_holder: Option<String>,
    last_place: Option<(usize, usize)>,
    /// A terminal line is being updated in place.
    line_open: bool,
    group_open: bool,
}

/// "1st", "2nd", "3rd", "11th", "22nd".
#[must_use]
pub fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// Who holds the lock, as a key that changes when another acquisition holds it.
fn holder_key(lock: &LockView) -> String {
    match lock.holder.record() {
        Some(r) => format!("{}\n{}", lock.holder.describe(), r.token),
        None => lock.holder.describe(),
    }
}

impl WaitReport {
    #[must_use]
    pub fn new(
        surface: Surface,
        env: &str,
        budget: Duration,
        typical_hold: Option<Duration>,
    ) -> Self {
        Self {
            surface,
            env: env.to_owned(),
            budget,
            typical_hold,
            last_at: None,
            last_holder: None,
            last_place: None,
            line_open: false,
            group_open: false,
        }
    }

    /// Our place in line as last seen.
    #[must_use]
    pub fn place(&self) -> Option<(usize, usize)> {
        self.last_place
    }

    fn escape(&self, text: &str) -> String {
        self.surface.platform().escape(text)
    }

    /// The wait starts: the text to write to stderr.
    pub fn start(&mut self) -> String {
        let mut out = String::new();
        if self.surface == Surface::GitHub {
            // The environment name is validated: it cannot end the group or start a command.
            out.push_str(&format!(
                "::group::Waiting for the lock on {} (up to {})\n",
                self.env,
                human_std(self.budget)
            ));
            self.group_open = true;
        }
        out.push_str(&self.line(&format!(
            "waiting up to {} for the lock on {}",
            human_std(self.budget),
            self.env
        )));
        out
    }

    /// One look at the lock: what to write (often nothing).
    pub fn seen(&mut self, seen: &WaitSeen<'_>) -> String {
        let holder = seen.lock.map(holder_key);
        let holder_changed = holder.is_some() && holder != self.last_holder;
        let changed = holder_changed || seen.place != self.last_place;
        let due = self
            .last_at
            .is_none_or(|at| seen.elapsed.saturating_sub(at) >= REPORT_EVERY);
        // A terminal line costs nothing to update: it shows every look.
        if !(changed || due || self.surface == Surface::Terminal) {
            return String::new();
        }
        let mut out = String::new();
        if holder_changed && let Some(lock) = seen.lock {
            for line in self.holder_lines(lock) {
                out.push_str(&self.line(&line));
            }
        }
        if holder.is_some() {
            self.last_holder = holder;
        }
        self.last_place = seen.place;
        self.last_at = Some(seen.elapsed);
        let status = self.status(seen);
        match self.surface {
            Surface::Terminal => {
                out.push_str(&format!("\r\x1b[2K{}", self.escape(&status)));
                self.line_open = true;
            }
            Surface::AzureDevOps => {
                out.push_str(&self.line(&status));
                let pct = (seen.elapsed.as_secs_f64() / self.budget.as_secs_f64().max(1.0) * 100.0)
                    .clamp(0.0, 100.0);
                out.push_str(&format!(
                    "##vso[task.setprogress value={};]Waiting for the lock on {}\n",
                    pct.floor(),
                    self.env
                ));
            }
            Surface::GitHub | Surface::Plain => out.push_str(&self.line(&status)),
        }
        out
    }

    /// The wait is over: closes the group or the terminal line.
    pub fn done(&mut self) -> String {
        let mut out = String::new();
        if self.line_open {
            out.push('\n');
            self.line_open = false;
        }
        if self.group_open {
            out.push_str("::endgroup::\n");
            self.group_open = false;
        }
        out
    }

    /// A whole line, escaped; on a terminal it first clears the line being updated.
    fn line(&mut self, text: &str) -> String {
        let clear = if self.line_open { "\r\x1b[2K" } else { "" };
        self.line_open = false;
        format!("{clear}{}\n", self.escape(text))
    }

    /// The holder: who, since when, its run and why.
    fn holder_lines(&self, lock: &LockView) -> Vec<String> {
        let since = (lock.now - lock.age).format("%Y-%m-%d %H:%M:%S UTC");
        let mut first = format!(
            "{} is locked by {} since {since} (held {})",
            self.env,
            lock.holder.describe(),
            human(lock.age)
        );
        let url = super::text::run_url(&lock.holder);
        if !url.is_empty() {
            first.push_str(&format!(" — {url}"));
        }
        let mut lines = vec![first];
        if let Holder::Current(r) = &lock.holder
            && !r.reason.is_empty()
        {
            lines.push(format!("  reason: {}", r.reason));
        }
        lines
    }

    /// "waited 1m of 10m · held by … for 4m · 2nd of 3 in line · usually held 6m: free in about 2m".
    fn status(&self, seen: &WaitSeen<'_>) -> String {
        let mut parts = vec![format!(
            "waited {} of {}",
            human_std(seen.elapsed),
            human_std(self.budget)
        )];
        match (seen.lock, seen.frozen) {
            (_, Some(window)) => parts.push(format!(
                "frozen ({}: {}); waiting for the freeze to end",
                window.describe(),
                window.reason
            )),
            (Some(lock), None) => parts.push(format!(
                "held by {} for {}",
                lock.holder.describe(),
                human(lock.age)
            )),
            (None, None) => parts.push("the lock is free; the waiters ahead go first".into()),
        }
        if let Some((at, of)) = seen.place {
            parts.push(format!("{} of {of} in line", ordinal(at)));
        }
        if let (Some(typical), Some(lock)) = (self.typical_hold, seen.lock) {
            let typical = chrono::Duration::from_std(typical).unwrap_or(chrono::Duration::MAX);
            let left = typical - lock.age;
            parts.push(if left > chrono::Duration::zero() {
                format!(
                    "usually held {}: free in about {}",
                    human(typical),
                    human(left)
                )
            } else {
                format!("usually held {}: free any time now", human(typical))
            });
        }
        parts.join(" · ")
    }
}

/// The reporter with a live wait report: the `Progress` every command is given.
pub struct Live {
    reporter: Reporter,
    surface: Surface,
    wait: Mutex<Option<WaitReport>>,
}

impl Live {
    #[must_use]
    pub fn new(reporter: Reporter) -> Self {
        Self {
            reporter,
            surface: Surface::of(reporter.platform, std::io::stderr().is_terminal()),
            wait: Mutex::new(None),
        }
    }

    /// Our place in the waiters' queue when the wait last looked, if it waited in one.
    #[must_use]
    pub fn place(&self) -> Option<(usize, usize)> {
        self.wait
            .lock()
            .ok()
            .and_then(|w| w.as_ref().and_then(WaitReport::place))
    }

    fn write(text: &str) {
        if !text.is_empty() {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(text.as_bytes());
            let _ = err.flush();
        }
    }

    fn with_wait(&self, f: impl FnOnce(&mut WaitReport) -> String) {
        let text = match self.wait.lock() {
            Ok(mut wait) => wait.as_mut().map(f).unwrap_or_default(),
            Err(_) => String::new(),
        };
        Self::write(&text);
    }
}

impl Progress for Live {
    fn waiting(&self, env: &Environment, timeout: Duration, typical_hold: Option<Duration>) {
        let mut report = WaitReport::new(self.surface, env, timeout, typical_hold);
        let text = report.start();
        if let Ok(mut wait) = self.wait.lock() {
            *wait = Some(report);
        }
        Self::write(&text);
    }

    fn seen(&self, seen: &WaitSeen<'_>) {
        self.with_wait(|w| w.seen(seen));
    }

    fn done_waiting(&self) {
        self.with_wait(WaitReport::done);
    }

    fn acquired(&self, outcome: &Outcome) -> Result<()> {
        self.reporter.report(outcome)
    }

    fn lost(&self, env: &Environment, now_held_by: &str, kill: bool) {
        self.reporter.lost(env, now_held_by, kill);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::lock::LockRecord;
    use crate::store::Blob;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + s, 0).expect("valid time")
    }

    /// A lock taken at 0 by `build`, seen at `now`.
    fn held(build: &str, token: &str, now: i64) -> LockView {
        let record = LockRecord {
            schema: 1,
            pipeline: "github".into(),
            build_id: build.into(),
            token: token.into(),
            ttl_seconds: 600,
            run_url: "https://github.com/o/r/actions/runs/42".into(),
            reason: "release 1.2\n::error::injected".into(),
            ..LockRecord::default()
        };
        let blob = Blob {
            data: record.to_bytes(),
            etag: "\"e\"".into(),
            last_modified: t(0),
            created: Some(t(0)),
            metadata: BTreeMap::new(),
        };
        LockView::new(&blob, t(now), chrono::Duration::minutes(30))
    }

    fn look(lock: &LockView, place: Option<(usize, usize)>, secs: u64) -> WaitSeen<'_> {
        WaitSeen {
            lock: Some(lock),
            place,
            elapsed: Duration::from_secs(secs),
            frozen: None,
        }
    }

    const BUDGET: Duration = Duration::from_secs(600);

    #[test]
    fn ordinals() {
        let got: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101].map(ordinal).into();
        assert_eq!(
            got,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st"
            ]
        );
    }

    #[test]
    fn names_the_holder_at_once_then_reports_every_30s_and_on_change() {
        let mut r = WaitReport::new(
            Surface::Plain,
            "sandbox",
            BUDGET,
            Some(Duration::from_secs(300)),
        );
        assert_eq!(r.start(), "waiting up to 10m for the lock on sandbox\n");
        let a = held("42", "t1", 60);
        let first = r.seen(&look(&a, Some((2, 3)), 0));
        assert!(first.contains("sandbox is locked by github build 42 since 2023-11-14 22:13:20 UTC (held 1m) — https://github.com/o/r/actions/runs/42"), "{first}");
        assert!(
            first.contains("  reason: release 1.2\\n::error::injected"),
            "{first}"
        );
        assert!(
            first.ends_with("waited 0s of 10m · held by github build 42 for 1m · 2nd of 3 in line · usually held 5m: free in about 4m\n"),
            "{first}"
        );
        // Nothing new and less than 30 s: silent.
        let a = held("42", "t1", 80);
        assert_eq!(r.seen(&look(&a, Some((2, 3)), 20)), "");
        // 30 s since the last report: the status again, not the holder.
        let again = r.seen(&look(&a, Some((2, 3)), 30));
        assert!(again.starts_with("waited 30s of 10m"), "{again}");
        assert!(!again.contains("is locked by"), "{again}");
        // Our place changed: reported at once.
        let moved = r.seen(&look(&a, Some((1, 2)), 31));
        assert!(moved.contains("1st of 2 in line"), "{moved}");
        // Another holder: named at once; an overdue estimate says so.
        let b = held("43", "t2", 400);
        let other = r.seen(&look(&b, Some((1, 2)), 32));
        assert!(
            other.contains("sandbox is locked by github build 43"),
            "{other}"
        );
        assert!(
            other.contains("usually held 5m: free any time now"),
            "{other}"
        );
        assert_eq!(r.done(), "");
    }

    #[test]
    fn github_groups_the_wait_and_escapes_the_holder() {
        let mut r = WaitReport::new(Surface::GitHub, "sandbox", BUDGET, None);
        assert!(
            r.start()
                .starts_with("::group::Waiting for the lock on sandbox (up to 10m)\n")
        );
        let a = held("42", "t1", 60);
        let out = r.seen(&look(&a, None, 0));
        for line in out.lines() {
            assert!(!line.trim_start().starts_with("::"), "{line}");
        }
        assert!(!out.contains("usually held"), "{out}");
        assert_eq!(r.done(), "::endgroup::\n");
    }

    #[test]
    fn a_wait_for_a_freeze_names_it_escaped_on_every_surface() {
        let window = crate::lock::Window {
            when: crate::lock::freeze::When::Once {
                from: 0,
                until: 3600,
            },
            reason: "incident ##vso[task.complete]x\n  ::error::y ##[set-output]z".into(),
            by: "ops".into(),
            created_at: String::new(),
        };
        for surface in [Surface::GitHub, Surface::AzureDevOps, Surface::Plain] {
            let mut r = WaitReport::new(surface, "sandbox", BUDGET, None);
            r.start();
            let out = r.seen(&WaitSeen {
                lock: None,
                place: Some((1, 1)),
                elapsed: Duration::from_secs(5),
                frozen: Some(&window),
            });
            assert!(out.contains("frozen (from 1970-01-01T00:00:00Z"), "{out}");
            assert!(out.contains("waiting for the freeze to end"), "{out}");
            assert!(!out.contains("the lock is free"), "{out}");
            for line in out.lines() {
                assert!(!line.trim_start().starts_with("::"), "{surface:?}: {line}");
            }
            if surface == Surface::GitHub {
                assert!(!out.contains("##[set-output]"), "{out}");
            }
            if surface == Surface::AzureDevOps {
                // Only its own progress command.
                assert_eq!(out.matches("##vso[").count(), 1, "{out}");
            }
        }
    }

    #[test]
    fn azure_devops_sets_the_progress() {
        let mut r = WaitReport::new(Surface::AzureDevOps, "sandbox", BUDGET, None);
        r.start();
        let a = held("42", "t1", 60);
        let out = r.seen(&look(&a, None, 150));
        assert!(
            out.contains("##vso[task.setprogress value=25;]Waiting for the lock on sandbox\n"),
            "{out}"
        );
        assert_eq!(out.matches("##vso[").count(), 1, "{out}");
    }

    #[test]
    fn a_terminal_updates_one_line() {
        let mut r = WaitReport::new(Surface::Terminal, "sandbox", BUDGET, None);
        r.start();
        let a = held("42", "t1", 60);
        let first = r.seen(&look(&a, None, 0));
        assert!(first.contains("is locked by github build 42"), "{first}");
        assert!(
            first.ends_with("\r\x1b[2Kwaited 0s of 10m · held by github build 42 for 1m"),
            "{first}"
        );
        // Every look updates the line in place, without a line break.
        let next = r.seen(&look(&a, None, 1));
        assert_eq!(
            next,
            "\r\x1b[2Kwaited 1s of 10m · held by github build 42 for 1m"
        );
        assert_eq!(r.done(), "\n");
    }
}
