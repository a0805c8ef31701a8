//! Snapshot points and snapshot bookkeeping: doorbells (arm, `armed`, wait for the freeze, capture, then
//! kill or resume), keeping a capture only if it fits the budget, building the runtime snapshot, prewarming a
//! function, and re-adopting the snapshots of the persisted index after a restart.

use crate::host::{FunctionInfo, HostError, HostEvent, Inner, SnapRec, SnapshotInfo};
use crate::proc::{Line, Proc};
use crate::starts::StartError;
use crate::util::now_ms;
use nix::errno::Errno;
use serde::Deserialize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use uapi::FreezeState;

/// A doorbell line from the launcher.
#[derive(Deserialize, Debug, Clone)]
pub(crate) struct Doorbell {
    pub doorbell: String,
    pub pid: i32,
    pub bell: u64,
    pub cookie: u64,
    #[serde(default)]
    pub tid: u64,
}

impl Inner {
    /// Arms the doorbell, lets the launcher ring it, captures; the task is then killed or resumed.
    pub(crate) async fn capture_at(
        &self,
        p: &mut Proc,
        db: &Doorbell,
        kill: bool,
        deadline: Instant,
    ) -> Result<u64, String> {
        let eng = self.engine.clone().ok_or("no snapshot engine")?;
        let blocking = |f: Box<dyn FnOnce() -> Result<u64, Errno> + Send>| async move {
            tokio::task::spawn_blocking(f)
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
        };
        tracing::debug!(
            "{} doorbell of pid {} at {:#x}",
            db.doorbell,
            db.pid,
            db.bell
        );
        if db.pid != p.pid {
            let _ = p.send_ctl("skip").await;
            return Err(format!(
                "doorbell from pid {} but the instance is {}",
                db.pid, p.pid
            ));
        }
        let (e, pid, bell) = (eng.clone(), p.pid, db.bell);
        let freeze = match blocking(Box::new(move || e.arm_write(pid, bell))).await {
            Ok(f) => f,
            Err(err) => {
                let _ = p.send_ctl("skip").await;
                return Err(format!("arming the doorbell: {err}"));
            }
        };
        let release = |kill: bool| {
            let e = eng.clone();
            async move { blocking(Box::new(move || e.release(freeze, kill).map(|_| 0))).await }
        };
        if p.send_ctl("armed").await.is_err() {
            let _ = release(true).await;
            return Err("the instance went away".into());
        }
        loop {
            let e = eng.clone();
            let st = tokio::task::spawn_blocking(move || e.wait(freeze, 200))
                .await
                .map_err(|e| e.to_string())?;
            match st {
                Ok(FreezeState::Frozen { .. }) => break,
                Ok(FreezeState::Armed) | Err(Errno::ETIMEDOUT) | Err(Errno::EINTR)
                    if Instant::now() < deadline =>
                {
                    continue
                }
                other => {
                    let _ = release(true).await;
                    return Err(format!("waiting for the doorbell: {other:?}"));
                }
            }
        }
        let e = eng.clone();
        let snap = blocking(Box::new(move || e.capture(freeze))).await;
        if let Err(err) = release(kill).await {
            tracing::warn!("releasing freeze {freeze}: {err}");
        }
        snap.map_err(|e| format!("capture: {e}"))
    }

    /// Keeps a new snapshot if it fits the budget (evicting colder things), else frees it.
    pub(crate) async fn record_snapshot(
        &self,
        id: u64,
        f: Option<&FunctionInfo>,
        db: &Doorbell,
    ) -> Result<(), String> {
        let eng = self.engine.clone().ok_or("no snapshot engine")?;
        let stat = eng
            .snap_info(id)
            .map_err(|e| format!("snap_info {id}: {e}"))?;
        let now = now_ms();
        let rec = SnapRec {
            info: SnapshotInfo {
                id,
                parent: stat.parent,
                function: f.map(|f| f.name.clone()),
                runtime: self.runtime_key.clone(),
                private_pages: stat.private_pages,
                created_ms: now,
            },
            cookie_addr: db.cookie,
            tid_addr: db.tid,
            revision: f.map_or(0, |f| f.revision()),
            last_used_ms: now,
        };
        let ev = {
            let mut st = self.lock();
            let current = match f {
                Some(f) => st
                    .functions
                    .get(&f.name)
                    .is_some_and(|e| e.info.revision() == f.revision() && e.snap.is_none()),
                None => st.runtime_snap.is_none(),
            };
            let ev = if current {
                crate::budget::make_room(
                    &mut st,
                    self.cfg.budget_bytes(),
                    stat.private_pages * crate::budget::PAGE,
                )
            } else {
                None
            };
            if ev.is_some() {
                match f {
                    Some(f) => st.functions.get_mut(&f.name).expect("checked").snap = Some(id),
                    None => st.runtime_snap = Some(id),
                }
                st.snaps.insert(id, rec);
            }
            ev
        };
        let Some(ev) = ev else {
            let _ = eng.snap_release(id);
            return Err(format!(
                "snapshot {id} is stale or does not fit the memory budget"
            ));
        };
        self.finish_eviction(ev).await;
        self.save_index();
        tracing::info!(
            "captured snapshot {id} ({} private pages) for {}",
            stat.private_pages,
            f.map_or("the runtime", |f| &f.name)
        );
        self.emit(HostEvent::SnapshotCaptured {
            id,
            function: f.map(|f| f.name.clone()),
        });
        Ok(())
    }

