// SPDX-License-Identifier: GPL-2.0
//! Freezing a task at a breakpoint, a watchpoint or its next return to user mode, and parking it there.
//!
//! Everything that touches the target's user state runs in the target's own context: the breakpoint
//! handler (IRQs off) only queues a task work; the work parks the task in a killable, freezable sleep and
//! serves commands (CAPTURE, RESUME, KILL) that the controller posts through [`Freeze`]. SIGKILL ends the
//! park at once; other signals stay pending until the task is released.
//!
//! References: the session holds one `Arc<Freeze>`; a registered breakpoint's context holds one (dropped
//! after `unregister_hw_breakpoint`, which waits for running handlers); a queued task work holds one plus
//! a module reference (dropped as the work's last act), so the callback code cannot be unloaded under it.
//! Lock order: `ctl` (serialises controller commands) is taken before `bp`; the target never takes either.

use core::pin::Pin;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use kernel::alloc::{flags::GFP_KERNEL, KBox};
use kernel::bindings;
use kernel::error::{code::*, Error, Result};
use kernel::init::InPlaceInit;
use kernel::new_mutex;
use kernel::sync::{Arc, ArcBorrow, Mutex};

use crate::sys::bp::{self, BpKind, Breakpoint, Notify, TaskWork};
use crate::sys::task::{self, TaskRef};
use crate::sys::wait::WaitQueue;

pub(crate) const ARMED: i32 = bindings::SEUSS_STATE_ARMED as i32;
pub(crate) const FROZEN: i32 = bindings::SEUSS_STATE_FROZEN as i32;
pub(crate) const RESUMED: i32 = bindings::SEUSS_STATE_RESUMED as i32;
pub(crate) const DEAD: i32 = bindings::SEUSS_STATE_DEAD as i32;

const CMD_CAPTURE: i32 = 1;
const CMD_RESUME: i32 = 2;
const CMD_KILL: i32 = 3;

/// Where to freeze.
#[derive(Clone, Copy)]
pub(crate) enum Point {
    Breakpoint(BpKind, u64),
    Now,
}

/// One armed or frozen task.
#[repr(C)]
pub(crate) struct Freeze {
    work: TaskWork,
    wq: WaitQueue,
    pub(crate) task: TaskRef,
    state: AtomicI32,
    cmd: AtomicI32,
    fired: AtomicBool,
    ip: AtomicU64,
    capture_done: AtomicI32,
    capture_result: AtomicI64,
    ctl: Pin<KBox<Mutex<()>>>,
    bp: Pin<KBox<Mutex<Option<Breakpoint>>>>,
}

impl Freeze {
    /// Arms `point` on `task`. The caller has checked permission and uniqueness.
    pub(crate) fn arm(task: TaskRef, point: Point) -> Result<Arc<Freeze>> {
        let f = Arc::new(
            Freeze {
                work: TaskWork::new(),
                wq: WaitQueue::new(),
                task,
                state: AtomicI32::new(ARMED),
                cmd: AtomicI32::new(0),
                fired: AtomicBool::new(false),
                ip: AtomicU64::new(0),
                capture_done: AtomicI32::new(0),
                capture_result: AtomicI64::new(0),
                ctl: KBox::pin_init(new_mutex!((), "seuss:freeze_ctl"), GFP_KERNEL)?,
                bp: KBox::pin_init(new_mutex!(None, "seuss:freeze_bp"), GFP_KERNEL)?,
            },
            GFP_KERNEL,
        )?;
        // SAFETY: the Arc gives the queue its final address; initialised once, before any use.
        unsafe { f.wq.init() };
        match point {
            Point::Breakpoint(kind, addr) => {
                let ctx = Arc::into_raw(f.clone()) as *mut core::ffi::c_void;
                // SAFETY: `ctx` is an Arc reference released only after the breakpoint is unregistered
                // (in `disarm`); `on_hit` obeys handler rules.
                match unsafe { Breakpoint::register(&f.task, kind, addr, on_hit, ctx) } {
                    Ok(b) => *f.bp.lock() = Some(b),
                    Err(e) => {
                        // SAFETY: reclaim the reference we leaked into `ctx`; the breakpoint never existed.
                        drop(unsafe { Arc::from_raw(ctx as *const Freeze) });
                        return Err(e);
                    }
                }
            }
            Point::Now => {
                f.fired.store(true, Ordering::SeqCst);
                f.queue_work(Notify::Signal)?;
            }
        }
        Ok(f)
    }

    /// Hands one Arc reference and one module reference to a task work on the target.
    fn queue_work(self: &Arc<Self>, how: Notify) -> Result {
        let raw = Arc::into_raw(self.clone());
        bp::module_get();
        // SAFETY: `work` lives inside the Arc we just leaked a reference of, so it stays put until the
        // callback reclaims that reference; it is queued at most once (guarded by `fired`).
        let r = unsafe { self.work.queue(self.task.as_ptr(), on_work, how) };
        if r.is_err() {
            // SAFETY: the work was not queued: reclaim both references.
            drop(unsafe { Arc::from_raw(raw) });
            bp::module_put();
            self.set_state(DEAD);
        }
        r
    }

    fn set_state(&self, s: i32) {
        self.state.store(s, Ordering::SeqCst);
        self.wq.wake_all();
    }

    /// Current state; an armed task that has exited reports DEAD.
    pub(crate) fn state(&self) -> (i32, u64) {
        let s = self.state.load(Ordering::SeqCst);
        if s == ARMED && !self.fired.load(Ordering::SeqCst) && self.task.is_kthread_or_exiting() {
            return (DEAD, 0);
        }
        (s, self.ip.load(Ordering::SeqCst))
    }

