//! Fault injection (the `debug` kernel: CONFIG_FAULT_INJECTION with failslab, fail_page_alloc,
//! fail_usercopy and `/proc/<tid>/fail-nth`, Documentation/fault-injection/fault-injection.rst).
//!
//! For each of ARM, CAPTURE, DEPLOY and DIRTY: for n = 1, 2, ... the n-th fault site the task meets from
//! the ioctl on fails (n is written to the task's `fail-nth` right before the call; reading it back after
//! the call gives 0 once the fault was injected), until a call completes without meeting its n-th site.
//! Past the first 48 sites n is sampled (`next_n`); `SEUSS_FAULT_FULL=1` visits every site.
//! Every call must either succeed or return a documented errno (contract item 11), leave nothing behind
//! (STATS back to the baseline once the iteration's objects are gone, item 12), and leave the tasks
//! involved working: a stub whose DEPLOY returned an errno is still its old self and reports back; a
//! source whose CAPTURE failed still runs and reports correctly; other snapshots still deploy.
//!
//! Two passes per ioctl: `alloc` makes sleeping allocations eligible (failslab and fail_page_alloc with
//! ignore-gfp-wait=N, fail_page_alloc min-order=0 and ignore-gfp-highmem=N, so user pages too) besides
//! user copies; `usercopy` restores the allocators' defaults, leaving mostly fail_usercopy's sites.
//! Capture runs in the parked target's own context: its faults are injected through the target's
//! `fail-nth`, the controller's side of CAPTURE (argument copies, bookkeeping) through the controller's.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::BufReader;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::ktap::{check, Case};
use crate::util::*;
use nix::errno::Errno;
use uapi::{DeployOpts, Device, FreezePoint, FreezeState};

pub const CASES: &[Case] = &[
    Case { name: "fault_inject_arm_now_and_watchpoint", run: arm },
    Case { name: "fault_inject_capture_controller_side", run: capture_controller },
    Case { name: "fault_inject_capture_in_target_with_share_unchanged", run: capture_target },
    Case { name: "fault_inject_deploy_in_stub", run: deploy },
    Case { name: "fault_inject_dirty", run: dirty },
];

/// Bound on n: no ioctl here has that many fault sites.
const MAX_N: u32 = 2000;
const DEBUGFS: &str = "/sys/kernel/debug";
/// How long a single step (a freeze, a deploy, a child's answer) may take under TCG with KASAN.
pub(crate) const STEP_MS: u64 = 60_000;

/// Errnos an ioctl may return (contract item 11), minus EINTR: no signal is sent during these cases.
const DOCUMENTED: &[Errno] = &[
    Errno::EPERM, Errno::ENOENT, Errno::ESRCH, Errno::EBADF, Errno::ENOMEM, Errno::EFAULT, Errno::EBUSY,
    Errno::EINVAL, Errno::ENOSPC, Errno::ENOTTY, Errno::E2BIG, Errno::EAGAIN, Errno::EOPNOTSUPP, Errno::ETIMEDOUT,
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Pass {
    Alloc,
    Usercopy,
}

impl std::fmt::Display for Pass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Pass::Alloc => "alloc",
            Pass::Usercopy => "usercopy",
        })
    }
}

const PASSES: [Pass; 2] = [Pass::Alloc, Pass::Usercopy];

/// The debugfs fault-injection settings of one pass; the previous values come back on drop.
struct FaultCfg {
    saved: Vec<(String, String)>,
    mounted: bool,
}

/// Whether this kernel has fail-nth at all; the SKIP reason if not.
fn fault_injection_available() -> Result<(), String> {
    if !Path::new("/proc/self/fail-nth").exists() {
        return Err("SKIP no /proc/self/fail-nth: this kernel lacks CONFIG_FAULT_INJECTION (run on SEUSS_FLAVOR=debug)".into());
    }
    Ok(())
}

