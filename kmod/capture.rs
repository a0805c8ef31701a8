// SPDX-License-Identifier: GPL-2.0
//! CAPTURE, run by the parked task itself: check the task can be captured correctly, count its pages
//! (the diff against its parent snapshot, if it was deployed from one, after giving back the copies that
//! still hold the parent's bytes), save its user state and make a task-less copy-on-write duplicate of its
//! address space.

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::alloc::flags::GFP_KERNEL;
use kernel::error::{code::*, Result};
use kernel::sync::Arc;

use crate::registry;
use crate::snapshot::Snapshot;
use crate::sys::{cpu, mm, param, task};

/// Captures the calling (parked) task; returns the new snapshot's id.
pub(crate) fn capture_current() -> Result<u64> {
    let reg = registry::get();
    let me = task::TaskRef::current();
    if !me.is_single_threaded() || !me.is_64bit()? {
        return Err(crate::sys::eopnotsupp());
    }
    // A vfork child or CLONE_VM sibling shares the mm; io_uring rings reference kernel objects.
    task::current_can_be_captured()?;
    let t0 = task::now_ns();
    let parent = reg.instance_snapshot(mm::current_mm_ptr());
    // A deployed task's copies that still hold its parent's bytes (a count that went up and back down)
    // need not be stored again: map the parent's pages there first, so the snapshot keeps real changes.
    let mut unchanged = 0;
    if let Some(p) = parent.as_ref().filter(|_| param::share_unchanged()) {
        // An optimisation only: if it cannot run (no memory for the page list), capture everything.
        unchanged = mm::share_unchanged_with(&p.mm).unwrap_or(0);
    }
    // Count before duplicating: afterwards every page is shared with the snapshot.
    let counts = mm::count_current_pages()?;
    if counts.unsupported_vmas != 0 {
        return Err(crate::sys::eopnotsupp());
    }
    let private = if parent.is_some() { counts.exclusive } else { counts.anon };
    let max = param::max_pages();
    let held = reg.pages_held.fetch_add(private, Ordering::Relaxed);
    if max != 0 && held + private > max {
        reg.pages_held.fetch_sub(private, Ordering::Relaxed);
        return Err(ENOSPC);
    }
    // From here `private` is accounted; Snapshot::drop gives it back, error paths below do it by hand.
    let build = || -> Result<Arc<Snapshot>> {
        let state = cpu::save_current()?;
        let snap_mm = mm::MmRef::dup_current_for_snapshot()?;
        let pt_bytes = snap_mm.pgtable_bytes();
        let depth = parent.as_ref().map(|p| p.depth + 1).unwrap_or(0);
        Ok(Arc::new(
            Snapshot {
                id: reg.alloc_id(),
                parent: parent.clone(),
                depth,
                mm: snap_mm,
                state,
                uid: me.kuid(),
                pages_mapped: counts.mapped,
                pages_private: private,
                pages_unchanged: unchanged,
                pt_bytes,
                capture_ns: task::now_ns() - t0,
                children: AtomicU64::new(0),
                deployed: AtomicU64::new(0),
                touch_set: crate::sys::vec::OnceVec::new(),
            },
            GFP_KERNEL,
        )?)
    };
    let snap = match build() {
        Ok(s) => s,
        Err(e) => {
            reg.pages_held.fetch_sub(private, Ordering::Relaxed);
            // dup_mmap gives up when a fatal signal is pending: the task is dying, not out of memory.
            return Err(if task::current_fatal_signal_pending() { ESRCH } else { e });
        }
    };
    let id = snap.id;
    // On failure `snap` is dropped here, outside the registry's lock.
    reg.insert(&snap)?;
    Ok(id)
}
