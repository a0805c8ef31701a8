//! seussd's configuration: a TOML file (`/etc/seuss/seussd.toml` unless `--config PATH`), unknown keys rejected.
//! Every field has a default; `seussd.example.toml` documents them.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/seuss/seussd.toml";

/// Whether to use the kernel snapshot engine.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum UseSnapshots {
    /// Use `/dev/seuss` when present, run cold-only otherwise.
    #[default]
    Auto,
    /// Never use snapshots.
    Off,
}

/// Who may read `/metrics`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Anyone who reaches the listener (for a Prometheus server without credentials).
    Open,
    /// Callers with one of the `auth` credentials (Prometheus `basic_auth`).
    #[default]
    Auth,
    /// Not served (404).
    Off,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Function definitions, activation records, the launcher and the snapshot index live here.
    pub state_dir: PathBuf,
    /// HTTP listen address of the OpenWhisk API.
    pub listen: String,
    /// Accepted Basic credentials, each `uuid:key`. Empty: every request is refused.
    pub auth: Vec<String>,
    /// The namespace `_` stands for.
    pub namespace: String,
    /// Memory for snapshots (private pages) plus idle instances.
    pub memory_budget_mb: u64,
    /// Instance starts (cold spawns and deploys) running at once; more wait in a FIFO queue.
    pub max_concurrent_deploys: usize,
    /// Activations of one function running at once; more wait in a FIFO queue.
    pub max_instances_per_function: usize,
    /// Idle instances are stopped after this long.
    pub idle_timeout_s: u64,
    /// Unprivileged user the instances run as (ignored when seussd is not root).
    pub instance_user: String,
    /// The Python interpreter.
    pub python: PathBuf,
    pub use_snapshots: UseSnapshots,
    /// The snapshot device.
    pub device: PathBuf,
    /// The deploy stub binary; default: `seuss-stub` next to the seussd executable.
    pub stub: Option<PathBuf>,
    /// Stubs kept pre-spawned, waiting for a snapshot id (0 disables the pool).
    pub stub_pool: usize,
    /// Fork stubs from one long-lived `seuss-stub --zygote` instead of spawning each from seussd.
    pub stub_zygote: bool,
    /// Parent cgroup (v2) of the instances' cgroups; skipped when not writable.
    pub cgroup_root: PathBuf,
    /// Largest accepted HTTP request body.
    pub max_body_bytes: usize,
    /// Largest accepted activation result (JSON bytes).
    pub max_result_bytes: usize,
    /// Logs kept per activation (bytes, stdout and stderr together).
    pub max_log_bytes: usize,
    /// Upper bound of a function's `limits.timeout`.
    pub max_timeout_ms: u64,
    /// Upper bound of a function's `limits.memory`.
    pub max_memory_mb: u64,
    /// Time allowed for starting an instance and importing the function's code.
    pub init_timeout_ms: u64,
    /// Access to the Prometheus metrics at `/metrics`.
    pub metrics: MetricsAccess,
    /// Activations of one namespace in flight (running or queued); past it, 429 (0: no limit).
    pub limit_concurrent: u32,
    /// Invocations of one namespace per minute (sliding); past it, 429 (0: no limit).
    pub limit_per_minute: u32,
    /// Activations of one function waiting for an instance; past it, 429 (0: no limit).
    pub limit_function_queue: u32,
    /// On SIGTERM, how long running activations may take to finish (and be recorded) before they are
    /// stopped and recorded as interrupted.
    pub shutdown_grace_s: u64,
    /// Log lines as text (default) or one JSON object each.
    pub log_format: LogFormat,
    /// Activation records older than this (by `start`) are pruned (0: kept whatever their age).
    pub activations_max_age_s: u64,
    /// Activation records kept per namespace, the newest (0: no limit).
    pub activations_max_per_namespace: u64,
    /// Time between two pruning passes over the activation records.
    pub activations_prune_interval_ms: u64,
}

/// The log's line format.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/seuss"),
            listen: "127.0.0.1:3233".into(),
            auth: Vec::new(),
            namespace: "guest".into(),
            memory_budget_mb: 1024,
            max_concurrent_deploys: 4,
            max_instances_per_function: 8,
            idle_timeout_s: 600,
            instance_user: "nobody".into(),
            python: PathBuf::from("/usr/bin/python3"),
            use_snapshots: UseSnapshots::Auto,
            device: PathBuf::from(uapi::DEVICE_PATH),
            stub: None,
            stub_pool: 2,
            stub_zygote: true,
            cgroup_root: PathBuf::from("/sys/fs/cgroup/seuss"),
            max_body_bytes: 5 << 20,
            max_result_bytes: 1 << 20,
            max_log_bytes: 64 << 10,
            max_timeout_ms: 300_000,
            max_memory_mb: 2048,
            init_timeout_ms: 60_000,
            metrics: MetricsAccess::Auth,
            limit_concurrent: 100,
            limit_per_minute: 600,
            limit_function_queue: 100,
            shutdown_grace_s: 30,
            log_format: LogFormat::Text,
            activations_max_age_s: 7 * 24 * 3600,
            activations_max_per_namespace: 10_000,
            activations_prune_interval_ms: 60_000,
        }
    }
}

