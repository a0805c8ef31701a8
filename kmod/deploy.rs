// SPDX-License-Identifier: GPL-2.0
//! DEPLOY, run in the stub's ioctl: replace the caller's address space with a copy-on-write child of a
//! snapshot, give it the snapshot's registers and per-task state, close the caller's descriptors of the
//! device, and return into the saved context. The caller keeps its pid, credentials, other files, cgroup
//! and namespaces.
//!
//! Everything that can fail for a reason the caller could fix is checked before the point of no return
//! (the mm swap): entitlement, the caller's shape, the tid/cookie addresses against the snapshot's
//! mappings, the one allocation needed afterwards. Past it only out-of-memory can fail (a copy-on-write
//! fault while storing tid/cookie); the caller, half replaced, is then killed.
//!
//! Threads: the caller becomes the snapshot's first thread (the captured process's leader); then each
//! other thread is created in the caller's process (`task::clone_thread`, patch 0002) with a task work
//! queued before it is first woken, which gives it its own saved state in its own context and stores its
//! new tid at its saved `set_tid_address()` pointer (glibc's `pd->tid`), before its first return to user
//! mode. Creating a thread can fail past the point of no return (memory, RLIMIT_NPROC, pids.max): the
//! process, half rebuilt, is then killed like any other failure there.
//!
//! `rax`: the ioctl's own result travels through an `int` in `vfs_ioctl`, and the syscall exit stores it
//! in the frame's `ax`. So the deploy returns 0 and queues a task work (TWA_SIGNAL: it runs on the way out
//! to user mode, before any signal is delivered) that puts the snapshot's 64-bit `ax` back in the frame.

use core::sync::atomic::Ordering;
use kernel::alloc::{flags::GFP_KERNEL, KBox};
use kernel::bindings;
use kernel::error::{code::*, Result};

use kernel::sync::Arc;

use crate::registry::{self, Instance};
use crate::snapshot::Snapshot;
use crate::sys::bp::{ModuleWork, Notify};
use crate::sys::{cpu, miscdev, mm, param, task, user};

/// The task work that restores the snapshot's `ax` after the syscall exit wrote the ioctl's result.
#[repr(C)]
struct AxWork {
    /// First field: the callback receives its address as the `AxWork`'s.
    work: ModuleWork,
    ax: u64,
}

/// The task work that gives a new thread its saved state (index `idx` of the snapshot's threads).
#[repr(C)]
struct ThreadWork {
    /// First field: the callback receives its address as the `ThreadWork`'s.
    work: ModuleWork,
    snap: Arc<Snapshot>,
    idx: usize,
}

/// Performs a deploy request. On success the caller returns into the snapshot's context.
pub(crate) fn deploy(a: &bindings::seuss_deploy) -> Result<isize> {
    let known = bindings::SEUSS_DEPLOY_TID | bindings::SEUSS_DEPLOY_COOKIE;
    if a.flags & !known != 0 {
        return Err(EINVAL);
    }
    let want_tid = a.flags & bindings::SEUSS_DEPLOY_TID != 0;
    let want_cookie = a.flags & bindings::SEUSS_DEPLOY_COOKIE != 0;
    if (want_tid && (a.tid_addr % 4 != 0 || a.tid_addr == 0)) || (want_cookie && (a.cookie_addr % 8 != 0 || a.cookie_addr == 0)) {
        return Err(EFAULT);
    }
    let reg = registry::get();
    let snap = reg.find(a.snap_id)?;
    snap.may_manage()?;
    task::current_can_be_replaced()?;
    if task::current_is_traced() {
        return Err(EBUSY);
    }
    // The addresses are written in the new address space: they must be writable there.
    if (want_tid && !snap.mm.is_writable(a.tid_addr, 4)) || (want_cookie && !snap.mm.is_writable(a.cookie_addr, 8)) {
        return Err(EFAULT);
    }
    let main = snap.threads.first().ok_or(EINVAL)?;
    let ax = KBox::new(AxWork { work: ModuleWork::new(), ax: main.regs.ax as u64 }, GFP_KERNEL)?;
    // Point of no return: on success the caller's old address space is gone (on failure it is intact).
    let grab = snap.mm.deploy_into_current()?;
    snap.deployed.fetch_add(1, Ordering::Relaxed);
    reg.deploys.fetch_add(1, Ordering::Relaxed);
    let me = task::TaskRef::current();
    let fail = |e| {
        // Half replaced: this process can only die.
        me.kill();
        Err(e)
    };
    if let Err(inst) = reg.add_instance(Instance { mm: grab, snap: snap.clone() }) {
        drop(inst);
        return fail(ENOMEM);
    }
    if let Err(e) = cpu::restore_current(main) {
        return fail(e);
    }
    if snap.threads.len() > 1 {
        // The C library's tid field of the first thread too (a single-threaded deploy leaves it to
        // SEUSS_DEPLOY_TID, as it always did).
        if let Err(e) = store_tid(main.tid_addr()) {
            return fail(e);
        }
    }
    if want_tid {
        if let Err(e) = user::put_u32(a.tid_addr as usize, task::current_pid_vnr() as u32) {
            return fail(e);
        }
    }
    if want_cookie {
        if let Err(e) = user::put_u64(a.cookie_addr as usize, a.cookie) {
            return fail(e);
        }
    }
    for idx in 1..snap.threads.len() {
        if let Err(e) = spawn_thread(&snap, idx) {
            return fail(e);
        }
    }
    // The child's code must never hold the device (a stub opened it as root before dropping privileges).
    miscdev::close_device_fds_of_current();
    let raw = KBox::into_raw(ax);
    // SAFETY: `raw` is a live box whose first field is the work; it is freed by `restore_ax` (or below
    // if the work cannot be queued); current is valid.
    if let Err(e) = unsafe { (*raw).work.queue(bindings::get_current(), restore_ax, Notify::Signal) } {
        // SAFETY: not queued: we still own the box.
        drop(unsafe { KBox::from_raw(raw) });
        return fail(e);
    }
    // Copy now what instances of this snapshot write anyway, and map the program text they run, instead
    // of one fault at a time later.
    let pf = param::prefault();
    if pf != 0 {
        if let Some(pages) = snap.touch_set.get() {
            mm::prefault_current(pages, pf & param::PREFAULT_WRITES != 0, pf & param::PREFAULT_READS != 0);
        }
    }
    Ok(0)
}