impl FaultCfg {
    /// Configures `pass`; `Ok(None)` when the kernel lacks what the pass needs (said in a `#` line).
    fn new(pass: Pass) -> Result<Option<FaultCfg>, String> {
        fault_injection_available()?;
        let mut cfg = FaultCfg { saved: Vec::new(), mounted: false };
        if !Path::new(&format!("{DEBUGFS}/failslab")).exists() {
            sh("mount", &["-t", "debugfs", "debugfs", DEBUGFS]).map_err(|x| format!("mount debugfs: {x}"))?;
            cfg.mounted = true;
        }
        for d in ["failslab", "fail_page_alloc"] {
            if !Path::new(&format!("{DEBUGFS}/{d}")).exists() {
                return Err(format!("SKIP {DEBUGFS}/{d} missing: needs CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC, CONFIG_FAULT_INJECTION_DEBUG_FS"));
            }
        }
        let usercopy = Path::new(&format!("{DEBUGFS}/fail_usercopy")).exists();
        if pass == Pass::Usercopy && !usercopy {
            println!("# fail_usercopy: {DEBUGFS}/fail_usercopy missing (no CONFIG_FAULT_INJECTION_USERCOPY): usercopy pass not run");
            return Ok(None);
        }
        let alloc = pass == Pass::Alloc;
        let yn = |b: bool| if b { "Y" } else { "N" };
        let mut want = vec![
            ("failslab/ignore-gfp-wait", yn(!alloc)),
            ("failslab/verbose", "0"),
            ("fail_page_alloc/ignore-gfp-wait", yn(!alloc)),
            ("fail_page_alloc/ignore-gfp-highmem", yn(!alloc)),
            ("fail_page_alloc/min-order", if alloc { "0" } else { "1" }),
            ("fail_page_alloc/verbose", "0"),
        ];
        if usercopy {
            want.push(("fail_usercopy/verbose", "0"));
        }
        for (f, v) in want {
            let p = format!("{DEBUGFS}/{f}");
            let old = std::fs::read_to_string(&p).map_err(|x| format!("{p}: {x}"))?;
            std::fs::write(&p, v).map_err(|x| format!("write {v} to {p}: {x}"))?;
            cfg.saved.push((p, old.trim().to_string()));
        }
        Ok(Some(cfg))
    }
}

impl Drop for FaultCfg {
    fn drop(&mut self) {
        for (p, v) in self.saved.iter().rev() {
            if let Err(x) = std::fs::write(p, v) {
                println!("# could not restore {p} to {v}: {x}");
            }
        }
        if self.mounted {
            let _ = sh("umount", &[DEBUGFS]);
        }
    }
}

/// A task's `fail-nth` file.
struct Nth {
    f: File,
    what: String,
}

fn parse_nth(b: &[u8]) -> u32 {
    std::str::from_utf8(b).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(u32::MAX)
}

impl Nth {
    /// The calling thread's (`/proc/thread-self/fail-nth`): only this thread may use it for `left_self`.
    fn this_thread() -> Result<Nth, String> {
        Self::open("/proc/thread-self/fail-nth")
    }

    /// Another (single-threaded) process's.
    fn of_task(pid: i32) -> Result<Nth, String> {
        Self::open(&format!("/proc/{pid}/task/{pid}/fail-nth"))
    }

    fn open(p: &str) -> Result<Nth, String> {
        let f = OpenOptions::new().read(true).write(true).open(p).map_err(|x| format!("{p}: {x}"))?;
        Ok(Nth { f, what: p.to_string() })
    }

    /// Makes the task's n-th fault site from now on fail (`n` pre-formatted: nothing may allocate between
    /// this and the call under test).
    fn set(&self, n: &[u8]) -> Result<(), String> {
        self.f.write_at(n, 0).map(|_| ()).map_err(|x| format!("write {}: {x}", self.what))
    }

    /// What is left of the count, read by the task the file belongs to. The read's own copy to user
    /// space is a fault site: when the count was 1 it fails that copy (EFAULT), which says "1".
    fn left_self(&self) -> u32 {
        let mut b = [0u8; 16];
        match self.f.read_at(&mut b, 0) {
            Ok(k) => parse_nth(&b[..k]),
            Err(x) if x.raw_os_error() == Some(libc::EFAULT) => 1,
            Err(_) => u32::MAX,
        }
    }

    /// What is left of another task's count.
    fn left(&self) -> Result<u32, String> {
        let mut b = [0u8; 16];
        let k = self.f.read_at(&mut b, 0).map_err(|x| format!("read {}: {x}", self.what))?;
        Ok(parse_nth(&b[..k]))
    }

    /// Disarms (a count that was not reached must not hit the task's later calls).
    fn clear(&self) {
        let _ = self.f.write_at(b"0", 0);
    }
}

/// Runs `call` in this thread with its n-th fault site failing; returns whether the fault was injected.
fn under_fault<T>(nth: &Nth, n: u32, call: impl FnOnce() -> nix::Result<T>) -> Result<(bool, nix::Result<T>), String> {
    let s = n.to_string();
    nth.set(s.as_bytes())?;
    let r = call();
    let left = nth.left_self();
    nth.clear();
    let after = nth.left_self();
    check(left != u32::MAX && after == 0, || format!("reading back {}: left {left}, after clearing {after}", nth.what))?;
    Ok((left == 0, r))
}

