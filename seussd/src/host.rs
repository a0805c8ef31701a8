//! The function host: one [`Host`] owns the functions, snapshots, instances and activation records, and
//! every front end (HTTP, D-Bus) is a thin adapter over its methods. Running an activation lives in
//! `activation.rs`, instance starts in `starts.rs`, deploys in `deploy.rs`, snapshot points and bookkeeping
//! in `snapshots.rs`, memory accounting in `budget.rs`, the pure decisions in `policy.rs`.

pub use crate::error::HostError;
pub use crate::model::*;

use crate::cgroup::{Cgroup, CgroupRoot};
use crate::config::{Config, UseSnapshots};
use crate::engine::SnapshotEngine;
use crate::policy;
use crate::proc::Proc;
use crate::store::{valid_action_name, Store};
use crate::util::{activation_id, now_ms};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{broadcast, Semaphore};

/// Longest a blocking invoke waits before answering with the activation id only (OpenWhisk: 60 s).
pub const BLOCKING_WAIT: Duration = Duration::from_secs(60);
/// How long a shutdown waits for the activation records still being written.
const SHUTDOWN_SAVE_WAIT: Duration = Duration::from_secs(10);
/// How long a shutdown waits, after its grace period, for the stopped activations to be recorded.
const ABORT_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub cfg: Config,
    pub store: Store,
    pub engine: Option<Arc<dyn SnapshotEngine>>,
    pub runtime_key: String,
    pub launcher: PathBuf,
    pub cred: Option<(u32, u32)>,
    pub cgroups: Option<CgroupRoot>,
    pub st: Mutex<State>,
    pub deploys: Arc<Semaphore>,
    pub events: broadcast::Sender<HostEvent>,
    pub activations: AtomicU64,
    pub next_instance: AtomicU64,
    pub runtime_lock: tokio::sync::Mutex<()>,
    pub building_runtime: AtomicBool,
    pub runtime_failed_ms: AtomicU64,
    pub stubs: Mutex<Vec<crate::deploy::Stub>>,
    pub refilling: AtomicBool,
    /// Forks the stubs (see `zygote.rs`); `None` when disabled or it could not start.
    pub zygote: Mutex<Option<crate::zygote::Zygote>>,
    /// Writes finished activation records to the database, off the answer's path, and prunes it.
    pub saver: crate::saver::Saver,
    /// Prometheus metrics (atomics of their own, never under `st`).
    pub metrics: crate::metrics::Metrics,
    /// Admission limits and what is in flight (its own leaf lock, never taken under `st`).
    pub admission: Arc<crate::limits::Admission>,
    /// The accepted credentials (replaced by [`Host::reload`]).
    pub auth: std::sync::RwLock<Arc<Vec<String>>>,
    /// Set when a shutdown begins: new invocations are refused.
    pub draining: AtomicBool,
    /// Set when a shutdown's grace period is over: activations still running stop and are recorded
    /// as interrupted (see `run_activation`).
    pub abort: tokio::sync::watch::Sender<bool>,
    /// The namespace's packages (see `packages.rs`; locked before `st`, never under it).
    pub packages: crate::packages::PackageStore,
}

pub(crate) struct FnEntry {
    pub info: FunctionInfo,
    pub sem: Arc<Semaphore>,
    pub snap: Option<u64>,
    pub capturing: bool,
    /// Private bytes of this function's last measured deployed instance (the estimate a new one is
    /// parked with until it is measured after its answer).
    pub bytes_hint: u64,
}

/// A snapshot seussd holds, with what a deploy of it needs.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub(crate) struct SnapRec {
    pub info: SnapshotInfo,
    pub cookie_addr: u64,
    pub tid_addr: u64,
    /// Function revision the snapshot was made from (0 for the runtime snapshot).
    pub revision: u64,
    pub last_used_ms: u64,
}

/// The persisted snapshot index (`snapshots.json`).
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct SnapIndex {
    pub key: String,
    pub snapshots: Vec<SnapRec>,
}

