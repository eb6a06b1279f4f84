//! Where a waiter stands in line: `--priority` and `--supersede`.

use crate::ci::Platform;
use crate::ci::escape::escape_controls;
use crate::exit::{Failure, Result};
use crate::lock::Priority;

/// The longest supersede key: it is hashed into the ticket's name, and shown in errors.
const MAX_KEY: usize = 500;

/// `--priority` / `DEPLOY_LOCK_PRIORITY`: `high` or `normal` (the default).
pub(super) fn parse_priority(text: Option<&str>) -> Result<Priority> {
    let Some(text) = text else {
        return Ok(Priority::Normal);
    };
    Priority::parse(text.trim()).ok_or_else(|| {
        Failure::usage(format!(
            "--priority / DEPLOY_LOCK_PRIORITY must be high or normal, not \"{}\"",
            escape_controls(text)
        ))
    })
}

/// `--supersede` / `DEPLOY_LOCK_SUPERSEDE`: a key of the caller's choosing; `true` for the
/// workflow or pipeline and branch of this CI run; `false` or nothing for none.
pub(super) fn parse_supersede(text: Option<&str>, platform: Platform) -> Result<Option<String>> {
    let text = text.map(str::trim).unwrap_or_default();
    match text {
        "" | "false" => Ok(None),
        "true" => platform.supersede_key().map(Some).ok_or_else(|| {
            Failure::usage(
                "--supersede true stands for the workflow or pipeline and branch of a CI run, \
                 and there is none here: give a key of your own, such as --supersede \
                 app@main",
            )
        }),
        key if key.chars().count() > MAX_KEY || key.chars().any(char::is_control) => {
            Err(Failure::usage(format!(
                "--supersede / DEPLOY_LOCK_SUPERSEDE must be at most {MAX_KEY} characters \
                 without control characters, not \"{}\"",
                escape_controls(key)
            )))
        }
        key => Ok(Some(key.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities() {
        assert_eq!(parse_priority(None).ok(), Some(Priority::Normal));
        assert_eq!(parse_priority(Some("high")).ok(), Some(Priority::High));
        assert_eq!(
            parse_priority(Some(" normal ")).ok(),
            Some(Priority::Normal)
        );
        let err = parse_priority(Some("urgent")).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("high or normal")));
    }

    #[test]
    fn supersede_keys() {
        let local = Platform::Local;
        assert_eq!(parse_supersede(None, local).ok(), Some(None));
        assert_eq!(parse_supersede(Some("false"), local).ok(), Some(None));
        assert_eq!(
            parse_supersede(Some("app@main"), local).ok(),
            Some(Some("app@main".into()))
        );
        for bad in ["true", "a\nb"] {
            assert!(parse_supersede(Some(bad), local).is_err(), "{bad}");
        }
        assert!(parse_supersede(Some(&"k".repeat(501)), local).is_err());
    }
}
