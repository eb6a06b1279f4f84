//! A fault-injecting HTTP proxy between the binary and Azurite, in the test process.
//!
//! The binary reaches it through a connection string whose `BlobEndpoint` is the proxy's address
//! (Shared Key signs the path and the account, not the host, so requests stay valid). Each client
//! connection carries one request: the proxy answers `Connection: close`, so every request meets
//! the fault plan on its own.
//!
//! With [`Plan::azure_clock`] the proxy also applies Azure's rule on request times, which Azurite
//! does not: a request whose `x-ms-date` is more than 15 minutes from the proxy's clock is
//! refused as Azure refuses it.
//!
//! Requests are read with `peek` and only consumed once the proxy decides to answer: dropping a
//! socket whose receive queue still holds data makes the kernel send a TCP reset, so "reset"
//! faults are real resets, not polite closes.

use std::collections::{BTreeMap, VecDeque};
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::azurite::{self, ACCOUNT, KEY};

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Forwarded untouched.
    Pass,
    /// Forwarded after this many milliseconds, and answered after as many again.
    Delay(u64),
    /// Reset before the request is forwarded: Azurite never sees it.
    ResetBefore,
    /// Forwarded and applied by Azurite, then the client connection is reset: the "applied but
    /// unanswered write".
    ResetAfter,
    /// Answered by the proxy with this status (500 or 503) and no forwarding; `retry_after` in
    /// seconds when given.
    Status {
        status: u16,
        retry_after: Option<u32>,
    },
    /// Forwarded and applied, then answered 500 `OperationTimedOut` as Azure may.
    StatusAfter,
    /// Forwarded; the response is cut off half-way (body, or the head when there is no body).
    Truncate,
}

impl Fault {
    /// A short name for counters and messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Delay(_) => "delay",
            Self::ResetBefore => "reset-before",
            Self::ResetAfter => "reset-after",
            Self::Status {
                retry_after: None, ..
            } => "status",
            Self::Status { .. } => "status-retry-after",
            Self::StatusAfter => "status-after-apply",
            Self::Truncate => "truncate",
        }
    }

    /// Whether Azurite receives the request.
    fn forwards(self) -> bool {
        !matches!(self, Self::ResetBefore | Self::Status { .. })
    }
}

/// The tests' one seeded generator, shared with the unit tests' (`src/testgen/xorshift.rs`).
#[path = "../../src/testgen/xorshift.rs"]
mod xorshift;

pub(crate) use xorshift::XorShift;

/// Which fault each request gets: first the scripted ones, in order, then a seeded random pick.
///
/// Requests from concurrent processes arrive in an order no test controls, so a seed makes the
/// sequence of decisions reproducible, not which process meets which fault.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// Faults for the next requests, one each, before the random part applies.
    pub(crate) script: VecDeque<Fault>,
    /// Only requests with one of these methods meet faults (all when empty).
    pub(crate) methods: Vec<&'static str>,
    /// Percent of requests that meet a fault once the script is used up.
    pub(crate) percent: u64,
    /// The faults to choose from, with weights.
    pub(crate) mix: Vec<(u64, Fault)>,
    pub(crate) seed: u64,
    /// Refuse requests signed more than 15 minutes from this machine's clock, as Azure does.
    pub(crate) azure_clock: bool,
}

impl Plan {
    /// Every request passes.
    pub(crate) fn pass() -> Self {
        Self {
            script: VecDeque::new(),
            methods: Vec::new(),
            percent: 0,
            mix: Vec::new(),
            seed: 1,
            azure_clock: false,
        }
    }

    /// `percent` of the requests meet `fault`.
    pub(crate) fn sometimes(fault: Fault, percent: u64, seed: u64) -> Self {
        Self {
            percent,
            mix: vec![(1, fault)],
            seed,
            ..Self::pass()
        }
    }

