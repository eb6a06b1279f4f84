//! What commands return: one `Outcome` per command run, carrying what its report needs, and
//! the exit code it ends with.

use std::time::Duration;

use crate::ci::runs::CiRun;
use crate::config::{Config, Environment, Pipeline};
use crate::exit::ExitCode;
use crate::lock::waiters::Waiter;
use crate::lock::{Holder, Identity, LockRecord, LockView};
use crate::store::StoreError;

/// How a lock stands, as `check`, `status` and the JSON output name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Free,
    Ours,
    Stale,
    Held,
    Unreadable,
    Acquired,
    TimedOut,
    Interrupted,
    Released,
    Refused,
    Broken,
    Renewed,
    Lost,
    Frozen,
    Superseded,
}

impl State {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Ours => "ours",
            Self::Stale => "stale",
            Self::Held => "held",
            Self::Unreadable => "unreadable",
            Self::Acquired => "acquired",
            Self::TimedOut => "timed-out",
            Self::Interrupted => "interrupted",
            Self::Released => "released",
            Self::Refused => "refused",
            Self::Broken => "broken",
            Self::Renewed => "renewed",
            Self::Lost => "lost",
            Self::Frozen => "frozen",
            Self::Superseded => "superseded",
        }
    }
}

/// What a command did: everything its report needs, and its exit code.
#[derive(Debug)]
pub enum Outcome {
    Checked {
        env: Environment,
        state: State,
        lock: Option<LockView>,
    },
    Acquired(Acquisition),
    Blocked(Blocked),
    /// A signal ended an acquire; `given_back` when the lock was taken meanwhile and released.
    AcquireInterrupted {
        env: Environment,
        waited: Duration,
        taken: bool,
    },
    /// A newer run with our supersede key joined the queue: we left it without the lock.
    Superseded {
        env: Environment,
        by: Box<Waiter>,
        waited: Duration,
    },
    Released(Released),
    Waited(Waited),
    Broken {
        env: Environment,
        reason: String,
        lock: Option<LockView>,
    },
    Status {
        store: String,
        locks: Vec<Row>,
        /// `--stuck-after`: `locks` are the ones held longer than this.
        stuck_after: Option<Duration>,
        /// Each environment's live waiters in queue order (environments without a lock too).
        queues: std::collections::BTreeMap<String, Vec<crate::lock::waiters::Waiter>>,
        /// The freeze window in force, per frozen environment (none with `--stuck-after`).
        frozen: std::collections::BTreeMap<String, crate::lock::Window>,
    },
    Renewed(Renewal),
    History {
        env: Environment,
        events: Vec<crate::lock::LockEvent>,
    },
    Ran(Ran),
    /// An acquire refused during a freeze (or whose wait ran out before the freeze ended).
    Frozen {
        env: Environment,
        window: crate::lock::Window,
        timed_out: bool,
    },
    /// Freeze windows: environment, in force now, the window; and what `freeze` or `unfreeze`
    /// changed.
    Freezes {
        rows: Vec<(String, bool, crate::lock::Window)>,
        changed: Option<super::freeze::Change>,
    },
    /// One outcome per member of a lock set, in name order.
    Each(Vec<Outcome>),
    Stats(super::stats::StatsOutcome),
    Dashboard(super::dashboard::Delivered),
    Reaped(Reaping),
}

impl Outcome {
    /// The process exit code this outcome ends with.
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        let code = match self {
            Self::Checked { state, .. } if *state == State::Held => ExitCode::Held,
            Self::Blocked(b) if b.timed_out => ExitCode::TimedOut,
            Self::Frozen {
                timed_out: true, ..
            } => ExitCode::TimedOut,
            Self::Blocked(_) | Self::Frozen { .. } => ExitCode::Held,
            Self::AcquireInterrupted { .. } => ExitCode::Interrupted,
            Self::Superseded { .. } => ExitCode::Superseded,
            Self::Released(r) => r.exit_code(),
            Self::Waited(w) => w.exit_code(),
            Self::Renewed(r) => r.exit_code(),
            Self::Ran(r) => return r.exit_code(),
            // A lost member decides (as a lost lock ends `run`); else the first member that did
            // not end well.
            Self::Each(members) => {
                let codes = members.iter().map(Outcome::exit_code);
                let lost = ExitCode::Lost.code();
                return if codes.clone().any(|c| c == lost) {
                    lost
                } else {
                    codes.clone().find(|&c| c != 0).unwrap_or(0)
                };
            }
            Self::Status {
                stuck_after: Some(_),
                locks,
                ..
            } if !locks.is_empty() => ExitCode::Held,
            _ => ExitCode::Ok,
        };
        code.code()
    }
}

/// The lock is ours.
#[derive(Debug, Clone)]
pub struct Acquisition {
    pub env: Environment,
    pub pipeline: Pipeline,
    pub record: LockRecord,
    /// The lock's version after our latest write: a release or renewal conditional on it needs
    /// no read first.
    pub etag: String,
    /// It was already ours (nested in the acquisition that took it): the caller must not
    /// release it, and must not shorten its ttl.
    pub reentrant: bool,
    pub stolen_from: Option<Holder>,
    /// The conclusion of `stolen_from`'s run, when it was taken over because that run ended.
    pub reaped: Option<String>,
    pub waited: Duration,
    /// The ttl we asked for.
    pub ttl: Duration,
    pub releases_itself: bool,
    /// What `release` needs besides PIPELINE ENV to act as this holder: the `--build-id` and
    /// `--token` this acquire was given.
    pub release_with: String,
}

