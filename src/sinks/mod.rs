//! Lock events sent over HTTP: webhooks (`--notify`: Slack, Microsoft Teams, CloudEvents) and
//! Azure Monitor (`--app-insights`: Application Insights). Each is an `EventSink` beside the
//! audit log, fed the same `LockEvent`s after the store write that made them.
//!
//! Sending never harms the lock: a background thread per destination posts each event within
//! five seconds (one retry), a failure is a warning, and the process waits for what is still
//! being sent for at most those five seconds when it ends. Webhook URLs and connection strings
//! carry tokens: they are `Secret`s, masked on CI and never printed, not even with `--debug`.

pub mod appinsights;
pub mod http;
pub mod names;
pub mod text;
pub mod webhook;

use std::path::PathBuf;

use crate::config::secrets::Secret;
use crate::exit::{Failure, Result};
use crate::lock::EventSink;
use crate::log;
use crate::store::azure::http::Http;

use self::appinsights::{AppInsights, ConnectionString};
use self::http::Courier;
use self::webhook::Webhook;
pub use names::{DEFAULT_NOTIFY_ON, EVENT_NAMES, Format, NotifyOn, event_name};

/// One `--notify` target: a format and its URL (a secret: it carries the webhook's token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub format: Format,
    pub url: Secret,
    /// Its place among the targets (1 for the first), to name it in messages without its URL.
    pub number: usize,
}

impl Target {
    /// `slack:URL`, `teams:URL`, `json:URL` or a bare `https://` URL. Errors never show the value.
    pub fn parse(text: &str, number: usize) -> Result<Self> {
        let text = text.trim();
        let (format, url) = match text.split_once(':') {
            Some((word, rest))
                if !word.eq_ignore_ascii_case("https") && !word.eq_ignore_ascii_case("http") =>
            {
                let format = match word.to_ascii_lowercase().as_str() {
                    "slack" => Format::Slack,
                    "teams" => Format::Teams,
                    "json" | "cloudevents" => Format::CloudEvents,
                    _ => {
                        return Err(Failure::usage(format!(
                            "--notify target {number}: {}; give slack:URL, teams:URL, json:URL \
                             (CloudEvents) or an https:// URL",
                            if word.len() <= 20 && word.bytes().all(|b| b.is_ascii_alphanumeric()) {
                                format!("`{word}` is not a kind of webhook")
                            } else {
                                "it is not a webhook (the value is not shown: it may hold a token)"
                                    .to_owned()
                            }
                        )));
                    }
                };
                (Some(format), rest.trim())
            }
            _ => (None, text),
        };
        let host = url_host(url).map_err(|why| {
            Failure::usage(format!(
                "--notify target {number} is not a usable webhook URL: {why} (the value is not \
                 shown: it may hold a token)"
            ))
        })?;
        Ok(Self {
            format: format.unwrap_or_else(|| Format::by_host(&host)),
            url: Secret::new(url),
            number,
        })
    }

    /// Names the target in messages, without its URL.
    #[must_use]
    pub fn label(&self) -> String {
        format!(
            "the {} (--notify target {})",
            self.format.label(),
            self.number
        )
    }
}

/// The host of an `https://` URL (or of `http://` to this machine, for tests and local relays),
/// or why it is not one. Secrets must not travel in clear text over a network.
pub fn url_host(url: &str) -> std::result::Result<String, &'static str> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("it contains spaces or control characters");
    }
    let lower = url.to_ascii_lowercase();
    let (rest, secure) = if let Some(rest) = lower.strip_prefix("https://") {
        (rest, true)
    } else if let Some(rest) = lower.strip_prefix("http://") {
        (rest, false)
    } else {
        return Err("it must start with https://");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err("it must not carry a user name or password before the host");
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err("it has no host");
    }
    if !secure && !matches!(host, "localhost" | "127.0.0.1" | "::1") {
        return Err("plain http:// is only for this machine (localhost); use https://");
    }
    Ok(host.to_owned())
}

/// Where lock events are sent beside the audit log.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub targets: Vec<Target>,
    pub notify_on: NotifyOn,
    pub app_insights: Option<ConnectionString>,
    /// Extra trusted CA certificates (`--ca-file`), as for the store.
    pub ca_file: Option<PathBuf>,
}

impl Settings {
    /// `--notify` values (one target each; `DEPLOY_LOCK_NOTIFY` split at commas), `--notify-on`
    /// names and `--app-insights` (or `APPLICATIONINSIGHTS_CONNECTION_STRING`).
    pub fn parse(
        notify: &[String],
        notify_on: &[String],
        app_insights: Option<&str>,
        ca_file: Option<PathBuf>,
    ) -> Result<Self> {
        let targets = notify
            .iter()
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
            .enumerate()
            .map(|(i, t)| Target::parse(t, i + 1))
            .collect::<Result<Vec<_>>>()?;
        let app_insights = app_insights
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(ConnectionString::parse)
            .transpose()?;
        Ok(Self {
            targets,
            notify_on: NotifyOn::parse(notify_on)?,
            app_insights,
            ca_file,
        })
    }

    /// Whether anything is sent anywhere.
    #[must_use]
    pub fn any(&self) -> bool {
        !self.targets.is_empty() || self.app_insights.is_some()
    }

    /// A sink per destination, each with its own sending thread. An HTTP client that cannot be
    /// set up (an unreadable CA file) is a warning: events still reach the audit log.
    #[must_use]
    pub fn open(&self) -> Vec<Box<dyn EventSink>> {
        if !self.any() {
            return Vec::new();
        }
        let http = match Http::new(self.ca_file.as_deref()) {
            Ok(http) => http,
            Err(e) => {
                log::warn(&format!(
                    "lock events are not sent to webhooks or Application Insights: {e}"
                ));
                return Vec::new();
            }
        };
        let mut sinks: Vec<Box<dyn EventSink>> = Vec::new();
        for target in &self.targets {
            let courier = Courier::start(http.clone(), target.url.clone(), target.label());
            sinks.push(Box::new(Webhook::new(
                target.format,
                self.notify_on.clone(),
                courier,
            )));
        }
        if let Some(cs) = &self.app_insights {
            let courier = Courier::start(
                http,
                Secret::new(cs.track_url()),
                "Application Insights (--app-insights)".to_owned(),
            );
            sinks.push(Box::new(AppInsights::new(
                cs.instrumentation_key.clone(),
                courier,
            )));
        }
        sinks
    }
}

#[cfg(test)]
mod tests;
