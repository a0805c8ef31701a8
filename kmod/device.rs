// SPDX-License-Identifier: GPL-2.0
//! `/dev/seuss`: one [`Session`] per open file, and the ioctl dispatch. Freezes belong to the session
//! that armed them and are released when the arming process closes a descriptor of it or exits (`flush`,
//! so an inherited copy of the descriptor, even one a frozen task holds, keeps nothing frozen) or when the
//! file's last reference goes; snapshots are module-wide, each with an owner (see the uapi header's
//! "Ownership" and "Freezes").
//!
//! Every handler validates its whole argument before it changes anything, and undoes what it did if it
//! cannot hand the result back (a freeze or snapshot nobody could name would leak).

use core::sync::atomic::{AtomicU64, Ordering};
use kernel::alloc::{flags::GFP_KERNEL, KVec};
use kernel::bindings as b;
use kernel::error::{code::*, Result};
use kernel::ioctl::{_IOW, _IOWR};
use kernel::new_mutex;
use kernel::prelude::*;
use kernel::sync::{Arc, Mutex};

use crate::freeze::{Freeze, Point};
use crate::registry;
use crate::sys::bp::BpKind;
use crate::sys::miscdev::{FileOps, OpenFile};
use crate::sys::task::{self, TaskRef};
use crate::sys::user::{must_be_zero, read_arg, write_arg, write_u64s};
use crate::sys::{mm, param};

/// Most entries recorded as a snapshot's touch set (16 MiB of written pages, or fewer plus text windows).
const TOUCH_SET_MAX: usize = 4096;

const M: u32 = b::SEUSS_IOC_MAGIC;
// The ioctl numbers exactly as the uapi header builds them: direction and size bits included.
const VERSION: u32 = _IOWR::<b::seuss_version>(M, 0x00);
const ARM: u32 = _IOWR::<b::seuss_arm>(M, 0x01);
const WAIT: u32 = _IOWR::<b::seuss_wait>(M, 0x02);
const CAPTURE: u32 = _IOWR::<b::seuss_capture>(M, 0x03);
const RESUME: u32 = _IOW::<b::seuss_release_task>(M, 0x04);
const DEPLOY: u32 = _IOW::<b::seuss_deploy>(M, 0x05);
const SNAP_INFO: u32 = _IOWR::<b::seuss_snap_info>(M, 0x06);
const SNAP_LIST: u32 = _IOWR::<b::seuss_snap_list>(M, 0x07);
const SNAP_RELEASE: u32 = _IOW::<b::seuss_snap_release>(M, 0x08);
const DIRTY: u32 = _IOWR::<b::seuss_dirty>(M, 0x09);
const STATS: u32 = _IOWR::<b::seuss_stats>(M, 0x0a);

/// A freeze a session holds: its id, the fd table of the process that armed it (identity only: when that
/// process closes a descriptor of this file, or exits, the freeze is released), and the freeze.
struct Held {
    id: u64,
    owner: usize,
    freeze: Arc<Freeze>,
}

/// Per-open-file state.
#[pin_data]
pub(crate) struct Session {
    #[pin]
    freezes: Mutex<KVec<Held>>,
    next: AtomicU64,
}

impl Session {
    fn find(&self, id: u64) -> Result<Arc<Freeze>> {
        self.freezes.lock().iter().find(|h| h.id == id).map(|h| h.freeze.clone()).ok_or(ENOENT)
    }

    fn take(&self, id: u64) -> Result<Arc<Freeze>> {
        let mut v = self.freezes.lock();
        let i = v.iter().position(|h| h.id == id).ok_or(ENOENT)?;
        crate::sys::vec::swap_remove(&mut v, i).map(|h| h.freeze).ok_or(ENOENT)
    }

    /// Ends a freeze this session no longer lists.
    fn finish(f: &Arc<Freeze>, kill: bool) {
        f.release(kill);
        crate::armed::remove(f.key);
    }

