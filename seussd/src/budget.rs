//! Memory accounting against the budget: what counts (snapshot private pages, idle instances' private
//! memory), parking instances as idle when they fit, carrying out eviction plans, and idle expiry.

use crate::host::{Inner, Instance, State};
use crate::policy::{self, Candidate, Victim};
use crate::util::now_ms;
use std::sync::{Arc, Weak};
use std::time::Duration;

pub const PAGE: u64 = 4096;

/// How long an instance's measured size is trusted before it is measured again.
pub const REMEASURE_MS: u64 = 1000;

/// Bytes in use (snapshots, idle and busy instances) and eviction candidates (the runtime snapshot is
/// pinned).
pub(crate) fn candidates(st: &State) -> (u64, Vec<Candidate>) {
    let mut c = Vec::new();
    for r in st.snaps.values() {
        let has_children = st.snaps.values().any(|o| o.info.parent == Some(r.info.id));
        c.push(Candidate {
            victim: Victim::Snapshot(r.info.id),
            bytes: r.info.private_pages * PAGE,
            last_used_ms: r.last_used_ms,
            pinned: st.runtime_snap == Some(r.info.id) || has_children,
        });
    }
    for i in &st.idle {
        c.push(Candidate {
            victim: Victim::Instance(i.id),
            bytes: i.bytes,
            last_used_ms: i.last_used_ms,
            pinned: false,
        });
    }
    // Busy instances are not candidates (they cannot be evicted) but take their part of the budget.
    (c.iter().map(|x| x.bytes).sum::<u64>() + st.busy_bytes, c)
}

/// What a plan removed from the state, to be released outside the lock.
#[derive(Default)]
pub(crate) struct Evicted {
    pub snaps: Vec<u64>,
    pub instances: Vec<Instance>,
}

/// Makes room for `need` bytes: removes the victims from the state, or returns `None` if it cannot fit.
pub(crate) fn make_room(st: &mut State, budget: u64, need: u64) -> Option<Evicted> {
    let (used, cands) = candidates(st);
    let plan = policy::plan_eviction(&cands, used, need, budget, now_ms());
    if !plan.fits {
        return None;
    }
    let mut ev = Evicted::default();
    for v in plan.victims {
        match v {
            Victim::Snapshot(id) => {
                st.snaps.remove(&id);
                for e in st.functions.values_mut() {
                    if e.snap == Some(id) {
                        e.snap = None;
                    }
                }
                ev.snaps.push(id);
            }
            Victim::Instance(id) => {
                if let Some(pos) = st.idle.iter().position(|i| i.id == id) {
                    ev.instances.push(st.idle.swap_remove(pos));
                }
            }
        }
    }
    Some(ev)
}

impl Inner {
    /// Releases what [`make_room`] took out.
    pub(crate) async fn finish_eviction(&self, ev: Evicted) {
        let any_snap = !ev.snaps.is_empty();
        self.metrics.evicted("snapshot", ev.snaps.len());
        self.metrics.evicted("instance", ev.instances.len());
        for id in ev.snaps {
            tracing::info!("evicting snapshot {id} (memory budget)");
            self.release_snapshot(id);
        }
        for i in ev.instances {
            i.stop().await;
        }
        if any_snap {
            self.save_index();
        }
    }

    /// Returns a used instance to the idle pool if it fits the budget (evicting colder things), else stops it.
    /// Measuring an instance (a page-table walk) is left until after the answer when an estimate exists:
    /// its own last measurement, or that of the function's last deployed instance. Returns the id to pass
    /// to [`Inner::measure_idle`] then.
    pub(crate) async fn park(self: &Arc<Self>, mut inst: Instance) -> Option<u64> {
        if !inst.proc.alive() {
            self.retire(inst).await;
            return None;
        }
        let hint = (inst.bytes > 0).then_some(inst.bytes).or_else(|| {
            let st = self.lock();
            let h = st.functions.get(&inst.function).map_or(0, |e| e.bytes_hint);
            (inst.deployed && h > 0).then_some(h)
        });
        // An instance measured within the last REMEASURE_MS keeps its figure (a busy hot instance would
        // otherwise walk its page tables after every activation).
        let fresh = inst.measured && now_ms().saturating_sub(inst.measured_ms) < REMEASURE_MS;
        let later = hint.is_some() && !fresh;
        if hint.is_none() {
            inst.bytes = measure_bytes(self.engine.as_deref(), inst.proc.pid, inst.deployed);
            inst.measured_ms = now_ms();
        } else if !fresh {
            inst.bytes = hint.unwrap_or_default();
        }
        inst.measured = !later;
        inst.last_used_ms = now_ms();
        let id = inst.id;
        let outcome = {
            let mut st = self.lock();
            st.end_busy(&mut inst);
            let current = st
                .functions
                .get(&inst.function)
                .is_some_and(|e| e.info.revision() == inst.revision);
            if current && !later && inst.deployed {
                if let Some(e) = st.functions.get_mut(&inst.function) {
                    e.bytes_hint = inst.bytes;
                }
            }
            match current
                .then(|| make_room(&mut st, self.cfg.budget_bytes(), inst.bytes))
                .flatten()
            {
                Some(ev) => {
                    st.idle.push(inst);
                    Ok(ev)
                }
                None => Err(inst),
            }
        };
        match outcome {
            Ok(ev) => {
                self.finish_eviction(ev).await;
                later.then_some(id)
            }
            Err(inst) => {
                inst.stop().await;
                None
            }
        }
    }

