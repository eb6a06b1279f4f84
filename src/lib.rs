//! deploy-lock: one lock per environment, honoured by GitHub Actions, Azure DevOps and people at a
//! terminal, kept in Azure Blob Storage or a local directory.
//!
//! The binary is a thin wrapper around [`run`]; every module is named for what it is:
//! `cli` (arguments), `config` (the typed settings they become), `protocol` (the lock's pure
//! decisions), `record` (what a lock blob holds), `lock` (the operations over a store), `store`
//! (the store contract and its implementations), `ci` (GitHub Actions, Azure DevOps, local).
#![forbid(unsafe_code)]

pub mod app;
pub mod azure;
pub mod ci;
pub mod cli;
pub mod clock;
pub mod config;
pub mod exit;
pub mod human;
pub mod lock;
pub mod log;
pub mod render;
pub mod run;
pub mod signals;
pub mod step;
pub mod store;
#[cfg(test)]
mod testgen;

/// The names the Azure code still uses for `exit` and `config::secrets`.
pub use config::secrets as secret;
pub use exit as error;

/// Runs the program on these arguments and returns its exit code.
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> std::process::ExitCode {
    let code = app::main_with_args(args);
    std::process::ExitCode::from(u8::try_from(code).unwrap_or(1))
}
