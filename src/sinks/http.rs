//! Delivery of one destination's posts: a background thread that sends them in order through the
//! store's HTTP agent (its TLS roots, proxies and `--ca-file`), each within [`BUDGET`] with one
//! retry, so a dead endpoint costs the lock nothing and the process at most [`BUDGET`] at its end.
//!
//! The URL is a secret: messages name the destination by its label, and anything the HTTP layer
//! says is cleaned of the URL before it is printed.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::config::secrets::Secret;
use crate::log;
use crate::store::azure::http::{Http, Outgoing, RetryPolicy, retryable_status};

/// The most time one post takes, both attempts and the pause between them included; also the
/// most the process waits at its end for posts still being sent.
pub const BUDGET: Duration = Duration::from_secs(5);
/// The most one attempt takes.
const ATTEMPT: Duration = Duration::from_secs(2);
/// The pause before the retry.
const PAUSE: Duration = Duration::from_millis(250);
/// An answer's body is read up to this (only to keep the connection clean).
const MAX_ANSWER: u64 = 64 * 1024;

/// One request to send.
#[derive(Debug, Clone)]
pub struct Post {
    pub body: Vec<u8>,
    pub content_type: &'static str,
    /// What is sent, for messages (`acquired event of prod`).
    pub what: String,
}

/// Sends posts to one URL from a thread of its own; dropping it waits for the posts in flight,
/// at most [`BUDGET`].
pub struct Courier {
    sender: Option<Sender<Post>>,
    worker: Option<JoinHandle<()>>,
    /// When the owner stopped (the process is ending): posts must be done [`BUDGET`] after it.
    closing: Arc<OnceLock<Instant>>,
}

impl Courier {
    /// Starts the sending thread for `url`; `label` names the destination in messages.
    #[must_use]
    pub fn start(http: Http, url: Secret, label: String) -> Self {
        let (sender, receiver) = mpsc::channel();
        let closing = Arc::new(OnceLock::new());
        let worker = {
            let closing = Arc::clone(&closing);
            thread::Builder::new()
                .name("deploy-lock-sink".into())
                .spawn(move || deliver_all(&http, &url, &label, &receiver, &closing))
        };
        match worker {
            Ok(worker) => Self {
                sender: Some(sender),
                worker: Some(worker),
                closing,
            },
            Err(e) => {
                log::warn(&format!(
                    "lock events are not sent: cannot start a thread: {e}"
                ));
                Self {
                    sender: None,
                    worker: None,
                    closing,
                }
            }
        }
    }

    /// Queues a post; it is sent in the background.
    pub fn send(&self, post: Post) {
        if let Some(sender) = &self.sender {
            let _ = sender.send(post);
        }
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        let _ = self.closing.set(Instant::now());
        self.sender = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn deliver_all(
    http: &Http,
    url: &Secret,
    label: &str,
    posts: &Receiver<Post>,
    closing: &OnceLock<Instant>,
) {
    let mut dropped = 0usize;
    for post in posts {
        let start = Instant::now();
        let mut deadline = start + BUDGET;
        if let Some(closed) = closing.get() {
            deadline = deadline.min(*closed + BUDGET);
        }
        if deadline <= start {
            dropped += 1;
            continue;
        }
        match deliver(http, url, &post, deadline) {
            Ok(attempts) => log::debug(&format!(
                "sent the {} to {label} ({attempts} attempt(s))",
                post.what
            )),
            Err(why) => log::warn(&format!(
                "could not send the {} to {label} (the lock is not affected): {}",
                post.what,
                redact(&why, url)
            )),
        }
    }
    if dropped > 0 {
        log::warn(&format!(
            "{dropped} lock event(s) were not sent to {label}: it did not answer in time"
        ));
    }
}

/// Posts once, and once more after a retryable failure while the deadline allows. Returns the
/// attempts it took, or why it failed.
fn deliver(http: &Http, url: &Secret, post: &Post, deadline: Instant) -> Result<u32, String> {
    let headers = [("content-type", post.content_type)];
    let outgoing = Outgoing {
        method: "POST",
        url: url.expose(),
        headers: &headers,
        body: &post.body,
        max_body: MAX_ANSWER,
    };
    let mut attempt = 1;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = left.min(ATTEMPT);
        let policy = RetryPolicy {
            attempts: 1,
            connect_timeout: timeout,
            request_timeout: timeout,
            ..RetryPolicy::default()
        };
        let (why, again) = match http.exchange(&outgoing, &policy) {
            Ok(answer) if (200..300).contains(&answer.status) => return Ok(attempt),
            Ok(answer) => (
                format!("it answered HTTP {}", answer.status),
                retryable_status(answer.status),
            ),
            Err(e) => (e.message, e.retryable),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if !again || attempt >= 2 || left <= PAUSE + Duration::from_millis(100) {
            return Err(why);
        }
        thread::sleep(PAUSE);
        attempt += 1;
    }
}

/// `text` without the URL or its path (which carry the webhook's token).
fn redact(text: &str, url: &Secret) -> String {
    let mut out = text.to_owned();
    for part in crate::config::secrets::url_parts(url.expose()) {
        out = out.replace(&part, "(redacted)");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_never_carry_the_url() {
        let url = Secret::new("https://hooks.slack.com/services/T0/B0/s3cr3t");
        let said = redact(
            "invalid uri https://hooks.slack.com/services/T0/B0/s3cr3t and /services/T0/B0/s3cr3t",
            &url,
        );
        assert!(!said.contains("s3cr3t"), "{said}");
    }
}