impl Config {
    /// Parses TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let c: Config = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        for a in &self.auth {
            let (user, key) = a
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("auth entry without ':'"))?;
            anyhow::ensure!(
                !user.is_empty() && !key.is_empty(),
                "auth entries are uuid:key"
            );
        }
        anyhow::ensure!(
            self.max_concurrent_deploys >= 1,
            "max_concurrent_deploys must be >= 1"
        );
        anyhow::ensure!(
            self.max_instances_per_function >= 1,
            "max_instances_per_function must be >= 1"
        );
        anyhow::ensure!(
            self.activations_prune_interval_ms >= 1,
            "activations_prune_interval_ms must be >= 1"
        );
        anyhow::ensure!(
            !self.namespace.is_empty() && self.namespace != "_",
            "namespace must be a name"
        );
        Ok(())
    }

    /// The stub binary to spawn.
    pub fn stub_path(&self) -> PathBuf {
        self.stub.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("seuss-stub")))
                .unwrap_or_else(|| PathBuf::from("/usr/libexec/seuss/seuss-stub"))
        })
    }

    pub fn budget_bytes(&self) -> u64 {
        self.memory_budget_mb << 20
    }

    /// The admission limits (see `limits.rs`).
    pub fn limits(&self) -> crate::limits::Limits {
        crate::limits::Limits {
            concurrent: self.limit_concurrent,
            per_minute: self.limit_per_minute,
            function_queue: self.limit_function_queue,
        }
    }

    /// What the activation-record writer prunes (see `actdb.rs`).
    pub fn retention(&self) -> crate::actdb::Retention {
        crate::actdb::Retention {
            max_age_ms: self.activations_max_age_s.saturating_mul(1000),
            max_per_namespace: self.activations_max_per_namespace,
            interval_ms: self.activations_prune_interval_ms,
        }
    }

    /// The keys of `new` that differ from `self` and that a reload does not apply (a restart does).
    /// A reload applies `auth` and the `limit_*` keys.
    pub fn needs_restart(&self, new: &Config) -> Vec<String> {
        let mut applied = new.clone();
        applied.auth.clone_from(&self.auth);
        applied.limit_concurrent = self.limit_concurrent;
        applied.limit_per_minute = self.limit_per_minute;
        applied.limit_function_queue = self.limit_function_queue;
        if applied == *self {
            return Vec::new();
        }
        // Named through their TOML form, so a new key is covered without editing this.
        match (toml::Value::try_from(self), toml::Value::try_from(&applied)) {
            (Ok(toml::Value::Table(a)), Ok(toml::Value::Table(b))) => {
                let mut keys: Vec<String> = a.keys().chain(b.keys()).filter(|k| a.get(*k) != b.get(*k)).cloned().collect();
                keys.sort();
                keys.dedup();
                keys
            }
            _ => vec!["(unknown)".into()],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let text = include_str!("../seussd.example.toml");
        let c = Config::parse(text).expect("example config parses");
        assert_eq!(c.listen, "127.0.0.1:3233");
        assert_eq!(c.use_snapshots, UseSnapshots::Auto);
        assert_eq!(c.auth.len(), 1);
    }

    #[test]
    fn unknown_keys_and_bad_auth_are_rejected() {
        assert!(Config::parse("listen = \"127.0.0.1:1\"\nlisen = 3\n").is_err());
        assert!(Config::parse("auth = [\"nocolon\"]\n").is_err());
        assert!(Config::parse("use_snapshots = \"sometimes\"\n").is_err());
        let c = Config::parse("use_snapshots = \"off\"\nmemory_budget_mb = 2\n").unwrap();
        assert_eq!(c.use_snapshots, UseSnapshots::Off);
        assert_eq!(c.budget_bytes(), 2 << 20);
        assert_eq!(c.idle_timeout_s, 600);
        assert_eq!(c.metrics, MetricsAccess::Auth);
        assert_eq!(Config::parse("metrics = \"open\"\n").unwrap().metrics, MetricsAccess::Open);
        assert!(Config::parse("metrics = \"public\"\n").is_err());
        assert_eq!(c.limits().concurrent, 100);
        assert_eq!(c.limits().per_minute, 600);
        assert_eq!(Config::parse("log_format = \"json\"\n").unwrap().log_format, LogFormat::Json);
        let r = Config::parse("activations_max_age_s = 2\nactivations_max_per_namespace = 0\n").unwrap().retention();
        assert_eq!((r.max_age_ms, r.max_per_namespace, r.interval_ms), (2000, 0, 60_000));
        assert_eq!(c.retention().max_per_namespace, 10_000);
        assert!(Config::parse("activations_prune_interval_ms = 0\n").is_err());
    }

    #[test]
    fn reload_applies_auth_and_limits_and_names_the_rest() {
        let old = Config::default();
        let mut new = old.clone();
        new.auth = vec!["u:k".into()];
        new.limit_per_minute = 5;
        assert!(old.needs_restart(&new).is_empty());
        new.listen = "127.0.0.1:1".into();
        new.shutdown_grace_s = 1;
        assert_eq!(old.needs_restart(&new), vec!["listen", "shutdown_grace_s"]);
    }
}
