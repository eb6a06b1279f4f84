//! Targets, event choice, connection strings and every payload, without a network.

use serde_json::Value;

use super::appinsights::{ConnectionString, DEFAULT_INGESTION, envelopes};
use super::webhook::{cloud_event, slack, teams};
use super::*;
use crate::exit::ExitCode;
use crate::lock::{EventKind, LockEvent};

const IKEY: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

fn event(kind: EventKind) -> LockEvent {
    LockEvent {
        at: "2025-01-02T03:04:05.000Z".into(),
        kind,
        environment: "prod".into(),
        pipeline: "github".into(),
        build_id: "42".into(),
        job: "deploy".into(),
        actor: "octo<!channel>".into(),
        run_url: "https://github.com/o/r/actions/runs/42".into(),
        repository: "o/r".into(),
        fence: Some(7),
        reason: "fix [click](https://evil.example) & <@U1>".into(),
        waited_seconds: Some(90),
        held_seconds: Some(600),
        operation: "ab".repeat(16),
        ..LockEvent::default()
    }
}

#[test]
fn targets_take_a_format_or_pick_it_by_host() {
    let t = |s: &str| Target::parse(s, 1).map(|t| t.format);
    assert_eq!(t("slack:https://example.com/x").ok(), Some(Format::Slack));
    assert_eq!(t("teams:https://example.com/x").ok(), Some(Format::Teams));
    assert_eq!(
        t("json:https://example.com/x").ok(),
        Some(Format::CloudEvents)
    );
    assert_eq!(
        t("https://hooks.slack.com/services/T/B/x").ok(),
        Some(Format::Slack)
    );
    for teams in [
        "https://contoso.webhook.office.com/webhookb2/x",
        "https://prod-12.westeurope.logic.azure.com:443/workflows/x?sig=y",
        "https://default1.ab.environment.api.powerplatform.com:443/powerautomate/x",
    ] {
        assert_eq!(t(teams).ok(), Some(Format::Teams), "{teams}");
    }
    assert_eq!(
        t("https://events.example.com/in").ok(),
        Some(Format::CloudEvents)
    );
    assert_eq!(
        t("json:http://127.0.0.1:8080/hook").ok(),
        Some(Format::CloudEvents)
    );
}

#[test]
fn bad_targets_are_usage_errors_that_never_show_the_url() {
    for bad in [
        "http://hooks.example.com/s3cr3t",
        "slak:https://hooks.slack.com/s3cr3t",
        "hooks.slack.com/services/s3cr3t",
        "json:https://user:s3cr3t@example.com/",
        "slack:https://exa mple.com/s3cr3t",
        "json:https:///s3cr3t",
    ] {
        let e = Target::parse(bad, 2).expect_err(bad);
        assert_eq!(e.code, ExitCode::Usage);
        let said = e.to_string();
        assert!(!said.contains("s3cr3t"), "{said}");
        assert!(said.contains("target 2"), "{said}");
    }
}

#[test]
fn notify_on_defaults_and_choices() {
    let default = NotifyOn::parse(&[]).expect("default");
    for kind in [
        EventKind::Acquire,
        EventKind::Release,
        EventKind::Steal,
        EventKind::ForceBreak,
        EventKind::Lost,
        EventKind::Free,
        EventKind::Stuck,
    ] {
        assert!(default.includes(&kind), "{kind}");
    }
    for kind in [EventKind::Blocked, EventKind::Waiting, EventKind::TimedOut] {
        assert!(!default.includes(&kind), "{kind}");
    }
    let chosen = NotifyOn::parse(&["blocked, waiting".into()]).expect("chosen");
    assert!(chosen.includes(&EventKind::Waiting) && !chosen.includes(&EventKind::Acquire));
    assert!(
        NotifyOn::parse(&["all".into()])
            .expect("all")
            .includes(&EventKind::TimedOut)
    );
    let e = NotifyOn::parse(&["acquire".into()]).expect_err("a verb");
    assert_eq!(e.code, ExitCode::Usage);
    assert!(e.to_string().contains("acquired"), "{e}");
}

