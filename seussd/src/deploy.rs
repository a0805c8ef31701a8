//! Deploys: a stub (`seuss-stub`, pre-spawned in a small pool) is moved into the instance's cgroup and told
//! which snapshot to become; its control line `{"ready": ...}` (from the launcher inside the snapshot) or
//! `error ...` (from the stub) says how it went.

use crate::host::{Inner, SnapRec};
use crate::proc::{Proc, SpawnSpec};
use crate::starts::StartError;
use crate::util::{nonzero_u64, now_ms};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::Instant;

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

    /// Takes a pre-spawned stub (or spawns one) and has it deploy `snap`.
    pub(crate) async fn deploy(
        self: &Arc<Self>,
        snap: &SnapRec,
        cg: Option<&crate::cgroup::Cgroup>,
        deadline: Instant,
    ) -> Result<Proc, StartError> {
        for attempt in 0..2 {
            let mut p = self
                .take_stub()
                .map_err(|e| StartError::Deploy(format!("spawning the stub: {e}")))?;
            self.clone().refill_stubs();
            if let Some(cg) = cg {
                if let Err(e) = cg.add(p.pid) {
                    tracing::warn!("moving stub {} into its cgroup: {e}", p.pid);
                }
            }
            let cmd = format!(
                "deploy {} {} {} {}",
                snap.info.id,
                snap.cookie_addr,
                nonzero_u64(),
                snap.tid_addr
            );
            if p.send_ctl(&cmd).await.is_err() {
                p.kill().await;
                if attempt == 0 {
                    continue;
                }
                return Err(StartError::Deploy("the stub died".into()));
            }
            return match self.wait_ready(&mut p, deadline).await {
                Ok(()) => {
                    if let Some(r) = self.lock().snaps.get_mut(&snap.info.id) {
                        r.last_used_ms = now_ms();
                    }
                    Ok(p)
                }
                Err(e) => {
                    p.kill().await;
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

    pub(crate) fn take_stub(&self) -> std::io::Result<Proc> {
        let pooled = {
            let mut pool = self.stubs.lock().unwrap_or_else(|e| e.into_inner());
            let mut found = None;
            while let Some(mut p) = pool.pop() {
                if p.alive() {
                    found = Some(p);
                    break;
                }
            }
            found
        };
        match pooled {
            Some(p) => Ok(p),
            None => Proc::spawn(&self.stub_spec()),
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
                match Proc::spawn(&self.stub_spec()) {
                    Ok(p) => self.stubs.lock().unwrap_or_else(|e| e.into_inner()).push(p),
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