/// What one iteration's call did.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Outcome {
    Ok,
    Errno(Errno),
    /// The calling process was killed (DEPLOY after its point of no return).
    Killed,
}

struct Step {
    injected: bool,
    outcome: Outcome,
}

/// Per-ioctl summary.
#[derive(Default)]
struct Tally {
    sites: u32,
    ok_despite_fault: u32,
    killed: u32,
    errnos: BTreeMap<String, u32>,
    /// (n, outcome) of every injected iteration.
    log: Vec<(u32, Outcome)>,
}

/// The fail-nth loop: `iter(n)` runs one iteration (setting up, calling, checking and cleaning up).
/// Visits every n up to `DENSE`, then a stride of n/`SPARSE_DIV` (so a constant number of sites per doubling
/// of n), unless `SEUSS_FAULT_FULL=1` asks for every site. The ioctls' first sites (argument copies, the first
/// allocations, the error paths taken most) are all visited; past them the sites are the per-page and
/// per-VMA allocations of one loop, where a sample exercises the same unwinding: the exhaustive sweeps of
/// CAPTURE-in-target and DEPLOY (313 and 316 sites) took 591 s and 299 s under KASAN and TCG, a third of
/// CI's budget, while the sample takes about a quarter of that.
const DENSE: u32 = 48;
const SPARSE_DIV: u32 = 12;

fn next_n(n: u32, full: bool) -> u32 {
    if full || n < DENSE { n + 1 } else { n + (n / SPARSE_DIV).max(1) }
}

fn enumerate(what: &str, mut iter: impl FnMut(u32) -> Result<Step, String>) -> Result<Tally, String> {
    let mut t = Tally::default();
    let t0 = std::time::Instant::now();
    let full = std::env::var("SEUSS_FAULT_FULL").is_ok_and(|v| v == "1");
    let mut n = 1;
    let mut visited = 0u32;
    while n <= MAX_N {
        visited += 1;
        if visited % 50 == 0 {
            println!("# {what}: at fail-nth={n} after {:.0} s", t0.elapsed().as_secs_f64());
            let _ = std::io::Write::flush(&mut std::io::stdout());
        }
        let s = iter(n).map_err(|x| format!("{what}, fail-nth={n}: {x}"))?;
        if let Outcome::Errno(e) = s.outcome {
            check(DOCUMENTED.contains(&e), || format!("{what}, fail-nth={n}: undocumented errno {e:?}"))?;
        }
        if !s.injected {
            check(s.outcome == Outcome::Ok, || format!("{what}, fail-nth={n}: {:?} although no fault was injected", s.outcome))?;
            let errs: Vec<String> = t.errnos.iter().map(|(k, v)| format!("{k}={v}")).collect();
            println!(
                "# {what}: {} fault sites{} in {:.1} s: {} calls succeeded despite the fault, errnos [{}], {} callers killed",
                t.sites,
                if full || n <= DENSE { String::new() } else { format!(" (sampled, of {})", n - 1) },
                t0.elapsed().as_secs_f64(),
                t.ok_despite_fault,
                errs.join(" "),
                t.killed
            );
            return Ok(t);
        }
        t.sites += 1;
        t.log.push((n, s.outcome));
        match s.outcome {
            Outcome::Ok => t.ok_despite_fault += 1,
            Outcome::Killed => t.killed += 1,
            Outcome::Errno(e) => *t.errnos.entry(format!("{e:?}")).or_default() += 1,
        }
        n = next_n(n, full);
    }
    Err(format!("{what}: a fault was still injected at fail-nth={MAX_N}"))
}

// ---- targets and snapshots ----

/// Spawns a target, arms a write watchpoint on its doorbell, lets it run into it, waits for FROZEN.
pub(crate) fn frozen_target(d: &Device, args: &[&str]) -> Result<(Target, u64), String> {
    let mut t = Target::spawn(args)?;
    let id = d.arm(t.pid(), FreezePoint::Write { addr: t.doorbell, len: 8 }).map_err(e("ARM"))?;
    t.send("go")?;
    match d.wait(id, FREEZE_MS).map_err(e("WAIT"))? {
        FreezeState::Frozen { .. } => Ok((t, id)),
        s => Err(format!("state {s:?}, want Frozen")),
    }
}

/// Addresses of a snapshot's source that its children share.
#[derive(Clone, Copy)]
pub(crate) struct Addrs {
    pub(crate) doorbell2: u64,
    pub(crate) tidvar: u64,
    pub(crate) cookie: u64,
}

