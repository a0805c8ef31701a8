//! Snapshot points and snapshot bookkeeping: doorbells (arm, `armed`, wait for the freeze, capture, then
//! kill or resume), keeping a capture only if it fits the budget, building the runtime snapshot, prewarming a
//! function, and re-adopting the snapshots of the persisted index after a restart.

use crate::host::{FunctionInfo, HostError, HostEvent, Inner, SnapRec, SnapshotInfo};
use crate::proc::{Line, Proc};
use crate::starts::StartError;
use crate::testhook;
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
    /// `subject` (a function name, or `runtime`) only names the capture for logs and test hooks.
    pub(crate) async fn capture_at(
        &self,
        p: &mut Proc,
        db: &Doorbell,
        kill: bool,
        deadline: Instant,
        subject: &str,
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
        if testhook::fires("capture-before", subject) {
            testhook::stop("capture-before", subject).await;
        }
        let e = eng.clone();
        let in_ioctl = testhook::fires("capture-during", subject).then(|| subject.to_string());
        let snap = blocking(Box::new(move || {
            if let Some(s) = &in_ioctl {
                testhook::kill_inside_syscall("capture-during", s, libc::SYS_ioctl);
            }
            let r = e.capture(freeze);
            if in_ioctl.is_some() {
                testhook::returned();
            }
            r
        }))
        .await;
        if snap.is_ok() && testhook::fires("capture-after", subject) {
            testhook::stop("capture-after", subject).await;
        }
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
        let stat = match eng.snap_info(id) {
            Ok(s) => s,
            Err(e) => {
                // Not kept: free it, or nothing would ever name it again.
                let _ = eng.snap_release(id);
                return Err(format!("snap_info {id}: {e}"));
            }
        };
        let now = now_ms();
        let rec = SnapRec {
            info: SnapshotInfo {
                id,
                parent: stat.parent,
                function: f.map(|f| f.name.clone()),
                runtime: self.runtime_key.clone(),
                private_pages: stat.private_pages,
                created_ms: now,
                threads: stat.threads,
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
                .capture_at(&mut p, &db, true, deadline, "runtime")
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

    /// The uid that owns the snapshots this seussd captures: the kernel records the captured task's real
    /// uid, and every task seussd captures runs as the instance user (as seussd's own user when seussd is
    /// not root).
    pub(crate) fn snapshot_owner(&self) -> u32 {
        self.cred.map_or_else(|| nix::unistd::getuid().as_raw(), |(u, _)| u)
    }

    /// Re-adopts the snapshots of the index that are still alive in the kernel (the same snapshot: same
    /// parent, private pages and owner, not another one that got its id after a module reload) and match
    /// the current runtime key and function revisions. Then releases, children first, every other live
    /// snapshot that is seussd's: listed in the index, or owned by the instance user. Snapshots outlive the
    /// process that captured them, so this is what frees those a crashed seussd left behind, including
    /// any captured after its last index write (e.g. killed between a CAPTURE and the index update).
    pub(crate) fn adopt_snapshots(&self) {
        let Some(eng) = self.engine.clone() else {
            return;
        };
        let idx = self
            .store
            .load_json::<crate::host::SnapIndex>("snapshots.json")
            .unwrap_or_default();
        let owner = self.snapshot_owner();
        let live: std::collections::BTreeMap<u64, Option<crate::engine::SnapStat>> = match eng.snap_list() {
            Ok(ids) => ids.into_iter().map(|id| (id, eng.snap_info(id).ok())).collect(),
            Err(e) => {
                tracing::warn!("listing the kernel's snapshots: {e}; adopting none");
                Default::default()
            }
        };
        // The indexed snapshot itself, still alive (not another one with its id)...
        let alive = |r: &SnapRec| {
            live.get(&r.info.id)
                .copied()
                .flatten()
                .is_some_and(|s| s.parent == r.info.parent && s.private_pages == r.info.private_pages)
        };
        // ...and deployable by this run's stubs (the owner may only differ if instance_user changed).
        let same = |r: &SnapRec| {
            alive(r) && live.get(&r.info.id).copied().flatten().is_some_and(|s| s.uid == owner)
        };
        let mut st = self.lock();
        let root_id = idx
            .snapshots
            .iter()
            .find(|r| r.info.function.is_none() && idx.key == self.runtime_key && same(r))
            .map(|r| r.info.id);
        let mut indexed = std::collections::HashSet::new();
        for r in &idx.snapshots {
            if alive(r) {
                indexed.insert(r.info.id);
            }
            let keep = same(r)
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
            }
        }
        // A smaller budget than before: evict (function snapshots first, by the usual score) until it fits.
        if let Some(ev) = crate::budget::make_room(&mut st, self.cfg.budget_bytes(), 0) {
            indexed.extend(ev.snaps);
        }
        let adopted = st.snaps.len();
        drop(st);
        let (mut ours, mut foreign) = (Vec::new(), 0);
        for (&id, stat) in &live {
            if self.lock().snaps.contains_key(&id) {
                continue;
            }
            match stat {
                Some(s) if s.uid == owner || indexed.contains(&id) => ours.push(id),
                Some(_) => foreign += 1,
                None => {}
            }
        }
        let unindexed = ours.iter().filter(|id| !indexed.contains(id)).count();
        let tried = ours.len();
        let left = release_tree(eng.as_ref(), ours);
        tracing::info!(
            "re-adopted {adopted} snapshots; released {} other snapshots of seussd's (instance uid {owner}; \
             {unindexed} of them not in the index: left by an earlier run){}{}",
            tried - left.len(),
            if foreign > 0 { format!("; {foreign} of other users left alone") } else { String::new() },
            if left.is_empty() { String::new() } else { format!("; could not release {left:?}") },
        );
    }
}

/// Releases `ids`, each after its children among them (a parent is EBUSY while it has children): passes
/// until nothing more goes. Returns the ids it could not release.
fn release_tree(eng: &dyn crate::engine::SnapshotEngine, mut ids: Vec<u64>) -> Vec<u64> {
    loop {
        let before = ids.len();
        ids.retain(|&id| match eng.snap_release(id) {
            Ok(()) | Err(Errno::ENOENT) => false,
            Err(Errno::EBUSY) => true,
            Err(e) => {
                tracing::warn!("releasing snapshot {id}: {e}");
                true
            }
        });
        if ids.is_empty() || ids.len() == before {
            return ids;
        }
    }
}
