//! `seuss_target`: the process the selftests freeze, capture and deploy.
//!
//! It prints what the test needs on stdout (addresses, one `key=value` line each), waits for a `go` line
//! on stdin, then reaches its freeze point. Code after the freeze point runs in the resumed source and
//! in every deployed child; each checks its memory, registers and TLS against what was set before the
//! freeze, prints one report line and exits with status 42 when everything matched (other codes say what
//! did not).
//!
//! Modes (first argument):
//! - `watch`: freeze on a write watchpoint on the doorbell (the store below).
//! - `exec`: freeze on an execute breakpoint at `freeze_here`.
//! - `layer N`: like `watch`; after the first freeze every deployed child writes N more pages and rings a
//!   second doorbell (the tree test captures there), then checks both layers.
//! - `layer N M`: as `layer N`, and the child also copies M pages of the first layer without changing
//!   them (each byte written away and back) before the second doorbell; after it, it takes a command
//!   like `watch` does (`scribble` overwrites the first layer, anything else goes to the report).
//! - `threads`: spawns a thread and waits (a 2-thread root process for the permission cases).
//! - `mt`: eight threads in eight states (`target_threads.rs`).
//! - `sleep`: blocks reading stdin (freeze-now target).
//! - `shared`: like `watch`, with a shared writable anonymous mapping (capture must refuse it).
//! - `regs`, `regsnow`, `fds`, `thread_after`, `thp`, `big N`, `execsuid PATH`, `exit0`: the hardening
//!   cases' modes, in `target_hardening.rs`.

mod target_hardening;
mod target_pool;
mod target_threads;

use std::arch::asm;
use std::cell::Cell;
use std::io::{BufRead, Write};

const PAGES: usize = 256;
const MAGIC_R12: u64 = 0x5e55_0000_1234_abcd;
const MAGIC_XMM: u64 = 0x0dd0_face_feed_b0b0;
const TLS_VALUE: u64 = 0x7157_7157;

thread_local! {
    static TLS: Cell<u64> = const { Cell::new(0) };
}

static USR1_HITS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
static mut ALTSTACK: usize = 0;
static mut TIDVAR: u32 = 0;
static mut WIPE_PAGE: usize = 0;
static mut DOORBELL: u64 = 0;
static mut DOORBELL2: u64 = 0;
static mut COOKIE: u64 = 0;

fn pattern(i: usize) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 12)) as u8
}

#[inline(never)]
#[no_mangle]
pub extern "C" fn freeze_here(x: u64) -> u64 {
    // Keep the function and its first instruction real.
    std::hint::black_box(x) ^ 0x55
}

extern "C" fn on_usr1(_: libc::c_int) {
    USR1_HITS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

/// Installs a SIGUSR1 handler on an alternate stack and blocks SIGUSR2: state a deploy must carry over.
fn setup_signals() {
    // SAFETY: plain libc calls with valid, leaked buffers.
    unsafe {
        let stack = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
        ALTSTACK = stack.as_ptr() as usize;
        let ss = libc::stack_t { ss_sp: stack.as_mut_ptr() as *mut _, ss_flags: 0, ss_size: stack.len() };
        libc::sigaltstack(&ss, std::ptr::null_mut());
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = libc::SA_ONSTACK | libc::SA_RESTART;
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR2);
        libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Whether handler, mask and altstack survived, and whether a signal sent to ourselves is handled.
fn check_signals() -> bool {
    // SAFETY: plain libc queries on our own process.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGUSR1, std::ptr::null(), &mut old);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut set);
        let mut ss: libc::stack_t = std::mem::zeroed();
        libc::sigaltstack(std::ptr::null(), &mut ss);
        let before = USR1_HITS.load(std::sync::atomic::Ordering::SeqCst);
        libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::syscall(libc::SYS_gettid), libc::SIGUSR1);
        let handled = USR1_HITS.load(std::sync::atomic::Ordering::SeqCst) == before + 1;
        old.sa_sigaction == on_usr1 as *const () as usize
            && libc::sigismember(&set, libc::SIGUSR2) == 1
            && ss.ss_sp as usize == ALTSTACK
            && handled
    }
}

fn wait_go() {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
}

