// SPDX-License-Identifier: GPL-2.0
//! Hardware breakpoints on a user task (perf's `register_user_hw_breakpoint`), task work queued on a task,
//! and module references that keep our callback code loaded while a callback may still run.

use core::ptr::NonNull;
use kernel::bindings;
use kernel::error::{code::*, Error, Result};
use kernel::types::Opaque;

use super::task::TaskRef;

/// What a breakpoint watches.
#[derive(Clone, Copy)]
pub(crate) enum BpKind {
    /// Instruction fetch at the address (fault: stops before it runs).
    Exec,
    /// Data write of 1, 2, 4 or 8 bytes (trap: stops after the store).
    Write(u32),
}

/// The overflow callback: called in the target's context with IRQs off when the breakpoint hits.
pub(crate) type BpHandler = unsafe extern "C" fn(*mut bindings::perf_event, *mut bindings::perf_sample_data, *mut bindings::pt_regs);

/// A registered user breakpoint; unregistered (which waits for running handlers) on drop.
pub(crate) struct Breakpoint(NonNull<bindings::perf_event>);

// SAFETY: perf events are refcounted kernel objects usable from any process context.
unsafe impl Send for Breakpoint {}
// SAFETY: no shared-reference methods mutate.
unsafe impl Sync for Breakpoint {}

impl Breakpoint {
    /// Registers a pinned, user-only breakpoint on `task` that is removed if the task execs.
    ///
    /// # Safety
    /// `ctx` must stay valid until the returned value is dropped; `handler` must obey overflow-handler
    /// rules (no sleeping, no allocation).
    pub(crate) unsafe fn register(task: &TaskRef, kind: BpKind, addr: u64, handler: BpHandler, ctx: *mut core::ffi::c_void) -> Result<Self> {
        // SAFETY: perf_event_attr is plain data; hw_breakpoint_init fills the breakpoint defaults.
        let mut attr: bindings::perf_event_attr = unsafe { core::mem::zeroed() };
        // SAFETY: `attr` is a valid attr to initialise.
        unsafe { bindings::hw_breakpoint_init(&mut attr) };
        attr.__bindgen_anon_3.bp_addr = addr;
        match kind {
            BpKind::Exec => {
                attr.bp_type = bindings::HW_BREAKPOINT_X;
                attr.__bindgen_anon_4.bp_len = core::mem::size_of::<usize>() as u64;
            }
            BpKind::Write(len) => {
                attr.bp_type = bindings::HW_BREAKPOINT_W;
                attr.__bindgen_anon_4.bp_len = len as u64;
            }
        }
        attr.set_exclude_kernel(1);
        attr.set_exclude_hv(1);
        attr.set_remove_on_exec(1);
        attr.set_disabled(0);
        // SAFETY: attr is fully set up; the caller vouches for `ctx` and `handler`.
        let ev = unsafe { bindings::register_user_hw_breakpoint(&mut attr, Some(handler), ctx, task.as_ptr()) };
        let v = ev as isize;
        if (-4095..0).contains(&v) {
            return Err(Error::from_errno(v as i32));
        }
        NonNull::new(ev).map(Breakpoint).ok_or(EINVAL)
    }
}

impl Drop for Breakpoint {
    fn drop(&mut self) {
        // SAFETY: we registered it; unregistering sleeps, and drops run in process context.
        unsafe { bindings::unregister_hw_breakpoint(self.0.as_ptr()) };
    }
}

/// The context pointer given at registration.
///
/// # Safety
/// `ev` must be the event passed to an overflow handler.
pub(crate) unsafe fn handler_context(ev: *mut bindings::perf_event) -> *mut core::ffi::c_void {
    // SAFETY: the caller passes a live event.
    unsafe { bindings::seuss_bp_context(ev) }
}

/// A `callback_head` to queue with `task_work_add`, embedded in a pinned object.
pub(crate) struct TaskWork(Opaque<bindings::callback_head>);

// SAFETY: the head is only touched by task_work_add and the callback.
unsafe impl Send for TaskWork {}
// SAFETY: as above.
unsafe impl Sync for TaskWork {}

/// How to notify the task of queued work.
pub(crate) enum Notify {
    /// Run before signal delivery at the next return to user mode, no IPI (from the task itself).
    SignalNoIpi,
    /// Like a signal: interrupts an interruptible sleep so the work runs promptly.
    Signal,
}

impl TaskWork {
    /// An unqueued head.
    pub(crate) const fn new() -> Self {
        Self(Opaque::uninit())
    }

    /// Queues `func` on `task`. Callable with IRQs off.
    ///
    /// # Safety
    /// `self` must stay at its address and valid until `func` has run; it must not be queued twice.
    pub(crate) unsafe fn queue(&self, task: *mut bindings::task_struct, func: unsafe extern "C" fn(*mut bindings::callback_head), how: Notify) -> Result {
        let head = self.0.get();
        // SAFETY: `head` is ours; the caller guarantees it is not queued.
        unsafe {
            (*head).next = core::ptr::null_mut();
            (*head).func = Some(func);
        }
        let mode = match how {
            Notify::SignalNoIpi => bindings::task_work_notify_mode_TWA_SIGNAL_NO_IPI,
            Notify::Signal => bindings::task_work_notify_mode_TWA_SIGNAL,
        };
        // SAFETY: `task` is a valid task (caller holds a reference or it is current); head is valid.
        let r = unsafe { bindings::task_work_add(task, head, mode) };
        if r != 0 { Err(ESRCH) } else { Ok(()) }
    }

}

/// The calling task.
pub(crate) fn current_task() -> *mut bindings::task_struct {
    // SAFETY: no preconditions.
    unsafe { bindings::get_current() }
}

/// Takes a reference on this module (callable with IRQs off); pair with [`module_put`].
pub(crate) fn module_get() {
    // SAFETY: THIS_MODULE is live while our code runs.
    unsafe { bindings::__module_get(crate::THIS_MODULE.as_ptr()) };
}

/// Drops a reference taken by [`module_get`].
pub(crate) fn module_put() {
    // SAFETY: paired with module_get.
    unsafe { bindings::module_put(crate::THIS_MODULE.as_ptr()) };
}
