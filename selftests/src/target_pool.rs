//! `seuss_target pool THREADS HEAP_MIB`: the target of `seuss_bench threads` (`bench_threads.rs`).
//!
//! A process shaped like a warmed-up runtime: a heap of HEAP_MIB MiB with every page written, and
//! THREADS-1 worker threads idle in a condition-variable wait (a thread pool with no work: futex waits,
//! as Node's and OpenBLAS's pools idle). It prints `doorbell=0x...` and `ready`, then takes commands on
//! stdin before its freeze point:
//! - `idle`: answers `idle N` once N workers are inside their wait (the benchmark arms after that);
//! - `fork K`: forks K children that `_exit(0)` at once, waits for each, answers `fork_us P50` (the median
//!   fork+exit+wait in microseconds of this very process, heap and threads included: the baseline);
//! - `go`: the main thread stores to the doorbell (the benchmark's write watchpoint: the freeze point).
//!
//! After the freeze point, in every deployed child: one line `ping` is answered `pong`; the next line
//! (or end of input) makes the process exit 0 (exit_group, all threads).

use super::say;
use std::io::BufRead;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

static BELL: AtomicU64 = AtomicU64::new(0);
static WORK: Mutex<u64> = Mutex::new(0);
static WORK_CV: Condvar = Condvar::new();
static IDLE: AtomicUsize = AtomicUsize::new(0);

fn fork_p50(k: usize) -> u64 {
    let mut us: Vec<u64> = (0..k.max(1))
        .map(|_| {
            let t0 = Instant::now();
            // SAFETY: the child calls only `_exit`, which is async-signal-safe in a forked child of a
            // multi-threaded process.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: leaving the child at once.
                unsafe { libc::_exit(0) }
            }
            assert!(pid > 0, "fork");
            let mut st = 0;
            // SAFETY: waiting for our own child.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            t0.elapsed().as_micros() as u64
        })
        .collect();
    us.sort_unstable();
    us[us.len() / 2]
}

pub fn run_pool(args: &[String]) -> ! {
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1).max(1);
    let heap_mib: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut heap = vec![0u8; heap_mib << 20];
    for (i, b) in heap.iter_mut().enumerate().step_by(4096) {
        *b = (i >> 12) as u8 | 1;
    }
    for _ in 1..threads {
        std::thread::spawn(|| {
            let mut g = WORK.lock().unwrap();
            IDLE.fetch_add(1, SeqCst);
            while *g == 0 {
                g = WORK_CV.wait(g).unwrap();
            }
        });
    }
    say(&format!("doorbell={:#x}", BELL.as_ptr() as u64));
    say("ready");
    let stdin = std::io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
            std::process::exit(1);
        }
        let cmd: Vec<&str> = line.split_whitespace().collect();
        match cmd.as_slice() {
            ["idle"] => {
                // The workers count themselves under the lock, then wait on it: once the count is full
                // and the lock is free again, every worker is inside its wait.
                while IDLE.load(SeqCst) < threads - 1 {
                    std::thread::yield_now();
                }
                drop(WORK.lock().unwrap());
                say(&format!("idle {}", threads - 1));
            }
            ["fork", k] => say(&format!("fork_us {}", fork_p50(k.parse().unwrap_or(1)))),
            ["go"] => break,
            _ => say("?"),
        }
    }
    BELL.store(1, SeqCst);
    // The freeze point is behind us: a child (or the resumed source) answers one ping.
    line.clear();
    let _ = stdin.lock().read_line(&mut line);
    if line.trim() == "ping" {
        // One byte of the heap's last page, so the heap stays live to the end.
        say(&format!("pong {}", heap.get(heap.len().saturating_sub(4096)).copied().unwrap_or(0)));
        // The benchmark counts our threads now, then sends `exit`.
        line.clear();
        let _ = stdin.lock().read_line(&mut line);
        std::process::exit(0);
    }
    std::process::exit(1);
}
