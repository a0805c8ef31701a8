// SPDX-License-Identifier: GPL-2.0
//! Counted references to tasks (the `kernel` crate's `ARef<Task>`), looked up by pid or pidfd, and the
//! checks the engine makes on them and on the calling task.

use core::ptr::NonNull;
use kernel::alloc::{flags::GFP_KERNEL, KVec};
use kernel::bindings;
use kernel::error::{code::*, Error, Result};
use kernel::task::Task;
use kernel::types::ARef;

/// A counted reference to a task.
#[derive(Clone)]
pub(crate) struct TaskRef(ARef<Task>);

impl TaskRef {
    /// The task with thread id `pid` in the caller's pid namespace.
    pub(crate) fn from_pid(pid: i32) -> Result<Self> {
        if pid <= 0 {
            return Err(ESRCH);
        }
        // SAFETY: find_get_pid takes a reference on the returned `struct pid` (or returns NULL).
        let p = unsafe { bindings::find_get_pid(pid) };
        Self::from_struct_pid(p)
    }

    /// The task a pidfd refers to.
    pub(crate) fn from_pidfd(fd: i32) -> Result<Self> {
        if fd < 0 {
            return Err(EBADF);
        }
        let mut flags: u32 = 0;
        // SAFETY: pidfd_get_pid returns a referenced pid or an ERR_PTR; `flags` is a valid out pointer.
        let p = kernel::error::from_err_ptr(unsafe { bindings::pidfd_get_pid(fd as u32, &mut flags) })?;
        Self::from_struct_pid(p)
    }

    fn from_struct_pid(p: *mut bindings::pid) -> Result<Self> {
        if p.is_null() {
            return Err(ESRCH);
        }
        // SAFETY: `p` is a referenced pid; get_pid_task returns a referenced task or NULL.
        let t = unsafe { bindings::get_pid_task(p, bindings::pid_type_PIDTYPE_PID) };
        // SAFETY: we own the reference on `p` taken by our caller's lookup.
        unsafe { bindings::put_pid(p) };
        let t = NonNull::new(t.cast::<Task>()).ok_or(ESRCH)?;
        // SAFETY: get_pid_task took the reference that the ARef now owns; `Task` is a transparent
        // wrapper of `task_struct`.
        Ok(TaskRef(unsafe { ARef::from_raw(t) }))
    }

    /// A reference to the calling task.
    pub(crate) fn current() -> Self {
        // SAFETY: current is valid while we run; `into()` takes a reference, so the result may outlive
        // this call.
        let t: ARef<Task> = unsafe { &*bindings::get_current().cast::<Task>() }.into();
        TaskRef(t)
    }

    /// The raw pointer, for the other `sys` wrappers.
    pub(crate) fn as_ptr(&self) -> *mut bindings::task_struct {
        (&*self.0 as *const Task).cast_mut().cast()
    }

    /// Whether this is the calling task.
    pub(crate) fn is_current(&self) -> bool {
        // SAFETY: get_current has no preconditions.
        self.as_ptr() == unsafe { bindings::get_current() }
    }

    /// Kernel threads and exiting tasks cannot be frozen or captured.
    pub(crate) fn is_kthread_or_exiting(&self) -> bool {
        // SAFETY: `flags` of a referenced task is always readable; a racy read is a hint only (the
        // module checks at load that bindgen's offset of `flags` is C's, see `layout_matches`).
        let f = unsafe { core::ptr::read_volatile(&(*self.as_ptr()).flags) };
        f & (bindings::PF_KTHREAD | bindings::PF_EXITING) != 0
    }

    /// Whether the task is its process's leader (its tid is the pid).
    pub(crate) fn is_group_leader(&self) -> bool {
        // SAFETY: the helper reads two pointers of a referenced task.
        unsafe { bindings::seuss_task_is_group_leader(self.as_ptr()) }
    }

    /// Whether this is the same task as `other`.
    pub(crate) fn same(&self, other: &TaskRef) -> bool {
        self.as_ptr() == other.as_ptr()
    }

    /// Whether the task is in 64-bit user mode (a hint for a task that runs: it can switch segments; the
    /// capture, in the task's own context, checks again). `Err(ESRCH)` when its stack is already gone.
    pub(crate) fn is_64bit(&self) -> Result<bool> {
        // SAFETY: referenced task; the helper pins its stack before reading the user frame on it.
        match unsafe { bindings::seuss_task_user_64bit(self.as_ptr()) } {
            r if r < 0 => Err(Error::from_errno(r)),
            r => Ok(r != 0),
        }
    }

