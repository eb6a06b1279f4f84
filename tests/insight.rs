//! What the audit logs and the queues show: waiters in `status`, `stats`, and the dashboard page
//! (its content and escaping here; rendered in a real browser in `browser.rs`), on every store.

use std::process::Child;
use std::time::{Duration, Instant};

use deploy_lock::config::secrets::Secret;
use deploy_lock::store::azure::client::{Client, Request};
use deploy_lock::store::azure::http::{Response, RetryPolicy};
use deploy_lock::store::azure::{AzureSettings, resolve};

use crate::support::{Backend, Cmd, TempDir, backends};

/// A reason no page may turn into markup.
pub const HOSTILE: &str = "<img src=x onerror=alert(1)>";
pub const WAITER_URL: &str = "https://github.example/org/app/actions/runs/3";

fn as_build(b: &Backend, build: &str) -> Cmd {
    b.cmd().env("DEPLOY_LOCK_BUILD_ID", build)
}

/// A waiter that runs on GitHub Actions (so its ticket carries a run link) and polls every
/// second, so its ticket stays live while the test looks.
fn waiter(b: &Backend, env: &str) -> Child {
    waiter_at(b, env, "normal")
}

/// The same waiter, at `priority` in line.
fn waiter_at(b: &Backend, env: &str, priority: &str) -> Child {
    b.cmd()
        .env("DEPLOY_LOCK_PRIORITY", priority)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_RUN_ID", "3")
        .env("GITHUB_JOB", "deploy")
        .env("GITHUB_SERVER_URL", "https://github.example")
        .env("GITHUB_REPOSITORY", "org/app")
        .env("DEPLOY_LOCK_POLL_SECONDS", "1")
        .args([
            "acquire",
            "--wait=2",
            "github",
            env,
            "--reason",
            "next release",
        ])
        .spawn()
}

