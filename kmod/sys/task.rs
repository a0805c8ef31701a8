// SPDX-License-Identifier: GPL-2.0
//! Counted references to tasks, looked up by pid or pidfd, and the checks the engine makes on them.

use core::ptr::NonNull;
use kernel::bindings;
use kernel::error::{code::*, Error, Result};

/// A counted reference to a `task_struct` (`get_task_struct`/`put_task_struct`).
///
/// # Invariants
/// `self.0` points to a task whose reference count this value owns one of.
pub(crate) struct TaskRef(NonNull<bindings::task_struct>);

// SAFETY: a task reference can be dropped and used from any thread; the fields read are read racily on
// purpose and only as hints (flags) or under the kernel's own locking (the called functions).
unsafe impl Send for TaskRef {}
// SAFETY: see `Send`; `&TaskRef` only allows the same operations.
unsafe impl Sync for TaskRef {}

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
        let p = unsafe { bindings::pidfd_get_pid(fd as u32, &mut flags) };
        if (p as isize) < 0 && (p as isize) >= -4095 {
            return Err(Error::from_errno(p as isize as i32));
        }
        Self::from_struct_pid(p)
    }

    fn from_struct_pid(p: *mut bindings::pid) -> Result<Self> {
        if p.is_null() {
            return Err(ESRCH);
        }
        // SAFETY: `p` is a referenced pid; get_pid_task returns a referenced task or NULL.
        let t = unsafe { bindings::get_pid_task(p, bindings::pid_type_PIDTYPE_PID) };
        // SAFETY: we own the reference on `p` taken above.
        unsafe { bindings::put_pid(p) };
        NonNull::new(t).map(TaskRef).ok_or(ESRCH)
    }

    /// A reference to the calling task.
    pub(crate) fn current() -> Self {
        // SAFETY: current is always a valid task; get_task_struct takes a reference.
        unsafe {
            let t = bindings::get_current();
            bindings::get_task_struct(t);
            TaskRef(NonNull::new_unchecked(t))
        }
    }

    /// The raw pointer, for the other `sys` wrappers.
    pub(crate) fn as_ptr(&self) -> *mut bindings::task_struct {
        self.0.as_ptr()
    }

    /// Whether this is the calling task.
    pub(crate) fn is_current(&self) -> bool {
        // SAFETY: get_current has no preconditions.
        self.as_ptr() == unsafe { bindings::get_current() }
    }

    /// Kernel threads and exiting tasks cannot be frozen or captured.
    pub(crate) fn is_kthread_or_exiting(&self) -> bool {
        // SAFETY: `flags` of a referenced task is always readable; a racy read is a hint only. (`flags` is
        // the one task_struct field whose bindgen offset matches C; see sys/mod.rs.)
        let f = unsafe { core::ptr::read_volatile(&(*self.as_ptr()).flags) };
        f & (bindings::PF_KTHREAD | bindings::PF_EXITING) != 0
    }

    /// Whether the task has no other threads.
    pub(crate) fn is_single_threaded(&self) -> bool {
        // SAFETY: thread_group_empty only reads list heads of a referenced task.
        unsafe { bindings::thread_group_empty(self.as_ptr()) }
    }

    /// Whether the task's user context is 64-bit (not ia32, not x32 in compat mode).
    pub(crate) fn is_64bit(&self) -> bool {
        // SAFETY: task_pt_regs of a referenced user task points into its stack, which lives as long as it.
        unsafe { bindings::user_64bit_mode(bindings::task_pt_regs(self.as_ptr())) }
    }

    /// The task's real uid in the initial user namespace.
    pub(crate) fn kuid(&self) -> u32 {
        // SAFETY: task_uid reads the task's RCU-protected cred inside the helper.
        unsafe { bindings::seuss_task_kuid(self.as_ptr()) }
    }

    /// Runs `f` if the caller may ptrace-attach to the task, holding the task's `exec_update_lock` for
    /// reading so that the task cannot exec into a more privileged image in between (the pattern of
    /// `mm_access()` and `perf_event_open`).
    pub(crate) fn with_attach_access<R>(&self, f: impl FnOnce() -> Result<R>) -> Result<R> {
        // SAFETY: the task (and so its signal_struct) is referenced; killable wait on its rwsem.
        let r = unsafe { bindings::seuss_exec_update_lock_read(self.as_ptr()) };
        if r != 0 {
            return Err(EINTR);
        }
        // SAFETY: referenced task; ptrace_may_access takes task_lock itself.
        let ok = unsafe {
            bindings::ptrace_may_access(self.as_ptr(), bindings::SEUSS_PTRACE_MODE_ATTACH_REALCREDS)
        };
        let res = if ok { f() } else { Err(EPERM) };
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

impl Clone for TaskRef {
    fn clone(&self) -> Self {
        // SAFETY: we hold a reference, so the task is valid; take another.
        unsafe { bindings::get_task_struct(self.as_ptr()) };
        TaskRef(self.0)
    }
}

impl Drop for TaskRef {
    fn drop(&mut self) {
        // SAFETY: by the type invariant we own one reference.
        unsafe { bindings::put_task_struct(self.as_ptr()) };
    }
}

/// Whether the calling process may take part in a deploy: single-threaded, 64-bit syscall, one user of
/// its mm, no io_uring, unshared signal handlers.
pub(crate) fn current_can_be_replaced() -> Result {
    // SAFETY: the helper only inspects current.
    if unsafe { bindings::seuss_current_replaceable() } { Ok(()) } else { Err(crate::sys::eopnotsupp()) }
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
    // SAFETY: current's flags are ours to read (offset verified, see sys/mod.rs).
    unsafe { (*bindings::get_current()).flags & bindings::PF_EXITING != 0 }
}

/// Nanoseconds of CLOCK_MONOTONIC.
pub(crate) fn now_ns() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bindings::ktime_get_ns() }
}