#[test]
fn connection_strings() {
    let cs = ConnectionString::parse(&format!(
        "InstrumentationKey={};IngestionEndpoint=https://westeurope-5.in.applicationinsights.azure.com/;LiveEndpoint=https://x/",
        IKEY.to_uppercase()
    ))
    .expect("parse");
    assert_eq!(cs.instrumentation_key, IKEY);
    assert_eq!(
        cs.track_url(),
        "https://westeurope-5.in.applicationinsights.azure.com/v2/track"
    );
    let bare = ConnectionString::parse(&format!("InstrumentationKey={IKEY}")).expect("bare");
    assert_eq!(bare.ingestion, DEFAULT_INGESTION);
    for bad in [
        "s3cr3t".to_owned(),
        "InstrumentationKey=s3cr3t".to_owned(),
        format!("InstrumentationKey={IKEY};IngestionEndpoint=http://s3cr3t.example/"),
        format!("InstrumentationKey={IKEY};IngestionEndpoint=ftp://s3cr3t"),
        "IngestionEndpoint=https://s3cr3t.example/".to_owned(),
    ] {
        let e = ConnectionString::parse(&bad).expect_err(&bad);
        assert_eq!(e.code, ExitCode::Usage);
        assert!(!e.to_string().contains("s3cr3t"), "{e}");
        assert!(!format!("{cs:?}").contains(IKEY));
    }
}

#[test]
fn slack_messages_escape_mentions_and_links() {
    let v = slack(&event(EventKind::Acquire));
    let text = v["text"].as_str().expect("text");
    assert!(
        text.starts_with("prod is locked by github build 42"),
        "{text}"
    );
    let all = v.to_string();
    assert!(
        !all.contains("<!channel>") && !all.contains("<@U1>"),
        "{all}"
    );
    assert!(all.contains("&lt;!channel&gt;"), "{all}");
    assert_eq!(
        v["blocks"][2]["elements"][0]["text"],
        "<https://github.com/o/r/actions/runs/42|Open the run>"
    );
}

#[test]
fn teams_messages_carry_one_adaptive_card() {
    let v = teams(&event(EventKind::Release));
    assert_eq!(v["type"], "message");
    let attachment = &v["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert!(
        card["body"][0]["text"]
            .as_str()
            .is_some_and(|t| t.starts_with("prod is free: released by github build 42"))
    );
    let facts = card["body"][1]["facts"].as_array().expect("facts");
    let reason = facts
        .iter()
        .find(|f| f["title"] == "Reason")
        .expect("reason");
    assert!(
        reason["value"]
            .as_str()
            .is_some_and(|r| r.contains("\\[click\\]\\(https")),
        "{reason}"
    );
    assert_eq!(
        card["actions"][0]["url"],
        "https://github.com/o/r/actions/runs/42"
    );
    let mut plain = event(EventKind::Release);
    plain.run_url = "javascript:alert(1)".into();
    assert!(teams(&plain)["attachments"][0]["content"]["actions"].is_null());
}

#[test]
fn cloud_events_are_cloudevents_1_0() {
    let v = cloud_event(&event(EventKind::Steal), "id-1");
    assert_eq!(v["specversion"], "1.0");
    assert_eq!(v["id"], "id-1");
    assert_eq!(v["type"], "deploy-lock.stolen");
    assert_eq!(v["time"], "2025-01-02T03:04:05.000Z");
    assert!(v["source"].as_str().is_some_and(|s| !s.is_empty()));
    let data = &v["data"];
    assert_eq!(data["environment"], "prod");
    assert_eq!(data["event"], "stolen");
    assert_eq!(data["fence"], 7);
    assert_eq!(data["waited_seconds"], 90);
    assert_eq!(data["operation"], "ab".repeat(16));
}

