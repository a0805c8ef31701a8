// SPDX-License-Identifier: GPL-2.0
//! The only place with `unsafe` FFI: thin wrappers over the kernel's C APIs, each file one concern, with
//! safe types on top. Code outside `sys` never touches `kernel::bindings` directly.
//!
//! Lock order (outermost first), where more than one lock is ever held:
//! 1. `signal->exec_update_lock` (read) — held only while checking ptrace access and registering a
//!    breakpoint in [`task::TaskRef::with_attach_access`];
//! 2. `task_lock` — taken inside `ptrace_may_access`.
//!
//! mm locks: the mmap locks of two address spaces are never held together (`mm::share_unchanged_with`
//! has the kernel take the parent snapshot's for a batch of lookups, drop it, then take the caller's);
//! under an mmap lock the kernel's own order applies (folio lock, trylocked, then the PTE lock).
//! Struct layouts: the module reads `task_struct` fields only through the C helpers of the kernel patch
//! (`seuss_task_mm`, `seuss_task_extra_*`, ...), except `flags`; at load it compares bindgen's offsets of
//! `flags`, `mm`, `pid`, `signal` and the size with C's (`task::layout_matches`, helper
//! `seuss_task_offset`) and refuses to load if `flags` or `pid` (which the `kernel` crate's `Task::pid`
//! reads) differ. The other structs used directly (`pt_regs`, `perf_event_attr`, `mm_walk`,
//! `vm_area_struct`, `file`, `miscdevice`, `file_operations`, `kernel_param`, `seuss_module_work`) are
//! uapi-stable or were checked.
//!
//! The engine's own mutexes (registry snapshots, registry instances, a session's freezes, the armed set,
//! a freeze's breakpoint slot, a freeze's follower list) are leaves among themselves: none is held while
//! another is taken, while sleeping on a freeze, or across `dup_mm`/mm swaps. Kernel locks that nest
//! inside them: ARM takes the caller's fd table `file_lock` (in `iterate_fd`,
//! [`miscdev::OpenFile::installed_in_current`]) under its session's freezes mutex, and the kernel never
//! calls the module with `file_lock` held; the leader of a freeze queues its followers' park works
//! (`task_work_add` with TWA_SIGNAL: the target's `pi_lock` and runqueue lock, for the wake-up) under
//! the follower list. Spinlocks: a freeze's state spinlock is taken with none of them held, and under it
//! only wake-ups happen (its condvar's and its park queue's internal locks nest inside it); a follower's
//! slot spinlock is a leaf, taken alone or under the follower list (the leader reading the slots), and
//! dropped before the follower wakes the leader.

pub(crate) mod bp;
pub(crate) mod cpu;
pub(crate) mod miscdev;
pub(crate) mod mm;
pub(crate) mod param;
pub(crate) mod task;
pub(crate) mod user;
pub(crate) mod vec;
pub(crate) mod wait;

use kernel::error::Error;

/// `EOPNOTSUPP` (6.12's `kernel::error::code` lacks it): what the task holds cannot be captured.
pub(crate) fn eopnotsupp() -> Error {
    Error::from_errno(-(kernel::bindings::EOPNOTSUPP as i32))
}

/// `ETIMEDOUT` (missing from 6.12's `kernel::error::code`).
pub(crate) fn etimedout() -> Error {
    Error::from_errno(-(kernel::bindings::ETIMEDOUT as i32))
}

