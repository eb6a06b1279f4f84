//! What each operation sends to the store: how many requests (counted by the proxy on the way
//! to Azurite), and never a key or a SAS over plain http to another host.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::hostile::expect;
use crate::support::azurite::{ACCOUNT, KEY, azurite};
use crate::support::proxy::{Plan, Proxy};
use crate::support::{Backend, github_job};

/// Runs one command through a counting proxy and returns how many requests it sent.
fn requests(proxy: &Proxy, b: &Backend, args: &[&str], expect: i32) -> u64 {
    let before: u64 = proxy.forwarded().values().sum();
    b.cmd()
        .env("DEPLOY_LOCK_BUILD_ID", "counter")
        .args(args)
        .run()
        .code(expect);
    proxy.forwarded().values().sum::<u64>() - before
}

/// Runs one command through a counting proxy with its own state directory (`HOME`), and
/// returns how many requests it sent.
fn requests_from(proxy: &Proxy, b: &Backend, home: &std::path::Path, args: &[&str]) -> u64 {
    let before: u64 = proxy.forwarded().values().sum();
    b.cmd()
        .env("DEPLOY_LOCK_BUILD_ID", "counter")
        .env("HOME", home)
        .env("XDG_STATE_HOME", home.join("state"))
        .args(args)
        .run()
        .code(0);
    proxy.forwarded().values().sum::<u64>() - before
}

#[test]
fn acquire_is_the_freeze_read_and_three_check_one_release_two_from_run() {
    let proxy = Proxy::start(Plan::pass());
    let b = Backend::Azurite {
        connection_string: proxy.connection_string(),
        container: azurite().unique_container("requests"),
    };
    let terminal = crate::support::TempDir::new("requests-terminal");
    let here = |args: &[&str]| requests_from(&proxy, &b, terminal.path(), args);
    // The container and this month's audit log segment exist before counting: creating them
    // is a one-time cost.
    here(&["acquire", "env"]);
    here(&["release", "env"]);
    let lean = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--no-fence", "--no-audit"]);
        here(&all)
    };
    // The freeze record is read before the create: every client honours a freeze.
    assert_eq!(lean(&["acquire", "env"]), 2, "acquire");
    assert_eq!(lean(&["check", "env"]), 1, "check");
    // The acquire remembered the version it left in this user's state directory: the release
    // is one conditional delete on it.
    assert_eq!(lean(&["release", "env"]), 1, "release");
    // The acquisition's audit event is appended, and its position in the log is the fencing
    // number, recorded in the lock: two more (three for the lock, fence and audit, plus the
    // read of the freeze windows).
    assert_eq!(here(&["acquire", "env"]), 4, "acquire with fence and audit");
    // A renewal from the same user's next command: one conditional write.
    assert_eq!(here(&["renew", "env"]), 1, "renew");
    // And the release: the conditional delete and the audit append.
    assert_eq!(here(&["release", "env"]), 2, "release with audit");
    // A process elsewhere (another machine, another user) knows nothing of the lock: it reads
    // first, then renews, or deletes on that version and appends.
    here(&["acquire", "env"]);
    let there = |args: &[&str]| {
        let elsewhere = crate::support::TempDir::new("requests-elsewhere");
        requests_from(&proxy, &b, elsewhere.path(), args)
    };
    assert_eq!(there(&["renew", "env"]), 2, "renew from elsewhere");
    assert_eq!(there(&["release", "env"]), 3, "release from elsewhere");
    // What this user remembered is out of date now: the conditional delete fails, and the
    // reading path finds the lock gone.
    assert_eq!(
        here(&["release", "env"]),
        2,
        "release with an outdated version"
    );
    assert_eq!(
        here(&["acquire", "env", "--no-fence"]),
        3,
        "acquire with audit"
    );
    here(&["release", "env"]);
    // Without the audit the fencing line holds only a place in the log: still four.
    assert_eq!(
        here(&["acquire", "env", "--no-audit"]),
        4,
        "acquire with fence"
    );
    here(&["release", "env"]);
    // `run` knows the version it wrote: release is one conditional delete and the append.
    assert_eq!(
        here(&["run", "env", "--", "true"]),
        6,
        "run: acquire with fence and audit, release with audit"
    );
}

/// A forward proxy as corporate networks have: it answers `CONNECT host:port` and then relays
/// bytes both ways. Counts the tunnels it opened.
struct ConnectProxy {
    url: String,
    tunnels: Arc<AtomicU64>,
}

impl ConnectProxy {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let tunnels = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&tunnels);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || tunnel(client, &counter));
            }
        });
        Self { url, tunnels }
    }
}

fn tunnel(client: TcpStream, tunnels: &AtomicU64) {
    let mut reader = BufReader::new(client.try_clone().expect("clone"));
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
        line.clear();
    }
    let Some(target) = request
        .strip_prefix("CONNECT ")
        .and_then(|r| r.split_whitespace().next())
    else {
        return;
    };
    let Ok(upstream) = TcpStream::connect(target) else {
        return;
    };
    tunnels.fetch_add(1, Ordering::SeqCst);
    let mut client = client;
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .is_err()
    {
        return;
    }
    let (mut up_read, mut up_write) = (upstream.try_clone().expect("clone"), upstream);
    let mut client_write = client.try_clone().expect("clone");
    let to_upstream = std::thread::spawn(move || {
        let _ = std::io::copy(&mut reader, &mut up_write);
        let _ = up_write.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut up_read, &mut client_write);
    let _ = client_write.shutdown(Shutdown::Write);
    let _ = to_upstream.join();
}

