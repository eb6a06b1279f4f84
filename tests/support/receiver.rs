//! Loopback HTTP endpoints for the notification and Azure Monitor tests: a receiver that records
//! every request and answers as told, a listener that accepts and never answers, and a port that
//! refuses connections.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

/// Reads one HTTP/1.1 request (line, headers, a body of `Content-Length`); None at the end of
/// the connection.
pub fn read_request(reader: &mut impl BufRead) -> std::io::Result<Option<Received>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.insert(n.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    Ok(Some(Received {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }))
}

impl Received {
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

/// Records every request; answers `status` (200 unless set).
#[derive(Clone)]
pub struct Receiver {
    pub port: u16,
    seen: Arc<Mutex<Vec<Received>>>,
    status: Arc<Mutex<u16>>,
}

impl Receiver {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let receiver = Self {
            port: listener.local_addr().expect("addr").port(),
            seen: Arc::default(),
            status: Arc::new(Mutex::new(200)),
        };
        let server = receiver.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || {
                    let _ = server.serve(stream);
                });
            }
        });
        receiver
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn answer_with(&self, status: u16) {
        *self.status.lock().unwrap() = status;
    }

    /// The requests to paths starting with `prefix`, in the order they came.
    pub fn seen(&self, prefix: &str) -> Vec<Received> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Waits (at most 30 s) until a request to `prefix` satisfies `check`.
    #[track_caller]
    pub fn wait_for(&self, prefix: &str, check: impl Fn(&Received) -> bool) -> Received {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(r) = self.seen(prefix).into_iter().find(|r| check(r)) {
                return r;
            }
            assert!(Instant::now() < until, "no such request to {prefix}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Serves the requests of one connection (kept alive) until it closes.
    fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut out = stream;
        while let Some(received) = read_request(&mut reader)? {
            self.seen.lock().unwrap().push(received);
            let status = *self.status.lock().unwrap();
            let answer = r#"{"itemsReceived":1,"itemsAccepted":1,"errors":[]}"#;
            write!(
                out,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
                answer.len()
            )?;
            out.flush()?;
        }
        Ok(())
    }
}

/// A port that accepts connections and never answers; its connections stay open while it lives.
pub struct Silent {
    pub port: u16,
}

impl Silent {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                held.push(stream);
            }
        });
        Self { port }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// A loopback port nobody listens on: connections to it are refused.
pub fn refused_url(path: &str) -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    format!("http://127.0.0.1:{port}{path}")
}
