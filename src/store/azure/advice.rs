//! Why the service refused a request, in words that name the fix: 401 and 403 answers sorted by
//! cause, and the clock-skew refusals a machine recovers from by adopting the service's time.
//!
//! Shared Key and bearer requests carry the signing time in `x-ms-date`, which Azure refuses when
//! it is more than 15 minutes from its own clock. A machine whose clock is off learns the
//! service's time from the refusal's `Date` header and signs with that from then on.

use chrono::{DateTime, TimeDelta, Utc};

use super::entra::AccessTokenSource;
use super::http::Response;
use super::xml::xml_text;

/// How far `x-ms-date` may be from the service's clock before Azure refuses the request.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(15);

/// The service's clock, from a response's `Date` header.
#[must_use]
pub fn service_time(resp: &Response) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(resp.header("date")?.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// Whether the service refused a request for its signing time: a 403 `AuthenticationFailed` that
/// says so ("Request date header too old", Azure's words), or one whose `Date` is further from
/// `signed_at` than Azure allows (Azure documents only the "too old" check, so a date far ahead
/// is recognised by the clocks alone).
#[must_use]
pub fn clock_refused(resp: &Response, signed_at: DateTime<Utc>) -> bool {
    if resp.status != 403 || resp.error_code() != "AuthenticationFailed" {
        return false;
    }
    let text = String::from_utf8_lossy(&resp.body).to_ascii_lowercase();
    let says_so = text.contains("request date header") || text.contains("clock skew");
    let apart = service_time(resp).is_some_and(|now| (now - signed_at).abs() > MAX_CLOCK_SKEW);
    says_so || apart
}

/// What to tell people once the service's clock is known to differ from ours by `offset`
/// (service minus local), or `None` when the difference is too small to matter.
#[must_use]
pub fn skew_warning(offset: TimeDelta) -> Option<String> {
    let seconds = offset.num_seconds().unsigned_abs();
    if seconds < 60 {
        return None;
    }
    // `Date` has whole seconds, so an offset of five hours reads as 4:59:59.x: round.
    let minutes = (seconds + 30) / 60;
    let (unit, direction) = (
        if minutes == 1 { "minute" } else { "minutes" },
        // A positive offset means the service is later than us: our clock is behind.
        if offset > TimeDelta::zero() {
            "behind"
        } else {
            "ahead of"
        },
    );
    Some(format!(
        "this machine's clock is off by {minutes} {unit} ({direction} the storage service's); \
         using the storage service's time"
    ))
}

/// Whether the service refused a bearer token for its lifetime (401 from Azure, 403
/// `AuthenticationFailed` from Azurite), which a new token may cure.
pub fn token_refused(resp: &Response) -> bool {
    if !matches!(resp.status, 401 | 403) {
        return false;
    }
    let body = String::from_utf8_lossy(&resp.body).to_ascii_lowercase();
    matches!(
        resp.error_code().as_str(),
        "InvalidAuthenticationInfo" | "AuthenticationFailed"
    ) && (body.contains("expired") || body.contains("lifetime"))
}

/// How the refused request was signed, and for which container.
#[derive(Clone, Copy)]
pub struct Signed<'a> {
    pub account: &'a str,
    pub container: &'a str,
    /// A SAS signed it, expiring at `sas_expiry` when it says.
    pub sas: bool,
    pub sas_expiry: Option<DateTime<Utc>>,
    /// An Entra ID access token signed it.
    pub bearer: Option<&'a AccessTokenSource>,
}

