//! The data types of the Host API: function definitions, activation records (OpenWhisk's shapes), snapshot
//! and statistics views, invocation options and events. All are plain serde data.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `{"key": ..., "value": ...}` pair, as OpenWhisk uses for parameters and annotations.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct KeyValue {
    pub key: String,
    pub value: Value,
}

impl KeyValue {
    pub fn new(key: &str, value: impl Into<Value>) -> Self {
        Self {
            key: key.to_string(),
            value: value.into(),
        }
    }
}

/// `exec` of an action: the runtime kind and the code.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Exec {
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub main: Option<String>,
    #[serde(default)]
    pub binary: bool,
}

/// Per-function limits: `timeout` in ms, `memory` in MB, `logs` in MB (accepted, logs are capped by config).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Limits {
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    #[serde(default = "default_memory")]
    pub memory: u64,
    #[serde(default = "default_logs")]
    pub logs: u64,
}

fn default_timeout() -> u64 {
    60_000
}
fn default_memory() -> u64 {
    256
}
fn default_logs() -> u64 {
    10
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: default_timeout(),
            memory: default_memory(),
            logs: default_logs(),
        }
    }
}

/// The body of an action create/update (OpenWhisk's `WhiskActionPut`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FunctionDef {
    pub exec: Exec,
    #[serde(default)]
    pub parameters: Vec<KeyValue>,
    #[serde(default)]
    pub annotations: Vec<KeyValue>,
    #[serde(default)]
    pub limits: Limits,
}

/// A stored function (OpenWhisk's action record).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FunctionInfo {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub publish: bool,
    pub exec: Exec,
    pub parameters: Vec<KeyValue>,
    pub annotations: Vec<KeyValue>,
    pub limits: Limits,
    /// Last create/update, ms since the epoch.
    pub updated: u64,
}

impl FunctionInfo {
    /// The patch number of `version` ("0.0.N"), bumped on every update.
    pub fn revision(&self) -> u64 {
        self.version
            .rsplit('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// `response` of an activation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActivationResponse {
    /// `success | application error | action developer error | whisk internal error`.
    pub status: String,
    /// 0 success, 1 application error, 2 developer error, 3 internal error.
    pub status_code: u32,
    pub success: bool,
    pub result: Value,
}

/// OpenWhisk activation statuses.
pub mod status {
    pub const SUCCESS: &str = "success";
    pub const APPLICATION_ERROR: &str = "application error";
    pub const DEVELOPER_ERROR: &str = "action developer error";
    pub const INTERNAL_ERROR: &str = "whisk internal error";
    /// Not an OpenWhisk status: the record of a non-blocking invoke that has not finished yet.
    pub const PENDING: &str = "pending";
}

/// An activation record. `end == 0` marks a record of an activation still running (non-blocking invoke).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    pub namespace: String,
    pub name: String,
    pub version: String,
    pub subject: String,
    pub activation_id: String,
    pub start: u64,
    pub end: u64,
    pub duration: u64,
    pub response: ActivationResponse,
    pub logs: Vec<String>,
    /// Includes `startPath` (`cold|runtime|warm|hot`), `path`, `kind`, `limits`, `waitTime`, `initTime`.
    pub annotations: Vec<KeyValue>,
    pub publish: bool,
}

impl Activation {
    /// The value of annotation `key`, if present.
    pub fn annotation(&self, key: &str) -> Option<&Value> {
        self.annotations
            .iter()
            .find(|a| a.key == key)
            .map(|a| &a.value)
    }

    /// A finished, successful record with id `id` and result `{"i": id}`, for unit tests.
    #[cfg(test)]
    pub(crate) fn sample(id: &str) -> Activation {
        Activation {
            namespace: "guest".into(),
            name: "f".into(),
            version: "0.0.1".into(),
            subject: "guest".into(),
            activation_id: id.into(),
            start: 1,
            end: 2,
            duration: 1,
            response: ActivationResponse {
                status: "success".into(),
                status_code: 0,
                success: true,
                result: serde_json::json!({ "i": id }),
            },
            logs: vec![],
            annotations: vec![],
            publish: false,
        }
    }
}

/// How an activation's instance was obtained.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum StartPath {
    /// Fresh interpreter + launcher + function import.
    Cold,
    /// Deploy of the runtime snapshot, then import of the function.
    Runtime,
    /// Deploy of the function's snapshot.
    Warm,
    /// An idle instance of the function.
    Hot,
}

impl StartPath {
    pub fn as_str(self) -> &'static str {
        match self {
            StartPath::Cold => "cold",
            StartPath::Runtime => "runtime",
            StartPath::Warm => "warm",
            StartPath::Hot => "hot",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "cold" => StartPath::Cold,
            "runtime" => StartPath::Runtime,
            "warm" => StartPath::Warm,
            "hot" => StartPath::Hot,
            _ => return None,
        })
    }
}

/// Options of one invocation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct InvokeOpts {
    /// Wait for the result (up to the function's timeout plus a margin); otherwise return at once.
    pub blocking: bool,
    /// Force a start path (tests, benchmarks); the invocation fails with `Conflict` if it is unavailable.
    #[serde(default)]
    pub path: Option<StartPath>,
}

/// A snapshot seussd holds in the kernel.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SnapshotInfo {
    pub id: u64,
    pub parent: Option<u64>,
    /// `None` for the runtime snapshot.
    pub function: Option<String>,
    /// The runtime key: interpreter identity, kernel release, launcher hash.
    pub runtime: String,
    pub private_pages: u64,
    pub created_ms: u64,
}

/// Daemon-wide counters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Stats {
    pub version: String,
    pub module_present: bool,
    pub budget_bytes: u64,
    pub used_bytes: u64,
    pub snapshots: u64,
    pub instances: u64,
    pub activations: u64,
}

/// Events broadcast by the host.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "event")]
pub enum HostEvent {
    SnapshotCaptured {
        id: u64,
        function: Option<String>,
    },
    SnapshotEvicted {
        id: u64,
    },
    /// `change` is `created`, `updated` or `deleted`.
    FunctionChanged {
        name: String,
        change: String,
    },
}
