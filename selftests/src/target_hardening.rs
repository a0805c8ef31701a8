//! Target modes for the hardening cases (`hardening_cases.rs` in `seuss_test`), one function each; the
//! dispatcher [`run`] is called by `seuss_target`'s `main` first and returns when the mode is not one of
//! these. Each prints `key=value` lines and `ready`, waits for `go`, reaches its freeze point, and after
//! it (in the resumed source and in every deployed child) prints one report line and exits 42 when all
//! matched.
//!
//! - `regs`: every GPR, rflags, xmm0-15 (and upper ymm halves with AVX), gs base set to patterns, then
//!   the watchpoint store; right after it (same asm block) everything is saved and compared.
//! - `regsnow`: the same registers set, then a loop that only increments `counter` and counts `remain`
//!   down (memory only; no GPR, xmm or CF/DF/ID change): a freeze-now interrupts it anywhere.
//! - `fds`: after the doorbell, reads `fds N...`, reports how many fds point at /dev/seuss and what an
//!   ioctl on each listed fd number gives.
//! - `thread_after`: starts a thread after `go`, then rings the doorbell (the freeze parks it too).
//! - `thp`: an 8 MiB 2 MiB-aligned MADV_HUGEPAGE region, touched, then the doorbell.
//! - `big N`: N MiB of touched private memory (4 KiB pages), then the doorbell.
//! - `execsuid PATH`: builds a ~1.4 MB environment, waits for `go`, then execs PATH (`exit0`).
//! - `exit0`: exits 0 at once; `euid`: prints its real and effective uid and exits 0.

use std::arch::asm;
use std::io::{BufRead, Write};

const REG_NAMES: [&str; 15] =
    ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];
/// rflags bits set before the freeze point: CF PF AF ZF SF DF OF ID.
const FLAGS_SET: u64 = 0x1 | 0x4 | 0x10 | 0x40 | 0x80 | 0x400 | 0x800 | 0x20_0000;
/// Of those, what `regsnow`'s loop (inc/dec/jnz) leaves alone: CF DF ID.
const FLAGS_LOOP: u64 = 0x1 | 0x400 | 0x20_0000;
const TF_RF: u64 = 0x100 | 0x1_0000;
const GS_PATTERN: u64 = 0x0000_6a5e_5500_1000;
const ARCH_SET_GS: i32 = 0x1001;
const ARCH_GET_FS: i32 = 0x1003;
const ARCH_GET_GS: i32 = 0x1004;

/// Register file image: 16 GPR slots (rsp's slot unused), 16 x 32-byte vector slots, rflags, rsp.
#[repr(C, align(64))]
struct RegBuf {
    g: [u64; 16],
    v: [[u64; 4]; 16],
    flags: u64,
    rsp: u64,
}

static mut PAT: RegBuf = RegBuf { g: [0; 16], v: [[0; 4]; 16], flags: 0, rsp: 0 };
static mut OUT: RegBuf = RegBuf { g: [0; 16], v: [[0; 4]; 16], flags: 0, rsp: 0 };
static mut RSP_IN: u64 = 0;
static mut FLAGS_IN: u64 = 0;
static mut HAVE_AVX: u8 = 0;
static mut BELL: u64 = 0;
static mut COUNTER: u64 = 0;
static mut REMAIN: u64 = u64::MAX;