/// A snapshot of a `seuss_target` frozen at its doorbell (the source is killed afterwards).
pub(crate) fn snapshot_of(d: &Device, args: &[&str]) -> Result<(u64, Addrs), String> {
    let (t, id) = frozen_target(d, args)?;
    let a = Addrs { doorbell2: t.doorbell2, tidvar: t.tidvar, cookie: t.cookie };
    let snap = d.capture(id).map_err(e("CAPTURE"));
    d.release(id, true).map_err(e("KILL"))?;
    t.wait();
    Ok((snap?, a))
}

/// Sends "check" to a deployed child, expects a full report and exit 42; returns the report.
pub(crate) fn child_report(mut s: Stub) -> Result<String, String> {
    s.send("check")?;
    let l = line_within(&mut s.out, STEP_MS).map_err(|x| format!("child {}: {x}", s.pid));
    let pid = s.pid;
    let code = s.wait();
    let l = l?;
    report_ok(&l, pid)?;
    check(code == REPORT_OK, || format!("child exit {code}: {l}"))?;
    Ok(l)
}

/// A child of a `watch`/`layer` snapshot frozen at its first doorbell deploys and reports correctly.
pub(crate) fn deploy_ok(d: &Device, snap: u64) -> Result<(), String> {
    child_report(fork_deploy(d, snap, DeployOpts::default(), || {})).map(|_| ())
}

/// A child of a `layer N M` snapshot: it reports "layer", then takes "go", rings the second doorbell
/// and reports on "check".
fn deploy_layer_ok(d: &Device, base: u64) -> Result<(), String> {
    let mut z = fork_deploy(d, base, DeployOpts::default(), || {});
    let l = line_within(&mut z.out, STEP_MS)?;
    check(l.starts_with("layer"), || format!("child said {l}"))?;
    z.send("go")?;
    child_report(z).map(|_| ())
}

/// Deploys `base` (a `layer N M` snapshot) and freezes the child at its second doorbell: an instance
/// with pages it copied from its parent without changing them, for share_unchanged to give back.
fn layer_instance(d: &Device, base: u64, a: Addrs) -> Result<(Stub, u64), String> {
    let mut x = fork_deploy(d, base, DeployOpts::default(), || {});
    let l = line_within(&mut x.out, STEP_MS)?;
    check(l.starts_with("layer"), || format!("instance said {l}"))?;
    let fid = d.arm(x.pid, FreezePoint::Write { addr: a.doorbell2, len: 8 }).map_err(e("ARM doorbell2"))?;
    x.send("go")?;
    match d.wait(fid, FREEZE_MS).map_err(e("WAIT"))? {
        FreezeState::Frozen { .. } => Ok((x, fid)),
        s => Err(format!("instance state {s:?}, want Frozen")),
    }
}

/// The source is still frozen (a failed CAPTURE must not end the freeze).
fn still_frozen(d: &Device, fid: u64) -> Result<(), String> {
    let s = d.wait(fid, 0).map_err(e("WAIT"))?;
    check(matches!(s, FreezeState::Frozen { .. }), || format!("freeze state {s:?} after the CAPTURE, want Frozen"))
}

/// A frozen watch target still works: released, it reports correctly.
pub(crate) fn resume_and_report(d: &Device, mut t: Target, id: u64) -> Result<(), String> {
    d.release(id, false).map_err(e("RESUME"))?;
    t.send("check")?;
    let l = line_within(&mut t.out, STEP_MS)?;
    let pid = t.pid();
    report_ok(&l, pid)?;
    let code = t.wait();
    check(code == REPORT_OK, || format!("source exit {code}"))
}

/// Sets share_unchanged=1 (the default) for the life of the value; restores the old value on drop.
struct ShareUnchanged(String);
const SHARE_PARAM: &str = "/sys/module/seuss/parameters/share_unchanged";
impl ShareUnchanged {
    fn on() -> Result<Self, String> {
        let old = std::fs::read_to_string(SHARE_PARAM).map_err(|x| format!("{SHARE_PARAM}: {x}"))?;
        std::fs::write(SHARE_PARAM, "1").map_err(|x| format!("{SHARE_PARAM}: {x}"))?;
        Ok(ShareUnchanged(old.trim().to_string()))
    }
}
impl Drop for ShareUnchanged {
    fn drop(&mut self) {
        let _ = std::fs::write(SHARE_PARAM, &self.0);
    }
}

// ---- the cases ----

