// SPDX-License-Identifier: GPL-2.0
//! Hardware breakpoints on a user task (perf's `register_user_hw_breakpoint`) and task works of module code
//! queued on a task (kept loaded, through a kernel-side trampoline, until the work has run).

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

/// A task work of module code (`struct seuss_module_work`), embedded in a pinned object. It is queued
/// through the kernel-side trampoline of patch 0004, which holds a module reference until the callback
/// has returned and drops it from kernel text: module code never runs after its own `module_put`.
pub(crate) struct ModuleWork(Opaque<bindings::seuss_module_work>);

// SAFETY: the work is only touched by task_work_add, the trampoline and the callback.
unsafe impl Send for ModuleWork {}
// SAFETY: as above.
unsafe impl Sync for ModuleWork {}

/// How to notify the task of queued work.
pub(crate) enum Notify {
    /// Run at the next return to user mode, before signal delivery, no IPI (queued by the task itself).
    SignalNoIpi,
    /// Like a signal: interrupts an interruptible sleep so the work runs promptly.
    Signal,
}

/// A callback for [`ModuleWork::queue`]: gets the work's address.
pub(crate) type WorkFn = unsafe extern "C" fn(*mut bindings::seuss_module_work);

impl ModuleWork {
    /// An unqueued work.
    pub(crate) const fn new() -> Self {
        Self(Opaque::uninit())
    }

    /// Queues `func` on `task`. Callable with IRQs off. `Err(ESRCH)` if the task no longer runs works.
    ///
    /// # Safety
    /// `self` must stay at its address and valid until `func` has run (or this fails); it must not be
    /// queued twice at once.
    pub(crate) unsafe fn queue(&self, task: *mut bindings::task_struct, func: WorkFn, how: Notify) -> Result {
        let w = self.0.get();
        // SAFETY: `w` is ours and not queued (caller's guarantee); THIS_MODULE is live while we run.
        unsafe {
            (*w).func = Some(func);
            (*w).owner = crate::THIS_MODULE.as_ptr();
        }
        let mode = match how {
            Notify::SignalNoIpi => bindings::task_work_notify_mode_TWA_SIGNAL_NO_IPI,
            Notify::Signal => bindings::task_work_notify_mode_TWA_SIGNAL,
        };
        // SAFETY: `task` is a valid task (the caller holds a reference or it is current); `w` is valid
        // and set up; the helper takes the module reference before queueing.
        let r = unsafe { bindings::seuss_module_work_add(task, w, mode) };
        if r != 0 { Err(ESRCH) } else { Ok(()) }
    }
}

/// The calling task.
pub(crate) fn current_task() -> *mut bindings::task_struct {
    // SAFETY: no preconditions.
    unsafe { bindings::get_current() }
}