/// Blocks until `status` shows `count` waiters for `env`.
fn until_waiting(b: &Backend, env: &str, count: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let json = b.cmd().args(["status", "--output", "json"]).run().json();
        let queue = json["environments"]
            .as_array()
            .and_then(|envs| envs.iter().find(|e| e["environment"] == env))
            .map(|e| e["queue"].as_array().map_or(0, Vec::len));
        if queue == Some(count) {
            return json;
        }
        assert!(Instant::now() < deadline, "no waiter on {env}: {json}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The scene the page tests look at: `alpha` held by build 2 with a hostile reason after a hold
/// by build 1, a blocked attempt by build 4, and a high-priority waiter (returned: kill it when
/// done); `beta`
/// held by a record whose every field is hostile and whose run link is `javascript:`.
pub fn scene(b: &Backend) -> Child {
    as_build(b, "1")
        .args(["acquire", "github", "alpha"])
        .run()
        .code(0);
    as_build(b, "1")
        .args(["release", "github", "alpha"])
        .run()
        .code(0);
    as_build(b, "2")
        .args(["acquire", "azdevops", "alpha", "--reason", HOSTILE])
        .run()
        .code(0);
    as_build(b, "4")
        .args(["acquire", "local", "alpha"])
        .run()
        .code(3);
    let record = serde_json::json!({
        "schema": 1, "environment": "beta", "pipeline": "github", "build_id": HOSTILE,
        "token": "0123456789abcdef0123456789abcdef", "ttl_seconds": 1800,
        "run_url": "javascript:alert(1)", "reason": HOSTILE, "actor": "\"><script>alert(1)</script>",
    });
    b.put_raw("deployment-lock-beta", record.to_string().as_bytes());
    as_build(b, "5")
        .args(["freeze", "gamma", "--for", "2h", "--reason", HOSTILE])
        .run()
        .code(0);
    let child = waiter_at(b, "alpha", "high");
    until_waiting(b, "alpha", 1);
    child
}

pub fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn status_shows_each_environments_waiters_in_order() {
    for b in backends() {
        as_build(&b, "1")
            .args(["acquire", "github", "prod"])
            .run()
            .code(0);
        let first = waiter(&b, "prod");
        until_waiting(&b, "prod", 1);
        // The store's clock has whole seconds; within one second, the queue orders by token.
        std::thread::sleep(Duration::from_millis(1100));
        let second = b
            .cmd()
            .env("DEPLOY_LOCK_BUILD_ID", "second")
            .env("DEPLOY_LOCK_POLL_SECONDS", "1")
            .args(["acquire", "--wait=2", "local", "prod"])
            .spawn();
        let json = until_waiting(&b, "prod", 2);
        let prod = &json["environments"][0];
        assert_eq!(prod["environment"], "prod", "{json}");
        assert_eq!(prod["state"], "held");
        assert_eq!(prod["holder"]["build_id"], "1");
        let queue = &prod["queue"];
        assert_eq!(queue[0]["position"], 1, "{json}");
        assert_eq!(queue[0]["holder"]["pipeline"], "github", "{json}");
        assert_eq!(queue[0]["holder"]["build_id"], "3");
        assert_eq!(queue[0]["holder"]["job"], "deploy");
        assert_eq!(queue[0]["holder"]["run_url"], WAITER_URL);
        assert_eq!(queue[0]["holder"]["reason"], "next release");
        assert!(queue[0]["since"].as_str().is_some_and(|s| s.ends_with('Z')));
        assert_eq!(queue[1]["position"], 2);
        assert_eq!(queue[1]["holder"]["build_id"], "second");
        let text = b.cmd().args(["status"]).run();
        text.code(0)
            .contains("2 waiting for prod:")
            .contains("1. github build 3 (job deploy), waiting")
            .contains(WAITER_URL)
            .contains("2. local build second");
        stop(first);
        stop(second);
    }
}

#[test]
fn stats_counts_and_percentiles_per_environment() {
    for b in backends() {
        for build in ["1", "2"] {
            as_build(&b, build)
                .args(["acquire", "github", "web"])
                .run()
                .code(0);
            as_build(&b, "9")
                .args(["acquire", "azdevops", "web"])
                .run()
                .code(3);
            as_build(&b, build)
                .args(["release", "github", "web"])
                .run()
                .code(0);
        }
        as_build(&b, "5").args(["acquire", "api"]).run().code(0);
        b.cmd()
            .args(["force-break", "api", "--reason", "stuck"])
            .run()
            .code(0);
        let json = b.cmd().args(["stats", "--output", "json"]).run();
        let json = json.code(0).json();
        let web = &json["environments"]["web"];
        assert_eq!(web["acquisitions"], 2, "{}: {json}", b.name());
        assert_eq!(web["blocked"], 2);
        assert_eq!(web["stolen"], 0);
        assert_eq!(web["by_pipeline"]["github"]["acquisitions"], 2);
        assert_eq!(web["by_pipeline"]["azdevops"]["blocked"], 2);
        assert_eq!(web["wait_seconds"]["p50"], 0);
        assert_eq!(web["hold_seconds"]["samples"], 2);
        assert!(web["hold_seconds"]["max"].as_u64().is_some());
        assert_eq!(web["by_hour_of_week"][0]["blocked"], 2, "{json}");
        assert_eq!(json["environments"]["api"]["broken"], 1);
        // Only the environments asked for.
        let one = b
            .cmd()
            .args(["stats", "api", "--output", "json"])
            .run()
            .json();
        let names: Vec<&String> = one["environments"]
            .as_object()
            .expect("object")
            .keys()
            .collect();
        assert_eq!(names, ["api"]);
        // A window that ends before the events counts none of them.
        let future = b
            .cmd()
            .args([
                "stats",
                "web",
                "--since",
                "2999-01-01T00:00:00Z",
                "--output",
                "json",
            ])
            .run()
            .json();
        assert_eq!(future["environments"]["web"]["acquisitions"], 0);
        let text = b.cmd().args(["stats"]).run();
        text.code(0)
            .contains("ENVIRONMENT")
            .contains("WAIT P50/P95/MAX")
            .contains(
                "web by pipeline: azdevops 0 acquired, 2 blocked; github 2 acquired, 0 blocked",
            )
            .contains("web collides most (UTC):");
    }
}

#[test]
fn stats_and_dashboard_refuse_bad_input_before_the_store() {
    let b = Backend::file();
    b.cmd()
        .args(["stats", "--since", "yesterday"])
        .run()
        .code(2)
        .contains("--since");
    b.cmd().args(["stats", "bad/name"]).run().code(2);
    b.cmd()
        .args(["dashboard"])
        .run()
        .code(2)
        .contains("--out DIR");
    b.cmd()
        .args(["dashboard", "--publish"])
        .run()
        .code(2)
        .contains("use --out DIR");
    assert!(b.snapshot().is_empty());
}

/// Every field from the store is escaped; a `javascript:` run link is never a link; the page
/// loads nothing (no URL but the run links, a policy that forbids the rest).
#[test]
fn the_dashboard_escapes_everything_from_the_store() {
    for b in backends() {
        let child = scene(&b);
        let out = TempDir::new("dash");
        b.cmd()
            .args(["dashboard", "--out"])
            .args([out.path()])
            .run()
            .code(0)
            .contains("Wrote the dashboard of 3 environment(s)");
        stop(child);
        let html = std::fs::read_to_string(out.join("index.html")).expect("index.html");
        assert!(!html.contains(HOSTILE), "{}: raw hostile text", b.name());
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!html.contains("<script"), "a script element");
        assert!(!html.contains("href=\"javascript"), "a javascript: link");
        assert!(html.contains("default-src 'none'"));
        assert!(html.contains(&format!("href=\"{WAITER_URL}\"")));
        for url in urls(&html) {
            assert!(url.starts_with(WAITER_URL), "{}: a URL {url}", b.name());
        }
    }
}

/// Every `http://` or `https://` URL in a text.
pub fn urls(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for scheme in ["http://", "https://"] {
        let mut rest = text;
        while let Some(i) = rest.find(scheme) {
            let url = &rest[i..];
            let end = url
                .find(|c: char| c == '"' || c == '<' || c == '\'' || c.is_whitespace())
                .unwrap_or(url.len());
            out.push(&url[..end]);
            rest = &url[end..];
        }
    }
    out
}

/// Azurite accepts the `$web` container; `--publish` writes the page there as HTML and prints
/// where it went.
#[test]
fn the_dashboard_publishes_to_the_static_website_container() {
    let b = Backend::azurite("publish");
    as_build(&b, "1").args(["acquire", "site"]).run().code(0);
    // Turning on static websites creates `$web`; without it the publish fails, exit 1.
    let missing = b.cmd().args(["dashboard", "--publish"]).run();
    missing.code(1).contains("static website");
    create_web_container(&b);
    let out = b
        .cmd()
        .args(["dashboard", "--publish", "--output", "json"])
        .run();
    let json = out.code(0).json();
    let url = json["published"].as_str().expect("a URL");
    assert!(url.ends_with("/$web/deploy-lock/index.html"), "{url}");
    let page = web_page(&b);
    assert!(page.contains("<title>Deployment locks</title>"));
    assert!(page.contains("data-environment=\"site\""));
    b.cmd()
        .args(["dashboard", "--publish"])
        .run()
        .code(0)
        .contains("static website endpoint under /deploy-lock/");
}

/// A signed request to the account of `b` (outside its lock container).
fn send(b: &Backend, request: &Request<'_>) -> Response {
    let Backend::Azurite {
        connection_string,
        container,
    } = b
    else {
        panic!("not Azurite");
    };
    let settings = AzureSettings {
        connection_string: Some(Secret::new(connection_string.clone())),
        container: container.clone(),
        ..AzureSettings::default()
    };
    let target = resolve(&settings).expect("resolve");
    let client = Client::new(
        target.endpoint,
        target.credential,
        None,
        RetryPolicy::default(),
    )
    .expect("client");
    client.send(request).expect("an answer")
}

/// `$web`, as turning on static websites creates it.
fn create_web_container(b: &Backend) {
    let resp = send(
        b,
        &Request::new("PUT", "/$web".into()).query("restype", "container"),
    );
    assert!(matches!(resp.status, 201 | 409), "{}", resp.status);
}

/// The published page: it is served as HTML.
fn web_page(b: &Backend) -> String {
    let resp = send(
        b,
        &Request::new("GET", "/$web/deploy-lock/index.html".into()),
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    String::from_utf8(resp.body).expect("utf-8")
}