fn arm() -> Result<(), String> {
    fault_injection_available()?;
    ensure_loaded()?;
    let d = dev()?;
    let nth = Nth::this_thread()?;
    // A freeze-now target blocked in a pipe read, and a watch target waiting for its "go".
    let mut s = Target::spawn(&["sleep"])?;
    wait_pipe_read(s.pid(), STEP_MS)?;
    let w = Target::spawn(&["watch"])?;
    wait_pipe_read(w.pid(), STEP_MS)?;
    let base = d.stats().map_err(e("STATS"))?;
    for pass in PASSES {
        let Some(_cfg) = FaultCfg::new(pass)? else { continue };
        enumerate(&format!("ARM now ({pass})"), |n| {
            let (injected, r) = under_fault(&nth, n, || d.arm(s.pid(), FreezePoint::Now))?;
            let outcome = match r {
                Ok(id) => {
                    let st = d.wait(id, FREEZE_MS).map_err(e("WAIT"));
                    d.release(id, false).map_err(e("RESUME"))?;
                    check(matches!(st?, FreezeState::Frozen { .. }), || "ARM now succeeded but the task did not park".into())?;
                    Outcome::Ok
                }
                Err(x) => Outcome::Errno(x),
            };
            // Either way the task runs on, back in its read, and nothing is left armed.
            wait_pipe_read(s.pid(), STEP_MS)?;
            stats_back_to(&d, &base)?;
            Ok(Step { injected, outcome })
        })?;
        enumerate(&format!("ARM watchpoint ({pass})"), |n| {
            let (injected, r) = under_fault(&nth, n, || d.arm(w.pid(), FreezePoint::Write { addr: w.doorbell, len: 8 }))?;
            let outcome = match r {
                Ok(id) => {
                    check(d.wait(id, 0).map_err(e("WAIT"))? == FreezeState::Armed, || "watchpoint freeze not ARMED".into())?;
                    d.release(id, false).map_err(e("RESUME"))?;
                    Outcome::Ok
                }
                Err(x) => Outcome::Errno(x),
            };
            check(in_pipe_read(w.pid()), || format!("watch target no longer in its read: wchan {}", wchan(w.pid(), w.pid())))?;
            stats_back_to(&d, &base)?;
            Ok(Step { injected, outcome })
        })?;
    }
    // Both targets still work: the watch target still freezes on its doorbell (no debug register was
    // lost), its snapshot deploys, it resumes and reports; the sleep target answers.
    let mut w = w;
    let id = d.arm(w.pid(), FreezePoint::Write { addr: w.doorbell, len: 8 }).map_err(e("ARM after the loop"))?;
    w.send("go")?;
    check(matches!(d.wait(id, FREEZE_MS).map_err(e("WAIT"))?, FreezeState::Frozen { .. }), || "watch target did not freeze after the loop".into())?;
    let snap = d.capture(id).map_err(e("CAPTURE after the loop"))?;
    deploy_ok(&d, snap)?;
    resume_and_report(&d, w, id)?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
    s.send("after")?;
    let l = line_within(&mut s.out, STEP_MS)?;
    check(l.starts_with("got after") && s.wait() == REPORT_OK, || format!("sleep target after the loop: {l}"))?;
    stats_back_to(&d, &base)
}

fn capture_controller() -> Result<(), String> {
    fault_injection_available()?;
    ensure_loaded()?;
    let _share = ShareUnchanged::on()?;
    let d = dev()?;
    let nth = Nth::this_thread()?;
    let (other, _) = snapshot_of(&d, &["watch"])?;
    let (base, a) = snapshot_of(&d, &["layer", "4", "8"])?;
    let (x, fid) = layer_instance(&d, base, a)?;
    let stats = d.stats().map_err(e("STATS"))?;
    for pass in PASSES {
        let Some(_cfg) = FaultCfg::new(pass)? else { continue };
        enumerate(&format!("CAPTURE of an instance, controller's faults ({pass})"), |n| {
            let (injected, r) = under_fault(&nth, n, || d.capture(fid))?;
            let outcome = match r {
                Ok(snap) => {
                    if injected {
                        deploy_ok(&d, snap)?;
                    }
                    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
                    Outcome::Ok
                }
                Err(x) => Outcome::Errno(x),
            };
            still_frozen(&d, fid)?;
            // A snapshot whose id could not be reported must not stay behind.
            stats_back_to(&d, &stats)?;
            Ok(Step { injected, outcome })
        })?;
    }
    // The instance still captures correctly, then runs on; the other snapshots still deploy.
    let snap = d.capture(fid).map_err(e("CAPTURE after the loop"))?;
    deploy_ok(&d, snap)?;
    d.release(fid, false).map_err(e("RESUME"))?;
    child_report(x)?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
    deploy_ok(&d, other)?;
    deploy_layer_ok(&d, base)?;
    d.snap_release(base).map_err(e("SNAP_RELEASE base"))?;
    d.snap_release(other).map_err(e("SNAP_RELEASE other"))
}

