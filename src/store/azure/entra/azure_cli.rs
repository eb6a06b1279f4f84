//! `az account get-access-token`: the Azure CLI's signed-in account, bounded in time.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fetch::{Fetched, jwt_lifetime, until_unix};
use super::settings::STORAGE_RESOURCE;
use crate::config::secrets::Secret;

/// The Azure CLI can hang (a broken proxy, a keyring prompt); it gets this long.
const AZ_TIMEOUT: Duration = Duration::from_secs(90);
/// Largest answer read from the CLI.
const MAX_OUTPUT: u64 = 1024 * 1024;

/// `az account get-access-token`, bounded in time.
pub fn azure_cli(tenant_id: Option<&str>) -> Result<Fetched, String> {
    let program = if cfg!(windows) { "az.cmd" } else { "az" };
    let mut command = Command::new(program);
    command.args([
        "account",
        "get-access-token",
        "--resource",
        STORAGE_RESOURCE,
        "--output",
        "json",
    ]);
    if let Some(t) = tenant_id {
        command.args(["--tenant", t]);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            "the Azure CLI (`az`) is not installed or not on PATH".to_owned()
        } else {
            format!("cannot run the Azure CLI (`az`): {e}")
        }
    })?;
    // Both pipes are drained on threads so a chatty `az` can never block on a full pipe.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.by_ref().take(MAX_OUTPUT).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + AZ_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the Azure CLI did not answer within {} s (`az account get-access-token`)",
                    AZ_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("cannot wait for the Azure CLI: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    if !status.success() {
        let first = stderr
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        let lower = stderr.to_ascii_lowercase();
        let hint = if lower.contains("az login") || lower.contains("aadsts70043") {
            "the Azure CLI is not signed in: run `az login` (in GitHub Actions: the azure/login \
             action; in Azure DevOps: the AzureCLI@2 task)"
        } else {
            "`az account get-access-token --resource https://storage.azure.com/` failed"
        };
        return Err(format!("{hint} ({})", crate::ci::escape_controls(first)));
    }
    let json: Value = serde_json::from_slice(&stdout).map_err(|_| {
        "the Azure CLI's answer is not JSON (`az account get-access-token`)".to_owned()
    })?;
    let access_token = json["accessToken"]
        .as_str()
        .filter(|s| !s.is_empty())
        .ok_or("the Azure CLI's answer has no accessToken")?
        .to_owned();
    let lifetime = json["expires_on"]
        .as_u64()
        .or_else(|| json["expires_on"].as_str().and_then(|s| s.parse().ok()))
        .and_then(until_unix)
        .or_else(|| {
            // Older CLIs give only `expiresOn`, in local time without a zone.
            let text = json["expiresOn"].as_str()?;
            let naive = chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok()?;
            let local = naive.and_local_timezone(chrono::Local).earliest()?;
            until_unix(u64::try_from(local.timestamp()).ok()?)
        })
        .or_else(|| jwt_lifetime(&access_token));
    Ok(Fetched {
        access_token: Secret::new(access_token),
        lifetime,
    })
}
