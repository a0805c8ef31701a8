//! Argument memory with guard pages, one arena per worker thread, for putting an ioctl argument (or an
//! array a nested pointer names) where a case wants it: in mapped memory at any alignment, flush against
//! an unmapped page, straddling into it, in a read-only page, or at an address that maps nothing.
//!
//! Layout (pages): 0-2 read-write "arg" area, 3 none, 4-5 read-write "nested" area, 6 none, 7 read-only,
//! 8 none.

const PAGE: usize = 4096;
const PAGES: usize = 9;
/// Bytes of the arg area (room for structs larger than the 4096 bytes the kernel may accept).
pub const ARG_BYTES: usize = 3 * PAGE;
const NESTED_OFF: usize = 4 * PAGE;
/// Bytes of the nested area.
pub const NESTED_BYTES: usize = 2 * PAGE;
const RO_OFF: usize = 7 * PAGE;

/// Where to put bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// In the area, this many bytes past its start (any alignment).
    At(usize),
    /// Ending exactly where the unmapped page begins.
    FlushEnd,
    /// Starting this many bytes before the unmapped page, running into it (only those bytes are written).
    Straddle(usize),
    /// In the read-only page, this many bytes past its start.
    ReadOnly(usize),
    /// Inside an unmapped guard page.
    Guard,
    /// A fixed address that is not ours (NULL, kernel, non-canonical...); nothing is written.
    Raw(u64),
}

/// The mapping.
pub struct Arena {
    base: *mut u8,
}

impl Arena {
    /// Maps a fresh arena.
    pub fn new() -> Arena {
        // SAFETY: a fresh private anonymous mapping, protections changed only within it.
        unsafe {
            let p = libc::mmap(std::ptr::null_mut(), PAGES * PAGE, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0);
            assert!(p != libc::MAP_FAILED, "arena mmap");
            let b = p as *mut u8;
            for g in [3, 6, 8] {
                libc::mprotect(b.add(g * PAGE) as *mut _, PAGE, libc::PROT_NONE);
            }
            libc::mprotect(b.add(RO_OFF) as *mut _, PAGE, libc::PROT_READ);
            Arena { base: b }
        }
    }

    /// Start of the arg area (for stubs that must keep the memory they were given).
    pub fn arg_base(&self) -> u64 {
        self.base as u64
    }

    /// Address of the first guard page (unmapped).
    pub fn guard_addr(&self) -> u64 {
        self.base as u64 + ARG_BYTES as u64 + 64
    }

    /// Address of the read-only page.
    pub fn ro_addr(&self) -> u64 {
        self.base as u64 + RO_OFF as u64
    }

    /// Puts `bytes` in the arg area at `place`; returns the address to pass.
    pub fn put_arg(&mut self, bytes: &[u8], place: Place) -> u64 {
        self.put(0, ARG_BYTES, bytes, place)
    }

    /// Puts `bytes` in the nested area at `place`; returns the address to pass.
    pub fn put_nested(&mut self, bytes: &[u8], place: Place) -> u64 {
        self.put(NESTED_OFF, NESTED_BYTES, bytes, place)
    }

    fn put(&mut self, off: usize, len: usize, bytes: &[u8], place: Place) -> u64 {
        let area = self.base as u64 + off as u64;
        let (addr, n) = match place {
            Place::At(skip) => (area + skip.min(len - bytes.len().min(len)) as u64, bytes.len().min(len)),
            Place::FlushEnd => (area + (len - bytes.len().min(len)) as u64, bytes.len().min(len)),
            Place::Straddle(k) => (area + (len - k.min(len)) as u64, k.min(bytes.len()).min(len)),
            Place::ReadOnly(skip) => {
                let skip = skip.min(PAGE - bytes.len().min(PAGE));
                let n = bytes.len().min(PAGE);
                // SAFETY: the read-only page of this arena is made writable for the copy, then read-only again.
                unsafe {
                    let ro = self.base.add(RO_OFF);
                    libc::mprotect(ro as *mut _, PAGE, libc::PROT_READ | libc::PROT_WRITE);
                    std::ptr::copy_nonoverlapping(bytes.as_ptr(), ro.add(skip), n);
                    libc::mprotect(ro as *mut _, PAGE, libc::PROT_READ);
                }
                return self.ro_addr() + skip as u64;
            }
            Place::Guard => return self.guard_addr(),
            Place::Raw(a) => return a,
        };
        // SAFETY: [addr, addr + n) lies inside this arena's read-write area `off..off + len`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, n) };
        addr
    }

    /// Reads `len` bytes back from an address [`Arena::put_arg`] or [`Arena::put_nested`] returned for a
    /// readable place (`At`, `FlushEnd`, `ReadOnly`); `None` for any other address.
    pub fn read(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let b = self.base as u64;
        let inside = |lo: u64, n: usize| addr >= lo && addr + len as u64 <= lo + n as u64;
        if !(inside(b, ARG_BYTES) || inside(b + NESTED_OFF as u64, NESTED_BYTES) || inside(b + RO_OFF as u64, PAGE)) {
            return None;
        }
        let mut v = vec![0u8; len];
        // SAFETY: checked above that the range lies in a readable part of this arena.
        unsafe { std::ptr::copy_nonoverlapping(addr as *const u8, v.as_mut_ptr(), len) };
        Some(v)
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; nothing refers to it after drop.
        unsafe { libc::munmap(self.base as *mut _, PAGES * PAGE) };
    }
}
