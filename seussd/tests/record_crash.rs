//! An activation record survives a crash once written: a seussd SIGKILLed by the `record-saved` test
//! hook right after its writer committed the record (no shutdown, no flush) leaves it for the next seussd
//! on the same state directory, whole, in `GET .../activations/ID` and in the list. Its own test binary,
//! as `crash_hook.rs`: the hook is read once per process, from the environment (here the daemon's).

mod common;

use common::*;
use serde_json::{json, Value};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// seussd on `dir/state`, its JSON log lines and the API address it printed.
fn daemon(dir: &Path, hook: Option<&str>) -> (Child, mpsc::Receiver<Value>, std::net::SocketAddr) {
    let cfg = common::daemon::write_config(dir, CRED, "");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_seussd"));
    cmd.args(["--no-dbus", "--config"]).arg(&cfg).env("RUST_LOG", "info").env_remove("NOTIFY_SOCKET");
    match hook {
        Some(h) => cmd.env("SEUSSD_TEST_HOOK", h),
        None => cmd.env_remove("SEUSSD_TEST_HOOK"),
    };
    let mut child = cmd.stderr(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    let log = common::daemon::json_log(&mut child);
    let addr = common::daemon::api_addr(&log, WAIT);
    (child, log, addr)
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

#[test]
fn a_record_written_before_a_sigkill_is_there_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _log, addr) = daemon(dir.path(), Some("record-saved@f"));
    let id = block_on(async {
        create_python(addr, "f", "def main(a):\n    return {'got': a['x']}\n").await;
        // Not blocking: the answer (the id) comes before the record exists, and so before the kill.
        let r = call(addr, "POST", "/api/v1/namespaces/_/actions/f", json!({"x": 42})).await;
        assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
        r.json()["activationId"].as_str().unwrap().to_string()
    });
    // The writer commits the record, then the hook kills seussd: wait for that death.
    // A pidfd becomes readable when the process ends: wait on that, bounded by WAIT.
    // SAFETY: pidfd_open on our own child, which is not reaped before the wait below.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::pid_t, 0) } as libc::c_int;
    assert!(pidfd >= 0, "pidfd_open: {}", std::io::Error::last_os_error());
    let mut pfd = libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, WAIT.as_millis() as libc::c_int) };
    // SAFETY: closing the pidfd opened above.
    unsafe { libc::close(pidfd) };
    assert_eq!(ready, 1, "the record-saved hook did not kill seussd within {WAIT:?}");
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");

    let (mut child, _log, addr) = daemon(dir.path(), None);
    block_on(async {
        let r = call(addr, "GET", &format!("/api/v1/namespaces/_/activations/{id}"), json!(null)).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        let a = r.json();
        assert_eq!(a["response"]["result"], json!({"got": 42}));
        assert_eq!(a["response"]["status"], json!("success"));
        let l = call(addr, "GET", "/api/v1/namespaces/_/activations?docs=true", json!(null)).await.json();
        assert_eq!(l.as_array().unwrap().len(), 1, "{l}");
        assert_eq!(l[0]["activationId"], json!(id));
    });
    let _ = child.kill();
    let _ = child.wait();
}
