// SPDX-License-Identifier: GPL-2.0
//! A misc character device whose open files each own a Rust object implementing [`FileOps`].
//!
//! `open` creates the object and keeps it in `file->private_data` (as `Arc::into_raw`); `release` drops it;
//! `unlocked_ioctl` calls [`FileOps::ioctl`] and turns its `Result` into an errno in exactly one place.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicPtr, Ordering};
use kernel::alloc::{flags::GFP_KERNEL, KBox};
use kernel::bindings;
use kernel::error::{Error, Result};
use kernel::str::CStr;
use kernel::sync::Arc;

/// What an open file of the device does.
pub(crate) trait FileOps: Send + Sync + Sized + 'static {
    /// Called on open.
    fn open() -> Result<Arc<Self>>;
    /// Called on every close of a descriptor of the file (and at exit); `owner` identifies the closing
    /// process's fd table, as [`crate::sys::task::current_files_id`] does.
    fn flush(this: &Arc<Self>, owner: usize);
    /// Called on ioctl through `file`; `Ok(v)` returns `v` to the caller.
    fn ioctl(this: &Arc<Self>, file: OpenFile, cmd: u32, arg: usize) -> Result<isize>;
    /// Called on the last close.
    fn release(this: Arc<Self>);
}

/// The open file an ioctl came through, valid for the duration of that call (identity only).
#[derive(Clone, Copy)]
pub(crate) struct OpenFile(*mut bindings::file);

extern "C" {
    // Exported by fs/file.c; <linux/fdtable.h> is not among the Rust bindings (only the helpers use it).
    fn iterate_fd(
        files: *mut bindings::files_struct,
        n: kernel::ffi::c_uint,
        f: unsafe extern "C" fn(*const core::ffi::c_void, *mut bindings::file, kernel::ffi::c_uint) -> kernel::ffi::c_int,
        p: *const core::ffi::c_void,
    ) -> kernel::ffi::c_int;
}

/// `iterate_fd` callback: non-zero when the descriptor names the file `p`.
unsafe extern "C" fn is_file(p: *const core::ffi::c_void, file: *mut bindings::file, _fd: kernel::ffi::c_uint) -> kernel::ffi::c_int {
    (file as *const core::ffi::c_void == p) as kernel::ffi::c_int
}

impl OpenFile {
    /// Whether a descriptor in the calling process's fd table still names this file. Takes the table's
    /// `file_lock` (a spinlock): a close that removes the descriptor (`pick_file()`, under that lock) is
    /// ordered before or after this look-up, and its `flush` runs only after the removal.
    pub(crate) fn installed_in_current(&self) -> bool {
        // SAFETY: the helper has no preconditions; it returns current's own fd table.
        let files = unsafe { bindings::seuss_current_files() };
        let file = self.0 as *const core::ffi::c_void;
        // SAFETY: `files` stays valid while current runs this ioctl (only current can replace it); iterate_fd
        // takes its lock and calls `is_file` on each open descriptor; `file` is compared, never dereferenced.
        unsafe { iterate_fd(files.cast(), 0, is_file, file) != 0 }
    }
}

/// The registered device's `file_operations` (identifies its files in an fd table); null when none.
static FOPS: AtomicPtr<bindings::file_operations> = AtomicPtr::new(core::ptr::null_mut());

/// Closes every descriptor of the calling process that is open on the device; returns how many. The
/// caller's fd table must be unshared. A file the caller is in an ioctl on stays valid until the ioctl
/// returns (its release is deferred to the return to user mode).
pub(crate) fn close_device_fds_of_current() -> u32 {
    let fops = FOPS.load(Ordering::Acquire);
    if fops.is_null() {
        return 0;
    }
    // SAFETY: `fops` is the registered device's table, alive while the module is (an open file of it
    // holds a module reference); the helper walks current's own fd table.
    unsafe { bindings::seuss_close_fds_of(fops) as u32 }
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

unsafe extern "C" fn flush_tramp<T: FileOps>(file: *mut bindings::file, id: bindings::fl_owner_t) -> kernel::ffi::c_int {
    // SAFETY: private_data holds an Arc<T> reference owned by the open file, which outlives this call;
    // ManuallyDrop keeps that reference (we only borrow it).
    let obj = core::mem::ManuallyDrop::new(unsafe { Arc::from_raw((*file).private_data as *const T) });
    T::flush(&obj, id as usize);
    0
}

unsafe extern "C" fn ioctl_tramp<T: FileOps>(file: *mut bindings::file, cmd: kernel::ffi::c_uint, arg: kernel::ffi::c_ulong) -> kernel::ffi::c_long {
    // SAFETY: private_data holds an Arc<T> reference owned by the open file, which outlives this call;
    // ManuallyDrop keeps that reference (we only borrow it).
    let obj = core::mem::ManuallyDrop::new(unsafe { Arc::from_raw((*file).private_data as *const T) });
    match T::ioctl(&obj, OpenFile(file), cmd, arg as usize) {
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
        inner.fops.flush = Some(flush_tramp::<T>);
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
        FOPS.store(&mut inner.fops, Ordering::Release);
        Ok(Self { inner, _t: PhantomData })
    }
}

impl<T: FileOps> Drop for MiscDevice<T> {
    fn drop(&mut self) {
        FOPS.store(core::ptr::null_mut(), Ordering::Release);
        // SAFETY: registered in `register`.
        unsafe { bindings::misc_deregister(&mut self.inner.misc) };
    }
}
