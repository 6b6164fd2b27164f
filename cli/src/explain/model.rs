//! Language models for auto-interp: any OpenAI-compatible chat endpoint, and a
//! local GGUF chat model served by llama.cpp's own `llama-server` (started here on
//! a free localhost port, stopped on drop) and reached through the same endpoint
//! client.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: &'static str,
    /// The text.
    pub content: String,
}

impl Message {
    /// A system message.
    pub fn system(s: impl Into<String>) -> Self {
        Message {
            role: "system",
            content: s.into(),
        }
    }
    /// A user message.
    pub fn user(s: impl Into<String>) -> Self {
        Message {
            role: "user",
            content: s.into(),
        }
    }
}

/// A chat model: messages in, the assistant's answer out; an error is a message
/// that says what failed (reported per feature, never fatal to a run).
pub trait ChatModel {
    /// The answer to `messages`.
    fn chat(&self, messages: &[Message]) -> Result<String, String>;
}

/// An OpenAI-compatible `chat/completions` endpoint.
pub struct Endpoint {
    url: String,
    model: String,
    api_key: Option<String>,
    max_tokens: u32,
    agent: ureq::Agent,
}

impl Endpoint {
    /// `base` is the API base (`http://host:port/v1`, to which
    /// `/chat/completions` is appended) or the full `.../chat/completions` URL.
    pub fn new(
        base: &str,
        model: &str,
        api_key: Option<String>,
        max_tokens: u32,
        timeout: Duration,
    ) -> Self {
        let base = base.trim_end_matches('/');
        let url = if base.ends_with("/chat/completions") {
            base.to_string()
        } else {
            format!("{base}/chat/completions")
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Endpoint {
            url,
            model: model.to_string(),
            api_key,
            max_tokens,
            agent,
        }
    }
}

impl ChatModel for Endpoint {
    fn chat(&self, messages: &[Message]) -> Result<String, String> {
        let body = json!({
            "model": self.model,
            "messages": messages.iter().map(|m| json!({"role": m.role, "content": m.content})).collect::<Vec<_>>(),
            "max_tokens": self.max_tokens,
            "temperature": 0.0,
        });
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(k) = &self.api_key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let mut resp = req
            .send(body.to_string().as_bytes())
            .map_err(|e| format!("{}: {e}", self.url))?;
        let status = resp.status().as_u16();
        let mut text = String::new();
        resp.body_mut()
            .as_reader()
            .take(16 << 20)
            .read_to_string(&mut text)
            .map_err(|e| format!("{}: reading the answer: {e}", self.url))?;
        if !(200..300).contains(&status) {
            let t: String = text.chars().take(300).collect();
            return Err(format!("{}: HTTP {status}: {t}", self.url));
        }
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{}: the answer is not JSON ({e})", self.url))?;
        v.pointer("/choices/0/message/content")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("{}: no choices[0].message.content in the answer", self.url))
    }
}

/// A `llama-server` child serving a local GGUF model on 127.0.0.1.
pub struct LocalServer {
    child: Child,
    base: String,
}

