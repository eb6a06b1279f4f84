//! Lock sets: several environments taken together, all or nothing (docs/design.md, Lock sets).
//!
//! A set is built from the single-environment acquire, never inside it: members are taken one by
//! one in name order with a fail-fast acquire, so two sets that share members always contend on
//! the lowest shared name first and never hold one member each while waiting for the other's.
//! When a member is held, the members taken so far are given back before anything else happens,
//! and a waiting set waits for that member to be free without holding any part of itself. Each
//! member is its own acquisition: its own token (unless one is given), its own fencing number.

use std::time::Duration;

use super::freeze::{Admit, Window};
use super::locker::{Acquired, Holding, Locker, Waited};
use super::protocol::{AcquireStep, Identity, LockView, acquire_step, time_left};
use super::record::{Holder, LockRecord};
use crate::log;

/// One member of a set that we hold now.
#[derive(Debug)]
pub struct Member {
    pub environment: String,
    pub record: LockRecord,
    /// The lock's version after our write, for the fencing write that follows.
    pub etag: String,
    /// It was already ours: nested in the acquisition that took it, which releases it.
    pub reentrant: bool,
    pub stolen_from: Option<Holder>,
}

#[derive(Debug)]
pub enum SetAcquired {
    /// Every member is ours, in name order.
    Taken {
        members: Vec<Member>,
        waited: Duration,
    },
    /// A member is held by someone else; nothing of the set is held.
    Blocked {
        environment: String,
        lock: Box<LockView>,
        waited: Duration,
        timed_out: bool,
    },
    /// A signal arrived; nothing of the set is held.
    Cancelled { waited: Duration },
    /// A freeze window of a member is in force (and we did not wait, or it outlasted the wait);
    /// nothing of the set is held.
    Frozen {
        environment: String,
        window: Box<Window>,
        waited: Duration,
        timed_out: bool,
    },
}

/// The members in the order they are taken: by name, each once.
#[must_use]
pub fn ordered<'e>(environments: &[&'e str]) -> Vec<&'e str> {
    let mut sorted = environments.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

impl Locker<'_> {
    /// Takes every lock of `environments`, or none: waits up to `wait` for the whole set when
    /// given, holding no member while it waits.
    pub fn acquire_set(
        &self,
        environments: &[&str],
        me: &Identity,
        holding: &Holding<'_>,
        wait: Option<Duration>,
    ) -> anyhow::Result<SetAcquired> {
        let started = self.clock.elapsed();
        let members = ordered(environments);
        let mut told = false;
        loop {
            // The freeze windows of every member, read once for each pass before any is taken.
            match self.admit_set(&members, me, time_left(wait, self.since(started)))? {
                None | Some((_, Admit::Go)) => {}
                Some((environment, admit @ Admit::Wait { left, .. })) => {
                    admit.note(environment, &mut told);
                    if !self.pause(self.poll, left) {
                        return Ok(SetAcquired::Cancelled {
                            waited: self.since(started),
                        });
                    }
                    continue;
                }
                Some((environment, Admit::Frozen(window))) => {
                    return Ok(SetAcquired::Frozen {
                        environment: environment.to_owned(),
                        window,
                        waited: self.since(started),
                        timed_out: wait.is_some(),
                    });
                }
            }
            let one = self.ungated();
            let tried = one.try_set(&members, me, holding);
            self.saw(one.store_now());
            let blocked = match tried? {
                Try::Taken(members) => {
                    return Ok(SetAcquired::Taken {
                        members,
                        waited: self.since(started),
                    });
                }
                Try::Cancelled => {
                    return Ok(SetAcquired::Cancelled {
                        waited: self.since(started),
                    });
                }
                Try::Blocked(environment, lock) => (environment, lock),
            };
            let (environment, lock) = blocked;
            let Some(left) = time_left(wait, self.since(started)) else {
                return Ok(SetAcquired::Blocked {
                    environment,
                    lock,
                    waited: self.since(started),
                    timed_out: wait.is_some(),
                });
            };
            // Wait for the member that stopped us; then try the whole set again. When the wait
            // runs out, the loop makes one last try and then reports the set as timed out.
            if let Waited::Cancelled { .. } = self.wait_free(&environment, left)? {
                return Ok(SetAcquired::Cancelled {
                    waited: self.since(started),
                });
            }
        }
    }

    /// The first member whose freeze windows stop the set now, with what they say; a member
    /// that is ours already (nested) is not stopped, as a freeze never touches a held lock.
    fn admit_set<'m>(
        &self,
        members: &[&'m str],
        me: &Identity,
        left: Option<Duration>,
    ) -> anyhow::Result<Option<(&'m str, Admit)>> {
        for environment in members {
            let admit = self.admit(environment, left)?;
            if matches!(admit, Admit::Go)
                || matches!(
                    acquire_step(self.read(environment)?.as_ref(), me),
                    AcquireStep::Refresh { .. }
                )
            {
                continue;
            }
            return Ok(Some((environment, admit)));
        }
        Ok(None)
    }

    /// One pass over the members in order, fail-fast; on a held member, gives back what it took.
    fn try_set(
        &self,
        members: &[&str],
        me: &Identity,
        holding: &Holding<'_>,
    ) -> anyhow::Result<Try> {
        let mut taken: Vec<Member> = Vec::new();
        for environment in members {
            let acquired = match self.acquire(environment, me, holding, None) {
                Ok(a) => a,
                Err(e) => {
                    self.give_back(&taken, me);
                    return Err(e);
                }
            };
            match acquired {
                Acquired::Taken {
                    record,
                    etag,
                    reentrant,
                    stolen_from,
                    ..
                } => taken.push(Member {
                    environment: (*environment).to_owned(),
                    record,
                    etag,
                    reentrant,
                    stolen_from,
                }),
                Acquired::Blocked { lock, .. } => {
                    self.give_back(&taken, me);
                    return Ok(Try::Blocked((*environment).to_owned(), lock));
                }
                Acquired::Cancelled { .. } => {
                    self.give_back(&taken, me);
                    return Ok(Try::Cancelled);
                }
                // Members are taken fail-fast, and only a waiter in a queue is superseded; the
                // freeze windows were read for the whole set.
                Acquired::Superseded { .. } | Acquired::Frozen { .. } => {
                    self.give_back(&taken, me);
                    return Err(anyhow::anyhow!(
                        "internal error: a member of a set was superseded or frozen on its own"
                    ));
                }
            }
        }
        Ok(Try::Taken(taken))
    }

    /// Releases the members taken in this pass, last first. A member that was already ours
    /// belongs to the acquisition that took it and stays held.
    pub fn give_back(&self, taken: &[Member], me: &Identity) {
        for member in taken.iter().rev().filter(|m| !m.reentrant) {
            let mine = Identity {
                token: Some(member.record.token.clone()),
                ..me.clone()
            };
            match self.release(&member.environment, &mine) {
                // Gone or someone else's: nothing of ours is left there.
                Ok(_) => {}
                Err(e) => log::warn(&format!(
                    "could not give back the lock on {} while another member of the set is \
                     held ({e:#}); it expires after its ttl",
                    member.environment
                )),
            }
        }
    }
}

/// What one pass over the members found.
enum Try {
    Taken(Vec<Member>),
    Blocked(String, Box<LockView>),
    Cancelled,
}
