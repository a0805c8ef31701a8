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
        let root = Self {
            path: path.to_path_buf(),
        };
        root.remove_leftovers();
        Ok(root)
    }

    /// Kills and removes the instance cgroups (only names seussd gives: `stubN`, `iN-FUNCTION`) an earlier seussd left (a `kill -9` skips their cleanup):
    /// their processes were its instances and stubs, which nothing serves any more, and their names would
    /// collide with the ones this run creates (each run numbers its instances from 1). Waits up to 5 s for
    /// the killed processes to leave.
    fn remove_leftovers(&self) {
        let Ok(dir) = fs::read_dir(&self.path) else { return };
        let mut left: Vec<PathBuf> = dir
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| e.file_name().to_str().is_some_and(is_instance_name))
            .map(|e| e.path())
            .collect();
        if left.is_empty() {
            return;
        }
        let n = left.len();
        for p in &left {
            let _ = fs::write(p.join("cgroup.kill"), "1");
        }
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            left.retain(|p| fs::remove_dir(p).is_err());
            if left.is_empty() || std::time::Instant::now() >= end {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        tracing::info!("removed {} instance cgroups left by an earlier run", n - left.len());
        for p in left {
            tracing::warn!("could not remove leftover cgroup {}", p.display());
        }
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

/// Whether `name` is one seussd gives an instance's cgroup: `stubN` (a pooled stub's, which becomes its
/// instance's) or `iN-FUNCTION`.
fn is_instance_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name.strip_prefix("stub").is_some_and(digits)
        || name
            .strip_prefix('i')
            .and_then(|r| r.split_once('-'))
            .is_some_and(|(n, f)| digits(n) && !f.is_empty())
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

#[cfg(test)]
mod tests {
    #[test]
    fn instance_names() {
        for n in ["stub1", "stub20", "i3-echo", "i12-a.b-c"] {
            assert!(super::is_instance_name(n), "{n}");
        }
        for n in ["stub", "stubx", "i-echo", "i3", "ix-echo", "system.slice", "init.scope", "i3-"] {
            assert!(!super::is_instance_name(n), "{n}");
        }
    }
}
