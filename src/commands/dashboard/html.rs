//! The dashboard as one self-contained HTML page: inline CSS and SVG, no script, nothing loaded
//! from the network (a Content-Security-Policy says so to the browser as well), light and dark by
//! `prefers-color-scheme`, one column on a phone.
//!
//! Every text from the store goes through `esc`; a link is made only of an `http(s)` URL, so a
//! stored `javascript:` run link stays text.

use chrono::{DateTime, SecondsFormat, Utc};

use super::{Dashboard, Panel};
use crate::human::human;
use crate::lock::stats::{Counts, Percentiles, weekday_name};
use crate::lock::{Holder, LockEvent};

const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#fff;--fg:#1b1f24;--muted:#59636e;--line:#d1d9e0;--card:#f6f8fa;\
--free:#1a7f37;--held:#9a6700;--stale:#cf222e;--bar:#0969da;--now:#bf8700}\
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#3d444d;\
--card:#151b23;--free:#3fb950;--held:#d29922;--stale:#f85149;--bar:#4493f8;--now:#e3b341}}\
*{box-sizing:border-box}body{margin:0;padding:1rem;background:var(--bg);color:var(--fg);\
font:15px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif}h1{font-size:1.4rem;margin:0 0 .25rem}\
h2{font-size:1.1rem;margin:1.5rem 0 .5rem}h3{font-size:1rem;margin:0}.muted{color:var(--muted)}\
.grid{display:grid;gap:.75rem;grid-template-columns:repeat(auto-fill,minmax(min(100%,22rem),1fr))}\
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:.75rem}\
.state{display:inline-block;border-radius:1rem;padding:0 .6rem;font-size:.85rem;font-weight:600;\
border:1px solid currentColor}.free{color:var(--free)}.held{color:var(--held)}\
.stale,.unreadable,.frozen{color:var(--stale)}dl{display:grid;grid-template-columns:auto 1fr;gap:.1rem .75rem;\
margin:.5rem 0}dt{color:var(--muted)}dd{margin:0;overflow-wrap:anywhere}ol{margin:.25rem 0;\
padding-left:1.4rem}a{color:var(--bar)}.scroll{overflow-x:auto}table{border-collapse:collapse;\
width:100%;font-size:.9rem}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);\
vertical-align:top}#stats td,#stats th,#events td:first-child{white-space:nowrap}\
#events td{min-width:7rem;overflow-wrap:anywhere}svg{display:block;width:100%;height:auto;\
margin-top:.5rem}.axis{stroke:var(--line);stroke-width:2}.hold{fill:var(--bar)}.current{fill:var(--now)}\
svg text{fill:var(--muted);font-size:30px}.problem{color:var(--stale)}";

/// `<`, `>`, `&`, `"` and `'` as entities: safe in text and in quoted attributes.
#[must_use]
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A link to an `http(s)` URL, or the text alone for anything else.
fn link(url: &str, text: &str) -> String {
    let lower = url.trim().to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        format!(
            "<a href=\"{}\" rel=\"noopener noreferrer\">{}</a>",
            esc(url.trim()),
            esc(text)
        )
    } else {
        esc(text)
    }
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn seconds(s: Option<u64>) -> String {
    s.map_or_else(
        || "–".into(),
        |s| {
            human(chrono::Duration::seconds(
                i64::try_from(s).unwrap_or(i64::MAX),
            ))
        },
    )
}

/// The whole page.
#[must_use]
pub fn page(d: &Dashboard) -> String {
    let mut h = String::with_capacity(64 * 1024);
    h.push_str(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"color-scheme\" content=\"light dark\">\
         <title>Deployment locks</title><style>",
    );
    h.push_str(STYLE);
    h.push_str("</style></head><body>\n<header><h1>Deployment locks</h1>");
    h.push_str(&format!(
        "<p class=\"muted\">As of <time id=\"generated\">{}</time> (the store's clock); timeline \
         and statistics since {}.</p></header>\n",
        time(d.now),
        time(d.since)
    ));
    if d.environments.is_empty() {
        h.push_str("<p id=\"empty\">No environment has a lock, a queue or an audit log yet.</p>\n");
    }
    h.push_str("<section><h2>Environments</h2><div class=\"grid\">\n");
    for p in &d.environments {
        h.push_str(&panel(p, d));
    }
    h.push_str("</div></section>\n<section><h2>Waits and holds</h2>");
    h.push_str(&stats_table(d));
    h.push_str("</section>\n<section><h2>Recent events</h2>");
    h.push_str(&events_table(&d.recent));
    h.push_str("</section>\n</body></html>\n");
    h
}

