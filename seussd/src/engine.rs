//! The snapshot engine seussd drives, behind a trait: [`UapiEngine`] is `/dev/seuss` through the `uapi`
//! crate. Deploys are not here: a deploy replaces the calling process, so the `seuss-stub` binary makes it.
//! Tests use a fake implementation (see `tests/`) that never touches the kernel.

use nix::errno::Errno;
use std::path::Path;
use uapi::{Device, FreezePoint, FreezeState};

/// Per-snapshot numbers seussd needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapStat {
    pub parent: Option<u64>,
    pub uid: u32,
    pub private_pages: u64,
    /// Pages the captured instance had copied without changing them, shared with the parent again.
    pub unchanged_pages: u64,
    pub children: u64,
    /// Threads the snapshot's process had (each recreated in every child).
    pub threads: u32,
}

/// The module-wide counters of `SEUSS_IOC_STATS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KernelStats {
    pub snapshots: u64,
    pub pages_held: u64,
    pub max_pages: u64,
    pub deploys: u64,
    pub instances: u64,
    pub frozen: u64,
}

pub trait SnapshotEngine: Send + Sync + 'static {
    /// Arms an 8-byte write watchpoint at `addr` in task `pid`; returns the freeze id.
    fn arm_write(&self, pid: i32, addr: u64) -> Result<u64, Errno>;
    /// Waits up to `timeout_ms` for the freeze to leave the armed state.
    fn wait(&self, freeze: u64, timeout_ms: u32) -> Result<FreezeState, Errno>;
    /// Captures a frozen task; returns the snapshot id.
    fn capture(&self, freeze: u64) -> Result<u64, Errno>;
    /// Lets the frozen task run on, or kills it.
    fn release(&self, freeze: u64, kill: bool) -> Result<(), Errno>;
    fn snap_info(&self, id: u64) -> Result<SnapStat, Errno>;
    fn snap_list(&self) -> Result<Vec<u64>, Errno>;
    /// Frees a snapshot (EBUSY while it has children).
    fn snap_release(&self, id: u64) -> Result<(), Errno>;
    /// (snapshot id, private pages) of a deployed instance.
    fn dirty(&self, pid: i32) -> Result<(u64, u64), Errno>;
    /// The module's counters, where the engine has them.
    fn kernel_stats(&self) -> Result<KernelStats, Errno> {
        Err(Errno::ENOTTY)
    }
}

/// The kernel engine.
#[derive(Debug)]
pub struct UapiEngine {
    dev: Device,
}

impl UapiEngine {
    /// Opens the device and checks the ABI version and the features seussd needs.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let dev =
            Device::open_path(path).map_err(|e| anyhow::anyhow!("open {}: {e}", path.display()))?;
        let (abi, feats) = dev
            .version()
            .map_err(|e| anyhow::anyhow!("SEUSS_IOC_VERSION: {e}"))?;
        anyhow::ensure!(
            abi == uapi::SEUSS_ABI_VERSION,
            "module ABI {abi}, seussd speaks {}",
            uapi::SEUSS_ABI_VERSION
        );
        let need =
            u64::from(uapi::SEUSS_FEAT_FREEZE | uapi::SEUSS_FEAT_CAPTURE | uapi::SEUSS_FEAT_DEPLOY);
        anyhow::ensure!(
            feats & need == need,
            "module lacks features (has {feats:#x}, needs {need:#x})"
        );
        Ok(Self { dev })
    }
}

impl SnapshotEngine for UapiEngine {
    fn arm_write(&self, pid: i32, addr: u64) -> Result<u64, Errno> {
        self.dev.arm(pid, FreezePoint::Write { addr, len: 8 })
    }
    fn wait(&self, freeze: u64, timeout_ms: u32) -> Result<FreezeState, Errno> {
        self.dev.wait(freeze, timeout_ms)
    }
    fn capture(&self, freeze: u64) -> Result<u64, Errno> {
        self.dev.capture(freeze)
    }
    fn release(&self, freeze: u64, kill: bool) -> Result<(), Errno> {
        self.dev.release(freeze, kill)
    }
    fn snap_info(&self, id: u64) -> Result<SnapStat, Errno> {
        let i = self.dev.snap_info(id)?;
        Ok(SnapStat {
            parent: (i.parent_id != 0).then_some(i.parent_id),
            uid: i.uid,
            private_pages: i.pages_private,
            unchanged_pages: i.pages_unchanged,
            children: i.children,
            threads: i.threads,
        })
    }
    fn snap_list(&self) -> Result<Vec<u64>, Errno> {
        self.dev.snap_list()
    }
    fn snap_release(&self, id: u64) -> Result<(), Errno> {
        self.dev.snap_release(id)
    }
    fn dirty(&self, pid: i32) -> Result<(u64, u64), Errno> {
        self.dev.dirty(pid)
    }
    fn kernel_stats(&self) -> Result<KernelStats, Errno> {
        let s = self.dev.stats()?;
        Ok(KernelStats {
            snapshots: s.snapshots,
            pages_held: s.pages_held,
            max_pages: s.max_pages,
            deploys: s.deploys,
            instances: s.instances,
            frozen: s.frozen,
        })
    }
}
