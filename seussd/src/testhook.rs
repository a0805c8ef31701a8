//! Crash points for the VM tests (`tests/vm/run.sh`, section `crash`): with `SEUSSD_TEST_HOOK=POINT` or
//! `POINT@SUBJECT` in its environment, seussd stops or kills itself at that point of the first capture or
//! deploy that reaches it (of `SUBJECT` only, if given: a function name, or `runtime` for the runtime
//! snapshot), so a test can `kill -9` it there deterministically instead of guessing with a sleep. Unset
//! (always, outside tests) every check is one load of a cached `None`.
//!
//! | point | what happens |
//! |---|---|
//! | `capture-before` | the task is frozen at its doorbell, CAPTURE not issued: log, then this task waits forever |
//! | `capture-during` | SIGKILL of seussd from a watcher thread once the CAPTURE ioctl is blocked in the kernel |
//! | `capture-after` | CAPTURE returned a snapshot id, not yet recorded nor in the index: log, wait forever |
//! | `deploy-sent` | the stub has its deploy command, its ready line not read yet: log, wait forever |
//! | `deploy-during` | SIGKILL of seussd right after the stub was sent its deploy command (the stub deploys while seussd's death reaches it) |
//! | `record-saved` | SIGKILL of seussd right after the activation-record writer committed a batch holding a record of `SUBJECT` (`saver.rs`) |
//!
//! "Wait forever" stops only the task at the point (the rest of seussd runs on); the test waits for the log
//! line `test hook POINT reached` and kills seussd. The killing points log `test hook POINT: SIGKILL ...`
//! first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

struct Hook {
    point: String,
    subject: Option<String>,
    fired: AtomicBool,
}

fn hook() -> Option<&'static Hook> {
    static HOOK: OnceLock<Option<Hook>> = OnceLock::new();
    HOOK.get_or_init(|| {
        let v = std::env::var("SEUSSD_TEST_HOOK").ok().filter(|v| !v.is_empty())?;
        let (point, subject) = match v.split_once('@') {
            Some((p, s)) => (p.to_string(), Some(s.to_string())),
            None => (v, None),
        };
        tracing::warn!(
            "SEUSSD_TEST_HOOK={point}{}: this seussd will stop or kill itself on purpose (tests only)",
            subject.as_deref().map(|s| format!("@{s}")).unwrap_or_default()
        );
        Some(Hook { point, subject, fired: AtomicBool::new(false) })
    })
    .as_ref()
}

/// True (once per process) when the hook names `point` and `subject` matches.
pub(crate) fn fires(point: &str, subject: &str) -> bool {
    let Some(h) = hook() else { return false };
    h.point == point
        && h.subject.as_deref().is_none_or(|s| s == subject)
        && !h.fired.swap(true, Ordering::SeqCst)
}

/// The stopping point this process has reached, if any (for in-process tests, which cannot read the log).
static REACHED: OnceLock<String> = OnceLock::new();

/// The point a [`stop`] has reached in this process, once it has.
pub fn reached() -> Option<&'static str> {
    REACHED.get().map(String::as_str)
}

/// Logs that `point` was reached, then never returns (the test kills seussd).
pub(crate) async fn stop(point: &str, subject: &str) -> ! {
    let _ = REACHED.set(point.to_string());
    tracing::warn!("test hook {point} reached ({subject}): waiting to be killed");
    match std::future::pending::<std::convert::Infallible>().await {}
}

/// SIGKILLs seussd now.
pub(crate) fn kill_now(point: &str, subject: &str) -> ! {
    tracing::warn!("test hook {point} ({subject}): SIGKILL of seussd now");
    // SAFETY: kill(2) on our own pid.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    loop {
        std::thread::park(); // the signal ends the process as this thread returns to user mode
    }
}

/// Called on the thread about to enter a blocking ioctl: a watcher thread SIGKILLs seussd once this thread
/// is blocked in system call `nr` (`/proc/self/task/TID/syscall` shows the number only while the thread
/// sleeps in the kernel). Call [`returned`] right after the call: if the watcher missed it, that kills.
pub(crate) fn kill_inside_syscall(point: &str, subject: &str, nr: i64) {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    tracing::warn!("test hook {point} ({subject}): SIGKILL of seussd once thread {tid} blocks in syscall {nr}");
    let path = format!("/proc/self/task/{tid}/syscall");
    let prefix = format!("{nr} ");
    std::thread::spawn(move || loop {
        if std::fs::read_to_string(&path).is_ok_and(|s| s.starts_with(&prefix)) {
            eprintln!("test hook: SIGKILL inside the ioctl");
            // SAFETY: kill(2) on our own pid.
            unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        }
        std::thread::yield_now();
    });
}

/// After a call watched by [`kill_inside_syscall`] returned (the watcher did not see it blocked): SIGKILL
/// now, before seussd acts on the result.
pub(crate) fn returned() -> ! {
    eprintln!("test hook: SIGKILL after the ioctl returned (the watcher missed it)");
    // SAFETY: kill(2) on our own pid.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    loop {
        std::thread::park(); // the signal ends the process as this thread returns to user mode
    }
}