/// A live function instance.
#[derive(Debug)]
pub(crate) struct Instance {
    pub id: u64,
    pub proc: Proc,
    pub function: String,
    pub revision: u64,
    pub deployed: bool,
    pub cgroup: Option<Cgroup>,
    pub last_used_ms: u64,
    pub bytes: u64,
    /// `bytes` is a measurement of this instance (not yet: an estimate, see `Inner::park`).
    pub measured: bool,
    /// When `bytes` was last measured (ms since the epoch; 0: never).
    pub measured_ms: u64,
    /// What this instance adds to `State::busy_bytes` while it runs an activation.
    pub busy_bytes: u64,
}

impl Instance {
    pub async fn stop(mut self) {
        self.proc.kill().await;
        if let Some(cg) = self.cgroup.take() {
            cg.remove().await;
        }
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub functions: BTreeMap<String, FnEntry>,
    pub snaps: BTreeMap<u64, SnapRec>,
    pub runtime_snap: Option<u64>,
    pub idle: Vec<Instance>,
    pub busy: u64,
    /// Memory of the busy instances (their last measurement, or their function's), counted against the
    /// budget: they cannot be evicted, so they leave less room for snapshots and idle instances.
    pub busy_bytes: u64,
}

impl State {
    /// Counts `inst` as busy, at its last measured size or else `hint`.
    pub fn begin_busy(&mut self, inst: &mut Instance, hint: u64) {
        inst.busy_bytes = if inst.bytes > 0 { inst.bytes } else { hint };
        self.busy += 1;
        self.busy_bytes += inst.busy_bytes;
    }

    /// Ends what [`State::begin_busy`] counted for `inst`.
    pub fn end_busy(&mut self, inst: &mut Instance) {
        self.busy = self.busy.saturating_sub(1);
        self.busy_bytes = self.busy_bytes.saturating_sub(std::mem::take(&mut inst.busy_bytes));
    }

    /// The function's last measured instance size (0: none yet).
    pub fn bytes_hint(&self, function: &str) -> u64 {
        self.functions.get(function).map_or(0, |e| e.bytes_hint)
    }
}

/// Raises the soft open-file limit to the hard one: every instance holds five descriptors in seussd
/// (stdin, stdout, stderr, result pipe, control socket), so a burst of new functions parks hundreds of
/// instances, more than the usual soft limit of 1024 allows.
fn raise_nofile_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                tracing::warn!("could not raise the open-file limit");
            }
        }
    }
}

fn supported_kind(kind: &str) -> bool {
    kind == "python:3"
        || kind == "python:default"
        || kind
            .strip_prefix("python:3.")
            .is_some_and(|v| v.chars().all(|c| c.is_ascii_digit()))
}

impl Inner {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn emit(&self, e: HostEvent) {
        let _ = self.events.send(e);
    }

    pub fn snapshots_enabled(&self) -> bool {
        self.engine.is_some()
    }

    fn validate(&self, def: &FunctionDef) -> Result<(), HostError> {
        let bad = |m: String| Err(HostError::InvalidArgs(m));
        if def.exec.is_sequence() {
            // Its components are checked against the functions in `store_function`.
            if def.exec.code.is_some() {
                return bad("a sequence has components, not code".into());
            }
            return Ok(());
        }
        if def.exec.components.is_some() {
            return bad("exec.components belongs to kind 'sequence'".into());
        }
        if !supported_kind(&def.exec.kind) {
            return bad(format!(
                "kind '{}' is not supported (python:3, python:default, sequence)",
                def.exec.kind
            ));
        }
        match &def.exec.code {
            None => return bad("exec.code is required".into()),
            Some(c) if def.exec.binary => {
                use base64::Engine;
                if base64::engine::general_purpose::STANDARD
                    .decode(c.trim())
                    .is_err()
                {
                    return bad("exec.code of a binary action must be base64".into());
                }
            }
            _ => {}
        }
        if let Some(m) = &def.exec.main {
            if m.is_empty()
                || !m.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                || m.starts_with(|c: char| c.is_ascii_digit())
            {
                return bad(format!("exec.main '{m}' is not a Python identifier"));
            }
        }
        let l = &def.limits;
        if !(100..=self.cfg.max_timeout_ms).contains(&l.timeout) {
            return bad(format!(
                "limits.timeout must be in 100..={} ms",
                self.cfg.max_timeout_ms
            ));
        }
        if !(128..=self.cfg.max_memory_mb).contains(&l.memory) {
            return bad(format!(
                "limits.memory must be in 128..={} MB",
                self.cfg.max_memory_mb
            ));
        }
        Ok(())
    }

