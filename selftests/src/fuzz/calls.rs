//! The ioctls as data (request number, struct size, defined flags, reserved and output fields), the
//! malformations the fuzzer applies to one call, and the verdict on what the kernel answered.
//!
//! A call carries at most one [`Fault`]. Faults in the envelope (request number, pointer, size, tail,
//! flags, reserved) have one right answer (the contract's ENOTTY, EFAULT, EINVAL, E2BIG), checked exactly
//! where nothing else can interfere; placements that are legal (misaligned, flush against an unmapped
//! page, a larger struct with a zero tail, garbage in output fields) must behave like a plain call.

use std::mem::size_of;

use uapi::request;

use super::arena::{Arena, Place, ARG_BYTES};
use super::report::{documented, errno_name};
use super::rng::Rng;

/// One ioctl of the ABI.
pub struct Spec {
    pub name: &'static str,
    pub req: u64,
    pub size: usize,
    /// Flag bits the ioctl defines.
    pub flags: u32,
    /// Offsets of u32 reserved fields.
    pub reserved: &'static [usize],
    /// (offset, length) of output-only fields.
    pub outs: &'static [(usize, usize)],
    /// Whether the kernel writes the struct back (`_IOWR`).
    pub writes_back: bool,
}

pub const VERSION: usize = 0;
pub const ARM: usize = 1;
pub const WAIT: usize = 2;
pub const CAPTURE: usize = 3;
pub const RESUME: usize = 4;
pub const DEPLOY: usize = 5;
pub const SNAP_INFO: usize = 6;
pub const SNAP_LIST: usize = 7;
pub const SNAP_RELEASE: usize = 8;
pub const DIRTY: usize = 9;
pub const STATS: usize = 10;

/// Every ioctl, indexed by the constants above.
pub static SPECS: [Spec; 11] = [
    Spec { name: "VERSION", req: request::VERSION, size: size_of::<uapi::seuss_version>(), flags: 0, reserved: &[12], outs: &[(8, 4), (16, 8)], writes_back: true },
    Spec { name: "ARM", req: request::ARM, size: size_of::<uapi::seuss_arm>(), flags: uapi::SEUSS_ARM_PIDFD, reserved: &[28], outs: &[(32, 8)], writes_back: true },
    Spec { name: "WAIT", req: request::WAIT, size: size_of::<uapi::seuss_wait>(), flags: 0, reserved: &[], outs: &[(20, 4), (24, 8)], writes_back: true },
    Spec { name: "CAPTURE", req: request::CAPTURE, size: size_of::<uapi::seuss_capture>(), flags: 0, reserved: &[], outs: &[(16, 8)], writes_back: true },
    Spec { name: "RESUME", req: request::RESUME, size: size_of::<uapi::seuss_release_task>(), flags: uapi::SEUSS_RELEASE_KILL, reserved: &[], outs: &[], writes_back: false },
    Spec { name: "DEPLOY", req: request::DEPLOY, size: size_of::<uapi::seuss_deploy>(), flags: uapi::SEUSS_DEPLOY_TID | uapi::SEUSS_DEPLOY_COOKIE, reserved: &[], outs: &[], writes_back: false },
    Spec { name: "SNAP_INFO", req: request::SNAP_INFO, size: size_of::<uapi::seuss_snap_info>(), flags: 0, reserved: &[], outs: &[(16, 72)], writes_back: true },
    Spec { name: "SNAP_LIST", req: request::SNAP_LIST, size: size_of::<uapi::seuss_snap_list>(), flags: 0, reserved: &[], outs: &[(20, 4)], writes_back: true },
    Spec { name: "SNAP_RELEASE", req: request::SNAP_RELEASE, size: size_of::<uapi::seuss_snap_release>(), flags: 0, reserved: &[], outs: &[], writes_back: false },
    Spec { name: "DIRTY", req: request::DIRTY, size: size_of::<uapi::seuss_dirty>(), flags: 0, reserved: &[12], outs: &[(16, 16)], writes_back: true },
    Spec { name: "STATS", req: request::STATS, size: size_of::<uapi::seuss_stats>(), flags: 0, reserved: &[], outs: &[(8, 48)], writes_back: true },
];

/// The bytes of a uapi struct.
pub fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
    // SAFETY: the uapi structs are plain integers without padding, so every byte is initialised.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }.to_vec()
}