/// One line to the test (flushed), for every mode's module.
fn say(s: &str) {
    // The reader may be gone (a test that already failed): ignore EPIPE.
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{s}").and_then(|_| o.flush());
}

/// Sets r12 and xmm5 to magic values, stores to `bell`, and returns what r12 and xmm5 hold afterwards.
fn ring(bell: *mut u64, via_call: bool) -> (u64, u64) {
    let r12_after: u64;
    let xmm_after: u64;
    // SAFETY: `bell` points to a static u64; r12 and xmm5 (and, for the call, the caller-saved registers)
    // are declared clobbered, so the compiler keeps no operand in them.
    unsafe {
        if via_call {
            asm!(
                "movq xmm5, {x}",
                "mov r12, {m}",
                "mov rdi, 7",
                "call {f}",
                "mov {ro}, r12",
                "movq {xo}, xmm5",

                m = in(reg) MAGIC_R12,
                x = in(reg) MAGIC_XMM,
                f = sym freeze_here,
                ro = out(reg) r12_after,
                xo = out(reg) xmm_after,
                out("r12") _, out("xmm5") _, out("rdi") _, out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _,
                out("r8") _, out("r9") _, out("r10") _, out("r11") _,
                out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _,
            );
        } else {
            asm!(
                "movq xmm5, {x}",
                "mov r12, {m}",
                "mov qword ptr [{b}], 1",
                "mov {ro}, r12",
                "movq {xo}, xmm5",

                m = in(reg) MAGIC_R12,
                x = in(reg) MAGIC_XMM,
                b = in(reg) bell,
                ro = out(reg) r12_after,
                xo = out(reg) xmm_after,
                out("r12") _, out("xmm5") _,
            );
        }
    }
    (r12_after, xmm_after)
}

fn check_layer(mem: &[u8], base: usize) -> bool {
    mem.iter().enumerate().all(|(i, b)| *b == pattern(i + base))
}

