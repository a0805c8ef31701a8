//! `seuss_target mt`: eight threads, each in a different state when the process freezes, for the
//! multi-threaded engine cases.
//!
//! | thread | state at the freeze                                   | how it must resume in a child        |
//! |--------|-------------------------------------------------------|--------------------------------------|
//! | 0 main | untimed condition wait (futex, ERESTARTSYS)           | the wait is re-issued                |
//! | 1 bell | user mode, right after its store to the doorbell       | runs on                              |
//! | 2      | timed condition wait (futex with a restart block)     | -EINTR: a spurious wakeup, waits on  |
//! | 3      | nanosleep (restart block)                             | -EINTR, sleeps again                 |
//! | 4 read | blocking read of stdin (a pipe, ERESTARTSYS)          | re-issued on the child's own stdin   |
//! | 5 spin | spinning in user space                                | runs on                              |
//! | 6      | poll(NULL, 0, timeout) (restart block)                | -EINTR, polls again                  |
//! | 7      | pause() (ERESTARTNOHAND)                              | re-issued, ends at its SIGUSR1       |
//!
//! The timed waits (threads 2, 3, 6) have a [`BACKSTOP`] timeout and end on an event, not on time: thread
//! 2 at STOP's notify, threads 3 and 6 at their SIGUSR1 (the EINTR it brings; the backstop only bounds a
//! signal that lands between the check and the call). The bell thread (its tid printed as `bell_tid`,
//! the one to arm) waits until every sleeper is asleep (exit 3 if that takes over a minute), then
//! stores to the doorbell. After the freeze point, in the resumed source and in every child: the
//! reader takes one command line. `exit` leaves at once with status 43 (the deploy/exit cycles).
//! `check K`: main sends SIGUSR1 to threads 1..7 with `pthread_kill` (which signals the tid the C library
//! keeps for the thread: a stale one from the captured process fails with ESRCH), starts a new thread and
//! joins it, then stops and joins threads 1..7. Each thread checks its own TLS value, that its handler
//! ran exactly once, and stores `K + index` in its slot, which main reads back after the joins (a child
//! that shared memory with a sibling would see the sibling's K). Main prints one `mtreport` line and
//! exits 42 when every check passed, or 20 + the number of failed checks.

use super::say;
use std::cell::Cell;
use std::io::BufRead;
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Threads of the process at the freeze, main included.
const N: usize = 8;
const TLS_BASE: u64 = 0x7e11_0000;
/// Timeout of the timed waits: long enough that each thread is asleep, not between sleeps, at the
/// freeze; they end on an event, so no test waits for it.
const BACKSTOP: Duration = Duration::from_secs(60);

static mut BELL: u64 = 0;
/// Set by main once the test has armed the bell thread (its `go`).
static GO: Mutex<bool> = Mutex::new(false);
static GO_CV: Condvar = Condvar::new();
/// The command the reader took: None until then.
static CMD: Mutex<Option<String>> = Mutex::new(None);
static CMD_CV: Condvar = Condvar::new();
/// Set when the threads are to finish (under STOP_M, waited on with STOP_CV).
static STOP: AtomicBool = AtomicBool::new(false);
static STOP_M: Mutex<()> = Mutex::new(());
static STOP_CV: Condvar = Condvar::new();
static TIDS: [AtomicI32; N] = [const { AtomicI32::new(0) }; N];
static SLOTS: [AtomicU64; N + 1] = [const { AtomicU64::new(0) }; N + 1];
static SPINS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static ME: Cell<u64> = const { Cell::new(0) };
    static HITS: Cell<u32> = const { Cell::new(0) };
}

extern "C" fn on_usr1(_: libc::c_int) {
    HITS.with(|h| h.set(h.get() + 1));
}

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Marks the calling thread as thread `i`: its TLS value and its tid.
fn enter(i: usize) {
    ME.with(|m| m.set(TLS_BASE + i as u64));
    TIDS[i].store(gettid(), SeqCst);
}

fn stopped() -> bool {
    STOP.load(SeqCst)
}

/// Waits (untimed) until STOP.
fn wait_stop() {
    let mut g = STOP_M.lock().unwrap();
    while !stopped() {
        g = STOP_CV.wait(g).unwrap();
    }
}

/// The command K of `check K`, once the reader has taken it.
fn command_k() -> u64 {
    CMD.lock().unwrap().as_deref().and_then(|c| c.strip_prefix("check ")).and_then(|k| k.trim().parse().ok()).unwrap_or(0)
}

/// What a worker thread checks at its end: its TLS, one SIGUSR1, its slot. 1 when all passed.
fn finish(i: usize) -> u32 {
    TIDS[i].store(gettid(), SeqCst);
    SLOTS[i].store(command_k() + i as u64, SeqCst);
    let tls = ME.with(|m| m.get()) == TLS_BASE + i as u64;
    let hits = HITS.with(|h| h.get()) == 1;
    (tls && hits) as u32
}

/// The state of thread `tid` of this process (`S`, `R`, ...).
fn task_state(tid: i32) -> u8 {
    let s = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
    s.rsplit_once(") ").and_then(|(_, r)| r.bytes().next()).unwrap_or(b'?')
}