fn capture_target() -> Result<(), String> {
    fault_injection_available()?;
    ensure_loaded()?;
    let _share = ShareUnchanged::on()?;
    let d = dev()?;
    let (other, _) = snapshot_of(&d, &["watch"])?;
    // Each iteration a fresh instance that wrote 4 new pages and copied 8 of its parent's unchanged:
    // share_unchanged has real work at every capture.
    let (base, a) = snapshot_of(&d, &["layer", "4", "8"])?;
    let stats = d.stats().map_err(e("STATS"))?;
    let mut unchanged_seen = 0;
    for pass in PASSES {
        let Some(_cfg) = FaultCfg::new(pass)? else { continue };
        let t = enumerate(&format!("CAPTURE of an instance, faults in the parked target ({pass})"), |n| {
            let (x, fid) = layer_instance(&d, base, a)?;
            let tn = Nth::of_task(x.pid)?;
            let s = n.to_string();
            // The target sleeps in its park until the CAPTURE wakes it: nothing else runs in it meanwhile.
            tn.set(s.as_bytes())?;
            let r = d.capture(fid);
            let left = tn.left();
            tn.clear();
            let injected = left? == 0;
            let outcome = match r {
                Ok(snap) => {
                    let info = d.snap_info(snap).map_err(e("SNAP_INFO"))?;
                    unchanged_seen = unchanged_seen.max(info.pages_unchanged);
                    if injected || n == 1 {
                        deploy_ok(&d, snap)?;
                    }
                    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
                    Outcome::Ok
                }
                Err(x) => Outcome::Errno(x),
            };
            still_frozen(&d, fid)?;
            // The source survives whatever its capture did.
            d.release(fid, false).map_err(e("RESUME"))?;
            child_report(x)?;
            stats_back_to(&d, &stats)?;
            Ok(Step { injected, outcome })
        })?;
        if t.sites == 0 {
            println!("# CAPTURE ({pass}): no fault site in the target's context: does capture still run in the parked task?");
        }
    }
    println!("# capture: up to {unchanged_seen} pages given back by share_unchanged per capture");
    check(unchanged_seen >= 8, || format!("share_unchanged gave back {unchanged_seen} pages, want >= 8: the path under test did not run"))?;
    deploy_ok(&d, other)?;
    deploy_layer_ok(&d, base)?;
    d.snap_release(base).map_err(e("SNAP_RELEASE base"))?;
    d.snap_release(other).map_err(e("SNAP_RELEASE other"))
}

/// Writes `v` in decimal at `buf[at..]`; returns the new end (no allocation: runs in a forked child).
pub(crate) fn put_num(buf: &mut [u8], mut at: usize, v: i64) -> usize {
    if v < 0 {
        buf[at] = b'-';
        at += 1;
    }
    let mut u = v.unsigned_abs();
    let mut d = [0u8; 20];
    let mut k = 0;
    loop {
        d[k] = b'0' + (u % 10) as u8;
        k += 1;
        u /= 10;
        if u == 0 {
            break;
        }
    }
    while k > 0 {
        k -= 1;
        buf[at] = d[k];
        at += 1;
    }
    at
}