thread_local! {
    static TLS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn say(s: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{s}").and_then(|_| o.flush());
}

fn read_line() -> String {
    let mut l = String::new();
    let _ = std::io::stdin().lock().read_line(&mut l);
    l.trim().to_string()
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn arch_prctl_get(code: i32) -> u64 {
    let mut v = 0u64;
    // SAFETY: arch_prctl GET writes one u64 to the pointer we pass.
    unsafe { libc::syscall(libc::SYS_arch_prctl, code, &mut v as *mut u64) };
    v
}

/// Fills the pattern buffer: distinct 64-bit values everywhere; rax's low half is a positive int far
/// from any errno, so an `int` on the return path visibly loses its upper half.
fn fill_patterns() {
    let mut seed = 0x5e55_2026_0000_0001u64;
    // SAFETY: single-threaded, before the asm reads the buffer.
    unsafe {
        let p = &mut *std::ptr::addr_of_mut!(PAT);
        for i in 0..16 {
            p.g[i] = splitmix(&mut seed);
        }
        p.g[0] = 0x7fed_cba9_1357_2468;
        for slot in p.v.iter_mut() {
            for w in slot.iter_mut() {
                *w = splitmix(&mut seed);
            }
        }
        HAVE_AVX = std::arch::is_x86_feature_detected!("avx") as u8;
    }
}

macro_rules! regs_asm {
    ($middle:literal, $($extra:tt)*) => {
        asm!(
            "push rbx",
            "push rbp",
            "mov qword ptr [rip + {rsp_in}], rsp",
            "cmp byte ptr [rip + {avx}], 0",
            "je 2f",
            "vmovdqu ymm0, ymmword ptr [rip + {pat} + 128]",
            "vmovdqu ymm1, ymmword ptr [rip + {pat} + 160]",
            "vmovdqu ymm2, ymmword ptr [rip + {pat} + 192]",
            "vmovdqu ymm3, ymmword ptr [rip + {pat} + 224]",
            "vmovdqu ymm4, ymmword ptr [rip + {pat} + 256]",
            "vmovdqu ymm5, ymmword ptr [rip + {pat} + 288]",
            "vmovdqu ymm6, ymmword ptr [rip + {pat} + 320]",
            "vmovdqu ymm7, ymmword ptr [rip + {pat} + 352]",
            "vmovdqu ymm8, ymmword ptr [rip + {pat} + 384]",
            "vmovdqu ymm9, ymmword ptr [rip + {pat} + 416]",
            "vmovdqu ymm10, ymmword ptr [rip + {pat} + 448]",
            "vmovdqu ymm11, ymmword ptr [rip + {pat} + 480]",
            "vmovdqu ymm12, ymmword ptr [rip + {pat} + 512]",
            "vmovdqu ymm13, ymmword ptr [rip + {pat} + 544]",
            "vmovdqu ymm14, ymmword ptr [rip + {pat} + 576]",
            "vmovdqu ymm15, ymmword ptr [rip + {pat} + 608]",
            "jmp 3f",
            "2:",
            "movdqu xmm0, xmmword ptr [rip + {pat} + 128]",
            "movdqu xmm1, xmmword ptr [rip + {pat} + 160]",
            "movdqu xmm2, xmmword ptr [rip + {pat} + 192]",
            "movdqu xmm3, xmmword ptr [rip + {pat} + 224]",
            "movdqu xmm4, xmmword ptr [rip + {pat} + 256]",
            "movdqu xmm5, xmmword ptr [rip + {pat} + 288]",
            "movdqu xmm6, xmmword ptr [rip + {pat} + 320]",
            "movdqu xmm7, xmmword ptr [rip + {pat} + 352]",
            "movdqu xmm8, xmmword ptr [rip + {pat} + 384]",
            "movdqu xmm9, xmmword ptr [rip + {pat} + 416]",
            "movdqu xmm10, xmmword ptr [rip + {pat} + 448]",
            "movdqu xmm11, xmmword ptr [rip + {pat} + 480]",
            "movdqu xmm12, xmmword ptr [rip + {pat} + 512]",
            "movdqu xmm13, xmmword ptr [rip + {pat} + 544]",
            "movdqu xmm14, xmmword ptr [rip + {pat} + 576]",
            "movdqu xmm15, xmmword ptr [rip + {pat} + 608]",
            "3:",
            "pushfq",
            "or qword ptr [rsp], 0x200CD5",
            "popfq",
            "pushfq",
            "pop qword ptr [rip + {flags_in}]",
            "mov rax, qword ptr [rip + {pat} + 0]",
            "mov rbx, qword ptr [rip + {pat} + 8]",
            "mov rcx, qword ptr [rip + {pat} + 16]",
            "mov rdx, qword ptr [rip + {pat} + 24]",
            "mov rsi, qword ptr [rip + {pat} + 32]",
            "mov rdi, qword ptr [rip + {pat} + 40]",
            "mov rbp, qword ptr [rip + {pat} + 48]",
            "mov r8, qword ptr [rip + {pat} + 56]",
            "mov r9, qword ptr [rip + {pat} + 64]",
            "mov r10, qword ptr [rip + {pat} + 72]",
            "mov r11, qword ptr [rip + {pat} + 80]",
            "mov r12, qword ptr [rip + {pat} + 88]",
            "mov r13, qword ptr [rip + {pat} + 96]",
            "mov r14, qword ptr [rip + {pat} + 104]",
            "mov r15, qword ptr [rip + {pat} + 112]",
            $middle,
            "mov qword ptr [rip + {out} + 0], rax",
            "mov qword ptr [rip + {out} + 8], rbx",
            "mov qword ptr [rip + {out} + 16], rcx",
            "mov qword ptr [rip + {out} + 24], rdx",
            "mov qword ptr [rip + {out} + 32], rsi",
            "mov qword ptr [rip + {out} + 40], rdi",
            "mov qword ptr [rip + {out} + 48], rbp",
            "mov qword ptr [rip + {out} + 56], r8",
            "mov qword ptr [rip + {out} + 64], r9",
            "mov qword ptr [rip + {out} + 72], r10",
            "mov qword ptr [rip + {out} + 80], r11",
            "mov qword ptr [rip + {out} + 88], r12",
            "mov qword ptr [rip + {out} + 96], r13",
            "mov qword ptr [rip + {out} + 104], r14",
            "mov qword ptr [rip + {out} + 112], r15",
            "mov qword ptr [rip + {out} + 648], rsp",
            "pushfq",
            "pop qword ptr [rip + {out} + 640]",
            "cld",
            "cmp byte ptr [rip + {avx}], 0",
            "je 4f",
            "vmovdqu ymmword ptr [rip + {out} + 128], ymm0",
            "vmovdqu ymmword ptr [rip + {out} + 160], ymm1",
            "vmovdqu ymmword ptr [rip + {out} + 192], ymm2",
            "vmovdqu ymmword ptr [rip + {out} + 224], ymm3",
            "vmovdqu ymmword ptr [rip + {out} + 256], ymm4",
            "vmovdqu ymmword ptr [rip + {out} + 288], ymm5",
            "vmovdqu ymmword ptr [rip + {out} + 320], ymm6",
            "vmovdqu ymmword ptr [rip + {out} + 352], ymm7",
            "vmovdqu ymmword ptr [rip + {out} + 384], ymm8",
            "vmovdqu ymmword ptr [rip + {out} + 416], ymm9",
            "vmovdqu ymmword ptr [rip + {out} + 448], ymm10",
            "vmovdqu ymmword ptr [rip + {out} + 480], ymm11",
            "vmovdqu ymmword ptr [rip + {out} + 512], ymm12",
            "vmovdqu ymmword ptr [rip + {out} + 544], ymm13",
            "vmovdqu ymmword ptr [rip + {out} + 576], ymm14",
            "vmovdqu ymmword ptr [rip + {out} + 608], ymm15",
            "vzeroupper",
            "jmp 5f",
            "4:",
            "movdqu xmmword ptr [rip + {out} + 128], xmm0",
            "movdqu xmmword ptr [rip + {out} + 160], xmm1",
            "movdqu xmmword ptr [rip + {out} + 192], xmm2",
            "movdqu xmmword ptr [rip + {out} + 224], xmm3",
            "movdqu xmmword ptr [rip + {out} + 256], xmm4",
            "movdqu xmmword ptr [rip + {out} + 288], xmm5",
            "movdqu xmmword ptr [rip + {out} + 320], xmm6",
            "movdqu xmmword ptr [rip + {out} + 352], xmm7",
            "movdqu xmmword ptr [rip + {out} + 384], xmm8",
            "movdqu xmmword ptr [rip + {out} + 416], xmm9",
            "movdqu xmmword ptr [rip + {out} + 448], xmm10",
            "movdqu xmmword ptr [rip + {out} + 480], xmm11",
            "movdqu xmmword ptr [rip + {out} + 512], xmm12",
            "movdqu xmmword ptr [rip + {out} + 544], xmm13",
            "movdqu xmmword ptr [rip + {out} + 576], xmm14",
            "movdqu xmmword ptr [rip + {out} + 608], xmm15",
            "5:",
            "pop rbp",
            "pop rbx",
            pat = sym PAT,
            out = sym OUT,
            rsp_in = sym RSP_IN,
            flags_in = sym FLAGS_IN,
            avx = sym HAVE_AVX,
            $($extra)*
            out("rax") _, out("rcx") _, out("rdx") _, out("rsi") _, out("rdi") _,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _, out("r12") _, out("r13") _, out("r14") _, out("r15") _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _, out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
        )
    };
}

/// `regs` / `regsnow`: sets everything, reaches the freeze point, saves and compares; never returns.
fn regs(now: bool) -> ! {
    fill_patterns();
    TLS.with(|t| t.set(0x7157_0000_7157));
    say(&format!("doorbell={:#x}", &raw const BELL as usize));
    say(&format!("counter={:#x}", &raw const COUNTER as usize));
    say(&format!("remain={:#x}", &raw const REMAIN as usize));
    // SAFETY: reading a static written above.
    say(&format!("avx={}", unsafe { HAVE_AVX }));
    say("ready");
    let go = read_line();
    if go != "go" {
        std::process::exit(3);
    }
    let fs_before = arch_prctl_get(ARCH_GET_FS);
    // SAFETY: gs base is not used by Rust or glibc on x86_64; the value is a canonical user address.
    let r = unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_SET_GS, GS_PATTERN) };
    if r != 0 {
        say("report arch_prctl(ARCH_SET_GS) failed");
        std::process::exit(3);
    }
    // SAFETY: the asm touches only the statics named as operands and the stack (push/pop balanced);
    // rbx and rbp are saved and restored by it, every other GPR and xmm register is declared clobbered,
    // DF is cleared before it ends (cld), and the upper ymm halves are zeroed (vzeroupper) on the AVX path.
    unsafe {
        if now {
            regs_asm!(
                "7:\n inc qword ptr [rip + {counter}]\n dec qword ptr [rip + {remain}]\n jnz 7b",
                counter = sym COUNTER, remain = sym REMAIN,
            );
        } else {
            regs_asm!("mov qword ptr [rip + {bell}], 1", bell = sym BELL,);
        }
    }
    let gs_after = arch_prctl_get(ARCH_GET_GS);
    let fs_after = arch_prctl_get(ARCH_GET_FS);
    // SAFETY: single-threaded; the asm above has finished writing these.
    let (p, o, rsp_in, flags_in, avx, counter, remain) = unsafe {
        (&*std::ptr::addr_of!(PAT), &*std::ptr::addr_of!(OUT), RSP_IN, FLAGS_IN, HAVE_AVX != 0, COUNTER, REMAIN)
    };
    let mut bad: Vec<String> = Vec::new();
    for (i, name) in REG_NAMES.iter().enumerate() {
        if o.g[i] != p.g[i] {
            bad.push(format!("{name}:{:#x}!={:#x}", o.g[i], p.g[i]));
        }
    }
    for i in 0..16 {
        if o.v[i][..2] != p.v[i][..2] {
            bad.push(format!("xmm{i}:{:#x}_{:#x}", o.v[i][1], o.v[i][0]));
        }
        if avx && o.v[i][2..] != p.v[i][2..] {
            bad.push(format!("ymm{i}_hi:{:#x}_{:#x}", o.v[i][3], o.v[i][2]));
        }
    }
    if flags_in & FLAGS_SET != FLAGS_SET {
        bad.push(format!("flags_not_set:{flags_in:#x}"));
    }
    let mask = if now { FLAGS_LOOP } else { !TF_RF };
    if (o.flags ^ flags_in) & mask != 0 {
        bad.push(format!("rflags:{:#x}!={flags_in:#x}", o.flags));
    }
    if o.rsp != rsp_in {
        bad.push(format!("rsp:{:#x}!={rsp_in:#x}", o.rsp));
    }
    if gs_after != GS_PATTERN {
        bad.push(format!("gsbase:{gs_after:#x}"));
    }
    if fs_after != fs_before {
        bad.push(format!("fsbase:{fs_after:#x}!={fs_before:#x}"));
    }
    if TLS.with(|t| t.get()) != 0x7157_0000_7157 {
        bad.push("tls".into());
    }
    if now && remain != 0 {
        bad.push(format!("loop_left_early:remain={remain}"));
    }
    let list = if bad.is_empty() { "none".to_string() } else { bad.join(",") };
    say(&format!(
        "regs pid={} avx={} counter={counter} remain={remain} rflags={:#x} bad={list}",
        std::process::id(),
        avx as u8,
        o.flags
    ));
    std::process::exit(if bad.is_empty() { 42 } else { 12 });
}

