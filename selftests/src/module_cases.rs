//! The `module` suite: loading, the device node, VERSION, malformed ioctls, permissions, unloading.

use crate::ktap::{check, Case};
use crate::util::*;
use nix::errno::Errno;
use uapi::{request, Device};

pub const CASES: &[Case] = &[
    Case { name: "module_loads_and_creates_dev_0600", run: loads },
    Case { name: "version_reports_abi_and_features", run: version },
    Case { name: "unknown_ioctl_is_enotty", run: unknown_ioctl },
    Case { name: "bad_pointer_is_efault", run: bad_pointer },
    Case { name: "bad_size_flags_reserved_are_einval", run: bad_fields },
    Case { name: "non_root_open_is_refused", run: non_root },
    Case { name: "rmmod_is_clean", run: rmmod },
    Case { name: "load_unload_50_times", run: load_unload_50 },
];

fn loads() -> Result<(), String> {
    if loaded() {
        sh("rmmod", &["seuss"])?;
    }
    sh("insmod", &[&ko_path()?])?;
    check(loaded(), || "seuss not in /proc/modules after insmod".into())?;
    wait_dev()?;
    let (mode, chr) = dev_mode()?;
    check(chr, || "/dev/seuss is not a character device".into())?;
    check(mode == 0o600, || format!("/dev/seuss mode is {mode:o}, want 600"))
}

fn version() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let (abi, feats) = d.version().map_err(|e| format!("VERSION: {e}"))?;
    check(abi == uapi::SEUSS_ABI_VERSION, || format!("abi {abi}"))?;
    let want = (uapi::SEUSS_FEAT_VERSION | uapi::SEUSS_FEAT_FREEZE | uapi::SEUSS_FEAT_CAPTURE | uapi::SEUSS_FEAT_DEPLOY) as u64;
    check(feats & want == want, || format!("features {feats:#x} lack {want:#x}"))
}

fn unknown_ioctl() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let mut buf = [0u64; 8];
    // Our magic, unknown number.
    let req = nix::request_code_readwrite!(0xE5, 0x7f, 16) as u64;
    // SAFETY: `buf` is a valid buffer larger than the request size.
    let r = unsafe { d.raw_ioctl(req, buf.as_mut_ptr() as usize) };
    check(r == Err(Errno::ENOTTY), || format!("our magic nr 0x7f: {r:?}"))?;
    // A foreign magic (a terminal ioctl).
    // SAFETY: as above.
    let r = unsafe { d.raw_ioctl(libc::TCGETS as u64, buf.as_mut_ptr() as usize) };
    check(r == Err(Errno::ENOTTY), || format!("TCGETS: {r:?}"))
}

fn bad_pointer() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    for (name, req) in [("VERSION", request::VERSION), ("STATS", request::STATS), ("SNAP_LIST", request::SNAP_LIST), ("DEPLOY", request::DEPLOY)] {
        for addr in [0usize, 8, 0xdead_0000_0000usize, usize::MAX - 7] {
            // SAFETY: deliberately invalid pointers; the kernel must answer EFAULT.
            let r = unsafe { d.raw_ioctl(req, addr) };
            check(r == Err(Errno::EFAULT), || format!("{name} with {addr:#x}: {r:?}"))?;
        }
    }
    // A valid struct whose embedded array pointer is bad.
    let mut a: uapi::seuss_snap_list = unsafe_zeroed();
    a.size = std::mem::size_of::<uapi::seuss_snap_list>() as u32;
    a.capacity = 4;
    a.ids_addr = 0x10;
    // Only fails if a snapshot exists to be written; with none, count=0 and nothing is written.
    // SAFETY: `a` is valid.
    let r = unsafe { d.raw_ioctl(request::SNAP_LIST, &mut a as *mut _ as usize) };
    check(r == Ok(0) || r == Err(Errno::EFAULT), || format!("SNAP_LIST bad ids_addr: {r:?}"))
}

fn unsafe_zeroed<T>() -> T {
    // SAFETY: used only for the plain-integer uapi structs.
    unsafe { std::mem::zeroed() }
}

