//! What every worker process reports to the parent, in one anonymous shared mapping made before the
//! workers fork: ioctl results by errno, operation and failure counts, coverage events, and one progress
//! slot per worker thread (the operation it is in and since when) for the watchdog.
//!
//! Also the pass rule for a single result: the errnos the contract documents (`DOCUMENTED`, with EINTR
//! only where the fuzzer sent a signal).

use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::OnceLock;

/// Highest errno counted one by one (larger ones count as `errnos[MAX_ERRNO - 1]`).
pub const MAX_ERRNO: usize = 160;
/// Most worker threads over all processes.
pub const MAX_SLOTS: usize = 64;
/// Failure lines printed per class of failure (all are counted), and in all.
const PRINTED_PER_CLASS: u64 = 3;
const MAX_PRINTED: u64 = 120;
/// Distinct failure classes remembered (further ones are counted under the last).
const CLASSES: usize = 128;
const CLASS_NAME: usize = 96;
/// Operation kinds timed (the actor's operation names).
pub const OP_KINDS: usize = 18;

/// The errnos any seuss ioctl may return (hardening contract, item 11), EINTR aside.
pub const DOCUMENTED: &[i32] = &[
    libc::EPERM, libc::ENOENT, libc::ESRCH, libc::EBADF, libc::ENOMEM, libc::EFAULT, libc::EBUSY,
    libc::EINVAL, libc::ENOSPC, libc::ENOTTY, libc::E2BIG, libc::EAGAIN, libc::EOPNOTSUPP, libc::ETIMEDOUT,
];

/// Coverage events, counted to show what a run exercised.
#[derive(Clone, Copy)]
pub enum Event {
    Spawned,
    Armed,
    Frozen,
    Captured,
    Resumed,
    KilledFrozen,
    SigKilled,
    DeployedChildOk,
    StubRefused,
    IoUringUnavailable,
    BadNestedRefused,
    InstanceCaptured,
    ReleasedSnapshot,
    RaceResumeCapture,
    RaceReleaseDeploy,
    DevClosed,
    Interrupted,
    ReadOnlyCaptureEfault,
}

/// Names of [`Event`]s, in order.
pub const EVENT_NAMES: &[&str] = &[
    "spawned", "armed", "frozen", "captured", "resumed", "killed_frozen", "sigkilled", "deployed_ok",
    "stub_refused", "io_uring_unavailable", "bad_nested_refused", "instance_captured", "snap_released",
    "race_resume_capture", "race_release_deploy", "dev_closed", "interrupted", "readonly_capture_efault",
];

/// One worker thread's progress, read by the watchdog.
#[repr(C)]
pub struct Slot {
    /// Index into the actor's operation names, plus one (0: idle or finished).
    pub op: AtomicU32,
    /// When the current operation started (monotonic ms).
    pub since_ms: AtomicU64,
    /// Operations finished.
    pub done: AtomicU64,
    /// The thread's tid (for its kernel stack in a watchdog report).
    pub tid: AtomicU32,
}

/// A kind of failure (e.g. "cheap WAIT Number got ENOENT"): how often it happened, and its name.
#[repr(C)]
pub struct Class {
    hash: AtomicU64,
    count: AtomicU64,
    name: [AtomicU8; CLASS_NAME],
}

/// The shared mapping.
#[repr(C)]
pub struct Board {
    pub ok: AtomicU64,
    pub errnos: [AtomicU64; MAX_ERRNO],
    pub ops: AtomicU64,
    pub failures: AtomicU64,
    pub events: [AtomicU64; 18],
    pub slots: [Slot; MAX_SLOTS],
    /// Set by the parent to end a soak run or after the watchdog fired: workers stop at their next op.
    pub stop: AtomicU32,
    /// Dead-line of a soak run (monotonic ms; 0: count-bounded run).
    pub soak_until_ms: AtomicU64,
    /// Set by the parent once it is multi-threaded (its watchdog runs): workers start then, so an ARM
    /// of the parent always meets a multi-threaded process.
    pub started: AtomicU32,
    /// Failure lines printed so far.
    printed: AtomicU64,
    classes: [Class; CLASSES],
    /// Per operation kind: how many ran, and the milliseconds they took.
    pub op_count: [AtomicU64; OP_KINDS],
    pub op_ms: [AtomicU64; OP_KINDS],
}

static BOARD: OnceLock<usize> = OnceLock::new();
static SEED: AtomicU64 = AtomicU64::new(0);

/// Creates the shared board; call once, before forking the workers.
pub fn create(seed: u64) -> &'static Board {
    SEED.store(seed, Relaxed);
    let len = std::mem::size_of::<Board>();
    // SAFETY: a fresh anonymous shared mapping; all-zero is a valid Board (atomics only).
    let p = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1, 0)
    };
    assert!(p != libc::MAP_FAILED, "mmap of the result board failed");
    BOARD.set(p as usize).expect("board created twice");
    board()
}

/// The board made by [`create`].
pub fn board() -> &'static Board {
    let p = *BOARD.get().expect("board not created");
    // SAFETY: `create` mapped a zeroed Board there for the life of the process (and its forks).
    unsafe { &*(p as *const Board) }
}