    /// The task's exec generation (`self_exec_id`): it changes whenever the task execs.
    pub(crate) fn exec_id(&self) -> u64 {
        // SAFETY: referenced task; the helper reads one word.
        unsafe { bindings::seuss_task_self_exec_id(self.as_ptr()) }
    }

    /// The task's real uid in the initial user namespace.
    pub(crate) fn kuid(&self) -> u32 {
        // SAFETY: task_uid reads the task's RCU-protected cred inside the helper.
        unsafe { bindings::seuss_task_kuid(self.as_ptr()) }
    }

    /// Runs `f` if the caller may ptrace-attach to the task, holding the task's `exec_update_lock` for
    /// reading so that the task cannot exec into another image in between (the pattern of `mm_access()`
    /// and `perf_event_open`). `f` gets the task's exec generation under the lock.
    pub(crate) fn with_attach_access<R>(&self, f: impl FnOnce(u64) -> Result<R>) -> Result<R> {
        // SAFETY: the task (and so its signal_struct) is referenced; killable wait on its rwsem.
        if unsafe { bindings::seuss_exec_update_lock_read(self.as_ptr()) } != 0 {
            return Err(ERESTARTSYS);
        }
        // SAFETY: referenced task; ptrace_may_access takes task_lock itself.
        let ok = unsafe {
            bindings::ptrace_may_access(self.as_ptr(), bindings::SEUSS_PTRACE_MODE_ATTACH_REALCREDS)
        };
        let res = if ok { f(self.exec_id()) } else { Err(EPERM) };
        // SAFETY: we took the read lock above.
        unsafe { bindings::seuss_exec_update_unlock_read(self.as_ptr()) };
        res
    }

    /// Whether the caller may read the task's memory (ptrace read mode).
    pub(crate) fn may_read(&self) -> bool {
        // SAFETY: referenced task.
        unsafe { bindings::ptrace_may_access(self.as_ptr(), bindings::SEUSS_PTRACE_MODE_READ_REALCREDS) }
    }

    /// Sends SIGKILL.
    pub(crate) fn kill(&self) {
        // SAFETY: referenced task; send_sig is fine from process context.
        unsafe { bindings::send_sig(bindings::SIGKILL as i32, self.as_ptr(), 1) };
    }
}

/// Whether bindgen's `task_struct` layout is C's for the fields the kernel crate and this module read
/// through it (`flags` here, `pid` in `Task::pid`); checked once at module load, which fails otherwise.
/// Every other field mismatch is reported too (the module reaches those through C helpers).
pub(crate) fn layout_matches() -> bool {
    let rust = [
        core::mem::offset_of!(bindings::task_struct, flags),
        core::mem::offset_of!(bindings::task_struct, mm),
        core::mem::offset_of!(bindings::task_struct, pid),
        core::mem::offset_of!(bindings::task_struct, signal),
        core::mem::size_of::<bindings::task_struct>(),
    ];
    let mut ok = true;
    for (i, r) in rust.iter().enumerate() {
        // SAFETY: no preconditions.
        let c = unsafe { bindings::seuss_task_offset(i as i32) };
        if c != *r {
            kernel::pr_err!("task_struct layout: field {} is at {} in C but {} in bindgen's\n", i, c, r);
            // flags (0) and pid (2) are read through bindgen's layout.
            ok &= i != 0 && i != 2;
        }
    }
    ok
}

/// Whether the calling thread can be captured as one thread of its process: 64-bit syscall, no
/// io_uring, no other process on its mm, signal handlers shared only with its own threads.
pub(crate) fn current_can_be_captured() -> Result {
    // SAFETY: the helper only inspects current.
    if unsafe { bindings::seuss_current_capturable() } { Ok(()) } else { Err(crate::sys::eopnotsupp()) }
}

