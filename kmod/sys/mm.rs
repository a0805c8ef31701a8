// SPDX-License-Identifier: GPL-2.0
//! Address spaces: the task-less snapshot mm, duplicating and swapping mms (the patched kernel's
//! `seuss_dup_mm`/`seuss_replace_current_mm`), page-table walks that count pages or list an instance's own
//! pages, faulting in ahead of time a list of pages, and sharing unchanged copies back.

use core::ptr::NonNull;
use kernel::alloc::{flags::GFP_ATOMIC, flags::GFP_KERNEL, flags::__GFP_NOWARN, KVec};
use kernel::bindings;
use kernel::error::{code::*, Result};

/// An owned `mm_users` reference on an address space (`mmput` on drop; process context only).
///
/// # Invariants
/// `self.0` is a valid mm on which this value holds one `mm_users` reference.
pub(crate) struct MmRef(NonNull<bindings::mm_struct>);

// SAFETY: mm references may be dropped from any process context; the mm is internally synchronised.
unsafe impl Send for MmRef {}
// SAFETY: shared access only reads through the kernel's own locking (walks take mmap_lock).
unsafe impl Sync for MmRef {}

impl MmRef {
    /// The mm's address, as an identity only (the key of the process's threads, which share it).
    pub(crate) fn identity(&self) -> usize {
        self.0.as_ptr() as usize
    }
}

impl MmRef {
    /// A copy-on-write duplicate of the calling task's own mm, owned by nobody (a snapshot).
    ///
    /// Must run in the context of the task that owns the mm (fork semantics: charges, `current->mm`).
    pub(crate) fn dup_current_for_snapshot() -> Result<Self> {
        // SAFETY: current->mm is the caller's live mm; seuss_dup_mm returns a new mm with one user or NULL.
        let mm = unsafe { bindings::seuss_dup_mm(current_mm_ptr(), core::ptr::null_mut()) };
        NonNull::new(mm).map(MmRef).ok_or(ENOMEM)
    }

    /// Makes a copy-on-write duplicate of `self` the caller's address space, as exec does. On success the
    /// caller's old mm is gone; returns a weak handle on the new one.
    pub(crate) fn deploy_into_current(&self) -> Result<MmGrab> {
        // SAFETY: `self` is a valid mm we hold a user reference on; current is the owner-to-be.
        let new = unsafe { bindings::seuss_dup_mm(self.0.as_ptr(), bindings::get_current()) };
        let new = NonNull::new(new).ok_or(ENOMEM)?;
        // SAFETY: `new` is an mm with one user and no task; grab a count before handing it over.
        unsafe { bindings::mmgrab(new.as_ptr()) };
        let grab = MmGrab(new);
        // SAFETY: `new` is fully set up; on success it becomes current->mm (taking over our user ref).
        let r = unsafe { bindings::seuss_replace_current_mm(new.as_ptr()) };
        if r != 0 {
            // SAFETY: on failure we still own the user reference.
            unsafe { bindings::mmput(new.as_ptr()) };
            return Err(kernel::error::Error::from_errno(r));
        }
        Ok(grab)
    }

    /// Whether `[addr, addr + len)` lies in one writable mapping of this mm.
    pub(crate) fn is_writable(&self, addr: u64, len: u64) -> bool {
        let Some(end) = addr.checked_add(len) else { return false };
        let mm = self.0.as_ptr();
        // SAFETY: we hold a user reference on `mm`; find_vma wants its mmap lock, held for the reads of
        // the VMA it returns.
        unsafe {
            bindings::mmap_read_lock(mm);
            let vma = bindings::find_vma(mm, addr as _);
            let ok = !vma.is_null() && {
                let r = (*vma).__bindgen_anon_1.__bindgen_anon_1;
                r.vm_start as u64 <= addr
                    && end <= r.vm_end as u64
                    && (*vma).__bindgen_anon_2.vm_flags & bindings::SEUSS_VM_WRITE != 0
            };
            bindings::mmap_read_unlock(mm);
            ok
        }
    }