#[test]
fn https_proxy_and_no_proxy_are_honoured() {
    let proxy = ConnectProxy::start();
    let proxy_url = proxy.url.clone();
    // The store is addressed directly; only the proxy variables route it through the proxy.
    let b = Backend::azurite("proxied");
    let forwarded = || proxy.tunnels.load(Ordering::SeqCst);
    b.cmd()
        .env("HTTP_PROXY", &proxy_url)
        .env("HTTPS_PROXY", &proxy_url)
        .args(["acquire", "px"])
        .run()
        .code(0);
    let through = forwarded();
    assert!(through > 0, "no request went through the proxy");
    b.cmd()
        .env("HTTP_PROXY", &proxy_url)
        .env("HTTPS_PROXY", &proxy_url)
        .env("NO_PROXY", "127.0.0.1")
        .args(["release", "px"])
        .run()
        .code(0);
    assert_eq!(forwarded(), through, "NO_PROXY was not honoured");
}

/// An account key or a SAS is never sent over plain http to another machine: refused before
/// any request, with exit 2. The host would fail if it were contacted (`.invalid` never resolves).
#[test]
fn keys_and_sas_are_never_sent_over_plain_http_to_another_host() {
    let sas = "sv=2025-01-05&sr=c&sp=racwdl&se=2099-01-01&sig=c2lnbmF0dXJl";
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "store URL with a key",
            vec![
                (
                    "DEPLOY_LOCK_STORE",
                    "http://example.invalid/locks".to_owned(),
                ),
                ("AZURE_STORAGE_KEY", KEY.to_owned()),
            ],
        ),
        (
            "store URL with a SAS",
            vec![(
                "DEPLOY_LOCK_STORE",
                format!("http://example.invalid/locks?{sas}"),
            )],
        ),
        (
            "SAS token variable",
            vec![
                (
                    "DEPLOY_LOCK_STORE",
                    "http://example.invalid/locks".to_owned(),
                ),
                ("AZURE_STORAGE_SAS_TOKEN", sas.to_owned()),
            ],
        ),
        (
            "connection string with http",
            vec![(
                "AZURE_STORAGE_CONNECTION_STRING",
                format!("DefaultEndpointsProtocol=http;AccountName=myacct;AccountKey={KEY}"),
            )],
        ),
        (
            "connection string with a remote http endpoint",
            vec![(
                "AZURE_STORAGE_CONNECTION_STRING",
                format!(
                    "AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint=http://example.invalid"
                ),
            )],
        ),
        (
            "connection string with a SAS and a remote http endpoint",
            vec![(
                "AZURE_STORAGE_CONNECTION_STRING",
                format!("BlobEndpoint=http://example.invalid;SharedAccessSignature={sas}"),
            )],
        ),
    ];
    for (what, env) in &cases {
        for args in [vec!["check", "env"], vec!["acquire", "env"], vec!["status"]] {
            let mut cmd = crate::support::Cmd::new();
            for (k, v) in env {
                cmd = cmd.env(k, v);
            }
            let out = cmd.args(&args).run();
            expect(
                &out,
                2,
                "only sent over HTTPS",
                &format!("{what}: {args:?}"),
            );
            assert!(
                !out.all().contains("cannot access"),
                "{what}: a request was made: {}",
                out.all()
            );
            assert!(!out.all().contains(KEY) && !out.all().contains("c2lnbmF0dXJl"));
        }
    }
}

/// The saved state of a GitHub step (`name<<DELIM`, value, `DELIM`), as the runner hands it to
/// the post step: `STATE_name`.
fn saved_state(file: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut lines = text.lines();
    let mut out = Vec::new();
    while let Some(line) = lines.next() {
        if let Some((name, delimiter)) = line.split_once("<<") {
            let value: Vec<&str> = lines.by_ref().take_while(|l| *l != delimiter).collect();
            out.push((format!("STATE_{name}"), value.join("\n")));
        }
    }
    out
}

/// The action's detached heartbeat starts from the version the main step's writes left and
/// renews with one conditional write each time; the post step releases with the version the
/// heartbeat left: a conditional delete and the audit append, no read.
#[test]
fn the_actions_heartbeat_renews_in_one_request_and_its_post_step_releases_in_two() {
    let proxy = Proxy::start(Plan::pass());
    let b = Backend::Azurite {
        connection_string: proxy.connection_string(),
        container: azurite().unique_container("requests-step"),
    };
    requests(&proxy, &b, &["acquire", "env"], 0);
    requests(&proxy, &b, &["release", "env"], 0);
    let job = crate::support::TempDir::new("requests-step");
    let state = job.join("github-state");
    let step = |name: &str| {
        let mut cmd = github_job(b.cmd(), "5150", job.path())
            .env("GITHUB_STEP_SUMMARY", job.join("github-summary"))
            .env("INPUT_ENVIRONMENT", "env")
            .env("INPUT_LOCK-TIMEOUT-MINUTES", "1.5s");
        if name == "post" {
            for (k, v) in saved_state(&state) {
                cmd = cmd.env(&k, v);
            }
        }
        cmd.args(["step", name]).run()
    };
    step("main").code(0);
    let after_main: u64 = proxy.forwarded().values().sum();
    // Renewed every half second meanwhile.
    std::thread::sleep(std::time::Duration::from_millis(1600));
    let post = step("post");
    post.code(0);
    let sent = proxy.forwarded().values().sum::<u64>() - after_main;
    // `heartbeat stopped by the post step after 1s (3 renewals, 0 failed)`
    let renewals: u64 = post
        .stderr
        .split(" renewals")
        .next()
        .and_then(|head| head.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no renewal count:\n{}", post.all()));
    assert!(renewals >= 1, "{}", post.all());
    assert!(post.stderr.contains(", 0 failed)"), "{}", post.all());
    assert_eq!(sent, renewals + 2, "{}", post.all());
    b.cmd().args(["check", "env"]).run().code(0);
}