/// Counted references to every thread of `t`'s process, in the thread list's order (the group leader
/// first).
pub(crate) fn group_threads(t: &TaskRef) -> Result<KVec<TaskRef>> {
    let mut room = 16usize;
    loop {
        let mut raw: KVec<*mut bindings::task_struct> = KVec::from_elem(core::ptr::null_mut(), room, GFP_KERNEL)?;
        // Allocated before the helper takes references, so that none can be lost to a failed allocation.
        let mut out: KVec<TaskRef> = KVec::with_capacity(room, GFP_KERNEL)?;
        // SAFETY: `t` is referenced (its thread list is walked under RCU); `raw` has `room` slots; the
        // helper takes one reference per task it stores.
        let n = unsafe { bindings::seuss_group_threads(t.as_ptr(), raw.as_mut_ptr(), room as i32) }.max(0) as usize;
        for p in raw.iter().take(n.min(room)) {
            // SAFETY: the helper stored a non-null task and took the reference the ARef now owns; `Task`
            // is a transparent wrapper of `task_struct`.
            let r = TaskRef(unsafe { ARef::from_raw(NonNull::new_unchecked((*p).cast::<Task>())) });
            // Within the capacity reserved above, so it cannot fail (a failure would drop `r`).
            let _ = out.push(r, GFP_KERNEL);
        }
        if n <= room {
            return Ok(out);
        }
        // More threads than room: `out` drops its references; ask again with enough room.
        room = n + 16;
    }
}

/// Adds a thread to the caller's process (see patch 0002's `seuss_clone_thread`): before it is woken,
/// `setup(task, arg)` runs and must queue the task work that gives it its state. Returns its tid.
///
/// # Safety
/// `setup` must be safe to call with the new task and `arg`, and must not let the thread run user code
/// with the caller's frame (it queues a work that replaces the frame, or fails, which kills the thread).
pub(crate) unsafe fn clone_thread(
    setup: unsafe extern "C" fn(*mut bindings::task_struct, *mut core::ffi::c_void) -> core::ffi::c_int,
    arg: *mut core::ffi::c_void,
) -> Result<i32> {
    // SAFETY: the caller's contract; the function creates a thread of current only.
    let r = unsafe { bindings::seuss_clone_thread(Some(setup), arg) };
    if r < 0 { Err(Error::from_errno(r)) } else { Ok(r) }
}

/// Whether the calling process may take part in a deploy: what [`current_can_be_captured`] asks, and an
/// unshared fd table (a deploy closes the device's descriptors in it).
pub(crate) fn current_can_be_replaced() -> Result {
    // SAFETY: the helpers only inspect current.
    if unsafe { bindings::seuss_current_replaceable() && !bindings::seuss_current_files_shared() } {
        Ok(())
    } else {
        Err(crate::sys::eopnotsupp())
    }
}

/// The caller's fd table, as an identity only (what a file's `flush` receives as its owner when the
/// caller closes a descriptor).
pub(crate) fn current_files_id() -> usize {
    // SAFETY: the helper returns current->files without dereferencing it.
    unsafe { bindings::seuss_current_files() as usize }
}

/// Whether the caller is being ptraced.
pub(crate) fn current_is_traced() -> bool {
    // SAFETY: the helper reads current's ptrace word.
    unsafe { bindings::seuss_current_ptraced() }
}

/// The caller's uid in the initial user namespace.
pub(crate) fn current_kuid() -> u32 {
    // SAFETY: no preconditions.
    unsafe { bindings::seuss_current_kuid() }
}

/// Whether the caller has CAP_SYS_ADMIN.
pub(crate) fn current_is_admin() -> bool {
    // SAFETY: no preconditions.
    unsafe { bindings::capable(bindings::CAP_SYS_ADMIN as i32) }
}

/// The caller's pid as its own namespace sees it.
pub(crate) fn current_pid_vnr() -> i32 {
    // SAFETY: current is valid.
    unsafe { bindings::task_pid_vnr(bindings::get_current()) }
}

/// Whether a fatal signal is pending for the caller.
pub(crate) fn current_fatal_signal_pending() -> bool {
    // SAFETY: current is valid.
    unsafe { bindings::fatal_signal_pending(bindings::get_current()) != 0 }
}

/// Whether the caller is exiting (task work run from `do_exit`).
pub(crate) fn current_is_exiting() -> bool {
    // SAFETY: current's flags are ours to read (offset checked at load, see `layout_matches`).
    unsafe { (*bindings::get_current()).flags & bindings::PF_EXITING != 0 }
}

/// Nanoseconds of CLOCK_MONOTONIC.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bindings::ktime_get_ns() }
}
