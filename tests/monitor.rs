//! Azure Monitor: envelopes as a loopback ingestion endpoint sees them, operation ids shared by
//! one acquisition's events, a dead endpoint, bad connection strings, and `status --stuck-after`.

use serde_json::Value;

use crate::support::receiver::{Receiver, Silent, refused_url};
use crate::support::{Backend, Cmd};

const IKEY: &str = "11111111-2222-3333-4444-555555555555";

fn connection_string(ingestion: &str) -> String {
    format!(
        "InstrumentationKey={IKEY};IngestionEndpoint={ingestion};LiveEndpoint=https://live.example/"
    )
}

fn cmd(store: &Backend, ingestion: &str) -> Cmd {
    store.cmd().env("DEPLOY_LOCK_BUILD_ID", "1").env(
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        connection_string(ingestion),
    )
}

/// Every envelope posted to `/v2/track`, in order.
fn envelopes(rx: &Receiver) -> Vec<Value> {
    rx.seen("/v2/track")
        .iter()
        .flat_map(|r| {
            assert_eq!(r.method, "POST");
            r.json()
                .as_array()
                .expect("a JSON array of envelopes")
                .clone()
        })
        .collect()
}

fn named<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter()
        .find(|e| e["data"]["baseData"]["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {all:?}"))
}

fn metric<'a>(all: &'a [Value], name: &str) -> &'a Value {
    all.iter()
        .find(|e| e["data"]["baseData"]["metrics"][0]["name"] == name)
        .unwrap_or_else(|| panic!("no metric {name} in {all:?}"))
}

#[test]
fn events_and_metrics_reach_application_insights() {
    let store = Backend::file();
    let rx = Receiver::start();
    let ingestion = rx.url("/");
    cmd(&store, &ingestion)
        .env("GITHUB_REPOSITORY", "octo/app")
        .args(["acquire", "prod", "--reason", "deploy 7"])
        .run()
        .code(0);
    cmd(&store, &ingestion)
        .args(["release", "prod"])
        .run()
        .code(0);
    let all = envelopes(&rx);

    let acquired = named(&all, "deploy-lock.acquired");
    assert_eq!(acquired["name"], "Microsoft.ApplicationInsights.Event");
    assert_eq!(acquired["iKey"], IKEY);
    assert!(chrono::DateTime::parse_from_rfc3339(acquired["time"].as_str().unwrap()).is_ok());
    assert_eq!(acquired["data"]["baseType"], "EventData");
    let props = &acquired["data"]["baseData"]["properties"];
    assert_eq!(props["environment"], "prod");
    assert_eq!(props["pipeline"], "local");
    assert_eq!(props["build_id"], "1");
    assert_eq!(props["reason"], "deploy 7");
    assert!(
        props["fence"]
            .as_str()
            .is_some_and(|f| f.parse::<u64>().is_ok())
    );

    let wait = metric(&all, "deploy-lock.wait_seconds");
    assert_eq!(wait["name"], "Microsoft.ApplicationInsights.Metric");
    assert_eq!(wait["data"]["baseType"], "MetricData");
    assert_eq!(
        wait["data"]["baseData"]["properties"]["environment"],
        "prod"
    );
    let hold = metric(&all, "deploy-lock.hold_seconds");
    assert!(hold["data"]["baseData"]["metrics"][0]["value"].is_f64());

    // The release ran in another process: the same acquisition, the same operation.
    let released = named(&all, "deploy-lock.released");
    let operation = &acquired["tags"]["ai.operation.id"];
    assert!(operation.as_str().is_some_and(|o| o.len() == 32));
    for e in [released, wait, hold] {
        assert_eq!(&e["tags"]["ai.operation.id"], operation, "{e}");
    }
    // Another acquisition, another operation.
    cmd(&store, &ingestion)
        .args(["acquire", "prod"])
        .run()
        .code(0);
    let again = envelopes(&rx);
    let second = again
        .iter()
        .rev()
        .find(|e| e["data"]["baseData"]["name"] == "deploy-lock.acquired")
        .expect("second acquisition");
    assert_ne!(&second["tags"]["ai.operation.id"], operation);
}

#[test]
fn a_dead_ingestion_endpoint_never_harms_the_lock() {
    let store = Backend::file();
    let silent = Silent::start();
    for ingestion in [silent.url("/"), refused_url("/")] {
        let out = cmd(&store, &ingestion).args(["acquire", "prod"]).run();
        out.code(0)
            .contains("could not send the acquired event of prod to Application Insights");
        store
            .cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "2")
            .args(["check", "prod"])
            .run()
            .code(3);
        cmd(&store, &ingestion)
            .args(["release", "prod"])
            .run()
            .code(0);
        assert!(!out.all().contains(IKEY), "{}", out.all());
    }
}