/// Prints the doorbell address and `ready`, waits for `go`, and stores to the doorbell.
fn ready_go_ring(extra: &[(&str, u64)]) {
    say(&format!("doorbell={:#x}", &raw const BELL as usize));
    for (k, v) in extra {
        say(&format!("{k}={v:#x}"));
    }
    say("ready");
    if read_line() != "go" {
        std::process::exit(3);
    }
    // SAFETY: a plain store to our own static.
    unsafe { std::ptr::write_volatile(&raw mut BELL, 1) };
}

/// `fds`: after the freeze, `fds N...`: counts descriptors that are /dev/seuss and tries an ioctl on each N.
fn fds() -> ! {
    ready_go_ring(&[]);
    let cmd = read_line();
    let nums: Vec<i32> = cmd.strip_prefix("fds").unwrap_or("").split_whitespace().filter_map(|s| s.parse().ok()).collect();
    // The ioctls first: reading /proc/self/fd opens a descriptor, which could reuse a freed number.
    let mut ok = !nums.is_empty();
    let mut res = Vec::new();
    for n in &nums {
        let mut st = [0u64; 8];
        st[0] = std::mem::size_of::<uapi::seuss_stats>() as u64;
        // SAFETY: `st` is 64 valid bytes (a seuss_stats is 56); a closed fd gives EBADF.
        let r = unsafe { libc::ioctl(*n, uapi::request::STATS as _, st.as_mut_ptr()) };
        let errno = if r < 0 { std::io::Error::last_os_error().raw_os_error().unwrap_or(0) } else { 0 };
        ok &= errno == libc::EBADF;
        res.push(format!("fd{n}={errno}"));
    }
    let mut seuss_fds = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
        for ent in rd.flatten() {
            if let Ok(l) = std::fs::read_link(ent.path()) {
                if l.as_os_str() == "/dev/seuss" {
                    seuss_fds.push(ent.file_name().to_string_lossy().into_owned());
                }
            }
        }
    }
    ok &= seuss_fds.is_empty();
    say(&format!(
        "fdreport pid={} seuss_fds={} list={} {}",
        std::process::id(),
        seuss_fds.len(),
        if seuss_fds.is_empty() { "-".to_string() } else { seuss_fds.join(",") },
        res.join(" ")
    ));
    std::process::exit(if ok { 42 } else { 17 });
}

