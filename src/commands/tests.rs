//! The commands' effects, asserted on their outcomes against the in-memory store: no output is
//! captured, because commands print nothing.

use std::sync::Mutex;
use std::time::Duration;

use super::*;
use crate::ci::Platform;
use crate::cli::GlobalArgs;
use crate::exit::ExitCode;
use crate::lock::{EventKind, EventSink, LockEvent};
use crate::store::memory::MemoryStore;

/// Progress nobody sees.
struct Quiet;

impl Progress for Quiet {
    fn waiting(&self, _env: &Environment, _timeout: Duration, _typical: Option<Duration>) {}
    fn acquired(&self, _outcome: &Outcome) -> Result<()> {
        Ok(())
    }
    fn lost(&self, _env: &Environment, _now_held_by: &str, _kill: bool) {}
}

/// Events kept for the test to look at.
#[derive(Default)]
struct Recorded(Mutex<Vec<LockEvent>>);

impl EventSink for Recorded {
    fn record(&self, event: &LockEvent) {
        self.0.lock().expect("events").push(event.clone());
    }
}

impl Recorded {
    fn kinds(&self) -> Vec<EventKind> {
        self.0
            .lock()
            .expect("events")
            .iter()
            .map(|e| e.kind.clone())
            .collect()
    }
}

fn cfg(build: &str) -> Config {
    let args = GlobalArgs {
        store: Some("file:unused".into()),
        build_id: Some(build.into()),
        ..GlobalArgs::default()
    };
    Config::from_args(&args, Platform::Local).expect("config")
}

fn target(cfg: &Config) -> Target {
    Target::parse(&["sandbox".to_owned()], cfg).expect("target")
}

fn acquire_request(cfg: &Config) -> Command {
    Command::Acquire(acquire::Request {
        target: target(cfg),
        wait: None,
        reason: "tests".into(),
        releases_itself: false,
        override_freeze: false,
    })
}

#[test]
fn acquire_check_and_release_report_what_they_did() {
    let store = MemoryStore::new();
    let events = Recorded::default();
    let (ours, theirs) = (cfg("build-1"), cfg("build-2"));
    let me = Context::new(&ours, &store, &events);
    let other = Context::new(&theirs, &store, &events);

    let outcome = acquire_request(&ours)
        .execute_in(&me, &Quiet)
        .expect("acquire");
    let Outcome::Acquired(taken) = &outcome else {
        panic!("{outcome:?}");
    };
    assert!(!taken.reentrant);
    assert!(taken.record.fence.is_some());
    assert_eq!(outcome.exit_code(), 0);

    let check = Command::Check(target(&theirs))
        .execute_in(&other, &Quiet)
        .expect("check");
    assert!(matches!(
        check,
        Outcome::Checked {
            state: State::Held,
            ..
        }
    ));
    assert_eq!(check.exit_code(), ExitCode::Held.code());

    let blocked = acquire_request(&theirs)
        .execute_in(&other, &Quiet)
        .expect("acquire");
    assert!(matches!(&blocked, Outcome::Blocked(b) if !b.timed_out));
    assert_eq!(blocked.exit_code(), ExitCode::Held.code());

    let refused = Command::Release(target(&theirs))
        .execute_in(&other, &Quiet)
        .expect("release");
    assert_eq!(refused.exit_code(), ExitCode::Held.code());

    let released = Command::Release(target(&ours))
        .execute_in(&me, &Quiet)
        .expect("release");
    assert!(matches!(
        &released,
        Outcome::Released(r) if matches!(r.how, outcome::How::Released { .. })
    ));
    assert_eq!(
        events.kinds(),
        [EventKind::Acquire, EventKind::Blocked, EventKind::Release]
    );
}

#[test]
fn a_wait_that_runs_out_times_out_and_force_break_frees_the_lock() {
    let store = MemoryStore::new();
    let events = Recorded::default();
    let ours = cfg("build-1");
    let me = Context::new(&ours, &store, &events);
    acquire_request(&ours)
        .execute_in(&me, &Quiet)
        .expect("acquire");

    let waited = Command::Wait {
        env: target(&ours).env,
        timeout: Duration::from_millis(1),
    }
    .execute_in(&me, &Quiet)
    .expect("wait");
    assert_eq!(waited.exit_code(), ExitCode::TimedOut.code());

    let broken = Command::ForceBreak {
        env: target(&ours).env,
        reason: "stuck".into(),
    }
    .execute_in(&me, &Quiet)
    .expect("force-break");
    assert!(matches!(&broken, Outcome::Broken { lock: Some(_), .. }));

    let free = Command::Check(target(&ours))
        .execute_in(&me, &Quiet)
        .expect("check");
    assert!(matches!(
        free,
        Outcome::Checked {
            state: State::Free,
            ..
        }
    ));
    assert_eq!(events.kinds(), [EventKind::Acquire, EventKind::ForceBreak]);
}

#[test]
fn renewing_a_lock_that_is_gone_says_so_and_records_nothing_without_the_token() {
    let store = MemoryStore::new();
    let events = Recorded::default();
    let ours = cfg("build-1");
    let me = Context::new(&ours, &store, &events);
    let renewed = Command::Renew(target(&ours))
        .execute_in(&me, &Quiet)
        .expect("renew");
    assert_eq!(renewed.exit_code(), ExitCode::Lost.code());
    assert!(events.kinds().is_empty(), "{:?}", events.kinds());
}

#[test]
fn status_and_history_list_what_the_store_holds() {
    let store = MemoryStore::new();
    let ours = cfg("build-1");
    let audit = crate::lock::AuditLog::new(&store);
    let me = Context::new(&ours, &store, &audit);
    acquire_request(&ours)
        .execute_in(&me, &Quiet)
        .expect("acquire");
    let status = Command::Status { stuck_after: None }
        .execute_in(&me, &Quiet)
        .expect("status");
    let Outcome::Status { locks, .. } = &status else {
        panic!("{status:?}");
    };
    assert_eq!(locks.len(), 1);
    assert_eq!(locks[0].state(), State::Held);
    let history = Command::History {
        env: target(&ours).env,
        since: Some(Since::Ago(Duration::from_secs(3600))),
    }
    .execute_in(&me, &Quiet)
    .expect("history");
    assert!(matches!(&history, Outcome::History { events, .. } if events.len() == 1));
}

#[test]
fn wait_parsing_is_friendly_about_a_misplaced_environment() {
    assert_eq!(parse_wait(None).expect("none"), None);
    assert_eq!(
        parse_wait(Some("90s")).expect("90s"),
        Some(Duration::from_secs(90))
    );
    let err = parse_wait(Some("sandbox")).expect_err("not a time");
    assert_eq!(err.code, ExitCode::Usage);
    assert!(
        err.to_string()
            .contains("write `--wait` after the environment")
    );
}
