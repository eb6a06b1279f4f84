//! All integration tests, compiled into one test binary.

mod cli;
mod concurrency;
mod support;
