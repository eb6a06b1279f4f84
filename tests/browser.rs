//! The dashboard in a real browser: Debian's `chromium-headless-shell` (installed by
//! tests/setup-chromium.sh) renders the page offline, and the test reads the DOM it built and the
//! browser's own log of network activity.

use std::path::Path;
use std::process::Command;

use crate::insight::{HOSTILE, WAITER_URL, scene, stop, urls};
use crate::support::{Backend, TempDir, backends};

const CHROMIUM: &str = "/usr/bin/chromium-headless-shell";

/// What the browser made of the page: the rendered DOM, and every URL its network log names.
struct Rendered {
    dom: String,
    requested: Vec<String>,
}

/// Renders `page` in a fresh profile, with every host name unresolvable, background networking
/// off, and a network log.
fn render(page: &Path, scratch: &TempDir) -> Rendered {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is not installed: run `bash tests/setup-chromium.sh` (tests/run.sh does)"
    );
    let net_log = scratch.join("net-log.json");
    let out = Command::new(CHROMIUM)
        .args([
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND",
        ])
        .arg(format!(
            "--user-data-dir={}",
            scratch.join("profile").display()
        ))
        .arg(format!("--log-net-log={}", net_log.display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium-headless-shell");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&net_log).expect("the network log"))
            .expect("the network log is JSON");
    let mut requested = Vec::new();
    for event in log["events"].as_array().expect("events") {
        if let Some(url) = event["params"]["url"].as_str() {
            requested.push(url.to_owned());
        }
    }
    Rendered {
        dom: String::from_utf8(out.stdout).expect("utf-8 DOM"),
        requested,
    }
}

#[test]
fn the_dashboard_renders_offline_with_hostile_text_as_text() {
    for b in backends() {
        let name = b.name();
        let child = scene(&b);
        let dir = TempDir::new("browser");
        b.cmd()
            .args(["dashboard", "--out"])
            .args([dir.join("site")])
            .run()
            .code(0);
        stop(child);
        let page = dir.join("site").join("index.html");
        let html = std::fs::read_to_string(&page).expect("the page");
        let r = render(&page, &dir);
        let dom = &r.dom;
        // Every environment, its state and holder.
        assert!(dom.contains("data-environment=\"alpha\""), "{name}: {dom}");
        assert!(dom.contains("data-environment=\"beta\""), "{name}");
        assert!(dom.contains("azdevops build 2"), "{name}: the holder");
        assert!(dom.contains("<span class=\"state held\">held</span>"));
        // A free environment that a freeze holds, with the window and its reason.
        assert!(dom.contains("data-environment=\"gamma\""), "{name}");
        assert!(
            dom.contains("<p class=\"frozen\"><strong>Frozen</strong> from "),
            "{name}: the freeze in {dom}"
        );
        // The queue, with its waiter's run link.
        assert!(
            dom.contains(&format!(
                "<li class=\"waiter\"><a href=\"{WAITER_URL}\" rel=\"noopener noreferrer\">github \
                 build 3 (job deploy)</a>"
            )),
            "{name}: the waiter in {dom}"
        );
        assert!(
            dom.contains("</a> <strong class=\"priority\">high priority</strong>"),
            "{name}: the waiter's priority in {dom}"
        );
        // The timeline: build 1's finished hold, and the current one.
        assert!(dom.contains("<svg class=\"timeline\""), "{name}");
        assert!(dom.contains("<rect class=\"hold\""), "{name}: a past hold");
        assert!(
            dom.contains("<rect class=\"current\""),
            "{name}: the current hold"
        );
        assert!(
            dom.contains("github build 1 from"),
            "{name}: the hold's title"
        );
        // Percentiles and events.
        assert!(dom.contains("<table id=\"stats\">") && dom.contains("<table id=\"events\">"));
        assert!(
            dom.contains("<td>blocked</td>"),
            "{name}: the blocked attempt"
        );
        // Hostile text stays text: the browser made no element of it.
        assert!(dom.contains("&lt;img src=x onerror=alert(1)&gt;"), "{name}");
        assert!(
            !dom.contains("<img"),
            "{name}: an <img> element was created"
        );
        assert!(
            !dom.contains("<script"),
            "{name}: a <script> element was created"
        );
        assert!(
            !dom.contains("href=\"javascript"),
            "{name}: a javascript: link"
        );
        assert!(!html.contains(HOSTILE));
        // Nothing was requested from the network, and the only URLs are run links.
        let web: Vec<&String> = r
            .requested
            .iter()
            .filter(|u| u.starts_with("http:") || u.starts_with("https:"))
            .collect();
        assert!(web.is_empty(), "{name}: requests {web:?}");
        for url in urls(&html) {
            assert!(url.starts_with(WAITER_URL), "{name}: {url}");
        }
    }
}

/// The page says how to fit a phone and both colour schemes; an empty store is a page too.
#[test]
fn an_empty_store_renders_a_page_for_phones_and_dark_mode() {
    let b = Backend::file();
    let dir = TempDir::new("browser-empty");
    b.cmd()
        .args(["dashboard", "--out"])
        .args([dir.join("site")])
        .run()
        .code(0)
        .contains("0 environment(s)");
    let r = render(&dir.join("site").join("index.html"), &dir);
    assert!(r.dom.contains("<p id=\"empty\">"), "{}", r.dom);
    assert!(
        r.dom
            .contains("name=\"viewport\" content=\"width=device-width")
    );
    assert!(r.dom.contains("@media (prefers-color-scheme:dark)"));
    assert!(r.requested.iter().all(|u| !u.starts_with("http")));
}
