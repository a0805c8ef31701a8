// SPDX-License-Identifier: GPL-2.0
//! `/dev/seuss`: one [`Session`] per open file, and the ioctl dispatch. Freezes belong to the session
//! that armed them (closing the file resumes every task it still holds); snapshots are module-wide.

use core::pin::Pin;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::alloc::{flags::GFP_KERNEL, KBox, KVec};
use kernel::bindings as b;
use kernel::error::{code::*, Result};
use kernel::init::InPlaceInit;
use kernel::new_mutex;
use kernel::sync::{Arc, Mutex};

use crate::freeze::{Freeze, Point};

/// Most entries recorded as a snapshot's touch set (16 MiB of written pages, or fewer plus text windows).
const TOUCH_SET_MAX: usize = 4096;
use crate::registry;
use crate::sys::bp::BpKind;
use crate::sys::miscdev::FileOps;
use crate::sys::task::TaskRef;
use crate::sys::user::{must_be_zero, read_arg, write_arg, write_u64s};
use crate::sys::{mm, param};


/// Per-open-file state.
pub(crate) struct Session {
    freezes: Pin<KBox<Mutex<KVec<(u64, Arc<Freeze>)>>>>,
    next: AtomicU64,
}

impl Session {
    fn find(&self, id: u64) -> Result<Arc<Freeze>> {
        self.freezes.lock().iter().find(|(i, _)| *i == id).map(|(_, f)| f.clone()).ok_or(ENOENT)
    }

    fn take(&self, id: u64) -> Result<Arc<Freeze>> {
        let mut v = self.freezes.lock();
        let i = v.iter().position(|(x, _)| *x == id).ok_or(ENOENT)?;
        Ok(crate::sys::vec::swap_remove(&mut v, i).1)
    }
}


impl FileOps for Session {
    fn open() -> Result<Arc<Self>> {
        Ok(Arc::new(
            Session { freezes: KBox::pin_init(new_mutex!(KVec::new(), "seuss:session"), GFP_KERNEL)?, next: AtomicU64::new(1) },
            GFP_KERNEL,
        )?)
    }

    fn release(this: Arc<Self>) {
        let all = core::mem::take(&mut *this.freezes.lock());
        for (_, f) in all.iter() {
            f.release(false);
            crate::armed::remove(f.task.as_ptr() as usize);
        }
    }

