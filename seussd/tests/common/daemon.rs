//! A `seussd` process under test: its configuration file, its JSON log (stderr, one object per line: a line that is not JSON
//! fails the test) read on a thread of its own, and waiting for a line.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Writes `dir/seussd.toml` for a seussd on `dir/state` accepting `cred`, without snapshots, cgroups or a
/// stub pool, logging JSON, plus the TOML lines `extra`; returns its path.
pub fn write_config(dir: &Path, cred: &str, extra: &str) -> PathBuf {
    let p = dir.join("seussd.toml");
    let text = format!(
        "state_dir = {:?}\nlisten = \"127.0.0.1:0\"\nauth = [{cred:?}]\nuse_snapshots = \"off\"\nstub_pool = 0\n\
         cgroup_root = {:?}\nlog_format = \"json\"\n{extra}",
        dir.join("state"),
        dir.join("no-cgroup/seuss"),
    );
    std::fs::write(&p, text).unwrap();
    p
}

/// The log lines of `child` (spawned with `log_format = "json"` and stderr piped), parsed.
pub fn json_log(child: &mut Child) -> mpsc::Receiver<Value> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let v: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("a log line that is not JSON ({e}): {line}"));
            assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
            if tx.send(v).is_err() {
                return;
            }
        }
    });
    log
}

/// Waits up to `wait` for a log line whose message contains `text`; returns it.
pub fn log_line(log: &mpsc::Receiver<Value>, text: &str, wait: Duration) -> Value {
    let t0 = Instant::now();
    loop {
        let left = wait.checked_sub(t0.elapsed()).unwrap_or_else(|| panic!("no log line with '{text}'"));
        let v = log.recv_timeout(left).unwrap_or_else(|_| panic!("no log line with '{text}'"));
        if v["message"].as_str().is_some_and(|m| m.contains(text)) {
            return v;
        }
    }
}

/// The API address in seussd's "OpenWhisk API on http://ADDR" line, waited for.
pub fn api_addr(log: &mpsc::Receiver<Value>, wait: Duration) -> std::net::SocketAddr {
    let up = log_line(log, "OpenWhisk API on http://", wait);
    up["message"].as_str().unwrap().rsplit('/').next().unwrap().parse().unwrap()
}
