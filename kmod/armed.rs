// SPDX-License-Identifier: GPL-2.0
//! The set of processes (keyed by their mm) that are armed or frozen right now, module-wide, so a process
//! is never armed twice.
//! A leaf lock: nothing else is taken while it is held.

use core::pin::Pin;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::alloc::{flags::GFP_KERNEL, KBox, KVec};
use kernel::error::Result;
use kernel::init::InPlaceInit;
use kernel::new_mutex;
use kernel::sync::Mutex;

type Set = Mutex<KVec<usize>>;
static SET: AtomicPtr<Set> = AtomicPtr::new(core::ptr::null_mut());

/// Creates the set (module init).
pub(crate) fn install() -> Result<Pin<KBox<Set>>> {
    let s = KBox::pin_init(new_mutex!(KVec::new(), "seuss:armed"), GFP_KERNEL)?;
    SET.store(&*s as *const Set as *mut Set, Ordering::Release);
    Ok(s)
}

fn set() -> &'static Set {
    // SAFETY: installed at init before the device exists, owned by the module until exit.
    unsafe { &*SET.load(Ordering::Acquire) }
}

/// Adds `key`; `Ok(false)` if it was already present.
pub(crate) fn insert(key: usize) -> Result<bool> {
    let mut v = set().lock();
    if v.iter().any(|k| *k == key) {
        return Ok(false);
    }
    v.push(key, GFP_KERNEL)?;
    Ok(true)
}

/// Removes `key` if present.
pub(crate) fn remove(key: usize) {
    let mut v = set().lock();
    if let Some(i) = v.iter().position(|k| *k == key) {
        let _ = crate::sys::vec::swap_remove(&mut v, i);
    }
}

/// Number of armed tasks.
pub(crate) fn count() -> u64 {
    set().lock().len() as u64
}
