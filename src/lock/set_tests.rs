//! Lock sets against the in-memory store: name order, all or nothing, nested members left to
//! their holder, waiting for the whole set, and two sets in opposite orders.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use chrono::DateTime;

use super::*;
use crate::ci::RunInfo;
use crate::store::memory::MemoryStore;

const TTL: Duration = Duration::from_secs(60);

fn store() -> MemoryStore {
    let start = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
    let offset = Arc::new(AtomicI64::new(0));
    MemoryStore::with_clock(Box::new(move || {
        start + chrono::Duration::seconds(offset.load(Ordering::SeqCst))
    }))
}

fn who(build: &str) -> Identity {
    Identity {
        pipeline: "github".into(),
        build_id: build.into(),
        job: "deploy".into(),
        ..Identity::default()
    }
}

fn set(locker: &Locker<'_>, envs: &[&str], me: &Identity, wait: Option<Duration>) -> SetAcquired {
    let run = RunInfo::default();
    let holding = Holding::new(&run, "test");
    locker
        .acquire_set(envs, me, &holding, wait)
        .expect("acquire set")
}

fn one(locker: &Locker<'_>, env: &str, me: &Identity) -> LockRecord {
    let run = RunInfo::default();
    let holding = Holding::new(&run, "test");
    match locker.acquire(env, me, &holding, None).expect("acquire") {
        Acquired::Taken { record, .. } => record,
        other => panic!("not taken: {other:?}"),
    }
}

fn token_on(locker: &Locker<'_>, env: &str) -> Option<String> {
    locker
        .read(env)
        .expect("read")
        .and_then(|l| l.holder.record().map(|r| r.token.clone()))
}

#[test]
fn a_set_is_taken_in_name_order_with_a_token_per_member() {
    let store = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(1));
    let SetAcquired::Taken { members, .. } = set(&locker, &["us", "eu", "us"], &who("1"), None)
    else {
        panic!("set not taken");
    };
    let names: Vec<&str> = members.iter().map(|m| m.environment.as_str()).collect();
    assert_eq!(names, ["eu", "us"]);
    assert_ne!(members[0].record.token, members[1].record.token);
    for m in &members {
        assert_eq!(
            token_on(&locker, &m.environment).as_ref(),
            Some(&m.record.token)
        );
    }
}

#[test]
fn a_held_member_leaves_nothing_of_the_set_held() {
    let store = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(1));
    let other = one(&locker, "us", &who("2"));
    match set(&locker, &["eu", "us", "zz"], &who("1"), None) {
        SetAcquired::Blocked {
            environment,
            lock,
            timed_out,
            ..
        } => {
            assert_eq!(environment, "us");
            assert_eq!(lock.holder.build_id(), "2");
            assert!(!timed_out);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(token_on(&locker, "eu"), None, "eu was left half-taken");
    assert_eq!(token_on(&locker, "zz"), None);
    assert_eq!(token_on(&locker, "us"), Some(other.token));
}

#[test]
fn a_member_already_ours_stays_with_its_holder_when_the_set_is_blocked() {
    let store = store();
    let locker = Locker::new(&store, TTL, Duration::from_millis(1));
    let outer = one(&locker, "eu", &who("1"));
    one(&locker, "us", &who("2"));
    assert!(matches!(
        set(&locker, &["eu", "us"], &who("1"), None),
        SetAcquired::Blocked { .. }
    ));
    assert_eq!(token_on(&locker, "eu"), Some(outer.token));
}

#[test]
fn a_waiting_set_takes_every_member_once_the_held_one_is_free() {
    let store = store();
    let other = who("2");
    let held = {
        let locker = Locker::new(&store, TTL, Duration::from_millis(1));
        one(&locker, "us", &other)
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let locker = Locker::new(&store, TTL, Duration::from_millis(1));
            // Most likely after the set found `us` held and began to wait.
            std::thread::sleep(Duration::from_millis(50));
            let me = Identity {
                token: Some(held.token.clone()),
                ..other.clone()
            };
            locker.release("us", &me).expect("release");
        });
        let locker = Locker::new(&store, TTL, Duration::from_millis(1));
        match set(
            &locker,
            &["us", "eu"],
            &who("1"),
            Some(Duration::from_secs(60)),
        ) {
            SetAcquired::Taken { members, .. } => assert_eq!(members.len(), 2),
            other => panic!("{other:?}"),
        }
    });
}

#[test]
fn two_sets_in_opposite_orders_both_finish_and_never_overlap() {
    let store = store();
    let inside = AtomicBool::new(false);
    let start = Barrier::new(2);
    std::thread::scope(|s| {
        for (build, envs) in [("1", ["eu", "us"]), ("2", ["us", "eu"])] {
            let (store, inside, start) = (&store, &inside, &start);
            s.spawn(move || {
                let locker = Locker::new(store, TTL, Duration::from_millis(1));
                let me = who(build);
                start.wait();
                for _ in 0..20 {
                    let SetAcquired::Taken { members, .. } =
                        set(&locker, &envs, &me, Some(Duration::from_secs(60)))
                    else {
                        panic!("c{build} did not get the set");
                    };
                    assert!(
                        !inside.swap(true, Ordering::SeqCst),
                        "two sets held at once"
                    );
                    inside.store(false, Ordering::SeqCst);
                    locker.give_back(&members, &me);
                }
            });
        }
    });
}