    /// Drops the function's snapshot and idle instances (after an update or delete).
    pub async fn invalidate(self: &Arc<Self>, name: &str) {
        let (snap, insts) = {
            let mut st = self.lock();
            let snap = st.functions.get_mut(name).and_then(|e| e.snap.take());
            if let Some(id) = snap {
                st.snaps.remove(&id);
            }
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut st.idle)
                .into_iter()
                .partition(|i| i.function == name);
            st.idle = keep;
            (snap, gone)
        };
        for i in insts {
            i.stop().await;
        }
        if let Some(id) = snap {
            self.release_snapshot(id);
            self.save_index();
        }
    }

    /// Frees a snapshot in the kernel and announces it.
    pub fn release_snapshot(&self, id: u64) {
        if let Some(e) = &self.engine {
            if let Err(err) = e.snap_release(id) {
                tracing::warn!("releasing snapshot {id}: {err}");
            }
        }
        self.emit(HostEvent::SnapshotEvicted { id });
    }

    pub fn save_index(&self) {
        let idx = {
            let st = self.lock();
            SnapIndex {
                key: self.runtime_key.clone(),
                snapshots: st.snaps.values().cloned().collect(),
            }
        };
        if let Err(e) = self.store.save_json("snapshots.json", &idx) {
            tracing::warn!("saving snapshot index: {e}");
        }
    }

    pub fn reply_limits(&self) -> crate::reply::ReplyLimits {
        crate::reply::ReplyLimits {
            max_result: self.cfg.max_result_bytes,
            max_logs: self.cfg.max_log_bytes,
        }
    }

    /// Stops an instance that is no longer usable.
    pub async fn retire(&self, mut inst: Instance) {
        self.lock().end_busy(&mut inst);
        inst.stop().await;
    }

    fn forced_available(&self, f: &FunctionInfo, p: StartPath) -> Result<(), HostError> {
        let st = self.lock();
        let fe = st.functions.get(&f.name);
        let s = policy::PathState {
            snapshots: self.snapshots_enabled(),
            idle_instance: st
                .idle
                .iter()
                .any(|i| i.function == f.name && i.revision == f.revision()),
            function_snapshot: fe.and_then(|e| e.snap).is_some(),
            runtime_snapshot: st.runtime_snap.is_some(),
            capture_in_progress: fe.is_some_and(|e| e.capturing),
            forced: Some(p),
        };
        if !self.snapshots_enabled() && matches!(p, StartPath::Warm | StartPath::Runtime) {
            return Err(HostError::ModuleNotLoaded(
                "seussd runs without snapshots".into(),
            ));
        }
        policy::choose_path(&s)
            .map(|_| ())
            .map_err(HostError::Conflict)
    }
}

impl Host {
    /// Starts a host with the configured engine: `/dev/seuss` when `use_snapshots = "auto"` and it opens.
    pub async fn open(cfg: Config) -> anyhow::Result<Host> {
        let engine: Option<Arc<dyn SnapshotEngine>> = match cfg.use_snapshots {
            UseSnapshots::Off => {
                tracing::warn!(
                    "use_snapshots = \"off\": running WITHOUT snapshots (cold starts only)"
                );
                None
            }
            UseSnapshots::Auto => match crate::engine::UapiEngine::open(&cfg.device) {
                Ok(e) => {
                    tracing::info!("snapshot engine {} ready", cfg.device.display());
                    Some(Arc::new(e))
                }
                Err(e) => {
                    tracing::warn!("snapshot module not available ({e}): running WITHOUT snapshots (cold starts only)");
                    None
                }
            },
        };
        Self::start(cfg, engine).await
    }