fn panel(p: &Panel, d: &Dashboard) -> String {
    let mut h = format!(
        "<article class=\"card env\" data-environment=\"{0}\"><h3>{0} <span class=\"state {1}\">{1}</span></h3>",
        esc(&p.name),
        p.state
    );
    if let Some(l) = &p.lock {
        h.push_str("<dl class=\"holder\">");
        let url = l.holder.record().map_or("", |r| r.run_url.as_str());
        h.push_str(&format!(
            "<dt>holder</dt><dd>{}</dd>",
            link(url, &l.holder.describe())
        ));
        h.push_str(&format!("<dt>held</dt><dd>{}</dd>", human(l.age)));
        let stale = if l.is_stale() {
            format!("stale for {}", human(-l.expires_in))
        } else {
            format!("stale in {}", human(l.expires_in))
        };
        h.push_str(&format!("<dt>ttl</dt><dd>{stale}</dd>"));
        if let Holder::Current(r) = &l.holder {
            for (name, value) in [
                ("actor", &r.actor),
                ("reason", &r.reason),
                ("repository", &r.repository),
                ("ref", &r.git_ref),
                ("commit", &r.commit),
            ] {
                if !value.is_empty() {
                    h.push_str(&format!("<dt>{name}</dt><dd>{}</dd>", esc(value)));
                }
            }
        }
        h.push_str("</dl>");
    }
    if let Some(w) = &p.freeze {
        h.push_str(&format!(
            "<p class=\"frozen\"><strong>Frozen</strong> {}: {} <span class=\"muted\">(by {})</span></p>",
            esc(&w.describe()),
            esc(&w.reason),
            esc(&w.by)
        ));
    }
    for problem in &p.problems {
        h.push_str(&format!("<p class=\"problem\">{}</p>", esc(problem)));
    }
    if p.queue.is_empty() {
        h.push_str("<p class=\"muted queue-empty\">Nobody waits.</p>");
    } else {
        h.push_str(&format!(
            "<p>{} waiting:</p><ol class=\"queue\">",
            p.queue.len()
        ));
        for w in &p.queue {
            let since = w
                .since
                .map(|t| format!(", for {} (since {})", human(d.now - t), time(t)))
                .unwrap_or_default();
            let priority = if w.priority.is_normal() {
                ""
            } else {
                " <strong class=\"priority\">high priority</strong>"
            };
            h.push_str(&format!(
                "<li class=\"waiter\">{}{priority}{}</li>",
                link(&w.run_url, &w.describe()),
                esc(&since)
            ));
        }
        h.push_str("</ol>");
    }
    h.push_str(&timeline(p, d));
    h.push_str("</article>\n");
    h
}

/// The holds since `d.since` as bars on a time axis with a line per day; the current hold, if
/// any, runs to now in another colour. Each bar's `<title>` says who held it and when.
fn timeline(p: &Panel, d: &Dashboard) -> String {
    const W: f64 = 1000.0;
    let span = (d.now - d.since).num_seconds().max(1) as f64;
    let at = |t: DateTime<Utc>| ((t - d.since).num_seconds() as f64 / span * W).clamp(0.0, W);
    let mut h = format!(
        "<svg class=\"timeline\" viewBox=\"0 0 {W} 100\" role=\"img\" \
         aria-label=\"holds of {} since {}\"><line class=\"axis\" x1=\"0\" y1=\"60\" x2=\"{W}\" y2=\"60\"/>",
        esc(&p.name),
        time(d.since)
    );
    let mut day = d.since.date_naive().succ_opt();
    while let Some(date) = day {
        let Some(t) = date.and_hms_opt(0, 0, 0).map(|t| t.and_utc()) else {
            break;
        };
        if t >= d.now {
            break;
        }
        h.push_str(&format!(
            "<line class=\"axis\" x1=\"{0:.1}\" y1=\"4\" x2=\"{0:.1}\" y2=\"66\"/>\
             <text x=\"{1:.1}\" y=\"94\">{2}</text>",
            at(t),
            at(t) + 4.0,
            t.format("%a")
        ));
        day = date.succ_opt();
    }
    let mut bar = |start: DateTime<Utc>, end: DateTime<Utc>, class: &str, title: String| {
        let (x0, x1) = (at(start), at(end));
        h.push_str(&format!(
            "<rect class=\"{class}\" x=\"{x0:.1}\" y=\"10\" width=\"{:.1}\" height=\"44\" rx=\"4\">\
             <title>{}</title></rect>",
            (x1 - x0).max(4.0),
            esc(&title)
        ));
    };
    for hold in &p.holds {
        bar(
            hold.start,
            hold.end,
            "hold",
            format!(
                "{} from {} to {} ({})",
                hold.who,
                time(hold.start),
                time(hold.end),
                hold.ended_by
            ),
        );
    }
    if let Some(l) = &p.lock {
        let start = d.now - l.age;
        bar(
            start.max(d.since),
            d.now,
            "current",
            format!("{} since {}", l.holder.describe(), time(start)),
        );
    }
    h.push_str("</svg>");
    h
}

