//! Deploys: a stub (`seuss-stub`, pre-spawned in a small pool, each already in a cgroup of its own that
//! becomes the instance's, limited to the default function memory) gets the function's memory limit (if
//! it differs), the instance's first message on its stdin, and
//! is told which snapshot to become; its control line `{"ready": ...}` (from the launcher inside the
//! snapshot) or `error ...` (from the stub) says how it went.

use crate::cgroup::Cgroup;
use crate::host::{FunctionInfo, Inner, SnapRec};
use crate::proc::{Line, Proc, SpawnSpec};
use crate::starts::StartError;
use crate::util::{nonzero_u64, now_ms};
use std::sync::atomic::Ordering;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Bytes queued on a stub's stdin before its deploy: the capacity of an empty Linux pipe.
const PIPE_CAPACITY: usize = 64 << 10;
/// How long a stub that closed its control socket gets to have its last line (the reason) read.
const STUB_LAST_WORDS: std::time::Duration = std::time::Duration::from_millis(200);

/// A deployed instance, as [`Inner::deploy`] returns it.
pub(crate) struct Deployed {
    pub proc: Proc,
    pub cg: Option<Cgroup>,
    /// The first message was queued on stdin before the deploy.
    pub queued: bool,
    /// A result line that arrived before the ready line (for [`crate::reply::collect`]).
    pub first_result: Option<Option<Line>>,
}

/// Why [`Inner::wait_deployed`] gave up.
#[derive(Debug)]
pub(crate) enum WaitError {
    /// The stub reported a failed deploy (its `error ...` line).
    Stub(String),
    /// The process exited (or sent a control line too long to be either answer).
    Exited(String),
    /// The deadline came first.
    Deadline,
}

impl std::fmt::Display for WaitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitError::Stub(s) | WaitError::Exited(s) => f.write_str(s),
            WaitError::Deadline => f.write_str("instance not ready before the deadline"),
        }
    }
}