    /// `percent` of the requests meet a fault drawn from every kind.
    pub(crate) fn random_mix(percent: u64, seed: u64) -> Self {
        Self {
            percent,
            mix: vec![
                (3, Fault::Delay(40)),
                (3, Fault::ResetBefore),
                (3, Fault::ResetAfter),
                (
                    2,
                    Fault::Status {
                        status: 503,
                        retry_after: None,
                    },
                ),
                (
                    1,
                    Fault::Status {
                        status: 500,
                        retry_after: Some(1),
                    },
                ),
                (2, Fault::StatusAfter),
                (3, Fault::Truncate),
            ],
            seed,
            ..Self::pass()
        }
    }

    /// The given faults for the next requests, then every request passes.
    pub(crate) fn script(faults: &[Fault]) -> Self {
        Self {
            script: faults.iter().copied().collect(),
            ..Self::pass()
        }
    }

    #[must_use]
    pub(crate) fn only(mut self, methods: &[&'static str]) -> Self {
        self.methods = methods.to_vec();
        self
    }

    /// Also enforce Azure's 15-minute rule on `x-ms-date` (before any fault applies).
    #[must_use]
    pub(crate) fn azure_clock(mut self) -> Self {
        self.azure_clock = true;
        self
    }
}

struct Shared {
    plan: Mutex<(Plan, XorShift)>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// Requests that reached Azurite, by method.
    forwarded: Mutex<BTreeMap<String, u64>>,
    upstream: SocketAddr,
}

impl Shared {
    fn decide(&self, method: &str) -> Fault {
        let mut guard = self.plan.lock().expect("plan");
        let (plan, rng) = &mut *guard;
        if !plan.methods.is_empty() && !plan.methods.contains(&method) {
            return Fault::Pass;
        }
        if let Some(f) = plan.script.pop_front() {
            return f;
        }
        if plan.mix.is_empty() || !rng.chance(plan.percent) {
            return Fault::Pass;
        }
        let total: u64 = plan.mix.iter().map(|(w, _)| *w).sum();
        let mut pick = rng.below(total);
        for (weight, fault) in &plan.mix {
            if pick < *weight {
                return *fault;
            }
            pick -= weight;
        }
        Fault::Pass
    }

    fn enforces_clock(&self) -> bool {
        self.plan.lock().expect("plan").0.azure_clock
    }

    fn count(&self, name: &'static str) {
        *self.counts.lock().expect("counts").entry(name).or_default() += 1;
    }
}

/// A running proxy; stops accepting when dropped.
pub(crate) struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

/// Longest a connection thread waits for a request or an answer before giving up on it.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request the proxy buffers (lock records are small; the audit log appends lines).
const MAX_REQUEST: usize = 4 * 1024 * 1024;

impl Proxy {
    /// A proxy in front of this test process's Azurite.
    pub(crate) fn start(plan: Plan) -> Self {
        let upstream = SocketAddr::from(([127, 0, 0, 1], azurite::azurite().port()));
        Self::start_to(upstream, plan)
    }

