//! Application Insights: every lock event as a custom event `deploy-lock.<event>`, and the wait
//! and hold durations as custom metrics, posted to the connection string's `IngestionEndpoint`
//! (`/v2/track`, a JSON array of envelopes). The events of one acquisition share an operation id
//! derived from its token, so the release in another process (the post step, a later job) lines
//! up with the wait and the hold.

use serde_json::{Map, Value, json};

use super::http::{Courier, Post};
use super::names::event_name;
use crate::exit::{Failure, Result};
use crate::lock::{EventKind, LockEvent};
use crate::store::azure::http::request_id;

/// Where a connection string without an `IngestionEndpoint` sends (the global endpoint).
pub const DEFAULT_INGESTION: &str = "https://dc.services.visualstudio.com/";

/// An Application Insights connection string, parsed once. The whole string is masked on CI; the
/// instrumentation key alone is not a secret (it is in every envelope).
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    pub instrumentation_key: String,
    /// The ingestion endpoint, ending in `/`.
    pub ingestion: String,
}

impl std::fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectionString(redacted)")
    }
}

fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl ConnectionString {
    /// `InstrumentationKey=GUID;IngestionEndpoint=https://…;…`. Errors never show the value.
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| {
            Failure::usage(format!(
                "--app-insights / APPLICATIONINSIGHTS_CONNECTION_STRING is not a usable \
                 Application Insights connection string: {why}; copy it from the resource's \
                 Overview page (`InstrumentationKey=…;IngestionEndpoint=https://…`). The value is \
                 not shown"
            ))
        };
        let mut key = None;
        let mut ingestion = None;
        for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = part.split_once('=') else {
                return Err(bad("each part must be NAME=VALUE"));
            };
            match name.trim().to_ascii_lowercase().as_str() {
                "instrumentationkey" => key = Some(value.trim().to_ascii_lowercase()),
                "ingestionendpoint" => ingestion = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        let key = key.ok_or_else(|| bad("it has no InstrumentationKey"))?;
        if !is_guid(&key) {
            return Err(bad("its InstrumentationKey is not a GUID"));
        }
        let ingestion = ingestion.unwrap_or_else(|| DEFAULT_INGESTION.to_owned());
        super::url_host(&ingestion).map_err(|why| {
            bad(&format!(
                "its IngestionEndpoint is not a usable URL ({why})"
            ))
        })?;
        if ingestion.contains(['?', '#']) {
            return Err(bad("its IngestionEndpoint must be a plain address"));
        }
        Ok(Self {
            instrumentation_key: key,
            ingestion: format!("{}/", ingestion.trim_end_matches('/')),
        })
    }

    /// Where envelopes are posted.
    #[must_use]
    pub fn track_url(&self) -> String {
        format!("{}v2/track", self.ingestion)
    }
}

/// Sends every event, with its metrics, to Application Insights.
pub struct AppInsights {
    instrumentation_key: String,
    courier: Courier,
}

impl AppInsights {
    #[must_use]
    pub fn new(instrumentation_key: String, courier: Courier) -> Self {
        Self {
            instrumentation_key,
            courier,
        }
    }
}

impl crate::lock::EventSink for AppInsights {
    fn record(&self, event: &LockEvent) {
        let operation = if event.operation.is_empty() {
            request_id().replace('-', "")
        } else {
            event.operation.clone()
        };
        let body = Value::Array(envelopes(event, &self.instrumentation_key, &operation));
        self.courier.send(Post {
            body: body.to_string().into_bytes(),
            content_type: "application/json",
            what: format!("{} event of {}", event_name(&event.kind), event.environment),
        });
    }
}

/// The dimensions of an event: what the KQL in docs/monitoring.md groups and filters by.
fn properties(event: &LockEvent) -> Map<String, Value> {
    let mut p = Map::new();
    let mut put = |name: &str, value: String| {
        if !value.is_empty() {
            p.insert(name.to_owned(), Value::String(value));
        }
    };
    put("environment", event.environment.clone());
    put("event", event_name(&event.kind).to_owned());
    put("pipeline", event.pipeline.clone());
    put("build_id", event.build_id.clone());
    put("job", event.job.clone());
    put("actor", event.actor.clone());
    put("repository", event.repository.clone());
    put("run_url", event.run_url.clone());
    put("reason", event.reason.clone());
    put(
        "fence",
        event.fence.map(|f| f.to_string()).unwrap_or_default(),
    );
    put("other", event.other.clone());
    put(
        "position",
        event.position.map(|q| q.to_string()).unwrap_or_default(),
    );
    p
}

/// The metrics an event carries: how long an acquire waited (acquired, stolen, timed out) and
/// how long a lock was held (released, broken).
fn metrics(event: &LockEvent) -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    if let (EventKind::Acquire | EventKind::Steal | EventKind::TimedOut, Some(waited)) =
        (&event.kind, event.waited_seconds)
    {
        out.push(("deploy-lock.wait_seconds", waited as f64));
    }
    if let (EventKind::Release | EventKind::ForceBreak, Some(held)) =
        (&event.kind, event.held_seconds)
    {
        out.push(("deploy-lock.hold_seconds", held.max(0) as f64));
    }
    out
}

/// The envelopes of one event: a custom event, then one metric per duration it carries; all
/// with the event's time (the store's) and `operation` as their operation id.
#[must_use]
pub fn envelopes(event: &LockEvent, instrumentation_key: &str, operation: &str) -> Vec<Value> {
    let time = if event.at.is_empty() {
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    } else {
        event.at.clone()
    };
    let tags = json!({
        "ai.operation.id": operation,
        "ai.operation.name": format!("deploy-lock {}", event.environment),
        "ai.cloud.role": "deploy-lock",
        "ai.internal.sdkVersion": concat!("deploy-lock:", env!("CARGO_PKG_VERSION")),
    });
    let envelope = |kind: &str, data: Value| {
        json!({
            "name": format!("Microsoft.ApplicationInsights.{kind}"),
            "time": time,
            "iKey": instrumentation_key,
            "tags": tags,
            "data": data,
        })
    };
    let mut measurements = Map::new();
    if let Some(w) = event.waited_seconds {
        measurements.insert("waited_seconds".into(), json!(w));
    }
    if let Some(h) = event.held_seconds {
        measurements.insert("held_seconds".into(), json!(h));
    }
    let mut out = vec![envelope(
        "Event",
        json!({
            "baseType": "EventData",
            "baseData": {
                "ver": 2,
                "name": format!("deploy-lock.{}", event_name(&event.kind)),
                "properties": properties(event),
                "measurements": measurements,
            },
        }),
    )];
    for (name, value) in metrics(event) {
        out.push(envelope(
            "Metric",
            json!({
                "baseType": "MetricData",
                "baseData": {
                    "ver": 2,
                    "metrics": [{"name": name, "kind": 0, "value": value, "count": 1}],
                    "properties": {
                        "environment": event.environment,
                        "event": event_name(&event.kind),
                    },
                },
            }),
        ));
    }
    out
}