fn bad_fields() -> Result<(), String> {
    ensure_loaded()?;
    let d = dev()?;
    let mut v: uapi::seuss_version = unsafe_zeroed();
    let sz = std::mem::size_of::<uapi::seuss_version>() as u32;
    for (what, size, flags, reserved) in [("size 0", 0, 0, 0), ("size 8", 8, 0, 0), ("flags 1", sz, 1, 0), ("reserved 1", sz, 0, 1)] {
        v.size = size;
        v.flags = flags;
        v.reserved = reserved;
        // SAFETY: `v` is a valid seuss_version.
        let r = unsafe { d.raw_ioctl(request::VERSION, &mut v as *mut _ as usize) };
        check(r == Err(Errno::EINVAL), || format!("VERSION {what}: {r:?}"))?;
    }
    // A larger struct from "newer userspace" is fine when the tail is zero, E2BIG when not.
    let mut big = [0u8; 64];
    big[..4].copy_from_slice(&64u32.to_ne_bytes());
    // SAFETY: `big` has 64 valid bytes.
    let r = unsafe { d.raw_ioctl(request::VERSION, big.as_mut_ptr() as usize) };
    check(r == Ok(0), || format!("VERSION size 64 zero tail: {r:?}"))?;
    big[40] = 1;
    // SAFETY: as above.
    let r = unsafe { d.raw_ioctl(request::VERSION, big.as_mut_ptr() as usize) };
    check(r == Err(Errno::E2BIG), || format!("VERSION size 64 non-zero tail: {r:?}"))?;
    // Bad ARM kinds and lengths.
    for (kind, addr, len) in [(0u32, 0x1000u64, 0u32), (9, 0x1000, 0), (uapi::SEUSS_ARM_WRITE, 0x1000, 3), (uapi::SEUSS_ARM_WRITE, 0x1001, 8), (uapi::SEUSS_ARM_NOW, 0x1000, 0)] {
        let mut a: uapi::seuss_arm = unsafe_zeroed();
        a.size = std::mem::size_of::<uapi::seuss_arm>() as u32;
        a.pid = std::process::id() as i32;
        a.kind = kind;
        a.addr = addr;
        a.len = len;
        // SAFETY: valid struct.
        let r = unsafe { d.raw_ioctl(request::ARM, &mut a as *mut _ as usize) };
        check(r == Err(Errno::EINVAL), || format!("ARM kind {kind} addr {addr:#x} len {len}: {r:?}"))?;
    }
    Ok(())
}

fn non_root() -> Result<(), String> {
    ensure_loaded()?;
    let e = open_as_nobody(uapi::DEVICE_PATH);
    check(e == libc::EACCES, || format!("open as nobody gave errno {e}, want EACCES"))
}

fn rmmod() -> Result<(), String> {
    ensure_loaded()?;
    // An open file pins the module.
    let d = dev()?;
    let busy = sh("rmmod", &["seuss"]);
    check(busy.is_err() && loaded(), || "rmmod succeeded while /dev/seuss was open".into())?;
    drop(d);
    sh("rmmod", &["seuss"])?;
    check(!loaded(), || "still in /proc/modules".into())?;
    check(!std::path::Path::new(uapi::DEVICE_PATH).exists(), || "/dev/seuss still exists".into())
}

fn slab_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    s.lines().find(|l| l.starts_with("SUnreclaim:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn load_unload_50() -> Result<(), String> {
    if loaded() {
        sh("rmmod", &["seuss"])?;
    }
    let ko = ko_path()?;
    // Warm up once so one-time allocations (sysfs, module loader caches) are not counted.
    sh("insmod", &[&ko])?;
    sh("rmmod", &["seuss"])?;
    let before = slab_kb();
    for i in 0..50 {
        sh("insmod", &[&ko]).map_err(|e| format!("round {i}: {e}"))?;
        wait_dev()?;
        let d = Device::open().map_err(|e| format!("round {i}: open: {e}"))?;
        d.version().map_err(|e| format!("round {i}: VERSION: {e}"))?;
        drop(d);
        sh("rmmod", &["seuss"]).map_err(|e| format!("round {i}: {e}"))?;
    }
    let after = slab_kb();
    check(!loaded(), || "left loaded".into())?;
    // 50 rounds leaking even one small object each would show; allow noise from other slab users.
    check(after <= before + 512, || format!("unreclaimable slab grew {before} kB -> {after} kB over 50 rounds"))
}