    pub(crate) fn start_to(upstream: SocketAddr, plan: Plan) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let rng = XorShift::new(plan.seed);
        let shared = Arc::new(Shared {
            plan: Mutex::new((plan, rng)),
            counts: Mutex::new(BTreeMap::new()),
            forwarded: Mutex::new(BTreeMap::new()),
            upstream,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let shared = Arc::clone(&shared);
                    // One thread per connection; each ends by itself within IO_TIMEOUT.
                    thread::spawn(move || serve(&shared, stream));
                }
            })
        };
        Self {
            addr,
            shared,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1`
    pub(crate) fn blob_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.addr.port())
    }

    /// An account-key connection string that goes through the proxy.
    pub(crate) fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={};",
            self.blob_endpoint()
        )
    }

    /// Replaces the plan (the random generator restarts from the new plan's seed).
    pub(crate) fn set_plan(&self, plan: Plan) {
        let rng = XorShift::new(plan.seed);
        *self.shared.plan.lock().expect("plan") = (plan, rng);
    }

    /// How many requests met each fault (`pass` included).
    pub(crate) fn counts(&self) -> BTreeMap<&'static str, u64> {
        self.shared.counts.lock().expect("counts").clone()
    }

    /// How many requests reached Azurite, by method.
    pub(crate) fn forwarded(&self) -> BTreeMap<String, u64> {
        self.shared.forwarded.lock().expect("forwarded").clone()
    }

    /// Requests that met any fault but `pass`.
    pub(crate) fn faults(&self) -> u64 {
        self.counts()
            .iter()
            .filter(|(k, _)| **k != "pass")
            .map(|(_, v)| v)
            .sum()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

/// A request as it sits, unread, in the socket's receive queue.
struct Peeked {
    bytes: Vec<u8>,
    method: String,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn content_length(head: &str) -> usize {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Peeks until one whole request (head and `Content-Length` body) is queued, without consuming it.
fn peek_request(stream: &TcpStream) -> Option<Peeked> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = vec![0u8; 64 * 1024];
    let mut last = 0;
    loop {
        let n = stream.peek(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        if let Some(end) = find(&buf[..n], b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let total = end + 4 + content_length(&head);
            if total > MAX_REQUEST {
                return None;
            }
            if n >= total {
                let method = head.split(' ').next().unwrap_or("").to_owned();
                return Some(Peeked {
                    bytes: buf[..total].to_vec(),
                    method,
                });
            }
            if buf.len() < total {
                buf.resize(total, 0);
            }
        }
        if Instant::now() > deadline {
            return None;
        }
        if n == last {
            // Peek returns at once while anything is queued: wait for more to arrive.
            thread::sleep(Duration::from_millis(1));
        }
        last = n;
    }
}

/// Rewrites the `Connection` header of an HTTP head (request or response) to `close`.
fn with_close(message: &[u8]) -> Vec<u8> {
    let Some(end) = find(message, b"\r\n\r\n") else {
        return message.to_vec();
    };
    let head = String::from_utf8_lossy(&message[..end]);
    let mut out = String::new();
    for line in head.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").trim();
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&message[end + 4..]);
    bytes
}

/// Sends the request to Azurite on a fresh connection and reads the whole answer.
fn forward(shared: &Shared, request: &Peeked) -> Option<Vec<u8>> {
    let mut upstream = TcpStream::connect_timeout(&shared.upstream, IO_TIMEOUT).ok()?;
    upstream.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    upstream.write_all(&with_close(&request.bytes)).ok()?;
    *shared
        .forwarded
        .lock()
        .expect("forwarded")
        .entry(request.method.clone())
        .or_default() += 1;
    let mut response = Vec::new();
    // Azurite closes after answering (we asked it to), so the answer ends at end of file.
    upstream
        .take(64 * 1024 * 1024)
        .read_to_end(&mut response)
        .ok()?;
    Some(response)
}

/// Consumes the queued request, so closing afterwards is a clean close, not a reset.
fn consume(stream: &mut TcpStream, request: &Peeked) -> bool {
    let mut sink = vec![0u8; request.bytes.len()];
    stream.read_exact(&mut sink).is_ok()
}

fn injected(status: u16, retry_after: Option<u32>) -> Vec<u8> {
    let (reason, code) = if status == 503 {
        ("Service Unavailable", "ServerBusy")
    } else {
        ("Internal Server Error", "OperationTimedOut")
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>{code}</Code>\
         <Message>injected by the test proxy</Message></Error>"
    );
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         x-ms-error-code: {code}\r\nDate: {date}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(s) = retry_after {
        head.push_str(&format!("Retry-After: {s}\r\n"));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// How far a request's `x-ms-date` may be from the service's clock (Azure's documented limit).
const MAX_SKEW_SECONDS: i64 = 15 * 60;

/// Azure's answer to a request whose `x-ms-date` is too far from the proxy's clock, or `None`
/// when the request may pass. Azure documents only the "too old" check and words its refusal
/// so; a date far ahead is refused here too, without the words, which is the harder case for a
/// client: it must see the skew in the `Date` header alone.
fn clock_refusal(request: &Peeked) -> Option<Vec<u8>> {
    let end = find(&request.bytes, b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&request.bytes[..end]);
    let sent = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("x-ms-date"))
        .map(|(_, v)| v.trim().to_owned())?;
    let signed = chrono::DateTime::parse_from_rfc2822(&sent).ok()?;
    let now = chrono::Utc::now();
    let apart = (now - signed.with_timezone(&chrono::Utc)).num_seconds();
    if apart.abs() <= MAX_SKEW_SECONDS {
        return None;
    }
    let detail = if apart > 0 {
        format!(
            "<AuthenticationErrorDetail>Request date header too old: '{sent}'</AuthenticationErrorDetail>"
        )
    } else {
        String::new()
    };
    let message = "Server failed to authenticate the request. Make sure the value of \
                   Authorization header is formed correctly including the signature.";
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code>\
         <Message>{message}\nRequestId:00000000-0000-0000-0000-000000000000\nTime:{}{:07}Z\
         </Message>{detail}</Error>",
        now.format("%Y-%m-%dT%H:%M:%S."),
        // Azure prints ticks of 100 ns.
        now.timestamp_subsec_nanos() / 100
    );
    let head = format!(
        "HTTP/1.1 403 {message}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         x-ms-error-code: AuthenticationFailed\r\nDate: {}\r\nConnection: close\r\n\r\n",
        body.len(),
        now.format("%a, %d %b %Y %H:%M:%S GMT")
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

/// Closes our side after everything was written, so the client reads the answer, then EOF.
fn finish(mut stream: TcpStream, bytes: &[u8]) {
    let _ = stream.write_all(bytes);
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    // Drain what the client may still send so the close stays clean.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 1024];
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}

fn serve(shared: &Shared, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let Some(request) = peek_request(&stream) else {
        return;
    };
    if shared.enforces_clock()
        && let Some(refusal) = clock_refusal(&request)
    {
        shared.count("clock-refused");
        if consume(&mut stream, &request) {
            finish(stream, &refusal);
        }
        return;
    }
    let fault = shared.decide(&request.method);
    shared.count(fault.name());
    if let Fault::Delay(ms) = fault {
        thread::sleep(Duration::from_millis(ms));
    }
    let response = if fault.forwards() {
        match forward(shared, &request) {
            Some(r) => Some(r),
            // Azurite did not answer: the client sees a reset, as through a real network.
            None => return,
        }
    } else {
        None
    };
    match fault {
        // Dropped with the request unread: the kernel answers with a reset.
        Fault::ResetBefore | Fault::ResetAfter => drop(stream),
        Fault::Status {
            status,
            retry_after,
        } => {
            if consume(&mut stream, &request) {
                finish(stream, &injected(status, retry_after));
            }
        }
        Fault::StatusAfter => {
            if consume(&mut stream, &request) {
                finish(stream, &injected(500, None));
            }
        }
        Fault::Truncate => {
            let response = with_close(&response.unwrap_or_default());
            let cut = match find(&response, b"\r\n\r\n") {
                Some(end) if response.len() > end + 4 => end + 4 + (response.len() - end - 4) / 2,
                Some(end) => end / 2,
                None => response.len() / 2,
            };
            if consume(&mut stream, &request) {
                finish(stream, &response[..cut]);
            }
        }
        Fault::Pass | Fault::Delay(_) => {
            if let Fault::Delay(ms) = fault {
                thread::sleep(Duration::from_millis(ms));
            }
            if consume(&mut stream, &request) {
                finish(stream, &with_close(&response.unwrap_or_default()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xorshift_is_reproducible_and_spread() {
        let mut a = XorShift::new(42);
        let mut b = XorShift::new(42);
        let xs: Vec<u64> = (0..100).map(|_| a.below(10)).collect();
        let ys: Vec<u64> = (0..100).map(|_| b.below(10)).collect();
        assert_eq!(xs, ys);
        for digit in 0..10 {
            assert!(xs.contains(&digit), "{digit} never drawn: {xs:?}");
        }
        assert_ne!(XorShift::new(0).next_u64(), 0);
    }

    #[test]
    fn connection_header_is_replaced() {
        let out = with_close(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\nbody");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nbody"
        );
    }
}
