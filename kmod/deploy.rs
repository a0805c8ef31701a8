// SPDX-License-Identifier: GPL-2.0
//! DEPLOY, run in the stub's ioctl: replace the caller's address space with a copy-on-write child of a
//! snapshot, give it the snapshot's registers and per-task state, and return into the saved context.
//! The caller keeps its pid, credentials, files, cgroup and namespaces.

use core::sync::atomic::Ordering;
use kernel::bindings;
use kernel::error::{code::*, Result};

use crate::registry::{self, Instance};
use crate::sys::{cpu, mm, param, task, user};

/// Performs a deploy request; `Ok(ax)` is what the snapshot's context sees as the ioctl's result.
pub(crate) fn deploy(a: &bindings::seuss_deploy) -> Result<isize> {
    let known = bindings::SEUSS_DEPLOY_TID | bindings::SEUSS_DEPLOY_COOKIE;
    if a.flags & !known != 0 {
        return Err(EINVAL);
    }
    let want_tid = a.flags & bindings::SEUSS_DEPLOY_TID != 0;
    let want_cookie = a.flags & bindings::SEUSS_DEPLOY_COOKIE != 0;
    // SAFETY: no preconditions.
    let limit = unsafe { bindings::seuss_task_size_max() } as u64;
    if (want_tid && (a.tid_addr % 4 != 0 || a.tid_addr == 0 || a.tid_addr >= limit))
        || (want_cookie && (a.cookie_addr % 8 != 0 || a.cookie_addr == 0 || a.cookie_addr >= limit))
    {
        return Err(EFAULT);
    }
    let reg = registry::get();
    let snap = reg.find(a.snap_id)?;
    if task::current_kuid() != snap.uid && !task::current_is_admin() {
        return Err(EPERM);
    }
    task::current_can_be_replaced()?;
    // Point of no return: on success the caller's old address space is gone.
    let grab = snap.mm.deploy_into_current()?;
    snap.deployed.fetch_add(1, Ordering::Relaxed);
    reg.deploys.fetch_add(1, Ordering::Relaxed);
    let me = task::TaskRef::current();
    if let Err(e) = reg.add_instance(Instance { mm: grab, snap: snap.clone() }) {
        me.kill();
        return Err(e);
    }
    let ax = match cpu::restore_current(&snap.state) {
        Ok(ax) => ax,
        Err(e) => {
            // Half-restored: this process can only die.
            me.kill();
            return Err(e);
        }
    };
    let post = (|| -> Result {
        if want_tid {
            user::put_u32(a.tid_addr as usize, task::current_pid_vnr() as u32)?;
        }
        if want_cookie {
            user::put_u64(a.cookie_addr as usize, a.cookie)?;
        }
        Ok(())
    })();
    if let Err(e) = post {
        me.kill();
        return Err(e);
    }
    // Copy now what instances of this snapshot write anyway, and map the program text they run, instead
    // of one fault at a time later.
    let pf = param::prefault();
    if pf != 0 {
        if let Some(pages) = snap.touch_set.get() {
            mm::prefault_current(pages, pf & param::PREFAULT_WRITES != 0, pf & param::PREFAULT_READS != 0);
        }
    }
    Ok(ax as isize)
}
