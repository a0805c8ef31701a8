//! `seuss_fuzz`: a seeded, stateful random driver of every /dev/seuss ioctl from several processes and
//! threads at once. Run as root inside the VM with the module loaded (or `SEUSS_KO` naming it).
//!
//! ```text
//! seuss_fuzz [--seed N] [--ops N] [--procs P] [--threads T] [--soak SECONDS] [--heavy PERMILLE]
//!            [--watchdog SECONDS]
//! ```
//! `--ops` operations in all (default 20000) are split over `--procs` worker processes (2) of `--threads`
//! threads (2); `--soak` runs for that long instead. `--heavy` per mille of the operations (10) drive
//! real processes (targets, freezes, captures, deploys, races); the rest are cheap argument-validation
//! calls. The seed (default: from the clock) is printed first; a failure line names it, the thread and
//! the operation, so `--seed N` with the same `--procs/--threads/--ops` replays each thread's sequence.
//!
//! It passes when every ioctl answered 0 or a documented errno (exactly the right one for a malformed
//! argument), every child ended by itself with an exit code its kind explains, no operation took longer
//! than the watchdog allows (120 s), and the module's STATS (snapshots, pages_held, instances, frozen)
//! are back to what they were at the start once everything is closed and reaped. Output: KTAP, one
//! summary line `seuss_fuzz: seed=... ops=... failures=... errnos: ...`, `ok 1 seuss_fuzz` or
//! `not ok 1 seuss_fuzz`; exit status 0 on pass, 1 on failure, 4 when skipped.

mod actor;
mod arena;
mod calls;
mod cheap;
mod children;
mod deploys;
mod races;
mod report;
mod rng;
mod targets;
mod worker;
#[path = "../util.rs"]
#[allow(dead_code)]
mod util;

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;

use report::{now_ms, say};
use uapi::Device;

/// The run's parameters, shared (copied by fork) with every worker.
pub struct Cfg {
    pub seed: u64,
    pub ops: u64,
    pub procs: usize,
    pub threads: usize,
    /// Per mille of operations that drive real processes.
    pub heavy: u64,
    pub soak_s: u64,
    pub watchdog_s: u64,
    /// Path of `seuss_target`.
    pub target_exe: String,
}

const USAGE: &str = "usage: seuss_fuzz [--seed N] [--ops N] [--procs P] [--threads T] [--soak SECONDS] [--heavy PERMILLE] [--watchdog SECONDS]";

fn parse_args() -> Result<Cfg, String> {
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    let mut cfg = Cfg {
        seed: clock % 1_000_000_007,
        ops: 20_000,
        procs: 2,
        threads: 2,
        heavy: 10,
        soak_s: 0,
        watchdog_s: 120,
        target_exe: util::sibling("seuss_target"),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut num = || -> Result<u64, String> {
            it.next().and_then(|v| v.parse().ok()).ok_or_else(|| format!("{flag} needs a number\n{USAGE}"))
        };
        match flag.as_str() {
            "--seed" => cfg.seed = num()?,
            "--ops" => cfg.ops = num()?,
            "--procs" => cfg.procs = num()? as usize,
            "--threads" => cfg.threads = num()? as usize,
            "--soak" => cfg.soak_s = num()?,
            "--heavy" => cfg.heavy = num()?.min(1000),
            "--watchdog" => cfg.watchdog_s = num()?.max(5),
            _ => return Err(USAGE.to_string()),
        }
    }
    if cfg.procs == 0 || cfg.threads == 0 || cfg.procs * cfg.threads > report::MAX_SLOTS {
        return Err(format!("--procs x --threads must be 1..={}\n{USAGE}", report::MAX_SLOTS));
    }
    Ok(cfg)
}

fn finish(pass: bool, why: &str) -> ! {
    if !why.is_empty() {
        say(&format!("# {why}"));
    }
    say(if pass { "ok 1 seuss_fuzz" } else { "not ok 1 seuss_fuzz" });
    let _ = std::io::stdout().flush();
    std::process::exit(if pass { 0 } else { 1 });
}