    fn arm(&self, file: OpenFile, arg: usize) -> Result<isize> {
        let mut a = read_arg::<b::seuss_arm>(arg)?;
        if a.flags & !b::SEUSS_ARM_PIDFD != 0 || a.reserved != 0 {
            return Err(EINVAL);
        }
        let point = match a.kind {
            b::SEUSS_ARM_EXEC if a.len == 0 => Point::Breakpoint(BpKind::Exec, a.addr),
            b::SEUSS_ARM_WRITE if matches!(a.len, 1 | 2 | 4 | 8) && a.addr % a.len as u64 == 0 => {
                Point::Breakpoint(BpKind::Write(a.len), a.addr)
            }
            b::SEUSS_ARM_NOW if a.addr == 0 && a.len == 0 => Point::Now,
            _ => return Err(EINVAL),
        };
        // SAFETY: no preconditions.
        if matches!(point, Point::Breakpoint(..)) && a.addr >= unsafe { b::seuss_task_size_max() } as u64 {
            return Err(EINVAL);
        }
        let target = if a.flags & b::SEUSS_ARM_PIDFD != 0 { TaskRef::from_pidfd(a.pid)? } else { TaskRef::from_pid(a.pid)? };
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        // Permission first: a caller that may not attach learns nothing else about the task.
        let f = target.clone().with_attach_access(|exec_id| {
            if target.is_current() {
                return Err(EINVAL);
            }
            let target_mm = mm::task_mm(&target).ok_or(ESRCH)?;
            if target.is_kthread_or_exiting() {
                return Err(ESRCH);
            }
            // Its threads share the mm: that is the process's key in the armed set (one freeze per
            // process: two would park each other's threads), and another thread of the caller's own
            // process is the caller itself (its freeze would park the controller).
            let key = target_mm.identity();
            drop(target_mm);
            if key == mm::current_mm_ptr() as usize {
                return Err(EINVAL);
            }
            if !target.is_64bit()? {
                return Err(crate::sys::eopnotsupp());
            }
            if !crate::armed::insert(key)? {
                return Err(EBUSY);
            }
            Freeze::arm(target.clone(), exec_id, key, point).inspect_err(|_| crate::armed::remove(key))
        })?;
        {
            let mut v = self.freezes.lock();
            if v.reserve(1, GFP_KERNEL).is_err() {
                drop(v);
                Self::finish(&f, false);
                return Err(ENOMEM);
            }
            // The freeze is owned by this process's descriptors of the file: released when one is closed
            // (flush). If another thread closed the last one during this call, that flush has run or is
            // waiting for this lock; either way it cannot see the entry below unless the file is still
            // installed. So check under the lock (lock order: `freezes`, then the fd table's `file_lock`):
            // a freeze no descriptor owns would stay frozen until the file's last reference goes, which a
            // child that inherited it (or a task it froze) may never drop.
            if !file.installed_in_current() {
                drop(v);
                Self::finish(&f, false);
                return Err(EBADF);
            }
            // Within the reserved capacity: cannot fail.
            let _ = v.push(Held { id, owner: task::current_files_id(), freeze: f }, GFP_KERNEL);
        }
        a.freeze_id = id;
        if let Err(e) = write_arg(arg, &a) {
            // Nobody could name this freeze: end it.
            if let Ok(f) = self.take(id) {
                Self::finish(&f, false);
            }
            return Err(e);
        }
        Ok(0)
    }

    fn capture(&self, arg: usize) -> Result<isize> {
        let mut a = read_arg::<b::seuss_capture>(arg)?;
        must_be_zero(a.flags as u64)?;
        let f = self.find(a.freeze_id)?;
        a.snap_id = f.capture()?;
        if let Err(e) = write_arg(arg, &a) {
            // Nobody could name this snapshot: release it.
            let _ = registry::get().release(a.snap_id);
            return Err(e);
        }
        Ok(0)
    }

    fn snap_info(&self, arg: usize) -> Result<isize> {
        let mut a = read_arg::<b::seuss_snap_info>(arg)?;
        must_be_zero(a.flags as u64)?;
        let s = registry::get().find(a.snap_id)?;
        s.may_manage()?;
        a.parent_id = s.parent.as_ref().map(|p| p.id).unwrap_or(0);
        a.depth = s.depth;
        a.uid = s.uid;
        a.pages_mapped = s.pages_mapped;
        a.pages_private = s.pages_private;
        a.pt_bytes = s.pt_bytes;
        a.capture_ns = s.capture_ns;
        a.children = s.children.load(Ordering::Relaxed);
        a.deployed = s.deployed.load(Ordering::Relaxed);
        a.pages_unchanged = s.pages_unchanged;
        a.threads = s.threads.len() as u32;
        a.reserved = 0;
        write_arg(arg, &a)?;
        Ok(0)
    }

    fn snap_list(&self, arg: usize) -> Result<isize> {
        let mut a = read_arg::<b::seuss_snap_list>(arg)?;
        must_be_zero(a.flags as u64)?;
        let uid = task::current_kuid();
        let admin = task::current_is_admin();
        let ids = registry::get().ids(|s| admin || s.uid == uid)?;
        let n = ids.len().min(a.capacity as usize);
        if n > 0 {
            write_u64s(a.ids_addr as usize, &ids[..n])?;
        }
        a.count = ids.len() as u32;
        write_arg(arg, &a)?;
        Ok(0)
    }

