//! A fake snapshot engine for host tests: it "freezes" a launcher by watching its doorbell cell through
//! /proc/PID/mem and keeps snapshots as plain records (owner = the captured task's real uid, EBUSY while
//! a snapshot has children, as the kernel does).

use nix::errno::Errno;
use seussd::engine::{KernelStats, SnapStat, SnapshotEngine};
use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::FileExt;
use std::sync::Mutex;
use std::time::Duration;
use uapi::FreezeState;

#[derive(Default)]
pub struct Fake {
    pub freezes: Mutex<HashMap<u64, (i32, u64)>>,
    pub snaps: Mutex<BTreeMap<u64, SnapStat>>,
    pub released: Mutex<Vec<u64>>,
    pub killed: Mutex<Vec<i32>>,
    pub next: Mutex<u64>,
    /// Make the next capture fail (like ENOSPC at the module's page cap).
    pub fail_capture: std::sync::atomic::AtomicBool,
}

pub fn read_u64(pid: i32, addr: u64) -> Option<u64> {
    let f = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, addr).ok()?;
    Some(u64::from_ne_bytes(b))
}

/// The real uid of `pid` (first field of `Uid:` in /proc/PID/status).
pub fn real_uid(pid: i32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl SnapshotEngine for Fake {
    fn arm_write(&self, pid: i32, addr: u64) -> Result<u64, Errno> {
        // The bell must be a live, zeroed cell of that process.
        if read_u64(pid, addr) != Some(0) {
            return Err(Errno::EFAULT);
        }
        let mut n = self.next.lock().unwrap();
        *n += 1;
        self.freezes.lock().unwrap().insert(*n, (pid, addr));
        Ok(*n)
    }
    fn wait(&self, freeze: u64, timeout_ms: u32) -> Result<FreezeState, Errno> {
        let (pid, addr) = *self
            .freezes
            .lock()
            .unwrap()
            .get(&freeze)
            .ok_or(Errno::ENOENT)?;
        let end = std::time::Instant::now() + Duration::from_millis(timeout_ms.into());
        while std::time::Instant::now() < end {
            match read_u64(pid, addr) {
                Some(1) => return Ok(FreezeState::Frozen { ip: 0 }),
                None => return Ok(FreezeState::Dead),
                _ => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        Err(Errno::ETIMEDOUT)
    }
    fn capture(&self, freeze: u64) -> Result<u64, Errno> {
        let (pid, _) = *self
            .freezes
            .lock()
            .unwrap()
            .get(&freeze)
            .ok_or(Errno::EAGAIN)?;
        if self
            .fail_capture
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            return Err(Errno::ENOSPC);
        }
        let mut n = self.next.lock().unwrap();
        *n += 1;
        self.snaps.lock().unwrap().insert(
            *n,
            SnapStat {
                parent: None,
                // Like the kernel: the owner is the captured task's real uid.
                uid: real_uid(pid).ok_or(Errno::ESRCH)?,
                private_pages: 100,
                unchanged_pages: 0,
                children: 0,
                // Like the kernel: every thread of the captured process.
                threads: std::fs::read_dir(format!("/proc/{pid}/task")).map_or(1, |r| r.count() as u32),
            },
        );
        Ok(*n)
    }
    fn release(&self, freeze: u64, kill: bool) -> Result<(), Errno> {
        let (pid, _) = self
            .freezes
            .lock()
            .unwrap()
            .remove(&freeze)
            .ok_or(Errno::ENOENT)?;
        if kill {
            self.killed.lock().unwrap().push(pid);
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
        Ok(())
    }
    fn snap_info(&self, id: u64) -> Result<SnapStat, Errno> {
        self.snaps
            .lock()
            .unwrap()
            .get(&id)
            .copied()
            .ok_or(Errno::ENOENT)
    }
    fn snap_list(&self) -> Result<Vec<u64>, Errno> {
        Ok(self.snaps.lock().unwrap().keys().copied().collect())
    }
    fn snap_release(&self, id: u64) -> Result<(), Errno> {
        let mut snaps = self.snaps.lock().unwrap();
        if snaps.values().any(|s| s.parent == Some(id)) {
            return Err(Errno::EBUSY);
        }
        snaps.remove(&id).ok_or(Errno::ENOENT)?;
        self.released.lock().unwrap().push(id);
        Ok(())
    }
    fn dirty(&self, _pid: i32) -> Result<(u64, u64), Errno> {
        Err(Errno::ENOTTY)
    }
    fn kernel_stats(&self) -> Result<KernelStats, Errno> {
        let snaps = self.snaps.lock().unwrap();
        Ok(KernelStats {
            snapshots: snaps.len() as u64,
            pages_held: snaps.values().map(|s| s.private_pages).sum(),
            frozen: self.freezes.lock().unwrap().len() as u64,
            ..KernelStats::default()
        })
    }
}
