//! The `seussd` binary as systemd runs it: sd_notify READY and WATCHDOG without D-Bus (`--no-dbus`), a
//! JSON log, SIGHUP reloading credentials and limits from the file, SIGTERM letting an activation in
//! flight finish and be recorded before the process exits 0.

mod common;

use common::*;
use serde_json::{json, Value};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const A: &str = "/api/v1/namespaces/_/actions";
const OTHER: &str = "0f0f0f0f-1111-2222-3333-444444444444:otherkey";
const GATED: &str = "import os, time\ndef main(args):\n    while not os.path.exists(args['gate']):\n        time.sleep(0.005)\n    return {'through': True}\n";
const WAIT: Duration = Duration::from_secs(60);

fn write_config(dir: &Path, cred: &str, per_minute: u32) -> std::path::PathBuf {
    common::daemon::write_config(dir, cred, &format!("limit_per_minute = {per_minute}\nshutdown_grace_s = 120\n"))
}

/// The daemon, its log lines (each parsed as JSON: a line that is not JSON fails the test) and the
/// sd_notify datagrams it sent.
struct Daemon {
    child: Child,
    log: mpsc::Receiver<Value>,
    notes: UnixDatagram,
}

impl Daemon {
    /// Waits for a log line whose message contains `text`; returns it.
    fn log_line(&self, text: &str) -> Value {
        common::daemon::log_line(&self.log, text, WAIT)
    }

    /// Waits for a notification datagram equal to `want` (e.g. "READY=1").
    fn notified(&self, want: &str) {
        let t0 = Instant::now();
        let mut buf = [0u8; 4096];
        loop {
            assert!(t0.elapsed() < WAIT, "no sd_notify {want}");
            let n = self.notes.recv(&mut buf).expect("an sd_notify datagram");
            if String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == want) {
                return;
            }
        }
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, config: &Path) -> Daemon {
    let sock = dir.join("notify.sock");
    let notes = UnixDatagram::bind(&sock).unwrap();
    notes.set_read_timeout(Some(WAIT)).unwrap();
    // As systemd does: WATCHDOG_PID names the daemon itself (the shell's pid, which exec keeps).
    let mut child = Command::new("/bin/sh")
        .args(["-c", "WATCHDOG_PID=$$ exec \"$0\" --no-dbus --config \"$1\""])
        .arg(env!("CARGO_BIN_EXE_seussd"))
        .arg(config)
        .env("NOTIFY_SOCKET", &sock)
        .env("WATCHDOG_USEC", "400000")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let log = common::daemon::json_log(&mut child);
    Daemon { child, log, notes }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn notify_reload_and_drain_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), CRED, 0);
    let mut d = start(dir.path(), &cfg);
    let addr = common::daemon::api_addr(&d.log, WAIT);
    d.notified("READY=1");
    d.notified("WATCHDOG=1");
    d.notified("WATCHDOG=1");
    block_on(async {
        assert_eq!(request(addr, "GET", "/api/v1/namespaces", Some(CRED), b"").await.status, 200);
        assert_eq!(request(addr, "GET", "/api/v1/namespaces", Some(OTHER), b"").await.status, 401);
    });

    // SIGHUP: the other credential and a per-minute limit of 2 take effect; the old credential is gone.
    write_config(dir.path(), OTHER, 2);
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.notified("RELOADING=1");
    d.notified("READY=1");
    d.log_line("reloaded");
    let gate = dir.path().join("gate");
    let id = block_on(async {
        assert_eq!(request(addr, "GET", "/api/v1/namespaces", Some(CRED), b"").await.status, 401);
        assert_eq!(request(addr, "GET", "/api/v1/namespaces", Some(OTHER), b"").await.status, 200);
        let def = serde_json::to_vec(&json!({"exec": {"kind": "python:3", "code": GATED}})).unwrap();
        assert_eq!(request(addr, "PUT", &format!("{A}/slow"), Some(OTHER), &def).await.status, 200);
        let args = serde_json::to_vec(&json!({"gate": gate})).unwrap();
        let first = request(addr, "POST", &format!("{A}/slow"), Some(OTHER), &args).await;
        assert_eq!(first.status, 202);
        assert_eq!(request(addr, "POST", &format!("{A}/slow"), Some(OTHER), &args).await.status, 202);
        let third = request(addr, "POST", &format!("{A}/slow"), Some(OTHER), &args).await;
        assert_eq!(third.status, 429, "{}", String::from_utf8_lossy(&third.body));
        first.json()["activationId"].as_str().unwrap().to_string()
    });

    // A bad file on SIGHUP keeps what is in force.
    std::fs::write(&cfg, "listen = 3\n").unwrap();
    d.signal(nix::sys::signal::Signal::SIGHUP);
    d.log_line("reload failed");
    block_on(async {
        assert_eq!(request(addr, "GET", "/api/v1/namespaces", Some(OTHER), b"").await.status, 200);
    });

    // SIGTERM with two activations in flight: the daemon waits for them, then exits 0.
    d.signal(nix::sys::signal::Signal::SIGTERM);
    d.notified("STOPPING=1");
    d.log_line("waiting up to");
    assert!(d.child.try_wait().unwrap().is_none(), "seussd waits for the activations in flight");
    std::fs::write(&gate, b"").unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < WAIT, "seussd did not exit after the activations finished");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    d.log_line("stopped");

    // The drained activation was recorded.
    let mut c = config(&dir.path().join("state"));
    c.state_dir = dir.path().join("state");
    block_on(async {
        let h = host_with(c, None).await;
        let a = h.get_activation(&id).await.unwrap();
        assert_eq!(a.response.status, "success", "{:?}", a.response);
        h.shutdown().await;
    });
}
