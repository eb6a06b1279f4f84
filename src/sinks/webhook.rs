//! Webhook payloads: a Slack incoming webhook's message, a Teams workflow's Adaptive Card, and a
//! CloudEvents 1.0 event; and the sink that sends the events `--notify-on` chose.
//!
//! Holder fields and reasons come from the store and the environment: each format escapes them
//! so they stay text (no mention, link or formatting of their own), and a run link is only made
//! of a plain `https://` address.

use serde_json::{Value, json};

use super::http::{Courier, Post};
use super::names::{Format, NotifyOn, event_name};
use super::text::{facts, headline, run_link};
use crate::lock::{EventSink, LockEvent};
use crate::store::azure::http::request_id;

/// Sends chosen events to one webhook in its format.
pub struct Webhook {
    format: Format,
    notify_on: NotifyOn,
    courier: Courier,
}

impl Webhook {
    #[must_use]
    pub fn new(format: Format, notify_on: NotifyOn, courier: Courier) -> Self {
        Self {
            format,
            notify_on,
            courier,
        }
    }
}

impl EventSink for Webhook {
    fn record(&self, event: &LockEvent) {
        if !self.notify_on.includes(&event.kind) {
            return;
        }
        let (body, content_type) = match self.format {
            Format::Slack => (slack(event), "application/json"),
            Format::Teams => (teams(event), "application/json"),
            Format::CloudEvents => (
                cloud_event(event, &request_id()),
                "application/cloudevents+json; charset=utf-8",
            ),
        };
        self.courier.send(Post {
            body: body.to_string().into_bytes(),
            content_type,
            what: format!("{} event of {}", event_name(&event.kind), event.environment),
        });
    }
}

/// Line breaks and other control characters as spaces: a notification field is one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Slack's `mrkdwn` reads `<…>` as links and mentions (`<!channel>`) and `&` as an entity: the
/// three are escaped as Slack documents.
fn slack_text(text: &str) -> String {
    one_line(text)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A Slack incoming webhook message: the headline as `text` (what notifications show) and as a
/// section, the facts as fields, and the run's link.
#[must_use]
pub fn slack(event: &LockEvent) -> Value {
    let title = slack_text(&headline(event));
    let fields: Vec<Value> = facts(event)
        .into_iter()
        .map(|(name, value)| json!({"type": "mrkdwn", "text": format!("*{name}*\n{}", slack_text(&value))}))
        .collect();
    let mut blocks = vec![
        json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("*{title}*")}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(link) = run_link(event).filter(|l| !l.contains(['|', '<', '>'])) {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("<{link}|Open the run>")}],
        }));
    }
    json!({"text": title, "blocks": blocks})
}

/// Adaptive Cards read a subset of Markdown in text and facts (emphasis, lists, links): its
/// signs are escaped with a backslash, so a reason cannot carry a link of its own.
fn card_text(text: &str) -> String {
    let mut out = String::new();
    for c in one_line(text).chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '[' | ']' | '(' | ')' | '<' | '>' | '`' | '#' | '~' | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A Teams workflow webhook message ("Post to a channel when a webhook request is received"):
/// one Adaptive Card with the headline, the facts and a button to the run.
#[must_use]
pub fn teams(event: &LockEvent) -> Value {
    let facts: Vec<Value> = facts(event)
        .into_iter()
        .map(|(name, value)| json!({"title": name, "value": card_text(&value)}))
        .collect();
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": card_text(&headline(event)), "weight": "Bolder", "size": "Medium", "wrap": true},
            {"type": "FactSet", "facts": facts},
        ],
    });
    if let Some(link) = run_link(event) {
        card["actions"] = json!([{"type": "Action.OpenUrl", "title": "Open the run", "url": link}]);
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }],
    })
}

/// A CloudEvents 1.0 event in structured JSON: `type` is `deploy-lock.<event>`, `subject` the
/// environment, `time` the store's time of the event, and `data` the event's fields (as the
/// audit log writes them, with the event's name and its acquisition's `operation` id).
#[must_use]
pub fn cloud_event(event: &LockEvent, id: &str) -> Value {
    let name = event_name(&event.kind);
    let mut data = serde_json::to_value(event).unwrap_or_else(|_| json!({}));
    data["event"] = json!(name);
    if !event.operation.is_empty() {
        data["operation"] = json!(event.operation);
    }
    let mut out = json!({
        "specversion": "1.0",
        "id": id,
        "source": "urn:deploy-lock",
        "type": format!("deploy-lock.{name}"),
        "subject": event.environment,
        "datacontenttype": "application/json",
        "data": data,
    });
    if !event.at.is_empty() {
        out["time"] = json!(event.at);
    }
    out
}