/// Monotonic milliseconds, comparable across the worker processes.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Counts one ioctl result (`Ok` or an errno).
pub fn tally(result: Result<(), i32>) {
    let b = board();
    match result {
        Ok(()) => b.ok.fetch_add(1, Relaxed),
        Err(e) => b.errnos[(e.max(0) as usize).min(MAX_ERRNO - 1)].fetch_add(1, Relaxed),
    };
}

/// Counts a coverage event.
pub fn event(e: Event) {
    board().events[e as usize].fetch_add(1, Relaxed);
}

/// Prints a line to stdout in one write, so lines of different processes do not mix.
pub fn say(line: &str) {
    let mut s = String::with_capacity(line.len() + 1);
    s.push_str(line);
    s.push('\n');
    let mut o = std::io::stdout().lock();
    let _ = o.write_all(s.as_bytes()).and_then(|_| o.flush());
}

/// The class slot for `class` (claimed on first use; the last slot takes what does not fit).
fn class_slot(class: &str) -> &'static Class {
    let h = class.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)) | 1;
    let classes = &board().classes;
    for c in classes.iter() {
        match c.hash.compare_exchange(0, h, Relaxed, Relaxed) {
            Ok(_) => {
                for (i, b) in class.bytes().take(CLASS_NAME).enumerate() {
                    c.name[i].store(b, Relaxed);
                }
                return c;
            }
            Err(x) if x == h => return c,
            Err(_) => {}
        }
    }
    &classes[CLASSES - 1]
}

/// Records a failure of kind `class`: `who` names the thread and operation, `what` says what was wrong.
/// The first few of each class are printed.
pub fn fail(class: &str, who: &str, what: &str) {
    let b = board();
    b.failures.fetch_add(1, Relaxed);
    let seen = class_slot(class).count.fetch_add(1, Relaxed);
    if seen < PRINTED_PER_CLASS && b.printed.fetch_add(1, Relaxed) < MAX_PRINTED {
        say(&format!("# FAIL seed={} {who}: {what}", SEED.load(Relaxed)));
    }
}

/// One `# failures: N x class` line per class, most frequent first (call after the workers ended).
pub fn class_summary() -> Vec<String> {
    let mut v: Vec<(u64, String)> = board()
        .classes
        .iter()
        .filter(|c| c.count.load(Relaxed) > 0)
        .map(|c| {
            let name: Vec<u8> = c.name.iter().map(|b| b.load(Relaxed)).take_while(|b| *b != 0).collect();
            (c.count.load(Relaxed), String::from_utf8_lossy(&name).into_owned())
        })
        .collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.0));
    let mut lines: Vec<String> = v.iter().take(30).map(|(n, name)| format!("# failures: {n} x {name}")).collect();
    if v.len() > 30 {
        lines.push(format!("# failures: ... and {} more classes", v.len() - 30));
    }
    lines
}

/// Counts one finished operation of kind `op` that took `ms`.
pub fn timed(op: usize, ms: u64) {
    let b = board();
    b.op_count[op.min(OP_KINDS - 1)].fetch_add(1, Relaxed);
    b.op_ms[op.min(OP_KINDS - 1)].fetch_add(ms, Relaxed);
}

/// The time line's body: `name=count/seconds` per operation kind that ran.
pub fn time_summary(names: &[&str]) -> String {
    let b = board();
    names
        .iter()
        .enumerate()
        .filter(|(i, _)| b.op_count[*i].load(Relaxed) > 0)
        .map(|(i, n)| format!("{n}={}/{:.1}s", b.op_count[i].load(Relaxed), b.op_ms[i].load(Relaxed) as f64 / 1000.0))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Name of an errno ("EINVAL"), or "OK" for 0.
pub fn errno_name(e: i32) -> String {
    if e == 0 {
        return "OK".into();
    }
    format!("{:?}", nix::errno::Errno::from_raw(e))
}

/// Whether `e` may come back from a seuss ioctl; `signalled`: the fuzzer interrupted this call on purpose.
pub fn documented(e: i32, signalled: bool) -> bool {
    DOCUMENTED.contains(&e) || (signalled && e == libc::EINTR)
}

/// The `errnos:` part of the summary: every errno seen, most frequent first.
pub fn errno_summary() -> String {
    let b = board();
    let mut v: Vec<(u64, i32)> =
        (1..MAX_ERRNO).map(|e| (b.errnos[e].load(Relaxed), e as i32)).filter(|(n, _)| *n > 0).collect();
    v.sort_by_key(|x| std::cmp::Reverse(x.0));
    v.iter().map(|(n, e)| format!("{}={n}", errno_name(*e))).collect::<Vec<_>>().join(" ")
}

/// The coverage line's body.
pub fn event_summary() -> String {
    let b = board();
    EVENT_NAMES.iter().enumerate().map(|(i, n)| format!("{n}={}", b.events[i].load(Relaxed))).collect::<Vec<_>>().join(" ")
}