fn report_and_exit(mem: &[u8], regs: (u64, u64), extra: &[u8], extra_base: usize) -> ! {
    let mut code = 42;
    let mem_ok = check_layer(mem, 0);
    let extra_ok = check_layer(extra, extra_base);
    let regs_ok = regs == (MAGIC_R12, MAGIC_XMM);
    let tls_ok = TLS.with(|t| t.get()) == TLS_VALUE;
    let errno_ok = std::io::Error::last_os_error().raw_os_error() == Some(libc::EDOM);
    let usr1_before = USR1_HITS.load(std::sync::atomic::Ordering::SeqCst);
    let sig_ok = check_signals();
    // malloc, printf and getpid must work in the child.
    let boxed = Box::new([7u8; 100_000]);
    let heap_ok = boxed.iter().all(|b| *b == 7);
    if !mem_ok || !extra_ok {
        code = 11;
    } else if !regs_ok {
        code = 12;
    } else if !tls_ok {
        code = 13;
    } else if !errno_ok {
        code = 14;
    } else if !heap_ok {
        code = 15;
    } else if !sig_ok {
        code = 16;
    }
    // SAFETY: reading a static written only by this thread or by the kernel at deploy.
    let cookie = unsafe { std::ptr::read_volatile(&raw const COOKIE) };
    // SAFETY: as for COOKIE.
    let tidvar = unsafe { std::ptr::read_volatile(&raw const TIDVAR) };
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) };
    // SAFETY: WIPE_PAGE is a mapping made before the freeze (or 0 in modes without it).
    let wiped = unsafe { if WIPE_PAGE != 0 { *(WIPE_PAGE as *const u8) } else { 0 } };
    say(&format!(
        "report pid={} mem={} regs={} r12={:#x} xmm={:#x} tls={} errno={} heap={} sig={} usr1={} cookie={} tidvar={} tid={} wipe={}",
        std::process::id(), mem_ok && extra_ok, regs_ok, regs.0, regs.1, tls_ok, errno_ok, heap_ok, sig_ok, usr1_before, cookie, tidvar, tid, wiped
    ));
    // Children leave through exit_group: buffers flushed above.
    std::process::exit(code);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    target_hardening::run(&args);
    if args.get(1).map(String::as_str) == Some("mt") {
        target_threads::run_mt();
    }
    if args.get(1).map(String::as_str) == Some("pool") {
        target_pool::run_pool(&args);
    }
    let mode = args.get(1).map(String::as_str).unwrap_or("watch");
    match mode {
        "threads" => {
            let _t = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_secs(600)));
            say("ready");
            wait_go();
            return;
        }
        "sleep" => {
            say("ready");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap();
            say(&format!("got {} pid={}", line.trim(), std::process::id()));
            std::process::exit(if line.trim() == "after" { 42 } else { 1 });
        }
        _ => {}
    }
    if mode == "shared" {
        // Shared writable anonymous memory: a snapshot of it would not be immutable.
        // SAFETY: a fresh anonymous mapping, touched once.
        unsafe {
            let p = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0);
            assert!(p != libc::MAP_FAILED);
            *(p as *mut u8) = 1;
        }
    }
    // A MADV_WIPEONFORK page: fork semantics say copies (snapshots, and so their children) see zeros.
    // SAFETY: a fresh private anonymous mapping we own for the life of the process.
    unsafe {
        let p = libc::mmap(std::ptr::null_mut(), 4096, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        assert!(p != libc::MAP_FAILED);
        *(p as *mut u8) = 0x55;
        libc::madvise(p, 4096, libc::MADV_WIPEONFORK);
        WIPE_PAGE = p as usize;
    }
    let mut mem = vec![0u8; PAGES * 4096];
    for (i, b) in mem.iter_mut().enumerate() {
        *b = pattern(i);
    }
    TLS.with(|t| t.set(TLS_VALUE));
    setup_signals();
    // SAFETY: writing errno through libc's accessor.
    unsafe { *libc::__errno_location() = libc::EDOM };
    say(&format!("doorbell={:#x}", &raw const DOORBELL as usize));
    say(&format!("doorbell2={:#x}", &raw const DOORBELL2 as usize));
    say(&format!("cookie={:#x}", &raw const COOKIE as usize));
    say(&format!("tidvar={:#x}", &raw const TIDVAR as usize));
    say(&format!("func={:#x}", freeze_here as *const () as usize));
    say("ready");
    wait_go();
    // errno may have been changed by the I/O above: set it again right before the freeze point.
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = libc::EDOM };
    let regs = ring(&raw mut DOORBELL, mode == "exec");
    if let Some(n) = args.get(2).and_then(|s| s.parse::<usize>().ok()).filter(|_| mode == "layer") {
        // First-level child (or the source): add a layer and freeze again on the second doorbell.
        let mut extra = vec![0u8; n * 4096];
        for (i, b) in extra.iter_mut().enumerate() {
            *b = pattern(i + 1_000_000);
        }
        let unchanged = args.get(3).and_then(|s| s.parse::<usize>().ok());
        for p in 0..unchanged.unwrap_or(0).min(PAGES) {
            let at = &mut mem[p * 4096] as *mut u8;
            // SAFETY: `at` points into `mem`; volatile so the write away and back both happen.
            unsafe {
                let v = std::ptr::read_volatile(at);
                std::ptr::write_volatile(at, !v);
                std::ptr::write_volatile(at, v);
            }
        }
        say(&format!("layer pid={}", std::process::id()));
        wait_go();
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = libc::EDOM };
        let regs2 = ring(&raw mut DOORBELL2, false);
        let r = if regs == (MAGIC_R12, MAGIC_XMM) { regs2 } else { regs };
        if unchanged.is_some() {
            scribble_on_command(&mut mem);
        }
        report_and_exit(&mem, r, &extra, 1_000_000);
    }
    // Post-freeze command from whoever owns our stdin now: `scribble` overwrites the pattern (isolation
    // tests), anything else goes straight to the report.
    scribble_on_command(&mut mem);
    report_and_exit(&mem, regs, &[], 0);
}

/// Reads a command line: `scribble` overwrites `mem` and waits for one more line; anything else returns.
fn scribble_on_command(mem: &mut [u8]) {
    let mut cmd = String::new();
    std::io::stdin().lock().read_line(&mut cmd).unwrap();
    if cmd.trim() == "scribble" {
        mem.iter_mut().for_each(|b| *b = 0xAA);
        say(&format!("scribbled pid={}", std::process::id()));
        cmd.clear();
        std::io::stdin().lock().read_line(&mut cmd).unwrap();
    }
}
