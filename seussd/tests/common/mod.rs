//! Shared test helpers: a host on a temporary state directory running a real `python3`, an in-process
//! HTTP server on 127.0.0.1:0 and a minimal HTTP/1.1 client.

#![allow(dead_code)]

pub mod daemon;
pub mod fake;

use seussd::config::{Config, UseSnapshots};
use seussd::engine::SnapshotEngine;
use seussd::host::{FunctionDef, Host};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub const CRED: &str = "23bc46b1-71f6-4ed5-8c54-816aa4f8c502:testkey";

pub fn config(state: &Path) -> Config {
    Config {
        state_dir: state.to_path_buf(),
        listen: "127.0.0.1:0".into(),
        auth: vec![CRED.into()],
        python: "/usr/bin/python3".into(),
        use_snapshots: UseSnapshots::Off,
        stub: Some(env!("CARGO_BIN_EXE_seuss-stub").into()),
        stub_pool: 0,
        cgroup_root: state.join("no-cgroup/seuss"),
        idle_timeout_s: 60,
        ..Config::default()
    }
}

pub async fn host(state: &Path) -> Host {
    Host::start(config(state), None).await.expect("host starts")
}

pub async fn host_with(cfg: Config, engine: Option<Arc<dyn SnapshotEngine>>) -> Host {
    Host::start(cfg, engine).await.expect("host starts")
}

pub fn def(code: &str) -> FunctionDef {
    serde_json::from_value(serde_json::json!({"exec": {"kind": "python:3", "code": code}})).unwrap()
}

/// Serves `host`'s HTTP API on an ephemeral port; returns the address.
pub async fn serve(host: Host) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(seussd::http::serve(host, l, std::future::pending()));
    addr
}

pub struct Resp {
    pub status: u16,
    /// The response head (status line and headers).
    pub head: String,
    pub body: Vec<u8>,
}

impl Resp {
    /// The value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

pub fn basic(cred: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(cred)
    )
}

/// One HTTP/1.1 request with `Connection: close`.
pub async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
) -> Resp {
    let authz = auth.map(basic);
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &authz {
        headers.push(("Authorization", a));
    }
    request_with(addr, method, path, &headers, body).await
}

/// One HTTP/1.1 request with `Connection: close` and the given headers (no others but Host and
/// Content-Length).
pub async fn request_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading a large body: ignore write errors then.
    let _ = s.write_all(body).await;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw).await;
    let text_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..text_end]).into_owned();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut body = raw[text_end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + n]);
            rest = &rest[nl + 4 + n..];
        }
        body = out;
    }
    Resp { status, head, body }
}

pub async fn call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> Resp {
    let b = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(&body).unwrap()
    };
    request(addr, method, path, Some(CRED), &b).await
}

/// Creates Python action `name` in the caller's namespace with `code`; asserts 200.
pub async fn create_python(addr: std::net::SocketAddr, name: &str, code: &str) {
    let r = call(
        addr,
        "PUT",
        &format!("/api/v1/namespaces/_/actions/{name}"),
        serde_json::json!({"exec": {"kind": "python:3", "code": code}}),
    )
    .await;
    assert_eq!(r.status, 200, "create {name}: {}", String::from_utf8_lossy(&r.body));
}
