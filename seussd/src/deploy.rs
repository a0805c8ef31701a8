//! Deploys: a stub (`seuss-stub`, pre-spawned in a small pool, each already in a cgroup of its own that
//! becomes the instance's) gets the function's memory limit and is told which snapshot to become; its control line `{"ready": ...}` (from the launcher inside the snapshot) or
//! `error ...` (from the stub) says how it went.

use crate::cgroup::Cgroup;
use crate::host::{FunctionInfo, Inner, SnapRec};
use crate::proc::{Proc, SpawnSpec};
use crate::starts::StartError;
use crate::util::{nonzero_u64, now_ms};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;

/// A pre-spawned stub waiting for a deploy command, with its own cgroup (when instance cgroups are used).
#[derive(Debug)]
pub(crate) struct Stub {
    pub proc: Proc,
    pub cg: Option<Cgroup>,
}

impl Inner {
    pub(crate) fn stub_spec(&self) -> SpawnSpec {
        let mut args = vec![
            "--device".to_string(),
            self.cfg.device.display().to_string(),
        ];
        if let Some((u, g)) = self.cred {
            args.extend(["--uid".into(), u.to_string(), "--gid".into(), g.to_string()]);
        }
        SpawnSpec {
            program: self.cfg.stub_path(),
            args,
            env: vec![],
            cred: None,
            cgroup_procs: None,
            max_line: self.max_line(),
        }
    }

    /// Takes a pre-spawned stub (or spawns one), sets its cgroup's memory limit to `f`'s, and has it deploy
    /// `snap`. Returns the instance and its cgroup.
    pub(crate) async fn deploy(
        self: &Arc<Self>,
        snap: &SnapRec,
        f: &FunctionInfo,
        deadline: Instant,
    ) -> Result<(Proc, Option<Cgroup>), StartError> {
        for attempt in 0..2 {
            let t0 = std::time::Instant::now();
            let Stub { proc: mut p, cg } = self
                .take_stub()
                .map_err(|e| StartError::Deploy(format!("spawning the stub: {e}")))?;
            if let Some(cg) = &cg {
                if let Err(e) = cg.set_memory_max(f.limits.memory << 20) {
                    tracing::warn!("memory.max of stub {}: {e}", p.pid);
                }
            }
            tracing::debug!(target: "seussd::timing", "deploy: stub ready in its cgroup after {:?}", t0.elapsed());
            let cmd = format!(
                "deploy {} {} {} {}",
                snap.info.id,
                snap.cookie_addr,
                nonzero_u64(),
                snap.tid_addr
            );
            if p.send_ctl(&cmd).await.is_err() {
                self.discard_stub(Stub { proc: p, cg }).await;
                if attempt == 0 {
                    continue;
                }
                return Err(StartError::Deploy("the stub died".into()));
            }
            let ready = self.wait_ready(&mut p, deadline).await;
            // Replace the stub only now, so spawning one does not compete with this deploy.
            self.clone().refill_stubs();
            return match ready {
                Ok(()) => {
                    if let Some(r) = self.lock().snaps.get_mut(&snap.info.id) {
                        r.last_used_ms = now_ms();
                    }
                    Ok((p, cg))
                }
                Err(e) => {
                    self.discard_stub(Stub { proc: p, cg }).await;
                    if e.contains("deploy 2 ENOENT") {
                        self.forget_snapshot(snap.info.id);
                    }
                    Err(StartError::Deploy(format!(
                        "deploy of snapshot {}: {e}",
                        snap.info.id
                    )))
                }
            };
        }
        unreachable!("the loop returns")
    }

    /// Kills a stub and removes its cgroup.
    pub(crate) async fn discard_stub(&self, mut s: Stub) {
        s.proc.kill().await;
        if let Some(cg) = s.cg {
            cg.remove().await;
        }
    }

    pub(crate) fn forget_snapshot(&self, id: u64) {
        let mut st = self.lock();
        st.snaps.remove(&id);
        if st.runtime_snap == Some(id) {
            st.runtime_snap = None;
        }
        for e in st.functions.values_mut() {
            if e.snap == Some(id) {
                e.snap = None;
            }
        }
    }

    /// Spawns a stub, already inside a fresh cgroup of its own when instance cgroups are in use (so a
    /// deploy does not wait for a cgroup to be created or a task to be migrated).
    pub(crate) fn spawn_stub(&self) -> std::io::Result<Stub> {
        let cg = self.cgroups.as_ref().and_then(|root| {
            let n = self.next_instance.fetch_add(1, Ordering::Relaxed);
            root.create(&format!("stub{n}"), self.cfg.max_memory_mb << 20)
                .map_err(|e| tracing::warn!("stub cgroup: {e}"))
                .ok()
        });
        let mut spec = self.stub_spec();
        spec.cgroup_procs = cg.as_ref().map(|c| c.procs_file());
        match Proc::spawn(&spec) {
            Ok(proc) => Ok(Stub { proc, cg }),
            Err(e) => {
                if let Some(cg) = cg {
                    tokio::spawn(cg.remove());
                }
                Err(e)
            }
        }
    }

    pub(crate) fn take_stub(&self) -> std::io::Result<Stub> {
        loop {
            let s = self.stubs.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let Some(mut s) = s else {
                return self.spawn_stub();
            };
            if s.proc.alive() {
                return Ok(s);
            }
            if let Some(cg) = s.cg {
                tokio::spawn(cg.remove());
            }
        }
    }

    /// Tops the stub pool up to `stub_pool` in the background.
    pub(crate) fn refill_stubs(self: Arc<Self>) {
        if self.cfg.stub_pool == 0 || self.refilling.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(async move {
            loop {
                let n = self.stubs.lock().unwrap_or_else(|e| e.into_inner()).len();
                if n >= self.cfg.stub_pool {
                    break;
                }
                match self.spawn_stub() {
                    Ok(s) => self.stubs.lock().unwrap_or_else(|e| e.into_inner()).push(s),
                    Err(e) => {
                        tracing::warn!("spawning a stub: {e}");
                        break;
                    }
                }
            }
            self.refilling.store(false, Ordering::SeqCst);
        });
    }
}
