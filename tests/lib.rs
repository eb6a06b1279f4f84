//! All integration tests, compiled into one test binary.

mod azure;
mod cli;
mod concurrency;
mod contract;
mod support;