fn bell_thread() -> u32 {
    enter(1);
    let mut g = GO.lock().unwrap();
    while !*g {
        g = GO_CV.wait(g).unwrap();
    }
    drop(g);
    // Poll until every sleeper sleeps: the freeze must find each in its own state.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tids: Vec<i32> = TIDS.iter().map(|t| t.load(SeqCst)).collect();
        if tids.iter().all(|t| *t != 0) && [0usize, 2, 3, 4, 6, 7].iter().all(|i| task_state(tids[*i]) == b'S') {
            break;
        }
        if Instant::now() > deadline {
            say(&format!("mt: sleepers not asleep after 60 s (tids {tids:?})"));
            // SAFETY: leaving the whole process at once.
            unsafe { libc::_exit(3) };
        }
        std::thread::yield_now();
    }
    // The freeze point: a watchpoint on this store.
    // SAFETY: a static u64 only this thread writes.
    unsafe { std::ptr::write_volatile(&raw mut BELL, 1) };
    wait_stop();
    finish(1)
}

fn reader_thread() -> u32 {
    enter(4);
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    if line.trim() == "exit" {
        // SAFETY: leaving the whole process at once.
        unsafe { libc::_exit(43) };
    }
    *CMD.lock().unwrap() = Some(line.trim().to_string());
    CMD_CV.notify_all();
    wait_stop();
    finish(4)
}

fn worker(i: usize) -> u32 {
    enter(i);
    match i {
        2 => {
            let mut g = STOP_M.lock().unwrap();
            while !stopped() {
                g = STOP_CV.wait_timeout(g, BACKSTOP).unwrap().0;
            }
        }
        3 => {
            let ts = libc::timespec { tv_sec: BACKSTOP.as_secs() as libc::time_t, tv_nsec: 0 };
            while HITS.with(|h| h.get()) == 0 {
                // SAFETY: a valid timespec; no remainder wanted. SIGUSR1 ends it with EINTR.
                unsafe { libc::nanosleep(&ts, std::ptr::null_mut()) };
            }
            wait_stop();
        }
        5 => {
            while !stopped() {
                SPINS.fetch_add(1, SeqCst);
                std::hint::spin_loop();
            }
        }
        6 => {
            while HITS.with(|h| h.get()) == 0 {
                // SAFETY: poll with no descriptors is a sleep; SIGUSR1 ends it with EINTR.
                unsafe { libc::poll(std::ptr::null_mut(), 0, BACKSTOP.as_millis() as libc::c_int) };
            }
            wait_stop();
        }
        7 => {
            while HITS.with(|h| h.get()) == 0 {
                // SAFETY: pause has no preconditions; SIGUSR1 ends it.
                unsafe { libc::pause() };
            }
            wait_stop();
        }
        _ => {}
    }
    finish(i)
}

/// Runs `seuss_target mt` (never returns).
pub fn run_mt() -> ! {
    // SAFETY: installing a handler that only touches a const-initialised thread local.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
    enter(0);
    let mut handles = Vec::new();
    for i in [2usize, 3, 5, 6, 7] {
        handles.push((i, std::thread::spawn(move || worker(i))));
    }
    handles.push((1, std::thread::spawn(bell_thread)));
    while TIDS[1].load(SeqCst) == 0 {
        std::thread::yield_now();
    }
    // The bell thread's tid, for the test to arm; it rings only after `go`.
    say(&format!("doorbell={:#x}", &raw const BELL as u64));
    say(&format!("bell_tid={:#x}", TIDS[1].load(SeqCst)));
    say("ready");
    let mut go = String::new();
    let _ = std::io::stdin().lock().read_line(&mut go);
    handles.push((4, std::thread::spawn(reader_thread)));
    *GO.lock().unwrap() = true;
    GO_CV.notify_all();
    // Thread 0's own state at the freeze: an untimed condition wait.
    let mut g = CMD.lock().unwrap();
    while g.is_none() {
        g = CMD_CV.wait(g).unwrap();
    }
    drop(g);
    let k = command_k();
    let mut failed = 0u32;
    let mut kills = 0u32;
    for (_, h) in &handles {
        // SAFETY: the thread is alive until STOP (none finishes before it).
        if unsafe { libc::pthread_kill(h.as_pthread_t(), libc::SIGUSR1) } == 0 {
            kills += 1;
        }
    }
    failed += N as u32 - 1 - kills;
    // A thread created in the rebuilt process.
    let fresh = std::thread::spawn(move || {
        ME.with(|m| m.set(TLS_BASE + 100));
        SLOTS[N].store(k + N as u64, SeqCst);
        (ME.with(|m| m.get()) == TLS_BASE + 100 && HITS.with(|h| h.get()) == 0) as u32
    });
    let fresh_ok = fresh.join().unwrap_or(0);
    failed += 1 - fresh_ok;
    {
        let _g = STOP_M.lock().unwrap();
        STOP.store(true, SeqCst);
        STOP_CV.notify_all();
    }
    let mut oks = Vec::new();
    for (i, h) in handles {
        let ok = h.join().unwrap_or(0);
        failed += 1 - ok;
        oks.push(format!("{i}:{ok}"));
    }
    let slots_ok = (1..=N).all(|i| SLOTS[i].load(SeqCst) == k + i as u64);
    failed += (!slots_ok) as u32;
    let main_tls = ME.with(|m| m.get()) == TLS_BASE;
    TIDS[0].store(gettid(), SeqCst);
    failed += (!main_tls) as u32;
    let tids: Vec<String> = TIDS.iter().map(|t| t.load(SeqCst).to_string()).collect();
    say(&format!(
        "mtreport pid={} k={} kills={} fresh={} slots={} main_tls={} spins={} ok={} failed={} tids={}",
        std::process::id(), k, kills, fresh_ok, slots_ok, main_tls, SPINS.load(SeqCst) > 0, oks.join(","), failed, tids.join(",")
    ));
    std::process::exit(if failed == 0 { 42 } else { 20 + failed as i32 });
}