/// A uapi struct read from bytes (at least `size_of::<T>()` of them).
pub fn from_bytes<T: Copy>(b: &[u8]) -> T {
    assert!(b.len() >= size_of::<T>());
    // SAFETY: length checked; any bit pattern is a valid uapi struct; unaligned read.
    unsafe { std::ptr::read_unaligned(b.as_ptr() as *const T) }
}

/// An all-zero uapi struct with `size` set (its first field).
pub fn blank<T: Copy>() -> T {
    // SAFETY: all-zero is valid for the plain-integer uapi structs.
    let mut v: T = unsafe { std::mem::zeroed() };
    // SAFETY: every uapi struct starts with `__u32 size`.
    unsafe { *(&mut v as *mut T as *mut u32) = size_of::<T>() as u32 };
    v
}

/// One malformation (or legal oddity) of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    None,
    /// Legal: the struct at an odd address.
    Misaligned(usize),
    /// Legal: the struct ends where an unmapped page begins.
    FlushEnd,
    /// Legal: size = exact + n, tail zero.
    TailZero(u32),
    /// Legal: output-only fields hold garbage on input.
    OutGarbage,
    /// ENOTTY: this request number instead (direction, size, number or magic changed).
    Number(u64),
    /// EFAULT: the argument pointer is this address.
    BadPtr(u64),
    /// EFAULT: the argument pointer points into an unmapped guard page.
    GuardPtr,
    /// EFAULT: only the first k bytes of the struct are mapped.
    Straddle(usize),
    /// EINVAL: size smaller than the struct.
    SizeSmall(u32),
    /// E2BIG: size = exact + n with tail byte `pos` non-zero.
    TailNonZero(u32, u32),
    /// A size above 4096 (zero tail where mapped): E2BIG/EINVAL, or accepted.
    SizeHuge(u32),
    /// EINVAL: these undefined flag bits set.
    Flag(u32),
    /// EINVAL: the reserved field at this offset non-zero.
    Reserved(usize),
    /// The struct in a read-only page: must fail (EFAULT) where the kernel writes it back.
    ReadOnly,
}

impl Fault {
    /// The fault's kind without its parameters (for classing failures).
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::None => "None",
            Fault::Misaligned(_) => "Misaligned",
            Fault::FlushEnd => "FlushEnd",
            Fault::TailZero(_) => "TailZero",
            Fault::OutGarbage => "OutGarbage",
            Fault::Number(_) => "Number",
            Fault::BadPtr(_) => "BadPtr",
            Fault::GuardPtr => "GuardPtr",
            Fault::Straddle(_) => "Straddle",
            Fault::SizeSmall(_) => "SizeSmall",
            Fault::TailNonZero(..) => "TailNonZero",
            Fault::SizeHuge(_) => "SizeHuge",
            Fault::Flag(_) => "Flag",
            Fault::Reserved(_) => "Reserved",
            Fault::ReadOnly => "ReadOnly",
        }
    }
}

/// Addresses no argument may be read from.
pub const BAD_ADDRS: &[u64] = &[
    0, 8, 0xfff, 0x1000, 0x10000, 0x0000_dead_0000_0000, 0x7fff_ffff_f000, 0x8000_0000_0000_0000,
    0xffff_8000_0000_0000, 0xffff_8000_0000_0001, 0xffff_ffff_8100_0000, u64::MAX - 7,
];

fn valid_numbers() -> impl Iterator<Item = u64> {
    SPECS.iter().map(|s| s.req)
}

/// `req` with its direction, size, number or magic changed, never another valid request.
fn wrong_number(rng: &mut Rng, req: u64) -> u64 {
    loop {
        let v = match rng.below(6) {
            0 => (req & !(3 << 30)) | (rng.below(4) << 30),
            1 => (req & !(0x3fff << 16)) | (rng.below(0x4000) << 16),
            2 => (req & !(0x3fff << 16)) | ((((req >> 16) & 0x3fff) + rng.pick(&[1, 0x3fff, 8, 0x3ff8])) & 0x3fff) << 16,
            3 => (req & !0xff) | rng.range(0x0b, 0xff),
            4 => (req & !0xff00) | (rng.pick(&[0x00u64, 0x01, 0xe4, 0xe6, 0xff, 0x53]) << 8),
            _ => req ^ (1 << rng.below(32)),
        };
        if v != req && !valid_numbers().any(|x| x == v) {
            return v;
        }
    }
}