impl Acquisition {
    /// The identity of this acquisition: ours, with its token.
    #[must_use]
    pub fn holder(&self, cfg: &Config) -> Identity {
        cfg.holder(&self.pipeline, &self.record.token)
    }
}

/// Someone else holds the lock.
#[derive(Debug)]
pub struct Blocked {
    pub env: Environment,
    pub lock: Box<LockView>,
    pub waited: Duration,
    pub timed_out: bool,
    /// Taken outside CI by this user on this host from another process: say how to act as it.
    pub same_user_and_host: Option<(String, String)>,
}

/// What a release found.
#[derive(Debug)]
pub struct Released {
    pub env: Environment,
    pub how: How,
}

#[derive(Debug)]
pub enum How {
    /// Released. `by` is this user and host when the lock was theirs from another process.
    Released {
        lock: Box<LockView>,
        by: Option<(String, String)>,
    },
    /// There was no lock.
    Absent,
    /// Someone else's: not released. `pipeline` and `build_id` are who we are.
    Refused {
        lock: Box<LockView>,
        pipeline: Pipeline,
        build_id: String,
    },
}

impl Released {
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        match self.how {
            How::Refused { .. } => ExitCode::Held,
            _ => ExitCode::Ok,
        }
    }
}

/// What giving back a lock we took found (`run` at its command's end, the action's post step).
#[derive(Debug)]
pub enum Handback {
    Released(Box<LockView>),
    /// Already gone: released by a later step, broken, or expired.
    Absent,
    /// Someone else holds it now: left alone.
    HeldByOther(Box<LockView>),
    /// The store did not answer: the lock expires after its ttl.
    Failed(String),
}

#[derive(Debug)]
pub struct Waited {
    pub env: Environment,
    pub waited: Duration,
    pub end: WaitEnd,
}

#[derive(Debug)]
pub enum WaitEnd {
    Free,
    TimedOut(Box<LockView>),
    Interrupted,
}

impl Waited {
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        match self.end {
            WaitEnd::Free => ExitCode::Ok,
            WaitEnd::TimedOut(_) => ExitCode::TimedOut,
            WaitEnd::Interrupted => ExitCode::Interrupted,
        }
    }
}

#[derive(Debug)]
pub struct Renewal {
    pub env: Environment,
    pub end: RenewEnd,
}

#[derive(Debug)]
pub enum RenewEnd {
    Renewed(Box<LockView>),
    /// Taken by this user on this host from another process, and we have no token: not ours.
    NotOurs {
        lock: Box<LockView>,
        actor: String,
        host: String,
    },
    Lost(Option<Box<LockView>>),
    /// Renewed without the token, and the lock is someone else's (or there is none): nothing
    /// shows this caller ever held it.
    NotHeld(Option<Box<LockView>>),
}

impl Renewal {
    #[must_use]
    pub fn exit_code(&self) -> ExitCode {
        match self.end {
            RenewEnd::Renewed(_) => ExitCode::Ok,
            RenewEnd::NotOurs { .. } | RenewEnd::NotHeld(Some(_)) => ExitCode::Held,
            RenewEnd::Lost(_) | RenewEnd::NotHeld(None) => ExitCode::Lost,
        }
    }
}

/// One environment's lock as listed. Names come from the store's listing: anyone who can write
/// to the container chooses them, so each says whether it is a valid environment name.
#[derive(Debug)]
pub struct Row {
    pub env: String,
    /// The slot of `env` this lock is (capacity, `lock/slots.rs`); 1 for a plain lock.
    pub slot: u32,
    pub valid_name: bool,
    pub lock: std::result::Result<LockView, StoreError>,
}

impl Row {
    #[must_use]
    pub fn state(&self) -> State {
        match &self.lock {
            Ok(l) if l.is_stale() => State::Stale,
            Ok(_) => State::Held,
            Err(_) => State::Unreadable,
        }
    }
}

/// How `run` ended.
#[derive(Debug)]
pub struct Ran {
    pub env: Environment,
    /// The command's exit code (128 + signal when a signal ended it).
    pub code: i32,
    pub lost: bool,
    /// Nested in this outer holder's acquisition, which keeps the lock.
    pub outer_holder: Option<String>,
    /// What giving the lock back found, when it was ours to give back.
    pub handback: Option<Handback>,
}

impl Ran {
    #[must_use]
    pub fn exit_code(&self) -> i32 {
        if self.lost {
            ExitCode::Lost.code()
        } else {
            self.code
        }
    }
}

/// What `reap` removed: each lock and queue ticket of a run that ended.
#[derive(Debug, Default)]
pub struct Reaping {
    /// How many environments were looked at.
    pub checked: usize,
    pub removed: Vec<ReapedItem>,
}

/// One removal by `reap`.
#[derive(Debug)]
pub struct ReapedItem {
    pub env: String,
    /// The lock's holder, or None for a queue ticket.
    pub lock: Option<Box<LockView>>,
    pub run: CiRun,
    pub conclusion: String,
}
