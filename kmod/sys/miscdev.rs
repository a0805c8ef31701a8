// SPDX-License-Identifier: GPL-2.0
//! A misc character device whose open files each own a Rust object implementing [`FileOps`].
//!
//! `open` creates the object and keeps it in `file->private_data` (as `Arc::into_raw`); `release` drops it;
//! `unlocked_ioctl` calls [`FileOps::ioctl`] and turns its `Result` into an errno in exactly one place.

use core::marker::PhantomData;
use kernel::alloc::{flags::GFP_KERNEL, KBox};
use kernel::bindings;
use kernel::error::{Error, Result};
use kernel::str::CStr;
use kernel::sync::Arc;

/// What an open file of the device does.
pub(crate) trait FileOps: Send + Sync + Sized + 'static {
    /// Called on open.
    fn open() -> Result<Arc<Self>>;
    /// Called on ioctl; `Ok(v)` returns `v` to the caller.
    fn ioctl(this: &Arc<Self>, cmd: u32, arg: usize) -> Result<isize>;
    /// Called on the last close.
    fn release(this: Arc<Self>);
}

struct Inner {
    misc: bindings::miscdevice,
    fops: bindings::file_operations,
}

/// A registered misc device; deregistered on drop.
pub(crate) struct MiscDevice<T: FileOps> {
    inner: KBox<Inner>,
    _t: PhantomData<T>,
}

// SAFETY: the registration is only touched at register/deregister, in process context.
unsafe impl<T: FileOps> Send for MiscDevice<T> {}
// SAFETY: as above.
unsafe impl<T: FileOps> Sync for MiscDevice<T> {}

unsafe extern "C" fn open_tramp<T: FileOps>(_inode: *mut bindings::inode, file: *mut bindings::file) -> kernel::ffi::c_int {
    match T::open() {
        Ok(obj) => {
            // SAFETY: `file` is the file being opened; private_data is ours from now on.
            unsafe { (*file).private_data = Arc::into_raw(obj) as *mut core::ffi::c_void };
            0
        }
        Err(e) => e.to_errno(),
    }
}

unsafe extern "C" fn release_tramp<T: FileOps>(_inode: *mut bindings::inode, file: *mut bindings::file) -> kernel::ffi::c_int {
    // SAFETY: private_data was set by open_tramp from Arc::into_raw and is released exactly once here.
    let obj = unsafe { Arc::from_raw((*file).private_data as *const T) };
    T::release(obj);
    0
}

unsafe extern "C" fn ioctl_tramp<T: FileOps>(file: *mut bindings::file, cmd: kernel::ffi::c_uint, arg: kernel::ffi::c_ulong) -> kernel::ffi::c_long {
    // SAFETY: private_data holds an Arc<T> reference owned by the open file, which outlives this call;
    // ManuallyDrop keeps that reference (we only borrow it).
    let obj = core::mem::ManuallyDrop::new(unsafe { Arc::from_raw((*file).private_data as *const T) });
    match T::ioctl(&obj, cmd, arg as usize) {
        Ok(v) => v as kernel::ffi::c_long,
        Err(e) => e.to_errno() as kernel::ffi::c_long,
    }
}

impl<T: FileOps> MiscDevice<T> {
    /// Registers `/dev/<name>` with dynamic minor and the given mode.
    pub(crate) fn register(name: &'static CStr, mode: u16) -> Result<Self> {
        // SAFETY: both C structs are plain data for which all-zero is the default.
        let mut inner = KBox::new(Inner { misc: unsafe { core::mem::zeroed() }, fops: unsafe { core::mem::zeroed() } }, GFP_KERNEL)?;
        inner.fops.owner = crate::THIS_MODULE.as_ptr();
        inner.fops.open = Some(open_tramp::<T>);
        inner.fops.release = Some(release_tramp::<T>);
        inner.fops.unlocked_ioctl = Some(ioctl_tramp::<T>);
        inner.fops.compat_ioctl = None;
        inner.misc.minor = bindings::SEUSS_MISC_DYNAMIC_MINOR;
        inner.misc.name = name.as_char_ptr();
        inner.misc.mode = mode;
        inner.misc.fops = &inner.fops;
        // SAFETY: `inner` is boxed (stable address) and outlives the registration (deregistered in drop).
        let r = unsafe { bindings::misc_register(&mut inner.misc) };
        if r != 0 {
            return Err(Error::from_errno(r));
        }
        Ok(Self { inner, _t: PhantomData })
    }
}

impl<T: FileOps> Drop for MiscDevice<T> {
    fn drop(&mut self) {
        // SAFETY: registered in `register`.
        unsafe { bindings::misc_deregister(&mut self.inner.misc) };
    }
}
