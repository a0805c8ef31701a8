// SPDX-License-Identifier: GPL-2.0
//! `KVec` operations 6.12's kernel crate lacks.

use kernel::alloc::KVec;

/// Removes and returns element `i`, moving the last element into its place (order not kept); `None` if
/// `i` is out of bounds.
pub(crate) fn swap_remove<T>(v: &mut KVec<T>, i: usize) -> Option<T> {
    let len = v.len();
    if i >= len {
        return None;
    }
    let p = v.as_mut_ptr();
    // SAFETY: `i` and `len - 1` are in bounds; the element at `i` is read out exactly once, the last one
    // is moved into its slot, and the length shrinks so nothing is dropped twice.
    unsafe {
        let out = core::ptr::read(p.add(i));
        if i != len - 1 {
            core::ptr::copy_nonoverlapping(p.add(len - 1), p.add(i), 1);
        }
        v.set_len(len - 1);
        Some(out)
    }
}

/// A `KVec` that is set at most once and then only read, shareable between threads without a lock.
pub(crate) struct OnceVec<T>(core::sync::atomic::AtomicPtr<KVec<T>>);

impl<T> OnceVec<T> {
    pub(crate) const fn new() -> Self {
        Self(core::sync::atomic::AtomicPtr::new(core::ptr::null_mut()))
    }

    /// Stores `v` unless a value is there already (then `v` is dropped).
    pub(crate) fn set(&self, v: KVec<T>) {
        use core::sync::atomic::Ordering;
        let Ok(b) = kernel::alloc::KBox::new(v, kernel::alloc::flags::GFP_KERNEL) else { return };
        let p = kernel::alloc::KBox::into_raw(b);
        if self.0.compare_exchange(core::ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // SAFETY: `p` came from KBox::into_raw just above and was never published.
            drop(unsafe { kernel::alloc::KBox::from_raw(p) });
        }
    }

    /// The stored value, if any.
    pub(crate) fn get(&self) -> Option<&[T]> {
        let p = self.0.load(core::sync::atomic::Ordering::Acquire);
        // SAFETY: a published box is never changed or freed while `self` lives (only `drop` frees it).
        (!p.is_null()).then(|| unsafe { (&*p).as_slice() })
    }
}

impl<T> Drop for OnceVec<T> {
    fn drop(&mut self) {
        let p = *self.0.get_mut();
        if !p.is_null() {
            // SAFETY: published by `set` from KBox::into_raw; nothing else frees it.
            drop(unsafe { kernel::alloc::KBox::from_raw(p) });
        }
    }
}

// SAFETY: the pointee is only reached through `&self` reads after a release-ordered publish.
unsafe impl<T: Send + Sync> Sync for OnceVec<T> {}
// SAFETY: ownership of the boxed vector moves with the value.
unsafe impl<T: Send> Send for OnceVec<T> {}
