//! All integration tests, compiled into one test binary.

// Test modules share helpers with `pub`; nothing here is a public API.
#![allow(unreachable_pub)]

mod azure;
mod cli;
mod clock;
mod concurrency;
mod contract;
mod entra;
mod faults;
mod hostile;
mod identity;
mod long;
mod polling;
mod release;
mod requests;
mod simulation;
mod skew;
mod support;