#[test]
fn envelopes_are_an_event_and_its_metrics() {
    let released = envelopes(&event(EventKind::Release), IKEY, "op");
    assert_eq!(released.len(), 2, "the event and its hold time");
    let e = &released[0];
    assert_eq!(e["name"], "Microsoft.ApplicationInsights.Event");
    assert_eq!(e["iKey"], IKEY);
    assert_eq!(e["time"], "2025-01-02T03:04:05.000Z");
    assert_eq!(e["tags"]["ai.operation.id"], "op");
    assert_eq!(e["data"]["baseType"], "EventData");
    assert_eq!(e["data"]["baseData"]["name"], "deploy-lock.released");
    let props = &e["data"]["baseData"]["properties"];
    for (k, want) in [
        ("environment", "prod"),
        ("pipeline", "github"),
        ("build_id", "42"),
        ("job", "deploy"),
        ("repository", "o/r"),
        ("run_url", "https://github.com/o/r/actions/runs/42"),
        ("fence", "7"),
    ] {
        assert_eq!(props[k], want, "{k}");
    }
    assert!(
        props
            .as_object()
            .expect("props")
            .values()
            .all(Value::is_string)
    );
    let m = &released[1];
    assert_eq!(m["name"], "Microsoft.ApplicationInsights.Metric");
    assert_eq!(m["data"]["baseType"], "MetricData");
    assert_eq!(
        m["data"]["baseData"]["metrics"][0]["name"],
        "deploy-lock.hold_seconds"
    );
    assert_eq!(m["data"]["baseData"]["metrics"][0]["value"], 600.0);
    assert_eq!(m["data"]["baseData"]["properties"]["environment"], "prod");
    let acquired = envelopes(&event(EventKind::Acquire), IKEY, "op");
    assert_eq!(
        acquired[1]["data"]["baseData"]["metrics"][0]["name"],
        "deploy-lock.wait_seconds"
    );
    assert_eq!(envelopes(&event(EventKind::Waiting), IKEY, "op").len(), 1);
}

#[test]
fn the_events_of_one_acquisition_share_an_operation_id() {
    use crate::lock::operation_id;
    let token = "0123456789abcdef0123456789abcdef";
    let id = operation_id(token);
    assert_eq!(id.len(), 32);
    assert!(!id.contains(token) && id == operation_id(token));
    assert_ne!(id, operation_id(&"f".repeat(32)));
    assert_eq!(operation_id(""), "");
}

#[test]
fn headlines_say_what_happened() {
    let mut waiting = event(EventKind::Waiting);
    waiting.position = Some(2);
    waiting.other = "azdevops build 9".into();
    assert_eq!(
        text::headline(&waiting),
        "github build 42 (job deploy) is waiting for prod (number 2 in the queue), held by azdevops build 9"
    );
    assert_eq!(
        text::headline(&event(EventKind::Free)),
        "prod is free (github build 42 (job deploy) waited 1m 30s)"
    );
    assert_eq!(
        text::headline(&event(EventKind::Stuck)),
        "prod has been locked by github build 42 (job deploy) for 10m"
    );
}

#[test]
fn a_superseded_waiter_is_an_event_of_its_own_with_its_priority() {
    let mut superseded = event(EventKind::Superseded);
    superseded.other = "github build 43 (https://github.com/o/r/actions/runs/43)".into();
    superseded.priority = crate::lock::Priority::High;
    let line = text::headline(&superseded);
    assert!(line.contains("stopped waiting for prod"), "{line}");
    assert!(line.contains("superseded by github build 43"), "{line}");
    assert!(text::facts(&superseded).contains(&("Priority", "high".to_owned())));
    let chosen = NotifyOn::parse(&["superseded".into()]).expect("a name --notify-on takes");
    assert!(chosen.includes(&EventKind::Superseded));
    assert!(!NotifyOn::default().includes(&EventKind::Superseded));
}