#[test]
fn bad_connection_strings_are_usage_errors_and_write_nothing() {
    let store = Backend::file();
    for bad in [
        "InstrumentationKey=s3cr3t".to_owned(),
        "s3cr3t".to_owned(),
        format!("InstrumentationKey={IKEY};IngestionEndpoint=http://s3cr3t.example/"),
    ] {
        let out = store
            .cmd()
            .args(["--debug", "acquire", "prod", "--app-insights", &bad])
            .run();
        out.code(2).contains("connection string");
        assert!(!out.all().contains("s3cr3t"), "{}", out.all());
        assert!(store.snapshot().is_empty(), "nothing written");
    }
}

/// Makes the lock on `env` look acquired `hours` ago (a long deployment that still renews it).
fn backdate(store: &Backend, env: &str, hours: i64) {
    let key = format!("deployment-lock-{env}");
    let mut record: Value = serde_json::from_slice(&store.locks()[&key]).expect("record");
    let then = chrono::Utc::now() - chrono::Duration::hours(hours);
    record["acquired_at"] = Value::String(then.to_rfc3339());
    store.put_raw(&key, record.to_string().as_bytes());
}

#[test]
fn status_stuck_after_lists_long_held_locks_exits_3_and_reports_them() {
    let store = Backend::file();
    let rx = Receiver::start();
    let ingestion = rx.url("/");
    cmd(&store, &ingestion)
        .args(["acquire", "prod"])
        .run()
        .code(0);
    cmd(&store, &ingestion)
        .args(["acquire", "qa"])
        .run()
        .code(0);
    store
        .cmd()
        .args(["status", "--stuck-after", "1h"])
        .run()
        .code(0)
        .contains("No lock");
    backdate(&store, "prod", 3);

    let out = cmd(&store, &ingestion)
        .args(["status", "--stuck-after", "2h", "--output", "json"])
        .args(["--notify", &format!("json:{}", rx.url("/hook"))])
        .run();
    out.code(3);
    let rows = out.json();
    let listed: Vec<&str> = rows["environments"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["environment"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["prod"]);
    let stuck = rx.seen("/hook");
    assert_eq!(stuck.len(), 1);
    let event = stuck[0].json();
    assert_eq!(event["type"], "deploy-lock.stuck");
    assert!(
        event["data"]["held_seconds"]
            .as_i64()
            .is_some_and(|h| h >= 3 * 3600 - 60)
    );
    // Application Insights gets it too, in the acquisition's operation.
    let all = envelopes(&rx);
    let acquired = named(&all, "deploy-lock.acquired");
    let reported = named(&all, "deploy-lock.stuck");
    assert_eq!(
        reported["data"]["baseData"]["properties"]["environment"],
        "prod"
    );
    assert_eq!(
        reported["tags"]["ai.operation.id"],
        acquired["tags"]["ai.operation.id"]
    );

    store
        .cmd()
        .args(["status", "--stuck-after", "2h"])
        .run()
        .code(3)
        .contains("prod");
    store
        .cmd()
        .args(["status", "--stuck-after", "soon"])
        .run()
        .code(2);
}

#[test]
fn the_task_takes_notify_and_app_insights_inputs_and_masks_them() {
    let store = Backend::file();
    let rx = Receiver::start();
    let (first, second) = (rx.url("/one/s3cr3tToken1"), rx.url("/two/s3cr3tToken2"));
    let out = store
        .cmd()
        .env("TF_BUILD", "True")
        .env("BUILD_BUILDID", "77")
        .env("SYSTEM_JOBID", "deploy")
        .env("INPUT_ENVIRONMENT", "prod")
        .env("INPUT_HEARTBEAT", "false")
        .env(
            "INPUT_NOTIFY",
            format!("json:{first}\n\n  slack:{second}\n"),
        )
        .env("INPUT_APPINSIGHTS", connection_string(&rx.url("/")))
        .args(["step", "main"])
        .run();
    out.code(0).contains("##vso[task.setsecret]");
    assert_eq!(rx.seen("/one/")[0].json()["type"], "deploy-lock.acquired");
    assert!(rx.seen("/two/")[0].json()["text"].is_string());
    let all = envelopes(&rx);
    assert_eq!(
        named(&all, "deploy-lock.acquired")["data"]["baseData"]["properties"]["build_id"],
        "77"
    );
    for line in out.all().lines().filter(|l| l.contains("s3cr3t")) {
        assert!(line.starts_with("##vso[task.setsecret]"), "{line}");
    }
}

#[test]
fn the_workbook_template_is_a_workbook() {
    let text = include_str!("../docs/monitoring/workbook.json");
    let workbook: Value = serde_json::from_str(text).expect("valid JSON");
    assert_eq!(workbook["version"], "Notebook/1.0");
    assert!(
        workbook["$schema"]
            .as_str()
            .is_some_and(|s| s.ends_with("workbook.json"))
    );
    assert!(workbook["fallbackResourceIds"].is_array());
    let queries: Vec<&str> = workbook["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["content"]["query"].as_str())
        .collect();
    for wanted in [
        "deploy-lock.wait_seconds",
        "deploy-lock.blocked",
        "deploy-lock.released",
    ] {
        assert!(queries.iter().any(|q| q.contains(wanted)), "{wanted}");
    }
}
