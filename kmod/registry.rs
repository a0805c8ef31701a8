// SPDX-License-Identifier: GPL-2.0
//! The module-wide state: live snapshots by id, deployed instances (to find a capture's parent and to
//! answer DIRTY), and the counters STATS reports.
//!
//! Locks: `snaps` and `instances` are independent leaf mutexes; neither is held while the other is
//! taken, nor across an mm duplication, a swap or a sleep on a freeze, and no snapshot or instance is
//! dropped under them (a last reference may `mmput`). The snapshot tree's `children` counts change only
//! under `snaps`, so a release (children == 0) and a capture on top of it cannot interleave.

use core::pin::Pin;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use kernel::alloc::{flags::GFP_KERNEL, flags::__GFP_NOWARN, KBox, KVec};
use kernel::error::{code::*, Result};
use kernel::init::InPlaceInit;
use kernel::new_mutex;
use kernel::sync::{Arc, Mutex};

use crate::snapshot::Snapshot;
use crate::sys::mm::MmGrab;

/// A process deployed from a snapshot, tracked through a weak handle on its mm.
pub(crate) struct Instance {
    pub(crate) mm: MmGrab,
    pub(crate) snap: Arc<Snapshot>,
}

/// Module-wide state.
pub(crate) struct Registry {
    snaps: Pin<KBox<Mutex<KVec<Arc<Snapshot>>>>>,
    instances: Pin<KBox<Mutex<KVec<Instance>>>>,
    next_id: AtomicU64,
    pub(crate) pages_held: AtomicU64,
    pub(crate) deploys: AtomicU64,
}

static REGISTRY: AtomicPtr<Registry> = AtomicPtr::new(core::ptr::null_mut());

/// The registry. Valid from module init (before the device exists) to module exit (after it is gone).
pub(crate) fn get() -> &'static Registry {
    let p = REGISTRY.load(Ordering::Acquire);
    // SAFETY: set in `install` before any file can be opened and cleared only after the device is
    // deregistered and no file is open (the module cannot unload while files are open).
    unsafe { &*p }
}

impl Registry {
    /// Creates the registry and makes it reachable through [`get`].
    pub(crate) fn install() -> Result<KBox<Registry>> {
        let r = KBox::new(
            Registry {
                snaps: KBox::pin_init(new_mutex!(KVec::new(), "seuss:snaps"), GFP_KERNEL)?,
                instances: KBox::pin_init(new_mutex!(KVec::new(), "seuss:instances"), GFP_KERNEL)?,
                next_id: AtomicU64::new(1),
                pages_held: AtomicU64::new(0),
                deploys: AtomicU64::new(0),
            },
            GFP_KERNEL,
        )?;
        REGISTRY.store(&*r as *const Registry as *mut Registry, Ordering::Release);
        Ok(r)
    }

    /// Makes `get` unusable again (module exit, after the device is gone).
    pub(crate) fn uninstall() {
        REGISTRY.store(core::ptr::null_mut(), Ordering::Release);
    }