/// A fault for one call of `spec` (about a quarter of the calls are plain).
pub fn pick_fault(rng: &mut Rng, spec: &Spec) -> Fault {
    let ks = spec.size as u64;
    let max_tail = 4096 - ks;
    let weights = [24, 5, 5, 5, 4, 8, 8, 3, 6, 8, 6, 4, 8, if spec.reserved.is_empty() { 0 } else { 5 }, 4];
    match rng.weighted(&weights) {
        0 => Fault::None,
        1 => Fault::Misaligned(rng.range(1, 7) as usize + 8 * rng.below(3) as usize),
        2 => Fault::FlushEnd,
        3 => Fault::TailZero(if rng.chance(200) { max_tail } else { rng.range(1, 64.min(max_tail)) } as u32),
        4 => Fault::OutGarbage,
        5 => Fault::Number(wrong_number(rng, spec.req)),
        6 => Fault::BadPtr(rng.pick(BAD_ADDRS)),
        7 => Fault::GuardPtr,
        8 => Fault::Straddle(rng.range(1, ks - 1) as usize),
        9 => {
            let any = rng.below(ks);
            Fault::SizeSmall(rng.pick(&[0, 1, 4, 8, ks - 8, ks - 1, any]) as u32)
        }
        10 => {
            let n = if rng.chance(200) { max_tail } else { rng.range(1, 64.min(max_tail)) };
            Fault::TailNonZero(n as u32, rng.below(n) as u32)
        }
        11 => Fault::SizeHuge(rng.pick(&[4097, 4104, 8192, ARG_BYTES as u64, 0x10000, 0x8000_0000, u32::MAX as u64]) as u32),
        12 => {
            let undefined = !spec.flags;
            let bits = if rng.chance(150) { u32::MAX } else { loop { let b = 1u32 << rng.below(32); if b & undefined != 0 { break b; } } };
            Fault::Flag(bits)
        }
        13 => Fault::Reserved(rng.pick(spec.reserved)),
        _ => Fault::ReadOnly,
    }
}

/// Whether `fault` must make the call fail (an envelope fault with one right answer).
pub fn must_fail(fault: Fault) -> bool {
    match fault {
        Fault::Number(_) | Fault::BadPtr(_) | Fault::GuardPtr | Fault::Straddle(_) | Fault::SizeSmall(_) => true,
        Fault::TailNonZero(..) | Fault::Flag(_) | Fault::Reserved(_) => true,
        Fault::SizeHuge(s) => s as usize > ARG_BYTES,
        _ => false,
    }
}

/// What a call may answer.
#[derive(Clone, Debug)]
pub enum Want {
    /// A plain (or legally odd) call: any documented result; the caller judges the semantics.
    Semantic,
    /// An envelope fault: exactly one of these (0 = success).
    OneOf(Vec<i32>),
}

/// A call ready to be made.
pub struct Prepared {
    pub spec: usize,
    pub req: u64,
    pub addr: u64,
    pub size_field: u32,
    pub fault: Fault,
    pub want: Want,
    /// Success would mean the kernel skipped writing results back (the struct is read-only).
    pub ok_forbidden: bool,
}

impl Prepared {
    /// One line naming the call, for failure reports.
    pub fn describe(&self) -> String {
        format!("{} req={:#x} arg={:#x} size={} fault={:?}", SPECS[self.spec].name, self.req, self.addr, self.size_field, self.fault)
    }

    /// Adds an answer to the exact set (e.g. EOPNOTSUPP for DEPLOY from a multi-threaded caller).
    pub fn also_allow(&mut self, e: i32) {
        if let Want::OneOf(v) = &mut self.want {
            if !matches!(self.fault, Fault::Number(_)) {
                v.push(e);
            }
        }
    }
}