    fn ioctl(this: &Arc<Self>, cmd: u32, arg: usize) -> Result<isize> {
        if (cmd >> 8) & 0xff != b::SEUSS_IOC_MAGIC {
            return Err(ENOTTY);
        }
        let reg = registry::get();
        match cmd & 0xff {
            0x00 => {
                let (mut a, _) = read_arg::<b::seuss_version>(arg)?;
                must_be_zero(a.flags as u64 | a.reserved as u64)?;
                a.abi_version = b::SEUSS_ABI_VERSION;
                a.features = (b::SEUSS_FEAT_VERSION | b::SEUSS_FEAT_FREEZE | b::SEUSS_FEAT_CAPTURE
                    | b::SEUSS_FEAT_DEPLOY | b::SEUSS_FEAT_DIRTY | b::SEUSS_FEAT_STATS) as u64;
                write_arg(arg, &a)?;
                Ok(0)
            }
            0x01 => {
                let (mut a, _) = read_arg::<b::seuss_arm>(arg)?;
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
                let task = if a.flags & b::SEUSS_ARM_PIDFD != 0 { TaskRef::from_pidfd(a.pid)? } else { TaskRef::from_pid(a.pid)? };
                if task.is_current() {
                    return Err(EINVAL);
                }
                if task.is_kthread_or_exiting() || mm::task_mm(&task).is_none() {
                    return Err(ESRCH);
                }
                if !task.is_single_threaded() || !task.is_64bit() {
                    return Err(crate::sys::eopnotsupp());
                }
                let key = task.as_ptr() as usize;
                let f = task.clone().with_attach_access(|| {
                    if !crate::armed::insert(key)? {
                        return Err(EBUSY);
                    }
                    Freeze::arm(task, point).inspect_err(|_| crate::armed::remove(key))
                })?;
                let id = this.next.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = this.freezes.lock().push((id, f.clone()), GFP_KERNEL) {
                    f.release(false);
                    crate::armed::remove(key);
                    return Err(e.into());
                }
                a.freeze_id = id;
                write_arg(arg, &a)?;
                Ok(0)
            }
            0x02 => {
                let (mut a, _) = read_arg::<b::seuss_wait>(arg)?;
                must_be_zero(a.flags as u64)?;
                let f = this.find(a.freeze_id)?;
                let (state, ip) = f.wait(a.timeout_ms)?;
                a.state = state as u32;
                a.ip = ip;
                write_arg(arg, &a)?;
                Ok(0)
            }
            0x03 => {
                let (mut a, _) = read_arg::<b::seuss_capture>(arg)?;
                must_be_zero(a.flags as u64)?;
                let f = this.find(a.freeze_id)?;
                a.snap_id = f.capture()?;
                write_arg(arg, &a)?;
                Ok(0)
            }
            0x04 => {
                let (a, _) = read_arg::<b::seuss_release_task>(arg)?;
                if a.flags & !b::SEUSS_RELEASE_KILL != 0 {
                    return Err(EINVAL);
                }
                let f = this.take(a.freeze_id)?;
                f.release(a.flags & b::SEUSS_RELEASE_KILL != 0);
                crate::armed::remove(f.task.as_ptr() as usize);
                Ok(0)
            }
            0x05 => {
                let (a, _) = read_arg::<b::seuss_deploy>(arg)?;
                crate::deploy::deploy(&a)
            }
            0x06 => {
                let (mut a, _) = read_arg::<b::seuss_snap_info>(arg)?;
                must_be_zero(a.flags as u64)?;
                let s = reg.find(a.snap_id)?;
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
                write_arg(arg, &a)?;
                Ok(0)
            }
            0x07 => {
                let (mut a, _) = read_arg::<b::seuss_snap_list>(arg)?;
                must_be_zero(a.flags as u64)?;
                let ids = reg.ids()?;
                let n = ids.len().min(a.capacity as usize);
                if n > 0 {
                    write_u64s(a.ids_addr as usize, &ids[..n])?;
                }
                a.count = ids.len() as u32;
                write_arg(arg, &a)?;
                Ok(0)
            }
            0x08 => {
                let (a, _) = read_arg::<b::seuss_snap_release>(arg)?;
                must_be_zero(a.flags as u64)?;
                reg.release(a.snap_id)?;
                Ok(0)
            }
            0x09 => {
                let (mut a, _) = read_arg::<b::seuss_dirty>(arg)?;
                must_be_zero(a.flags as u64 | a.reserved as u64)?;
                let task = TaskRef::from_pid(a.pid)?;
                if !task.may_read() {
                    return Err(EPERM);
                }
                let m = mm::task_mm(&task).ok_or(ESRCH)?;
                let snap = reg.instance_snapshot(m.as_ptr()).ok_or(ENOENT)?;
                let counts = m.count_pages()?;
                // Only a leaf's instances all do the same thing (a runtime snapshot's children each load a
                // different function: prefaulting one's touches into the next would bloat its diff).
                let leaf = snap.children.load(core::sync::atomic::Ordering::Relaxed) == 0;
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
            0x0a => {
                let (mut a, _) = read_arg::<b::seuss_stats>(arg)?;
                must_be_zero(a.flags as u64)?;
                a.snapshots = reg.snapshot_count();
                a.pages_held = reg.pages_held.load(Ordering::Relaxed);
                a.max_pages = param::max_pages();
                a.deploys = reg.deploys.load(Ordering::Relaxed);
                a.instances = reg.instance_count();
                a.frozen = crate::armed::count();
                write_arg(arg, &a)?;
                Ok(0)
            }
            _ => Err(ENOTTY),
        }
    }
}
