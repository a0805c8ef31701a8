// SPDX-License-Identifier: GPL-2.0
//! Copying ioctl argument structs and small values between user and kernel memory.
//!
//! Every ABI struct starts with `u32 size; u32 flags;`. [`read_arg`] accepts any `size` from the struct's
//! first version up; a larger struct from newer userspace is accepted only if the bytes we don't know are
//! zero (like `copy_struct_from_user`). [`write_arg`] writes back at most `size` bytes.

use kernel::bindings;
use kernel::error::{code::*, Result};
use kernel::uaccess::UserSlice;

/// Marker for the uapi structs: plain `#[repr(C)]` integers, every bit pattern valid, no padding.
///
/// # Safety
/// Implementors must be exactly that.
pub(crate) unsafe trait Pod: Copy + 'static {}

// SAFETY: generated from uapi/include/linux/seuss.h: fixed-size integer fields only, explicitly padded.
unsafe impl Pod for bindings::seuss_version {}
// SAFETY: as above.
unsafe impl Pod for bindings::seuss_arm {}
// SAFETY: as above.
unsafe impl Pod for bindings::seuss_wait {}
// SAFETY: as above.
unsafe impl Pod for bindings::seuss_capture {}
// SAFETY: as above.
unsafe impl Pod for bindings::seuss_release_task {}
// SAFETY: as above.
unsafe impl Pod for bindings::seuss_deploy {}
// SAFETY: as above.
unsafe impl Pod for bindings::seuss_snap_info {}
// SAFETY: as above.
unsafe impl Pod for bindings::seuss_snap_list {}
// SAFETY: as above.
unsafe impl Pod for bindings::seuss_snap_release {}
// SAFETY: as above.
unsafe impl Pod for bindings::seuss_dirty {}
// SAFETY: as above.
unsafe impl Pod for bindings::seuss_stats {}

fn as_bytes_mut<T: Pod>(v: &mut T) -> &mut [u8] {
    // SAFETY: T is Pod: any byte pattern is a valid T and it has no padding.
    unsafe { core::slice::from_raw_parts_mut(v as *mut T as *mut u8, core::mem::size_of::<T>()) }
}

fn as_bytes<T: Pod>(v: &T) -> &[u8] {
    // SAFETY: T is Pod (no padding, so every byte is initialised).
    unsafe { core::slice::from_raw_parts(v as *const T as *const u8, core::mem::size_of::<T>()) }
}

/// Reads an argument struct of type `T` from user address `uptr`. Returns it and the caller's `size`.
pub(crate) fn read_arg<T: Pod>(uptr: usize) -> Result<(T, usize)> {
    let mut size_bytes = [0u8; 4];
    UserSlice::new(uptr, 4).reader().read_slice(&mut size_bytes)?;
    let usize_ = u32::from_ne_bytes(size_bytes) as usize;
    let ksize = core::mem::size_of::<T>();
    if usize_ < ksize {
        // Every struct is at its first version: anything smaller is malformed.
        return Err(EINVAL);
    }
    if usize_ > 4096 {
        return Err(E2BIG);
    }
    // SAFETY: T is Pod, so all-zero is a valid value.
    let mut v: T = unsafe { core::mem::zeroed() };
    let mut r = UserSlice::new(uptr, usize_).reader();
    r.read_slice(as_bytes_mut(&mut v))?;
    // Unknown trailing bytes must be zero.
    let mut rest = [0u8; 64];
    let mut left = usize_ - ksize;
    while left > 0 {
        let n = left.min(rest.len());
        r.read_slice(&mut rest[..n])?;
        if rest[..n].iter().any(|b| *b != 0) {
            return Err(E2BIG);
        }
        left -= n;
    }
    Ok((v, usize_))
}

/// Writes `v` back to user address `uptr` (our struct size; the caller's tail stays untouched).
pub(crate) fn write_arg<T: Pod>(uptr: usize, v: &T) -> Result {
    UserSlice::new(uptr, core::mem::size_of::<T>()).writer().write_slice(as_bytes(v))
}

/// Writes a `u64` array to user memory.
pub(crate) fn write_u64s(uptr: usize, vals: &[u64]) -> Result {
    // SAFETY: u64 has no padding; viewing the slice as bytes is sound.
    let bytes = unsafe { core::slice::from_raw_parts(vals.as_ptr() as *const u8, vals.len() * 8) };
    UserSlice::new(uptr, bytes.len()).writer().write_slice(bytes)
}

/// Writes a `u32` to user memory (of the current mm).
pub(crate) fn put_u32(uptr: usize, v: u32) -> Result {
    UserSlice::new(uptr, 4).writer().write_slice(&v.to_ne_bytes())
}

/// Writes a `u64` to user memory (of the current mm).
pub(crate) fn put_u64(uptr: usize, v: u64) -> Result {
    UserSlice::new(uptr, 8).writer().write_slice(&v.to_ne_bytes())
}

/// Fails with EINVAL unless `x` is zero (for flags and reserved fields).
pub(crate) fn must_be_zero(x: u64) -> Result {
    if x != 0 { Err(EINVAL) } else { Ok(()) }
}
