// SPDX-License-Identifier: GPL-2.0
//! A snapshot: an immutable, task-less copy-on-write address space plus the user CPU and per-task state
//! of every thread of the process it was captured from, and its place in the snapshot tree.
//!
//! Lifetime: the registry holds one reference while the snapshot is listed; each child snapshot holds a
//! reference to its parent (so a parent outlives its children even if its id could be released); an
//! in-flight deploy holds one. Releasing a snapshot that still has children fails with EBUSY, so ids
//! always name a whole chain. `children` counts listed children only. The mm is `mmput` when the last reference goes (process context).

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::alloc::KVec;
use kernel::sync::Arc;

use crate::sys::cpu::TaskState;
use crate::sys::mm::MmRef;
use crate::sys::vec::OnceVec;

/// One captured snapshot.
pub(crate) struct Snapshot {
    pub(crate) id: u64,
    pub(crate) parent: Option<Arc<Snapshot>>,
    pub(crate) depth: u32,
    /// The snapshot's own address space (no task uses it; deploys duplicate it).
    pub(crate) mm: MmRef,
    /// Every thread's user state, never empty: the first is the one a deploy's caller becomes (the
    /// process's leader when it was captured), the others are recreated as new threads. Shared between
    /// the snapshots that captures of one freeze make (a parked thread's state does not change).
    pub(crate) threads: KVec<Arc<TaskState>>,
    /// The owner: real uid (initial namespace) of the captured task, who may see, release and deploy it
    /// without CAP_SYS_ADMIN.
    pub(crate) uid: u32,
    pub(crate) pages_mapped: u64,
    /// Anonymous pages not shared with the parent snapshot (for a root: all anonymous pages).
    pub(crate) pages_private: u64,
    /// Pages the captured task had copied but not changed, mapped from the parent again at capture.
    pub(crate) pages_unchanged: u64,
    pub(crate) pt_bytes: u64,
    pub(crate) capture_ns: u64,
    pub(crate) children: AtomicU64,
    pub(crate) deployed: AtomicU64,
    /// The pages the first measured (DIRTY) instance of this snapshot had written, and (tagged
    /// `mm::READ`) the file pages it had mapped to read: a later deploy faults them in up front. Set once.
    pub(crate) touch_set: OnceVec<u64>,
}

impl Snapshot {
    /// `Ok` if the caller owns the snapshot or has CAP_SYS_ADMIN, else `EPERM` (the ABI's "Ownership").
    pub(crate) fn may_manage(&self) -> kernel::error::Result {
        if self.visible_to_caller() { Ok(()) } else { Err(kernel::error::code::EPERM) }
    }

    /// Whether the caller owns the snapshot or has CAP_SYS_ADMIN.
    pub(crate) fn visible_to_caller(&self) -> bool {
        crate::sys::task::current_kuid() == self.uid || crate::sys::task::current_is_admin()
    }

    /// Accounts the new snapshot in its parent (undone by [`Snapshot::unlink`] when it is released).
    pub(crate) fn link(self: &Arc<Self>) {
        if let Some(p) = &self.parent {
            p.children.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The snapshot's id was released: it no longer counts as its parent's child (running instances may
    /// still hold it, and through it the parent, until they exit).
    pub(crate) fn unlink(&self) {
        if let Some(p) = &self.parent {
            p.children.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        crate::registry::get().pages_held.fetch_sub(self.pages_private, Ordering::Relaxed);
    }
}
