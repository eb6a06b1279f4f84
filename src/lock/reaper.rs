//! Whether a holder's run has ended (docs/design.md, "Reaping"): a lock or a queue ticket whose
//! run has ended, as the run's own CI system says, is taken over or removed at once instead of
//! after its ttl. The takeover and the removal are in `reap.rs`.
//!
//! The rule: only a run its CI reports completed is reaped (cancelled, failed or succeeded); a
//! run queued or in progress never is; no answer, an error or an unknown run changes nothing (the
//! ttl still applies). Each holder is asked about at most once a minute by one process. Every
//! removal is conditional on the version read, so a holder that changed meanwhile is left alone.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::ci::runs::{CiRun, RunState};
use crate::clock::Clock;
use crate::log;
use crate::store::Store;

/// How often one holder's run is asked about, at most.
pub const ASK_EVERY: Duration = Duration::from_secs(60);

/// Asks a run's CI system whether the run is still going.
pub trait RunOracle {
    /// None when the run is not asked about (no token for its platform, its API is not ours, a
    /// field is malformed): no request was sent. Else the answer, or why there is none.
    fn ask(&self, run: &CiRun) -> Option<Result<RunState, String>>;
}

/// Whether a holder last asked about at `last` may be asked again at `now` (both readings of the
/// local monotonic clock).
#[must_use]
pub fn may_ask(last: Option<Duration>, now: Duration) -> bool {
    last.is_none_or(|t| now.saturating_sub(t) >= ASK_EVERY)
}

/// The conclusion of a run that has ended; None for every other answer.
#[must_use]
pub fn verdict(answer: Option<Result<RunState, String>>) -> Option<String> {
    match answer? {
        Ok(RunState::Ended(conclusion)) => Some(conclusion),
        Ok(RunState::Going(status)) => {
            log::debug(&format!("the holder's run is {status}: not reaped"));
            None
        }
        Err(why) => {
            log::debug(&format!(
                "could not learn whether the holder's run ended ({why}); the ttl applies"
            ));
            None
        }
    }
}

/// What a queue ticket holds: who waits (the holder fields, as strings) and the waiter's run,
/// where there is one to ask about; `waiting` for a ticket that names neither.
#[must_use]
pub fn ticket_body(waiter: &BTreeMap<String, String>, run: Option<&CiRun>) -> Vec<u8> {
    if waiter.is_empty() && run.is_none() {
        return b"waiting".to_vec();
    }
    let mut body = serde_json::Map::new();
    for (name, value) in waiter {
        body.insert(name.clone(), serde_json::Value::String(value.clone()));
    }
    if let Some(run) = run
        && let Ok(run) = serde_json::to_value(run)
    {
        body.insert("ci_run".to_owned(), run);
    }
    serde_json::Value::Object(body).to_string().into_bytes()
}

/// The run a ticket names; None for a plain ticket (`waiting`, from earlier versions).
#[must_use]
pub fn ticket_run(data: &[u8]) -> Option<CiRun> {
    let value: serde_json::Value = serde_json::from_slice(data).ok()?;
    serde_json::from_value(value.get("ci_run")?.clone()).ok()
}

/// Asks about holders, each at most once per `ASK_EVERY`.
pub struct Reaper<'a> {
    oracle: &'a dyn RunOracle,
    clock: &'a dyn Clock,
    asked: RefCell<HashMap<String, Duration>>,
}

impl<'a> Reaper<'a> {
    #[must_use]
    pub fn new(oracle: &'a dyn RunOracle, clock: &'a dyn Clock) -> Self {
        Self {
            oracle,
            clock,
            asked: RefCell::new(HashMap::new()),
        }
    }

    /// Whether `holder` may be asked about now; notes the ask.
    fn due(&self, holder: &str) -> bool {
        let now = self.clock.elapsed();
        let mut asked = self.asked.borrow_mut();
        let due = may_ask(asked.get(holder).copied(), now);
        if due {
            asked.insert(holder.to_owned(), now);
        }
        due
    }

