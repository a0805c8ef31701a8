// SPDX-License-Identifier: GPL-2.0
//! The calling task's user CPU and per-task state: saved at capture (in the frozen task's own context)
//! and restored at deploy (in the stub's ioctl). Everything here acts on `current` only.

use kernel::alloc::{flags::GFP_KERNEL, KVec};
use kernel::bindings;
use kernel::error::{code::*, Error, Result};

/// Everything about a task's user context that a snapshot carries besides its memory.
pub(crate) struct TaskState {
    /// The user register frame, exactly as it will be returned to.
    pub(crate) regs: bindings::pt_regs,
    pub(crate) fsbase: u64,
    pub(crate) gsbase: u64,
    /// FPU/SSE/AVX state in the UABI XSAVE layout (`xsave == true`) or FXSAVE layout.
    pub(crate) fpu: KVec<u8>,
    pub(crate) xsave: bool,
    /// Signal handlers, mask and altstack, rseq registration, robust list, set_tid_address pointer,
    /// personality and name (comm), in the helper's private layout (`seuss_task_extra_save`).
    extra: KVec<u8>,
}

impl TaskState {
    /// The thread's saved `set_tid_address()` pointer (where glibc and musl keep the thread's tid), or 0.
    pub(crate) fn tid_addr(&self) -> u64 {
        // SAFETY: `extra` came from seuss_task_extra_save (its size is the helper's); the helper reads it.
        unsafe { bindings::seuss_task_extra_tid_addr(self.extra.as_ptr() as *const _) as u64 }
    }
}

// SAFETY: TaskState holds only plain data and user-space addresses that the kernel never dereferences
// except through uaccess on the owning task.
unsafe impl Send for TaskState {}
// SAFETY: as above; immutable after capture.
unsafe impl Sync for TaskState {}

/// The CPUID-detection flag (bit 21): user code sets and clears it with `popf`, so it is user state
/// (ptrace's and sigreturn's masks leave it out; the kernel never relies on it).
const X86_EFLAGS_ID: usize = 1 << 21;

const ERESTARTSYS: u64 = (-512i64) as u64;
const ERESTARTNOINTR: u64 = (-513i64) as u64;
const ERESTARTNOHAND: u64 = (-514i64) as u64;
const ERESTART_RESTARTBLOCK: u64 = (-516i64) as u64;
const EINTR_RET: u64 = (-4i64) as u64;

fn cur() -> *mut bindings::task_struct {
    // SAFETY: no preconditions.
    unsafe { bindings::get_current() }
}

/// Reads one regset of current into a new buffer; `None` if the regset is absent or inactive.
fn read_regset(note: u32) -> Result<Option<KVec<u8>>> {
    // SAFETY: task_user_regset_view returns a static table for the current task's ABI.
    let view = unsafe { &*bindings::task_user_regset_view(cur()) };
    for i in 0..view.n as usize {
        // SAFETY: `regsets` has `n` entries.
        let rs = unsafe { &*view.regsets.add(i) };
        if rs.core_note_type != note {
            continue;
        }
        let size = (rs.n * rs.size) as usize;
        let mut buf = KVec::with_capacity(size, GFP_KERNEL)?;
        // SAFETY: `buf` has `size` bytes of capacity; regset_get writes at most `size` bytes and syncs
        // current's live FPU registers to memory first.
        let r = unsafe { bindings::regset_get(cur(), rs, size as u32, buf.as_mut_ptr() as *mut _) };
        if r < 0 {
            return Ok(None);
        }
        // SAFETY: regset_get initialised `r` bytes (<= size).
        unsafe { buf.set_len(r as usize) };
        return Ok(Some(buf));
    }
    Ok(None)
}

