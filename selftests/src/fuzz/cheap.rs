//! Cheap operations: one call of a random ioctl, its fields drawn from pools of valid, stale and bogus
//! ids and pids, with at most one fault (`calls.rs`), on our own descriptor, a shared one another thread
//! may close at any moment, /dev/null or no descriptor at all. SNAP_LIST also gets bad nested pointers.
//!
//! Nothing here has lasting effects: ARM only names tasks it may not freeze or, with a fault that must
//! fail, our own targets (a freeze that is nonetheless made is released at once); CAPTURE and RESUME
//! only name freeze ids never issued, SNAP_RELEASE snapshot ids released or never issued; DEPLOY runs in
//! this multi-threaded process, where the kernel must refuse it.

use std::sync::atomic::Ordering::SeqCst;

use super::actor::Actor;
use super::arena::{Place, NESTED_BYTES};
use super::calls::{self, blank, bytes_of, out, Fault, Want, SPECS};

/// Which descriptor a cheap call goes to.
#[derive(Clone, Copy, Debug)]
enum Target {
    Own,
    Shared(i32),
    DevNull,
    NoFd(i32),
}

/// Where SNAP_LIST's ids array goes and how much of it is writable.
struct Nested {
    addr: u64,
    capacity: u32,
    writable: u64,
    /// Sentinel-filled bytes at `addr` we can read back (0 for unreadable places).
    readable: u64,
}

const SENTINEL: u8 = 0xee;