    /// The conclusion of `run` when it has ended; `holder` names the holder for the rate limit.
    #[must_use]
    pub fn ended(&self, holder: &str, run: &CiRun) -> Option<String> {
        if !self.due(holder) {
            return None;
        }
        verdict(self.oracle.ask(run))
    }

    /// A ticket whose waiter's run has ended: its version as read, its run and the conclusion.
    #[must_use]
    pub fn ticket_ended(&self, store: &dyn Store, ticket: &str) -> Option<(String, CiRun, String)> {
        if !self.due(ticket) {
            return None;
        }
        let blob = store.get(ticket).ok()?.blob?;
        let run = ticket_run(&blob.data)?;
        let conclusion = verdict(self.oracle.ask(&run))?;
        log::note(&format!(
            "the waiter of queue ticket {ticket} ended ({conclusion}); its place is given up"
        ));
        Some((blob.etag, run, conclusion))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::sync::Mutex;

    use super::*;
    use crate::clock::Clock;

    struct Answer(Option<Result<RunState, String>>, Cell<u32>);

    impl RunOracle for Answer {
        fn ask(&self, _run: &CiRun) -> Option<Result<RunState, String>> {
            self.1.set(self.1.get() + 1);
            self.0.clone()
        }
    }

    struct At(Mutex<Duration>);

    impl Clock for At {
        fn elapsed(&self) -> Duration {
            *self.0.lock().expect("clock")
        }
        fn sleep(&self, d: Duration) -> bool {
            *self.0.lock().expect("clock") += d;
            true
        }
        fn cancelled(&self) -> bool {
            false
        }
        fn wall(&self) -> chrono::DateTime<chrono::Utc> {
            chrono::DateTime::UNIX_EPOCH
        }
        fn random(&self) -> f64 {
            0.5
        }
    }

    #[test]
    fn only_an_ended_run_is_reaped() {
        assert_eq!(
            verdict(Some(Ok(RunState::Ended("cancelled".into())))),
            Some("cancelled".into())
        );
        assert_eq!(verdict(Some(Ok(RunState::Going("queued".into())))), None);
        assert_eq!(
            verdict(Some(Ok(RunState::Going("in_progress".into())))),
            None
        );
        assert_eq!(verdict(Some(Err("500".into()))), None);
        assert_eq!(verdict(None), None);
    }

    #[test]
    fn each_holder_is_asked_at_most_once_a_minute() {
        assert!(may_ask(None, Duration::ZERO));
        assert!(!may_ask(
            Some(Duration::from_secs(10)),
            Duration::from_secs(69)
        ));
        assert!(may_ask(
            Some(Duration::from_secs(10)),
            Duration::from_secs(70)
        ));
        let oracle = Answer(
            Some(Ok(RunState::Going("in_progress".into()))),
            Cell::new(0),
        );
        let clock = At(Mutex::new(Duration::from_secs(5)));
        let reaper = Reaper::new(&oracle, &clock);
        let run = CiRun::default();
        for _ in 0..5 {
            assert_eq!(reaper.ended("a", &run), None);
            assert_eq!(reaper.ended("b", &run), None);
            clock.sleep(Duration::from_secs(10));
        }
        assert_eq!(oracle.1.get(), 2);
        clock.sleep(Duration::from_secs(20));
        let _ = reaper.ended("a", &run);
        assert_eq!(oracle.1.get(), 3);
    }

    #[test]
    fn tickets_carry_their_run() {
        let run = CiRun {
            system: "github".into(),
            run_id: "5".into(),
            ..CiRun::default()
        };
        assert_eq!(
            ticket_run(&ticket_body(&BTreeMap::new(), Some(&run))),
            Some(run)
        );
        assert_eq!(ticket_body(&BTreeMap::new(), None), b"waiting");
        assert_eq!(ticket_run(b"waiting"), None);
        assert_eq!(ticket_run(br#"{"ci_run":"x"}"#), None);
    }
}