    /// Page counts of this mm.
    pub(crate) fn count_pages(&self) -> Result<PageCounts> {
        count_pages(self.0.as_ptr())
    }

    /// What an instance touched since its deploy, as [`prefault_current`] takes it, at most `cap`
    /// entries in address order: the anonymous pages only this mm maps (what it wrote), and one page per
    /// 64 KiB window of file pages it mapped where a deploy copies no page tables (file mappings it never
    /// wrote: program text, read-only data), tagged [`READ`].
    pub(crate) fn touched_pages(&self, cap: usize) -> Result<KVec<u64>> {
        collect(self.0.as_ptr(), cap, true)
    }

    /// Bytes of page tables this mm holds.
    pub(crate) fn pgtable_bytes(&self) -> u64 {
        // SAFETY: valid mm.
        unsafe { bindings::mm_pgtables_bytes(self.0.as_ptr()) as u64 }
    }

    /// Raw pointer, for identity comparisons only.
    pub(crate) fn as_ptr(&self) -> *mut bindings::mm_struct {
        self.0.as_ptr()
    }
}

impl Drop for MmRef {
    fn drop(&mut self) {
        // SAFETY: by the invariant we own one user reference; we run in process context.
        unsafe { bindings::mmput(self.0.as_ptr()) };
    }
}

/// A weak handle (`mm_count`) on a deployed instance's mm: keeps the `mm_struct` allocated so its address
/// cannot be reused, but not its pages. `is_live` tells whether the address space still exists.
pub(crate) struct MmGrab(NonNull<bindings::mm_struct>);

// SAFETY: mmdrop may run in any process context; reads are of an atomic counter.
unsafe impl Send for MmGrab {}
// SAFETY: as above.
unsafe impl Sync for MmGrab {}

impl MmGrab {
    /// Whether the address space still has users (the instance has not exited).
    pub(crate) fn is_live(&self) -> bool {
        // SAFETY: we hold mm_count, so the struct is valid.
        unsafe { bindings::mm_users(self.0.as_ptr()) > 0 }
    }
    /// Raw pointer, for identity comparisons only.
    pub(crate) fn as_ptr(&self) -> *mut bindings::mm_struct {
        self.0.as_ptr()
    }
}

impl Drop for MmGrab {
    fn drop(&mut self) {
        // SAFETY: we hold one mm_count reference.
        unsafe { bindings::mmdrop(self.0.as_ptr()) };
    }
}

/// The mm of a task, if it still has one (`get_task_mm`), as an owned user reference.
pub(crate) fn task_mm(task: &super::task::TaskRef) -> Option<MmRef> {
    // SAFETY: referenced task; get_task_mm returns an mm with a user reference taken, or NULL.
    NonNull::new(unsafe { bindings::get_task_mm(task.as_ptr()) }).map(MmRef)
}

/// The caller's own mm pointer (identity only).
pub(crate) fn current_mm_ptr() -> *mut bindings::mm_struct {
    // SAFETY: reading current->mm of the running task.
    unsafe { bindings::seuss_task_mm(bindings::get_current()) }
}

/// Page counts from one walk of an mm.
#[derive(Default, Clone, Copy, Debug)]
pub(crate) struct PageCounts {
    /// Present or swapped-out user pages.
    pub(crate) mapped: u64,
    /// Anonymous pages (present or swapped).
    pub(crate) anon: u64,
    /// Anonymous pages only this mm maps (written or allocated since it was duplicated).
    pub(crate) exclusive: u64,
    /// VMAs seuss cannot capture correctly (see [`vma_unsupported`]).
    pub(crate) unsupported_vmas: u64,
}

extern "C" {
    // Exported by mm/shmem.c; its header is not among the Rust bindings.
    fn shmem_mapping(mapping: *mut core::ffi::c_void) -> bool;
}