/// A 401 or 403, explained by its cause with the fix: an expired SAS, a clock that is off, a
/// missing permission or role, a firewall, a wrong key, or a refused access token.
#[must_use]
pub fn refusal(resp: &Response, detail: &str, signed: &Signed<'_>) -> String {
    let account = signed.account;
    let code = resp.error_code();
    // Azure explains authentication failures in AuthenticationErrorDetail.
    let text = format!(
        "{} {}",
        resp.error_message(),
        xml_text(
            &String::from_utf8_lossy(&resp.body),
            "AuthenticationErrorDetail"
        )
        .unwrap_or_default()
    )
    .to_ascii_lowercase();
    let sas = signed.sas;
    let expired = match (signed.sas_expiry, service_time(resp)) {
        (Some(expiry), Some(now)) => expiry <= now,
        _ => false,
    };
    let authentication = code == "AuthenticationFailed"
        || (code == "AuthorizationFailure" && text.contains("authenticate"));
    if let Some(source) = signed.bearer {
        return bearer_refusal(source, &code, &text, detail, signed);
    }
    if code == "KeyBasedAuthenticationNotPermitted" {
        return format!(
            "this storage account does not allow account keys or SAS ({detail}); sign in \
                 with Entra ID instead: --auth github-oidc, azure-devops-oidc, \
                 managed-identity or azure-cli (see docs/entra-id.md)"
        );
    }
    if expired
        || text.contains("signature not valid in the specified time frame")
        || text.contains("signed expiry time")
    {
        format!(
            "the SAS token has expired ({detail}); generate a new one with \
                 `az storage container generate-sas` and update the secret"
        )
    } else if text.contains("request date header too old")
        || text.contains("request time")
        || text.contains("clock")
    {
        format!(
            "Azure rejected the request time ({detail}); this machine's clock is off: \
                 synchronise it (NTP) and try again"
        )
    } else if matches!(
        code.as_str(),
        "AuthorizationPermissionMismatch"
            | "AuthorizationResourceTypeMismatch"
            | "AuthorizationServiceMismatch"
            | "AuthorizationProtocolMismatch"
    ) {
        if sas {
            format!(
                "the SAS token does not allow this ({detail}); it needs permissions `racwdl` \
                     on the container (service SAS) or on containers and objects (account SAS)"
            )
        } else {
            format!(
                "the credentials may not do this ({detail}); give the identity the \
                     `Storage Blob Data Contributor` role on the container or account"
            )
        }
    } else if code == "AuthorizationSourceIPMismatch"
        || (code == "AuthorizationFailure" && !authentication)
    {
        format!(
            "Azure did not authorize the request ({detail}); the storage account's firewall \
                 or network rules may not admit this machine, or the SAS is limited to other IP \
                 addresses"
        )
    } else if authentication && sas {
        format!(
            "Azure refused the SAS token ({detail}); check that it was generated for account \
                 `{account}` and container `{}` with a key that is still valid, and has not \
                 expired",
            signed.container
        )
    } else if authentication {
        format!(
            "Azure refused the signature ({detail}): the account key is wrong for account \
                 `{account}`; copy it again from `az storage account keys list`"
        )
    } else {
        format!("Azure refused the credentials ({detail}); check the key or SAS token")
    }
}

