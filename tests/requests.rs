//! What each operation costs in store requests, counted by the proxy on the way to Azurite.

use crate::support::Backend;
use crate::support::azurite::azurite;
use crate::support::proxy::{Plan, Proxy};

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

#[test]
fn uncontended_acquire_is_one_request_check_one_release_two() {
    let proxy = Proxy::start(Plan::pass());
    let b = Backend::Azurite {
        connection_string: proxy.connection_string(),
        container: azurite().unique_container("requests"),
    };
    // The container, the fencing counter and the audit log exist before counting: creating
    // them is a one-time cost.
    requests(&proxy, &b, &["acquire", "env"], 0);
    requests(&proxy, &b, &["release", "env"], 0);
    let lean = ["--no-fence", "--no-audit"];
    let run = |args: &[&str], expect| {
        let mut all = args.to_vec();
        all.extend(lean);
        requests(&proxy, &b, &all, expect)
    };
    assert_eq!(run(&["acquire", "env"], 0), 1, "acquire");
    assert_eq!(run(&["check", "env"], 0), 1, "check");
    assert_eq!(run(&["release", "env"], 0), 2, "release");
    // Fencing adds three (read and swap the counter, record the number), the audit one append.
    assert_eq!(
        requests(&proxy, &b, &["acquire", "env"], 0),
        5,
        "acquire with fence and audit"
    );
    assert_eq!(
        requests(&proxy, &b, &["release", "env"], 0),
        3,
        "release with audit"
    );
}
