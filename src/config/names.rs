//! Names that reach the store: environments, pipeline types and containers. Each is a type that
//! can only be built from text that passed its validation, so code past the command line never
//! handles an unchecked name.

use std::fmt;
use std::ops::Deref;

use crate::ci;
use crate::exit::{Failure, Result};

/// The container (or subdirectory) when none is given.
pub const DEFAULT_CONTAINER: &str = "deployment-locks";

/// A validated name: derefs to `str`, prints as itself.
macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Validates `text`; a usage error (exit 2) says what a good one looks like.
            pub fn new(text: &str) -> Result<Self> {
                $check(text).map(Self)
            }

            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl AsRef<std::ffi::OsStr> for $name {
            fn as_ref(&self) -> &std::ffi::OsStr {
                self.0.as_ref()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl PartialEq<String> for $name {
            fn eq(&self, other: &String) -> bool {
                self.0 == *other
            }
        }
    };
}

name_type!(
    /// An environment: 1–63 letters, digits, `-`, `_`, `.`; not starting or ending with `.`.
    Environment,
    check_environment
);
name_type!(
    /// A pipeline type: `github`, `azdevops`, `local`, … (lower-cased).
    Pipeline,
    check_pipeline
);
name_type!(
    /// An Azure container (or the local store's subdirectory).
    Container,
    check_container
);

impl Pipeline {
    /// The pipeline type a platform names itself with (`github`, `azdevops`, `local`).
    #[must_use]
    pub fn of(platform: ci::Platform) -> Self {
        Self(platform.pipeline().to_owned())
    }
}

impl Container {
    /// `deployment-locks`.
    #[must_use]
    pub fn default_name() -> Self {
        Self(DEFAULT_CONTAINER.to_owned())
    }
}

/// The environment name a command was given, validated.
pub fn validate_environment(name: &str) -> Result<Environment> {
    Environment::new(name)
}

/// The pipeline type a command was given, validated and lower-cased.
pub fn validate_pipeline(name: &str) -> Result<Pipeline> {
    Pipeline::new(name)
}

/// Environment names: 1–63 letters, digits, `-`, `_`, `.`; not `.` or `..`-only.
fn check_environment(name: &str) -> Result<String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 63 {
        Some("is longer than 63 characters")
    } else if !ok_chars {
        Some("may contain only letters, digits, `-`, `_` and `.`")
    } else if name.contains("..") || name.starts_with('.') || name.ends_with('.') {
        Some("may not start or end with `.` or contain `..`")
    } else {
        None
    };
    match problem {
        Some(p) => Err(Failure::usage(format!(
            "environment name `{}` {p}; use a name like `sandbox`, `prod-westeurope` or `staging_2`",
            ci::escape_controls(name)
        ))),
        None => Ok(name.to_owned()),
    }
}

/// Pipeline types: short lower-case words like `github`, `azdevops`, `local`.
fn check_pipeline(name: &str) -> Result<String> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(Failure::usage(format!(
            "pipeline type `{}` must be 1–32 letters, digits, `-`, `_` or `.` \
             (github, azdevops, local, …)",
            ci::escape_controls(name)
        )))
    }
}

fn check_container(name: &str) -> Result<String> {
    // Azure's container rule: 3–63 lower-case letters, digits and single hyphens.
    let ok = (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(name.to_owned())
    } else {
        Err(Failure::usage(format!(
            "container name `{}` must be 3–63 lower-case letters, digits and single hyphens \
             (Azure's rule), e.g. deployment-locks",
            ci::escape_controls(name)
        )))
    }
}