    /// Waits up to `ms` for the freeze to leave ARMED.
    pub(crate) fn wait(&self, ms: u32) -> Result<(i32, u64)> {
        if ms > 0 && self.state().0 == ARMED {
            let changed = self.wq.wait_change_timeout(&self.state, ARMED, ms)?;
            if !changed && self.state().0 == ARMED {
                return Err(crate::sys::etimedout());
            }
        }
        Ok(self.state())
    }

    /// Unregisters the breakpoint (no handler runs afterwards) and drops its context reference.
    fn disarm(self: &Arc<Self>) {
        let b = self.bp.lock().take();
        if let Some(b) = b {
            drop(b);
            // SAFETY: the reference leaked into the breakpoint's context in `arm`; the breakpoint is gone.
            drop(unsafe { Arc::from_raw(Arc::as_ptr_compat(self)) });
        }
    }

    /// Asks the parked task to capture itself; returns the new snapshot id.
    pub(crate) fn capture(self: &Arc<Self>) -> Result<u64> {
        let _g = self.ctl.lock();
        if self.state().0 != FROZEN {
            return Err(if self.state().0 == DEAD { ESRCH } else { EAGAIN });
        }
        self.disarm();
        self.capture_done.store(0, Ordering::SeqCst);
        self.capture_result.store(0, Ordering::SeqCst);
        self.cmd.store(CMD_CAPTURE, Ordering::SeqCst);
        self.wq.wake_all();
        self.wq.wait_nonzero_killable(&self.capture_done)?;
        let r = self.capture_result.load(Ordering::SeqCst);
        if r < 0 { Err(Error::from_errno(r as i32)) } else { Ok(r as u64) }
    }

    /// Lets the task run on, or kills it. The freeze is finished afterwards.
    pub(crate) fn release(self: &Arc<Self>, kill: bool) {
        let _g = self.ctl.lock();
        self.disarm();
        self.cmd.store(if kill { CMD_KILL } else { CMD_RESUME }, Ordering::SeqCst);
        self.wq.wake_all();
        if !self.fired.load(Ordering::SeqCst) {
            // No breakpoint can fire any more and no work was queued.
            if kill {
                self.task.kill();
            }
            let _ = self.state.compare_exchange(ARMED, if kill { DEAD } else { RESUMED }, Ordering::SeqCst, Ordering::SeqCst);
            self.wq.wake_all();
        }
    }

    /// The park loop, in the target's context.
    fn park(&self) {
        if task::current_is_exiting() {
            self.finish(DEAD);
            return;
        }
        // SAFETY: reading current's own user frame.
        self.ip.store(unsafe { (*bindings::task_pt_regs(bp::current_task())).ip } as u64, Ordering::SeqCst);
        self.set_state(FROZEN);
        let end = loop {
            if self.wq.wait_nonzero_killable(&self.cmd).is_err() {
                break DEAD;
            }
            match self.cmd.swap(0, Ordering::SeqCst) {
                CMD_CAPTURE => {
                    let r = match crate::capture::capture_current() {
                        Ok(id) => id as i64,
                        Err(e) => e.to_errno() as i64,
                    };
                    self.capture_result.store(r, Ordering::SeqCst);
                    self.capture_done.store(1, Ordering::SeqCst);
                    self.wq.wake_all();
                }
                CMD_RESUME => break RESUMED,
                CMD_KILL => {
                    self.task.kill();
                    break DEAD;
                }
                _ => {}
            }
        };
        self.finish(end);
    }

    fn finish(&self, end: i32) {
        if self.capture_done.load(Ordering::SeqCst) == 0 && self.cmd.load(Ordering::SeqCst) == CMD_CAPTURE {
            self.capture_result.store(ESRCH.to_errno() as i64, Ordering::SeqCst);
            self.capture_done.store(1, Ordering::SeqCst);
        }
        self.set_state(end);
    }
}

/// `Arc::as_ptr` is missing in 6.12's kernel crate: the data pointer of an Arc without touching counts.
trait AsPtrCompat<T> {
    fn as_ptr_compat(this: &Self) -> *const T;
}
impl<T> AsPtrCompat<T> for Arc<T> {
    fn as_ptr_compat(this: &Self) -> *const T {
        &**this as *const T
    }
}

/// Breakpoint overflow handler: target context, IRQs off. Queues the park work once.
unsafe extern "C" fn on_hit(ev: *mut bindings::perf_event, _d: *mut bindings::perf_sample_data, _r: *mut bindings::pt_regs) {
    // SAFETY: the context is the Freeze reference leaked in `arm`, alive until unregistration, which waits
    // for this handler.
    let f: ArcBorrow<'_, Freeze> = unsafe { ArcBorrow::from_raw(bp::handler_context(ev) as *const Freeze) };
    if f.task.as_ptr() != bp::current_task() || f.fired.swap(true, Ordering::SeqCst) {
        return;
    }
    let f: Arc<Freeze> = f.into();
    let _ = f.queue_work(Notify::SignalNoIpi);
}

/// The task work: reclaims the references `queue_work` handed over and parks.
unsafe extern "C" fn on_work(head: *mut bindings::callback_head) {
    let off = core::mem::offset_of!(Freeze, work);
    // SAFETY: `head` is the `work` field of a Freeze whose Arc reference was leaked by `queue_work`.
    let f = unsafe { Arc::from_raw((head as *const u8).sub(off) as *const Freeze) };
    f.park();
    drop(f);
    bp::module_put();
}