/// Lays out `payload` (the exact struct, size set) in `arena` with `fault` applied.
pub fn prepare(arena: &mut Arena, spec_idx: usize, payload: &[u8], fault: Fault) -> Prepared {
    let spec = &SPECS[spec_idx];
    let ks = spec.size;
    let mut img = payload.to_vec();
    let mut size_field = ks as u32;
    let mut req = spec.req;
    let mut place = Place::At(0);
    let mut want = Want::Semantic;
    let mut ok_forbidden = false;
    match fault {
        Fault::None | Fault::OutGarbage => {}
        Fault::Misaligned(m) => place = Place::At(m),
        Fault::FlushEnd => place = Place::FlushEnd,
        Fault::TailZero(n) => {
            size_field += n;
            img.resize(ks + n as usize, 0);
        }
        Fault::Number(r) => {
            req = r;
            want = Want::OneOf(vec![libc::ENOTTY]);
        }
        Fault::BadPtr(a) => {
            place = Place::Raw(a);
            want = Want::OneOf(vec![libc::EFAULT]);
        }
        Fault::GuardPtr => {
            place = Place::Guard;
            want = Want::OneOf(vec![libc::EFAULT]);
        }
        Fault::Straddle(k) => {
            place = Place::Straddle(k);
            want = Want::OneOf(vec![libc::EFAULT]);
        }
        Fault::SizeSmall(s) => {
            size_field = s;
            want = Want::OneOf(vec![libc::EINVAL]);
        }
        Fault::TailNonZero(n, pos) => {
            size_field += n;
            img.resize(ks + n as usize, 0);
            img[ks + pos as usize] = 0x5a;
            want = Want::OneOf(vec![libc::E2BIG]);
        }
        Fault::SizeHuge(s) => {
            size_field = s;
            img.resize((s as usize).min(ARG_BYTES), 0);
            if s as usize > ARG_BYTES {
                // Not all of it is mapped: the kernel must refuse it before (or by failing to) read it.
                want = Want::OneOf(vec![libc::E2BIG, libc::EINVAL, libc::EFAULT]);
            }
        }
        Fault::Flag(bits) => {
            let f = u32::from_ne_bytes(img[4..8].try_into().unwrap()) | bits;
            img[4..8].copy_from_slice(&f.to_ne_bytes());
            want = Want::OneOf(vec![libc::EINVAL]);
        }
        Fault::Reserved(off) => {
            img[off..off + 4].copy_from_slice(&0x0bad_0001u32.to_ne_bytes());
            want = Want::OneOf(vec![libc::EINVAL]);
        }
        Fault::ReadOnly => {
            place = Place::ReadOnly(8);
            ok_forbidden = spec.writes_back;
        }
    }
    if fault == Fault::OutGarbage {
        for (off, len) in spec.outs {
            img[*off..off + len].iter_mut().enumerate().for_each(|(i, b)| *b = 0xa5 ^ i as u8);
        }
    }
    img[0..4].copy_from_slice(&size_field.to_ne_bytes());
    let addr = arena.put_arg(&img, place);
    Prepared { spec: spec_idx, req, addr, size_field, fault, want, ok_forbidden }
}

/// `ioctl(fd, req, addr)`: the return value or the errno.
pub fn ioctl(fd: i32, req: u64, addr: u64) -> Result<i64, i32> {
    // SAFETY: a raw ioctl; `addr` is either memory of this thread's arena or deliberately invalid, and
    // the kernel only reads and writes through it as the request says.
    let r = unsafe { libc::syscall(libc::SYS_ioctl, fd as libc::c_long, req as libc::c_ulong, addr as libc::c_ulong) };
    if r < 0 { Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0)) } else { Ok(r) }
}

/// The struct as the kernel left it, if it sits in readable arena memory.
pub fn out<T: Copy>(arena: &Arena, p: &Prepared) -> Option<T> {
    arena.read(p.addr, size_of::<T>()).map(|b| from_bytes(&b))
}

/// What is wrong with answer `r` to call `p`, if anything. `exact`: envelope faults must get their one
/// right answer (false where another thread may close or replace the descriptor).
pub fn verdict(arena: &Arena, p: &Prepared, r: Result<i64, i32>, signalled: bool, exact: bool) -> Option<String> {
    let e = r.err().unwrap_or(0);
    if e != 0 && !documented(e, signalled) {
        return Some(format!("undocumented errno {} ({e})", errno_name(e)));
    }
    if let (true, Want::OneOf(set)) = (exact, &p.want) {
        if !set.contains(&e) {
            let want: Vec<String> = set.iter().map(|x| errno_name(*x)).collect();
            return Some(format!("got {}, want {}", errno_name(e), want.join("|")));
        }
    }
    if e == 0 && p.ok_forbidden {
        return Some("succeeded although its argument is read-only and must be written back".into());
    }
    if let (0, Fault::TailZero(n)) = (e, p.fault) {
        let ks = SPECS[p.spec].size;
        if let Some(b) = arena.read(p.addr, ks + n as usize) {
            if b[ks..].iter().any(|x| *x != 0) {
                return Some("wrote past the struct into the caller's zero tail".into());
            }
        }
    }
    None
}