impl Actor<'_> {
    fn pick_target(&mut self) -> Target {
        match self.rng.below(100) {
            0..=69 => Target::Own,
            70..=87 => Target::Shared(self.sh.slots[self.rng.below(2) as usize].load(SeqCst)),
            88..=93 => Target::DevNull,
            _ => Target::NoFd(self.rng.pick(&[-1, 999_999])),
        }
    }

    /// A pid ARM must refuse (kthreadd, ourselves: our process or this thread, a zombie, none at all),
    /// or a stale one (which might by now name anything). Our parent (multi-threaded) is no longer one:
    /// the engine freezes multi-threaded processes.
    fn refused_pid(&mut self) -> (i32, bool) {
        // SAFETY: getpid and gettid have no preconditions.
        let (me, tid) = unsafe { (libc::getpid(), libc::syscall(libc::SYS_gettid) as i32) };
        let must = [0, -1, i32::MIN, i32::MAX, 0x3fff_fff0, 2, me, tid, self.zombie];
        if !self.stale_pids.is_empty() && self.rng.chance(150) {
            return (self.stale_pids[self.rng.below(self.stale_pids.len() as u64) as usize], false);
        }
        (self.rng.pick(&must), true)
    }

    fn any_pid(&mut self) -> i32 {
        let live = self.live_pids();
        if !live.is_empty() && self.rng.chance(400) {
            return live[self.rng.below(live.len() as u64) as usize];
        }
        self.refused_pid().0
    }

    /// A snapshot id for read-only calls: ours, stale, small numbers (anyone's), bogus.
    fn any_snap_id(&mut self) -> u64 {
        let (live, stale) = self.snap_ids();
        match self.rng.below(6) {
            0 if !live.is_empty() => live[self.rng.below(live.len() as u64) as usize],
            1 if !stale.is_empty() => stale[self.rng.below(stale.len() as u64) as usize],
            2 => self.rng.range(1, 64),
            _ => self.dead_snap_id(),
        }
    }

    /// A snapshot id that names no live snapshot (a stale one of ours, or one never issued).
    fn dead_snap_id(&mut self) -> u64 {
        let (_, stale) = self.snap_ids();
        if !stale.is_empty() && self.rng.chance(300) {
            return stale[self.rng.below(stale.len() as u64) as usize];
        }
        self.rng.pick(&[0, u64::MAX, 1 << 40, (1 << 40) + 77, u64::MAX / 3])
    }

    /// A freeze id never issued (for RESUME and CAPTURE: a released id might be issued again).
    fn dead_freeze_id(&mut self) -> u64 {
        self.rng.pick(&[0, u64::MAX, 1 << 32, (1 << 32) + 5, 1 << 63])
    }

    /// A freeze id for WAIT: live, released on this file, or never issued.
    fn any_freeze_id(&mut self) -> u64 {
        let live = self.freeze_ids();
        if !live.is_empty() && self.rng.chance(300) {
            return live[self.rng.below(live.len() as u64) as usize];
        }
        if !self.stale_freezes.is_empty() && self.rng.chance(300) {
            return self.stale_freezes[self.rng.below(self.stale_freezes.len() as u64) as usize];
        }
        self.dead_freeze_id()
    }

    fn any_user_addr(&mut self) -> u64 {
        let mine = self.arena.arg_base() + self.rng.below(4096);
        let bad = self.rng.pick(calls::BAD_ADDRS);
        self.rng.pick(&[mine, mine & !7, bad, 0x7fff_ffff_f000, 1])
    }

    /// SNAP_LIST's array: placement and capacity, sentinel-filled where it is ours.
    fn nested_list(&mut self, bad_allowed: bool) -> Nested {
        let capacity = self.rng.pick(&[0u32, 1, 2, 3, 16, 512, 1024, u32::MAX]);
        let choice = if bad_allowed { self.rng.below(6) } else { self.rng.below(2) };
        let (place, writable, readable) = match choice {
            0 => {
                let m = self.rng.pick(&[0usize, 0, 1, 4, 7]);
                (Place::At(m), ((NESTED_BYTES - m) / 8) as u64, (NESTED_BYTES - m) as u64)
            }
            1 => {
                let k = self.rng.range(1, 64);
                (Place::FlushEnd, k, k * 8)
            }
            2 => (Place::Straddle(12), 1, 0),
            3 => (Place::ReadOnly(self.rng.pick(&[0, 8, 3])), 0, 0),
            4 => (Place::Guard, 0, 0),
            _ => (Place::Raw(self.rng.pick(calls::BAD_ADDRS)), 0, 0),
        };
        let fill = match place {
            Place::FlushEnd | Place::At(_) => readable as usize,
            Place::Straddle(k) => k,
            _ => 16,
        };
        let addr = self.arena.put_nested(&vec![SENTINEL; fill], place);
        Nested { addr, capacity, writable, readable }
    }

    /// One cheap call.
    pub(super) fn cheap_op(&mut self) {
        let spec = self.rng.below(SPECS.len() as u64) as usize;
        let mut fault = calls::pick_fault(&mut self.rng, &SPECS[spec]);
        let exact_fault = calls::must_fail(fault);
        let mut arm_must_fail = false;
        let mut nested = None;
        let payload = match spec {
            calls::VERSION | calls::STATS => Vec::new(),
            calls::ARM => {
                let mut a: uapi::seuss_arm = blank();
                let live = self.live_pids();
                if exact_fault && !live.is_empty() && self.rng.chance(300) {
                    a.pid = live[self.rng.below(live.len() as u64) as usize];
                } else {
                    let (pid, must) = self.refused_pid();
                    a.pid = pid;
                    arm_must_fail = must;
                }
                if self.rng.chance(150) {
                    a.flags = uapi::SEUSS_ARM_PIDFD;
                    a.pid = self.rng.pick(&[-1, self.sh.null_fd, 999_999, 0]);
                    arm_must_fail = true;
                }
                a.kind = self.rng.pick(&[1, 2, 3, 3, 0, 4, u32::MAX]);
                a.addr = if a.kind == uapi::SEUSS_ARM_NOW && self.rng.chance(700) { 0 } else { self.any_user_addr() };
                a.len = self.rng.pick(&[0, 0, 1, 2, 3, 4, 8, 16]);
                bytes_of(&a)
            }
            calls::WAIT => {
                let mut a: uapi::seuss_wait = blank();
                a.freeze_id = self.any_freeze_id();
                a.timeout_ms = self.rng.pick(&[0, 0, 1, 2]);
                bytes_of(&a)
            }
            calls::CAPTURE => {
                let mut a: uapi::seuss_capture = blank();
                a.freeze_id = self.dead_freeze_id();
                bytes_of(&a)
            }
            calls::RESUME => {
                let mut a: uapi::seuss_release_task = blank();
                a.freeze_id = self.dead_freeze_id();
                a.flags = self.rng.pick(&[0, uapi::SEUSS_RELEASE_KILL]);
                bytes_of(&a)
            }
            calls::DEPLOY => {
                let mut a: uapi::seuss_deploy = blank();
                let (live, _) = self.snap_ids();
                a.snap_id = if !live.is_empty() && self.rng.chance(500) { live[0] } else { self.dead_snap_id() };
                a.flags = self.rng.pick(&[0, uapi::SEUSS_DEPLOY_TID, uapi::SEUSS_DEPLOY_COOKIE, 3]);
                a.tid_addr = self.any_user_addr();
                a.cookie_addr = self.any_user_addr();
                a.cookie = self.rng.next();
                bytes_of(&a)
            }
            calls::SNAP_INFO => {
                let mut a: uapi::seuss_snap_info = blank();
                a.snap_id = self.any_snap_id();
                bytes_of(&a)
            }
            calls::SNAP_LIST => {
                // One fault per call: a bad array goes with a well-formed struct.
                let bad_ok = !exact_fault && self.rng.chance(500);
                if bad_ok {
                    fault = Fault::None;
                }
                let n = self.nested_list(bad_ok);
                let mut a: uapi::seuss_snap_list = blank();
                a.ids_addr = n.addr;
                a.capacity = n.capacity;
                nested = Some(n);
                bytes_of(&a)
            }
            calls::SNAP_RELEASE => {
                let mut a: uapi::seuss_snap_release = blank();
                a.snap_id = self.dead_snap_id();
                bytes_of(&a)
            }
            _ => {
                let mut a: uapi::seuss_dirty = blank();
                a.pid = self.any_pid();
                bytes_of(&a)
            }
        };
        let payload = if payload.is_empty() { vec![0u8; SPECS[spec].size] } else { payload };
        let mut payload = payload;
        payload[0..4].copy_from_slice(&(SPECS[spec].size as u32).to_ne_bytes());
        let mut p = calls::prepare(&mut self.arena, spec, &payload, fault);
        if spec == calls::DEPLOY {
            p.also_allow(libc::EOPNOTSUPP); // from a multi-threaded process, checked in either order
        }
        let target = self.pick_target();
        let (fd, exact) = match target {
            Target::Own => (self.dev, true),
            Target::Shared(fd) => (fd, false),
            Target::DevNull => {
                p.want = Want::OneOf(vec![libc::ENOTTY]);
                (self.sh.null_fd, true)
            }
            Target::NoFd(fd) => {
                p.want = Want::OneOf(vec![libc::EBADF]);
                (fd, true)
            }
        };
        let legal = matches!(p.fault, Fault::None | Fault::Misaligned(_) | Fault::FlushEnd | Fault::TailZero(_) | Fault::OutGarbage);
        if let (true, Target::Own) = (legal, target) {
            match (spec, &nested) {
                // Nothing can make these fail.
                (calls::VERSION | calls::STATS, _) => p.want = Want::OneOf(vec![0]),
                // An array too small for `capacity` may or may not be overrun (not while few snapshots
                // exist); one that fits must be written.
                (calls::SNAP_LIST, Some(n)) if n.writable < n.capacity as u64 => p.want = Want::OneOf(vec![0, libc::EFAULT]),
                (calls::SNAP_LIST, Some(_)) => p.want = Want::OneOf(vec![0, libc::ENOMEM]),
                _ => {}
            }
        }
        let r = self.issue(fd, &p, exact, false);
        if r.is_ok() && matches!(target, Target::Own | Target::Shared(_)) {
            self.after_cheap_success(fd, &p, nested.as_ref(), arm_must_fail);
        }
    }

    /// Checks what a successful cheap call returned, and undoes what it must not leave behind.
    fn after_cheap_success(&mut self, fd: i32, p: &calls::Prepared, nested: Option<&Nested>, arm_must_fail: bool) {
        let what = p.describe();
        match p.spec {
            calls::VERSION => {
                if let Some(v) = out::<uapi::seuss_version>(&self.arena, p) {
                    if v.abi_version < 1 || v.features & uapi::SEUSS_FEAT_VERSION as u64 == 0 {
                        self.fail(&format!("{what}: abi_version {} features {:#x}", v.abi_version, v.features));
                    }
                }
            }
            calls::ARM => {
                let id = out::<uapi::seuss_arm>(&self.arena, p).map(|a| a.freeze_id).unwrap_or(0);
                if arm_must_fail {
                    self.fail(&format!("{what}: ARM of a task it must refuse succeeded (freeze {id})"));
                }
                let mut a: uapi::seuss_release_task = blank();
                a.freeze_id = id;
                let _ = calls::ioctl(fd, uapi::request::RESUME, &a as *const _ as u64);
            }
            calls::WAIT => {
                if let Some(w) = out::<uapi::seuss_wait>(&self.arena, p) {
                    if !(uapi::SEUSS_STATE_ARMED..=uapi::SEUSS_STATE_DEAD).contains(&w.state) {
                        self.fail(&format!("{what}: state {}", w.state));
                    }
                }
            }
            calls::CAPTURE => {
                if let Some(c) = out::<uapi::seuss_capture>(&self.arena, p) {
                    self.fail(&format!("{what}: CAPTURE of a freeze id never issued (or released) succeeded: snapshot {}", c.snap_id));
                    self.adopt_snapshot(c.snap_id);
                }
            }
            calls::DEPLOY => self.fail(&format!("{what}: DEPLOY returned success to a multi-threaded caller")),
            calls::SNAP_INFO => {
                if let Some(i) = out::<uapi::seuss_snap_info>(&self.arena, p) {
                    if (i.depth == 0) != (i.parent_id == 0) || (i.parent_id != 0 && i.parent_id >= i.snap_id) {
                        self.fail(&format!("{what}: inconsistent info {i:?}"));
                    }
                }
            }
            calls::SNAP_LIST => self.check_list(p, nested),
            calls::DIRTY => {
                if let Some(d) = out::<uapi::seuss_dirty>(&self.arena, p) {
                    if d.snap_id == 0 {
                        self.fail(&format!("{what}: DIRTY succeeded with snapshot 0"));
                    }
                }
            }
            _ => {}
        }
    }

    /// A successful SNAP_LIST: the ids written are ascending, nothing past them changed, and it cannot
    /// have written more than the memory allowed.
    fn check_list(&mut self, p: &calls::Prepared, nested: Option<&Nested>) {
        let (Some(l), Some(n)) = (out::<uapi::seuss_snap_list>(&self.arena, p), nested) else { return };
        let written = (l.count as u64).min(n.capacity as u64);
        if written > n.writable {
            self.fail(&format!("{}: succeeded writing {written} ids where only {} fit (ids_addr {:#x})", p.describe(), n.writable, n.addr));
            return;
        }
        if n.readable == 0 {
            return;
        }
        let Some(b) = self.arena.read(n.addr, n.readable as usize) else { return };
        let ids: Vec<u64> = b.chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap())).collect();
        let got = &ids[..written as usize];
        if got.windows(2).any(|w| w[0] >= w[1]) || got.contains(&0) {
            self.fail(&format!("{}: ids not ascending: {:?}", p.describe(), &got[..got.len().min(16)]));
        }
        let limit = (n.capacity as u64).min(n.readable / 8) as usize;
        let sentinel = u64::from_ne_bytes([SENTINEL; 8]);
        if ids[written as usize..limit].iter().any(|x| *x != sentinel) {
            self.fail(&format!("{}: wrote past count={} capacity={}", p.describe(), l.count, n.capacity));
        }
    }
}