    /// Measures idle instance `id` (parked on an estimate), keeps the figure as its function's estimate,
    /// and evicts if the real size no longer fits the budget.
    pub(crate) async fn measure_idle(&self, id: u64) {
        let probe = {
            let st = self.lock();
            st.idle.iter().find(|i| i.id == id).map(|i| (i.proc.pid, i.deployed))
        };
        let Some((pid, deployed)) = probe else { return };
        // A page-table walk (or an smaps read): on a blocking thread, so it holds up no other task.
        let engine = self.engine.clone();
        let bytes = tokio::task::spawn_blocking(move || measure_bytes(engine.as_deref(), pid, deployed))
            .await
            .unwrap_or(0);
        let ev = {
            let mut st = self.lock();
            let Some(i) = st.idle.iter_mut().find(|i| i.id == id) else { return };
            i.bytes = bytes;
            i.measured = true;
            i.measured_ms = now_ms();
            let (f, deployed) = (i.function.clone(), i.deployed);
            if deployed {
                if let Some(e) = st.functions.get_mut(&f) {
                    e.bytes_hint = bytes;
                }
            }
            make_room(&mut st, self.cfg.budget_bytes(), 0)
        };
        match ev {
            Some(ev) => self.finish_eviction(ev).await,
            // Nothing can go: the estimate was too low; this instance is the one to drop.
            None => {
                let gone = {
                    let mut st = self.lock();
                    st.idle.iter().position(|i| i.id == id).map(|p| st.idle.swap_remove(p))
                };
                if let Some(i) = gone {
                    i.stop().await;
                }
            }
        }
    }
}

/// Stops idle instances past `idle_timeout_s`, once a second, for as long as the host lives.
pub(crate) fn spawn_expiry(host: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(inner) = host.upgrade() else { return };
            let gone = {
                let mut st = inner.lock();
                let idle: Vec<(u64, u64)> =
                    st.idle.iter().map(|i| (i.id, i.last_used_ms)).collect();
                let ids = policy::expired(&idle, now_ms(), inner.cfg.idle_timeout_s * 1000);
                let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.idle)
                    .into_iter()
                    .partition(|i| ids.contains(&i.id));
                st.idle = keep;
                gone
            };
            for i in gone {
                tracing::debug!("idle instance {} of {} expired", i.id, i.function);
                i.stop().await;
            }
        }
    });
}

/// An idle instance as seen from outside (benchmarks, diagnostics).
#[derive(Debug, Clone, serde::Serialize)]
pub struct IdleInfo {
    pub id: u64,
    pub pid: i32,
    pub function: String,
    /// Started from a snapshot (its bytes are the pages it dirtied since the deploy).
    pub deployed: bool,
    /// Private bytes charged to the budget.
    pub bytes: u64,
    /// `bytes` was measured (an instance is parked on an estimate and measured right after its answer).
    pub measured: bool,
}

impl crate::host::Host {
    /// The idle instances, oldest first.
    pub fn idle_instances(&self) -> Vec<IdleInfo> {
        let st = self.inner.lock();
        st.idle
            .iter()
            .map(|i| IdleInfo {
                id: i.id,
                pid: i.proc.pid,
                function: i.function.clone(),
                deployed: i.deployed,
                bytes: i.bytes,
                measured: i.measured,
            })
            .collect()
    }

    /// Stops the idle instances of `function` (all of them for `None`); returns how many.
    pub async fn stop_idle(&self, function: Option<&str>) -> usize {
        let gone = {
            let mut st = self.inner.lock();
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.idle)
                .into_iter()
                .partition(|i| function.map_or(true, |f| i.function == f));
            st.idle = keep;
            gone
        };
        let n = gone.len();
        for i in gone {
            i.stop().await;
        }
        n
    }
}

/// Private bytes of an instance: pages it dirtied since its deploy, or its whole private memory.
fn measure_bytes(engine: Option<&dyn crate::engine::SnapshotEngine>, pid: i32, deployed: bool) -> u64 {
    if deployed {
        if let Some(Ok((_, pages))) = engine.map(|e| e.dirty(pid)) {
            return pages * PAGE;
        }
    }
    crate::proc::private_bytes(pid)
}
