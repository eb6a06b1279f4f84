//! The Azure Blob Storage store: one blob per key in one container, versions are `ETag`s, the clock
//! is the service's `Date` header.
//!
//! Each operation is one request when nothing unusual happens (the append log needs more on its
//! first line). The container is created on the first write that finds it missing.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};

use super::advice;
use super::client::{Client, Request};
use super::http::{Response, TransportError, retryable_status};
use super::xml::{parse_metadata, xml_text};
use crate::store::{Blob, Entry, Listing, Read, Store, StoreError, StoreResult, Written};

/// Most pages a listing follows (5,000 blobs a page): a bound, not an expected size.
const MAX_PAGES: usize = 1000;

/// How many reads `get_many` keeps in flight: the agent keeps as many connections open.
pub const CONCURRENT_READS: usize = 8;

#[derive(Debug)]
pub struct AzureStore {
    pub(super) client: Client,
    container: String,
    /// `maxresults` of a listing page; the service's default (5000) when unset.
    page_size: Option<u32>,
}

/// What a request was for, to word its errors.
#[derive(Clone, Copy)]
enum Op<'a> {
    Blob(&'a str),
    Container,
}

impl AzureStore {
    #[must_use]
    pub fn new(client: Client, container: String) -> Self {
        Self {
            client,
            container,
            page_size: None,
        }
    }

