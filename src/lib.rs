//! deploy-lock: one lock per environment, honoured by GitHub Actions, Azure DevOps and people at a
//! terminal, kept in Azure Blob Storage or a local directory.
//!
//! The binary is a thin wrapper around [`run`]; every module is named for what it is:
//! `cli` (arguments), `config` (the typed settings they become), `protocol` (the lock's pure
//! decisions), `record` (what a lock blob holds), `lock` (the operations over a store), `store`
//! (the store contract and its implementations), `ci` (GitHub Actions, Azure DevOps, local).
#![forbid(unsafe_code)]

pub mod app;
pub mod audit;
pub mod ci;
pub mod cli;
pub mod clock;
pub mod config;
pub mod error;
pub mod heartbeat;
pub mod lock;
pub mod log;
pub mod protocol;
pub mod queue;
pub mod record;
pub mod render;
pub mod run;
pub mod secret;
pub mod step;
pub mod store;
#[cfg(test)]
mod testgen;
