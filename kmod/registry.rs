// SPDX-License-Identifier: GPL-2.0
//! The module-wide state: live snapshots by id, deployed instances (to find a capture's parent and to
//! answer DIRTY), and the counters STATS reports.
//!
//! Locks: `snaps` and `instances` are independent leaf mutexes; neither is held while the other is
//! taken, nor across an mm duplication, a swap or a sleep on a freeze.

use core::pin::Pin;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use kernel::alloc::{flags::GFP_KERNEL, KBox, KVec};
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

    /// Lists a new snapshot.
    pub(crate) fn insert(&self, s: Arc<Snapshot>) -> Result {
        s.link();
        self.snaps.lock().push(s, GFP_KERNEL)?;
        Ok(())
    }

    /// The snapshot with this id.
    pub(crate) fn find(&self, id: u64) -> Result<Arc<Snapshot>> {
        self.snaps.lock().iter().find(|s| s.id == id).cloned().ok_or(ENOENT)
    }

    /// Unlists a snapshot; EBUSY while it has children. Its memory goes when the last user drops it.
    pub(crate) fn release(&self, id: u64) -> Result {
        self.prune();
        let victim = {
            let mut v = self.snaps.lock();
            let i = v.iter().position(|s| s.id == id).ok_or(ENOENT)?;
            if v[i].children.load(Ordering::Relaxed) != 0 {
                return Err(EBUSY);
            }
            crate::sys::vec::swap_remove(&mut v, i)
        };
        victim.unlink();
        drop(victim); // outside the lock: may mmput
        Ok(())
    }

    /// Ids of all snapshots in ascending order (ids are allocated increasingly and appended in order of
    /// capture completion, so sort).
    pub(crate) fn ids(&self) -> Result<KVec<u64>> {
        let v = self.snaps.lock();
        let mut ids = KVec::with_capacity(v.len(), GFP_KERNEL)?;
        for s in v.iter() {
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

    /// Drops instances whose process has exited, outside the lock.
    fn prune(&self) {
        let mut dead = KVec::new();
        {
            let mut v = self.instances.lock();
            let mut i = 0;
            while i < v.len() {
                if !v[i].mm.is_live() {
                    let inst = crate::sys::vec::swap_remove(&mut v, i);
                    if dead.push(inst, GFP_KERNEL).is_err() {
                        // Could not defer: dropping here only mmdrops/puts an Arc, never sleeps long.
                    }
                } else {
                    i += 1;
                }
            }
        }
        drop(dead);
    }

    /// Records a deployed instance.
    pub(crate) fn add_instance(&self, inst: Instance) -> Result {
        self.prune();
        self.instances.lock().push(inst, GFP_KERNEL)?;
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

    /// Frees everything (module exit).
    pub(crate) fn clear(&self) {
        let snaps = core::mem::take(&mut *self.snaps.lock());
        let insts = core::mem::take(&mut *self.instances.lock());
        drop(insts);
        drop(snaps);
    }
}