/// Whether a VMA cannot be captured correctly: shared writable memory that is not a regular file
/// (anonymous shared, shmem, memfd, SysV shm), device mappings (I/O or PFN maps backed by a file), and
/// hugetlb. The [vvar] PFN mapping has no file and is accepted.
fn vma_unsupported(vma: *const bindings::vm_area_struct) -> bool {
    // SAFETY: called from a page walk, which holds the mmap lock and passes a valid VMA.
    let (flags, file) = unsafe { ((*vma).__bindgen_anon_2.vm_flags, (*vma).vm_file) };
    let shared_writable = flags & bindings::SEUSS_VM_SHARED != 0 && flags & bindings::SEUSS_VM_MAYWRITE != 0;
    // SAFETY: a mapped file stays valid while its VMA exists; shmem_mapping only compares a pointer.
    let shmem = !file.is_null() && unsafe { shmem_mapping((*file).f_mapping as *mut core::ffi::c_void) };
    if shared_writable && (file.is_null() || shmem) {
        return true;
    }
    let device = bindings::SEUSS_VM_IO | bindings::SEUSS_VM_PFNMAP | bindings::SEUSS_VM_MIXEDMAP;
    if flags & device != 0 && !file.is_null() {
        return true;
    }
    flags & bindings::SEUSS_VM_HUGETLB != 0
}

/// Tag (bit 0 of a page address) of a page to fault in for reading rather than writing.
pub(crate) const READ: u64 = 1;

/// What a collecting walk fills: the addresses (never past the vector's capacity: the walk runs under
/// PTE locks, where nothing may allocate) and, for `walk_test`, the counts.
#[repr(C)]
struct Collect<'a> {
    counts: PageCounts,
    v: &'a mut KVec<u64>,
    /// Also list file pages read where a deploy copies no page tables.
    reads: bool,
    /// The VMA being walked is such a mapping.
    in_read_vma: bool,
    /// The 64 KiB window of the last read page listed.
    last_window: u64,
}

/// Collects the addresses `Collect` describes from `mm`, at most `cap`.
fn collect(mm: *mut bindings::mm_struct, cap: usize, reads: bool) -> Result<KVec<u64>> {
    // Up to 128 KiB: may fail under memory pressure, which callers handle, without a warning splat.
    let mut v = KVec::with_capacity(cap, GFP_KERNEL | __GFP_NOWARN)?;
    let mut c = Collect { v: &mut v, counts: PageCounts::default(), reads, in_read_vma: false, last_window: u64::MAX };
    walk(mm, &COLLECT_OPS.0, &mut c as *mut _ as *mut core::ffi::c_void)?;
    Ok(v)
}