fn skip(why: &str) -> ! {
    say(&format!("ok 1 seuss_fuzz # SKIP {why}"));
    std::process::exit(4);
}

/// The counters that must come back to their start values.
fn settled(s: &uapi::seuss_stats) -> [u64; 4] {
    [s.snapshots, s.pages_held, s.instances, s.frozen]
}

/// Forks the worker processes (before any thread exists in this process).
fn fork_workers(cfg: &Cfg) -> Vec<i32> {
    let _ = std::io::stdout().flush();
    (0..cfg.procs)
        .map(|p| {
            // SAFETY: this process is single-threaded here, so the child may run ordinary Rust code.
            match unsafe { libc::fork() } {
                0 => {
                    let code = worker::run(p, cfg);
                    let _ = std::io::stdout().flush();
                    // SAFETY: leaving the worker without the parent's exit handlers.
                    unsafe { libc::_exit(code) }
                }
                pid if pid > 0 => pid,
                _ => finish(false, "fork of a worker failed"),
            }
        })
        .collect()
}

/// Fails the run when an operation has been running longer than `--watchdog`, printing the stuck
/// thread's kernel stack; then tells the workers to stop.
fn watchdog(cfg: &Cfg, done: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    let limit_ms = cfg.watchdog_s * 1000;
    let n = cfg.procs * cfg.threads;
    let threads = cfg.threads;
    std::thread::spawn(move || {
        let b = report::board();
        let mut reported = vec![false; n];
        while !done.load(Relaxed) {
            std::thread::sleep(std::time::Duration::from_millis(500));
            for (g, slot) in b.slots[..n].iter().enumerate() {
                let op = slot.op.load(Relaxed) as usize;
                let since = slot.since_ms.load(Relaxed);
                if op == 0 || reported[g] || now_ms().saturating_sub(since) < limit_ms {
                    continue;
                }
                reported[g] = true;
                let tid = slot.tid.load(Relaxed) as i32;
                let name = actor::OP_NAMES.get(op - 1).copied().unwrap_or("?");
                report::fail(
                    "watchdog: an operation hangs",
                    "watchdog",
                    &format!("p{}t{} (tid {tid}) has been in op '{name}' for over {} s after {} ops: {}", g / threads, g % threads, limit_ms / 1000, slot.done.load(Relaxed), children::describe_stuck(tid)),
                );
                b.stop.store(1, Relaxed);
            }
        }
    })
}

