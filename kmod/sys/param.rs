// SPDX-License-Identifier: GPL-2.0
//! The module parameters `max_pages`, `prefault` and `share_unchanged` (6.12's Rust `module!` has no
//! parameters, so this declares each `kernel_param` by hand, as C's `module_param(name, ulong, 0644)`
//! would).

use kernel::bindings;

use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

// Each value is an `AtomicU64` (the layout of C's `unsigned long` on x86_64) that param_ops_ulong stores
// to through sysfs with a plain aligned word store; Rust reads it atomically: no `static mut`.

/// Cap on pages held by all snapshots; 0 = no cap. Default: 1 Mi pages (4 GiB).
static MAX_PAGES: AtomicU64 = AtomicU64::new(1 << 20);

/// The current value of `max_pages` (it can change at runtime through sysfs).
pub(crate) fn max_pages() -> u64 {
    MAX_PAGES.load(Relaxed)
}

/// What deploys fault in ahead of time, from what a snapshot's first measured instance touched: bit
/// [`PREFAULT_WRITES`], the pages it wrote (copy-on-write broken up front); bit [`PREFAULT_READS`], the
/// file pages it read where a deploy copies no page tables (program text). 0 leaves everything to page
/// faults (and records nothing).
static PREFAULT: AtomicU64 = AtomicU64::new(3);

/// The `prefault` bit for the pages an instance wrote.
pub(crate) const PREFAULT_WRITES: u64 = 1;
/// The `prefault` bit for the file pages an instance read.
pub(crate) const PREFAULT_READS: u64 = 2;

/// The current value of `prefault`.
pub(crate) fn prefault() -> u64 {
    PREFAULT.load(Relaxed)
}

/// Whether a capture gives the instance's unchanged private pages back to the parent snapshot (1, the
/// default) or stores every page the instance copied (0).
static SHARE_UNCHANGED: AtomicU64 = AtomicU64::new(1);

/// The current value of `share_unchanged`.
pub(crate) fn share_unchanged() -> bool {
    SHARE_UNCHANGED.load(Relaxed) != 0
}

#[repr(transparent)]
struct Param(bindings::kernel_param);
// SAFETY: the param descriptor is immutable; the kernel serialises access to the value itself.
unsafe impl Sync for Param {}

// Only the address of `__this_module` is taken. Without lockdep, `struct module` holds an empty
// `lockdep_map`, which the FFI-safety lint flags although nothing of it crosses the boundary by value.
#[allow(improper_ctypes)]
extern "C" {
    static __this_module: bindings::module;
}

/// Declares a `ulong` module parameter `$name` (0644) backed by the static `$value`.
macro_rules! ulong_param {
    ($item:ident, $name:literal, $value:ident) => {
        #[link_section = "__param"]
        #[used]
        static $item: Param = Param(bindings::kernel_param {
            name: $name.as_ptr() as *const _,
            // The module's own `struct module`, as THIS_MODULE is in C.
            mod_: core::ptr::addr_of!(__this_module) as *mut _,
            ops: core::ptr::addr_of!(bindings::param_ops_ulong),
            perm: 0o644,
            level: -1,
            flags: 0,
            __bindgen_anon_1: bindings::kernel_param__bindgen_ty_1 {
                // The address of our static value, which lives as long as the module.
                arg: $value.as_ptr() as *mut core::ffi::c_void,
            },
        });
    };
}

ulong_param!(PARAM_MAX_PAGES, c"max_pages", MAX_PAGES);
ulong_param!(PARAM_PREFAULT, c"prefault", PREFAULT);
ulong_param!(PARAM_SHARE_UNCHANGED, c"share_unchanged", SHARE_UNCHANGED);

// No `parmtype=`/`parm=` modinfo strings: a second `.modinfo` section from this crate would hide the
// one `module!` emits from modpost. `modinfo` therefore lists the parameter without a description.