fn stats_table(d: &Dashboard) -> String {
    let mut h = String::from(
        "<div class=\"scroll\"><table id=\"stats\"><thead><tr><th>environment</th>\
         <th>acquired</th><th>blocked</th><th>stolen</th><th>broken</th><th>lost</th>\
         <th>wait p50 / p95 / max</th><th>hold p50 / p95 / max</th><th>busiest hour (UTC)</th>\
         </tr></thead><tbody>",
    );
    for p in &d.environments {
        let Counts {
            acquisitions,
            blocked,
            stolen,
            broken,
            lost,
        } = p.stats.counts;
        let busiest = p
            .stats
            .by_hour_of_week
            .iter()
            .max_by_key(|(slot, c)| (c.blocked, c.acquisitions, std::cmp::Reverse(**slot)))
            .map_or_else(
                || "–".into(),
                |((day, hour), c)| {
                    format!(
                        "{} {hour:02}:00 ({} blocked)",
                        weekday_name(*day),
                        c.blocked
                    )
                },
            );
        h.push_str(&format!(
            "<tr><td>{}</td><td>{acquisitions}</td><td>{blocked}</td><td>{stolen}</td>\
             <td>{broken}</td><td>{lost}</td><td>{}</td><td>{}</td><td>{busiest}</td></tr>",
            esc(&p.name),
            triple(&p.stats.wait_seconds),
            triple(&p.stats.hold_seconds),
        ));
    }
    h.push_str("</tbody></table></div>");
    h
}

fn triple(p: &Percentiles) -> String {
    format!(
        "{} / {} / {}",
        seconds(p.p50),
        seconds(p.p95),
        seconds(p.max)
    )
}

fn events_table(events: &[LockEvent]) -> String {
    if events.is_empty() {
        return "<p class=\"muted\">No events.</p>".into();
    }
    let mut h = String::from(
        "<div class=\"scroll\"><table id=\"events\"><thead><tr><th>when</th><th>environment</th>\
         <th>event</th><th>who</th><th>details</th></tr></thead><tbody>",
    );
    for e in events {
        let mut details = Vec::new();
        if !e.other.is_empty() {
            details.push(format!("{} {}", e.kind.other_party(), e.other));
        }
        if let Some(s) = e.held_seconds {
            details.push(format!("held {}", human(chrono::Duration::seconds(s))));
        }
        if let Some(s) = e.waited_seconds.filter(|s| *s > 0) {
            details.push(format!("waited {}", seconds(Some(s))));
        }
        if !e.reason.is_empty() {
            details.push(format!("reason: {}", e.reason));
        }
        h.push_str(&format!(
            "<tr class=\"event\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&e.at),
            esc(&e.environment),
            esc(e.kind.as_str()),
            link(&e.run_url, &e.who()),
            esc(&details.join("; "))
        ));
    }
    h.push_str("</tbody></table></div>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<img src=x onerror="alert('1')">&"#),
            "&lt;img src=x onerror=&quot;alert(&#39;1&#39;)&quot;&gt;&amp;"
        );
    }

    #[test]
    fn links_only_to_web_urls() {
        assert_eq!(
            link("https://e.test/r?a=1&b=\"2\"", "run"),
            "<a href=\"https://e.test/r?a=1&amp;b=&quot;2&quot;\" rel=\"noopener noreferrer\">run</a>"
        );
        assert_eq!(link("javascript:alert(1)", "<b>"), "&lt;b&gt;");
        assert_eq!(link(" JavaScript:alert(1)", "x"), "x");
    }
}