unsafe extern "C" fn collect_test(start: kernel::ffi::c_ulong, end: kernel::ffi::c_ulong, walk: *mut bindings::mm_walk) -> kernel::ffi::c_int {
    // SAFETY: `private` is a Collect whose first field is the PageCounts walk_test expects (repr above);
    // the walk's vma is valid during the callback.
    unsafe {
        let c = &mut *((*walk).private as *mut Collect<'_>);
        let vma = (*walk).vma;
        // fork-style duplication skips the page tables of VMAs with no anonymous pages (vma_needs_copy).
        c.in_read_vma = c.reads && !(*vma).vm_file.is_null() && (*vma).anon_vma.is_null();
        walk_test(start, end, walk)
    }
}

unsafe extern "C" fn collect_pte(pte: *mut bindings::pte_t, addr: kernel::ffi::c_ulong, _next: kernel::ffi::c_ulong, walk: *mut bindings::mm_walk) -> kernel::ffi::c_int {
    // SAFETY: called with the PTE lock held and a valid pte; `private` is our Collect.
    unsafe {
        let c = &mut *((*walk).private as *mut Collect<'_>);
        let kind = bindings::seuss_pte_kind(pte);
        let entry = if kind >= 3 {
            addr as u64
        } else if kind == 1 && c.in_read_vma && (addr as u64 >> 16) != c.last_window {
            // One read fault maps the page's whole fault-around window (64 KiB by default).
            c.last_window = addr as u64 >> 16;
            addr as u64 | READ
        } else {
            return 0;
        };
        if c.v.len() >= c.v.capacity() {
            return 1; // full: stop the walk
        }
        // Within capacity, so this does not allocate.
        let _ = c.v.push(entry, GFP_ATOMIC);
    }
    0
}

unsafe extern "C" fn walk_test(_start: kernel::ffi::c_ulong, _end: kernel::ffi::c_ulong, walk: *mut bindings::mm_walk) -> kernel::ffi::c_int {
    // SAFETY: walk_page_range passes a valid walk whose `private` is our PageCounts and whose vma is set.
    unsafe {
        let counts = &mut *((*walk).private as *mut PageCounts);
        if vma_unsupported((*walk).vma) {
            counts.unsupported_vmas += 1;
            return 1; // skip its pages
        }
    }
    0
}

/// Pages a PMD-mapped huge page spans.
const PMD_PAGES: u64 = bindings::SEUSS_PMD_PAGES as u64;

/// Adds `n` pages of the kind `seuss_pte_kind` / `seuss_pmd_kind` reported to `counts`.
fn count_kind(counts: &mut PageCounts, kind: i32, n: u64) {
    match kind {
        0 => {}
        1 => counts.mapped += n,
        2 | 4 => {
            counts.mapped += n;
            counts.anon += n;
        }
        _ => {
            counts.mapped += n;
            counts.anon += n;
            counts.exclusive += n;
        }
    }
}

/// A walk's `pmd_entry`: counts a PMD-mapped transparent huge page whole, so the walk never splits it
/// (without a `pmd_entry`, a walk with a `pte_entry` splits every huge PMD it meets).
unsafe extern "C" fn walk_pmd(pmd: *mut bindings::pmd_t, _addr: kernel::ffi::c_ulong, _next: kernel::ffi::c_ulong, walk: *mut bindings::mm_walk) -> kernel::ffi::c_int {
    // SAFETY: walk_page_range passes a valid pmd and walk (mmap lock held); `private` is our
    // PageCounts (or a Collect, whose first field it is).
    unsafe {
        let kind = bindings::seuss_pmd_kind(pmd, walk);
        if kind >= 0 {
            count_kind(&mut *((*walk).private as *mut PageCounts), kind, PMD_PAGES);
        }
    }
    0
}

unsafe extern "C" fn walk_pte(pte: *mut bindings::pte_t, _addr: kernel::ffi::c_ulong, _next: kernel::ffi::c_ulong, walk: *mut bindings::mm_walk) -> kernel::ffi::c_int {
    // SAFETY: called with the PTE lock held and a valid pte; `private` is our PageCounts.
    unsafe { count_kind(&mut *((*walk).private as *mut PageCounts), bindings::seuss_pte_kind(pte), 1) };
    0
}

struct WalkOps(bindings::mm_walk_ops);
// SAFETY: the ops table is immutable after construction.
unsafe impl Sync for WalkOps {}

static COUNT_OPS: WalkOps = WalkOps(bindings::mm_walk_ops {
    pgd_entry: None,
    p4d_entry: None,
    pud_entry: None,
    pmd_entry: Some(walk_pmd),
    pte_entry: Some(walk_pte),
    pte_hole: None,
    hugetlb_entry: None,
    test_walk: Some(walk_test),
    pre_vma: None,
    post_vma: None,
    walk_lock: bindings::page_walk_lock_PGWALK_RDLOCK,
});

static COLLECT_OPS: WalkOps = WalkOps(bindings::mm_walk_ops {
    pgd_entry: None,
    p4d_entry: None,
    pud_entry: None,
    // Huge pages are counted whole and not listed (their copy-on-write is one fault; sharing them back
    // page by page would split them).
    pmd_entry: Some(walk_pmd),
    pte_entry: Some(collect_pte),
    pte_hole: None,
    hugetlb_entry: None,
    test_walk: Some(collect_test),
    pre_vma: None,
    post_vma: None,
    walk_lock: bindings::page_walk_lock_PGWALK_RDLOCK,
});

/// Walks all of `mm`'s user range under its mmap read lock with `ops`.
fn walk(mm: *mut bindings::mm_struct, ops: &bindings::mm_walk_ops, private: *mut core::ffi::c_void) -> Result {
    // SAFETY: the caller holds a user reference on `mm`; we take its mmap lock for the walk as
    // PGWALK_RDLOCK requires; `private` outlives the walk.
    let r = unsafe {
        bindings::mmap_read_lock(mm);
        let r = bindings::walk_page_range(mm, 0, bindings::seuss_task_size_max(), ops, private);
        bindings::mmap_read_unlock(mm);
        r
    };
    // A positive return is a callback's early stop (a full collection), not an error.
    if r < 0 {
        return Err(kernel::error::Error::from_errno(r));
    }
    Ok(())
}

/// Counts the pages of `mm` under its mmap read lock.
fn count_pages(mm: *mut bindings::mm_struct) -> Result<PageCounts> {
    let mut counts = PageCounts::default();
    walk(mm, &COUNT_OPS.0, &mut counts as *mut _ as *mut core::ffi::c_void)?;
    Ok(counts)
}

/// Faults in ahead of time, in the caller's own mm, the pages of a list from [`MmRef::touched_pages`]:
/// with `writes`, breaks copy-on-write as a write would; with `reads`, maps the file pages tagged
/// [`READ`] as a read would (pages that are gone or not accessible that way are skipped). Returns how
/// many faults succeeded. Takes the caller's mmap lock; call with no seuss lock held.
pub(crate) fn prefault_current(addrs: &[u64], writes: bool, reads: bool) -> u64 {
    let mm = current_mm_ptr();
    let mut n = 0;
    // SAFETY: current->mm is the caller's live mm. fixup_user_fault wants the mmap lock held for read;
    // with a NULL `unlocked` it never drops it.
    unsafe {
        bindings::mmap_read_lock(mm);
        for &a in addrs {
            let read = a & READ != 0;
            if (read && !reads) || (!read && !writes) {
                continue;
            }
            let flags = if read { 0 } else { bindings::fault_flag_FAULT_FLAG_WRITE };
            let r = bindings::fixup_user_fault(mm, (a & !READ) as _, flags, core::ptr::null_mut());
            if r == 0 {
                n += 1;
            }
        }
        bindings::mmap_read_unlock(mm);
    }
    n
}

/// Most pages one capture compares with its parent's (the rest stay private): 64 MiB of writes.
const SHARE_MAX: usize = 16384;

/// Gives the caller's unchanged private pages back to `parent`, the snapshot its mm was deployed from:
/// wherever a page the caller copied still holds the parent's bytes, the parent's page is mapped again
/// (copy-on-write) and the copy freed (the patched kernel's `seuss_share_unchanged`). Returns how many.
/// Takes the two mmap locks one after the other; call with no seuss lock held.
pub(crate) fn share_unchanged_with(parent: &MmRef) -> Result<u64> {
    let mm = current_mm_ptr();
    let v = collect(mm, SHARE_MAX, false)?;
    // SAFETY: current->mm is the caller's live mm; `parent` holds a user reference on the snapshot's mm;
    // the address array is valid for its length and only read.
    let n = unsafe { bindings::seuss_share_unchanged(mm, parent.as_ptr(), v.as_ptr() as *const _, v.len() as _) };
    Ok(n as u64)
}

/// Counts the pages of the caller's own mm.
pub(crate) fn count_current_pages() -> Result<PageCounts> {
    count_pages(current_mm_ptr())
}