/// `thread_after`: a second thread exists at the freeze point; afterwards it is told to end and joined.
fn thread_after() -> ! {
    say(&format!("doorbell={:#x}", &raw const BELL as usize));
    say("ready");
    if read_line() != "go" {
        std::process::exit(3);
    }
    let (tx, rx) = std::sync::mpsc::channel::<u32>();
    let t = std::thread::spawn(move || rx.recv().unwrap_or(0));
    // SAFETY: a plain store to our own static.
    unsafe { std::ptr::write_volatile(&raw mut BELL, 1) };
    let _ = read_line();
    let _ = tx.send(7);
    let got = t.join().unwrap_or(0);
    say(&format!("threadreport pid={} joined={}", std::process::id(), got == 7));
    std::process::exit(if got == 7 { 42 } else { 18 });
}

/// `thp`: 8 MiB of 2 MiB-aligned MADV_HUGEPAGE memory, every 4 KiB page tagged with its index.
fn thp() -> ! {
    const LEN: usize = 8 << 20;
    const HUGE: usize = 2 << 20;
    // SAFETY: a fresh private anonymous mapping, trimmed to a 2 MiB-aligned LEN bytes we own for good.
    let base = unsafe {
        let p = libc::mmap(std::ptr::null_mut(), LEN + HUGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        if p == libc::MAP_FAILED {
            std::process::exit(3);
        }
        let start = p as usize;
        let aligned = (start + HUGE - 1) & !(HUGE - 1);
        if aligned > start {
            libc::munmap(p, aligned - start);
        }
        let end = start + LEN + HUGE;
        if end > aligned + LEN {
            libc::munmap((aligned + LEN) as *mut _, end - aligned - LEN);
        }
        libc::madvise(aligned as *mut _, LEN, libc::MADV_HUGEPAGE);
        for pg in 0..LEN / 4096 {
            std::ptr::write_volatile((aligned + pg * 4096) as *mut u64, 0x7e9a_0000_0000 + pg as u64);
        }
        aligned
    };
    ready_go_ring(&[("thp", base as u64), ("thp_len", LEN as u64)]);
    let cmd = read_line();
    // SAFETY: reading the mapping made above.
    let ok = (0..LEN / 4096).all(|pg| unsafe { std::ptr::read_volatile((base + pg * 4096) as *const u64) } == 0x7e9a_0000_0000 + pg as u64);
    if cmd == "scribble" {
        // SAFETY: writing the mapping made above.
        unsafe { std::ptr::write_volatile(base as *mut u64, 1) };
    }
    say(&format!("thpreport pid={} mem={ok}", std::process::id()));
    std::process::exit(if ok { 42 } else { 11 });
}

/// `big N`: N MiB of private 4 KiB pages, each written.
fn big(mib: usize) -> ! {
    let len = mib << 20;
    // SAFETY: a fresh private anonymous mapping we own for good.
    let base = unsafe {
        let p = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
        if p == libc::MAP_FAILED {
            std::process::exit(3);
        }
        libc::madvise(p, len, libc::MADV_NOHUGEPAGE);
        for pg in 0..len / 4096 {
            std::ptr::write_volatile((p as usize + pg * 4096) as *mut u64, pg as u64 + 1);
        }
        p as usize
    };
    ready_go_ring(&[("big", base as u64)]);
    let _ = read_line();
    // SAFETY: reading the mapping made above.
    let ok = (0..len / 4096).step_by(97).all(|pg| unsafe { std::ptr::read_volatile((base + pg * 4096) as *const u64) } == pg as u64 + 1);
    say(&format!("bigreport pid={} mem={ok}", std::process::id()));
    std::process::exit(if ok { 42 } else { 11 });
}

/// `execsuid PATH`: execs PATH with a large environment (so execve spends a while copying strings
/// before it commits the new credentials) as soon as `go` arrives.
fn execsuid(path: &str) -> ! {
    use std::ffi::CString;
    let env: Vec<CString> = (0..11).map(|i| CString::new(format!("SEUSS_PAD{i}={}", "x".repeat(120_000))).unwrap()).collect();
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let p = CString::new(path).unwrap();
    let a1 = CString::new("exit0").unwrap();
    let argv = [p.as_ptr(), a1.as_ptr(), std::ptr::null()];
    say("ready");
    if read_line() != "go" {
        std::process::exit(3);
    }
    // SAFETY: NUL-terminated argv and envp arrays of valid C strings that outlive the call.
    unsafe { libc::execve(p.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    std::process::exit(4);
}

/// Runs the mode named by `args[1]` if it is one of this file's; returns otherwise.
pub fn run(args: &[String]) {
    match args.get(1).map(String::as_str) {
        Some("regs") => regs(false),
        Some("regsnow") => regs(true),
        Some("fds") => fds(),
        Some("thread_after") => thread_after(),
        Some("thp") => thp(),
        Some("big") => big(args.get(2).and_then(|s| s.parse().ok()).unwrap_or(256)),
        Some("execsuid") => execsuid(args.get(2).map(String::as_str).unwrap_or("/nonexistent")),
        Some("exit0") => std::process::exit(0),
        Some("euid") => {
            // SAFETY: no preconditions.
            let (u, eu) = unsafe { (libc::getuid(), libc::geteuid()) };
            say(&format!("uid={u} euid={eu}"));
            std::process::exit(0)
        }
        _ => {}
    }
}