/// Forks a stub that arms its own fail-nth with `n` right before DEPLOY. If the deploy returns, the
/// stub (still its old self) writes "ret R E LEFT" (ioctl result, errno, what was left of its fail-nth)
/// and exits 0. Returns (pid, its stdin, its stdout).
fn fault_deploy_stub(d: &Device, arg: &uapi::seuss_deploy, n: u32) -> (i32, File, BufReader<File>) {
    let (in_r, in_w) = pipe_pair();
    let (out_r, out_w) = pipe_pair();
    let path = CString::new("/proc/thread-self/fail-nth").unwrap();
    let nb = n.to_string();
    let devfd = d.raw_fd();
    let (ir, iw, or, ow) = (in_r.as_raw_fd(), in_w.as_raw_fd(), out_r.as_raw_fd(), out_w.as_raw_fd());
    // SAFETY: the cases run single-threaded; the child makes only raw syscalls on memory prepared before
    // the fork, and leaves with _exit.
    match unsafe { libc::fork() } {
        // SAFETY: the forked child: raw syscalls on memory prepared before the fork, then exec or _exit.
        0 => unsafe {
            libc::dup2(ir, 0);
            libc::dup2(ow, 1);
            for fd in [ir, iw, or, ow] {
                libc::close(fd);
            }
            let fd = libc::open(path.as_ptr(), libc::O_RDWR);
            if fd < 0 {
                libc::_exit(3);
            }
            libc::pwrite(fd, nb.as_ptr() as *const _, nb.len(), 0);
            let r = libc::ioctl(devfd, uapi::request::DEPLOY as _, arg as *const uapi::seuss_deploy);
            let err = *libc::__errno_location();
            let mut b = [0u8; 16];
            let k = libc::pread(fd, b.as_mut_ptr() as *mut _, b.len(), 0);
            let left: i64 = if k < 0 {
                if *libc::__errno_location() == libc::EFAULT { 1 } else { -1 }
            } else {
                let mut v = 0i64;
                for c in &b[..k as usize] {
                    if c.is_ascii_digit() {
                        v = v * 10 + (c - b'0') as i64;
                    }
                }
                v
            };
            libc::pwrite(fd, b"0".as_ptr() as *const _, 1, 0);
            let mut line = [0u8; 80];
            line[..4].copy_from_slice(b"ret ");
            let mut at = put_num(&mut line, 4, r as i64);
            line[at] = b' ';
            at = put_num(&mut line, at + 1, err as i64);
            line[at] = b' ';
            at = put_num(&mut line, at + 1, left);
            line[at] = b'\n';
            libc::write(1, line.as_ptr() as *const _, at + 1);
            libc::_exit(0)
        },
        pid if pid > 0 => {
            drop(in_r);
            drop(out_w);
            (pid, in_w, BufReader::new(out_r))
        }
        _ => panic!("fork failed"),
    }
}

fn deploy() -> Result<(), String> {
    fault_injection_available()?;
    ensure_loaded()?;
    let d = dev()?;
    let (other, _) = snapshot_of(&d, &["watch"])?;
    let (snap, a) = snapshot_of(&d, &["watch"])?;
    // Give the snapshot a touch set (first DIRTY of an instance), so every deploy also prefaults.
    {
        let c = fork_deploy(&d, snap, DeployOpts::default(), || {});
        wait_pipe_read(c.pid, STEP_MS)?;
        d.dirty(c.pid).map_err(e("DIRTY"))?;
        child_report(c)?;
    }
    let stats = d.stats().map_err(e("STATS"))?;
    let mut arg: uapi::seuss_deploy = unsafe_zeroed();
    arg.size = std::mem::size_of::<uapi::seuss_deploy>() as u32;
    arg.snap_id = snap;
    arg.flags = uapi::SEUSS_DEPLOY_TID | uapi::SEUSS_DEPLOY_COOKIE;
    arg.tid_addr = a.tidvar;
    arg.cookie_addr = a.cookie;
    for pass in PASSES {
        let Some(_cfg) = FaultCfg::new(pass)? else { continue };
        let t = enumerate(&format!("DEPLOY in a stub ({pass})"), |n| {
            arg.cookie = 0xc00c_0000 + n as u64;
            let (pid, stdin, mut out) = fault_deploy_stub(&d, &arg, n);
            let end = std::time::Instant::now() + std::time::Duration::from_millis(STEP_MS);
            // One of: the stub reports a returned ioctl; the deployed child blocks in its read; the stub dies.
            enum Seen {
                Line(String),
                Deployed,
                Dead,
            }
            let seen = loop {
                match line_within(&mut out, 10) {
                    Ok(l) => break Seen::Line(l),
                    Err(x) if x == "EOF" => break Seen::Dead,
                    Err(_) => {}
                }
                if in_pipe_read(pid) {
                    break Seen::Deployed;
                }
                if exited_unreaped(pid) {
                    break match line_within(&mut out, 0) {
                        Ok(l) => Seen::Line(l),
                        Err(_) => Seen::Dead,
                    };
                }
                if std::time::Instant::now() > end {
                    sigkill(pid);
                    wait_pid(pid);
                    return Err(format!("stub {pid}: neither returned, deployed nor died within {STEP_MS} ms (wchan {})", wchan(pid, pid)));
                }
            };
            let step = match seen {
                Seen::Line(l) => {
                    let f: Vec<i64> = l.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                    let code = wait_pid(pid);
                    check(l.starts_with("ret ") && f.len() == 3, || format!("stub said {l}"))?;
                    check(f[0] == -1, || format!("DEPLOY returned {} to the stub's own code: {l}", f[0]))?;
                    check(code == 0, || format!("stub got {l} but then exited {code}: not a working process"))?;
                    check(f[2] >= 0, || format!("stub could not read its fail-nth: {l}"))?;
                    Step { injected: f[2] == 0, outcome: Outcome::Errno(Errno::from_raw(f[1] as i32)) }
                }
                Seen::Deployed => {
                    let tn = Nth::of_task(pid)?;
                    let left = tn.left();
                    tn.clear();
                    let injected = left? == 0;
                    let mut s = Stub { pid, stdin, out };
                    s.send("check")?;
                    let l = line_within(&mut s.out, STEP_MS).map_err(|x| format!("deployed child {pid}: {x}"))?;
                    let code = s.wait();
                    report_ok(&l, pid)?;
                    check(field(&l, "tidvar") == Some(pid.to_string().as_str()), || format!("tid not stored: {l}"))?;
                    check(field(&l, "cookie") == Some(arg.cookie.to_string().as_str()), || format!("cookie not stored: {l}"))?;
                    check(code == REPORT_OK, || format!("deployed child exit {code}: {l}"))?;
                    Step { injected, outcome: Outcome::Ok }
                }
                Seen::Dead => {
                    // Still a zombie: its fail-nth says whether the fault was injected.
                    let left = Nth::of_task(pid).and_then(|t| t.left());
                    let code = wait_pid(pid);
                    let left = left?;
                    check(code == 128 + libc::SIGKILL, || format!("stub died with status {code} (left {left}), want SIGKILL"))?;
                    check(left == 0, || format!("stub killed although no fault was injected (fail-nth left {left})"))?;
                    Step { injected: true, outcome: Outcome::Killed }
                }
            };
            stats_back_to(&d, &stats)?;
            Ok(step)
        })?;
        // A stub may be killed only after the point of no return, which comes after every check that can
        // fail with an errno: no errno may follow a kill in the order of the fault sites.
        let first_kill = t.log.iter().find(|(_, o)| *o == Outcome::Killed).map(|(n, _)| *n);
        let last_errno = t.log.iter().filter(|(_, o)| matches!(o, Outcome::Errno(_))).map(|(n, _)| *n).next_back();
        if let (Some(k), Some(en)) = (first_kill, last_errno) {
            check(en < k, || {
                let seq: Vec<String> = t.log.iter().map(|(n, o)| format!("{n}:{o:?}")).collect();
                format!("DEPLOY ({pass}): the stub was killed at fail-nth={k} but an errno came back at fail-nth={en} after it (killed before the point of no return?): {}", seq.join(" "))
            })?;
        }
        println!("# DEPLOY ({pass}): errnos at fault sites up to {last_errno:?}, first kill at {first_kill:?}");
    }
    // The snapshot and another one still deploy correctly.
    deploy_ok(&d, snap)?;
    deploy_ok(&d, other)?;
    d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
    d.snap_release(other).map_err(e("SNAP_RELEASE other"))
}