    /// Allocates a snapshot id.
    pub(crate) fn alloc_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Lists a new snapshot. `ENOENT` if its parent is no longer listed (released since the instance it
    /// was captured from was deployed): a listed snapshot's parent id always names a listed snapshot.
    pub(crate) fn insert(&self, s: &Arc<Snapshot>) -> Result {
        let mut v = self.snaps.lock();
        if let Some(p) = &s.parent {
            if !v.iter().any(|x| Arc::ptr_eq(x, p)) {
                return Err(ENOENT);
            }
        }
        v.reserve(1, GFP_KERNEL)?;
        s.link();
        // Cannot fail: capacity reserved above.
        v.push(s.clone(), GFP_KERNEL)?;
        Ok(())
    }

    /// The snapshot with this id.
    pub(crate) fn find(&self, id: u64) -> Result<Arc<Snapshot>> {
        self.snaps.lock().iter().find(|s| s.id == id).cloned().ok_or(ENOENT)
    }

    /// Unlists a snapshot if `may(s)` allows it; EBUSY while it has children. Its memory goes when the
    /// last user drops it.
    pub(crate) fn release_if(&self, id: u64, may: impl FnOnce(&Snapshot) -> Result) -> Result {
        self.prune();
        let victim = {
            let mut v = self.snaps.lock();
            let i = v.iter().position(|s| s.id == id).ok_or(ENOENT)?;
            may(&v[i])?;
            if v[i].children.load(Ordering::Relaxed) != 0 {
                return Err(EBUSY);
            }
            let victim = crate::sys::vec::swap_remove(&mut v, i).ok_or(ENOENT)?;
            victim.unlink();
            victim
        };
        drop(victim); // outside the lock: may mmput
        Ok(())
    }

    /// Unlists a snapshot (see [`Registry::release_if`]).
    pub(crate) fn release(&self, id: u64) -> Result {
        self.release_if(id, |_| Ok(()))
    }

    /// Ids of the snapshots `visible` admits, in ascending order (ids are allocated increasingly and
    /// appended in order of capture completion, so sort).
    pub(crate) fn ids(&self, visible: impl Fn(&Snapshot) -> bool) -> Result<KVec<u64>> {
        let v = self.snaps.lock();
        let mut ids = KVec::with_capacity(v.len(), GFP_KERNEL | __GFP_NOWARN)?;
        for s in v.iter().filter(|s| visible(s)) {
            ids.push(s.id, GFP_KERNEL)?;
        }
        drop(v);
        // Insertion sort: few snapshots complete out of order, and core's sort pulls in panicking paths
        // objtool flags.
        let s = ids.as_mut_slice();
        for i in 1..s.len() {
            let mut j = i;
            while j > 0 && s[j - 1] > s[j] {
                s.swap(j - 1, j);
                j -= 1;
            }
        }
        Ok(ids)
    }

    /// Number of listed snapshots.
    pub(crate) fn snapshot_count(&self) -> u64 {
        self.snaps.lock().len() as u64
    }

    /// Drops instances whose process has exited, outside the lock (dropping one may free the last
    /// reference to a released snapshot, whose mm is then `mmput`).
    fn prune(&self) {
        /// Instances unlisted per pass (dropped between passes, with the lock released).
        const BATCH: usize = 16;
        loop {
            let mut dead: KVec<Instance> = KVec::new();
            if dead.reserve(BATCH, GFP_KERNEL).is_err() {
                return;
            }
            {
                let mut v = self.instances.lock();
                let mut i = 0;
                while i < v.len() && dead.len() < BATCH {
                    if v[i].mm.is_live() {
                        i += 1;
                        continue;
                    }
                    if let Some(inst) = crate::sys::vec::swap_remove(&mut v, i) {
                        // Within the reserved capacity: does not allocate, cannot fail.
                        let _ = dead.push(inst, GFP_KERNEL);
                    }
                }
            }
            let full = dead.len() == BATCH;
            drop(dead); // outside the lock
            if !full {
                return;
            }
        }
    }

    /// Records a deployed instance. On failure the instance is handed back (to be dropped by the caller,
    /// outside the lock).
    pub(crate) fn add_instance(&self, inst: Instance) -> core::result::Result<(), Instance> {
        self.prune();
        let mut v = self.instances.lock();
        if v.reserve(1, GFP_KERNEL).is_err() {
            return Err(inst);
        }
        // Within the reserved capacity: cannot fail.
        let _ = v.push(inst, GFP_KERNEL);
        Ok(())
    }

    /// The snapshot a live instance with this mm was deployed from.
    pub(crate) fn instance_snapshot(&self, mm: *mut kernel::bindings::mm_struct) -> Option<Arc<Snapshot>> {
        self.instances.lock().iter().find(|i| i.mm.as_ptr() == mm && i.mm.is_live()).map(|i| i.snap.clone())
    }

    /// Live deployed instances.
    pub(crate) fn instance_count(&self) -> u64 {
        self.prune();
        self.instances.lock().len() as u64
    }

    /// Frees everything (module exit; the vectors are taken out of their locks before anything drops).
    pub(crate) fn clear(&self) {
        let snaps = core::mem::take(&mut *self.snaps.lock());
        let insts = core::mem::take(&mut *self.instances.lock());
        drop(insts);
        drop(snaps);
    }
}
