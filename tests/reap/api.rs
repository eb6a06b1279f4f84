//! GitHub's and Azure DevOps' run APIs on loopback: each run id answers what the test set, and
//! every request is kept (path and `Authorization`) for the test to check what was asked, with
//! which token, and that nothing was asked at all.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the fake API received.
#[derive(Debug, Clone)]
pub struct Asked {
    pub target: String,
    pub authorization: String,
}

#[derive(Default)]
struct State {
    /// Run id → HTTP status and JSON body.
    runs: BTreeMap<String, (u16, String)>,
    asked: Vec<Asked>,
}

/// A fake CI API: GitHub under `/gh`, an Azure DevOps collection under `/ado/`.
#[derive(Clone)]
pub struct CiApi {
    port: u16,
    state: Arc<Mutex<State>>,
}

impl CiApi {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let api = Self {
            port: listener.local_addr().expect("addr").port(),
            state: Arc::default(),
        };
        let server = api.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = server.serve(stream);
            }
        });
        api
    }

    /// `GITHUB_API_URL` of runs on this fake GitHub.
    pub fn github(&self) -> String {
        format!("http://127.0.0.1:{}/gh", self.port)
    }

    /// `SYSTEM_COLLECTIONURI` of pipelines on this fake Azure DevOps.
    pub fn collection(&self) -> String {
        format!("http://127.0.0.1:{}/ado/", self.port)
    }

    /// GitHub's answer for run `id`: `status` and `conclusion`.
    pub fn github_run(&self, id: &str, status: &str, conclusion: Option<&str>) {
        let body = serde_json::json!({ "id": 1, "status": status, "conclusion": conclusion });
        self.answer(id, 200, &body.to_string());
    }

    /// Azure DevOps' answer for build `id`: `status` and `result`.
    pub fn azdo_build(&self, id: &str, status: &str, result: Option<&str>) {
        let body = serde_json::json!({ "id": 1, "status": status, "result": result });
        self.answer(id, 200, &body.to_string());
    }

    /// Any answer for run `id` (a failure, a 404).
    pub fn answer(&self, id: &str, status: u16, body: &str) {
        self.state
            .lock()
            .expect("state")
            .runs
            .insert(id.to_owned(), (status, body.to_owned()));
    }

    pub fn asked(&self) -> Vec<Asked> {
        self.state.lock().expect("state").asked.clone()
    }

    fn serve(&self, stream: TcpStream) -> std::io::Result<()> {
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let target = line
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let mut authorization = String::new();
        for _ in 0..100 {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':')
                && n.trim().eq_ignore_ascii_case("authorization")
            {
                v.trim().clone_into(&mut authorization);
            }
        }
        // The run id: GitHub's `/runs/{id}/attempts/{n}`, Azure DevOps' `/builds/{id}?…`.
        let path = target.split('?').next().unwrap_or_default();
        let segments: Vec<&str> = path.split('/').collect();
        let id = segments
            .iter()
            .position(|s| *s == "runs" || *s == "builds")
            .and_then(|i| segments.get(i + 1))
            .copied()
            .unwrap_or_default();
        let (status, body) = {
            let mut state = self.state.lock().expect("state");
            state.asked.push(Asked {
                target: target.clone(),
                authorization,
            });
            state
                .runs
                .get(id)
                .cloned()
                .unwrap_or((404, r#"{"message":"Not Found"}"#.to_owned()))
        };
        let mut out = stream;
        write!(
            out,
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        out.flush()
    }
}
