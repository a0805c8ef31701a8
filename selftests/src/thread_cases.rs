//! The multi-threaded engine cases (run with the `engine` suite): every thread of a process frozen,
//! captured in its own state and recreated in each child. The target is `seuss_target mt`
//! (`target_threads.rs`: eight threads in eight states, frozen at a watchpoint that one non-leader thread
//! writes).

use std::collections::HashSet;

use crate::ktap::{check, Case};
use crate::util::*;
use uapi::{DeployOpts, Device, FreezePoint, FreezeState};

pub const CASES: &[Case] = &[
    Case { name: "threads_8_states_frozen_captured_10_children_run_all", run: eight_threads_ten_children },
    Case { name: "threads_kill_while_frozen_leaves_nothing", run: kill_frozen_mt },
    Case { name: "threads_deploy_exit_1000_cycles_leave_counters", run: cycles_mt },
];

/// Exit status of an `mt` process whose checks all passed, and of its `exit` command.
const MT_OK: i32 = 42;
const MT_EXIT: i32 = 43;

/// An `mt` target frozen at its bell thread's doorbell store.
fn frozen_mt(d: &Device) -> Result<(Target, u64), String> {
    let mut t = Target::spawn(&["mt"])?;
    check(t.bell_tid != 0, || "the target printed no bell_tid".into())?;
    let id = d.arm(t.bell_tid as i32, FreezePoint::Write { addr: t.doorbell, len: 8 }).map_err(e("ARM"))?;
    t.send("go")?;
    match d.wait(id, FREEZE_MS).map_err(e("WAIT"))? {
        FreezeState::Frozen { .. } => Ok((t, id)),
        s => Err(format!("state {s:?}, want Frozen")),
    }
}

/// Checks one `mtreport` line of process `pid` that ran `check k`; returns its tids.
fn mt_report_ok(line: &str, pid: i32, k: u64) -> Result<Vec<i32>, String> {
    check(line.starts_with("mtreport "), || format!("not a report: {line}"))?;
    check(field(line, "pid") == Some(&pid.to_string()), || format!("report of another process (want pid {pid}): {line}"))?;
    check(field(line, "k") == Some(&k.to_string()), || format!("command lost: {line}"))?;
    check(field(line, "failed") == Some("0") && field(line, "kills") == Some("7"), || format!("checks failed: {line}"))?;
    let tids: Vec<i32> = field(line, "tids").unwrap_or("").split(',').filter_map(|t| t.parse().ok()).collect();
    check(tids.len() == 8 && tids[0] == pid, || format!("tids (the first must be the pid): {line}"))?;
    Ok(tids)
}

/// Eight threads frozen in eight states (two futex waits, nanosleep, a pipe read, poll, pause, one
/// spinning, one at its store); ten children deployed side by side each run all eight with their own
/// tids and TLS, signal each thread through the C library's tid, create and join a new thread, join all
/// eight, and keep their memory to themselves; the resumed source does the same.
fn eight_threads_ten_children() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    let (mut t, id) = frozen_mt(&d)?;
    let src_tids = threads_of(t.pid());
    check(src_tids.len() == 8, || format!("source has {} threads, want 8", src_tids.len()))?;
    let snap = d.capture(id).map_err(e("CAPTURE"))?;
    let info = d.snap_info(snap).map_err(e("SNAP_INFO"))?;
    check(info.threads == 8, || format!("snapshot holds {} threads, want 8", info.threads))?;
    let mut stubs: Vec<Stub> = (0..10).map(|_| fork_deploy(&d, snap, DeployOpts::default(), || {})).collect();
    // All ten run side by side before any gets its command.
    for s in &stubs {
        let pid = s.pid;
        wait_for("a child's 8 threads", 60_000, || threads_of(pid).len() >= 8)?;
    }
    let mut seen: HashSet<i32> = src_tids.clone();
    for (i, s) in stubs.iter_mut().enumerate() {
        s.send(&format!("check {}", 1000 + i))?;
    }
    for (i, s) in stubs.into_iter().enumerate() {
        let mut s = s;
        let pid = s.pid;
        let line = s.line()?;
        let tids = mt_report_ok(&line, pid, 1000 + i as u64)?;
        for tid in tids {
            check(seen.insert(tid), || format!("child {i}: tid {tid} seen in another process: {line}"))?;
        }
        let code = s.wait();
        check(code == MT_OK, || format!("child {i}: exit {code}: {line}"))?;
    }
    d.release(id, false).map_err(e("RESUME"))?;
    t.send("check 7")?;
    let line = t.line()?;
    let pid = t.pid();
    mt_report_ok(&line, pid, 7)?;
    let code = t.wait();
    check(code == MT_OK, || format!("source: exit {code}: {line}"))?;
    let info = d.snap_info(snap).map_err(e("SNAP_INFO"))?;
    check(info.deployed == 10, || format!("deployed {}", info.deployed))?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
    stats_back_to(&d, &base)
}

/// SIGKILL of a frozen 8-thread process ends every thread, and the module holds nothing afterwards.
fn kill_frozen_mt() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    for round in 0..3 {
        let (t, id) = frozen_mt(&d)?;
        let pid = t.pid();
        if round == 1 {
            // With a snapshot taken first.
            let snap = d.capture(id).map_err(e("CAPTURE"))?;
            d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
        }
        if round == 2 {
            sigkill(pid);
        } else {
            d.release(id, true).map_err(e("KILL"))?;
        }
        let code = t.wait();
        check(code == 128 + libc::SIGKILL, || format!("round {round}: exit {code}, want SIGKILL"))?;
        check(!std::path::Path::new(&format!("/proc/{pid}")).exists(), || format!("round {round}: pid {pid} still there"))?;
        match d.wait(id, 0) {
            Ok(FreezeState::Dead) | Err(_) => {}
            Ok(s) => return Err(format!("round {round}: freeze state {s:?} after the kill")),
        }
        if round == 2 {
            let _ = d.release(id, false);
        }
    }
    stats_back_to(&d, &base)
}

/// 1,000 deploys of the 8-thread snapshot, each child leaving at once (exit_group with 8 threads):
/// every one exits as asked, and the counters come back to where they were.
fn cycles_mt() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    let (t, id) = frozen_mt(&d)?;
    let snap = d.capture(id).map_err(e("CAPTURE"))?;
    d.release(id, true).map_err(e("KILL"))?;
    t.wait();
    let before = d.stats().map_err(e("STATS"))?;
    let t0 = std::time::Instant::now();
    for i in 0..1000 {
        let mut s = fork_deploy(&d, snap, DeployOpts::default(), || {});
        s.send("exit")?;
        let code = s.wait();
        check(code == MT_EXIT, || format!("cycle {i}: exit {code}"))?;
    }
    println!("# 1000 deploy/exit cycles of the 8-thread snapshot: {} ms", t0.elapsed().as_millis());
    let after = d.stats().map_err(e("STATS"))?;
    check(after.deploys == before.deploys + 1000, || format!("deploys {} -> {}", before.deploys, after.deploys))?;
    check(after.instances == before.instances && after.pages_held == before.pages_held && after.snapshots == before.snapshots,
        || format!("counters moved: {before:?} -> {after:?}"))?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
    stats_back_to(&d, &base)
}
