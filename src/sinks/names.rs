//! What the sinks call things: the events' names in notifications and Azure Monitor, which of
//! them `--notify-on` chose, and the webhook formats.

use std::collections::BTreeSet;

use crate::exit::{Failure, Result};
use crate::lock::EventKind;

/// The events `--notify` sends unless `--notify-on` says otherwise.
pub const DEFAULT_NOTIFY_ON: &[&str] = &["acquired", "released", "stolen", "broken", "lost"];

/// Every name `--notify-on` accepts (and `all`). New kinds of event add their name here.
pub const EVENT_NAMES: &[&str] = &[
    "acquired",
    "released",
    "blocked",
    "waiting",
    "stolen",
    "broken",
    "lost",
    "free",
    "stuck",
    "timed-out",
    "renew-failed",
    "frozen",
    "unfrozen",
    "freeze-override",
    "reaped",
    "superseded",
];

/// An event's name in notifications and Azure Monitor: what happened, in the past tense where
/// the audit log's name is a verb; a kind without its own name keeps the audit log's.
#[must_use]
pub fn event_name(kind: &EventKind) -> &str {
    match kind {
        EventKind::Acquire => "acquired",
        EventKind::Release => "released",
        EventKind::Steal => "stolen",
        EventKind::ForceBreak => "broken",
        EventKind::Freeze => "frozen",
        EventKind::Unfreeze => "unfrozen",
        other => other.as_str(),
    }
}

/// What a webhook is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Slack incoming webhook: `text` and `blocks`.
    Slack,
    /// A Microsoft Teams workflow (Power Automate) webhook: a message with an Adaptive Card.
    Teams,
    /// A CloudEvents 1.0 event in JSON (structured mode).
    CloudEvents,
}

impl Format {
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Slack => "Slack webhook",
            Self::Teams => "Teams webhook",
            Self::CloudEvents => "CloudEvents webhook",
        }
    }

    /// A bare URL's format, by its host.
    pub(super) fn by_host(host: &str) -> Self {
        let host = host.to_ascii_lowercase();
        if host == "hooks.slack.com" {
            Self::Slack
        } else if [
            ".webhook.office.com",
            ".logic.azure.com",
            ".api.powerplatform.com",
        ]
        .iter()
        .any(|suffix| host.ends_with(suffix))
        {
            Self::Teams
        } else {
            Self::CloudEvents
        }
    }
}

/// The event names `--notify-on` chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyOn(BTreeSet<String>);

impl Default for NotifyOn {
    fn default() -> Self {
        Self(DEFAULT_NOTIFY_ON.iter().map(|s| (*s).to_owned()).collect())
    }
}

impl NotifyOn {
    /// Comma-separated names (already split by clap), `all`, or nothing for the default.
    pub fn parse(names: &[String]) -> Result<Self> {
        let names: Vec<&str> = names
            .iter()
            .flat_map(|n| n.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .collect();
        if names.is_empty() {
            return Ok(Self::default());
        }
        let mut chosen = BTreeSet::new();
        for name in names {
            let name = name.to_ascii_lowercase();
            if name == "all" {
                chosen.extend(EVENT_NAMES.iter().map(|s| (*s).to_owned()));
            } else if EVENT_NAMES.contains(&name.as_str()) {
                chosen.insert(name);
            } else {
                return Err(Failure::usage(format!(
                    "--notify-on `{}` is not an event: choose from {} or all",
                    crate::ci::escape_controls(&name),
                    EVENT_NAMES.join(", ")
                )));
            }
        }
        Ok(Self(chosen))
    }

    /// Whether a webhook gets this event. `free` and `stuck` answer a question only `wait` and
    /// `status --stuck-after` ask, so they are always sent when those commands run.
    #[must_use]
    pub fn includes(&self, kind: &EventKind) -> bool {
        matches!(kind, EventKind::Free | EventKind::Stuck) || self.0.contains(event_name(kind))
    }
}
