//! All integration tests, compiled into one test binary.

// Test modules share helpers with `pub`; nothing here is a public API.
#![allow(unreachable_pub)]

mod azure;
mod browser;
mod capacity;
mod cli;
mod clock;
mod concurrency;
mod contract;
mod entra;
mod faults;
mod freeze;
mod help;
mod hostile;
mod identity;
mod insight;
mod long;
mod monitor;
mod notify;
mod output;
mod polling;
mod queue_order;
mod reap;
mod release;
mod requests;
mod sets;
mod simulation;
mod skew;
mod slips;
mod support;
mod waiting;