/// Puts the snapshot's `ax` in the user frame (current's own, on its way out of the DEPLOY syscall).
unsafe extern "C" fn restore_ax(w: *mut bindings::seuss_module_work) {
    // SAFETY: `w` is the first field of the `AxWork` box leaked in `deploy` (repr(C)); we own it now.
    let b = unsafe { KBox::from_raw(w.cast::<AxWork>()) };
    // SAFETY: current's pt_regs frame is valid and ours to change before returning to user mode.
    unsafe { (*bindings::task_pt_regs(bindings::get_current())).ax = b.ax as _ };
}

/// Stores the caller's tid at `addr` (a saved `set_tid_address()` pointer) if there is one.
fn store_tid(addr: u64) -> Result {
    if addr == 0 || addr % 4 != 0 {
        return Ok(());
    }
    user::put_u32(addr as usize, task::current_pid_vnr() as u32)
}

/// Creates thread `idx` of `snap` in the caller's process.
fn spawn_thread(snap: &Arc<Snapshot>, idx: usize) -> Result {
    let w = KBox::new(ThreadWork { work: ModuleWork::new(), snap: snap.clone(), idx }, GFP_KERNEL)?;
    let raw = KBox::into_raw(w);
    // SAFETY: `setup_thread` queues the work that replaces the new thread's frame (or fails, and the
    // kernel kills the thread before it runs); `raw` is a live box, handed over only once queued.
    let r = unsafe { task::clone_thread(setup_thread, raw.cast()) };
    if r.is_err() {
        // SAFETY: on failure no work was queued (copy_process failed, or `setup_thread` could not queue
        // it): the box is ours again.
        drop(unsafe { KBox::from_raw(raw) });
    }
    r.map(|_| ())
}

/// Called by `seuss_clone_thread` with the new, not yet woken thread: queues its restore work.
unsafe extern "C" fn setup_thread(p: *mut bindings::task_struct, arg: *mut core::ffi::c_void) -> core::ffi::c_int {
    let raw = arg.cast::<ThreadWork>();
    // SAFETY: `raw` is the live box `spawn_thread` leaked, whose first field is the work; `p` is a new
    // task that runs its works before user mode. Once queued, `restore_thread` owns and frees the box.
    match unsafe { (*raw).work.queue(p, restore_thread, Notify::Signal) } {
        Ok(()) => 0,
        // The box stays `spawn_thread`'s; the kernel kills the thread before it runs.
        Err(e) => e.to_errno(),
    }
}

/// In a new thread, before its first return to user mode: its own registers, FPU state, TLS base,
/// mask, altstack, rseq, robust list, tid pointer and name, and its tid at that pointer.
unsafe extern "C" fn restore_thread(w: *mut bindings::seuss_module_work) {
    // SAFETY: `w` is the first field of the `ThreadWork` box leaked in `spawn_thread` (repr(C)).
    let b = unsafe { KBox::from_raw(w.cast::<ThreadWork>()) };
    let ok = match b.snap.threads.get(b.idx) {
        Some(st) => cpu::restore_current(st).and_then(|()| store_tid(st.tid_addr())).is_ok(),
        None => false,
    };
    if !ok {
        // The process is half rebuilt: it dies (SIGKILL to a thread ends its whole group).
        task::TaskRef::current().kill();
    }
}
