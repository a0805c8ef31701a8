// SPDX-License-Identifier: GPL-2.0
//! CAPTURE, run by the parked task itself (the freeze's leader) while every other thread of its process
//! is parked too: check the process can be captured correctly, count its pages (the diff against its
//! parent snapshot, if it was deployed from one, after giving back the copies that still hold the
//! parent's bytes), save its user state beside the states the other threads saved in their own contexts,
//! and make one task-less copy-on-write duplicate of the address space they share.

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::alloc::{flags::GFP_KERNEL, KVec};
use kernel::error::{code::*, Result};
use kernel::sync::Arc;

use crate::freeze::Others;
use crate::registry;
use crate::snapshot::Snapshot;
use crate::sys::{cpu, mm, param, task};

/// Captures the calling (parked) task and the parked `others` of its process; returns the new snapshot's
/// id.
pub(crate) fn capture_current(others: Others) -> Result<u64> {
    let reg = registry::get();
    let me = task::TaskRef::current();
    if !me.is_64bit()? {
        return Err(crate::sys::eopnotsupp());
    }
    // A vfork child or CLONE_VM process shares the mm; io_uring rings reference kernel objects. (Each
    // follower checked itself when it parked.)
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
    // From here `private` is accounted: by hand until the Snapshot value exists, then by its Drop (also
    // when Arc::new fails, which drops the value: giving it back here too would count it twice).
    let build = || -> Result<Snapshot> {
        let threads = order_threads(me.is_group_leader(), Arc::new(cpu::save_current()?, GFP_KERNEL)?, others)?;
        let snap_mm = mm::MmRef::dup_current_for_snapshot()?;
        let pt_bytes = snap_mm.pgtable_bytes();
        let depth = parent.as_ref().map(|p| p.depth + 1).unwrap_or(0);
        Ok(Snapshot {
            id: reg.alloc_id(),
            parent: parent.clone(),
            depth,
            mm: snap_mm,
            threads,
            uid: me.kuid(),
            pages_mapped: counts.mapped,
            pages_private: private,
            pages_unchanged: unchanged,
            pt_bytes,
            capture_ns: task::now_ns() - t0,
            children: AtomicU64::new(0),
            deployed: AtomicU64::new(0),
            touch_set: crate::sys::vec::OnceVec::new(),
        })
    };
    let value = match build() {
        Ok(s) => s,
        Err(e) => {
            reg.pages_held.fetch_sub(private, Ordering::Relaxed);
            // dup_mmap gives up when a fatal signal is pending: the task is dying, not out of memory.
            return Err(if task::current_fatal_signal_pending() { ESRCH } else { e });
        }
    };
    let snap = Arc::new(value, GFP_KERNEL)?;
    let id = snap.id;
    // On failure `snap` is dropped here, outside the registry's lock.
    reg.insert(&snap)?;
    Ok(id)
}

/// The snapshot's threads in deploy order: the process's leader first (the one a deploy's caller becomes),
/// then the others as the thread list had them.
fn order_threads(me_leader: bool, mine: Arc<cpu::TaskState>, others: Others) -> Result<KVec<Arc<cpu::TaskState>>> {
    let mut v = KVec::with_capacity(others.len() + 1, GFP_KERNEL)?;
    let leader = if me_leader { None } else { others.iter().position(|(l, _)| *l) };
    match leader {
        Some(i) => {
            v.push(others[i].1.clone(), GFP_KERNEL)?;
            v.push(mine, GFP_KERNEL)?;
            for (j, (_, st)) in others.iter().enumerate() {
                if j != i {
                    v.push(st.clone(), GFP_KERNEL)?;
                }
            }
        }
        None => {
            v.push(mine, GFP_KERNEL)?;
            for (_, st) in others.iter() {
                v.push(st.clone(), GFP_KERNEL)?;
            }
        }
    }
    Ok(v)
}
