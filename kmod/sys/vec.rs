// SPDX-License-Identifier: GPL-2.0
//! `KVec` operations 6.12's kernel crate lacks.

use kernel::alloc::KVec;

/// Removes and returns element `i`, moving the last element into its place (order not kept).
///
/// Panics if `i` is out of bounds (callers pass an index they just found).
pub(crate) fn swap_remove<T>(v: &mut KVec<T>, i: usize) -> T {
    let len = v.len();
    assert!(i < len);
    let p = v.as_mut_ptr();
    // SAFETY: `i` and `len - 1` are in bounds; the element at `i` is read out exactly once, the last one
    // is moved into its slot, and the length shrinks so nothing is dropped twice.
    unsafe {
        let out = core::ptr::read(p.add(i));
        if i != len - 1 {
            core::ptr::copy_nonoverlapping(p.add(len - 1), p.add(i), 1);
        }
        v.set_len(len - 1);
        out
    }
}
