//! Clock skew against Azure's own rule: the service refuses a request whose `x-ms-date` is more
//! than 15 minutes from its clock (403 `AuthenticationFailed`). Azurite does not check, so the
//! proxy does, as Azure would, while the binary runs under `faketime` hours ahead or behind. The
//! binary learns the service's time from the refusal, signs again, and says so once per process.

use crate::skew::skewed;
use crate::support::Backend;
use crate::support::azurite::azurite;
use crate::support::proxy::{Plan, Proxy};

const WARNING: &str = "this machine's clock is off by";

/// One container seen through a proxy that enforces Azure's clock rule.
fn through_azure_clock(hint: &str) -> (Proxy, Backend) {
    let emulator = azurite();
    let container = emulator.unique_container(hint);
    let direct = Backend::Azurite {
        connection_string: emulator.connection_string(),
        container: container.clone(),
    };
    // The container exists before the test, so every process below makes requests of one kind.
    direct.cmd().args(["acquire", "setup"]).run().code(0);
    direct.cmd().args(["release", "setup"]).run().code(0);
    let proxy = Proxy::start(Plan::pass().azure_clock());
    let via = Backend::Azurite {
        connection_string: proxy.connection_string(),
        container,
    };
    (proxy, via)
}

#[test]
fn a_machine_in_step_is_never_refused_and_never_warned() {
    let (proxy, b) = through_azure_clock("clock-in-step");
    for args in [
        ["acquire", "clock"],
        ["check", "clock"],
        ["release", "clock"],
    ] {
        let out = b.cmd().env("DEPLOY_LOCK_BUILD_ID", "1").args(args).run();
        out.code(0);
        assert!(!out.all().contains(WARNING), "{}", out.all());
    }
    assert_eq!(proxy.counts().get("clock-refused"), None);
}

#[test]
fn a_skewed_machine_signs_with_the_services_time_and_says_so_once() {
    let (proxy, b) = through_azure_clock("clock-skewed");
    let mut processes = 0;
    // Behind is the case Azure words ("Request date header too old"); ahead, the proxy refuses
    // without words, so the binary must read the skew from the `Date` header alone.
    for (offset, way) in [("-5h", "behind"), ("+5h", "ahead of")] {
        let run = |build: &str, args: &[&str]| {
            skewed(b.cmd(), offset)
                .env("DEPLOY_LOCK_BUILD_ID", build)
                .args(args)
                .run()
        };
        let acquired = run("skewed", &["acquire", "clock", "--ttl-minutes", "10"]);
        acquired.code(0);
        // Another run on a skewed machine sees a fresh lock by the service's clock.
        let checked = run("other", &["check", "clock", "--output", "json"]);
        let v = checked.code(3).json();
        assert_eq!(v["stale"], false, "{offset}");
        let expires = v["expires_in_seconds"].as_i64().expect("expires_in");
        assert!((540..=600).contains(&expires), "{offset}: {expires}");
        let released = run("skewed", &["release", "clock"]);
        released.code(0);
        for out in [&acquired, &checked, &released] {
            let all = out.all();
            assert_eq!(all.matches(WARNING).count(), 1, "{offset}: {all}");
            assert!(
                all.contains(&format!("300 minutes ({way} the storage service's)")),
                "{all}"
            );
            processes += 1;
        }
    }
    // Each process was refused once, for its first request, and never again.
    assert_eq!(proxy.counts().get("clock-refused"), Some(&processes));
    b.cmd()
        .args(["check", "clock"])
        .run()
        .code(0)
        .contains("clock is free");
}
