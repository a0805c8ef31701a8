//! The four start paths: choosing one per invocation, the cold spawn, the init exchange.
//!
//! - cold: spawn `python3 launcher.py`, wait for its ready line, send the init message;
//! - runtime: deploy the runtime snapshot through a stub, send the init message (asking the launcher to ring
//!   the function doorbell after the import, so the function snapshot is captured on the way);
//! - warm: deploy the function snapshot; the child continues inside the launcher's init handler and answers
//!   the init it received before the capture;
//! - hot: an idle instance (taken in `start_instance`).
//!
//! Snapshot points are in `snapshots.rs`, deploys in `deploy.rs`.

use crate::host::{FunctionInfo, Inner, Instance, SnapRec, StartPath};
use crate::policy::{choose_path, PathState};
use crate::proc::{Line, Proc, SpawnSpec};
use crate::reply::{self, Reply};
use crate::snapshots::Doorbell;
use crate::util::now_ms;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

pub(crate) struct Started {
    pub inst: Instance,
    pub path: StartPath,
    pub logs: Vec<String>,
    /// Time this start took once it had its deploy slot (0 for hot): the instance began the activation
    /// this long ago.
    pub init_ms: u64,
    /// The run message was already written to the instance's stdin (the warm path queues it before the
    /// deploy, saving round trips); only its reply remains to be read.
    pub run_sent: bool,
    /// The run reply's result line, when it arrived while the start was still being confirmed.
    pub first_result: Option<Option<Line>>,
    /// When the run's time limit ends, if it started counting before the start was confirmed (a warm
    /// child answers its queued run message without announcing itself first); else it starts now.
    pub run_deadline: Option<tokio::time::Instant>,
}

#[derive(Debug)]
pub(crate) enum StartError {
    /// The function's init failed (its code raised, no code, ...): a developer error.
    Init {
        path: StartPath,
        logs: Vec<String>,
        error: String,
        /// The init did not answer within `init_timeout_ms`.
        timed_out: bool,
    },
    /// A deploy failed (the caller may fall back to cold).
    Deploy(String),
    Internal(String),
    /// A forced path is not available.
    Unavailable(String),
}

const ENV: [(&str, &str); 4] = [
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("LANG", "C.UTF-8"),
    ("HOME", "/tmp"),
    ("PYTHONDONTWRITEBYTECODE", "1"),
];

impl Inner {
    pub(crate) fn max_line(&self) -> usize {
        self.cfg.max_result_bytes.max(self.cfg.max_log_bytes) + 1
    }

    pub(crate) fn python_spec(
        &self,
        snapshot: bool,
        cgroup_procs: Option<std::path::PathBuf>,
    ) -> SpawnSpec {
        let mut env: Vec<(String, String)> = ENV
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if snapshot {
            env.push(("SEUSS_SNAPSHOT".into(), "1".into()));
        }
        SpawnSpec {
            program: self.cfg.python.clone(),
            args: vec!["-I".into(), self.launcher.display().to_string()],
            env,
            cred: self.cred,
            cgroup_procs,
            max_line: self.max_line(),
        }
    }

    pub(crate) fn init_msg(&self, f: &FunctionInfo, snapshot: bool) -> Value {
        json!({"init": {
            "code": f.exec.code,
            "main": f.exec.main.clone().unwrap_or_else(|| "main".into()),
            "binary": f.exec.binary,
            "snapshot": snapshot,
            "env": {
                "__OW_API_HOST": format!("http://{}", self.cfg.listen),
                "__OW_NAMESPACE": f.namespace,
                "__OW_ACTION_NAME": format!("/{}/{}", f.namespace, f.name),
                "__OW_ACTION_VERSION": f.version,
            },
        }})
    }