    /// Smaller listing pages, so paging can be exercised without thousands of blobs.
    #[must_use]
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = Some(page_size.max(1));
        self
    }

    #[must_use]
    pub fn container(&self) -> &str {
        &self.container
    }

    fn blob_path(&self, key: &str) -> StoreResult<String> {
        // Azurite accepts any name; Azure does not. Keys come from environment names that the
        // lock already validates, so this only guards against a caller's mistake.
        let valid = !key.is_empty()
            && key.len() <= 1024
            && !key.ends_with('.')
            && !key.ends_with('/')
            && key.chars().all(|c| !c.is_control() && c != '\\');
        if valid {
            Ok(format!("/{}/{key}", self.container))
        } else {
            Err(StoreError::BadRequest(format!(
                "`{key}` cannot be a blob name in Azure Blob Storage"
            )))
        }
    }

    fn send(&self, request: &Request<'_>) -> StoreResult<Response> {
        self.client
            .send(request)
            .map_err(|e| self.transport_error(&e))
    }

    fn transport_error(&self, e: &TransportError) -> StoreError {
        let origin = self.client.endpoint().origin();
        if e.credential {
            StoreError::Auth(format!(
                "cannot sign in to Azure Storage at {origin}: {}",
                e.message
            ))
        } else if e.unreachable {
            StoreError::Transient(format!(
                "cannot access coordination storage at {origin}: {}; check the account name, the \
                 network and any firewall or proxy (HTTPS_PROXY, NO_PROXY)",
                e.message
            ))
        } else if e.retryable {
            StoreError::Transient(format!(
                "cannot access coordination storage at {origin}: {}; check the network, firewall \
                 and proxy, then try again",
                e.message
            ))
        } else {
            StoreError::BadRequest(format!(
                "cannot access coordination storage at {origin}: {}",
                e.message
            ))
        }
    }

    /// Sorts a response that is not the expected success into a store error that says what to do.
    fn failure(&self, op: Op<'_>, resp: &Response) -> StoreError {
        let code = resp.error_code();
        let message = resp.error_message();
        let account = &self.client.endpoint().account;
        let container = &self.container;
        let detail = if message.is_empty() {
            format!("{} {code}", resp.status)
        } else {
            format!("{} {code}: {message}", resp.status)
        };
        match resp.status {
            401 | 403 => StoreError::Auth(advice::refusal(
                resp,
                &detail,
                &self.client.signed(&self.container),
            )),
            404 if code == "ContainerNotFound" => StoreError::NotFound(format!(
                "container `{container}` in storage account `{account}` ({detail})"
            )),
            404 if code == "ResourceNotFound" || code == "AccountNotFound" => {
                StoreError::NotFound(format!(
                    "storage account `{account}` at {} ({detail}); check the account name",
                    self.client.endpoint().origin()
                ))
            }
            404 => StoreError::NotFound(match op {
                Op::Blob(key) => format!("blob `{key}` in container `{container}`"),
                Op::Container => format!("container `{container}` ({detail})"),
            }),
            409 | 412 => StoreError::Conflict,
            status if retryable_status(status) => StoreError::Transient(format!(
                "Azure Blob Storage did not complete the request after {} attempts ({detail}); \
                     the service is busy or unavailable, try again later",
                resp.attempts
            )),
            400 if message.contains("x-ms-version") || code == "InvalidHeaderValue" => {
                StoreError::BadRequest(format!(
                    "the storage service rejected the request ({detail}); an Azurite older than \
                     3.37 needs --skipApiVersionCheck"
                ))
            }
            _ => StoreError::BadRequest(format!(
                "the storage service rejected the request ({detail})"
            )),
        }
    }

    fn create_container(&self) -> StoreResult<()> {
        let req = Request::new("PUT", format!("/{}", self.container)).query("restype", "container");
        let resp = self.send(&req)?;
        match resp.status {
            201 | 409 => Ok(()),
            401 | 403 => Err(StoreError::Auth(format!(
                "container `{}` does not exist and these credentials may not create it ({} {}); \
                 create it once with `az storage container create --name {} --account-name {}`, \
                 or use credentials that may",
                self.container,
                resp.status,
                resp.error_code(),
                self.container,
                self.client.endpoint().account
            ))),
            _ => Err(self.failure(Op::Container, &resp)),
        }
    }

    /// Sends a write; when the container is missing, creates it and sends the write once more.
    fn send_write(&self, request: &Request<'_>) -> StoreResult<Response> {
        let resp = self.send(request)?;
        if resp.status == 404 && resp.error_code() == "ContainerNotFound" {
            crate::log::debug(&format!("creating container {}", self.container));
            self.create_container()?;
            return self.send(request);
        }
        Ok(resp)
    }

    fn put_blob(
        &self,
        key: &str,
        data: &[u8],
        metadata: &BTreeMap<String, String>,
        condition: (&str, &str),
    ) -> StoreResult<Written> {
        let mut req = Request::new("PUT", self.blob_path(key)?)
            .header("x-ms-blob-type", "BlockBlob")
            .header(condition.0, condition.1)
            .body(data);
        for (name, value) in metadata {
            check_metadata(name, value)?;
            req = req.header(&format!("x-ms-meta-{name}"), value);
        }
        let resp = self.send_write(&req)?;
        match resp.status {
            201 => written(&resp),
            // A write to a missing blob with If-Match lost just as a changed version does.
            404 if condition.0 == "if-match" => Err(StoreError::Conflict),
            _ => Err(self.failure(Op::Blob(key), &resp)),
        }
    }

    fn exists(&self, key: &str) -> StoreResult<bool> {
        let resp = self.send(&Request::new("HEAD", self.blob_path(key)?))?;
        match resp.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(self.failure(Op::Blob(key), &resp)),
        }
    }

    fn append_block(&self, key: &str, line: &[u8]) -> StoreResult<Response> {
        let req = Request::new("PUT", self.blob_path(key)?)
            .query("comp", "appendblock")
            .body(line);
        self.send(&req)
    }

    fn create_append_blob(&self, key: &str) -> StoreResult<()> {
        let req = Request::new("PUT", self.blob_path(key)?)
            .header("x-ms-blob-type", "AppendBlob")
            .header("if-none-match", "*");
        let resp = self.send_write(&req)?;
        match resp.status {
            // 409: another writer created it first, which is as good.
            201 | 409 => Ok(()),
            _ => Err(self.failure(Op::Blob(key), &resp)),
        }
    }
}