fn unsafe_zeroed<T>() -> T {
    // SAFETY: used only for the plain-integer uapi structs.
    unsafe { std::mem::zeroed() }
}

fn dirty() -> Result<(), String> {
    fault_injection_available()?;
    ensure_loaded()?;
    let d = dev()?;
    let nth = Nth::this_thread()?;
    let (other, _) = snapshot_of(&d, &["watch"])?;
    // One source frozen for the whole case; every iteration captures a fresh snapshot of it, so each
    // DIRTY is the first of its snapshot's instances and records a touch set.
    let (w, fid) = frozen_target(&d, &["watch"])?;
    let stats = d.stats().map_err(e("STATS"))?;
    for pass in PASSES {
        let Some(_cfg) = FaultCfg::new(pass)? else { continue };
        enumerate(&format!("DIRTY ({pass})"), |n| {
            let snap = d.capture(fid).map_err(e("CAPTURE"))?;
            let c = fork_deploy(&d, snap, DeployOpts::default(), || {});
            wait_pipe_read(c.pid, STEP_MS)?;
            let (injected, r) = under_fault(&nth, n, || d.dirty(c.pid))?;
            let outcome = match r {
                Ok((sid, _)) => {
                    check(sid == snap, || format!("DIRTY says snapshot {sid}, want {snap}"))?;
                    Outcome::Ok
                }
                Err(x) => Outcome::Errno(x),
            };
            child_report(c)?;
            // Whatever touch set was (or was not) recorded, the next instance deploys and runs right.
            deploy_ok(&d, snap)?;
            d.snap_release(snap).map_err(e("SNAP_RELEASE"))?;
            stats_back_to(&d, &stats)?;
            Ok(Step { injected, outcome })
        })?;
    }
    resume_and_report(&d, w, fid)?;
    deploy_ok(&d, other)?;
    d.snap_release(other).map_err(e("SNAP_RELEASE other"))
}