    pub(crate) fn make_cgroup(&self, f: &FunctionInfo, id: u64) -> Option<crate::cgroup::Cgroup> {
        let root = self.cgroups.as_ref()?;
        match root.create(&format!("i{id}-{}", crate::store::flat_name(&f.name)), f.limits.memory << 20) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!("instance cgroup for {}: {e}", f.name);
                None
            }
        }
    }

    /// Waits for the launcher's `{"ready": pid, ...}` control line (or a stub's `error ...` line); returns it.
    pub(crate) async fn wait_ready(
        &self,
        p: &mut Proc,
        deadline: Instant,
    ) -> Result<Value, String> {
        match self
            .wait_deployed(p, deadline, false)
            .await
            .map_err(|e| e.to_string())?
        {
            crate::deploy::DeployEvent::Ready(v) => Ok(v),
            crate::deploy::DeployEvent::Result(_) => unreachable!("result lines are not watched"),
        }
    }

    pub(crate) fn new_instance(
        &self,
        f: &FunctionInfo,
        p: Proc,
        deployed: bool,
        cg: Option<crate::cgroup::Cgroup>,
        id: u64,
    ) -> Instance {
        Instance {
            id,
            proc: p,
            function: f.name.clone(),
            revision: f.revision(),
            deployed,
            cgroup: cg,
            last_used_ms: now_ms(),
            bytes: 0,
            measured: false,
            measured_ms: 0,
            busy_bytes: 0,
        }
    }

    /// Turns an init reply into a started instance or an init error.
    pub(crate) async fn finish_init(
        &self,
        inst: Instance,
        reply: Reply,
        path: StartPath,
        t0: Instant,
    ) -> Result<Started, StartError> {
        let timed_out = matches!(reply.result, Err(crate::reply::ReplyError::TimedOut));
        let err = match reply.result {
            Ok(v) if v.get("ok") == Some(&Value::Bool(true)) => {
                let mut inst = inst;
                {
                    let mut st = self.lock();
                    let hint = st.bytes_hint(&inst.function);
                    st.begin_busy(&mut inst, hint);
                }
                return Ok(Started {
                    inst,
                    path,
                    logs: reply.logs,
                    init_ms: t0.elapsed().as_millis() as u64,
                    run_sent: false,
                    first_result: None,
                    run_deadline: None,
                });
            }
            Ok(v) => v
                .get("error")
                .and_then(|e| e.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
            Err(crate::reply::ReplyError::TimedOut) => {
                "The action did not initialize in time.".to_string()
            }
            Err(e) => format!("The action failed to initialize: {e:?}"),
        };
        inst.stop().await;
        Err(StartError::Init {
            path,
            logs: reply.logs,
            error: err,
            timed_out,
        })
    }

    /// Gets an instance of `f` ready to run, by the cheapest path available (or the forced one). `run` is
    /// the run message line, which a warm start sends early (see [`Started::run_sent`]).
    pub(crate) async fn start_instance(
        self: &Arc<Self>,
        f: &FunctionInfo,
        mut forced: Option<StartPath>,
        run: Option<&[u8]>,
    ) -> Result<Started, StartError> {
        loop {
            let (plan, fsnap, rsnap) = {
                let mut st = self.lock();
                let idle = st
                    .idle
                    .iter()
                    .position(|i| i.function == f.name && i.revision == f.revision());
                let fe = st.functions.get(&f.name);
                let fsnap = fe
                    .and_then(|e| e.snap)
                    .and_then(|id| st.snaps.get(&id).cloned());
                let rsnap = st.runtime_snap.and_then(|id| st.snaps.get(&id).cloned());
                let s = PathState {
                    snapshots: self.snapshots_enabled(),
                    idle_instance: idle.is_some(),
                    function_snapshot: fsnap.is_some(),
                    runtime_snapshot: rsnap.is_some(),
                    capture_in_progress: fe.is_some_and(|e| e.capturing),
                    forced,
                };
                let plan = choose_path(&s).map_err(StartError::Unavailable)?;
                if plan.path == StartPath::Hot {
                    let mut inst = st
                        .idle
                        .swap_remove(idle.expect("hot implies an idle instance"));
                    st.begin_busy(&mut inst, 0);
                    return Ok(Started {
                        inst,
                        path: StartPath::Hot,
                        logs: vec![],
                        init_ms: 0,
                        run_sent: false,
                        first_result: None,
                        run_deadline: None,
                    });
                }
                if plan.capture {
                    if let Some(e) = st.functions.get_mut(&f.name) {
                        e.capturing = true;
                    }
                }
                (plan, fsnap, rsnap)
            };
            if self.snapshots_enabled() && rsnap.is_none() {
                self.clone().kick_runtime_build();
            }
            let permit = self
                .deploys
                .clone()
                .acquire_owned()
                .await
                .map_err(|e| StartError::Internal(e.to_string()))?;
            let r = match plan.path {
                StartPath::Warm => {
                    self.start_warm(f, fsnap.expect("warm implies a snapshot"), run)
                        .await
                }
                StartPath::Runtime => {
                    self.start_runtime(f, rsnap.expect("runtime implies a snapshot"), plan.capture)
                        .await
                }
                _ => self.start_cold(f).await,
            };
            drop(permit);
            if plan.capture {
                if let Some(e) = self.lock().functions.get_mut(&f.name) {
                    e.capturing = false;
                }
            }
            match r {
                Err(StartError::Deploy(e)) if forced.is_none() => {
                    tracing::warn!(
                        "deploy for {} failed, falling back to a cold start: {e}",
                        f.name
                    );
                    forced = Some(StartPath::Cold);
                }
                r => return r,
            }
        }
    }

    pub(crate) async fn start_cold(&self, f: &FunctionInfo) -> Result<Started, StartError> {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(self.cfg.init_timeout_ms);
        let id = self.next_instance.fetch_add(1, Ordering::Relaxed);
        let cg = self.make_cgroup(f, id);
        let mut p = Proc::spawn(&self.python_spec(false, cg.as_ref().map(|c| c.procs_file())))
            .map_err(|e| {
                StartError::Internal(format!("spawning {}: {e}", self.cfg.python.display()))
            })?;
        if let Err(e) = self.wait_ready(&mut p, deadline).await {
            p.kill().await;
            return Err(StartError::Internal(e));
        }
        let reply = reply::exchange(
            &mut p,
            &self.init_msg(f, false),
            deadline,
            self.reply_limits(),
        )
        .await;
        self.finish_init(
            self.new_instance(f, p, false, cg, id),
            reply,
            StartPath::Cold,
            t0,
        )
        .await
    }

    /// Warm: the function snapshot was captured inside the launcher's init handler after the code loaded,
    /// so a deployed child has nothing to initialise and sends no init reply: it reads the run message
    /// (queued before the deploy) straight away.
    pub(crate) async fn start_warm(
        self: &Arc<Self>,
        f: &FunctionInfo,
        snap: SnapRec,
        run: Option<&[u8]>,
    ) -> Result<Started, StartError> {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(self.cfg.init_timeout_ms);
        let id = self.next_instance.fetch_add(1, Ordering::Relaxed);
        // The child runs a queued message the moment it resumes and may answer it without a ready line:
        // from then on the function's own time limit applies.
        let run_deadline = t0 + Duration::from_millis(f.limits.timeout);
        let d = self
            .deploy(&snap, f, deadline, run, Some(run_deadline))
            .await?;
        let mut p = d.proc;
        let run_sent = d.queued
            || match run {
                Some(line) => matches!(
                    tokio::time::timeout_at(deadline, p.send_stdin(line)).await,
                    Ok(Ok(()))
                ),
                None => false,
            };
        tracing::debug!(target: "seussd::timing", "warm {}: deployed {:?}", f.name, t0.elapsed());
        let mut inst = self.new_instance(f, p, true, d.cg, id);
        {
            let mut st = self.lock();
            let hint = st.bytes_hint(&f.name);
            st.begin_busy(&mut inst, hint);
        }
        Ok(Started {
            inst,
            path: StartPath::Warm,
            logs: vec![],
            init_ms: t0.elapsed().as_millis() as u64,
            run_sent,
            first_result: d.first_result,
            run_deadline: d.queued.then_some(run_deadline),
        })
    }

    pub(crate) async fn start_runtime(
        self: &Arc<Self>,
        f: &FunctionInfo,
        rt: SnapRec,
        capture: bool,
    ) -> Result<Started, StartError> {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_millis(self.cfg.init_timeout_ms);
        let id = self.next_instance.fetch_add(1, Ordering::Relaxed);
        let mut line = serde_json::to_vec(&self.init_msg(f, capture)).expect("JSON");
        line.push(b'\n');
        let d = self.deploy(&rt, f, deadline, Some(&line), None).await?;
        let (mut p, cg) = (d.proc, d.cg);
        let mut first = d.first_result;
        let sent = d.queued
            || matches!(
                tokio::time::timeout_at(deadline, p.send_stdin(&line)).await,
                Ok(Ok(()))
            );
        if first.is_some() {
            // The init was answered before the ready line was read (nothing was captured).
        } else if !sent {
            first = Some(None);
        } else if capture {
            enum Ev {
                Result(Option<Line>),
                Ctl(Option<Line>),
            }
            let ev = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    biased;
                    l = p.result.recv() => Ev::Result(l),
                    c = p.ctl.recv() => Ev::Ctl(c),
                }
            })
            .await;
            match ev {
                Ok(Ev::Result(l)) => first = Some(l),
                Ok(Ev::Ctl(Some(Line::Data(d)))) => match serde_json::from_slice::<Doorbell>(&d) {
                    Ok(db) => {
                        match self.capture_at(&mut p, &db, false, deadline, &f.name).await {
                            Ok(snap) => {
                                if let Err(e) = self.record_snapshot(snap, Some(f), &db).await {
                                    tracing::warn!("function snapshot of {} not kept: {e}", f.name);
                                }
                            }
                            Err(e) => tracing::warn!("function snapshot of {} failed: {e}", f.name),
                        }
                        if let Err(e) = self.wait_ready(&mut p, deadline).await {
                            tracing::warn!("instance of {} after capture: {e}", f.name);
                        }
                    }
                    Err(e) => tracing::warn!("unexpected control line from {}: {e}", f.name),
                },
                Ok(Ev::Ctl(_)) => first = Some(None),
                Err(_) => first = Some(None),
            }
        }
        let reply = reply::collect(&mut p, first, deadline, self.reply_limits()).await;
        self.finish_init(
            self.new_instance(f, p, true, cg, id),
            reply,
            StartPath::Runtime,
            t0,
        )
        .await
    }
}