/// Waits for the workers; after the watchdog fired, gives them 30 s to clean up, then kills them.
fn wait_workers(pids: &[i32]) {
    let b = report::board();
    let mut left: Vec<i32> = pids.to_vec();
    let mut stop_seen: Option<u64> = None;
    while !left.is_empty() {
        left.retain(|pid| match children::try_reap(*pid) {
            None => true,
            Some(0) => false,
            Some(code) => {
                report::fail("worker process ended abnormally", "parent", &format!("worker pid {pid} ended with {code} (a panic is 101; see stderr)"));
                false
            }
        });
        if b.stop.load(Relaxed) != 0 && stop_seen.is_none() {
            stop_seen = Some(now_ms());
        }
        if stop_seen.is_some_and(|t| now_ms() - t > 30_000) {
            for pid in &left {
                children::kill(*pid);
                if children::reap_within(*pid, 10_000).is_none() {
                    report::fail("worker process survives SIGKILL", "parent", &format!("worker pid {pid} survives SIGKILL: {}", children::describe_stuck(*pid)));
                }
            }
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Checks STATS against the baseline (waiting up to 15 s for instances to go); releases snapshots the
/// run left behind so later tests start clean. Returns whether it matched.
fn check_baseline(dev: &Device, base: &uapi::seuss_stats, base_ids: &[u64]) -> bool {
    let deadline = now_ms() + 15_000;
    let mut now = dev.stats().ok();
    while now.is_none_or(|s| settled(&s) != settled(base)) && now_ms() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
        now = dev.stats().ok();
    }
    let Some(end) = now else {
        report::fail("STATS failed at the end", "parent", "STATS failed at the end");
        return false;
    };
    if settled(&end) == settled(base) {
        return true;
    }
    report::fail(
        "STATS not back to baseline",
        "parent",
        &format!("STATS not back to baseline: [snapshots, pages_held, instances, frozen] {:?} at start, {:?} at end", settled(base), settled(&end)),
    );
    let leaked: Vec<u64> = dev.snap_list().unwrap_or_default().into_iter().filter(|id| !base_ids.contains(id)).collect();
    for id in leaked.iter().rev() {
        let info = dev.snap_info(*id).map(|i| format!("parent {} depth {} uid {} pages_private {} deployed {}", i.parent_id, i.depth, i.uid, i.pages_private, i.deployed));
        say(&format!("# leaked snapshot {id}: {}", info.unwrap_or_else(|e| e.to_string())));
        let _ = dev.snap_release(*id);
    }
    false
}

fn main() {
    let cfg = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    say("TAP version 13");
    say("1..1");
    let how = if cfg.soak_s > 0 { format!("--soak {}", cfg.soak_s) } else { format!("--ops {}", cfg.ops) };
    say(&format!(
        "# seuss_fuzz: seed={} (reproduce: seuss_fuzz --seed {} {how} --procs {} --threads {} --heavy {})",
        cfg.seed, cfg.seed, cfg.procs, cfg.threads, cfg.heavy
    ));
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("needs root");
    }
    if std::env::var("SEUSS_KO").is_ok() {
        if let Err(e) = util::ensure_loaded() {
            finish(false, &format!("loading the module: {e}"));
        }
    } else if !std::path::Path::new(uapi::DEVICE_PATH).exists() {
        skip("needs SEUSS_KO=/path/to/seuss.ko or a loaded module");
    }
    if !std::path::Path::new(&cfg.target_exe).exists() {
        finish(false, &format!("{} is missing (build the selftests crate)", cfg.target_exe));
    }
    let board = report::create(cfg.seed);
    let dev = Device::open().unwrap_or_else(|e| finish(false, &format!("open {}: {e}", uapi::DEVICE_PATH)));
    let base = dev.stats().unwrap_or_else(|e| finish(false, &format!("STATS: {e}")));
    let base_ids = dev.snap_list().unwrap_or_else(|e| finish(false, &format!("SNAP_LIST: {e}")));
    let (abi, feats) = dev.version().unwrap_or_else(|e| finish(false, &format!("VERSION: {e}")));
    say(&format!("# module abi {abi} features {feats:#x}; baseline [snapshots, pages_held, instances, frozen] {:?}", settled(&base)));
    if cfg.soak_s > 0 {
        board.soak_until_ms.store(now_ms() + cfg.soak_s * 1000, Relaxed);
    }
    let t0 = now_ms();
    let pids = fork_workers(&cfg);
    let done = Arc::new(AtomicBool::new(false));
    let dog = watchdog(&cfg, done.clone());
    board.started.store(1, Relaxed);
    wait_workers(&pids);
    done.store(true, Relaxed);
    let _ = dog.join();
    let secs = (now_ms() - t0) as f64 / 1000.0;
    let stats_ok = check_baseline(&dev, &base, &base_ids);
    let ops = board.ops.load(Relaxed);
    let failures = board.failures.load(Relaxed);
    let ioctls = board.ok.load(Relaxed) + board.errnos.iter().map(|e| e.load(Relaxed)).sum::<u64>();
    for line in report::class_summary() {
        say(&line);
    }
    say(&format!("# coverage: {}", report::event_summary()));
    say(&format!("# time by op: {}", report::time_summary(actor::OP_NAMES)));
    say(&format!("# {secs:.1} s, {:.0} ops/s", ops as f64 / secs.max(0.001)));
    say(&format!(
        "seuss_fuzz: seed={} ops={ops} failures={failures} ioctls={ioctls} ok={} errnos: {}",
        cfg.seed,
        board.ok.load(Relaxed),
        report::errno_summary()
    ));
    let pass = failures == 0 && stats_ok;
    finish(pass, if pass { "" } else { "failed: see the FAIL lines above (each names the seed, thread and op)" });
}
