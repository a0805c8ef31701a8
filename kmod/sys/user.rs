// SPDX-License-Identifier: GPL-2.0
//! Copying ioctl argument structs and small values between user and kernel memory, with the `kernel`
//! crate's `UserSlice` readers and writers.
//!
//! Every ABI struct starts with `u32 size; u32 flags;`. [`read_arg`] accepts any `size` from the struct's
//! first version up; a larger struct from newer userspace is accepted only if the bytes we don't know are
//! zero (like `copy_struct_from_user`). [`write_arg`] writes back our struct's size (the caller's tail
//! stays untouched).

use kernel::bindings;
use kernel::error::{code::*, Result};
use kernel::types::{AsBytes, FromBytes};
use kernel::uaccess::UserSlice;

/// Marker for the uapi structs.
///
/// # Safety
/// Implementors must be plain `#[repr(C)]` structs of fixed-size integers without padding, so that every
/// bit pattern is a valid value and every byte is initialised.
pub(crate) unsafe trait Abi: Copy + 'static {}

// SAFETY: generated from uapi/include/linux/seuss.h: fixed-size integer fields only, explicitly padded.
unsafe impl Abi for bindings::seuss_version {}
// SAFETY: as above.
unsafe impl Abi for bindings::seuss_arm {}
// SAFETY: as above.
unsafe impl Abi for bindings::seuss_wait {}
// SAFETY: as above.
unsafe impl Abi for bindings::seuss_capture {}
// SAFETY: as above.
unsafe impl Abi for bindings::seuss_release_task {}
// SAFETY: as above.
unsafe impl Abi for bindings::seuss_deploy {}
// SAFETY: as above.
unsafe impl Abi for bindings::seuss_snap_info {}
// SAFETY: as above.
unsafe impl Abi for bindings::seuss_snap_list {}
// SAFETY: as above.
unsafe impl Abi for bindings::seuss_snap_release {}
// SAFETY: as above.
unsafe impl Abi for bindings::seuss_dirty {}
// SAFETY: as above.
unsafe impl Abi for bindings::seuss_stats {}

/// A uapi struct as the `kernel` crate's user-copy traits see it (the orphan rule forbids implementing
/// them on the bindings' types directly).
#[repr(transparent)]
#[derive(Clone, Copy)]
struct Arg<T: Abi>(T);

// SAFETY: `T: Abi`: every bit pattern is a valid `T`, and `Arg` is transparent.
unsafe impl<T: Abi> FromBytes for Arg<T> {}
// SAFETY: `T: Abi`: no padding, every byte initialised, and `Arg` is transparent.
unsafe impl<T: Abi> AsBytes for Arg<T> {}

/// Largest argument struct accepted from newer userspace.
const MAX_ARG: usize = 4096;

/// Reads an argument struct of type `T` from user address `uptr`.
pub(crate) fn read_arg<T: Abi>(uptr: usize) -> Result<T> {
    let usize_ = UserSlice::new(uptr, 4).reader().read::<u32>()? as usize;
    let ksize = core::mem::size_of::<T>();
    if usize_ < ksize {
        // Every struct is at its first version: anything smaller is malformed.
        return Err(EINVAL);
    }
    if usize_ > MAX_ARG {
        return Err(E2BIG);
    }
    let mut r = UserSlice::new(uptr, usize_).reader();
    let v = r.read::<Arg<T>>()?.0;
    // Unknown trailing bytes must be zero.
    let mut rest = [0u8; 64];
    while !r.is_empty() {
        let n = r.len().min(rest.len());
        r.read_slice(&mut rest[..n])?;
        if rest[..n].iter().any(|b| *b != 0) {
            return Err(E2BIG);
        }
    }
    Ok(v)
}

/// Writes `v` back to user address `uptr`.
pub(crate) fn write_arg<T: Abi>(uptr: usize, v: &T) -> Result {
    UserSlice::new(uptr, core::mem::size_of::<T>()).writer().write(&Arg(*v))
}

/// Writes a `u64` array to user memory.
pub(crate) fn write_u64s(uptr: usize, vals: &[u64]) -> Result {
    let len = vals.len().checked_mul(8).ok_or(EFAULT)?;
    let mut w = UserSlice::new(uptr, len).writer();
    for v in vals {
        w.write(v)?;
    }
    Ok(())
}

/// Writes a `u32` to user memory (of the current mm).
pub(crate) fn put_u32(uptr: usize, v: u32) -> Result {
    UserSlice::new(uptr, 4).writer().write(&v)
}

/// Writes a `u64` to user memory (of the current mm).
pub(crate) fn put_u64(uptr: usize, v: u64) -> Result {
    UserSlice::new(uptr, 8).writer().write(&v)
}

/// Fails with EINVAL unless `x` is zero (for flags and reserved fields).
pub(crate) fn must_be_zero(x: u64) -> Result {
    if x != 0 { Err(EINVAL) } else { Ok(()) }
}