impl LocalServer {
    /// Start `server` (the `llama-server` binary) on `model` and wait until its
    /// `/health` answers 200 (or fail with its output's tail).
    pub fn start(
        server: &Path,
        model: &Path,
        ctx: u32,
        threads: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        if !model.is_file() {
            return Err(format!("model {}: no such file", model.display()));
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free localhost port: {e}"))?
            .port();
        let log = std::env::temp_dir().join(format!("saeplug-llama-server-{port}.log"));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err_file = log_file
            .try_clone()
            .map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new(server);
        cmd.arg("-m")
            .arg(model)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["-c", &ctx.to_string()])
            // One slot: the whole context for each (serial) request.
            .args(["-np", "1"])
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file);
        if threads > 0 {
            cmd.args(["-t", &threads.to_string()]);
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", server.display()))?;
        let mut me = LocalServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build()
            .into();
        let t0 = Instant::now();
        loop {
            if let Ok(Some(st)) = me.child.try_wait() {
                return Err(format!(
                    "{} exited ({st}) before serving: {}",
                    server.display(),
                    tail(&log)
                ));
            }
            if let Ok(r) = agent.get(&format!("{}/health", me.base)).call()
                && r.status().as_u16() == 200
            {
                return Ok(me);
            }
            if t0.elapsed() > timeout {
                return Err(format!(
                    "{} did not become healthy in {:?}: {}",
                    server.display(),
                    timeout,
                    tail(&log)
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The API base (`http://127.0.0.1:PORT/v1`).
    pub fn base(&self) -> String {
        format!("{}/v1", self.base)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

/// Where `llama-server` is: `explicit`, else `$SAEPLUG_LLAMA_DIR/build-server/bin`,
/// else the project's llama.cpp cache (`~/.cache/saeplug/llama/build-server/bin`),
/// where `scripts/build-llama.sh --server` puts it.
pub fn find_llama_server(explicit: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(p) = explicit {
        return if p.is_file() {
            Ok(p.to_path_buf())
        } else {
            Err(format!("{}: no such file", p.display()))
        };
    }
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("SAEPLUG_LLAMA_DIR") {
        dirs.push(PathBuf::from(d));
    }
    if let Some(h) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(h).join(".cache/saeplug/llama"));
    }
    for d in &dirs {
        let p = d.join("build-server/bin/llama-server");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(
        "llama-server not found: build it with `bash scripts/build-llama.sh --server` \
         or pass --llama-server PATH"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;

    /// A one-request-at-a-time HTTP server answering with `reply(body)`.
    fn serve(
        reply: fn(&str) -> (u16, String),
        n: usize,
    ) -> (String, std::thread::JoinHandle<Vec<String>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", l.local_addr().unwrap());
        let h = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..n {
                let (s, _) = l.accept().unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut len = 0;
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    head.push_str(&line);
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                let body = String::from_utf8(body).unwrap();
                let (code, out) = reply(&body);
                let mut s: TcpStream = s;
                write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
                    out.len()
                )
                .unwrap();
                seen.push(format!("{head}\n{body}"));
            }
            seen
        });
        (url, h)
    }

    #[test]
    fn endpoint_sends_openai_chat_and_reads_the_content() {
        let (url, h) = serve(
            |body| {
                let v: Value = serde_json::from_str(body).unwrap();
                let last = v["messages"][1]["content"].as_str().unwrap().to_uppercase();
                (
                    200,
                    json!({"choices": [{"message": {"role": "assistant", "content": last}}]})
                        .to_string(),
                )
            },
            1,
        );
        let e = Endpoint::new(&url, "m", Some("k3y".into()), 64, Duration::from_secs(10));
        let a = e
            .chat(&[Message::system("s"), Message::user("hello")])
            .unwrap();
        assert_eq!(a, "HELLO");
        let seen = h.join().unwrap();
        assert!(
            seen[0].starts_with("POST /v1/chat/completions"),
            "{}",
            seen[0]
        );
        assert!(
            seen[0]
                .to_ascii_lowercase()
                .contains("authorization: bearer k3y")
        );
        assert!(seen[0].contains("\"max_tokens\":64"));
    }

    #[test]
    fn endpoint_errors_are_messages() {
        let (url, h) = serve(|_| (500, "{\"error\":\"boom\"}".into()), 2);
        let e = Endpoint::new(&url, "m", None, 8, Duration::from_secs(10));
        let err = e.chat(&[Message::user("x")]).unwrap_err();
        assert!(err.contains("HTTP 500") && err.contains("boom"), "{err}");
        // Not JSON / no content: said so (the second request reuses the server).
        drop(h);
        let (url, h) = serve(|_| (200, "{\"choices\": []}".into()), 1);
        let e = Endpoint::new(&url, "m", None, 8, Duration::from_secs(10));
        assert!(
            e.chat(&[Message::user("x")])
                .unwrap_err()
                .contains("no choices")
        );
        h.join().unwrap();
        // Nothing listening.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = Endpoint::new(
            &format!("http://127.0.0.1:{port}/v1"),
            "m",
            None,
            8,
            Duration::from_secs(5),
        );
        let err = e.chat(&[Message::user("x")]).unwrap_err();
        assert!(err.contains(&port.to_string()), "{err}");
    }

    #[test]
    fn a_missing_server_binary_or_model_is_an_error() {
        assert!(find_llama_server(Some(Path::new("/nonexistent/llama-server"))).is_err());
        let e = LocalServer::start(
            Path::new("/bin/true"),
            Path::new("/nonexistent.gguf"),
            512,
            1,
            Duration::from_secs(1),
        );
        assert!(e.err().unwrap().contains("no such file"));
        // A "server" that exits at once is reported with its exit status.
        let m = tempfile::NamedTempFile::new().unwrap();
        let e = LocalServer::start(
            Path::new("/bin/false"),
            m.path(),
            512,
            1,
            Duration::from_secs(10),
        );
        assert!(e.err().unwrap().contains("exited"));
    }
}