    fn dirty(&self, arg: usize) -> Result<isize> {
        let mut a = read_arg::<b::seuss_dirty>(arg)?;
        must_be_zero(a.flags as u64 | a.reserved as u64)?;
        let target = TaskRef::from_pid(a.pid)?;
        if !target.may_read() {
            return Err(EPERM);
        }
        let m = mm::task_mm(&target).ok_or(ESRCH)?;
        let snap = registry::get().instance_snapshot(m.as_ptr()).ok_or(ENOENT)?;
        let counts = m.count_pages()?;
        // Only a leaf's instances all do the same thing (a runtime snapshot's children each load a
        // different function: prefaulting one's touches into the next would bloat its diff).
        let leaf = snap.children.load(Ordering::Relaxed) == 0;
        if param::prefault() != 0 && leaf && snap.touch_set.get().is_none() && counts.exclusive > 0 {
            if let Ok(pages) = m.touched_pages(TOUCH_SET_MAX) {
                snap.touch_set.set(pages);
            }
        }
        a.snap_id = snap.id;
        a.pages_private = counts.exclusive;
        write_arg(arg, &a)?;
        Ok(0)
    }

    fn stats(&self, arg: usize) -> Result<isize> {
        let mut a = read_arg::<b::seuss_stats>(arg)?;
        must_be_zero(a.flags as u64)?;
        let reg = registry::get();
        // First: unlisting exited instances may drop the last reference to a released snapshot.
        a.instances = reg.instance_count();
        a.snapshots = reg.snapshot_count();
        a.pages_held = reg.pages_held.load(Ordering::Relaxed);
        a.max_pages = param::max_pages();
        a.deploys = reg.deploys.load(Ordering::Relaxed);
        a.frozen = crate::armed::count();
        write_arg(arg, &a)?;
        Ok(0)
    }
}

impl FileOps for Session {
    fn open() -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Session { freezes <- new_mutex!(KVec::new(), "seuss:session"), next: AtomicU64::new(1) }),
            GFP_KERNEL,
        )
    }

    fn flush(this: &Arc<Self>, owner: usize) {
        // Released one at a time, each outside the lock (a release may sleep).
        loop {
            let held = {
                let mut v = this.freezes.lock();
                match v.iter().position(|h| h.owner == owner) {
                    Some(i) => crate::sys::vec::swap_remove(&mut v, i),
                    None => return,
                }
            };
            if let Some(h) = held {
                Self::finish(&h.freeze, false);
            }
        }
    }

    fn release(this: Arc<Self>) {
        let all = core::mem::take(&mut *this.freezes.lock());
        for h in all.iter() {
            Self::finish(&h.freeze, false);
        }
    }

    fn ioctl(this: &Arc<Self>, file: OpenFile, cmd: u32, arg: usize) -> Result<isize> {
        match cmd {
            VERSION => {
                let mut a = read_arg::<b::seuss_version>(arg)?;
                must_be_zero(a.flags as u64 | a.reserved as u64)?;
                a.abi_version = b::SEUSS_ABI_VERSION;
                a.features = (b::SEUSS_FEAT_VERSION | b::SEUSS_FEAT_FREEZE | b::SEUSS_FEAT_CAPTURE
                    | b::SEUSS_FEAT_DEPLOY | b::SEUSS_FEAT_DIRTY | b::SEUSS_FEAT_STATS | b::SEUSS_FEAT_THREADS) as u64;
                write_arg(arg, &a)?;
                Ok(0)
            }
            ARM => this.arm(file, arg),
            WAIT => {
                let mut a = read_arg::<b::seuss_wait>(arg)?;
                must_be_zero(a.flags as u64)?;
                let f = this.find(a.freeze_id)?;
                let (state, ip) = f.wait(a.timeout_ms)?;
                a.state = state;
                a.ip = ip;
                write_arg(arg, &a)?;
                Ok(0)
            }
            CAPTURE => this.capture(arg),
            RESUME => {
                let a = read_arg::<b::seuss_release_task>(arg)?;
                if a.flags & !b::SEUSS_RELEASE_KILL != 0 {
                    return Err(EINVAL);
                }
                let f = this.take(a.freeze_id)?;
                Self::finish(&f, a.flags & b::SEUSS_RELEASE_KILL != 0);
                Ok(0)
            }
            DEPLOY => crate::deploy::deploy(&read_arg::<b::seuss_deploy>(arg)?),
            SNAP_INFO => this.snap_info(arg),
            SNAP_LIST => this.snap_list(arg),
            SNAP_RELEASE => {
                let a = read_arg::<b::seuss_snap_release>(arg)?;
                must_be_zero(a.flags as u64)?;
                registry::get().release_if(a.snap_id, |s| s.may_manage())?;
                Ok(0)
            }
            DIRTY => this.dirty(arg),
            STATS => this.stats(arg),
            _ => Err(ENOTTY),
        }
    }
}