/// A refusal of an Entra ID token, with the fix. Azure answers a bad token with 401
/// `InvalidAuthenticationInfo`, Azurite with 403 `AuthenticationFailed`; both explain in
/// `AuthenticationErrorDetail`.
fn bearer_refusal(
    source: &AccessTokenSource,
    code: &str,
    text: &str,
    detail: &str,
    signed: &Signed<'_>,
) -> String {
    let who = source.describe();
    let is_static = !source.refreshable();
    if text.contains("not allowed with http") || code == "AuthorizationProtocolMismatch" {
        format!(
            "Azure Storage accepts Entra ID tokens only over HTTPS ({detail}); use an \
                 https:// store URL (Azurite: start it with --oauth basic --cert … --key …)"
        )
    } else if text.contains("expired") || text.contains("lifetime") {
        if is_static {
            format!(
                "the token in AZURE_STORAGE_TOKEN has expired ({detail}); get a new one with \
                     `az account get-access-token --resource https://storage.azure.com/`, or let \
                     deploy-lock fetch and refresh tokens itself (--auth azure-cli, \
                     managed-identity, github-oidc, azure-devops-oidc)"
            )
        } else {
            format!(
                "Azure Storage refused the token from {who} as expired or not yet valid, even \
                     after fetching a new one ({detail}); check this machine's clock (NTP)"
            )
        }
    } else if text.contains("audience") {
        format!(
            "the token from {who} is not meant for Azure Storage (wrong audience; {detail}); \
                 request it for the resource https://storage.azure.com/ (scope \
                 https://storage.azure.com/.default)"
        )
    } else if text.contains("issuer") {
        format!(
            "Azure Storage does not accept the issuer of the token from {who} ({detail}); the \
                 token must come from the storage account's Entra ID tenant (tenant-id, \
                 AZURE_AUTHORITY_HOST)"
        )
    } else if matches!(
        code,
        "AuthorizationPermissionMismatch"
            | "AuthorizationResourceTypeMismatch"
            | "AuthorizationServiceMismatch"
    ) {
        let assignee = source
            .assignee()
            .unwrap_or_else(|| "<principal id>".to_owned());
        format!(
            "{who} may not do this in container `{container}` ({detail}): assign it the \
                 Storage Blob Data Contributor role on the container, e.g. `az role assignment \
                 create --assignee {assignee} --role \"Storage Blob Data Contributor\" --scope \
                 $(az storage account show --name {account} --query id -o tsv)/blobServices/default/containers/{container}`; \
                 new role assignments take a few minutes to apply",
            container = signed.container,
            account = signed.account,
        )
    } else if code == "AuthorizationFailure" && !text.contains("authenticate") {
        format!(
            "Azure did not authorize the request ({detail}); the storage account's firewall \
                 or network rules may not admit this machine"
        )
    } else {
        format!(
            "Azure Storage refused the token from {who} ({detail}); it must be an Entra ID \
                 token for https://storage.azure.com/ from the account's tenant"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Azure's answer to a request signed at a time it will not accept, as the service sends it.
    fn refused(date: &str, detail: Option<&str>) -> Response {
        let detail = detail
            .map(|d| format!("<AuthenticationErrorDetail>{d}</AuthenticationErrorDetail>"))
            .unwrap_or_default();
        Response {
            status: 403,
            headers: vec![
                ("x-ms-error-code".into(), "AuthenticationFailed".into()),
                ("date".into(), date.into()),
            ],
            body: format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code>\
                 <Message>Server failed to authenticate the request. Make sure the value of \
                 Authorization header is formed correctly including the signature.\n\
                 RequestId:a7c15331-501e-0094-6847-7d350f000000\n\
                 Time:2026-10-07T19:46:36.6469406Z</Message>{detail}</Error>"
            )
            .into_bytes(),
            attempts: 1,
        }
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("rfc3339")
            .with_timezone(&Utc)
    }

    #[test]
    fn clock_refusals_are_told_apart_from_other_auth_failures() {
        let service = "Wed, 07 Oct 2026 19:46:36 GMT";
        let ours_behind = at("2026-10-07T14:46:36Z");
        let in_step = at("2026-10-07T19:46:30Z");
        // Azure's words, whatever the clocks say.
        let too_old = refused(
            service,
            Some("Request date header too old: 'Wed, 07 Oct 2026 14:46:36 GMT'"),
        );
        assert!(clock_refused(&too_old, ours_behind));
        assert!(clock_refused(&too_old, in_step));
        // No words, but the clocks are hours apart (a date far ahead).
        let silent = refused(service, None);
        assert!(clock_refused(&silent, at("2026-10-08T00:46:36Z")));
        assert!(clock_refused(&silent, ours_behind));
        // A wrong key from a machine in step is a wrong key.
        let wrong_key = refused(
            service,
            Some(
                "The MAC signature found in the HTTP request 'x' is not the same as any computed signature.",
            ),
        );
        assert!(!clock_refused(&wrong_key, in_step));
        assert!(!clock_refused(&silent, in_step));
        // Only 403 AuthenticationFailed counts.
        let mut other = too_old.clone();
        other.status = 401;
        assert!(!clock_refused(&other, ours_behind));
        let mut other = too_old;
        other.headers[0].1 = "AuthorizationPermissionMismatch".into();
        assert!(!clock_refused(&other, ours_behind));
        // Just inside Azure's 15 minutes is not a skew refusal without the words.
        assert!(!clock_refused(&silent, at("2026-10-07T19:31:37Z")));
        assert!(clock_refused(&silent, at("2026-10-07T19:31:35Z")));
    }

    #[test]
    fn the_service_time_comes_from_the_date_header() {
        let resp = refused("Wed, 07 Oct 2026 19:46:36 GMT", None);
        assert_eq!(service_time(&resp), Some(at("2026-10-07T19:46:36Z")));
        let mut bad = resp;
        bad.headers[1].1 = "yesterday".into();
        assert_eq!(service_time(&bad), None);
        bad.headers.pop();
        assert_eq!(service_time(&bad), None);
    }

    #[test]
    fn the_warning_says_how_far_and_which_way() {
        let ahead = skew_warning(TimeDelta::hours(-5)).expect("warn");
        assert_eq!(
            ahead,
            "this machine's clock is off by 300 minutes (ahead of the storage service's); \
             using the storage service's time"
        );
        let behind = skew_warning(TimeDelta::seconds(61)).expect("warn");
        assert!(behind.contains("off by 1 minute (behind"), "{behind}");
        let almost = skew_warning(TimeDelta::milliseconds(-(5 * 3600 - 1) * 1000 - 200));
        assert!(almost.expect("warn").contains("off by 300 minutes"));
        // Under a minute is the time a request takes, not a clock worth a warning.
        assert_eq!(skew_warning(TimeDelta::seconds(59)), None);
        assert_eq!(skew_warning(TimeDelta::seconds(-59)), None);
    }
}