/// What ended [`Inner::wait_deployed`].
pub(crate) enum DeployEvent {
    Ready(Value),
    Result(Option<Line>),
}

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
    /// `snap`. `first_msg` (the message the instance will read first) is queued on its stdin before the
    /// deploy when it fits the pipe, so the child finds it the moment it resumes instead of after a round
    /// trip through seussd. Returns once the child said it is ready or its first result line came.
    ///
    /// `run_deadline`: the queued message is a run, which a warm child answers without a ready line (see
    /// the launcher's `handle_init`); the wait then lasts until the run's own deadline, and reaching it
    /// returns the instance as deployed and still running, for the caller to time the run out.
    pub(crate) async fn deploy(
        self: &Arc<Self>,
        snap: &SnapRec,
        f: &FunctionInfo,
        deadline: Instant,
        first_msg: Option<&[u8]>,
        run_deadline: Option<Instant>,
    ) -> Result<Deployed, StartError> {
        for attempt in 0..2 {
            let t0 = std::time::Instant::now();
            let Stub { proc: mut p, mut cg } = self
                .take_stub()
                .map_err(|e| StartError::Deploy(format!("spawning the stub: {e}")))?;
            if let Some(cg) = &mut cg {
                if let Err(e) = cg.set_memory_max(f.limits.memory << 20) {
                    tracing::warn!("memory.max of stub {}: {e}", p.pid);
                }
            }
            tracing::debug!(target: "seussd::timing", "deploy: stub ready in its cgroup after {:?}", t0.elapsed());
            // An empty pipe takes PIPE_CAPACITY bytes without blocking (the stub never reads stdin).
            let queued = match first_msg {
                Some(m) if m.len() <= PIPE_CAPACITY => p.send_stdin(m).await.is_ok(),
                _ => false,
            };
            let cmd = format!(
                "deploy {} {} {} {}",
                snap.info.id,
                snap.cookie_addr,
                nonzero_u64(),
                snap.tid_addr
            );
            let sent_ns = crate::util::mono_ns();
            if p.send_ctl(&cmd).await.is_err() {
                // A stub that failed at start (say, opening the device) said why on its control line
                // before exiting; that reason is final. Without one, a fresh stub gets one more try.
                let said = p.recv_ctl(STUB_LAST_WORDS).await.filter(|d| d.starts_with(b"error"));
                self.discard_stub(Stub { proc: p, cg }).await;
                match said {
                    Some(d) => {
                        return Err(StartError::Deploy(format!(
                            "deploy of snapshot {}: {}",
                            snap.info.id,
                            String::from_utf8_lossy(&d)
                        )))
                    }
                    None if attempt == 0 => continue,
                    None => return Err(StartError::Deploy("the stub died".into())),
                }
            }
            if crate::testhook::fires("deploy-during", &f.name) {
                crate::testhook::kill_now("deploy-during", &f.name);
            }
            if crate::testhook::fires("deploy-sent", &f.name) {
                crate::testhook::stop("deploy-sent", &f.name).await;
            }
            let run_deadline = run_deadline.filter(|_| queued);
            let first = self.wait_deployed(&mut p, run_deadline.unwrap_or(deadline), queued).await;
            if let Ok(DeployEvent::Ready(v)) = &first {
                // The launcher stamps when the child resumed after the doorbell and when it sent this line.
                let at = |k: &str| v.get(k).and_then(Value::as_u64).map(|t| t.saturating_sub(sent_ns) / 1000);
                tracing::debug!(target: "seussd::timing", "deploy: resumed +{:?} us, ready sent +{:?} us, received +{} us",
                    at("resumed_ns"), at("ready_ns"), (crate::util::mono_ns() - sent_ns) / 1000);
            }
            // Deployed, with the result line if one came first.
            let first_result = match first {
                Ok(DeployEvent::Ready(_)) => Ok(None),
                Ok(DeployEvent::Result(l)) => Ok(Some(l)),
                // A warm child busy with its run (it sends no ready line): still running at the run's
                // deadline, it is deployed and the caller times the run out; gone without a word from the
                // stub, it died in its run (a failed deploy says so on the control line).
                Err(WaitError::Deadline) if run_deadline.is_some() => Ok(None),
                Err(WaitError::Exited(_)) if run_deadline.is_some() => Ok(Some(None)),
                Err(e) => Err(e),
            };
            return match first_result {
                Ok(first_result) => {
                    if let Some(r) = self.lock().snaps.get_mut(&snap.info.id) {
                        r.last_used_ms = now_ms();
                    }
                    Ok(Deployed { proc: p, cg, queued, first_result })
                }
                Err(e) => {
                    self.discard_stub(Stub { proc: p, cg }).await;
                    if matches!(&e, WaitError::Stub(s) if s.contains("deploy 2 ENOENT")) {
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

    /// Waits for a launcher's ready line (or a stub's `error ...` line); with `watch_result`, a result line
    /// arriving first (the child answered a queued message before seussd read its ready line) also ends the
    /// wait. A control line too long to be either counts as a failure, like the end of the stream.
    pub(crate) async fn wait_deployed(
        &self,
        p: &mut Proc,
        deadline: Instant,
        watch_result: bool,
    ) -> Result<DeployEvent, WaitError> {
        enum Ev {
            Ctl(Option<Line>),
            Result(Option<Line>),
        }
        loop {
            let ev = tokio::time::timeout_at(deadline, async {
                tokio::select! {
                    biased;
                    c = p.ctl.recv() => Ev::Ctl(c),
                    r = p.result.recv(), if watch_result => Ev::Result(r),
                }
            })
            .await
            .map_err(|_| WaitError::Deadline)?;
            match ev {
                Ev::Ctl(Some(Line::Data(d))) if d.starts_with(b"error") => {
                    return Err(WaitError::Stub(String::from_utf8_lossy(&d).into_owned()))
                }
                Ev::Ctl(Some(Line::Data(d))) => {
                    if let Some(v) = serde_json::from_slice::<Value>(&d)
                        .ok()
                        .filter(|v| v.get("ready").is_some())
                    {
                        return Ok(DeployEvent::Ready(v));
                    }
                }
                Ev::Result(Some(l)) => return Ok(DeployEvent::Result(Some(l))),
                Ev::Ctl(Some(Line::TooLong)) | Ev::Ctl(None) | Ev::Result(None) => {
                    let err = p.stderr_text(Duration::from_millis(200)).await;
                    let code = p.wait_exit(Duration::from_millis(500)).await;
                    return Err(WaitError::Exited(format!(
                        "instance exited (status {code:?}) before it was ready: {}",
                        err.trim()
                    )));
                }
            }
        }
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
            // Most functions keep the default memory limit: a stub made with it needs no write at deploy.
            root.create(&format!("stub{n}"), crate::model::Limits::default().memory << 20)
                .map_err(|e| tracing::warn!("stub cgroup: {e}"))
                .ok()
        });
        let mut spec = self.stub_spec();
        spec.cgroup_procs = cg.as_ref().map(|c| c.procs_file());
        let forked = {
            let mut z = self.zygote.lock().unwrap_or_else(|e| e.into_inner());
            match z.as_ref().map(|z| Proc::spawn_via(z, spec.cgroup_procs.as_deref(), spec.max_line)) {
                Some(Err(e)) => {
                    tracing::warn!("the stub zygote failed ({e}); spawning stubs directly from now on");
                    *z = None;
                    None
                }
                r => r,
            }
        };
        match forked.unwrap_or_else(|| Proc::spawn(&spec)) {
            Ok(proc) => Ok(Stub { proc, cg }),
            Err(e) => {
                if let Some(cg) = cg {
                    tokio::spawn(cg.remove());
                }
                Err(e)
            }
        }
    }

    /// Starts the stub zygote if configured (stubs are spawned directly otherwise).
    pub(crate) fn start_zygote(&self) {
        if !self.cfg.stub_zygote {
            return;
        }
        let spec = self.stub_spec();
        match crate::zygote::Zygote::start(&spec.program, &spec.args) {
            Ok(z) => *self.zygote.lock().unwrap_or_else(|e| e.into_inner()) = Some(z),
            Err(e) => tracing::warn!("starting the stub zygote {}: {e}", spec.program.display()),
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

    /// Tops the stub pool up to `stub_pool` in the background. Called once an activation has been answered
    /// (not when its stub is taken), so making stubs does not compete with the activation it serves.
    pub(crate) fn refill_stubs(self: Arc<Self>) {
        if self.cfg.stub_pool == 0 || self.refilling.swap(true, Ordering::SeqCst) {
            return;
        }
        // Forking a stub (cgroup, zygote round trip) blocks: on a blocking thread, not a worker.
        tokio::task::spawn_blocking(move || {
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