    /// Starts building the runtime snapshot in the background unless one exists, a build runs, or the last
    /// build failed less than a minute ago.
    pub(crate) fn kick_runtime_build(self: Arc<Self>) {
        if now_ms().saturating_sub(self.runtime_failed_ms.load(Ordering::Relaxed)) < 60_000
            || self.building_runtime.swap(true, Ordering::SeqCst)
        {
            return;
        }
        tokio::spawn(async move {
            if let Err(e) = self.ensure_runtime().await {
                tracing::error!(
                    "building the runtime snapshot failed: {e}; cold starts until it works"
                );
                self.runtime_failed_ms.store(now_ms(), Ordering::Relaxed);
            }
            self.building_runtime.store(false, Ordering::SeqCst);
        });
    }

    /// Builds the runtime snapshot unless one exists.
    pub(crate) async fn ensure_runtime(&self) -> Result<SnapRec, String> {
        let _g = self.runtime_lock.lock().await;
        if let Some(r) = {
            let st = self.lock();
            st.runtime_snap.and_then(|id| st.snaps.get(&id).cloned())
        } {
            return Ok(r);
        }
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(self.cfg.init_timeout_ms);
        let mut p = Proc::spawn(&self.python_spec(true, None))
            .map_err(|e| format!("spawning python: {e}"))?;
        let db = match tokio::time::timeout_at(deadline, p.ctl.recv()).await {
            Ok(Some(Line::Data(d))) => serde_json::from_slice::<Doorbell>(&d)
                .map_err(|e| format!("bad doorbell line: {e}")),
            _ => Err(format!(
                "launcher gave no doorbell: {}",
                p.stderr_text(Duration::from_millis(200)).await.trim()
            )),
        };
        let snap = match db {
            Ok(db) => self
                .capture_at(&mut p, &db, true, deadline)
                .await
                .map(|s| (s, db)),
            Err(e) => Err(e),
        };
        p.kill().await;
        let (id, db) = snap?;
        self.record_snapshot(id, None, &db).await?;
        tracing::info!(
            "runtime snapshot {id} built in {} ms",
            t0.elapsed().as_millis()
        );
        let st = self.lock();
        st.snaps
            .get(&id)
            .cloned()
            .ok_or_else(|| "runtime snapshot vanished".into())
    }

    /// Builds the function snapshot now; the instance that made it stays as an idle instance.
    pub(crate) async fn prewarm(self: &Arc<Self>, f: &FunctionInfo) -> Result<u64, HostError> {
        if let Some(id) = self.lock().functions.get(&f.name).and_then(|e| e.snap) {
            return Ok(id);
        }
        let rt = self.ensure_runtime().await.map_err(HostError::Internal)?;
        let _permit = self
            .deploys
            .clone()
            .acquire_owned()
            .await
            .map_err(HostError::internal)?;
        match self.start_runtime(f, rt, true).await {
            Ok(s) => {
                if let Some(id) = self.park(s.inst).await {
                    self.measure_idle(id).await;
                }
            }
            Err(StartError::Init { error, .. }) => {
                return Err(HostError::InvalidArgs(format!(
                    "the function failed to initialize: {error}"
                )))
            }
            Err(e) => return Err(HostError::Internal(format!("{e:?}"))),
        }
        self.lock()
            .functions
            .get(&f.name)
            .and_then(|e| e.snap)
            .ok_or_else(|| HostError::Internal("the capture failed; see seussd's log".into()))
    }

    /// Re-adopts the snapshots of the index that are still alive in the kernel and match the current runtime
    /// key and function revisions; frees the other ones (children first).
    pub(crate) fn adopt_snapshots(&self) {
        let Some(idx) = self
            .store
            .load_json::<crate::host::SnapIndex>("snapshots.json")
        else {
            return;
        };
        let Some(eng) = self.engine.clone() else {
            return;
        };
        let live: std::collections::HashSet<u64> =
            eng.snap_list().unwrap_or_default().into_iter().collect();
        let mut st = self.lock();
        let root = idx.snapshots.iter().find(|r| {
            r.info.function.is_none() && idx.key == self.runtime_key && live.contains(&r.info.id)
        });
        let root_id = root.map(|r| r.info.id);
        let mut drop = Vec::new();
        for r in &idx.snapshots {
            let keep = live.contains(&r.info.id)
                && idx.key == self.runtime_key
                && match &r.info.function {
                    None => Some(r.info.id) == root_id,
                    Some(name) => {
                        r.info.parent == root_id
                            && st.functions.get(name).is_some_and(|e| {
                                e.info.revision() == r.revision && e.snap.is_none()
                            })
                    }
                };
            if keep {
                st.snaps.insert(r.info.id, r.clone());
                match &r.info.function {
                    None => st.runtime_snap = Some(r.info.id),
                    Some(name) => {
                        st.functions.get_mut(name).expect("checked").snap = Some(r.info.id)
                    }
                }
            } else if live.contains(&r.info.id) {
                drop.push((r.info.function.is_none(), r.info.id));
            }
        }
        // A smaller budget than before: evict (function snapshots first, by the usual score) until it fits.
        if let Some(ev) = crate::budget::make_room(&mut st, self.cfg.budget_bytes(), 0) {
            drop.extend(ev.snaps.into_iter().map(|id| (false, id)));
        }
        drop.sort();
        for (_, id) in drop {
            if let Err(e) = eng.snap_release(id) {
                tracing::warn!("releasing stale snapshot {id}: {e}");
            }
        }
        tracing::info!("re-adopted {} snapshots", st.snaps.len());
    }
}