/// Captures current's user state. `regs` is current's user frame (the #DB or syscall frame).
pub(crate) fn save_current() -> Result<TaskState> {
    let t = cur();
    // SAFETY: current's pt_regs frame is valid while current runs in the kernel.
    let mut regs = unsafe { *bindings::task_pt_regs(t) };
    // fs/gs bases and selectors through the NT_PRSTATUS regset (struct user_regs_struct), which reads the
    // live CPU values for current (current_save_fsgs is exported only for KVM).
    let prs = read_regset(bindings::NT_PRSTATUS)?.ok_or(EIO)?;
    let word = |i: usize| -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&prs[i * 8..i * 8 + 8]);
        u64::from_ne_bytes(b)
    };
    if prs.len() < 27 * 8 {
        return Err(EIO);
    }
    // user_regs_struct: ..., fs_base = 21, gs_base = 22, ds, es, fs = 25, gs = 26.
    let (fsbase, gsbase, fsidx, gsidx) = (word(21), word(22), word(25), word(26));
    if fsidx != 0 || gsidx != 0 {
        // 32-bit segment-based TLS cannot be carried over.
        return Err(crate::sys::eopnotsupp());
    }
    // Frozen inside a syscall that a signal-like wakeup interrupted: make the saved context re-issue
    // the syscall, as the kernel's own restart logic would, so every deployed child runs it afresh.
    if regs.orig_ax as i64 >= 0 {
        match regs.ax as u64 {
            ERESTARTSYS | ERESTARTNOINTR | ERESTARTNOHAND => {
                regs.ax = regs.orig_ax;
                regs.ip -= 2;
            }
            ERESTART_RESTARTBLOCK => regs.ax = EINTR_RET as _,
            _ => {}
        }
    }
    let (fpu, xsave) = match read_regset(bindings::NT_X86_XSTATE)? {
        Some(b) => (b, true),
        None => (read_regset(bindings::NT_PRFPREG)?.ok_or(EIO)?, false),
    };
    // SAFETY: no preconditions.
    let n = unsafe { bindings::seuss_task_extra_size() };
    let mut extra = KVec::from_elem(0u8, n, GFP_KERNEL)?;
    // SAFETY: `extra` has the helper's size; it reads current's own state under siglock.
    unsafe { bindings::seuss_task_extra_save(extra.as_mut_ptr() as *mut _) };
    Ok(TaskState { regs, fsbase, gsbase, fpu, xsave, extra })
}

/// Gives current the saved user state, every register of the frame included. Runs after the mm swap
/// (which cleared fs/gs and the robust list). The syscall exit then overwrites `ax` with the ioctl's
/// result: the deploy puts `s.regs.ax` back with a task work.
pub(crate) fn restore_current(s: &TaskState) -> Result {
    let t = cur();
    // Registers, sanitised like ptrace's putreg: user selectors, only user-changeable flags (minus TF/RF),
    // and orig_ax = -1 so no syscall-restart logic touches the restored context.
    // SAFETY: current's pt_regs frame is valid and ours to change before returning to user mode.
    unsafe {
        let regs = &mut *bindings::task_pt_regs(t);
        let mask = bindings::SEUSS_FLAG_MASK_USER | X86_EFLAGS_ID;
        let keep = regs.flags & !mask;
        let user = s.regs.flags & mask & !(bindings::SEUSS_X86_EFLAGS_TF | bindings::SEUSS_X86_EFLAGS_RF);
        *regs = s.regs;
        regs.flags = keep | user | bindings::SEUSS_X86_EFLAGS_IF;
        regs.__bindgen_anon_1.csx = bindings::SEUSS_USER_CS as u64;
        regs.__bindgen_anon_2.ssx = bindings::SEUSS_USER_DS as u64;
        regs.orig_ax = u64::MAX as _;
    }
    // SAFETY: do_arch_prctl_64 on current loads the bases into the CPU and thread struct.
    unsafe {
        let r = bindings::do_arch_prctl_64(t, bindings::ARCH_SET_FS as i32, s.fsbase as _);
        if r != 0 {
            return Err(Error::from_errno(r as i32));
        }
        let r = bindings::do_arch_prctl_64(t, bindings::ARCH_SET_GS as i32, s.gsbase as _);
        if r != 0 {
            return Err(Error::from_errno(r as i32));
        }
    }
    // SAFETY: `fpu` holds `len` bytes in the format `xsave` says; the helper validates the header.
    let r = unsafe { bindings::seuss_fpu_restore_current(s.fpu.as_ptr() as *const _, s.fpu.len() as u32, s.xsave) };
    if r != 0 {
        return Err(Error::from_errno(r));
    }
    // SAFETY: the buffer came from seuss_task_extra_save; the stub's sighand is unshared (checked before
    // the swap), as the helper requires.
    unsafe { bindings::seuss_task_extra_restore(s.extra.as_ptr() as *const _) };
    Ok(())
}
