//! Per-command `--help`: only the options the command uses, examples at the end, and
//! `[env: X]` without a value whether X is set or not.

use crate::support::{Backend, Cmd};

const COMMANDS: &[&str] = &[
    "check",
    "acquire",
    "release",
    "wait",
    "force-break",
    "status",
    "renew",
    "run",
    "history",
    "freeze",
    "unfreeze",
    "freezes",
    "stats",
    "dashboard",
    "reap",
];

fn options(help: &str) -> Vec<String> {
    help.split_whitespace()
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(|w| w.trim_end_matches([',', '.']).to_owned())
        .collect()
}

#[test]
fn each_command_lists_its_options_and_ends_with_examples() {
    for command in COMMANDS {
        let help = Cmd::new().args([command, "--help"]).run();
        help.code(0);
        let examples: Vec<&str> = help
            .stdout
            .lines()
            .skip_while(|l| *l != "Examples:")
            .skip(1)
            .collect();
        assert!(
            (1..=3).contains(&examples.len())
                && examples
                    .iter()
                    .all(|l| l.contains(&format!("deploy-lock {command}"))),
            "{command}: {}",
            help.stdout
        );
    }
    let history = Cmd::new().args(["history", "--help"]).run();
    let listed = options(&history.stdout);
    for unused in [
        "--poll-seconds",
        "--token",
        "--no-fence",
        "--notify",
        "--ttl-minutes",
    ] {
        assert!(
            !listed.iter().any(|o| o == unused),
            "history lists {unused}"
        );
    }
    for used in ["--since", "--store", "--output"] {
        assert!(listed.iter().any(|o| o == used), "history lacks {used}");
    }
    let acquire = options(&Cmd::new().args(["acquire", "--help"]).run().stdout);
    for used in [
        "--wait",
        "--poll-seconds",
        "--token",
        "--no-fence",
        "--notify",
        "--ttl-minutes",
    ] {
        assert!(acquire.iter().any(|o| o == used), "acquire lacks {used}");
    }
}

#[test]
fn an_option_left_out_of_a_commands_help_is_still_accepted_before_or_after_it() {
    let b = Backend::file();
    b.cmd()
        .args(["history", "prod", "--poll-seconds", "1"])
        .run()
        .code(0);
    b.cmd()
        .args(["--no-fence", "history", "prod"])
        .run()
        .code(0);
    // Its value is still read: a bad one is a usage error.
    b.cmd()
        .args(["history", "prod", "--poll-seconds", "soon"])
        .run()
        .code(2);
}

#[test]
fn help_names_environment_variables_without_their_values() {
    for set in [false, true] {
        let mut cmd = Cmd::new().args(["acquire", "--help"]);
        if set {
            for var in ["DEPLOY_LOCK_AUTH", "DEPLOY_LOCK_STORE", "DEPLOY_LOCK_TOKEN"] {
                cmd = cmd.env(var, "s3cr3t-value");
            }
        }
        let help = cmd.run();
        help.code(0);
        for var in ["DEPLOY_LOCK_AUTH", "DEPLOY_LOCK_STORE", "DEPLOY_LOCK_TOKEN"] {
            assert!(
                help.stdout.contains(&format!("[env: {var}]")),
                "set {set}: {var}\n{}",
                help.stdout
            );
            assert!(
                !help.stdout.contains(&format!("{var}=")),
                "set {set}: {var}"
            );
        }
        assert!(!help.stdout.contains("s3cr3t"));
    }
}