    /// Starts a host on an explicit engine (`None`: cold starts only).
    pub async fn start(
        cfg: Config,
        engine: Option<Arc<dyn SnapshotEngine>>,
    ) -> anyhow::Result<Host> {
        cfg.validate()?;
        raise_nofile_limit();
        let store = Store::open(&cfg.state_dir)?;
        let db = Arc::new(crate::actdb::ActivationDb::open(&cfg.state_dir)?);
        crate::actimport::import(&mut db.writer()?, &cfg.state_dir)?;
        let saver = crate::saver::Saver::start(db, cfg.retention())?;
        let packages = crate::packages::PackageStore::open(&store)?;
        let rt_dir = cfg.state_dir.join("runtime");
        std::fs::create_dir_all(&rt_dir)?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&rt_dir, std::fs::Permissions::from_mode(0o755))?;
        }
        let launcher = crate::launcher::install(&rt_dir)?;
        let root = nix::unistd::geteuid().is_root();
        let cred = if root {
            let u = nix::unistd::User::from_name(&cfg.instance_user)?.ok_or_else(|| {
                anyhow::anyhow!("instance_user '{}' does not exist", cfg.instance_user)
            })?;
            anyhow::ensure!(!u.uid.is_root(), "instance_user must not be root");
            Some((u.uid.as_raw(), u.gid.as_raw()))
        } else {
            tracing::warn!("not running as root: instances run as seussd's own user");
            None
        };
        let cgroups = if root {
            match CgroupRoot::init(&cfg.cgroup_root) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!("no per-instance memory cgroups: {e}");
                    None
                }
            }
        } else {
            None
        };
        let runtime_key = crate::launcher::runtime_key(&cfg.python);
        let mut state = State::default();
        for f in store.load_functions() {
            let sem = Arc::new(Semaphore::new(cfg.max_instances_per_function));
            state.functions.insert(
                f.name.clone(),
                FnEntry {
                    info: f,
                    sem,
                    snap: None,
                    capturing: false,
                    bytes_hint: 0,
                },
            );
        }
        tracing::info!(
            "loaded {} functions from {}",
            state.functions.len(),
            cfg.state_dir.display()
        );
        let (events, _) = broadcast::channel(256);
        let (cfg_limits, cfg_auth) = (cfg.limits(), cfg.auth.clone());
        let inner = Arc::new(Inner {
            deploys: Arc::new(Semaphore::new(cfg.max_concurrent_deploys)),
            cfg,
            store,
            engine,
            runtime_key,
            launcher,
            cred,
            cgroups,
            st: Mutex::new(state),
            events,
            activations: AtomicU64::new(0),
            next_instance: AtomicU64::new(1),
            runtime_lock: tokio::sync::Mutex::new(()),
            building_runtime: AtomicBool::new(false),
            runtime_failed_ms: AtomicU64::new(0),
            stubs: Mutex::new(Vec::new()),
            refilling: AtomicBool::new(false),
            zygote: Mutex::new(None),
            saver,
            metrics: crate::metrics::Metrics::default(),
            admission: crate::limits::Admission::new(cfg_limits),
            auth: std::sync::RwLock::new(Arc::new(cfg_auth)),
            draining: AtomicBool::new(false),
            abort: tokio::sync::watch::channel(false).0,
            packages,
        });
        inner.adopt_snapshots();
        crate::budget::spawn_expiry(Arc::downgrade(&inner));
        if inner.snapshots_enabled() {
            inner.start_zygote();
            inner.clone().kick_runtime_build();
            inner.clone().refill_stubs();
        }
        Ok(Host { inner })
    }

    /// The configuration seussd started with (a reload replaces only [`Host::credentials`] and the
    /// admission limits).
    pub fn config(&self) -> &Config {
        &self.inner.cfg
    }

    /// The accepted `uuid:key` credentials, as last loaded.
    pub fn credentials(&self) -> Arc<Vec<String>> {
        self.inner
            .auth
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The admission limits in force.
    pub fn limits(&self) -> crate::limits::Limits {
        self.inner.admission.limits()
    }

    /// Applies a reloaded configuration's credentials and limits (to the next request) and returns the
    /// keys it changes that need a restart (left as they are).
    pub fn reload(&self, new: &Config) -> Result<Vec<String>, HostError> {
        new.validate()
            .map_err(|e| HostError::InvalidArgs(format!("{e:#}")))?;
        *self.inner.auth.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(new.auth.clone());
        self.inner.admission.set_limits(new.limits());
        Ok(self.inner.cfg.needs_restart(new))
    }

    /// Activations admitted and not yet finished (running or queued).
    pub fn in_flight(&self) -> u32 {
        self.inner.admission.in_flight()
    }

    /// Whether a runtime-snapshot build (or the check that one is needed, kicked at start) is running.
    pub fn runtime_build_running(&self) -> bool {
        self.inner.building_runtime.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Creates or (with `overwrite`) replaces function `name` with `def` as a whole.
    pub async fn put_function(
        &self,
        name: &str,
        def: FunctionDef,
        overwrite: bool,
    ) -> Result<FunctionInfo, HostError> {
        self.store_function(name, overwrite, |_| Ok(def)).await
    }

    /// Creates function `name` from `patch` (which then needs `exec`) or, with `overwrite`, updates it as
    /// OpenWhisk does (see [`FunctionPatch`]): what the patch gives replaces the stored value.
    pub async fn update_function(
        &self,
        name: &str,
        patch: FunctionPatch,
        overwrite: bool,
    ) -> Result<FunctionInfo, HostError> {
        self.store_function(name, overwrite, |old| {
            patch.apply(old).map_err(HostError::InvalidArgs)
        })
        .await
    }

    /// Stores the definition `make` builds from the current one (under the state lock, so two updates
    /// cannot lose each other's changes).
    async fn store_function(
        &self,
        name: &str,
        overwrite: bool,
        make: impl FnOnce(Option<&FunctionInfo>) -> Result<FunctionDef, HostError>,
    ) -> Result<FunctionInfo, HostError> {
        if !valid_action_name(name) {
            return Err(HostError::InvalidArgs(format!(
                "invalid function name '{name}'"
            )));
        }
        let (info, change) = {
            // Held while the action changes: its package cannot be deleted meanwhile.
            let packages = self.writable_action(name)?;
            let mut st = self.inner.lock();
            let current = st.functions.get(name).map(|e| &e.info);
            let old = current.map(FunctionInfo::revision);
            if old.is_some() && !overwrite {
                return Err(HostError::Conflict(format!(
                    "function '{name}' already exists"
                )));
            }
            let mut def = make(current)?;
            self.inner.validate(&def)?;
            if def.exec.is_sequence() {
                let c = crate::sequence::check_components(&st, &packages, &self.inner.cfg.namespace, name, &def.exec)?;
                def.exec.components = Some(c);
            }
            let info = FunctionInfo {
                namespace: self.inner.cfg.namespace.clone(),
                name: name.to_string(),
                version: format!("0.0.{}", old.unwrap_or(0) + 1),
                publish: false,
                exec: def.exec,
                parameters: def.parameters,
                annotations: def.annotations,
                limits: def.limits,
                updated: now_ms(),
            };
            self.inner
                .store
                .save_function(&info)
                .map_err(HostError::internal)?;
            let e = st
                .functions
                .entry(name.to_string())
                .or_insert_with(|| FnEntry {
                    info: info.clone(),
                    sem: Arc::new(Semaphore::new(self.inner.cfg.max_instances_per_function)),
                    snap: None,
                    capturing: false,
                    bytes_hint: 0,
                });
            e.info = info.clone();
            (info, if old.is_some() { "updated" } else { "created" })
        };
        if change == "updated" {
            self.inner.invalidate(name).await;
        }
        self.inner.emit(HostEvent::FunctionChanged {
            name: name.to_string(),
            change: change.into(),
        });
        Ok(info)
    }

    pub async fn get_function(&self, name: &str) -> Result<FunctionInfo, HostError> {
        let st = self.inner.lock();
        st.functions
            .get(name)
            .map(|e| e.info.clone())
            .ok_or_else(|| HostError::NotFound(format!("function '{name}'")))
    }

    pub async fn delete_function(&self, name: &str) -> Result<(), HostError> {
        drop(self.writable_action(name)?);
        if !self.inner.lock().functions.contains_key(name) {
            return Err(HostError::NotFound(format!("function '{name}'")));
        }
        self.inner.invalidate(name).await;
        self.inner.lock().functions.remove(name);
        self.inner
            .store
            .delete_function(name)
            .map_err(HostError::internal)?;
        self.inner.emit(HostEvent::FunctionChanged {
            name: name.to_string(),
            change: "deleted".into(),
        });
        Ok(())
    }

    pub async fn list_functions(&self) -> Vec<FunctionInfo> {
        self.inner
            .lock()
            .functions
            .values()
            .map(|e| e.info.clone())
            .collect()
    }

    /// Runs function `name` (`pkg/action` resolved through its package, see `packages.rs`) with `args` (a
    /// JSON object; the package's and the action's bound parameters are merged under it). Blocking:
    /// the finished record, or (past [`BLOCKING_WAIT`]) a pending one with `end == 0`. Non-blocking: a
    /// pending record carrying the activation id.
    pub async fn invoke(
        &self,
        name: &str,
        args: Value,
        opts: InvokeOpts,
    ) -> Result<Activation, HostError> {
        self.invoke_waiting(name, args, opts, BLOCKING_WAIT).await
    }

    /// [`Host::invoke`], a blocking one waiting at most `wait` (capped at [`BLOCKING_WAIT`]; OpenWhisk's
    /// `timeout` parameter) before it answers with the pending record.
    pub async fn invoke_waiting(
        &self,
        name: &str,
        args: Value,
        opts: InvokeOpts,
        wait: Duration,
    ) -> Result<Activation, HostError> {
        let resolved = self.resolve_action(name)?;
        let (f, sem) = {
            let st = self.inner.lock();
            let e = st
                .functions
                .get(&resolved.function)
                .ok_or_else(|| HostError::NotFound(format!("function '{name}'")))?;
            (e.info.clone(), e.sem.clone())
        };
        let Value::Object(args) = args else {
            return Err(HostError::InvalidArgs(
                "the arguments must be a JSON object".into(),
            ));
        };
        let mut merged: Map<String, Value> =
            crate::packages::to_map(&crate::packages::merge(&resolved.package_parameters, &f.parameters));
        merged.extend(args);
        match opts.path {
            Some(_) if f.exec.is_sequence() => {
                return Err(HostError::InvalidArgs(
                    "a sequence has no start path of its own (its components choose theirs)".into(),
                ))
            }
            Some(p) => self.inner.forced_available(&f, p)?,
            None => {}
        }
        if self.inner.draining.load(Ordering::SeqCst) {
            return Err(HostError::Busy("seussd is shutting down".into()));
        }
        let running = u32::try_from(self.inner.cfg.max_instances_per_function).unwrap_or(u32::MAX);
        let ticket = self
            .inner
            .admission
            .admit(&f.namespace, &f.name, running, now_ms() / 1000)
            .map_err(|r| {
                self.inner.metrics.refused(&f.namespace, r.reason());
                HostError::TooManyRequests(r.to_string())
            })?;
        let id = activation_id();
        let start = now_ms();
        let pending = self.inner.pending(&f, &id, start);
        let (done, task) = tokio::sync::oneshot::channel();
        let inner = self.inner.clone();
        let args = Value::Object(merged);
        tokio::spawn(async move {
            if f.exec.is_sequence() {
                inner.run_sequence(f, args, id, start, done).await;
            } else {
                inner.run_activation(f, sem, args, id, start, opts.path, done).await;
            }
            drop(ticket);
        });
        if !opts.blocking {
            return Ok(pending);
        }
        match tokio::time::timeout(wait.min(BLOCKING_WAIT), task).await {
            Ok(Ok(act)) => Ok(act),
            Ok(Err(e)) => Err(HostError::internal(e)),
            Err(_) => Ok(pending),
        }
    }

    pub async fn get_activation(&self, id: &str) -> Result<Activation, HostError> {
        if let Some(a) = self.inner.saver.get(id) {
            return Ok(a);
        }
        let (inner, idc) = (self.inner.clone(), id.to_string());
        tokio::task::spawn_blocking(move || inner.saver.load(&idc))
            .await
            .map_err(HostError::internal)?
            .map_err(HostError::internal)?
            .ok_or_else(|| HostError::NotFound(format!("activation '{id}'")))
    }

    /// Finished activation records matching `q`, newest first (by `start`, then id), after `q.skip`, at
    /// most `q.limit`: a page of the database plus the records still in the writer's queue (`saver.rs`).
    pub async fn list_activations(&self, q: &ActivationQuery) -> Result<Vec<Activation>, HostError> {
        let (inner, q) = (self.inner.clone(), q.clone());
        tokio::task::spawn_blocking(move || inner.saver.page(&inner.cfg.namespace, &q))
            .await
            .map_err(HostError::internal)?
            .map_err(HostError::internal)
    }

    /// How many finished records match `q` past `q.skip` (OpenWhisk counts after the skip too).
    pub async fn count_activations(&self, q: &ActivationQuery) -> Result<usize, HostError> {
        let (inner, q) = (self.inner.clone(), q.clone());
        tokio::task::spawn_blocking(move || inner.saver.count(&inner.cfg.namespace, &q))
            .await
            .map_err(HostError::internal)?
            .map_err(HostError::internal)
    }

    pub async fn list_snapshots(&self) -> Vec<SnapshotInfo> {
        let st = self.inner.lock();
        st.snaps.values().map(|r| r.info.clone()).collect()
    }

    pub async fn drop_snapshot(&self, id: u64) -> Result<(), HostError> {
        let engine =
            self.inner.engine.clone().ok_or_else(|| {
                HostError::ModuleNotLoaded("seussd runs without snapshots".into())
            })?;
        {
            let mut st = self.inner.lock();
            if !st.snaps.contains_key(&id) {
                return Err(HostError::NotFound(format!("snapshot {id}")));
            }
            if st.snaps.values().any(|r| r.info.parent == Some(id)) {
                return Err(HostError::Busy(format!(
                    "snapshot {id} has function snapshots; drop those first"
                )));
            }
            match engine.snap_release(id) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(nix::errno::Errno::EBUSY) => {
                    return Err(HostError::Busy(format!("snapshot {id} has children")))
                }
                Err(e) => return Err(HostError::internal(e)),
            }
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
        self.inner.save_index();
        self.inner.emit(HostEvent::SnapshotEvicted { id });
        Ok(())
    }

    /// Builds the function's snapshot now (through the runtime path) and returns its id.
    pub async fn prewarm(&self, name: &str) -> Result<u64, HostError> {
        if !self.inner.snapshots_enabled() {
            return Err(HostError::ModuleNotLoaded(
                "seussd runs without snapshots".into(),
            ));
        }
        let f = self.get_function(name).await?;
        if f.exec.is_sequence() {
            return Err(HostError::InvalidArgs(
                "a sequence has no snapshot of its own: prewarm its components".into(),
            ));
        }
        self.inner.prewarm(&f).await
    }

    pub fn stats(&self) -> Stats {
        let st = self.inner.lock();
        let (used, _) = crate::budget::candidates(&st);
        Stats {
            version: env!("CARGO_PKG_VERSION").to_string(),
            module_present: self.inner.snapshots_enabled(),
            budget_bytes: self.inner.cfg.budget_bytes(),
            used_bytes: used,
            snapshots: st.snaps.len() as u64,
            instances: st.idle.len() as u64 + st.busy,
            activations: self.inner.activations.load(Ordering::Relaxed),
        }
    }

    /// True once the host serves with its runtime snapshot state known: without snapshots at once, with
    /// them once the runtime snapshot exists or its build has failed (then starts are cold until a retry
    /// succeeds).
    pub fn ready(&self) -> bool {
        !self.inner.snapshots_enabled()
            || self.inner.lock().runtime_snap.is_some()
            || self.inner.runtime_failed_ms.load(Ordering::Relaxed) != 0
    }

    /// The Prometheus text exposition: counters kept as things happen, the state sampled now (one short
    /// hold of the state lock; the kernel's STATS are read outside it).
    pub fn metrics_text(&self) -> String {
        let sample = {
            let st = self.inner.lock();
            let (used, _) = crate::budget::candidates(&st);
            crate::metrics::Sample {
                snapshots: st.snaps.len() as u64,
                snapshot_private_bytes: st
                    .snaps
                    .values()
                    .map(|r| r.info.private_pages * crate::budget::PAGE)
                    .sum(),
                idle_instances: st.idle.len() as u64,
                busy_instances: st.busy,
                budget_bytes: self.inner.cfg.budget_bytes(),
                used_bytes: used,
                in_flight: u64::from(self.inner.admission.in_flight()),
            }
        };
        let kernel = self.inner.engine.as_ref().and_then(|e| e.kernel_stats().ok());
        self.inner.metrics.render(sample, kernel)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<HostEvent> {
        self.inner.events.subscribe()
    }

    /// Stops the host: refuses new invocations, lets the activations in flight finish for up to
    /// `shutdown_grace_s` (then stops those still running and records them as interrupted), stops idle
    /// instances and pooled stubs and waits for the records to be written.
    pub async fn shutdown(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
        let grace = Duration::from_secs(self.inner.cfg.shutdown_grace_s);
        let n = self.in_flight();
        if n > 0 {
            tracing::info!("shutdown: waiting up to {grace:?} for {n} activations in flight");
        }
        if tokio::time::timeout(grace, self.inner.admission.idle()).await.is_err() {
            tracing::warn!(
                "shutdown: {} activations still running after {grace:?}: stopping them",
                self.in_flight()
            );
            self.inner.abort.send_replace(true);
            if tokio::time::timeout(ABORT_WAIT, self.inner.admission.idle()).await.is_err() {
                tracing::error!("shutdown: {} activations did not stop", self.in_flight());
            }
        }
        let idle = std::mem::take(&mut self.inner.lock().idle);
        for i in idle {
            i.stop().await;
        }
        let stubs =
            std::mem::take(&mut *self.inner.stubs.lock().unwrap_or_else(|e| e.into_inner()));
        for s in stubs {
            self.inner.discard_stub(s).await;
        }
        let inner = self.inner.clone();
        // The index as it stands: a capture recorded just before the shutdown may not have written it yet
        // (its snapshot would then be released as unindexed by the next start).
        let saved = tokio::task::spawn_blocking(move || {
            inner.save_index();
            inner.saver.wait_saved(SHUTDOWN_SAVE_WAIT)
        })
        .await;
        if !matches!(saved, Ok(true)) {
            tracing::error!(
                "shutdown: activation records still unsaved after {SHUTDOWN_SAVE_WAIT:?}"
            );
        }
    }
}