/// Azure stores metadata as headers: names must be C# identifiers, values visible ASCII.
fn check_metadata(name: &str, value: &str) -> StoreResult<()> {
    let name_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    let value_ok = value.chars().all(|c| c == ' ' || c.is_ascii_graphic()) && value.trim() == value;
    if name_ok && value_ok {
        Ok(())
    } else {
        Err(StoreError::BadRequest(format!(
            "metadata `{name}` cannot be stored in Azure Blob Storage (names: letters, digits, \
             `_`; values: printable ASCII without surrounding spaces)"
        )))
    }
}

fn parse_http_date(value: Option<&str>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc2822(value?.trim())
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

fn server_now(resp: &Response) -> StoreResult<DateTime<Utc>> {
    parse_http_date(resp.header("date")).ok_or_else(|| {
        StoreError::Transient(
            "the storage service answered without a valid Date header, which the lock needs as \
             its clock"
                .to_owned(),
        )
    })
}

fn etag_of(resp: &Response) -> StoreResult<String> {
    resp.header("etag").map(quoted).ok_or_else(|| {
        StoreError::Transient("the storage service answered without an ETag".to_owned())
    })
}

/// An `ETag` compares as sent in headers (quoted); listings give it bare.
fn quoted(etag: &str) -> String {
    let etag = etag.trim();
    if etag.starts_with('"') || etag.starts_with("W/") {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}

fn written(resp: &Response) -> StoreResult<Written> {
    let now = server_now(resp)?;
    Ok(Written {
        etag: etag_of(resp)?,
        last_modified: parse_http_date(resp.header("last-modified")).unwrap_or(now),
        now,
    })
}

fn metadata_of(resp: &Response) -> BTreeMap<String, String> {
    resp.headers
        .iter()
        .filter_map(|(n, v)| Some((n.strip_prefix("x-ms-meta-")?.to_owned(), v.clone())))
        .collect()
}

/// The `<Blob>` elements of one listing page, and its `NextMarker`.
fn parse_listing(xml: &str) -> StoreResult<(Vec<Entry>, Option<String>)> {
    let bad = |what: &str| {
        StoreError::Transient(format!(
            "the storage service sent a blob listing without {what}"
        ))
    };
    let mut entries = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find("<Blob>") {
        let after = &rest[start + "<Blob>".len()..];
        let end = after
            .find("</Blob>")
            .ok_or_else(|| bad("a closing </Blob>"))?;
        let blob = &after[..end];
        rest = &after[end + "</Blob>".len()..];
        let name = xml_text(blob, "Name").ok_or_else(|| bad("a blob name"))?;
        let etag = xml_text(blob, "Etag").ok_or_else(|| bad("an Etag"))?;
        let last_modified = parse_http_date(xml_text(blob, "Last-Modified").as_deref())
            .ok_or_else(|| bad("a valid Last-Modified"))?;
        entries.push(Entry {
            key: name,
            etag: quoted(&etag),
            last_modified,
            created: parse_http_date(xml_text(blob, "Creation-Time").as_deref()),
            metadata: parse_metadata(blob),
        });
    }
    let marker = xml_text(xml, "NextMarker").filter(|m| !m.is_empty());
    Ok((entries, marker))
}

impl Store for AzureStore {
    fn get(&self, key: &str) -> StoreResult<Read> {
        let resp = self.send(&Request::new("GET", self.blob_path(key)?))?;
        match resp.status {
            200 => {
                let now = server_now(&resp)?;
                let blob = Blob {
                    etag: etag_of(&resp)?,
                    last_modified: parse_http_date(resp.header("last-modified")).ok_or_else(
                        || {
                            StoreError::Transient(
                                "the storage service sent a blob without Last-Modified".to_owned(),
                            )
                        },
                    )?,
                    created: parse_http_date(resp.header("x-ms-creation-time")),
                    metadata: metadata_of(&resp),
                    data: resp.body,
                };
                Ok(Read {
                    blob: Some(blob),
                    now,
                })
            }
            // A missing container holds no lock either; it is created by the first write.
            404 if matches!(
                resp.error_code().as_str(),
                "BlobNotFound" | "ContainerNotFound"
            ) =>
            {
                Ok(Read {
                    blob: None,
                    now: server_now(&resp)?,
                })
            }
            _ => Err(self.failure(Op::Blob(key), &resp)),
        }
    }

    fn create(
        &self,
        key: &str,
        data: &[u8],
        metadata: &BTreeMap<String, String>,
    ) -> StoreResult<Written> {
        self.put_blob(key, data, metadata, ("if-none-match", "*"))
    }

    fn replace(
        &self,
        key: &str,
        data: &[u8],
        metadata: &BTreeMap<String, String>,
        etag: &str,
    ) -> StoreResult<Written> {
        self.put_blob(key, data, metadata, ("if-match", etag))
    }

    fn delete(&self, key: &str, etag: &str) -> StoreResult<()> {
        let req = Request::new("DELETE", self.blob_path(key)?).header("if-match", etag);
        let resp = self.send(&req)?;
        match resp.status {
            200 | 202 => Ok(()),
            // The service answers 412 both when the version moved and when the blob is gone;
            // callers treat those differently (a gone lock is already released).
            412 if !self.exists(key)? => Err(StoreError::NotFound(format!(
                "blob `{key}` in container `{}`",
                self.container
            ))),
            _ => Err(self.failure(Op::Blob(key), &resp)),
        }
    }

    fn list(&self, prefix: &str) -> StoreResult<Listing> {
        let mut entries = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut req = Request::new("GET", format!("/{}", self.container))
                .query("restype", "container")
                .query("comp", "list")
                .query("prefix", prefix)
                .query("include", "metadata");
            if let Some(n) = self.page_size {
                req = req.query("maxresults", &n.to_string());
            }
            if let Some(m) = &marker {
                req = req.query("marker", m);
            }
            let resp = self.send(&req)?;
            match resp.status {
                200 => {}
                404 if resp.error_code() == "ContainerNotFound" => {
                    return Ok(Listing {
                        entries,
                        now: server_now(&resp)?,
                    });
                }
                _ => return Err(self.failure(Op::Container, &resp)),
            }
            let (page, next) = parse_listing(&String::from_utf8_lossy(&resp.body))?;
            entries.extend(page);
            marker = next;
            if marker.is_none() {
                entries.sort_by(|a, b| a.key.cmp(&b.key));
                return Ok(Listing {
                    entries,
                    now: server_now(&resp)?,
                });
            }
        }
        Err(StoreError::Transient(format!(
            "the listing of container `{}` did not end after {MAX_PAGES} pages",
            self.container
        )))
    }

    fn append(&self, key: &str, line: &[u8]) -> StoreResult<u64> {
        let mut resp = self.append_block(key, line)?;
        if resp.status == 404 {
            self.create_append_blob(key)?;
            resp = self.append_block(key, line)?;
        }
        match resp.status {
            201 => resp
                .header("x-ms-blob-append-offset")
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| {
                    StoreError::Transient(
                        "the storage service did not say where the line was appended".to_owned(),
                    )
                }),
            _ => Err(self.failure(Op::Blob(key), &resp)),
        }
    }

    /// Up to `CONCURRENT_READS` reads at a time over the agent's pooled connections, so `status`
    /// over many environments answers in about the time of a few round trips.
    fn get_many(&self, keys: &[String]) -> Vec<StoreResult<Read>> {
        let next = AtomicUsize::new(0);
        let answers: Vec<Mutex<Option<StoreResult<Read>>>> =
            keys.iter().map(|_| Mutex::new(None)).collect();
        std::thread::scope(|scope| {
            for _ in 0..CONCURRENT_READS.min(keys.len()) {
                scope.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let (Some(key), Some(slot)) = (keys.get(i), answers.get(i)) else {
                            break;
                        };
                        let answer = self.get(key);
                        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(answer);
                    }
                });
            }
        });
        answers
            .into_iter()
            .map(|a| {
                a.into_inner()
                    .unwrap_or_else(PoisonError::into_inner)
                    .unwrap_or_else(|| Err(StoreError::Transient("the read did not run".into())))
            })
            .collect()
    }

    fn describe(&self) -> String {
        format!(
            "Azure container `{}` at {}",
            self.container,
            self.client.endpoint().origin()
        )
    }
}
