//! A worker process: opens the devices its threads share, installs the signal handler the interruption
//! cases use, runs `--threads` actors and, after they finish, closes what it shared. Its main thread
//! only waits, so the process always has more than one thread: a DEPLOY made from it must be refused.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;

use super::actor::{Actor, DeployInfo};
use crate::Cfg;

/// What the actors of one worker process share.
pub struct ProcShared {
    /// Device descriptors any thread may use, close and reopen at any time (-1 while closed).
    pub slots: [AtomicI32; 2],
    /// Snapshots the threads offer one another for release and deploy races.
    pub board: Mutex<Vec<(u64, DeployInfo)>>,
    /// An open /dev/null (stdio of stubs; a descriptor that is not the device).
    pub null_fd: i32,
}

extern "C" fn on_usr1(_: libc::c_int) {}

/// SIGUSR1 interrupts system calls (no SA_RESTART): the interruption cases send it to one thread.
fn install_interrupt_handler() {
    // SAFETY: installing a handler that does nothing, for the whole process.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_usr1 as *const () as usize;
        sa.sa_flags = 0;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
    }
}

/// Opens the device and gives up ownership of the descriptor (-1 on failure).
pub fn open_raw() -> i32 {
    // SAFETY: opening the device node; the caller owns the descriptor.
    unsafe { libc::open(c"/dev/seuss".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) }
}

/// Runs worker process `proc_idx`; returns its exit status.
pub fn run(proc_idx: usize, cfg: &Cfg) -> i32 {
    install_interrupt_handler();
    while super::report::board().started.load(Ordering::SeqCst) == 0 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    // SAFETY: opening /dev/null.
    let null_fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    let sh = ProcShared { slots: [AtomicI32::new(open_raw()), AtomicI32::new(open_raw())], board: Mutex::new(Vec::new()), null_fd };
    std::thread::scope(|s| {
        for t in 0..cfg.threads {
            let sh = &sh;
            std::thread::Builder::new()
                .name(format!("p{proc_idx}t{t}"))
                .spawn_scoped(s, move || Actor::new(sh, cfg, proc_idx, t).run())
                .expect("spawn actor thread");
        }
    });
    for s in &sh.slots {
        let fd = s.swap(-1, Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: closing a slot descriptor nobody uses any more (all actors finished).
            unsafe { libc::close(fd) };
        }
    }
    0
}
