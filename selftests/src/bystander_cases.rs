//! What other processes do meanwhile must not change a freeze, a capture or a deploy: a copy of the
//! arming descriptor held by another process keeps nothing frozen once the arming process is gone, and
//! a reader of `/proc/PID/*` (which holds the task's mm for a moment, as `get_task_mm()` does) does not
//! make CAPTURE or DEPLOY refuse the task as one that shares its mm. Both were found by `seuss_fuzz`:
//! a stub parked forever by a freeze whose session only it still held, and a DEPLOY refused with
//! EOPNOTSUPP while DIRTY looked at the stub. A third case closes the arming descriptor from another
//! thread during ARM while a child keeps the file open (the fuzzer found a task parked by a freeze that
//! no descriptor owned any more). Run alone as `seuss_test bystanders`.

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use crate::ktap::{check, Case};
use crate::util::*;
use uapi::{DeployOpts, FreezePoint, FreezeState};

pub const CASES: &[Case] = &[
    Case { name: "bystander_inherited_fd_keeps_nothing_frozen_after_the_armer_exits", run: inherited_fd },
    Case { name: "bystander_proc_readers_do_not_refuse_capture_or_deploy", run: proc_readers },
    Case { name: "bystander_arm_racing_close_of_its_descriptor_leaves_nothing_frozen", run: arm_vs_close },
];

/// Rounds of the ARM-versus-close race.
const RACE_ROUNDS: usize = 150;

/// Rounds per case: each is a freeze, a capture or a deploy with the bystander active.
const ROUNDS: usize = 20;
/// Generous bounds for a loaded TCG guest: conditions, not latencies.
const WAIT_MS: u32 = 60_000;
const LINE_MS: u64 = 60_000;

/// A forked process arms freeze-now on a sleeping target through a descriptor this process opened (so
/// this process keeps the file open) and exits once the target is frozen: the target must run on.
fn inherited_fd() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    for round in 0..ROUNDS {
        let mut t = Target::spawn(&["sleep"])?;
        let pid = t.pid();
        wait_pipe_read(pid, LINE_MS)?;
        // SAFETY: the child only makes ioctls and exits.
        let code = match unsafe { libc::fork() } {
            0 => {
                let frozen = d.arm(pid, FreezePoint::Now).ok().and_then(|id| d.wait(id, WAIT_MS).ok());
                let ok = matches!(frozen, Some(FreezeState::Frozen { .. }));
                // SAFETY: leaving the forked child.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            p => wait_pid(p),
        };
        check(code == 0, || format!("round {round}: the arming child exited {code} (not frozen)"))?;
        // The arming process is gone; this process still holds the file it armed through.
        t.send("after")?;
        let l = line_within(&mut t.out, LINE_MS).map_err(|x| format!("round {round}: the target stays frozen: {x}"))?;
        check(l.starts_with("got after"), || format!("round {round}: target said {l}"))?;
        let rc = t.wait();
        check(rc == REPORT_OK, || format!("round {round}: target exit {rc}"))?;
    }
    wait_for("STATS back to baseline", LINE_MS, || stats_back_to(&d, &base).is_ok())?;
    stats_back_to(&d, &base)
}

/// Reads `/proc/PID/cmdline` in a loop until `stop`; counts the reads.
fn hammer(pid: i32, stop: &AtomicBool, reads: &AtomicU64) {
    let path = format!("/proc/{pid}/cmdline");
    let mut buf = Vec::new();
    while !stop.load(Relaxed) {
        if let Ok(mut f) = std::fs::File::open(&path) {
            buf.clear();
            let _ = f.read_to_end(&mut buf);
        }
        reads.fetch_add(1, Relaxed);
    }
}

/// CAPTUREs of a frozen target and DEPLOYs of stubs, each while another thread keeps reading the task's
/// `/proc/PID/cmdline`: every one succeeds.
fn proc_readers() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    let mut t = Target::spawn(&["watch"])?;
    let id = d.arm(t.pid(), FreezePoint::Write { addr: t.doorbell, len: 8 }).map_err(e("ARM"))?;
    t.send("go")?;
    check(matches!(d.wait(id, WAIT_MS).map_err(e("WAIT"))?, FreezeState::Frozen { .. }), || "not frozen".into())?;
    let stop = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let tpid = t.pid();
    let snaps = std::thread::scope(|s| {
        s.spawn(|| hammer(tpid, &stop, &reads));
        wait_for("the reader to start", LINE_MS, || reads.load(Relaxed) > 0)?;
        let r: Result<Vec<u64>, String> = (0..ROUNDS).map(|i| d.capture(id).map_err(|x| format!("CAPTURE {i} beside a /proc reader: {x}"))).collect();
        stop.store(true, Relaxed);
        r
    })?;
    d.release(id, true).map_err(e("KILL"))?;
    t.wait();
    let snap = snaps[0];
    for &s in &snaps[1..] {
        d.snap_release(s).map_err(e("SNAP_RELEASE"))?;
    }
    for round in 0..ROUNDS {
        // The stub deploys once the reader runs on it.
        let (gate_r, mut gate_w) = pipe_pair();
        let mut stub = fork_deploy(&d, snap, DeployOpts::default(), move || {
            let mut b = [0u8; 1];
            let _ = (&gate_r).read(&mut b);
        });
        let stop = AtomicBool::new(false);
        let reads = AtomicU64::new(0);
        let pid = stub.pid;
        let line = std::thread::scope(|s| {
            s.spawn(|| hammer(pid, &stop, &reads));
            let r = wait_for("the reader to start", LINE_MS, || reads.load(Relaxed) > 0)
                .and_then(|_| std::io::Write::write_all(&mut gate_w, b"x").map_err(|x| x.to_string()))
                .and_then(|_| stub.send("check"))
                .and_then(|_| line_within(&mut stub.out, LINE_MS));
            stop.store(true, Relaxed);
            r
        });
        let code = stub.wait();
        let line = line.map_err(|x| format!("round {round}: no report from the stub (exit {code}, 100 + errno if its DEPLOY failed): {x}"))?;
        report_ok(&line, pid).map_err(|x| format!("round {round}: {x}"))?;
        check(code == REPORT_OK, || format!("round {round}: stub exit {code}"))?;
    }
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
    wait_for("STATS back to baseline", LINE_MS, || stats_back_to(&d, &base).is_ok())?;
    stats_back_to(&d, &base)
}

