//! Webhooks (`--notify`): every format as a loopback receiver sees it, the environment variables,
//! `wait --notify`, the waiters' queue, a dead webhook, and URLs that are never printed.

use serde_json::Value;

use crate::support::receiver::{Receiver, Silent, refused_url};
use crate::support::{Backend, Ci, Cmd};

/// A path that stands for a webhook's token: it must never be printed.
const TOKEN_PATH: &str = "/services/T0001/B0002/s3cr3tWebhookToken";

fn cmd(store: &Backend) -> Cmd {
    store.cmd().env("DEPLOY_LOCK_BUILD_ID", "1")
}

#[test]
fn every_format_is_sent_after_acquire_and_release() {
    let store = Backend::file();
    let rx = Receiver::start();
    let notify = [
        format!("--notify=slack:{}", rx.url("/slack")),
        format!("--notify=teams:{}", rx.url("/teams")),
        format!("--notify=json:{}", rx.url("/json")),
    ];
    cmd(&store)
        .args(["acquire", "prod", "--reason", "release 1.2 <!channel>"])
        .args(&notify)
        .run()
        .code(0);
    cmd(&store)
        .args(["release", "prod"])
        .args(&notify)
        .run()
        .code(0);

    let slack = rx.seen("/slack");
    assert_eq!(slack.len(), 2, "acquired and released");
    let text = slack[0].json()["text"].as_str().unwrap().to_owned();
    assert!(text.contains("prod is locked by local build 1"), "{text}");
    assert!(!slack[0].body.contains("<!channel>"), "{}", slack[0].body);
    assert!(
        slack[1].json()["text"]
            .as_str()
            .unwrap()
            .contains("prod is free")
    );
    assert_eq!(slack[0].headers["content-type"], "application/json");

    let teams = rx.seen("/teams");
    assert_eq!(teams.len(), 2);
    let card = teams[0].json();
    assert_eq!(card["type"], "message");
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(card["attachments"][0]["content"]["type"], "AdaptiveCard");

    let events: Vec<Value> = rx.seen("/json").iter().map(|r| r.json()).collect();
    assert_eq!(events.len(), 2);
    assert_eq!(
        rx.seen("/json")[0].headers["content-type"],
        "application/cloudevents+json; charset=utf-8"
    );
    let (acquired, released) = (&events[0], &events[1]);
    assert_eq!(acquired["specversion"], "1.0");
    assert_eq!(acquired["type"], "deploy-lock.acquired");
    assert_eq!(released["type"], "deploy-lock.released");
    assert_ne!(acquired["id"], released["id"]);
    assert!(acquired["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    assert_eq!(acquired["data"]["environment"], "prod");
    assert_eq!(acquired["data"]["build_id"], "1");
    assert_eq!(acquired["data"]["reason"], "release 1.2 <!channel>");
    assert!(acquired["data"]["fence"].is_u64());
    assert!(acquired["data"]["waited_seconds"].is_u64());
    assert!(released["data"]["held_seconds"].is_i64());
    assert_eq!(
        acquired["data"]["operation"], released["data"]["operation"],
        "one acquisition, one operation id, across processes"
    );
}

#[test]
fn the_environment_variables_choose_targets_and_events() {
    let store = Backend::file();
    let rx = Receiver::start();
    cmd(&store).args(["acquire", "prod"]).run().code(0);
    store
        .cmd()
        .env("DEPLOY_LOCK_BUILD_ID", "2")
        .env(
            "DEPLOY_LOCK_NOTIFY",
            format!("json:{},slack:{}", rx.url("/a"), rx.url("/b")),
        )
        .env("DEPLOY_LOCK_NOTIFY_ON", "blocked")
        .args(["acquire", "prod"])
        .run()
        .code(3);
    let blocked = rx.seen("/a");
    assert_eq!(blocked.len(), 1);
    assert_eq!(blocked[0].json()["type"], "deploy-lock.blocked");
    assert!(
        blocked[0].json()["data"]["other"]
            .as_str()
            .unwrap()
            .starts_with("local build 1")
    );
    assert!(
        rx.seen("/b")[0].json()["text"]
            .as_str()
            .unwrap()
            .contains("could not lock prod")
    );
    // Without blocked in the choice, the default sends nothing for it.
    store
        .cmd()
        .env("DEPLOY_LOCK_BUILD_ID", "2")
        .env("DEPLOY_LOCK_NOTIFY", format!("json:{}", rx.url("/c")))
        .args(["acquire", "prod"])
        .run()
        .code(3);
    assert!(rx.seen("/c").is_empty());
}

#[test]
fn wait_notify_says_when_the_environment_is_free() {
    let store = Backend::file();
    let rx = Receiver::start();
    cmd(&store).args(["acquire", "prod"]).run().code(0);
    let waiter = store
        .cmd()
        .args([
            "wait",
            "prod",
            "1",
            "--notify",
            &format!("json:{}", rx.url("/free")),
        ])
        .spawn();
    cmd(&store).args(["release", "prod"]).run().code(0);
    let out = waiter.wait_with_output().expect("wait");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let free = rx.seen("/free");
    assert_eq!(free.len(), 1);
    assert_eq!(free[0].json()["type"], "deploy-lock.free");
    assert_eq!(free[0].json()["data"]["environment"], "prod");
}

#[test]
fn a_waiter_says_its_place_in_the_queue_and_its_events_share_an_operation() {
    let store = Backend::file();
    let rx = Receiver::start();
    cmd(&store).args(["acquire", "prod"]).run().code(0);
    let waiter = store
        .cmd()
        .env("DEPLOY_LOCK_BUILD_ID", "2")
        .args([
            "acquire",
            "prod",
            "--wait",
            "1",
            "--notify-on",
            "waiting,acquired",
        ])
        .args(["--notify", &format!("json:{}", rx.url("/q"))])
        .spawn();
    let waiting = rx
        .wait_for("/q", |r| r.body.contains("deploy-lock.waiting"))
        .json();
    assert_eq!(waiting["data"]["position"], 1);
    assert!(
        waiting["data"]["other"]
            .as_str()
            .unwrap()
            .starts_with("local build 1")
    );
    cmd(&store).args(["release", "prod"]).run().code(0);
    let out = waiter.wait_with_output().expect("acquire");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events: Vec<Value> = rx.seen("/q").iter().map(|r| r.json()).collect();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[1]["type"], "deploy-lock.acquired");
    assert_eq!(
        events[0]["data"]["operation"],
        events[1]["data"]["operation"]
    );
}

#[test]
fn a_dead_webhook_never_harms_the_lock() {
    let store = Backend::file();
    let silent = Silent::start();
    let notify = [
        format!("--notify=json:{}", silent.url(TOKEN_PATH)),
        format!("--notify=slack:{}", refused_url(TOKEN_PATH)),
    ];
    let acquired = cmd(&store).args(["acquire", "prod"]).args(&notify).run();
    acquired
        .code(0)
        .contains("could not send the acquired event of prod");
    // The lock is held, by us.
    store
        .cmd()
        .env("DEPLOY_LOCK_BUILD_ID", "2")
        .args(["check", "prod"])
        .run()
        .code(3);
    cmd(&store)
        .args(["release", "prod"])
        .args(&notify)
        .run()
        .code(0);
    cmd(&store).args(["check", "prod"]).run().code(0);
    assert!(!acquired.all().contains("s3cr3t"), "{}", acquired.all());
}

#[test]
fn webhook_urls_are_never_printed() {
    let store = Backend::file();
    let rx = Receiver::start();
    rx.answer_with(404);
    let target = format!("json:{}", rx.url(TOKEN_PATH));
    for args in [
        vec!["--debug", "acquire", "prod", "--notify", &target],
        vec!["--debug", "release", "prod", "--notify", &target],
        vec!["--debug", "status", "--notify", &target, "--output", "json"],
    ] {
        let out = cmd(&store).args(&args).run();
        assert!(!out.all().contains("s3cr3t"), "{args:?}: {}", out.all());
    }
    assert_eq!(
        rx.seen(TOKEN_PATH).len(),
        2,
        "acquired and released; a 404 is not retried"
    );
    let history = cmd(&store)
        .args(["history", "prod", "--output", "json"])
        .run();
    assert!(
        !history.all().contains("s3cr3t"),
        "the audit log: {}",
        history.all()
    );
    for bad in [
        "slak:https://hooks.slack.com/services/s3cr3t".to_owned(),
        "http://hooks.example.com/services/s3cr3t".to_owned(),
    ] {
        let out = cmd(&store)
            .args(["--debug", "acquire", "qa", "--notify", &bad])
            .run();
        out.code(2);
        assert!(!out.all().contains("s3cr3t"), "{}", out.all());
    }
    // On CI the URL is masked before anything is printed, and appears nowhere else.
    for ci in Ci::ALL {
        let (k, v) = ci.env();
        let out = cmd(&store)
            .env(k, v)
            .env("DEPLOY_LOCK_NOTIFY", &target)
            .args(["check", "prod"])
            .run();
        let masks = out
            .all()
            .lines()
            .filter(|l| l.contains("s3cr3t"))
            .all(|l| l.starts_with("::add-mask::") || l.starts_with("##vso[task.setsecret]"));
        assert!(masks, "{ci:?}: {}", out.all());
        assert!(
            out.all().contains("s3cr3t"),
            "{ci:?}: the URL is masked: {}",
            out.all()
        );
    }
}
