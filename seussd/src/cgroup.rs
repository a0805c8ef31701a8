//! Per-instance cgroups (v2): `<cgroup_root>/<instance>` with `memory.max` = the function's memory limit.
//! Used only when `cgroup_root`'s parent is a writable cgroup v2 directory; otherwise seussd logs once and
//! runs instances without a memory cgroup.

use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct CgroupRoot {
    path: PathBuf,
}

impl CgroupRoot {
    /// Prepares `path` (creating it and enabling the memory controller), or says why it cannot.
    pub fn init(path: &Path) -> Result<Self, String> {
        let parent = path.parent().ok_or("cgroup_root has no parent")?;
        if !parent.join("cgroup.controllers").exists() {
            return Err(format!("{} is not a cgroup v2 directory", parent.display()));
        }
        let controllers =
            fs::read_to_string(parent.join("cgroup.controllers")).map_err(|e| e.to_string())?;
        if !controllers.split_whitespace().any(|c| c == "memory") {
            return Err(format!(
                "memory controller not available in {}",
                parent.display()
            ));
        }
        let _ = fs::write(parent.join("cgroup.subtree_control"), "+memory");
        fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
        fs::write(path.join("cgroup.subtree_control"), "+memory")
            .map_err(|e| format!("enabling memory in {}: {e}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Creates the cgroup of one instance.
    pub fn create(&self, name: &str, memory_bytes: u64) -> std::io::Result<Cgroup> {
        let p = self.path.join(name);
        fs::create_dir(&p)?;
        let cg = Cgroup { path: p, memory_max: memory_bytes };
        fs::write(cg.path.join("memory.max"), memory_bytes.to_string())?;
        let _ = fs::write(cg.path.join("memory.swap.max"), "0");
        Ok(cg)
    }
}

#[derive(Debug)]
pub struct Cgroup {
    path: PathBuf,
    /// The `memory.max` last written.
    memory_max: u64,
}

impl Cgroup {
    pub fn procs_file(&self) -> PathBuf {
        self.path.join("cgroup.procs")
    }

    /// Sets `memory.max` (a stub's cgroup becomes its instance's); no write if it is that already.
    pub fn set_memory_max(&mut self, bytes: u64) -> std::io::Result<()> {
        if bytes != self.memory_max {
            fs::write(self.path.join("memory.max"), bytes.to_string())?;
            self.memory_max = bytes;
        }
        Ok(())
    }

    /// Moves process `pid` into this cgroup.
    pub fn add(&self, pid: i32) -> std::io::Result<()> {
        fs::write(self.procs_file(), pid.to_string())
    }

    /// Kills whatever is left inside (cgroup.kill) and removes the directory, retrying briefly while the
    /// last process is being reaped.
    pub async fn remove(self) {
        let _ = fs::write(self.path.join("cgroup.kill"), "1");
        for _ in 0..50 {
            if fs::remove_dir(&self.path).is_ok() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        tracing::warn!("could not remove cgroup {}", self.path.display());
    }
}