/// Freeze-now through a descriptor that another thread closes during the ARM call, while a forked child
/// keeps the file open (so the file's last reference does not go): whatever ARM answers (a freeze id, or
/// EBADF), no freeze is left behind once the descriptor is closed, and the target runs on.
fn arm_vs_close() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let base = d.stats().map_err(e("STATS"))?;
    let mut t = Target::spawn(&["sleep"])?;
    let pid = t.pid();
    wait_pipe_read(pid, LINE_MS)?;
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|x| x.as_nanos() as u64).unwrap_or(1) | 1;
    println!("# arm vs close: seed {seed:#x}");
    let (mut armed, mut ebadf) = (0u32, 0u32);
    for round in 0..RACE_ROUNDS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let spin = seed % 30_000;
        // SAFETY: opening the device; this function owns the descriptor (closed by the closer thread).
        let fd = unsafe { libc::open(c"/dev/seuss".as_ptr(), libc::O_RDWR) };
        check(fd >= 0, || format!("round {round}: open /dev/seuss: {}", std::io::Error::last_os_error()))?;
        let (hold_r, hold_w) = pipe_pair();
        // SAFETY: the child only reads a pipe and exits; it keeps its inherited copy of `fd` until then.
        let holder = match unsafe { libc::fork() } {
            0 => {
                drop(hold_w);
                let mut b = [0u8; 1];
                let _ = (&hold_r).read(&mut b);
                // SAFETY: leaving the forked child.
                unsafe { libc::_exit(0) }
            }
            p => p,
        };
        drop(hold_r);
        // SAFETY: all-zero is a valid seuss_arm (plain data); the fields ARM reads are set below.
        let mut a: uapi::seuss_arm = unsafe { std::mem::zeroed() };
        a.size = std::mem::size_of::<uapi::seuss_arm>() as u32;
        a.pid = pid;
        a.kind = uapi::SEUSS_ARM_NOW;
        let r = std::thread::scope(|s| {
            s.spawn(move || {
                for _ in 0..spin {
                    std::hint::spin_loop();
                }
                // SAFETY: closing the descriptor opened above; the other thread may be in an ioctl on it.
                unsafe { libc::close(fd) };
            });
            // SAFETY: an ioctl on our descriptor (or on a closed number: EBADF) with a live argument.
            let r = unsafe { libc::ioctl(fd, uapi::request::ARM as _, &mut a as *mut uapi::seuss_arm) };
            if r < 0 { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)) } else { Ok(()) }
        });
        match r {
            Ok(()) => armed += 1,
            Err(libc::EBADF) => ebadf += 1,
            Err(x) => return Err(format!("round {round}: ARM racing close gave errno {x}, want success or EBADF")),
        }
        // The descriptor is closed: nothing may stay armed or frozen, although the holder keeps the file.
        let left = wait_for("the freeze to be released", LINE_MS, || d.stats().is_ok_and(|s| s.frozen == base.frozen));
        drop(hold_w);
        let hc = wait_pid(holder);
        left.map_err(|x| format!("round {round} (spin {spin}, ARM {r:?}): {x}: a freeze outlived every descriptor of its file"))?;
        check(hc == 0, || format!("round {round}: holder exit {hc}"))?;
        wait_pipe_read(pid, LINE_MS).map_err(|x| format!("round {round}: the target does not run on: {x}"))?;
    }
    println!("# arm vs close: {RACE_ROUNDS} rounds: {armed} armed (released by the close), {ebadf} EBADF");
    t.send("after")?;
    let l = line_within(&mut t.out, LINE_MS)?;
    check(l.starts_with("got after"), || format!("target said {l}"))?;
    let rc = t.wait();
    check(rc == REPORT_OK, || format!("target exit {rc}"))?;
    wait_for("STATS back to baseline", LINE_MS, || stats_back_to(&d, &base).is_ok())?;
    stats_back_to(&d, &base)
}
