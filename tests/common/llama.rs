//! Helpers for the tests that drive the real engine (llama.cpp built by
//! scripts/build-llama.sh, SmolLM2 from its cache): where the build is, building
//! saeplug-llama, the corpus, an RPC server.
#![allow(dead_code, reason = "each engine test binary uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{repo_root, run_ok};

pub fn llama_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SAEPLUG_LLAMA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/saeplug/llama")
        });
    let ok = dir.join("src/include/llama.h").is_file()
        && dir.join("build/bin/libllama.so").is_file()
        && dir.join("model.gguf").is_file();
    if ok {
        return Some(dir);
    }
    if std::env::var("SAEPLUG_ALLOW_NO_LLAMA").as_deref() == Ok("1") {
        eprintln!(
            "NO LLAMA.CPP BUILD at {}; SAEPLUG_ALLOW_NO_LLAMA=1 set, this test checks nothing",
            dir.display()
        );
        return None;
    }
    panic!(
        "llama.cpp build or model missing in {}: run scripts/build-llama.sh (or set SAEPLUG_ALLOW_NO_LLAMA=1)",
        dir.display()
    );
}

/// Build saeplug-llama with its documented command (bindings/llama.cpp/build.sh),
/// and the `saeplug` CLI.
pub fn build(dir: &Path, out: &Path) -> PathBuf {
    let mut c = Command::new(option_env!("CARGO").unwrap_or("cargo"));
    c.current_dir(repo_root())
        .args(["build", "-q", "-p", "saeplug-cli"]);
    if !cfg!(debug_assertions) {
        c.arg("--release");
    }
    run_ok(&mut c);
    let exe = out.join("saeplug-llama");
    let mut b = Command::new("bash");
    b.arg(repo_root().join("bindings/llama.cpp/build.sh"))
        .arg("-o")
        .arg(&exe)
        .env("SAEPLUG_LLAMA_DIR", dir);
    if !cfg!(debug_assertions) {
        b.arg("--release");
    }
    run_ok(&mut b);
    exe
}

pub fn floats(p: &Path) -> Vec<f32> {
    std::fs::read(p)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// Real English text reachable here: the Python tutorial's reStructuredText
/// sources (Debian python3-doc; scripts/setup.sh installs it).
pub fn corpus() -> PathBuf {
    let found = std::fs::read_dir("/usr/share/doc")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("html/_sources/tutorial"))
        .filter(|p| p.join("introduction.rst.txt").is_file())
        .min();
    found.unwrap_or_else(|| {
        panic!("no corpus: /usr/share/doc/python3*/html/_sources/tutorial is missing (run scripts/setup.sh: it installs python3-doc)")
    })
}

/// A `ggml-rpc-server` on localhost, killed on drop.
pub struct RpcServer(pub std::process::Child, pub String);

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

pub fn rpc_server(dir: &Path) -> RpcServer {
    let exe = dir.join("build/bin/ggml-rpc-server");
    assert!(
        exe.is_file(),
        "{} is missing: the llama.cpp cache predates GGML_RPC; run scripts/build-llama.sh (it rebuilds)",
        exe.display()
    );
    // A free port: bind port 0, read it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(&exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string(), "-t", "2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start ggml-rpc-server");
    let server = RpcServer(child, format!("127.0.0.1:{port}"));
    let t0 = std::time::Instant::now();
    while std::net::TcpStream::connect(&server.1).is_err() {
        assert!(
            t0.elapsed().as_secs() < 30,
            "ggml-rpc-server did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    server
}
