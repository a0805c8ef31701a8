//! The python3 driver (driver.py) as a snapshot source: start it, freeze it at its doorbell after its
//! imports, capture it; and deploy children that answer one JSON request.

use crate::ktap::check;
use crate::util::{e, FREEZE_MS};
use uapi::{DeployOpts, Device, FreezePoint, FreezeState};

/// A frozen, captured python3 running driver.py; returns (snapshot, cookie address).
pub fn python_snapshot(d: &Device, python: &str) -> Result<(u64, u64, u64), String> {
    let script = std::env::temp_dir().join("seuss_driver.py");
    std::fs::write(&script, include_str!("driver.py")).map_err(|e| e.to_string())?;
    let mut child = std::process::Command::new(python)
        .arg("-I")
        .arg(&script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("{python}: {e}"))?;
    let mut stdin = child.stdin.take().unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let (mut bell, mut cookie) = (0, 0);
    loop {
        let mut l = String::new();
        use std::io::BufRead;
        if out.read_line(&mut l).map_err(|e| e.to_string())? == 0 {
            return Err("python driver exited".into());
        }
        let l = l.trim();
        if l == "ready" {
            break;
        }
        let hex = |v: &str| u64::from_str_radix(v.trim_start_matches("0x"), 16).unwrap_or(0);
        if let Some(v) = l.strip_prefix("doorbell=") {
            bell = hex(v);
        }
        if let Some(v) = l.strip_prefix("cookie=") {
            cookie = hex(v);
        }
    }
    let id = d.arm(child.id() as i32, FreezePoint::Write { addr: bell, len: 8 }).map_err(e("ARM python"))?;
    use std::io::Write;
    writeln!(stdin, "go").map_err(|e| e.to_string())?;
    stdin.flush().map_err(|e| e.to_string())?;
    check(matches!(d.wait(id, FREEZE_MS).map_err(e("WAIT"))?, FreezeState::Frozen { .. }), || "python not frozen".into())?;
    let t0 = std::time::Instant::now();
    let snap = d.capture(id).map_err(e("CAPTURE python"))?;
    let capture_us = t0.elapsed().as_micros() as u64;
    d.release(id, true).map_err(e("KILL"))?;
    let _ = child.wait();
    Ok((snap, cookie, capture_us))
}

/// Deploys one python child with `cookie`, sends {"a":a,"b":b}; returns (reply line, pid, exit code).
pub fn python_call(d: &Device, snap: u64, cookie_addr: u64, cookie: u64, a: i64, b: i64) -> Result<(String, i32, i32), String> {
    let mut c = crate::util::fork_deploy(d, snap, DeployOpts { tid_addr: None, cookie: Some((cookie_addr, cookie)) }, || {});
    c.send(&format!("{{\"a\": {a}, \"b\": {b}}}"))?;
    let l = c.line();
    let pid = c.pid;
    let code = c.wait();
    Ok((l.map_err(|x| format!("{x}, exit {code}"))?, pid, code))
}

